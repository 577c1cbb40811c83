// The named calls of synchronized batch norm's per-rank pieces (native/core/sync_ops.h; the
// contract is lib/binding.ts: syncMoments, syncNormalize, syncBackwardReduce, syncBackwardDx).
#pragma once

#include <napi.h>

#include <memory>

#include "jobs.h"

namespace bnaddon {

std::unique_ptr<Job> parse_sync_moments(const Napi::CallbackInfo& info);
std::unique_ptr<Job> parse_sync_normalize(const Napi::CallbackInfo& info);
std::unique_ptr<Job> parse_sync_backward_reduce(const Napi::CallbackInfo& info);
std::unique_ptr<Job> parse_sync_backward_dx(const Napi::CallbackInfo& info);

}  // namespace bnaddon
