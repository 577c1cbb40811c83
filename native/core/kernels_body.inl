// Kernel bodies shared by every ISA translation unit. Included inside an anonymous namespace by
// kernels_<isa>.cc after it defines its vector traits, so each TU gets its own internal copy
// compiled with its own flags (no ODR sharing between ISAs).
//
// A traits class V provides, for element type T = typename V::T and W = V::W lanes:
//   Vec load(const T*), store(T*, Vec), set1(T), sub(Vec, Vec),
//   mul(a, b), fmadd(a, b, c) = a * b + c (fused or not: the reductions only; their sums differ
//   between ISAs by the order of additions anyway),
//   load_tail(p, n, fill): lanes [0, n) from p, the others = fill (n < W, reads only n values),
//   store_tail(p, v, n): writes lanes [0, n) only,
//   stream(p, v): non-temporal store to a kStreamAlign-aligned p. The kernels do not fence after
//   streaming (an sfence waits for every store in flight; once per 16 KiB span it cost a quarter
//   of the time of a 7x7 forward): the driver fences once per thread before the output is used,
//   see store_fence() in batchnorm.cc.
//   add(a, b), Acc acc_zero(); acc_add(s, v): widens v to float64 and adds it lane-wise into s;
//   acc_load(p) / acc_store(p, s): W float64 values in lane order; acc_sum(Acc): the sum of the lanes.
// The scalar TU instantiates the same bodies with W = 1: that is the scalar version of every
// vector loop, and the reference the microkernel tests compare each ISA against.
//
// Rounding in the reductions: x - k (x - c) is formed in T, exact near the shift. Its square
// (dy * (x - c)) and the sums of at most kPartial terms per lane are formed in T; those partial
// sums are then widened and accumulated in float64. For float32 that bounds the rounding of a
// partial at about kPartial ulps of it (~5e-7 relative), far below what a float32 output
// resolves, and the float64 accumulation keeps that bound for any tensor size. It is what makes
// the reductions fast: widening every value to float64 (cvtps2pd on the vector ports) capped the
// statistics pass at ~37 GB/s from L2 here, partial sums in float32 run at ~75 GB/s.
// Only the order of the additions differs between ISAs.
//
// The "run" kernels take `rows` runs of n values, run r starting at x + r * stride: one channel
// of an NCHW tensor is N runs of S values, C * S apart. Accumulators stay in registers across
// runs, and tails use masked loads and stores, so short runs (7x7 maps) cost no scalar loop.

template <class V>
struct Kernels {
  using T = typename V::T;
  using Vec = typename V::Vec;
  static constexpr size_t W = V::W;

  // The elementwise formulas (y, dx) round the product, then the sum, at every level: the scalar
  // level cannot fuse (no FMA before AVX2), so the vector levels do not either, and every level
  // writes the same bits from the same per-channel coefficients.
  static Vec mul_add(Vec a, Vec b, Vec c) { return V::add(V::mul(a, b), c); }
  static T mul_add1(T a, T b, T c) { return a * b + c; }

  // Elements before p reaches the streaming alignment (capped at n).
  static size_t head_to_align(const T* p, size_t n) {
    const size_t mis = reinterpret_cast<uintptr_t>(p) % V::kStreamAlign;
    const size_t head = mis == 0 ? 0 : (V::kStreamAlign - mis) / sizeof(T);
    return head < n ? head : n;
  }

  // Software prefetch for the reduction passes, which read from memory: their arithmetic per byte
  // is high enough that the out-of-order window alone keeps too few cache misses in flight to
  // reach the memory bandwidth (measured here: 10 GB/s instead of the 19 GB/s of a bare read
  // loop). Every cache line kPrefetchAheadBytes ahead is requested; past the end of a run the request
  // goes to the same distance into the next run.
  static constexpr size_t kPrefetch = kPrefetchAheadBytes / sizeof(T);

