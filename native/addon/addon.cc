// Module entry: the exported functions (see lib/binding.ts for the contract). Context-aware: no
// JS value is kept in a global, so the addon loads in the main thread and in every worker.
#include <napi.h>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include <cstdint>
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

// Per-environment state (main thread and each worker has its own; freed with the environment).
struct EnvState {
  // worker_threads.markAsUntransferable of this environment, if Node has getBuiltinModule.
  Napi::FunctionReference mark_untransferable;
};

EnvState* env_state(Napi::Env env) { return env.GetInstanceData<EnvState>(); }

void init_env_state(Napi::Env env) {
  auto* st = new EnvState();
  env.SetInstanceData(st);  // deleted by node-addon-api when the environment goes away
  try {
    Napi::Object process = env.Global().Get("process").As<Napi::Object>();
    Napi::Value get = process.Get("getBuiltinModule");
    if (!get.IsFunction()) return;
    Napi::Value wt = get.As<Napi::Function>().Call(process, {Napi::String::New(env, "worker_threads")});
    if (!wt.IsObject()) return;
    Napi::Value mark = wt.As<Napi::Object>().Get("markAsUntransferable");
    if (mark.IsFunction()) st->mark_untransferable = Napi::Persistent(mark.As<Napi::Function>());
  } catch (const Napi::Error&) {
    // Without it async calls still work; only the transfer protection below is missing.
  }
}

// An ArrayBuffer transferred (structuredClone / postMessage with a transfer list) while a job
// runs on it is detached and may be freed under the computation. Buffers of async calls are
// therefore marked untransferable: Node copies them instead of moving them. (Permanent: V8 has no
// way to unmark.) SharedArrayBuffers are never detached and are left alone.
void pin_buffers(Napi::Env env, const std::vector<Napi::Value>& arrays) {
  EnvState* st = env_state(env);
  if (st == nullptr || st->mark_untransferable.IsEmpty()) return;
  for (const Napi::Value& v : arrays) {
    napi_value buffer = nullptr;
    bool is_ab = false;
    if (napi_get_typedarray_info(env, v, nullptr, nullptr, nullptr, &buffer, nullptr) != napi_ok) continue;
    if (napi_is_arraybuffer(env, buffer, &is_ab) != napi_ok || !is_ab) continue;
    st->mark_untransferable.Call({Napi::Value(env, buffer)});
  }
}

template <ParseFn Parse>
Napi::Value run_sync(const Napi::CallbackInfo& info) {
  std::unique_ptr<Job> job = Parse(info);
  check_status(info.Env(), run_with_budget(*job), job->name);
  return info.Env().Undefined();
}

// Runs a job on libuv's pool with raw napi_async_work rather than Napi::AsyncWorker: completion
// may run while the environment is being torn down (a worker terminated mid-call), where any
// N-API call can fail, and a C++ exception escaping a completion callback aborts the process.
// Every status is checked here and nothing throws.
struct AsyncJob {
  napi_async_work work = nullptr;
  napi_deferred deferred = nullptr;
  std::unique_ptr<Job> job;
  std::vector<napi_ref> refs;  // keep every array of the call alive until it completes
  bn::Status status = bn::Status::kOk;
};

void execute_job(napi_env, void* data) {
  auto* a = static_cast<AsyncJob*>(data);
  a->status = run_with_budget(*a->job);
}

void complete_job(napi_env env, napi_status work_status, void* data) {
  std::unique_ptr<AsyncJob> a(static_cast<AsyncJob*>(data));
  napi_handle_scope scope = nullptr;
  const bool scoped = napi_open_handle_scope(env, &scope) == napi_ok;
  if (scoped && work_status == napi_ok) {
    try {
      if (a->status == bn::Status::kOk) {
        napi_value undefined;
        if (napi_get_undefined(env, &undefined) == napi_ok) napi_resolve_deferred(env, a->deferred, undefined);
      } else {
        napi_reject_deferred(env, a->deferred, status_error(Napi::Env(env), a->status, a->job->name).Value());
      }
    } catch (...) {
      // The environment is going away: nobody is left to settle the promise for.
    }
  }
  for (napi_ref r : a->refs) napi_delete_reference(env, r);
  napi_delete_async_work(env, a->work);
  if (scoped) napi_close_handle_scope(env, scope);
}

template <ParseFn Parse>
Napi::Value run_async(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  // Argument errors throw synchronously from here; the facade turns them into rejections.
  auto a = std::make_unique<AsyncJob>();
  a->job = Parse(info);
  pin_buffers(env, a->job->arrays);
  for (const Napi::Value& v : a->job->arrays) {
    napi_ref r;
    NAPI_THROW_IF_FAILED(env, napi_create_reference(env, v, 1, &r), Napi::Value());
    a->refs.push_back(r);
  }
  napi_value promise, name;
  NAPI_THROW_IF_FAILED(env, napi_create_promise(env, &a->deferred, &promise), Napi::Value());
  NAPI_THROW_IF_FAILED(env, napi_create_string_utf8(env, "node-batchnorm", NAPI_AUTO_LENGTH, &name), Napi::Value());
  NAPI_THROW_IF_FAILED(env, napi_create_async_work(env, nullptr, name, execute_job, complete_job, a.get(), &a->work),
                       Napi::Value());
  if (napi_queue_async_work(env, a->work) != napi_ok) {
    napi_delete_async_work(env, a->work);
    for (napi_ref r : a->refs) napi_delete_reference(env, r);
    throw Napi::Error::New(env, "node-batchnorm: could not queue the async job");
  }
  a.release();  // owned by complete_job now
  return Napi::Value(env, promise);
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
  if (!info[0].IsNumber()) throw_type_error(env, "ERR_BN_INVALID_ARG_TYPE", "setNumThreads: n must be a number");
  const double n = info[0].As<Napi::Number>().DoubleValue();
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

// adviseHugePages(a): madvise(MADV_HUGEPAGE) on the whole 2 MiB pages inside a typed array's
// memory: the facade calls it on a new output of 4 MiB or more right before the kernels write
// it. When malloc hands out never-touched memory, each 4 KiB page costs a page fault on its first
// write (~1.3 us here: 3136 of them on a 12 MiB output); with THP in its usual `madvise` mode
// only advised ranges get 2 MiB pages. Pages already present are left as they are. Returns
// whether the kernel took the advice (false off Linux, with THP disabled, or if nothing inside
// is 2 MiB-aligned); the contents never change.
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
  return o;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  init_env_state(env);
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
  exports.Set("adviseHugePages", Napi::Function::New(env, AdviseHugePages, "adviseHugePages"));
  exports.Set("buildInfo", Napi::Function::New(env, BuildInfo, "buildInfo"));
  return exports;
}

}  // namespace
}  // namespace bnaddon

static Napi::Object InitBatchnorm(Napi::Env env, Napi::Object exports) { return bnaddon::Init(env, exports); }

NODE_API_MODULE(batchnorm, InitBatchnorm)
