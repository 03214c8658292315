// Sessions against the fake backend in an in-process daemon with an injected clock: the
// completion contract seen from the client (a failed commit reaches its client although
// another session waits for the connection), timeouts decided by the clock, kill, the
// pipeline rule after an error, and abandonment.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "inproc.hpp"

using namespace std::chrono_literals;
using dbmgr::daemon::BackendOp;
using dbmgr::daemon::test::FakeBackend;
using dbmgr::daemon::test::InProc;
using dbmgr::daemon::test::InProcOptions;
using dbmgr::daemon::test::RawClient;
using dbmgr::daemon::test::Reply;
namespace proto = dbmgr::proto;
using T = proto::MsgType;

namespace {

const char* kOnePool = "pool:\n  pool_size: 1\n  max_overflow: 0\n";

// Opens session `sid` on client `c` and waits for its kOk.
void open_session(InProc& d, RawClient& c, std::uint32_t sid) {
  auto id = c.open(sid);
  d.step();
  Reply* r = c.final_reply(id);
  REQUIRE(r != nullptr);
  REQUIRE(r->type() == T::kOk);
}

// Runs one statement of session `sid` that the fake completes with `result`.
void run_statement(InProc& d, RawClient& c, std::uint32_t sid, dbmgr::daemon::BackendResult result) {
  auto id = c.execute(sid, "INSERT INTO t VALUES (1)");
  d.step();
  if (!d.fake.has(BackendOp::kExecute)) {  // a first lease opens the connection
    REQUIRE(d.fake.finish_next(BackendOp::kOpen) != nullptr);
    d.step();
  }
  REQUIRE(d.fake.finish_next(BackendOp::kExecute, std::move(result)) != nullptr);
  d.step();
  REQUIRE(c.final_reply(id) != nullptr);
}

}  // namespace

TEST_CASE("session: a failed commit reaches its client while another session waits for the connection") {
  InProc d(InProcOptions{kOnePool});
  RawClient& a = d.client();
  RawClient& b = d.client();
  open_session(d, a, 1);
  open_session(d, b, 1);
  run_statement(d, a, 1, FakeBackend::ok(/*in_tx=*/true));
  auto b_exec = b.execute(1, "INSERT INTO t VALUES (2)");
  d.step();
  CHECK(b.final_reply(b_exec) == nullptr);  // waits for A's connection
  CHECK_FALSE(d.fake.has(BackendOp::kExecute));
  auto a_commit = a.simple(T::kCommit, 1);
  d.step();
  REQUIRE(d.fake.has(BackendOp::kCommit));
  const std::size_t history_before = d.fake.history.size();
  // The commit fails (deferred FK). Its result is moved to A's session: the grant to B must
  // neither run inside this completion nor touch A's outcome.
  d.fake.finish_next(BackendOp::kCommit,
                     FakeBackend::error(proto::ErrorCategory::kConstraint,
                                        "insert or update violates foreign key constraint",
                                        "23503"));
  CHECK(d.fake.history.size() == history_before);  // B's execute did not start inside it
  d.step();
  Reply* ra = a.final_reply(a_commit);
  REQUIRE(ra != nullptr);
  REQUIRE(ra->type() == T::kError);
  CHECK(ra->error()->category == proto::ErrorCategory::kConstraint);
  CHECK(ra->error()->sqlstate == "23503");
  REQUIRE(d.fake.has(BackendOp::kExecute));  // now B runs, on the same connection
  d.fake.finish_next(BackendOp::kExecute, FakeBackend::ok(true));
  d.step();
  Reply* rb = b.final_reply(b_exec);
  REQUIRE(rb != nullptr);
  CHECK(rb->type() == T::kComplete);
  CHECK(d.fake.max_depth == 1);
  // A is failed until it acknowledges: commit is refused, rollback answers ok.
  auto again = a.simple(T::kCommit, 1);
  d.step();
  REQUIRE(a.final_reply(again) != nullptr);
  CHECK(a.type_of(again) == T::kError);
  auto rb2 = a.simple(T::kRollback, 1);
  d.step();
  CHECK(a.type_of(rb2) == T::kOk);
}

