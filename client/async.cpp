// The async client: AsyncOp completion, AsyncSession's operations, cancellation.
#include <utility>

#include "async_op.hpp"
#include "dbmgr/async.hpp"

namespace dbmgr {
namespace detail {
namespace {

using State = SessionState;

Error closed_error() {
  return Error::client(ErrorCategory::kInvalidRequest, "the async session is closed");
}

// Registers `op` with the transport: it is told of its replies and kept alive until done.
AsyncOp* arm(AsyncOp* op, int replies) {
  op->remaining_ = replies;
  op->refs_.fetch_add(1, std::memory_order_relaxed);  // the transport's reference
  if (op->session_) ++op->session_->in_flight;
  return op;
}

// A request with one reply (commit, rollback, close, cancel) on session `s`.
AsyncOp* send_simple(Multiplexer& mux, const std::shared_ptr<AsyncSessionState>& s, OpKind kind,
                     proto::MsgType type) {
  auto* op = new AsyncOp(kind, s->mux, s);
  std::uint32_t rid = mux.router().next_request_id();
  mux.encoder().empty(type, rid, s->ds.id);
  mux.router().expect(op->req_.exec, rid, Expect::kOk);
  return arm(op, 1);
}

}  // namespace

AsyncOp* AsyncOp::finished(OpKind kind, std::optional<Error> error) {
  auto* op = new AsyncOp(kind, nullptr, nullptr);
  op->error_ = std::move(error);
  op->done_ = true;
  return op;
}

void AsyncOp::on_reply(Pending&) {
  if (--remaining_ > 0) return;
  apply_outcome();
  mux_->ready_.push_back(this);
}

void AsyncOp::apply_outcome() {
  const Pending& p = req_.exec;
  const bool lost = mux_->broken_.has_value();
  if (!session_) {  // a one-shot, or an internal request of no session
    error_ = p.error;
    return;
  }
  AsyncSessionState& s = *session_;
  --s.in_flight;
  SessionCore& txn = s.txn;
  if (txn.state() == State::kClosed) {
    // Closed while this was in flight: report, but move nothing.
    if (kind_ == OpKind::kExecute || kind_ == OpKind::kCommit || kind_ == OpKind::kOneShot) {
      error_ = req_.opening && req_.open.error ? req_.open.error : p.error;
    }
    return;
  }
  switch (kind_) {
    case OpKind::kExecute: {
      if (lost) {
        error_ = p.error;
        txn.on_execute_lost(*error_);
      } else if (txn.state() == State::kFailed && p.error) {
        error_ = p.error;  // skipped after the earlier error: keep the first failure
      } else {
        bool retry = false;
        error_ = txn.on_execute_replies(req_, s.ds, /*may_retry=*/false, &retry);
      }
      break;
    }
    case OpKind::kCommit:
      if (lost) {
        error_ = txn.on_commit_lost(*p.error);
      } else if (txn.state() == State::kFailed && p.error) {
        error_ = p.error;
      } else {
        error_ = txn.on_commit_reply(p);
      }
      break;
    case OpKind::kRollback:
      txn.begin_rollback(nullptr);  // the state moves to idle however it went
      if (!lost) {
        error_ = txn.on_rollback_reply(p, s.ds);
        if (error_) s.ds.dead = true;  // unknown state: the next statement reopens
      }
      break;
    case OpKind::kClose:
    case OpKind::kCancel:
    case OpKind::kOneShot:
      if (!lost) error_ = p.error;
      break;
  }
}

void AsyncOp::fulfil_locked() {
  if (promise_) {
    if (error_) {
      promise_->set_exception(std::make_exception_ptr(*error_));
    } else {
      promise_->set_value(std::move(result_));
    }
  } else if (promise_void_) {
    if (error_) {
      promise_void_->set_exception(std::make_exception_ptr(*error_));
    } else {
      promise_void_->set_value();
    }
  }
}

void AsyncOp::complete() {
  std::coroutine_handle<> waiter;
  {
    std::lock_guard lock(mu_);
    done_ = true;
    waiter = std::exchange(waiter_, nullptr);
    fulfil_locked();
  }
  if (waiter) waiter.resume();
}

void release(AsyncOp* op) noexcept {
  if (op->refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete op;
}

bool op_ready(AsyncOp* op) noexcept {
  std::lock_guard lock(op->mu_);
  return op->done_;
}

bool op_suspend(AsyncOp* op, std::coroutine_handle<> h) noexcept {
  std::lock_guard lock(op->mu_);
  op->taken_ = true;
  if (op->done_) return false;
  op->waiter_ = h;
  return true;
}

Result op_take_result(AsyncOp* op) {
  std::lock_guard lock(op->mu_);
  op->taken_ = true;
  if (op->error_) throw *op->error_;
  return std::move(op->result_);
}

std::future<Result> op_future_result(AsyncOp* op) {
  std::lock_guard lock(op->mu_);
  if (op->taken_) {
    throw Error::client(ErrorCategory::kInvalidRequest,
                        "the outcome of this operation was already taken");
  }
  op->taken_ = true;
  op->promise_.emplace();
  std::future<Result> f = op->promise_->get_future();
  if (op->done_) op->fulfil_locked();
  return f;
}

std::future<void> op_future_void(AsyncOp* op) {
  std::lock_guard lock(op->mu_);
  if (op->taken_) {
    throw Error::client(ErrorCategory::kInvalidRequest,
                        "the outcome of this operation was already taken");
  }
  op->taken_ = true;
  op->promise_void_.emplace();
  std::future<void> f = op->promise_void_->get_future();
  if (op->done_) op->fulfil_locked();
  return f;
}

void op_cancel(AsyncOp* op) noexcept {
  if (op->kind_ != OpKind::kExecute || !op->session_) return;
  {
    std::lock_guard lock(op->mu_);
    if (op->done_ || op->cancelled_) return;
    op->cancelled_ = true;
  }
  const std::shared_ptr<AsyncSessionState>& s = op->session_;
  Multiplexer& mux = *s->mux;
  {
    std::lock_guard lock(mux.mu_);
    if (mux.broken_ || s->ds.id == 0 || op->remaining_ == 0) return;
    try {
      // kCancel is acted on at once; kRollback queues behind the statement, so the
      // transaction ends rolled back whether the cancel or the completion won the race.
      send_simple(mux, s, OpKind::kCancel, proto::MsgType::kCancel);
      send_simple(mux, s, OpKind::kRollback, proto::MsgType::kRollback);
    } catch (...) {
      // Out of memory while encoding: the session's close will roll back.
    }
  }
  mux.wake();
}

void op_abandon(AsyncOp* op) noexcept {
  bool cancel;
  {
    std::lock_guard lock(op->mu_);
    cancel = !op->done_ && !op->taken_;
  }
  if (cancel) op_cancel(op);
}

}  // namespace detail

using detail::AsyncOp;
using detail::OpKind;
using State = detail::SessionState;

AsyncSession::AsyncSession() noexcept = default;
AsyncSession::AsyncSession(std::shared_ptr<detail::AsyncSessionState> state)
    : state_(std::move(state)) {}
AsyncSession::AsyncSession(AsyncSession&&) noexcept = default;
AsyncSession& AsyncSession::operator=(AsyncSession&& other) noexcept {
  if (this != &other) {
    if (is_open()) (void)close();
    state_ = std::move(other.state_);
  }
  return *this;
}

AsyncSession::~AsyncSession() {
  if (is_open()) (void)close();  // kClose travels; nobody waits for it
}

Async<Result> AsyncSession::execute(std::string_view sql, std::initializer_list<Param> params) {
  return execute(sql, params.begin(), params.size());
}

Async<Result> AsyncSession::execute(std::string_view sql, const std::vector<Param>& params) {
  return execute(sql, params.data(), params.size());
}

Async<Result> AsyncSession::execute(std::string_view sql, const Param* params,
                                    std::size_t count) {
  auto finished = [](std::optional<Error> e) {
    AsyncOp* op = AsyncOp::finished(OpKind::kExecute, std::move(e));
    op->refs_ = 1;
    return Async<Result>(op);
  };
  if (!state_) return finished(detail::closed_error());
  detail::AsyncSessionState& s = *state_;
  detail::Multiplexer& mux = *s.mux;
  AsyncOp* op;
  {
    std::lock_guard lock(mux.mu_);
    if (s.txn.state() == State::kClosed) return finished(detail::closed_error());
    if (mux.broken_) {
      if (s.txn.state() == State::kInTransaction) s.txn.set_broken(mux.broken_->what());
      return finished(*mux.broken_);
    }
    try {
      // With nothing in flight the state is final: refuse at once as Session does. With
      // operations in flight the daemon decides (it skips statements of a failed session).
      if (s.in_flight == 0) s.txn.check_usable();
      op = new AsyncOp(OpKind::kExecute, s.mux, state_);
      op->refs_ = 1;
      try {
        s.txn.send_execute(mux, s.ds, op->req_, sql, params, count, &op->result_);
      } catch (...) {
        delete op;
        throw;
      }
    } catch (const Error& e) {
      return finished(e);
    }
    detail::arm(op, 1 + (op->req_.opening ? 1 : 0) + (op->req_.closing ? 1 : 0));
  }
  mux.wake();
  return Async<Result>(op);
}

namespace {

// commit, rollback and close share this: `decide` says, under the lock, whether to send
// (returns the message type) or to finish at once (nullopt, with an optional error).
template <typename Decide>
Async<void> simple_op(const std::shared_ptr<detail::AsyncSessionState>& state, OpKind kind,
                      Decide&& decide) {
  auto finished = [kind](std::optional<Error> e) {
    AsyncOp* op = AsyncOp::finished(kind, std::move(e));
    op->refs_ = 1;
    return Async<void>(op);
  };
  if (!state) {
    return kind == OpKind::kCommit ? finished(detail::closed_error()) : finished(std::nullopt);
  }
  detail::Multiplexer& mux = *state->mux;
  AsyncOp* op;
  {
    std::lock_guard lock(mux.mu_);
    std::optional<Error> error;
    std::optional<proto::MsgType> type = decide(*state, mux, &error);
    if (!type) return finished(std::move(error));
    try {
      op = detail::send_simple(mux, state, kind, *type);
    } catch (const Error& e) {
      return finished(e);
    }
    op->refs_.fetch_add(1);  // the handle's
  }
  mux.wake();
  return Async<void>(op);
}

}  // namespace

Async<void> AsyncSession::commit() {
  return simple_op(state_, OpKind::kCommit,
                   [](detail::AsyncSessionState& s, detail::Multiplexer& mux,
                      std::optional<Error>* error) -> std::optional<proto::MsgType> {
                     if (s.txn.state() == State::kClosed) {
                       *error = detail::closed_error();
                       return std::nullopt;
                     }
                     if (mux.broken_) {
                       if (s.txn.state() == State::kInTransaction) {
                         *error = s.txn.on_commit_lost(*mux.broken_);
                       } else if (s.txn.state() != State::kIdle) {
                         *error = s.txn.broken_error();
                       }
                       return std::nullopt;
                     }
                     if (s.in_flight == 0) {
                       try {
                         s.txn.check_usable();
                       } catch (const Error& e) {
                         *error = e;
                         return std::nullopt;
                       }
                       if (!s.txn.needs_commit()) return std::nullopt;  // nothing to commit
                     }
                     if (s.ds.id == 0) return std::nullopt;
                     return proto::MsgType::kCommit;
                   });
}

Async<void> AsyncSession::rollback() {
  return simple_op(state_, OpKind::kRollback,
                   [](detail::AsyncSessionState& s, detail::Multiplexer& mux,
                      std::optional<Error>*) -> std::optional<proto::MsgType> {
                     if (s.txn.state() == State::kClosed) return std::nullopt;
                     const bool open = s.ds.id != 0 && !s.ds.dead;
                     const bool needed =
                         s.in_flight > 0 || s.txn.state() == State::kInTransaction ||
                         s.txn.state() == State::kFailed;
                     if (mux.broken_ || !open || !needed) {
                       s.txn.begin_rollback(nullptr);  // nothing on the daemon to roll back
                       return std::nullopt;
                     }
                     return proto::MsgType::kRollback;
                   });
}

Async<void> AsyncSession::close() {
  return simple_op(state_, OpKind::kClose,
                   [](detail::AsyncSessionState& s, detail::Multiplexer& mux,
                      std::optional<Error>*) -> std::optional<proto::MsgType> {
                     if (s.txn.state() == State::kClosed) return std::nullopt;
                     s.txn.set_state(State::kClosed);
                     if (mux.broken_ || s.ds.id == 0) return std::nullopt;
                     return proto::MsgType::kClose;
                   });
}

bool AsyncSession::in_transaction() const {
  if (!state_) return false;
  std::lock_guard lock(state_->mux->mu_);
  return state_->txn.state() == State::kInTransaction;
}

bool AsyncSession::failed() const {
  if (!state_) return false;
  std::lock_guard lock(state_->mux->mu_);
  return state_->txn.state() == State::kFailed || state_->txn.state() == State::kBroken;
}

bool AsyncSession::is_open() const {
  if (!state_) return false;
  std::lock_guard lock(state_->mux->mu_);
  return state_->txn.state() != State::kClosed;
}

}  // namespace dbmgr
