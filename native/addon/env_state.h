// Per-environment state of the addon (the main thread and each worker has its own, freed with
// its environment): the facade's error classes and the built-ins the async path needs, captured
// once so that user code cannot replace them later.
#pragma once

#include <napi.h>

#include <functional>
#include <map>
#include <string>

namespace bnaddon {

struct EnvState {
  // BatchNormTypeError, BatchNormRangeError, BatchNormError (setErrorClasses); empty before.
  Napi::FunctionReference type_error, range_error, error;
  // worker_threads.markAsUntransferable, if this Node has process.getBuiltinModule.
  Napi::FunctionReference mark_untransferable;
  // The getter of ArrayBuffer.prototype.resizable, if this Node has resizable buffers.
  Napi::FunctionReference resizable_getter;
  // Ops whose call object's key set was checked (the facade builds each op's object in one place,
  // so the first call tells; later calls skip the costly enumeration).
  std::map<std::string, bool, std::less<>> checked_ops;
};

void init_env_state(Napi::Env env);
EnvState* env_state(Napi::Env env);

}  // namespace bnaddon
