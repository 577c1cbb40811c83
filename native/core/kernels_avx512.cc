// AVX-512F kernels (x86-64). Compiled with -mavx512f -mavx2 -mfma; everything here has internal
// linkage but the table getter, which executes no AVX-512 instruction.
#include <immintrin.h>

#include "convert_avx512.h"
#include "kernels.h"
#if defined(BN_KERNELS_AVX512BF16_UNIT)
#include "convert_avx512bf16.h"
#endif

namespace bn {
namespace {

struct Avx512F32 {
  using T = float;
  using Vec = __m512;
  static constexpr size_t W = 16;
  static constexpr size_t kRegisters = 32;  // vector registers of the ISA
  static Vec load(const T* p) { return _mm512_loadu_ps(p); }
  static void store(T* p, Vec v) { _mm512_storeu_ps(p, v); }
  static Vec set1(T v) { return _mm512_set1_ps(v); }
  static Vec add(Vec a, Vec b) { return _mm512_add_ps(a, b); }
  static Vec sub(Vec a, Vec b) { return _mm512_sub_ps(a, b); }
  static Vec mul(Vec a, Vec b) { return _mm512_mul_ps(a, b); }
  static Vec fmadd(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }
  static constexpr size_t kStreamAlign = 64;
  static __mmask16 tail_mask(size_t n) { return __mmask16((1u << n) - 1u); }
  static Vec load_tail(const T* p, size_t n, T fill) { return _mm512_mask_loadu_ps(_mm512_set1_ps(fill), tail_mask(n), p); }
  static void store_tail(T* p, Vec v, size_t n) { _mm512_mask_storeu_ps(p, tail_mask(n), v); }
  // Lanes [0, k) from a, the rest from b.
  static Vec blend_lanes(Vec a, Vec b, size_t k) { return _mm512_mask_blend_ps(tail_mask(k), b, a); }
  static void stream(T* p, Vec v) { _mm512_stream_ps(p, v); }
  static void prefetch(const T* p) { _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T1); }
  struct Acc {
    __m512d lo, hi;
  };
  static Acc acc_zero() { return {_mm512_setzero_pd(), _mm512_setzero_pd()}; }
  static __m512d lo(Vec v) { return _mm512_cvtps_pd(_mm512_castps512_ps256(v)); }
  // AVX-512F only (no DQ): take the upper 8 floats through a double-typed extract.
  static __m512d hi(Vec v) { return _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))); }
  static Acc acc_load(const double* p) { return {_mm512_loadu_pd(p), _mm512_loadu_pd(p + W / 2)}; }
  static void acc_store(double* p, const Acc& a) {
    _mm512_storeu_pd(p, a.lo);
    _mm512_storeu_pd(p + W / 2, a.hi);
  }
  static void acc_add(Acc& s, Vec v) {
    s.lo = _mm512_add_pd(s.lo, lo(v));
    s.hi = _mm512_add_pd(s.hi, hi(v));
  }
  static double acc_sum(const Acc& acc) { return _mm512_reduce_add_pd(_mm512_add_pd(acc.lo, acc.hi)); }
};

struct Avx512F64 {
  using T = double;
  using Vec = __m512d;
  static constexpr size_t W = 8;
  static constexpr size_t kRegisters = 32;
  static Vec load(const T* p) { return _mm512_loadu_pd(p); }
  static void store(T* p, Vec v) { _mm512_storeu_pd(p, v); }
  static Vec set1(T v) { return _mm512_set1_pd(v); }
  static Vec add(Vec a, Vec b) { return _mm512_add_pd(a, b); }
  static Vec sub(Vec a, Vec b) { return _mm512_sub_pd(a, b); }
  static Vec mul(Vec a, Vec b) { return _mm512_mul_pd(a, b); }
  static Vec fmadd(Vec a, Vec b, Vec c) { return _mm512_fmadd_pd(a, b, c); }
  static constexpr size_t kStreamAlign = 64;
  static __mmask8 tail_mask(size_t n) { return __mmask8((1u << n) - 1u); }
  static Vec load_tail(const T* p, size_t n, T fill) { return _mm512_mask_loadu_pd(_mm512_set1_pd(fill), tail_mask(n), p); }
  static void store_tail(T* p, Vec v, size_t n) { _mm512_mask_storeu_pd(p, tail_mask(n), v); }
  static Vec blend_lanes(Vec a, Vec b, size_t k) { return _mm512_mask_blend_pd(tail_mask(k), b, a); }
  static void stream(T* p, Vec v) { _mm512_stream_pd(p, v); }
  static void prefetch(const T* p) { _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T1); }
  using Acc = __m512d;
  static Acc acc_zero() { return _mm512_setzero_pd(); }
  static Acc acc_load(const double* p) { return _mm512_loadu_pd(p); }
  static void acc_store(double* p, Acc a) { _mm512_storeu_pd(p, a); }
  static void acc_add(Acc& s, Vec v) { s = _mm512_add_pd(s, v); }
  static double acc_sum(Acc acc) { return _mm512_reduce_add_pd(acc); }
};

