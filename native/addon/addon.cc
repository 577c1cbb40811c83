// Module entry: the exported functions (see binding.d.ts for the contract). Context-aware: no
// JS value is kept in a global, so the addon loads in the main thread and in every worker.
#include <napi.h>

#include <memory>
#include <string>
#include <vector>

#include "batchnorm.h"
#include "errors.h"
#include "jobs.h"
#include "thread_budget.h"

namespace bnaddon {
namespace {

using ParseFn = std::unique_ptr<Job> (*)(const Napi::CallbackInfo&);

template <ParseFn Parse>
Napi::Value run_sync(const Napi::CallbackInfo& info) {
  std::unique_ptr<Job> job = Parse(info);
  check_status(info.Env(), run_with_budget(*job), job->name);
  return info.Env().Undefined();
}

// Runs a job on libuv's pool. References to every array it touches keep them alive until the
// promise settles; the arrays' memory does not move (typed-array backing stores are off-heap).
class JobWorker : public Napi::AsyncWorker {
 public:
  JobWorker(Napi::Env env, std::unique_ptr<Job> job)
      : Napi::AsyncWorker(env, "node-batchnorm"), deferred_(Napi::Promise::Deferred::New(env)),
        job_(std::move(job)) {
    for (const Napi::Value& v : job_->arrays) refs_.push_back(Napi::Persistent(v.As<Napi::Object>()));
  }
  Napi::Promise promise() const { return deferred_.Promise(); }
  void Execute() override { status_ = run_with_budget(*job_); }
  void OnOK() override {
    if (status_ == bn::Status::kOk) {
      deferred_.Resolve(Env().Undefined());
    } else {
      deferred_.Reject(status_error(Env(), status_, job_->name).Value());
    }
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::unique_ptr<Job> job_;
  std::vector<Napi::ObjectReference> refs_;
  bn::Status status_ = bn::Status::kOk;
};

template <ParseFn Parse>
Napi::Value run_async(const Napi::CallbackInfo& info) {
  // Argument errors throw synchronously from here; the facade turns them into rejections.
  std::unique_ptr<Job> job = Parse(info);
  auto* worker = new JobWorker(info.Env(), std::move(job));  // deletes itself when done
  Napi::Promise p = worker->promise();
  worker->Queue();
  return p;
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
  if (!info[0].IsString()) throw_type_error(env, "ERR_BN_INVALID_ARG_TYPE", "setSimdLevel: level must be a string");
  const std::string want = info[0].As<Napi::String>().Utf8Value();
  for (bn::SimdLevel l : {bn::SimdLevel::kScalar, bn::SimdLevel::kAvx2, bn::SimdLevel::kAvx512, bn::SimdLevel::kNeon}) {
    if (want == bn::simd_level_name(l)) {
      if (bn::set_simd_level(l) != bn::Status::kOk) {
        throw_range_error(env, "ERR_BN_UNSUPPORTED",
                          "setSimdLevel: level '" + want + "' is not supported by this CPU or build");
      }
      return env.Undefined();
    }
  }
  throw_range_error(env, "ERR_BN_OUT_OF_RANGE",
                    "setSimdLevel: level must be one of scalar, avx2, avx512, neon, received '" + want + "'");
}

Napi::Value SetNumThreads(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const double n = info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : -1;
  if (!(n >= 1 && n <= 4096 && n == double(int(n)))) {
    throw_range_error(env, "ERR_BN_OUT_OF_RANGE", "setNumThreads: n must be an integer in [1, 4096]");
  }
  set_thread_limit(int(n));
  return env.Undefined();
}

Napi::Value GetNumThreads(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), thread_limit());
}

Napi::Value ThreadStats(const Napi::CallbackInfo& info) {
  Napi::Object o = Napi::Object::New(info.Env());
  const bool reset = info[0].IsBoolean() && info[0].As<Napi::Boolean>().Value();
  o.Set("inUse", threads_in_use());
  o.Set("peak", threads_peak(reset));
  return o;
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
  return o;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("forwardTraining", Napi::Function::New(env, run_sync<parse_forward_training>, "forwardTraining"));
  exports.Set("forwardInference", Napi::Function::New(env, run_sync<parse_forward_inference>, "forwardInference"));
  exports.Set("backward", Napi::Function::New(env, run_sync<parse_backward>, "backward"));
  exports.Set("forwardTrainingAsync", Napi::Function::New(env, run_async<parse_forward_training>, "forwardTrainingAsync"));
  exports.Set("forwardInferenceAsync", Napi::Function::New(env, run_async<parse_forward_inference>, "forwardInferenceAsync"));
  exports.Set("backwardAsync", Napi::Function::New(env, run_async<parse_backward>, "backwardAsync"));
  exports.Set("simdLevel", Napi::Function::New(env, SimdLevel, "simdLevel"));
  exports.Set("detectedSimdLevel", Napi::Function::New(env, DetectedSimdLevel, "detectedSimdLevel"));
  exports.Set("supportedSimdLevels", Napi::Function::New(env, SupportedSimdLevels, "supportedSimdLevels"));
  exports.Set("setSimdLevel", Napi::Function::New(env, SetSimdLevel, "setSimdLevel"));
  exports.Set("setNumThreads", Napi::Function::New(env, SetNumThreads, "setNumThreads"));
  exports.Set("getNumThreads", Napi::Function::New(env, GetNumThreads, "getNumThreads"));
  exports.Set("threadStats", Napi::Function::New(env, ThreadStats, "threadStats"));
  exports.Set("buildInfo", Napi::Function::New(env, BuildInfo, "buildInfo"));
  return exports;
}

}  // namespace
}  // namespace bnaddon

static Napi::Object InitBatchnorm(Napi::Env env, Napi::Object exports) { return bnaddon::Init(env, exports); }

NODE_API_MODULE(batchnorm, InitBatchnorm)
