// bench_copy.node: the copy and read kernels of bench_copy_kernels.h, callable from JavaScript so
// that `npm run bench` measures this machine's copy (and read) bandwidth in the same process, on the
// same number of bytes, right before the batch-norm kernels it compares with it. A benchmark-only addon of its
// own (CMakeLists.txt, target bench_copy): never in batchnorm.node, the prebuilds or the package.
// Synchronous; the benchmark sets the thread count of every call. Typed loader: bench/copy-binding.ts.
#include <napi.h>

#include <cstdint>
#include <string>

#include "bench_copy_kernels.h"

namespace {

const bnbench::CopyIsa kIsa = bnbench::best_copy_isa();

// The error codes follow the package's (ERR_BN_*), so the benchmark reports them alike.
template <typename ErrorT>
[[noreturn]] void throw_coded(Napi::Env env, const char* code, const std::string& msg) {
  ErrorT err = ErrorT::New(env, msg);
  err.Set("code", Napi::String::New(env, code));
  throw err;
}

// Argument i of function fn: a Float32Array.
Napi::Float32Array float32_arg(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name) {
  Napi::Value v = info[i];
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
    throw_coded<Napi::TypeError>(info.Env(), "ERR_BN_INVALID_ARG_TYPE",
                                 std::string(fn) + ": " + name + " must be a Float32Array, received " +
                                     (v.IsTypedArray() ? "another typed array" : "a non-typed-array value"));
  }
  return v.As<Napi::Float32Array>();
}

// Argument i of function fn: the thread count, an integer in [1, 4096].
int threads_arg(const Napi::CallbackInfo& info, size_t i, const char* fn) {
  const double t = info[i].IsNumber() ? info[i].As<Napi::Number>().DoubleValue() : -1;
  if (!(t >= 1 && t <= 4096 && t == double(int(t)))) {
    throw_coded<Napi::RangeError>(info.Env(), "ERR_BN_OUT_OF_RANGE", std::string(fn) + ": threads must be an integer in [1, 4096]");
  }
  return int(t);
}

// That `name` of function fn holds at least `need` floats.
void require_length(Napi::Env env, const char* fn, const char* name, const char* what, size_t need, size_t have) {
  if (have < need) {
    throw_coded<Napi::RangeError>(env, "ERR_BN_OUT_OF_RANGE",
                                  std::string(fn) + ": " + name + " must have at least " + what + " = " +
                                      std::to_string(need) + " elements, received " + std::to_string(have));
  }
}

// benchCopy(src: Float32Array, dst: Float32Array, streaming: boolean, threads: number): string
// Copies src.length floats into dst[0 .. src.length). Returns the kernel used, e.g. "avx512-stream".
Napi::Value BenchCopy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Float32Array src = float32_arg(info, 0, "benchCopy", "src");
  Napi::Float32Array dst = float32_arg(info, 1, "benchCopy", "dst");
  if (!info[2].IsBoolean()) {
    throw_coded<Napi::TypeError>(env, "ERR_BN_INVALID_ARG_TYPE", "benchCopy: streaming must be a boolean");
  }
  const bool streaming = info[2].As<Napi::Boolean>().Value();
  const int threads = threads_arg(info, 3, "benchCopy");
  const size_t n = src.ElementLength();
  require_length(env, "benchCopy", "dst", "src.length", n, dst.ElementLength());
  const float* s = src.Data();
  float* d = dst.Data();
  const uintptr_t s0 = reinterpret_cast<uintptr_t>(s), d0 = reinterpret_cast<uintptr_t>(d);
  if (n > 0 && s0 < d0 + n * sizeof(float) && d0 < s0 + n * sizeof(float)) {
    throw_coded<Napi::RangeError>(env, "ERR_BN_OVERLAP", "benchCopy: src and dst must not overlap");
  }
  if (streaming && !bnbench::streaming_copy_supported()) {
    throw_coded<Napi::RangeError>(env, "ERR_BN_UNSUPPORTED",
                                  "benchCopy: streaming stores are not available on this architecture");
  }
  bnbench::bench_copy(s, d, n, streaming, threads, kIsa);
  return Napi::String::New(env, std::string(bnbench::copy_isa_name(kIsa)) + (streaming ? "-stream" : "-plain"));
}

// benchRead(a: Float32Array, b: Float32Array | null, threads: number): number
// Reads a (and b, as long as a, when not null) in one loop: what a pass that only reads costs (the
// statistics read x; backward's reductions x and dy). Returns the sum of what it read.
Napi::Value BenchRead(const Napi::CallbackInfo& info) {
  Napi::Float32Array a = float32_arg(info, 0, "benchRead", "a");
  const bool two = !info[1].IsNull();
  Napi::Float32Array b = two ? float32_arg(info, 1, "benchRead", "b") : a;
  const int threads = threads_arg(info, 2, "benchRead");
  const size_t n = a.ElementLength();
  require_length(info.Env(), "benchRead", "b", "a.length", n, b.ElementLength());
  return Napi::Number::New(info.Env(), bnbench::bench_read(a.Data(), two ? b.Data() : nullptr, n, threads, kIsa));
}

// benchCopyInfo(): { isa: string, streaming: boolean }
Napi::Value BenchCopyInfo(const Napi::CallbackInfo& info) {
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("isa", bnbench::copy_isa_name(kIsa));
  o.Set("streaming", bnbench::streaming_copy_supported());
  return o;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("benchCopy", Napi::Function::New(env, BenchCopy, "benchCopy"));
  exports.Set("benchRead", Napi::Function::New(env, BenchRead, "benchRead"));
  exports.Set("benchCopyInfo", Napi::Function::New(env, BenchCopyInfo, "benchCopyInfo"));
  return exports;
}

}  // namespace

NODE_API_MODULE(bench_copy, Init)
