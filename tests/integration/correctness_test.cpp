// Correctness under contention (issue 11): each defect found by outside checks, reproduced
// against a real dbmgrd and the real databases, beside what broke it in production: another
// session waiting for the same connection, a schema change between two runs of a statement,
// a hostile byte in a path.
#include <signal.h>
#include <sqlite3.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include <doctest/doctest.h>

#include "dbmgr/protocol/codec.hpp"
#include "harness.hpp"

using namespace std::chrono_literals;
using dbmgr::test::Daemon;
using dbmgr::test::DaemonOptions;
using dbmgr::test::eventually;
using Cmd = dbmgr::proto::AdminCommand;

namespace {

std::string env(const char* name) { return dbmgr::test::required_env(name); }

DaemonOptions pg_daemon(std::string yaml = {}) { return dbmgr::test::pg_daemon_options(std::move(yaml)); }

// A table name of this process, so the two builds' runs never meet on the shared server.
std::string tname(const char* base) { return std::string(base) + "_" + std::to_string(getpid()); }

dbmgr::Error error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const dbmgr::Error& e) {
    return e;
  }
  FAIL_CHECK("no error was thrown");
  return dbmgr::Error(dbmgr::ErrorCategory::kInternal, "unreachable");
}

std::int64_t count(dbmgr::DatabaseManager& m, const std::string& sql) {
  return m.execute(sql).scalar<std::int64_t>();
}

std::vector<std::string> columns_of(const dbmgr::Result& r) { return r.columns(); }

// The failed-commit-with-a-waiter case: A's commit fails on a deferred FK while B waits for
// the one connection A holds. A must get the error; B must then run normally.
void failed_commit_with_waiter(Daemon& d, dbmgr::DatabaseManager& m, const std::string& db,
                               const std::string& role, const std::string& parent,
                               const std::string& child) {
  for (int round = 0; round < 10; ++round) {
    auto a = m.get_session();
    a.execute("INSERT INTO " + child + "(id, parent_id) VALUES (?, 999999)", {1000 + round});
    std::atomic<bool> b_done{false};
    std::string b_error;
    std::thread b([&] {
      try {
        m.run([&](dbmgr::Session& s) {
          s.execute("INSERT INTO " + parent + "(id) VALUES (?)", {round});
        });
      } catch (const std::exception& e) {
        b_error = e.what();
      }
      b_done = true;
    });
    REQUIRE(eventually([&] { return d.pool(db, role)["waiting"] == 1; }));
    dbmgr::Error e = error_of([&] { a.commit(); });
    CHECK(e.category() == dbmgr::ErrorCategory::kConstraint);
    CHECK(e.sqlstate() == "23503");
    CHECK(a.failed());
    a.rollback();
    b.join();
    CHECK(b_done);
    CHECK(b_error.empty());
  }
  CHECK(count(m, "SELECT count(*) FROM " + child) == 0);
  CHECK(count(m, "SELECT count(*) FROM " + parent) == 10);
  auto p = d.pool(db, role);
  CHECK(p["in_use"] == 0);
  CHECK(p["waiting"] == 0);
}

}  // namespace

// ---- 1. a failed COMMIT always reaches its client ----

TEST_CASE("SQLite: a commit that fails on a deferred FK throws although a session waits for the writer") {
  Daemon d;
  dbmgr::DatabaseManager m(d.options("test", "fkwait"));
  m.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)");
  m.execute("CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parent(id) "
            "DEFERRABLE INITIALLY DEFERRED)");
  failed_commit_with_waiter(d, m, "test.fkwait", "writer", "parent", "child");
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2((d.data_dir() + "/test.fkwait.db").c_str(), &db, SQLITE_OPEN_READONLY,
                          nullptr) == SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, "SELECT count(*) FROM child", -1, &st, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_step(st) == SQLITE_ROW);
  CHECK(sqlite3_column_int64(st, 0) == 0);  // nothing of the failed commits is in the file
  sqlite3_finalize(st);
  sqlite3_close(db);
}

TEST_CASE("PostgreSQL pool_size 1: a commit that fails on a deferred FK throws although a session waits") {
  Daemon d(pg_daemon("pool:\n  pool_size: 1\n  max_overflow: 0\n"));
  dbmgr::DatabaseManager m(d.options());
  std::string parent = tname("fk_parent"), child = tname("fk_child");
  m.execute("DROP TABLE IF EXISTS " + child);
  m.execute("DROP TABLE IF EXISTS " + parent);
  m.execute("CREATE TABLE " + parent + " (id bigint PRIMARY KEY)");
  m.execute("CREATE TABLE " + child + " (id bigint PRIMARY KEY, parent_id bigint REFERENCES " +
            parent + "(id) DEFERRABLE INITIALLY DEFERRED)");
  failed_commit_with_waiter(d, m, env("DBMGR_TEST_PG_DB"), "main", parent, child);
  m.execute("DROP TABLE " + child);
  m.execute("DROP TABLE " + parent);
}

// ---- 2. read-only sessions refuse writes ----

TEST_CASE("PostgreSQL: a read-only session or one-shot cannot write (read_only, 25006)") {
  Daemon d(pg_daemon());
  dbmgr::DatabaseManager m(d.options());
  std::string t = tname("ro");
  m.execute("DROP TABLE IF EXISTS " + t);
  m.execute("CREATE TABLE " + t + " (id bigint)");
  m.execute("INSERT INTO " + t + " VALUES (1)");
  {
    auto s = m.get_session(dbmgr::Access::kReadOnly);
    CHECK(s.execute("SELECT count(*) FROM " + t).scalar<std::int64_t>() == 1);
    dbmgr::Error e = error_of([&] { s.execute("INSERT INTO " + t + " VALUES (2)"); });
    CHECK(e.category() == dbmgr::ErrorCategory::kReadOnly);
    CHECK(e.sqlstate() == "25006");
    s.rollback();
    // The same statement as the first of a transaction (BEGIN READ ONLY in the same pipeline).
    dbmgr::Error e2 = error_of([&] {
      s.execute("UPDATE " + t + " SET id = 5");
      s.commit();
    });
    CHECK(e2.category() == dbmgr::ErrorCategory::kReadOnly);
    s.rollback();
  }
  dbmgr::Error e3 =
      error_of([&] { m.execute("DELETE FROM " + t, {}, dbmgr::Access::kReadOnly); });
  CHECK(e3.category() == dbmgr::ErrorCategory::kReadOnly);
  CHECK(m.execute("SELECT count(*) FROM " + t, {}, dbmgr::Access::kReadOnly)
            .scalar<std::int64_t>() == 1);
  CHECK(count(m, "SELECT count(*) FROM " + t + " WHERE id = 1") == 1);
  m.execute("DROP TABLE " + t);
}

