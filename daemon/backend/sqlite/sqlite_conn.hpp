// SQLite backend: one sqlite3 connection whose blocking calls run on libuv's worker pool.
//
// Every connection is tuned on open (WAL, busy_timeout, synchronous=NORMAL, foreign_keys,
// cache_size) and gets a REGEXP function backed by RE2, which runs in linear time so no
// pattern can hang a worker. An engine holds one writer connection (write transactions
// queue for it FIFO in the daemon and start with BEGIN IMMEDIATE) and several reader
// connections (PRAGMA query_only) for read-only sessions.
//
// Threading: the loop thread calls the BackendConn methods; each queues one uv_work_t and
// the worker touches sqlite3 only inside it, so the connection is used by one thread at a
// time (SQLITE_OPEN_NOMUTEX). cancel() uses sqlite3_interrupt(), which is thread-safe.
#pragma once

#include <atomic>
#include <cstddef>
#include <string>

#include <uv.h>

#include "backend/result_writer.hpp"
#include "backend/sqlite/wal_checkpointer.hpp"
#include "backend/worker_conn.hpp"
#include "dbmgr/config/config.hpp"
#include "backend/sqlstate.hpp"

struct sqlite3;
struct sqlite3_stmt;

namespace dbmgr::daemon {

class SqliteConn final : public WorkerConn {
 public:
  enum class Role { kWriter, kReader };

  SqliteConn(uv_loop_t* loop, const TimeSource& clock, std::string path,
             const config::SqliteSettings& settings, config::Millis statement_timeout,
             std::uint32_t max_frame_bytes, Role role);
  ~SqliteConn() override;

  std::string server_version() const override;

  // True for SQL that may share a transaction with other one-shots: one statement whose
  // first keyword is INSERT, UPDATE, DELETE, REPLACE or WITH (a CTE before DML). A textual
  // check for the loop thread; the worker checks again after preparing (one statement).
  static bool groupable_sql(std::string_view sql);
  // True for a statement of a pipelined transaction that may run inside a savepoint of a
  // group of such transactions: one statement whose first keyword is SELECT, VALUES, INSERT,
  // UPDATE, DELETE, REPLACE or WITH (nothing that begins, ends or names a transaction or a
  // savepoint, no DDL, no PRAGMA). A textual check for the loop thread.
  static bool batch_groupable_sql(std::string_view sql);
  // True for SQL that only reads: one SELECT or VALUES statement, or WITH ... SELECT (no
  // INSERT/UPDATE/DELETE/REPLACE word outside quotes). A one-shot of it runs on a reader.
  static bool read_only_sql(std::string_view sql);
  // VACUUM: SQLite refuses it inside a transaction, so a one-shot VACUUM runs in autocommit.
  static bool autocommit_only_sql(std::string_view sql);
  // Per item: frames a group keeps in memory before a statement is deferred to run alone
  // (its result would need streaming), and the frames of a whole group before the rest of
  // its items are deferred.
  static constexpr std::size_t kGroupItemFramesMax = proto::kMaxRowBatchBytes;
  static constexpr std::size_t kGroupFramesMax = 4 * proto::kMaxRowBatchBytes;

  // Creates the folder (0750) and the database file (0640) if they do not exist; never opens
  // an existing file (closing it would drop this process's SQLite locks on it).
  static Status ensure_file(const std::string& path);

 protected:
  void do_execute(const ExecRequest& req) override;
  void do_resume() override;
  void do_commit() override;
  void do_rollback() override;
  void do_ping() override;
  void do_reset() override;
  // A session made temporary tables, views, indexes or triggers (the authorizer saw one
  // made): they are dropped before the next session gets the connection.
  bool needs_reset() const override { return temp_made_; }
  void do_cancel() override;
  // Every item of `job` in one transaction: BEGIN IMMEDIATE, then per item SAVEPOINT, the
  // statement, RELEASE (ROLLBACK TO on its error), then COMMIT.
  void do_group(GroupJob* job) override;
  // Statements of one transaction back to back in one worker job (BatchJob).
  void do_batch(std::unique_ptr<BatchJob> job) override;

