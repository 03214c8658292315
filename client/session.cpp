// dbmgr::Session: one transaction handle over a borrowed daemon connection.
#include "dbmgr/session.hpp"

#include <cstdio>
#include <exception>
#include <optional>
#include <utility>

#include "connection.hpp"
#include "manager_core.hpp"

namespace dbmgr {

using detail::Connection;
using State = detail::SessionState;

Session::Session() noexcept = default;

Session::Session(std::shared_ptr<detail::ManagerCore> core, std::string database,
                 std::string prefix, Access access)
    : core_(std::move(core)), txn_(std::move(database), std::move(prefix), access) {}

Session::Session(Session&& other) noexcept
    : core_(std::move(other.core_)),
      conn_(std::move(other.conn_)),
      txn_(std::exchange(other.txn_, detail::SessionCore())) {}

Session& Session::operator=(Session&& other) noexcept {
  if (this != &other) {
    close();
    core_ = std::move(other.core_);
    conn_ = std::move(other.conn_);
    txn_ = std::exchange(other.txn_, detail::SessionCore());
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
    if (txn_.state() == State::kInTransaction || txn_.state() == State::kFailed) {
      txn_.set_broken(
          "the transaction belongs to the parent process (the session was used after fork())");
    }
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
    if (txn_.state() != State::kClosed) txn_.set_state(State::kIdle);
    txn_.clear_failure();
  }
}

template <typename Send, typename Replies, typename Lost>
void Session::exchange(Send&& send, Replies&& replies, Lost&& lost) {
  for (int attempt = 0;; ++attempt) {
    bool fresh = false;
    acquire_connection(&fresh, attempt > 0);
    Connection& c = *conn_;
    c.begin_batch();
    send(c);
    try {
      c.round_trip();
    } catch (const Error& e) {
      // Resending is safe only when the daemon received nothing and no transaction of ours
      // was open on the lost socket (a pooled socket whose daemon restarted).
      const bool retry =
          attempt == 0 && !fresh && txn_.state() == State::kIdle && c.failed_before_sending();
      drop_connection();
      if (retry) continue;
      throw lost(e);
    }
    bool retry = false;
    std::optional<Error> error = replies(c, attempt == 0, &retry);
    if (retry) continue;
    if (error) throw *error;
    return;
  }
}

Result Session::execute(std::string_view sql, const Param* params, std::size_t count) {
  detect_fork();
  txn_.check_usable();
  Result result;
  detail::ExecuteRequests req;
  exchange(
      [&](Connection& c) {
        req = detail::ExecuteRequests();
        txn_.send_execute(c, c.daemon_session_, req, sql, params, count, &result);
      },
      [&](Connection& c, bool may_retry, bool* retry) {
        return txn_.on_execute_replies(req, c.daemon_session_, may_retry, retry);
      },
      [&](const Error& e) {
        txn_.on_execute_lost(e);
        return e;
      });
  return result;
}

// ---------------------------------------------------------------- Pipeline

Pipeline& Pipeline::add(std::string_view sql, std::initializer_list<Param> params) {
  return add(sql, params.begin(), params.size());
}

Pipeline& Pipeline::add(std::string_view sql, const std::vector<Param>& params) {
  return add(sql, params.data(), params.size());
}

Pipeline& Pipeline::add(std::string_view sql, const Param* params, std::size_t count) {
  thread_local std::vector<proto::Value> values;
  detail::Outbox::to_values(params, count, values);  // throws before anything is queued
  const std::size_t start = frames_.size();
  proto::Encoder enc(frames_);
  enc.execute(0, 0, sql, values.data(), values.size());  // ids set when sent
  starts_.push_back(start);
  return *this;
}

void Pipeline::clear() noexcept {
  frames_.clear();
  starts_.clear();
}

std::vector<Result> Pipeline::commit() { return run(true); }

std::vector<Result> Pipeline::execute() { return run(false); }

std::vector<Result> Pipeline::run(bool commit) {
  Session& s = *session_;
  s.detect_fork();
  s.txn_.check_usable();
  if (starts_.empty()) {
    if (commit) s.commit();
    return {};
  }
  std::vector<Result> results(starts_.size());
  detail::PipelineRequests req;
  struct Clear {  // the statements are used up, whatever the outcome
    Pipeline* p;
    ~Clear() { p->clear(); }
  } clear_at_end{this};
  s.exchange(
      [&](Connection& c) {
        req = detail::PipelineRequests();
        s.txn_.send_pipeline(c, c.daemon_session_, req, frames_, starts_, results.data(),
                             commit);
      },
      [&](Connection& c, bool may_retry, bool* retry) {
        return s.txn_.on_pipeline_replies(req, c.daemon_session_, frames_, starts_, may_retry,
                                          retry);
      },
      [&](const Error& e) {
        if (commit) return s.txn_.on_commit_lost(e);
        s.txn_.on_execute_lost(e);
        return e;
      });
  return results;
}

void Session::commit() {
  detect_fork();
  txn_.check_usable();
  if (!txn_.needs_commit()) return;  // nothing to commit
  if (!conn_) {
    txn_.set_broken("no connection");
    throw txn_.broken_error();
  }
  Connection& c = *conn_;
  c.begin_batch();
  detail::Pending p;
  txn_.send_commit(c, c.daemon_session_, p);
  try {
    c.round_trip();
  } catch (const Error& e) {
    drop_connection();
    throw txn_.on_commit_lost(e);
  }
  if (std::optional<Error> error = txn_.on_commit_reply(p)) throw *error;
}

void Session::rollback() {
  detect_fork();
  if (!txn_.begin_rollback(conn_ ? &conn_->daemon_session_ : nullptr)) return;
  Connection& c = *conn_;
  c.begin_batch();
  detail::Pending p;
  txn_.send_rollback(c, c.daemon_session_, p);
  try {
    c.round_trip();
  } catch (const Error&) {
    drop_connection();  // the daemon rolls back whatever the closed socket had open
    return;
  }
  if (std::optional<Error> error = txn_.on_rollback_reply(p, c.daemon_session_)) {
    drop_connection();  // do not hand a daemon session in an unknown state to anyone
    throw *error;
  }
}

void Session::rollback_noexcept() noexcept {
  try {
    rollback();
  } catch (...) {
  }
}

void Session::close() noexcept {
  if (txn_.state() == State::kClosed) {
    drop_connection();
    return;
  }
  rollback_noexcept();
  if (txn_.state() == State::kIdle) {
    release_connection();
  } else {
    drop_connection();
  }
  txn_.set_state(State::kClosed);
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
