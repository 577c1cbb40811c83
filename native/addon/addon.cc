// Module entry: the exported functions (see lib/binding.ts for the contract). Context-aware: no
// JS value is kept in a global, so the addon loads in the main thread and in every worker.
#include <napi.h>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include <cstdint>
#include <memory>
#include <string>

#include "async_job.h"
#include "batchnorm.h"
#include "convert.h"
#include "env_state.h"
#include "errors.h"
#include "jobs.h"
#include "sync_calls.h"
#include "output_pool.h"
#include "small_arrays.h"
#include "thread_budget.h"

namespace bnaddon {
namespace {

using ParseFn = std::unique_ptr<Job> (*)(const Napi::CallbackInfo&);

template <ParseFn Parse>
Napi::Value run_sync(const Napi::CallbackInfo& info) {
  std::unique_ptr<Job> job = Parse(info);
  check_status(info.Env(), run_with_budget(*job), job->fn);
  return info.Env().Undefined();
}

// Argument errors throw synchronously from here; the facade turns them into rejections.
template <ParseFn Parse>
Napi::Value run_async(const Napi::CallbackInfo& info) {
  return queue_async(info.Env(), Parse(info));
}

Napi::Value SimdLevel(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), bn::simd_level_name(bn::active_simd_level()));
}

Napi::Value DetectedSimdLevel(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), bn::simd_level_name(bn::detected_simd_level()));
}

Napi::Value SupportedSimdLevels(const Napi::CallbackInfo& info) {
  Napi::Array out = Napi::Array::New(info.Env());
  uint32_t i = 0;
  for (bn::SimdLevel l : {bn::SimdLevel::kScalar, bn::SimdLevel::kAvx2, bn::SimdLevel::kAvx512, bn::SimdLevel::kNeon}) {
    if (bn::simd_level_supported(l)) out.Set(i++, Napi::String::New(info.Env(), bn::simd_level_name(l)));
  }
  return out;
}

Napi::Value SetSimdLevel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) throw_error(env, ErrorKind::kType, "ERR_BN_INVALID_ARG_TYPE", "setSimdLevel: level must be a string");
  const std::string want = info[0].As<Napi::String>().Utf8Value();
  for (bn::SimdLevel l : {bn::SimdLevel::kScalar, bn::SimdLevel::kAvx2, bn::SimdLevel::kAvx512, bn::SimdLevel::kNeon}) {
    if (want == bn::simd_level_name(l)) {
      if (bn::set_simd_level(l) != bn::Status::kOk) {
        throw_error(env, ErrorKind::kRange, "ERR_BN_UNSUPPORTED",
                          "setSimdLevel: level '" + want + "' is not supported by this CPU or build");
      }
      return env.Undefined();
    }
  }
  throw_error(env, ErrorKind::kRange, "ERR_BN_OUT_OF_RANGE",
              "setSimdLevel: level must be one of scalar, avx2, avx512, neon, received '" + want + "'");
}

Napi::Value SetNumThreads(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber()) throw_error(env, ErrorKind::kType, "ERR_BN_INVALID_ARG_TYPE", "setNumThreads: n must be a number");
  const double n = info[0].As<Napi::Number>().DoubleValue();
  if (!(n >= 1 && n <= 4096 && n == double(int(n)))) {
    throw_error(env, ErrorKind::kRange, "ERR_BN_OUT_OF_RANGE", "setNumThreads: n must be an integer in [1, 4096]");
  }
  set_thread_limit(int(n));
  return env.Undefined();
}

Napi::Value GetNumThreads(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), thread_limit());
}

Napi::Value ThreadCounters(const Napi::CallbackInfo& info) {
  Napi::Object o = Napi::Object::New(info.Env());
  const bool reset = info[0].IsBoolean() && info[0].As<Napi::Boolean>().Value();
  o.Set("inUse", threads_in_use());
  o.Set("peak", threads_peak(reset));
  return o;
}

// adviseHugePages(a): madvise(MADV_HUGEPAGE) on the whole 2 MiB pages inside a new output, so
// that its first write faults once per 2 MiB instead of once per 4 KiB (THP's `madvise` mode only
// backs advised ranges). Contents never change; returns whether the kernel took the advice.
Napi::Value AdviseHugePages(const Napi::CallbackInfo& info) {
  bool advised = false;
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  void* data = nullptr;
  if (info[0].IsTypedArray() &&
      napi_get_typedarray_info(info.Env(), info[0], nullptr, nullptr, &data, nullptr, nullptr) == napi_ok) {
    constexpr uintptr_t kHuge = uintptr_t(2) << 20;
    const uintptr_t p = reinterpret_cast<uintptr_t>(data);
    const uintptr_t b = (p + kHuge - 1) & ~(kHuge - 1);
    const uintptr_t e = (p + info[0].As<Napi::TypedArray>().ByteLength()) & ~(kHuge - 1);
    if (e > b) advised = madvise(reinterpret_cast<void*>(b), e - b, MADV_HUGEPAGE) == 0;
  }
#endif
  return Napi::Boolean::New(info.Env(), advised);
}

