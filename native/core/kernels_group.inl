// Group kernels: `runs` consecutive runs of n values, run j (at x + j * n) of channel j, with
// per-run arrays (k, c, a, b, k1, k2, k3 and the accumulators indexed by j). For short runs
// (7x7 maps). Included inside struct Kernels<V> (kernels_body.inl).

// Group reductions: `runs` channels (j) by `rows` samples (r); sample r's runs are contiguous at
// x + r * stride + j * n. The group is in L2 when they run (the driver brings it there), so they
// walk it channel by channel across the samples, with the channel's sums in registers: a short
// run (a 7x7 map is 49 values) costs a few vector adds, the partial sums span several runs
// (still at most kPartial terms per lane), and the horizontal reduction happens once per channel.
// kTwo: as in reduce_runs (a = dy, b = x); lanes past n add 0 (a loads the shift or 0, b the shift).
template <bool kTwo, class F>
static void reduce_group(const T* a, const T* b, size_t rows, size_t stride, size_t runs, size_t n, const C* shift,
                         double* out_s, double* out_q, F&& f) {
  // A run adds at most `per` terms per lane to each of the two partials (see below).
  const size_t per = ((n + W - 1) / W + 1) / 2;
  const Ahead ah(n, stride);
  const Vec z = V::set1(C(0));
  for (size_t j = 0; j < runs; ++j) {
    const C k = shift[j], fill_a = kTwo ? C(0) : k;
    const T* pa = a + j * n;
    const T* pb = b + j * n;
    typename V::Acc s = V::acc_zero(), q = V::acc_zero();
    if (per > kPartial) {  // long runs: widened within each run
      for (size_t r = 0; r < rows; ++r) reduce_run_from<kTwo>(pa, pb, ah, r, stride, 0, n, k, fill_a, k, s, q, f);
    } else {
      const size_t every = kPartial / per;  // runs per widening
      const Vec vs = V::set1(k);
      Vec ps0 = z, pq0 = z, ps1 = z, pq1 = z;
      auto flush = [&] {
        V::acc_add(s, V::add(ps0, ps1));
        V::acc_add(q, V::add(pq0, pq1));
        ps0 = pq0 = ps1 = pq1 = z;
      };
      size_t since = 0;
      // scalar math: that of f over run r of channel j, one vector per call (in add_rest)
      for (size_t r = 0; r < rows; ++r) {
        add_rest<kTwo, false>(pa, pb, ah, r, stride, 0, n, vs, fill_a, k, ps0, pq0, ps1, pq1, f);
        if (++since == every) {
          flush();
          since = 0;
        }
      }
      flush();
    }
    out_s[j] += V::acc_sum(s);
    out_q[j] += V::acc_sum(q);
  }
}

static void stats_group(const T* x, size_t rows, size_t stride, size_t runs, size_t n, const C* k, double* sum,
                        double* sumsq) {
  reduce_group<false>(x, x, rows, stride, runs, n, k, sum, sumsq, StatsStep());
}

static void bwd_reduce_group(const T* x, const T* dy, size_t rows, size_t stride, size_t runs, size_t n, const C* c,
                             double* sum_dy, double* sum_dyxc) {
  reduce_group<true>(dy, x, rows, stride, runs, n, c, sum_dy, sum_dyxc, BwdStep());
}

