// The async client against a real dbmgrd: 10,000 concurrent AsyncSessions from one thread
// on SQLite and on PostgreSQL (exact counts, no errors, no thread per session, memory per
// session in flight reported), a coroutine that throws rolls back, a cancelled pg_sleep stops
// on the server, and a daemon killed mid-flight fails every pending operation promptly.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <iterator>
#include <mutex>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "harness.hpp"

using namespace std::chrono_literals;
using dbmgr::test::Daemon;
using dbmgr::test::DaemonOptions;
using dbmgr::test::eventually;
using dbmgr::test::seconds_since;

namespace {

constexpr int kSessions = 10'000;

int thread_count() {
  int n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/task")) ++n;
  return n;
}

long rss_kib() { return dbmgr::test::rss_kib(::getpid()); }

struct Flight {
  std::atomic<int> done{0};
  std::atomic<int> errors{0};
  std::mutex mu;
  std::string first_error;  // guarded by mu
};

dbmgr::Task<void> insert_and_commit(dbmgr::AsyncSession s, int i, Flight& f) {
  try {
    dbmgr::Result r =
        co_await s.execute("INSERT INTO async_rows(id) VALUES (?)", dbmgr::params(i));
    if (r.affected_rows() != 1) throw std::runtime_error("affected_rows != 1");
    co_await s.commit();
    co_await s.close();
  } catch (const std::exception& e) {
    if (f.errors++ == 0) {
      std::lock_guard lock(f.mu);
      f.first_error = e.what();
    }
  }
  ++f.done;
}

// Starts kSessions sessions from this thread, each inserting one row and committing.
void ten_thousand(dbmgr::DatabaseManager& m, const char* backend) {
  m.execute("DROP TABLE IF EXISTS async_rows");
  m.execute("CREATE TABLE async_rows (id BIGINT PRIMARY KEY)");
  {
    auto warm = m.get_async_db();  // the socket and the I/O thread exist from here on
    CHECK(warm.execute("SELECT 1").get().scalar<std::int64_t>() == 1);
    warm.close().get();
  }
  const int threads_before = thread_count();
  const long rss_before = rss_kib();
  Flight f;
  std::vector<dbmgr::Task<void>> tasks;
  tasks.reserve(kSessions);
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < kSessions; ++i) tasks.push_back(insert_and_commit(m.get_async_db(), i, f));
  const int in_flight = kSessions - f.done.load();
  const int threads_during = thread_count();
  const long rss_during = rss_kib();
  for (auto& t : tasks) t.get();
  const double secs = seconds_since(start);
  const int threads_after = thread_count();

  std::lock_guard lock(f.mu);
  CHECK_MESSAGE(f.errors.load() == 0, f.first_error);
  CHECK(f.done.load() == kSessions);
  CHECK(m.execute("SELECT count(*) FROM async_rows").scalar<std::int64_t>() == kSessions);
  CHECK(m.execute("SELECT count(DISTINCT id) FROM async_rows").scalar<std::int64_t>() ==
        kSessions);
  // No thread per session or per call: the library's one I/O thread was there before.
  CHECK(threads_during == threads_before);
  CHECK(threads_after == threads_before);
  CHECK(in_flight > kSessions / 2);  // the figures below were taken with most in flight
  const double per_session =
      in_flight > 0 ? double(rss_during - rss_before) * 1024.0 / in_flight : 0.0;
  std::printf(
      "async %s: %d sessions from one thread in %.2f s (%.0f transactions/s); threads %d "
      "before, %d with %d in flight, %d after; client RSS %ld KiB -> %ld KiB with them in "
      "flight: %.0f bytes per session in flight; %d errors%s%s\n",
      backend, kSessions, secs, kSessions / secs, threads_before, threads_during, in_flight,
      threads_after, rss_before, rss_during, per_session, f.errors.load(),
      f.first_error.empty() ? "" : ", the first: ", f.first_error.c_str());
  std::fflush(stdout);
}

