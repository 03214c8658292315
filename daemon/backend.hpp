// The one small interface every database backend implements (SQLite, PostgreSQL, ODBC).
//
// A BackendConn is one connection to a database. All its methods are called on the loop
// thread and return at once; each operation completes later, on the loop thread, by calling
// the current Listener's on_backend_result(). At most one operation is in flight per
// connection. A backend whose driver blocks (SQLite, ODBC) runs the operation on the worker
// pool; PostgreSQL runs it inside the loop through libpq's non-blocking API.
//
// Results travel as encoded protocol frames: the backend writes kColumns/kRows/kComplete for
// the request it was given into BackendResult::frames, in batches of at most
// proto::kMaxRowBatchBytes of rows, and sets `more` while rows remain; the owner forwards the
// frames to the client and calls resume() when the client can take more (backpressure).
// On error the frames hold only what was produced before it; the owner sends the error.
//
// Ownership: the Pool owns idle connections, a Session holds a leased one. close() hands the
// object to the backend, which deletes it once its driver is done with it.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "buffer_pool.hpp"
#include "dbmgr/protocol/codec.hpp"
#include "status.hpp"

namespace dbmgr::daemon {

using Clock = std::chrono::steady_clock;

enum class BackendOp : std::uint8_t { kOpen, kExecute, kCommit, kRollback, kPing, kReset, kGroup };
std::string_view to_string(BackendOp op);

// How an execute starts and ends its transaction.
enum class TxBegin : std::uint8_t {
  kNone,       // a transaction is already open (or autocommit for a one-shot read)
  kDeferred,   // BEGIN
  kImmediate,  // SQLite writer: BEGIN IMMEDIATE
};

struct ExecRequest {
  std::uint32_t request_id = 0;
  std::uint32_t session_id = 0;
  std::string_view sql;       // valid until the operation completes
  proto::ValueList params;    // ditto
  TxBegin begin = TxBegin::kNone;
  bool commit_after = false;  // one-shot: COMMIT when the statement succeeded
  std::string_view client_label;  // "name pid N": PostgreSQL shows it as application_name
};

struct BackendResult {
  Status status;
  Buffer frames;               // encoded reply frames for the client (execute only)
  bool more = false;           // execute: rows remain, call resume()
  bool in_transaction = false; // the connection holds an open transaction after this op
  bool broken = false;         // the connection is unusable and must be closed
  std::uint64_t statements = 0;
};

class BackendConn;

class BackendListener {
 public:
  virtual void on_backend_result(BackendConn* conn, BackendOp op, BackendResult& result) = 0;

 protected:
  virtual ~BackendListener() = default;
};

class BackendConn {
 public:
  virtual ~BackendConn() = default;

  void set_listener(BackendListener* l) { listener_ = l; }
  BackendListener* listener() const { return listener_; }

  virtual void open() = 0;
  virtual void execute(const ExecRequest& req) = 0;
  virtual void resume() = 0;                // next batch of a streaming execute
  virtual void commit() = 0;
  virtual void rollback() = 0;
  virtual void ping() = 0;                  // completes at once for backends with nothing to check
  virtual void reset() = 0;                 // undo session state before the next lease
  virtual void cancel() = 0;                // best effort; the running op completes with kCancelled
  virtual void close() = 0;                 // closes and deletes this object (maybe later)
  virtual bool needs_ping() const { return false; }
  // True when reset() must run before the connection is leased again.
  virtual bool needs_reset() const { return false; }
  virtual std::string server_version() const { return {}; }
  // A number that identifies the backend session (PostgreSQL backend pid; 0 if none).
  virtual std::int64_t backend_id() const { return 0; }

  bool busy() const { return busy_; }
  Clock::time_point created_at() const { return created_at_; }
  Clock::time_point last_used() const { return last_used_; }
  void touch() { last_used_ = Clock::now(); }

 protected:
  void complete(BackendOp op, BackendResult& r) {
    busy_ = false;
    last_used_ = Clock::now();
    if (listener_ != nullptr) listener_->on_backend_result(this, op, r);
  }
  bool busy_ = false;

 private:
  BackendListener* listener_ = nullptr;
  Clock::time_point created_at_ = Clock::now();
  Clock::time_point last_used_ = created_at_;
};

}  // namespace dbmgr::daemon