TEST_CASE("PostgreSQL: SQL cannot take a read-only session out of its read-only transaction") {
  Daemon d(pg_daemon());
  dbmgr::DatabaseManager m(d.options());
  std::string t = tname("roesc");
  m.execute("DROP TABLE IF EXISTS " + t);
  m.execute("CREATE TABLE " + t + " (id bigint)");
  const char* escapes[] = {
      "COMMIT",
      "ROLLBACK",
      "END",
      "ABORT",
      "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
      "SET default_transaction_read_only = off",
      "SET transaction_read_only = off",
  };
  for (const char* esc : escapes) {
    auto s = m.get_session(dbmgr::Access::kReadOnly);
    s.execute("SELECT 1");
    std::optional<dbmgr::Error> e;
    try {
      s.execute(esc);
      s.execute("INSERT INTO " + t + " VALUES (1)");
    } catch (const dbmgr::Error& err) {
      e = err;
    }
    CHECK_MESSAGE(e.has_value(), esc << " then INSERT succeeded in a read-only session");
    // read_only (25006), or PostgreSQL's own 25001 for a mode change after the first query.
    if (e) {
      CHECK_MESSAGE((e->category() == dbmgr::ErrorCategory::kReadOnly || e->sqlstate() == "25001"),
                    esc << ": " << std::string(e->what()));
    }
  }
  CHECK(count(m, "SELECT count(*) FROM " + t) == 0);
  m.execute("DROP TABLE " + t);
}

TEST_CASE("SQLite: no PRAGMA opens a reader to writes or changes the next session's connection") {
  Daemon d;
  dbmgr::DatabaseManager m(d.options("test", "ropragma"));
  m.execute("CREATE TABLE p (id INTEGER PRIMARY KEY)");
  m.execute("CREATE TABLE c (id INTEGER, p INTEGER REFERENCES p(id))");
  // A read-only session turns its reader's query_only off, then writes.
  for (int round = 0; round < 3; ++round) {
    std::optional<dbmgr::Error> e;
    try {
      auto s = m.get_session(dbmgr::Access::kReadOnly);
      s.execute("PRAGMA query_only = 0");
      s.execute("INSERT INTO p VALUES (" + std::to_string(100 + round) + ")");
      s.commit();
    } catch (const dbmgr::Error& err) {
      e = err;
    }
    CHECK_MESSAGE(e.has_value(), "a read-only session wrote after PRAGMA query_only = 0");
    // ... or as read-only one-shots on the readers, one after the other.
    try {
      m.execute("PRAGMA query_only = 0", {}, dbmgr::Access::kReadOnly);
    } catch (const dbmgr::Error&) {
    }
    auto e2 = [&]() -> std::optional<dbmgr::Error> {
      try {
        m.execute("INSERT INTO p VALUES (" + std::to_string(200 + round) + ")", {},
                  dbmgr::Access::kReadOnly);
      } catch (const dbmgr::Error& err) {
        return err;
      }
      return std::nullopt;
    }();
    CHECK_MESSAGE(e2.has_value(), "a read-only one-shot wrote after PRAGMA query_only = 0");
  }
  CHECK(count(m, "SELECT count(*) FROM p") == 0);
  // A session or one-shot that turns foreign keys off does not leave them off for the next.
  auto pragma_error = error_of([&] { m.execute("PRAGMA foreign_keys = OFF"); });
  CHECK(pragma_error.category() == dbmgr::ErrorCategory::kPermission);
  CHECK_MESSAGE(std::string(pragma_error.message()).find("not allowed through dbmgrd") != std::string::npos,
                pragma_error.message());
  // Reading a pragma, and the pragmas that read or act once, still work.
  CHECK(m.execute("PRAGMA foreign_keys").scalar<std::int64_t>() == 1);
  CHECK(m.execute("PRAGMA table_info(p)").size() == 1);
  CHECK(m.execute("PRAGMA user_version = 7").empty());
  CHECK(m.execute("PRAGMA user_version").scalar<std::int64_t>() == 7);
  {
    auto s = m.get_session();
    try {
      s.execute("PRAGMA foreign_keys = OFF");
    } catch (const dbmgr::Error&) {
    }
    s.rollback();
  }
  std::optional<dbmgr::Error> fk;
  try {
    m.execute("INSERT INTO c VALUES (1, 999)");
  } catch (const dbmgr::Error& err) {
    fk = err;
  }
  REQUIRE_MESSAGE(fk.has_value(), "foreign keys were off for the next session");
  CHECK(fk->category() == dbmgr::ErrorCategory::kConstraint);
}

