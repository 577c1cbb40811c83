// Per-ISA microkernel table (internal to the core). Each ISA lives in its own translation unit
// (kernels_scalar.cc, kernels_avx2.cc, kernels_avx512.cc, kernels_neon.cc), compiled with that
// ISA's flags, with every kernel at internal linkage; the only external symbol of a TU is its
// table getter, which runs no vector instruction. dispatch.cc picks one table at load.
//
// Naming (XNNPACK style): a kernel is <dtype>_<op>_<layout>__<isa>, e.g. f32_stats_run__avx2; the
// table's fields are <op>_<layout>, the table is one dtype (KernelSet::f32 / f64) of one ISA
// (kernels_<isa>()); the microkernel tests spell the whole name in their messages. Layout "run": one
// contiguous run of n values of a single channel (NCHW: the S values of x[n, c, :]). "group": the
// contiguous runs of several channels of one sample (short maps). "rows": `rows` rows of `ch`
// channel values, channel fastest (the [N, C] case, and channels-last).
//
// Types: tensors are stored as S (the storage type); coefficients, shifts and the arithmetic are
// compute_t<S> (as ATen's opmath_type: float for a future bfloat16 / float16 storage); partial sums
// of the reductions are widened into float64 (see kernels_reduce.inl).
//
// `k` / `c` are per-channel shifts: statistics use x - k (k = a rough mean of the channel, so the
// sums stay small and E[x^2]-E[x]^2 does not cancel), the elementwise passes use x - c with
// c = mean rounded to compute_t (exact subtraction near the mean; the rounding remainder of the
// mean is folded into the additive constant).
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "batchnorm.h"
#include "store_alias.h"