// The fused ReLU's lane operations (kernels_body.inl), as in kernels_avx2.cc: max(0, v) returns v
// when v is NaN or -0; the gate keeps g where !(y <= 0), NaN included.
inline __m512 relu_lanes(__m512 v) { return _mm512_max_ps(_mm512_setzero_ps(), v); }
inline __m512d relu_lanes(__m512d v) { return _mm512_max_pd(_mm512_setzero_pd(), v); }
inline __m512 gate_lanes(__m512 g, __m512 y) {
  return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(y, _mm512_setzero_ps(), _CMP_NLE_UQ), g);
}
inline __m512d gate_lanes(__m512d g, __m512d y) {
  return _mm512_maskz_mov_pd(_mm512_cmp_pd_mask(y, _mm512_setzero_pd(), _CMP_NLE_UQ), g);
}

#include "kernels_body.inl"
#include "kernels_half.inl"

// 16-bit storage through convert_avx512.h. Non-temporal stores of the 32 bytes.
struct Bf16Avx512 {
  using Storage = bf16;
  static constexpr size_t kStreamAlign = 32;
  static __m512 load(const uint16_t* p) { return load_bf16_as_f32_avx512(p); }
  static __m512 load_tail(const uint16_t* p, size_t n) { return load_bf16_as_f32_tail_avx512(p, n); }
  static void store(uint16_t* p, __m512 v) { store_f32_as_bf16_avx512(p, v); }
  static void store_tail(uint16_t* p, __m512 v, size_t n) { store_f32_as_bf16_tail_avx512(p, v, n); }
  static void stream(uint16_t* p, __m512 v) { _mm256_stream_si256(reinterpret_cast<__m256i*>(p), cvt_f32_to_bf16_avx512(v)); }
};

#if !defined(BN_KERNELS_AVX512BF16_UNIT)
struct F16Avx512 {
  using Storage = f16;
  static constexpr size_t kStreamAlign = 32;
  static __m512 load(const uint16_t* p) { return load_f16_as_f32_avx512(p); }
  static __m512 load_tail(const uint16_t* p, size_t n) { return load_f16_as_f32_tail_avx512(p, n); }
  static void store(uint16_t* p, __m512 v) { store_f32_as_f16_avx512(p, v); }
  static void store_tail(uint16_t* p, __m512 v, size_t n) { store_f32_as_f16_tail_avx512(p, v, n); }
  static void stream(uint16_t* p, __m512 v) { _mm256_stream_si256(reinterpret_cast<__m256i*>(p), cvt_f32_to_f16_avx512(v)); }
};

constexpr KernelSet kAvx512{"avx512", Kernels<Avx512F32>::table(), Kernels<Avx512F64>::table(),
                            Kernels<HalfTraits<Avx512F32, Bf16Avx512>>::table(),
                            Kernels<HalfTraits<Avx512F32, F16Avx512>>::table()};

}  // namespace

const KernelSet* kernels_avx512() { return &kAvx512; }
#else
// kernels_avx512bf16.cc: the bfloat16 table alone, rounding with VCVTNEPS2BF16 where it follows
// the rule (convert_avx512bf16.h bypasses it for vectors with a subnormal or NaN lane).
struct Bf16Avx512Ne : Bf16Avx512 {
  static void store(uint16_t* p, __m512 v) { store_f32_as_bf16_avx512bf16(p, v); }
  static void store_tail(uint16_t* p, __m512 v, size_t n) { store_f32_as_bf16_tail_avx512bf16(p, v, n); }
  static void stream(uint16_t* p, __m512 v) { _mm256_stream_si256(reinterpret_cast<__m256i*>(p), cvt_f32_to_bf16_avx512bf16(v)); }
};

constexpr KernelTable<bf16> kBf16Ne = Kernels<HalfTraits<Avx512F32, Bf16Avx512Ne>>::table();

}  // namespace

const KernelTable<bf16>* bf16_table_avx512bf16() { return &kBf16Ne; }
#endif

}  // namespace bn
