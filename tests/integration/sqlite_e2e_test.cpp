// End to end on SQLite: worker processes use libdbmgr against a real dbmgrd.
#include <signal.h>
#include <sys/stat.h>

#include <filesystem>
#include <sqlite3.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include <doctest/doctest.h>

#include "harness.hpp"

using namespace std::chrono_literals;
using dbmgr::test::Daemon;
using dbmgr::test::DaemonOptions;
using dbmgr::test::fork_child;
using dbmgr::test::seconds_since;
using dbmgr::test::wait_child;
using Cmd = dbmgr::proto::AdminCommand;

namespace {

// Reads a count straight from the SQLite file, bypassing the daemon.
std::int64_t count_in_file(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_step(st) == SQLITE_ROW);
  std::int64_t n = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return n;
}

void create_items(dbmgr::DatabaseManager& m) {
  m.execute("CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, owner INTEGER, v TEXT)");
}

}  // namespace

TEST_CASE("16 processes x 200 write transactions: exact count, no client error") {
  Daemon d;
  dbmgr::DatabaseManager m(d.options("test", "conc"));
  create_items(m);
  constexpr int kProcs = 16;
  constexpr int kTx = 200;
  std::vector<pid_t> kids;
  for (int p = 0; p < kProcs; ++p) {
    kids.push_back(fork_child([&, p] {
      dbmgr::DatabaseManager child(d.options("test", "conc"));
      for (int i = 0; i < kTx; ++i) {
        child.run([&](dbmgr::Session& s) {
          s.execute("INSERT INTO items(owner, v) VALUES (?, ?)", {p, "x"});
          s.execute("UPDATE items SET v = 'y' WHERE id = last_insert_rowid()");
        });
      }
    }));
  }
  for (pid_t k : kids) CHECK(wait_child(k) == 0);
  auto n = m.execute("SELECT count(*) FROM items WHERE v = 'y'").scalar<std::int64_t>();
  CHECK(n == kProcs * kTx);
  CHECK(count_in_file(d.data_dir() + "/test.conc.db", "SELECT count(*) FROM items") == kProcs * kTx);
  auto status = d.admin(Cmd::kStatus);
  CHECK(status["totals"]["errors"] == 0);
  auto w = d.pool("test.conc", "writer");
  CHECK(w["in_use"] == 0);
  CHECK(w["timeouts"] == 0);
}

TEST_CASE("a client killed with SIGKILL inside a write transaction: rolled back, lock freed") {
  Daemon d;
  dbmgr::DatabaseManager m(d.options("test", "kill"));
  create_items(m);
  int ready[2];
  REQUIRE(pipe(ready) == 0);
  pid_t kid = fork_child([&] {
    dbmgr::DatabaseManager child(d.options("test", "kill"));
    auto s = child.get_session();
    for (int i = 0; i < 50; ++i) s.execute("INSERT INTO items(owner, v) VALUES (666, 'doomed')");
    char c = 'r';
    (void)!write(ready[1], &c, 1);
    pause();  // holds the writer, in a transaction, until killed
  });
  char c = 0;
  REQUIRE(read(ready[0], &c, 1) == 1);
  CHECK(d.pool("test.kill", "writer")["in_use"] == 1);
  kill(kid, SIGKILL);
  CHECK(wait_child(kid) == 128 + SIGKILL);
  auto killed_at = std::chrono::steady_clock::now();
  // The next writer gets the lock quickly (the daemon rolled back and released).
  m.execute("INSERT INTO items(owner, v) VALUES (1, 'after')");
  double waited = seconds_since(killed_at);
  CHECK(waited < 1.0);
  CHECK(m.execute("SELECT count(*) FROM items WHERE owner = 666").scalar<std::int64_t>() == 0);
  CHECK(m.execute("SELECT count(*) FROM items WHERE owner = 1").scalar<std::int64_t>() == 1);
  auto w = d.pool("test.kill", "writer");
  CHECK(w["in_use"] == 0);
  CHECK(d.admin(Cmd::kStatus)["totals"]["rollbacks_on_disconnect"] == 1);
}

