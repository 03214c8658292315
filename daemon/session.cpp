// Session: transaction handle state machine (lazy BEGIN, lease per transaction, rollback on
// error, disconnect, timeout and kill).
#include "session.hpp"

#include <cassert>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "client_conn.hpp"
#include "engine.hpp"
#include "server.hpp"

namespace dbmgr::daemon {
namespace {

using S = Session::State;

// The legal moves of the session state machine (see session.hpp).
bool allowed(S from, S to) {
  if (from == to) return to == S::kIdle || to == S::kFailed || to == S::kExecuting;
  switch (from) {
    case S::kIdle: return to == S::kLeasing || to == S::kFailed;
    case S::kLeasing:
      return to == S::kExecuting || to == S::kGrouped || to == S::kIdle || to == S::kFailed;
    case S::kGrouped:
      return to == S::kIdle || to == S::kLeasing || to == S::kExecuting || to == S::kFailed;
    case S::kExecuting:
      return to == S::kPaused || to == S::kInTx || to == S::kIdle || to == S::kFailed ||
             to == S::kAborting || to == S::kLeasing;
    case S::kPaused: return to == S::kExecuting || to == S::kAborting;
    case S::kInTx: return to == S::kExecuting || to == S::kEnding || to == S::kAborting;
    case S::kEnding: return to == S::kIdle || to == S::kFailed || to == S::kAborting;
    case S::kAborting: return to == S::kFailed || to == S::kIdle;
    case S::kFailed: return to == S::kIdle || to == S::kFailed;
  }
  return false;
}

}  // namespace

Session::Session(Server& server, ClientConn* conn, std::uint32_t id, Engine* engine,
                 bool read_only, bool one_shot)
    : server_(server),
      conn_(conn),
      client_id_(conn != nullptr ? conn->id() : 0),
      id_(id),
      engine_(engine),
      read_only_(read_only),
      one_shot_(one_shot),
      created_at_(server.clock().now()) {
  engine_->session_opened();
}

Session::~Session() { engine_->session_closed(now()); }

std::string_view Session::to_string(State s) {
  switch (s) {
    case State::kIdle: return "idle";
    case State::kLeasing: return "waiting";
    case State::kGrouped: return "active (group commit)";
    case State::kExecuting: return "active";
    case State::kPaused: return "active (client reading)";
    case State::kInTx: return "idle in transaction";
    case State::kEnding: return "committing";
    case State::kAborting: return "rolling back";
    case State::kFailed: return "failed";
  }
  return "?";
}

LeaseHolder Session::holder() const {
  return LeaseHolder{client_id_, id_, one_shot_ ? "one-shot" : "session"};
}

Clock::time_point Session::now() const { return server_.clock().now(); }

Pool& Session::pool() { return engine_->pool_for(read_only_); }

void Session::set_state(State next) {
  assert(allowed(state_, next) && "illegal session state change");
  if (!allowed(state_, next)) {  // release builds: say so, and go on
    spdlog::error("session {}: illegal state change {} -> {}", id_, to_string(state_),
                  to_string(next));
  }
  if (next == State::kPaused && state_ != State::kPaused) {
    server_.count_paused(1);
    paused_since_ = now();
  } else if (state_ == State::kPaused && next != State::kPaused) {
    server_.count_paused(-1);
  }
  state_ = next;
}

void Session::check_stall(Clock::time_point t) {
  if (state_ != State::kPaused || abort_) return;
  const auto stall = server_.settings().stream_stall_timeout;
  const auto stmt = engine_->config().pool.statement_timeout;
  std::string why;
  if (stall.count() > 0 && t - paused_since_ >= stall) {
    why = fmt::format("stream_stall_timeout: the client read none of the result for {:.1f} s; "
                      "the statement was ended and its transaction rolled back",
                      std::chrono::duration<double>(stall).count());
  } else if (stmt.count() > 0 && t - exec_started_ >= stmt) {
    why = fmt::format("statement_timeout ({:.1f} s) reached while the client was reading the "
                      "result; the transaction was rolled back",
                      std::chrono::duration<double>(stmt).count());
  } else {
    return;
  }
  server_.count_stalled_stream();
  if (conn_ != nullptr) spdlog::info("{} session {} {}: {}", conn_->tag(), id_, engine_->name(), why);
  abort_transaction(Status(proto::ErrorCategory::kTimeout, std::move(why), "57014"));
}

bool Session::force_close_backend() {
  if (lease_ == nullptr) return false;
  switch (state_) {
    case State::kExecuting:
    case State::kPaused:
    case State::kEnding:
    case State::kAborting:
    case State::kInTx:
      break;
    default:
      return false;
  }
  // The backend answers neither the rollback nor the cancel: close the connection (its
  // server rolls back what was open), and end the session's transaction without it.
  BackendConn* c = lease_;
  lease_ = nullptr;
  c->set_listener(nullptr);
  pool().release(c, false);
  if (state_ == State::kPaused) set_state(State::kExecuting);
  if (state_ == State::kInTx) set_state(State::kAborting);
  Status why(proto::ErrorCategory::kShuttingDown,
             "dbmgrd shut down: the backend did not answer within drain_timeout and its "
             "connection was closed; the transaction was rolled back");
  if (current_ != nullptr) reply_error(why);
  drop_current();
  abort_.reset();
  if (one_shot_ || abandoned_) {
    set_state(State::kIdle);
    maybe_delete();
    return true;
  }
  fail(std::move(why));
  pump();
  return true;
}

// ---- the request queue ----

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
         (state_ == State::kIdle || state_ == State::kInTx || state_ == State::kFailed)) {
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

void Session::drop_current() {
  PendingRequest* r = current_;
  current_ = nullptr;
  if (r != nullptr) server_.free_request(r, conn_);
}

void Session::finish_current() {
  drop_current();
  if (in_pump_) return;  // pump() goes on (or deletes this) when start_current() returns
  if (one_shot_ || abandoned_ || closing_) {
    maybe_delete();
    return;
  }
  pump();
}

void Session::maybe_delete() {
  if (lease_ != nullptr || state_ == State::kLeasing || current_ != nullptr || group_ != nullptr ||
      state_ == State::kAborting || state_ == State::kEnding) {
    return;
  }
  if (conn_ != nullptr) conn_->forget(this);
  while (PendingRequest* r = pop()) {
    // Pipelined behind kClose: the session they name is gone (protocol.md section 8).
    if (conn_ != nullptr) {
      conn_->send_error(r->header.request_id, id_,
                        Status::not_found(fmt::format("session {} is closed", id_)));
    }
    server_.free_request(r, conn_);
  }
  server_.on_session_gone(this);
  delete this;
}

void Session::release(bool reusable) {
  clear_batch();
  if (lease_ == nullptr) return;
  BackendConn* c = lease_;
  lease_ = nullptr;
  c->set_listener(nullptr);
  pool().release(c, reusable);  // the next waiter gets it on a later loop turn
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
  clear_batch();
  set_state(State::kFailed);
  failed_ = std::move(why);
}

// ---- starting requests ----

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
        case State::kIdle:
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
                groupable_ = engine_->driver().groupable_sql(o->sql);
                group_sql_ = o->sql;
                group_params_ = o->params;
              }
            }
          }
          return start_lease();
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
      if (batch_pending()) {
        if (type == T::kCommit && state_ == State::kInTx && batch_next_ == batch_ran_ &&
            current_ == batch_expect_ && current_->header.request_id == batch_commit_rid_) {
          return serve_batched_commit();
        }
        assert(false && "a batch's outcomes were not served in order");
        clear_batch();
      }
      if (state_ == State::kInTx) {
        set_state(State::kEnding);
        lease_->set_listener(this);
        if (type == T::kCommit) lease_->commit(); else lease_->rollback();
        return;
      }
      if (state_ == State::kFailed &&
          (type == T::kCommit ||
           (type == T::kRollback && failed_.category() == proto::ErrorCategory::kKilled))) {
        // A killed session answers every request but kClose with `killed` (protocol.md 8).
        reply_error(failed_);
        return finish_current();
      }
      set_state(State::kIdle);
      reply_ok();
      return finish_current();
    default:
      break;
  }
  reply_error(Status::internal(fmt::format("request {} cannot run in state {}",
                                           proto::to_string(type), state_name())));
  finish_current();
}

