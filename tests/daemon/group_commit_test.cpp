// Group commit on real SQLite in an in-process daemon: the group is formed deterministically
// (one-shots queued behind a session that holds the writer), and statement_timeout inside a
// group is decided by the injected clock, not by how loaded the machine is.
#include <doctest/doctest.h>

#include <sqlite3.h>

#include <nlohmann/json.hpp>

#include "inproc.hpp"

using namespace std::chrono_literals;
using dbmgr::daemon::test::InProc;
using dbmgr::daemon::test::InProcOptions;
using dbmgr::daemon::test::RawClient;
namespace proto = dbmgr::proto;
using T = proto::MsgType;

namespace {

std::int64_t count_in_file(const std::string& path, const char* sql) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, sql, -1, &st, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_step(st) == SQLITE_ROW);
  std::int64_t n = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return n;
}

// The tables, then a session that holds the default engine's writer, so that the
// transactions a test sends next queue behind it.
struct HeldWriter {
  dbmgr::daemon::Pool& writer;
  const dbmgr::daemon::GroupCommit* g;
  RawClient& holder;
  RawClient& c;  // the client that ran the DDL (no session of its own): admin requests
};

HeldWriter hold_writer(InProc& d, std::initializer_list<const char*> ddls) {
  RawClient& c = d.client();
  for (const char* ddl : ddls) {
    auto id = c.one_shot(ddl);
    REQUIRE(d.until([&] { return c.final_reply(id) != nullptr; }));
    REQUIRE(c.type_of(id) == T::kComplete);
  }
  auto engine = d.server->engine_for("", "");
  REQUIRE(engine.is_ok());
  const auto* g = engine.value()->group_commit();
  REQUIRE(g != nullptr);
  RawClient& holder = d.client();
  holder.open(1);
  auto hold = holder.execute(1, "INSERT INTO items(v) VALUES ('hold')");
  REQUIRE(d.until([&] { return holder.final_reply(hold) != nullptr; }));
  REQUIRE(holder.type_of(hold) == T::kComplete);
  return HeldWriter{engine.value()->pool_for(false), g, holder, c};
}

}  // namespace

TEST_CASE("group commit: statement_timeout of one grouped one-shot, by the injected clock") {
  InProc d(InProcOptions{"pool:\n  statement_timeout: 10s\n", /*fake=*/false});
  RawClient& c = d.client();
  auto create = c.one_shot("CREATE TABLE items (id INTEGER PRIMARY KEY, v TEXT)");
  REQUIRE(d.until([&] { return c.final_reply(create) != nullptr; }));
  REQUIRE(c.type_of(create) == T::kComplete);
  auto engine = d.server->engine_for("", "");
  REQUIRE(engine.is_ok());
  auto& writer = engine.value()->pool_for(false);

  // A session holds the writer, so that the one-shots below queue behind it.
  RawClient& holder = d.client();
  auto open = holder.open(1);
  auto hold = holder.execute(1, "INSERT INTO items(v) VALUES ('hold')");
  REQUIRE(d.until([&] { return holder.final_reply(hold) != nullptr; }));
  REQUIRE(holder.type_of(open) == T::kOk);
  REQUIRE(holder.type_of(hold) == T::kComplete);

  auto a = c.one_shot("INSERT INTO items(v) VALUES ('a')");
  auto endless = c.one_shot(
      "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) "
      "INSERT INTO items(v) SELECT 'slow' FROM n WHERE x < 0");
  auto b = c.one_shot("INSERT INTO items(v) VALUES ('b')");
  auto e = c.one_shot("INSERT INTO items(v) VALUES ('c')");
  REQUIRE(d.until([&] { return writer.waiting() == 4; }));

  auto commit = holder.simple(T::kCommit, 1);
  // The group runs on a worker; the clock moves only here, a second per turn of the loop.
  REQUIRE(d.until([&] {
    d.clock.advance(1s);
    return c.final_reply(e) != nullptr && c.final_reply(endless) != nullptr &&
           c.final_reply(a) != nullptr && c.final_reply(b) != nullptr;
  }));
  CHECK(holder.type_of(commit) == T::kOk);
  CHECK(c.type_of(a) == T::kComplete);
  CHECK(c.type_of(b) == T::kComplete);
  CHECK(c.type_of(e) == T::kComplete);
  CHECK(c.category_of(endless) == proto::ErrorCategory::kTimeout);
  CHECK(c.error_text(endless).find("statement_timeout") != std::string::npos);
  // They ran as one group (taken from the queue together), and only the endless one failed.
  const auto* g = engine.value()->group_commit();
  REQUIRE(g != nullptr);
  CHECK(g->commits() == 1);
  CHECK(g->statements() == 3);
  std::string file = d.dir() + "/default.db";
  CHECK(count_in_file(file, "SELECT count(*) FROM items") == 4);
  CHECK(count_in_file(file, "SELECT count(*) FROM items WHERE v = 'slow'") == 0);
  CHECK(writer.in_use() == 0);
}