TEST_CASE("SQLite: a session's temporary tables, views and triggers do not reach the next session") {
  Daemon d;
  dbmgr::DatabaseManager m(d.options("test", "tempreset"));
  m.execute("CREATE TABLE t (x INTEGER)");
  for (int round = 0; round < 3; ++round) {
    m.run([](dbmgr::Session& s) {
      s.execute("CREATE TEMP TABLE secret (v TEXT)");
      s.execute("INSERT INTO secret VALUES ('for this session only')");
      s.execute("CREATE TEMP VIEW secret_v AS SELECT v FROM secret");
      s.execute("CREATE TEMP TRIGGER spy AFTER INSERT ON main.t BEGIN "
                "INSERT INTO secret VALUES ('seen'); END");
      s.execute("CREATE INDEX temp.secret_i ON secret (v)");
    });
    // The next sessions on the one writer connection see none of it, and the trigger is gone.
    m.execute("INSERT INTO t VALUES (1)");
    for (const char* sql : {"SELECT count(*) FROM secret", "SELECT count(*) FROM secret_v",
                            "SELECT count(*) FROM temp.secret"}) {
      auto e = error_of([&] { m.execute(sql); });
      CHECK_MESSAGE(std::string(e.message()).find("no such table") != std::string::npos, sql, ": ",
                    e.what());
    }
    CHECK(m.execute("SELECT count(*) FROM temp.sqlite_master").scalar<std::int64_t>() == 0);
    // Read-only sessions on the readers: a temporary table there is dropped as well (or refused).
    {
      auto r = m.get_session(dbmgr::Access::kReadOnly);
      try {
        r.execute("CREATE TEMP TABLE rsecret (v TEXT)");
      } catch (const dbmgr::Error&) {
      }
      r.rollback();
    }
    auto e = error_of([&] { m.execute("SELECT count(*) FROM rsecret", {}, dbmgr::Access::kReadOnly); });
    CHECK_MESSAGE(std::string(e.message()).find("no such table") != std::string::npos, e.what());
  }
  CHECK(count(m, "SELECT count(*) FROM t") == 3);
}

TEST_CASE("SQLite: a read-only one-shot cannot write (read_only, 25006)") {
  Daemon d;
  dbmgr::DatabaseManager m(d.options("test", "rosql"));
  m.execute("CREATE TABLE t (id INTEGER)");
  dbmgr::Error e = error_of([&] { m.execute("INSERT INTO t VALUES (1)", {}, dbmgr::Access::kReadOnly); });
  CHECK(e.category() == dbmgr::ErrorCategory::kReadOnly);
  CHECK(e.sqlstate() == "25006");
  CHECK(count(m, "SELECT count(*) FROM t") == 0);
}

// ---- 3. no exception kills the daemon ----

TEST_CASE("a socket path that is not UTF-8: status answers with the bytes escaped, the daemon lives") {
  DaemonOptions o;
  o.socket_name = "dbmgr\xC0\xFF.sock";
  Daemon d(o);
  auto status = d.admin(Cmd::kStatus);
  std::string shown = status["socket"];
  CHECK(shown.find("dbmgr\\xC0\\xFF.sock") != std::string::npos);
  dbmgr::DatabaseManager m(d.options("test", "utf"));
  CHECK(m.execute("SELECT 41 + 1").scalar<std::int64_t>() == 42);
  CHECK(d.admin(Cmd::kStatus)["totals"]["internal_errors"] == 0);
}

TEST_CASE("admin requests with an argument they do not take get invalid_request") {
  Daemon d;
  dbmgr::Error e = error_of([&] { d.admin(Cmd::kStatus, "extra"); });
  CHECK(e.category() == dbmgr::ErrorCategory::kInvalidRequest);
  CHECK(d.admin(Cmd::kPools).is_array());
}

// ---- 4. the client adopts the daemon's frame limit ----

TEST_CASE("with max_frame_bytes 64MiB, a 20 MB blob reaches the client") {
  DaemonOptions o;
  o.config_yaml = "max_frame_bytes: 64MiB\n";
  Daemon d(o);
  dbmgr::DatabaseManager m(d.options("test", "bigframe"));
  auto r = m.execute("SELECT zeroblob(20000000)");
  REQUIRE(r.size() == 1);
  CHECK(r[0].get<std::string>(0).size() == 20000000);
  // And back: a 20 MB parameter is accepted too.
  m.execute("CREATE TABLE b (x BLOB)");
  m.execute("INSERT INTO b VALUES (?)", {dbmgr::Blob::from_string(std::string(20000000, 'x'))});
  CHECK(count(m, "SELECT length(x) FROM b") == 20000000);
}

// ---- 5. SQLite: cached statements after a schema change ----

TEST_CASE("SQLite: SELECT * after DROP + CREATE, shrink and ADD COLUMN returns the new columns") {
  Daemon d;
  dbmgr::DatabaseManager m(d.options("test", "schema"));
  auto check_case = [&](dbmgr::Session* s) {
    auto run = [&](const std::string& sql) {
      return s != nullptr ? s->execute(sql) : m.execute(sql);
    };
    run("DROP TABLE IF EXISTS t");
    run("CREATE TABLE t(a INTEGER)");
    run("INSERT INTO t VALUES (1)");
    auto r1 = run("SELECT * FROM t");
    CHECK(columns_of(r1) == std::vector<std::string>{"a"});
    run("DROP TABLE t");
    run("CREATE TABLE t(a VARCHAR(10), b INTEGER)");
    run("INSERT INTO t VALUES ('x', 2)");
    auto r2 = run("SELECT * FROM t");
    CHECK(columns_of(r2) == std::vector<std::string>{"a", "b"});
    REQUIRE(r2.size() == 1);
    CHECK(r2[0].get<std::string>(0) == "x");
    CHECK(r2[0].get<std::int64_t>(1) == 2);
    run("DROP TABLE t");
    run("CREATE TABLE t(z INTEGER)");
    run("INSERT INTO t VALUES (7)");
    auto r3 = run("SELECT * FROM t");
    CHECK(columns_of(r3) == std::vector<std::string>{"z"});
    CHECK(r3[0].get<std::int64_t>(0) == 7);
    run("ALTER TABLE t ADD COLUMN w TEXT DEFAULT 'new'");
    auto r4 = run("SELECT * FROM t");
    CHECK(columns_of(r4) == std::vector<std::string>{"z", "w"});
    CHECK(r4[0].get<std::string>(1) == "new");
    // An empty result after a change still names the new columns.
    run("DELETE FROM t");
    run("ALTER TABLE t ADD COLUMN v2 INTEGER");
    auto r5 = run("SELECT * FROM t");
    CHECK(columns_of(r5) == std::vector<std::string>{"z", "w", "v2"});
    CHECK(r5.size() == 0);
  };
  SUBCASE("one-shots") { check_case(nullptr); }
  SUBCASE("inside a session") {
    auto s = m.get_session();
    check_case(&s);
    s.commit();
  }
}

