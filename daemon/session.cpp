// Session: transaction handle state machine (lazy BEGIN, lease per transaction, rollback on
// error, disconnect, timeout and kill).
#include "session.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "client_conn.hpp"
#include "engine.hpp"
#include "server.hpp"

namespace dbmgr::daemon {

Session::Session(Server& server, ClientConn* conn, std::uint32_t id, Engine* engine,
                 bool read_only, bool one_shot)
    : server_(server),
      conn_(conn),
      id_(id),
      engine_(engine),
      read_only_(read_only),
      one_shot_(one_shot) {}

std::string_view Session::state_name() const {
  switch (state_) {
    case State::kIdle: return "idle";
    case State::kLeasing: return "waiting";
    case State::kInTx: return "idle in transaction";
    case State::kRunning: return "active";
    case State::kFailed: return "failed";
  }
  return "?";
}

void Session::enqueue(PendingRequest* r) {
  r->next = nullptr;
  if (tail_ != nullptr) tail_->next = r; else head_ = r;
  tail_ = r;
  if (current_ == nullptr) pump();
}

PendingRequest* Session::pop() {
  PendingRequest* r = head_;
  if (r != nullptr) {
    head_ = r->next;
    if (head_ == nullptr) tail_ = nullptr;
    r->next = nullptr;
  }
  return r;
}

void Session::pump() {
  if (in_pump_) return;  // requests that finish at once loop here instead of recursing
  in_pump_ = true;
  while (current_ == nullptr && head_ != nullptr && !abandoned_ && !closing_ &&
         state_ != State::kRunning && state_ != State::kLeasing) {
    current_ = pop();
    start_current();
  }
  in_pump_ = false;
  if (current_ == nullptr && (one_shot_ || abandoned_ || closing_)) maybe_delete();  // last use
}

void Session::reply_ok() {
  if (conn_ != nullptr && current_ != nullptr) {
    conn_->encoder().empty(proto::MsgType::kOk, current_->header.request_id, id_);
  }
}

void Session::reply_error(const Status& s) {
  if (conn_ != nullptr && current_ != nullptr) {
    conn_->send_error(current_->header.request_id, id_, s);
  }
}

void Session::finish_current() {
  PendingRequest* r = current_;
  current_ = nullptr;
  if (r != nullptr) server_.free_request(r, conn_);
  if (in_pump_) return;  // pump() goes on (or deletes this) when start_current() returns
  if (one_shot_ || abandoned_ || closing_) {
    maybe_delete();
    return;
  }
  pump();
}

void Session::maybe_delete() {
  if (lease_ != nullptr || state_ == State::kLeasing || current_ != nullptr || group_ != nullptr) {
    return;
  }
  if (conn_ != nullptr) conn_->forget(this);
  while (PendingRequest* r = pop()) server_.free_request(r, conn_);
  server_.on_session_gone(this);
  delete this;
}

void Session::release(bool reusable) {
  if (lease_ == nullptr) return;
  BackendConn* c = lease_;
  lease_ = nullptr;
  engine_->pool_for(read_only_).release(c, reusable);
}

Status Session::failure_for(const Status& why) {
  // An operator's kill, a timeout or the drain: later requests are told that reason.
  auto cat = why.category();
  if (cat == proto::ErrorCategory::kKilled || cat == proto::ErrorCategory::kTimeout ||
      cat == proto::ErrorCategory::kShuttingDown) {
    return why;
  }
  // Any other error: docs/protocol.md section 10, the exact words clients may rely on.
  return Status(proto::ErrorCategory::kInvalidRequest, "skipped after earlier error in pipeline");
}

void Session::fail(Status why) {
  state_ = State::kFailed;
  failed_ = std::move(why);
}

void Session::start_current() {
  const proto::MsgType type = current_->header.type;
  retried_ = false;
  streamed_ = false;
  using T = proto::MsgType;
  switch (type) {
    case T::kExecute:
    case T::kOneShot:
      switch (state_) {
        case State::kFailed:
          reply_error(failed_);
          return finish_current();
        case State::kIdle: {
          if (server_.draining()) {
            reply_error(Status(proto::ErrorCategory::kShuttingDown,
                               "dbmgrd is shutting down and starts no new transactions"));
            return finish_current();
          }
          groupable_ = false;
          if (type == T::kOneShot && !solo_ && !read_only_ && engine_->group_commit() != nullptr) {
            proto::Message msg;
            proto::FrameView frame{current_->header, current_->payload.data()};
            if (proto::decode(frame, &msg) == proto::DecodeError::kOk) {
              if (auto* o = std::get_if<proto::OneShot>(&msg)) {
                groupable_ = SqliteConn::groupable_sql(o->sql);
                group_sql_ = o->sql;
                group_params_ = o->params;
              }
            }
          }
          state_ = State::kLeasing;
          Pool& pool = engine_->pool_for(read_only_);
          if (BackendConn* c = pool.try_lease()) {
            on_lease(c, Status::ok());
          } else {
            pool.wait(this);
          }
          return;
        }
        case State::kInTx:
          return run_execute(false);
        default:
          break;
      }
      break;
    case T::kCommit:
    case T::kRollback:
    case T::kClose:
      if (type == T::kClose) closing_ = true;
      if (state_ == State::kInTx) {
        state_ = State::kRunning;
        running_op_ = type == T::kCommit ? BackendOp::kCommit : BackendOp::kRollback;
        lease_->set_listener(this);
        if (type == T::kCommit) lease_->commit(); else lease_->rollback();
        return;
      }
      if (state_ == State::kFailed && type == T::kCommit) {
        reply_error(failed_);
        return finish_current();
      }
      state_ = State::kIdle;
      reply_ok();
      return finish_current();
    default:
      break;
  }
  reply_error(Status::internal(fmt::format("request {} cannot run in state {}",
                                           proto::to_string(type), state_name())));
  finish_current();
}

void Session::on_lease(BackendConn* conn, Status status) {
  if (!status.is_ok()) {
    state_ = State::kIdle;
    reply_error(status);
    server_.count_error();
    if (!one_shot_) fail(failure_for(status));
    return finish_current();
  }
  lease_ = conn;
  tx_started_ = Clock::now();
  if (abandoned_) {  // cannot happen: abandon() cancels the wait; be safe anyway
    state_ = State::kIdle;
    release(true);
    return maybe_delete();
  }
  if (groupable_ && engine_->group_commit()->start(this, conn)) return;  // join_group() ran
  run_execute(true);
}

std::size_t Session::group_bytes() const {
  return current_ != nullptr ? current_->payload.size() : 0;
}

void Session::join_group(GroupCommit* g, GroupItem& it) {
  it.request_id = current_->header.request_id;
  it.sql = group_sql_;
  it.params = group_params_;
  group_ = g;
  lease_ = nullptr;  // the group holds the writer
  group_cancelled_ = false;
  state_ = State::kRunning;
  running_op_ = BackendOp::kExecute;
  began_tx_ = true;
  tx_started_ = Clock::now();
}

void Session::on_group_result(const GroupItem& it, const std::uint8_t* frames) {
  group_ = nullptr;
  groupable_ = false;
  state_ = State::kIdle;
  server_.count_statements(it.ran ? 1 : 0);
  server_.count_transaction();
  Status why = abort_pending_ ? abort_why_ : it.status;
  abort_pending_ = false;
  if (!abandoned_) {
    if (!it.status.is_ok()) {
      server_.count_error();
      reply_error(why);
      if (conn_ != nullptr && spdlog::should_log(spdlog::level::debug)) {
        spdlog::debug("{} one-shot {}: {}", conn_->tag(), engine_->name(), why.to_string());
      }
    } else if (conn_ != nullptr && it.frames_end > it.frames_begin) {
      conn_->send_bytes(frames + it.frames_begin, it.frames_end - it.frames_begin);
    }
  }
  finish_current();  // a one-shot: deletes this session
}

void Session::on_group_deferred() {
  group_ = nullptr;
  groupable_ = false;
  state_ = State::kIdle;
  if (abandoned_) return finish_current();
  if (abort_pending_ || group_cancelled_) {
    Status why = abort_pending_ ? abort_why_
                                : Status(proto::ErrorCategory::kCancelled, "statement cancelled",
                                         "57014");
    abort_pending_ = false;
    server_.count_error();
    reply_error(why);
    return finish_current();
  }
  solo_ = true;
  state_ = State::kLeasing;
  engine_->pool_for(read_only_).wait_front(this);
}

void Session::run_execute(bool begin) {
  proto::Message msg;
  proto::FrameView frame{current_->header, current_->payload.data()};
  ExecRequest req;
  req.request_id = current_->header.request_id;
  req.session_id = id_;
  if (proto::decode(frame, &msg) != proto::DecodeError::kOk) {
    reply_error(Status::internal("a queued request no longer decodes"));
    return finish_current();
  }
  if (auto* e = std::get_if<proto::Execute>(&msg)) {
    req.sql = e->sql;
    req.params = e->params;
  } else if (auto* o = std::get_if<proto::OneShot>(&msg)) {
    req.sql = o->sql;
    req.params = o->params;
    req.commit_after = true;
  }
  if (begin) {
    req.begin =
        one_shot_ ? engine_->one_shot_begin(read_only_, req.sql) : engine_->begin_mode(read_only_);
  }
  if (conn_ != nullptr) req.client_label = conn_->label();
  began_tx_ = begin;
  state_ = State::kRunning;
  running_op_ = BackendOp::kExecute;
  lease_->set_listener(this);
  lease_->execute(req);
}

void Session::on_backend_result(BackendConn* conn, BackendOp op, BackendResult& r) {
  (void)conn;
  server_.count_statements(r.statements);
  if (op == BackendOp::kCommit || op == BackendOp::kRollback) server_.count_transaction();
  if (abandoned_) {
    if (op != BackendOp::kRollback && r.in_transaction && !r.broken) {
      server_.count_rollback_on_disconnect();
      lease_->rollback();
      return;
    }
    state_ = State::kIdle;
    release(!r.broken && !r.in_transaction);
    return finish_current();  // frees the request that was running, then deletes this
  }

  if (op == BackendOp::kExecute) {
    if (!r.frames.empty()) {
      streamed_ = true;
      if (conn_ != nullptr) conn_->send_frames(std::move(r.frames));
    }
    if (!r.status.is_ok() && r.broken && began_tx_ && !streamed_ && !retried_ && !abort_pending_) {
      // The pooled connection was dead (server restarted, backend terminated) and nothing of
      // this transaction had happened yet: retry once on a fresh connection.
      retried_ = true;
      spdlog::info("{} session {} {}: connection lost before the first statement ({}); retrying "
                   "on a new connection",
                   conn_ != nullptr ? conn_->tag() : std::string("client"), id_, engine_->name(),
                   r.status.message());
      release(false);
      state_ = State::kLeasing;
      Pool& pool = engine_->pool_for(read_only_);
      if (BackendConn* c = pool.try_lease()) return on_lease(c, Status::ok());
      return pool.wait(this);
    }
    if (!r.status.is_ok()) {
      server_.count_error();
      Status why = abort_pending_ ? abort_why_ : r.status;
      abort_pending_ = false;
      reply_error(why);
      if (conn_ != nullptr && spdlog::should_log(spdlog::level::debug)) {
        spdlog::debug("{} session {} {}: {}", conn_->tag(), id_, engine_->name(), why.to_string());
      }
      Status failed = failure_for(why);
      if (r.in_transaction && !r.broken) {  // the backend could not roll back by itself
        finish_current_keep_running();
        return start_abort_rollback(std::move(failed));
      }
      state_ = State::kIdle;
      release(!r.broken);
      if (one_shot_) {
        server_.count_transaction();
      } else {
        fail(std::move(failed));
      }
      return finish_current();
    }
    if (r.more) {
      if (abort_pending_) {
        reply_error(abort_why_);
        finish_current_keep_running();
        return start_abort_rollback(abort_why_);
      }
      if (conn_ != nullptr && conn_->backed_up()) {
        paused_ = true;
        conn_->wait_writable(this);
      } else {
        lease_->resume();
      }
      return;
    }
    // The statement is complete.
    if (abort_pending_) {
      finish_current_keep_running();
      return start_abort_rollback(abort_why_);
    }
    if (r.in_transaction) {
      state_ = State::kInTx;
      idle_since_ = Clock::now();
    } else {
      state_ = State::kIdle;
      server_.count_transaction();
      release(true);
    }
    return finish_current();
  }

  // Commit or rollback, asked by the client (current_ set) or by an abort (current_ null).
  state_ = State::kIdle;
  release(!r.broken && !r.in_transaction);
  if (current_ != nullptr) {
    if (r.status.is_ok()) {
      reply_ok();
    } else {
      server_.count_error();
      reply_error(r.status);
      if (current_->header.type == proto::MsgType::kCommit) fail(failure_for(r.status));
    }
  }
  if (abort_pending_) {
    abort_pending_ = false;
    fail(abort_why_);  // stays failed until the client acknowledges with rollback/close
  }
  if (current_ != nullptr) return finish_current();
  if (one_shot_) return maybe_delete();
  pump();
}

void Session::start_abort_rollback(Status why) {
  abort_why_ = std::move(why);
  abort_pending_ = true;
  state_ = State::kRunning;
  running_op_ = BackendOp::kRollback;
  lease_->set_listener(this);
  lease_->rollback();
}

void Session::finish_current_keep_running() {
  // The current execute got its result; the session stays kRunning until the abort's
  // rollback completes, so the next request waits for it.
  PendingRequest* r = current_;
  current_ = nullptr;
  if (r != nullptr) server_.free_request(r, conn_);
}

void Session::resume_stream() {
  if (!paused_) return;
  paused_ = false;
  if (abandoned_) {
    running_op_ = BackendOp::kRollback;
    lease_->rollback();
    return;
  }
  if (abort_pending_) {
    reply_error(abort_why_);
    finish_current_keep_running();
    return start_abort_rollback(abort_why_);
  }
  lease_->resume();
}

void Session::cancel() {
  if (state_ == State::kRunning && running_op_ == BackendOp::kExecute && group_ != nullptr) {
    group_cancelled_ = true;
    group_->cancel(this);
  } else if (state_ == State::kRunning && running_op_ == BackendOp::kExecute && lease_ != nullptr) {
    lease_->cancel();
  } else if (state_ == State::kLeasing) {  // waiting for a connection counts (protocol.md)
    engine_->pool_for(read_only_).cancel_wait(this);
    Status why(proto::ErrorCategory::kCancelled, "statement cancelled while waiting for a connection",
               "57014");
    state_ = State::kIdle;
    reply_error(why);
    if (!one_shot_) fail(failure_for(why));
    finish_current();
  }
}

void Session::abandon() {
  abandoned_ = true;
  conn_ = nullptr;
  // Requests that never started are dropped; the current one (if any) finishes first.
  while (PendingRequest* r = pop()) server_.free_request(r, nullptr);
  switch (state_) {
    case State::kIdle:
    case State::kFailed:
      if (current_ == nullptr) return maybe_delete();
      return;
    case State::kLeasing:
      engine_->pool_for(read_only_).cancel_wait(this);
      state_ = State::kIdle;
      if (current_ != nullptr) {
        server_.free_request(current_, nullptr);
        current_ = nullptr;
      }
      return maybe_delete();
    case State::kInTx:
      server_.count_rollback_on_disconnect();
      state_ = State::kRunning;
      running_op_ = BackendOp::kRollback;
      lease_->set_listener(this);
      lease_->rollback();
      return;
    case State::kRunning:
      if (paused_) {
        paused_ = false;
        server_.count_rollback_on_disconnect();
        running_op_ = BackendOp::kRollback;
        lease_->rollback();
      } else if (group_ != nullptr) {
        group_->cancel(this);
      } else if (running_op_ == BackendOp::kExecute) {
        lease_->cancel();
      }
      return;
  }
}

void Session::abort_transaction(Status why) {
  switch (state_) {
    case State::kIdle:
    case State::kFailed:
      if (why.category() == proto::ErrorCategory::kKilled) fail(std::move(why));
      return;
    case State::kLeasing:
      engine_->pool_for(read_only_).cancel_wait(this);
      state_ = State::kIdle;
      reply_error(why);
      fail(std::move(why));
      return finish_current();
    case State::kInTx:
      return start_abort_rollback(std::move(why));
    case State::kRunning:
      abort_why_ = std::move(why);
      abort_pending_ = true;
      if (paused_) {
        resume_stream();
      } else if (group_ != nullptr) {
        group_->cancel(this);
      } else if (running_op_ == BackendOp::kExecute) {
        lease_->cancel();
      }
      return;
  }
}

void Session::check_idle(Clock::time_point now) {
  if (state_ != State::kInTx) return;
  auto limit = engine_->config().pool.idle_in_transaction_timeout;
  if (limit.count() <= 0 || now - idle_since_ < limit) return;
  if (conn_ != nullptr) {
    spdlog::info("{} session {} {}: idle in transaction for more than {} ms, rolling back",
                 conn_->tag(), id_, engine_->name(), limit.count());
  }
  abort_transaction(Status(proto::ErrorCategory::kTimeout,
                           fmt::format("idle_in_transaction_timeout ({:.1f} s) ended the "
                                       "transaction; it was rolled back",
                                       std::chrono::duration<double>(limit).count()),
                           "25P03"));
}

}  // namespace dbmgr::daemon
