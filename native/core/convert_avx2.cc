// AVX2 + F16C conversion kernels (x86-64), 8 values a step. Compiled with -mavx2 -mf16c;
// everything has internal linkage but the table getter, which runs no AVX instruction.
#include "convert_avx2.h"
#include "convert_kernels.h"

namespace bn {
namespace {

void f32_to_bf16_avx2(const float* src, uint16_t* dst, size_t n) {
  size_t i = 0;
  // scalar math: dst[i] = f32_to_bf16_rne(src[i])
  for (; i + 8 <= n; i += 8) store_f32_as_bf16_avx2(dst + i, _mm256_loadu_ps(src + i));
  if (i < n) store_f32_as_bf16_tail_avx2(dst + i, load_f32x8_tail_avx2(src + i, n - i), n - i);
}

void bf16_to_f32_avx2(const uint16_t* src, float* dst, size_t n) {
  size_t i = 0;
  // scalar math: dst[i] = bf16_to_f32(src[i])
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, load_bf16_as_f32_avx2(src + i));
  if (i < n) store_f32x8_tail_avx2(dst + i, load_bf16_as_f32_tail_avx2(src + i, n - i), n - i);
}

void f32_to_f16_avx2(const float* src, uint16_t* dst, size_t n) {
  size_t i = 0;
  // scalar math: dst[i] = f32_to_f16_rne(src[i])
  for (; i + 8 <= n; i += 8) store_f32_as_f16_avx2(dst + i, _mm256_loadu_ps(src + i));
  if (i < n) store_f32_as_f16_tail_avx2(dst + i, load_f32x8_tail_avx2(src + i, n - i), n - i);
}

void f16_to_f32_avx2(const uint16_t* src, float* dst, size_t n) {
  size_t i = 0;
  // scalar math: dst[i] = f16_to_f32(src[i])
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, load_f16_as_f32_avx2(src + i));
  if (i < n) store_f32x8_tail_avx2(dst + i, load_f16_as_f32_tail_avx2(src + i, n - i), n - i);
}

const ConvertKernels kTable = {"avx2", f32_to_bf16_avx2, bf16_to_f32_avx2, f32_to_f16_avx2, f16_to_f32_avx2};

}  // namespace

const ConvertKernels* convert_kernels_avx2() { return &kTable; }

}  // namespace bn
