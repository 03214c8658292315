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
    CHECK(e.category() == dbmgr::ErrorCategory::kReadOnly);
    CHECK(e.sqlstate() == "25006");
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
    // The default 64 MiB is the database's: the writer half of it, each of the 4 + 10
    // (max_overflow) readers an equal part of the other half.
    CHECK(s.execute("PRAGMA cache_size").scalar<std::int64_t>() ==
          (access == dbmgr::Access::kReadWrite ? -32768 : -(32768 / 14)));
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

// ---- Group commit of queued one-shot writes (docs/protocol.md section 11, DESIGN 5) ----

namespace {

std::uint64_t writer_field(const Daemon& d, const std::string& db, const char* field) {
  auto w = d.pool(db, "writer");
  return w.contains(field) ? w[field].get<std::uint64_t>() : 0;
}

}  // namespace

TEST_CASE("group commit: 8 processes x 500 one-shot INSERTs, exact count, grouped") {
  Daemon d;
  dbmgr::DatabaseManager m(d.options("test", "gc"));
  create_items(m);
  constexpr int kProcs = 8;
  constexpr int kInserts = 500;
  std::vector<pid_t> kids;
  for (int p = 0; p < kProcs; ++p) {
    kids.push_back(fork_child([&, p] {
      dbmgr::DatabaseManager child(d.options("test", "gc"));
      for (int i = 0; i < kInserts; ++i) {
        if (i % 5 == 0) {  // RETURNING inside a group: the row and last_insert_id are its own
          auto r = child.execute("INSERT INTO items(owner, v) VALUES (?, ?) RETURNING id, owner",
                                 {p, "r"});
          if (r.size() != 1 || r.affected_rows() != 1 || r.last_insert_id() <= 0 ||
              r[0].get<std::int64_t>(0) != r.last_insert_id() ||
              r[0].get<std::int64_t>(1) != p) {
            throw std::runtime_error("wrong RETURNING result");
          }
        } else {
          auto r = child.execute("INSERT INTO items(owner, v) VALUES (?, ?)", {p, "x"});
          if (r.affected_rows() != 1 || r.last_insert_id() <= 0) {
            throw std::runtime_error("wrong affected rows / last insert id");
          }
        }
      }
    }));
  }
  for (pid_t k : kids) CHECK(wait_child(k) == 0);
  CHECK(m.execute("SELECT count(*) FROM items").scalar<std::int64_t>() == kProcs * kInserts);
  CHECK(count_in_file(d.data_dir() + "/test.gc.db", "SELECT count(*) FROM items") ==
        kProcs * kInserts);
  CHECK(m.execute("SELECT count(DISTINCT id) FROM items").scalar<std::int64_t>() ==
        kProcs * kInserts);
  auto status = d.admin(Cmd::kStatus);
  CHECK(status["totals"]["errors"] == 0);
  auto groups = writer_field(d, "test.gc", "group_commits");
  auto grouped = writer_field(d, "test.gc", "group_committed_statements");
  MESSAGE("group commits: " << groups << ", statements in them: " << grouped);
  CHECK(groups > 0);
  CHECK(grouped > groups);
  CHECK(grouped <= static_cast<std::uint64_t>(kProcs * kInserts));
  CHECK(d.pool("test.gc", "writer")["in_use"] == 0);
  // The same figures in `engines`.
  bool found = false;
  for (const auto& e : d.admin(Cmd::kEngines)) {
    if (e["database"] == "test.gc") {
      found = true;
      CHECK(e["group_commits"] == groups);
      CHECK(e["group_committed_statements"] == grouped);
    }
  }
  CHECK(found);
}

