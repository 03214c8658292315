// An in-process fake backend for unit tests of the pool, sessions and the daemon's state
// machines: no database, no threads, no timing. Every operation a FakeConn is asked to run
// is recorded and stays in flight until the test completes it (finish_next(), finish()), so
// a test decides the order of events exactly. This is NOT a database: what the backend does
// with SQL is proven against real servers by the integration tests.
//
// The fake also checks the completion contract from the other side: it records, for every
// operation started, whether it was started from inside another completion callback of the
// same connection, and whether a completion was delivered while a call into the pool or a
// session was in progress (FakeBackend::reentered).
#pragma once

#include <algorithm>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.hpp"
#include "pool.hpp"

namespace dbmgr::daemon::test {

class FakeBackend;

class FakeConn final : public BackendConn {
 public:
  FakeConn(FakeBackend& b, int id) : backend_(b), id_(id) {}
  ~FakeConn() override;
  int id() const { return id_; }
  bool needs_ping() const override { return needs_ping_; }
  bool needs_reset() const override { return dirty_; }
  std::int64_t backend_id() const override { return 1000 + id_; }
  Clock::duration idle_limit() const override { return idle_limit_; }

  bool needs_ping_ = true;
  Clock::duration idle_limit_{};  // the server's idle limit (MariaDB wait_timeout)
  bool dirty_ = false;         // needs_reset(): the test sets it, reset() clears it
  bool in_transaction_ = false;
  int cancels_ = 0;
  // How the COMMIT of a batch that carries one ends (finish_batch()).
  Status commit_outcome_ = Status::ok();

  // Completes the operation in flight with `r` (as a driver would on a later loop turn). A
  // batch (BatchJob) completes as if every statement had ended like `r`.
  void finish(BackendResult r);
  // Completes the batch in flight: statement i ends like outcomes[i] (the last outcome repeats
  // for the statements after it), and the batch stops where BatchJob says a driver stops.
  void finish_batch(const std::vector<BackendResult>& outcomes);
  template <typename... R>
  void finish_batch_with(R&&... outcomes) {
    std::vector<BackendResult> v;
    (v.push_back(std::move(outcomes)), ...);
    finish_batch(v);
  }
  // The statements of the batch in flight (empty when none).
  std::vector<std::string> batch_sql() const;
  BackendOp current_op() const { return op_; }
  std::string last_sql() const { return sql_; }
  bool read_only() const { return read_only_; }

 protected:
  void do_open() override { started(BackendOp::kOpen); }
  void do_execute(const ExecRequest& req) override { take(req, BackendOp::kExecute); }
  void do_batch(std::unique_ptr<BatchJob> job) override {
    batch_ = std::move(job);
    take(batch_->reqs[0], BackendOp::kBatch);
  }
  void do_resume() override { started(BackendOp::kExecute); }
  void do_commit() override { started(BackendOp::kCommit); }
  void do_rollback() override { started(BackendOp::kRollback); }
  void do_ping() override { started(BackendOp::kPing); }
  void do_reset() override { started(BackendOp::kReset); }
  void do_cancel() override { ++cancels_; }
  void do_close() override;

 private:
  void take(const ExecRequest& req, BackendOp op) {
    sql_.assign(req.sql);
    request_id_ = req.request_id;
    session_id_ = req.session_id;
    read_only_ = req.read_only;
    if (req.begin != TxBegin::kNone) in_transaction_ = true;
    started(op);
  }
  void started(BackendOp op);
  FakeBackend& backend_;
  int id_;
  BackendOp op_ = BackendOp::kOpen;
  std::string sql_;
  bool read_only_ = false;
  std::uint32_t request_id_ = 0;
  std::uint32_t session_id_ = 0;
  std::unique_ptr<BatchJob> batch_;
};

struct StartedOp {
  FakeConn* conn;
  BackendOp op;
  std::string sql;
};

class FakeBackend {
 public:
  ~FakeBackend();
  Pool::Factory factory() {
    return [this] {
      auto* c = new FakeConn(*this, next_id_++);
      alive_.push_back(c);
      return c;
    };
  }
  // Operations started and not completed yet, oldest first.
  std::deque<StartedOp> in_flight;
  std::vector<StartedOp> history;
  std::vector<FakeConn*> alive_;
  int closed = 0;
  int next_id_ = 1;
  // The number of completions delivered so far; a completion delivered from inside another
  // one of the same connection would show up as depth > 1.
  int completing = 0;
  int max_depth = 0;

