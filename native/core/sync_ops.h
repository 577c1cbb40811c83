// The per-rank pieces of synchronized batch normalization (lib/sync/): the local statistics as
// (count, mean, M2) in float64, the normalize pass with given float64 statistics, backward's local
// sums, and backward's dx from the global sums. The exchange and the merge of the ranks' values
// happen between these calls, outside the core (lib/sync/merge.ts).
//
// The reductions are the core's (blocks.h chunks, the planner's kernel choice, schedule.h's fold in
// chunk order): a rank's statistics are the bits the local BatchNorm computes on its slice, for any
// thread count.
#pragma once

#include <cstddef>
#include <cstdint>

#include "batchnorm.h"

namespace bn {

// mean[c] = Σ x / m and var[c] = Σ (x - mean)² / m (biased) over the m = N * S values of channel
// c, the core's forward_training statistics bit for bit (exact_stats.h where fast sums overflow T).
// n = 0: zeros.
template <typename T>
struct SyncMomentsArgs {
  Shape shape;
  const T* x = nullptr;
  double* mean = nullptr;  // [C]
  double* var = nullptr;   // [C]
  int num_threads = 1;
};

// y = (x - mean) * invstd * weight + bias with the global mean and biased variance (float64);
// invstd = invstd_of<T>(var, eps) (invstd.h, the core's one rule) is written out for backward.
template <typename T>
struct SyncNormalizeArgs {
  Shape shape;
  const T* x = nullptr;
  T* y = nullptr;  // may equal x
  const T* weight = nullptr;  // null: 1
  const T* bias = nullptr;    // null: 0
  const double* mean = nullptr;
  const double* var = nullptr;
  double eps = 1e-5;
  double* invstd = nullptr;  // output [C]
  int num_threads = 1;
};

// sum_dy[c] = Σ dy, sum_dy_xmu[c] = Σ dy * (x - mean) over this rank's values.
template <typename T>
struct SyncBackwardReduceArgs {
  Shape shape;
  const T* x = nullptr;
  const T* dy = nullptr;
  const double* mean = nullptr;
  double* sum_dy = nullptr;
  double* sum_dy_xmu = nullptr;
  int num_threads = 1;
};

// dx = w * invstd * (dy - sum_dy / count - (x - mean) * invstd² * sum_dy_xmu / count), with the
// sums and count over every rank's batch.
template <typename T>
struct SyncBackwardDxArgs {
  Shape shape;
  const T* x = nullptr;
  const T* dy = nullptr;
  T* dx = nullptr;  // may equal dy
  const T* weight = nullptr;
  const double* mean = nullptr;
  const double* invstd = nullptr;
  const double* sum_dy = nullptr;
  const double* sum_dy_xmu = nullptr;
  double count = 0;  // global number of values per channel
  int num_threads = 1;
};

template <typename T> Status sync_moments(const SyncMomentsArgs<T>& args);
template <typename T> Status sync_normalize(const SyncNormalizeArgs<T>& args);
template <typename T> Status sync_backward_reduce(const SyncBackwardReduceArgs<T>& args);
template <typename T> Status sync_backward_dx(const SyncBackwardDxArgs<T>& args);

extern template Status sync_moments<float>(const SyncMomentsArgs<float>&);
extern template Status sync_moments<double>(const SyncMomentsArgs<double>&);
extern template Status sync_normalize<float>(const SyncNormalizeArgs<float>&);
extern template Status sync_normalize<double>(const SyncNormalizeArgs<double>&);
extern template Status sync_backward_reduce<float>(const SyncBackwardReduceArgs<float>&);
extern template Status sync_backward_reduce<double>(const SyncBackwardReduceArgs<double>&);
extern template Status sync_backward_dx<float>(const SyncBackwardDxArgs<float>&);
extern template Status sync_backward_dx<double>(const SyncBackwardDxArgs<double>&);

}  // namespace bn
