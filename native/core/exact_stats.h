// Exact per-channel statistics for the channels the fast reductions cannot handle. The kernels
// sum a few terms in T before widening to float64 (kernels_body.inl), so values near T's range
// (|x - k| beyond sqrt of T's max, e.g. 1.5e38..3e38 in float32) overflow there. When a channel's
// reduced sums are not finite, the driver recomputes that channel here: a scalar float64 two-pass
// reduction over the whole channel, in memory order, independent of SIMD level and thread count.
// Infinities and NaN in the data then give what IEEE arithmetic gives (e.g. -inf -> mean -inf).
#pragma once

#include <cstdint>

#include "batchnorm.h"

namespace bn {

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

template <typename T>
ExactBackwardSums exact_backward_sums(const Shape& shape, const T* x, const T* dy, int64_t c, double mean);

// The centre c (in T) the elementwise kernels subtract, (x - c) in T: the mean rounded to T,
// moved just enough that x - c cannot overflow T for any x in [min, max] (possible when the
// channel spans more than T's largest value, e.g. -3e38 and 3e38 with a mean far from 0).
template <typename T>
T safe_center(double mean, double min, double max);

}  // namespace bn
