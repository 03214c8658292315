// WorkerConn: the worker-thread execution every blocking driver shares (SQLite, ODBC).
//
// Each operation is one job on libuv's worker pool: the loop thread calls queue(op), the
// worker runs work(op), which writes result_, and the loop then completes the operation with
// result_ moved to the listener. A connection has at most one job queued or running, so its
// driver handle is used by one thread at a time; between jobs only the loop thread touches
// the object. close() while a job runs waits for it, then runs work_close() as a last job and
// deletes the object on the loop thread. An exception out of work() marks the connection
// broken (its driver state is unknown) and is never let out of the worker callback.
//
// Threading: queue(), do_close() and the completion on the loop thread; work() and
// work_close() on a worker thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <string_view>

#include <uv.h>

#include "backend/backend.hpp"

namespace dbmgr::daemon {

class WorkerConn : public BackendConn {
 protected:
  // Where the jobs run: libuv's worker pool (CPU and disk work: SQLite), or a thread of
  // the loop's BlockingPool (calls that wait on a server: ODBC; blocking_pool.hpp).
  enum class Threads : std::uint8_t { kLibuv, kBlocking };
  // `what` names the driver in logs: "SQLite", "ODBC".
  WorkerConn(uv_loop_t* loop, std::string_view what, Threads threads = Threads::kLibuv)
      : loop_(loop), what_(what), threads_(threads) {
    work_.data = this;
  }

  // Runs `op` on the worker pool, then completes it on the loop thread with result_.
  void queue(BackendOp op);
  // Worker thread: runs `op`, writing result_ (cleared before the job).
  virtual void work(BackendOp op) = 0;
  // Worker thread: releases the driver's handles. Runs once, after close().
  virtual void work_close() = 0;
  // Loop thread, between jobs: a driver handle exists that work_close() must release.
  virtual bool has_handle() const = 0;
  // Loop thread: a job is queued or running.
  bool job_running() const { return job_running_; }
  // Loop thread: a job ended (before its result goes to the listener).
  virtual void after_job() {}

  // Every operation is a job by default.
  void do_open() override { queue(BackendOp::kOpen); }
  void do_resume() override { queue(BackendOp::kExecute); }
  void do_commit() override { queue(BackendOp::kCommit); }
  void do_rollback() override { queue(BackendOp::kRollback); }
  void do_ping() override { queue(BackendOp::kPing); }
  void do_reset() override { queue(BackendOp::kReset); }
  void do_close() final;

  uv_loop_t* loop() const { return loop_; }

  BackendResult result_;  // the worker writes it during a job; moved out when it completes

 private:
  static void work_cb(uv_work_t* req);
  static void after_work_cb(uv_work_t* req, int status);
  void submit();
  void run_job();    // a worker thread: the job's body
  void job_done();   // the loop thread: the job's end

  uv_loop_t* loop_;
  std::string_view what_;
  Threads threads_;
  uv_work_t work_{};
  BackendOp op_ = BackendOp::kOpen;
  bool job_running_ = false;
  std::atomic<bool> closing_{false};  // set on the loop, read by the job that follows
};

}  // namespace dbmgr::daemon
