// dbmgr::Session: one transaction handle over a borrowed daemon connection.
#include "dbmgr/session.hpp"

#include <cstdio>
#include <exception>
#include <utility>

#include "connection.hpp"
#include "manager_core.hpp"

namespace dbmgr {

using detail::Connection;
using detail::Expect;

Session::Session() noexcept = default;

Session::Session(std::shared_ptr<detail::ManagerCore> core, std::string database,
                 std::string prefix, Access access)
    : core_(std::move(core)),
      database_(std::move(database)),
      prefix_(std::move(prefix)),
      access_(access),
      state_(State::kIdle) {}

Session::Session(Session&& other) noexcept
    : core_(std::move(other.core_)),
      conn_(std::move(other.conn_)),
      database_(std::move(other.database_)),
      prefix_(std::move(other.prefix_)),
      access_(other.access_),
      state_(std::exchange(other.state_, State::kClosed)),
      failure_(std::move(other.failure_)) {}

Session& Session::operator=(Session&& other) noexcept {
  if (this != &other) {
    close();
    core_ = std::move(other.core_);
    conn_ = std::move(other.conn_);
    database_ = std::move(other.database_);
    prefix_ = std::move(other.prefix_);
    access_ = other.access_;
    state_ = std::exchange(other.state_, State::kClosed);
    failure_ = std::move(other.failure_);
  }
  return *this;
}

Session::~Session() { close(); }

Result Session::execute(std::string_view sql, std::initializer_list<Param> params) {
  return execute(sql, params.begin(), params.size());
}

Result Session::execute(std::string_view sql, const std::vector<Param>& params) {
  return execute(sql, params.data(), params.size());
}

void Session::detect_fork() {
  if (conn_ && !conn_->owned_by_this_process()) {
    conn_->abandon();
    conn_.reset();
    if (state_ == State::kInTransaction || state_ == State::kFailed) {
      state_ = State::kBroken;
      failure_ =
          "the transaction belongs to the parent process (the session was used after fork())";
    }
  }
}

Error Session::broken_error() const {
  if (state_ == State::kFailed) {
    return Error::client(ErrorCategory::kInvalidRequest,
                         "the transaction failed and the daemon rolled it back (" + failure_ +
                             "); call rollback() before using the session again");
  }
  return Error::client(ErrorCategory::kConnection,
                       "the transaction was lost (" + failure_ +
                           "); call rollback() before using the session again");
}

void Session::check_usable() {
  detect_fork();
  switch (state_) {
    case State::kClosed:
      throw Error::client(ErrorCategory::kInvalidRequest, "the session is closed");
    case State::kFailed:
    case State::kBroken:
      throw broken_error();
    case State::kIdle:
    case State::kInTransaction:
      break;
  }
}

void Session::acquire_connection(bool* fresh, bool after_dead_send) {
  if (conn_ && conn_->broken()) conn_.reset();
  if (conn_) {
    *fresh = false;
    return;
  }
  conn_ = core_->acquire(fresh, after_dead_send);
}

void Session::release_connection() noexcept {
  if (conn_ && core_) core_->release(std::move(conn_));
  conn_.reset();
}

void Session::drop_connection() noexcept { conn_.reset(); }

void Session::forget_inherited_connection() noexcept {
  if (conn_ && !conn_->owned_by_this_process()) {
    conn_->abandon();
    conn_.reset();
    if (state_ != State::kClosed) state_ = State::kIdle;
    failure_.clear();
  }
}

Result Session::execute(std::string_view sql, const Param* params, std::size_t count) {
  check_usable();
  const std::uint32_t flags = access_ == Access::kReadOnly ? proto::kOpenReadOnly : 0;
  Result result;
  for (int attempt = 0;; ++attempt) {
    bool fresh = false;
    acquire_connection(&fresh, attempt > 0);
    Connection& c = *conn_;
    c.begin_batch();
    const std::vector<proto::Value>& values = c.values(params, count);

    // Pipeline: [kClose old] [kOpen new] kExecute, written with one send().
    const bool opening = !c.session_matches(database_, prefix_, flags);
    const std::uint32_t old_session = c.session_id_;
    std::size_t open_i = Connection::kMaxPending;
    if (opening) {
      if (c.session_id_ != 0) {
        std::uint32_t rid = c.next_request_id();
        c.encoder().empty(proto::MsgType::kClose, rid, c.session_id_);
        c.expect(rid, Expect::kOk);
      }
      std::uint32_t sid = c.new_session_id();
      std::uint32_t rid = c.next_request_id();
      std::size_t start = c.output_size();
      proto::Open open;
      open.database = database_;
      open.prefix = prefix_;
      open.flags = flags;
      c.encoder().open(rid, sid, open);
      c.check_frame_size(start);
      open_i = c.expect(rid, Expect::kOk);
      c.session_id_ = sid;
      c.session_dead_ = false;
    }
    std::uint32_t rid = c.next_request_id();
    std::size_t start = c.output_size();
    c.encoder().execute(rid, c.session_id_, sql, values.data(), values.size());
    try {
      c.check_frame_size(start);
    } catch (...) {
      c.session_id_ = old_session;  // nothing was sent
      throw;
    }
    const std::size_t exec_i = c.expect(rid, Expect::kResult, &result);
    if (opening) {
      c.session_database_ = database_;
      c.session_prefix_ = prefix_;
      c.session_flags_ = flags;
    }

    try {
      c.round_trip();
    } catch (const Error& e) {
      // Resending is safe only when the daemon received nothing and no transaction of ours
      // was open on the lost socket (a pooled socket whose daemon restarted).
      const bool retry =
          attempt == 0 && !fresh && state_ == State::kIdle && c.failed_before_sending();
      drop_connection();
      if (retry) continue;
      if (state_ == State::kInTransaction) {
        state_ = State::kBroken;
        failure_ = e.what();
      }
      throw;
    }

    if (open_i != Connection::kMaxPending && c.pending(open_i).error) {
      c.session_id_ = 0;  // not opened; nothing began (a kClose sent before it was answered)
      throw *c.pending(open_i).error;
    }
    const detail::Pending& p = c.pending(exec_i);
    if (p.error) {
      const Error& e = *p.error;
      if (e.category() == ErrorCategory::kNotFound || e.category() == ErrorCategory::kKilled) {
        // The daemon-side session is gone (killed by an operator, or unknown): the next
        // statement closes it and opens a new one.
        c.session_dead_ = true;
        if (state_ == State::kIdle && !opening && attempt == 0) {
          continue;  // it held no transaction of ours: reopen and run the statement
        }
      }
      state_ = State::kFailed;
      failure_ = e.what();
      throw e;
    }
    state_ = p.in_transaction ? State::kInTransaction : State::kIdle;
    return result;
  }
}

void Session::commit() {
  check_usable();
  if (state_ != State::kInTransaction) return;  // nothing to commit
  if (!conn_) {
    state_ = State::kBroken;
    failure_ = "no connection";
    throw broken_error();
  }
  Connection& c = *conn_;
  c.begin_batch();
  std::uint32_t rid = c.next_request_id();
  c.encoder().empty(proto::MsgType::kCommit, rid, c.session_id_);
  std::size_t i = c.expect(rid, Expect::kOk);
  try {
    c.round_trip();
  } catch (const Error& e) {
    drop_connection();
    state_ = State::kBroken;
    failure_ = e.what();
    throw Error::client(ErrorCategory::kConnection,
                        "the connection broke during COMMIT, so whether the transaction was "
                        "committed is unknown: " +
                            e.message());
  }
  if (c.pending(i).error) {
    state_ = State::kFailed;
    failure_ = c.pending(i).error->what();
    throw *c.pending(i).error;
  }
  state_ = State::kIdle;
}

void Session::rollback() {
  detect_fork();
  switch (state_) {
    case State::kClosed:
    case State::kIdle:
      return;
    case State::kBroken:
      // The daemon rolled back when it saw the socket close; nothing to send.
      state_ = State::kIdle;
      failure_.clear();
      return;
    case State::kInTransaction:
    case State::kFailed:
      break;
  }
  state_ = State::kIdle;
  failure_.clear();
  // No daemon session (or a killed one) holds anything to roll back.
  if (!conn_ || conn_->session_id_ == 0 || conn_->session_dead_) return;
  Connection& c = *conn_;
  c.begin_batch();
  std::uint32_t rid = c.next_request_id();
  c.encoder().empty(proto::MsgType::kRollback, rid, c.session_id_);
  std::size_t i = c.expect(rid, Expect::kOk);
  try {
    c.round_trip();
  } catch (const Error&) {
    drop_connection();  // the daemon rolls back whatever the closed socket had open
    return;
  }
  if (c.pending(i).error) {
    Error e = *c.pending(i).error;
    if (e.category() == ErrorCategory::kNotFound || e.category() == ErrorCategory::kKilled) {
      c.session_dead_ = true;  // nothing left to roll back; reopened by the next statement
      return;
    }
    drop_connection();  // do not hand a daemon session in an unknown state to anyone
    throw e;
  }
}

void Session::rollback_noexcept() noexcept {
  try {
    rollback();
  } catch (...) {
  }
}

void Session::close() noexcept {
  if (state_ == State::kClosed) {
    drop_connection();
    return;
  }
  rollback_noexcept();
  if (state_ == State::kIdle) {
    release_connection();
  } else {
    drop_connection();
  }
  state_ = State::kClosed;
  core_.reset();
}

ScopedSession::~ScopedSession() {
  if (!is_open()) return;
  if (auto_commit_ && std::uncaught_exceptions() <= uncaught_at_start_ &&
      (in_transaction() || failed())) {
    try {
      commit();
    } catch (const std::exception& e) {
      std::fprintf(stderr,
                   "dbmgr: the commit at the end of a get_db() scope failed and the transaction "
                   "was rolled back: %s (call commit() inside the scope to handle this error)\n",
                   e.what());
    }
  }
  // ~Session closes: rolls back whatever is still open.
}

}  // namespace dbmgr