namespace bn {

// The compute type of a storage type. Only the dtypes the core supports have one: a kernel table
// or driver for any other storage type does not compile.
template <typename S>
struct OpMath;
template <>
struct OpMath<float> { using type = float; };
template <>
struct OpMath<double> { using type = double; };
template <>
struct OpMath<bf16> { using type = float; };
template <>
struct OpMath<f16> { using type = float; };
template <typename S>
using compute_t = typename OpMath<S>::type;

// How far ahead the reductions (and inference, which walks x in memory order) prefetch: far
// enough to keep enough lines in flight to reach memory bandwidth (bench/notes-from-code.md).
constexpr size_t kPrefetchAheadBytes = 8192;
// How far ahead of its statistics the pipelined normalize pass (affine_stats_run) requests the
// next piece, in address order: further than the reductions for float32 and wider; 16-bit storage,
// whose pass is longer per byte, keeps the reductions' distance (both measured,
// bench/notes-from-code.md).
constexpr size_t kPipelineAheadBytes = 32768;

// The kernels that write a tensor, one set per Epilogue (batchnorm.h), each instantiated for every
// epilogue by kernels_body.inl; the epilogue itself is Kernels::epilogue (kernels_base.inl). `res` is the epilogue's second operand
// (the residual of kAddRelu), laid out as the output and at the output's offset; null for kNone.
// Run kernels: `rows` runs of n values, run r at x + r * stride (one NCHW channel: rows = N,
// n = S, stride = C * S). `stream`: write the output with non-temporal stores (for outputs
// larger than the caches: no read-for-ownership, no eviction of the input); the kernels do not
// fence, the caller does once per thread. `next`: the writers also prefetch (into L2) the data
// `next` values past what they read (the next piece of the walk; dx: its x only), 0 for none.
// `out_next` (group writers): the output's line that many values on too, 0 for none.
template <typename S>
struct ElementwiseKernels {
  using C = compute_t<S>;
  // y = (x - c) * a + b
  void (*affine_run)(const S* x, S* y, const S* res, size_t rows, size_t n, size_t stride, C c, C a, C b,
                     bool stream, size_t next);
  // affine_run, and stats_run over the same runs `next` values on (k, sum, sumsq: theirs)
  void (*affine_stats_run)(const S* x, S* y, const S* res, size_t rows, size_t n, size_t stride, C c, C a, C b,
                           bool stream, size_t next, C k, double* sum, double* sumsq);
  // dx = dy * k1 + (x - c) * k2 + k3
  void (*bwd_dx_run)(const S* x, const S* dy, S* dx, const S* res, size_t rows, size_t n, size_t stride, C c,
                     C k1, C k2, C k3, bool stream, size_t next);
  // Group writers: one sample's `runs` consecutive runs of n values, run j of channel j, with
  // per-run coefficient arrays; written as one span, so `stream` can write whole lines.
  void (*affine_group)(const S* x, S* y, const S* res, size_t runs, size_t n, const C* c, const C* a,
                       const C* b, bool stream, size_t next, size_t out_next);
  void (*bwd_dx_group)(const S* x, const S* dy, S* dx, const S* res, size_t runs, size_t n, const C* c,
                       const C* k1, const C* k2, const C* k3, bool stream, size_t next, size_t out_next);
  // Rows writers: per-channel arrays of length ch. `stream`: non-temporal stores when the rows
  // allow them (ch a multiple of the vector, y aligned), plain ones otherwise.
  void (*affine_rows)(const S* x, S* y, const S* res, size_t rows, size_t ch, const C* c, const C* a,
                      const C* b, bool stream);
  void (*bwd_dx_rows)(const S* x, const S* dy, S* dx, const S* res, size_t rows, size_t ch, const C* c,
                      const C* k1, const C* k2, const C* k3, bool stream);
};

// Backward through a fused ReLU (the forward's Epilogue kRelu / kAddRelu): backward's reductions
// and dx writers with a prologue, dy -> g = (y <= 0 ? 0 : dy), y the forward's output (PyTorch's
// threshold_backward: 0 at exactly 0, NaN in y passes dy), and the dx writers also store g to
// `dres` (kAddRelu's dL/dresidual; null: not wanted). The scale writers are evaluation mode's
// dx = g * k1 (x not read). Arguments otherwise as the unmasked kernels'.
template <typename S>
struct MaskedBackwardKernels {
  using C = compute_t<S>;
  void (*bwd_reduce_run)(const S* x, const S* dy, const S* y, size_t rows, size_t n, size_t stride, C c,
                         double* sum_dy, double* sum_dyxc);
  void (*bwd_reduce_group)(const S* x, const S* dy, const S* y, size_t rows, size_t stride, size_t runs, size_t n,
                           const C* c, double* sum_dy, double* sum_dyxc);
  void (*bwd_reduce_rows)(const S* x, const S* dy, const S* y, size_t rows, size_t ch, const C* c, double* sum_dy,
                          double* sum_dyxc);
  void (*bwd_dx_run)(const S* x, const S* dy, const S* y, S* dx, S* dres, size_t rows, size_t n, size_t stride, C c,
                     C k1, C k2, C k3, bool stream, size_t next);
  void (*bwd_dx_group)(const S* x, const S* dy, const S* y, S* dx, S* dres, size_t runs, size_t n, const C* c,
                       const C* k1, const C* k2, const C* k3, bool stream, size_t next, size_t out_next);
  void (*bwd_dx_rows)(const S* x, const S* dy, const S* y, S* dx, S* dres, size_t rows, size_t ch, const C* c,
                      const C* k1, const C* k2, const C* k3);
  void (*bwd_scale_run)(const S* dy, const S* y, S* dx, S* dres, size_t rows, size_t n, size_t stride, C k1,
                        bool stream, size_t next);
  void (*bwd_scale_group)(const S* dy, const S* y, S* dx, S* dres, size_t runs, size_t n, const C* k1, bool stream,
                          size_t next, size_t out_next);
  void (*bwd_scale_rows)(const S* dy, const S* y, S* dx, S* dres, size_t rows, size_t ch, const C* k1);
};

template <typename S>
struct KernelTable {
  using C = compute_t<S>;
  // Reductions (run layout). sum += Σ (x - k); sumsq += Σ (x - k)²
  void (*stats_run)(const S* x, size_t rows, size_t n, size_t stride, C k, double* sum, double* sumsq);
  // sum_dy += Σ dy; sum_dyxc += Σ dy * (x - c)
  void (*bwd_reduce_run)(const S* x, const S* dy, size_t rows, size_t n, size_t stride, C c, double* sum_dy,
                         double* sum_dyxc);
  // Group reductions: `rows` samples at once (sample r's runs at x + r * stride), walked channel by
  // channel from L2, so a channel's sums stay in vector registers across its runs. Per-run arrays
  // (k, c and the accumulators indexed by j).
  void (*stats_group)(const S* x, size_t rows, size_t stride, size_t runs, size_t n, const C* k, double* sum,
                      double* sumsq);
  void (*bwd_reduce_group)(const S* x, const S* dy, size_t rows, size_t stride, size_t runs, size_t n, const C* c,
                           double* sum_dy, double* sum_dyxc);
  // Rows reductions: per-channel shifts and accumulators of length ch.
  void (*stats_rows)(const S* x, size_t rows, size_t ch, const C* k, double* sum, double* sumsq);
  void (*bwd_reduce_rows)(const S* x, const S* dy, size_t rows, size_t ch, const C* c, double* sum_dy,
                          double* sum_dyxc);
  // The writers, indexed by Epilogue.
  ElementwiseKernels<S> write[kEpilogueCount];

