// End to end on PostgreSQL: libdbmgr -> dbmgrd -> the private PostgreSQL cluster that
// scripts/test-servers.sh starts (DBMGR_TEST_PG_* in the environment).
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
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

std::string env(const char* name) { return dbmgr::test::required_env(name); }

DaemonOptions pg_daemon(std::string yaml = {}) { return dbmgr::test::pg_daemon_options(std::move(yaml)); }

// A manager on the unprefixed server database, for looking at pg_stat_activity and friends.
dbmgr::DatabaseManager admin_db(const Daemon& d) { return dbmgr::DatabaseManager(d.options()); }

void fresh_table(dbmgr::DatabaseManager& m, const std::string& ddl) {
  auto name = ddl.substr(std::string("CREATE TABLE ").size());
  name = name.substr(0, name.find(' '));
  m.execute("DROP TABLE IF EXISTS " + name);
  m.execute(ddl);
}

}  // namespace

TEST_CASE("PostgreSQL: info, prefixes created on demand and isolated") {
  Daemon d(pg_daemon());
  dbmgr::DatabaseManager a(d.options("test", "pgapp"));
  dbmgr::DatabaseManager b(d.options("test.payment", "pgapp"));
  CHECK(a.database_type() == "postgresql");
  CHECK(a.database_name() == "test.pgapp");
  CHECK(b.database_name() == "test.payment.pgapp");
  CHECK(a.pk_type() == "UUID");
  CHECK(a.pk_column_type() == "UUID");
  std::string uri = a.database_uri();
  CHECK(uri.find("postgresql://" + env("DBMGR_TEST_PG_USER") + ":***@") == 0);
  CHECK(uri.find(env("DBMGR_TEST_PG_PASSWORD")) == std::string::npos);
  CHECK(uri.find("test.pgapp") != std::string::npos);
  for (auto* m : {&a, &b}) fresh_table(*m, "CREATE TABLE items (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), v text)");
  a.execute("INSERT INTO items(v) VALUES (?)", {"a"});
  b.execute("INSERT INTO items(v) VALUES (?)", {"b"});
  b.execute("INSERT INTO items(v) VALUES (?)", {"b"});
  CHECK(a.execute("SELECT count(*) FROM items").scalar<std::int64_t>() == 1);
  CHECK(b.execute("SELECT count(*) FROM items").scalar<std::int64_t>() == 2);
  CHECK(a.execute("SELECT current_database()").scalar<std::string>() == "test.pgapp");
  CHECK(b.execute("SELECT current_database()").scalar<std::string>() == "test.payment.pgapp");
  // Without an allowed prefix, a missing database is not created.
  dbmgr::DatabaseManager nope(d.options("prod", "pgapp"));
  try {
    nope.execute("SELECT 1");
    FAIL("a database was created for a prefix the policy does not allow");
  } catch (const dbmgr::Error& e) {
    CHECK(e.category() == dbmgr::ErrorCategory::kNotFound);
    CHECK(std::string(e.message()).find("prod.pgapp") != std::string::npos);
  }
  CHECK(d.log().find(env("DBMGR_TEST_PG_PASSWORD")) == std::string::npos);
}

TEST_CASE("PostgreSQL: typed parameters, ? rewriting and streamed results") {
  Daemon d(pg_daemon());
  dbmgr::DatabaseManager m(d.options("test", "pgtypes"));
  auto r = m.execute("SELECT ?::int8 + 1, ?::float8 * 2, ?::bool, ?::text || '!', ?::bytea, ?::text IS NULL",
                     {41, 1.5, true, "hi", dbmgr::Blob("\x00\x01\xff", 3), nullptr});
  REQUIRE(r.size() == 1);
  CHECK(r[0].get<std::int64_t>(0) == 42);
  CHECK(r[0].get<double>(1) == 3.0);
  CHECK(r[0].get<bool>(2) == true);
  CHECK(r[0].get<std::string>(3) == "hi!");
  CHECK(r[0].get<dbmgr::Blob>(4) == dbmgr::Blob("\x00\x01\xff", 3));
  CHECK(r[0].get<bool>(5) == true);
  // Placeholders inside literals, quoted identifiers, dollar quotes and comments stay.
  auto q = m.execute(
      "SELECT '?' AS \"what?\", $$ ? $$ AS body, ? /* ? */ AS v -- trailing ?\n", {"x"});
  CHECK(q.column_count() == 3);
  CHECK(q[0].get<std::string>("what?") == "?");
  CHECK(q[0].get<std::string>("body") == " ? ");
  CHECK(q[0].get<std::string>("v") == "x");
  // Native $n works too, and REGEXP is PostgreSQL's ~.
  CHECK(m.execute("SELECT $1::int + $2::int", {2, 3}).scalar<std::int64_t>() == 5);
  CHECK(m.execute("SELECT 'ada@example.com' REGEXP ?", {"@example\\.com$"}).scalar<bool>());
  // 20,000 rows cross several kRows batches.
  auto big = m.execute("SELECT g, repeat('x', 100) FROM generate_series(1, 20000) g");
  REQUIRE(big.size() == 20000);
  CHECK(big[19999].get<std::int64_t>(0) == 20000);
  CHECK(big.affected_rows() == 20000);
  // Errors carry category and SQLSTATE.
  try {
    m.execute("SELECT * FROM no_such_table_here");
    FAIL("no error");
  } catch (const dbmgr::Error& e) {
    CHECK(e.sqlstate() == "42P01");
    CHECK(e.category() == dbmgr::ErrorCategory::kSyntax);
  }
}

