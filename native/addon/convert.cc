// Whole-array conversions between float32 and 16-bit storage (bfloat16, float16 as raw bits in a
// Uint16Array). The facade (lib/convert.ts) validated the arguments; this re-checks what memory
// safety needs (kinds, equal lengths, no shared memory) and runs the core on the thread budget.
#include "convert.h"

#include <cstdint>
#include <string>

#include "call_object.h"
#include "convert_array.h"
#include "errors.h"
#include "jobs.h"

namespace bnaddon {
namespace {

struct RawArray {
  void* data = nullptr;
  size_t length = 0;
  size_t bytes = 0;
};

RawArray typed_array(const CallObject& call, const Napi::Object& obj, const char* key, napi_typedarray_type want,
                     const char* want_name) {
  napi_value v = nullptr;
  napi_typedarray_type t = napi_int8_array;
  RawArray a;
  // One call answers "is it a typed array" (napi_invalid_arg if not) and gives data and true length.
  if (napi_get_named_property(call.env(), obj, key, &v) != napi_ok ||
      napi_get_typedarray_info(call.env(), v, &t, &a.length, &a.data, nullptr, nullptr) != napi_ok || t != want) {
    throw_error(call.env(), ErrorKind::kType, "ERR_BN_INVALID_ARG_TYPE", call.fn() + ": " + key + " must be a " + want_name);
  }
  if (a.data == nullptr) a.length = 0;  // a detached buffer may report no data
  a.bytes = a.length * (want == napi_float32_array ? 4 : 2);
  return a;
}

class ConvertJob : public Job {
 public:
  bn::HalfFormat format = bn::HalfFormat::kBF16;
  bool to_half = true;
  const void* src = nullptr;
  void* dst = nullptr;
  size_t n = 0;
  bn::Status run(int nt) override {
    return to_half ? bn::convert_f32_to_half(format, static_cast<const float*>(src), static_cast<uint16_t*>(dst), n, nt)
                   : bn::convert_half_to_f32(format, static_cast<const uint16_t*>(src), static_cast<float*>(dst), n, nt);
  }
  int threads_wanted(int limit) const override { return bn::convert_useful_threads(n, limit); }
};

template <bn::HalfFormat Format, bool ToHalf>
Napi::Value convert(const Napi::CallbackInfo& info, const char* op) {
  const CallObject call(info, op, {"src", "out"});
  const Napi::Object obj = info[0].As<Napi::Object>();
  const napi_typedarray_type src_type = ToHalf ? napi_float32_array : napi_uint16_array;
  const napi_typedarray_type out_type = ToHalf ? napi_uint16_array : napi_float32_array;
  const RawArray src = typed_array(call, obj, "src", src_type, ToHalf ? "Float32Array" : "Uint16Array");
  const RawArray out = typed_array(call, obj, "out", out_type, ToHalf ? "Uint16Array" : "Float32Array");
  if (out.length != src.length) {
    throw_error(call.env(), ErrorKind::kRange, "ERR_BN_BAD_LENGTH",
                call.fn() + ": out must have " + std::to_string(src.length) + " elements, received " + std::to_string(out.length));
  }
  const uintptr_t s0 = reinterpret_cast<uintptr_t>(src.data), o0 = reinterpret_cast<uintptr_t>(out.data);
  if (src.bytes > 0 && out.bytes > 0 && s0 < o0 + out.bytes && o0 < s0 + src.bytes) {
    throw_error(call.env(), ErrorKind::kRange, "ERR_BN_OVERLAP", call.fn() + ": out must not share memory with src");
  }
  ConvertJob job;
  job.fn = call.fn();
  job.format = Format;
  job.to_half = ToHalf;
  job.src = src.data;
  job.dst = out.data;
  job.n = src.length;
  check_status(call.env(), run_with_budget(job), job.fn);
  return call.env().Undefined();
}

}  // namespace

Napi::Value ConvertF32ToBF16(const Napi::CallbackInfo& info) { return convert<bn::HalfFormat::kBF16, true>(info, "convertF32ToBF16"); }
Napi::Value ConvertBF16ToF32(const Napi::CallbackInfo& info) { return convert<bn::HalfFormat::kBF16, false>(info, "convertBF16ToF32"); }
Napi::Value ConvertF32ToF16(const Napi::CallbackInfo& info) { return convert<bn::HalfFormat::kF16, true>(info, "convertF32ToF16"); }
Napi::Value ConvertF16ToF32(const Napi::CallbackInfo& info) { return convert<bn::HalfFormat::kF16, false>(info, "convertF16ToF32"); }

}  // namespace bnaddon
