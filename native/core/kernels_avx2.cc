// AVX2 + FMA kernels (x86-64). Compiled with -mavx2 -mfma; everything here has internal linkage
// but the table getter, which executes no AVX instruction.
#include <immintrin.h>

#include "convert_avx2.h"
#include "kernels.h"

namespace bn {
namespace {

// Sliding windows for masked loads/stores: 8 - n (or 8 - 2n) from the start gives n active lanes.
alignas(64) constexpr int32_t kTailMask32[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
constexpr const int32_t* kTailMask64 = kTailMask32;  // a 64-bit lane is active when both halves are

struct Avx2F32 {
  using T = float;
  using Vec = __m256;
  static constexpr size_t W = 8;
  static constexpr size_t kRegisters = 16;  // vector registers of the ISA
  static Vec load(const T* p) { return _mm256_loadu_ps(p); }
  static void store(T* p, Vec v) { _mm256_storeu_ps(p, v); }
  static Vec set1(T v) { return _mm256_set1_ps(v); }
  static Vec add(Vec a, Vec b) { return _mm256_add_ps(a, b); }
  static Vec sub(Vec a, Vec b) { return _mm256_sub_ps(a, b); }
  static Vec mul(Vec a, Vec b) { return _mm256_mul_ps(a, b); }
  static Vec fmadd(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }
  static constexpr size_t kStreamAlign = 32;
  static __m256i tail_mask(size_t n) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kTailMask32 + 8 - n)); }
  static Vec load_tail(const T* p, size_t n, T fill) {
    const __m256i m = tail_mask(n);
    return _mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, m), _mm256_castsi256_ps(m));
  }
  static void store_tail(T* p, Vec v, size_t n) { _mm256_maskstore_ps(p, tail_mask(n), v); }
  // Lanes [0, k) from a, the rest from b.
  static Vec blend_lanes(Vec a, Vec b, size_t k) { return _mm256_blendv_ps(b, a, _mm256_castsi256_ps(tail_mask(k))); }
  static void stream(T* p, Vec v) { _mm256_stream_ps(p, v); }
  static void prefetch(const T* p) { _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T1); }
  struct Acc {
    __m256d lo, hi;
  };
  static Acc acc_zero() { return {_mm256_setzero_pd(), _mm256_setzero_pd()}; }
  static __m256d lo(Vec v) { return _mm256_cvtps_pd(_mm256_castps256_ps128(v)); }
  static __m256d hi(Vec v) { return _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)); }
  static Acc acc_load(const double* p) { return {_mm256_loadu_pd(p), _mm256_loadu_pd(p + W / 2)}; }
  static void acc_store(double* p, const Acc& a) {
    _mm256_storeu_pd(p, a.lo);
    _mm256_storeu_pd(p + W / 2, a.hi);
  }
  static void acc_add(Acc& s, Vec v) {
    s.lo = _mm256_add_pd(s.lo, lo(v));
    s.hi = _mm256_add_pd(s.hi, hi(v));
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
  static constexpr size_t kRegisters = 16;
  static Vec load(const T* p) { return _mm256_loadu_pd(p); }
  static void store(T* p, Vec v) { _mm256_storeu_pd(p, v); }
  static Vec set1(T v) { return _mm256_set1_pd(v); }
  static Vec add(Vec a, Vec b) { return _mm256_add_pd(a, b); }
  static Vec sub(Vec a, Vec b) { return _mm256_sub_pd(a, b); }
  static Vec mul(Vec a, Vec b) { return _mm256_mul_pd(a, b); }
  static Vec fmadd(Vec a, Vec b, Vec c) { return _mm256_fmadd_pd(a, b, c); }
  static constexpr size_t kStreamAlign = 32;
  static __m256i tail_mask(size_t n) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kTailMask64 + 8 - 2 * n)); }
  static Vec load_tail(const T* p, size_t n, T fill) {
    const __m256i m = tail_mask(n);
    return _mm256_blendv_pd(_mm256_set1_pd(fill), _mm256_maskload_pd(p, m), _mm256_castsi256_pd(m));
  }
  static void store_tail(T* p, Vec v, size_t n) { _mm256_maskstore_pd(p, tail_mask(n), v); }
  static Vec blend_lanes(Vec a, Vec b, size_t k) { return _mm256_blendv_pd(b, a, _mm256_castsi256_pd(tail_mask(k))); }
  static void stream(T* p, Vec v) { _mm256_stream_pd(p, v); }
  static void prefetch(const T* p) { _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T1); }
  using Acc = __m256d;
  static Acc acc_zero() { return _mm256_setzero_pd(); }
  static Acc acc_load(const double* p) { return _mm256_loadu_pd(p); }
  static void acc_store(double* p, Acc a) { _mm256_storeu_pd(p, a); }
  static void acc_add(Acc& s, Vec v) { s = _mm256_add_pd(s, v); }
  static double acc_sum(Acc acc) { return Avx2F32::hsum(acc); }
};

