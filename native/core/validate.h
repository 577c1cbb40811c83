// The core's argument checks, one per op: what it cannot do is a Status, checked before anything
// is written. (The facade checks user arguments first and words the messages; these are the last
// line, for C++ callers and memory safety.)
#pragma once

#include "batchnorm.h"

namespace bn {

template <typename T> Status check_args(const ForwardTrainingArgs<T>& a);
template <typename T> Status check_args(const ForwardInferenceArgs<T>& a);
template <typename T> Status check_args(const BackwardArgs<T>& a);

}  // namespace bn
