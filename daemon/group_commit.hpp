// GroupCommit: one-shot writes queued for a SQLite writer, committed in one transaction.
//
// When the writer connection is granted to a one-shot write and more group-able one-shot
// writes wait right behind it in the writer's FIFO (from any clients), they all run as one
// worker job: BEGIN IMMEDIATE, then per statement SAVEPOINT, the statement, RELEASE (ROLLBACK
// TO on its error, which touches no other statement), then one COMMIT. Each request then gets
// its own reply: its rows (RETURNING), its affected rows and last insert id, or its error; if
// the COMMIT fails every request of the group gets that error. That is one loop-to-worker
// hand-off and one WAL commit for the whole group instead of one per statement.
//
// Only what is already queued is grouped (a lone request never waits for company), only the
// run of group-able waiters at the head of the queue (an interactive session or a
// non-groupable statement in line stops the group, so FIFO order holds), at most
// kMaxStatements requests or kMaxBytes of requests per group. Group-able: a one-shot on the
// writer whose SQL is a single INSERT/UPDATE/DELETE/REPLACE (or WITH ... DML) statement
// (SqliteConn::groupable_sql). A statement the worker finds it cannot keep in a group (a
// script, a result that would have to stream) is rolled back to its savepoint and queued
// first in line to run alone.
//
// Cancel, kill, drain and disconnect of a member set its item's cancel flag: it is skipped if
// it has not run yet, interrupted if it runs (through the progress handler, so only that
// statement fails); a member whose client is gone keeps its Session alive until the group
// completes, then its reply is dropped.
//
// Threading: loop thread only (the worker runs SqliteConn::do_group). One per SQLite engine;
// at most one group runs at a time, since the writer is one connection.
#pragma once

#include <array>
#include <cstdint>

#include "backend/backend.hpp"
#include "pool.hpp"
#include "ready_queue.hpp"

namespace dbmgr::daemon {

class Session;

class GroupCommit final : private BackendListener {
 public:
  static constexpr std::size_t kMaxStatements = 64;
  static constexpr std::size_t kMaxBytes = 1024 * 1024;  // request payloads of one group
  static constexpr std::size_t kMaxBatches = 16;         // transactions in a group of batches

  GroupCommit(Pool& writer, ReadyQueue& ready) : pool_(writer), ready_(ready) { served_.g = this; }
  ~GroupCommit();
  GroupCommit(const GroupCommit&) = delete;
  GroupCommit& operator=(const GroupCommit&) = delete;

  // `leader` (group-able) was granted the writer `conn`. If group-able requests wait behind
  // it, takes them out of the queue, runs them all with the leader as one group and returns
  // true; otherwise returns false and the leader runs alone.
  bool start(Session* leader, BackendConn* conn);
  // The same for pipelined transactions: `leader` (batch-groupable) was granted the writer.
  // If batch-groupable sessions wait behind it, they and the leader run as one group of
  // batches (each its own SAVEPOINT, one COMMIT; SqliteConn::work_batch_group) and true is
  // returned; each member then gets its batch back as if it had run alone
  // (Session::on_batch_group_result) or, when it could not stay in the group, runs alone
  // next (Session::on_group_deferred).
  bool start_batches(Session* leader, BackendConn* conn);
  // A member's request is cancelled (cancel, kill, drain, disconnect).
  void cancel(const Session* s);
  bool running() const { return count_ > 0; }
  const Pool* pool() const { return &pool_; }

  std::uint64_t commits() const { return commits_; }        // committed groups
  std::uint64_t statements() const { return statements_; }  // statements committed in them
  std::uint64_t deferred() const { return deferred_; }      // taken out again to run alone
  std::uint64_t batch_commits() const { return batch_commits_; }  // committed groups of batches
  std::uint64_t batch_transactions() const { return batch_transactions_; }  // committed in them

 private:
  void add(Session* s);
  void on_backend_result(BackendConn* conn, BackendOp op, BackendResult&& r) override;
  void on_batches_result(BackendConn* conn, BackendResult& r);
  void serve_done();  // the members of the last group of batches get their outcomes

  // Posted after the writer was released, behind its grant: the loop answers a group's
  // members while the next group already runs on the worker.
  struct Served final : Deferred {
    GroupCommit* g = nullptr;
    void run_deferred() override { g->serve_done(); }
  };

  Pool& pool_;
  ReadyQueue& ready_;
  Served served_;
  std::array<Session*, kMaxBatches> done_{};  // members of the last group, not answered yet
  std::size_t done_count_ = 0;
  std::array<GroupItem, kMaxStatements> items_{};
  std::array<Session*, kMaxStatements> members_{};
  std::size_t count_ = 0;
  std::array<BatchJob*, kMaxBatches> batches_{};  // the members' jobs (in a group of batches)
  bool batch_mode_ = false;                        // the running group is one of batches
  GroupJob job_;
  std::uint64_t batch_commits_ = 0;
  std::uint64_t batch_transactions_ = 0;
  std::uint64_t commits_ = 0;
  std::uint64_t statements_ = 0;
  std::uint64_t deferred_ = 0;
};

}  // namespace dbmgr::daemon