// The fused ReLU's lane operations (kernels_body.inl). max(0, v) returns v when v is NaN (the
// second operand), and v = -0 (0 > -0 is false): v < 0 ? 0 : v. The gate keeps g where
// !(y <= 0), NaN included (_CMP_NLE_UQ: true when unordered).
inline __m256 relu_lanes(__m256 v) { return _mm256_max_ps(_mm256_setzero_ps(), v); }
inline __m256d relu_lanes(__m256d v) { return _mm256_max_pd(_mm256_setzero_pd(), v); }
inline __m256 gate_lanes(__m256 g, __m256 y) { return _mm256_and_ps(_mm256_cmp_ps(y, _mm256_setzero_ps(), _CMP_NLE_UQ), g); }
inline __m256d gate_lanes(__m256d g, __m256d y) {
  return _mm256_and_pd(_mm256_cmp_pd(y, _mm256_setzero_pd(), _CMP_NLE_UQ), g);
}

#include "kernels_body.inl"
#include "kernels_half.inl"

// 16-bit storage through convert_avx2.h (F16C for float16). Non-temporal stores of the 16 bytes.
struct Bf16Avx2 {
  using Storage = bf16;
  static constexpr size_t kStreamAlign = 16;
  static __m256 load(const uint16_t* p) { return load_bf16_as_f32_avx2(p); }
  static __m256 load_tail(const uint16_t* p, size_t n) { return load_bf16_as_f32_tail_avx2(p, n); }
  static void store(uint16_t* p, __m256 v) { store_f32_as_bf16_avx2(p, v); }
  static void store_tail(uint16_t* p, __m256 v, size_t n) { store_f32_as_bf16_tail_avx2(p, v, n); }
  static void stream(uint16_t* p, __m256 v) { _mm_stream_si128(reinterpret_cast<__m128i*>(p), cvt_f32_to_bf16_avx2(v)); }
};
struct F16Avx2 {
  using Storage = f16;
  static constexpr size_t kStreamAlign = 16;
  static __m256 load(const uint16_t* p) { return load_f16_as_f32_avx2(p); }
  static __m256 load_tail(const uint16_t* p, size_t n) { return load_f16_as_f32_tail_avx2(p, n); }
  static void store(uint16_t* p, __m256 v) { store_f32_as_f16_avx2(p, v); }
  static void store_tail(uint16_t* p, __m256 v, size_t n) { store_f32_as_f16_tail_avx2(p, v, n); }
  static void stream(uint16_t* p, __m256 v) { _mm_stream_si128(reinterpret_cast<__m128i*>(p), cvt_f32_to_f16_avx2(v)); }
};

constexpr KernelSet kAvx2{"avx2", Kernels<Avx2F32>::table(), Kernels<Avx2F64>::table(),
                          Kernels<HalfTraits<Avx2F32, Bf16Avx2>>::table(), Kernels<HalfTraits<Avx2F32, F16Avx2>>::table()};

}  // namespace

const KernelSet* kernels_avx2() { return &kAvx2; }

}  // namespace bn
