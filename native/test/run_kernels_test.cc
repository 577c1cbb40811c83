// Run kernels (kernels_run.inl): `rows` runs of n values, `stride` apart. Inputs: every element
// outside the runs (gaps between runs) is NaN, so a kernel that reads a gap into a sum or an output
// is caught. Outputs: gaps and guards must still hold the poison.
#include "kernel_tester.h"

namespace bntest {
namespace {

template <typename T>
struct RunKernelTester : KernelTesterBase<T> {
  BN_TESTER_USES_BASE(T);

  struct Runs {
    size_t rows, n, stride, off;
    size_t span() const { return rows == 0 ? 0 : (rows - 1) * stride + n; }
    template <class F>
    void each(F&& f) const {  // f(flat index, run, position in run)
      for (size_t r = 0; r < rows; ++r)
        for (size_t i = 0; i < n; ++i) f(r * stride + i, r, i);
    }
  };

  std::string rctx(const char* kernel, const Runs& g, int regime, int stream = -1) const {
    return fmt("kernel %s rows=%zu n=%zu stride=%zu off=%zu %s%s", kname(kernel).c_str(),
               g.rows, g.n, g.stride, g.off, regime ? "offset100/inplace" : "centered",
               stream < 0 ? "" : (stream ? " stream" : ""));
  }

  void fill_runs(Buf<T>& b, const Runs& g, double center, double scale) {
    g.each([&](size_t q, size_t, size_t) { b[q] = T(center + scale * r.normal()); });
  }

  void stats_run(const Runs& g, int regime) {
    const std::string c = rctx("stats_run", g, regime);
    const double center = regime ? 100.0 : 0.0;
    Buf<T> x(g.span(), g.off, 0);
    fill_runs(x, g, center, 2.0);
    const T k = T(center + r.sym());
    const double pd = TI<double>::poison();
    const double sum0 = r.sym(), sq0 = r.uniform();
    double acc[4] = {sum0, pd, sq0, pd};
    kt.stats_run(x.data(), g.rows, g.n, g.stride, k, &acc[0], &acc[2]);
    KSum s1, s2, m1, m2;
    double a1 = std::fabs(sum0), a2 = sq0;
    g.each([&](size_t q, size_t, size_t) {
      const double d = double(x[q]) - double(k);
      s1.add(d);
      s2.add(d * d);
      a1 += std::fabs(d);
      a2 += d * d;
      const T dt = T(x[q] - k);  // the documented per-term rounding: the difference in T, the rest in f64
      m1.add(double(dt));
      m2.add(double(dt) * double(dt));
    });
    check_acc(c, "sum", acc[0], sum0 + s1.get(), a1, TI<T>::acc_rel);
    check_acc(c, "sumsq", acc[2], sq0 + s2.get(), a2, TI<T>::acc_rel);
    // Accumulation in float64 (not T): against the per-term-rounded model, only the order of the
    // float64 additions may differ.
    check_acc(c, "sum (T terms, partial sums in T)", acc[0], sum0 + m1.get(), a1, TI<T>::partial_rel);
    check_acc(c, "sumsq (T terms, partial sums in T)", acc[2], sq0 + m2.get(), a2, TI<T>::partial_rel);
    check(is_poison(acc[1]) && is_poison(acc[3]), "%s: wrote past an accumulator", c.c_str());
  }

  // Output buffer of the runs; gaps and guards poisoned. In place: runs hold a copy of `src`.
  void check_out_untouched(const std::string& c, const Buf<T>& y, const Runs& g, const char* what) {
    bool gaps_ok = true;
    for (size_t rr = 0; rr + 1 < g.rows; ++rr)
      for (size_t i = g.n; i < g.stride; ++i) gaps_ok = gaps_ok && is_poison(y[rr * g.stride + i]);
    check(gaps_ok, "%s: wrote into the gap between runs of %s", c.c_str(), what);
    check(y.guards_intact(), "%s: wrote outside %s", c.c_str(), what);
  }