TEST_CASE("session: idle_in_transaction_timeout is decided by the clock, to the millisecond") {
  InProc d(InProcOptions{std::string(kOnePool) + "  idle_in_transaction_timeout: 5s\n"});
  RawClient& a = d.client();
  open_session(d, a, 1);
  run_statement(d, a, 1, FakeBackend::ok(true));
  d.clock.advance(4999ms);
  d.server->janitor_tick();
  d.step();
  CHECK_FALSE(d.fake.has(BackendOp::kRollback));
  d.clock.advance(1ms);
  d.server->janitor_tick();
  d.step();
  REQUIRE(d.fake.has(BackendOp::kRollback));
  d.fake.finish_next(BackendOp::kRollback);
  d.step();
  auto id = a.execute(1, "SELECT 1");
  d.step();
  Reply* r = a.final_reply(id);
  REQUIRE(r != nullptr);
  REQUIRE(r->type() == T::kError);
  CHECK(r->error()->category == proto::ErrorCategory::kTimeout);
  CHECK(std::string(r->error()->message).find("idle_in_transaction_timeout") != std::string::npos);
}

TEST_CASE("session: an error fails the pipeline until rollback (protocol.md section 10)") {
  InProc d(InProcOptions{kOnePool});
  RawClient& a = d.client();
  open_session(d, a, 7);
  auto first = a.execute(7, "INSERT A");
  auto bad = a.execute(7, "INSERT B");
  auto skipped = a.execute(7, "INSERT C");
  auto commit = a.simple(T::kCommit, 7);
  auto rollback = a.simple(T::kRollback, 7);
  auto after = a.execute(7, "INSERT D");
  d.step();
  d.fake.finish_next(BackendOp::kOpen);
  d.step();
  // A, B and C were queued together: one batch (the commit behind them ends it).
  REQUIRE(d.fake.has(BackendOp::kBatch));
  auto& conn = *d.fake.in_flight.front().conn;
  CHECK(conn.batch_sql() == std::vector<std::string>{"INSERT A", "INSERT B", "INSERT C"});
  d.fake.in_flight.pop_front();
  conn.finish_batch_with(FakeBackend::ok(true), FakeBackend::error(proto::ErrorCategory::kConstraint,
                                                                  "duplicate", "23505"));
  d.step();
  REQUIRE(d.fake.has(BackendOp::kExecute));  // D, in a new transaction
  d.fake.finish_next(BackendOp::kExecute, FakeBackend::ok(true));
  d.step();
  CHECK(a.type_of(first) == T::kComplete);
  CHECK(a.category_of(bad) == proto::ErrorCategory::kConstraint);
  CHECK(a.error_text(skipped) ==
        "invalid_request: skipped after earlier error in pipeline");
  CHECK(a.error_text(commit) ==
        "invalid_request: skipped after earlier error in pipeline");
  CHECK(a.type_of(rollback) == T::kOk);
  CHECK(a.type_of(after) == T::kComplete);
  CHECK(d.fake.history.back().sql == "INSERT D");
}

