// Drivers of the synchronized-BN pieces (sync_ops.h) over the active kernel table (kernels.h).
// The reductions walk the core's chunks (blocks.h) with the core's kernel choice and fold
// (schedule.h), so a rank's statistics are the local BatchNorm's bits, for any thread count.
#include "sync_ops.h"

#include <algorithm>
#include <cmath>
#include <new>
#include <vector>

#include "blocks.h"
#include "coefficients.h"
#include "exact_stats.h"
#include "invstd.h"
#include "kernels.h"
#include "machine.h"
#include "memory.h"
#include "plan.h"
#include "schedule.h"

namespace bn {
namespace {

// A rank with no samples (n = 0) still takes part: its tensors are empty (their pointers may be
// null) and only the per-channel outputs are written.
Status check_shape(const Shape& s, const void* a, const void* b, int num_threads) {
  Shape one = s;
  if (s.n == 0) one.n = 1;
  if (Status st = validate_shape(one); st != Status::kOk) return st;
  if (s.n > 0 && (a == nullptr || b == nullptr)) return Status::kNullPointer;
  if (num_threads < 1) return Status::kBadThreads;
  return Status::kOk;
}

// Values per block of rows of the elementwise passes (channel-fastest layouts).
constexpr int64_t kBlockValues = int64_t(1) << 16;

// The core's reduction of a canonical shape into its chunks' slots (blocks.h, schedule.h): rows
// layouts by row chunks, rows_fn(first_row, rows, slots_a, slots_b) into [C] slots; NCHW by
// (channel, chunk) items, run_fn(c, off, rows, n, slot_a, slot_b) over the chunk's runs. Every item
// into its own slots, any thread order: PartialSums::fold then adds them in chunk order.
template <class RunFn, class RowsFn>
void reduce_chunks(const Shape& s, int nt, PartialSums& sums, RunFn&& run_fn, RowsFn&& rows_fn) {
  const int64_t C = s.c;
  if (s.rows_layout()) {
    const Chunking ch = row_chunking(s);
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (int64_t k = 0; k < ch.count; ++k) {
      const int64_t lo = k * ch.runs;
      rows_fn(lo, std::min(ch.runs, s.rows() - lo), &sums.first[size_t(k * C)], &sums.second[size_t(k * C)]);
    }
    return;
  }
  const Chunking ch = chunking(s);
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
  for (int64_t it = 0; it < C * ch.count; ++it) {
    const int64_t c = it / ch.count, k = it % ch.count;
    chunk_block(s, ch, c, k, [&](int64_t off, int64_t rows, int64_t n) {
      run_fn(c, off, rows, n, &sums.first[size_t(k * C + c)], &sums.second[size_t(k * C + c)]);
    });
  }
}

// Whether the core reduces this NCHW shape through the group kernels (plan.h: a rule of the shape).
bool group_sums(const Shape& s, size_t elem, OpKind op) {
  PlanInput in;
  in.shape = s;
  in.elem_bytes = elem;
  in.op = op;
  in.l2_bytes = machine_facts().l2_bytes;
  return !s.rows_layout() && plan_op(in).group_sums;
}

// A rough mean per channel (of its first values, rounded to T): the reductions sum x - k, so
// Σ(x-k)² - (Σ(x-k))²/m does not cancel when |mean| >> std.
template <typename T>
std::vector<compute_t<T>> rough_means(const Shape& s, const T* x) {
  std::vector<compute_t<T>> k(size_t(s.c));
  if (s.rows_layout()) {
    rows_shifts(s, x, k.data());
  } else {
    for (int64_t c = 0; c < s.c; ++c) k[c] = channel_shift(s, x, c);
  }
  return k;
}

// The core's streaming rule (memory.h), for outputs written beside their inputs in whole runs.
bool stream_out(const Shape& s, size_t elem, const void* out, const void* in0, const void* in1) {
  if (s.rows_layout() || s.s * int64_t(elem) < 512 || out == in0 || out == in1) return false;
  return stream_output(machine_facts(), out, s.n * s.c * s.s * int64_t(elem));
}

// Calls f(offset, c) for every run (NCHW: sample b, channel c at offset (b*C + c)*S) or
// f_rows(first_row, rows) for fixed blocks of rows, in parallel: the elementwise passes.
template <class RunFn, class RowsFn>
void for_each_piece(const Shape& s, int nt, RunFn&& run, RowsFn&& rows_fn) {
  if (s.rows_layout()) {
    const int64_t per = std::max<int64_t>(1, kBlockValues / s.c), count = (s.rows() + per - 1) / per;
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (int64_t blk = 0; blk < count; ++blk) rows_fn(blk * per, std::min(per, s.rows() - blk * per));
    return;
  }
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
#pragma omp for schedule(static) nowait
    for (int64_t r = 0; r < s.n * s.c; ++r) run(r * s.s, r % s.c);
    store_fence();
  }
}

}  // namespace