TEST_CASE("PostgreSQL: 16 processes x 200 write transactions, exact count") {
  Daemon d(pg_daemon());
  dbmgr::DatabaseManager m(d.options("test", "pgconc"));
  fresh_table(m, "CREATE TABLE counters (id int PRIMARY KEY, n int NOT NULL)");
  m.execute("INSERT INTO counters VALUES (1, 0)");
  fresh_table(m, "CREATE TABLE log (owner int, i int)");
  constexpr int kProcs = 16;
  constexpr int kTx = 200;
  std::vector<pid_t> kids;
  for (int p = 0; p < kProcs; ++p) {
    kids.push_back(fork_child([&, p] {
      dbmgr::DatabaseManager child(d.options("test", "pgconc"));
      for (int i = 0; i < kTx; ++i) {
        child.run([&](dbmgr::Session& s) {
          s.execute("UPDATE counters SET n = n + 1 WHERE id = 1");
          s.execute("INSERT INTO log VALUES (?, ?)", {p, i});
        });
      }
    }));
  }
  for (pid_t k : kids) CHECK(wait_child(k) == 0);
  CHECK(m.execute("SELECT n FROM counters WHERE id = 1").scalar<std::int64_t>() == kProcs * kTx);
  CHECK(m.execute("SELECT count(*) FROM log").scalar<std::int64_t>() == kProcs * kTx);
  CHECK(d.admin(Cmd::kStatus)["totals"]["errors"] == 0);
  CHECK(d.pool("test.pgconc", "main")["in_use"] == 0);
}

TEST_CASE("PostgreSQL: SIGKILL inside a transaction frees the row lock; one ROLLBACK") {
  Daemon d(pg_daemon());
  dbmgr::DatabaseManager m(d.options("test", "pgkill"));
  fresh_table(m, "CREATE TABLE acct (id int PRIMARY KEY, bal int)");
  m.execute("INSERT INTO acct VALUES (1, 100)");
  int ready[2];
  REQUIRE(pipe(ready) == 0);
  pid_t kid = fork_child([&] {
    dbmgr::DatabaseManager child(d.options("test", "pgkill"));
    auto s = child.get_session();
    // The server logs every statement of this backend from here on (superuser test role).
    s.execute("SET log_statement = 'all'");
    std::int64_t backend = s.execute("SELECT pg_backend_pid()").scalar<std::int64_t>();
    s.execute("UPDATE acct SET bal = 0 WHERE id = 1");  // holds the row lock
    (void)!write(ready[1], &backend, sizeof(backend));
    pause();
  });
  std::int64_t backend = 0;
  REQUIRE(read(ready[0], &backend, sizeof(backend)) == sizeof(backend));
  kill(kid, SIGKILL);
  CHECK(wait_child(kid) == 128 + SIGKILL);
  auto killed_at = std::chrono::steady_clock::now();
  m.execute("UPDATE acct SET bal = bal + 1 WHERE id = 1");
  CHECK(seconds_since(killed_at) < 1.0);
  CHECK(m.execute("SELECT bal FROM acct WHERE id = 1").scalar<std::int64_t>() == 101);
  // Exactly one ROLLBACK from that backend reached the server (its log has a line per
  // statement; log_line_prefix carries the pid as "[pid]").
  std::string log_path = env("DBMGR_TEST_SERVERS_DIR") + "/pg/log";
  auto rollbacks = [&] {
    std::ifstream in(log_path);
    std::string line, tag = "[" + std::to_string(backend) + "]";
    int n = 0;
    while (std::getline(in, line)) {
      if (line.find(tag) != std::string::npos && line.find(": ROLLBACK") != std::string::npos) ++n;
    }
    return n;
  };
  for (int i = 0; i < 50 && rollbacks() == 0; ++i) std::this_thread::sleep_for(20ms);
  std::this_thread::sleep_for(300ms);
  CHECK(rollbacks() == 1);
  CHECK(d.admin(Cmd::kStatus)["totals"]["rollbacks_on_disconnect"] == 1);
  CHECK(d.pool("test.pgkill", "main")["in_use"] == 0);
}

