// Run kernels: `rows` runs of n values, run r starting at x + r * stride (one channel of an NCHW
// tensor is N runs of S values, C * S apart). Accumulators stay in registers across runs, and
// tails use masked loads and stores, so short runs (7x7 maps) cost no scalar loop. Included
// inside struct Kernels<V> (kernels_body.inl).

// The reduction loop over `rows` runs of n values, stride apart, of one or two tensors (a, b;
// b == a for one): f(ps, pq, va, vb, vshift) adds a vector of each into partial sums (ps, pq).
// Every kPartial vectors, and at the end of each run, the partials are widened into the float64
// accumulators (s, q). Lanes past n load the fills.
// kTwo: b is another tensor, prefetched too (a template parameter: no branch near a prefetch).
// kMask: a (dy) goes through the backward prologue, gated by m (the forward's y, laid out as a).
template <bool kTwo, bool kMask = false, class F>
static void reduce_runs(const T* a, const T* b, size_t rows, size_t n, size_t stride, C shift, C fill_a, C fill_b,
                        typename V::Acc& s, typename V::Acc& q, F&& f, const T* m = nullptr) {
  const Ahead ah(n, stride);
  for (size_t r = 0; r < rows; ++r) {
    reduce_run_from<kTwo, kMask>(a, b, ah, r, stride, 0, n, shift, fill_a, fill_b, s, q, f, m);
  }
}

// Run r of reduce_runs from position i (a multiple of kBlock) on: the blocks before i were
// added by the caller in the same order (see affine_stats_run), so the sums do not depend on
// which kernel read the run.
template <bool kTwo, bool kMask = false, class F>
static void reduce_run_from(const T* a, const T* b, const Ahead& ah, size_t r, size_t stride, size_t i, size_t n,
                            C shift, C fill_a, C fill_b, typename V::Acc& s, typename V::Acc& q, F& f,
                            const T* m = nullptr) {
  const Vec vs = V::set1(shift);
  const Vec z = V::set1(C(0));
  const T* pa = a + r * stride;
  const T* pb = b + r * stride;
  const T* pm = at(m, r * stride);
  Vec ps0 = z, pq0 = z, ps1 = z, pq1 = z;
  auto flush = [&] {
    V::acc_add(s, V::add(ps0, ps1));
    V::acc_add(q, V::add(pq0, pq1));
    ps0 = pq0 = ps1 = pq1 = z;
  };
  // scalar math: that of f (StatsStep or BwdStep), one vector per call
  for (; i + kBlock <= n; i += kBlock) {
    for (size_t u = 0; u < kBlock; u += 2 * W) {
      prefetch_ahead(a, ah, r, i + u, n, stride);
      if (kTwo) prefetch_ahead(b, ah, r, i + u, n, stride);
      if (kMask) prefetch_ahead(m, ah, r, i + u, n, stride);
      f(ps0, pq0, load_dy<kMask>(pa + i + u, at(pm, i + u)), V::load(pb + i + u), vs);
      f(ps1, pq1, load_dy<kMask>(pa + i + u + W, at(pm, i + u + W)), V::load(pb + i + u + W), vs);
    }
    flush();
  }
  add_rest<kTwo, true, kMask>(a, b, ah, r, stride, i, n, vs, fill_a, fill_b, ps0, pq0, ps1, pq1, f, m);
  flush();
}

