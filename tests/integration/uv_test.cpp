// dbmgr/uv.hpp against a real dbmgrd on SQLite: the application's own libuv loop drives the
// async socket (Options::async_io_thread = false). 1,000 sessions started from a uv timer
// insert and commit through coroutines resumed on the loop's thread, with no library thread
// and a 1 ms timer ticking meanwhile; a daemon killed mid-flight fails every pending
// operation with a connection error and uv_run returns by itself; a daemon restarted under
// the driver is followed (and kick() resumes a driver that went idle); a 4 MiB request is
// written through the driver's write interest.
#include <signal.h>
#include <sys/stat.h>
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


// ---- a daemon restarted under the driver ---------------------------------------------------

namespace {

struct Restart {
  uv_loop_t* loop = nullptr;
  Daemon* d = nullptr;
  dbmgr::DatabaseManager* m = nullptr;
  std::vector<dbmgr::Task<void>> tasks;
  bool holding = false;
  bool restarted = false;
  int connection_errors = 0;
  int committed = 0;
  std::string first_other;
};

void note_other(Restart& r, const std::string& what) {
  if (r.first_other.empty()) r.first_other = what;
}

// An insert and a commit on a fresh session; stops the loop when done.
dbmgr::Task<void> insert_committed(dbmgr::AsyncSession s, int id, Restart& r) {
  try {
    co_await s.execute("INSERT INTO uv_restart(id) VALUES (?)", dbmgr::params(id));
    co_await s.commit();
    co_await s.close();
    ++r.committed;
  } catch (const std::exception& e) {
    note_other(r, std::string("insert ") + std::to_string(id) + " failed: " + e.what());
  }
  uv_stop(r.loop);
}

// Waits for the writer `holder` holds; the restart fails it, and from inside the coroutine
// the driver resumed, a new session inserts `next_id` through the restarted daemon.
dbmgr::Task<void> wait_then_retry(dbmgr::AsyncSession s, int next_id, Restart& r) {
  try {
    co_await s.execute("INSERT INTO uv_restart(id) VALUES (?)", dbmgr::params(-next_id));
    note_other(r, "the waiting insert succeeded");
  } catch (const dbmgr::Error& e) {
    if (e.category() == dbmgr::ErrorCategory::kConnection && e.client_side()) {
      ++r.connection_errors;
    } else {
      note_other(r, std::string("the waiting insert: ") + e.what());
    }
  }
  if (!r.restarted) note_other(r, "the waiting insert ended before the restart");
  r.tasks.push_back(insert_committed(r.m->get_async_db(), next_id, r));
}

// `holder` (alive in the test's scope) holds the writer with its open transaction.
dbmgr::Task<void> hold_then_wait(dbmgr::AsyncSession& holder, int next_id, Restart& r) {
  try {
    co_await holder.execute("INSERT INTO uv_restart(id) VALUES (0)");
  } catch (const std::exception& e) {
    note_other(r, std::string("the holder failed: ") + e.what());
    uv_stop(r.loop);
    co_return;
  }
  r.tasks.push_back(wait_then_retry(r.m->get_async_db(), next_id, r));
  r.holding = true;
}

ino_t socket_inode(dbmgr::DatabaseManager& m) {
  struct stat st {};
  return ::fstat(m.async_socket(), &st) == 0 ? st.st_ino : 0;
}

}  // namespace