Napi::Value BuildInfo(const Napi::CallbackInfo& info) {
  Napi::Object o = Napi::Object::New(info.Env());
#if defined(__x86_64__)
  o.Set("arch", "x64");
#elif defined(__aarch64__)
  o.Set("arch", "arm64");
#else
  o.Set("arch", "other");
#endif
#if defined(_OPENMP)
  o.Set("openmp", _OPENMP);
#endif
  o.Set("compiler", __VERSION__);
  o.Set("defaultNumThreads", bn::default_num_threads());
  const bn::CacheSizes cs = bn::cache_sizes();
  o.Set("l2Bytes", double(cs.l2_bytes));
  o.Set("l3Bytes", double(cs.l3_bytes));
  o.Set("l3Sharing", cs.l3_sharing);
  o.Set("cacheSource", cs.source);
  return o;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  init_env_state(env);
  exports.Set("setErrorClasses", Napi::Function::New(env, SetErrorClasses, "setErrorClasses"));
  exports.Set("forwardTraining", Napi::Function::New(env, run_sync<parse_forward_training>, "forwardTraining"));
  exports.Set("forwardInference", Napi::Function::New(env, run_sync<parse_forward_inference>, "forwardInference"));
  exports.Set("backward", Napi::Function::New(env, run_sync<parse_backward>, "backward"));
  exports.Set("forwardTrainingAsync", Napi::Function::New(env, run_async<parse_forward_training>, "forwardTrainingAsync"));
  exports.Set("forwardInferenceAsync", Napi::Function::New(env, run_async<parse_forward_inference>, "forwardInferenceAsync"));
  exports.Set("backwardAsync", Napi::Function::New(env, run_async<parse_backward>, "backwardAsync"));
  exports.Set("syncMoments", Napi::Function::New(env, run_sync<parse_sync_moments>, "syncMoments"));
  exports.Set("syncMomentsAsync", Napi::Function::New(env, run_async<parse_sync_moments>, "syncMomentsAsync"));
  exports.Set("syncNormalize", Napi::Function::New(env, run_sync<parse_sync_normalize>, "syncNormalize"));
  exports.Set("syncNormalizeAsync", Napi::Function::New(env, run_async<parse_sync_normalize>, "syncNormalizeAsync"));
  exports.Set("syncBackwardReduce", Napi::Function::New(env, run_sync<parse_sync_backward_reduce>, "syncBackwardReduce"));
  exports.Set("syncBackwardReduceAsync", Napi::Function::New(env, run_async<parse_sync_backward_reduce>, "syncBackwardReduceAsync"));
  exports.Set("syncBackwardDx", Napi::Function::New(env, run_sync<parse_sync_backward_dx>, "syncBackwardDx"));
  exports.Set("syncBackwardDxAsync", Napi::Function::New(env, run_async<parse_sync_backward_dx>, "syncBackwardDxAsync"));
  exports.Set("simdLevel", Napi::Function::New(env, SimdLevel, "simdLevel"));
  exports.Set("detectedSimdLevel", Napi::Function::New(env, DetectedSimdLevel, "detectedSimdLevel"));
  exports.Set("supportedSimdLevels", Napi::Function::New(env, SupportedSimdLevels, "supportedSimdLevels"));
  exports.Set("setSimdLevel", Napi::Function::New(env, SetSimdLevel, "setSimdLevel"));
  exports.Set("setNumThreads", Napi::Function::New(env, SetNumThreads, "setNumThreads"));
  exports.Set("getNumThreads", Napi::Function::New(env, GetNumThreads, "getNumThreads"));
  exports.Set("threadCounters", Napi::Function::New(env, ThreadCounters, "threadCounters"));
  exports.Set("adviseHugePages", Napi::Function::New(env, AdviseHugePages, "adviseHugePages"));
  exports.Set("buildInfo", Napi::Function::New(env, BuildInfo, "buildInfo"));
  exports.Set("convertF32ToBF16", Napi::Function::New(env, ConvertF32ToBF16, "convertF32ToBF16"));
  exports.Set("convertBF16ToF32", Napi::Function::New(env, ConvertBF16ToF32, "convertBF16ToF32"));
  exports.Set("convertF32ToF16", Napi::Function::New(env, ConvertF32ToF16, "convertF32ToF16"));
  exports.Set("convertF16ToF32", Napi::Function::New(env, ConvertF16ToF32, "convertF16ToF32"));
  exports.Set("takeOutput", Napi::Function::New(env, TakeOutput, "takeOutput"));
  exports.Set("setOutputPool", Napi::Function::New(env, SetOutputPool, "setOutputPool"));
  exports.Set("outputPoolStats", Napi::Function::New(env, OutputPoolStats, "outputPoolStats"));
  exports.Set("outputPoolTrim", Napi::Function::New(env, OutputPoolTrim, "outputPoolTrim"));
  exports.Set("takeSmall", Napi::Function::New(env, TakeSmall, "takeSmall"));
  return exports;
}

}  // namespace
}  // namespace bnaddon

static Napi::Object InitBatchnorm(Napi::Env env, Napi::Object exports) { return bnaddon::Init(env, exports); }

NODE_API_MODULE(batchnorm, InitBatchnorm)
