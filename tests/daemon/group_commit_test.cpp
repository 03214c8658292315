// Group commit on real SQLite in an in-process daemon: the group is formed deterministically
// (one-shots queued behind a session that holds the writer), and statement_timeout inside a
// group is decided by the injected clock, not by how loaded the machine is.
#include <doctest/doctest.h>

#include <sqlite3.h>

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
