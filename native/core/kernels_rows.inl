// Rows kernels: channel fastest, so the lanes of a vector are channels and nothing is reduced
// across lanes. The reductions walk strips of kPartial rows; in a strip, each block of kRowBlock
// vectors of channels keeps its partial sums in registers over the strip's rows, then adds them
// into the float64 per-channel sums. Memory is walked row by row within a strip (a strip of a
// [256, 1024] float32 tensor is 32 KiB). The writers (affine, dx) are plain loops the compiler
// vectorizes with this TU's ISA; their scalar math is the loop body itself. Included inside
// struct Kernels<V> (kernels_body.inl).
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
  alignas(64) C lanes[W];
  V::store(lanes, v);
  for (size_t l = 0; l < cnt; ++l) out[l] += double(lanes[l]);
}

// f(ps, pq, va, vb, vshift): adds one vector of channels of a (and b) into the partials. Lanes
// past ch load 0 (shift too) and must add 0. kMask: a (dy) gated by m (y), as in reduce_runs.
template <bool kTwo, bool kMask = false, class F>
static void reduce_rows(const T* a, const T* b, size_t rows, size_t ch, const C* shift, double* out_s, double* out_q,
                        F&& f, const T* m = nullptr) {
  for (size_t r0 = 0; r0 < rows; r0 += kPartial) {
    const size_t r1 = rows - r0 < kPartial ? rows : r0 + kPartial;
    for (size_t j0 = 0; j0 < ch; j0 += kRowBlock * W) {
      size_t cnt[kRowBlock];
      Vec sh[kRowBlock], ps[kRowBlock], pq[kRowBlock];
#pragma GCC unroll 8
      for (size_t u = 0; u < kRowBlock; ++u) {
        const size_t at_ = j0 + u * W;
        cnt[u] = at_ >= ch ? 0 : (ch - at_ < W ? ch - at_ : W);
        sh[u] = V::load_tail(shift + at_, cnt[u], C(0));
        ps[u] = pq[u] = V::set1(C(0));
      }
      if (j0 + kRowBlock * W <= ch) {
        // scalar math: that of f for channels j0 + u * W + lane of row r
        for (size_t r = r0; r < r1; ++r) {
#pragma GCC unroll 8
          for (size_t u = 0; u < kRowBlock; ++u) {
            const size_t q = r * ch + j0 + u * W;
            f(ps[u], pq[u], load_dy<kMask>(a + q, at(m, q)), kTwo ? V::load(b + q) : Vec(), sh[u]);
          }
        }
      } else {
        // scalar math: the same, lanes past ch loading 0
        for (size_t r = r0; r < r1; ++r) {
          for (size_t u = 0; u < kRowBlock; ++u) {
            const size_t q = r * ch + j0 + u * W;
            f(ps[u], pq[u], load_dy_tail<kMask>(a + q, at(m, q), cnt[u], C(0)),
              kTwo ? V::load_tail(b + q, cnt[u], C(0)) : Vec(), sh[u]);
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

static void stats_rows(const T* x, size_t rows, size_t ch, const C* k, double* sum, double* sumsq) {
  reduce_rows<false>(x, x, rows, ch, k, sum, sumsq, StatsStep());
}

static void bwd_reduce_rows(const T* x, const T* dy, size_t rows, size_t ch, const C* c, double* sum_dy,
                            double* sum_dyxc) {
  reduce_rows<true>(dy, x, rows, ch, c, sum_dy, sum_dyxc, BwdStep());
}

template <Epilogue E>
static void affine_rows(const T* x, T* y, const T* res, size_t rows, size_t ch, const C* c, const C* a, const C* b) {
  if constexpr (!std::is_same<T, C>::value) return affine_rows_narrow<E>(x, y, res, rows, ch, c, a, b);
  for (size_t r = 0; r < rows; ++r, x += ch, y += ch, res = at(res, ch)) {
    // scalar math: y[j] = (x[j] - c[j]) * a[j] + b[j] (the compiler vectorizes this loop itself)
    for (size_t j = 0; j < ch; ++j) y[j] = T(epilogue1<E>(mul_add1(C(x[j]) - c[j], a[j], b[j]), at(res, j)));
  }
}

template <Epilogue E>
static void bwd_dx_rows(const T* x, const T* dy, T* dx, const T* res, size_t rows, size_t ch, const C* c,
                        const C* k1, const C* k2, const C* k3) {
  if constexpr (!std::is_same<T, C>::value) return bwd_dx_rows_narrow<E>(x, dy, dx, res, rows, ch, c, k1, k2, k3);
  for (size_t r = 0; r < rows; ++r, x += ch, dy += ch, dx += ch, res = at(res, ch)) {
    // scalar math: dx[j] = dy[j] * k1[j] + ((x[j] - c[j]) * k2[j] + k3[j]) (vectorized by the compiler)
    for (size_t j = 0; j < ch; ++j) {
      dx[j] = T(epilogue1<E>(mul_add1(C(dy[j]), k1[j], mul_add1(C(x[j]) - c[j], k2[j], k3[j])), at(res, j)));
    }
  }
}

// 16-bit storage: the rows writers through the traits' converting loads and stores (the compiler
// does not vectorize the scalar conversion rule); the same formula, so the same bits at every level.
template <Epilogue E>
static void affine_rows_narrow(const T* x, T* y, const T* res, size_t rows, size_t ch, const C* c, const C* a,
                               const C* b) {
  for (size_t r = 0; r < rows; ++r, x += ch, y += ch, res = at(res, ch)) {
    size_t j = 0;
    // scalar math: y[j] = (x[j] - c[j]) * a[j] + b[j]
    for (; j + W <= ch; j += W) {
      const Vec v = mul_add(V::sub(V::load(x + j), V::load(c + j)), V::load(a + j), V::load(b + j));
      V::store(y + j, epilogue<E>(v, at(res, j), W));
    }
    if (j < ch) {
      const size_t n = ch - j;
      const Vec v = mul_add(V::sub(V::load_tail(x + j, n, C(0)), V::load_tail(c + j, n, C(0))), V::load_tail(a + j, n, C(0)),
                            V::load_tail(b + j, n, C(0)));
      V::store_tail(y + j, epilogue<E>(v, at(res, j), n), n);
    }
  }
}

template <Epilogue E>
static void bwd_dx_rows_narrow(const T* x, const T* dy, T* dx, const T* res, size_t rows, size_t ch, const C* c,
                               const C* k1, const C* k2, const C* k3) {
  for (size_t r = 0; r < rows; ++r, x += ch, dy += ch, dx += ch, res = at(res, ch)) {
    size_t j = 0;
    // scalar math: dx[j] = dy[j] * k1[j] + ((x[j] - c[j]) * k2[j] + k3[j])
    for (; j + W <= ch; j += W) {
      const Vec v = dx_vec(V::load(x + j), V::load(dy + j), V::load(c + j), V::load(k1 + j), V::load(k2 + j), V::load(k3 + j));
      V::store(dx + j, epilogue<E>(v, at(res, j), W));
    }
    if (j < ch) {
      const size_t n = ch - j;
      const Vec v = dx_vec(V::load_tail(x + j, n, C(0)), V::load_tail(dy + j, n, C(0)), V::load_tail(c + j, n, C(0)),
                           V::load_tail(k1 + j, n, C(0)), V::load_tail(k2 + j, n, C(0)), V::load_tail(k3 + j, n, C(0)));
      V::store_tail(dx + j, epilogue<E>(v, at(res, j), n), n);
    }
  }
}

// Backward through a fused ReLU (MaskedBackwardKernels), rows layout: g = y <= 0 ? 0 : dy, written
// to dres unless null, then dx from g as bwd_dx_rows (kX), or dx = g * k1 (evaluation mode).
template <bool kX>
static void dx_relu_rows(const T* x, const T* dy, const T* y, T* dx, T* dres, size_t rows, size_t ch, const C* c,
                         const C* k1, const C* k2, const C* k3) {
  for (size_t r = 0; r < rows; ++r) {
    const size_t o = r * ch;
    auto dx_of = [&](size_t j, C g) {
      if constexpr (kX) return mul_add1(g, k1[j], mul_add1(C(x[o + j]) - c[j], k2[j], k3[j]));
      return g * k1[j];
    };
    if (dres != nullptr) {
      // scalar math: g = gate(dy, y); dres[j] = g; dx[j] = g * k1[j] + ((x[j] - c[j]) * k2[j] + k3[j])
      for (size_t j = 0; j < ch; ++j) {
        const C g = gate1(C(dy[o + j]), C(y[o + j]));
        dres[o + j] = T(g);
        dx[o + j] = T(dx_of(j, g));
      }
    } else {
      // scalar math: the same without dres
      for (size_t j = 0; j < ch; ++j) dx[o + j] = T(dx_of(j, gate1(C(dy[o + j]), C(y[o + j]))));
    }
  }
}

static void bwd_reduce_relu_rows(const T* x, const T* dy, const T* y, size_t rows, size_t ch, const C* c,
                                 double* sum_dy, double* sum_dyxc) {
  reduce_rows<true, true>(dy, x, rows, ch, c, sum_dy, sum_dyxc, BwdStep(), y);
}

static void bwd_dx_relu_rows(const T* x, const T* dy, const T* y, T* dx, T* dres, size_t rows, size_t ch, const C* c,
                             const C* k1, const C* k2, const C* k3) {
  dx_relu_rows<true>(x, dy, y, dx, dres, rows, ch, c, k1, k2, k3);
}

static void bwd_scale_relu_rows(const T* dy, const T* y, T* dx, T* dres, size_t rows, size_t ch, const C* k1) {
  // k1 stands in for c, k2, k3: without kX their values are not read.
  dx_relu_rows<false>(nullptr, dy, y, dx, dres, rows, ch, k1, k1, k1, k1);
}
