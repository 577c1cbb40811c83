// Driver tests of the fused activation (issue 13): forward_training, forward_inference and
// backward with Epilogue kRelu / kAddRelu, every SIMD level, 1 to 3 threads, over shapes that take
// every path of the planner (rows, channels, pipelined waves, groups, spans, streaming, reversed
// second pass, NHWC). Each is checked bit for bit against the unfused chain run by the same core:
//   forward:  relu(y + z) in T of the kNone forward (whose y drivers_test.cc checks against
//             float64), with the same statistics and running statistics; also in place over x
//             and over z;
//   backward: the kNone backward of dy gated by y (y <= 0 ? 0 : dy), whose results
//             drivers_test.cc checks; residual_grad = the gated dy; training and evaluation; dx in
//             place over dy and over y.
// And the argument checks: a status, nothing written.
#include <cstring>
#include <vector>

#include "test_util.h"

namespace bntest {
namespace {

using bn::Epilogue;

struct RCase {
  int64_t n, c, s;
  bool channels_last;
  const char* note;
};

const RCase kReluCases[] = {
    {5000, 7, 1, false, "rows, parallel"},
    {3, 5, 17, false, "tail"},
    {2, 7, 3, true, "NHWC small"},
    {4, 3, 4099, true, "NHWC, parallel"},
    {4, 5, 35000, false, "waves, streaming stores"},
    {4, 7, 35000, false, "pipelined waves"},
    {8, 512, 49, false, "groups"},
    {16, 512, 49, false, "groups, spans streamed"},
    {512, 4, 196, false, "short runs, large batch, streaming"},
    {2, 2, 240000, false, "backward second pass reversed"},
};

template <typename T>
bool equal_bits(const std::vector<T>& a, const std::vector<T>& b, size_t* first) {
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::memcmp(&a[i], &b[i], sizeof(T)) != 0) {
      *first = i;
      return false;
    }
  }
  return true;
}

template <typename T>
void expect_same(const std::string& ctx, const char* what, const std::vector<T>& got, const std::vector<T>& want) {
  size_t i = 0;
  check(equal_bits(got, want, &i), "%s: %s differs at [%zu]: %.17g, unfused %.17g", ctx.c_str(), what, i,
        double(got[i]), double(want[i]));
}

template <typename T>
struct Data {
  bn::Shape shape;
  size_t total, C;
  std::vector<T> x, z, dy, w, b, rm, rv;
  Data(const RCase& rc, Rng& r) : shape{rc.n, rc.c, rc.s, rc.channels_last} {
    total = size_t(rc.n * rc.c * rc.s);
    C = size_t(rc.c);
    x.resize(total), z.resize(total), dy.resize(total), w.resize(C), b.resize(C), rm.resize(C), rv.resize(C);
    for (size_t i = 0; i < total; ++i) {
      x[i] = T(0.3 + 1.5 * r.normal());
      z[i] = T(r.normal());
      dy[i] = T(r.normal());
    }
    for (size_t j = 0; j < C; ++j) {
      w[j] = T(1 + 0.5 * r.sym()), b[j] = T(0.5 * r.sym()), rm[j] = T(0.3 * r.sym()), rv[j] = T(0.5 + r.uniform());
    }
  }
};

template <typename T>
bn::ForwardTrainingArgs<T> train_args(const Data<T>& d, const T* x, T* y, T* rm, T* rv, double* bm, double* bi, int nt) {
  bn::ForwardTrainingArgs<T> a;
  a.shape = d.shape;
  a.x = x;
  a.y = y;
  a.weight = d.w.data();
  a.bias = d.b.data();
  a.batch_mean = bm;
  a.batch_invstd = bi;
  a.running_mean = rm;
  a.running_var = rv;
  a.momentum_factor = 0.1;
  a.num_threads = nt;
  return a;
}

