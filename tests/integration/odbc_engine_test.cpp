// The ODBC engine's own machinery against the real MariaDB of scripts/test-servers.sh
// (DBMGR_TEST_MARIADB_*): the threads blocking calls run on, statement_timeout, and idle
// connections retired before the server's wait_timeout. The MariaDB feature cases (types,
// prefixes, kills, restarts...) are in mariadb_e2e_test.cpp.
#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include "harness.hpp"

using namespace std::chrono_literals;
using dbmgr::test::Daemon;
using dbmgr::test::DaemonOptions;
using dbmgr::test::required_env;
using dbmgr::test::seconds_since;

namespace {

DaemonOptions maria(std::string yaml = {}) {
  DaemonOptions o;
  o.env = {
      {"DATABASE_TYPE", "mariadb"},
      {"DATABASE_HOST", required_env("DBMGR_TEST_MARIADB_SOCKET")},
      {"DATABASE_USER", required_env("DBMGR_TEST_MARIADB_USER")},
      {"DATABASE_PASSWORD", required_env("DBMGR_TEST_MARIADB_PASSWORD")},
      {"DATABASE_NAME", required_env("DBMGR_TEST_MARIADB_DB")},
  };
  o.config_yaml = std::move(yaml);
  return o;
}

}  // namespace

TEST_CASE("odbc: concurrent slow statements each get a thread; SQLite is not held behind them") {
  // worker_threads 2: the libuv pool SQLite uses is smaller than the number of slow
  // MariaDB statements; they must not queue for it.
  Daemon d(maria("worker_threads: 2\ndatabases:\n  lite:\n    type: sqlite\n"));
  dbmgr::DatabaseManager lite(d.options("", "lite"));
  lite.execute("CREATE TABLE IF NOT EXISTS t (x INTEGER)");
  auto t0 = std::chrono::steady_clock::now();
  std::atomic<int> done{0};
  std::vector<std::thread> slow;
  for (int i = 0; i < 12; ++i) {
    slow.emplace_back([&] {
      dbmgr::DatabaseManager m(d.options("test", "odbcthreads"));
      CHECK(m.execute("SELECT SLEEP(1.5)").scalar<std::int64_t>() == 0);
      ++done;
    });
  }
  std::this_thread::sleep_for(300ms);  // the sleeps are running now
  double worst = 0;
  for (int i = 0; i < 10; ++i) {
    auto s = std::chrono::steady_clock::now();
    lite.execute("INSERT INTO t VALUES (?)", {i});
    worst = std::max(worst, seconds_since(s));
  }
  CHECK(done == 0);  // the SQLite writes really ran beside the sleeps
  for (auto& t : slow) t.join();
  double all = seconds_since(t0);
  MESSAGE("12 x SLEEP(1.5) took " << all << " s; the slowest SQLite insert beside them " << worst << " s");
  CHECK(all < 2.9);     // in parallel, not two rounds on a few threads
  CHECK(worst < 1.0);   // not behind a sleep
  CHECK(lite.execute("SELECT count(*) FROM t").scalar<std::int64_t>() == 10);
}

TEST_CASE("odbc: statement_timeout cancels a statement past its deadline; the session goes on") {
  Daemon d(maria("pool:\n  statement_timeout: 700ms\n"));
  dbmgr::DatabaseManager m(d.options("test", "odbctimeout"));
  // A heavy statement MariaDB does interrupt (SLEEP() would just return early).
  const std::string heavy =
      "SELECT COUNT(*) FROM seq_1_to_100000 a, seq_1_to_100000 b WHERE a.seq + b.seq = ?";
  for (int round = 0; round < 3; ++round) {  // the same (cached) statement again and again
    auto t0 = std::chrono::steady_clock::now();
    try {
      m.execute(heavy, {std::int64_t{7}});
      FAIL("the statement was not stopped");
    } catch (const dbmgr::Error& e) {
      CHECK(e.category() == dbmgr::ErrorCategory::kTimeout);
      CHECK(e.sqlstate() == "57014");
      CHECK(std::string(e.what()).find("statement_timeout") != std::string::npos);
    }
    double took = seconds_since(t0);
    CHECK(took > 0.6);
    CHECK(took < 3.0);
    CHECK(m.execute("SELECT 40 + 2").scalar<std::int64_t>() == 42);
  }
  // In a transaction: the timeout fails the statement and rolls the transaction back.
  m.execute("CREATE TABLE IF NOT EXISTS tt (x INT)");
  m.execute("DELETE FROM tt");
  {
    auto s = m.get_session();
    s.execute("INSERT INTO tt VALUES (1)");
    CHECK_THROWS_AS(s.execute(heavy, {std::int64_t{9}}), dbmgr::Error);
  }
  CHECK(m.execute("SELECT COUNT(*) FROM tt").scalar<std::int64_t>() == 0);
}

TEST_CASE("odbc: idle connections retire before wait_timeout, without pre-ping") {
  Daemon d(maria("pool:\n  pool_pre_ping: false\n  pool_size: 2\n"));
  dbmgr::DatabaseManager admin(d.options("test", "odbcidle"));
  admin.execute("SET GLOBAL wait_timeout = 3");
  struct Restore {
    dbmgr::DatabaseManager& m;
    ~Restore() {
      try {
        m.execute("SET GLOBAL wait_timeout = 28800");
      } catch (...) {
      }
    }
  } restore{admin};
  {
    Daemon d2(maria("pool:\n  pool_pre_ping: false\n  pool_size: 2\n"));
    dbmgr::DatabaseManager m(d2.options("test", "odbcidle"));
    CHECK(m.execute("SELECT @@wait_timeout").scalar<std::int64_t>() == 3);
    auto id1 = m.execute("SELECT CONNECTION_ID()").scalar<std::int64_t>();
    std::this_thread::sleep_for(4500ms);  // the server would have closed it at 3 s
    // No pre-ping: only the pool's idle limit (90% of wait_timeout) keeps a dead connection
    // out of this lease.
    auto id2 = m.execute("SELECT CONNECTION_ID()").scalar<std::int64_t>();
    CHECK(id2 != id1);
    auto pool = d2.pool("test.odbcidle", "main");
    INFO(pool.dump());
    CHECK(pool["errors"].get<int>() == 0);
    CHECK(pool["closed"].get<int>() >= 1);
  }
}