// ---- group commit of pipelined transactions ----

namespace {

const proto::Complete* complete_of(RawClient& c, std::uint32_t rid) {
  dbmgr::daemon::test::Reply* r = c.final_reply(rid);
  return r != nullptr ? std::get_if<proto::Complete>(&r->msg) : nullptr;
}

// One session's whole transaction, pipelined: open, the statements, COMMIT, all sent before
// the loop turns. Returns the request ids: the statements', then the commit's last.
std::vector<std::uint32_t> pipelined(RawClient& c, std::uint32_t sid,
                                     const std::vector<std::string>& sqls) {
  REQUIRE(c.open(sid) > 0);
  std::vector<std::uint32_t> ids;
  for (const std::string& s : sqls) ids.push_back(c.execute(sid, s));
  ids.push_back(c.simple(T::kCommit, sid));
  return ids;
}

}  // namespace

TEST_CASE("group commit of pipelined transactions: each gets what it would have got alone") {
  InProc d(InProcOptions{"", /*fake=*/false});
  // A session holds the writer, so that the transactions below queue behind it.
  HeldWriter held = hold_writer(
      d, {"CREATE TABLE items (id INTEGER PRIMARY KEY, v TEXT UNIQUE)",
          "CREATE TABLE parent (id INTEGER PRIMARY KEY)",
          "CREATE TABLE child (id INTEGER PRIMARY KEY, p INTEGER REFERENCES "
          "parent(id) DEFERRABLE INITIALLY DEFERRED)"});
  auto& writer = held.writer;
  const auto* g = held.g;
  RawClient& holder = held.holder;

  RawClient& c1 = d.client();
  RawClient& c2 = d.client();
  RawClient& c3 = d.client();
  RawClient& c4 = d.client();
  RawClient& c5 = d.client();
  RawClient& c6 = d.client();
  // Each queues behind the one before (the writer's FIFO is the group's order).
  int queued = 0;
  auto queue = [&](RawClient& cl, std::vector<std::string> sqls) {
    auto ids = pipelined(cl, 1, sqls);
    ++queued;
    REQUIRE(d.until([&] { return writer.waiting() == queued; }));
    return ids;
  };
  // Commits: sees its own rows (and the holder's, committed before the group).
  auto t1 = queue(c1, {"INSERT INTO items(v) VALUES ('a1')", "INSERT INTO items(v) VALUES ('a2')",
                       "SELECT count(*) FROM items"});
  // Fails in its middle (a1 exists): its first insert is rolled back with it, the third is
  // skipped, its commit refused; nobody else is touched.
  auto t2 = queue(c2, {"INSERT INTO items(v) VALUES ('b1')", "INSERT INTO items(v) VALUES ('a1')",
                       "INSERT INTO items(v) VALUES ('b3')"});
  // Alone, its COMMIT would fail on the deferred foreign key: it does here too.
  auto t3 = queue(c3, {"INSERT INTO child VALUES (1, 999)"});
  // Commits after t1 and sees it (the group runs its members in queue order).
  auto t4 = queue(c4, {"UPDATE items SET v = 'a1x' WHERE v = 'a1'",
                       "SELECT v FROM items WHERE v = 'a1x'"});
  // DDL cannot share the group: it ends the run (FIFO), then runs alone.
  auto t5 = queue(c5, {"CREATE TABLE later (x)", "INSERT INTO later VALUES (1)"});
  // Behind it: not in the first group.
  auto t6 = queue(c6, {"INSERT INTO items(v) VALUES ('f')"});

  auto commit = holder.simple(T::kCommit, 1);
  REQUIRE(d.until([&] {
    return c1.final_reply(t1.back()) != nullptr && c2.final_reply(t2.back()) != nullptr &&
           c3.final_reply(t3.back()) != nullptr && c4.final_reply(t4.back()) != nullptr &&
           c5.final_reply(t5.back()) != nullptr && c6.final_reply(t6.back()) != nullptr;
  }));
  CHECK(holder.type_of(commit) == T::kOk);

  // t1: three statements, then ok; its SELECT counted hold + a1 + a2.
  CHECK(c1.type_of(t1[0]) == T::kComplete);
  CHECK(c1.type_of(t1[1]) == T::kComplete);
  REQUIRE(c1.type_of(t1[2]) == T::kComplete);
  CHECK(complete_of(c1, t1[2])->affected_rows == 1);  // one row of count(*)
  CHECK(c1.type_of(t1[3]) == T::kOk);
  // t2: the failure is its second statement's own; the rest says so.
  CHECK(c2.type_of(t2[0]) == T::kComplete);
  CHECK(c2.category_of(t2[1]) == proto::ErrorCategory::kConstraint);
  CHECK(c2.category_of(t2[2]) == proto::ErrorCategory::kInvalidRequest);
  CHECK(c2.error_text(t2[2]).find("skipped after earlier error") != std::string::npos);
  CHECK(c2.type_of(t2[3]) == T::kError);
  // t3: its insert ran, its commit failed with the deferred foreign key.
  CHECK(c3.type_of(t3[0]) == T::kComplete);
  CHECK(c3.category_of(t3[1]) == proto::ErrorCategory::kConstraint);
  CHECK(c3.final_reply(t3[1])->error()->sqlstate == "23503");
  // t4: its update found t1's row.
  REQUIRE(c4.type_of(t4[0]) == T::kComplete);
  CHECK(complete_of(c4, t4[0])->affected_rows == 1);
  CHECK(complete_of(c4, t4[1])->affected_rows == 1);
  CHECK(c4.type_of(t4[2]) == T::kOk);
  // t5 and t6 ran alone after the group.
  CHECK(c5.type_of(t5[2]) == T::kOk);
  CHECK(c6.type_of(t6[1]) == T::kOk);

  CHECK(g->batch_commits() == 1);
  CHECK(g->batch_transactions() == 2);  // t1 and t4; t2 failed, t3's commit failed
  std::string file = d.dir() + "/default.db";
  CHECK(count_in_file(file, "SELECT count(*) FROM items WHERE v IN ('hold', 'a1x', 'a2', 'f')") ==
        4);
  CHECK(count_in_file(file, "SELECT count(*) FROM items") == 4);  // no b1, no b3
  CHECK(count_in_file(file, "SELECT count(*) FROM child") == 0);
  CHECK(count_in_file(file, "SELECT count(*) FROM later") == 1);

  // The failed sessions go on once they acknowledge, as after any failed transaction.
  auto rb = c2.simple(T::kRollback, 1);
  auto again = pipelined(c2, 7, {"INSERT INTO items(v) VALUES ('b-again')"});
  REQUIRE(d.until([&] { return c2.final_reply(again.back()) != nullptr; }));
  CHECK(c2.type_of(rb) == T::kOk);
  CHECK(c2.type_of(again.back()) == T::kOk);
  CHECK(writer.in_use() == 0);
}

