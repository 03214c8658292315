// dbmgr/uv.hpp against a real dbmgrd on SQLite: the application's own libuv loop drives the
// async socket (Options::async_io_thread = false). 1,000 sessions started from a uv timer
// insert and commit through coroutines resumed on the loop's thread, with no library thread
// and a 1 ms timer ticking meanwhile; a daemon killed mid-flight fails every pending
// operation with a connection error and uv_run returns by itself.
#include <signal.h>
#include <uv.h>

#include <chrono>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include "dbmgr/uv.hpp"
#include "harness.hpp"

using dbmgr::test::Daemon;
using dbmgr::test::DaemonOptions;
using dbmgr::test::seconds_since;
using Clock = std::chrono::steady_clock;

namespace {

int thread_count() {
  int n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/task")) ++n;
  return n;
}

dbmgr::Options loop_driven(const Daemon& d, const char* database) {
  dbmgr::Options o = d.options("test", database);
  o.async_io_thread = false;
  return o;
}

template <typename T>
T* from(uv_timer_t* t) {
  return static_cast<T*>(t->data);
}

// A safety net only: stops a loop that would otherwise hang (unref'd: keeps nothing alive).
void arm_watchdog(uv_loop_t* loop, uv_timer_t* t, bool* fired, std::uint64_t ms) {
  uv_timer_init(loop, t);
  t->data = fired;
  uv_timer_start(
      t,
      [](uv_timer_t* h) {
        *static_cast<bool*>(h->data) = true;
        uv_stop(h->loop);
      },
      ms, 0);
  uv_unref(reinterpret_cast<uv_handle_t*>(t));
}

void close_timer(uv_timer_t* t) {
  uv_timer_stop(t);
  uv_close(reinterpret_cast<uv_handle_t*>(t), nullptr);
}

// ---- 1,000 sessions started from a timer -------------------------------------------------

constexpr int kSessions = 1000;

struct Run {
  uv_loop_t* loop = nullptr;
  dbmgr::DatabaseManager* m = nullptr;
  std::thread::id loop_thread;
  std::vector<dbmgr::Task<void>> tasks;
  bool started = false;
  int done = 0;
  int errors = 0;
  int off_loop_thread = 0;  // completions that ran on another thread than the loop's
  int in_flight_after_start = 0;
  int threads_during = 0;
  int ticks_in_flight = 0;
  std::string first_error;
};

void on_loop(Run& r) {
  if (std::this_thread::get_id() != r.loop_thread) ++r.off_loop_thread;
}

dbmgr::Task<void> insert_and_commit(dbmgr::AsyncSession s, int i, Run& r) {
  try {
    dbmgr::Result res =
        co_await s.execute("INSERT INTO uv_rows(id) VALUES (?)", dbmgr::params(i));
    on_loop(r);
    if (res.affected_rows() != 1) throw std::runtime_error("affected_rows != 1");
    co_await s.commit();
    on_loop(r);
    co_await s.close();
    on_loop(r);
  } catch (const std::exception& e) {
    if (r.errors++ == 0) r.first_error = e.what();
  }
  if (++r.done == kSessions) uv_stop(r.loop);
}

// ---- the daemon killed mid-flight --------------------------------------------------------

constexpr int kWaiting = 50;

struct Kill {
  Daemon* d = nullptr;
  dbmgr::DatabaseManager* m = nullptr;
  dbmgr::AsyncSession* holder = nullptr;
  std::thread::id loop_thread;
  std::vector<dbmgr::Task<void>> tasks;
  bool holding = false;
  bool killed = false;
  Clock::time_point killed_at;
  Clock::time_point last_failure;
  int finished = 0;
  int connection_errors = 0;
  int other_outcomes = 0;
  int off_loop_thread = 0;
  std::string first_other;
};

dbmgr::Task<void> wait_for_writer(dbmgr::AsyncSession s, int i, Kill& k) {
  try {
    co_await s.execute("INSERT INTO uv_kill(id) VALUES (?)", dbmgr::params(i));
    ++k.other_outcomes;  // the writer is held: this cannot succeed before the kill
    if (k.first_other.empty()) k.first_other = "an insert succeeded";
  } catch (const dbmgr::Error& e) {
    if (e.category() == dbmgr::ErrorCategory::kConnection && e.client_side()) {
      ++k.connection_errors;
    } else {
      ++k.other_outcomes;
      if (k.first_other.empty()) k.first_other = e.what();
    }
  }
  if (std::this_thread::get_id() != k.loop_thread) ++k.off_loop_thread;
  k.last_failure = Clock::now();
  ++k.finished;
}

// Inside a coroutine the driver resumed: starts the sessions that wait for the writer.
dbmgr::Task<void> hold_writer(Kill& k) {
  try {
    co_await k.holder->execute("INSERT INTO uv_kill(id) VALUES (0)");
  } catch (const std::exception& e) {
    k.first_other = std::string("the holder failed: ") + e.what();
    co_return;
  }
  for (int i = 1; i <= kWaiting; ++i) k.tasks.push_back(wait_for_writer(k.m->get_async_db(), i, k));
  k.holding = true;
}

}  // namespace