TEST_CASE("session: kill while a statement runs; every later request but close gets killed") {
  InProc d(InProcOptions{kOnePool});
  RawClient& a = d.client();
  RawClient& op = d.client();
  open_session(d, a, 3);
  auto id = a.execute(3, "SELECT pg_sleep(100)");
  d.step();
  d.fake.finish_next(BackendOp::kOpen);
  d.step();
  REQUIRE(d.fake.has(BackendOp::kExecute));
  auto sessions = op.admin(proto::AdminCommand::kSessions);
  d.step();
  auto list = nlohmann::json::parse(std::get<proto::AdminResult>(op.final_reply(sessions)->msg).json);
  std::string sid;
  for (auto& s : list) {
    if (s["session_id"] == 3) sid = s["id"];
  }
  REQUIRE(!sid.empty());
  auto kill = op.admin(proto::AdminCommand::kKill, sid);
  d.step();
  CHECK(op.type_of(kill) == T::kAdminResult);
  auto& conn = *d.fake.in_flight.front().conn;
  CHECK(conn.cancels_ == 1);
  // The driver reports the cancel; the session reports the kill.
  d.fake.finish_next(BackendOp::kExecute,
                     FakeBackend::error(proto::ErrorCategory::kCancelled, "statement cancelled",
                                        "57014", /*in_tx=*/true));
  d.step();
  REQUIRE(d.fake.has(BackendOp::kRollback));  // the backend could not roll back: the session does
  d.fake.finish_next(BackendOp::kRollback);
  d.step();
  CHECK(a.category_of(id) == proto::ErrorCategory::kKilled);
  auto rb = a.simple(T::kRollback, 3);
  auto cl = a.simple(T::kClose, 3);
  d.step();
  CHECK(a.category_of(rb) == proto::ErrorCategory::kKilled);
  CHECK(a.type_of(cl) == T::kOk);
}

TEST_CASE("session: a client gone while its session waits leaves the queue; the next waiter is served") {
  InProc d(InProcOptions{kOnePool});
  RawClient& a = d.client();
  RawClient& b = d.client();
  RawClient& c = d.client();
  for (RawClient* x : {&a, &b, &c}) open_session(d, *x, 1);
  run_statement(d, a, 1, FakeBackend::ok(true));
  b.execute(1, "B");
  auto c_exec = c.execute(1, "C");
  d.step();
  d.drop(b);  // b dies while waiting
  d.step();
  auto commit = a.simple(T::kCommit, 1);
  d.step();
  d.fake.finish_next(BackendOp::kCommit);
  d.step();
  CHECK(a.type_of(commit) == T::kOk);
  REQUIRE(d.fake.has(BackendOp::kExecute));
  CHECK(d.fake.in_flight.front().sql == "C");
  d.fake.finish_next(BackendOp::kExecute, FakeBackend::ok(false));
  d.step();
  CHECK(c.type_of(c_exec) == T::kComplete);
}

TEST_CASE("session: a client killed mid-transaction is rolled back before the waiter gets the connection") {
  InProc d(InProcOptions{kOnePool});
  RawClient& a = d.client();
  RawClient& b = d.client();
  open_session(d, a, 1);
  open_session(d, b, 1);
  run_statement(d, a, 1, FakeBackend::ok(true));
  auto b_exec = b.execute(1, "B");
  d.step();
  d.drop(a);
  d.step();
  REQUIRE(d.fake.has(BackendOp::kRollback));
  CHECK_FALSE(d.fake.has(BackendOp::kExecute));  // B waits for the rollback
  d.fake.finish_next(BackendOp::kRollback);
  d.step();
  REQUIRE(d.fake.has(BackendOp::kExecute));
  d.fake.finish_next(BackendOp::kExecute, FakeBackend::ok(true));
  d.step();
  CHECK(b.type_of(b_exec) == T::kComplete);
}

TEST_CASE("session: pool_timeout through the janitor with the clock") {
  InProc d(InProcOptions{std::string(kOnePool) + "  pool_timeout: 2s\n"});
  RawClient& a = d.client();
  RawClient& b = d.client();
  open_session(d, a, 1);
  open_session(d, b, 1);
  run_statement(d, a, 1, FakeBackend::ok(true));
  auto b_exec = b.execute(1, "B");
  d.step();
  d.clock.advance(1999ms);
  d.server->janitor_tick();
  d.step();
  CHECK(b.final_reply(b_exec) == nullptr);
  d.clock.advance(1ms);
  d.server->janitor_tick();
  d.step();
  Reply* r = b.final_reply(b_exec);
  REQUIRE(r != nullptr);
  CHECK(r->error()->category == proto::ErrorCategory::kPoolExhausted);
}