  void affine_run(const Runs& g, int regime, bool stream) {
    const std::string c = rctx("affine_run", g, regime, stream);
    const double center = regime ? 100.0 : 0.0;
    Buf<T> x(g.span(), g.off, 0);
    fill_runs(x, g, center, 2.0);
    const T cc = T(center + 0.5 * r.sym());
    const T a = T((0.5 + r.uniform()) * (r.uniform() < 0.5 ? -1 : 1));
    const T b = T(r.sym());
    Buf<T> y(g.span(), kGuardPre + g.off, kGuardPost);
    const bool inplace = regime == 1;
    if (inplace) {
      g.each([&](size_t q, size_t, size_t) { y[q] = x[q]; });
      kw.affine_run(y.data(), y.data(), nullptr, g.rows, g.n, g.stride, cc, a, b, stream, g.stride);
    } else {
      kw.affine_run(x.data(), y.data(), nullptr, g.rows, g.n, g.stride, cc, a, b, stream, g.stride);
    }
    ElemCheck ec;
    g.each([&](size_t q, size_t, size_t) {
      const double xc = double(x[q]) - double(cc);
      const double ref = xc * double(a) + double(b);
      ec.add(q, double(y[q]), ref, 8 * eT * (std::fabs(xc * double(a)) + std::fabs(double(b))) + 1e-300);
    });
    ec.report(c, "y");
    check_out_untouched(c, y, g, "y");
  }

  // The normalize pass over the runs g fused with the statistics of the same runs `nxt` values
  // on (a region after the first, at another alignment). y: the first runs only; the second ones
  // are read, never written (in place: they must still hold x).
  void affine_stats_run(const Runs& g, int regime, bool stream) {
    const std::string c = rctx("affine_stats_run", g, regime, stream);
    const double center = regime ? 100.0 : 0.0;
    const size_t nxt = g.span() + 2;
    Buf<T> x(nxt + g.span(), g.off, 0);
    fill_runs(x, g, center, 2.0);
    g.each([&](size_t q, size_t, size_t) { x[nxt + q] = T(center + 1.0 + 3.0 * r.normal()); });
    const T cc = T(center + 0.5 * r.sym());
    const T a = T((0.5 + r.uniform()) * (r.uniform() < 0.5 ? -1 : 1));
    const T b = T(r.sym());
    const T k = T(center + r.sym());
    const double pd = TI<double>::poison();
    const double sum0 = r.sym(), sq0 = r.uniform();
    double acc[4] = {sum0, pd, sq0, pd};
    const bool inplace = regime == 1;
    Buf<T> y(inplace ? nxt + g.span() : g.span(), kGuardPre + g.off, kGuardPost);
    if (inplace) {
      for (size_t q = 0; q < y.size(); ++q) y[q] = x[q];
      kw.affine_stats_run(y.data(), y.data(), nullptr, g.rows, g.n, g.stride, cc, a, b, stream, nxt, k, &acc[0], &acc[2]);
    } else {
      kw.affine_stats_run(x.data(), y.data(), nullptr, g.rows, g.n, g.stride, cc, a, b, stream, nxt, k, &acc[0], &acc[2]);
    }
    ElemCheck ec;
    bool next_kept = true;
    KSum s1, s2, m1, m2;
    double a1 = std::fabs(sum0), a2 = sq0;
    g.each([&](size_t q, size_t, size_t) {
      const double xc = double(x[q]) - double(cc);
      ec.add(q, double(y[q]), xc * double(a) + double(b), 8 * eT * (std::fabs(xc * double(a)) + std::fabs(double(b))) + 1e-300);
      if (inplace) next_kept = next_kept && std::memcmp(&y[nxt + q], &x[nxt + q], sizeof(T)) == 0;
      const double d = double(x[nxt + q]) - double(k);
      s1.add(d);
      s2.add(d * d);
      a1 += std::fabs(d);
      a2 += d * d;
      const T dt = T(x[nxt + q] - k);
      m1.add(double(dt));
      m2.add(double(dt) * double(dt));
    });
    ec.report(c, "y");
    check_out_untouched(c, y, g, "y");
    check(next_kept, "%s: wrote into the next piece", c.c_str());
    // The same sums as stats_run's, bit for bit: a channel's statistics must not depend on which
    // kernel read it (the first piece of a thread goes through stats_run) or on y's alignment.
    double solo[2] = {sum0, sq0};
    kt.stats_run(x.data() + nxt, g.rows, g.n, g.stride, k, &solo[0], &solo[1]);
    check(std::memcmp(&solo[0], &acc[0], sizeof(double)) == 0 && std::memcmp(&solo[1], &acc[2], sizeof(double)) == 0,
          "%s: sums differ from stats_run's: %.17g %.17g vs %.17g %.17g", c.c_str(), acc[0], acc[2], solo[0], solo[1]);
    check_acc(c, "sum", acc[0], sum0 + s1.get(), a1, TI<T>::acc_rel);
    check_acc(c, "sumsq", acc[2], sq0 + s2.get(), a2, TI<T>::acc_rel);
    check_acc(c, "sum (T terms, partial sums in T)", acc[0], sum0 + m1.get(), a1, TI<T>::partial_rel);
    check_acc(c, "sumsq (T terms, partial sums in T)", acc[2], sq0 + m2.get(), a2, TI<T>::partial_rel);
    check(is_poison(acc[1]) && is_poison(acc[3]), "%s: wrote past an accumulator", c.c_str());
  }

