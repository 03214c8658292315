// Pool: the backend connections of one engine role, and the FIFO of sessions waiting for one.
//
// Knobs follow SQLAlchemy's QueuePool: pool_size connections are kept, up to max_overflow
// more are opened under load and closed once idle for 10 s (QueuePool closes them when
// returned, which makes a busy pool reconnect all the time), a waiter gets pool_exhausted after
// pool_timeout, pool_pre_ping checks a connection that has been idle for a second or more with
// a round trip before it is leased (a failed ping replaces it silently; backends whose
// connections cannot go stale, SQLite, are never pinged), pool_recycle retires connections
// older than that.
//
// Every connection is in exactly one state, and each state is a list of the pool's
// (PgBouncer's rule); move_to() is the one transition function:
//   kOpening    open() in flight (the pool listens)
//   kIdle       ready to lease; most recently returned at the back
//   kPinging    pre-ping in flight before it goes to the first waiter
//   kResetting  reset() in flight after a return (session state is undone before reuse)
//   kGranted    given to a waiter whose on_lease() has not run yet (delivered on a later
//               loop turn through the ReadyQueue, never inside release() or wait())
//   kLeased     held by a session, a group commit or a probe
// A waiter is in waiters_ (kWaiting) until it is granted a connection or an error
// (kGranted, in granted_) and then delivered; cancel_wait() takes it out of either, and a
// connection granted to it goes back to the pool.
//
// The completion contract: on_lease() is only ever called from the pool's run_deferred(),
// so no pool call runs a waiter's callback inside itself, and a session that releases its
// connection has finished reading its own outcome before the next waiter gets it.
//
// Threading: loop thread only. Time comes from the injected TimeSource; timeouts are driven
// by the janitor calling expire().
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "backend/backend.hpp"
#include "clock.hpp"
#include "dbmgr/config/config.hpp"
#include "ready_queue.hpp"

namespace dbmgr::daemon {

class PoolWaiter {
 public:
  // Called once per wait(), on a later loop turn: with a connection (now leased to the
  // waiter) or with an error.
  virtual void on_lease(BackendConn* conn, Status status) = 0;
  // True for a one-shot write that may share a group commit with other waiters (SQLite).
  virtual bool groupable() const { return false; }
  // True for a session whose pipelined transaction, COMMIT included, waits in full: it may
  // share a group commit with other such waiters (SQLite).
  virtual bool batch_groupable() const { return false; }
  virtual LeaseHolder holder() const { return {}; }
  bool waiting() const { return wait_state_ != WaitState::kNone; }

 protected:
  virtual ~PoolWaiter() = default;

 private:
  friend class Pool;
  enum class WaitState : std::uint8_t { kNone, kWaiting, kGranted };
  WaitState wait_state_ = WaitState::kNone;
  PoolWaiter* prev_ = nullptr;  // in waiters_ or granted_, as wait_state_ says
  PoolWaiter* next_ = nullptr;
  Clock::time_point wait_start_{};
  BackendConn* granted_conn_ = nullptr;
  Status granted_status_;
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

class Pool final : private BackendListener, private Deferred {
 public:
  using Factory = std::function<BackendConn*()>;
  enum class ConnState : std::uint8_t { kOpening, kIdle, kPinging, kResetting, kGranted, kLeased };
  static constexpr std::size_t kStates = 6;
  static std::string_view to_string(ConnState s);