 private:
  struct Cached {
    std::string sql;
    sqlite3_stmt* stmt = nullptr;
    std::uint64_t used = 0;
  };
  static constexpr std::size_t kStmtCacheSize = 32;

  void start(BackendOp op);  // queue() after the statement deadline of an execute ended
  void work(BackendOp op) override;
  void work_close() override;
  bool has_handle() const override { return db_ != nullptr; }
  // The writer: a WAL checkpoint when its last commit left the WAL large (wal_checkpointer.hpp).
  void after_job() override;
  static int on_wal_commit(void* self, sqlite3* db, const char* name, int pages);

  // Worker-thread halves of the operations.
  void work_open();
  void work_execute();
  void work_end_tx(const char* sql);
  void work_group();
  void work_batch();
  void work_batch_group();
  void run_group_item(GroupItem& it, std::vector<std::uint8_t>& out);
  // Unresolved deferred foreign-key violations in the open transaction (worker).
  bool deferred_fk_violations();
  Status exec_simple(const char* sql);
  Status exec_prepared(sqlite3_stmt** stmt, const char* sql);
  // `script` non-null: a multi-statement script is not run; *script is set instead.
  Status prepare(std::string_view sql, sqlite3_stmt** out, bool* cached, bool* script = nullptr);
  Status bind(sqlite3_stmt* stmt, const proto::ValueList& params);
  void finish_statement();
  void start_rowid(std::string_view sql);
  std::int64_t own_rowid(bool changed);
  Status error_status(int rc, std::string_view what, SqlitePhase phase = SqlitePhase::kStep);
  static int on_progress(void* self);  // statement_timeout via the progress handler
  // sqlite3_set_authorizer(): no ATTACH, VACUUM INTO, DETACH, load_extension(), directory
  // pragmas; the reason goes to denied_ for the error message.
  static int authorize(void* self, int action, const char* a1, const char* a2, const char* db,
                       const char* trigger);

  const TimeSource& clock_;
  std::string path_;
  config::SqliteSettings settings_;
  config::Millis statement_timeout_;
  std::uint32_t max_frame_bytes_;
  Role role_;

  // Touched by the worker inside a job, by the loop thread only between jobs.
  sqlite3* db_ = nullptr;
  bool in_tx_ = false;
  ExecRequest req_;
  std::string script_;  // worker: the rest of a multi-statement script, NUL-terminated
  const char* denied_ = nullptr;  // worker: why the authorizer refused the last statement
  bool temp_made_ = false;        // worker: needs_reset()
  Status drop_temp_objects();
  sqlite3_stmt* stmt_ = nullptr;  // the statement being streamed
  bool stmt_cached_ = false;
  ResultWriter writer_;     // the result of stmt_, across the batches of a stream
  bool row_pending_ = false;  // stmt_'s current row did not fit the last batch: send it first
  int ncols_ = 0;             // stmt_'s column count, read after its first step
  std::int64_t rows_ = 0;
  std::int64_t changes_before_ = 0;  // sqlite3_total_changes64 before the statement
  std::int64_t rowid_before_ = 0;    // sqlite3_last_insert_rowid before the statement
  bool reads_rowid_ = false;         // its SQL calls last_insert_rowid()
  std::uint64_t use_counter_ = 0;
  Cached cache_[kStmtCacheSize];
  Clock::time_point deadline_{};
  std::atomic<bool> timed_out_{false};
  GroupJob* group_ = nullptr;                       // the group being run (kGroup)
  std::unique_ptr<BatchJob> batch_;                 // the batch being run (kBatch)
  const std::atomic<bool>* item_cancel_ = nullptr;  // worker: the running item's cancel flag
  WalCheckpointer* checkpointer_ = nullptr;  // the writer's (loop thread)
  int wal_pages_ = 0;  // the writer's WAL size after its last commit (the worker writes it)
  bool in_group_ = false;
  bool group_script_ = false;  // worker: a grouped statement turned out to be a script  // worker: a statement of a grouped batch runs (no ROLLBACK on error)
  sqlite3_stmt* savepoint_ = nullptr;               // prepared once, for group commits
  sqlite3_stmt* release_ = nullptr;
  sqlite3_stmt* rollback_to_ = nullptr;
};

}  // namespace dbmgr::daemon