  // Branch-free on purpose: GCC 12 drops __builtin_prefetch under a data-dependent branch. The
  // target is kPrefetch values ahead in the walk over the runs (so for short runs, some runs
  // ahead at the same column), computed as an integer address: past the last run it points
  // outside the tensor, which a prefetch may do (it never faults).
  struct Ahead {
    size_t rows, cols;
    // Runs that follow each other in memory (stride == n) need no division: plain distance.
    Ahead(size_t n, size_t stride)
        : rows(n == 0 || stride == n ? 0 : kPrefetch / n), cols(n == 0 || stride == n ? kPrefetch : kPrefetch % n) {}
  };
  static void prefetch_ahead(const T* x, const Ahead& ah, size_t r, size_t i, size_t n, size_t stride) {
    const size_t j = i + ah.cols;
    const size_t wrap = j >= n ? 1 : 0;
    const size_t row = r + ah.rows + wrap, col = j - wrap * n;
    const uintptr_t a = reinterpret_cast<uintptr_t>(x) + (row * stride + col) * sizeof(T);
    for (size_t b = 0; b < 2 * W * sizeof(T); b += 64) V::prefetch(reinterpret_cast<const T*>(a + b));
  }

  // Prefetch (into L2) the line `next` values past p: the elementwise passes request what the
  // pass after them will read (the next channel, or further along the walk), so that reading from
  // memory overlaps their writing. An integer address, as above: it may point past the tensor.
  static void prefetch_next(const T* p, size_t next) {
    V::prefetch(reinterpret_cast<const T*>(reinterpret_cast<uintptr_t>(p) + next * sizeof(T)));
  }

  // Calls loop(store, pf) with the store (streaming or plain) and the prefetch (`next` values on,
  // or none) chosen once, outside the vector loop: each combination is its own loop, and a pass
  // with nothing to prefetch carries no prefetch instruction (one that hits the line about to be
  // loaded still costs a fill buffer and upsets the hardware prefetcher on data not in cache).
  template <class Loop>
  static void with_store_and_prefetch(bool stream, size_t next, Loop&& loop) {
    auto plain = [](T* d, Vec v) { V::store(d, v); };
    auto nt = [](T* d, Vec v) { V::stream(d, v); };
    auto pf = [next](const T* p) { prefetch_next(p, next); };
    auto none = [](const T*) {};
    if (stream) {
      if (next != 0) loop(nt, pf); else loop(nt, none);
    } else {
      if (next != 0) loop(plain, pf); else loop(plain, none);
    }
  }

  // The two reductions, one vector at a time into partial sums (ps, pq) in T, with the channel's
  // shift vs. Every reduction loop (runs, groups, rows) takes one of them.
  // scalar math: d = x[i] - k; sum += d; sumsq += d * d
  struct StatsStep {
    void operator()(Vec& ps, Vec& pq, Vec x, Vec, Vec vk) const {
      const Vec d = V::sub(x, vk);
      ps = V::add(ps, d);
      pq = V::fmadd(d, d, pq);
    }
  };
  // scalar math: sum_dy += dy[i]; sum_dyxc += dy[i] * (x[i] - c)
  struct BwdStep {
    void operator()(Vec& pg, Vec& pp, Vec dy, Vec x, Vec vc) const {
      pg = V::add(pg, dy);
      pp = V::fmadd(dy, V::sub(x, vc), pp);
    }
  };

  // The reduction loop over `rows` runs of n values, stride apart, of one or two tensors (a, b;
  // b == a for one): f(ps, pq, va, vb, vshift) adds a vector of each into partial sums (ps, pq)
  // in T. Every kPartial vectors, and at the end of each run,
  // the partials are widened into the float64 accumulators (s, q). Lanes past n load the fills.
  static constexpr size_t kPartial = 8;
  static constexpr size_t kBlock = kPartial * W;  // values per widening
  // kTwo: b is another tensor, prefetched too (a template parameter: no branch near a prefetch).
  template <bool kTwo, class F>
  static void reduce_runs(const T* a, const T* b, size_t rows, size_t n, size_t stride, T shift, T fill_a,
                          T fill_b, typename V::Acc& s, typename V::Acc& q, F&& f) {
    const Ahead ah(n, stride);
    for (size_t r = 0; r < rows; ++r) reduce_run_from<kTwo>(a, b, ah, r, stride, 0, n, shift, fill_a, fill_b, s, q, f);
  }

