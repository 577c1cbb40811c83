// Running a parsed job on libuv's thread pool, returning a Promise.
#pragma once

#include <napi.h>

#include <memory>

#include "jobs.h"

namespace bnaddon {

// Refuses views of resizable ArrayBuffers (JavaScript could shrink them under the computation),
// marks the other buffers untransferable, holds every array alive, queues the job; settles the
// Promise with the job's status. Throws synchronously on a refused array.
Napi::Value queue_async(Napi::Env env, std::unique_ptr<Job> job);

}  // namespace bnaddon