TEST_CASE("group commit: constraint violations fail alone, every other row commits") {
  Daemon d;
  dbmgr::DatabaseManager m(d.options("test", "gcerr"));
  m.execute("CREATE TABLE uq (id INTEGER PRIMARY KEY, k INTEGER UNIQUE, "
            "v TEXT CHECK (v <> 'bad'))");
  constexpr int kSeeded = 50;
  for (int i = 0; i < kSeeded; ++i) m.execute("INSERT INTO uq(k, v) VALUES (?, 'seed')", {-1 - i});
  constexpr int kProcs = 8;
  constexpr int kInserts = 300;
  std::vector<pid_t> kids;
  for (int p = 0; p < kProcs; ++p) {
    kids.push_back(fork_child([&, p] {
      dbmgr::DatabaseManager child(d.options("test", "gcerr"));
      for (int i = 0; i < kInserts; ++i) {
        std::int64_t key = p * 100000 + i;
        std::string v = "ok";
        int expect = 0;  // 0 ok, 1 unique, 2 check
        if (i % 10 == 3) {
          key = -1 - (i % kSeeded);  // a seeded key: UNIQUE violation
          expect = 1;
        } else if (i % 10 == 7) {
          v = "bad";  // CHECK violation
          expect = 2;
        }
        try {
          auto r = child.execute("INSERT INTO uq(k, v) VALUES (?, ?)", {key, v});
          if (expect != 0) throw std::runtime_error("a violating insert succeeded");
          if (r.affected_rows() != 1) throw std::runtime_error("affected rows not 1");
        } catch (const dbmgr::Error& e) {
          if (expect == 0) throw std::runtime_error(std::string("good insert failed: ") + e.what());
          if (e.category() != dbmgr::ErrorCategory::kConstraint) {
            throw std::runtime_error(std::string("wrong category: ") + e.what());
          }
          if (e.sqlstate() != (expect == 1 ? "23505" : "23514")) {
            throw std::runtime_error("wrong sqlstate " + e.sqlstate());
          }
        }
      }
    }));
  }
  for (pid_t k : kids) CHECK(wait_child(k) == 0);
  const int per_proc_ok = kInserts - kInserts / 10 * 2;
  CHECK(m.execute("SELECT count(*) FROM uq WHERE k >= 0").scalar<std::int64_t>() ==
        kProcs * per_proc_ok);
  CHECK(m.execute("SELECT count(*) FROM uq WHERE k < 0").scalar<std::int64_t>() == kSeeded);
  CHECK(m.execute("SELECT count(*) FROM uq WHERE v = 'bad'").scalar<std::int64_t>() == 0);
  CHECK(count_in_file(d.data_dir() + "/test.gcerr.db", "SELECT count(*) FROM uq") ==
        kSeeded + kProcs * per_proc_ok);
  CHECK(d.admin(Cmd::kStatus)["totals"]["errors"] == kProcs * (kInserts / 10 * 2));
  auto groups = writer_field(d, "test.gcerr", "group_commits");
  MESSAGE("group commits: " << groups << ", statements in them: "
                            << writer_field(d, "test.gcerr", "group_committed_statements"));
  CHECK(groups > 0);
  CHECK(d.pool("test.gcerr", "writer")["in_use"] == 0);
}

