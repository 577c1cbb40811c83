// Exact per-channel statistics for the channels the fast reductions cannot handle. The kernels
// sum a few terms in T before widening to float64 (kernels_body.inl), so values near T's range
// (|x - k| beyond sqrt of T's max, e.g. 1.5e38..3e38 in float32) overflow there. When a channel's
// reduced sums are not finite, the driver recomputes that channel here: a scalar float64 two-pass
// reduction over the whole channel, in memory order, independent of SIMD level and thread count.
// Infinities and NaN in the data then give what IEEE arithmetic gives (e.g. -inf -> mean -inf).
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

#include "batchnorm.h"

namespace bn {

// Whether a channel's statistics must be recomputed exactly, from the float64 totals of the fast
// pass (sum and sumsq of x - k). Every partial sum in T is a sum of some of the terms (x - k)^2 >= 0,
// so sumsq above half T's largest value is what any SIMD level's partial overflow implies: the
// choice (and so the result) is the same at every level, not only where this level overflowed.
template <typename T>
bool forward_needs_exact(double sum, double sumsq) {
  return !std::isfinite(sum) || !(sumsq <= double(std::numeric_limits<T>::max()) / 2);
}

// Backward: the totals of dy and dy * (x - c), and the channel's invstd. The products' partial sums
// have no such bound, so a channel whose deviations square past T's range (std >= 2^(emax / 2),
// about 1.8e19 in float32) is recomputed at every level; elsewhere only non-finite totals (a dy
// near T's range) are, and which level overflows then may differ.
template <typename T>
bool backward_needs_exact(double sum_dy, double sum_dyxc, double invstd) {
  const double kNarrow = std::ldexp(1.0, -std::numeric_limits<T>::max_exponent / 2);
  return !std::isfinite(sum_dy) || !std::isfinite(sum_dyxc) || !(invstd > kNarrow);
}

struct ExactMoments {
  double mean = 0.0;
  double var = 0.0;             // biased: sum((x - mean)^2) / m
  double min = 0.0, max = 0.0;  // of the channel's values (NaN if any is NaN)
};

// mean = sum(x) / m, var = sum((x - mean)^2) / m over channel c of x (layout given by shape).
template <typename T>
ExactMoments exact_moments(const Shape& shape, const T* x, int64_t c);

struct ExactBackwardSums {
  double sum_dy = 0.0;          // sum(dy)
  double sum_dy_xmu = 0.0;      // sum(dy * (x - mean))
  double min = 0.0, max = 0.0;  // of x over the channel
};

// y: the forward's output through a fused ReLU (dy gated by it, as the kernels' prologue), or null.
template <typename T>
ExactBackwardSums exact_backward_sums(const Shape& shape, const T* x, const T* dy, int64_t c, double mean,
                                      const T* y = nullptr);

// The centre c (in T) the elementwise kernels subtract, (x - c) in T: the mean rounded to T,
// moved just enough that x - c cannot overflow T for any x in [min, max] (possible when the
// channel spans more than T's largest value, e.g. -3e38 and 3e38 with a mean far from 0).
template <typename T>
T safe_center(double mean, double min, double max);

}  // namespace bn
