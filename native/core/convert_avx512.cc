// AVX-512F conversion kernels (x86-64), 16 values a step; float32 -> bfloat16 in integers (the
// AVX512_BF16 instruction has its own table, convert_avx512bf16.cc). Compiled with -mavx512f;
// everything has internal linkage but the table getter, which runs no AVX-512 instruction.
#include "convert_avx512.h"
#include "convert_kernels.h"

namespace bn {
namespace {

void f32_to_bf16_avx512(const float* src, uint16_t* dst, size_t n) {
  size_t i = 0;
  // scalar math: dst[i] = f32_to_bf16_rne(src[i])
  for (; i + 16 <= n; i += 16) store_f32_as_bf16_avx512(dst + i, _mm512_loadu_ps(src + i));
  if (i < n) store_f32_as_bf16_tail_avx512(dst + i, load_f32x16_tail_avx512(src + i, n - i), n - i);
}

void bf16_to_f32_avx512(const uint16_t* src, float* dst, size_t n) {
  size_t i = 0;
  // scalar math: dst[i] = bf16_to_f32(src[i])
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, load_bf16_as_f32_avx512(src + i));
  if (i < n) store_f32x16_tail_avx512(dst + i, load_bf16_as_f32_tail_avx512(src + i, n - i), n - i);
}

void f32_to_f16_avx512(const float* src, uint16_t* dst, size_t n) {
  size_t i = 0;
  // scalar math: dst[i] = f32_to_f16_rne(src[i])
  for (; i + 16 <= n; i += 16) store_f32_as_f16_avx512(dst + i, _mm512_loadu_ps(src + i));
  if (i < n) store_f32_as_f16_tail_avx512(dst + i, load_f32x16_tail_avx512(src + i, n - i), n - i);
}

void f16_to_f32_avx512(const uint16_t* src, float* dst, size_t n) {
  size_t i = 0;
  // scalar math: dst[i] = f16_to_f32(src[i])
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, load_f16_as_f32_avx512(src + i));
  if (i < n) store_f32x16_tail_avx512(dst + i, load_f16_as_f32_tail_avx512(src + i, n - i), n - i);
}

const ConvertKernels kTable = {"avx512", f32_to_bf16_avx512, bf16_to_f32_avx512, f32_to_f16_avx512, f16_to_f32_avx512};

}  // namespace

const ConvertKernels* convert_kernels_avx512() { return &kTable; }

}  // namespace bn