void Session::start_lease() {
  set_state(State::kLeasing);
  if (BackendConn* c = pool().try_lease(holder())) {
    lease_ = c;
    tx_started_ = now();
    if (groupable_ && engine_->group_commit()->start(this, c)) return;  // join_group() ran
    if (!batch_solo_ && engine_->group_commit() != nullptr &&
        engine_->group_commit()->start_batches(this, c)) {
      return;  // join_batch_group() ran
    }
    batch_solo_ = false;
    return run_execute(true);
  }
  pool().wait(this);  // on_lease() on a later loop turn
}

void Session::on_lease(BackendConn* conn, Status status) {
  ClientConn* client = conn_;
  server_.guarded("a session's lease", client, [&] { leased(conn, std::move(status)); });
}

void Session::leased(BackendConn* conn, Status status) {
  assert(state_ == State::kLeasing && !abandoned_);
  if (!status.is_ok()) {
    server_.count_error();
    reply_error(status);
    if (one_shot_) set_state(State::kIdle); else fail(failure_for(status));
    return finish_current();
  }
  lease_ = conn;
  tx_started_ = now();
  if (groupable_ && engine_->group_commit()->start(this, conn)) return;  // join_group() ran
  if (!batch_solo_ && engine_->group_commit() != nullptr &&
      engine_->group_commit()->start_batches(this, conn)) {
    return;  // join_batch_group() ran
  }
  batch_solo_ = false;
  run_execute(true);
}

