// Kernel bodies shared by every ISA translation unit. Included inside an anonymous namespace by
// kernels_<isa>.cc after it defines its vector traits, so each TU gets its own internal copy
// compiled with its own flags (no ODR sharing between ISAs).
//
// A traits class V provides, for element type T = typename V::T and W = V::W lanes:
//   Vec load(const T*), store(T*, Vec), set1(T), sub(Vec, Vec), mul(Vec, Vec),
//   fmadd(a, b, c) = a * b + c,
//   Acc acc_zero(), acc_add(Acc&, Vec) (adds the lanes, widened to float64), acc_sum(Acc).
// The scalar TU instantiates the same bodies with W = 1: that is the scalar version of every
// vector loop, and the reference the microkernel tests compare each ISA against.
//
// Rounding is the same in every ISA: the difference and the product are formed in T, the sums in
// float64; only the order of the float64 additions differs.

template <class V>
struct Kernels {
  using T = typename V::T;
  using Vec = typename V::Vec;
  static constexpr size_t W = V::W;

  static void stats_run(const T* x, size_t n, T k, double* sum, double* sumsq) {
    typename V::Acc s0 = V::acc_zero(), s1 = V::acc_zero(), q0 = V::acc_zero(), q1 = V::acc_zero();
    const Vec vk = V::set1(k);
    size_t i = 0;
    // scalar math: d = x[i] - k; sum += d; sumsq += d * d
    for (; i + 2 * W <= n; i += 2 * W) {
      const Vec d0 = V::sub(V::load(x + i), vk);
      const Vec d1 = V::sub(V::load(x + i + W), vk);
      V::acc_add(s0, d0);
      V::acc_add(s1, d1);
      V::acc_add(q0, V::mul(d0, d0));
      V::acc_add(q1, V::mul(d1, d1));
    }
    for (; i + W <= n; i += W) {
      const Vec d0 = V::sub(V::load(x + i), vk);
      V::acc_add(s0, d0);
      V::acc_add(q0, V::mul(d0, d0));
    }
    double s = V::acc_sum(s0) + V::acc_sum(s1);
    double q = V::acc_sum(q0) + V::acc_sum(q1);
    for (; i < n; ++i) {
      const T d = x[i] - k;
      s += d;
      q += T(d * d);
    }
    *sum += s;
    *sumsq += q;
  }

  static void affine_run(const T* x, T* y, size_t n, T c, T a, T b) {
    const Vec vc = V::set1(c), va = V::set1(a), vb = V::set1(b);
    size_t i = 0;
    // scalar math: y[i] = (x[i] - c) * a + b
    for (; i + W <= n; i += W) V::store(y + i, V::fmadd(V::sub(V::load(x + i), vc), va, vb));
    for (; i < n; ++i) y[i] = V::fma1(x[i] - c, a, b);
  }

  static void bwd_reduce_run(const T* x, const T* dy, size_t n, T c, double* sum_dy,
                             double* sum_dyxc) {
    typename V::Acc g0 = V::acc_zero(), g1 = V::acc_zero(), p0 = V::acc_zero(), p1 = V::acc_zero();
    const Vec vc = V::set1(c);
    size_t i = 0;
    // scalar math: sum_dy += dy[i]; sum_dyxc += dy[i] * (x[i] - c)
    for (; i + 2 * W <= n; i += 2 * W) {
      const Vec g = V::load(dy + i), h = V::load(dy + i + W);
      V::acc_add(g0, g);
      V::acc_add(g1, h);
      V::acc_add(p0, V::mul(g, V::sub(V::load(x + i), vc)));
      V::acc_add(p1, V::mul(h, V::sub(V::load(x + i + W), vc)));
    }
    for (; i + W <= n; i += W) {
      const Vec g = V::load(dy + i);
      V::acc_add(g0, g);
      V::acc_add(p0, V::mul(g, V::sub(V::load(x + i), vc)));
    }
    double g = V::acc_sum(g0) + V::acc_sum(g1);
    double p = V::acc_sum(p0) + V::acc_sum(p1);
    for (; i < n; ++i) {
      g += dy[i];
      p += T(dy[i] * (x[i] - c));
    }
    *sum_dy += g;
    *sum_dyxc += p;
  }

  static void bwd_dx_run(const T* x, const T* dy, T* dx, size_t n, T c, T k1, T k2, T k3) {
    const Vec vc = V::set1(c), v1 = V::set1(k1), v2 = V::set1(k2), v3 = V::set1(k3);
    size_t i = 0;
    // scalar math: dx[i] = dy[i] * k1 + ((x[i] - c) * k2 + k3)
    for (; i + W <= n; i += W) {
      const Vec t = V::fmadd(V::sub(V::load(x + i), vc), v2, v3);
      V::store(dx + i, V::fmadd(V::load(dy + i), v1, t));
    }
    for (; i < n; ++i) dx[i] = V::fma1(dy[i], k1, V::fma1(x[i] - c, k2, k3));
  }

  // Rows: channel fastest. The inner loops over channels are independent lanes (no reduction
  // across lanes), so the compiler vectorizes them with this TU's ISA without reassociating
  // anything; the scalar math is the loop body itself.
  static void stats_rows(const T* x, size_t rows, size_t ch, const T* k, double* sum,
                         double* sumsq) {
    for (size_t r = 0; r < rows; ++r, x += ch) {
      for (size_t j = 0; j < ch; ++j) {
        const T d = x[j] - k[j];
        sum[j] += d;
        sumsq[j] += T(d * d);
      }
    }
  }

  static void affine_rows(const T* x, T* y, size_t rows, size_t ch, const T* c, const T* a,
                          const T* b) {
    for (size_t r = 0; r < rows; ++r, x += ch, y += ch) {
      for (size_t j = 0; j < ch; ++j) y[j] = V::fma1(x[j] - c[j], a[j], b[j]);
    }
  }

  static void bwd_reduce_rows(const T* x, const T* dy, size_t rows, size_t ch, const T* c,
                              double* sum_dy, double* sum_dyxc) {
    for (size_t r = 0; r < rows; ++r, x += ch, dy += ch) {
      for (size_t j = 0; j < ch; ++j) {
        sum_dy[j] += dy[j];
        sum_dyxc[j] += T(dy[j] * (x[j] - c[j]));
      }
    }
  }

  static void bwd_dx_rows(const T* x, const T* dy, T* dx, size_t rows, size_t ch, const T* c,
                          const T* k1, const T* k2, const T* k3) {
    for (size_t r = 0; r < rows; ++r, x += ch, dy += ch, dx += ch) {
      for (size_t j = 0; j < ch; ++j) {
        dx[j] = V::fma1(dy[j], k1[j], V::fma1(x[j] - c[j], k2[j], k3[j]));
      }
    }
  }

  static constexpr KernelTable<T> table() {
    return KernelTable<T>{stats_run,  affine_run,  bwd_reduce_run,  bwd_dx_run,
                          stats_rows, affine_rows, bwd_reduce_rows, bwd_dx_rows};
  }
};
