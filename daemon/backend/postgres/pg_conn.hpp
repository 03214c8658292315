// PostgreSQL backend: one libpq connection driven inside the libuv loop, never blocking it.
//
// Connecting uses PQconnectStartParams/PQconnectPoll with a uv_poll on PQsocket and a
// connect timeout. Every operation is sent in libpq's pipeline mode, so the statements of
// one request reach the server in one write and answer in one round trip: the first
// statement of a transaction goes out as BEGIN + (PREPARE) + EXECUTE + Sync. Repeated SQL
// is prepared once per connection under a generated name (an LRU of kStmtCacheSize; an
// evicted statement is deallocated in the next pipeline). `?` placeholders are rewritten to
// `$n`; integers, doubles, booleans and blobs are sent in binary, text as text with the
// type left for the server to infer. Rows stream in single-row mode and are encoded into
// kRows batches; when the client is slow the connection stops reading from the server.
//
// Errors end the transaction: the connection sends ROLLBACK itself before reporting the
// error, so exactly one ROLLBACK reaches the server. A statement that changed session state
// (SET, temp tables, advisory locks, PREPARE, LISTEN...) marks the connection dirty and
// reset() then runs DISCARD ALL before the next lease. cancel() sends PQcancel from a
// worker thread (libpq 15 has no non-blocking cancel).
//
// Threading: loop thread only, except the cancel request on the worker pool.
#pragma once

#include <libpq-fe.h>
#include <uv.h>

#include <array>
#include <atomic>
#include <optional>
#include <string>
#include <vector>

#include "backend/backend.hpp"
#include "backend/postgres/pg_sql.hpp"
#include "backend/result_writer.hpp"
#include "dbmgr/config/config.hpp"

namespace dbmgr::daemon {

struct PgParams {
  std::string host;  // host name or socket folder
  int port = 0;
  std::string user;
  config::Secret password;
  std::string dbname;
  std::string sslmode;
  config::Millis statement_timeout{0};
  config::Millis connect_timeout{5000};
  std::uint32_t max_frame_bytes = 16u << 20;
  // Create `dbname` on the server when it does not exist (prefix policy allows it).
  bool create_if_missing = false;
  std::string maintenance_db = "postgres";
};

class PgConn final : public BackendConn {
 public:
  PgConn(uv_loop_t* loop, PgParams params);
  ~PgConn() override;

  bool needs_ping() const override { return true; }
  bool needs_reset() const override;
  std::string server_version() const override;
  std::int64_t backend_id() const override { return backend_pid_; }

 protected:
  void do_open() override;
  void do_execute(const ExecRequest& req) override;
  void do_resume() override;
  void do_commit() override;
  void do_rollback() override;
  void do_ping() override;
  void do_reset() override;
  void do_cancel() override;
  void do_close() override;

 private:
  enum class Step : std::uint8_t {
    kBegin, kSetName, kDeallocate, kPrepare, kExec, kCommit, kRollback, kPing, kDiscard, kScript
  };
  enum class Phase : std::uint8_t { kIdle, kConnecting, kCreatingDb, kRunning, kClosed };
  struct Cached {
    std::string key;   // type signature + SQL
    std::string name;  // server-side statement name
    std::uint64_t used = 0;
    pgsql::Effects fx;             // what it does beyond its result (SET, DDL, ...)
    std::uint64_t epoch = 0;       // the database's schema epoch it was prepared in
    std::uint64_t local_epoch = 0; // ... and this connection's (temp tables)
  };
  static constexpr std::size_t kStmtCacheSize = 256;

  // Connection set-up.
  void start_connect(bool maintenance);
  void continue_connect();
  void on_connect_poll(PostgresPollingStatusType st);
  Status connect_timeout_status() const;
  void connect_failed(Status s);
  void after_connect();
  // Operations.
  void begin_op(BackendOp op);
  void push(Step s) { steps_[nsteps_++] = s; }
  bool send_exec();
  void send_simple(const char* sql, Step step);
  void finish_send();
  void on_io(int events);
  void drain_results();
  void handle_result(PGresult* r);
  void op_done();
  void continue_reset();
  void cancel_done();  // a PQcancel on the worker pool returned
  void fail_broken(std::string why);
  Status error_of(const PGresult* r) const;
  // I/O plumbing.
  void watch(int events);
  void rewatch_socket();
  void start_timer(std::uint64_t ms);
  void stop_timer();
  void encode_row(const PGresult* r, int row);
  std::size_t row_bytes(const PGresult* r, int row) const;  // what encode_row() adds
  void pause_stream();  // the batch is full: hand it over, wait for resume()
  void send_columns(const PGresult* r);
  void deliver_async(Status s);  // complete an op on a later loop turn
  void finish_op();              // complete op_ with result_ (on a later turn if in a call)
  // Drops current_stmt_ from the cache; `deallocate`: it still exists on the server.
  void forget_statement(bool deallocate);
  static bool stale_types_error(const char* sqlstate);

