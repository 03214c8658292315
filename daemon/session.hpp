// Session: a client's transaction handle on one engine.
//
// A session runs its requests one at a time, in the order they arrived (pipelined requests
// wait in its queue). Its transaction begins at the first statement and ends with commit or
// rollback; a backend connection is leased from the engine's pool for exactly that long.
// Any error ends the transaction (the backend has rolled it back, or the session does) and
// leaves the session failed: further execute/commit requests get an error until the client
// sends rollback or close (docs/protocol.md section 10). When the client goes away,
// abandon() rolls back and returns the connection before anyone else can lease it, then the
// session deletes itself.
//
// A one-shot request is a session of its own that runs a single statement in its own
// transaction and deletes itself after the reply. A one-shot write to SQLite may instead run
// in a group commit with other queued one-shots (group_commit.hpp): it then holds no lease;
// the GroupCommit runs it and calls on_group_result() (or on_group_deferred()).
//
// The state machine. Every change of state_ goes through set_state(), which checks the move
// against the table in session.cpp (an illegal move is a bug and asserts):
//   kIdle       no transaction, no connection
//   kLeasing    waiting for a connection: in the pool's waiters (or granted, not delivered)
//   kGrouped    its one-shot, or its whole pipelined transaction, runs in a group commit
//               (the GroupCommit's members); it holds no lease
//   kExecuting  a statement runs on lease_
//   kPaused     rows wait for the client's output to drain (in the ClientConn's blocked list)
//   kInTx       holds lease_ with an open transaction, nothing running
//   kEnding     the commit or rollback the client asked for runs on lease_
//   kAborting   a rollback the daemon started runs on lease_ (error, kill, timeout, drain,
//               disconnect)
//   kFailed     the transaction was ended by an error; only rollback/close are accepted
// Besides the state: abandoned_ (the client is gone: delete once nothing is held) and
// abort_ (an abort asked for while a statement runs: acted on when it completes).
//
// The completion contract: on_lease() and on_backend_result() arrive on a later loop turn
// than the call that started them; the result is the session's own (moved to it), so
// releasing the connection first and replying after is safe.
//
// Threading: loop thread only. Ownership: the ClientConn's sessions_ map holds named
// sessions; an abandoned or one-shot session owns itself until its last operation ends.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "backend/backend.hpp"
#include "buffer_pool.hpp"
#include "pool.hpp"

namespace dbmgr::daemon {

class ClientConn;
class Engine;
class GroupCommit;
class Server;
struct GroupItem;

// A request copied out of the read buffer, waiting for its turn (or running).
struct PendingRequest {
  proto::Header header;
  Buffer payload;
  PendingRequest* next = nullptr;
};

class Session final : public PoolWaiter, public BackendListener {
 public:
  enum class State : std::uint8_t {
    kIdle,
    kLeasing,
    kGrouped,
    kExecuting,
    kPaused,
    kInTx,
    kEnding,
    kAborting,
    kFailed,
  };

  Session(Server& server, ClientConn* conn, std::uint32_t id, Engine* engine, bool read_only,
          bool one_shot);
  ~Session();

  void enqueue(PendingRequest* r);
  void cancel();
  // The client is gone: roll back, release, delete this session when the backend is done.
  void abandon();
  // An operator or the drain deadline ends this session's transaction; the next request
  // (or the current one) gets `why`.
  void abort_transaction(Status why);
  // The client's output drained: continue a paused row stream.
  void resume_stream();
  // Janitor: ends a transaction idle for longer than idle_in_transaction_timeout.
  void check_idle(Clock::time_point now);
  // Janitor: ends a paused stream the client has not read for stream_stall_timeout, or
  // whose statement passed statement_timeout.
  void check_stall(Clock::time_point now);
  // Drain: the backend answers nothing; close its connection and end the transaction.
  // True when there was one to close.
  bool force_close_backend();

  std::uint32_t id() const { return id_; }
  Engine* engine() const { return engine_; }
  State state() const { return state_; }
  bool read_only() const { return read_only_; }
  bool one_shot() const { return one_shot_; }
  // A transaction is open or about to be (a connection is held or awaited).
  bool holds_connection() const {
    return lease_ != nullptr || state_ == State::kLeasing || state_ == State::kGrouped;
  }
  bool in_transaction() const {
    return state_ == State::kExecuting || state_ == State::kPaused || state_ == State::kInTx ||
           state_ == State::kEnding || state_ == State::kGrouped;
  }
  Clock::time_point created_at() const { return created_at_; }
  Clock::time_point tx_started() const { return tx_started_; }
  std::int64_t backend_id() const { return lease_ ? lease_->backend_id() : 0; }
  static std::string_view to_string(State s);
  std::string_view state_name() const { return to_string(state_); }
  LeaseHolder holder() const override;

