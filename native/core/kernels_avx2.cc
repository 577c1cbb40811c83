// AVX2 + FMA kernels (x86-64). Compiled with -mavx2 -mfma; everything here has internal linkage
// but the table getter, which executes no AVX instruction.
#include <immintrin.h>

#include "kernels.h"

namespace bn {
namespace {

struct Avx2F32 {
  using T = float;
  using Vec = __m256;
  static constexpr size_t W = 8;
  static Vec load(const T* p) { return _mm256_loadu_ps(p); }
  static void store(T* p, Vec v) { _mm256_storeu_ps(p, v); }
  static Vec set1(T v) { return _mm256_set1_ps(v); }
  static Vec sub(Vec a, Vec b) { return _mm256_sub_ps(a, b); }
  static Vec mul(Vec a, Vec b) { return _mm256_mul_ps(a, b); }
  static Vec fmadd(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }
  static T fma1(T a, T b, T c) { return __builtin_fmaf(a, b, c); }
  struct Acc {
    __m256d lo, hi;
  };
  static Acc acc_zero() { return {_mm256_setzero_pd(), _mm256_setzero_pd()}; }
  static void acc_add(Acc& acc, Vec v) {
    acc.lo = _mm256_add_pd(acc.lo, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
    acc.hi = _mm256_add_pd(acc.hi, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
  }
  static double hsum(__m256d v) {
    const __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
  }
  static double acc_sum(const Acc& acc) { return hsum(_mm256_add_pd(acc.lo, acc.hi)); }
};

struct Avx2F64 {
  using T = double;
  using Vec = __m256d;
  static constexpr size_t W = 4;
  static Vec load(const T* p) { return _mm256_loadu_pd(p); }
  static void store(T* p, Vec v) { _mm256_storeu_pd(p, v); }
  static Vec set1(T v) { return _mm256_set1_pd(v); }
  static Vec sub(Vec a, Vec b) { return _mm256_sub_pd(a, b); }
  static Vec mul(Vec a, Vec b) { return _mm256_mul_pd(a, b); }
  static Vec fmadd(Vec a, Vec b, Vec c) { return _mm256_fmadd_pd(a, b, c); }
  static T fma1(T a, T b, T c) { return __builtin_fma(a, b, c); }
  using Acc = __m256d;
  static Acc acc_zero() { return _mm256_setzero_pd(); }
  static void acc_add(Acc& acc, Vec v) { acc = _mm256_add_pd(acc, v); }
  static double acc_sum(Acc acc) { return Avx2F32::hsum(acc); }
};

#include "kernels_body.inl"

constexpr KernelSet kAvx2{Kernels<Avx2F32>::table(), Kernels<Avx2F64>::table()};

}  // namespace

const KernelSet* kernels_avx2() { return &kAvx2; }

}  // namespace bn