// The end of run r from position i on, less than a block: pairs of vectors into the two pairs
// of partials, then one vector, then the masked tail (lanes past n load the fills). Adds to the
// partials without widening them. kPf: prefetch ahead as it goes (runs read from memory;
// the group reductions read from L2).
template <bool kTwo, bool kPf, bool kMask = false, class F>
static void add_rest(const T* a, const T* b, const Ahead& ah, size_t r, size_t stride, size_t i, size_t n, Vec vs,
                     C fill_a, C fill_b, Vec& ps0, Vec& pq0, Vec& ps1, Vec& pq1, F& f, const T* m = nullptr) {
  const T* pa = a + r * stride;
  const T* pb = b + r * stride;
  const T* pm = at(m, r * stride);  // kMask: the gate of a
  // scalar math: that of f, one vector per call
  for (; i + 2 * W <= n; i += 2 * W) {
    if (kPf) prefetch_ahead(a, ah, r, i, n, stride);
    if (kPf && kTwo) prefetch_ahead(b, ah, r, i, n, stride);
    if (kPf && kMask) prefetch_ahead(m, ah, r, i, n, stride);
    f(ps0, pq0, load_dy<kMask>(pa + i, at(pm, i)), V::load(pb + i), vs);
    f(ps1, pq1, load_dy<kMask>(pa + i + W, at(pm, i + W)), V::load(pb + i + W), vs);
  }
  if (i + W <= n) {
    f(ps0, pq0, load_dy<kMask>(pa + i, at(pm, i)), V::load(pb + i), vs);
    i += W;
  }
  if (i < n) f(ps1, pq1, load_dy_tail<kMask>(pa + i, at(pm, i), n - i, fill_a), V::load_tail(pb + i, n - i, fill_b), vs);
}

// Lanes past n load k, so they add 0.
static void stats_run(const T* x, size_t rows, size_t n, size_t stride, C k, double* sum, double* sumsq) {
  typename V::Acc s = V::acc_zero(), q = V::acc_zero();
  reduce_runs<false>(x, x, rows, n, stride, k, k, k, s, q, StatsStep());
  *sum += V::acc_sum(s);
  *sumsq += V::acc_sum(q);
}

// Lanes past n: dy = 0 and x = c.
static void bwd_reduce_run(const T* x, const T* dy, size_t rows, size_t n, size_t stride, C c, double* sum_dy,
                           double* sum_dyxc) {
  typename V::Acc g = V::acc_zero(), p = V::acc_zero();
  reduce_runs<true>(dy, x, rows, n, stride, c, C(0), c, g, p, BwdStep());
  *sum_dy += V::acc_sum(g);
  *sum_dyxc += V::acc_sum(p);
}

// kAddRelu's residual is read only by the writers, run by run (stride apart): short runs give the
// hardware prefetcher too little to follow, so the writers request it kPrefetch values ahead in
// the walk over the runs, one line per vector, as the reductions do for their inputs.
template <Epilogue E>
static void prefetch_residual(const T* res, const Ahead& ah, size_t r, size_t i, size_t n, size_t stride) {
  if constexpr (E == Epilogue::kAddRelu) {
    const size_t j = i + ah.cols;
    const size_t wrap = j >= n ? 1 : 0;
    V::prefetch(reinterpret_cast<const T*>(reinterpret_cast<uintptr_t>(res) +
                                           ((r + ah.rows + wrap) * stride + j - wrap * n) * sizeof(T)));
  } else {
    (void)res, (void)ah, (void)r, (void)i, (void)n, (void)stride;
  }
}

template <Epilogue E>
static void affine_run(const T* x, T* y, const T* res, size_t rows, size_t n, size_t stride, C c, C a, C b,
                       bool stream, size_t next) {
  const Vec vc = V::set1(c), va = V::set1(a), vb = V::set1(b);
  const Ahead ah(n, stride);
  for (size_t r = 0; r < rows; ++r) {
    const T* p = x + r * stride;
    T* q = y + r * stride;
    const T* e = at(res, r * stride);
    size_t i = 0;
    if (stream) {
      i = head_to_align(q, n);
      if (i) V::store_tail(q, epilogue<E>(mul_add(V::sub(V::load_tail(p, i, c), vc), va, vb), e, i), i);
    }
    with_store_and_prefetch(stream, next, [&](auto store, auto pf) {
      // scalar math: y[i] = (x[i] - c) * a + b
      for (; i + W <= n; i += W) {
        pf(p + i);
        prefetch_residual<E>(res, ah, r, i, n, stride);
        store(q + i, epilogue<E>(mul_add(V::sub(V::load(p + i), vc), va, vb), at(e, i), W));
      }
    });
    if (i < n) {
      V::store_tail(q + i, epilogue<E>(mul_add(V::sub(V::load_tail(p + i, n - i, c), vc), va, vb), at(e, i), n - i),
                    n - i);
    }
  }
}

