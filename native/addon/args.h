// Reading and checking the arguments of a binding call. Everything here throws a JS TypeError or
// RangeError (with .code) on bad input; nothing reaches the core unchecked.
#pragma once

#include <napi.h>

#include <cstdint>
#include <string>

#include "batchnorm.h"

namespace bnaddon {

enum class DType { kF32, kF64 };

const char* dtype_array_name(DType d);  // "Float32Array" / "Float64Array"

// A Float32Array or Float64Array argument, or an absent one (null / undefined, when optional).
struct ArrayArg {
  bool present = false;
  DType dtype = DType::kF32;
  void* data = nullptr;
  size_t length = 0;  // elements
  Napi::Value value;  // the JS object (kept alive by async jobs)

  template <typename T>
  T* ptr() const { return present ? static_cast<T*>(data) : nullptr; }
};

class Args {
 public:
  explicit Args(const Napi::CallbackInfo& info, const char* fn) : info_(info), fn_(fn) {}

  Napi::Env env() const { return info_.Env(); }
  // info[i] as a typed array; `optional` allows null/undefined.
  ArrayArg array(size_t i, const char* name, bool optional) const;
  // The same, and it must have dtype `d` (`why`: "the dtype of x", "float64 statistics") and at
  // least `min_len` elements.
  ArrayArg array_of(size_t i, const char* name, DType d, size_t min_len, bool optional,
                    const char* why = "the dtype of x") const;
  // A dimension: an integer in [1, 2^53 - 1].
  int64_t dim(size_t i, const char* name) const;
  double number(size_t i, const char* name) const;
  bool boolean(size_t i, const char* name) const;
  // undefined -> fallback; otherwise must be a boolean.
  bool optional_boolean(size_t i, const char* name, bool fallback) const;
  // n, c, s at info[i], info[i+1], info[i+2].
  bn::Shape shape(size_t i) const;

 private:
  std::string where(const char* name) const;
  const Napi::CallbackInfo& info_;
  const char* fn_;
};

// Number of elements of a shape, checked (throws RangeError if it overflows).
size_t shape_elems(Napi::Env env, const bn::Shape& s, const char* fn);

}  // namespace bnaddon
