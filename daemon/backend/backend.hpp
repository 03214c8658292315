// The one small interface every database backend implements (SQLite, PostgreSQL, ODBC).
//
// A BackendConn is one connection to a database. All its methods are called on the loop
// thread and return at once; each operation completes later, on a later loop turn, by
// calling the current Listener's on_backend_result() with the result MOVED to it: the
// listener owns what it is given, and nothing it reads is a reference into the connection,
// which the next user may start another operation on from inside that very callback. At
// most one operation is in flight per connection. A backend whose driver blocks (SQLite,
// ODBC) runs the operation on the worker pool; PostgreSQL runs it inside the loop through
// libpq's non-blocking API.
//
// The completion contract (libuv's rule) is enforced here: the public methods below are
// the only way in, they track that a call is in progress, and complete() asserts that no
// backend completes inside the call that started the operation (errors found while
// starting an operation are delivered on a later loop turn too). The connection's own state
// machine lives here as well, with one transition per call and per completion:
//
//   kNew --open--> kBusy --complete--> kIdle --execute/commit/rollback/ping/reset--> kBusy
//   kBusy --complete(more rows)--> kPaused --resume--> kBusy
//   kPaused --rollback--> kBusy   (the rest of the rows is dropped; see each backend)
//   any --close--> kClosed        (the backend deletes the object when its driver is done)
//
// Results travel as encoded protocol frames: the backend writes kColumns/kRows/kComplete for
// the request it was given into BackendResult::frames, in batches that end before a row that
// would take the batch past proto::kMaxRowBatchBytes (a larger row travels alone), and sets
// `more` while rows remain; the owner forwards the frames to the client and calls resume()
// when the client can take more (backpressure). On error the frames hold nothing; the owner
// sends the error.
//
// Ownership: the Pool owns idle connections, a Session holds a leased one. close() hands the
// object to the backend, which deletes it once its driver is done with it. The Pool keeps
// its own bookkeeping of each connection (its pool state and list links) in `pool_`.
#pragma once

#include <array>
#include <atomic>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "buffer_pool.hpp"
#include "clock.hpp"
#include "dbmgr/protocol/codec.hpp"
#include "status.hpp"