TEST_CASE("group commit: DDL, PRAGMA, scripts and sessions interleaved keep their semantics") {
  Daemon d;
  dbmgr::DatabaseManager m(d.options("test", "gcmix"));
  create_items(m);
  constexpr int kProcs = 6;
  constexpr int kInserts = 300;
  std::vector<pid_t> kids;
  for (int p = 0; p < kProcs; ++p) {
    kids.push_back(fork_child([&, p] {
      dbmgr::DatabaseManager child(d.options("test", "gcmix"));
      for (int i = 0; i < kInserts; ++i) {
        child.execute("INSERT INTO items(owner, v) VALUES (?, 'x')", {p});
      }
    }));
  }
  // Non-groupable one-shots: DDL, PRAGMA and a script (whose second statement must run
  // too; the textual check keeps it out of groups, so no group had to defer it).
  kids.push_back(fork_child([&] {
    dbmgr::DatabaseManager child(d.options("test", "gcmix"));
    for (int i = 0; i < 20; ++i) {
      child.execute("CREATE TABLE IF NOT EXISTS t" + std::to_string(i) + " (x INTEGER)");
      child.execute("PRAGMA user_version = " + std::to_string(i + 1));
      child.execute("INSERT INTO items(owner, v) VALUES (-2, 's'); "
                    "INSERT INTO items(owner, v) VALUES (-2, 's')");
    }
  }));
  // Interactive transactions: all of their rows or none.
  kids.push_back(fork_child([&] {
    dbmgr::DatabaseManager child(d.options("test", "gcmix"));
    for (int i = 0; i < 40; ++i) {
      try {
        child.run([&](dbmgr::Session& s) {
          for (int k = 0; k < 5; ++k) {
            s.execute("INSERT INTO items(owner, v) VALUES (?, 'tx')", {-1000 - i});
          }
          if (i % 2 == 1) throw std::runtime_error("roll back");
        });
      } catch (const std::runtime_error&) {
      }
    }
  }));
  for (pid_t k : kids) CHECK(wait_child(k) == 0);
  CHECK(m.execute("SELECT count(*) FROM items WHERE owner >= 0").scalar<std::int64_t>() ==
        kProcs * kInserts);
  CHECK(m.execute("SELECT count(*) FROM items WHERE owner = -2").scalar<std::int64_t>() == 40);
  CHECK(m.execute("PRAGMA user_version").scalar<std::int64_t>() == 20);
  CHECK(m.execute("SELECT count(*) FROM sqlite_master WHERE name GLOB 't[0-9]*'")
            .scalar<std::int64_t>() == 20);
  // Each session transaction: 5 rows (committed, even i) or none (rolled back, odd i).
  auto r = m.execute("SELECT owner, count(*) FROM items WHERE owner <= -1000 GROUP BY owner");
  CHECK(r.size() == 20);
  for (std::size_t i = 0; i < r.size(); ++i) {
    CHECK(r[i].get<std::int64_t>(1) == 5);
    CHECK((-1000 - r[i].get<std::int64_t>(0)) % 2 == 0);
  }
  CHECK(d.admin(Cmd::kStatus)["totals"]["errors"] == 0);
  auto grouped = writer_field(d, "test.gcmix", "group_committed_statements");
  MESSAGE("group commits: " << writer_field(d, "test.gcmix", "group_commits")
                            << ", statements in them: " << grouped);
  CHECK(grouped <= static_cast<std::uint64_t>(kProcs * kInserts));
  CHECK(writer_field(d, "test.gcmix", "group_deferred") == 0);
  CHECK(d.pool("test.gcmix", "writer")["in_use"] == 0);
}

TEST_CASE("group commit: clients killed while their one-shots are queued or grouped") {
  Daemon d;
  dbmgr::DatabaseManager m(d.options("test", "gckill"));
  create_items(m);
  std::vector<pid_t> kids;
  for (int p = 0; p < 6; ++p) {
    kids.push_back(fork_child([&, p] {
      dbmgr::DatabaseManager child(d.options("test", "gckill"));
      for (;;) child.execute("INSERT INTO items(owner, v) VALUES (?, 'k')", {p});
    }));
  }
  std::this_thread::sleep_for(500ms);
  for (pid_t k : kids) kill(k, SIGKILL);
  for (pid_t k : kids) CHECK(wait_child(k) == 128 + SIGKILL);
  // The daemon is fine: the writer comes back, a new one-shot works.
  m.execute("INSERT INTO items(owner, v) VALUES (-1, 'after')");
  CHECK(m.execute("SELECT count(*) FROM items WHERE owner = -1").scalar<std::int64_t>() == 1);
  for (int i = 0; i < 50 && d.pool("test.gckill", "writer")["in_use"] != 0; ++i) {
    std::this_thread::sleep_for(20ms);
  }
  CHECK(d.pool("test.gckill", "writer")["in_use"] == 0);
  CHECK(d.admin(Cmd::kStatus)["totals"]["errors"] == 0);
  CHECK(d.running());
}