// The normalize pass of one piece fused with the statistics pass of the next: writes
// y = (x - c) * a + b over the runs at x, and adds the sums of x - k over the same runs `next`
// values further on, so that one pass over memory reads and writes at once, as a copy does.
// The sums are added block for block as stats_run adds them (a run's statistics must not depend
// on which kernel read it, nor on the output's alignment): the writes follow `h` values behind
// (h: the output's streaming head), each finishing on its own after the common blocks.
template <Epilogue E>
static void affine_stats_run(const T* x, T* y, const T* res, size_t rows, size_t n, size_t stride, C c, C a, C b,
                             bool stream, size_t next, C k, double* sum, double* sumsq) {
  const Vec vc = V::set1(c), va = V::set1(a), vb = V::set1(b), vk = V::set1(k);
  const Vec z = V::set1(C(0));
  typename V::Acc s = V::acc_zero(), sq = V::acc_zero();
  StatsStep f;
  const Ahead ah(n, stride);
  const T* xn = x + next;
  for (size_t r = 0; r < rows; ++r) {
    const T* p = x + r * stride;
    const T* pn = xn + r * stride;
    T* q = y + r * stride;
    const T* e = at(res, r * stride);
    const size_t h = stream ? head_to_align(q, n) : 0;
    if (h) V::store_tail(q, epilogue<E>(mul_add(V::sub(V::load_tail(p, h, c), vc), va, vb), e, h), h);
    size_t i = 0;  // statistics position; the writes are at h + i
    with_store_and_prefetch(stream, next + kPipelineAhead, [&](auto store, auto pf) {
      // scalar math: y[h + i] = (x[h + i] - c) * a + b; d = x[next + i] - k; sum += d; sumsq += d * d
      for (; h + i + kBlock <= n; i += kBlock) {
        Vec ps0 = z, pq0 = z, ps1 = z, pq1 = z;
        for (size_t u = 0; u < kBlock; u += 2 * W) {
          const size_t j = h + i + u;
          // Every line of the two vectors' next piece (AVX-512 float32: two lines).
          for (size_t l = 0; l < 2 * W; l += kLineValues) pf(p + j + l);
          prefetch_residual<E>(res, ah, r, j, n, stride);
          store(q + j, epilogue<E>(mul_add(V::sub(V::load(p + j), vc), va, vb), at(e, j), W));
          store(q + j + W, epilogue<E>(mul_add(V::sub(V::load(p + j + W), vc), va, vb), at(e, j + W), W));
          f(ps0, pq0, V::load(pn + i + u), z, vk);
          f(ps1, pq1, V::load(pn + i + u + W), z, vk);
        }
        V::acc_add(s, V::add(ps0, ps1));
        V::acc_add(sq, V::add(pq0, pq1));
      }
      // scalar math: y[j] = (x[j] - c) * a + b
      for (size_t j = h + i; j + W <= n; j += W) {
        prefetch_residual<E>(res, ah, r, j, n, stride);
        store(q + j, epilogue<E>(mul_add(V::sub(V::load(p + j), vc), va, vb), at(e, j), W));
      }
    });
    const size_t tail = (n - h - i) % W;
    if (tail) {
      V::store_tail(q + n - tail,
                    epilogue<E>(mul_add(V::sub(V::load_tail(p + n - tail, tail, c), vc), va, vb), at(e, n - tail), tail),
                    tail);
    }
    reduce_run_from<false>(xn, xn, ah, r, stride, i, n, k, k, k, s, sq, f);
  }
  *sum += V::acc_sum(s);
  *sumsq += V::acc_sum(sq);
}

template <Epilogue E>
static void bwd_dx_run(const T* x, const T* dy, T* dx, const T* res, size_t rows, size_t n, size_t stride, C c,
                       C k1, C k2, C k3, bool stream, size_t next) {
  dx_runs<E, false, true>(x, dy, nullptr, dx, res, nullptr, rows, n, stride, c, k1, k2, k3, stream, next);
}

