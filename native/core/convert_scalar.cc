// Scalar conversion kernels: the rule of convert_rule.h, one value at a time. Baseline ISA; the
// reference the vector tables are tested against, and the table of the "scalar" SIMD level.
#include "convert_kernels.h"
#include "convert_rule.h"

namespace bn {
namespace {

void f32_to_bf16_scalar(const float* src, uint16_t* dst, size_t n) {
  for (size_t i = 0; i < n; ++i) dst[i] = f32_to_bf16_rne(src[i]);
}

void bf16_to_f32_scalar(const uint16_t* src, float* dst, size_t n) {
  for (size_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(src[i]);
}

void f32_to_f16_scalar(const float* src, uint16_t* dst, size_t n) {
  for (size_t i = 0; i < n; ++i) dst[i] = f32_to_f16_rne(src[i]);
}

void f16_to_f32_scalar(const uint16_t* src, float* dst, size_t n) {
  for (size_t i = 0; i < n; ++i) dst[i] = f16_to_f32(src[i]);
}

const ConvertKernels kTable = {"scalar", f32_to_bf16_scalar, bf16_to_f32_scalar, f32_to_f16_scalar, f16_to_f32_scalar};

}  // namespace

const ConvertKernels* convert_kernels_scalar() { return &kTable; }

}  // namespace bn