void Session::run_execute(bool begin) {
  if (batch_pending()) {
    if (!begin && state_ == State::kInTx && current_ == batch_expect_ &&
        current_->header.request_id == batch_job_->reqs[batch_next_].request_id) {
      return serve_batched();
    }
    assert(false && "a batch's outcomes were not served in order");
    clear_batch();
  }
  proto::Message msg;
  proto::FrameView frame{current_->header, current_->payload.data()};
  ExecRequest req;
  req.request_id = current_->header.request_id;
  req.session_id = id_;
  if (proto::decode(frame, &msg) != proto::DecodeError::kOk) {
    // Cannot happen (the frame was decoded when it arrived); end cleanly anyway.
    reply_error(Status::internal("a queued request no longer decodes"));
    if (begin) {  // nothing began: give the connection back
      release(true);
      set_state(State::kIdle);
    }
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
    req.begin = !one_shot_ || engine_->one_shot_begins(read_only_, req.sql) ? TxBegin::kBegin
                                                                             : TxBegin::kNone;
  }
  req.read_only = read_only_;
  if (conn_ != nullptr) req.client_label = conn_->label();
  began_tx_ = begin;
  exec_started_ = now();
  set_state(State::kExecuting);
  lease_->set_listener(this);
  if (start_batch(req)) return;
  lease_->execute(req);
}

bool Session::start_batch(const ExecRequest& req) {
  if (!fill_batch(req, false)) return false;
  lease_->execute_batch(std::move(batch_job_));
  return true;
}

bool Session::fill_batch(const ExecRequest& req, bool group) {
  if (one_shot_ || current_->header.type != proto::MsgType::kExecute || head_ == nullptr ||
      (head_->header.type != proto::MsgType::kExecute &&
       head_->header.type != proto::MsgType::kCommit) ||
      !engine_->driver().batches()) {
    return false;
  }
  if (!batch_job_) batch_job_ = std::make_unique<BatchJob>();
  BatchJob& job = *batch_job_;
  // Copy the requests' bytes first (the job owns what it reads), then decode from the copy.
  std::vector<std::uint8_t>& bytes = job.payloads.bytes();
  bytes.clear();
  std::array<std::size_t, BatchJob::kMaxStatements> at{};
  std::array<const PendingRequest*, BatchJob::kMaxStatements> from{};
  std::size_t n = 0;
  const PendingRequest* after = nullptr;  // the first request not taken
  for (const PendingRequest* r = current_;; r = r == current_ ? head_ : r->next) {
    if (r == nullptr || n == BatchJob::kMaxStatements ||
        (r != current_ && r->header.type != proto::MsgType::kExecute)) {
      after = r;
      break;
    }
    at[n] = bytes.size();
    from[n++] = r;
    bytes.insert(bytes.end(), r->payload.data(), r->payload.data() + r->payload.size());
  }
  job.count = 0;
  job.ran = 0;
  job.committed = false;
  for (std::size_t i = 0; i < n; ++i) {
    proto::Message msg;
    proto::FrameView frame{from[i]->header, bytes.data() + at[i]};
    if (proto::decode(frame, &msg) != proto::DecodeError::kOk) break;
    auto* e = std::get_if<proto::Execute>(&msg);
    if (e == nullptr) break;
    if (group && !engine_->driver().batch_groupable_sql(e->sql)) return false;
    ExecRequest& q = job.reqs[i];
    q = req;  // the session's flags; item 0 keeps its begin
    q.request_id = from[i]->header.request_id;
    q.sql = e->sql;
    q.params = e->params;
    if (i > 0) q.begin = TxBegin::kNone;
    q.client_label = {};  // a view into the ClientConn, which may go while the batch runs
    job.count = i + 1;
  }
  // The session's COMMIT right behind the statements travels with them.
  job.commit = job.count == n && after != nullptr && after->header.type == proto::MsgType::kCommit;
  batch_commit_rid_ = job.commit ? after->header.request_id : 0;
  if (group) return job.commit;
  return job.count >= 2 || job.commit;
}