TEST_CASE("prefixed managers write to separate files and cannot see each other") {
  Daemon d;
  dbmgr::DatabaseManager a(d.options("test", "app"));
  dbmgr::DatabaseManager b(d.options("test.payment", "app"));
  CHECK(a.database_name() == "test.app");
  CHECK(b.database_name() == "test.payment.app");
  CHECK(a.database_type() == "sqlite");
  CHECK(a.pk_type() == "String");
  CHECK(a.database_uri() == "sqlite:///" + d.data_dir() + "/test.app.db");
  for (auto* m : {&a, &b}) create_items(*m);
  a.execute("INSERT INTO items(owner, v) VALUES (1, 'a')");
  b.execute("INSERT INTO items(owner, v) VALUES (2, 'b')");
  b.execute("INSERT INTO items(owner, v) VALUES (2, 'b')");
  CHECK(a.execute("SELECT count(*) FROM items").scalar<std::int64_t>() == 1);
  CHECK(b.execute("SELECT count(*) FROM items").scalar<std::int64_t>() == 2);
  CHECK(count_in_file(d.data_dir() + "/test.app.db", "SELECT count(*) FROM items") == 1);
  CHECK(count_in_file(d.data_dir() + "/test.payment.app.db", "SELECT count(*) FROM items") == 2);
  // A name that already carries the prefix is not prefixed twice.
  dbmgr::DatabaseManager c(d.options("test", "test.app"));
  CHECK(c.database_name() == "test.app");
  CHECK(c.execute("SELECT count(*) FROM items").scalar<std::int64_t>() == 1);
  // A bad prefix is refused with a clear error.
  dbmgr::DatabaseManager bad(d.options("../etc", "app"));
  try {
    bad.execute("SELECT 1");
    FAIL("a bad prefix was accepted");
  } catch (const dbmgr::Error& e) {
    CHECK(e.category() == dbmgr::ErrorCategory::kInvalidRequest);
    CHECK(std::string(e.what()).find("prefix") != std::string::npos);
  }
}

TEST_CASE("pool exhaustion: the second writer gets pool_exhausted after pool_timeout") {
  Daemon d({.config_yaml = "pool:\n  pool_size: 1\n  max_overflow: 0\n  pool_timeout: 1s\n"});
  dbmgr::DatabaseManager m(d.options("test", "exh"));
  create_items(m);
  auto holder = m.get_session();
  holder.execute("INSERT INTO items(owner, v) VALUES (1, 'held')");
  auto start = std::chrono::steady_clock::now();
  try {
    m.execute("INSERT INTO items(owner, v) VALUES (2, 'waits')");
    FAIL("the second writer did not wait for the pool");
  } catch (const dbmgr::Error& e) {
    double waited = seconds_since(start);
    CHECK(e.category() == dbmgr::ErrorCategory::kPoolExhausted);
    CHECK(std::string(e.message()).find("test.exh") != std::string::npos);
    CHECK(std::string(e.message()).find("in use 1") != std::string::npos);
    CHECK(waited >= 0.9);
    CHECK(waited < 3.0);
  }
  holder.commit();
  m.execute("INSERT INTO items(owner, v) VALUES (3, 'after')");
  CHECK(m.execute("SELECT count(*) FROM items").scalar<std::int64_t>() == 2);
  auto w = d.pool("test.exh", "writer");
  CHECK(w["timeouts"] == 1);
  CHECK(w["in_use"] == 0);
}

TEST_CASE("idle_in_transaction_timeout aborts the transaction and says so") {
  Daemon d({.config_yaml = "pool:\n  idle_in_transaction_timeout: 300ms\n"});
  dbmgr::DatabaseManager m(d.options("test", "idle"));
  create_items(m);
  auto s = m.get_session();
  s.execute("INSERT INTO items(owner, v) VALUES (1, 'idle')");
  std::this_thread::sleep_for(800ms);
  try {
    s.execute("INSERT INTO items(owner, v) VALUES (2, 'late')");
    FAIL("the idle transaction was not aborted");
  } catch (const dbmgr::Error& e) {
    CHECK(e.category() == dbmgr::ErrorCategory::kTimeout);
    CHECK(std::string(e.message()).find("idle_in_transaction_timeout") != std::string::npos);
  }
  s.rollback();
  CHECK(m.execute("SELECT count(*) FROM items").scalar<std::int64_t>() == 0);
  // The writer was released: others can write.
  CHECK(d.pool("test.idle", "writer")["in_use"] == 0);
  s.execute("INSERT INTO items(owner, v) VALUES (3, 'fresh')");
  s.commit();
  CHECK(m.execute("SELECT count(*) FROM items").scalar<std::int64_t>() == 1);
}