  static void on_poll(uv_poll_t* h, int status, int events);
  void poll_fired(int status, int events);  // the callbacks' bodies
  void timer_fired();
  void fail_after_exception();
  void connect_step_done();
  static void on_timer(uv_timer_t* t);
  static void on_handle_closed(uv_handle_t* h);

  uv_loop_t* loop_;
  PgParams params_;
  PGconn* conn_ = nullptr;
  uv_poll_t* poll_ = nullptr;  // heap: the socket may change while connecting
  int poll_fd_ = -1;
  int poll_events_ = 0;
  uv_timer_t timer_{};
  int open_handles_ = 0;
  Phase phase_ = Phase::kIdle;
  BackendOp op_ = BackendOp::kOpen;
  // PQconnectPoll runs on a worker thread: the step that answers the server's SCRAM
  // challenge computes PBKDF2 for milliseconds (11 ms per connection measured here), which
  // must not stall the loop. While a step runs the loop leaves conn_ alone.
  uv_work_t connect_work_{};
  bool connect_step_running_ = false;
  bool connect_timed_out_ = false;  // the timeout fired during a step: fail when it returns
  PostgresPollingStatusType connect_step_result_ = PGRES_POLLING_FAILED;
  bool connect_for_create_ = false;  // connected to the maintenance db to CREATE DATABASE
  bool created_db_ = false;
  std::int64_t backend_pid_ = 0;
  std::string server_version_;

  // The current operation.
  std::array<Step, 10> steps_{};
  int nsteps_ = 0;
  int cur_ = 0;
  bool single_row_ = false;
  bool paused_ = false;
  bool rollback_after_error_ = false;
  bool dirty_ = false;          // session state changed: DISCARD ALL before the next lease
  bool async_complete_ = false; // the timer completes op_ with result_
  bool resume_pending_ = false; // the timer goes on streaming rows
  // Why the cached statement failed, if that may be its staleness, not the SQL: its result
  // columns changed (0A000), or a parameter type inferred at prepare no longer fits (22, 42).
  enum class Stale : std::uint8_t { kNone, kPlan, kTypes };
  Stale stale_ = Stale::kNone;
  bool stale_retried_ = false;  // ... and it was already run again once
  bool prepared_now_ = false;
  bool late_commit_sent_ = false;   // a one-shot's COMMIT after its result (op_done)
  std::string label_;               // the current request's client label (a copy)
  int cancels_in_flight_ = 0;       // PQcancel requests running on the worker pool
  bool reset_after_cancel_ = false; // a reset waits for them   // the statement is prepared in this pipeline (not cached)
  bool streamed_ = false;       // rows of the current execute went to the owner already
  bool stream_in_tx_ = false;   // the current execute runs inside a transaction
  bool retry_rollback_ = false; // the retry's pipeline starts with ROLLBACK
  BackendResult result_;
  PGresult* pending_row_ = nullptr;  // a row that did not fit the last batch (single-row mode)
  ResultWriter writer_;  // the current execute's frames, across the batches of a stream
  std::vector<proto::ColumnDesc> cols_;  // send_columns()'s scratch, kept between results
  std::int64_t affected_ = 0;
  ExecRequest req_;
  std::string app_name_;        // application_name last set on the server

  // Statement cache.
  std::vector<Cached> cache_;
  std::uint64_t use_counter_ = 0;
  std::uint64_t name_counter_ = 0;
  std::vector<std::string> pending_deallocate_;
  std::string key_;             // scratch: the cache key of the current statement
  // Schema epochs (pg_conn.cpp): the database's, shared by every connection to it, and this
  // connection's own, moved on by CREATE TEMP (a table only it sees).
  std::atomic<std::uint64_t>* schema_epoch_;
  std::uint64_t local_epoch_ = 0;
  bool schema_tx_open_ = false; // DDL was sent and its transaction has not ended yet
  void schema_tx_ended();       // ... it ended (committed, rolled back, or the link broke)
  void after_effects(pgsql::Effects fx);  // what a statement being sent changes (a copy:
                                          // it may clear the cache the original is in)
  std::string current_stmt_;    // name of the statement being executed
  std::string sql_;             // scratch: rewritten SQL

  // Parameter arrays for libpq (reused).
  std::vector<Oid> types_;
  std::vector<const char*> values_;
  std::vector<int> lengths_;
  std::vector<int> formats_;
  std::vector<char> scratch_;   // binary parameter bytes
};

}  // namespace dbmgr::daemon
