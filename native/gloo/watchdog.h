// One deadline for a whole Gloo operation. Gloo bounds each wait separately (and a pair's connect
// by 5x the timeout), never an operation: a connect to a rank that died, or a ring collective that
// trickles, can outlast the group's timeout many times. This thread runs `fire` (which signals an
// the Gloo connections and wakes the waits) once the deadline passes, and again every few ms until
// disarmed: a Gloo wait woken early returns and the next one starts, until the operation gives up.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

namespace bngloo {

using Clock = std::chrono::steady_clock;

class Watchdog {
 public:
  static constexpr std::chrono::milliseconds kRepeat{5};
  Watchdog();
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  // Runs `fire` on the watchdog's thread at `deadline` and every kRepeat after, until disarmed.
  void arm(Clock::time_point deadline, std::function<void()> fire);
  // Runs the armed `fire` now (closing a group while a collective waits); false if none is armed.
  bool fire_now();
  // Disarms; whether `fire` ran since arm(). Once it returns, `fire` is not running and will not run.
  bool disarm();

 private:
  void run();
  std::mutex mu_;  // held while `fire` runs, so that disarm() waits for it
  std::condition_variable cv_;
  std::function<void()> fire_;
  Clock::time_point deadline_{};
  Clock::time_point wakes_at_ = Clock::time_point::max();  // when the thread looks next (max: only when told)
  bool armed_ = false, fired_ = false, stop_ = false;
  std::thread thread_;
};

// Arms a watchdog for one scope; disarms on every way out.
class Armed {
 public:
  Armed(Watchdog& w, Clock::time_point deadline, std::function<void()> fire) : w_(w) { w_.arm(deadline, std::move(fire)); }
  ~Armed() { w_.disarm(); }
  bool disarm() { return w_.disarm(); }

 private:
  Watchdog& w_;
};

}  // namespace bngloo