TEST_CASE("run() commits on return and rolls back on throw; get_db(false) without commit") {
  Daemon d;
  dbmgr::DatabaseManager m(d.options("test", "run"));
  create_items(m);
  m.run([](dbmgr::Session& s) { s.execute("INSERT INTO items(owner, v) VALUES (1, 'kept')"); });
  CHECK_THROWS_AS(m.run([](dbmgr::Session& s) {
    s.execute("INSERT INTO items(owner, v) VALUES (2, 'dropped')");
    throw std::runtime_error("boom");
  }), std::runtime_error);
  {
    auto db = m.get_db(false);
    db.execute("INSERT INTO items(owner, v) VALUES (3, 'uncommitted')");
  }
  {
    auto db = m.get_db();
    db.execute("INSERT INTO items(owner, v) VALUES (4, 'scoped')");
  }
  {
    auto db = m.get_db(false);
    db.execute("INSERT INTO items(owner, v) VALUES (5, 'explicit')");
    db.commit();
  }
  auto r = m.execute("SELECT owner FROM items ORDER BY owner");
  REQUIRE(r.size() == 3);
  CHECK(r[0].get<std::int64_t>(0) == 1);
  CHECK(r[1].get<std::int64_t>(0) == 4);
  CHECK(r[2].get<std::int64_t>(0) == 5);
  // A constraint error fails the statement, the session must roll back before going on.
  m.execute("CREATE TABLE u (k TEXT PRIMARY KEY)");
  auto s = m.get_session();
  s.execute("INSERT INTO u VALUES ('a')");
  try {
    s.execute("INSERT INTO u VALUES ('a')");
    FAIL("duplicate key accepted");
  } catch (const dbmgr::Error& e) {
    CHECK(e.category() == dbmgr::ErrorCategory::kConstraint);
    CHECK(e.sqlstate() == "23505");
  }
  CHECK_THROWS_AS(s.commit(), dbmgr::Error);
  s.rollback();
  CHECK(m.execute("SELECT count(*) FROM u").scalar<std::int64_t>() == 0);
}

TEST_CASE("REGEXP through RE2: match, invalid pattern, pathological pattern") {
  Daemon d;
  dbmgr::DatabaseManager m(d.options("test", "re"));
  m.execute("CREATE TABLE users (email TEXT)");
  for (auto e : {"ada@example.com", "bob@example.org", "cy@example.com"}) {
    m.execute("INSERT INTO users VALUES (?)", {e});
  }
  auto r = m.execute("SELECT email FROM users WHERE email REGEXP ? ORDER BY email",
                     {"@example\\.com$"});
  REQUIRE(r.size() == 2);
  CHECK(r[0].get<std::string>(0) == "ada@example.com");
  CHECK(r[1].get<std::string>(0) == "cy@example.com");
  try {
    m.execute("SELECT count(*) FROM users WHERE email REGEXP ?", {"(unclosed"});
    FAIL("an invalid pattern was accepted");
  } catch (const dbmgr::Error& e) {
    CHECK(std::string(e.message()).find("invalid REGEXP pattern") != std::string::npos);
  }
  std::string big(100 * 1024, 'a');
  big += '!';
  auto start = std::chrono::steady_clock::now();
  auto hit = m.execute("SELECT ? REGEXP '(a+)+$'", {big}).scalar<std::int64_t>();
  CHECK(hit == 0);
  CHECK(seconds_since(start) < 5.0);  // a backtracking engine would not come back at all
  CHECK(m.execute("SELECT ? REGEXP '^(a+)+!$'", {big}).scalar<std::int64_t>() == 1);
}

TEST_CASE("read-only sessions run on readers while a writer holds its transaction") {
  Daemon d;
  dbmgr::DatabaseManager m(d.options("test", "ro"));
  create_items(m);
  m.execute("INSERT INTO items(owner, v) VALUES (1, 'committed')");
  auto writer = m.get_session();
  writer.execute("INSERT INTO items(owner, v) VALUES (2, 'pending')");
  auto reader = m.get_session(dbmgr::Access::kReadOnly);
  CHECK(reader.execute("SELECT count(*) FROM items").scalar<std::int64_t>() == 1);
  try {
    reader.execute("INSERT INTO items(owner, v) VALUES (3, 'nope')");
    FAIL("a read-only session wrote");
  } catch (const dbmgr::Error& e) {
    CHECK(e.category() == dbmgr::ErrorCategory::kInvalidRequest);
  }
  reader.rollback();
  writer.commit();
  CHECK(reader.execute("SELECT count(*) FROM items").scalar<std::int64_t>() == 2);
  reader.commit();
  CHECK(d.pool("test.ro", "reader")["in_use"] == 0);
}

