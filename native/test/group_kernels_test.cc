// Group kernels (kernels_group.inl): `runs` contiguous runs of n values (one per channel) per
// sample. The reductions take `rows` samples, stride apart (the gap after each sample's runs is
// NaN); the writers take one sample's runs as one span.
#include "kernel_tester.h"

namespace bntest {
namespace {

template <typename T>
struct GroupKernelTester : KernelTesterBase<T> {
  BN_TESTER_USES_BASE(T);

  // reductions' partial sums (every kPartial / terms-per-run samples).
  struct Group {
    size_t rows, runs, n, stride, off;
    size_t span() const { return (rows - 1) * stride + runs * n; }
  };
  std::string gctx(const char* kernel, const Group& g, int regime, int stream = -1) const {
    return fmt("kernel %s rows=%zu runs=%zu n=%zu stride=%zu off=%zu %s%s", kname(kernel).c_str(), g.rows,
               g.runs, g.n, g.stride, g.off, regime ? "offset100/inplace" : "centered",
               stream < 0 ? "" : (stream ? " stream" : ""));
  }
  void fill_group(Buf<T>& b, const Group& g, double center, double scale) {
    for (size_t rr = 0; rr < g.rows; ++rr)
      for (size_t q = 0; q < g.runs * g.n; ++q) b[rr * g.stride + q] = T(center + scale * r.normal());
  }

  void stats_group(const Group& g, int regime) {
    const std::string c = gctx("stats_group", g, regime);
    const double center = regime ? 100.0 : 0.0;
    Buf<T> x(g.span(), g.off, 0), k(g.runs, 0, 0);
    fill_group(x, g, center, 2.0);
    fill_vec(k, center, 1.0);
    Buf<double> sum(g.runs, kGuardPre, kGuardPost), sq(g.runs, kGuardPre, kGuardPost);
    for (size_t j = 0; j < g.runs; ++j) sum[j] = sq[j] = 0.0;
    kt.stats_group(x.data(), g.rows, g.stride, g.runs, g.n, k.data(), sum.data(), sq.data());
    for (size_t j = 0; j < g.runs; ++j) {
      KSum m1, m2;
      double a1 = 0, a2 = 0;
      for (size_t rr = 0; rr < g.rows; ++rr) {
        for (size_t i = 0; i < g.n; ++i) {
          const double d = double(T(x[rr * g.stride + j * g.n + i] - k[j]));
          m1.add(d);
          m2.add(d * d);
          a1 += std::fabs(d);
          a2 += d * d;
        }
      }
      check_acc(c, "sum", sum[j], m1.get(), a1, TI<T>::partial_rel);
      check_acc(c, "sumsq", sq[j], m2.get(), a2, TI<T>::partial_rel);
    }
    check(sum.guards_intact() && sq.guards_intact(), "%s: wrote past the accumulators", c.c_str());
    same_as_one_run(c, sum, sq, [&](size_t j, double* s0, double* s1) {
      kt.stats_group(x.data() + j * g.n, g.rows, g.stride, 1, g.n, &k[j], s0, s1);
    }, g.runs);
  }

  // A channel's sums must not depend on the group it was reduced in (the planner sizes groups
  // from the threads and the L2): the same bits as the channel reduced alone.
  template <class One>
  void same_as_one_run(const std::string& c, const Buf<double>& s0, const Buf<double>& s1, One&& one, size_t runs) {
    for (size_t j = 0; j < runs; ++j) {
      double a = 0.0, b = 0.0;
      one(j, &a, &b);
      check(std::memcmp(&a, &s0[j], sizeof a) == 0 && std::memcmp(&b, &s1[j], sizeof b) == 0,
            "%s: channel %zu's sums differ from the channel reduced alone (%.17g %.17g against %.17g %.17g)", c.c_str(),
            j, s0[j], s1[j], a, b);
    }
  }

  void bwd_reduce_group(const Group& g, int regime) {
    const std::string c = gctx("bwd_reduce_group", g, regime);
    const double center = regime ? 100.0 : 0.0;
    Buf<T> x(g.span(), g.off, 0), dy(g.span(), g.off, 0), cc(g.runs, 0, 0);
    fill_group(x, g, center, 2.0);
    fill_group(dy, g, 0.0, 1.0);
    fill_vec(cc, center, 0.5);
    Buf<double> sg(g.runs, kGuardPre, kGuardPost), sp(g.runs, kGuardPre, kGuardPost);
    for (size_t j = 0; j < g.runs; ++j) sg[j] = sp[j] = 0.0;
    kt.bwd_reduce_group(x.data(), dy.data(), g.rows, g.stride, g.runs, g.n, cc.data(), sg.data(), sp.data());
    for (size_t j = 0; j < g.runs; ++j) {
      KSum mg, mp;
      double ag = 0, ap = 0;
      for (size_t rr = 0; rr < g.rows; ++rr) {
        for (size_t i = 0; i < g.n; ++i) {
          const size_t q = rr * g.stride + j * g.n + i;
          const double t = double(dy[q]) * double(T(x[q] - cc[j]));
          mg.add(double(dy[q]));
          mp.add(t);
          ag += std::fabs(double(dy[q]));
          ap += std::fabs(t);
        }
      }
      check_acc(c, "sum_dy", sg[j], mg.get(), ag, TI<T>::partial_rel);
      check_acc(c, "sum_dyxc", sp[j], mp.get(), ap, TI<T>::partial_rel);
    }
    same_as_one_run(c, sg, sp, [&](size_t j, double* s0, double* s1) {
      kt.bwd_reduce_group(x.data() + j * g.n, dy.data() + j * g.n, g.rows, g.stride, 1, g.n, &cc[j], s0, s1);
    }, g.runs);
    check(sg.guards_intact() && sp.guards_intact(), "%s: wrote past the accumulators", c.c_str());
  }

