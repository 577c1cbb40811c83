// Chooses the conversion table for each SIMD level once, at first use, and follows the level the
// batch-norm dispatcher has active (so BATCHNORM_SIMD and set_simd_level lower both alike).
// Compiled for the baseline ISA: the extra cpuid checks the conversions need live here.
#include <cstddef>

#include "convert_kernels.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#endif

namespace bn {
namespace {

#if defined(__x86_64__) || defined(_M_X64)
// F16C (VCVTPH2PS / VCVTPS2PH on XMM/YMM): cpuid leaf 1, ECX bit 29. Every AVX2 CPU shipped has
// it, but a hypervisor may hide it.
bool cpu_has_f16c() {
  unsigned eax, ebx, ecx, edx;
  return __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & (1u << 29)) != 0;
}

bool probe_avx512_bf16() {
  if (!simd_level_supported(SimdLevel::kAvx512)) return false;  // also says the OS saves ZMM state
  unsigned eax, ebx, ecx, edx;
  if (__get_cpuid_max(0, nullptr) < 7) return false;
  __cpuid_count(7, 0, eax, ebx, ecx, edx);
  if (eax < 1) return false;  // leaf 7's highest subleaf
  __cpuid_count(7, 1, eax, ebx, ecx, edx);
  return (eax & (1u << 5)) != 0;
}
#endif

#if defined(BN_HAVE_AVX512) && defined(BN_HAVE_AVX512BF16)
ConvertKernels make_avx512bf16_table() {
  ConvertKernels t = *convert_kernels_avx512();
  t.name = "avx512bf16";
  t.f32_to_bf16 = f32_to_bf16_kernel_avx512bf16();
  return t;
}
#endif

const ConvertKernels* choose(SimdLevel level) {
  if (!simd_level_supported(level)) return nullptr;
  switch (level) {
    case SimdLevel::kScalar: return convert_kernels_scalar();
#if defined(BN_HAVE_AVX2)
    case SimdLevel::kAvx2: return cpu_has_f16c() ? convert_kernels_avx2() : convert_kernels_scalar();
#endif
#if defined(BN_HAVE_AVX512)
    case SimdLevel::kAvx512:
      if (cpu_has_avx512_bf16()) return convert_kernels_avx512bf16();
      return convert_kernels_avx512();
#endif
#if defined(BN_HAVE_NEON)
    case SimdLevel::kNeon: return convert_kernels_neon();
#endif
    default: return nullptr;
  }
}

constexpr SimdLevel kLevels[] = {SimdLevel::kScalar, SimdLevel::kAvx2, SimdLevel::kAvx512, SimdLevel::kNeon};
constexpr size_t kNumLevels = sizeof(kLevels) / sizeof(kLevels[0]);

struct Chosen {
  const ConvertKernels* by_level[kNumLevels];
  Chosen() {
    for (size_t i = 0; i < kNumLevels; ++i) by_level[i] = choose(kLevels[i]);
  }
};

const Chosen& chosen() {
  static const Chosen c;
  return c;
}

}  // namespace

bool cpu_has_avx512_bf16() {
#if defined(__x86_64__) || defined(_M_X64)
  static const bool has = probe_avx512_bf16();
  return has;
#else
  return false;
#endif
}

const ConvertKernels* convert_kernels_avx512bf16() {
#if defined(BN_HAVE_AVX512) && defined(BN_HAVE_AVX512BF16)
  static const ConvertKernels t = make_avx512bf16_table();
  return &t;
#else
  return nullptr;
#endif
}

const ConvertKernels* convert_kernels_for(SimdLevel level) {
  const size_t i = size_t(level);
  return i < kNumLevels ? chosen().by_level[i] : nullptr;
}

const ConvertKernels& active_convert_kernels() {
  const ConvertKernels* t = convert_kernels_for(active_simd_level());
  return t != nullptr ? *t : *convert_kernels_scalar();
}

size_t convert_kernel_tables(const ConvertKernels** out, size_t capacity) {
  const ConvertKernels* all[6] = {convert_kernels_scalar()};
  size_t n = 1;
#if defined(BN_HAVE_AVX2)
  if (simd_level_supported(SimdLevel::kAvx2) && cpu_has_f16c()) all[n++] = convert_kernels_avx2();
#endif
#if defined(BN_HAVE_AVX512)
  if (simd_level_supported(SimdLevel::kAvx512)) all[n++] = convert_kernels_avx512();
#endif
#if defined(BN_HAVE_AVX512) && defined(BN_HAVE_AVX512BF16)
  if (cpu_has_avx512_bf16()) all[n++] = convert_kernels_avx512bf16();
#endif
#if defined(BN_HAVE_NEON)
  if (simd_level_supported(SimdLevel::kNeon)) all[n++] = convert_kernels_neon();
#endif
  const size_t k = n < capacity ? n : capacity;
  for (size_t i = 0; i < k; ++i) out[i] = all[i];
  return n;
}

}  // namespace bn