TEST_CASE("group commit: a statement_timeout inside a group fails that one-shot only") {
  // An interrupted write makes SQLite roll back the whole transaction: the group runs the
  // others again without it.
  Daemon d({.config_yaml = "pool:\n  statement_timeout: 300ms\n"});
  dbmgr::DatabaseManager m(d.options("test", "gcslow"));
  create_items(m);
  constexpr int kProcs = 6;
  constexpr int kInserts = 400;
  std::vector<pid_t> kids;
  for (int p = 0; p < kProcs; ++p) {
    kids.push_back(fork_child([&, p] {
      dbmgr::DatabaseManager child(d.options("test", "gcslow"));
      for (int i = 0; i < kInserts; ++i) {
        child.execute("INSERT INTO items(owner, v) VALUES (?, 'x')", {p});
      }
    }));
  }
  kids.push_back(fork_child([&] {
    dbmgr::DatabaseManager child(d.options("test", "gcslow"));
    // Start once the writers are busy, so the endless statement meets a queue.
    while (child.execute("SELECT count(*) FROM items", {}, dbmgr::Access::kReadOnly)
               .scalar<std::int64_t>() < 50) {
      std::this_thread::sleep_for(2ms);
    }
    for (int i = 0; i < 5; ++i) {
      try {
        child.execute("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
                      "INSERT INTO items(owner, v) SELECT -5, 'slow' FROM c WHERE x < 0");
        throw std::runtime_error("the endless statement ended");
      } catch (const dbmgr::Error& e) {
        if (e.category() != dbmgr::ErrorCategory::kTimeout) {
          throw std::runtime_error(std::string("not a timeout: ") + e.what());
        }
      }
    }
  }));
  for (pid_t k : kids) CHECK(wait_child(k) == 0);
  CHECK(m.execute("SELECT count(*) FROM items WHERE owner >= 0").scalar<std::int64_t>() ==
        kProcs * kInserts);
  CHECK(m.execute("SELECT count(*) FROM items WHERE owner = -5").scalar<std::int64_t>() == 0);
  CHECK(d.admin(Cmd::kStatus)["totals"]["errors"] == 5);
  MESSAGE("group commits: " << writer_field(d, "test.gcslow", "group_commits"));
  // Whether an endless statement met a queue and timed out inside a group depends on timing
  // here; tests/daemon/group_commit_test.cpp forms the group deterministically and decides
  // the timeout with an injected clock. This test checks the outcome under real load.
  std::string log = d.log();
  MESSAGE("timed out inside a group: "
          << std::string(log.find("one-shot test.gcslow: timeout") != std::string::npos ? "yes" : "no")
          << "; whole-transaction rollbacks re-run: "
          << std::string(log.find("the others ran again") != std::string::npos ? "yes" : "no"));
  CHECK(d.pool("test.gcslow", "writer")["in_use"] == 0);
}

TEST_CASE("a one-shot VACUUM runs (SQLite refuses it inside a transaction)") {
  Daemon d;
  dbmgr::DatabaseManager m(d.options("test", "vacuum"));
  m.execute("CREATE TABLE v (id INTEGER PRIMARY KEY, pad TEXT)");
  m.execute("INSERT INTO v(pad) SELECT hex(randomblob(500)) FROM (WITH RECURSIVE c(x) AS "
            "(SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2000) SELECT x FROM c)");
  m.execute("DELETE FROM v WHERE id % 2 = 0");
  m.execute("  vacuum  ");
  m.execute("/* nightly */ VACUUM;");
  CHECK(m.execute("SELECT count(*) FROM v").scalar<std::int64_t>() == 1000);
  CHECK(m.execute("PRAGMA freelist_count").scalar<std::int64_t>() == 0);
  // Inside a session it is still SQLite's error, as it would be anywhere.
  dbmgr::Error e = [&] {
    try {
      m.run([](dbmgr::Session& s) { s.execute("VACUUM"); });
    } catch (const dbmgr::Error& err) {
      return err;
    }
    FAIL("VACUUM inside a transaction did not fail");
    return dbmgr::Error(dbmgr::ErrorCategory::kInternal, "unreachable");
  }();
  CHECK(std::string(e.what()).find("VACUUM") != std::string::npos);
}