  void affine_group(const Group& g, int regime, bool stream) {
    const std::string c = gctx("affine_group", g, regime, stream);
    const double center = regime ? 100.0 : 0.0;
    const size_t total = g.runs * g.n;
    Buf<T> x(total, g.off, 0), cc(g.runs, 0, 0), a(g.runs, 0, 0), b(g.runs, 0, 0);
    fill(x, r, center, 2.0);
    fill_vec(cc, center, 0.5);
    fill_vec(a, 0.0, 2.0);
    fill_vec(b, 0.0, 1.0);
    Buf<T> y(total, kGuardPre + g.off, kGuardPost);
    if (regime == 1) {
      for (size_t q = 0; q < total; ++q) y[q] = x[q];
      kw.affine_group(y.data(), y.data(), nullptr, g.runs, g.n, cc.data(), a.data(), b.data(), stream, total, 0);
    } else {  // a fresh output: plain stores also request its lines a span on (past its end here)
      kw.affine_group(x.data(), y.data(), nullptr, g.runs, g.n, cc.data(), a.data(), b.data(), stream, total,
                      stream ? 0 : total);
    }
    ElemCheck ec;
    for (size_t q = 0; q < total; ++q) {
      const size_t j = q / g.n;
      const double xc = double(x[q]) - double(cc[j]);
      ec.add(q, double(y[q]), xc * double(a[j]) + double(b[j]),
             8 * eT * (std::fabs(xc * double(a[j])) + std::fabs(double(b[j]))) + 1e-300);
    }
    ec.report(c, "y");
    check(y.guards_intact(), "%s: wrote outside y", c.c_str());
  }

  void bwd_dx_group(const Group& g, int regime, bool stream) {
    const std::string c = gctx("bwd_dx_group", g, regime, stream);
    const double center = regime ? 100.0 : 0.0;
    const size_t total = g.runs * g.n;
    Buf<T> x(total, g.off, 0), dy(total, g.off, 0), cc(g.runs, 0, 0), k1(g.runs, 0, 0), k2(g.runs, 0, 0),
        k3(g.runs, 0, 0);
    fill_dx_inputs(x, dy, cc, k1, k2, k3, center);
    Buf<T> dx(total, kGuardPre + g.off, kGuardPost);
    if (regime == 1) {  // dx aliases dy
      for (size_t q = 0; q < total; ++q) dx[q] = dy[q];
      kw.bwd_dx_group(x.data(), dx.data(), dx.data(), nullptr, g.runs, g.n, cc.data(), k1.data(), k2.data(), k3.data(),
                      stream, 0, 0);
    } else {
      kw.bwd_dx_group(x.data(), dy.data(), dx.data(), nullptr, g.runs, g.n, cc.data(), k1.data(), k2.data(), k3.data(),
                      stream, total, stream ? 0 : total);
    }
    ElemCheck ec;
    for (size_t q = 0; q < total; ++q) {
      const size_t j = q / g.n;
      add_dx(ec, q, dx[q], x[q], dy[q], cc[j], k1[j], k2[j], k3[j]);
    }
    ec.report(c, "dx");
    check(dx.guards_intact(), "%s: wrote outside dx", c.c_str());
  }


  // 1 to 33 runs (7 and 33: channels walked four and two side by side, and one alone). The
  // reductions at every n (their partial sums span several runs when runs are short, and widen
  // within each run when they are long) and up to 17 samples (several widenings); the writers up
  // to 2w + 3 (short maps are what they are for).
  void run_all(size_t w) {
    for (size_t n : sweep_sizes(w)) {
      if (n == 0) continue;
      for (size_t off : {size_t(0), size_t(1), size_t(3)}) {
        for (int regime : {0, 1}) {
          for (size_t runs : {size_t(1), size_t(2), size_t(3), size_t(7), size_t(33)}) {
            if (n > 4 * w + 5 && runs == 33) continue;
            for (size_t rows : {size_t(1), size_t(3), size_t(17)}) {
              const Group g{rows, runs, n, runs * n + (rows == 1 ? 0 : 5), off};
              stats_group(g, regime);
              bwd_reduce_group(g, regime);
            }
            if (n > 2 * w + 3) continue;
            const Group g1{1, runs, n, runs * n, off};
            for (bool stream : {false, true}) {
              affine_group(g1, regime, stream);
              bwd_dx_group(g1, regime, stream);
            }
          }
        }
      }
    }
  }
};

}  // namespace

void test_group_kernels(const char* isa, const bn::KernelSet& ks, size_t w32, size_t w64, Rng& rng) {
  GroupKernelTester<float>{{isa, ks.f32, rng}}.run_all(w32);
  GroupKernelTester<double>{{isa, ks.f64, rng}}.run_all(w64);
}

}  // namespace bntest
