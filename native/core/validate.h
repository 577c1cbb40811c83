// The core's argument checks, one per op: what it cannot do is a Status, checked before anything
// is written. (The facade checks user arguments first and words the messages; these are the last
// line, for C++ callers and memory safety.) Inline: they run on every call.
#pragma once

#include <cmath>

#include "batchnorm.h"

namespace bn {

namespace validate_detail {

inline bool finite_nonneg(double v) { return std::isfinite(v) && v >= 0.0; }

inline Status check_common(const Shape& shape, const void* x, const void* y, int num_threads) {
  if (x == nullptr || y == nullptr) return Status::kNullPointer;
  if (Status st = validate_shape(shape); st != Status::kOk) return st;
  if (num_threads < 1) return Status::kBadThreads;
  return Status::kOk;
}

// The epilogue is one the core knows, with the operand it takes (kAddRelu's residual).
template <typename T>
Status check_epilogue(Epilogue e, const T* residual) {
  switch (e) {
    case Epilogue::kNone:
    case Epilogue::kRelu: return residual == nullptr ? Status::kOk : Status::kBadEpilogue;
    case Epilogue::kAddRelu: return residual == nullptr ? Status::kNullPointer : Status::kOk;
  }
  return Status::kBadEpilogue;  // a value outside the enum
}

// Backward through the forward's epilogue: the ReLU's need y; only kAddRelu has a residual_grad,
// which is written in the dx pass (so it needs dx).
template <typename T>
Status check_backward_epilogue(Epilogue e, const T* y, const T* residual_grad, const T* dx) {
  switch (e) {
    case Epilogue::kNone: return y == nullptr && residual_grad == nullptr ? Status::kOk : Status::kBadEpilogue;
    case Epilogue::kRelu:
      if (residual_grad != nullptr) return Status::kBadEpilogue;
      return y == nullptr ? Status::kNullPointer : Status::kOk;
    case Epilogue::kAddRelu:
      return y == nullptr || (residual_grad != nullptr && dx == nullptr) ? Status::kNullPointer : Status::kOk;
  }
  return Status::kBadEpilogue;  // a value outside the enum
}

}  // namespace validate_detail

template <typename T>
inline Status check_args(const ForwardTrainingArgs<T>& a) {
  if (Status st = validate_detail::check_common(a.shape, a.x, a.y, a.num_threads); st != Status::kOk) return st;
  if ((a.running_mean == nullptr) != (a.running_var == nullptr)) return Status::kMismatchedStats;
  if (!validate_detail::finite_nonneg(a.eps)) return Status::kBadEps;
  if (a.running_mean && !(a.momentum_factor >= 0.0 && a.momentum_factor <= 1.0)) return Status::kBadMomentum;
  if (a.shape.n * a.shape.s < 2) return Status::kTooFewValues;
  return validate_detail::check_epilogue(a.epilogue, a.residual);
}

template <typename T>
inline Status check_args(const ForwardInferenceArgs<T>& a) {
  if (Status st = validate_detail::check_common(a.shape, a.x, a.y, a.num_threads); st != Status::kOk) return st;
  if (a.mean == nullptr || a.var == nullptr) return Status::kNullPointer;
  if (!validate_detail::finite_nonneg(a.eps)) return Status::kBadEps;
  return validate_detail::check_epilogue(a.epilogue, a.residual);
}

// Evaluation mode may give running_var and eps instead of invstd.
template <typename T>
inline bool invstd_from_var(const BackwardArgs<T>& a) {
  return !a.use_batch_stats && a.running_var != nullptr;
}

template <typename T>
inline Status check_args(const BackwardArgs<T>& a) {
  if (Status st = validate_detail::check_common(a.shape, a.x, a.dy, a.num_threads); st != Status::kOk) return st;
  const bool from_var = invstd_from_var(a);
  if (a.mean == nullptr || (a.invstd == nullptr && !from_var)) return Status::kNullPointer;
  if (from_var && !validate_detail::finite_nonneg(a.eps)) return Status::kBadEps;
  return validate_detail::check_backward_epilogue(a.epilogue, a.y, a.residual_grad, a.dx);
}

}  // namespace bn
