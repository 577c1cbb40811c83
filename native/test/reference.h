// The float64 reference of the driver tests, written from docs/batchnorm.md: two-pass batch
// statistics with compensated sums, the gradients, and the checks of every output against them
// with tolerances derived from the core's documented rounding (kernels.h).
#pragma once

#include "test_util.h"

namespace bntest {

struct DCase {
  int64_t n, c, s;
  double offset;        // added to every channel centre (1e4: cancellation test)
  bool const_channel;   // channel 0 constant (variance 0)
  const char* note;
  bool channels_last = false;  // x[n][s][c] (rows kernels over N*S rows)
};

template <typename T>
struct Ref {
  int64_t N, C, S, m;
  size_t total;
  bool cl = false;
  bn::Shape shape;
  double eps = 1e-5;
  std::vector<T> x, dy, w, b, rm0, rv0, gw0, gb0;
  // forward, batch statistics (biased var)
  std::vector<double> mean, var, inv, sd;
  // Tolerance of a float64 batch mean: the kernels form x - k in T (k = a value of the channel, the
  // first one; kernels.h), so each term carries half an ulp of T of |x - k|.
  std::vector<double> mean_tol;
  // backward, training mode (mean/inv above) and evaluation mode (rm0, rinv)
  std::vector<double> rmean, rinv;
  std::vector<double> G, DW, abs_dy, abs_dyxh, DWe, abs_dyxhe;

  size_t idx(int64_t n, int64_t c, int64_t j) const {
    return cl ? size_t((n * S + j) * C + c) : size_t((n * C + c) * S + j);
  }
};

template <typename T>
void make_ref(Ref<T>& R, const DCase& dc, uint64_t seed) {
  Rng rng(seed);
  R.N = dc.n;
  R.C = dc.c;
  R.S = dc.s;
  R.m = dc.n * dc.s;
  R.total = size_t(dc.n * dc.c * dc.s);
  R.cl = dc.channels_last;
  R.shape = bn::Shape{dc.n, dc.c, dc.s, dc.channels_last};
  const size_t C = size_t(dc.c);
  R.x.resize(R.total);
  R.dy.resize(R.total);
  R.w.resize(C);
  R.b.resize(C);
  R.rm0.resize(C);
  R.rv0.resize(C);
  R.gw0.resize(C);
  R.gb0.resize(C);
  std::vector<double> center(C), scale(C);
  for (size_t c = 0; c < C; ++c) {
    center[c] = dc.offset + 2.0 * rng.sym();
    scale[c] = 0.5 + 1.5 * rng.uniform();
    R.w[c] = T((0.5 + rng.uniform()) * (rng.uniform() < 0.3 ? -1.0 : 1.0));
    R.b[c] = T(rng.sym());
    R.rm0[c] = T(center[c] + 0.1 * rng.sym());
    R.rv0[c] = T(scale[c] * scale[c] * (0.8 + 0.4 * rng.uniform()));
    R.gw0[c] = T(rng.sym());
    R.gb0[c] = T(rng.sym());
  }
  for (int64_t n = 0; n < R.N; ++n) {
    for (int64_t c = 0; c < R.C; ++c) {
      for (int64_t j = 0; j < R.S; ++j) {
        const size_t q = R.idx(n, c, j);
        R.x[q] = (dc.const_channel && c == 0) ? T(3.25) : T(center[c] + scale[c] * rng.normal());
        R.dy[q] = T(rng.normal());
      }
    }
  }
  // Batch statistics: two-pass, compensated sums in float64.
  R.mean.assign(C, 0);
  R.var.assign(C, 0);
  R.inv.assign(C, 0);
  R.sd.assign(C, 0);
  R.mean_tol.assign(C, 0);
  R.rmean.assign(C, 0);
  R.rinv.assign(C, 0);
  R.G.assign(C, 0);
  R.DW.assign(C, 0);
  R.abs_dy.assign(C, 0);
  R.abs_dyxh.assign(C, 0);
  R.DWe.assign(C, 0);
  R.abs_dyxhe.assign(C, 0);
  for (int64_t c = 0; c < R.C; ++c) {
    KSum s;
    for (int64_t n = 0; n < R.N; ++n)
      for (int64_t j = 0; j < R.S; ++j) s.add(double(R.x[R.idx(n, c, j)]));
    const double mean = s.get() / double(R.m);
    KSum q;
    for (int64_t n = 0; n < R.N; ++n)
      for (int64_t j = 0; j < R.S; ++j) {
        const double d = double(R.x[R.idx(n, c, j)]) - mean;
        q.add(d * d);
      }
    const double var = q.get() / double(R.m);
    const double k = double(R.x[R.idx(0, c, 0)]);
    double adk = 0;
    for (int64_t n = 0; n < R.N; ++n)
      for (int64_t j = 0; j < R.S; ++j) adk += std::fabs(double(R.x[R.idx(n, c, j)]) - k);
    R.mean_tol[c] = 0.5 * TI<T>::eps * adk / double(R.m) + 1e-12 * (std::fabs(mean) + std::sqrt(var)) + 1e-300;
    R.mean[c] = mean;
    R.var[c] = var;
    R.sd[c] = std::sqrt(var);
    R.inv[c] = 1.0 / std::sqrt(var + R.eps);
    R.rmean[c] = double(R.rm0[c]);
    R.rinv[c] = 1.0 / std::sqrt(double(R.rv0[c]) + R.eps);
    KSum g, dw, dwe;
    double ady = 0, adyx = 0, adyxe = 0;
    const double ct = double(T(mean));  // the core centres on mean rounded to T
    for (int64_t n = 0; n < R.N; ++n)
      for (int64_t j = 0; j < R.S; ++j) {
        const size_t i = R.idx(n, c, j);
        const double gv = double(R.dy[i]), xv = double(R.x[i]);
        g.add(gv);
        dw.add(gv * (xv - mean) * R.inv[c]);
        dwe.add(gv * (xv - R.rmean[c]) * R.rinv[c]);
        ady += std::fabs(gv);
        adyx += std::fabs(gv * (xv - ct)) * R.inv[c] + std::fabs(gv * (xv - mean)) * R.inv[c];
        adyxe += std::fabs(gv * (xv - R.rmean[c])) * R.rinv[c];
      }
    R.G[c] = g.get();
    R.DW[c] = dw.get();
    R.DWe[c] = dwe.get();
    R.abs_dy[c] = ady;
    R.abs_dyxh[c] = adyx;
    R.abs_dyxhe[c] = adyxe;
  }
}

template <typename T>
struct DriverRun {
  const Ref<T>& R;
  std::string ctx;
  static constexpr double eT = TI<T>::eps;
  static constexpr double rs = TI<T>::stat_rel;

