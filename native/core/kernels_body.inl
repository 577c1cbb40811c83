// Kernel bodies shared by every ISA translation unit. Included inside an anonymous namespace by
// kernels_<isa>.cc after it defines its vector traits, so each TU gets its own internal copy
// compiled with its own flags (no ODR sharing between ISAs).
//
// A traits class V provides, for storage type T = typename V::T and W = V::W lanes of
// compute_t<T> (the same type for float32 and float64 today; a narrower storage type would load
// and store through conversions here):
//   Vec load(const T*), store(T*, Vec), set1(T), sub(Vec, Vec),
//   mul(a, b), fmadd(a, b, c) = a * b + c (fused or not: the reductions only; their sums differ
//   between ISAs by the order of additions anyway),
//   load_tail(p, n, fill): lanes [0, n) from p, the others = fill (n < W, reads only n values),
//   store_tail(p, v, n): writes lanes [0, n) only, blend_lanes(a, b, k): lanes [0, k) of a, the rest of b,
//   stream(p, v): non-temporal store to a kStreamAlign-aligned p. The kernels do not fence after
//   streaming (an sfence waits for every store in flight, too dear per call): the driver fences
//   once per thread before the output is used, see store_fence() in memory.h.
//   add(a, b), Acc acc_zero(); acc_add(s, v): widens v to float64 and adds it lane-wise into s;
//   acc_load(p) / acc_store(p, s): W float64 values in lane order; acc_sum(Acc): the sum of the lanes.
// The scalar TU instantiates the same bodies with W = 1: that is the scalar twin of every vector
// loop, and the reference the microkernel tests compare each ISA against.
//
// Rounding in the reductions: x - k (x - c) is formed in the compute type, exact near the shift.
// Its square (dy * (x - c)) and the sums of at most kPartial terms per lane are formed there too;
// those partial sums are then widened and accumulated in float64. For float32 that bounds the
// rounding of a partial at about kPartial ulps of it (~5e-7 relative), far below what a float32
// output resolves, and the float64 accumulation keeps that bound for any tensor size; widening
// every value instead halves the reductions' speed (bench/notes-from-code.md). Only the order of
// the additions differs between ISAs.
//
// The families, one file each, all members of Kernels<V>:
//   kernels_base.inl   helpers: alignment, prefetch, store selection, epilogue, the reduction steps
//   kernels_run.inl    run kernels (one channel's runs, stride apart) and the run reduction loop
//   kernels_group.inl  group kernels (short maps: several channels' runs of one sample)
//   kernels_rows.inl   rows kernels (channel fastest)

template <class V>
struct Kernels {
  using T = typename V::T;   // storage
  using C = compute_t<T>;    // coefficients and arithmetic
  using Vec = typename V::Vec;
  static constexpr size_t W = V::W;
  static constexpr bool kNarrow = sizeof(T) < sizeof(C);  // 16-bit storage of float compute

#include "kernels_base.inl"
#include "kernels_run.inl"
#include "kernels_group.inl"
#include "kernels_rows.inl"

  template <Epilogue E>
  static constexpr ElementwiseKernels<T> writers() {
    return ElementwiseKernels<T>{affine_run<E>,   affine_stats_run<E>, bwd_dx_run<E>, affine_group<E>,
                                 bwd_dx_group<E>, affine_rows<E>,      bwd_dx_rows<E>};
  }

  // Every epilogue's writers, in Epilogue order: a new epilogue needs no line here.
  template <size_t... E>
  static constexpr KernelTable<T> table(std::index_sequence<E...>) {
    return KernelTable<T>{stats_run, bwd_reduce_run, stats_group, bwd_reduce_group, stats_rows, bwd_reduce_rows,
                          {writers<Epilogue(E)>()...}};
  }
  static constexpr KernelTable<T> table() { return table(std::make_index_sequence<kEpilogueCount>()); }
};
