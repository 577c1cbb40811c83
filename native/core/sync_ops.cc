// Drivers of the synchronized-BN pieces (sync_ops.h) over the active kernel table (kernels.h).
// Work is cut into fixed blocks that depend on the shape alone (never on the thread count), each
// reduced by one thread into its own slots, and the slots of a channel added in block order.
#include "sync_ops.h"

#include <algorithm>
#include <cmath>
#include <new>
#include <vector>

#include "coefficients.h"
#include "exact_stats.h"
#include "invstd.h"
#include "kernels.h"
#include "machine.h"
#include "memory.h"

namespace bn {
namespace {

// Values per reduction block: large enough that a block's call overhead is noise, small enough
// that a channel of a large tensor splits over the threads.
constexpr int64_t kBlockValues = int64_t(1) << 16;

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

// Runs shorter than this (values) are reduced a group of channels at a time (the group kernels
// keep partial sums across a channel's short runs instead of widening after every run).
constexpr int64_t kShortRun = 1024;
// Values of one sample in a group of short-run channels.
constexpr int64_t kGroupRowValues = 4096;

// The fixed blocks of a reduction, from the shape alone. Channel-fastest: `per` rows of C values.
// NCHW: `group` channels by `per` samples (runs of S values, C * S apart).
struct Blocks {
  int64_t per = 1, count = 1, group = 1, groups = 1;
  explicit Blocks(const Shape& s) {
    if (s.rows_layout()) {
      per = std::max<int64_t>(1, kBlockValues / s.c);
      count = (s.rows() + per - 1) / per;
      return;
    }
    group = s.s < kShortRun ? std::max<int64_t>(1, std::min<int64_t>(s.c, kGroupRowValues / s.s)) : 1;
    groups = (s.c + group - 1) / group;
    per = std::max<int64_t>(1, kBlockValues / (group * s.s));
    count = (s.n + per - 1) / per;
  }
  int64_t lo(int64_t b) const { return b * per; }
  int64_t len(int64_t b, int64_t total) const { return std::min(per, total - b * per); }
};

// Runs run(c0, channels, first_sample, samples, sums_a, sums_b) for every (channel group, sample
// block) item (NCHW), or rows_fn(first_row, rows, sums_a, sums_b) for every block of rows
// (channel-fastest), on up to nt threads, each item into its own slots (sums_* point at the
// item's first channel); then the per-channel totals of both accumulators, blocks added in order.
template <class RunFn, class RowsFn>
void reduce_blocks(const Shape& s, int nt, std::vector<double>& a, std::vector<double>& b, RunFn&& run,
                   RowsFn&& rows_fn) {
  const Blocks bl(s);
  const int64_t C = s.c;
  std::vector<double> pa(size_t(C * bl.count), 0.0), pb(size_t(C * bl.count), 0.0);  // [block][channel]
  if (s.rows_layout()) {
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (int64_t blk = 0; blk < bl.count; ++blk) {
      rows_fn(bl.lo(blk), bl.len(blk, s.rows()), &pa[size_t(blk * C)], &pb[size_t(blk * C)]);
    }
  } else {
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (int64_t it = 0; it < bl.groups * bl.count; ++it) {
      const int64_t g = it / bl.count, blk = it % bl.count;
      const int64_t c0 = g * bl.group, G = std::min(bl.group, C - c0);
      run(c0, G, bl.lo(blk), bl.len(blk, s.n), &pa[size_t(blk * C + c0)], &pb[size_t(blk * C + c0)]);
    }
  }
  a.assign(size_t(C), 0.0);
  b.assign(size_t(C), 0.0);
  for (int64_t blk = 0; blk < bl.count; ++blk) {
    for (int64_t c = 0; c < C; ++c) {
      a[c] += pa[size_t(blk * C + c)];
      b[c] += pb[size_t(blk * C + c)];
    }
  }
}

// A rough mean per channel (of its first values, rounded to T): the reductions sum x - k, so
// Σ(x-k)² - (Σ(x-k))²/m does not cancel when |mean| >> std.
template <typename T>
std::vector<T> rough_means(const Shape& s, const T* x) {
  std::vector<T> k(size_t(s.c));
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
    const Blocks bl(s);
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (int64_t blk = 0; blk < bl.count; ++blk) rows_fn(bl.lo(blk), bl.len(blk, s.rows()));
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
  if (a.mean == nullptr || a.m2 == nullptr) return Status::kNullPointer;
  if (a.shape.n == 0) {
    for (int64_t c = 0; c < a.shape.c; ++c) a.mean[c] = a.m2[c] = 0.0;
    return Status::kOk;
  }
  try {
    const Shape& s = a.shape;
    const KernelTable<T>& k = active_table<T>();
    const std::vector<T> shift = rough_means(s, a.x);
    std::vector<double> sum, sumsq;
    const size_t stride = size_t(s.c * s.s);
    reduce_blocks(
        s, useful_threads(s, a.num_threads), sum, sumsq,
        [&](int64_t c0, int64_t G, int64_t b0, int64_t nb, double* ps, double* pq) {
          const T* p = a.x + (b0 * s.c + c0) * s.s;
          if (G == 1) {
            k.stats_run(p, size_t(nb), size_t(s.s), stride, shift[c0], ps, pq);
          } else {
            k.stats_group(p, size_t(nb), stride, size_t(G), size_t(s.s), &shift[c0], ps, pq);
          }
        },
        [&](int64_t r0, int64_t nr, double* ps, double* pq) {
          k.stats_rows(a.x + r0 * s.c, size_t(nr), size_t(s.c), shift.data(), ps, pq);
        });
    const double m = double(s.n) * double(s.s);
    for (int64_t c = 0; c < s.c; ++c) {
      if (forward_needs_exact<T>(sum[c], sumsq[c])) {  // sums in T overflowed, or inf / NaN in x
        const ExactMoments ex = exact_moments(s, a.x, c);
        a.mean[c] = ex.mean;
        a.m2[c] = ex.var * m;
        continue;
      }
      const double d = sum[c] / m;
      const double m2 = sumsq[c] - sum[c] * d;
      a.mean[c] = double(shift[c]) + d;
      a.m2[c] = m2 < 0.0 ? 0.0 : m2;  // rounding only; written so that NaN propagates
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
    const Shape& s = a.shape;
    const KernelTable<T>& k = active_table<T>();
    std::vector<T> c(size_t(s.c));
    for (int64_t j = 0; j < s.c; ++j) c[j] = T(a.mean[j]);
    std::vector<double> g, p;
    const size_t stride = size_t(s.c * s.s);
    reduce_blocks(
        s, useful_threads(s, a.num_threads), g, p,
        [&](int64_t c0, int64_t G, int64_t b0, int64_t nb, double* pg, double* pp) {
          const int64_t off = (b0 * s.c + c0) * s.s;
          if (G == 1) {
            k.bwd_reduce_run(a.x + off, a.dy + off, size_t(nb), size_t(s.s), stride, c[c0], pg, pp);
          } else {
            k.bwd_reduce_group(a.x + off, a.dy + off, size_t(nb), stride, size_t(G), size_t(s.s), &c[c0], pg, pp);
          }
        },
        [&](int64_t r0, int64_t nr, double* pg, double* pp) {
          k.bwd_reduce_rows(a.x + r0 * s.c, a.dy + r0 * s.c, size_t(nr), size_t(s.c), c.data(), pg, pp);
        });
    for (int64_t j = 0; j < s.c; ++j) {
      if (!std::isfinite(g[j]) || !std::isfinite(p[j])) {  // sums in T overflowed, or inf / NaN
        const ExactBackwardSums ex = exact_backward_sums(s, a.x, a.dy, j, a.mean[j]);
        a.sum_dy[j] = ex.sum_dy;
        a.sum_dy_xmu[j] = ex.sum_dy_xmu;
        continue;
      }
      // Σ dy (x - mean) = Σ dy (x - c) - (mean - c) Σ dy
      a.sum_dy[j] = g[j];
      a.sum_dy_xmu[j] = p[j] - (a.mean[j] - double(c[j])) * g[j];
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
