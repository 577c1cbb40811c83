// The one home of invstd = 1 / sqrt(var + eps) and of how a per-channel coefficient computed in
// float64 is stored in the tensor's type T. Training statistics, inference and evaluation-mode
// backward all call these, so the three agree on every edge case.
#pragma once

#include <cmath>
#include <limits>

namespace bn {

// A finite float64 value beyond T's range becomes T's largest finite value of its sign (instead
// of an infinity that would turn 0 * coefficient into NaN); NaN and infinities stay as they are.
template <typename T>
T saturate_to(double v) {
  constexpr double kMax = double(std::numeric_limits<T>::max());
  if (v > kMax && v <= std::numeric_limits<double>::max()) return std::numeric_limits<T>::max();
  if (v < -kMax && v >= -std::numeric_limits<double>::max()) return -std::numeric_limits<T>::max();
  return T(v);
}

// invstd of a channel whose (biased) variance is var, in float64:
// - var + eps == 0 (eps = 0 on a constant channel): 0, PyTorch's rule (y = bias, finite gradients);
// - otherwise 1 / sqrt(var + eps), capped at T's largest finite value (eps = 5e-324 on a constant
//   channel: huge, not infinite, so 0 * invstd stays 0);
// - var = inf: 0; var NaN or negative: NaN (IEEE).
template <typename T>
double invstd_of(double var, double eps) {
  const double d = var + eps;
  if (d == 0.0) return 0.0;
  const double r = 1.0 / std::sqrt(d);
  constexpr double kMax = double(std::numeric_limits<T>::max());
  return r > kMax ? kMax : r;  // NaN compares false: stays NaN
}

}  // namespace bn