TEST_CASE("PostgreSQL: a long statement is cancelled when its client is killed") {
  Daemon d(pg_daemon());
  auto admin = admin_db(d);
  int ready[2];
  REQUIRE(pipe(ready) == 0);
  pid_t kid = fork_child([&] {
    dbmgr::DatabaseManager child(d.options("test", "pgsleep"));
    char c = 'r';
    (void)!write(ready[1], &c, 1);
    child.execute("SELECT pg_sleep(60)");
  });
  char c = 0;
  REQUIRE(read(ready[0], &c, 1) == 1);
  auto sleeping = [&] {
    return admin
        .execute("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(60)%' "
                 "AND state = 'active'")
        .scalar<std::int64_t>();
  };
  for (int i = 0; i < 100 && sleeping() == 0; ++i) std::this_thread::sleep_for(20ms);
  REQUIRE(sleeping() == 1);
  kill(kid, SIGKILL);
  wait_child(kid);
  auto start = std::chrono::steady_clock::now();
  while (sleeping() != 0 && seconds_since(start) < 5) std::this_thread::sleep_for(20ms);
  CHECK(sleeping() == 0);
  CHECK(seconds_since(start) < 2.0);
  // The server has ended the statement; the daemon reads the cancel's outcome and resets
  // the connection, then it is idle again: reused, not thrown away.
  CHECK(dbmgr::test::eventually([&] {
    auto p = d.pool("test.pgsleep", "main");
    return p["in_use"] == 0 && p["idle"] == 1;
  }, 5s));
  CHECK(d.pool("test.pgsleep", "main")["opened"] == 1);
}

TEST_CASE("PostgreSQL: nothing a session changed leaks to the next one on that connection") {
  Daemon d(pg_daemon("pool:\n  pool_size: 1\n  max_overflow: 0\n"));
  dbmgr::DatabaseManager m(d.options("test", "pgleak"));
  std::int64_t pid1 = 0;
  m.run([&](dbmgr::Session& s) {
    pid1 = s.execute("SELECT pg_backend_pid()").scalar<std::int64_t>();
    s.execute("SET statement_timeout = '1234ms'");
    s.execute("CREATE TEMP TABLE leaked (x int)");
    s.execute("SELECT pg_advisory_lock(4242)");
    s.execute("PREPARE leaked_stmt AS SELECT 1");
  });
  m.run([&](dbmgr::Session& s) {
    CHECK(s.execute("SELECT pg_backend_pid()").scalar<std::int64_t>() == pid1);
    CHECK(s.execute("SHOW statement_timeout").scalar<std::string>() == "0");
    CHECK(s.execute("SELECT to_regclass('pg_temp.leaked') IS NULL").scalar<bool>());
    CHECK(s.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = "
                    "pg_backend_pid()")
              .scalar<std::int64_t>() == 0);
    CHECK(s.execute("SELECT count(*) FROM pg_prepared_statements WHERE name = 'leaked_stmt'")
              .scalar<std::int64_t>() == 0);
  });
  // Repeated SQL is still prepared once and reused afterwards.
  for (int i = 0; i < 3; ++i) m.execute("SELECT ?::int + 1", {i});
  CHECK(m.execute("SELECT count(*) FROM pg_prepared_statements WHERE statement = 'SELECT $1::int + 1'")
            .scalar<std::int64_t>() == 1);
}

TEST_CASE("PostgreSQL: a terminated pooled backend is replaced without an error") {
  Daemon d(pg_daemon("pool:\n  pool_size: 1\n  max_overflow: 0\n"));
  dbmgr::DatabaseManager m(d.options("test", "pgping"));
  auto admin = admin_db(d);
  auto pid1 = m.execute("SELECT pg_backend_pid()").scalar<std::int64_t>();
  CHECK(admin.execute("SELECT pg_terminate_backend(?::int)", {pid1}).scalar<bool>());
  // At once (the first statement is retried on a new connection) ...
  auto pid2 = m.execute("SELECT pg_backend_pid()").scalar<std::int64_t>();
  CHECK(pid2 != pid1);
  // ... and after a pause (the pre-ping finds it dead before the lease).
  CHECK(admin.execute("SELECT pg_terminate_backend(?::int)", {pid2}).scalar<bool>());
  std::this_thread::sleep_for(1200ms);
  auto s = m.get_session();
  auto pid3 = s.execute("SELECT pg_backend_pid()").scalar<std::int64_t>();
  s.commit();
  CHECK(pid3 != pid2);
  CHECK(d.admin(Cmd::kStatus)["totals"]["errors"] == 0);
}

