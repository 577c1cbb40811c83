// Helpers of every kernel family. Included inside struct Kernels<V> (kernels_body.inl).

// The elementwise formulas (y, dx) round the product, then the sum, at every level: the scalar
// level cannot fuse (no FMA before AVX2), so the vector levels do not either, and every level
// writes the same bits from the same per-channel coefficients.
static Vec mul_add(Vec a, Vec b, Vec c) { return V::add(V::mul(a, b), c); }
static C mul_add1(C a, C b, C c) { return a * b + c; }

// Elements before p reaches an `align`-byte boundary, by default the streaming alignment (capped at n).
static size_t head_to_align(const T* p, size_t n, size_t align = V::kStreamAlign) {
  const size_t mis = reinterpret_cast<uintptr_t>(p) % align;
  const size_t head = mis == 0 ? 0 : (align - mis) / sizeof(T);
  return head < n ? head : n;
}

// The reductions prefetch in software: their arithmetic per byte is high enough that the
// out-of-order window alone keeps too few cache misses in flight to reach memory bandwidth. Every
// cache line kPrefetchAheadBytes ahead is requested; past the end of a run the request goes to
// the same distance into the next run.
static constexpr size_t kPrefetch = kPrefetchAheadBytes / sizeof(T);
// The pipelined normalize pass's distance (kernels.h: kPipelineAheadBytes), in values.
static constexpr size_t kPipelineAhead = sizeof(T) >= 4 ? kPipelineAheadBytes / sizeof(T) : kPrefetch;
// Values in a 64-byte cache line: a walk requests each line it will read once.
static constexpr size_t kLineValues = 64 / sizeof(T);

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
  for (size_t b = 0; b < 2 * W * sizeof(T); b += kLineValues * sizeof(T)) V::prefetch(reinterpret_cast<const T*>(a + b));
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
// Always inlined: out of line (GCC 12 left the 16-bit dx writers' so, their stores being longer)
// the loop reads its captures and writes its index through memory on every vector.
template <class Loop>
[[gnu::always_inline]] static inline void with_store_and_prefetch(bool stream, size_t next, Loop&& loop) {
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

// The epilogue of the writers: what happens to cnt lanes (cnt == W: a whole vector) of an affine
// or dx result before the store; `res` points at the epilogue's operand for those lanes (the
// residual of kAddRelu). A compile-time choice, so kNone is the bare store. The ReLU is
// relu_lanes (v < 0 ? 0 : v: NaN and -0 pass), from the ISA's file, the residual added first in
// the compute type (one rounding into the storage type, at the store).
template <Epilogue E>
static Vec epilogue(Vec v, const T* res, size_t cnt) {
  if constexpr (E == Epilogue::kNone) {
    (void)res;
    (void)cnt;
    return v;
  } else if constexpr (E == Epilogue::kRelu) {
    (void)res;
    (void)cnt;
    return relu_lanes(v);
  } else {
    static_assert(E == Epilogue::kAddRelu, "an epilogue without a case here");
    return relu_lanes(V::add(v, cnt == W ? V::load(res) : V::load_tail(res, cnt, C(0))));
  }
}
// The same on one value, for the rows writers (plain loops the compiler vectorizes).
static C relu1(C v) { return v < C(0) ? C(0) : v; }
template <Epilogue E>
static C epilogue1(C v, const T* res) {
  if constexpr (E == Epilogue::kNone) {
    (void)res;
    return v;
  } else if constexpr (E == Epilogue::kRelu) {
    (void)res;
    return relu1(v);
  } else {
    static_assert(E == Epilogue::kAddRelu, "an epilogue without a case here");
    return relu1(v + C(*res));
  }
}

// The backward prologue through a fused ReLU: dy gated by the forward's output y, dy where
// !(y <= 0) else 0 (PyTorch's threshold_backward: 0 at exactly 0, NaN in y passes dy); gate_lanes
// is the ISA file's. kMask false: dy as it is, m unused. Tail lanes of y load 0, so they gate to 0.
template <bool kMask>
static Vec load_dy(const T* p, const T* m) {
  if constexpr (kMask) return gate_lanes(V::load(p), V::load(m));
  (void)m;
  return V::load(p);
}
template <bool kMask>
static Vec load_dy_tail(const T* p, const T* m, size_t cnt, C fill) {
  if constexpr (kMask) return gate_lanes(V::load_tail(p, cnt, fill), V::load_tail(m, cnt, C(0)));
  (void)m;
  return V::load_tail(p, cnt, fill);
}
static C gate1(C g, C y) { return y <= C(0) ? C(0) : g; }
// The operand pointer `i` values on, or null (kNone has none).
static const T* at(const T* res, size_t i) { return res == nullptr ? nullptr : res + i; }

// The two reductions, one vector at a time into partial sums (ps, pq) in the compute type, with
// the channel's shift vs. Every reduction loop (runs, groups, rows) takes one of them.
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

// dx of one vector: dy * k1 + ((x - c) * k2 + k3)
static Vec dx_vec(Vec xv, Vec gv, Vec vc, Vec v1, Vec v2, Vec v3) {
  return mul_add(gv, v1, mul_add(V::sub(xv, vc), v2, v3));
}

// dx of cnt lanes (cnt == W: a whole vector) at xp, gp: dy through the prologue (kMask: gated by
// the y at mp, the gated dy also stored at dp unless null, a whole vector streamed when nt_res),
// then dy * k1 + ((x - c) * k2 + k3), or without kX (evaluation mode) dy * k1, x not read (an
// infinite x would give 0 * inf = NaN).
template <bool kMask, bool kX>
static Vec dx_lanes(const T* xp, const T* gp, const T* mp, T* dp, size_t cnt, C c, Vec vc, Vec v1, Vec v2, Vec v3,
                    bool nt_res = false) {
  const Vec g = cnt == W ? load_dy<kMask>(gp, mp) : load_dy_tail<kMask>(gp, mp, cnt, C(0));
  if constexpr (kMask) {
    if (dp != nullptr) {
      if (cnt != W) V::store_tail(dp, g, cnt);
      else if (nt_res) V::stream(dp, g);
      else V::store(dp, g);
    }
  }
  (void)nt_res;
  (void)dp;
  if constexpr (!kX) {
    (void)xp, (void)c, (void)vc, (void)v2, (void)v3;
    return V::mul(g, v1);
  } else {
    return dx_vec(cnt == W ? V::load(xp) : V::load_tail(xp, cnt, c), g, vc, v1, v2, v3);
  }
}

// Partial sums take at most kPartial vectors per lane before they are widened into float64.
static constexpr size_t kPartial = 8;
static constexpr size_t kBlock = kPartial * W;  // values per widening