TEST_CASE("engine_idle_timeout: the janitor disposes an engine without sessions, by the clock") {
  InProc d(InProcOptions{"engine_idle_timeout: 60s\n"});
  RawClient& a = d.client();
  open_session(d, a, 1);
  run_statement(d, a, 1, FakeBackend::ok(false));
  d.clock.advance(120s);
  d.server->janitor_tick();
  CHECK(d.server->totals().engines_disposed == 0);  // a session is open on it
  auto cl = a.simple(T::kClose, 1);
  d.step();
  CHECK(a.type_of(cl) == T::kOk);
  d.clock.advance(59s);
  d.server->janitor_tick();
  CHECK(d.server->totals().engines_disposed == 0);
  d.clock.advance(1001ms);
  d.server->janitor_tick();
  CHECK(d.server->totals().engines_disposed == 1);
  CHECK(d.fake.closed == 1);  // its idle connection was closed
  // Used again: made again.
  open_session(d, a, 2);
  CHECK(d.server->totals().engines_created == 2);
}

TEST_CASE("session: a kill while rows wait for a slow client ends the stream and rolls back") {
  InProc d(InProcOptions{kOnePool});
  RawClient& a = d.client();
  RawClient& op = d.client();
  open_session(d, a, 1);
  auto id = a.execute(1, "SELECT big FROM t");
  d.step();
  d.fake.finish_next(BackendOp::kOpen);
  d.step();
  REQUIRE(d.fake.has(BackendOp::kExecute));
  // The first batch: 3 MB, more to come. The client reads nothing yet, so the daemon's
  // output backs up and the session pauses the stream.
  dbmgr::daemon::BackendResult r = FakeBackend::ok(true);
  r.more = true;
  {
    proto::Encoder enc(r.frames.bytes());
    proto::ColumnDesc col{"big", proto::ValueTag::kText};
    enc.columns(id, 1, &col, 1);
    std::string big(3'000'000, 'x');
    proto::RowBatchEncoder batch(enc, id, 1, 1);
    batch.text(big);
    batch.end_row();
    batch.finish();
  }
  d.fake.finish_next(BackendOp::kExecute, std::move(r));
  d.step();
  // The daemon resumes at once (its output was empty when the batch came); the next batch
  // finds 3 MB queued for the client, and the stream pauses.
  REQUIRE(d.fake.has(BackendOp::kExecute));
  dbmgr::daemon::BackendResult r2 = FakeBackend::ok(true);
  r2.more = true;
  {
    proto::Encoder enc(r2.frames.bytes());
    proto::RowBatchEncoder batch(enc, id, 1, 1);
    batch.text("second");
    batch.end_row();
    batch.finish();
  }
  d.fake.finish_next(BackendOp::kExecute, std::move(r2));
  d.step();
  CHECK_FALSE(d.fake.has(BackendOp::kExecute));  // not resumed: paused for the client
  // (The daemon reads no request of a client whose replies back up, so the kill comes from
  // an operator's connection.)
  auto kill = op.admin(proto::AdminCommand::kKill, "1:1");
  d.step();
  CHECK(op.type_of(kill) == T::kAdminResult);
  REQUIRE(d.fake.has(BackendOp::kRollback));  // the stream ends with its transaction
  d.fake.finish_next(BackendOp::kRollback);
  for (int i = 0; i < 50 && a.final_reply(id) == nullptr; ++i) d.step();  // read it all
  CHECK(a.category_of(id) == proto::ErrorCategory::kKilled);
  auto next = a.execute(1, "SELECT 1");
  d.step();
  CHECK(a.category_of(next) == proto::ErrorCategory::kKilled);
  auto cl = a.simple(T::kClose, 1);
  d.step();
  CHECK(a.type_of(cl) == T::kOk);
}