  Pool(std::string name, config::PoolSettings settings, Factory factory, ReadyQueue& ready,
       const TimeSource& clock);
  ~Pool();
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  // A connection at once if one is idle, no one waits before us and it needs no ping.
  BackendConn* try_lease(const LeaseHolder& holder);
  // Queues `w`; it gets on_lease() on a later loop turn (never from inside this call).
  void wait(PoolWaiter* w);
  // Takes `w` out of the queue, or back its grant if it was not delivered yet (client gone).
  void cancel_wait(PoolWaiter* w);
  // Group commit: the first waiter in line (null if none), and taking it out of the queue to
  // share the connection just granted to the waiter before it (its wait counts as a lease).
  PoolWaiter* front_waiter() const { return waiters_head_; }
  void take_waiter(PoolWaiter* w);
  // Queues `w` first in line: a request taken out of the queue that must still run next.
  void wait_front(PoolWaiter* w);
  // Returns a leased connection. `reusable` false closes it. The transaction must be over.
  // The next waiter gets it on a later loop turn.
  void release(BackendConn* conn, bool reusable);
  // Who holds `conn` now (group commit re-labels the writer it runs on).
  void set_holder(BackendConn* conn, const LeaseHolder& holder);
  // Fails waiters past pool_timeout; closes recycled idle connections.
  void expire(Clock::time_point now);
  // New knobs (reload): takes effect for the next lease and release.
  void apply(const config::PoolSettings& s);
  // Closes idle connections now and the rest as they are returned; no new leases.
  void dispose();

  const std::string& name() const { return name_; }
  const config::PoolSettings& settings() const { return settings_; }
  int capacity() const { return settings_.pool_size + settings_.max_overflow; }
  int count(ConnState s) const { return lists_[static_cast<std::size_t>(s)].size; }
  int in_use() const { return count(ConnState::kLeased) + count(ConnState::kGranted); }
  int idle() const { return count(ConnState::kIdle); }
  // Connections on their way to a waiter or back to idle: opening, pinging, resetting.
  int opening() const {
    return count(ConnState::kOpening) + count(ConnState::kPinging) + count(ConnState::kResetting);
  }
  int waiting() const { return waiting_; }
  int total() const { return total_; }
  bool disposed() const { return disposed_; }
  const PoolStats& stats() const { return stats_; }
  Clock::time_point last_active() const { return last_active_; }

  struct ConnInfo {
    const BackendConn* conn;
    ConnState state;
    std::uint64_t id;
    Clock::time_point created_at;
    Clock::time_point last_used;
    Clock::time_point state_since;
    LeaseHolder holder;
  };
  void for_each_conn(const std::function<void(const ConnInfo&)>& f) const;

 private:
  struct ConnList {
    BackendConn* head = nullptr;
    BackendConn* tail = nullptr;
    int size = 0;
  };
  // The one transition function of a pooled connection: leaves its list, joins `to`'s.
  void move_to(BackendConn* c, ConnState to);
  void unlink(BackendConn* c);
  ConnList& list(ConnState s) { return lists_[static_cast<std::size_t>(s)]; }
  static ConnState state_of(const BackendConn* c) { return static_cast<ConnState>(c->pool_.state); }
  void on_backend_result(BackendConn* conn, BackendOp op, BackendResult&& r) override;
  void run_deferred() override;
  // Gives `conn` (or, if null, the error `s`) to `w`, which leaves the queue first.
  void grant(PoolWaiter* w, BackendConn* conn, Status s);
  void count_wait(const PoolWaiter* w);
  void serve();
  PoolWaiter* pop_waiter();
  void unlink_waiter(PoolWaiter* w);
  void open_for_waiters();
  void close_conn(BackendConn* conn);
  bool expired(const BackendConn* conn, Clock::time_point now) const;
  bool wants_ping(const BackendConn* conn, Clock::time_point now) const;
  std::string counts() const;

  std::string name_;
  config::PoolSettings settings_;
  Factory factory_;
  ReadyQueue& ready_;
  const TimeSource& clock_;
  std::array<ConnList, kStates> lists_{};
  int total_ = 0;
  int waiting_ = 0;
  PoolWaiter* waiters_head_ = nullptr;
  PoolWaiter* waiters_tail_ = nullptr;
  PoolWaiter* granted_head_ = nullptr;  // granted, on_lease() pending (FIFO)
  PoolWaiter* granted_tail_ = nullptr;
  bool disposed_ = false;
  std::uint64_t next_id_ = 1;
  PoolStats stats_;
  Clock::time_point last_active_;
};

}  // namespace dbmgr::daemon