TEST_CASE("group commit of pipelined transactions: a timeout restarts the group, a cancel and a "
          "disconnect skip their members") {
  InProc d(InProcOptions{"pool:\n  statement_timeout: 10s\n", /*fake=*/false});
  HeldWriter held = hold_writer(d, {"CREATE TABLE items (id INTEGER PRIMARY KEY, v TEXT)"});
  auto& writer = held.writer;
  const auto* g = held.g;
  RawClient& holder = held.holder;
  RawClient& c = held.c;

  RawClient& c1 = d.client();
  RawClient& c2 = d.client();
  RawClient& c3 = d.client();
  RawClient& c4 = d.client();
  int queued = 0;
  auto queue = [&](RawClient& cl, std::vector<std::string> sqls) {
    auto ids = pipelined(cl, 1, sqls);
    ++queued;
    REQUIRE(d.until([&] { return writer.waiting() == queued; }));
    return ids;
  };
  auto t1 = queue(c1, {"INSERT INTO items(v) VALUES ('x1')"});
  // Runs until the injected clock passes statement_timeout; the interrupt rolls back the
  // whole SQLite transaction, t1's insert with it: t1 runs again, without this one.
  auto t2 = queue(c2, {"INSERT INTO items(v) VALUES ('x2')",
                       "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) "
                       "INSERT INTO items(v) SELECT 'slow' FROM n WHERE x < 0"});
  auto t3 = queue(c3, {"INSERT INTO items(v) VALUES ('x3')"});
  auto t4 = queue(c4, {"INSERT INTO items(v) VALUES ('x4')"});
  auto commit = holder.simple(T::kCommit, 1);
  REQUIRE(d.until([&] { return g->running(); }));
  // While t2 spins: t3's client goes away, t4 is cancelled.
  c3.close();
  auto cancel = c4.simple(T::kCancel, 1);
  d.step(10);
  REQUIRE(d.until([&] {
    d.clock.advance(1s);
    return c1.final_reply(t1.back()) != nullptr && c2.final_reply(t2.back()) != nullptr &&
           c4.final_reply(t4.back()) != nullptr;
  }));
  (void)cancel;
  CHECK(holder.type_of(commit) == T::kOk);
  CHECK(c1.type_of(t1[0]) == T::kComplete);
  CHECK(c1.type_of(t1[1]) == T::kOk);
  CHECK(c2.type_of(t2[0]) == T::kComplete);
  CHECK(c2.category_of(t2[1]) == proto::ErrorCategory::kTimeout);
  CHECK(c2.type_of(t2[2]) == T::kError);
  CHECK(c4.category_of(t4[0]) == proto::ErrorCategory::kCancelled);
  CHECK(c4.type_of(t4[1]) == T::kError);
  CHECK(g->batch_commits() == 1);
  CHECK(g->batch_transactions() == 1);
  std::string file = d.dir() + "/default.db";
  CHECK(count_in_file(file, "SELECT count(*) FROM items WHERE v = 'x1'") == 1);
  CHECK(count_in_file(file, "SELECT count(*) FROM items") == 2);  // hold and x1
  // c3's session is gone (nothing leaked: the ASan build checks); the others stay open.
  REQUIRE(d.until([&] { return writer.in_use() == 0; }));
  auto list = c.admin(proto::AdminCommand::kSessions);
  REQUIRE(d.until([&] { return c.final_reply(list) != nullptr; }));
  auto sessions =
      nlohmann::json::parse(std::get<proto::AdminResult>(c.final_reply(list)->msg).json);
  CHECK(sessions.size() == 4);  // the holder's, t1's, t2's and t4's
}