TEST_CASE("SQLite: a grouped one-shot with RETURNING * after ALTER TABLE returns the new columns") {
  Daemon d;
  dbmgr::DatabaseManager m(d.options("test", "grpschema"));
  m.execute("CREATE TABLE g (a INTEGER)");
  m.execute("INSERT INTO g(a) VALUES (?) RETURNING *", {0});  // cached with one column
  m.execute("ALTER TABLE g ADD COLUMN b TEXT DEFAULT 'bee'");
  // Hold the writer so that the one-shots below queue and run as one group.
  auto holder = m.get_session();
  holder.execute("INSERT INTO g(a) VALUES (-1)");
  std::vector<std::thread> ts;
  std::vector<dbmgr::Result> results(3);
  for (int i = 0; i < 3; ++i) {
    ts.emplace_back([&, i] { results[i] = m.execute("INSERT INTO g(a) VALUES (?) RETURNING *", {i + 1}); });
  }
  REQUIRE(eventually([&] { return d.pool("test.grpschema", "writer")["waiting"] == 3; }));
  holder.commit();
  for (auto& t : ts) t.join();
  for (auto& r : results) {
    CHECK(columns_of(r) == std::vector<std::string>{"a", "b"});
    REQUIRE(r.size() == 1);
    CHECK(r[0].get<std::string>(1) == "bee");
  }
  CHECK(d.pool("test.grpschema", "writer")["group_commits"].get<int>() >= 1);
}

// ---- 6. PostgreSQL: cached plans after a schema change ----

namespace {

// Runs `sql` directly on the test server with psql (outside dbmgrd).
int psql(const std::string& sql) {
  std::string cmd = "PGPASSWORD=" + env("DBMGR_TEST_PG_PASSWORD") + " " +
                    env("DBMGR_TEST_PG_BINDIR") + "/psql -qAt -h " + env("DBMGR_TEST_PG_HOST") +
                    " -p " + env("DBMGR_TEST_PG_PORT") + " -U " + env("DBMGR_TEST_PG_USER") +
                    " -d " + env("DBMGR_TEST_PG_DB") + " -c \"" + sql + "\" >/dev/null";
  return std::system(cmd.c_str());
}

}  // namespace

TEST_CASE("PostgreSQL: SELECT * after DROP + CREATE and ADD COLUMN: new columns, no error") {
  Daemon d(pg_daemon("pool:\n  pool_size: 1\n  max_overflow: 0\n"));  // one connection: its cache
  dbmgr::DatabaseManager m(d.options());
  std::string t = tname("sch");
  m.execute("DROP TABLE IF EXISTS " + t);
  m.execute("CREATE TABLE " + t + "(a integer)");
  m.execute("INSERT INTO " + t + " VALUES (1)");
  CHECK(columns_of(m.execute("SELECT * FROM " + t)) == std::vector<std::string>{"a"});
  m.execute("DROP TABLE " + t);
  m.execute("CREATE TABLE " + t + "(a varchar(10), b integer)");
  m.execute("INSERT INTO " + t + " VALUES ('x', 2)");
  auto r = m.execute("SELECT * FROM " + t);
  CHECK(columns_of(r) == std::vector<std::string>{"a", "b"});
  CHECK(r[0].get<std::string>(0) == "x");
  m.execute("ALTER TABLE " + t + " ADD COLUMN c text DEFAULT 'see'");
  // The first statement of a session's transaction is retried the same way.
  {
    auto s = m.get_session();
    auto r2 = s.execute("SELECT * FROM " + t);
    CHECK(columns_of(r2) == std::vector<std::string>{"a", "b", "c"});
    s.execute("INSERT INTO " + t + " VALUES ('y', 3, 'dee')");
    s.commit();
  }
  CHECK(count(m, "SELECT count(*) FROM " + t) == 2);
  // Not the first statement, the schema changed through dbmgrd: the daemon knows (its schema
  // epoch) and prepares the statement anew before it runs; the transaction goes on.
  m.execute("ALTER TABLE " + t + " ADD COLUMN e integer");
  {
    auto s = m.get_session();
    s.execute("INSERT INTO " + t + " VALUES ('z', 4, 'eff', 5)");
    auto r3 = s.execute("SELECT * FROM " + t + " ORDER BY b");
    CHECK(columns_of(r3) == std::vector<std::string>{"a", "b", "c", "e"});
    REQUIRE(r3.size() == 3);
    CHECK(r3[2].get<std::int64_t>(3) == 5);
    s.commit();
  }
  CHECK(count(m, "SELECT count(*) FROM " + t) == 3);
  // DDL inside the same transaction, then a statement cached before it.
  {
    auto s = m.get_session();
    s.execute("INSERT INTO " + t + " VALUES ('v', 6, 'gee', 7)");
    s.execute("ALTER TABLE " + t + " DROP COLUMN c");
    auto r4 = s.execute("SELECT * FROM " + t + " ORDER BY b");
    CHECK(columns_of(r4) == std::vector<std::string>{"a", "b", "e"});
    CHECK(r4.size() == 4);
    s.commit();
  }
  // Changed from outside dbmgrd (psql), and not the first statement: nothing can be retried
  // transparently; a clear error, and the transaction is rolled back.
  {
    auto s = m.get_session();  // the SELECT cached again, after the DDL transaction ended
    CHECK(s.execute("SELECT * FROM " + t + " ORDER BY b").column_count() == 3);
    s.commit();
  }
  REQUIRE(psql("ALTER TABLE " + t + " ADD COLUMN f integer") == 0);
  {
    auto s = m.get_session();
    s.execute("INSERT INTO " + t + " VALUES ('w', 8, 9, 10)");
    dbmgr::Error e = error_of([&] { s.execute("SELECT * FROM " + t + " ORDER BY b"); });
    CHECK(e.category() == dbmgr::ErrorCategory::kSerialization);
    CHECK(e.sqlstate() == "0A000");
    CHECK(e.message().find("changed since it was prepared") != std::string::npos);
    s.rollback();
    auto r5 = s.execute("SELECT * FROM " + t + " ORDER BY b");  // a new transaction: prepared anew
    CHECK(r5.column_count() == 4);
    s.commit();
  }
  CHECK(count(m, "SELECT count(*) FROM " + t) == 4);  // the failed transaction left nothing
  m.execute("DROP TABLE " + t);
}

