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
#include <string>

#include <uv.h>

#include "backend.hpp"
#include "dbmgr/config/config.hpp"

struct sqlite3;
struct sqlite3_stmt;

namespace dbmgr::daemon {

class SqliteConn final : public BackendConn {
 public:
  enum class Role { kWriter, kReader };

  SqliteConn(uv_loop_t* loop, std::string path, const config::SqliteSettings& settings,
             config::Millis statement_timeout, std::uint32_t max_frame_bytes, Role role);
  ~SqliteConn() override;

  void open() override;
  void execute(const ExecRequest& req) override;
  void resume() override;
  void commit() override;
  void rollback() override;
  void ping() override;
  void reset() override;
  void cancel() override;
  void close() override;
  std::string server_version() const override;

  // Creates the folder (0750) and the database file (0640) if they do not exist; never opens
  // an existing file (closing it would drop this process's SQLite locks on it).
  static Status ensure_file(const std::string& path);

 private:
  struct Cached {
    std::string sql;
    sqlite3_stmt* stmt = nullptr;
    std::uint64_t used = 0;
  };
  static constexpr std::size_t kStmtCacheSize = 32;

  void queue(BackendOp op);
  static void work_cb(uv_work_t* req);
  static void after_work_cb(uv_work_t* req, int status);

  // Worker-thread halves of the operations.
  void do_open();
  void do_execute();
  void do_step();
  void do_end_tx(const char* sql);
  Status exec_simple(const char* sql);
  Status prepare(std::string_view sql, sqlite3_stmt** out, bool* cached);
  void finish_statement();
  Status error_status(int rc, std::string_view what);
  static int on_progress(void* self);  // statement_timeout via the progress handler

  uv_loop_t* loop_;
  std::string path_;
  config::SqliteSettings settings_;
  config::Millis statement_timeout_;
  std::uint32_t max_frame_bytes_;
  Role role_;

  uv_work_t work_{};
  BackendOp op_ = BackendOp::kOpen;
  bool closing_ = false;
  BackendResult result_;

  // Touched by the worker inside a job, by the loop thread only between jobs.
  sqlite3* db_ = nullptr;
  bool in_tx_ = false;
  ExecRequest req_;
  sqlite3_stmt* stmt_ = nullptr;  // the statement being streamed
  bool stmt_cached_ = false;
  bool columns_sent_ = false;
  std::int64_t rows_ = 0;
  std::uint64_t use_counter_ = 0;
  Cached cache_[kStmtCacheSize];
  Clock::time_point deadline_{};
  std::atomic<bool> timed_out_{false};
};

}  // namespace dbmgr::daemon