// The group's runs are one contiguous span: written as such, full vectors may straddle two runs
// (the first k lanes take run j's coefficients, the rest run j + 1's), so the output can be
// streamed in whole lines. Runs shorter than a vector go run by run, without streaming; so do
// unstreamed float runs (one masked move per tail), not 16-bit ones (a tail is several moves).
template <Epilogue E>
static void affine_group(const T* x, T* y, const T* res, size_t runs, size_t n, const C* c, const C* a, const C* b,
                         bool stream, size_t next) {
  if (n < W || (!stream && !kNarrow)) {
    for (size_t j = 0; j < runs; ++j) {
      affine_run<E>(x + j * n, y + j * n, at(res, j * n), 1, n, n, c[j], a[j], b[j], false, next);
    }
    return;
  }
  const size_t total = runs * n;
  // The head (up to the streaming alignment) and the tail are partial vectors with masked loads
  // and stores: with n >= W, the head lies in the first run and the tail in the last.
  auto part = [&](size_t at_, size_t cnt, size_t jj) {
    const Vec v = mul_add(V::sub(V::load_tail(x + at_, cnt, c[jj]), V::set1(c[jj])), V::set1(a[jj]), V::set1(b[jj]));
    V::store_tail(y + at_, epilogue<E>(v, at(res, at_), cnt), cnt);
  };
  size_t i = stream ? head_to_align(y, total) : 0;
  if (i) part(0, i, 0);
  size_t j = 0, off = i;  // run and offset in it of position i
  with_store_and_prefetch(stream, next, [&](auto store, auto pf) {
    // scalar math: y[i] = (x[i] - c[run(i)]) * a[run(i)] + b[run(i)]
    for (; i + W <= total; i += W) {
      const size_t k = n - off;  // lanes left in run j
      Vec vc = V::set1(c[j]), va = V::set1(a[j]), vb = V::set1(b[j]);
      if (k < W) {
        vc = V::blend_lanes(vc, V::set1(c[j + 1]), k);
        va = V::blend_lanes(va, V::set1(a[j + 1]), k);
        vb = V::blend_lanes(vb, V::set1(b[j + 1]), k);
      }
      pf(x + i);
      store(y + i, epilogue<E>(mul_add(V::sub(V::load(x + i), vc), va, vb), at(res, i), W));
      off += W;
      if (off >= n) off -= n, ++j;
    }
  });
  if (i < total) part(i, total - i, runs - 1);
}

// As affine_group: one span, vectors straddling two runs, streamed when asked.
template <Epilogue E>
static void bwd_dx_group(const T* x, const T* dy, T* dx, const T* res, size_t runs, size_t n, const C* c,
                         const C* k1, const C* k2, const C* k3, bool stream, size_t next) {
  if (n < W || (!stream && !kNarrow)) {
    for (size_t j = 0; j < runs; ++j) {
      bwd_dx_run<E>(x + j * n, dy + j * n, dx + j * n, at(res, j * n), 1, n, n, c[j], k1[j], k2[j], k3[j], false,
                    next);
    }
    return;
  }
  const size_t total = runs * n;
  // Head and tail as masked partial vectors, as in affine_group.
  auto part = [&](size_t at_, size_t cnt, size_t jj) {
    const Vec v = dx_vec(V::load_tail(x + at_, cnt, c[jj]), V::load_tail(dy + at_, cnt, C(0)), V::set1(c[jj]),
                         V::set1(k1[jj]), V::set1(k2[jj]), V::set1(k3[jj]));
    V::store_tail(dx + at_, epilogue<E>(v, at(res, at_), cnt), cnt);
  };
  size_t i = stream ? head_to_align(dx, total) : 0;
  if (i) part(0, i, 0);
  size_t j = 0, off = i;  // run and offset in it of position i
  with_store_and_prefetch(stream, next, [&](auto store, auto pf) {
    // scalar math: dx[i] = dy[i] * k1[run(i)] + ((x[i] - c[run(i)]) * k2[run(i)] + k3[run(i)])
    for (; i + W <= total; i += W) {
      const size_t k = n - off;  // lanes left in run j
      Vec vc = V::set1(c[j]), v1 = V::set1(k1[j]), v2 = V::set1(k2[j]), v3 = V::set1(k3[j]);
      if (k < W) {
        vc = V::blend_lanes(vc, V::set1(c[j + 1]), k);
        v1 = V::blend_lanes(v1, V::set1(k1[j + 1]), k);
        v2 = V::blend_lanes(v2, V::set1(k2[j + 1]), k);
        v3 = V::blend_lanes(v3, V::set1(k3[j + 1]), k);
      }
      // Both tensors here (unlike bwd_dx_run): with short runs the reduction pass is bound by
      // its per-run work, not by memory, and reading dy from memory would only slow it.
      pf(x + i);
      pf(dy + i);
      store(dx + i, epilogue<E>(dx_vec(V::load(x + i), V::load(dy + i), vc, v1, v2, v3), at(res, i), W));
      off += W;
      if (off >= n) off -= n, ++j;
    }
  });
  if (i < total) part(i, total - i, runs - 1);
}