TEST_CASE("a large result streams in batches without the daemon holding it") {
  // A small page cache, so RSS shows the daemon's own buffering and not SQLite's cache.
  Daemon d({.config_yaml = "sqlite:\n  cache_size: 2MB\n"});
  dbmgr::DatabaseManager m(d.options("test", "big"));
  m.execute("CREATE TABLE blobs (id INTEGER PRIMARY KEY, b BLOB)");
  // 48 MiB in 12288 rows of 4 KiB.
  m.execute(
      "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 12288) "
      "INSERT INTO blobs(b) SELECT randomblob(4096) FROM n");
  auto rss_before = d.admin(Cmd::kStatus)["rss_kb"].get<std::int64_t>();
  auto r = m.execute("SELECT id, b FROM blobs ORDER BY id");
  REQUIRE(r.size() == 12288);
  CHECK(r[12287].get<std::int64_t>(0) == 12288);
  CHECK(r[100].get<dbmgr::Blob>(1).size() == 4096);
  auto rss_after = d.admin(Cmd::kStatus)["rss_kb"].get<std::int64_t>();
  INFO("daemon RSS before " << rss_before << " KB, after " << rss_after << " KB");
  CHECK(rss_after - rss_before < 24 * 1024);  // far less than the 48 MiB result
}

TEST_CASE("statements pipelined in one session after an error fail until rollback") {
  Daemon d;
  dbmgr::DatabaseManager m(d.options("test", "pipe"));
  auto s = m.get_session();
  CHECK_THROWS_AS(s.execute("SELEKT 1"), dbmgr::Error);
  try {
    s.execute("SELECT 1");
    FAIL("a failed session accepted a statement");
  } catch (const dbmgr::Error& e) {
    // The client library refuses locally or the daemon refuses: both name the rollback.
    CHECK(std::string(e.what()).find("rollback") != std::string::npos);
  }
  s.rollback();
  CHECK(s.execute("SELECT 41 + 1").scalar<std::int64_t>() == 42);
}

TEST_CASE("every SQLite connection is tuned; files and folders are created 0640 / 0750") {
  Daemon d;
  // A prefix whose database lives in a folder that does not exist yet.
  std::string folder = d.data_dir() + "/nested/deeper";
  Daemon nested({.env = {{"DATABASE_PATH", folder}}});
  dbmgr::DatabaseManager m(nested.options("test", "tuned"));
  for (auto access : {dbmgr::Access::kReadWrite, dbmgr::Access::kReadOnly}) {
    auto s = m.get_session(access);
    CHECK(s.execute("PRAGMA journal_mode").scalar<std::string>() == "wal");
    CHECK(s.execute("PRAGMA synchronous").scalar<std::int64_t>() == 1);  // NORMAL
    CHECK(s.execute("PRAGMA foreign_keys").scalar<std::int64_t>() == 1);
    CHECK(s.execute("PRAGMA busy_timeout").scalar<std::int64_t>() == 30000);
    CHECK(s.execute("PRAGMA cache_size").scalar<std::int64_t>() == -65536);
    s.commit();
  }
  struct stat st {};
  REQUIRE(stat((folder + "/test.tuned.db").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0640);
  REQUIRE(stat(folder.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0750);
  REQUIRE(stat((d.data_dir() + "/nested").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0750);
}

TEST_CASE("opening another connection never drops the daemon's locks on a SQLite file") {
  // Regression: the daemon once open()+close()d the database file for every new connection,
  // and close() drops every POSIX lock the process holds on the file. Another process then
  // believes it is the file's last user: on close it checkpoints and deletes the WAL that
  // the daemon's connections still use, which corrupts the database.
  Daemon d;
  dbmgr::DatabaseManager m(d.options("test", "locks"));
  create_items(m);
  m.execute("INSERT INTO items(owner, v) VALUES (1, 'a')");
  std::string file = d.data_dir() + "/test.locks.db";
  for (int round = 0; round < 3; ++round) {
    // A new reader connection opens in the daemon (and the writer is in use).
    auto writer = m.get_session();
    writer.execute("INSERT INTO items(owner, v) VALUES (2, 'b')");
    auto reader = m.get_session(dbmgr::Access::kReadOnly);
    CHECK(reader.execute("SELECT count(*) FROM items").scalar<std::int64_t>() >= 1);
    reader.commit();
    writer.commit();
    // Another process opens the file and closes it again.
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open_v2(file.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db, "SELECT count(*) FROM items", nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(db);
    // It must have seen that the daemon still uses the file: the WAL is still there.
    CHECK(std::filesystem::exists(file + "-wal"));
  }
  CHECK(m.execute("SELECT count(*) FROM items").scalar<std::int64_t>() == 4);
  CHECK(m.execute("PRAGMA quick_check").scalar<std::string>() == "ok");
}
