// TimeSource: where the daemon reads the time, so that tests can inject a clock.
//
// Every timeout decision of the daemon (pool_timeout, idle_in_transaction_timeout, overflow
// linger, pool_recycle, pre-ping age, engine_idle_timeout, statement_timeout of SQLite, the
// drain deadline) compares against TimeSource::now(). Production uses the steady clock;
// unit tests pass a ManualClock and move it forward themselves, so a 10 s timeout is tested
// in microseconds and decided the same way on a loaded machine as on a quiet one.
//
// Threading: now() may be called from any thread (SQLite's progress handler runs on a
// worker); ManualClock keeps its time in an atomic.
#pragma once

#include <atomic>
#include <chrono>

namespace dbmgr::daemon {

using Clock = std::chrono::steady_clock;

class TimeSource {
 public:
  virtual Clock::time_point now() const = 0;
  // The steady clock.
  static const TimeSource& system();

 protected:
  virtual ~TimeSource() = default;
};

// A clock that only moves when told to. Starts at an arbitrary non-zero point.
class ManualClock final : public TimeSource {
 public:
  ManualClock() : ns_(Clock::now().time_since_epoch().count()) {}
  Clock::time_point now() const override {
    return Clock::time_point(Clock::duration(ns_.load(std::memory_order_acquire)));
  }
  void advance(Clock::duration d) { ns_.fetch_add(d.count(), std::memory_order_acq_rel); }

 private:
  std::atomic<Clock::rep> ns_;
};

}  // namespace dbmgr::daemon
