#include "args.h"

#include <cmath>

#include "errors.h"

namespace bnaddon {
namespace {

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
    case napi_object:
      if (v.IsTypedArray()) {
        switch (v.As<Napi::TypedArray>().TypedArrayType()) {
          case napi_int8_array: return "an Int8Array";
          case napi_uint8_array: return "a Uint8Array";
          case napi_uint8_clamped_array: return "a Uint8ClampedArray";
          case napi_int16_array: return "an Int16Array";
          case napi_uint16_array: return "a Uint16Array";
          case napi_int32_array: return "an Int32Array";
          case napi_uint32_array: return "a Uint32Array";
          case napi_float32_array: return "a Float32Array";
          case napi_float64_array: return "a Float64Array";
          case napi_bigint64_array: return "a BigInt64Array";
          case napi_biguint64_array: return "a BigUint64Array";
          default: return "a typed array";
        }
      }
      if (v.IsArray()) return "an Array";
      if (v.IsArrayBuffer()) return "an ArrayBuffer";
      return "an object";
  }
  return "a value";
}

constexpr double kMaxSafe = 9007199254740991.0;  // 2^53 - 1

}  // namespace

const char* dtype_array_name(DType d) { return d == DType::kF32 ? "Float32Array" : "Float64Array"; }

std::string Args::where(const char* name) const { return std::string(fn_) + ": " + name; }

ArrayArg Args::array(size_t i, const char* name, bool optional) const {
  ArrayArg a;
  const Napi::Value v = info_[i];
  a.value = v;
  if (v.IsNull() || v.IsUndefined()) {
    if (optional) return a;
    throw_type_error(env(), "ERR_BN_INVALID_ARG_TYPE",
                     where(name) + " must be a Float32Array or Float64Array, received " + describe(v));
  }
  if (!v.IsTypedArray()) {
    throw_type_error(env(), "ERR_BN_INVALID_ARG_TYPE",
                     where(name) + " must be a Float32Array or Float64Array, received " + describe(v));
  }
  napi_typedarray_type t;
  size_t length = 0;
  void* data = nullptr;
  // napi_get_typedarray_info gives the first element's address for ArrayBuffer- and
  // SharedArrayBuffer-backed views alike (ArrayBuffer().Data() would fail on the latter).
  if (napi_get_typedarray_info(env(), v, &t, &length, &data, nullptr, nullptr) != napi_ok) {
    throw_type_error(env(), "ERR_BN_INVALID_ARG_TYPE", where(name) + " could not be read as a typed array");
  }
  if (t != napi_float32_array && t != napi_float64_array) {
    throw_type_error(env(), "ERR_BN_INVALID_ARG_TYPE",
                     where(name) + " must be a Float32Array or Float64Array, received " + describe(v));
  }
  a.present = true;
  a.dtype = t == napi_float32_array ? DType::kF32 : DType::kF64;
  // A detached buffer reports length 0 (and may report no data): it fails every length check.
  a.length = data ? length : 0;
  a.data = data;
  return a;
}

ArrayArg Args::array_of(size_t i, const char* name, DType d, size_t min_len, bool optional,
                        const char* why) const {
  ArrayArg a = array(i, name, optional);
  if (!a.present) return a;
  if (a.dtype != d) {
    throw_type_error(env(), "ERR_BN_DTYPE_MISMATCH",
                     where(name) + " must be a " + dtype_array_name(d) + " (" + why + "), received " +
                         describe(a.value));
  }
  if (a.length < min_len) {
    throw_range_error(env(), "ERR_BN_BAD_LENGTH",
                      where(name) + " must have at least " + std::to_string(min_len) +
                          " elements, received " + std::to_string(a.length) +
                          (a.length == 0 ? " (empty or detached)" : ""));
  }
  return a;
}

int64_t Args::dim(size_t i, const char* name) const {
  const Napi::Value v = info_[i];
  if (!v.IsNumber()) {
    throw_type_error(env(), "ERR_BN_INVALID_ARG_TYPE", where(name) + " must be an integer >= 1, received " + describe(v));
  }
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 1.0 && d <= kMaxSafe && std::floor(d) == d)) {
    throw_range_error(env(), "ERR_BN_BAD_SHAPE", where(name) + " must be an integer >= 1, received " + describe(v));
  }
  return int64_t(d);
}

double Args::number(size_t i, const char* name) const {
  const Napi::Value v = info_[i];
  if (!v.IsNumber()) {
    throw_type_error(env(), "ERR_BN_INVALID_ARG_TYPE", where(name) + " must be a number, received " + describe(v));
  }
  return v.As<Napi::Number>().DoubleValue();
}

bool Args::boolean(size_t i, const char* name) const {
  const Napi::Value v = info_[i];
  if (!v.IsBoolean()) {
    throw_type_error(env(), "ERR_BN_INVALID_ARG_TYPE", where(name) + " must be a boolean, received " + describe(v));
  }
  return v.As<Napi::Boolean>().Value();
}

bool Args::optional_boolean(size_t i, const char* name, bool fallback) const {
  if (info_[i].IsUndefined()) return fallback;
  return boolean(i, name);
}

bn::Shape Args::shape(size_t i) const {
  bn::Shape s;
  s.n = dim(i, "n");
  s.c = dim(i + 1, "c");
  s.s = dim(i + 2, "s");
  if (bn::validate_shape(s) != bn::Status::kOk) {
    throw_range_error(env(), "ERR_BN_BAD_SHAPE",
                      std::string(fn_) + ": n * c * s is too large (" + std::to_string(s.n) + " * " +
                          std::to_string(s.c) + " * " + std::to_string(s.s) + ")");
  }
  return s;
}

size_t shape_elems(Napi::Env, const bn::Shape& s, const char*) {
  return size_t(s.n) * size_t(s.c) * size_t(s.s);  // validate_shape already bounded it
}

}  // namespace bnaddon
