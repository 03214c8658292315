// Pool: leases, FIFO waiters, pre-ping, reset, recycle and overflow of one engine role's
// connections, with every grant delivered on a later loop turn.
#include "pool.hpp"

#include <algorithm>
#include <cassert>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "guard.hpp"

namespace dbmgr::daemon {
namespace {
// A connection idle for less than this is not pinged before a lease: a ping is a round trip
// to the server, and a connection that was fine a moment ago almost always still is. A dead
// one found later fails its first statement, which the session retries on a new connection.
constexpr auto kPrePingAfter = std::chrono::seconds(1);
// An overflow connection (one above pool_size) that nobody needs is closed once it has been
// idle this long. Closing it the moment it comes back (SQLAlchemy's QueuePool) makes a busy
// pool open and close server connections many times a second: each open is a server process
// and a login, and under steady load that churn cost 8x the throughput (dbmgr-bench,
// point-select at 64 clients).
constexpr auto kOverflowLinger = std::chrono::seconds(10);
}  // namespace

std::string_view Pool::to_string(ConnState s) {
  switch (s) {
    case ConnState::kOpening: return "opening";
    case ConnState::kIdle: return "idle";
    case ConnState::kPinging: return "pinging";
    case ConnState::kResetting: return "resetting";
    case ConnState::kGranted: return "granted";
    case ConnState::kLeased: return "leased";
  }
  return "?";
}

Pool::Pool(std::string name, config::PoolSettings settings, Factory factory, ReadyQueue& ready,
           const TimeSource& clock)
    : name_(std::move(name)),
      settings_(settings),
      factory_(std::move(factory)),
      ready_(ready),
      clock_(clock),
      last_active_(clock.now()) {}

Pool::~Pool() {
  ready_.cancel(this);
  // Connections the pool itself holds; leased ones belong to their sessions.
  for (ConnState s : {ConnState::kIdle, ConnState::kOpening, ConnState::kPinging,
                      ConnState::kResetting, ConnState::kGranted}) {
    while (BackendConn* c = list(s).head) close_conn(c);
  }
}

// ---- connection states ----

void Pool::unlink(BackendConn* c) {
  ConnList& l = list(state_of(c));
  PoolLink& p = c->pool_;
  if (p.prev != nullptr) p.prev->pool_.next = p.next; else l.head = p.next;
  if (p.next != nullptr) p.next->pool_.prev = p.prev; else l.tail = p.prev;
  p.prev = p.next = nullptr;
  --l.size;
}

void Pool::move_to(BackendConn* c, ConnState to) {
  unlink(c);
  ConnList& l = list(to);
  PoolLink& p = c->pool_;
  p.state = static_cast<std::uint8_t>(to);
  p.prev = l.tail;
  p.next = nullptr;
  if (l.tail != nullptr) l.tail->pool_.next = c; else l.head = c;
  l.tail = c;
  ++l.size;
  p.state_since = clock_.now();
  // The pool listens while its own operation runs; a holder sets itself when it uses one.
  const bool pools_op = to == ConnState::kOpening || to == ConnState::kPinging ||
                        to == ConnState::kResetting;
  c->set_listener(pools_op ? this : nullptr);
  if (to != ConnState::kLeased && to != ConnState::kGranted) p.holder = LeaseHolder{};
}

void Pool::close_conn(BackendConn* conn) {
  unlink(conn);
  --total_;
  ++stats_.closed;
  conn->close();
}

bool Pool::expired(const BackendConn* conn, Clock::time_point now) const {
  return settings_.pool_recycle.count() > 0 &&
         now - conn->pool_.created_at > settings_.pool_recycle;
}

bool Pool::wants_ping(const BackendConn* conn, Clock::time_point now) const {
  return settings_.pool_pre_ping && conn->needs_ping() &&
         now - conn->pool_.last_used > kPrePingAfter;
}

void Pool::set_holder(BackendConn* conn, const LeaseHolder& holder) { conn->pool_.holder = holder; }

// ---- leases ----

BackendConn* Pool::try_lease(const LeaseHolder& holder) {
  if (disposed_ || waiters_head_ != nullptr || granted_head_ != nullptr) return nullptr;
  auto now = clock_.now();
  while (BackendConn* c = list(ConnState::kIdle).tail) {
    if (expired(c, now)) {
      close_conn(c);
      continue;
    }
    if (wants_ping(c, now)) return nullptr;  // wait() pings it
    move_to(c, ConnState::kLeased);
    set_holder(c, holder);
    ++stats_.leases;
    last_active_ = now;
    return c;
  }
  return nullptr;
}

void Pool::wait(PoolWaiter* w) {
  assert(w->wait_state_ == PoolWaiter::WaitState::kNone);
  w->wait_state_ = PoolWaiter::WaitState::kWaiting;
  w->wait_start_ = clock_.now();
  w->next_ = nullptr;
  w->prev_ = waiters_tail_;
  if (waiters_tail_ != nullptr) waiters_tail_->next_ = w; else waiters_head_ = w;
  waiters_tail_ = w;
  ++waiting_;
  ++stats_.waits;
  last_active_ = w->wait_start_;
  serve();
}

void Pool::wait_front(PoolWaiter* w) {
  assert(w->wait_state_ == PoolWaiter::WaitState::kNone);
  w->wait_state_ = PoolWaiter::WaitState::kWaiting;
  w->wait_start_ = clock_.now();
  w->prev_ = nullptr;
  w->next_ = waiters_head_;
  if (waiters_head_ != nullptr) waiters_head_->prev_ = w; else waiters_tail_ = w;
  waiters_head_ = w;
  ++waiting_;
  serve();
}

void Pool::unlink_waiter(PoolWaiter* w) {
  PoolWaiter*& head = w->wait_state_ == PoolWaiter::WaitState::kWaiting ? waiters_head_ : granted_head_;
  PoolWaiter*& tail = w->wait_state_ == PoolWaiter::WaitState::kWaiting ? waiters_tail_ : granted_tail_;
  if (w->prev_ != nullptr) w->prev_->next_ = w->next_; else head = w->next_;
  if (w->next_ != nullptr) w->next_->prev_ = w->prev_; else tail = w->prev_;
  w->prev_ = w->next_ = nullptr;
  if (w->wait_state_ == PoolWaiter::WaitState::kWaiting) --waiting_;
  w->wait_state_ = PoolWaiter::WaitState::kNone;
}

void Pool::cancel_wait(PoolWaiter* w) {
  switch (w->wait_state_) {
    case PoolWaiter::WaitState::kNone:
      return;
    case PoolWaiter::WaitState::kWaiting:
      unlink_waiter(w);
      return;
    case PoolWaiter::WaitState::kGranted: {
      unlink_waiter(w);
      BackendConn* c = std::exchange(w->granted_conn_, nullptr);
      w->granted_status_ = Status::ok();
      if (c != nullptr) {  // never used: it goes to the next waiter, or back to idle
        move_to(c, ConnState::kLeased);
        release(c, true);
      }
      return;
    }
  }
}

PoolWaiter* Pool::pop_waiter() {
  PoolWaiter* w = waiters_head_;
  if (w != nullptr) unlink_waiter(w);
  return w;
}

void Pool::take_waiter(PoolWaiter* w) {
  assert(w->wait_state_ == PoolWaiter::WaitState::kWaiting);
  unlink_waiter(w);
  count_wait(w);
  ++stats_.leases;
}

void Pool::count_wait(const PoolWaiter* w) {
  auto waited = std::chrono::duration_cast<std::chrono::microseconds>(clock_.now() - w->wait_start_);
  auto us = static_cast<std::uint64_t>(std::max<std::int64_t>(0, waited.count()));
  stats_.wait_us_total += us;
  stats_.wait_us_max = std::max(stats_.wait_us_max, us);
}

void Pool::grant(PoolWaiter* w, BackendConn* conn, Status s) {
  if (w->wait_state_ != PoolWaiter::WaitState::kNone) unlink_waiter(w);
  w->wait_state_ = PoolWaiter::WaitState::kGranted;
  w->granted_conn_ = conn;
  w->granted_status_ = std::move(s);
  w->next_ = nullptr;
  w->prev_ = granted_tail_;
  if (granted_tail_ != nullptr) granted_tail_->next_ = w; else granted_head_ = w;
  granted_tail_ = w;
  if (conn != nullptr) {
    count_wait(w);
    ++stats_.leases;
    move_to(conn, ConnState::kGranted);
    set_holder(conn, w->holder());
    last_active_ = clock_.now();
  }
  ready_.post(this);
}

void Pool::run_deferred() {
  // Each on_lease() may release, wait or cancel again: they post anew, and the ReadyQueue
  // runs this again after the items queued behind it.
  while (PoolWaiter* w = granted_head_) {
    unlink_waiter(w);
    BackendConn* c = std::exchange(w->granted_conn_, nullptr);
    Status s = std::move(w->granted_status_);
    w->granted_status_ = Status::ok();
    if (c != nullptr) move_to(c, ConnState::kLeased);
    // One waiter's exception must not stop the others' grants (guard_callback logs it).
    guard_callback("a pool grant", [&] { w->on_lease(c, std::move(s)); });
  }
}

void Pool::serve() {
  if (disposed_) return;  // expire() fails the waiters
  auto now = clock_.now();
  // Idle connections go to the waiters that have none on its way to them yet.
  while (waiting_ > opening() && list(ConnState::kIdle).tail != nullptr) {
    BackendConn* c = list(ConnState::kIdle).tail;
    if (expired(c, now)) {
      close_conn(c);
      continue;
    }
    if (wants_ping(c, now)) {
      move_to(c, ConnState::kPinging);
      c->ping();
      continue;
    }
    grant(pop_waiter(), c, Status::ok());
  }
  open_for_waiters();
}

void Pool::open_for_waiters() {
  while (!disposed_ && waiting_ > opening() && total_ < capacity()) {
    BackendConn* c = factory_();
    c->pool_ = PoolLink{};
    c->pool_.state = static_cast<std::uint8_t>(ConnState::kOpening);
    c->pool_.created_at = c->pool_.last_used = c->pool_.state_since = clock_.now();
    c->pool_.id = next_id_++;
    ConnList& l = list(ConnState::kOpening);
    c->pool_.prev = l.tail;
    if (l.tail != nullptr) l.tail->pool_.next = c; else l.head = c;
    l.tail = c;
    ++l.size;
    ++total_;
    ++stats_.opened;
    c->set_listener(this);
    c->open();
  }
}

void Pool::release(BackendConn* conn, bool reusable) {
  assert(state_of(conn) == ConnState::kLeased && "release() of a connection not leased");
  auto now = clock_.now();
  conn->pool_.last_used = now;
  last_active_ = now;
  if (!reusable || disposed_ || expired(conn, now)) {
    close_conn(conn);
    open_for_waiters();
    return;
  }
  if (conn->needs_reset()) {  // undo session state before anyone else gets it
    move_to(conn, ConnState::kResetting);
    conn->reset();
    return;
  }
  if (PoolWaiter* w = pop_waiter()) {
    grant(w, conn, Status::ok());
    return;
  }
  move_to(conn, ConnState::kIdle);  // an overflow connection too: expire() closes it if unused
}

void Pool::on_backend_result(BackendConn* conn, BackendOp op, BackendResult&& r) {
  const ConnState was = state_of(conn);
  assert(was == ConnState::kOpening || was == ConnState::kPinging || was == ConnState::kResetting);
  (void)was;
  if (!r.status.is_ok() || r.broken) {
    ++stats_.errors;
    close_conn(conn);
    if (op == BackendOp::kPing || op == BackendOp::kReset) {
      // A dead idle connection, or one that cannot be reset: replace it silently.
      spdlog::info("pool {}: {} failed ({}), replacing the connection", name_, daemon::to_string(op),
                   r.status.message());
      open_for_waiters();
      return;
    }
    spdlog::warn("pool {}: cannot open a connection: {}", name_, r.status.to_string());
    if (PoolWaiter* w = pop_waiter()) {
      grant(w, nullptr, r.status.is_ok() ? Status::connection("the connection broke while opening")
                                         : std::move(r.status));
    }
    open_for_waiters();  // each remaining waiter gets its own attempt
    return;
  }
  if (disposed_) {
    close_conn(conn);
    return;
  }
  if (PoolWaiter* w = pop_waiter()) {
    grant(w, conn, Status::ok());
  } else {
    move_to(conn, ConnState::kIdle);
  }
}

std::string Pool::counts() const {
  return fmt::format("size {}, max_overflow {}, in use {}, idle {}, opening {}, waiting {}",
                     settings_.pool_size, settings_.max_overflow, in_use(), idle(), opening(),
                     waiting_);
}

void Pool::expire(Clock::time_point now) {
  while (waiters_head_ != nullptr &&
         (disposed_ || now - waiters_head_->wait_start_ >= settings_.pool_timeout)) {
    PoolWaiter* w = waiters_head_;
    ++stats_.timeouts;
    double secs = std::chrono::duration<double>(now - w->wait_start_).count();
    Status s(proto::ErrorCategory::kPoolExhausted,
             disposed_ ? fmt::format("pool {} is shut down", name_)
                       : fmt::format("pool_exhausted: no connection for {} within {:.1f} s ({})",
                                     name_, secs, counts()),
             "53300");
    grant(w, nullptr, std::move(s));
  }
  // Recycle idle connections past pool_recycle, or about to reach the server's idle limit.
  for (BackendConn* c = list(ConnState::kIdle).head; c != nullptr;) {
    BackendConn* next = c->pool_.next;
    const Clock::duration limit = c->idle_limit();
    if (expired(c, now) || (limit > Clock::duration::zero() && now - c->pool_.last_used > limit)) {
      close_conn(c);
    }
    c = next;
  }
  // Overflow connections idle for kOverflowLinger: the least recently used sit at the front.
  while (total_ > settings_.pool_size && list(ConnState::kIdle).head != nullptr &&
         now - list(ConnState::kIdle).head->pool_.last_used > kOverflowLinger) {
    close_conn(list(ConnState::kIdle).head);
  }
}

void Pool::apply(const config::PoolSettings& s) {
  settings_ = s;
  serve();
}

void Pool::dispose() {
  disposed_ = true;
  while (BackendConn* c = list(ConnState::kIdle).head) close_conn(c);
}

void Pool::for_each_conn(const std::function<void(const ConnInfo&)>& f) const {
  for (std::size_t s = 0; s < kStates; ++s) {
    for (const BackendConn* c = lists_[s].head; c != nullptr; c = c->pool_.next) {
      f(ConnInfo{c, static_cast<ConnState>(s), c->pool_.id, c->pool_.created_at,
                 c->pool_.last_used, c->pool_.state_since, c->pool_.holder});
    }
  }
}

}  // namespace dbmgr::daemon
