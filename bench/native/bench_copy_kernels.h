// Memory-bandwidth baselines for the benchmark (bench/): a plain copy (vector loads + ordinary
// stores, so the destination is read for ownership), a streaming copy (non-temporal stores +
// sfence, no read-for-ownership), and a read of one or two arrays (the traffic of a pass that only
// reads, as the statistics and backward's reductions do). Header-only, pure C++ + OpenMP: the
// benchmark-only addon bench_copy.node (bench_copy_addon.cc) and the native core benchmark
// (bench_core.cc) share it, so both measure the same kernel. Wide ISAs via target attributes,
// chosen at run time; the TU itself is compiled for the baseline ISA.
#pragma once

#include <omp.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define BNBENCH_X86 1
#endif

namespace bnbench {

enum class CopyIsa : int { kGeneric = 0, kSse2 = 1, kAvx2 = 2, kAvx512 = 3 };

inline const char* copy_isa_name(CopyIsa isa) {
  switch (isa) {
    case CopyIsa::kSse2: return "sse2";
    case CopyIsa::kAvx2: return "avx2";
    case CopyIsa::kAvx512: return "avx512";
    default: return "generic";
  }
}

// Best ISA for the copy loops. __builtin_cpu_supports also checks that the OS saves the
// YMM/ZMM state (GCC >= 11 and clang check XCR0).
inline CopyIsa best_copy_isa() {
#if defined(BNBENCH_X86)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return CopyIsa::kAvx512;
  if (__builtin_cpu_supports("avx2")) return CopyIsa::kAvx2;
  return CopyIsa::kSse2;
#else
  return CopyIsa::kGeneric;
#endif
}

// Non-temporal stores exist on every x86-64 (SSE2 movntps); elsewhere the benchmark reports the
// streaming copy as unavailable.
inline bool streaming_copy_supported() {
#if defined(BNBENCH_X86)
  return true;
#else
  return false;
#endif
}

namespace detail {

#if defined(BNBENCH_X86)
__attribute__((target("avx512f"))) inline void copy_avx512(const float* s, float* d, size_t n, bool nt) {
  size_t i = 0;
  if (nt) {
    while (i < n && (reinterpret_cast<uintptr_t>(d + i) & 63) != 0) { d[i] = s[i]; ++i; }
    for (; i + 64 <= n; i += 64) {
      __m512 a = _mm512_loadu_ps(s + i), b = _mm512_loadu_ps(s + i + 16);
      __m512 c = _mm512_loadu_ps(s + i + 32), e = _mm512_loadu_ps(s + i + 48);
      _mm512_stream_ps(d + i, a);
      _mm512_stream_ps(d + i + 16, b);
      _mm512_stream_ps(d + i + 32, c);
      _mm512_stream_ps(d + i + 48, e);
    }
    for (; i + 16 <= n; i += 16) _mm512_stream_ps(d + i, _mm512_loadu_ps(s + i));
    _mm_sfence();
  } else {
    for (; i + 64 <= n; i += 64) {
      __m512 a = _mm512_loadu_ps(s + i), b = _mm512_loadu_ps(s + i + 16);
      __m512 c = _mm512_loadu_ps(s + i + 32), e = _mm512_loadu_ps(s + i + 48);
      _mm512_storeu_ps(d + i, a);
      _mm512_storeu_ps(d + i + 16, b);
      _mm512_storeu_ps(d + i + 32, c);
      _mm512_storeu_ps(d + i + 48, e);
    }
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(d + i, _mm512_loadu_ps(s + i));
  }
  for (; i < n; ++i) d[i] = s[i];
}

__attribute__((target("avx2"))) inline void copy_avx2(const float* s, float* d, size_t n, bool nt) {
  size_t i = 0;
  if (nt) {
    while (i < n && (reinterpret_cast<uintptr_t>(d + i) & 31) != 0) { d[i] = s[i]; ++i; }
    for (; i + 32 <= n; i += 32) {
      __m256 a = _mm256_loadu_ps(s + i), b = _mm256_loadu_ps(s + i + 8);
      __m256 c = _mm256_loadu_ps(s + i + 16), e = _mm256_loadu_ps(s + i + 24);
      _mm256_stream_ps(d + i, a);
      _mm256_stream_ps(d + i + 8, b);
      _mm256_stream_ps(d + i + 16, c);
      _mm256_stream_ps(d + i + 24, e);
    }
    for (; i + 8 <= n; i += 8) _mm256_stream_ps(d + i, _mm256_loadu_ps(s + i));
    _mm_sfence();
  } else {
    for (; i + 32 <= n; i += 32) {
      __m256 a = _mm256_loadu_ps(s + i), b = _mm256_loadu_ps(s + i + 8);
      __m256 c = _mm256_loadu_ps(s + i + 16), e = _mm256_loadu_ps(s + i + 24);
      _mm256_storeu_ps(d + i, a);
      _mm256_storeu_ps(d + i + 8, b);
      _mm256_storeu_ps(d + i + 16, c);
      _mm256_storeu_ps(d + i + 24, e);
    }
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(d + i, _mm256_loadu_ps(s + i));
  }
  for (; i < n; ++i) d[i] = s[i];
}

inline void copy_sse2(const float* s, float* d, size_t n, bool nt) {
  size_t i = 0;
  if (nt) {
    while (i < n && (reinterpret_cast<uintptr_t>(d + i) & 15) != 0) { d[i] = s[i]; ++i; }
    for (; i + 16 <= n; i += 16) {
      __m128 a = _mm_loadu_ps(s + i), b = _mm_loadu_ps(s + i + 4);
      __m128 c = _mm_loadu_ps(s + i + 8), e = _mm_loadu_ps(s + i + 12);
      _mm_stream_ps(d + i, a);
      _mm_stream_ps(d + i + 4, b);
      _mm_stream_ps(d + i + 8, c);
      _mm_stream_ps(d + i + 12, e);
    }
    _mm_sfence();
  } else {
    for (; i + 16 <= n; i += 16) {
      __m128 a = _mm_loadu_ps(s + i), b = _mm_loadu_ps(s + i + 4);
      __m128 c = _mm_loadu_ps(s + i + 8), e = _mm_loadu_ps(s + i + 12);
      _mm_storeu_ps(d + i, a);
      _mm_storeu_ps(d + i + 4, b);
      _mm_storeu_ps(d + i + 8, c);
      _mm_storeu_ps(d + i + 12, e);
    }
  }
  for (; i < n; ++i) d[i] = s[i];
}

#endif

// Sums of n floats of a (and of b when kTwo), read in one loop as two streams: the sum only keeps
// the loads from being optimized away. One body for every width (GCC vector extensions), always
// inlined into a wrapper compiled for the ISA; four accumulators per array, so the adds do not
// bound the loop.
typedef float ReadVec4 __attribute__((vector_size(16)));
typedef float ReadVec8 __attribute__((vector_size(32)));
typedef float ReadVec16 __attribute__((vector_size(64)));

template <class Vec, bool kTwo>
__attribute__((always_inline)) inline float read_body(const float* a, const float* b, size_t n) {
  constexpr size_t kLanes = sizeof(Vec) / sizeof(float);
  Vec s[4] = {}, t[4] = {};
  size_t i = 0;
  for (; i + 4 * kLanes <= n; i += 4 * kLanes) {
    // Unrolled at any -O level: a rolled loop keeps s[] and t[] in memory (bench_copy.node is -O2).
#pragma GCC unroll 4
    for (size_t k = 0; k < 4; ++k) {
      Vec v;
      __builtin_memcpy(&v, a + i + k * kLanes, sizeof v);
      s[k] += v;
      if (kTwo) {
        __builtin_memcpy(&v, b + i + k * kLanes, sizeof v);
        t[k] += v;
      }
    }
  }
  float r = 0.0f;
  for (size_t k = 0; k < 4; ++k) {
    for (size_t l = 0; l < kLanes; ++l) r += s[k][l] + t[k][l];
  }
  for (; i < n; ++i) r += a[i] + (kTwo ? b[i] : 0.0f);
  return r;
}

#if defined(BNBENCH_X86)
template <bool kTwo>
__attribute__((target("avx512f"))) inline float read_avx512(const float* a, const float* b, size_t n) {
  return read_body<ReadVec16, kTwo>(a, b, n);
}
template <bool kTwo>
__attribute__((target("avx2"))) inline float read_avx2(const float* a, const float* b, size_t n) {
  return read_body<ReadVec8, kTwo>(a, b, n);
}
#endif

inline float read_range(CopyIsa isa, const float* a, const float* b, size_t n) {
  switch (isa) {
#if defined(BNBENCH_X86)
    case CopyIsa::kAvx512: return b ? read_avx512<true>(a, b, n) : read_avx512<false>(a, a, n);
    case CopyIsa::kAvx2: return b ? read_avx2<true>(a, b, n) : read_avx2<false>(a, a, n);
#endif
    default: return b ? read_body<ReadVec4, true>(a, b, n) : read_body<ReadVec4, false>(a, a, n);  // SSE2, NEON
  }
}

inline void copy_range(CopyIsa isa, const float* s, float* d, size_t n, bool nt) {
  switch (isa) {
#if defined(BNBENCH_X86)
    case CopyIsa::kAvx512: copy_avx512(s, d, n, nt); return;
    case CopyIsa::kAvx2: copy_avx2(s, d, n, nt); return;
    case CopyIsa::kSse2: copy_sse2(s, d, n, nt); return;
#endif
    default: std::memcpy(d, s, n * sizeof(float)); return;
  }
}

}  // namespace detail

// Copies n floats from src to dst (not overlapping) with `threads` OpenMP threads, each taking one
// contiguous slice (a multiple of 64 floats, so slices start on the same cache-line phase).
// streaming: non-temporal stores (x86 only; ignored elsewhere: check streaming_copy_supported()).
inline void bench_copy(const float* src, float* dst, size_t n, bool streaming, int threads,
                       CopyIsa isa) {
  if (threads < 1) threads = 1;
  const bool nt = streaming && streaming_copy_supported();
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    const size_t t = size_t(omp_get_thread_num()), p = size_t(omp_get_num_threads());
    size_t chunk = (n + p - 1) / p;
    chunk = (chunk + 63) / 64 * 64;
    const size_t lo = t * chunk < n ? t * chunk : n;
    const size_t hi = lo + chunk < n ? lo + chunk : n;
    if (hi > lo) detail::copy_range(isa, src + lo, dst + lo, hi - lo, nt);
  }
}

// Reads n floats of a, and of b unless it is null (one loop, two streams), with `threads` OpenMP
// threads sliced as in bench_copy. Returns the sum of what it read, for the caller to keep.
inline float bench_read(const float* a, const float* b, size_t n, int threads, CopyIsa isa) {
  if (threads < 1) threads = 1;
  float total = 0.0f;
#pragma omp parallel num_threads(threads) if (threads > 1) reduction(+ : total)
  {
    const size_t t = size_t(omp_get_thread_num()), p = size_t(omp_get_num_threads());
    size_t chunk = (n + p - 1) / p;
    chunk = (chunk + 63) / 64 * 64;
    const size_t lo = t * chunk < n ? t * chunk : n;
    const size_t hi = lo + chunk < n ? lo + chunk : n;
    if (hi > lo) total += detail::read_range(isa, a + lo, b ? b + lo : nullptr, hi - lo);
  }
  return total;
}

}  // namespace bnbench
