// Argument checks: every error status of the core (bad shapes incl. overflow, m == 1, eps,
// momentum, mismatched running statistics, null pointers, threads < 1), nothing written on error,
// and the small public functions (status messages, SIMD levels, default threads).
#include <functional>
#include <limits>

#include "test_util.h"

namespace bntest {
namespace {

constexpr int64_t kI64Max = std::numeric_limits<int64_t>::max();

template <typename T>
void test_errors() {
  const char* tn = TI<T>::name;
  const int64_t N = 4, C = 3, S = 5;
  const size_t total = size_t(N * C * S);
  Rng rng(0xE7707);
  std::vector<T> x(total), dy(total), w(C), b(C), mean_t(C), var_t(C);
  for (auto& v : x) v = T(rng.normal());
  for (auto& v : dy) v = T(rng.normal());
  for (size_t c = 0; c < size_t(C); ++c) {
    w[c] = T(1 + rng.uniform());
    b[c] = T(rng.sym());
    mean_t[c] = T(rng.sym());
    var_t[c] = T(1 + rng.uniform());
  }
  std::vector<double> mean_d(C, 0.1), inv_d(C, 1.5);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();

  struct ShapeCase {
    int64_t n, c, s;
    const char* what;
  };
  const ShapeCase bad_shapes[] = {
      {0, C, S, "N=0"},
      {N, 0, S, "C=0"},
      {N, C, 0, "S=0"},
      {-1, C, S, "N<0"},
      {N, -3, S, "C<0"},
      {N, C, -5, "S<0"},
      {kI64Max, 2, 1, "N*C overflows"},
      {int64_t(1) << 22, int64_t(1) << 22, int64_t(1) << 22, "N*C*S = 2^66"},
      {int64_t(1) << 31, int64_t(1) << 31, 4, "N*C*S = 2^64"},
      {kI64Max, kI64Max, kI64Max, "all INT64_MAX"},
      {int64_t(1) << 30, int64_t(1) << 30, int64_t(1) << 1, "N*C*S*8 > INT64_MAX"},
  };
  for (const ShapeCase& s : bad_shapes) {
    check(bn::validate_shape({s.n, s.c, s.s}) == bn::Status::kBadShape, "validate_shape(%s) != kBadShape",
          s.what);
  }
  check(bn::validate_shape({int64_t(1) << 20, int64_t(1) << 20, int64_t(1) << 10}) == bn::Status::kOk,
        "validate_shape(2^50 elements) != kOk");
  check(bn::validate_shape({1, 1, 1}) == bn::Status::kOk, "validate_shape(1,1,1) != kOk");

  // ---- forward_training ----
  {
    Buf<T> y(total, kGuardPre, kGuardPost), sm(C, kGuardPre, kGuardPost), si(C, kGuardPre, kGuardPost);
    Buf<double> bm(C, kGuardPre, kGuardPost), bi(C, kGuardPre, kGuardPost);
    Buf<T> rm(C, kGuardPre, kGuardPost), rv(C, kGuardPre, kGuardPost);
    std::vector<T> rm_init(C), rv_init(C);
    for (size_t c = 0; c < size_t(C); ++c) {
      rm[c] = rm_init[c] = T(0.25 * double(c));
      rv[c] = rv_init[c] = T(1.0 + double(c));
    }
    auto base = [&] {
      bn::ForwardTrainingArgs<T> a;
      a.shape = {N, C, S};
      a.x = x.data();
      a.y = y.data();
      a.weight = w.data();
      a.bias = b.data();
      a.save_mean = sm.data();
      a.save_invstd = si.data();
      a.batch_mean = bm.data();
      a.batch_invstd = bi.data();
      a.running_mean = rm.data();
      a.running_var = rv.data();
      a.eps = 1e-5;
      a.momentum_factor = 0.1;
      a.num_threads = 2;
      return a;
    };
    auto untouched = [&] {
      bool ok = y.all_poison() && sm.all_poison() && si.all_poison() && bm.all_poison() &&
                bi.all_poison() && rm.guards_intact() && rv.guards_intact();
      for (size_t c = 0; c < size_t(C); ++c) {
        ok = ok && std::memcmp(&rm[c], &rm_init[c], sizeof(T)) == 0 &&
             std::memcmp(&rv[c], &rv_init[c], sizeof(T)) == 0;
      }
      return ok;
    };
    struct Case {
      std::string what;
      std::function<void(bn::ForwardTrainingArgs<T>&)> mutate;
      bn::Status expect;
    };
    std::vector<Case> cases;
    for (const ShapeCase& s : bad_shapes) {
      cases.push_back({fmt("shape %s", s.what), [s](auto& a) { a.shape = {s.n, s.c, s.s}; },
                       bn::Status::kBadShape});
    }
    cases.push_back({"m == 1 ([1, 3])", [](auto& a) { a.shape = {1, 3, 1}; }, bn::Status::kTooFewValues});
    cases.push_back({"m == 1 ([1, 1, 1])", [](auto& a) { a.shape = {1, 1, 1}; }, bn::Status::kTooFewValues});
    cases.push_back({"eps NaN", [nan](auto& a) { a.eps = nan; }, bn::Status::kBadEps});
    cases.push_back({"eps < 0", [](auto& a) { a.eps = -1e-5; }, bn::Status::kBadEps});
    cases.push_back({"eps inf", [inf](auto& a) { a.eps = inf; }, bn::Status::kBadEps});
    cases.push_back({"momentum 1.5", [](auto& a) { a.momentum_factor = 1.5; }, bn::Status::kBadMomentum});
    cases.push_back({"momentum -0.1", [](auto& a) { a.momentum_factor = -0.1; }, bn::Status::kBadMomentum});
    cases.push_back({"momentum NaN", [nan](auto& a) { a.momentum_factor = nan; }, bn::Status::kBadMomentum});
    cases.push_back({"running_mean without running_var", [](auto& a) { a.running_var = nullptr; },
                     bn::Status::kMismatchedStats});
    cases.push_back({"running_var without running_mean", [](auto& a) { a.running_mean = nullptr; },
                     bn::Status::kMismatchedStats});
    cases.push_back({"null x", [](auto& a) { a.x = nullptr; }, bn::Status::kNullPointer});
    cases.push_back({"null y", [](auto& a) { a.y = nullptr; }, bn::Status::kNullPointer});
    cases.push_back({"threads 0", [](auto& a) { a.num_threads = 0; }, bn::Status::kBadThreads});
    cases.push_back({"threads -3", [](auto& a) { a.num_threads = -3; }, bn::Status::kBadThreads});
    cases.push_back({"residual without an epilogue that takes one", [&](auto& a) { a.residual = x.data(); },
                     bn::Status::kBadEpilogue});
    cases.push_back({"epilogue outside the enum", [](auto& a) { a.epilogue = bn::Epilogue(bn::kEpilogueCount + 6); },
                     bn::Status::kBadEpilogue});
    for (const Case& cs : cases) {
      bn::ForwardTrainingArgs<T> a = base();
      cs.mutate(a);
      const bn::Status st = bn::forward_training(a);
      check(st == cs.expect, "errors %s forward_training %s: status %d (%s), expected %d", tn,
            cs.what.c_str(), int(st), bn::status_message(st), int(cs.expect));
      check(untouched(), "errors %s forward_training %s: an output was written", tn, cs.what.c_str());
    }
    // Boundary values that are valid: momentum 0 and 1, eps 0.
    for (double mf : {0.0, 1.0}) {
      bn::ForwardTrainingArgs<T> a = base();
      a.momentum_factor = mf;
      check(bn::forward_training(a) == bn::Status::kOk, "errors %s forward_training momentum %g rejected",
            tn, mf);
    }
    bn::ForwardTrainingArgs<T> a = base();
    a.eps = 0.0;
    a.running_mean = a.running_var = nullptr;
    check(bn::forward_training(a) == bn::Status::kOk, "errors %s forward_training eps 0 rejected", tn);
  }

  // ---- forward_inference ----
  {
    Buf<T> y(total, kGuardPre, kGuardPost);
    auto base = [&] {
      bn::ForwardInferenceArgs<T> a;
      a.shape = {N, C, S};
      a.x = x.data();
      a.y = y.data();
      a.weight = w.data();
      a.bias = b.data();
      a.mean = mean_t.data();
      a.var = var_t.data();
      a.eps = 1e-5;
      a.num_threads = 2;
      return a;
    };
    struct Case {
      std::string what;
      std::function<void(bn::ForwardInferenceArgs<T>&)> mutate;
      bn::Status expect;
    };
    std::vector<Case> cases;
    for (const ShapeCase& s : bad_shapes) {
      cases.push_back({fmt("shape %s", s.what), [s](auto& a) { a.shape = {s.n, s.c, s.s}; },
                       bn::Status::kBadShape});
    }
    cases.push_back({"null x", [](auto& a) { a.x = nullptr; }, bn::Status::kNullPointer});
    cases.push_back({"null y", [](auto& a) { a.y = nullptr; }, bn::Status::kNullPointer});
    cases.push_back({"null mean", [](auto& a) { a.mean = nullptr; }, bn::Status::kNullPointer});
    cases.push_back({"null var", [](auto& a) { a.var = nullptr; }, bn::Status::kNullPointer});
    cases.push_back({"eps NaN", [nan](auto& a) { a.eps = nan; }, bn::Status::kBadEps});
    cases.push_back({"eps < 0", [](auto& a) { a.eps = -1.0; }, bn::Status::kBadEps});
    cases.push_back({"threads 0", [](auto& a) { a.num_threads = 0; }, bn::Status::kBadThreads});
    cases.push_back({"residual without an epilogue that takes one", [&](auto& a) { a.residual = x.data(); },
                     bn::Status::kBadEpilogue});
    cases.push_back({"epilogue outside the enum", [](auto& a) { a.epilogue = bn::Epilogue(bn::kEpilogueCount + 6); },
                     bn::Status::kBadEpilogue});
    for (const Case& cs : cases) {
      bn::ForwardInferenceArgs<T> a = base();
      cs.mutate(a);
      const bn::Status st = bn::forward_inference(a);
      check(st == cs.expect, "errors %s forward_inference %s: status %d (%s), expected %d", tn,
            cs.what.c_str(), int(st), bn::status_message(st), int(cs.expect));
      check(y.all_poison(), "errors %s forward_inference %s: y was written", tn, cs.what.c_str());
    }
    // One value per channel is fine in inference mode.
    bn::ForwardInferenceArgs<T> a = base();
    a.shape = {1, 3, 1};
    check(bn::forward_inference(a) == bn::Status::kOk, "errors %s forward_inference [1, 3] rejected", tn);
  }

  // ---- backward ----
  {
    Buf<T> dx(total, kGuardPre, kGuardPost), gw(C, kGuardPre, kGuardPost), gb(C, kGuardPre, kGuardPost);
    for (size_t c = 0; c < size_t(C); ++c) {
      gw[c] = T(0.5);
      gb[c] = T(-0.5);
    }
    auto base = [&] {
      bn::BackwardArgs<T> a;
      a.shape = {N, C, S};
      a.x = x.data();
      a.dy = dy.data();
      a.dx = dx.data();
      a.weight = w.data();
      a.mean = mean_d.data();
      a.invstd = inv_d.data();
      a.grad_weight = gw.data();
      a.grad_bias = gb.data();
      a.num_threads = 2;
      return a;
    };
    auto untouched = [&] {
      bool ok = dx.all_poison() && gw.guards_intact() && gb.guards_intact();
      for (size_t c = 0; c < size_t(C); ++c) ok = ok && gw[c] == T(0.5) && gb[c] == T(-0.5);
      return ok;
    };
    struct Case {
      std::string what;
      std::function<void(bn::BackwardArgs<T>&)> mutate;
      bn::Status expect;
    };
    std::vector<Case> cases;
    for (const ShapeCase& s : bad_shapes) {
      cases.push_back({fmt("shape %s", s.what), [s](auto& a) { a.shape = {s.n, s.c, s.s}; },
                       bn::Status::kBadShape});
    }
    cases.push_back({"null x", [](auto& a) { a.x = nullptr; }, bn::Status::kNullPointer});
    cases.push_back({"null dy", [](auto& a) { a.dy = nullptr; }, bn::Status::kNullPointer});
    cases.push_back({"null mean", [](auto& a) { a.mean = nullptr; }, bn::Status::kNullPointer});
    cases.push_back({"null invstd", [](auto& a) { a.invstd = nullptr; }, bn::Status::kNullPointer});
    cases.push_back({"null invstd, running_var in training mode", [&](auto& a) { a.invstd = nullptr; a.running_var = var_t.data(); },
                     bn::Status::kNullPointer});
    cases.push_back({"evaluation mode from running_var, eps NaN",
                     [&, nan](auto& a) { a.use_batch_stats = false; a.invstd = nullptr; a.running_var = var_t.data(); a.eps = nan; },
                     bn::Status::kBadEps});
    cases.push_back({"evaluation mode from running_var, eps < 0",
                     [&](auto& a) { a.use_batch_stats = false; a.invstd = nullptr; a.running_var = var_t.data(); a.eps = -1.0; },
                     bn::Status::kBadEps});
    cases.push_back({"threads 0", [](auto& a) { a.num_threads = 0; }, bn::Status::kBadThreads});
    for (const Case& cs : cases) {
      bn::BackwardArgs<T> a = base();
      cs.mutate(a);
      const bn::Status st = bn::backward(a);
      check(st == cs.expect, "errors %s backward %s: status %d (%s), expected %d", tn, cs.what.c_str(),
            int(st), bn::status_message(st), int(cs.expect));
      check(untouched(), "errors %s backward %s: an output was written", tn, cs.what.c_str());
    }
  }
}

}  // namespace

void test_errors_f32() { test_errors<float>(); }
void test_errors_f64() { test_errors<double>(); }
void test_misc() {
  for (int s = 0; s <= 10; ++s) {
    const char* msg = bn::status_message(bn::Status(s));
    check(msg != nullptr && msg[0] != '\0', "status_message(%d) empty", s);
  }
  const bn::SimdLevel cur = bn::active_simd_level();
  for (bn::SimdLevel l : {bn::SimdLevel::kScalar, bn::SimdLevel::kAvx2, bn::SimdLevel::kAvx512,
                          bn::SimdLevel::kNeon}) {
    if (bn::simd_level_supported(l)) continue;
    check(bn::set_simd_level(l) == bn::Status::kUnsupported, "set_simd_level(%s) not kUnsupported",
          bn::simd_level_name(l));
    check(bn::active_simd_level() == cur, "failed set_simd_level(%s) changed the level",
          bn::simd_level_name(l));
  }
  check(bn::simd_level_supported(bn::SimdLevel::kScalar), "scalar level not supported");
  check(bn::simd_level_supported(bn::detected_simd_level()), "detected level not supported");
  check(bn::default_num_threads() >= 1, "default_num_threads() < 1");
#if defined(__aarch64__)
  check(bn::detected_simd_level() == bn::SimdLevel::kNeon, "arm64 build did not detect neon");
#endif
}

}  // namespace bntest
