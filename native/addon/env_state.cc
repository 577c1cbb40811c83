#include "env_state.h"

namespace bnaddon {
namespace {

Napi::Value builtin_module(Napi::Env env, const char* name) {
  Napi::Object process = env.Global().Get("process").As<Napi::Object>();
  Napi::Value get = process.Get("getBuiltinModule");
  if (!get.IsFunction()) return env.Undefined();
  return get.As<Napi::Function>().Call(process, {Napi::String::New(env, name)});
}

Napi::Value resizable_getter(Napi::Env env) {
  Napi::Object array_buffer = env.Global().Get("ArrayBuffer").As<Napi::Object>();
  Napi::Object proto = array_buffer.Get("prototype").As<Napi::Object>();
  Napi::Object object = env.Global().Get("Object").As<Napi::Object>();
  Napi::Value desc = object.Get("getOwnPropertyDescriptor")
                         .As<Napi::Function>()
                         .Call(object, {proto, Napi::String::New(env, "resizable")});
  return desc.IsObject() ? desc.As<Napi::Object>().Get("get") : env.Undefined();
}

}  // namespace

EnvState* env_state(Napi::Env env) { return env.GetInstanceData<EnvState>(); }

void init_env_state(Napi::Env env) {
  auto* st = new EnvState();
  env.SetInstanceData(st);  // deleted by node-addon-api when the environment goes away
  try {
    Napi::Value wt = builtin_module(env, "worker_threads");
    if (wt.IsObject()) {
      Napi::Value mark = wt.As<Napi::Object>().Get("markAsUntransferable");
      if (mark.IsFunction()) st->mark_untransferable = Napi::Persistent(mark.As<Napi::Function>());
    }
    Napi::Value getter = resizable_getter(env);
    if (getter.IsFunction()) st->resizable_getter = Napi::Persistent(getter.As<Napi::Function>());
  } catch (const Napi::Error&) {
    // Without them async calls still work; only the transfer and resize protection is missing.
  }
}

}  // namespace bnaddon
