// Group kernels: `runs` consecutive runs of n values, run j (at x + j * n) of channel j, with
// per-run arrays (k, c, a, b, k1, k2, k3 and the accumulators indexed by j). For short runs
// (7x7 maps). Included inside struct Kernels<V> (kernels_body.inl).

// Group reductions: `runs` channels (j) by `rows` samples (r); sample r's runs are contiguous at
// x + r * stride + j * n. The group is in L2 when they run (the driver brings it there), so they
// walk it channel by channel across the samples, with the channel's sums in registers: a short
// run (a 7x7 map is 49 values) costs a few vector adds, the partial sums span several runs
// (still at most kPartial terms per lane), and the horizontal reduction happens once per channel.
// kTwo, kMask: as in reduce_runs (a = dy, b = x, m = y); lanes past n add 0 (a loads the shift or 0,
// b the shift).
template <bool kTwo, bool kMask = false, class F>
static void reduce_group(const T* a, const T* b, size_t rows, size_t stride, size_t runs, size_t n, const C* shift,
                         double* out_s, double* out_q, F&& f, const T* m = nullptr) {
  // A run adds at most `per` terms per lane to each of the two partials (see below).
  const size_t per = ((n + W - 1) / W + 1) / 2;
  const Ahead ah(n, stride);
  if (per > kPartial) {  // long runs: widened within each run
    for (size_t j = 0; j < runs; ++j) {
      const C k = shift[j], fill_a = kTwo ? C(0) : k;
      typename V::Acc s = V::acc_zero(), q = V::acc_zero();
      for (size_t r = 0; r < rows; ++r) {
        reduce_run_from<kTwo, kMask>(a + j * n, b + j * n, ah, r, stride, 0, n, k, fill_a, k, s, q, f, at(m, j * n));
      }
      out_s[j] += V::acc_sum(s);
      out_q[j] += V::acc_sum(q);
    }
    return;
  }
  size_t j = 0;
  for (; j + kGroupLanes <= runs; j += kGroupLanes) {
    reduce_short_runs<kGroupLanes, kTwo, kMask>(a, b, rows, stride, j, n, per, ah, shift, out_s, out_q, f, m);
  }
  if constexpr (kGroupLanes > 2) {  // the rest two at a time (groups of large batches hold few channels)
    for (; j + 2 <= runs; j += 2) reduce_short_runs<2, kTwo, kMask>(a, b, rows, stride, j, n, per, ah, shift, out_s, out_q, f, m);
  }
  for (; j < runs; ++j) reduce_short_runs<1, kTwo, kMask>(a, b, rows, stride, j, n, per, ah, shift, out_s, out_q, f, m);
}

// Channels a short-run group reduction walks side by side: each channel's partial sums are a
// chain of dependent adds (a 7x7 run adds 2 vectors to each), so one channel at a time waits on
// their latency; K channels give K independent chains. Each channel's additions and their order
// are those of a walk one channel at a time: the sums have the same bits. Four channels' partials
// take 20 vector registers: with 16 (AVX2) they spill, and one channel at a time was faster.
static constexpr size_t kGroupLanes = V::kRegisters >= 32 ? 4 : 1;

