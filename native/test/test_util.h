// Shared by every native test file: reporting (one line per failing check, counts for the final
// "N passed, M failed"), deterministic random numbers, per-dtype tolerances, NaN-poisoned buffers
// with guard regions, and compensated float64 sums.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "batchnorm.h"
#include "kernels.h"

namespace bntest {

// ------------------------------------------------------------------------------------------------
// Reporting
// ------------------------------------------------------------------------------------------------
inline int g_passed = 0;
inline int g_failed = 0;

__attribute__((format(printf, 2, 3))) inline bool check(bool ok, const char* fmt, ...) {
  if (ok) {
    ++g_passed;
    return true;
  }
  ++g_failed;
  std::fputs("FAIL: ", stdout);
  va_list ap;
  va_start(ap, fmt);
  std::vprintf(fmt, ap);
  va_end(ap);
  std::fputc('\n', stdout);
  std::fflush(stdout);
  return false;
}

__attribute__((format(printf, 1, 2))) inline std::string fmt(const char* f, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, f);
  std::vsnprintf(buf, sizeof buf, f, ap);
  va_end(ap);
  return buf;
}

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// ------------------------------------------------------------------------------------------------
// Deterministic pseudo-random numbers (splitmix64)
// ------------------------------------------------------------------------------------------------
struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed) {}
  uint64_t next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() { return double(next() >> 11) * 0x1.0p-53; }  // [0, 1)
  double sym() { return 2.0 * uniform() - 1.0; }                 // [-1, 1)
  // Approximately standard normal (Irwin-Hall of 4), no libm needed.
  double normal() { return (uniform() + uniform() + uniform() + uniform() - 2.0) * 1.7320508075688772; }
};

// ------------------------------------------------------------------------------------------------
// Type traits: poison value and tolerances
// ------------------------------------------------------------------------------------------------
template <typename T>
struct TI;
template <>
struct TI<float> {
  static constexpr const char* name = "f32";
  static constexpr double eps = 0x1.0p-23;   // ulp of 1
  static constexpr double acc_rel = 1e-6;    // accumulations (statistics, sums) relative
  // The run and group reductions sum at most 8 terms per lane in T (the square or product rounded
  // once in T too), then accumulate those partial sums in float64: (8 + 2) unit roundoffs of the
  // sum of magnitudes bound the difference from the same terms summed exactly. A kernel that
  // accumulated in T throughout would exceed it within a few hundred values.
  static constexpr double partial_rel = 10 * 0x1.0p-24;
  static constexpr double stat_rel = 1e-7;   // extra relative error of mean/invstd in elementwise outputs
  static constexpr double var_rel = 1e-6;    // relative error of var / invstd
  static float poison() {
    const uint32_t bits = 0x7fc0beefu;
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
  }
};
template <>
struct TI<double> {
  static constexpr const char* name = "f64";
  static constexpr double eps = 0x1.0p-52;
  static constexpr double acc_rel = 1e-13;
  static constexpr double partial_rel = 1e-12;  // 10 unit roundoffs are 1e-15: the float64 order dominates
  static constexpr double stat_rel = 1e-12;
  static constexpr double var_rel = 1e-12;
  static double poison() {
    const uint64_t bits = 0x7ff80000deadbeefull;
    double d;
    std::memcpy(&d, &bits, sizeof d);
    return d;
  }
};

// 16-bit storage (raw bits): only the name and the poison; their arithmetic is float's (TI<float>).
template <>
struct TI<bn::bf16> {
  static constexpr const char* name = "bf16";
  static bn::bf16 poison() {
    bn::bf16 v;
    v.bits = 0x7FBE;  // a NaN the rule never writes (its NaN is 0x7FC0)
    return v;
  }
};
template <>
struct TI<bn::f16> {
  static constexpr const char* name = "f16";
  static bn::f16 poison() {
    bn::f16 v;
    v.bits = 0x7DBE;  // a NaN the rule never writes (its NaN is 0x7E00)
    return v;
  }
};

template <typename T>
bool is_poison(T v) {
  const T p = TI<T>::poison();
  return std::memcmp(&v, &p, sizeof(T)) == 0;
}

// Neumaier-compensated float64 sum: the reference accumulator (portable: no long double, which is
// a slow software type on aarch64).
struct KSum {
  double s = 0.0, c = 0.0;
  void add(double v) {
    const double t = s + v;
    if (std::fabs(s) >= std::fabs(v)) {
      c += (s - t) + v;
    } else {
      c += (v - t) + s;
    }
    s = t;
  }
  double get() const { return s + c; }
};