template <typename T>
void forward_cases(const Data<T>& d, const std::string& base, int nt) {
  const size_t total = d.total, C = d.C;
  // The unfused chain: the kNone forwards, then the ReLU (after + z) in T.
  std::vector<T> y0(total), rm0 = d.rm, rv0 = d.rv, yi0(total);
  std::vector<double> bm0(C), bi0(C);
  check(bn::forward_training(train_args(d, d.x.data(), y0.data(), rm0.data(), rv0.data(), bm0.data(), bi0.data(), nt)) ==
            bn::Status::kOk, "%s: unfused training forward", base.c_str());
  bn::ForwardInferenceArgs<T> ia;
  ia.shape = d.shape, ia.x = d.x.data(), ia.y = yi0.data(), ia.weight = d.w.data(), ia.bias = d.b.data();
  ia.mean = d.rm.data(), ia.var = d.rv.data(), ia.num_threads = nt;
  check(bn::forward_inference(ia) == bn::Status::kOk, "%s: unfused inference forward", base.c_str());
  for (Epilogue e : {Epilogue::kRelu, Epilogue::kAddRelu}) {
    const bool add = e == Epilogue::kAddRelu;
    auto chain = [&](const std::vector<T>& y) {
      std::vector<T> out(total);
      for (size_t i = 0; i < total; ++i) {
        const T v = add ? T(y[i] + d.z[i]) : y[i];
        out[i] = v < T(0) ? T(0) : v;
      }
      return out;
    };
    const std::vector<T> want = chain(y0), wanti = chain(yi0);
    // where: 0 separate output, 1 in place over x, 2 in place over z (kAddRelu only)
    for (int where = 0; where < (add ? 3 : 2); ++where) {
      const std::string ctx = fmt("%s %s %s", base.c_str(), add ? "add_relu" : "relu",
                                  where == 0 ? "separate" : where == 1 ? "over x" : "over z");
      std::vector<T> xin = d.x, zin = d.z, y(total, T(NAN));
      T* out = where == 0 ? y.data() : where == 1 ? xin.data() : zin.data();
      std::vector<T> rm = d.rm, rv = d.rv;
      std::vector<double> bm(C), bi(C);
      bn::ForwardTrainingArgs<T> a = train_args(d, xin.data(), out, rm.data(), rv.data(), bm.data(), bi.data(), nt);
      a.epilogue = e;
      a.residual = add ? zin.data() : nullptr;
      if (!check(bn::forward_training(a) == bn::Status::kOk, "%s: training status", ctx.c_str())) continue;
      const std::vector<T> got(out, out + total);
      expect_same(ctx + " train", "y", got, want);
      expect_same(ctx + " train", "running_mean", rm, rm0);
      expect_same(ctx + " train", "running_var", rv, rv0);
      expect_same(ctx + " train", "batch_invstd", bi, bi0);
      // Inference, the same placements.
      std::vector<T> xin2 = d.x, zin2 = d.z, y2(total, T(NAN));
      T* out2 = where == 0 ? y2.data() : where == 1 ? xin2.data() : zin2.data();
      bn::ForwardInferenceArgs<T> b = ia;
      b.x = xin2.data();
      b.y = out2;
      b.epilogue = e;
      b.residual = add ? zin2.data() : nullptr;
      if (!check(bn::forward_inference(b) == bn::Status::kOk, "%s: inference status", ctx.c_str())) continue;
      expect_same(ctx + " infer", "y", std::vector<T>(out2, out2 + total), wanti);
    }
  }
}

template <typename T>
void backward_cases(const Data<T>& d, const std::string& base, int nt) {
  const size_t total = d.total, C = d.C;
  // y: a fused forward's output (zeros where the ReLU cut), with some NaN (which pass dy).
  std::vector<T> y(total), rm = d.rm, rv = d.rv;
  std::vector<double> bm(C), bi(C);
  bn::ForwardTrainingArgs<T> fa = train_args(d, d.x.data(), y.data(), rm.data(), rv.data(), bm.data(), bi.data(), nt);
  fa.epilogue = Epilogue::kAddRelu;
  fa.residual = d.z.data();
  check(bn::forward_training(fa) == bn::Status::kOk, "%s: forward for backward", base.c_str());
  for (size_t i = 7; i < total; i += 997) y[i] = T(NAN);
  std::vector<T> g(total);
  for (size_t i = 0; i < total; ++i) g[i] = y[i] <= T(0) ? T(0) : d.dy[i];
  std::vector<double> rmean(C), rinv(C);
  for (size_t j = 0; j < C; ++j) rmean[j] = double(d.rm[j]);
  for (bool training : {true, false}) {
    auto args = [&](const T* dy, T* dx, T* gw, T* gb) {
      bn::BackwardArgs<T> a;
      a.shape = d.shape, a.x = d.x.data(), a.dy = dy, a.dx = dx, a.weight = d.w.data();
      a.mean = training ? bm.data() : rmean.data();
      a.invstd = training ? bi.data() : nullptr;
      a.running_var = training ? nullptr : d.rv.data();
      a.use_batch_stats = training, a.accumulate = false, a.num_threads = nt, a.grad_weight = gw, a.grad_bias = gb;
      return a;
    };
    std::vector<T> dx0(total), gw0(C), gb0(C);
    check(bn::backward(args(g.data(), dx0.data(), gw0.data(), gb0.data())) == bn::Status::kOk, "%s: unfused backward",
          base.c_str());
    for (Epilogue e : {Epilogue::kRelu, Epilogue::kAddRelu}) {
      // where: 0 separate dx, 1 dx over dy, 2 dx over y
      for (int where = 0; where < 3; ++where) {
        const std::string ctx = fmt("%s bwd %s %s %s", base.c_str(), training ? "train" : "eval",
                                    e == Epilogue::kAddRelu ? "add_relu" : "relu",
                                    where == 0 ? "separate" : where == 1 ? "dx over dy" : "dx over y");
        std::vector<T> dyin = d.dy, yin = y, dx(total, T(NAN)), gw(C, T(NAN)), gb(C, T(NAN)), dz(total, T(NAN));
        T* out = where == 0 ? dx.data() : where == 1 ? dyin.data() : yin.data();
        bn::BackwardArgs<T> a = args(dyin.data(), out, gw.data(), gb.data());
        a.epilogue = e;
        a.y = yin.data();
        a.residual_grad = e == Epilogue::kAddRelu ? dz.data() : nullptr;
        if (!check(bn::backward(a) == bn::Status::kOk, "%s: status", ctx.c_str())) continue;
        expect_same(ctx, "dx", std::vector<T>(out, out + total), dx0);
        expect_same(ctx, "grad_weight", gw, gw0);
        expect_same(ctx, "grad_bias", gb, gb0);
        if (e == Epilogue::kAddRelu) expect_same(ctx, "residual_grad", dz, g);
      }
    }
  }
}