TEST_CASE("PostgreSQL: DDL on another connection, through a DO block, a temp table, DEALLOCATE: no stale plan mid-transaction") {
  // Two connections, each with the SELECT cached; DDL on one while the other is in the middle
  // of a transaction.
  Daemon d(pg_daemon("pool:\n  pool_size: 2\n  max_overflow: 0\n"));
  dbmgr::DatabaseManager m(d.options());
  std::string t = tname("xconn");
  m.execute("DROP TABLE IF EXISTS " + t);
  m.execute("CREATE TABLE " + t + "(a integer)");
  const std::string sel = "SELECT * FROM " + t + " ORDER BY a";
  auto warm_both = [&] {  // both connections prepare the SELECT (two sessions at once)
    auto s1 = m.get_session();
    auto s2 = m.get_session();
    s1.execute(sel);
    s2.execute(sel);
    s1.commit();
    s2.commit();
  };
  auto ddl_beside = [&](const std::string& ddl, std::size_t want_columns) {
    warm_both();
    auto s = m.get_session();
    // Mid-transaction from here on, without a lock on t (the DDL would wait for it).
    s.execute("SELECT 1");
    auto other = m.get_session();                       // the other connection
    other.execute(ddl);
    other.commit();
    CAPTURE(ddl);
    auto r = s.execute(sel);
    CHECK(r.column_count() == want_columns);
    s.rollback();
  };
  SUBCASE("ALTER on the other connection") { ddl_beside("ALTER TABLE " + t + " ADD COLUMN b text", 2); }
  SUBCASE("DDL inside a DO block") {
    ddl_beside("DO $$ BEGIN EXECUTE 'ALTER TABLE " + t + " ADD COLUMN c text'; END $$", 2);
  }
  SUBCASE("a temp table that hides the table, on the same connection") {
    warm_both();
    auto s = m.get_session();
    s.execute("CREATE TEMP TABLE " + t + "(a integer, y text, z text)");
    CHECK(s.execute(sel).column_count() == 3);  // the temp table's columns
    s.rollback();
  }
  SUBCASE("ROLLBACK TO SAVEPOINT undoes DDL a cached statement was prepared after") {
    auto s = m.get_session();
    s.execute("SELECT 1");
    s.execute("SAVEPOINT sp");
    s.execute("ALTER TABLE " + t + " ADD COLUMN y text");
    CHECK(s.execute(sel).column_count() == 2);
    s.execute("ROLLBACK TO SAVEPOINT sp");
    CHECK(s.execute(sel).column_count() == 1);
    s.execute("SAVEPOINT sp2");
    s.execute("CREATE TEMP TABLE " + t + "(a integer, b text)");  // hides t
    CHECK(s.execute(sel).column_count() == 2);
    s.execute("ROLLBACK TO SAVEPOINT sp2");
    CHECK(s.execute(sel).column_count() == 1);
    s.commit();
  }
  SUBCASE("the client's DEALLOCATE ALL, then DDL elsewhere: later statements are not failed") {
    warm_both();
    auto s = m.get_session();
    s.execute("SELECT 1");
    s.execute("DEALLOCATE ALL");  // the server forgets the daemon's cached statements too
    {
      auto other = m.get_session();
      other.execute("ALTER TABLE " + t + " ADD COLUMN d text");
      other.commit();
    }
    CHECK(s.execute(sel).column_count() == 2);
    CHECK(s.execute("SELECT count(*) FROM " + t).at(0).get<std::int64_t>(0) == 0);
    CHECK(s.execute("SELECT 2").at(0).get<std::int64_t>(0) == 2);
    s.commit();
  }
  m.execute("DROP TABLE " + t);
}

TEST_CASE("PostgreSQL: what a DO block sets does not reach the next session on its connection") {
  Daemon d(pg_daemon("pool:\n  pool_size: 1\n  max_overflow: 0\n"));  // one connection
  dbmgr::DatabaseManager m(d.options());
  {
    auto s = m.get_session();
    s.execute("DO $$ BEGIN PERFORM set_config('dbmgr_test.leak', 'leaked', false); "
              "CREATE TEMP TABLE do_tmp(x int); END $$");
    s.commit();
  }
  auto s = m.get_session();
  auto r = s.execute("SELECT coalesce(current_setting('dbmgr_test.leak', true), ''), "
                     "to_regclass('pg_temp.do_tmp') IS NULL");
  CHECK(r.at(0).get<std::string>(0) == "");
  CHECK(r.at(0).get<bool>(1));
  s.commit();
}

TEST_CASE("PostgreSQL: a cached INSERT after its column changed type: the parameter type is inferred anew") {
  Daemon d(pg_daemon("pool:\n  pool_size: 1\n  max_overflow: 0\n"));
  dbmgr::DatabaseManager m(d.options());
  std::string t = tname("ptype");
  m.execute("DROP TABLE IF EXISTS " + t);
  m.execute("CREATE TABLE " + t + "(score varchar(10))");
  const std::string insert = "INSERT INTO " + t + "(score) VALUES (?)";
  m.execute(insert, {"5"});  // prepared with $1 inferred as varchar
  m.execute("DROP TABLE " + t);
  m.execute("CREATE TABLE " + t + "(score smallint)");
  m.execute(insert, {"7"});  // a one-shot: prepared anew, $1 now smallint
  {
    auto s = m.get_session();
    s.execute(insert, {"8"});  // the first statement of a transaction: the same
    s.commit();
  }
  CHECK(count(m, "SELECT sum(score) FROM " + t) == 15);
  // A genuine error still comes back, once.
  dbmgr::Error e = error_of([&] { m.execute(insert, {"not a number"}); });
  CHECK(e.category() == dbmgr::ErrorCategory::kData);
  CHECK(e.sqlstate() == "22P02");
  m.execute("DROP TABLE " + t);
}

// ---- 8. engines are disposed when idle ----

