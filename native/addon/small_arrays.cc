#include "small_arrays.h"

#include <cstdlib>
#include <memory>

#include "env_state.h"
#include "errors.h"

namespace bnaddon {
namespace {

// Set once the ArrayBuffer exists: Node calls the finalizer at once when it fails to create one,
// and TakeSmall then still owns the memory.
struct SmallLease {
  bool live = false;
};

void free_small(napi_env /*env*/, void* data, void* hint) {
  if (!static_cast<SmallLease*>(hint)->live) return;  // creation failed: TakeSmall cleans up
  delete static_cast<SmallLease*>(hint);
  std::free(data);
}

}  // namespace

Napi::Value TakeSmall(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const size_t bytes = byte_count_arg(env, info[0], "takeSmall: bytes");
  if (bytes < 1 || bytes > kSmallArrayMaxBytes) return env.Undefined();
  void* p = std::calloc(1, bytes);
  if (p == nullptr) return env.Undefined();
  auto lease = std::make_unique<SmallLease>();
  napi_value ab = nullptr;
  if (napi_create_external_arraybuffer(env, p, bytes, free_small, lease.get(), &ab) != napi_ok) {
    napi_value pending = nullptr;
    napi_get_and_clear_last_exception(env, &pending);
    std::free(p);
    return env.Undefined();
  }
  lease.release()->live = true;  // owned by the finalizer now
  Napi::Value buffer(env, ab);
  if (EnvState* es = env_state(env); es && !es->mark_untransferable.IsEmpty()) es->mark_untransferable.Call({buffer});
  return buffer;
}

}  // namespace bnaddon
