#include "watchdog.h"

namespace bngloo {

Watchdog::Watchdog() : thread_([this] { run(); }) {}

Watchdog::~Watchdog() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

// Wakes the thread only when it would look too late: a collective after another re-arms with a
// later deadline, which the thread reads when the earlier one passes (no wake-up per collective).
void Watchdog::arm(Clock::time_point deadline, std::function<void()> fire) {
  bool wake;
  {
    std::lock_guard<std::mutex> l(mu_);
    fire_ = std::move(fire);
    deadline_ = deadline;
    armed_ = true;
    fired_ = false;
    wake = deadline < wakes_at_;
  }
  if (wake) cv_.notify_all();
}

bool Watchdog::fire_now() {
  std::lock_guard<std::mutex> l(mu_);
  if (!armed_) return false;
  fired_ = true;
  fire_();
  deadline_ = Clock::now() + kRepeat;
  cv_.notify_all();
  return true;
}

bool Watchdog::disarm() {
  std::lock_guard<std::mutex> l(mu_);
  armed_ = false;
  fire_ = nullptr;
  return fired_;
}

void Watchdog::run() {
  std::unique_lock<std::mutex> l(mu_);
  while (!stop_) {
    if (armed_ && Clock::now() >= deadline_) {
      fired_ = true;
      fire_();
      deadline_ = Clock::now() + kRepeat;
      continue;
    }
    if (!armed_ && wakes_at_ != Clock::time_point::max() && Clock::now() < wakes_at_) {
      cv_.wait_until(l, wakes_at_);  // disarmed: keep the earlier wake-up, a later arm() need not notify
      continue;
    }
    wakes_at_ = armed_ ? deadline_ : Clock::time_point::max();
    if (armed_) {
      cv_.wait_until(l, wakes_at_);
    } else {
      cv_.wait(l);
    }
  }
}

}  // namespace bngloo