  const ElementwiseKernels<S>& writers(Epilogue e) const { return write[int(e)]; }
  // Backward through the ReLU of kRelu and kAddRelu.
  MaskedBackwardKernels<S> relu_bwd;
};

struct KernelSet {
  const char* isa;  // "scalar", "avx2", "avx512", "neon": the __<isa> suffix of every kernel name
  KernelTable<float> f32;
  KernelTable<double> f64;
  KernelTable<bn::bf16> bf16;  // 16-bit storage: loads widen to float lanes, stores round (convert_rule.h)
  KernelTable<bn::f16> f16;
};

// The table of storage type S in a set. Only the supported dtypes have one (exhaustive by
// construction: another type does not compile).
template <typename S>
const KernelTable<S>& table_of(const KernelSet& set);
template <>
inline const KernelTable<float>& table_of<float>(const KernelSet& set) { return set.f32; }
template <>
inline const KernelTable<double>& table_of<double>(const KernelSet& set) { return set.f64; }
template <>
inline const KernelTable<bf16>& table_of<bf16>(const KernelSet& set) { return set.bf16; }
template <>
inline const KernelTable<f16>& table_of<f16>(const KernelSet& set) { return set.f16; }

template <typename S>
constexpr const char* dtype_name();
template <>
constexpr const char* dtype_name<float>() { return "f32"; }
template <>
constexpr const char* dtype_name<double>() { return "f64"; }
template <>
constexpr const char* dtype_name<bf16>() { return "bf16"; }
template <>
constexpr const char* dtype_name<f16>() { return "f16"; }

// One getter per ISA translation unit. A getter of an ISA the build does not include is absent;
// dispatch.cc knows which exist from the BN_HAVE_* macros.
const KernelSet* kernels_scalar();
const KernelSet* kernels_avx2();
const KernelSet* kernels_avx512();
const KernelSet* kernels_neon();
// The AVX-512 bfloat16 table with VCVTNEPS2BF16 stores (kernels_avx512bf16.cc; null in builds
// without that unit); dispatch.cc puts it in the AVX-512 set when the CPU has AVX512_BF16.
const KernelTable<bf16>* bf16_table_avx512bf16();

// The set chosen by the dispatcher (never null), and its table of storage type S.
const KernelSet& active_kernels();
template <typename S>
const KernelTable<S>& active_table() { return table_of<S>(active_kernels()); }

}  // namespace bn
