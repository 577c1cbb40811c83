// float32 -> bfloat16 with the AVX512_BF16 instruction (VCVTNEPS2BF16), made to follow
// convert_rule.h (see convert_avx512bf16.h). Compiled with -mavx512f -mavx512bf16. Only this
// kernel differs from AVX-512F's; convert_dispatch.cc builds the table (in baseline code).
#include "convert_avx512bf16.h"
#include "convert_kernels.h"

namespace bn {
namespace {

void f32_to_bf16_avx512bf16(const float* src, uint16_t* dst, size_t n) {
  size_t i = 0;
  // scalar math: dst[i] = f32_to_bf16_rne(src[i])
  for (; i + 16 <= n; i += 16) store_f32_as_bf16_avx512bf16(dst + i, _mm512_loadu_ps(src + i));
  if (i < n) store_f32_as_bf16_tail_avx512bf16(dst + i, load_f32x16_tail_avx512(src + i, n - i), n - i);
}

}  // namespace

F32ToHalfKernel f32_to_bf16_kernel_avx512bf16() { return f32_to_bf16_avx512bf16; }

}  // namespace bn
