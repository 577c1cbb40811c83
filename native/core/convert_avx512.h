// AVX-512F helpers: 16 lanes of float32 (__m512) from and to 16 values of 16-bit storage
// (__m256i), by the rule of convert_rule.h. AVX-512F only (no BW/VL): include from translation
// units compiled with -mavx512f. Every function has internal linkage.
#pragma once

#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "convert_rule.h"

namespace bn {

static inline __mmask16 tail_mask_avx512(size_t n) { return __mmask16((1u << n) - 1u); }

// Register conversions.
static inline __m512 cvt_bf16_to_f32_avx512(__m256i h) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

static inline __m512 cvt_f16_to_f32_avx512(__m256i h) { return _mm512_cvtph_ps(h); }

// The rounded bfloat16 bits, one per 32-bit lane (VPMOVDW narrows them, masked or not). NaN lanes
// by an unordered compare (no MXCSR setting changes it): one instruction, not three.
static inline __m512i cvt_f32_to_bf16_lanes_avx512(__m512 v) {
  const __m512i u = _mm512_castps_si512(v);
  const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  const __m512i r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7FFF)), lsb), 16);
  return _mm512_mask_mov_epi32(r, nan, _mm512_set1_epi32(kBF16CanonicalNaN));
}

static inline __m256i cvt_f32_to_bf16_avx512(__m512 v) { return _mm512_cvtepi32_epi16(cvt_f32_to_bf16_lanes_avx512(v)); }

// VCVTPS2PH with immediate 0 rounds to nearest even whatever MXCSR says; NaN lanes are first
// replaced by the one NaN it turns into 0x7E00.
static inline __m256i cvt_f32_to_f16_avx512(__m512 v) {
  const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  v = _mm512_mask_mov_ps(v, nan, _mm512_castsi512_ps(_mm512_set1_epi32(int32_t(kF32CanonicalNaNBits))));
  return _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT);
}

// 16-bit memory: 16 values, or the first n < 16 (other lanes 0; memory past n never touched;
// 16-bit masked moves would need AVX512BW).
static inline __m256i load_u16x16_avx512(const uint16_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }

// Tails in registers, as in convert_avx2.h (AVX2 moves; AVX-512F implies AVX2): the first n / 2
// pairs by a masked 32-bit move, an odd last value on its own. Windows: kPairWindow512 + 8 - k,
// k active 32-bit lanes; kLaneWindow512 + 15 - j, 16-bit lane j.
alignas(64) static const int32_t kPairWindow512[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
alignas(64) static const int16_t kLaneWindow512[31] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, -1,
                                                       0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};

static inline __m256i load_u16x16_tail_avx512(const uint16_t* p, size_t n) {
  const __m256i pairs_mask = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kPairWindow512 + 8 - n / 2));
  const __m256i pairs = _mm256_maskload_epi32(reinterpret_cast<const int*>(p), pairs_mask);
  if ((n & 1) == 0) return pairs;
  const __m256i lane = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kLaneWindow512 + 15 - (n - 1)));
  return _mm256_blendv_epi8(pairs, _mm256_set1_epi16(int16_t(p[n - 1])), lane);
}

static inline void store_u16x16_avx512(uint16_t* p, __m256i h) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), h); }

static inline void store_u16x16_tail_avx512(uint16_t* p, __m256i h, size_t n) {
  const __m256i pairs_mask = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kPairWindow512 + 8 - n / 2));
  _mm256_maskstore_epi32(reinterpret_cast<int*>(p), pairs_mask, h);
  if ((n & 1) == 0) return;
  // Value n - 1 (n - 1 even) is the low half of 32-bit lane (n - 1) / 2: move that lane to 0.
  const __m256i at = _mm256_permutevar8x32_epi32(h, _mm256_set1_epi32(int32_t((n - 1) / 2)));
  p[n - 1] = uint16_t(_mm256_cvtsi256_si32(at));
}

// float32 memory, first n < 16 lanes (masked: never faults past n).
static inline __m512 load_f32x16_tail_avx512(const float* p, size_t n) { return _mm512_maskz_loadu_ps(tail_mask_avx512(n), p); }
static inline void store_f32x16_tail_avx512(float* p, __m512 v, size_t n) { _mm512_mask_storeu_ps(p, tail_mask_avx512(n), v); }

// What batch-norm kernels on 16-bit storage call: load 16 values as float32, store 16 float32 rounded.
static inline __m512 load_bf16_as_f32_avx512(const uint16_t* p) { return cvt_bf16_to_f32_avx512(load_u16x16_avx512(p)); }
static inline __m512 load_f16_as_f32_avx512(const uint16_t* p) { return cvt_f16_to_f32_avx512(load_u16x16_avx512(p)); }
static inline void store_f32_as_bf16_avx512(uint16_t* p, __m512 v) { store_u16x16_avx512(p, cvt_f32_to_bf16_avx512(v)); }
static inline void store_f32_as_f16_avx512(uint16_t* p, __m512 v) { store_u16x16_avx512(p, cvt_f32_to_f16_avx512(v)); }

static inline __m512 load_bf16_as_f32_tail_avx512(const uint16_t* p, size_t n) { return cvt_bf16_to_f32_avx512(load_u16x16_tail_avx512(p, n)); }
static inline __m512 load_f16_as_f32_tail_avx512(const uint16_t* p, size_t n) { return cvt_f16_to_f32_avx512(load_u16x16_tail_avx512(p, n)); }
static inline void store_f32_as_bf16_tail_avx512(uint16_t* p, __m512 v, size_t n) {
  _mm512_mask_cvtepi32_storeu_epi16(p, tail_mask_avx512(n), cvt_f32_to_bf16_lanes_avx512(v));
}
static inline void store_f32_as_f16_tail_avx512(uint16_t* p, __m512 v, size_t n) { store_u16x16_tail_avx512(p, cvt_f32_to_f16_avx512(v), n); }

}  // namespace bn