TEST_CASE("affected rows and the inserted id are the statement's own, never the connection's last") {
  // sqlite3_changes() keeps the last INSERT/UPDATE/DELETE's count through DDL, and
  // last_insert_rowid() the connection's last id: on the daemon's one pooled writer those
  // belong to whichever client wrote last. (Found by tests/python/test_native.py.)
  Daemon d;
  dbmgr::DatabaseManager m(d.options("test", "own_counts"));
  create_items(m);
  {
    auto s = m.get_session();
    auto r = s.execute("INSERT INTO items(id, owner, v) VALUES (41, 1, 'a'), (42, 1, 'b')");
    CHECK(r.affected_rows() == 2);
    CHECK(r.last_insert_id() == 42);
    s.commit();
  }
  // Another session on the same writer: DDL, a PRAGMA, a no-op UPDATE and DELETE.
  for (bool session : {true, false}) {
    CAPTURE(session);
    auto run = [&](const std::string& sql) {
      if (!session) return m.execute(sql);
      auto s = m.get_session();
      auto r = s.execute(sql);
      s.commit();
      return r;
    };
    auto ddl = run("CREATE TABLE IF NOT EXISTS other" + std::to_string(session) + " (x INTEGER)");
    CHECK(ddl.affected_rows() == 0);
    CHECK(ddl.last_insert_id() == 0);
    auto none = run("UPDATE items SET v = 'z' WHERE id < 0");
    CHECK(none.affected_rows() == 0);
    CHECK(none.last_insert_id() == 0);
    auto del = run("DELETE FROM items WHERE id = 42");
    CHECK(del.affected_rows() == 1);
    CHECK(del.last_insert_id() == 0);
    run("INSERT INTO items(id, owner, v) VALUES (42, 1, 'b')");
  }
  // Inside one transaction, last_insert_rowid() in SQL still sees this transaction's insert
  // after a statement that inserted nothing, and starts from 0 in the next transaction.
  auto s = m.get_session();
  s.execute("INSERT INTO items(id, owner, v) VALUES (77, 2, 'c')");
  s.execute("UPDATE items SET v = 'd' WHERE id = 77");
  CHECK(s.execute("SELECT last_insert_rowid()").scalar<std::int64_t>() == 77);
  // ... a statement reads it while it runs ...
  auto linked = s.execute("INSERT INTO items(id, owner, v) VALUES (78, last_insert_rowid(), 'e')");
  CHECK(linked.last_insert_id() == 78);
  CHECK(s.execute("SELECT owner FROM items WHERE id = 78").scalar<std::int64_t>() == 77);
  // ... and a row inserted again under the id of the last insert is still reported.
  s.execute("DELETE FROM items WHERE id = 78");
  CHECK(s.execute("INSERT INTO items(id, owner, v) VALUES (78, 3, 'f')").last_insert_id() == 78);
  CHECK(s.execute("WITH x(i) AS (VALUES (78)) UPDATE items SET v = 'g' WHERE id IN (SELECT i FROM x)")
            .last_insert_id() == 0);
  // An UPSERT that updates inserts no row: no id, though last_insert_rowid() is 78.
  auto up = s.execute("INSERT INTO items(id, owner, v) VALUES (78, 4, 'h') "
                      "ON CONFLICT(id) DO UPDATE SET v = excluded.v");
  CHECK(up.affected_rows() == 1);
  CHECK(up.last_insert_id() == 0);
  CHECK(s.execute("SELECT last_insert_rowid()").scalar<std::int64_t>() == 78);
  s.commit();
  auto t = m.get_session();
  CHECK(t.execute("SELECT last_insert_rowid()").scalar<std::int64_t>() == 0);
  t.rollback();
}
