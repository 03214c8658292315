// Pool: leases, FIFO waiters, pre-ping, recycle and overflow of one engine role's connections.
#include "pool.hpp"

#include <algorithm>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

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

Pool::Pool(std::string name, config::PoolSettings settings, Factory factory)
    : name_(std::move(name)), settings_(settings), factory_(std::move(factory)) {}

Pool::~Pool() {
  for (BackendConn* c : idle_) c->close();
}

bool Pool::expired(const BackendConn* conn, Clock::time_point now) const {
  return settings_.pool_recycle.count() > 0 && now - conn->created_at() > settings_.pool_recycle;
}

BackendConn* Pool::try_lease() {
  if (disposed_ || head_ != nullptr) return nullptr;
  auto now = Clock::now();
  while (!idle_.empty()) {
    BackendConn* c = idle_.back();
    if (expired(c, now)) {
      idle_.pop_back();
      close_conn(c);
      continue;
    }
    if (settings_.pool_pre_ping && c->needs_ping() && now - c->last_used() > kPrePingAfter) {
      return nullptr;  // wait() pings it
    }
    idle_.pop_back();
    ++in_use_;
    ++stats_.leases;
    return c;
  }
  return nullptr;
}

void Pool::wait(PoolWaiter* w) {
  w->waiting_ = true;
  w->wait_start_ = Clock::now();
  w->next_ = nullptr;
  w->prev_ = tail_;
  if (tail_ != nullptr) tail_->next_ = w; else head_ = w;
  tail_ = w;
  ++waiting_;
  ++stats_.waits;
  serve_waiters();
}

void Pool::wait_front(PoolWaiter* w) {
  w->waiting_ = true;
  w->wait_start_ = Clock::now();
  w->prev_ = nullptr;
  w->next_ = head_;
  if (head_ != nullptr) head_->prev_ = w; else tail_ = w;
  head_ = w;
  ++waiting_;
  serve_waiters();
}

void Pool::take_waiter(PoolWaiter* w) {
  cancel_wait(w);
  count_wait(w);
  ++stats_.leases;
}

void Pool::serve_waiters() {
  if (disposed_) return;  // expire() fails it
  // Idle connections that need a ping: ping them now; each grants the head waiter when done.
  auto now = Clock::now();
  while (!idle_.empty() && opening_ < waiting_) {
    BackendConn* c = idle_.back();
    idle_.pop_back();
    if (expired(c, now)) {
      close_conn(c);
      continue;
    }
    ++opening_;
    c->set_listener(this);
    c->ping();
  }
  open_for_waiters();
}

void Pool::cancel_wait(PoolWaiter* w) {
  if (!w->waiting_) return;
  if (w->prev_ != nullptr) w->prev_->next_ = w->next_; else head_ = w->next_;
  if (w->next_ != nullptr) w->next_->prev_ = w->prev_; else tail_ = w->prev_;
  w->prev_ = w->next_ = nullptr;
  w->waiting_ = false;
  --waiting_;
}

PoolWaiter* Pool::pop_waiter() {
  PoolWaiter* w = head_;
  if (w != nullptr) cancel_wait(w);
  return w;
}

void Pool::count_wait(const PoolWaiter* w) {
  auto waited = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - w->wait_start_);
  stats_.wait_us_total += static_cast<std::uint64_t>(waited.count());
  stats_.wait_us_max = std::max<std::uint64_t>(stats_.wait_us_max, waited.count());
}

void Pool::grant(PoolWaiter* w, BackendConn* conn) {
  count_wait(w);
  ++stats_.leases;
  ++in_use_;
  conn->set_listener(nullptr);
  w->on_lease(conn, Status::ok());
}

void Pool::open_for_waiters() {
  while (!disposed_ && waiting_ > opening_ && total() < capacity()) {
    BackendConn* c = factory_();
    ++opening_;
    ++stats_.opened;
    c->set_listener(this);
    c->open();
  }
}

void Pool::close_conn(BackendConn* conn) {
  ++stats_.closed;
  conn->close();
}

void Pool::release(BackendConn* conn, bool reusable) {
  --in_use_;
  conn->set_listener(nullptr);
  conn->touch();
  if (!reusable || disposed_ || expired(conn, Clock::now())) {
    close_conn(conn);
    open_for_waiters();
    return;
  }
  if (conn->needs_reset()) {  // undo session state before anyone else gets it
    ++opening_;
    conn->set_listener(this);
    conn->reset();
    return;
  }
  if (PoolWaiter* w = pop_waiter()) {
    grant(w, conn);
    return;
  }
  idle_.push_back(conn);  // an overflow connection too: expire() closes it if it stays idle
}

void Pool::on_backend_result(BackendConn* conn, BackendOp op, BackendResult& r) {
  --opening_;
  if (!r.status.is_ok()) {
    ++stats_.errors;
    if (op == BackendOp::kPing || op == BackendOp::kReset) {
      // A dead idle connection, or one that cannot be reset: replace it silently.
      spdlog::info("pool {}: {} failed ({}), replacing the connection", name_, to_string(op),
                   r.status.message());
      close_conn(conn);
      open_for_waiters();
      return;
    }
    spdlog::warn("pool {}: cannot open a connection: {}", name_, r.status.to_string());
    close_conn(conn);
    fail_first(r.status);
    open_for_waiters();  // each remaining waiter gets its own attempt
    return;
  }
  if (disposed_) {
    close_conn(conn);
    return;
  }
  if (PoolWaiter* w = pop_waiter()) {
    grant(w, conn);
  } else {
    conn->set_listener(nullptr);
    idle_.push_back(conn);
  }
}

void Pool::fail_first(Status s) {
  if (PoolWaiter* w = pop_waiter()) w->on_lease(nullptr, std::move(s));
}

std::string Pool::counts() const {
  return fmt::format("size {}, max_overflow {}, in use {}, idle {}, opening {}, waiting {}",
                     settings_.pool_size, settings_.max_overflow, in_use_, idle(), opening_,
                     waiting_);
}

void Pool::expire(Clock::time_point now) {
  while (head_ != nullptr &&
         (disposed_ || now - head_->wait_start_ >= settings_.pool_timeout)) {
    PoolWaiter* w = pop_waiter();
    ++stats_.timeouts;
    double secs = std::chrono::duration<double>(now - w->wait_start_).count();
    Status s(proto::ErrorCategory::kPoolExhausted,
             disposed_ ? fmt::format("pool {} is shut down", name_)
                       : fmt::format("pool_exhausted: no connection for {} within {:.1f} s ({})",
                                     name_, secs, counts()),
             "53300");
    w->on_lease(nullptr, std::move(s));
  }
  // Recycle idle connections past pool_recycle.
  for (std::size_t i = 0; i < idle_.size();) {
    if (expired(idle_[i], now)) {
      BackendConn* c = idle_[i];
      idle_.erase(idle_.begin() + static_cast<std::ptrdiff_t>(i));
      close_conn(c);
    } else {
      ++i;
    }
  }
  // Overflow connections idle for kOverflowLinger: the least recently used sit at the front.
  while (total() > settings_.pool_size && !idle_.empty() &&
         now - idle_.front()->last_used() > kOverflowLinger) {
    BackendConn* c = idle_.front();
    idle_.erase(idle_.begin());
    close_conn(c);
  }
}

void Pool::apply(const config::PoolSettings& s) {
  settings_ = s;
  open_for_waiters();
}

void Pool::dispose() {
  disposed_ = true;
  for (BackendConn* c : idle_) close_conn(c);
  idle_.clear();
}

}  // namespace dbmgr::daemon
