// Reading the named call object of an op (lib/binding.ts): each field read once, by name; a field
// the op does not know is an error, so the facade and the addon cannot drift apart silently.
// Checks only what memory safety needs (kinds, dtypes, lengths); messages name the user's function
// (the call's `fn`) and the user's argument.
#pragma once

#include <napi.h>

#include <cstdint>
#include <initializer_list>
#include <string>

#include "batchnorm.h"

namespace bnaddon {

// Every storage dtype an array of a call can have; switches over it are exhaustive.
// kBF16 / kF16: raw 16-bit values in a Uint16Array, which does not say its format: the call's
// `dtype` key ('bfloat16' | 'float16') does.
enum class DType { kF32, kF64, kBF16, kF16 };

const char* dtype_array_name(DType d);  // "Float32Array" / "Float64Array" / "Uint16Array (bfloat16)" ...
size_t dtype_bytes(DType d);
// The dtype of the per-channel parameters and statistics of a call on storage dtype d (float32
// for the 16-bit types: bn::param_t).
DType param_dtype(DType d);

// A Float32Array or Float64Array field, or an absent one (null, when optional).
struct ArrayArg {
  const char* name = "";
  bool present = false;
  DType dtype = DType::kF32;
  void* data = nullptr;
  size_t length = 0;  // elements (0 when detached)
  Napi::Value value;  // the JS typed array (kept alive by async jobs)

  template <typename T>
  T* ptr() const { return present ? static_cast<T*>(data) : nullptr; }
};

class CallObject {
 public:
  // info[0]: the call object of `op`. On the first call of `op` in this environment its own keys
  // must all be among `known` (a key the addon does not know means the facade and the addon
  // disagree; the facade builds each op's object in one place, so one check per process tells).
  CallObject(const Napi::CallbackInfo& info, const char* op, std::initializer_list<const char*> known);

  Napi::Env env() const { return env_; }
  const std::string& fn() const { return fn_; }
  // Any float typed array (its dtype decides the call's), or a Uint16Array when the call has a
  // 16-bit dtype.
  ArrayArg array(const char* key, bool optional) const;
  // The call's `dtype` key: bfloat16 or float16 storage (false when absent: float arrays only).
  bool half(DType* d) const {
    if (has_half_) *d = half_;
    return has_half_;
  }
  // A float typed array of dtype `d` and exactly `length` elements.
  ArrayArg array_of(const char* key, DType d, size_t length, bool optional) const;
  // `a` (read by array()) checked as array_of checks.
  const ArrayArg& check(const ArrayArg& a, DType d, size_t length) const;
  double number(const char* key) const;
  bool boolean(const char* key) const;
  // n, c, s and channelsLast.
  bn::Shape shape() const;

 private:
  int64_t dim(const char* key) const;
  std::string where(const char* key) const { return fn_ + ": " + key; }
  Napi::Value get(const char* key) const;
  void check_keys(std::initializer_list<const char*> known) const;
  Napi::Env env_;
  Napi::Object obj_;
  std::string fn_;
  bool has_half_ = false;
  DType half_ = DType::kBF16;
};

}  // namespace bnaddon
