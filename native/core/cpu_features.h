// What the CPU and the OS can run, probed once. Compiled for the baseline ISA only.
#pragma once

namespace bn {

struct CpuFeatures {
  bool avx2_fma = false;  // AVX2 + FMA3, and the OS saves YMM state
  bool avx512f = false;   // AVX-512F, and the OS saves opmask + ZMM state
  bool f16c = false;      // F16C (the float16 kernels of the x86 levels; a hypervisor may hide it)
  bool neon = false;      // arm64 Advanced SIMD (always present on AArch64)
};

CpuFeatures probe_cpu_features();

}  // namespace bn