template <typename T>
Status sync_moments(const SyncMomentsArgs<T>& a) {
  if (Status st = check_shape(a.shape, a.x, a.x, a.num_threads); st != Status::kOk) return st;
  if (a.mean == nullptr || a.var == nullptr) return Status::kNullPointer;
  if (a.shape.n == 0) {
    for (int64_t c = 0; c < a.shape.c; ++c) a.mean[c] = a.var[c] = 0.0;
    return Status::kOk;
  }
  try {
    const Shape s = canonical_shape(a.shape);
    const KernelTable<T>& k = active_table<T>();
    const std::vector<compute_t<T>> shift = rough_means(s, a.x);
    PartialSums sums(s.c, reduction_chunks(s));
    const bool grouped = group_sums(s, sizeof(T), OpKind::kForwardTraining);
    const size_t stride = size_t(s.c * s.s);
    // The calls of forward_training.cc's stages, chunk by chunk.
    reduce_chunks(
        s, useful_threads(s, a.num_threads), sums,
        [&](int64_t c, int64_t off, int64_t rows, int64_t n, double* ps, double* pq) {
          if (grouped) {
            k.stats_group(a.x + off, size_t(rows), stride, 1, size_t(n), &shift[c], ps, pq);
          } else {
            k.stats_run(a.x + off, size_t(rows), size_t(n), chunk_stride(s, off, rows, n), shift[c], ps, pq);
          }
        },
        [&](int64_t r0, int64_t nr, double* ps, double* pq) {
          k.stats_rows(a.x + r0 * s.c, size_t(nr), size_t(s.c), shift.data(), ps, pq);
        });
    const double m = double(s.n) * double(s.s);
    for (int64_t c = 0; c < s.c; ++c) {
      const ChannelMoments mo = channel_moments(sums, c, double(shift[c]), m);
      if (forward_needs_exact<T>(mo.sum, mo.sumsq)) {  // sums in T overflowed, or inf / NaN in x
        const ExactMoments ex = exact_moments(s, a.x, c);
        a.mean[c] = ex.mean;
        a.var[c] = ex.var;
        continue;
      }
      a.mean[c] = mo.mean;
      a.var[c] = mo.var;
    }
  } catch (const std::bad_alloc&) {
    return Status::kOutOfMemory;
  }
  return Status::kOk;
}

template <typename T>
Status sync_normalize(const SyncNormalizeArgs<T>& a) {
  if (Status st = check_shape(a.shape, a.x, a.y, a.num_threads); st != Status::kOk) return st;
  if (a.mean == nullptr || a.var == nullptr || a.invstd == nullptr) return Status::kNullPointer;
  if (!(std::isfinite(a.eps) && a.eps >= 0.0)) return Status::kBadEps;
  try {
    const Shape& s = a.shape;
    const ElementwiseKernels<T>& w = active_table<T>().writers(Epilogue::kNone);
    // y = (x - c) * sc + sh with c = mean rounded to T, its remainder folded into sh.
    std::vector<T> c(size_t(s.c)), sc(size_t(s.c)), sh(size_t(s.c));
    for (int64_t j = 0; j < s.c; ++j) {
      a.invstd[j] = invstd_of<T>(a.var[j], a.eps);
      const double w = a.weight ? double(a.weight[j]) : 1.0, b = a.bias ? double(a.bias[j]) : 0.0;
      const double scale = w * a.invstd[j];
      c[j] = T(a.mean[j]);
      sc[j] = saturate_to<T>(scale);
      sh[j] = saturate_to<T>(b - (a.mean[j] - double(c[j])) * scale);
    }
    if (s.n == 0) return Status::kOk;
    const bool stream = stream_out(s, sizeof(T), a.y, a.x, a.x);
    for_each_piece(
        s, useful_threads(s, a.num_threads),
        [&](int64_t off, int64_t j) {
          w.affine_run(a.x + off, a.y + off, nullptr, 1, size_t(s.s), size_t(s.s), c[j], sc[j], sh[j], stream, 0);
        },
        [&](int64_t r0, int64_t nr) {
          w.affine_rows(a.x + r0 * s.c, a.y + r0 * s.c, nullptr, size_t(nr), size_t(s.c), c.data(), sc.data(), sh.data(), false);
        });
  } catch (const std::bad_alloc&) {
    return Status::kOutOfMemory;
  }
  return Status::kOk;
}