  // Run r of reduce_runs from position i (a multiple of kBlock) on: the blocks before i were
  // added by the caller in the same order (see affine_stats_run), so the sums do not depend on
  // which kernel read the run.
  template <bool kTwo, class F>
  static void reduce_run_from(const T* a, const T* b, const Ahead& ah, size_t r, size_t stride, size_t i, size_t n,
                              T shift, T fill_a, T fill_b, typename V::Acc& s, typename V::Acc& q, F& f) {
    const Vec vs = V::set1(shift);
    const Vec z = V::set1(T(0));
    const T* pa = a + r * stride;
    const T* pb = b + r * stride;
    Vec ps0 = z, pq0 = z, ps1 = z, pq1 = z;
    auto flush = [&] {
      V::acc_add(s, V::add(ps0, ps1));
      V::acc_add(q, V::add(pq0, pq1));
      ps0 = pq0 = ps1 = pq1 = z;
    };
    // scalar math: that of f (StatsStep or BwdStep above), one vector per call
    for (; i + kBlock <= n; i += kBlock) {
      for (size_t u = 0; u < kBlock; u += 2 * W) {
        prefetch_ahead(a, ah, r, i + u, n, stride);
        if (kTwo) prefetch_ahead(b, ah, r, i + u, n, stride);
        f(ps0, pq0, V::load(pa + i + u), V::load(pb + i + u), vs);
        f(ps1, pq1, V::load(pa + i + u + W), V::load(pb + i + u + W), vs);
      }
      flush();
    }
    add_rest<kTwo, true>(a, b, ah, r, stride, i, n, vs, fill_a, fill_b, ps0, pq0, ps1, pq1, f);
    flush();
  }

  // The end of run r from position i on, less than a block: pairs of vectors into the two pairs
  // of partials, then one vector, then the masked tail (lanes past n load the fills). Adds to the
  // partials without widening them. kPf: prefetch ahead as it goes (runs read from memory;
  // the group reductions read from L2).
  template <bool kTwo, bool kPf, class F>
  static void add_rest(const T* a, const T* b, const Ahead& ah, size_t r, size_t stride, size_t i, size_t n, Vec vs,
                       T fill_a, T fill_b, Vec& ps0, Vec& pq0, Vec& ps1, Vec& pq1, F& f) {
    const T* pa = a + r * stride;
    const T* pb = b + r * stride;
    // scalar math: that of f, one vector per call
    for (; i + 2 * W <= n; i += 2 * W) {
      if (kPf) prefetch_ahead(a, ah, r, i, n, stride);
      if (kPf && kTwo) prefetch_ahead(b, ah, r, i, n, stride);
      f(ps0, pq0, V::load(pa + i), V::load(pb + i), vs);
      f(ps1, pq1, V::load(pa + i + W), V::load(pb + i + W), vs);
    }
    if (i + W <= n) {
      f(ps0, pq0, V::load(pa + i), V::load(pb + i), vs);
      i += W;
    }
    if (i < n) f(ps1, pq1, V::load_tail(pa + i, n - i, fill_a), V::load_tail(pb + i, n - i, fill_b), vs);
  }

  // Lanes past n load k, so they add 0.
  static void stats_run(const T* x, size_t rows, size_t n, size_t stride, T k, double* sum,
                        double* sumsq) {
    typename V::Acc s = V::acc_zero(), q = V::acc_zero();
    reduce_runs<false>(x, x, rows, n, stride, k, k, k, s, q, StatsStep());
    *sum += V::acc_sum(s);
    *sumsq += V::acc_sum(q);
  }

