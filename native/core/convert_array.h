// Converting whole arrays between float32 and the 16-bit storage formats (bfloat16, float16) by
// the rule of convert_rule.h, with the active SIMD level's kernels, on up to `num_threads`
// threads (large arrays only). src and dst must not overlap. n == 0 does nothing.
#pragma once

#include <cstddef>
#include <cstdint>

#include "batchnorm.h"

namespace bn {

enum class HalfFormat { kBF16, kF16 };

Status convert_f32_to_half(HalfFormat format, const float* src, uint16_t* dst, size_t n, int num_threads);
Status convert_half_to_f32(HalfFormat format, const uint16_t* src, float* dst, size_t n, int num_threads);

// How many of `limit` threads a conversion of n elements can use (small arrays run on one).
int convert_useful_threads(size_t n, int limit);

}  // namespace bn