  // y = (x - mean) * inv * w + b against the batch statistics (or given ones).
  void check_y(const T* y, const std::vector<double>& mean, const std::vector<double>& inv,
               bool affine, const char* what) const {
    ElemCheck ec;
    for (int64_t n = 0; n < R.N; ++n)
      for (int64_t c = 0; c < R.C; ++c) {
        const double w = affine ? double(R.w[c]) : 1.0, b = affine ? double(R.b[c]) : 0.0;
        for (int64_t j = 0; j < R.S; ++j) {
          const size_t i = R.idx(n, c, j);
          const double t = (double(R.x[i]) - mean[c]) * inv[c] * w;
          // The last term: a float64 mean is itself only known to an ulp of |mean| (matters for
          // float64 data with |mean| >> std), in the reference as in the core.
          ec.add(i, double(y[i]), t + b,
                 (8 * eT + rs) * (std::fabs(t) + std::fabs(b) + std::fabs(w)) +
                     2 * 0x1.0p-52 * std::fabs(mean[c]) * inv[c] * std::fabs(w) + 1e-300);
        }
      }
    ec.report(ctx, what);
  }

  void check_batch_stats(const T* save_mean, const T* save_inv, const double* bmean,
                         const double* binv) const {
    ElemCheck sm, si, bm, bi;
    const double vr = TI<T>::var_rel;
    for (int64_t c = 0; c < R.C; ++c) {
      const double mt = R.mean_tol[c];
      if (bmean) bm.add(size_t(c), bmean[c], R.mean[c], mt);
      if (binv) bi.add(size_t(c), binv[c], R.inv[c], vr * R.inv[c]);
      if (save_mean) sm.add(size_t(c), double(save_mean[c]), R.mean[c], eT * std::fabs(R.mean[c]) + mt);
      if (save_inv) si.add(size_t(c), double(save_inv[c]), R.inv[c], (eT + vr) * R.inv[c]);
    }
    if (bmean) bm.report(ctx, "batch_mean");
    if (binv) bi.report(ctx, "batch_invstd");
    if (save_mean) sm.report(ctx, "save_mean");
    if (save_inv) si.report(ctx, "save_invstd");
  }