namespace {

dbmgr::daemon::BackendResult big_result(std::uint32_t rid, std::uint32_t sid, std::size_t bytes,
                                        bool in_tx) {
  dbmgr::daemon::BackendResult r = FakeBackend::ok(in_tx);
  proto::Encoder enc(r.frames.bytes());
  proto::ColumnDesc col{"v", proto::ValueTag::kText};
  enc.columns(rid, sid, &col, 1);
  proto::RowBatchEncoder batch(enc, rid, sid, 1);
  batch.text(std::string(bytes, 'x'));
  batch.end_row();
  batch.finish();
  proto::Complete done;
  done.in_transaction = in_tx;
  enc.complete(rid, sid, done);
  return r;
}

}  // namespace

TEST_CASE("session: a write failing inside a session's result closes the client later, and its sessions roll back") {
  // (Found by review: the client was closed inside the result callback, and the session went
  // on as if it still had a client: its transaction and connection were never given back.)
  InProc d(InProcOptions{"pool:\n  pool_size: 3\n  max_overflow: 0\n"});
  RawClient& a = d.client();
  RawClient& op = d.client();
  for (std::uint32_t s : {1u, 2u, 3u}) open_session(d, a, s);
  auto e1 = a.execute(1, "BIG");
  auto e2 = a.execute(2, "TWO");
  a.execute(3, "THREE");
  d.step();
  while (d.fake.finish_next(BackendOp::kOpen) != nullptr) d.step();
  d.step();
  REQUIRE(d.fake.in_flight.size() == 3);
  // 800 KB the client does not read stay queued (below kHighWater: the daemon still reads).
  d.fake.finish_next(BackendOp::kExecute, big_result(e1, 1, 800 * 1024, false));
  d.step();
  // The client breaks the protocol: the daemon sends the error and shuts the socket down.
  {
    std::vector<std::uint8_t> out;
    proto::Encoder enc(out);
    enc.empty(T::kPong, 99, 0);
    a.send(out);
  }
  d.step(1);
  d.fake.finish_next(BackendOp::kExecute, FakeBackend::ok(true));
  d.fake.finish_next(BackendOp::kExecute, big_result(e2, 2, 64 * 1024, /*in_tx=*/true));
  d.step(5);
  int rollbacks = 0;
  while (d.fake.finish_next(BackendOp::kRollback) != nullptr) {
    ++rollbacks;
    d.step();
  }
  d.step(5);
  auto id = op.admin(proto::AdminCommand::kPools);
  d.step();
  auto pools = nlohmann::json::parse(std::get<proto::AdminResult>(op.final_reply(id)->msg).json);
  CHECK(pools[0]["in_use"] == 0);
  CHECK(rollbacks == 2);  // sessions 2 and 3 held transactions
}

// ---- batches (BatchJob): a session's pipelined statements run as one backend operation ----

namespace {
struct Pipelined {
  std::vector<std::uint32_t> ids;  // the statements' request ids
  std::uint32_t commit = 0;        // the kCommit's, 0: none
};

// Client `c` pipelines `sql` (and a kCommit) on its open session `sid`, the first lease's
// connection opens: the batch is then in flight.
Pipelined pipeline(InProc& d, RawClient& c, std::uint32_t sid, const std::vector<std::string>& sql,
                   bool commit) {
  Pipelined p;
  for (const auto& q : sql) p.ids.push_back(c.execute(sid, q));
  if (commit) p.commit = c.simple(T::kCommit, sid);
  d.step();
  d.fake.finish_next(BackendOp::kOpen);
  d.step();
  return p;
}

// An operator kills session `sid` of client `c` (dbmgrctl kill): the daemon answers at once.
void kill_session(InProc& d, RawClient& op, std::uint32_t sid) {
  auto sessions = op.admin(proto::AdminCommand::kSessions);
  d.step();
  auto list =
      nlohmann::json::parse(std::get<proto::AdminResult>(op.final_reply(sessions)->msg).json);
  std::string id;
  for (auto& s : list) {
    if (s["session_id"] == sid) id = s["id"];
  }
  REQUIRE(!id.empty());
  auto kill = op.admin(proto::AdminCommand::kKill, id);
  d.step();
  CHECK(op.type_of(kill) == T::kAdminResult);
}

// The batch in flight, taken off the fake's list (the test completes it).
dbmgr::daemon::test::FakeConn& take_batch(InProc& d) {
  REQUIRE(d.fake.has(BackendOp::kBatch));
  auto& conn = *d.fake.in_flight.front().conn;
  REQUIRE(d.fake.in_flight.front().op == BackendOp::kBatch);
  d.fake.in_flight.pop_front();
  return conn;
}

bool history_has(InProc& d, BackendOp op) {
  for (auto& o : d.fake.history) {
    if (o.op == op) return true;
  }
  return false;
}
}  // namespace