TEST_CASE("PostgreSQL: pool exhaustion, idle-in-transaction timeout, run/get_db semantics") {
  Daemon d(pg_daemon(
      "pool:\n  pool_size: 1\n  max_overflow: 0\n  pool_timeout: 1s\n"
      "  idle_in_transaction_timeout: 2s\n"));
  dbmgr::DatabaseManager m(d.options("test", "pgpool"));
  fresh_table(m, "CREATE TABLE t (v int)");
  {
    auto holder = m.get_session();
    holder.execute("INSERT INTO t VALUES (1)");
    auto start = std::chrono::steady_clock::now();
    try {
      m.execute("INSERT INTO t VALUES (2)");
      FAIL("no pool_exhausted");
    } catch (const dbmgr::Error& e) {
      CHECK(e.category() == dbmgr::ErrorCategory::kPoolExhausted);
      CHECK(seconds_since(start) >= 0.9);
      CHECK(seconds_since(start) < 3.0);
    }
    holder.commit();
  }
  {
    auto s = m.get_session();
    s.execute("INSERT INTO t VALUES (3)");
    std::this_thread::sleep_for(2600ms);
    try {
      s.execute("INSERT INTO t VALUES (4)");
      FAIL("the idle transaction was not aborted");
    } catch (const dbmgr::Error& e) {
      CHECK(e.category() == dbmgr::ErrorCategory::kTimeout);
    }
    s.rollback();
  }
  m.run([](dbmgr::Session& s) { s.execute("INSERT INTO t VALUES (5)"); });
  CHECK_THROWS_AS(m.run([](dbmgr::Session& s) {
    s.execute("INSERT INTO t VALUES (6)");
    throw std::runtime_error("boom");
  }), std::runtime_error);
  {
    auto db = m.get_db(false);
    db.execute("INSERT INTO t VALUES (7)");
  }
  auto r = m.execute("SELECT v FROM t ORDER BY v");
  REQUIRE(r.size() == 2);
  CHECK(r[0].get<std::int64_t>(0) == 1);
  CHECK(r[1].get<std::int64_t>(0) == 5);
}

TEST_CASE("PostgreSQL: a server restart fails in-flight sessions; new ones work after it") {
  Daemon d(pg_daemon());
  dbmgr::DatabaseManager m(d.options("test", "pgrestart"));
  fresh_table(m, "CREATE TABLE t (v int)");
  auto s = m.get_session();
  s.execute("INSERT INTO t VALUES (1)");
  REQUIRE(std::system(env("DBMGR_TEST_PG_CTL").c_str()) == 0);
  try {
    s.execute("INSERT INTO t VALUES (2)");
    FAIL("the in-flight session did not notice the restart");
  } catch (const dbmgr::Error& e) {
    CHECK(e.category() == dbmgr::ErrorCategory::kConnection);
  }
  s.rollback();
  bool ok = false;
  for (int i = 0; i < 100 && !ok; ++i) {
    try {
      m.execute("INSERT INTO t VALUES (3)");
      ok = true;
    } catch (const dbmgr::Error& e) {
      INFO(e.what());
      std::this_thread::sleep_for(100ms);
    }
  }
  CHECK(ok);
  CHECK(m.execute("SELECT count(*) FROM t").scalar<std::int64_t>() == 1);
  CHECK(d.running());
}

TEST_CASE("PostgreSQL down: a clear connection error, other databases keep being served") {
  DaemonOptions o = pg_daemon();
  o.config_yaml =
      "databases:\n"
      "  gone:\n"
      "    type: postgresql\n"
      "    host: /nonexistent/socket/dir\n"
      "    name: gone\n"
      "    user: nobody\n";
  Daemon d(o);
  dbmgr::DatabaseManager gone(d.options({}, "gone"));
  auto start = std::chrono::steady_clock::now();
  try {
    gone.execute("SELECT 1");
    FAIL("no error from a server that is not there");
  } catch (const dbmgr::Error& e) {
    CHECK(e.category() == dbmgr::ErrorCategory::kConnection);
    CHECK(std::string(e.message()).find("gone") != std::string::npos);
  }
  CHECK(seconds_since(start) < 6.0);
  dbmgr::DatabaseManager pg(d.options("test", "pgalive"));
  CHECK(pg.execute("SELECT 6").scalar<std::int64_t>() == 6);
}