TEST_CASE("group commit of pipelined transactions: rows that must stream run alone after it") {
  InProc d(InProcOptions{"", /*fake=*/false});
  HeldWriter held = hold_writer(d, {"CREATE TABLE items (id INTEGER PRIMARY KEY, v TEXT)"});
  auto& writer = held.writer;
  const auto* g = held.g;
  RawClient& holder = held.holder;

  RawClient& c1 = d.client();
  RawClient& c2 = d.client();
  auto t1 = pipelined(c1, 1, {"INSERT INTO items(v) VALUES ('big')",
                              "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n "
                              "WHERE x < 20000) SELECT x, printf('%100d', x) FROM n"});
  REQUIRE(d.until([&] { return writer.waiting() == 1; }));
  auto t2 = pipelined(c2, 1, {"INSERT INTO items(v) VALUES ('small')"});
  REQUIRE(d.until([&] { return writer.waiting() == 2; }));
  auto commit = holder.simple(T::kCommit, 1);
  REQUIRE(d.until([&] {
    return c1.final_reply(t1.back()) != nullptr && c2.final_reply(t2.back()) != nullptr;
  }));
  CHECK(holder.type_of(commit) == T::kOk);
  CHECK(c2.type_of(t2[1]) == T::kOk);
  REQUIRE(c1.type_of(t1[1]) == T::kComplete);
  CHECK(complete_of(c1, t1[1])->affected_rows == 20000);
  CHECK(c1.replies_to(t1[1]).size() > 2);  // columns, several row batches, complete
  CHECK(c1.type_of(t1[2]) == T::kOk);
  CHECK(g->deferred() == 1);
  CHECK(g->batch_commits() == 1);  // t2's, alone in its group once t1 was deferred
  std::string file = d.dir() + "/default.db";
  CHECK(count_in_file(file, "SELECT count(*) FROM items") == 3);
  CHECK(writer.in_use() == 0);
}

