// Per-ISA microkernel table (internal to the core). Each ISA lives in its own translation unit
// (kernels_scalar.cc, kernels_avx2.cc, kernels_avx512.cc, kernels_neon.cc), compiled with that
// ISA's flags, with every kernel at internal linkage; the only external symbol of a TU is its
// table getter, which runs no vector instruction. dispatch.cc picks one table at load.
//
// Naming: <op>_<layout>. Layout "run": one contiguous run of n values of a single channel
// (NCHW: the S values of x[n, c, :]). Layout "rows": `rows` rows of `ch` channel values, channel
// fastest (the [N, C] case, and channels-last).
//
// Reductions sum at most 8 terms per lane in T, then accumulate those partial sums in float64
// (see kernels_body.inl). `k` / `c` are per-channel shifts: statistics use x - k (k = a
// rough mean of the channel, so the sums stay small and E[x^2]-E[x]^2 does not cancel), the
// elementwise passes use x - c with c = mean rounded to T (exact subtraction near the mean; the
// rounding remainder of the mean is folded into the additive constant).
#pragma once

#include <cstddef>
#include <cstdint>

namespace bn {

// How far ahead the reductions (and inference, which walks x in memory order) prefetch: far
// enough to keep enough lines in flight to reach memory bandwidth (measured: 8 KiB).
constexpr size_t kPrefetchAheadBytes = 8192;

template <typename T>
struct KernelTable {
  // Run kernels: `rows` runs of n values, run r at x + r * stride (one NCHW channel: rows = N,
  // n = S, stride = C * S). `stream`: write the output with non-temporal stores (for outputs
  // larger than the caches: no read-for-ownership, no eviction of the input); the kernels do not
  // fence, the caller does once per thread. `next`: the writers also prefetch (into L2) the data
  // `next` values past what they read (the next piece of the walk; dx: its x only), 0 for none.
  // sum += Σ (x - k); sumsq += Σ (x - k)²
  void (*stats_run)(const T* x, size_t rows, size_t n, size_t stride, T k, double* sum, double* sumsq);
  // y = (x - c) * a + b
  void (*affine_run)(const T* x, T* y, size_t rows, size_t n, size_t stride, T c, T a, T b, bool stream,
                     size_t next);
  // affine_run, and stats_run over the same runs `next` values on (k, sum, sumsq: theirs)
  void (*affine_stats_run)(const T* x, T* y, size_t rows, size_t n, size_t stride, T c, T a, T b, bool stream,
                           size_t next, T k, double* sum, double* sumsq);
  // sum_dy += Σ dy; sum_dyxc += Σ dy * (x - c)
  void (*bwd_reduce_run)(const T* x, const T* dy, size_t rows, size_t n, size_t stride, T c,
                         double* sum_dy, double* sum_dyxc);
  // dx = dy * k1 + (x - c) * k2 + k3
  void (*bwd_dx_run)(const T* x, const T* dy, T* dx, size_t rows, size_t n, size_t stride, T c,
                     T k1, T k2, T k3, bool stream, size_t next);

  // Group kernels: `runs` consecutive runs of n values, run j (at x + j * n) of channel j, with
  // per-run arrays (k, c, a, b, k1, k2, k3 and the accumulators indexed by j). For short runs
  // (7x7 maps). The reductions take `rows` samples at once (sample r's runs at x + r * stride) and
  // walk them channel by channel, from L2, so a channel's sums stay in vector registers across its
  // runs; the writing ones take one sample, in memory order, and treat its runs as one span, so
  // `stream` can write whole lines.
  void (*stats_group)(const T* x, size_t rows, size_t stride, size_t runs, size_t n, const T* k, double* sum,
                      double* sumsq);
  void (*affine_group)(const T* x, T* y, size_t runs, size_t n, const T* c, const T* a, const T* b, bool stream,
                       size_t next);
  void (*bwd_reduce_group)(const T* x, const T* dy, size_t rows, size_t stride, size_t runs, size_t n, const T* c,
                           double* sum_dy, double* sum_dyxc);
  void (*bwd_dx_group)(const T* x, const T* dy, T* dx, size_t runs, size_t n, const T* c, const T* k1,
                       const T* k2, const T* k3, bool stream, size_t next);

  // The same four over rows of `ch` channels (per-channel arrays k, c, a, b, k1, k2, k3 of length
  // ch, accumulators sum/sumsq/sum_dy/sum_dyxc of length ch).
  void (*stats_rows)(const T* x, size_t rows, size_t ch, const T* k, double* sum, double* sumsq);
  void (*affine_rows)(const T* x, T* y, size_t rows, size_t ch, const T* c, const T* a, const T* b);
  void (*bwd_reduce_rows)(const T* x, const T* dy, size_t rows, size_t ch, const T* c,
                          double* sum_dy, double* sum_dyxc);
  void (*bwd_dx_rows)(const T* x, const T* dy, T* dx, size_t rows, size_t ch, const T* c,
                      const T* k1, const T* k2, const T* k3);
};

struct KernelSet {
  KernelTable<float> f32;
  KernelTable<double> f64;
};

// One getter per ISA translation unit. A getter of an ISA the build does not include is absent;
// dispatch.cc knows which exist from the BN_HAVE_* macros.
const KernelSet* kernels_scalar();
const KernelSet* kernels_avx2();
const KernelSet* kernels_avx512();
const KernelSet* kernels_neon();

// The table chosen by the dispatcher (never null).
const KernelSet& active_kernels();

}  // namespace bn
