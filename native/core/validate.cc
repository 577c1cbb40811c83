// Argument checks of the ops (validate.h) and of shapes (batchnorm.h).
#include "validate.h"

#include <cmath>
#include <limits>

#include "plan.h"

namespace bn {
namespace {

bool finite_nonneg(double v) { return std::isfinite(v) && v >= 0.0; }

Status check_common(const Shape& shape, const void* x, const void* y, int num_threads) {
  if (x == nullptr || y == nullptr) return Status::kNullPointer;
  if (Status st = validate_shape(shape); st != Status::kOk) return st;
  if (num_threads < 1) return Status::kBadThreads;
  return Status::kOk;
}

// The epilogue is one the core knows, with the operand it takes (none takes a residual yet).
template <typename T>
Status check_epilogue(Epilogue e, const T* residual) {
  switch (e) {
    case Epilogue::kNone: return residual == nullptr ? Status::kOk : Status::kBadEpilogue;
  }
  return Status::kBadEpilogue;  // a value outside the enum
}

}  // namespace

Status validate_shape(const Shape& s) {
  if (s.n < 1 || s.c < 1 || s.s < 1) return Status::kBadShape;
  // Product must fit in int64 and in the address space (as bytes of float64).
  const int64_t lim = std::numeric_limits<int64_t>::max() / 8;
  if (s.n > lim / s.c) return Status::kBadShape;
  if (s.n * s.c > lim / s.s) return Status::kBadShape;
  return Status::kOk;
}

int useful_threads(const Shape& shape, int requested) { return threads_for(shape, requested); }

template <typename T>
Status check_args(const ForwardTrainingArgs<T>& a) {
  if (Status st = check_common(a.shape, a.x, a.y, a.num_threads); st != Status::kOk) return st;
  if ((a.running_mean == nullptr) != (a.running_var == nullptr)) return Status::kMismatchedStats;
  if (!finite_nonneg(a.eps)) return Status::kBadEps;
  if (a.running_mean && !(a.momentum_factor >= 0.0 && a.momentum_factor <= 1.0)) return Status::kBadMomentum;
  if (a.shape.n * a.shape.s < 2) return Status::kTooFewValues;
  return check_epilogue(a.epilogue, a.residual);
}

template <typename T>
Status check_args(const ForwardInferenceArgs<T>& a) {
  if (Status st = check_common(a.shape, a.x, a.y, a.num_threads); st != Status::kOk) return st;
  if (a.mean == nullptr || a.var == nullptr) return Status::kNullPointer;
  if (!finite_nonneg(a.eps)) return Status::kBadEps;
  return check_epilogue(a.epilogue, a.residual);
}

template <typename T>
Status check_args(const BackwardArgs<T>& a) {
  if (Status st = check_common(a.shape, a.x, a.dy, a.num_threads); st != Status::kOk) return st;
  if (a.mean == nullptr || a.invstd == nullptr) return Status::kNullPointer;
  return Status::kOk;
}

template Status check_args<float>(const ForwardTrainingArgs<float>&);
template Status check_args<double>(const ForwardTrainingArgs<double>&);
template Status check_args<float>(const ForwardInferenceArgs<float>&);
template Status check_args<double>(const ForwardInferenceArgs<double>&);
template Status check_args<float>(const BackwardArgs<float>&);
template Status check_args<double>(const BackwardArgs<double>&);

}  // namespace bn