template <typename T>
Status sync_backward_reduce(const SyncBackwardReduceArgs<T>& a) {
  if (Status st = check_shape(a.shape, a.x, a.dy, a.num_threads); st != Status::kOk) return st;
  if (a.mean == nullptr || a.sum_dy == nullptr || a.sum_dy_xmu == nullptr) return Status::kNullPointer;
  if (a.shape.n == 0) {
    for (int64_t c = 0; c < a.shape.c; ++c) a.sum_dy[c] = a.sum_dy_xmu[c] = 0.0;
    return Status::kOk;
  }
  try {
    const Shape s = canonical_shape(a.shape);
    const KernelTable<T>& k = active_table<T>();
    std::vector<compute_t<T>> c(size_t(s.c));
    for (int64_t j = 0; j < s.c; ++j) c[j] = compute_t<T>(a.mean[j]);
    PartialSums sums(s.c, reduction_chunks(s));
    const bool grouped = group_sums(s, sizeof(T), OpKind::kBackward);
    const size_t stride = size_t(s.c * s.s);
    // The calls of backward.cc's stages, chunk by chunk.
    reduce_chunks(
        s, useful_threads(s, a.num_threads), sums,
        [&](int64_t j, int64_t off, int64_t rows, int64_t n, double* pg, double* pp) {
          if (grouped) {
            k.bwd_reduce_group(a.x + off, a.dy + off, size_t(rows), stride, 1, size_t(n), &c[j], pg, pp);
          } else {
            k.bwd_reduce_run(a.x + off, a.dy + off, size_t(rows), size_t(n), chunk_stride(s, off, rows, n), c[j], pg, pp);
          }
        },
        [&](int64_t r0, int64_t nr, double* pg, double* pp) {
          k.bwd_reduce_rows(a.x + r0 * s.c, a.dy + r0 * s.c, size_t(nr), size_t(s.c), c.data(), pg, pp);
        });
    for (int64_t j = 0; j < s.c; ++j) {
      double g, p;
      sums.fold(j, &g, &p);
      if (!std::isfinite(g) || !std::isfinite(p)) {  // sums in T overflowed, or inf / NaN
        const ExactBackwardSums ex = exact_backward_sums(s, a.x, a.dy, j, a.mean[j]);
        a.sum_dy[j] = ex.sum_dy;
        a.sum_dy_xmu[j] = ex.sum_dy_xmu;
        continue;
      }
      // Σ dy (x - mean) = Σ dy (x - c) - (mean - c) Σ dy
      a.sum_dy[j] = g;
      a.sum_dy_xmu[j] = p - (a.mean[j] - double(c[j])) * g;
    }
  } catch (const std::bad_alloc&) {
    return Status::kOutOfMemory;
  }
  return Status::kOk;
}

template <typename T>
Status sync_backward_dx(const SyncBackwardDxArgs<T>& a) {
  if (Status st = check_shape(a.shape, a.x, a.dy, a.num_threads); st != Status::kOk) return st;
  if ((a.shape.n > 0 && a.dx == nullptr) || a.mean == nullptr || a.invstd == nullptr || a.sum_dy == nullptr ||
      a.sum_dy_xmu == nullptr) {
    return Status::kNullPointer;
  }
  if (!(a.count >= 2.0)) return Status::kTooFewValues;
  if (a.shape.n == 0) return Status::kOk;
  try {
    const Shape& s = a.shape;
    const ElementwiseKernels<T>& w = active_table<T>().writers(Epilogue::kNone);
    const bool stream = stream_out(s, sizeof(T), a.dx, a.dy, a.x);
    // dx = dy * k1 + (x - c) * k2 + k3 (the core's backward, with the global sums and count)
    std::vector<T> c(size_t(s.c)), k1(size_t(s.c)), k2(size_t(s.c)), k3(size_t(s.c));
    for (int64_t j = 0; j < s.c; ++j) {
      const double invstd = a.invstd[j], w = a.weight ? double(a.weight[j]) : 1.0;
      const double lo = a.mean[j] - double(T(a.mean[j]));
      // invstd = 0 (var + eps == 0): xhat = 0, so dweight = 0 even where Σ dy (x - mean) is not finite
      const double dweight = invstd == 0.0 ? 0.0 : invstd * a.sum_dy_xmu[j];
      const DxChannel q = dx_coefficients(a.sum_dy[j], dweight, lo, invstd, w, true, a.count);
      c[j] = T(a.mean[j]);
      k1[j] = saturate_to<T>(q.k1);
      k2[j] = saturate_to<T>(q.k2);
      k3[j] = saturate_to<T>(q.k3);
    }
    for_each_piece(
        s, useful_threads(s, a.num_threads),
        [&](int64_t off, int64_t j) {
          w.bwd_dx_run(a.x + off, a.dy + off, a.dx + off, nullptr, 1, size_t(s.s), size_t(s.s), c[j], k1[j], k2[j], k3[j],
                       stream, 0);
        },
        [&](int64_t r0, int64_t nr) {
          const int64_t off = r0 * s.c;
          w.bwd_dx_rows(a.x + off, a.dy + off, a.dx + off, nullptr, size_t(nr), size_t(s.c), c.data(), k1.data(), k2.data(),
                        k3.data(), false);
        });
  } catch (const std::bad_alloc&) {
    return Status::kOutOfMemory;
  }
  return Status::kOk;
}

template Status sync_moments<float>(const SyncMomentsArgs<float>&);
template Status sync_moments<double>(const SyncMomentsArgs<double>&);
template Status sync_normalize<float>(const SyncNormalizeArgs<float>&);
template Status sync_normalize<double>(const SyncNormalizeArgs<double>&);
template Status sync_backward_reduce<float>(const SyncBackwardReduceArgs<float>&);
template Status sync_backward_reduce<double>(const SyncBackwardReduceArgs<double>&);
template Status sync_backward_dx<float>(const SyncBackwardDxArgs<float>&);
template Status sync_backward_dx<double>(const SyncBackwardDxArgs<double>&);

}  // namespace bn
