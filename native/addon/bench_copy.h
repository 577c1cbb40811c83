// Benchmark-only exports: the memory-bandwidth baseline that bench/ compares the kernels with.
#pragma once

#include <napi.h>

namespace bnaddon {

// Adds benchCopy(src, dst, streaming, threads) and benchCopyInfo() to the module's exports
// (see lib/binding.ts). Called once from Init.
void RegisterBenchCopy(Napi::Env env, Napi::Object exports);

}  // namespace bnaddon
