// AVX2 + F16C helpers: 8 lanes of float32 (__m256) from and to 8 values of 16-bit storage
// (__m128i), by the rule of convert_rule.h. Include only from translation units compiled with
// -mavx2 -mf16c. Every function has internal linkage (no ODR clash with other ISAs' builds).
#pragma once

#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "convert_rule.h"

namespace bn {

// Register conversions.
static inline __m256 cvt_bf16_to_f32_avx2(__m128i h) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

static inline __m256 cvt_f16_to_f32_avx2(__m128i h) { return _mm256_cvtph_ps(h); }

// Round each lane's bits (u + 0x7FFF + lsb: the bfloat16 in the high half), put the canonical
// NaN where the input is NaN (an unordered compare, which no MXCSR setting changes), then gather
// the high halves: a byte shuffle within each 128-bit lane and one cross-lane move (the 11
// instructions of shift, pack and integer NaN test before cost AVX2 bfloat16 its memory speed).
static inline __m128i cvt_f32_to_bf16_avx2(__m256 v) {
  const __m256i u = _mm256_castps_si256(v);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  const __m256i r = _mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7FFF)), lsb);
  const __m256 nan = _mm256_cmp_ps(v, v, _CMP_UNORD_Q);
  const __m256i canonical = _mm256_set1_epi32(int32_t(uint32_t(kBF16CanonicalNaN) << 16));
  const __m256i k = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(r), _mm256_castsi256_ps(canonical), nan));
  const __m256i high = _mm256_setr_epi8(2, 3, 6, 7, 10, 11, 14, 15, -1, -1, -1, -1, -1, -1, -1, -1,  //
                                        2, 3, 6, 7, 10, 11, 14, 15, -1, -1, -1, -1, -1, -1, -1, -1);
  return _mm256_castsi256_si128(_mm256_permute4x64_epi64(_mm256_shuffle_epi8(k, high), 0x08));
}

// VCVTPS2PH with immediate 0 rounds to nearest even whatever MXCSR says; it keeps NaN payloads,
// so NaN lanes are first replaced by the one NaN it turns into 0x7E00.
static inline __m128i cvt_f32_to_f16_avx2(__m256 v) {
  const __m256 nan = _mm256_cmp_ps(v, v, _CMP_UNORD_Q);
  v = _mm256_blendv_ps(v, _mm256_castsi256_ps(_mm256_set1_epi32(int32_t(kF32CanonicalNaNBits))), nan);
  return _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT);
}

// 16-bit memory: 8 values, or the first n < 8 (the other lanes read as 0, never touched in memory).
static inline __m128i load_u16x8_avx2(const uint16_t* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); }

// Tails in registers (no stack buffer: a narrow store then a wide load stalls store forwarding,
// which cost short maps as much as their arithmetic): the first n / 2 pairs of values by a masked
// 32-bit move, which never touches memory past them, and an odd last value on its own.
// Sliding windows: from kPairWindow + 8 - k, k active 32-bit lanes; kLaneWindow + 15 - j, 16-bit lane j.
alignas(64) static const int32_t kPairWindow[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
alignas(64) static const int16_t kLaneWindow[31] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, -1,
                                                    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};

static inline __m128i load_u16x8_tail_avx2(const uint16_t* p, size_t n) {
  const __m128i pairs_mask = _mm_loadu_si128(reinterpret_cast<const __m128i*>(kPairWindow + 8 - n / 2));
  const __m128i pairs = _mm_maskload_epi32(reinterpret_cast<const int*>(p), pairs_mask);
  if ((n & 1) == 0) return pairs;
  const __m128i lane = _mm_loadu_si128(reinterpret_cast<const __m128i*>(kLaneWindow + 15 - (n - 1)));
  return _mm_blendv_epi8(pairs, _mm_set1_epi16(int16_t(p[n - 1])), lane);
}

static inline void store_u16x8_avx2(uint16_t* p, __m128i h) { _mm_storeu_si128(reinterpret_cast<__m128i*>(p), h); }

static inline void store_u16x8_tail_avx2(uint16_t* p, __m128i h, size_t n) {
  const __m128i pairs_mask = _mm_loadu_si128(reinterpret_cast<const __m128i*>(kPairWindow + 8 - n / 2));
  _mm_maskstore_epi32(reinterpret_cast<int*>(p), pairs_mask, h);
  if ((n & 1) == 0) return;
  // Value n - 1 (n - 1 even) is the low half of 32-bit lane (n - 1) / 2: move that lane to 0.
  const __m128 at = _mm_permutevar_ps(_mm_castsi128_ps(h), _mm_cvtsi32_si128(int((n - 1) / 2)));
  p[n - 1] = uint16_t(_mm_cvtsi128_si32(_mm_castps_si128(at)));
}

// float32 memory, first n < 8 lanes (the others 0): AVX masked moves, which never fault past n.
static inline __m256i tail_mask_f32_avx2(size_t n) {
  alignas(32) static const int32_t kWindow[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kWindow + 8 - n));
}

static inline __m256 load_f32x8_tail_avx2(const float* p, size_t n) { return _mm256_maskload_ps(p, tail_mask_f32_avx2(n)); }

static inline void store_f32x8_tail_avx2(float* p, __m256 v, size_t n) { _mm256_maskstore_ps(p, tail_mask_f32_avx2(n), v); }

// What batch-norm kernels on 16-bit storage call: load 8 values as float32, store 8 float32 rounded.
// bfloat16 from memory: both 128-bit lanes get the 8 values (a broadcast load), and one byte
// shuffle puts value i of lane l's half in the high half of 32-bit lane i, zeros below.
static inline __m256 load_bf16_as_f32_avx2(const uint16_t* p) {
  const __m256i h = _mm256_broadcastsi128_si256(load_u16x8_avx2(p));
  const __m256i up = _mm256_setr_epi8(-1, -1, 0, 1, -1, -1, 2, 3, -1, -1, 4, 5, -1, -1, 6, 7,  //
                                      -1, -1, 8, 9, -1, -1, 10, 11, -1, -1, 12, 13, -1, -1, 14, 15);
  return _mm256_castsi256_ps(_mm256_shuffle_epi8(h, up));
}
static inline __m256 load_f16_as_f32_avx2(const uint16_t* p) { return cvt_f16_to_f32_avx2(load_u16x8_avx2(p)); }
static inline void store_f32_as_bf16_avx2(uint16_t* p, __m256 v) { store_u16x8_avx2(p, cvt_f32_to_bf16_avx2(v)); }
static inline void store_f32_as_f16_avx2(uint16_t* p, __m256 v) { store_u16x8_avx2(p, cvt_f32_to_f16_avx2(v)); }

static inline __m256 load_bf16_as_f32_tail_avx2(const uint16_t* p, size_t n) { return cvt_bf16_to_f32_avx2(load_u16x8_tail_avx2(p, n)); }
static inline __m256 load_f16_as_f32_tail_avx2(const uint16_t* p, size_t n) { return cvt_f16_to_f32_avx2(load_u16x8_tail_avx2(p, n)); }
static inline void store_f32_as_bf16_tail_avx2(uint16_t* p, __m256 v, size_t n) { store_u16x8_tail_avx2(p, cvt_f32_to_bf16_avx2(v), n); }
static inline void store_f32_as_f16_tail_avx2(uint16_t* p, __m256 v, size_t n) { store_u16x8_tail_avx2(p, cvt_f32_to_f16_avx2(v), n); }

}  // namespace bn
