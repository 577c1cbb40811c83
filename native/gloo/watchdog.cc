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

void Watchdog::arm(Clock::time_point deadline, std::function<void()> fire) {
  {
    std::lock_guard<std::mutex> l(mu_);
    fire_ = std::move(fire);
    deadline_ = deadline;
    armed_ = true;
    fired_ = false;
  }
  cv_.notify_all();
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
    if (!armed_) {
      cv_.wait(l);
    } else if (Clock::now() >= deadline_) {
      fired_ = true;
      fire_();
      deadline_ = Clock::now() + kRepeat;
    } else {
      cv_.wait_until(l, deadline_);
    }
  }
}

}  // namespace bngloo