TEST_CASE("engine_idle_timeout: an engine without sessions is disposed and made again on use") {
  DaemonOptions o;
  o.config_yaml = "engine_idle_timeout: 300ms\n";
  Daemon d(o);
  // Descriptors other than sockets: the engine's are files, eventfds and pipes, while the
  // sockets come and go with clients (the harness's own probe connection may still be open
  // when `before` is taken).
  auto fds = [&] {
    std::size_t n = 0;
    for (auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(d.pid()) + "/fd")) {
      std::error_code ec;
      auto target = std::filesystem::read_symlink(e.path(), ec).string();
      if (!ec && target.rfind("socket:", 0) != 0) ++n;
    }
    return n;
  };
  auto listed = [&](const std::string& name) {
    for (auto& e : d.admin(Cmd::kEngines)) {
      if (e["database"] == name) return true;
    }
    return false;
  };
  std::size_t before = fds();
  {
    dbmgr::DatabaseManager m(d.options("test", "idle1"));
    m.execute("CREATE TABLE t (x INTEGER)");
    m.execute("INSERT INTO t VALUES (1)");
    CHECK(m.execute("SELECT count(*) FROM t", {}, dbmgr::Access::kReadOnly)
              .scalar<std::int64_t>() == 1);
    auto s = m.get_session();
    s.execute("INSERT INTO t VALUES (2)");
    CHECK(listed("test.idle1"));
    std::this_thread::sleep_for(500ms);  // longer than the timeout, with a session open
    CHECK(listed("test.idle1"));          // a session holds it
    s.commit();
  }
  CHECK(fds() > before);
  REQUIRE(eventually([&] { return !listed("test.idle1"); }));
  CHECK(d.admin(Cmd::kStatus)["totals"]["engines_disposed"] == 1);
  bool closed = eventually([&] { return fds() == before; }, 30s);
  if (!closed) {
    std::string open;
    for (auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(d.pid()) + "/fd")) {
      open += std::filesystem::read_symlink(e.path()).string() + " ";
    }
    MESSAGE("open descriptors (" << before << " before): " << open);
  }
  CHECK(closed);  // its descriptors are closed
  dbmgr::DatabaseManager again(d.options("test", "idle1"));
  CHECK(count(again, "SELECT count(*) FROM t") == 2);  // the same file, made again
  CHECK(d.admin(Cmd::kStatus)["totals"]["engines_created"] == 2);
  CHECK(d.log().find("engine test.idle1: disposed") != std::string::npos);
}

// ---- protocol truth: row batches ----

namespace {

// Runs `sql` as a one-shot over a raw connection and checks every kRows frame: its payload
// stays within kMaxRowBatchBytes unless it carries a single row. Returns the rows seen.
std::uint64_t check_batches(const Daemon& d, const std::string& prefix, const std::string& sql) {
  dbmgr::test::RawConn c(d.socket());
  c.hello();
  std::vector<std::uint8_t> out;
  dbmgr::proto::Encoder enc(out);
  enc.one_shot(9, "", prefix, 0, sql, nullptr, 0);
  c.send(out);
  std::uint64_t rows = 0;
  int frames = 0;
  for (;;) {
    auto f = c.read_frame(std::chrono::seconds(30));
    REQUIRE(f.size() >= dbmgr::proto::kHeaderSize);
    dbmgr::proto::Header h;
    REQUIRE(dbmgr::proto::parse_header(f.data(), 1u << 30, &h) == dbmgr::proto::DecodeError::kOk);
    if (h.type == dbmgr::proto::MsgType::kRows) {
      dbmgr::proto::Message m;
      REQUIRE(dbmgr::proto::decode({h, f.data() + dbmgr::proto::kHeaderSize}, &m) ==
              dbmgr::proto::DecodeError::kOk);
      auto& r = std::get<dbmgr::proto::Rows>(m);
      CHECK_MESSAGE((h.length <= dbmgr::proto::kMaxRowBatchBytes || r.row_count == 1),
                    "a kRows frame of ", h.length, " bytes with ", r.row_count, " rows");
      rows += r.row_count;
      ++frames;
    }
    REQUIRE(h.type != dbmgr::proto::MsgType::kError);
    if (h.type == dbmgr::proto::MsgType::kComplete) break;
  }
  CHECK(frames > 5);
  return rows;
}

}  // namespace

TEST_CASE("row batches end before a row that would pass 256 KiB; a larger row travels alone") {
  SUBCASE("SQLite") {
    Daemon d;
    std::uint64_t n = check_batches(
        d, "test",
        "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 20) "
        "SELECT x, hex(zeroblob(50000)) FROM n UNION ALL SELECT 21, hex(zeroblob(150000))");
    CHECK(n == 21);
  }
  SUBCASE("PostgreSQL") {
    Daemon d(pg_daemon());
    std::uint64_t n = check_batches(
        d, "",
        "SELECT x, repeat('x', 100000) FROM generate_series(1, 20) x "
        "UNION ALL SELECT 21, repeat('y', 300000)");
    CHECK(n == 21);
  }
}

// ---- a cancel never reaches the next user of the connection ----