template <typename T>
void errors(const std::string& base) {
  const bn::Shape s{2, 3, 5, false};
  std::vector<T> x(30, T(1)), y(30, T(NAN)), z(30, T(0)), dy(30, T(1));
  std::vector<T> rm(3, T(0)), rv(3, T(1));
  std::vector<double> mean(3, 0.0), inv(3, 1.0);
  auto untouched = [&] {
    for (T v : y) {
      if (!std::isnan(double(v))) return false;
    }
    return true;
  };
  bn::ForwardInferenceArgs<T> fi;
  fi.shape = s, fi.x = x.data(), fi.y = y.data(), fi.mean = rm.data(), fi.var = rv.data();
  fi.epilogue = Epilogue::kAddRelu;
  check(bn::forward_inference(fi) == bn::Status::kNullPointer, "%s: kAddRelu without residual", base.c_str());
  fi.epilogue = Epilogue::kRelu;
  fi.residual = z.data();
  check(bn::forward_inference(fi) == bn::Status::kBadEpilogue, "%s: kRelu with a residual", base.c_str());
  fi.epilogue = Epilogue(7);
  check(bn::forward_inference(fi) == bn::Status::kBadEpilogue, "%s: epilogue 7", base.c_str());
  bn::ForwardTrainingArgs<T> ft;
  ft.shape = s, ft.x = x.data(), ft.y = y.data(), ft.running_mean = rm.data(), ft.running_var = rv.data();
  ft.epilogue = Epilogue::kAddRelu;
  check(bn::forward_training(ft) == bn::Status::kNullPointer, "%s: training kAddRelu without residual", base.c_str());
  check(untouched() && rm[0] == T(0) && rv[0] == T(1), "%s: a refused forward wrote", base.c_str());
  bn::BackwardArgs<T> b;
  b.shape = s, b.x = x.data(), b.dy = dy.data(), b.dx = y.data(), b.mean = mean.data(), b.invstd = inv.data();
  b.epilogue = Epilogue::kRelu;
  check(bn::backward(b) == bn::Status::kNullPointer, "%s: backward kRelu without y", base.c_str());
  b.y = z.data();
  b.residual_grad = x.data();
  check(bn::backward(b) == bn::Status::kBadEpilogue, "%s: backward kRelu with residual_grad", base.c_str());
  b.epilogue = Epilogue::kNone;
  b.residual_grad = nullptr;
  check(bn::backward(b) == bn::Status::kBadEpilogue, "%s: backward kNone with y", base.c_str());
  b.epilogue = Epilogue::kAddRelu;
  b.residual_grad = z.data();
  b.dx = nullptr;
  check(bn::backward(b) == bn::Status::kNullPointer, "%s: residual_grad without dx", base.c_str());
  check(untouched(), "%s: a refused backward wrote", base.c_str());
}

template <typename T>
void run_all() {
  Rng r(std::is_same<T, float>::value ? 0x5E1F32 : 0x5E1F64);
  errors<T>(fmt("relu drivers %s", TI<T>::name));
  int turn = 0;
  for (const RCase& rc : kReluCases) {
    const Data<T> d(rc, r);
    // Large cases take one thread count per level, in turn (each count meets every level over the
    // cases): the whole cross product would keep the suite waiting for no new path.
    const bool large = d.total > 100000;
    for (bn::SimdLevel level : supported_levels()) {
      if (!check(bn::set_simd_level(level) == bn::Status::kOk, "set_simd_level")) continue;
      const int first = large ? 1 + turn++ % 3 : 1, last = large ? first : 3;
      for (int nt = first; nt <= last; ++nt) {
        const std::string base = fmt("relu driver %s/%s [N=%lld C=%lld S=%lld%s] (%s) threads=%d", bn::simd_level_name(level),
                                     TI<T>::name, (long long)rc.n, (long long)rc.c, (long long)rc.s,
                                     rc.channels_last ? " NHWC" : "", rc.note, nt);
        forward_cases(d, base, nt);
        backward_cases(d, base, nt);
      }
    }
  }
}

}  // namespace

void test_relu_drivers() {
  run_all<float>();
  run_all<double>();
}

}  // namespace bntest