// run_async: the coroutine inserts, sees its row, throws: the row is gone afterwards.
void throwing_coroutine_rolls_back(dbmgr::DatabaseManager& m) {
  m.execute("DROP TABLE IF EXISTS async_throw");
  m.execute("CREATE TABLE async_throw (id BIGINT PRIMARY KEY)");
  std::int64_t seen_inside = -1;
  auto task = m.run_async([&seen_inside](dbmgr::AsyncSession& s) -> dbmgr::Task<void> {
    co_await s.execute("INSERT INTO async_throw(id) VALUES (1)");
    dbmgr::Result r = co_await s.execute("SELECT count(*) FROM async_throw");
    seen_inside = r.scalar<std::int64_t>();
    throw std::runtime_error("the application changed its mind");
  });
  CHECK_THROWS_WITH_AS(task.get(), "the application changed its mind", std::runtime_error);
  CHECK(seen_inside == 1);
  CHECK(m.execute("SELECT count(*) FROM async_throw").scalar<std::int64_t>() == 0);
  // The same coroutine without the throw commits.
  auto ok = m.run_async([](dbmgr::AsyncSession& s) -> dbmgr::Task<std::int64_t> {
    dbmgr::Result r = co_await s.execute("INSERT INTO async_throw(id) VALUES (2)");
    co_return r.affected_rows();
  });
  CHECK(ok.get() == 1);
  CHECK(m.execute("SELECT count(*) FROM async_throw").scalar<std::int64_t>() == 1);
}

DaemonOptions quiet(DaemonOptions o) {
  o.log_level = "info";  // 10,000 sessions at debug level would mostly measure logging
  return o;
}

}  // namespace

TEST_CASE("async SQLite: 10,000 concurrent sessions from one thread insert and commit") {
  Daemon d(quiet({}));
  dbmgr::DatabaseManager m(d.options("test", "asyncrows"));
  ten_thousand(m, "SQLite");
  CHECK(d.pool("test.asyncrows", "writer")["waiting"] == 0);
}

TEST_CASE("async PostgreSQL: 10,000 concurrent sessions from one thread insert and commit") {
  Daemon d(quiet(dbmgr::test::pg_daemon_options()));
  dbmgr::DatabaseManager m(d.options("test", "asyncrows"));
  ten_thousand(m, "PostgreSQL");
  CHECK(eventually([&] { return d.pool("test.asyncrows", "main")["in_use"] == 0; }));
}

TEST_CASE("async: a coroutine that throws rolls its transaction back (SQLite, PostgreSQL)") {
  {
    Daemon d;
    dbmgr::DatabaseManager m(d.options("test", "asyncthrow"));
    throwing_coroutine_rolls_back(m);
  }
  {
    Daemon d(dbmgr::test::pg_daemon_options());
    dbmgr::DatabaseManager m(d.options("test", "asyncthrow"));
    throwing_coroutine_rolls_back(m);
  }
}

TEST_CASE("async PostgreSQL: a cancelled pg_sleep stops on the server and rolls back") {
  Daemon d(dbmgr::test::pg_daemon_options());
  dbmgr::DatabaseManager m(d.options("test", "asynccancel"));
  m.execute("DROP TABLE IF EXISTS async_cancel");
  m.execute("CREATE TABLE async_cancel (id BIGINT PRIMARY KEY)");
  auto sleeping = [&] {
    return m
        .execute("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE "
                 "'SELECT pg_sleep(60)%'")
        .scalar<std::int64_t>();
  };
  auto s = m.get_async_db();
  s.execute("INSERT INTO async_cancel(id) VALUES (1)").get();
  auto start = std::chrono::steady_clock::now();
  {
    auto op = s.execute("SELECT pg_sleep(60)");
    REQUIRE(eventually([&] { return sleeping() == 1; }));
  }  // dropped while pending: kCancel, then kRollback
  CHECK(eventually([&] { return sleeping() == 0; }));
  CHECK(seconds_since(start) < 30);
  // The rollback undid the insert before the sleep; the session goes on.
  CHECK(eventually([&] { return !s.failed() && !s.in_transaction(); }));
  CHECK(m.execute("SELECT count(*) FROM async_cancel").scalar<std::int64_t>() == 0);
  CHECK(s.execute("INSERT INTO async_cancel(id) VALUES (2)").get().affected_rows() == 1);
  s.commit().get();
  CHECK(m.execute("SELECT count(*) FROM async_cancel").scalar<std::int64_t>() == 1);

  // cancel() on an awaited operation: the error is `cancelled`.
  auto op = s.execute("SELECT pg_sleep(60)");
  auto f = op.future();
  REQUIRE(eventually([&] { return sleeping() == 1; }));
  op.cancel();
  REQUIRE(f.wait_for(20s) == std::future_status::ready);
  try {
    f.get();
    FAIL("a cancelled pg_sleep(60) returned");
  } catch (const dbmgr::Error& e) {
    CHECK(e.category() == dbmgr::ErrorCategory::kCancelled);
  }
  CHECK(eventually([&] { return sleeping() == 0; }));
}

