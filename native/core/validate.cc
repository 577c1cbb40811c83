// Checks of shapes (batchnorm.h); the ops' argument checks are inline in validate.h.
#include "validate.h"

#include <limits>

#include "plan.h"

namespace bn {

Status validate_shape(const Shape& s) {
  if (s.n < 1 || s.c < 1 || s.s < 1) return Status::kBadShape;
  // Product must fit in int64 and in the address space (as bytes of float64).
  const int64_t lim = std::numeric_limits<int64_t>::max() / 8;
  if (s.n > lim / s.c) return Status::kBadShape;
  if (s.n * s.c > lim / s.s) return Status::kBadShape;
  return Status::kOk;
}

int useful_threads(const Shape& shape, int requested) { return threads_for(shape, requested); }

}  // namespace bn
