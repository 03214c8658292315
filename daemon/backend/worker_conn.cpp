// WorkerConn: one worker-pool job per operation.
#include "backend/worker_conn.hpp"

#include <cstdlib>

#include <fmt/format.h>

#include "backend/blocking_pool.hpp"
#include "guard.hpp"

namespace dbmgr::daemon {

void WorkerConn::submit() {
  job_running_ = true;
  if (threads_ == Threads::kBlocking) {
    blocking::submit(
        loop_, this, [](void* self) { static_cast<WorkerConn*>(self)->run_job(); },
        [](void* self) { static_cast<WorkerConn*>(self)->job_done(); });
    return;
  }
  // uv_queue_work only checks its arguments: with a valid loop and request it cannot fail.
  if (uv_queue_work(loop_, &work_, &WorkerConn::work_cb, &WorkerConn::after_work_cb) != 0) {
    std::abort();
  }
}

void WorkerConn::queue(BackendOp op) {
  op_ = op;
  result_ = BackendResult{};
  submit();
}

void WorkerConn::work_cb(uv_work_t* req) { static_cast<WorkerConn*>(req->data)->run_job(); }

void WorkerConn::after_work_cb(uv_work_t* req, int /*status*/) {
  static_cast<WorkerConn*>(req->data)->job_done();
}

void WorkerConn::run_job() {
  WorkerConn* self = this;
  if (self->closing_) {
    guard_callback("closing a connection", [self] { self->work_close(); });
    return;
  }
  bool ok = guard_callback("a worker job", [self] { self->work(self->op_); });
  if (!ok) {  // the connection's state is unknown: it is closed, not reused
    self->result_.status = Status::internal(
        fmt::format("internal error in the {} driver while running the request", self->what_));
    self->result_.broken = true;
    self->result_.frames.bytes().clear();
    self->result_.more = false;
  }
}

void WorkerConn::job_done() {
  WorkerConn* self = this;
  self->job_running_ = false;
  if (self->closing_) {
    if (!self->has_handle()) {
      delete self;
      return;
    }
    self->submit();  // close() arrived while an operation ran: now run the close itself
    return;
  }
  self->after_job();
  // The result is moved out: the worker writes result_ again only after the next queue(),
  // which the listener may call from inside this callback.
  guard_callback("a worker result", [self] { self->complete(self->op_, std::move(self->result_)); });
}

void WorkerConn::do_close() {
  closing_ = true;
  if (job_running_) return;  // after_work_cb runs the close
  if (!has_handle()) {
    delete this;
    return;
  }
  submit();
}

}  // namespace dbmgr::daemon