TEST_CASE("async: a daemon killed mid-flight fails every pending operation promptly") {
  constexpr int kWaiting = 50;
  Daemon d;
  dbmgr::DatabaseManager m(d.options("test", "asynckill"));
  m.execute("CREATE TABLE IF NOT EXISTS async_kill (id BIGINT PRIMARY KEY)");
  // One session holds the SQLite writer; the others' inserts wait for it in the daemon.
  auto holder = m.get_async_db();
  holder.execute("INSERT INTO async_kill(id) VALUES (0)").get();
  std::vector<dbmgr::AsyncSession> sessions;
  std::vector<std::future<dbmgr::Result>> pending;
  for (int i = 1; i <= kWaiting; ++i) {
    sessions.push_back(m.get_async_db());
    pending.push_back(
        sessions.back().execute("INSERT INTO async_kill(id) VALUES (?)", {i}).future());
  }
  REQUIRE(eventually([&] { return d.pool("test.asynckill", "writer")["waiting"] == kWaiting; }));
  for (auto& f : pending) CHECK(f.wait_for(0ms) == std::future_status::timeout);

  auto killed_at = std::chrono::steady_clock::now();
  d.stop(SIGKILL);
  int connection_errors = 0;
  for (auto& f : pending) {
    REQUIRE(f.wait_for(10s) == std::future_status::ready);
    try {
      f.get();
    } catch (const dbmgr::Error& e) {
      if (e.category() == dbmgr::ErrorCategory::kConnection && e.client_side()) {
        ++connection_errors;
      }
    }
  }
  const double after = seconds_since(killed_at);
  CHECK(connection_errors == kWaiting);
  CHECK(after < 5.0);
  // The holder's transaction is lost: its commit says so, as the sync client's does.
  try {
    holder.commit().get();
    FAIL("a commit on a dead daemon succeeded");
  } catch (const dbmgr::Error& e) {
    CHECK(e.category() == dbmgr::ErrorCategory::kConnection);
    CHECK(e.message().find("unknown") != std::string::npos);
  }
  std::printf("async: %d pending operations failed %.3f s after the daemon was killed\n",
              kWaiting, after);
}

TEST_CASE("async: the README's example (client/examples/async_quickstart.cpp) prints its counts") {
  Daemon d;
  dbmgr::test::TempDir out;
  const std::string log = out.path() + "/out.txt";
  const std::string cmd = "DBMGR_SOCKET='" + d.socket() + "' '" +
                          dbmgr::test::required_env("DBMGR_ASYNC_EXAMPLE") + "' > '" + log +
                          "' 2>&1";
  CHECK(std::system(cmd.c_str()) == 0);
  std::ifstream in(log);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(text == "1000 visits\ndeleted 500\n");
  dbmgr::DatabaseManager m(d.options("test"));
  CHECK(m.execute("SELECT count(*) FROM async_visits").scalar<std::int64_t>() == 500);
}