TEST_CASE("batch: a kill while it runs rolls back what ran; later requests get killed") {
  InProc d(InProcOptions{kOnePool});
  RawClient& a = d.client();
  RawClient& op = d.client();
  open_session(d, a, 3);
  Pipelined p = pipeline(d, a, 3, {"INSERT A", "INSERT B", "INSERT C"}, false);
  auto& conn = take_batch(d);
  CHECK(conn.batch_sql().size() == 3);
  kill_session(d, op, 3);
  CHECK(conn.cancels_ == 1);
  // Every statement finished before the cancel could stop one: the transaction is open.
  conn.finish_batch_with(FakeBackend::ok(true));
  d.step();
  REQUIRE(d.fake.has(BackendOp::kRollback));
  d.fake.finish_next(BackendOp::kRollback);
  d.step();
  CHECK(a.type_of(p.ids[0]) == T::kComplete);  // its result had arrived with it
  CHECK(a.category_of(p.ids[1]) == proto::ErrorCategory::kKilled);
  CHECK(a.category_of(p.ids[2]) == proto::ErrorCategory::kKilled);
  auto commit = a.simple(T::kCommit, 3);
  d.step();
  CHECK(a.category_of(commit) == proto::ErrorCategory::kKilled);
  CHECK_FALSE(history_has(d, BackendOp::kCommit));
  CHECK(d.fake.max_depth == 1);
}

TEST_CASE("batch: the COMMIT queued behind the statements runs with them") {
  InProc d(InProcOptions{kOnePool});
  RawClient& a = d.client();
  RawClient& b = d.client();
  open_session(d, a, 1);
  open_session(d, b, 1);
  Pipelined p = pipeline(d, a, 1, {"INSERT A", "INSERT B"}, true);
  const std::uint32_t s1 = p.ids[0], s2 = p.ids[1], commit = p.commit;
  auto after = a.execute(1, "INSERT NEXT");  // a new transaction, once the commit is served
  d.step();
  auto b_exec = b.execute(1, "INSERT BY B");
  d.step();
  SUBCASE("it commits") {
    auto& conn = take_batch(d);
    conn.finish_batch_with(FakeBackend::ok(true));
    d.step();
    CHECK(a.type_of(s1) == T::kComplete);
    CHECK(a.type_of(s2) == T::kComplete);
    CHECK(a.type_of(commit) == T::kOk);
    CHECK_FALSE(history_has(d, BackendOp::kCommit));  // no second trip for it
    // The connection went back with the commit: B (waiting first) runs now, A's next after.
    REQUIRE(d.fake.has(BackendOp::kExecute));
    CHECK(d.fake.in_flight.front().sql == "INSERT BY B");
    d.fake.finish_next(BackendOp::kExecute, FakeBackend::ok(false));
    d.step();
    CHECK(b.type_of(b_exec) == T::kComplete);
    REQUIRE(d.fake.has(BackendOp::kExecute));
    d.fake.finish_next(BackendOp::kExecute, FakeBackend::ok(true));
    d.step();
    CHECK(a.type_of(after) == T::kComplete);
  }
  SUBCASE("its COMMIT fails: the statements' results stand, the commit's error fails the session") {
    auto& conn = take_batch(d);
    conn.commit_outcome_ = dbmgr::daemon::Status(proto::ErrorCategory::kConstraint,
                                  "FOREIGN KEY constraint failed", "23503");
    conn.finish_batch_with(FakeBackend::ok(true));
    d.step();
    CHECK(a.type_of(s1) == T::kComplete);
    CHECK(a.type_of(s2) == T::kComplete);
    CHECK(a.category_of(commit) == proto::ErrorCategory::kConstraint);
    CHECK(a.error_text(after) == "invalid_request: skipped after earlier error in pipeline");
  }
  SUBCASE("a statement fails: the COMMIT does not run and is skipped") {
    auto& conn = take_batch(d);
    conn.finish_batch_with(FakeBackend::ok(true),
                           FakeBackend::error(proto::ErrorCategory::kConstraint, "dup", "23505"));
    d.step();
    CHECK(a.type_of(s1) == T::kComplete);
    CHECK(a.category_of(s2) == proto::ErrorCategory::kConstraint);
    CHECK(a.error_text(commit) == "invalid_request: skipped after earlier error in pipeline");
    CHECK_FALSE(history_has(d, BackendOp::kCommit));
  }
}