  static void affine_run(const T* x, T* y, size_t rows, size_t n, size_t stride, T c, T a, T b,
                         bool stream, size_t next) {
    const Vec vc = V::set1(c), va = V::set1(a), vb = V::set1(b);
    for (size_t r = 0; r < rows; ++r) {
      const T* p = x + r * stride;
      T* q = y + r * stride;
      size_t i = 0;
      if (stream) {
        i = head_to_align(q, n);
        if (i) V::store_tail(q, mul_add(V::sub(V::load_tail(p, i, c), vc), va, vb), i);
      }
      with_store_and_prefetch(stream, next, [&](auto store, auto pf) {
        // scalar math: y[i] = (x[i] - c) * a + b
        for (; i + W <= n; i += W) {
          pf(p + i);
          store(q + i, mul_add(V::sub(V::load(p + i), vc), va, vb));
        }
      });
      if (i < n) V::store_tail(q + i, mul_add(V::sub(V::load_tail(p + i, n - i, c), vc), va, vb), n - i);
    }
  }

  // The normalize pass of one piece fused with the statistics pass of the next: writes
  // y = (x - c) * a + b over the runs at x, and adds the sums of x - k over the same runs `next`
  // values further on, so that one pass over memory reads and writes at once, as a copy does.
  // The sums are added block for block as stats_run adds them (a run's statistics must not depend
  // on which kernel read it, nor on the output's alignment): the writes follow `h` values behind
  // (h: the output's streaming head), each finishing on its own after the common blocks.
  static void affine_stats_run(const T* x, T* y, size_t rows, size_t n, size_t stride, T c, T a, T b,
                               bool stream, size_t next, T k, double* sum, double* sumsq) {
    const Vec vc = V::set1(c), va = V::set1(a), vb = V::set1(b), vk = V::set1(k);
    const Vec z = V::set1(T(0));
    typename V::Acc s = V::acc_zero(), sq = V::acc_zero();
    StatsStep f;
    const Ahead ah(n, stride);
    const T* xn = x + next;
    for (size_t r = 0; r < rows; ++r) {
      const T* p = x + r * stride;
      const T* pn = xn + r * stride;
      T* q = y + r * stride;
      const size_t h = stream ? head_to_align(q, n) : 0;
      if (h) V::store_tail(q, mul_add(V::sub(V::load_tail(p, h, c), vc), va, vb), h);
      size_t i = 0;  // statistics position; the writes are at h + i
      with_store_and_prefetch(stream, next + kPrefetch, [&](auto store, auto pf) {
        // scalar math: y[h + i] = (x[h + i] - c) * a + b; d = x[next + i] - k; sum += d; sumsq += d * d
        for (; h + i + kBlock <= n; i += kBlock) {
          Vec ps0 = z, pq0 = z, ps1 = z, pq1 = z;
          for (size_t u = 0; u < kBlock; u += 2 * W) {
            pf(p + h + i + u);
            store(q + h + i + u, mul_add(V::sub(V::load(p + h + i + u), vc), va, vb));
            store(q + h + i + u + W, mul_add(V::sub(V::load(p + h + i + u + W), vc), va, vb));
            f(ps0, pq0, V::load(pn + i + u), z, vk);
            f(ps1, pq1, V::load(pn + i + u + W), z, vk);
          }
          V::acc_add(s, V::add(ps0, ps1));
          V::acc_add(sq, V::add(pq0, pq1));
        }
        // scalar math: y[j] = (x[j] - c) * a + b
        for (size_t j = h + i; j + W <= n; j += W) store(q + j, mul_add(V::sub(V::load(p + j), vc), va, vb));
      });
      const size_t tail = (n - h - i) % W;
      if (tail) V::store_tail(q + n - tail, mul_add(V::sub(V::load_tail(p + n - tail, tail, c), vc), va, vb), tail);
      reduce_run_from<false>(xn, xn, ah, r, stride, i, n, k, k, k, s, sq, f);
    }
    *sum += V::acc_sum(s);
    *sumsq += V::acc_sum(sq);
  }

  // Lanes past n: dy = 0 and x = c.
  static void bwd_reduce_run(const T* x, const T* dy, size_t rows, size_t n, size_t stride, T c,
                             double* sum_dy, double* sum_dyxc) {
    typename V::Acc g = V::acc_zero(), p = V::acc_zero();
    reduce_runs<true>(dy, x, rows, n, stride, c, T(0), c, g, p, BwdStep());
    *sum_dy += V::acc_sum(g);
    *sum_dyxc += V::acc_sum(p);
  }