TEST_CASE("uv: the driver follows a restarted daemon's socket, and kick() resumes it after it went idle") {
  Daemon d;
  dbmgr::DatabaseManager m(loop_driven(d, "uvrestart"));
  m.execute("CREATE TABLE IF NOT EXISTS uv_restart (id BIGINT PRIMARY KEY)");

  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);
  Restart r;
  r.loop = &loop;
  r.d = &d;
  r.m = &m;
  r.tasks.reserve(16);  // no reallocation while coroutines append
  bool timed_out = false;
  uv_timer_t step, watchdog;  // outlive the block: the loop finishes closing them below
  {
    dbmgr::UvDriver driver(&loop, m);
    const ino_t first_socket = socket_inode(m);
    arm_watchdog(&loop, &watchdog, &timed_out, 60'000);

    // 1. The daemon is SIGKILLed and started again while a transaction and a waiter are in
    //    flight: both fail with a connection error, the driver follows the new socket on its
    //    own, and an insert started from the failed coroutine commits through it.
    auto holder = m.get_async_db();
    r.tasks.push_back(hold_then_wait(holder, 1, r));
    uv_timer_init(&loop, &step);
    step.data = &r;
    uv_timer_start(
        &step,
        [](uv_timer_t* t) {
          Restart& rs = *from<Restart>(t);
          if (!rs.holding || rs.d->pool("test.uvrestart", "writer")["waiting"] != 1) return;
          uv_timer_stop(t);
          rs.d->stop(SIGKILL);
          rs.d->start();  // same socket path; the old connection is dead
          rs.restarted = true;
        },
        5, 5);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_FALSE(timed_out);
    CHECK_MESSAGE(r.first_other.empty(), r.first_other);
    CHECK(r.restarted);
    CHECK(r.connection_errors == 1);  // the waiter
    CHECK(r.committed == 1);
    CHECK(driver.polling());
    CHECK_FALSE(driver.last_error());
    CHECK(socket_inode(m) != first_socket);

    // 2. The daemon is killed with nothing in flight: the driver finds no daemon to reconnect
    //    to and goes idle (uv_run returns by itself). With the daemon back, kick() resumes it.
    uv_timer_start(
        &step,
        [](uv_timer_t* t) {
          Restart& rs = *from<Restart>(t);
          rs.d->stop(SIGKILL);
        },
        5, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_FALSE(timed_out);
    CHECK_FALSE(driver.polling());
    CHECK(driver.last_error());
    d.start();
    driver.kick();
    CHECK(driver.polling());
    CHECK_FALSE(driver.last_error());  // kick() clears it once the socket is had again
    r.tasks.push_back(insert_committed(m.get_async_db(), 2, r));
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_FALSE(timed_out);
    CHECK_MESSAGE(r.first_other.empty(), r.first_other);
    CHECK(r.committed == 2);
    close_timer(&step);
    close_timer(&watchdog);
  }
  uv_run(&loop, UV_RUN_NOWAIT);
  CHECK(uv_loop_close(&loop) == 0);
  // What the restarts left: the two inserts committed after them, nothing else.
  CHECK(m.execute("SELECT count(*) FROM uv_restart").scalar<std::int64_t>() == 2);
  CHECK(m.execute("SELECT count(*) FROM uv_restart WHERE id IN (1, 2)").scalar<std::int64_t>() == 2);
}

// ---- a request larger than the socket buffer ----------------------------------------------

namespace {

struct Big {
  uv_loop_t* loop = nullptr;
  std::size_t read_back = 0;
  bool equal = false;
  std::string error;
};

dbmgr::Task<void> insert_big(dbmgr::AsyncSession s, const dbmgr::Blob& blob, Big& b) {
  try {
    co_await s.execute("INSERT INTO uv_big(id, b) VALUES (1, ?)", dbmgr::params(blob));
    dbmgr::Result res = co_await s.execute("SELECT b FROM uv_big WHERE id = 1");
    if (res.size() != 1) throw std::runtime_error("the blob's row is not there");
    const auto got = res[0].get<dbmgr::Blob>(0);
    b.read_back = got.size();
    b.equal = got == blob;
    co_await s.commit();
  } catch (const std::exception& e) {
    b.error = e.what();
  }
  uv_stop(b.loop);
}

}  // namespace

// One request of 4 MiB and nothing else in flight: no reply can wake the driver before the
// whole frame is written, so the request completes only if the driver polls for UV_WRITABLE
// while async_wants_write() (without it, the watchdog ends the loop and the test fails).
TEST_CASE("uv: a 4 MiB request is written as the socket drains (the driver's write interest)") {
  Daemon d;
  dbmgr::DatabaseManager m(loop_driven(d, "uvbig"));
  m.execute("CREATE TABLE IF NOT EXISTS uv_big (id BIGINT PRIMARY KEY, b BLOB)");
  std::vector<std::uint8_t> bytes(4u << 20);
  for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<std::uint8_t>(i * 7 + i / 4096);
  const dbmgr::Blob blob(std::move(bytes));

  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);
  Big b;
  b.loop = &loop;
  bool timed_out = false;
  bool wanted_write = false;
  uv_timer_t watchdog;
  {
    dbmgr::UvDriver driver(&loop, m);
    arm_watchdog(&loop, &watchdog, &timed_out, 30'000);
    auto task = insert_big(m.get_async_db(), blob, b);
    // Started outside the loop's callbacks: the driver sees it before the loop blocks.
    wanted_write = m.async_wants_write();
    uv_run(&loop, UV_RUN_DEFAULT);
    close_timer(&watchdog);
  }
  uv_run(&loop, UV_RUN_NOWAIT);
  CHECK(uv_loop_close(&loop) == 0);
  CHECK(wanted_write);  // the request did not fit in the socket at once
  CHECK_FALSE(timed_out);
  CHECK_MESSAGE(b.error.empty(), b.error);
  CHECK(b.read_back == blob.size());
  CHECK(b.equal);
  CHECK(m.execute("SELECT length(b) FROM uv_big WHERE id = 1").scalar<std::int64_t>() ==
        static_cast<std::int64_t>(blob.size()));
}