TEST_CASE("batch: a kill while a batch that commits runs: the commit stands and is reported") {
  InProc d(InProcOptions{kOnePool});
  RawClient& a = d.client();
  RawClient& op = d.client();
  open_session(d, a, 3);
  Pipelined p = pipeline(d, a, 3, {"INSERT A", "INSERT B"}, true);
  auto after = a.execute(3, "INSERT NEXT");
  d.step();
  auto& conn = take_batch(d);
  kill_session(d, op, 3);
  // The cancel came too late: every statement and the COMMIT succeeded.
  conn.finish_batch_with(FakeBackend::ok(true));
  d.step();
  CHECK_FALSE(d.fake.has(BackendOp::kRollback));
  CHECK(a.type_of(p.ids[0]) == T::kComplete);
  CHECK(a.type_of(p.ids[1]) == T::kComplete);
  CHECK(a.type_of(p.commit) == T::kOk);  // it committed: never told otherwise
  CHECK(a.category_of(after) == proto::ErrorCategory::kKilled);  // the kill, after it
}

TEST_CASE("batch: a client gone while it runs: rolled back, its queue freed, the next waiter served") {
  InProc d(InProcOptions{kOnePool});
  RawClient& a = d.client();
  RawClient& b = d.client();
  open_session(d, a, 1);
  open_session(d, b, 1);
  pipeline(d, a, 1, {"INSERT A", "INSERT B", "INSERT C"}, false);
  auto& conn = take_batch(d);
  auto b_exec = b.execute(1, "INSERT BY B");
  d.step();
  d.drop(a);  // a dies while its batch runs
  d.step();
  conn.finish_batch_with(FakeBackend::ok(true));
  d.step();
  REQUIRE(d.fake.has(BackendOp::kRollback));
  d.fake.finish_next(BackendOp::kRollback);
  d.step();
  CHECK_FALSE(history_has(d, BackendOp::kCommit));
  REQUIRE(d.fake.has(BackendOp::kExecute));  // B now runs, on the same connection
  CHECK(d.fake.in_flight.front().sql == "INSERT BY B");
  d.fake.finish_next(BackendOp::kExecute, FakeBackend::ok(true));
  d.step();
  CHECK(b.type_of(b_exec) == T::kComplete);
}

