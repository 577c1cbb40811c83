#include "call_object.h"

#include <cmath>
#include <cstring>

#include "env_state.h"
#include "errors.h"

namespace bnaddon {
namespace {

constexpr double kMaxSafe = 9007199254740991.0;  // 2^53 - 1

std::string describe(const Napi::Value& v) {
  switch (v.Type()) {
    case napi_undefined: return "undefined";
    case napi_null: return "null";
    case napi_boolean: return "a boolean";
    case napi_number: return "the number " + v.ToString().Utf8Value();
    case napi_string: return "a string";
    case napi_symbol: return "a symbol";
    case napi_bigint: return "a bigint";
    case napi_function: return "a function";
    case napi_external: return "an external";
    case napi_object: break;
  }
  if (v.IsTypedArray()) {
    switch (v.As<Napi::TypedArray>().TypedArrayType()) {
      case napi_float32_array: return "a Float32Array";
      case napi_float64_array: return "a Float64Array";
      case napi_uint16_array: return "a Uint16Array";
      default: return "a typed array of another kind";
    }
  }
  return v.IsArray() ? "an Array" : "an object";
}

}  // namespace

const char* dtype_array_name(DType d) {
  switch (d) {
    case DType::kF32: return "Float32Array";
    case DType::kF64: return "Float64Array";
    case DType::kBF16: return "Uint16Array (bfloat16)";
    case DType::kF16: return "Uint16Array (float16)";
  }
  return "?";
}

size_t dtype_bytes(DType d) {
  switch (d) {
    case DType::kF32: return 4;
    case DType::kF64: return 8;
    case DType::kBF16: return 2;
    case DType::kF16: return 2;
  }
  return 0;
}

DType param_dtype(DType d) {
  switch (d) {
    case DType::kF32: return DType::kF32;
    case DType::kF64: return DType::kF64;
    case DType::kBF16: return DType::kF32;
    case DType::kF16: return DType::kF32;
  }
  return d;
}

CallObject::CallObject(const Napi::CallbackInfo& info, const char* op, std::initializer_list<const char*> known)
    : env_(info.Env()) {
  if (!info[0].IsObject()) {
    throw_error(env_, ErrorKind::kType, "ERR_BN_INVALID_ARG_TYPE", "the native call expects one options object, received " + describe(info[0]));
  }
  obj_ = info[0].As<Napi::Object>();
  const Napi::Value fn = get("fn");
  if (!fn.IsString()) {
    throw_error(env_, ErrorKind::kType, "ERR_BN_INVALID_ARG_TYPE", "the native call's fn must be a string, received " + describe(fn));
  }
  fn_ = fn.As<Napi::String>().Utf8Value();
  EnvState* st = env_state(env_);
  if (st == nullptr || st->checked_ops.find(std::string_view(op)) == st->checked_ops.end()) {
    check_keys(known);
    if (st != nullptr) st->checked_ops.emplace(op, true);
  }
  const Napi::Value dt = get("dtype");
  if (!dt.IsUndefined()) {
    const std::string name = dt.IsString() ? dt.As<Napi::String>().Utf8Value() : "";
    if (name != "bfloat16" && name != "float16") {
      throw_error(env_, ErrorKind::kType, "ERR_BN_INVALID_ARG_TYPE",
                  fn_ + ": the native call's dtype must be 'bfloat16' or 'float16' (or absent), received " + describe(dt));
    }
    has_half_ = true;
    half_ = name == "bfloat16" ? DType::kBF16 : DType::kF16;
  }
}

Napi::Value CallObject::get(const char* key) const {
  napi_value v = nullptr;
  if (napi_get_named_property(env_, obj_, key, &v) != napi_ok) {
    throw_error(env_, ErrorKind::kType, "ERR_BN_INVALID_ARG_TYPE", fn_ + ": the native call's " + key + " could not be read");
  }
  return Napi::Value(env_, v);
}

void CallObject::check_keys(std::initializer_list<const char*> known) const {
  napi_value keys = nullptr;
  if (napi_get_all_property_names(env_, obj_, napi_key_own_only, napi_key_skip_symbols, napi_key_numbers_to_strings,
                                  &keys) != napi_ok) {
    throw_error(env_, ErrorKind::kType, "ERR_BN_INVALID_ARG_TYPE", fn_ + ": the native call's keys could not be read");
  }
  const Napi::Array names(env_, keys);
  for (uint32_t i = 0; i < names.Length(); ++i) {
    const std::string key = names.Get(i).ToString().Utf8Value();
    bool ok = key == "fn";
    for (const char* k : known) ok = ok || key == k;
    if (!ok) {
      throw_error(env_, ErrorKind::kType, "ERR_BN_UNKNOWN_OPTION",
                  fn_ + ": the native call has an unknown field '" + key + "' (the addon and the facade disagree)");
    }
  }
}

ArrayArg CallObject::array(const char* key, bool optional) const {
  ArrayArg a;
  a.name = key;
  const Napi::Value v = get(key);
  a.value = v;
  napi_typedarray_type t = napi_int8_array;
  size_t length = 0;
  void* data = nullptr;
  // One call answers "is it a typed array" (napi_invalid_arg if not) and gives the first element's
  // address for ArrayBuffer- and SharedArrayBuffer-backed views alike, and the true length.
  const bool typed = napi_get_typedarray_info(env_, v, &t, &length, &data, nullptr, nullptr) == napi_ok;
  if (typed && (t == napi_float32_array || t == napi_float64_array)) {
    a.present = true;
    a.dtype = t == napi_float32_array ? DType::kF32 : DType::kF64;
    a.length = data ? length : 0;  // a detached buffer may report no data
    a.data = data;
    return a;
  }
  if (typed && has_half_ && t == napi_uint16_array) {
    a.present = true;
    a.dtype = half_;
    a.length = data ? length : 0;
    a.data = data;
    return a;
  }
  if (optional && (v.IsNull() || v.IsUndefined())) return a;
  throw_error(env_, ErrorKind::kType, "ERR_BN_INVALID_ARG_TYPE",
              where(key) + " must be a Float32Array or Float64Array (or a Uint16Array with the call's dtype), received " +
                  describe(v));
}

ArrayArg CallObject::array_of(const char* key, DType d, size_t length, bool optional) const {
  ArrayArg a = array(key, optional);
  if (a.present) check(a, d, length);
  return a;
}

const ArrayArg& CallObject::check(const ArrayArg& a, DType d, size_t length) const {
  const char* key = a.name;
  if (a.dtype != d) {
    throw_error(env_, ErrorKind::kType, "ERR_BN_DTYPE_MISMATCH",
                where(key) + " must be a " + dtype_array_name(d) + ", received " + describe(a.value));
  }
  if (a.length != length) {
    throw_error(env_, ErrorKind::kRange, "ERR_BN_BAD_LENGTH",
                where(key) + " must have " + std::to_string(length) + " elements, received " + std::to_string(a.length) +
                    (a.length == 0 ? " (its buffer is detached, shrunk or empty)" : ""));
  }
  return a;
}

int64_t CallObject::dim(const char* key) const {
  const Napi::Value v = get(key);
  double d = 0.0;
  if (napi_get_value_double(env_, v, &d) != napi_ok) d = 0.0;
  if (!(d >= 1.0 && d <= kMaxSafe && std::floor(d) == d)) {
    throw_error(env_, ErrorKind::kRange, "ERR_BN_BAD_SHAPE", where(key) + " must be an integer >= 1, received " + describe(v));
  }
  return int64_t(d);
}

double CallObject::number(const char* key) const {
  const Napi::Value v = get(key);
  double d = 0.0;
  if (napi_get_value_double(env_, v, &d) != napi_ok) {
    throw_error(env_, ErrorKind::kType, "ERR_BN_INVALID_ARG_TYPE", where(key) + " must be a number, received " + describe(v));
  }
  return d;
}

bool CallObject::boolean(const char* key) const {
  const Napi::Value v = get(key);
  bool b = false;
  if (napi_get_value_bool(env_, v, &b) != napi_ok) {
    throw_error(env_, ErrorKind::kType, "ERR_BN_INVALID_ARG_TYPE", where(key) + " must be a boolean, received " + describe(v));
  }
  return b;
}

bn::Shape CallObject::shape() const {
  bn::Shape s;
  s.n = dim("n");
  s.c = dim("c");
  s.s = dim("s");
  s.channels_last = boolean("channelsLast");
  if (bn::validate_shape(s) != bn::Status::kOk) {
    throw_error(env_, ErrorKind::kRange, "ERR_BN_BAD_SHAPE",
                fn_ + ": n * c * s is too large (" + std::to_string(s.n) + " * " + std::to_string(s.c) + " * " +
                    std::to_string(s.s) + ")");
  }
  return s;
}

}  // namespace bnaddon