void Session::on_batch_result(BackendResult& r) {
  std::unique_ptr<BatchJob> job = std::move(r.batch);
  if (job) job->payloads.release();  // back to the pool: an idle session keeps no buffer
  const bool committed = job && job->committed;
  if (!job || (job->ran < 2 && !committed)) {  // only the first statement ran: its own result
    if (job) batch_job_ = std::move(job);
    return on_execute_result(r);
  }
  batch_job_ = std::move(job);
  if (committed) {
    // The transaction's fate is decided: an abort asked for meanwhile came too late for the
    // statements, and is acted on with the commit's outcome.
    batch_late_abort_ = std::move(abort_);
    abort_.reset();
  }
  if (batch_job_->ran < 2) {  // one statement and the commit: only the commit waits
    batch_frames_.release();
    batch_ran_ = 1;
    batch_next_ = 1;
    batch_expect_ = head_;
    batch_last_ = std::move(r);
    BackendResult first;
    first.frames = std::move(batch_last_.frames);
    first.in_transaction = true;
    first.statements = batch_last_.statements;
    return on_execute_result(first);
  }
  // The first statement succeeded; the outcomes of the others wait for their turn.
  batch_frames_ = std::move(r.frames);
  batch_ran_ = batch_job_->ran;
  batch_next_ = 1;
  batch_expect_ = head_;
  batch_last_ = std::move(r);
  const std::size_t first_end = batch_job_->frame_ends[0];
  if (first_end > 0) {
    streamed_ = true;
    if (conn_ != nullptr) conn_->send_bytes(batch_frames_.data(), first_end);
  }
  BackendResult first;
  first.in_transaction = true;
  on_execute_result(first);
}

void Session::serve_batched() {
  const std::size_t i = batch_next_++;
  const std::size_t begin = batch_job_->frame_ends[i - 1];
  const std::size_t end = batch_job_->frame_ends[i];
  streamed_ = end > begin;
  if (streamed_ && conn_ != nullptr) conn_->send_bytes(batch_frames_.data() + begin, end - begin);
  began_tx_ = false;
  exec_started_ = now();
  set_state(State::kExecuting);
  BackendResult r;
  if (i + 1 == batch_ran_ && batch_job_->committed) {  // the last one, before its commit
    batch_expect_ = head_;
    r.in_transaction = true;
  } else if (i + 1 == batch_ran_) {  // the last one: the backend's own result
    r = std::move(batch_last_);
    clear_batch();
  } else {
    batch_expect_ = head_;
    r.in_transaction = true;
  }
  on_execute_result(r);
}

void Session::serve_batched_commit() {
  BackendResult r;
  r.status = std::move(batch_job_->commit_status);
  r.broken = batch_job_->commit_broken;
  r.in_transaction = batch_last_.in_transaction;
  std::optional<Status> late = std::move(batch_late_abort_);
  clear_batch();
  server_.count_transaction();
  set_state(State::kEnding);
  if (late) abort_ = std::move(late);
  on_end_result(r);
}