  // Group commit (GroupCommit calls these).
  bool groupable() const override { return groupable_; }
  std::size_t group_bytes() const;
  // The request joins a group: fills `it` with its SQL and parameters.
  void join_group(GroupCommit* g, GroupItem& it);
  // The group completed: `it` holds the result, its reply frames are in `frames`.
  void on_group_result(const GroupItem& it, const std::uint8_t* frames);
  // The group did not run the request (a one-shot, or a whole pipelined transaction): it
  // queues first in line to run alone.
  void on_group_deferred();
  // Group commit of pipelined transactions (GroupCommit::start_batches). True while the
  // session waits for the writer with a whole pipelined transaction queued: statements that
  // may run in a savepoint (Driver::batch_groupable_sql), then its COMMIT.
  bool batch_groupable() const override;
  // Fills the session's BatchJob with that transaction; null if it cannot join a group.
  BatchJob* prepare_group_batch();
  void join_batch_group(GroupCommit* g);
  // The group ran the batch: its outcome is in the job, served as if it had run alone.
  void on_batch_group_result();

 private:
  void on_lease(BackendConn* conn, Status status) override;
  void on_backend_result(BackendConn* conn, BackendOp op, BackendResult&& r) override;

  // The bodies of the two callbacks above (which catch at their boundary).
  void leased(BackendConn* conn, Status status);
  void backend_result(BackendConn* conn, BackendOp op, BackendResult& r);
  // The one transition function.
  void set_state(State next);
  void pump();
  void start_current();
  void start_lease();
  void run_execute(bool begin);
  // Batches (BatchJob): start_batch() hands req and the kExecute requests queued right behind
  // it to the backend as one operation (false: nothing to batch); on_batch_result() keeps the
  // outcomes, and run_execute() serves each of those requests from them when the queue reaches
  // it, as if it had run alone just then. Anything off that path drops them (clear_batch()):
  // the requests still queued are then served as usual.
  bool start_batch(const ExecRequest& req);
  // Fills batch_job_ from current_ and the requests behind it (false: nothing to batch);
  // `group`: only a whole transaction with its COMMIT, of batch-groupable statements.
  bool fill_batch(const ExecRequest& req, bool group);
  void on_batch_result(BackendResult& r);
  void serve_batched();
  void serve_batched_commit();
  void clear_batch();
  bool batch_pending() const { return batch_ran_ != 0; }
  void on_execute_result(BackendResult& r);
  void on_end_result(BackendResult& r);
  void on_abort_result(BackendResult& r);
  void finish_current();
  void drop_current();
  void start_abort(Status why);
  void reply_ok();
  void reply_error(const Status& s);
  void release(bool reusable);
  void fail(Status why);
  static Status failure_for(const Status& why);
  void maybe_delete();
  PendingRequest* pop();
  Pool& pool();
  Clock::time_point now() const;

  Server& server_;
  ClientConn* conn_;  // null once the client is gone
  std::uint64_t client_id_;
  std::uint32_t id_;
  Engine* engine_;
  bool read_only_;
  bool one_shot_;
  State state_ = State::kIdle;
  BackendConn* lease_ = nullptr;
  PendingRequest* current_ = nullptr;  // the request being served
  PendingRequest* head_ = nullptr;     // queued behind it
  PendingRequest* tail_ = nullptr;
  Status failed_;                       // why the transaction ended (state kFailed)
  std::optional<Status> abort_;         // abort asked for while something ran
  Status aborting_why_;                 // kAborting: what the session is failed with after
  bool abandoned_ = false;
  bool closing_ = false;                // kClose is being served: delete after it
  bool in_pump_ = false;
  bool began_tx_ = false;   // the running execute began the transaction
  bool streamed_ = false;   // frames of the current request already went to the client
  bool retried_ = false;    // the current request was retried on a new connection
  GroupCommit* group_ = nullptr;  // the group commit running the current one-shot
  bool groupable_ = false;        // the current one-shot may join a group commit
  bool batch_solo_ = false;       // the current transaction was deferred by a group: alone
  bool solo_ = false;             // a group deferred it: it runs alone
  bool group_cancelled_ = false;  // cancel() while in a group
  std::string_view group_sql_;    // the current one-shot's SQL and parameters (in current_)
  proto::ValueList group_params_;
  Clock::time_point created_at_;
  Clock::time_point tx_started_{};
  Clock::time_point idle_since_{};
  Clock::time_point paused_since_{};
  Clock::time_point exec_started_{};
  // The batch (see start_batch()): its job, kept for reuse; the outcomes not yet served: the
  // frames of the statements that ran, the next one to serve and how many ran, the request it
  // belongs to (checked), and the last statement's result.
  std::unique_ptr<BatchJob> batch_job_;
  Buffer batch_frames_;
  std::size_t batch_next_ = 0;
  std::size_t batch_ran_ = 0;
  PendingRequest* batch_expect_ = nullptr;
  BackendResult batch_last_;
  std::uint32_t batch_commit_rid_ = 0;  // the kCommit the batch ran, 0: none
  // An abort asked for while a batch that committed ran: acted on when its commit is served,
  // as for an abort that arrives while a commit runs.
  std::optional<Status> batch_late_abort_;
};

}  // namespace dbmgr::daemon
