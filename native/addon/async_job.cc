#include "async_job.h"

#include <string>
#include <vector>

#include "env_state.h"
#include "errors.h"

namespace bnaddon {
namespace {

// The ArrayBuffer under a typed array; null for a SharedArrayBuffer (never detached, never shrunk).
napi_value own_array_buffer(napi_env env, napi_value typed_array) {
  napi_value buffer = nullptr;
  bool is_ab = false;
  if (napi_get_typedarray_info(env, typed_array, nullptr, nullptr, nullptr, &buffer, nullptr) != napi_ok) return nullptr;
  if (napi_is_arraybuffer(env, buffer, &is_ab) != napi_ok || !is_ab) return nullptr;
  return buffer;
}

bool is_resizable(Napi::Env env, EnvState* st, napi_value buffer) {
  if (st == nullptr || st->resizable_getter.IsEmpty()) return false;
  return st->resizable_getter.Call(Napi::Value(env, buffer), {}).ToBoolean().Value();
}

// Growable SharedArrayBuffers can only grow, and their memory never moves: they are accepted.
void protect_buffers(Napi::Env env, const Job& job) {
  EnvState* st = env_state(env);
  for (const auto& [name, value] : job.arrays) {
    napi_value buffer = own_array_buffer(env, value);
    if (buffer == nullptr) continue;
    if (is_resizable(env, st, buffer)) {
      throw_error(env, ErrorKind::kType, "ERR_BN_RESIZABLE_BUFFER",
                  job.fn + ": " + name + " is a view of a resizable ArrayBuffer, which JavaScript could shrink while " +
                      "the call runs on another thread; pass a fixed-length buffer (or a SharedArrayBuffer), or use the " +
                      "synchronous call");
    }
  }
  if (st == nullptr || st->mark_untransferable.IsEmpty()) return;
  for (const auto& entry : job.arrays) {
    // Transferred (structuredClone / postMessage) it would be detached and freed under the job;
    // untransferable, Node copies it instead. Permanent: V8 has no way to unmark.
    if (napi_value buffer = own_array_buffer(env, entry.second)) st->mark_untransferable.Call({Napi::Value(env, buffer)});
  }
}

// Raw napi_async_work rather than Napi::AsyncWorker: completion may run while the environment is
// being torn down (a worker terminated mid-call), where any N-API call can fail and a C++
// exception escaping a completion callback aborts the process. Nothing below throws.
struct AsyncJob {
  napi_async_work work = nullptr;
  napi_deferred deferred = nullptr;
  std::unique_ptr<Job> job;
  std::vector<napi_ref> refs;
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
        napi_reject_deferred(env, a->deferred, status_error(Napi::Env(env), a->status, a->job->fn).Value());
      }
    } catch (...) {
      // The environment is going away: nobody is left to settle the promise for.
    }
  }
  for (napi_ref r : a->refs) napi_delete_reference(env, r);
  napi_delete_async_work(env, a->work);
  if (scoped) napi_close_handle_scope(env, scope);
}

}  // namespace

Napi::Value queue_async(Napi::Env env, std::unique_ptr<Job> job) {
  protect_buffers(env, *job);
  auto a = std::make_unique<AsyncJob>();
  a->job = std::move(job);
  auto release_refs = [&] {
    for (napi_ref r : a->refs) napi_delete_reference(env, r);
    a->refs.clear();
  };
  for (const auto& entry : a->job->arrays) {
    napi_ref r;
    if (napi_create_reference(env, entry.second, 1, &r) != napi_ok) {
      release_refs();
      throw_error(env, ErrorKind::kState, "ERR_BN_INTERNAL", a->job->fn + ": could not hold the call's arrays");
    }
    a->refs.push_back(r);
  }
  napi_value promise, name;
  if (napi_create_promise(env, &a->deferred, &promise) != napi_ok ||
      napi_create_string_utf8(env, "node-batchnorm", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_async_work(env, nullptr, name, execute_job, complete_job, a.get(), &a->work) != napi_ok) {
    release_refs();
    throw_error(env, ErrorKind::kState, "ERR_BN_INTERNAL", a->job->fn + ": could not create the async job");
  }
  if (napi_queue_async_work(env, a->work) != napi_ok) {
    napi_delete_async_work(env, a->work);
    release_refs();
    throw_error(env, ErrorKind::kState, "ERR_BN_INTERNAL", a->job->fn + ": could not queue the async job");
  }
  a.release();  // owned by complete_job now
  return Napi::Value(env, promise);
}

}  // namespace bnaddon