// ------------------------------------------------------------------------------------------------
// Buffers: 64-byte aligned base, `pre` elements before the data, `post` after, all poisoned.
// Inputs use pre = offset, post = 0 (exact end: ASan flags any over-read); outputs use guard
// regions that must still hold the poison bit pattern after the call.
// ------------------------------------------------------------------------------------------------
constexpr size_t kGuardPre = 16;  // 64 bytes of f32, 128 of f64: keeps data aligned when off = 0
constexpr size_t kGuardPost = 5;

template <typename T>
class Buf {
 public:
  // `align`: the base's alignment (4096: buffers at the same 4 KiB offset, as large allocations are).
  Buf(size_t n, size_t pre, size_t post, size_t align = 64) : n_(n), pre_(pre), post_(post), align_(align) {
    const size_t bytes = (pre + n + post) * sizeof(T);
    base_ = static_cast<T*>(::operator new(bytes ? bytes : 1, std::align_val_t(align)));
    for (size_t i = 0; i < pre + n + post; ++i) base_[i] = TI<T>::poison();
  }
  ~Buf() { ::operator delete(base_, std::align_val_t(align_)); }
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;
  T* data() { return base_ + pre_; }
  const T* data() const { return base_ + pre_; }
  T& operator[](size_t i) { return base_[pre_ + i]; }
  const T& operator[](size_t i) const { return base_[pre_ + i]; }
  size_t size() const { return n_; }
  bool guards_intact() const {
    for (size_t i = 0; i < pre_; ++i) {
      if (!is_poison(base_[i])) return false;
    }
    for (size_t i = 0; i < post_; ++i) {
      if (!is_poison(base_[pre_ + n_ + i])) return false;
    }
    return true;
  }
  bool all_poison() const {
    for (size_t i = 0; i < n_; ++i) {
      if (!is_poison((*this)[i])) return false;
    }
    return guards_intact();
  }

 private:
  T* base_;
  size_t n_, pre_, post_, align_;
};

// One check per compared array: counts the mismatches and reports the first.
struct ElemCheck {
  size_t bad = 0, count = 0, first = 0;
  double got0 = 0, ref0 = 0, tol0 = 0;
  void add(size_t i, double got, double ref, double tol) {
    ++count;
    if (std::fabs(got - ref) <= tol) return;  // NaN fails
    if (bad++ == 0) {
      first = i;
      got0 = got;
      ref0 = ref;
      tol0 = tol;
    }
  }
  void report(const std::string& ctx, const char* what) const {
    check(bad == 0, "%s: %s: %zu of %zu wrong; first [%zu] got %.17g ref %.17g |err| %.3g tol %.3g",
          ctx.c_str(), what, bad, count, first, got0, ref0, std::fabs(got0 - ref0), tol0);
  }
};

inline void check_acc(const std::string& ctx, const char* what, double got, double ref, double mag,
               double rel) {
  const double tol = rel * mag + 1e-300;
  check(std::fabs(got - ref) <= tol, "%s: %s got %.17g ref %.17g |err| %.3g tol %.3g", ctx.c_str(),
        what, got, ref, std::fabs(got - ref), tol);
}

// The SIMD levels this CPU and build can run (scalar always).
inline std::vector<bn::SimdLevel> supported_levels() {
  std::vector<bn::SimdLevel> v;
  for (bn::SimdLevel l : {bn::SimdLevel::kScalar, bn::SimdLevel::kAvx2, bn::SimdLevel::kAvx512,
                          bn::SimdLevel::kNeon}) {
    if (bn::simd_level_supported(l)) v.push_back(l);
  }
  return v;
}

// The test areas, one file each; main.cc runs them in this order.
void test_misc();                    // errors_test.cc
void test_machine_facts();           // plan_test.cc
void test_planner();                 // plan_test.cc
void test_schedule_claims();         // schedule_test.cc
void test_microkernels();            // microkernels_test.cc (run, group and rows families)
void test_drivers_f32();             // drivers_test.cc
void test_drivers_f64();             // drivers_test.cc
void test_offset_accuracy();         // drivers_test.cc
void test_numerics_f32();            // numerics_test.cc
void test_numerics_f64();            // numerics_test.cc
void test_determinism();             // determinism_test.cc
void test_relu_drivers();            // relu_drivers_test.cc (the fused activation)
void test_errors_f32();              // errors_test.cc
void test_errors_f64();              // errors_test.cc
void test_half_kernels();            // half_kernels_test.cc (bf16 / f16 tables of every ISA)

}  // namespace bntest
