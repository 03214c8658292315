// Pool mechanics against the in-process fake backend and an injected clock: grant order,
// the completion contract (no waiter runs inside release() or wait()), timeouts to the
// millisecond, overflow linger, pre-ping, reset, recycle, cancel of an undelivered grant.
#include <doctest/doctest.h>

#include <functional>
#include <vector>

#include "fake_backend.hpp"
#include "pool.hpp"

using namespace std::chrono_literals;
using dbmgr::daemon::BackendConn;
using dbmgr::daemon::BackendOp;
using dbmgr::daemon::LeaseHolder;
using dbmgr::daemon::ManualClock;
using dbmgr::daemon::Pool;
using dbmgr::daemon::PoolWaiter;
using dbmgr::daemon::ReadyQueue;
using dbmgr::daemon::Status;
using dbmgr::daemon::test::FakeBackend;
using dbmgr::daemon::test::FakeConn;
namespace proto = dbmgr::proto;

namespace {

struct Waiter final : PoolWaiter {
  std::string name;
  BackendConn* conn = nullptr;
  Status status;
  int calls = 0;
  std::vector<std::string>* log = nullptr;
  std::function<void(Waiter&)> then;  // runs inside on_lease
  bool inside_pool_call = false;      // set by the test around calls into the pool
  bool reentered = false;
  void on_lease(BackendConn* c, Status s) override {
    reentered = reentered || inside_pool_call;
    ++calls;
    conn = c;
    status = std::move(s);
    if (log != nullptr) log->push_back(name);
    if (then) then(*this);
  }
};

dbmgr::config::PoolSettings settings(int size, int overflow = 0) {
  dbmgr::config::PoolSettings s;
  s.pool_size = size;
  s.max_overflow = overflow;
  s.pool_timeout = 30s;
  s.pool_pre_ping = true;
  s.pool_recycle = std::chrono::milliseconds(0);
  return s;
}

struct Fixture {
  ManualClock clock;
  ReadyQueue ready;  // no loop: the test drains it
  FakeBackend fake;
  Pool pool;
  explicit Fixture(dbmgr::config::PoolSettings s)
      : pool("test", s, fake.factory(), ready, clock) {}
  ~Fixture() {
    pool.dispose();
    ready.drain();
  }
  // Leases a connection through a waiter, opening it on the fake.
  BackendConn* lease_new(Waiter& w) {
    pool.wait(&w);
    fake.finish_next(BackendOp::kOpen);
    ready.drain();
    REQUIRE(w.conn != nullptr);
    return w.conn;
  }
};

}  // namespace

TEST_CASE("pool: a returned connection reaches the next waiter on a later turn, FIFO") {
  Fixture f(settings(1));
  std::vector<std::string> order;
  Waiter a, b, c;
  a.name = "a";
  b.name = "b";
  c.name = "c";
  for (Waiter* w : {&a, &b, &c}) w->log = &order;
  BackendConn* conn = f.lease_new(a);
  f.pool.wait(&b);
  f.pool.wait(&c);
  CHECK(f.pool.waiting() == 2);
  b.inside_pool_call = true;
  f.pool.release(conn, true);
  b.inside_pool_call = false;
  CHECK(b.calls == 0);  // not inside release()
  CHECK(f.pool.count(Pool::ConnState::kGranted) == 1);
  CHECK(f.pool.in_use() == 1);
  f.ready.drain();
  CHECK(b.calls == 1);
  CHECK(b.conn == conn);
  CHECK(c.calls == 0);
  CHECK_FALSE(b.reentered);
  f.pool.release(b.conn, true);
  f.ready.drain();
  CHECK(c.conn == conn);
  CHECK(order == std::vector<std::string>{"a", "b", "c"});
  f.pool.release(c.conn, true);
  CHECK(f.pool.idle() == 1);
  CHECK(f.pool.stats().opened == 1);
}

TEST_CASE("pool: a waiter that releases inside on_lease hands on without nesting") {
  Fixture f(settings(1));
  Waiter a, b, c;
  BackendConn* conn = f.lease_new(a);
  int depth = 0, max_depth = 0;
  auto pass_on = [&](Waiter& w) {
    ++depth;
    max_depth = std::max(max_depth, depth);
    f.pool.release(w.conn, true);  // at once, from inside the callback
    --depth;
  };
  b.then = pass_on;
  c.then = pass_on;
  f.pool.wait(&b);
  f.pool.wait(&c);
  f.pool.release(conn, true);
  f.ready.drain();
  CHECK(b.calls == 1);
  CHECK(c.calls == 1);
  CHECK(max_depth == 1);  // c ran after b returned, not inside b's release()
  CHECK(f.pool.idle() == 1);
}

