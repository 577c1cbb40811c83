#include "thread_budget.h"

#include <algorithm>
#include <condition_variable>
#include <mutex>

#include "batchnorm.h"

namespace bnaddon {
namespace {

struct Budget {
  std::mutex mu;
  std::condition_variable cv;
  int limit = bn::default_num_threads();
  int used = 0;
  int peak = 0;
};

// Process-wide on purpose: the cores are the machine's, not one environment's. Never destroyed,
// so a worker exiting late never touches a dead mutex.
Budget& budget() {
  static Budget* b = new Budget();
  return *b;
}

}  // namespace

void set_thread_limit(int n) {
  Budget& b = budget();
  {
    std::lock_guard<std::mutex> lock(b.mu);
    b.limit = std::max(1, n);
  }
  b.cv.notify_all();
}

int thread_limit() {
  Budget& b = budget();
  std::lock_guard<std::mutex> lock(b.mu);
  return b.limit;
}

ThreadLease::ThreadLease(int wanted) {
  Budget& b = budget();
  std::unique_lock<std::mutex> lock(b.mu);
  b.cv.wait(lock, [&] { return b.used < b.limit; });
  count_ = std::max(1, std::min(wanted, b.limit - b.used));
  b.used += count_;
  b.peak = std::max(b.peak, b.used);
}

ThreadLease::~ThreadLease() {
  Budget& b = budget();
  {
    std::lock_guard<std::mutex> lock(b.mu);
    b.used -= count_;
  }
  b.cv.notify_all();
}

int threads_in_use() {
  Budget& b = budget();
  std::lock_guard<std::mutex> lock(b.mu);
  return b.used;
}

int threads_peak(bool reset) {
  Budget& b = budget();
  std::lock_guard<std::mutex> lock(b.mu);
  const int p = b.peak;
  if (reset) b.peak = b.used;
  return p;
}

}  // namespace bnaddon
