// The SQLite writer's WAL checkpoints run beside it (backend/sqlite/wal_checkpointer.hpp), on
// real SQLite in an in-process daemon: the data reaches the database file while the daemon
// runs, and the WAL stays bounded under a steady stream of commits.
#include <sys/stat.h>

#include <doctest/doctest.h>

#include <sqlite3.h>

#include "inproc.hpp"

using dbmgr::daemon::test::InProc;
using dbmgr::daemon::test::InProcOptions;
using dbmgr::daemon::test::RawClient;
namespace proto = dbmgr::proto;
using T = proto::MsgType;

namespace {

std::int64_t file_size(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<std::int64_t>(st.st_size) : 0;
}

}  // namespace

TEST_CASE("SQLite: the writer's WAL is checkpointed beside it, and stays bounded") {
  InProc d(InProcOptions{"", /*fake=*/false});
  RawClient& c = d.client();
  auto create = c.one_shot("CREATE TABLE blobs (id INTEGER PRIMARY KEY, b BLOB)");
  REQUIRE(d.until([&] { return c.final_reply(create) != nullptr; }));
  REQUIRE(c.type_of(create) == T::kComplete);
  const std::string db = d.dir() + "/default.db";
  const std::string wal = db + "-wal";
  auto insert_100kb = [&](int commits) {
    for (int i = 0; i < commits; ++i) {
      auto id = c.one_shot(
          "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100) "
          "INSERT INTO blobs (b) SELECT randomblob(1000) FROM n");
      REQUIRE(d.until([&] { return c.final_reply(id) != nullptr; }));
      REQUIRE(c.type_of(id) == T::kComplete);
    }
  };
  // 110 commits of 100 KB: about 2,800 pages of 4 KiB, past SQLite's checkpoint mark (1,000)
  // but short of the point where the writer would checkpoint itself (8,000). The rows reach
  // the database file while the daemon runs: only the checkpoints beside the writer can have
  // copied them (the writer's automatic checkpoint is off).
  insert_100kb(110);
  CHECK(d.until([&] { return file_size(db) > 6 * 1024 * 1024; }));
  MESSAGE("after 11 MB: database file " << file_size(db) << " bytes, WAL file " << file_size(wal));
  // 600 more (60 MB), each waiting for the one before: the WAL starts over instead of growing
  // to 71 MB; it stays near 8,000 pages (WalCheckpointer::kWriterPages, 32 MiB).
  insert_100kb(600);
  CHECK(d.until([&] { return file_size(db) > 60 * 1024 * 1024; }));
  CHECK(file_size(wal) < 40 * 1024 * 1024);
  MESSAGE("after 71 MB: database file " << file_size(db) << " bytes, WAL file " << file_size(wal));
  // Every row is there, read by another connection.
  sqlite3* h = nullptr;
  REQUIRE(sqlite3_open_v2(db.c_str(), &h, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(h, "SELECT count(*) FROM blobs", -1, &st, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_step(st) == SQLITE_ROW);
  CHECK(sqlite3_column_int64(st, 0) == 71000);
  sqlite3_finalize(st);
  sqlite3_close(h);
}