// The dx pass over runs, with the backward prologue (kMask: dy gated by y, the gated dy written to
// dres unless null) and the training formula (kX) or evaluation mode's dy * k1 (x may be null).
template <Epilogue E, bool kMask, bool kX>
static void dx_runs(const T* x, const T* dy, const T* y, T* dx, const T* res, T* dres, size_t rows, size_t n,
                    size_t stride, C c, C k1, C k2, C k3, bool stream, size_t next) {
  const Vec vc = V::set1(c), v1 = V::set1(k1), v2 = V::set1(k2), v3 = V::set1(k3);
  for (size_t r = 0; r < rows; ++r) {
    const T* xp = at(x, r * stride);
    const T* gp = dy + r * stride;
    const T* mp = at(y, r * stride);
    T* dp = dres == nullptr ? nullptr : dres + r * stride;
    T* o = dx + r * stride;
    const T* e = at(res, r * stride);
    // dres streams with dx when their addresses agree modulo the streaming alignment (then dres is
    // aligned wherever dx is); otherwise plain stores.
    const bool nt_res = stream && dp != nullptr &&
                        (reinterpret_cast<uintptr_t>(dp) - reinterpret_cast<uintptr_t>(o)) % V::kStreamAlign == 0;
    auto lanes = [&](size_t j, size_t cnt) {
      return dx_lanes<kMask, kX>(at(xp, j), gp + j, at(mp, j), dp == nullptr ? nullptr : dp + j, cnt, c, vc, v1, v2,
                                 v3, nt_res);
    };
    size_t i = 0;
    if (stream) {
      i = head_to_align(o, n);
      if (i) V::store_tail(o, epilogue<E>(lanes(0, i), e, i), i);
    }
    with_store_and_prefetch(stream, next, [&](auto store, auto pf) {
      // scalar math: dx[i] = g * k1 + ((x[i] - c) * k2 + k3), g = dy[i] (kMask: y[i] <= 0 ? 0 : dy[i])
      for (; i + W <= n; i += W) {
        // The next piece's x only: leaving its dy to the reduction pass spreads the memory
        // traffic over both passes (bench/notes-from-code.md).
        pf(kX ? xp + i : gp + i);
        store(o + i, epilogue<E>(lanes(i, W), at(e, i), W));
      }
    });
    if (i < n) V::store_tail(o + i, epilogue<E>(lanes(i, n - i), at(e, i), n - i), n - i);
  }
}

// Backward through a fused ReLU (MaskedBackwardKernels): the prologue's reductions and dx passes.
// Lanes past n: dy = 0 (and y = 0, gating to 0) and x = c.
static void bwd_reduce_relu_run(const T* x, const T* dy, const T* y, size_t rows, size_t n, size_t stride, C c,
                                double* sum_dy, double* sum_dyxc) {
  typename V::Acc g = V::acc_zero(), p = V::acc_zero();
  reduce_runs<true, true>(dy, x, rows, n, stride, c, C(0), c, g, p, BwdStep(), y);
  *sum_dy += V::acc_sum(g);
  *sum_dyxc += V::acc_sum(p);
}

static void bwd_dx_relu_run(const T* x, const T* dy, const T* y, T* dx, T* dres, size_t rows, size_t n,
                            size_t stride, C c, C k1, C k2, C k3, bool stream, size_t next) {
  dx_runs<Epilogue::kNone, true, true>(x, dy, y, dx, nullptr, dres, rows, n, stride, c, k1, k2, k3, stream, next);
}

static void bwd_scale_relu_run(const T* dy, const T* y, T* dx, T* dres, size_t rows, size_t n, size_t stride, C k1,
                               bool stream, size_t next) {
  dx_runs<Epilogue::kNone, true, false>(nullptr, dy, y, dx, nullptr, dres, rows, n, stride, C(0), k1, C(0), C(0),
                                        stream, next);
}
