#include "exact_stats.h"

#include <cmath>
#include <limits>

namespace bn {
namespace {

// Calls f(i) for the flat index i of every value of channel c, in memory order.
template <class F>
void for_each_in_channel(const Shape& s, int64_t c, F&& f) {
  if (s.rows_layout()) {
    for (int64_t r = 0; r < s.rows(); ++r) f(r * s.c + c);
    return;
  }
  for (int64_t b = 0; b < s.n; ++b) {
    const int64_t base = (b * s.c + c) * s.s;
    for (int64_t j = 0; j < s.s; ++j) f(base + j);
  }
}

struct Range {
  double min = std::numeric_limits<double>::infinity(), max = -std::numeric_limits<double>::infinity();
  bool nan = false;
  void add(double v) {
    if (v != v) nan = true;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  void finish(double* lo, double* hi) const {
    *lo = nan ? std::nan("") : min;
    *hi = nan ? std::nan("") : max;
  }
};

// sum(x) / m in float64. A float64 tensor of finite values can still overflow the sum (values
// near 1.8e308): then it is summed again scaled by 2^-64 (exact for all but subnormal results).
template <typename T>
double exact_mean(const Shape& s, const T* x, int64_t c, Range* range) {
  const double m = double(s.n) * double(s.s);
  double sum = 0.0;
  for_each_in_channel(s, c, [&](int64_t i) {
    sum += double(x[i]);
    range->add(double(x[i]));
  });
  if (std::isfinite(sum) || range->nan || !std::isfinite(range->min) || !std::isfinite(range->max)) return sum / m;
  constexpr double kDown = 0x1p-64, kUp = 0x1p64;
  double scaled = 0.0;
  for_each_in_channel(s, c, [&](int64_t i) { scaled += double(x[i]) * kDown; });
  return scaled / m * kUp;
}

}  // namespace

template <typename T>
ExactMoments exact_moments(const Shape& s, const T* x, int64_t c) {
  ExactMoments r;
  Range range;
  r.mean = exact_mean(s, x, c, &range);
  range.finish(&r.min, &r.max);
  double m2 = 0.0;
  for_each_in_channel(s, c, [&](int64_t i) {
    const double d = double(x[i]) - r.mean;
    m2 += d * d;
  });
  r.var = m2 / (double(s.n) * double(s.s));
  return r;
}

template <typename T>
ExactBackwardSums exact_backward_sums(const Shape& s, const T* x, const T* dy, int64_t c, double mean) {
  ExactBackwardSums r;
  Range range;
  for_each_in_channel(s, c, [&](int64_t i) {
    r.sum_dy += double(dy[i]);
    r.sum_dy_xmu += double(dy[i]) * (double(x[i]) - mean);
    range.add(double(x[i]));
  });
  range.finish(&r.min, &r.max);
  return r;
}

template <typename T>
T safe_center(double mean, double min, double max) {
  const T c = T(mean);
  // Checked in T, as the kernels compute x - c: rounding is monotone, so the extremes decide.
  if (std::isfinite(T(max) - c) && std::isfinite(T(min) - c)) return c;
  // The midpoint of [min, max] is within (max - min) / 2 <= T's max of every value.
  return T(min / 2 + max / 2);
}

template ExactMoments exact_moments<float>(const Shape&, const float*, int64_t);
template ExactMoments exact_moments<double>(const Shape&, const double*, int64_t);
template ExactBackwardSums exact_backward_sums<float>(const Shape&, const float*, const float*, int64_t, double);
template ExactBackwardSums exact_backward_sums<double>(const Shape&, const double*, const double*, int64_t, double);
template ExactMoments exact_moments<bf16>(const Shape&, const bf16*, int64_t);
template ExactMoments exact_moments<f16>(const Shape&, const f16*, int64_t);
template ExactBackwardSums exact_backward_sums<bf16>(const Shape&, const bf16*, const bf16*, int64_t, double);
template ExactBackwardSums exact_backward_sums<f16>(const Shape&, const f16*, const f16*, int64_t, double);
template float safe_center<float>(double, double, double);
template double safe_center<double>(double, double, double);

}  // namespace bn