TEST_CASE("uv: 1,000 sessions started from a uv timer insert and commit on the loop's thread") {
  DaemonOptions opts;
  opts.log_level = "info";
  Daemon d(opts);
  const int threads_before = thread_count();
  dbmgr::DatabaseManager m(loop_driven(d, "uvrows"));
  m.execute("DROP TABLE IF EXISTS uv_rows");
  m.execute("CREATE TABLE uv_rows (id BIGINT PRIMARY KEY)");

  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);
  Run r;
  r.loop = &loop;
  r.m = &m;
  r.loop_thread = std::this_thread::get_id();
  r.tasks.reserve(kSessions);
  bool timed_out = false;
  std::exception_ptr driver_error;
  double secs = 0;
  uv_timer_t start, tick, watchdog;  // outlive the block: the loop finishes closing them below
  {
    dbmgr::UvDriver driver(&loop, m);
    CHECK(driver.polling());

    uv_timer_init(&loop, &start);
    start.data = &r;
    uv_timer_start(
        &start,
        [](uv_timer_t* t) {
          Run& run = *from<Run>(t);
          for (int i = 0; i < kSessions; ++i) {
            run.tasks.push_back(insert_and_commit(run.m->get_async_db(), i, run));
          }
          run.started = true;
          run.in_flight_after_start = kSessions - run.done;
          run.threads_during = thread_count();
        },
        0, 0);
    uv_timer_init(&loop, &tick);
    tick.data = &r;
    uv_timer_start(
        &tick,
        [](uv_timer_t* t) {
          Run& run = *from<Run>(t);
          if (run.started && run.done < kSessions) ++run.ticks_in_flight;
        },
        1, 1);
    arm_watchdog(&loop, &watchdog, &timed_out, 120'000);

    auto t0 = Clock::now();
    uv_run(&loop, UV_RUN_DEFAULT);
    secs = seconds_since(t0);
    driver_error = driver.last_error();
    close_timer(&start);
    close_timer(&tick);
    close_timer(&watchdog);
  }  // the driver closes its handles
  uv_run(&loop, UV_RUN_NOWAIT);
  CHECK(uv_loop_close(&loop) == 0);  // every handle closed and freed
  const int threads_after = thread_count();

  CHECK_FALSE(timed_out);
  CHECK_MESSAGE(r.errors == 0, r.first_error);
  CHECK(r.done == kSessions);
  CHECK(r.off_loop_thread == 0);
  CHECK_FALSE(driver_error);
  CHECK(r.in_flight_after_start > kSessions / 2);
  CHECK(m.execute("SELECT count(*) FROM uv_rows").scalar<std::int64_t>() == kSessions);
  CHECK(m.execute("SELECT count(DISTINCT id) FROM uv_rows").scalar<std::int64_t>() == kSessions);
  // No library I/O thread: the process has the threads it had before the manager existed.
  CHECK(r.threads_during == threads_before);
  CHECK(threads_after == threads_before);
  // The loop was not blocked: the 1 ms timer ticked while the sessions were in flight.
  CHECK(r.ticks_in_flight >= 3);
  std::printf(
      "uv: %d sessions from a uv timer in %.3f s (%.0f transactions/s), %d in flight after "
      "the start; the 1 ms timer ticked %d times meanwhile; threads %d before, %d during, %d "
      "after; %d errors, %d completions off the loop thread\n",
      kSessions, secs, kSessions / secs, r.in_flight_after_start, r.ticks_in_flight,
      threads_before, r.threads_during, threads_after, r.errors, r.off_loop_thread);
  std::fflush(stdout);
}

