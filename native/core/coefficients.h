// Per-channel maths shared by the ops: the shifts of the statistics, and the formulas that turn a
// channel's sums into the coefficients of the elementwise pass (docs/batchnorm.md has the
// derivations). Internal to the core; no threads, no kernels.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "batchnorm.h"
#include "invstd.h"
#include "kernels.h"
#include "schedule.h"

namespace bn {

// Elementwise coefficients per channel: y = (x - c) * a + b, in the compute type.
template <typename T>
struct Affine {
  using C = compute_t<T>;
  std::vector<C> c, a, b;
  explicit Affine(int64_t ch) : c(size_t(ch)), a(size_t(ch)), b(size_t(ch)) {}
  // mean and scale in float64; c is mean rounded to C (exact subtraction near the mean), or the
  // centre ct when that could overflow (safe_center), its remainder goes into b. a and b saturate
  // in T (invstd.h).
  void set(int64_t j, double mean, double scale, double shift) { set(j, mean, scale, shift, C(mean)); }
  void set(int64_t j, double mean, double scale, double shift, C ct) {
    c[j] = ct;
    a[j] = saturate_to<C>(scale);
    b[j] = saturate_to<C>(shift - (mean - double(ct)) * scale);
  }
};

// The shift k of channel c for its statistics: the mean of the channel's first (up to) 64 values.
// Any k works for the maths, but the rounding of x - k grows with |mean - k| / std; a single first
// value can be an outlier, an average of 64 rarely is by much. NCHW layout.
template <typename T>
compute_t<T> channel_shift(const Shape& s, const T* x, int64_t c) {
  // Four independent sums: one chain of 64 dependent additions cost more than the rest of a 7x7
  // channel's statistics.
  double part[4] = {0.0, 0.0, 0.0, 0.0};
  int64_t count = 0;
  for (int64_t b = 0; b < s.n && count < 64; ++b) {
    const T* p = x + (b * s.c + c) * s.s;
    const int64_t m = std::min<int64_t>(s.s, 64 - count);
    int64_t j = 0;
    for (; j + 4 <= m; j += 4) {
      for (int u = 0; u < 4; ++u) part[u] += double(p[j + u]);
    }
    for (; j < m; ++j) part[j & 3] += double(p[j]);
    count += m;
  }
  const double acc = (part[0] + part[1]) + (part[2] + part[3]);
  return compute_t<T>(acc / double(count));
}

// Channel-fastest layouts: every shift from the first (up to) 16 rows, read in memory order. 16,
// not 64: this is a serial read before the parallel passes, and a mean of 16 is within ~std/4 of
// the channel's mean, which is all the shift needs to keep E[x^2] - E[x]^2 from cancelling.
template <typename T>
void rows_shifts(const Shape& s, const T* x, compute_t<T>* shift) {
  const int64_t count = std::min<int64_t>(16, s.rows());
  std::vector<double> acc(size_t(s.c), 0.0);
  for (int64_t r = 0; r < count; ++r) {
    const T* p = x + r * s.c;
    for (int64_t c = 0; c < s.c; ++c) acc[c] += double(p[c]);
  }
  for (int64_t c = 0; c < s.c; ++c) shift[c] = compute_t<T>(acc[c] / double(count));
}

// Mean and biased variance of channel c from its per-chunk sums of x - shift over m values, and
// the totals (whether they overflowed decides the exact path, exact_stats.h).
struct ChannelMoments {
  double mean, var, sum, sumsq;
};
inline ChannelMoments channel_moments(const PartialSums& ps, int64_t c, double shift, double m) {
  double sm, sq;
  ps.fold(c, &sm, &sq);
  const double d = sm / m;
  double var = sq / m - d * d;  // biased
  if (var < 0.0) var = 0.0;     // rounding only; written so that NaN (NaN or Inf in x) propagates
  return {shift + d, var, sm, sq};
}

// running = (1 - f) * running + f * batch, with the unbiased variance (m / (m - 1)).
template <typename T>
void update_running(T* running_mean, T* running_var, int64_t c, double f, double mean, double var, double m) {
  const double unbiased = var * m / (m - 1.0);
  running_mean[c] = T((1.0 - f) * double(running_mean[c]) + f * mean);
  running_var[c] = T((1.0 - f) * double(running_var[c]) + f * unbiased);
}

// Backward coefficients of channel c: dx = dy * k1 + (x - c) * k2 + k3.
template <typename T>
struct DxCoefs {
  using C = compute_t<T>;
  std::vector<C> c, k1, k2, k3;
  explicit DxCoefs(int64_t ch) : c(size_t(ch)), k1(size_t(ch)), k2(size_t(ch)), k3(size_t(ch)) {}
};

// Channel ch's dx coefficients from dbias = Σ dy, dweight = Σ dy * (x - mean) * invstd and
// lo = mean - c. Training mode (batch statistics):
// dx = w * invstd / m * (m * dy - dbias - xhat * dweight), xhat = ((x - c) - lo) * invstd;
// evaluation mode: dx = dy * k1, and the dx pass uses k3 = 0 as its zeros.
struct DxChannel {
  double k1, k2, k3;
};
inline DxChannel dx_coefficients(double dbias, double dweight, double lo, double invstd, double w,
                                 bool use_batch_stats, double m) {
  DxChannel r{w * invstd, 0.0, 0.0};
  if (use_batch_stats) {
    r.k2 = -r.k1 * (invstd * (dweight / m));  // this order: a capped invstd squared would overflow
    r.k3 = -w * invstd * dbias / m - r.k2 * lo;
  }
  return r;
}

}  // namespace bn
