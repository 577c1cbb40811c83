// cpuid + xgetbv probing. The instruction-set bit alone is not enough: the OS must also enable
// saving the wider register state (XCR0), or the first AVX instruction faults.
#include "cpu_features.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#include <cstdint>
#endif

namespace bn {

#if defined(__x86_64__) || defined(_M_X64)
namespace {

uint64_t read_xcr0() {
  uint32_t eax = 0, edx = 0;
  // xgetbv with ecx = 0, spelled as bytes so the baseline build needs no -mxsave.
  __asm__ volatile(".byte 0x0f, 0x01, 0xd0" : "=a"(eax), "=d"(edx) : "c"(0));
  return (uint64_t(edx) << 32) | eax;
}

}  // namespace

CpuFeatures probe_cpu_features() {
  CpuFeatures f;
  unsigned eax, ebx, ecx, edx;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return f;
  const bool osxsave = ecx & (1u << 27);
  const bool avx = ecx & (1u << 28);
  const bool fma = ecx & (1u << 12);
  f.f16c = (ecx & (1u << 29)) != 0;
  if (!osxsave || !avx) return f;
  const uint64_t xcr0 = read_xcr0();
  const bool ymm_state = (xcr0 & 0x6) == 0x6;            // SSE + AVX state
  const bool zmm_state = (xcr0 & 0xE6) == 0xE6;          // + opmask, ZMM_Hi256, Hi16_ZMM
  if (__get_cpuid_max(0, nullptr) < 7) return f;
  __cpuid_count(7, 0, eax, ebx, ecx, edx);
  const bool avx2 = ebx & (1u << 5);
  const bool avx512f = ebx & (1u << 16);
  f.avx2_fma = avx2 && fma && ymm_state;
  f.avx512f = f.avx2_fma && avx512f && zmm_state;
  return f;
}

#elif defined(__aarch64__)

CpuFeatures probe_cpu_features() {
  CpuFeatures f;
  f.neon = true;
  return f;
}

#else

CpuFeatures probe_cpu_features() { return CpuFeatures{}; }

#endif

}  // namespace bn
