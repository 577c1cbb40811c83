// AVX512_BF16 helpers: float32 -> bfloat16 with VCVTNEPS2BF16, made to follow convert_rule.h.
// The instruction always rounds to nearest even (right) but flushes subnormal inputs to zero and
// keeps NaN payloads (not our rule): a vector holding either takes the integer path of
// convert_avx512.h instead (rare in real data, so the check is one compare and a branch).
// Include only from translation units compiled with -mavx512f -mavx512bf16. Internal linkage.
#pragma once

#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "convert_avx512.h"

namespace bn {

// True when a lane is one VCVTNEPS2BF16 gets wrong: subnormal (0 < |x| < 2^-126) or NaN. Integer
// tests (VFPCLASSPS would see no subnormal under MXCSR.DAZ), joined by one KORTEST.
static inline bool bf16_instruction_misses_avx512bf16(__m512 v) {
  const __m512i abs = _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(0x7FFFFFFF));
  const __mmask16 subnormal = _mm512_cmplt_epu32_mask(_mm512_sub_epi32(abs, _mm512_set1_epi32(1)), _mm512_set1_epi32(0x7FFFFF));
  const __mmask16 nan = _mm512_cmpgt_epu32_mask(abs, _mm512_set1_epi32(0x7F800000));
  return _kortestz_mask16_u8(subnormal, nan) == 0;
}

static inline __m256i cvt_f32_to_bf16_avx512bf16(__m512 v) {
  if (bf16_instruction_misses_avx512bf16(v)) return cvt_f32_to_bf16_avx512(v);
  return reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(v));
}

static inline void store_f32_as_bf16_avx512bf16(uint16_t* p, __m512 v) { store_u16x16_avx512(p, cvt_f32_to_bf16_avx512bf16(v)); }
static inline void store_f32_as_bf16_tail_avx512bf16(uint16_t* p, __m512 v, size_t n) {
  store_u16x16_tail_avx512(p, cvt_f32_to_bf16_avx512bf16(v), n);
}

}  // namespace bn