  void bwd_reduce_run(const Runs& g, int regime) {
    const std::string c = rctx("bwd_reduce_run", g, regime);
    const double center = regime ? 100.0 : 0.0;
    Buf<T> x(g.span(), g.off, 0), dy(g.span(), g.off, 0);
    fill_runs(x, g, center, 2.0);
    fill_runs(dy, g, 0.0, 1.0);
    const T cc = T(center + 0.5 * r.sym());
    const double pd = TI<double>::poison();
    const double g0 = r.sym(), p0 = r.sym();
    double acc[4] = {g0, pd, p0, pd};
    kt.bwd_reduce_run(x.data(), dy.data(), g.rows, g.n, g.stride, cc, &acc[0], &acc[2]);
    KSum sg, sp, mp;
    double ag = std::fabs(g0), ap = std::fabs(p0);
    g.each([&](size_t q, size_t, size_t) {
      const double d = double(x[q]) - double(cc);
      sg.add(double(dy[q]));
      sp.add(double(dy[q]) * d);
      ag += std::fabs(double(dy[q]));
      ap += std::fabs(double(dy[q]) * d);
      mp.add(double(dy[q]) * double(T(x[q] - cc)));
    });
    check_acc(c, "sum_dy", acc[0], g0 + sg.get(), ag, TI<T>::acc_rel);
    check_acc(c, "sum_dyxc", acc[2], p0 + sp.get(), ap, TI<T>::acc_rel);
    check_acc(c, "sum_dy (partial sums in T)", acc[0], g0 + sg.get(), ag, TI<T>::partial_rel);
    check_acc(c, "sum_dyxc (T terms, partial sums in T)", acc[2], p0 + mp.get(), ap, TI<T>::partial_rel);
    check(is_poison(acc[1]) && is_poison(acc[3]), "%s: wrote past an accumulator", c.c_str());
  }

  void bwd_dx_run(const Runs& g, int regime, bool stream) {
    const std::string c = rctx("bwd_dx_run", g, regime, stream);
    const double center = regime ? 100.0 : 0.0;
    Buf<T> x(g.span(), g.off, 0), dy(g.span(), g.off, 0);
    fill_runs(x, g, center, 2.0);
    fill_runs(dy, g, 0.0, 1.0);
    const T cc = T(center + 0.5 * r.sym()), k1 = T(r.sym() * 2), k2 = T(r.sym()), k3 = T(r.sym());
    Buf<T> dx(g.span(), kGuardPre + g.off, kGuardPost);
    const bool alias = regime == 1;  // dx aliases dy
    if (alias) {
      g.each([&](size_t q, size_t, size_t) { dx[q] = dy[q]; });
      kw.bwd_dx_run(x.data(), dx.data(), dx.data(), nullptr, g.rows, g.n, g.stride, cc, k1, k2, k3, stream, 0);
    } else {
      kw.bwd_dx_run(x.data(), dy.data(), dx.data(), nullptr, g.rows, g.n, g.stride, cc, k1, k2, k3, stream, g.stride);
    }
    ElemCheck ec;
    g.each([&](size_t q, size_t, size_t) {
      add_dx(ec, q, dx[q], x[q], dy[q], cc, k1, k2, k3);
    });
    ec.report(c, "dx");
    check_out_untouched(c, dx, g, "dx");
  }


  void run_all(size_t w) {
    for (size_t n : sweep_sizes(w)) {
      for (size_t off : {size_t(0), size_t(1), size_t(3)}) {
        for (int regime : {0, 1}) {
          // One run, then 3 runs with a gap of 3 elements (each run starts at another alignment).
          for (size_t rows : {size_t(1), size_t(3)}) {
            const Runs g{rows, n, rows == 1 ? n : n + 3, off};
            stats_run(g, regime);
            bwd_reduce_run(g, regime);
            for (bool stream : {false, true}) {
              affine_run(g, regime, stream);
              affine_stats_run(g, regime, stream);
              bwd_dx_run(g, regime, stream);
            }
          }
        }
      }
    }
  }
};

}  // namespace

void test_run_kernels(const char* isa, const bn::KernelSet& ks, size_t w32, size_t w64, Rng& rng) {
  RunKernelTester<float>{{isa, ks.f32, rng}}.run_all(w32);
  RunKernelTester<double>{{isa, ks.f64, rng}}.run_all(w64);
}

}  // namespace bntest
