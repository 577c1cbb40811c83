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

static inline uint16x4_t cvt_f32_to_bf16_neon(float32x4_t v) {
  const uint32x4_t u = vreinterpretq_u32_f32(v);
  const uint32x4_t nan = vcgtq_u32(vandq_u32(u, vdupq_n_u32(0x7FFFFFFF)), vdupq_n_u32(0x7F800000));
  const uint32x4_t lsb = vandq_u32(vshrq_n_u32(u, 16), vdupq_n_u32(1));
  uint32x4_t r = vshrq_n_u32(vaddq_u32(vaddq_u32(u, vdupq_n_u32(0x7FFF)), lsb), 16);
  r = vbslq_u32(nan, vdupq_n_u32(kBF16CanonicalNaN), r);
  return vmovn_u32(r);
}

// FCVTN keeps NaN payloads: NaN lanes are first replaced by the one NaN it turns into 0x7E00.
static inline uint16x4_t cvt_f32_to_f16_neon(float32x4_t v) {
  const uint32x4_t ordered = vceqq_f32(v, v);
  v = vbslq_f32(ordered, v, vreinterpretq_f32_u32(vdupq_n_u32(kF32CanonicalNaNBits)));
  return vreinterpret_u16_f16(vcvt_f16_f32(v));
}

static inline uint16x4_t load_u16x4_tail_neon(const uint16_t* p, size_t n) {
  uint16_t buf[4] = {0, 0, 0, 0};
  std::memcpy(buf, p, n * sizeof(uint16_t));
  return vld1_u16(buf);
}

static inline void store_u16x4_tail_neon(uint16_t* p, uint16x4_t h, size_t n) {
  uint16_t buf[4];
  vst1_u16(buf, h);
  std::memcpy(p, buf, n * sizeof(uint16_t));
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
