// detail::AsyncOp and detail::AsyncSessionState: an async operation in flight and the
// session it belongs to. Internal to libdbmgr (not installed).
//
// An AsyncOp is shared by the Async<T> handle and the transport (an intrusive count: one
// allocation per operation, which also holds its Result and its Pendings, so a request in
// flight costs one small block and nothing else). The router writes the reply into it under
// the Multiplexer's mutex and, when the last expected reply is in, on_reply() moves the
// session's state by the outcome (through the session core) and queues the op on the
// multiplexer's ready list; complete(), without the multiplexer's lock, then resumes the
// awaiting coroutine or fulfils the future.
//
// Thread-safety: the fields marked "mux" are guarded by the Multiplexer's mu_; the
// completion fields by the op's own mu (never taken while holding the multiplexer's lock is
// waited for: the order is mux -> op, and complete() takes only the op's).
#pragma once

#include <atomic>
#include <coroutine>
#include <cstddef>
#include <future>
#include <memory>
#include <mutex>
#include <optional>

#include "dbmgr/async.hpp"
#include "multiplexer.hpp"
#include "session_core.hpp"

namespace dbmgr::detail {

struct AsyncSessionState {
  AsyncSessionState(std::shared_ptr<Multiplexer> m, std::string database, std::string prefix,
                    Access access)
      : mux(std::move(m)), txn(std::move(database), std::move(prefix), access) {}
  const std::shared_ptr<Multiplexer> mux;
  SessionCore txn;             // mux
  DaemonSession ds;            // mux: this session's id on the multiplexed socket
  std::size_t in_flight = 0;   // mux: its operations whose outcome is not in yet
};

enum class OpKind : std::uint8_t { kExecute, kCommit, kRollback, kClose, kOneShot, kCancel };

class AsyncOp final : public ReplySink {
 public:
  AsyncOp(OpKind kind, std::shared_ptr<Multiplexer> mux, std::shared_ptr<AsyncSessionState> s)
      : kind_(kind), mux_(std::move(mux)), session_(std::move(s)) {
    req_.close.sink = req_.open.sink = req_.exec.sink = this;
  }
  // An operation that ended before anything was sent.
  static AsyncOp* finished(OpKind kind, std::optional<Error> error);

  void on_reply(Pending& p) override;  // mux
  void complete();                     // no lock held

  std::atomic<int> refs_{0};
  const OpKind kind_;
  const std::shared_ptr<Multiplexer> mux_;
  const std::shared_ptr<AsyncSessionState> session_;  // null for a one-shot
  ExecuteRequests req_;  // mux: a single request uses req_.exec
  int remaining_ = 0;    // mux: replies still to come
  Result result_;        // written by the router (mux), then handed to the waiter
  std::optional<Error> error_;

  std::mutex mu_;
  bool done_ = false;       // mu_
  bool taken_ = false;      // mu_: awaited or its future taken
  bool cancelled_ = false;  // mu_
  std::coroutine_handle<> waiter_;                     // mu_
  std::optional<std::promise<Result>> promise_;        // mu_
  std::optional<std::promise<void>> promise_void_;     // mu_

  void fulfil_locked();  // mu_

 private:
  void apply_outcome();  // mux
};

}  // namespace dbmgr::detail