  bool has(BackendOp op) const;
  // Completes the oldest operation in flight (of `op` if given) with `r`.
  FakeConn* finish_next(BackendResult r = {});
  FakeConn* finish_next(BackendOp op, BackendResult r = {});
  static BackendResult ok(bool in_tx = false) {
    BackendResult r;
    r.in_transaction = in_tx;
    return r;
  }
  static BackendResult error(proto::ErrorCategory c, std::string msg, std::string state = {},
                             bool in_tx = false) {
    BackendResult r;
    r.status = Status(c, std::move(msg), std::move(state));
    r.in_transaction = in_tx;
    return r;
  }
  void on_started(FakeConn* c, BackendOp op, const std::string& sql) {
    in_flight.push_back({c, op, sql});
    history.push_back({c, op, sql});
  }
  void on_closed(FakeConn* c);
};

inline FakeConn::~FakeConn() = default;

inline void FakeConn::started(BackendOp op) {
  op_ = op;
  backend_.on_started(this, op,
                      op == BackendOp::kExecute || op == BackendOp::kBatch ? sql_ : std::string());
}

// The fields of a result a test sets (not its frames).
inline BackendResult outcome_like(const BackendResult& r) {
  BackendResult o;
  o.status = r.status;
  o.more = r.more;
  o.in_transaction = r.in_transaction;
  o.broken = r.broken;
  return o;
}

inline std::vector<std::string> FakeConn::batch_sql() const {
  std::vector<std::string> v;
  if (op_ == BackendOp::kBatch && batch_) {
    for (std::size_t i = 0; i < batch_->count; ++i) v.emplace_back(batch_->reqs[i].sql);
  }
  return v;
}

inline void FakeConn::finish_batch(const std::vector<BackendResult>& outcomes) {
  std::unique_ptr<BatchJob> job = std::move(batch_);
  BackendResult last;
  Buffer frames;
  job->ran = 0;
  for (std::size_t i = 0; i < job->count; ++i) {
    const BackendResult& o = outcomes[std::min(i, outcomes.size() - 1)];
    job->ran = i + 1;
    if (o.status.is_ok() && !o.more) {
      proto::Encoder enc(frames.bytes());
      proto::Complete done;
      done.affected_rows = 1;
      done.in_transaction = o.in_transaction;
      enc.complete(job->reqs[i].request_id, job->reqs[i].session_id, done);
    }
    job->frame_ends[i] = frames.size();
    request_id_ = job->reqs[i].request_id;  // a resume() streams this one's rows
    last = outcome_like(o);
    if (!o.status.is_ok() || o.more || !o.in_transaction) break;
  }
  if (!last.status.is_ok()) in_transaction_ = last.in_transaction;
  if (job->commit && job->ran == job->count && last.status.is_ok() && !last.more &&
      last.in_transaction) {
    job->committed = true;
    job->commit_status = commit_outcome_;
    in_transaction_ = false;
    last.in_transaction = false;  // committed, or rolled back by the failed COMMIT
  }
  last.frames = std::move(frames);
  last.statements = job->ran;
  last.batch = std::move(job);
  FakeBackend& b = backend_;
  ++b.completing;
  b.max_depth = std::max(b.max_depth, b.completing);
  complete(BackendOp::kBatch, std::move(last));
  --b.completing;
}

inline void FakeConn::finish(BackendResult r) {
  if (op_ == BackendOp::kBatch) {
    std::vector<BackendResult> all;
    all.push_back(std::move(r));
    return finish_batch(all);
  }
  if (op_ == BackendOp::kCommit || op_ == BackendOp::kRollback || op_ == BackendOp::kReset) {
    in_transaction_ = false;
    if (op_ == BackendOp::kReset) dirty_ = false;
  }
  if (op_ == BackendOp::kExecute && !r.status.is_ok()) in_transaction_ = r.in_transaction;
  if (op_ == BackendOp::kExecute && r.status.is_ok() && !r.more && r.frames.empty()) {
    // What a driver sends at the end of a statement: kComplete.
    proto::Encoder enc(r.frames.bytes());
    proto::Complete done;
    done.affected_rows = 1;
    done.in_transaction = r.in_transaction;
    enc.complete(request_id_, session_id_, done);
  }
  FakeBackend& b = backend_;  // the listener may close (delete) this connection
  ++b.completing;
  b.max_depth = std::max(b.max_depth, b.completing);
  complete(op_, std::move(r));
  --b.completing;
}

inline void FakeConn::do_close() { backend_.on_closed(this); }

inline void FakeBackend::on_closed(FakeConn* c) {
  ++closed;
  for (auto it = in_flight.begin(); it != in_flight.end();) {
    if (it->conn == c) it = in_flight.erase(it); else ++it;
  }
  for (auto it = alive_.begin(); it != alive_.end(); ++it) {
    if (*it == c) {
      alive_.erase(it);
      break;
    }
  }
  delete c;
}

inline FakeBackend::~FakeBackend() {
  for (FakeConn* c : alive_) delete c;
}

inline bool FakeBackend::has(BackendOp op) const {
  for (auto& o : in_flight) {
    if (o.op == op) return true;
  }
  return false;
}

inline FakeConn* FakeBackend::finish_next(BackendResult r) {
  if (in_flight.empty()) return nullptr;
  StartedOp o = in_flight.front();
  in_flight.pop_front();
  o.conn->finish(std::move(r));
  return o.conn;
}

inline FakeConn* FakeBackend::finish_next(BackendOp op, BackendResult r) {
  for (auto it = in_flight.begin(); it != in_flight.end(); ++it) {
    if (it->op != op) continue;
    StartedOp o = *it;
    in_flight.erase(it);
    o.conn->finish(std::move(r));
    return o.conn;
  }
  return nullptr;
}

}  // namespace dbmgr::daemon::test
