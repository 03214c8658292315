// GroupCommit: queued one-shot SQLite writes in one transaction, a SAVEPOINT each.
#include "group_commit.hpp"

#include <cassert>

#include <spdlog/spdlog.h>

#include "guard.hpp"
#include "session.hpp"

namespace dbmgr::daemon {

void GroupCommit::add(Session* s) {
  GroupItem& it = items_[count_];
  it.cancel.store(false, std::memory_order_relaxed);
  it.status = Status::ok();
  it.frames_begin = it.frames_end = 0;
  it.deferred = false;
  it.final = false;
  it.ran = false;
  s->join_group(this, it);
  members_[count_] = s;
  ++count_;
}

bool GroupCommit::start(Session* leader, BackendConn* conn) {
  if (count_ != 0 || !leader->groupable()) return false;
  PoolWaiter* w = pool_.front_waiter();
  if (w == nullptr || !w->groupable()) return false;  // alone: no company waits
  std::size_t bytes = leader->group_bytes();
  add(leader);
  while (count_ < kMaxStatements && (w = pool_.front_waiter()) != nullptr && w->groupable()) {
    auto* s = static_cast<Session*>(w);  // only a Session is groupable()
    if (bytes + s->group_bytes() > kMaxBytes) break;
    bytes += s->group_bytes();
    pool_.take_waiter(w);
    add(s);
  }
  job_.items = items_.data();
  job_.count = count_;
  pool_.set_holder(conn, LeaseHolder{0, 0, "group commit"});
  conn->set_listener(this);
  conn->execute_group(&job_);  // the driver offers group commit (Driver::group_commit())
  return true;
}

bool GroupCommit::start_batches(Session* leader, BackendConn* conn) {
  if (count_ != 0 || !leader->batch_groupable()) return false;
  PoolWaiter* w = pool_.front_waiter();
  if (w == nullptr || !w->batch_groupable()) return false;  // alone: no company waits
  // Prepare every member's job before any joins: one that cannot be grouped (its SQL) ends
  // the run there, and if nobody could keep the leader company it runs alone as usual.
  std::array<Session*, kMaxBatches> sessions{};
  std::array<BatchJob*, kMaxBatches> jobs{};
  std::size_t n = 0;
  BatchJob* j = leader->prepare_group_batch();
  if (j == nullptr) return false;
  std::size_t bytes = j->payloads.size();
  sessions[n] = leader;
  jobs[n++] = j;
  for (w = pool_.front_waiter(); n < kMaxBatches && w != nullptr && w->batch_groupable();
       w = pool_.front_waiter()) {
    auto* s = static_cast<Session*>(w);  // only a Session is batch_groupable()
    j = s->prepare_group_batch();
    if (j == nullptr || bytes + j->payloads.size() > kMaxBytes) break;
    bytes += j->payloads.size();
    pool_.take_waiter(w);
    sessions[n] = s;
    jobs[n++] = j;
  }
  if (n < 2) return false;  // the waiter's SQL cannot be grouped; it was not taken
  batch_mode_ = true;
  for (std::size_t i = 0; i < n; ++i) {
    jobs[i]->cancel.store(false, std::memory_order_relaxed);
    jobs[i]->deferred = false;
    sessions[i]->join_batch_group(this);
    members_[i] = sessions[i];
    batches_[i] = jobs[i];
  }
  count_ = n;
  job_.items = nullptr;
  job_.batches = batches_.data();
  job_.count = n;
  pool_.set_holder(conn, LeaseHolder{0, 0, "group commit"});
  conn->set_listener(this);
  conn->execute_group(&job_);
  return true;
}

void GroupCommit::cancel(const Session* s) {
  for (std::size_t i = 0; i < count_; ++i) {
    if (members_[i] != s) continue;
    if (batch_mode_) {
      batches_[i]->cancel.store(true, std::memory_order_relaxed);
    } else {
      items_[i].cancel.store(true, std::memory_order_relaxed);
    }
  }
}

GroupCommit::~GroupCommit() {
  ready_.cancel(&served_);
  assert(done_count_ == 0 && "a group's members were never answered");
}

void GroupCommit::serve_done() {
  std::array<Session*, kMaxBatches> members = done_;
  const std::size_t n = done_count_;
  done_count_ = 0;
  done_.fill(nullptr);
  for (std::size_t i = 0; i < n; ++i) {
    // One member's exception must not keep the others from their answers.
    Session* s = members[i];
    guard_callback("a group commit's answer", [s] { s->on_batch_group_result(); });
  }
}

void GroupCommit::on_batches_result(BackendConn* conn, BackendResult& r) {
  if (done_count_ > 0) {  // the last group's answers are still queued (not expected)
    ready_.cancel(&served_);
    serve_done();
  }
  const std::size_t n = count_;
  if (!r.status.is_ok()) {
    // The job itself failed (an exception in the driver: the connection is broken, what it
    // did is unknown): every batch not deferred fails at its first statement with that error.
    for (std::size_t i = 0; i < n; ++i) {
      BatchJob& b = *batches_[i];
      if (b.deferred) continue;
      b.ran = 1;
      b.committed = false;
      b.group_result = BackendResult{};
      b.group_result.status = r.status;
      b.group_result.broken = r.broken;
    }
  }
  std::array<Session*, kMaxBatches> members{};
  std::array<bool, kMaxBatches> deferred{};
  std::uint64_t ok = 0;
  for (std::size_t i = 0; i < n; ++i) {
    members[i] = members_[i];
    deferred[i] = batches_[i]->deferred;
    ok += batches_[i]->committed && batches_[i]->commit_status.is_ok() ? 1 : 0;
  }
  if (ok > 0) {
    ++batch_commits_;
    batch_transactions_ += ok;
  }
  if (job_.restarts > 0) {
    spdlog::debug("group commit of {} transactions: {} error(s) rolled back the whole "
                  "transaction; the others ran again",
                  n, job_.restarts);
  }
  // The members below must not be cancelled through us any more; their jobs are theirs
  // again (a member may delete itself, and its job, in its callback).
  count_ = 0;
  batch_mode_ = false;
  members_.fill(nullptr);
  batches_.fill(nullptr);
  job_.batches = nullptr;
  // Deferred members go back first in line, in their order, to run alone next.
  for (std::size_t i = n; i-- > 0;) {
    if (deferred[i]) {
      ++deferred_;
      Session* m = members[i];
      guard_callback("a group commit's deferral", [m] { m->on_group_deferred(); });
    }
  }
  // The writer is released before the members are answered: its grant (the next group, or
  // whoever waits) is posted first, so the worker runs the next transactions while the loop
  // sends these replies. The members hold nothing meanwhile (kGrouped, no lease); what
  // their clients do in between (cancel, kill, disconnect) is acted on when they are served.
  for (std::size_t i = 0; i < n; ++i) {
    if (!deferred[i]) done_[done_count_++] = members[i];
  }
  conn->set_listener(nullptr);
  pool_.release(conn, !r.broken && !r.in_transaction);  // never with a transaction left open
  if (done_count_ > 0) ready_.post(&served_);
}

void GroupCommit::on_backend_result(BackendConn* conn, BackendOp /*op*/, BackendResult&& r) {
  if (batch_mode_) return on_batches_result(conn, r);
  const std::size_t n = count_;
  const std::uint8_t* frames = job_.frames.data();
  if (job_.committed) {
    std::uint64_t ok = 0;
    for (std::size_t i = 0; i < n; ++i) ok += items_[i].ran && items_[i].status.is_ok() ? 1 : 0;
    if (ok > 0) {
      ++commits_;
      statements_ += ok;
    }
  }
  if (job_.restarts > 0) {
    spdlog::debug("group commit of {} one-shots: {} error(s) rolled back the whole transaction; "
                  "the others ran again",
                  n, job_.restarts);
  }
  count_ = 0;  // the members below must not be cancelled through us any more
  for (std::size_t i = 0; i < n; ++i) {
    if (!items_[i].deferred) members_[i]->on_group_result(items_[i], frames);
  }
  // Deferred members go back first in line, in their order, to run alone next.
  for (std::size_t i = n; i-- > 0;) {
    if (items_[i].deferred) {
      ++deferred_;
      members_[i]->on_group_deferred();
    }
  }
  members_.fill(nullptr);
  for (std::size_t i = 0; i < n; ++i) {
    items_[i].sql = {};
    items_[i].params = {};
    items_[i].status = Status::ok();
  }
  // Keep a buffer of ordinary size for the next group; give a large one back.
  if (job_.frames.size() > proto::kMaxRowBatchBytes) {
    job_.frames.release();
  } else if (!job_.frames.empty()) {
    job_.frames.bytes().clear();
  }
  conn->set_listener(nullptr);
  // The next waiter (maybe a group) gets it on a later turn; never with a transaction open.
  pool_.release(conn, !r.broken && !r.in_transaction);
}

}  // namespace dbmgr::daemon