void Session::clear_batch() {
  if (batch_late_abort_ && !abort_) abort_ = std::move(batch_late_abort_);
  batch_late_abort_.reset();
  if (!batch_pending()) return;
  batch_ran_ = 0;
  batch_next_ = 0;
  batch_expect_ = nullptr;
  batch_commit_rid_ = 0;
  batch_frames_.release();
  batch_last_ = BackendResult{};
}

// ---- group commit ----

bool Session::batch_groupable() const {
  if (state_ != State::kLeasing || one_shot_ || read_only_ || batch_solo_ || abandoned_ ||
      closing_ || current_ == nullptr || current_->header.type != proto::MsgType::kExecute ||
      engine_->group_commit() == nullptr || &engine_->pool_for(false) != engine_->group_commit()->pool()) {
    return false;
  }
  // The whole transaction has arrived: statements, then its COMMIT.
  std::size_t n = 1;
  for (const PendingRequest* r = head_; r != nullptr; r = r->next) {
    if (r->header.type == proto::MsgType::kCommit) return true;
    if (r->header.type != proto::MsgType::kExecute || ++n > BatchJob::kMaxStatements) break;
  }
  return false;
}

BatchJob* Session::prepare_group_batch() {
  ExecRequest req;
  req.session_id = id_;
  req.begin = TxBegin::kBegin;
  if (!fill_batch(req, true)) return nullptr;
  return batch_job_.get();
}

void Session::join_batch_group(GroupCommit* g) {
  group_ = g;
  lease_ = nullptr;  // the group holds the writer
  group_cancelled_ = false;
  set_state(State::kGrouped);
  began_tx_ = true;
  tx_started_ = exec_started_ = now();
}

void Session::on_batch_group_result() {
  group_ = nullptr;
  BackendResult r = std::move(batch_job_->group_result);
  r.batch = std::move(batch_job_);
  server_.count_statements(r.statements);
  if (abandoned_) {  // the client is gone: nothing is held, nothing to answer
    batch_job_ = std::move(r.batch);
    batch_job_->payloads.release();
    set_state(State::kIdle);
    return finish_current();  // deletes this session
  }
  set_state(State::kExecuting);
  on_batch_result(r);
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
  set_state(State::kGrouped);
  began_tx_ = true;
  tx_started_ = now();
}