TEST_CASE("batch: its last statement streams rows; the stream resumes as after execute") {
  InProc d(InProcOptions{kOnePool});
  RawClient& a = d.client();
  open_session(d, a, 1);
  Pipelined p = pipeline(d, a, 1, {"INSERT A", "SELECT many", "INSERT C"}, true);
  const std::uint32_t s1 = p.ids[0], s2 = p.ids[1], s3 = p.ids[2], commit = p.commit;
  auto& conn = take_batch(d);
  dbmgr::daemon::BackendResult more = FakeBackend::ok(true);
  more.more = true;
  conn.finish_batch_with(FakeBackend::ok(true), std::move(more));
  d.step();
  CHECK(a.type_of(s1) == T::kComplete);
  CHECK(a.final_reply(s2) == nullptr);  // rows remain
  REQUIRE(d.fake.has(BackendOp::kExecute));  // resume() of the SELECT
  d.fake.finish_next(BackendOp::kExecute, FakeBackend::ok(true));
  d.step();
  CHECK(a.type_of(s2) == T::kComplete);
  auto& rest = take_batch(d);  // C and the commit behind it
  CHECK(rest.batch_sql() == std::vector<std::string>{"INSERT C"});
  rest.finish_batch_with(FakeBackend::ok(true));
  d.step();
  CHECK(a.type_of(s3) == T::kComplete);
  CHECK(a.type_of(commit) == T::kOk);
  CHECK_FALSE(history_has(d, BackendOp::kCommit));
}

TEST_CASE("batch: 40 pipelined statements run as a batch of 32 and one of 8, in order") {
  InProc d(InProcOptions{kOnePool});
  RawClient& a = d.client();
  open_session(d, a, 1);
  std::vector<std::string> sql;
  for (int i = 0; i < 40; ++i) sql.push_back("INSERT " + std::to_string(i));
  Pipelined p = pipeline(d, a, 1, sql, true);
  const std::vector<std::uint32_t>& ids = p.ids;
  const std::uint32_t commit = p.commit;
  auto& first = take_batch(d);
  auto in_batch = first.batch_sql();
  REQUIRE(in_batch.size() == 32);
  CHECK(in_batch.front() == "INSERT 0");
  CHECK(in_batch.back() == "INSERT 31");
  first.finish_batch_with(FakeBackend::ok(true));
  d.step();
  for (int i = 0; i < 32; ++i) CHECK(a.type_of(ids[i]) == T::kComplete);
  CHECK(a.final_reply(ids[32]) == nullptr);
  auto& second = take_batch(d);
  in_batch = second.batch_sql();
  REQUIRE(in_batch.size() == 8);
  CHECK(in_batch.front() == "INSERT 32");
  second.finish_batch_with(FakeBackend::ok(true));
  d.step();
  for (int i = 32; i < 40; ++i) CHECK(a.type_of(ids[i]) == T::kComplete);
  CHECK(a.type_of(commit) == T::kOk);  // it travelled with the second batch
  CHECK_FALSE(history_has(d, BackendOp::kCommit));
}

TEST_CASE("batch: a client gone while a batch with its COMMIT runs: the commit completes") {
  InProc d(InProcOptions{kOnePool});
  RawClient& a = d.client();
  RawClient& b = d.client();
  open_session(d, a, 1);
  open_session(d, b, 1);
  pipeline(d, a, 1, {"INSERT A", "INSERT B"}, true);
  auto& conn = take_batch(d);
  auto b_exec = b.execute(1, "INSERT BY B");
  d.step();
  d.drop(a);
  d.step();
  conn.finish_batch_with(FakeBackend::ok(true));  // the COMMIT had started: it completes
  d.step();
  CHECK_FALSE(d.fake.has(BackendOp::kRollback));
  REQUIRE(d.fake.has(BackendOp::kExecute));  // the connection went back: B runs on it
  CHECK(d.fake.in_flight.front().conn == &conn);
  d.fake.finish_next(BackendOp::kExecute, FakeBackend::ok(true));
  d.step();
  CHECK(b.type_of(b_exec) == T::kComplete);
}
