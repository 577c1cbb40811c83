// The 16-bit storage types: bfloat16 and IEEE float16, held as their raw bits. Computation happens
// in float (compute_t, kernels.h); a value becomes float and back only through the one conversion
// rule (convert_rule.h), so every scalar path rounds as every vector path does. The conversions
// are explicit: nothing computes in 16 bits by accident.
#pragma once

#include <cstdint>
#include <type_traits>

#include "convert_rule.h"

namespace bn {

struct bf16 {
  uint16_t bits;
  bf16() = default;
  explicit bf16(float f) : bits(f32_to_bf16_rne(f)) {}
  bf16(double) = delete;  // would round twice (double -> float -> bf16)
  explicit operator float() const { return bf16_to_f32(bits); }
  explicit operator double() const { return double(bf16_to_f32(bits)); }
};

struct f16 {
  uint16_t bits;
  f16() = default;
  explicit f16(float f) : bits(f32_to_f16_rne(f)) {}
  f16(double) = delete;  // would round twice
  explicit operator float() const { return f16_to_f32(bits); }
  explicit operator double() const { return double(f16_to_f32(bits)); }
};

static_assert(sizeof(bf16) == 2 && std::is_trivially_copyable<bf16>::value && std::is_standard_layout<bf16>::value);
static_assert(sizeof(f16) == 2 && std::is_trivially_copyable<f16>::value && std::is_standard_layout<f16>::value);

}  // namespace bn