// A member killed (dbmgrctl kill, or the drain deadline) while its second statement runs:
// the group rolls that member back (the interrupt restarts the others), and the member, which
// holds no connection of its own, ends failed with `killed` instead of rolling back on a
// lease it does not have.
TEST_CASE("group commit of pipelined transactions: a member killed in its second statement") {
  InProc d(InProcOptions{"pool:\n  statement_timeout: 10s\n", /*fake=*/false});
  HeldWriter held = hold_writer(d, {"CREATE TABLE items (id INTEGER PRIMARY KEY, v TEXT)"});
  auto& writer = held.writer;
  const auto* g = held.g;
  RawClient& holder = held.holder;
  RawClient& c = held.c;

  RawClient& c1 = d.client();
  RawClient& c2 = d.client();
  auto t1 = pipelined(c1, 1, {"INSERT INTO items(v) VALUES ('x1')"});
  REQUIRE(d.until([&] { return writer.waiting() == 1; }));
  auto t2 = pipelined(c2, 5, {"INSERT INTO items(v) VALUES ('x2')",
                              "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) "
                              "INSERT INTO items(v) SELECT 'slow' FROM n WHERE x < 0"});
  REQUIRE(d.until([&] { return writer.waiting() == 2; }));
  auto commit = holder.simple(T::kCommit, 1);
  REQUIRE(d.until([&] { return g->running(); }));

  // Kill session 5 (t2's) while its endless statement runs in the group.
  auto list = c.admin(proto::AdminCommand::kSessions);
  REQUIRE(d.until([&] { return c.final_reply(list) != nullptr; }));
  std::string id;
  for (auto& s : nlohmann::json::parse(std::get<proto::AdminResult>(c.final_reply(list)->msg).json)) {
    if (s["session_id"] == 5) id = s["id"];
  }
  REQUIRE(!id.empty());
  auto kill = c.admin(proto::AdminCommand::kKill, id);
  REQUIRE(d.until([&] {
    return c.final_reply(kill) != nullptr && c1.final_reply(t1.back()) != nullptr &&
           c2.final_reply(t2.back()) != nullptr;
  }));
  CHECK(holder.type_of(commit) == T::kOk);
  CHECK(c.type_of(kill) == T::kAdminResult);
  CHECK(c1.type_of(t1[1]) == T::kOk);  // ran again after the interrupt, committed
  CHECK(c2.type_of(t2[0]) == T::kComplete);
  CHECK(c2.category_of(t2[1]) == proto::ErrorCategory::kKilled);
  CHECK(c2.category_of(t2[2]) == proto::ErrorCategory::kKilled);
  CHECK(g->batch_transactions() == 1);
  std::string file = d.dir() + "/default.db";
  CHECK(count_in_file(file, "SELECT count(*) FROM items WHERE v = 'x1'") == 1);
  CHECK(count_in_file(file, "SELECT count(*) FROM items") == 2);  // hold and x1; no x2
  // The killed session answers `killed` until closed, and the daemon serves on.
  auto again = c2.execute(5, "SELECT 1");
  REQUIRE(d.until([&] { return c2.final_reply(again) != nullptr; }));
  CHECK(c2.category_of(again) == proto::ErrorCategory::kKilled);
  auto t3 = pipelined(c1, 2, {"INSERT INTO items(v) VALUES ('x3')"});
  REQUIRE(d.until([&] { return c1.final_reply(t3.back()) != nullptr; }));
  CHECK(c1.type_of(t3.back()) == T::kOk);
  CHECK(writer.in_use() == 0);
}
