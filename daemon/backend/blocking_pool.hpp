// BlockingPool: threads for driver calls that wait on the network (ODBC).
//
// libuv's worker pool is small and shared (worker_threads, 4 by default): right for SQLite,
// whose calls are CPU and disk work, wrong for a driver that may wait seconds on a server.
// Four slow MariaDB statements would hold every libuv worker, and SQLite statements and
// PostgreSQL's connection steps behind them would wait. A BlockingPool grows a thread for
// each call that finds no idle one (up to kMaxThreads), so every backend connection with an
// operation in flight has a thread, as in a per-process pool, and nothing else waits for it.
// Threads stay once made (their number is the peak of concurrent calls, bounded by the
// ODBC pools' sizes) and end at shutdown.
//
// Completions come back to the loop through one uv_async_t, in the order calls finished;
// while calls are in flight the handle keeps the loop running, as libuv's own requests do.
//
// Threading: submit() and close_all() on the loop thread; work on pool threads; done on the
// loop thread.
#pragma once

#include <uv.h>

namespace dbmgr::daemon {

namespace blocking {

using Fn = void (*)(void* arg);

// Runs work(arg) on a pool thread of `loop`'s pool, then done(arg) on the loop thread.
void submit(uv_loop_t* loop, void* arg, Fn work, Fn done);
// Stops the threads of `loop`'s pool (none may be in flight) and closes its handle. The
// daemon calls it before closing the loop.
void close_all(uv_loop_t* loop);
// Threads made so far for `loop` (for tests and dbmgrctl).
int threads(uv_loop_t* loop);

inline constexpr int kMaxThreads = 1024;

}  // namespace blocking

}  // namespace dbmgr::daemon