  static Vec dx_vec(Vec xv, Vec gv, Vec vc, Vec v1, Vec v2, Vec v3) {
    return mul_add(gv, v1, mul_add(V::sub(xv, vc), v2, v3));
  }

  static void bwd_dx_run(const T* x, const T* dy, T* dx, size_t rows, size_t n, size_t stride, T c,
                         T k1, T k2, T k3, bool stream, size_t next) {
    const Vec vc = V::set1(c), v1 = V::set1(k1), v2 = V::set1(k2), v3 = V::set1(k3);
    for (size_t r = 0; r < rows; ++r) {
      const T* xp = x + r * stride;
      const T* gp = dy + r * stride;
      T* o = dx + r * stride;
      size_t i = 0;
      if (stream) {
        i = head_to_align(o, n);
        if (i) V::store_tail(o, dx_vec(V::load_tail(xp, i, c), V::load_tail(gp, i, T(0)), vc, v1, v2, v3), i);
      }
      with_store_and_prefetch(stream, next, [&](auto store, auto pf) {
        // scalar math: dx[i] = dy[i] * k1 + ((x[i] - c) * k2 + k3)
        for (; i + W <= n; i += W) {
          // Prefetch the next piece's x only. This pass already reads x and dy and writes dx at a
          // core's memory bandwidth; leaving the next dy to the reduction pass (which then reads
          // it from memory, and x from L2) spreads the traffic over both passes: backward on
          // 32x256x56x56 went from 0.77 to 0.83 of a copy here (2 threads).
          pf(xp + i);
          store(o + i, dx_vec(V::load(xp + i), V::load(gp + i), vc, v1, v2, v3));
        }
      });
      if (i < n) {
        V::store_tail(o + i, dx_vec(V::load_tail(xp + i, n - i, c), V::load_tail(gp + i, n - i, T(0)), vc, v1, v2, v3),
                      n - i);
      }
    }
  }