TEST_CASE("PostgreSQL: the cancel for a killed client's statement never cancels the next user's") {
  Daemon d(pg_daemon("pool:\n  pool_size: 1\n  max_overflow: 0\n"));
  dbmgr::DatabaseManager m(d.options());
  int cancelled = 0;
  for (int round = 0; round < 20; ++round) {
    // A's statement ends at about the moment A is killed: the daemon's cancel may arrive at
    // the server after the statement is over, when B's statement runs on that connection.
    pid_t a = dbmgr::test::fork_child([&] {
      dbmgr::DatabaseManager child(d.options());
      child.execute("SELECT pg_sleep(0.1)");
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(90 + round % 5 * 5));
    std::thread b([&] {
      try {
        m.execute("SELECT pg_sleep(0.05)");
      } catch (const dbmgr::Error& e) {
        if (e.sqlstate() == "57014") ++cancelled;
        else throw;
      }
    });
    kill(a, SIGKILL);
    dbmgr::test::wait_child(a);
    b.join();
  }
  CHECK(cancelled == 0);
  CHECK(d.pool(env("DBMGR_TEST_PG_DB"), "main")["in_use"] == 0);
}

TEST_CASE("a row larger than max_frame_bytes fails its statement (resources, 54000); nothing breaks") {
  SUBCASE("SQLite") {
    DaemonOptions o;
    o.config_yaml = "max_frame_bytes: 64KiB\n";
    Daemon d(o);
    dbmgr::DatabaseManager m(d.options("test", "bigrow"));
    dbmgr::Error e = error_of([&] { m.execute("SELECT 1, hex(zeroblob(40000))"); });
    CHECK(e.category() == dbmgr::ErrorCategory::kResources);
    CHECK(e.sqlstate() == "54000");
    CHECK(m.execute("SELECT length(hex(zeroblob(1000)))").scalar<std::int64_t>() == 2000);
  }
  SUBCASE("PostgreSQL") {
    DaemonOptions o = pg_daemon("max_frame_bytes: 64KiB\n");
    Daemon d(o);
    dbmgr::DatabaseManager m(d.options());
    dbmgr::Error e = error_of([&] { m.execute("SELECT x, repeat('z', 80000) FROM generate_series(1, 3) x"); });
    CHECK(e.category() == dbmgr::ErrorCategory::kResources);
    CHECK(e.sqlstate() == "54000");
    auto s = m.get_session();
    dbmgr::Error e2 = error_of([&] { s.execute("SELECT repeat('z', 80000)"); });
    CHECK(e2.category() == dbmgr::ErrorCategory::kResources);
    s.rollback();
    CHECK(s.execute("SELECT length(repeat('z', 1000))").scalar<std::int64_t>() == 1000);
    s.commit();
  }
}

// ---- 7. error categories follow the SQLSTATE class on every backend ----

TEST_CASE("error categories: SQLite and PostgreSQL errors by SQLSTATE class, not all 'syntax'") {
  SUBCASE("SQLite") {
    Daemon d;
    dbmgr::DatabaseManager m(d.options("test", "cats"));
    auto overflow = error_of([&] {
      m.execute("SELECT sum(x) FROM (SELECT 9223372036854775807 AS x UNION ALL SELECT 1)");
    });
    CHECK(overflow.category() == dbmgr::ErrorCategory::kData);
    CHECK(overflow.sqlstate() == "22003");
    auto syntax = error_of([&] { m.execute("SELEKT 1"); });
    CHECK(syntax.category() == dbmgr::ErrorCategory::kSyntax);
    CHECK(syntax.sqlstate() == "42601");
    auto missing = error_of([&] { m.execute("SELECT * FROM no_such_table"); });
    CHECK(missing.category() == dbmgr::ErrorCategory::kSyntax);
    CHECK(missing.sqlstate() == "42P01");
    m.execute("CREATE TABLE u (id INTEGER PRIMARY KEY, v TEXT NOT NULL)");
    auto notnull = error_of([&] { m.execute("INSERT INTO u(v) VALUES (NULL)"); });
    CHECK(notnull.category() == dbmgr::ErrorCategory::kConstraint);
    CHECK(notnull.sqlstate() == "23502");
    auto regexp = error_of([&] { m.execute("SELECT 'a' REGEXP '('"); });
    CHECK(regexp.category() == dbmgr::ErrorCategory::kData);
    CHECK(regexp.sqlstate() == "2201B");
  }
  SUBCASE("PostgreSQL") {
    Daemon d(pg_daemon());
    dbmgr::DatabaseManager m(d.options());
    std::string p = tname("cat_parent"), c = tname("cat_child");
    m.execute("DROP TABLE IF EXISTS " + c);
    m.execute("DROP TABLE IF EXISTS " + p);
    m.execute("CREATE TABLE " + p + " (id int PRIMARY KEY)");
    m.execute("CREATE TABLE " + c + " (id int, parent_id int REFERENCES " + p + "(id))");
    auto depends = error_of([&] { m.execute("DROP TABLE " + p); });
    CHECK(depends.sqlstate() == "2BP01");
    CHECK(depends.category() == dbmgr::ErrorCategory::kConstraint);
    auto zero = error_of([&] { m.execute("SELECT 1 / 0"); });
    CHECK(zero.sqlstate() == "22012");
    CHECK(zero.category() == dbmgr::ErrorCategory::kData);
    auto missing = error_of([&] { m.execute("SELECT * FROM no_such_table_here"); });
    CHECK(missing.sqlstate() == "42P01");
    CHECK(missing.category() == dbmgr::ErrorCategory::kSyntax);
    auto feature = error_of([&] { m.execute("SELECT count(*) FROM pg_class FOR UPDATE"); });
    CHECK(feature.category() == dbmgr::ErrorCategory::kUnsupported);
    CHECK(feature.sqlstate() == "0A000");
    m.execute("DROP TABLE " + c);
    m.execute("DROP TABLE " + p);
  }
}

// ---- found by review: one-shots never keep a connection, the loop never spins ----

namespace {


// A SQLite statement that keeps a worker thread busy for a few seconds.
constexpr const char* kBusySqlite =
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 15000000) "
    "SELECT count(*) FROM c";

}  // namespace

TEST_CASE("PostgreSQL: one-shots that leave a transaction open (BEGIN, a read-only script) keep no connection") {
  Daemon d(pg_daemon("pool:\n  pool_size: 1\n  max_overflow: 0\n  pool_timeout: 2s\n"));
  dbmgr::DatabaseManager m(d.options());
  m.execute("BEGIN");
  for (int i = 0; i < 2; ++i) m.execute("SELECT 1; SELECT 2", {}, dbmgr::Access::kReadOnly);
  CHECK(m.execute("SELECT 3").scalar<std::int64_t>() == 3);  // no pool_exhausted
  CHECK(eventually([&] { return d.pool(env("DBMGR_TEST_PG_DB"), "main")["in_use"] == 0; }));
}