TEST_CASE("uv: a daemon killed mid-flight fails every pending operation and uv_run returns") {
  Daemon d;
  dbmgr::DatabaseManager m(loop_driven(d, "uvkill"));
  m.execute("CREATE TABLE IF NOT EXISTS uv_kill (id BIGINT PRIMARY KEY)");

  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);
  Kill k;
  k.d = &d;
  k.m = &m;
  k.loop_thread = std::this_thread::get_id();
  k.tasks.reserve(kWaiting + 1);  // no reallocation while hold_writer() appends
  bool timed_out = false;
  std::exception_ptr driver_error;
  bool polling_after = true;
  double run_returned_after = -1;
  uv_timer_t start, check, watchdog;  // outlive the block: the loop finishes closing them below
  {
    auto holder = m.get_async_db();
    k.holder = &holder;
    dbmgr::UvDriver driver(&loop, m);

    uv_timer_init(&loop, &start);
    start.data = &k;
    uv_timer_start(
        &start,
        [](uv_timer_t* t) {
          Kill& kill = *from<Kill>(t);
          kill.tasks.push_back(hold_writer(kill));
        },
        0, 0);
    // Every 10 ms: once all kWaiting inserts wait for the writer in the daemon, SIGKILL it.
    uv_timer_init(&loop, &check);
    check.data = &k;
    uv_timer_start(
        &check,
        [](uv_timer_t* t) {
          Kill& kill = *from<Kill>(t);
          if (!kill.holding) return;
          if (kill.d->pool("test.uvkill", "writer")["waiting"] != kWaiting) return;
          if (kill.finished != 0) return;  // nothing may be done before the kill
          kill.killed_at = Clock::now();
          kill.d->stop(SIGKILL);
          kill.killed = true;
          uv_timer_stop(t);  // from here only the driver keeps the loop alive
        },
        10, 10);
    arm_watchdog(&loop, &watchdog, &timed_out, 30'000);

    uv_run(&loop, UV_RUN_DEFAULT);  // returns by itself once the driver went idle
    if (k.killed) run_returned_after = seconds_since(k.killed_at);
    driver_error = driver.last_error();
    polling_after = driver.polling();
    close_timer(&start);
    close_timer(&check);
    close_timer(&watchdog);
  }
  // With no daemon the constructor throws (it connects first) and leaves no handle behind.
  CHECK_THROWS_AS(dbmgr::UvDriver(&loop, m), dbmgr::Error);
  uv_run(&loop, UV_RUN_NOWAIT);
  CHECK(uv_loop_close(&loop) == 0);

  CHECK_FALSE(timed_out);
  REQUIRE(k.killed);
  CHECK_MESSAGE(k.other_outcomes == 0, k.first_other);
  CHECK(k.finished == kWaiting);
  CHECK(k.connection_errors == kWaiting);
  CHECK(k.off_loop_thread == 0);
  const double failed_after = std::chrono::duration<double>(k.last_failure - k.killed_at).count();
  CHECK(failed_after < 5.0);
  CHECK(run_returned_after >= 0);
  CHECK(run_returned_after < 5.0);
  // The driver went idle: reconnecting to the dead daemon failed, and it says so.
  CHECK_FALSE(polling_after);
  REQUIRE(driver_error);
  try {
    std::rethrow_exception(driver_error);
  } catch (const dbmgr::Error& e) {
    CHECK(e.category() == dbmgr::ErrorCategory::kConnection);
  } catch (...) {
    FAIL("the driver's error is not a dbmgr::Error");
  }
  std::printf(
      "uv: %d pending operations failed %.3f s after the daemon was killed; uv_run returned "
      "after %.3f s\n",
      kWaiting, failed_after, run_returned_after);
}
