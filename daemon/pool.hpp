// Pool: the backend connections of one engine role, and the FIFO of sessions waiting for one.
//
// Knobs follow SQLAlchemy's QueuePool: pool_size connections are kept, up to max_overflow
// more are opened under load and closed once idle for 10 s (QueuePool closes them when
// returned, which makes a busy pool reconnect all the time), a waiter gets pool_exhausted after
// pool_timeout, pool_pre_ping validates a connection before a lease (a failed ping replaces
// it silently), pool_recycle retires connections older than that.
//
// Every connection is in exactly one place:
//   idle_       idle, ready to lease (most recently returned at the back)
//   in_use_     leased to a session (counted; the session holds the pointer)
//   opening_    open() or a pre-ping in flight, owned by the pool until it completes
// A waiter is in waiters_ until it is granted a connection, fails, times out or cancels.
//
// Threading: loop thread only. Timeouts are driven by the janitor calling expire_waiters().
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "backend.hpp"
#include "dbmgr/config/config.hpp"

namespace dbmgr::daemon {

class PoolWaiter {
 public:
  // Called once: with a connection (now leased to the waiter) or with an error.
  virtual void on_lease(BackendConn* conn, Status status) = 0;
  // True for a one-shot write that may share a group commit with other waiters (SQLite).
  virtual bool groupable() const { return false; }

 protected:
  virtual ~PoolWaiter() = default;

 private:
  friend class Pool;
  PoolWaiter* prev_ = nullptr;
  PoolWaiter* next_ = nullptr;
  bool waiting_ = false;
  Clock::time_point wait_start_{};
};

struct PoolStats {
  std::uint64_t leases = 0;        // connections handed to sessions
  std::uint64_t waits = 0;         // leases that had to wait
  std::uint64_t wait_us_total = 0;
  std::uint64_t wait_us_max = 0;
  std::uint64_t timeouts = 0;      // pool_exhausted errors
  std::uint64_t errors = 0;        // failed opens, pings, resets
  std::uint64_t opened = 0;
  std::uint64_t closed = 0;
};

class Pool final : private BackendListener {
 public:
  using Factory = std::function<BackendConn*()>;

  Pool(std::string name, config::PoolSettings settings, Factory factory);
  ~Pool();
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  // A connection at once if one is idle, no one waits before us and it needs no ping.
  BackendConn* try_lease();
  // Queues `w`; it gets on_lease() later (never from inside this call).
  void wait(PoolWaiter* w);
  // Removes a waiter that no longer wants a connection (client gone).
  void cancel_wait(PoolWaiter* w);
  // Group commit: the first waiter in line (null if none), and taking it out of the queue to
  // share the connection just granted to the waiter before it (its wait counts as a lease).
  PoolWaiter* front_waiter() const { return head_; }
  void take_waiter(PoolWaiter* w);
  // Queues `w` first in line: a request taken out of the queue that must still run next.
  void wait_front(PoolWaiter* w);
  // Returns a leased connection. `reusable` false closes it. The transaction must be over.
  void release(BackendConn* conn, bool reusable);
  // Fails waiters past pool_timeout; closes recycled idle connections.
  void expire(Clock::time_point now);
  // New knobs (reload): takes effect for the next lease and release.
  void apply(const config::PoolSettings& s);
  // Closes idle connections now and the rest as they are returned; no new leases.
  void dispose();

  const std::string& name() const { return name_; }
  const config::PoolSettings& settings() const { return settings_; }
  int capacity() const { return settings_.pool_size + settings_.max_overflow; }
  int in_use() const { return in_use_; }
  int idle() const { return static_cast<int>(idle_.size()); }
  int opening() const { return opening_; }
  int waiting() const { return waiting_; }
  int total() const { return in_use_ + idle() + opening_; }
  bool disposed() const { return disposed_; }
  const PoolStats& stats() const { return stats_; }

 private:
  void on_backend_result(BackendConn* conn, BackendOp op, BackendResult& r) override;
  void grant(PoolWaiter* w, BackendConn* conn);
  void count_wait(const PoolWaiter* w);
  void serve_waiters();
  void fail_first(Status s);
  PoolWaiter* pop_waiter();
  void open_for_waiters();
  void close_conn(BackendConn* conn);
  bool expired(const BackendConn* conn, Clock::time_point now) const;
  std::string counts() const;

  std::string name_;
  config::PoolSettings settings_;
  Factory factory_;
  std::vector<BackendConn*> idle_;
  int in_use_ = 0;
  int opening_ = 0;
  int waiting_ = 0;
  PoolWaiter* head_ = nullptr;
  PoolWaiter* tail_ = nullptr;
  bool disposed_ = false;
  PoolStats stats_;
};

}  // namespace dbmgr::daemon
