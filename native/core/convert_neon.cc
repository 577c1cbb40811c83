// NEON conversion kernels (arm64), 8 values a step (two 4-lane vectors), 4, then the tail.
#include "convert_kernels.h"
#include "convert_neon.h"

namespace bn {
namespace {

void f32_to_bf16_neon(const float* src, uint16_t* dst, size_t n) {
  size_t i = 0;
  // scalar math: dst[i] = f32_to_bf16_rne(src[i])
  for (; i + 8 <= n; i += 8) {
    vst1q_u16(dst + i, vcombine_u16(cvt_f32_to_bf16_neon(vld1q_f32(src + i)), cvt_f32_to_bf16_neon(vld1q_f32(src + i + 4))));
  }
  for (; i + 4 <= n; i += 4) store_f32_as_bf16_neon(dst + i, vld1q_f32(src + i));
  if (i < n) store_f32_as_bf16_tail_neon(dst + i, load_f32x4_tail_neon(src + i, n - i), n - i);
}

void bf16_to_f32_neon(const uint16_t* src, float* dst, size_t n) {
  size_t i = 0;
  // scalar math: dst[i] = bf16_to_f32(src[i])
  for (; i + 4 <= n; i += 4) vst1q_f32(dst + i, load_bf16_as_f32_neon(src + i));
  if (i < n) store_f32x4_tail_neon(dst + i, load_bf16_as_f32_tail_neon(src + i, n - i), n - i);
}

void f32_to_f16_neon(const float* src, uint16_t* dst, size_t n) {
  size_t i = 0;
  // scalar math: dst[i] = f32_to_f16_rne(src[i])
  for (; i + 8 <= n; i += 8) {
    vst1q_u16(dst + i, vcombine_u16(cvt_f32_to_f16_neon(vld1q_f32(src + i)), cvt_f32_to_f16_neon(vld1q_f32(src + i + 4))));
  }
  for (; i + 4 <= n; i += 4) store_f32_as_f16_neon(dst + i, vld1q_f32(src + i));
  if (i < n) store_f32_as_f16_tail_neon(dst + i, load_f32x4_tail_neon(src + i, n - i), n - i);
}

void f16_to_f32_neon(const uint16_t* src, float* dst, size_t n) {
  size_t i = 0;
  // scalar math: dst[i] = f16_to_f32(src[i])
  for (; i + 4 <= n; i += 4) vst1q_f32(dst + i, load_f16_as_f32_neon(src + i));
  if (i < n) store_f32x4_tail_neon(dst + i, load_f16_as_f32_tail_neon(src + i, n - i), n - i);
}

const ConvertKernels kTable = {"neon", f32_to_bf16_neon, bf16_to_f32_neon, f32_to_f16_neon, f16_to_f32_neon};

}  // namespace

const ConvertKernels* convert_kernels_neon() { return &kTable; }

}  // namespace bn