TEST_CASE("SQLite: a read-only one-shot BEGIN keeps no reader connection") {
  DaemonOptions o;
  o.config_yaml = "pool:\n  pool_size: 1\n  max_overflow: 0\n  pool_timeout: 2s\nsqlite:\n  readers: 1\n";
  Daemon d(o);
  dbmgr::DatabaseManager m(d.options("test", "robegin"));
  m.execute("CREATE TABLE t (x INTEGER)");
  m.execute("BEGIN", {}, dbmgr::Access::kReadOnly);
  CHECK(m.execute("SELECT count(*) FROM t", {}, dbmgr::Access::kReadOnly).scalar<std::int64_t>() == 0);
  CHECK(eventually([&] { return d.pool("test.robegin", "reader")["in_use"] == 0; }));
}

TEST_CASE("PostgreSQL: a one-shot write whose RETURNING row cannot be sent is not committed") {
  Daemon d(pg_daemon("max_frame_bytes: 64KiB\n"));
  dbmgr::DatabaseManager m(d.options());
  std::string t = tname("bigret");
  m.execute("DROP TABLE IF EXISTS " + t);
  m.execute("CREATE TABLE " + t + " (id serial PRIMARY KEY, v text)");
  dbmgr::Error e = error_of(
      [&] { m.execute("INSERT INTO " + t + "(v) VALUES (repeat('x', 100000)) RETURNING v"); });
  CHECK(e.category() == dbmgr::ErrorCategory::kResources);
  CHECK(count(m, "SELECT count(*) FROM " + t) == 0);  // told "failed": absent
  auto r = m.execute("INSERT INTO " + t + "(v) VALUES ('small') RETURNING id, v");
  CHECK(r[0].get<std::string>(1) == "small");
  CHECK(count(m, "SELECT count(*) FROM " + t) == 1);  // a RETURNING one-shot commits
  m.execute("DROP TABLE " + t);
}

TEST_CASE("PostgreSQL: a genuine error of a cached statement is not run twice") {
  Daemon d(pg_daemon());
  dbmgr::DatabaseManager m(d.options());
  std::string seq = tname("rv_seq");
  m.execute("DROP SEQUENCE IF EXISTS " + seq);
  m.execute("CREATE SEQUENCE " + seq);
  const std::string sql = "SELECT nextval('" + seq + "') / ?";
  m.execute(sql, {std::int64_t{1}});  // prepared and cached: nextval = 1
  dbmgr::Error e = error_of([&] { m.execute(sql, {std::int64_t{0}}); });
  CHECK(e.sqlstate() == "22012");
  CHECK(count(m, "SELECT last_value FROM " + seq) == 2);
  m.execute("DROP SEQUENCE " + seq);
}

TEST_CASE("PostgreSQL: the server speaking while a reset waits for a cancel does not hang the loop") {
  DaemonOptions o = pg_daemon("worker_threads: 1\npool:\n  pool_size: 1\n  max_overflow: 0\n"
                              "databases:\n  lite:\n    type: sqlite\n");
  Daemon d(o);
  dbmgr::DatabaseManager m(d.options());
  CHECK(m.execute("SELECT 1").scalar<std::int64_t>() == 1);  // the connection is open
  std::thread busy([&] {  // the one worker thread is busy: a cancel request must wait
    dbmgr::DatabaseManager lite(d.options({}, "lite"));
    lite.execute(kBusySqlite);
  });
  std::this_thread::sleep_for(300ms);
  std::thread killer;
  {
    dbmgr::test::RawConn c(d.socket());
    c.hello();
    std::vector<std::uint8_t> out;
    dbmgr::proto::Encoder enc(out);
    enc.one_shot(5, "", "", 0, "SELECT pg_sleep(0.3)", nullptr, 0);
    c.send(out);
    std::this_thread::sleep_for(100ms);
  }  // gone: the daemon cancels (queued behind SQLite); the statement ends; the reset waits
  std::this_thread::sleep_for(500ms);
  // The server ends that backend while dbmgrd waits for the cancel: a FATAL, then EOF.
  CHECK(psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = "
             "'client backend' AND pid <> pg_backend_pid() AND application_name LIKE '%pid%'") == 0);
  std::this_thread::sleep_for(200ms);
  auto t0 = std::chrono::steady_clock::now();
  CHECK(d.admin(Cmd::kStatus)["pid"] == d.pid());  // the loop answers
  CHECK(dbmgr::test::seconds_since(t0) < 1.0);
  busy.join();
  CHECK(m.execute("SELECT 2").scalar<std::int64_t>() == 2);  // and serves PostgreSQL again
}

TEST_CASE("PostgreSQL: a stale statement retried after its client left uses nothing of the client") {
  Daemon d(pg_daemon("worker_threads: 1\npool:\n  pool_size: 1\n  max_overflow: 0\n"
                     "databases:\n  lite:\n    type: sqlite\n"));
  std::string t = tname("lbl");
  dbmgr::DatabaseManager m(d.options());
  m.execute("DROP TABLE IF EXISTS " + t);
  m.execute("CREATE TABLE " + t + " (v varchar(10))");
  const std::string insert = "INSERT INTO " + t + "(v) SELECT ? FROM pg_sleep(0.3)";
  m.execute(insert, {"1"});  // cached with $1 inferred as varchar
  m.execute("DROP TABLE " + t);
  m.execute("CREATE TABLE " + t + " (v smallint)");
  std::thread busy([&] {
    dbmgr::DatabaseManager lite(d.options({}, "lite"));
    lite.execute(kBusySqlite);
  });
  std::this_thread::sleep_for(300ms);
  {
    dbmgr::test::RawConn c(d.socket());
    c.hello();
    std::vector<std::uint8_t> out;
    dbmgr::proto::Encoder enc(out);
    dbmgr::proto::Value v;
    v.tag = dbmgr::proto::ValueTag::kText;
    v.bytes = "7";
    enc.one_shot(5, "", "", 0, insert, &v, 1);
    c.send(out);
  }  // gone before the stale statement fails and is retried (ASan would see a freed label)
  busy.join();
  CHECK(eventually([&] { return count(m, "SELECT count(*) FROM " + t) <= 1; }));
  CHECK(m.execute("SELECT 5").scalar<std::int64_t>() == 5);
  m.execute("DROP TABLE " + t);
}