namespace dbmgr::daemon {

enum class BackendOp : std::uint8_t {
  kOpen,
  kExecute,
  kCommit,
  kRollback,
  kPing,
  kReset,
  kGroup,
  kBatch
};
std::string_view to_string(BackendOp op);

// How an execute starts its transaction.
enum class TxBegin : std::uint8_t {
  kNone,   // a transaction is already open (or autocommit for a one-shot)
  kBegin,  // the dialect's BEGIN for a read-only or read-write transaction (driver.hpp)
};

struct ExecRequest {
  std::uint32_t request_id = 0;
  std::uint32_t session_id = 0;
  std::string_view sql;       // valid until the operation completes
  proto::ValueList params;    // ditto
  TxBegin begin = TxBegin::kNone;
  bool read_only = false;     // the transaction may not write (Dialect::begin_read_only)
  bool commit_after = false;  // one-shot: COMMIT when the statement succeeded
  std::string_view client_label;  // "name pid N": PostgreSQL shows it as application_name
};

struct BatchJob;

struct BackendResult {
  Status status;
  Buffer frames;               // encoded reply frames for the client (execute only)
  bool more = false;           // execute: rows remain, call resume()
  bool in_transaction = false; // the connection holds an open transaction after this op
  bool broken = false;         // the connection is unusable and must be closed
  std::uint64_t statements = 0;
  std::unique_ptr<BatchJob> batch;  // kBatch: the job, handed back with its outcome
};

class BackendConn;

// One one-shot write of a group commit (group_commit.hpp). The loop thread fills the request
// half before BackendConn::execute_group() and reads the result half after the group
// completes; the worker writes the result half; `cancel` may be set by the loop at any time.
struct GroupItem {
  // Request (valid until the group completes).
  std::uint32_t request_id = 0;
  std::string_view sql;
  proto::ValueList params;
  std::atomic<bool> cancel{false};
  // Result.
  Status status;                // this statement's error, or the COMMIT's
  std::size_t frames_begin = 0;  // its reply frames in GroupJob::frames
  std::size_t frames_end = 0;
  bool deferred = false;  // not run in the group: it must run alone (script, large result)
  bool final = false;     // worker: failed for good, skipped if the group restarts
  bool ran = false;       // a statement was executed (and committed with the group if ok)
};

// A group commit of one-shots (`items`) or of pipelined transactions (`batches`: each a
// session's whole BatchJob with its COMMIT, run in a SAVEPOINT of its own; group_commit.hpp).
struct GroupJob {
  GroupItem* items = nullptr;
  BatchJob* const* batches = nullptr;  // set: a group of batches, `items` unused
  std::size_t count = 0;
  Buffer frames;           // every item's reply frames, back to back
  bool committed = false;  // COMMIT succeeded
  int restarts = 0;        // an item's error ended the whole transaction; the rest re-ran
};

// Statements of one session's transaction that the client pipelined, run back to back as one
// operation (a driver that offers it: Driver::batches()), so that a blocking driver makes one
// trip to its worker thread instead of one per statement. reqs[0] is the statement the session
// would have executed alone (it may begin the transaction); the others have begin kNone. The
// driver stops after the first statement that fails, that leaves rows for resume(), that
// leaves no transaction open, or after which the frames pass kMaxBatchFrames. The operation
// completes with BackendOp::kBatch and the BackendResult of the last statement it ran, whose
// frames are preceded by those of the statements before it (frame_ends[i]: where statement
// i's frames end; frames of a failed statement are dropped, as always). With `commit`, a
// driver that ran every statement, and has a transaction open and no rows pending after the
// last, then commits as commit() does: `committed` says it tried, commit_status and
// commit_broken say how it went, and the BackendResult's in_transaction is the state after
// it (the last statement's own state was: in a transaction). The job owns what
// its requests point to (`payloads`, the requests' bytes copied), and the connection owns the
// job while it runs: a connection closed meanwhile frees both when its driver is done.
struct BatchJob {
  static constexpr std::size_t kMaxStatements = 32;
  static constexpr std::size_t kMaxBatchFrames = 256 * 1024;
  Buffer payloads;                               // what reqs' views point into
  std::array<ExecRequest, kMaxStatements> reqs;
  std::size_t count = 0;
  bool commit = false;  // COMMIT after the statements (the session's next request)
  std::size_t ran = 0;  // driver: statements run; the result is that of reqs[ran - 1]
  bool committed = false;  // driver: the COMMIT ran; how it went:
  Status commit_status;
  bool commit_broken = false;
  std::array<std::size_t, kMaxStatements> frame_ends{};
  // In a group of batches (GroupJob::batches). The loop may set `cancel` at any time; the
  // worker writes the rest: the BackendResult the batch would have completed with alone
  // (group_result, its frames the batch's own), or `deferred` when it must run alone.
  std::atomic<bool> cancel{false};
  BackendResult group_result;
  bool deferred = false;
  bool final = false;  // worker: failed for good, skipped if the group restarts
};

class BackendListener {
 public:
  // `result` is the listener's own: it may keep, move or drop it.
  virtual void on_backend_result(BackendConn* conn, BackendOp op, BackendResult&& result) = 0;

 protected:
  virtual ~BackendListener() = default;
};

// Who holds a leased connection, for dbmgrctl servers (ids, not pointers: they outlive it).
struct LeaseHolder {
  std::uint64_t client_id = 0;   // 0: the daemon itself (group commit, probe)
  std::uint32_t session_id = 0;  // 0: a one-shot
  std::string_view what;         // a literal: "session", "one-shot", "group commit", "probe"
};

// The pool's bookkeeping of one connection (Pool reads and writes it; nobody else).
struct PoolLink {
  std::uint8_t state = 0;  // Pool::ConnState
  BackendConn* prev = nullptr;
  BackendConn* next = nullptr;
  Clock::time_point created_at{};
  Clock::time_point last_used{};
  Clock::time_point state_since{};
  LeaseHolder holder;            // granted or leased: to whom
  std::uint64_t id = 0;          // per pool, for dbmgrctl servers
};

class BackendConn {
 public:
  enum class State : std::uint8_t { kNew, kIdle, kBusy, kPaused, kClosed };

  virtual ~BackendConn() = default;

  void set_listener(BackendListener* l) { listener_ = l; }
  BackendListener* listener() const { return listener_; }
  State state() const { return state_; }
  static std::string_view to_string(State s);