// reduce_group's short runs (per <= kPartial) of channels j0 .. j0 + K: each run's terms go into
// float partials, widened into float64 every kPartial / per runs, so that no lane takes more than
// kPartial terms before it is widened.
template <size_t K, bool kTwo, bool kMask, class F>
static void reduce_short_runs(const T* a, const T* b, size_t rows, size_t stride, size_t j0, size_t n, size_t per,
                              const Ahead& ah, const C* shift, double* out_s, double* out_q, F& f, const T* m) {
  const Vec z = V::set1(C(0));
  const size_t every = kPartial / per;  // runs per widening
  typename V::Acc s[K], q[K];
  Vec vs[K], ps0[K], pq0[K], ps1[K], pq1[K];
  C fill_a[K];
#pragma GCC unroll 4
  for (size_t u = 0; u < K; ++u) {
    s[u] = q[u] = V::acc_zero();
    vs[u] = V::set1(shift[j0 + u]);
    fill_a[u] = kTwo ? C(0) : shift[j0 + u];
    ps0[u] = pq0[u] = ps1[u] = pq1[u] = z;
  }
  auto flush = [&] {
#pragma GCC unroll 4
    for (size_t u = 0; u < K; ++u) {
      V::acc_add(s[u], V::add(ps0[u], ps1[u]));
      V::acc_add(q[u], V::add(pq0[u], pq1[u]));
      ps0[u] = pq0[u] = ps1[u] = pq1[u] = z;
    }
  };
  size_t since = 0;
  // scalar math: that of f over run r of channels j0 + u, one vector per call (in add_rest)
  for (size_t r = 0; r < rows; ++r) {
#pragma GCC unroll 4
    for (size_t u = 0; u < K; ++u) {
      const size_t o = (j0 + u) * n;
      add_rest<kTwo, false, kMask>(a + o, b + o, ah, r, stride, 0, n, vs[u], fill_a[u], shift[j0 + u], ps0[u], pq0[u],
                                   ps1[u], pq1[u], f, at(m, o));
    }
    if (++since == every) {
      flush();
      since = 0;
    }
  }
  flush();
#pragma GCC unroll 4
  for (size_t u = 0; u < K; ++u) {
    out_s[j0 + u] += V::acc_sum(s[u]);
    out_q[j0 + u] += V::acc_sum(q[u]);
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
// streamed in whole lines, and short runs (a 7x7 map is 3 vectors and a 1-lane tail) cost no
// per-run tail. Plain stores walk the span the same way, from its first value. Runs shorter
// than a vector go run by run, without streaming. out_next: each vector also requests the
// output's line out_next values on (the walk's next span of these channels), so that a cold
// output's reads for ownership are under way when the walk gets there; 0 for none.
template <Epilogue E>
static void affine_group(const T* x, T* y, const T* res, size_t runs, size_t n, const C* c, const C* a, const C* b,
                         bool stream, size_t next, size_t out_next) {
  if (n < W) {
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
      if (out_next != 0) prefetch_next(y + i, out_next);
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
                         const C* k1, const C* k2, const C* k3, bool stream, size_t next, size_t out_next) {
  dx_group<E, false, true>(x, dy, nullptr, dx, res, nullptr, runs, n, c, k1, k2, k3, stream, next, out_next);
}

// bwd_dx_group with the backward prologue and formula of dx_runs (kMask, kX; without kX, x may be
// null and the values of c, k2, k3 are not used). out_next: as in affine_group, for dx.
template <Epilogue E, bool kMask, bool kX>
static void dx_group(const T* x, const T* dy, const T* y, T* dx, const T* res, T* dres, size_t runs, size_t n,
                     const C* c, const C* k1, const C* k2, const C* k3, bool stream, size_t next, size_t out_next) {
  if (n < W) {
    for (size_t j = 0; j < runs; ++j) {
      dx_runs<E, kMask, kX>(at(x, j * n), dy + j * n, at(y, j * n), dx + j * n, at(res, j * n),
                            dres == nullptr ? nullptr : dres + j * n, 1, n, n, c[j], k1[j], k2[j],
                            k3[j], false, next);
    }
    return;
  }
  const size_t total = runs * n;
  // dres streams with dx when dx streams and their alignments agree (as in dx_runs).
  const bool nt_res = stream && dres != nullptr &&
                      (reinterpret_cast<uintptr_t>(dres) - reinterpret_cast<uintptr_t>(dx)) % V::kStreamAlign == 0;
  auto lanes = [&](size_t i, size_t cnt, C cj, Vec vc, Vec v1, Vec v2, Vec v3) {
    return dx_lanes<kMask, kX>(at(x, i), dy + i, at(y, i), dres == nullptr ? nullptr : dres + i, cnt, cj, vc, v1, v2,
                               v3, nt_res);
  };
  // Head and tail as masked partial vectors, as in affine_group.
  auto part = [&](size_t at_, size_t cnt, size_t jj) {
    const Vec v = lanes(at_, cnt, c[jj], V::set1(c[jj]), V::set1(k1[jj]), V::set1(k2[jj]),
                        V::set1(k3[jj]));
    V::store_tail(dx + at_, epilogue<E>(v, at(res, at_), cnt), cnt);
  };
  size_t i = stream ? head_to_align(dx, total) : 0;
  if (i) part(0, i, 0);
  size_t j = 0, off = i;  // run and offset in it of position i
  with_store_and_prefetch(stream, next, [&](auto store, auto pf) {
    // scalar math: dx[i] = g * k1[run(i)] + ((x[i] - c[run(i)]) * k2[run(i)] + k3[run(i)]), g as in dx_runs
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
      if (kX) pf(x + i);
      pf(dy + i);
      if (kMask) pf(y + i);
      if (out_next != 0) prefetch_next(dx + i, out_next);
      store(dx + i, epilogue<E>(lanes(i, W, C(0), vc, v1, v2, v3), at(res, i), W));
      off += W;
      if (off >= n) off -= n, ++j;
    }
  });
  if (i < total) part(i, total - i, runs - 1);
}

// Backward through a fused ReLU (MaskedBackwardKernels), group layout.
static void bwd_reduce_relu_group(const T* x, const T* dy, const T* y, size_t rows, size_t stride, size_t runs,
                                  size_t n, const C* c, double* sum_dy, double* sum_dyxc) {
  reduce_group<true, true>(dy, x, rows, stride, runs, n, c, sum_dy, sum_dyxc, BwdStep(), y);
}

static void bwd_dx_relu_group(const T* x, const T* dy, const T* y, T* dx, T* dres, size_t runs, size_t n, const C* c,
                              const C* k1, const C* k2, const C* k3, bool stream, size_t next, size_t out_next) {
  dx_group<Epilogue::kNone, true, true>(x, dy, y, dx, nullptr, dres, runs, n, c, k1, k2, k3, stream, next, out_next);
}

static void bwd_scale_relu_group(const T* dy, const T* y, T* dx, T* dres, size_t runs, size_t n, const C* k1,
                                 bool stream, size_t next, size_t out_next) {
  // k1 stands in for c, k2, k3: without kX their values are not read.
  dx_group<Epilogue::kNone, true, false>(nullptr, dy, y, dx, nullptr, dres, runs, n, k1, k1, k1, k1, stream, next,
                                         out_next);
}
