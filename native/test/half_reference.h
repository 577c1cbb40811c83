// The independent reference of the conversion test (convert_test.cc): a 16-bit binary format with
// `mant` mantissa bits and 15 - mant exponent bits, from the IEEE definition in double arithmetic
// (exact here: every float32 and every quotient by a power of two is a double; nearbyint rounds to
// nearest even by default).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace half_ref {

inline uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

inline float float_of(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

struct Format {
  const char* name;
  int mant;             // 7 (bfloat16), 10 (float16)
  uint16_t nan;         // the canonical NaN of the rule
  int bias() const { return (1 << (14 - mant)) - 1; }
  int emin() const { return 1 - bias(); }
  int emax() const { return bias(); }
  uint16_t inf() const { return uint16_t(((1 << (15 - mant)) - 1) << mant); }
};

constexpr Format kBF16{"bfloat16", 7, 0x7FC0};
constexpr Format kF16{"float16", 10, 0x7E00};

inline uint16_t ref_encode(const Format& f, float x) {
  if (std::isnan(x)) return f.nan;
  const uint16_t sign = std::signbit(x) ? 0x8000 : 0;
  const double a = std::fabs(double(x));
  if (std::isinf(a)) return uint16_t(sign | f.inf());
  if (a == 0) return sign;
  int e;
  std::frexp(a, &e);
  e -= 1;  // a = m * 2^e, 1 <= m < 2
  if (e < f.emin()) e = f.emin();
  double k = std::nearbyint(a / std::ldexp(1.0, e - f.mant));  // multiples of the quantum at e
  const double top = std::ldexp(1.0, f.mant + 1);
  if (k >= top) {  // rounded up to the next binade
    k /= 2;
    e += 1;
  }
  if (e > f.emax()) return uint16_t(sign | f.inf());
  const double lead = std::ldexp(1.0, f.mant);
  if (k < lead) return uint16_t(sign | uint16_t(k));  // subnormal (or zero): exponent field 0
  return uint16_t(sign | ((e + f.bias()) << f.mant) | uint16_t(k - lead));
}

// The float32 bits a 16-bit value decodes to: its value for numbers, and for NaNs the payload
// shifted up (bfloat16 unchanged; float16 quieted, as F16C and arm64 do).
inline uint32_t ref_decode_bits(const Format& f, uint16_t h) {
  const bool neg = (h & 0x8000) != 0;
  const int ebits = (h >> f.mant) & ((1 << (15 - f.mant)) - 1);
  const int m = h & ((1 << f.mant) - 1);
  const uint32_t sign = neg ? 0x80000000u : 0;
  if (ebits == (1 << (15 - f.mant)) - 1) {
    if (m == 0) return sign | 0x7F800000u;
    const uint32_t payload = uint32_t(m) << (23 - f.mant);
    return sign | 0x7F800000u | payload | (f.mant == 10 ? 0x400000u : 0u);
  }
  const double v = ebits == 0 ? std::ldexp(double(m), f.emin() - f.mant)
                              : std::ldexp(1.0 + std::ldexp(double(m), -f.mant), ebits - f.bias());
  return bits_of(float(neg ? -v : v)) | sign;  // float(v) is exact; | sign keeps -0
}

}  // namespace half_ref