void Session::on_group_result(const GroupItem& it, const std::uint8_t* frames) {
  group_ = nullptr;
  groupable_ = false;
  set_state(State::kIdle);
  server_.count_statements(it.ran ? 1 : 0);
  server_.count_transaction();
  Status why = abort_ ? *abort_ : it.status;
  abort_.reset();
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

// A one-shot or a whole pipelined transaction the group did not run.
void Session::on_group_deferred() {
  group_ = nullptr;
  groupable_ = false;
  if (batch_job_) batch_job_->payloads.release();
  if (abandoned_) {
    set_state(State::kIdle);
    return finish_current();
  }
  if (abort_ || group_cancelled_) {
    Status why = abort_ ? *abort_
                        : Status(proto::ErrorCategory::kCancelled, "statement cancelled", "57014");
    abort_.reset();
    server_.count_error();
    reply_error(why);
    if (one_shot_) set_state(State::kIdle); else fail(failure_for(why));
    return finish_current();
  }
  if (one_shot_) solo_ = true; else batch_solo_ = true;  // it runs alone next
  set_state(State::kLeasing);
  pool().wait_front(this);
}

// ---- backend results ----

void Session::on_backend_result(BackendConn* conn, BackendOp op, BackendResult&& r) {
  ClientConn* client = conn_;
  server_.guarded("a session's backend result", client, [&] { backend_result(conn, op, r); });
}

void Session::backend_result(BackendConn* conn, BackendOp op, BackendResult& r) {
  assert(conn == lease_);
  (void)conn;
  server_.count_statements(r.statements);
  if (op == BackendOp::kCommit || op == BackendOp::kRollback) server_.count_transaction();
  if (abandoned_) {
    // The client is gone: roll back whatever is open (a paused stream too), then release.
    if (op != BackendOp::kRollback && (r.more || (r.in_transaction && !r.broken))) {
      server_.count_rollback_on_disconnect();
      drop_current();
      if (state_ != State::kAborting) set_state(State::kAborting);
      lease_->set_listener(this);
      lease_->rollback();
      return;
    }
    release(!r.broken && !r.in_transaction);
    drop_current();
    if (state_ != State::kIdle) set_state(State::kIdle);
    return maybe_delete();
  }
  switch (state_) {
    case State::kExecuting: return op == BackendOp::kBatch ? on_batch_result(r) : on_execute_result(r);
    case State::kEnding: return on_end_result(r);
    case State::kAborting: return on_abort_result(r);
    default:
      assert(false && "backend result in a state that runs nothing");
      spdlog::error("session {}: a backend result arrived in state {}", id_, state_name());
  }
}

void Session::on_execute_result(BackendResult& r) {
  if (!r.frames.empty()) {
    streamed_ = true;
    if (conn_ != nullptr) conn_->send_frames(std::move(r.frames));
  }
  if (!r.status.is_ok() && r.broken && began_tx_ && !streamed_ && !retried_ && !abort_) {
    // The pooled connection was dead (server restarted, backend terminated) and nothing of
    // this transaction had happened yet: retry once on a fresh connection.
    retried_ = true;
    spdlog::info("{} session {} {}: connection lost before the first statement ({}); retrying "
                 "on a new connection",
                 conn_ != nullptr ? conn_->tag() : std::string("client"), id_, engine_->name(),
                 r.status.message());
    release(false);
    return start_lease();
  }
  if (!r.status.is_ok()) {
    server_.count_error();
    Status why = abort_ ? *abort_ : r.status;
    abort_.reset();
    reply_error(why);
    if (conn_ != nullptr && spdlog::should_log(spdlog::level::debug)) {
      spdlog::debug("{} session {} {}: {}", conn_->tag(), id_, engine_->name(), why.to_string());
    }
    Status failed = failure_for(why);
    if (r.in_transaction && !r.broken) {  // the backend could not roll back by itself
      drop_current();
      return start_abort(std::move(failed));
    }
    release(!r.broken);
    if (one_shot_) {
      server_.count_transaction();
      set_state(State::kIdle);
    } else {
      fail(std::move(failed));
    }
    return finish_current();
  }
  if (r.more) {
    if (abort_) {  // killed or timed out while rows were streaming
      reply_error(*abort_);
      Status why = std::move(*abort_);
      abort_.reset();
      drop_current();
      return start_abort(failure_for(why));
    }
    if (conn_ != nullptr && conn_->backed_up()) {
      set_state(State::kPaused);
      conn_->wait_writable(this);
    } else {
      lease_->resume();
    }
    return;
  }
  // The statement is complete.
  if (abort_) {
    Status why = std::move(*abort_);
    abort_.reset();
    if (r.in_transaction) {
      drop_current();
      return start_abort(failure_for(why));
    }
    // It committed (a one-shot) before the abort could stop it: the client has its result.
    // A kill still ends the session (protocol.md section 8).
    server_.count_transaction();
    release(true);
    if (!one_shot_ && why.category() == proto::ErrorCategory::kKilled) {
      fail(std::move(why));
    } else {
      set_state(State::kIdle);
    }
    return finish_current();
  }
  if (r.in_transaction && one_shot_) {
    // A one-shot is its own transaction; one that left a transaction open (its SQL began
    // one) must not keep the connection: roll it back. (The backends commit what a
    // successful one-shot opened; this is the net under them.)
    spdlog::warn("{} one-shot {}: left a transaction open; rolling it back",
                 conn_ != nullptr ? conn_->tag() : std::string("client"), engine_->name());
    drop_current();
    return start_abort(Status::ok());
  }
  if (r.in_transaction) {
    set_state(State::kInTx);
    idle_since_ = now();
  } else {
    server_.count_transaction();
    release(true);
    set_state(State::kIdle);
  }
  finish_current();
}

void Session::on_end_result(BackendResult& r) {
  // The result is ours (moved to us): returning the connection first is safe, and the next
  // waiter gets it only after this callback has replied.
  release(!r.broken && !r.in_transaction);
  const bool commit = current_ != nullptr && current_->header.type == proto::MsgType::kCommit;
  if (r.status.is_ok()) {
    set_state(State::kIdle);
    reply_ok();
  } else {
    server_.count_error();
    reply_error(r.status);
    if (commit) fail(failure_for(r.status)); else set_state(State::kIdle);
  }
  if (abort_) {  // killed while the commit ran: the session stays failed until acknowledged
    Status why = std::move(*abort_);
    abort_.reset();
    if (state_ != State::kFailed || why.category() == proto::ErrorCategory::kKilled) {
      fail(std::move(why));
    }
  }
  finish_current();
}

void Session::start_abort(Status why) {
  clear_batch();
  aborting_why_ = std::move(why);
  set_state(State::kAborting);
  if (lease_ == nullptr) {
    // A member of a group commit holds no connection: the group has already rolled its
    // transaction back to its savepoint. End it as a finished rollback would.
    BackendResult done;
    return on_abort_result(done);
  }
  lease_->set_listener(this);
  lease_->rollback();
}

void Session::on_abort_result(BackendResult& r) {
  release(!r.broken && !r.in_transaction);
  if (one_shot_) {
    set_state(State::kIdle);
    return maybe_delete();
  }
  fail(std::move(aborting_why_));  // stays failed until the client acknowledges
  if (current_ != nullptr) return finish_current();
  pump();
}

// ---- events from outside ----

void Session::resume_stream() {
  if (state_ != State::kPaused) return;
  if (abort_) {
    reply_error(*abort_);
    Status why = std::move(*abort_);
    abort_.reset();
    drop_current();
    return start_abort(failure_for(why));
  }
  set_state(State::kExecuting);
  lease_->resume();
}

void Session::cancel() {
  switch (state_) {
    case State::kGrouped:
      group_cancelled_ = true;
      group_->cancel(this);
      return;
    case State::kExecuting:
      lease_->cancel();
      return;
    case State::kPaused:  // rows wait for the client: the statement ends here, rolled back
      abort_ = Status(proto::ErrorCategory::kCancelled, "statement cancelled", "57014");
      return resume_stream();
    case State::kLeasing: {  // waiting for a connection counts (protocol.md section 9)
      pool().cancel_wait(this);
      Status why(proto::ErrorCategory::kCancelled,
                 "statement cancelled while waiting for a connection", "57014");
      reply_error(why);
      if (one_shot_) set_state(State::kIdle); else fail(failure_for(why));
      return finish_current();
    }
    default:
      return;
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
      pool().cancel_wait(this);
      release(true);  // a lease taken but not yet used (an exception cut the start short)
      set_state(State::kIdle);
      drop_current();
      return maybe_delete();
    case State::kInTx:
    case State::kPaused:
      server_.count_rollback_on_disconnect();
      drop_current();
      set_state(State::kAborting);
      lease_->set_listener(this);
      lease_->rollback();
      return;
    case State::kGrouped:
      group_->cancel(this);
      return;
    case State::kExecuting:
      lease_->cancel();
      return;
    case State::kEnding:
    case State::kAborting:
      return;  // its result arrives, then the session goes
  }
}

void Session::abort_transaction(Status why) {
  switch (state_) {
    case State::kIdle:
    case State::kFailed:
      if (why.category() == proto::ErrorCategory::kKilled) {
        if (one_shot_) return;
        fail(std::move(why));
      }
      return;
    case State::kLeasing:
      pool().cancel_wait(this);
      reply_error(why);
      if (one_shot_) set_state(State::kIdle); else fail(std::move(why));
      return finish_current();
    case State::kInTx:
      return start_abort(failure_for(why));
    case State::kExecuting:
      if (abort_) return;  // asked already (the drain deadline repeats every tick)
      abort_ = std::move(why);
      lease_->cancel();
      return;
    case State::kPaused:
      abort_ = std::move(why);
      return resume_stream();
    case State::kGrouped:
      if (abort_) return;
      abort_ = std::move(why);
      group_->cancel(this);
      return;
    case State::kEnding:
      abort_ = std::move(why);
      return;
    case State::kAborting:
      if (why.category() == proto::ErrorCategory::kKilled) aborting_why_ = std::move(why);
      return;
  }
}

void Session::check_idle(Clock::time_point t) {
  if (state_ != State::kInTx) return;
  auto limit = engine_->config().pool.idle_in_transaction_timeout;
  if (limit.count() <= 0 || t - idle_since_ < limit) return;
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
