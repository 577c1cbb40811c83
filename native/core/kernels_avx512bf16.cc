// The AVX-512 bfloat16 kernels whose stores round with AVX512_BF16's VCVTNEPS2BF16: the AVX-512
// unit again, compiled with -mavx512bf16 and instantiating only its bfloat16 table (the flag
// stays out of the unit every AVX-512 CPU runs). dispatch.cc uses it where the CPU has AVX512_BF16.
#define BN_KERNELS_AVX512BF16_UNIT
#include "kernels_avx512.cc"