  void check_running(const T* rm, const T* rv, double f) const {
    ElemCheck em, ev;
    for (int64_t c = 0; c < R.C; ++c) {
      const double m0 = double(R.rm0[c]), v0 = double(R.rv0[c]);
      const double unb = R.var[c] * double(R.m) / double(R.m - 1);
      const double refm = (1 - f) * m0 + f * R.mean[c];
      const double refv = (1 - f) * v0 + f * unb;
      em.add(size_t(c), double(rm[c]), refm,
             2 * eT * (std::fabs((1 - f) * m0) + std::fabs(f * R.mean[c])) + f * R.mean_tol[c]);
      ev.add(size_t(c), double(rv[c]), refv,
             2 * eT * (std::fabs((1 - f) * v0) + std::fabs(f * unb)) + f * unb * TI<T>::var_rel + 1e-300);
    }
    em.report(ctx, fmt("running_mean (f=%g)", f).c_str());
    ev.report(ctx, fmt("running_var (f=%g, unbiased)", f).c_str());
  }

  // Training-mode dx (batch statistics).
  void check_dx_train(const T* dx, bool affine, const char* what) const {
    ElemCheck ec;
    const double md = double(R.m);
    for (int64_t n = 0; n < R.N; ++n)
      for (int64_t c = 0; c < R.C; ++c) {
        const double w = affine ? double(R.w[c]) : 1.0, inv = R.inv[c];
        const double G = R.G[c], DW = R.DW[c];
        for (int64_t j = 0; j < R.S; ++j) {
          const size_t i = R.idx(n, c, j);
          const double g = double(R.dy[i]);
          const double xh = (double(R.x[i]) - R.mean[c]) * inv;
          const double ref = w * inv / md * (md * g - G - xh * DW);
          const double mag = std::fabs(w) * inv *
                             (std::fabs(g) + (std::fabs(G) + R.abs_dy[c]) / md +
                              std::fabs(xh) * (std::fabs(DW) + R.abs_dyxh[c]) / md);
          ec.add(i, double(dx[i]), ref, (8 * eT + rs) * mag + 1e-300);
        }
      }
    ec.report(ctx, what);
  }

  void check_dx_eval(const T* dx, bool affine, const char* what) const {
    ElemCheck ec;
    for (int64_t n = 0; n < R.N; ++n)
      for (int64_t c = 0; c < R.C; ++c) {
        const double w = affine ? double(R.w[c]) : 1.0;
        for (int64_t j = 0; j < R.S; ++j) {
          const size_t i = R.idx(n, c, j);
          const double ref = double(R.dy[i]) * w * R.rinv[c];
          ec.add(i, double(dx[i]), ref, 4 * eT * std::fabs(ref) + 1e-300);
        }
      }
    ec.report(ctx, what);
  }

  void check_grads(const T* gw, const T* gb, bool accumulate, bool eval) const {
    ElemCheck ew, eb;
    for (int64_t c = 0; c < R.C; ++c) {
      const double w0 = accumulate ? double(R.gw0[c]) : 0.0, b0 = accumulate ? double(R.gb0[c]) : 0.0;
      const double DW = eval ? R.DWe[c] : R.DW[c], adw = eval ? R.abs_dyxhe[c] : R.abs_dyxh[c];
      if (gw) {
        ew.add(size_t(c), double(gw[c]), w0 + DW,
               2 * eT * (std::fabs(w0) + std::fabs(DW)) + (eT + TI<T>::partial_rel) * adw + 1e-300);
      }
      if (gb) {
        eb.add(size_t(c), double(gb[c]), b0 + R.G[c],
               2 * eT * (std::fabs(b0) + std::fabs(R.G[c])) + TI<T>::partial_rel * R.abs_dy[c] + 1e-300);
      }
    }
    if (gw) ew.report(ctx, accumulate ? "grad_weight (accumulated)" : "grad_weight (written)");
    if (gb) eb.report(ctx, accumulate ? "grad_bias (accumulated)" : "grad_bias (written)");
  }
};

template <typename T>
void copy_into(Buf<T>& dst, const std::vector<T>& src) {
  for (size_t i = 0; i < src.size(); ++i) dst[i] = src[i];
}

}  // namespace bntest