TEST_CASE("pool: wait() never calls back inside itself, even with an idle connection") {
  Fixture f(settings(1));
  Waiter a;
  BackendConn* conn = f.lease_new(a);
  f.pool.release(conn, true);
  REQUIRE(f.pool.idle() == 1);
  Waiter b;
  b.inside_pool_call = true;
  f.pool.wait(&b);  // an idle connection that needs no ping: granted, delivered later
  b.inside_pool_call = false;
  CHECK(b.calls == 0);
  f.ready.drain();
  CHECK(b.conn == conn);
  CHECK_FALSE(b.reentered);
}

TEST_CASE("pool: pool_timeout is exact with the injected clock") {
  Fixture f(settings(1));
  Waiter a, b;
  f.lease_new(a);
  f.pool.wait(&b);
  f.clock.advance(29'999ms);
  f.pool.expire(f.clock.now());
  f.ready.drain();
  CHECK(b.calls == 0);
  f.clock.advance(1ms);
  f.pool.expire(f.clock.now());
  CHECK(b.calls == 0);  // delivered later, like every grant
  f.ready.drain();
  CHECK(b.calls == 1);
  CHECK(b.conn == nullptr);
  CHECK(b.status.category() == proto::ErrorCategory::kPoolExhausted);
  CHECK(b.status.sqlstate() == "53300");
  CHECK(b.status.message().find("within 30.0 s") != std::string::npos);
  CHECK(f.pool.stats().timeouts == 1);
  CHECK(f.pool.waiting() == 0);
}

TEST_CASE("pool: overflow connections stay idle 10 s after a burst, then close") {
  Fixture f(settings(1, 2));
  Waiter a, b, c;
  BackendConn* ca = f.lease_new(a);
  BackendConn* cb = f.lease_new(b);
  BackendConn* cc = f.lease_new(c);
  CHECK(f.pool.total() == 3);
  for (BackendConn* x : {ca, cb, cc}) f.pool.release(x, true);
  CHECK(f.pool.idle() == 3);
  f.clock.advance(10s);
  f.pool.expire(f.clock.now());
  CHECK(f.pool.total() == 3);  // not more than 10 s yet
  f.clock.advance(1ms);
  f.pool.expire(f.clock.now());
  CHECK(f.pool.total() == 1);  // back to pool_size
  CHECK(f.fake.closed == 2);
  CHECK(f.pool.stats().closed == 2);
}

TEST_CASE("pool: a waiter cancelled after its grant gives the connection to the next one") {
  Fixture f(settings(1));
  Waiter a, b, c;
  BackendConn* conn = f.lease_new(a);
  f.pool.wait(&b);
  f.pool.wait(&c);
  f.pool.release(conn, true);  // granted to b, not yet delivered
  f.pool.cancel_wait(&b);      // b's client went away
  f.ready.drain();
  CHECK(b.calls == 0);
  CHECK(c.calls == 1);
  CHECK(c.conn == conn);
  CHECK(f.pool.in_use() == 1);
  CHECK(f.pool.waiting() == 0);
}

TEST_CASE("pool: a failed open fails the first waiter only; the next gets its own attempt") {
  Fixture f(settings(2));
  Waiter a, b;
  f.pool.wait(&a);
  f.pool.wait(&b);
  CHECK(f.fake.in_flight.size() == 2);  // two opens for two waiters
  f.fake.finish_next(BackendOp::kOpen,
                     FakeBackend::error(proto::ErrorCategory::kConnection, "refused"));
  f.ready.drain();
  CHECK(a.calls == 1);
  CHECK(a.conn == nullptr);
  CHECK(a.status.category() == proto::ErrorCategory::kConnection);
  CHECK(b.calls == 0);
  f.fake.finish_next(BackendOp::kOpen);
  f.ready.drain();
  CHECK(b.conn != nullptr);
  CHECK(f.pool.stats().errors == 1);
}

TEST_CASE("pool: pre-ping after 1 s idle; a failed ping replaces the connection silently") {
  Fixture f(settings(1));
  Waiter a;
  BackendConn* conn = f.lease_new(a);
  const int first_id = static_cast<FakeConn*>(conn)->id();
  f.pool.release(conn, true);
  f.clock.advance(500ms);
  CHECK(f.pool.try_lease(LeaseHolder{}) == conn);  // used a moment ago: no ping
  f.pool.release(conn, true);
  f.clock.advance(1001ms);
  CHECK(f.pool.try_lease(LeaseHolder{}) == nullptr);  // idle too long: must be pinged
  Waiter b;
  f.pool.wait(&b);
  REQUIRE(f.fake.has(BackendOp::kPing));
  CHECK(f.pool.count(Pool::ConnState::kPinging) == 1);
  f.fake.finish_next(BackendOp::kPing,
                     FakeBackend::error(proto::ErrorCategory::kConnection, "server closed"));
  CHECK(f.pool.count(Pool::ConnState::kOpening) == 1);  // a fresh one is on its way
  f.fake.finish_next(BackendOp::kOpen);
  f.ready.drain();
  CHECK(b.calls == 1);
  CHECK(b.status.is_ok());
  REQUIRE(b.conn != nullptr);
  CHECK(static_cast<FakeConn*>(b.conn)->id() != first_id);  // (the address may be reused)
  CHECK(f.fake.closed == 1);
}

TEST_CASE("pool: a dirty connection is reset before the next waiter gets it") {
  Fixture f(settings(1));
  Waiter a, b;
  BackendConn* conn = f.lease_new(a);
  static_cast<FakeConn*>(conn)->dirty_ = true;
  f.pool.wait(&b);
  f.pool.release(conn, true);
  f.ready.drain();
  CHECK(b.calls == 0);
  CHECK(f.pool.count(Pool::ConnState::kResetting) == 1);
  f.fake.finish_next(BackendOp::kReset);
  CHECK(b.calls == 0);
  f.ready.drain();
  CHECK(b.conn == conn);
}

TEST_CASE("pool: pool_recycle retires old connections on return and when idle") {
  auto s = settings(2);
  s.pool_recycle = 60s;
  Fixture f(s);
  Waiter a, b;
  BackendConn* ca = f.lease_new(a);
  BackendConn* cb = f.lease_new(b);
  f.pool.release(cb, true);
  f.clock.advance(61s);
  f.pool.release(ca, true);  // too old: closed instead of kept
  CHECK(f.fake.closed == 1);
  f.pool.expire(f.clock.now());  // the idle one too
  CHECK(f.fake.closed == 2);
  CHECK(f.pool.total() == 0);
}

TEST_CASE("pool: idle connections close before the server's idle limit (wait_timeout)") {
  auto s = settings(2);
  s.pool_pre_ping = false;  // the limit alone must keep dead connections out of leases
  Fixture f(s);
  Waiter a, b;
  BackendConn* ca = f.lease_new(a);
  BackendConn* cb = f.lease_new(b);
  static_cast<dbmgr::daemon::test::FakeConn*>(ca)->idle_limit_ = 27s;  // 90% of a 30 s wait_timeout
  f.pool.release(ca, true);
  f.pool.release(cb, true);  // no limit: kept
  f.clock.advance(26s);
  f.pool.expire(f.clock.now());
  CHECK(f.fake.closed == 0);
  f.clock.advance(2s);
  f.pool.expire(f.clock.now());
  CHECK(f.fake.closed == 1);
  CHECK(f.pool.total() == 1);
  // The next lease gets the one without a limit, not a connection the server dropped.
  Waiter c;
  f.pool.wait(&c);
  f.ready.drain();
  CHECK(c.conn == cb);
  f.pool.release(c.conn, true);
}

TEST_CASE("pool: servers listing shows every connection with its state and holder") {
  Fixture f(settings(2));
  Waiter a;
  BackendConn* conn = f.lease_new(a);
  f.pool.set_holder(conn, LeaseHolder{7, 3, "session"});
  Waiter b;
  f.pool.wait(&b);  // opening a second one
  std::vector<std::string> seen;
  f.pool.for_each_conn([&](const Pool::ConnInfo& c) {
    seen.push_back(std::string(Pool::to_string(c.state)) + ":" + std::to_string(c.holder.client_id) +
                   ":" + std::to_string(c.holder.session_id));
  });
  std::sort(seen.begin(), seen.end());
  CHECK(seen == std::vector<std::string>{"leased:7:3", "opening:0:0"});
}

TEST_CASE("pool: dispose fails waiters and closes connections as they come back") {
  Fixture f(settings(1));
  Waiter a, b;
  BackendConn* conn = f.lease_new(a);
  f.pool.wait(&b);
  f.pool.dispose();
  f.pool.expire(f.clock.now());
  f.ready.drain();
  CHECK(b.calls == 1);
  CHECK(b.status.category() == proto::ErrorCategory::kPoolExhausted);
  f.pool.release(conn, true);
  CHECK(f.fake.closed == 1);
}
