// The process-wide compute-thread budget. Every call (sync, or async on libuv's pool) takes
// threads from it for the duration of its parallel regions and gives them back, so however many
// async calls are in flight the machine runs at most `limit` compute threads.
#pragma once

namespace bnaddon {

void set_thread_limit(int n);  // n >= 1
int thread_limit();

// RAII: blocks until at least one thread is free, then takes min(wanted, free).
class ThreadLease {
 public:
  explicit ThreadLease(int wanted);
  ~ThreadLease();
  ThreadLease(const ThreadLease&) = delete;
  ThreadLease& operator=(const ThreadLease&) = delete;
  int count() const { return count_; }

 private:
  int count_;
};

// Threads in use right now (for tests of the budget).
int threads_in_use();
// Highest number of threads in use at once since the last reset.
int threads_peak(bool reset);

}  // namespace bnaddon