  // Group reductions: `runs` channels (j) by `rows` samples (r); sample r's runs are contiguous at
  // x + r * stride + j * n. The group is in L2 when they run (the driver brings it there), so they
  // walk it channel by channel across the samples, with the channel's sums in registers: a short
  // run (a 7x7 map is 49 values) costs a few vector adds, the partial sums in T span several runs
  // (still at most kPartial terms per lane), and the horizontal reduction happens once per channel.
  // Measured here (32x2048x7x7 training, 2 threads): 0.56 -> 0.64 of a copy, against a walk in
  // memory order that kept every channel's float64 sums in memory.
  // kTwo: as in reduce_runs (a = dy, b = x); lanes past n add 0 (a loads the shift or 0, b the shift).
  template <bool kTwo, class F>
  static void reduce_group(const T* a, const T* b, size_t rows, size_t stride, size_t runs, size_t n, const T* shift,
                           double* out_s, double* out_q, F&& f) {
    // A run adds at most `per` terms per lane to each of the two partials (see below).
    const size_t per = ((n + W - 1) / W + 1) / 2;
    const Ahead ah(n, stride);
    const Vec z = V::set1(T(0));
    for (size_t j = 0; j < runs; ++j) {
      const T k = shift[j], fill_a = kTwo ? T(0) : k;
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

  static void stats_group(const T* x, size_t rows, size_t stride, size_t runs, size_t n, const T* k,
                          double* sum, double* sumsq) {
    reduce_group<false>(x, x, rows, stride, runs, n, k, sum, sumsq, StatsStep());
  }

  // The group's runs are one contiguous span: written as such, full vectors may straddle two runs
  // (the first k lanes take run j's coefficients, the rest run j + 1's), so the output can be
  // streamed in whole lines. Runs shorter than a vector go run by run, without streaming.
  static void affine_group(const T* x, T* y, size_t runs, size_t n, const T* c, const T* a, const T* b,
                           bool stream, size_t next) {
    if (n < W || !stream) {
      for (size_t j = 0; j < runs; ++j) affine_run(x + j * n, y + j * n, 1, n, n, c[j], a[j], b[j], false, next);
      return;
    }
    const size_t total = runs * n;
    // The head (up to the streaming alignment) and the tail are partial vectors with masked loads
    // and stores: with n >= W, the head lies in the first run and the tail in the last.
    auto part = [&](size_t at, size_t cnt, size_t jj) {
      V::store_tail(y + at, mul_add(V::sub(V::load_tail(x + at, cnt, c[jj]), V::set1(c[jj])), V::set1(a[jj]), V::set1(b[jj])), cnt);
    };
    size_t i = head_to_align(y, total);
    if (i) part(0, i, 0);
    size_t j = 0, off = i;  // run and offset in it of position i
    with_store_and_prefetch(true, next, [&](auto store, auto pf) {
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
        store(y + i, mul_add(V::sub(V::load(x + i), vc), va, vb));
        off += W;
        if (off >= n) off -= n, ++j;
      }
    });
    if (i < total) part(i, total - i, runs - 1);
  }

  static void bwd_reduce_group(const T* x, const T* dy, size_t rows, size_t stride, size_t runs, size_t n,
                               const T* c, double* sum_dy, double* sum_dyxc) {
    reduce_group<true>(dy, x, rows, stride, runs, n, c, sum_dy, sum_dyxc, BwdStep());
  }

  // As affine_group: one span, vectors straddling two runs, streamed when asked.
  static void bwd_dx_group(const T* x, const T* dy, T* dx, size_t runs, size_t n, const T* c, const T* k1,
                           const T* k2, const T* k3, bool stream, size_t next) {
    if (n < W || !stream) {
      for (size_t j = 0; j < runs; ++j) {
        bwd_dx_run(x + j * n, dy + j * n, dx + j * n, 1, n, n, c[j], k1[j], k2[j], k3[j], false, next);
      }
      return;
    }
    const size_t total = runs * n;
    // Head and tail as masked partial vectors, as in affine_group.
    auto part = [&](size_t at, size_t cnt, size_t jj) {
      V::store_tail(dx + at,
                    dx_vec(V::load_tail(x + at, cnt, c[jj]), V::load_tail(dy + at, cnt, T(0)), V::set1(c[jj]),
                           V::set1(k1[jj]), V::set1(k2[jj]), V::set1(k3[jj])),
                    cnt);
    };
    size_t i = head_to_align(dx, total);
    if (i) part(0, i, 0);
    size_t j = 0, off = i;  // run and offset in it of position i
    with_store_and_prefetch(true, next, [&](auto store, auto pf) {
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
        store(dx + i, dx_vec(V::load(x + i), V::load(dy + i), vc, v1, v2, v3));
        off += W;
        if (off >= n) off -= n, ++j;
      }
    });
    if (i < total) part(i, total - i, runs - 1);
  }

  // Rows: channel fastest, so the lanes of a vector are channels and nothing is reduced across
  // lanes. The reductions walk strips of kPartial rows; in a strip, each block of kRowBlock vectors
  // of channels keeps its partial sums (in T) in registers over the strip's rows, then adds them
  // into the float64 per-channel sums. Memory is walked row by row within a strip (a strip of a
  // [256, 1024] float32 tensor is 32 KiB). The elementwise ones (affine, dx) are plain loops the
  // compiler vectorizes with this TU's ISA; their scalar math is the loop body itself.
  static constexpr size_t kRowBlock = 4;

  // Adds the partial sums v (lanes = channels j, j + 1, ...) into the float64 sums out[j...]:
  // the first cnt lanes (cnt == W: a whole vector, through the float64 accumulator type).
  static void add_lanes(double* out, Vec v, size_t cnt) {
    if (cnt == W) {
      typename V::Acc t = V::acc_load(out);
      V::acc_add(t, v);
      V::acc_store(out, t);
      return;
    }
    alignas(64) T lanes[W];
    V::store(lanes, v);
    for (size_t l = 0; l < cnt; ++l) out[l] += double(lanes[l]);
  }

