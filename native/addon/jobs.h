// A parsed op call: core arguments checked and captured, ready to run on any thread. Sync entry
// points run it at once; async ones (async_job.cc) on libuv's pool, holding every array alive.
#pragma once

#include <napi.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "batchnorm.h"

namespace bnaddon {

class Job {
 public:
  virtual ~Job() = default;
  // Runs the core with at most `num_threads` threads. Thread-safe; touches no JS value.
  virtual bn::Status run(int num_threads) = 0;
  // How many threads the core would use out of `limit` (small tensors run on one).
  virtual int threads_wanted(int limit) const = 0;
  std::string fn;  // the user's function, for messages
  std::vector<std::pair<const char*, Napi::Value>> arrays;  // every array read or written, by name
};

std::unique_ptr<Job> parse_forward_training(const Napi::CallbackInfo& info);
std::unique_ptr<Job> parse_forward_inference(const Napi::CallbackInfo& info);
std::unique_ptr<Job> parse_backward(const Napi::CallbackInfo& info);

// Runs a job with a lease of the threads it can use from the process budget.
bn::Status run_with_budget(Job& job);

}  // namespace bnaddon
