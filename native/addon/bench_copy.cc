// benchCopy: the copy kernels of bench_copy_kernels.h, callable from JavaScript so the benchmark
// measures this machine's copy bandwidth in the same process, on the same number of bytes, right
// before the batch-norm kernels it compares with it. Synchronous, outside the thread budget (the
// benchmark sets the thread count explicitly).
#include "bench_copy.h"

#include <cstdint>
#include <string>

#include "bench_copy_kernels.h"
#include "errors.h"

namespace bnaddon {
namespace {

const bnbench::CopyIsa kIsa = bnbench::best_copy_isa();

Napi::Float32Array float32_arg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Value v = info[i];
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
    throw_type_error(info.Env(), "ERR_BN_INVALID_ARG_TYPE",
                     std::string("benchCopy: ") + name + " must be a Float32Array, received " +
                         (v.IsTypedArray() ? "another typed array" : "a non-typed-array value"));
  }
  return v.As<Napi::Float32Array>();
}

// benchCopy(src: Float32Array, dst: Float32Array, streaming: boolean, threads: number): string
// Copies src.length floats into dst[0 .. src.length). Returns the kernel used, e.g. "avx512-stream".
Napi::Value BenchCopy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Float32Array src = float32_arg(info, 0, "src");
  Napi::Float32Array dst = float32_arg(info, 1, "dst");
  if (!info[2].IsBoolean()) {
    throw_type_error(env, "ERR_BN_INVALID_ARG_TYPE", "benchCopy: streaming must be a boolean");
  }
  const bool streaming = info[2].As<Napi::Boolean>().Value();
  const double t = info[3].IsNumber() ? info[3].As<Napi::Number>().DoubleValue() : -1;
  if (!(t >= 1 && t <= 4096 && t == double(int(t)))) {
    throw_range_error(env, "ERR_BN_OUT_OF_RANGE", "benchCopy: threads must be an integer in [1, 4096]");
  }
  const size_t n = src.ElementLength();
  if (dst.ElementLength() < n) {
    throw_range_error(env, "ERR_BN_OUT_OF_RANGE",
                      "benchCopy: dst must have at least src.length = " + std::to_string(n) +
                          " elements, received " + std::to_string(dst.ElementLength()));
  }
  const float* s = src.Data();
  float* d = dst.Data();
  const uintptr_t s0 = reinterpret_cast<uintptr_t>(s), d0 = reinterpret_cast<uintptr_t>(d);
  if (n > 0 && s0 < d0 + n * sizeof(float) && d0 < s0 + n * sizeof(float)) {
    throw_range_error(env, "ERR_BN_OVERLAP", "benchCopy: src and dst must not overlap");
  }
  if (streaming && !bnbench::streaming_copy_supported()) {
    throw_range_error(env, "ERR_BN_UNSUPPORTED", "benchCopy: streaming stores are not available on this architecture");
  }
  bnbench::bench_copy(s, d, n, streaming, int(t), kIsa);
  return Napi::String::New(env, std::string(bnbench::copy_isa_name(kIsa)) + (streaming ? "-stream" : "-plain"));
}

// benchCopyInfo(): { isa: string, streaming: boolean }
Napi::Value BenchCopyInfo(const Napi::CallbackInfo& info) {
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("isa", bnbench::copy_isa_name(kIsa));
  o.Set("streaming", bnbench::streaming_copy_supported());
  return o;
}

}  // namespace

void RegisterBenchCopy(Napi::Env env, Napi::Object exports) {
  exports.Set("benchCopy", Napi::Function::New(env, BenchCopy, "benchCopy"));
  exports.Set("benchCopyInfo", Napi::Function::New(env, BenchCopyInfo, "benchCopyInfo"));
}

}  // namespace bnaddon
