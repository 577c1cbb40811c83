// Whole-array conversion microkernels between float32 and the 16-bit storage formats, one table
// per ISA translation unit (convert_scalar.cc, convert_avx2.cc, convert_avx512.cc,
// convert_avx512bf16.cc, convert_neon.cc), every one following convert_rule.h bit for bit.
// convert_dispatch.cc picks the table of the active SIMD level. Kernels take any alignment and
// any n (0 included); src and dst must not overlap.
//
// Naming: <dtype>_to_<dtype>_<isa>. The per-vector load/store helpers the kernels are built from
// live in convert_<isa>.h, for other kernels (batch norm on 16-bit storage) to include.
#pragma once

#include <cstddef>
#include <cstdint>

#include "batchnorm.h"

namespace bn {

using F32ToHalfKernel = void (*)(const float* src, uint16_t* dst, size_t n);
using HalfToF32Kernel = void (*)(const uint16_t* src, float* dst, size_t n);

struct ConvertKernels {
  const char* name;  // "scalar", "avx2", "avx512", "avx512bf16", "neon"
  F32ToHalfKernel f32_to_bf16;
  HalfToF32Kernel bf16_to_f32;
  F32ToHalfKernel f32_to_f16;
  HalfToF32Kernel f16_to_f32;
};

// One getter per ISA translation unit (present when the build has it: BN_HAVE_AVX2,
// BN_HAVE_AVX512, BN_HAVE_NEON). convert_kernels_avx512bf16() is the AVX-512 table with the
// AVX512_BF16 instruction for float32 -> bfloat16 (the other three kernels are AVX-512F's).
const ConvertKernels* convert_kernels_scalar();
const ConvertKernels* convert_kernels_avx2();
const ConvertKernels* convert_kernels_avx512();
const ConvertKernels* convert_kernels_avx512bf16();
const ConvertKernels* convert_kernels_neon();
// The one kernel of convert_avx512bf16.cc (BN_HAVE_AVX512BF16 builds).
F32ToHalfKernel f32_to_bf16_kernel_avx512bf16();

// The table the dispatcher uses at `level` (null when the build or the CPU cannot run it): the
// choice for every level is made once, at first use; AVX-512 takes the AVX512_BF16 table when
// the CPU has that extension.
const ConvertKernels* convert_kernels_for(SimdLevel level);
// The table of bn::active_simd_level(): lowered by BATCHNORM_SIMD and set_simd_level like the
// batch-norm kernels.
const ConvertKernels& active_convert_kernels();

// Every table this build has and this CPU can run, scalar first (tests, benchmarks).
size_t convert_kernel_tables(const ConvertKernels** out, size_t capacity);

// cpuid leaf 7 subleaf 1, EAX bit 5 (with AVX-512F usable): VCVTNEPS2BF16 and friends.
bool cpu_has_avx512_bf16();

}  // namespace bn
