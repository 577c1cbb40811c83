// The one conversion rule between float32 and the 16-bit storage formats, in plain C++: the
// reference every vector kernel (convert_*.h / convert_*.cc) must match bit for bit.
//
//   float32 -> bfloat16 and float32 -> float16: round to nearest, ties to even, applied to the
//   exact float32 value (no flush of subnormal inputs or outputs: subnormals are kept, and what
//   is too small for the format rounds to a signed zero). Infinities stay infinities; float16
//   overflows to infinity as IEEE 754 says (|x| >= 65520 -> inf). Every NaN, whatever its sign
//   and payload, becomes the one canonical quiet NaN: 0x7FC0 (bfloat16), 0x7E00 (float16),
//   sign bit clear.
//   bfloat16 -> float32 and float16 -> float32: exact for every number. NaNs keep sign and payload
//   (in the top mantissa bits); a float16 signaling NaN comes out quiet (bit 22 set), as F16C's
//   VCVTPH2PS and arm64's FCVTL do; a bfloat16 NaN's bits are shifted up unchanged.
//
// Integer arithmetic only, so the result does not depend on the floating-point environment
// (MXCSR / FPCR rounding mode, flush-to-zero, denormals-are-zero).
#pragma once

#include <cstdint>
#include <cstring>

namespace bn {

constexpr uint16_t kBF16CanonicalNaN = 0x7FC0;
constexpr uint16_t kF16CanonicalNaN = 0x7E00;
constexpr uint32_t kF32CanonicalNaNBits = 0x7FC00000;  // converts to both canonical NaNs in hardware

inline uint32_t f32_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

inline float f32_from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// bfloat16 is the top half of a float32: add half an ulp of the kept part (minus one when the kept
// part is even, so ties go to even) and truncate. The carry rounds into the exponent correctly and
// turns the largest finite values into infinity; it cannot reach the sign bit for a non-NaN.
inline uint16_t bf16_from_bits_rne(uint32_t u) {
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return kBF16CanonicalNaN;
  return uint16_t((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

inline uint16_t f32_to_bf16_rne(float f) { return bf16_from_bits_rne(f32_bits(f)); }

inline float bf16_to_f32(uint16_t h) { return f32_from_bits(uint32_t(h) << 16); }

// float16: 1 sign, 5 exponent (bias 15), 10 mantissa bits.
inline uint16_t f16_from_bits_rne(uint32_t u) {
  const uint32_t sign = (u >> 16) & 0x8000u;
  const uint32_t a = u & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return kF16CanonicalNaN;
  // 65520 = 0x477FF000 is halfway between 65504 (the largest float16, odd mantissa) and 2^16:
  // ties to even round it up, so it and everything above become infinity.
  if (a >= 0x477FF000u) return uint16_t(sign | 0x7C00u);
  if (a >= 0x38800000u) {
    // A normal result (|x| >= 2^-14): rebias the exponent (127 -> 15), round away 13 bits.
    const uint32_t r = a - 0x38000000u;
    return uint16_t(sign | ((r + 0xFFFu + ((r >> 13) & 1u)) >> 13));
  }
  // A subnormal result, in units of 2^-24: |x| = m * 2^(e - 150) with the implicit bit in m, so
  // the count is m >> (126 - e), rounded to nearest even. Below 2^-26 (e < 102) it is 0.
  const uint32_t e = a >> 23;
  if (e < 102) return uint16_t(sign);
  const uint32_t m = (a & 0x7FFFFFu) | 0x800000u;
  const uint32_t shift = 126 - e;  // 14 .. 24
  const uint32_t q = m >> shift;
  const uint32_t rem = m & ((1u << shift) - 1u);
  const uint32_t half = 1u << (shift - 1);
  const uint32_t up = (rem > half || (rem == half && (q & 1u))) ? 1u : 0u;
  return uint16_t(sign | (q + up));  // q + up may be 0x400: the smallest normal, correctly encoded
}

inline uint16_t f32_to_f16_rne(float f) { return f16_from_bits_rne(f32_bits(f)); }

inline float f16_to_f32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t e = (h >> 10) & 0x1Fu;
  uint32_t m = h & 0x3FFu;
  if (e == 0x1F) {  // inf; NaN with its payload, quieted
    return f32_from_bits(sign | 0x7F800000u | (m << 13) | (m != 0 ? 0x400000u : 0u));
  }
  if (e != 0) return f32_from_bits(sign | ((e + 112u) << 23) | (m << 13));
  if (m == 0) return f32_from_bits(sign);
  // Subnormal m * 2^-24: normalize so the leading 1 sits at bit 10 (the implicit bit).
  uint32_t exp = 113;  // 2^-14 = 2^(113 - 127): the exponent of bit 10 in units of 2^-24
  while ((m & 0x400u) == 0) {
    m <<= 1;
    --exp;
  }
  return f32_from_bits(sign | (exp << 23) | ((m & 0x3FFu) << 13));
}

}  // namespace bn