  void open() { Call c(this, State::kNew); do_open(); }
  void execute(const ExecRequest& req) { Call c(this, State::kIdle); do_execute(req); }
  void resume() { Call c(this, State::kPaused); do_resume(); }  // next batch of a stream
  void commit() { Call c(this, State::kIdle); do_commit(); }
  // Also ends a paused stream: the rest of its rows is dropped with the transaction.
  void rollback() {
    Call c(this, state_ == State::kPaused ? State::kPaused : State::kIdle);
    do_rollback();
  }
  void ping() { Call c(this, State::kIdle); do_ping(); }
  void reset() { Call c(this, State::kIdle); do_reset(); }  // undo session state before reuse
  // Runs every item of `job` in one transaction (a driver that offers group commit:
  // Driver::group_commit()); completes with BackendOp::kGroup, the per-item results in `job`,
  // which must outlive the operation.
  void execute_group(GroupJob* job) { Call c(this, State::kIdle); do_group(job); }
  // Runs the statements of `job` back to back (see BatchJob; a driver that offers it:
  // Driver::batches()); the job comes back in BackendResult::batch. After a result with
  // `more`, resume() streams the rest of the last statement's rows as after execute().
  void execute_batch(std::unique_ptr<BatchJob> job) {
    Call c(this, State::kIdle);
    do_batch(std::move(job));
  }
  // Best effort; the running op completes with kCancelled. No state change.
  void cancel() {
    ++depth_;
    do_cancel();
    --depth_;
  }
  // Closes and deletes this object (maybe later). Nothing is delivered after it.
  void close() {
    listener_ = nullptr;
    state_ = State::kClosed;
    do_close();  // may delete this
  }

  virtual bool needs_ping() const { return false; }
  // True when reset() must run before the connection is leased again.
  virtual bool needs_reset() const { return false; }
  virtual std::string server_version() const { return {}; }
  // How long the server lets this connection sit idle before it closes it (MariaDB's
  // wait_timeout), with a margin; zero when it does not. The pool closes idle connections
  // before that, so that none is leased only to be found dead.
  virtual Clock::duration idle_limit() const { return Clock::duration::zero(); }
  // A number that identifies the backend session (PostgreSQL backend pid; 0 if none).
  virtual std::int64_t backend_id() const { return 0; }

  PoolLink pool_;

 protected:
  virtual void do_open() = 0;
  virtual void do_execute(const ExecRequest& req) = 0;
  virtual void do_resume() = 0;
  virtual void do_commit() = 0;
  virtual void do_rollback() = 0;
  virtual void do_ping() = 0;
  virtual void do_reset() = 0;
  virtual void do_cancel() = 0;
  virtual void do_close() = 0;
  virtual void do_group(GroupJob* /*job*/) {
    assert(false && "execute_group() on a driver without group commit");
  }
  virtual void do_batch(std::unique_ptr<BatchJob> /*job*/) {
    assert(false && "execute_batch() on a driver without batches");
  }

  // The operation in flight is done. Must run on a later loop turn than the call that
  // started it (asserted). `r` is moved to the listener; the object may be deleted by the
  // listener (close()) before this returns, so callers touch nothing of it afterwards.
  void complete(BackendOp op, BackendResult&& r) {
    assert(depth_ == 0 && "completion contract: a backend completed inside its caller's call");
    assert(state_ == State::kBusy && "complete() with no operation in flight");
    state_ = r.more && r.status.is_ok() && !r.broken ? State::kPaused : State::kIdle;
    BackendResult mine(std::move(r));
    if (listener_ != nullptr) listener_->on_backend_result(this, op, std::move(mine));
  }
  // The bookkeeping of the public calls above.
  class Call {
   public:
    Call(BackendConn* c, State expected) : c_(c) {
      assert(c->state_ == expected && "backend call in the wrong connection state");
      (void)expected;
      c->state_ = State::kBusy;
      ++c->depth_;
    }
    ~Call() { --c_->depth_; }
    Call(const Call&) = delete;
    Call& operator=(const Call&) = delete;

   private:
    BackendConn* c_;
  };
  bool in_call() const { return depth_ > 0; }

 private:
  BackendListener* listener_ = nullptr;
  State state_ = State::kNew;
  int depth_ = 0;
};

inline std::string_view BackendConn::to_string(State s) {
  switch (s) {
    case State::kNew: return "new";
    case State::kIdle: return "idle";
    case State::kBusy: return "busy";
    case State::kPaused: return "paused";
    case State::kClosed: return "closed";
  }
  return "?";
}

}  // namespace dbmgr::daemon
