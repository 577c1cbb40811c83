// NEON (arm64) helpers: 4 lanes of float32 (float32x4_t) from and to 4 values of 16-bit storage
// (uint16x4_t), by the rule of convert_rule.h. float16 uses the native conversions (FCVTN/FCVTL:
// round to nearest even under the default FPCR, which Linux and Node leave as is); bfloat16
// rounds in integers (armv8.0 has no BFCVT). Internal linkage.
#pragma once

#include <arm_neon.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "convert_rule.h"

namespace bn {

static inline float32x4_t cvt_bf16_to_f32_neon(uint16x4_t h) { return vreinterpretq_f32_u32(vshll_n_u16(h, 16)); }

static inline float32x4_t cvt_f16_to_f32_neon(uint16x4_t h) { return vcvt_f32_f16(vreinterpret_f16_u16(h)); }

// u + 0x7FFF + lsb puts the rounded bfloat16 in the high half: lsb (bit 16) added by a shift-right-
// accumulate of u << 15, NaN lanes by a float compare (unordered whatever FPCR says) and replaced
// by the canonical NaN's high half, the high halves narrowed by one SHRN (6 instructions, not 9).
static inline uint16x4_t cvt_f32_to_bf16_neon(float32x4_t v) {
  const uint32x4_t u = vreinterpretq_u32_f32(v);
  const uint32x4_t ordered = vceqq_f32(v, v);
  const uint32x4_t r = vsraq_n_u32(vaddq_u32(u, vdupq_n_u32(0x7FFF)), vshlq_n_u32(u, 15), 31);
  return vshrn_n_u32(vbslq_u32(ordered, r, vdupq_n_u32(uint32_t(kBF16CanonicalNaN) << 16)), 16);
}

// FCVTN keeps NaN payloads: NaN lanes are first replaced by the one NaN it turns into 0x7E00.
static inline uint16x4_t cvt_f32_to_f16_neon(float32x4_t v) {
  const uint32x4_t ordered = vceqq_f32(v, v);
  v = vbslq_f32(ordered, v, vreinterpretq_f32_u32(vdupq_n_u32(kF32CanonicalNaNBits)));
  return vreinterpret_u16_f16(vcvt_f16_f32(v));
}

// 16-bit tails (n < 4) lane by lane in registers: through a stack buffer, the wide load after
// narrow stores stalls on store forwarding, as on x86-64 (convert_avx2.h).
// n == 4 (the rows kernels' full vectors of a partial block) is a whole vector.
static inline uint16x4_t load_u16x4_tail_neon(const uint16_t* p, size_t n) {
  if (n >= 4) return vld1_u16(p);
  uint16x4_t h = vdup_n_u16(0);
  if (n > 0) h = vld1_lane_u16(p, h, 0);
  if (n > 1) h = vld1_lane_u16(p + 1, h, 1);
  if (n > 2) h = vld1_lane_u16(p + 2, h, 2);
  return h;
}

static inline void store_u16x4_tail_neon(uint16_t* p, uint16x4_t h, size_t n) {
  if (n >= 4) return vst1_u16(p, h);
  if (n > 0) vst1_lane_u16(p, h, 0);
  if (n > 1) vst1_lane_u16(p + 1, h, 1);
  if (n > 2) vst1_lane_u16(p + 2, h, 2);
}

static inline float32x4_t load_f32x4_tail_neon(const float* p, size_t n) {
  float buf[4] = {0, 0, 0, 0};
  std::memcpy(buf, p, n * sizeof(float));
  return vld1q_f32(buf);
}

static inline void store_f32x4_tail_neon(float* p, float32x4_t v, size_t n) {
  float buf[4];
  vst1q_f32(buf, v);
  std::memcpy(p, buf, n * sizeof(float));
}

// What batch-norm kernels on 16-bit storage call: load 4 values as float32, store 4 float32 rounded.
static inline float32x4_t load_bf16_as_f32_neon(const uint16_t* p) { return cvt_bf16_to_f32_neon(vld1_u16(p)); }
static inline float32x4_t load_f16_as_f32_neon(const uint16_t* p) { return cvt_f16_to_f32_neon(vld1_u16(p)); }
static inline void store_f32_as_bf16_neon(uint16_t* p, float32x4_t v) { vst1_u16(p, cvt_f32_to_bf16_neon(v)); }
static inline void store_f32_as_f16_neon(uint16_t* p, float32x4_t v) { vst1_u16(p, cvt_f32_to_f16_neon(v)); }

static inline float32x4_t load_bf16_as_f32_tail_neon(const uint16_t* p, size_t n) { return cvt_bf16_to_f32_neon(load_u16x4_tail_neon(p, n)); }
static inline float32x4_t load_f16_as_f32_tail_neon(const uint16_t* p, size_t n) { return cvt_f16_to_f32_neon(load_u16x4_tail_neon(p, n)); }
static inline void store_f32_as_bf16_tail_neon(uint16_t* p, float32x4_t v, size_t n) { store_u16x4_tail_neon(p, cvt_f32_to_bf16_neon(v), n); }
static inline void store_f32_as_f16_tail_neon(uint16_t* p, float32x4_t v, size_t n) { store_u16x4_tail_neon(p, cvt_f32_to_f16_neon(v), n); }

}  // namespace bn