  // f(ps, pq, va, vb, vshift): adds one vector of channels of a (and b) into the partials. Lanes
  // past ch load 0 (shift too) and must add 0.
  template <bool kTwo, class F>
  static void reduce_rows(const T* a, const T* b, size_t rows, size_t ch, const T* shift, double* out_s,
                          double* out_q, F&& f) {
    for (size_t r0 = 0; r0 < rows; r0 += kPartial) {
      const size_t r1 = rows - r0 < kPartial ? rows : r0 + kPartial;
      for (size_t j0 = 0; j0 < ch; j0 += kRowBlock * W) {
        size_t cnt[kRowBlock];
        Vec sh[kRowBlock], ps[kRowBlock], pq[kRowBlock];
#pragma GCC unroll 8
        for (size_t u = 0; u < kRowBlock; ++u) {
          const size_t at = j0 + u * W;
          cnt[u] = at >= ch ? 0 : (ch - at < W ? ch - at : W);
          sh[u] = V::load_tail(shift + at, cnt[u], T(0));
          ps[u] = pq[u] = V::set1(T(0));
        }
        if (j0 + kRowBlock * W <= ch) {
          for (size_t r = r0; r < r1; ++r) {
#pragma GCC unroll 8
            for (size_t u = 0; u < kRowBlock; ++u) {
              const size_t q = r * ch + j0 + u * W;
              f(ps[u], pq[u], V::load(a + q), kTwo ? V::load(b + q) : Vec(), sh[u]);
            }
          }
        } else {
          for (size_t r = r0; r < r1; ++r) {
            for (size_t u = 0; u < kRowBlock; ++u) {
              const size_t q = r * ch + j0 + u * W;
              f(ps[u], pq[u], V::load_tail(a + q, cnt[u], T(0)), kTwo ? V::load_tail(b + q, cnt[u], T(0)) : Vec(), sh[u]);
            }
          }
        }
        for (size_t u = 0; u < kRowBlock; ++u) {
          if (cnt[u] == 0) break;
          add_lanes(out_s + j0 + u * W, ps[u], cnt[u]);
          add_lanes(out_q + j0 + u * W, pq[u], cnt[u]);
        }
      }
    }
  }

  static void stats_rows(const T* x, size_t rows, size_t ch, const T* k, double* sum,
                         double* sumsq) {
    reduce_rows<false>(x, x, rows, ch, k, sum, sumsq, StatsStep());
  }

  static void affine_rows(const T* x, T* y, size_t rows, size_t ch, const T* c, const T* a,
                          const T* b) {
    for (size_t r = 0; r < rows; ++r, x += ch, y += ch) {
      for (size_t j = 0; j < ch; ++j) y[j] = mul_add1(x[j] - c[j], a[j], b[j]);
    }
  }

  static void bwd_reduce_rows(const T* x, const T* dy, size_t rows, size_t ch, const T* c,
                              double* sum_dy, double* sum_dyxc) {
    reduce_rows<true>(dy, x, rows, ch, c, sum_dy, sum_dyxc, BwdStep());
  }

  static void bwd_dx_rows(const T* x, const T* dy, T* dx, size_t rows, size_t ch, const T* c,
                          const T* k1, const T* k2, const T* k3) {
    for (size_t r = 0; r < rows; ++r, x += ch, dy += ch, dx += ch) {
      for (size_t j = 0; j < ch; ++j) {
        dx[j] = mul_add1(dy[j], k1[j], mul_add1(x[j] - c[j], k2[j], k3[j]));
      }
    }
  }

  static constexpr KernelTable<T> table() {
    return KernelTable<T>{stats_run,   affine_run,   affine_stats_run, bwd_reduce_run,   bwd_dx_run,
                          stats_group, affine_group, bwd_reduce_group, bwd_dx_group,
                          stats_rows,  affine_rows,  bwd_reduce_rows,  bwd_dx_rows};
  }
};
