// ODBC backend: one unixODBC connection (MariaDB/MySQL through MariaDB Connector/ODBC, SQL
// Server through FreeTDS or Microsoft's driver, or any ODBC driver in tests) whose blocking
// calls run on the worker pool (WorkerConn), never on the loop thread.
//
// The driver manager's own pooling is off (the daemon pools). Statements are prepared once
// per connection (an LRU of kStmtCacheSize statement handles keyed by SQL) and executed with
// typed positional parameters bound by SQLBindParameter; `?` is ODBC's own placeholder.
// Results are fetched in blocks (column-wise binding, SQL_ATTR_ROW_ARRAY_SIZE rows per
// SQLFetch) when every column has a bounded size, and row by row with SQLGetData in pieces
// when one is long text or a blob; rows go through the shared ResultWriter, so a slow client
// pauses the fetch (backpressure). Diagnostics (SQLGetDiagRec) become errors with the
// driver's SQLSTATE, its category and the server's message without the driver's [tags].
//
// Transactions: a connection starts in autocommit. A session's transaction turns autocommit
// off (and runs the dialect's read-only BEGIN for a read-only one) and ends with SQLEndTran;
// autocommit stays off until a one-shot needs it on again, so a run of transactions pays no
// mode switch. A statement error rolls the transaction back, as on every engine. A statement
// that changed session state (SET, USE, temporary tables, user variables, GET_LOCK, PREPARE,
// LOCK TABLES) marks the connection dirty; reset() then reconnects it (MariaDB Connector/ODBC
// 3.1 offers no reset attribute), which also drops the statement cache. cancel() runs
// SQLCancel on a worker thread (MariaDB's driver opens a connection to KILL QUERY).
//
// A database missing on the server is created on demand when the prefix policy allows it
// (CREATE DATABASE with the dialect's identifier quoting; names are validated before).
//
// Threading: WorkerConn's. cancel's SQLCancel runs on another worker thread, synchronised
// with the job through a small shared state (the statement being run).
#pragma once

#include <sql.h>
#include <sqlext.h>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "backend/driver.hpp"
#include "backend/odbc/odbc_connstr.hpp"
#include "backend/result_writer.hpp"
#include "backend/worker_conn.hpp"

namespace dbmgr::daemon {

struct OdbcParams {
  // The server's family: how errors, read-only transactions and CREATE DATABASE are spoken.
  enum class Flavor : std::uint8_t { kMariadb, kMssql, kPostgres };
  Flavor flavor = Flavor::kMariadb;
  const Dialect* dialect = nullptr;
  odbc::ConnString connect;      // to the database
  odbc::ConnString maintenance;  // to the server without a database (to create it)
  std::string dbname;
  bool create_if_missing = false;
  config::Millis statement_timeout{0};
  config::Millis connect_timeout{5000};
  std::uint32_t max_frame_bytes = 16u << 20;
};

class OdbcConn final : public WorkerConn {
 public:
  OdbcConn(uv_loop_t* loop, OdbcParams params);
  ~OdbcConn() override;

  bool needs_ping() const override { return true; }
  bool needs_reset() const override { return dirty_; }
  std::string server_version() const override { return version_; }
  std::int64_t backend_id() const override { return backend_id_; }
  Clock::duration idle_limit() const override { return idle_limit_; }

  // The process-wide ODBC environment (ODBC 3, driver-manager pooling off), made once.
  static SQLHENV environment();

  // The statement SQLCancel may interrupt, shared with the cancel job and the statement
  // timeout's watchdog (which may outlive the connection).
  struct CancelTarget {
    std::mutex mu;
    SQLHSTMT running = SQL_NULL_HSTMT;
    std::uint64_t seq = 0;   // which execution `running` is (the watchdog's key)
    bool timed_out = false;  // the watchdog cancelled it: statement_timeout
    bool cancelled = false;  // SQLCancel was called on it (cancel() or the watchdog)
    std::uint64_t gen = 0;   // the request `running` belongs to (OdbcConn::exec_gen_)
  };

 protected:
  void do_execute(const ExecRequest& req) override;
  void do_resume() override;
  void do_cancel() override;

 private:
  struct Cached {
    std::string sql;
    SQLHSTMT stmt = SQL_NULL_HSTMT;
    std::uint64_t used = 0;
  };
  // One result column: how it is fetched and, in block mode, its bound arrays.
  struct Column {
    std::string name;
    proto::ValueTag tag = proto::ValueTag::kText;
    SQLSMALLINT ctype = SQL_C_CHAR;
    bool unsigned_big = false;       // BIGINT UNSIGNED: past INT64_MAX sent as text
    SQLULEN width = 0;               // block mode: bytes per cell in `data`
    std::vector<char> data;          // block mode: rows x width
    std::vector<SQLLEN> ind;         // block mode: rows
  };
  // One cell of the row being encoded.
  struct Cell {
    proto::ValueTag tag = proto::ValueTag::kNull;
    bool b = false;
    std::int64_t i = 0;
    double d = 0;
    std::string bytes;  // text, blob (getdata mode)
    std::string_view view;  // text, blob: into `bytes` or a bound array
  };
  static constexpr std::size_t kStmtCacheSize = 32;
  static constexpr std::size_t kMaxBlockRows = 256;
  static constexpr SQLULEN kBoundedCell = 4096;  // larger text/blob columns use SQLGetData

  void work(BackendOp op) override;
  void work_close() override;
  bool has_handle() const override { return dbc_ != SQL_NULL_HDBC; }

  void work_open();
  void work_execute();
  void work_end(bool commit);
  void work_ping();
  void work_reset();
  Status connect();
  Status driver_connect(const odbc::ConnString& cs);
  void disconnect();
  Status create_database();
  Status set_autocommit(bool on);
  // Ends the open transaction (SQLEndTran, or COMMIT/ROLLBACK in SQL when SQL began it).
  Status end_tx(bool commit);
  // SQL that may begin or end a transaction itself (START TRANSACTION, COMMIT, XA, SET
  // autocommit, DDL's implicit commit): the server is asked afterwards (learn_tx_state()).
  bool tx_control_sql(std::string_view sql, bool* ends) const;
  // MariaDB: statements are sent with SQLExecDirect (prepared and executed in one round
  // trip by the driver), never reused prepared. Connector/ODBC describes a reused
  // statement's result with the columns it had when prepared, so after ALTER TABLE ...
  // RENAME COLUMN, or DROP and CREATE with as many columns, the names (and types) would be
  // the old ones.
  bool direct_exec() const { return params_.flavor == OdbcParams::Flavor::kMariadb; }
  void learn_tx_state();
  // MariaDB/MySQL: the refusal of a read-only request's statement that START TRANSACTION
  // READ ONLY does not hold (the server lets it end the transaction and go on read-write):
  // DDL and other SQL that commits implicitly, COMMIT/ROLLBACK/START/XA in SQL, SET
  // TRANSACTION, SET autocommit, SET STATEMENT and tx_read_only; CALL and EXECUTE (a
  // procedure or dynamic SQL can do all of that). Every statement of a script is checked.
  Status read_only_check(std::string_view sql) const;
  Status exec_direct(std::string_view sql);
  Status prepare(std::string_view sql, bool cacheable, SQLHSTMT* out);
  bool cacheable_sql(std::string_view sql) const;
  void evict(std::string_view sql);
  // After a request: a statement handle SQLCancel hit is not used again (the driver
  // manager's state of it is not to be trusted: HY010 on the next use).
  void drop_cancelled_handle();
  // Prepares, binds and runs req_, writes the columns and the first rows; *done when the
  // statement returned no result set (affected_ holds its row count).
  Status start_statement(bool cacheable, bool* done);
  Status bind_params(SQLHSTMT stmt, const proto::ValueList& params);
  Status run(SQLHSTMT stmt);  // SQLExecute, cancellable
  void running(SQLHSTMT stmt);  // the statement cancel() may interrupt now (or none)
  Status describe(SQLHSTMT stmt, SQLSMALLINT ncols);
  Status fetch_rows();  // the next rows of stmt_ into result_ (sets more)
  Status read_cell(std::size_t col, Cell* out);
  static void unsigned_past_int64(const Column& k, Cell* out);
  void finish_request(std::int64_t affected);
  void fail(Status s);
  void close_cursor();
  void free_cache();
  Status diag(SQLSMALLINT type, SQLHANDLE h, std::string_view what);
  bool broken_error(const Status& s, SQLINTEGER native) const;
  void learn_server();

  OdbcParams params_;
  SQLHDBC dbc_ = SQL_NULL_HDBC;
  SQLHSTMT scratch_ = SQL_NULL_HSTMT;  // BEGIN, ping, CREATE DATABASE
  SQLHSTMT direct_ = SQL_NULL_HSTMT;   // statements that are not cached (cacheable_sql)
  bool connected_ = false;
  bool autocommit_ = true;
  bool in_tx_ = false;
  bool dirty_ = false;  // session state changed: reset() reconnects
  std::string version_;
  std::int64_t backend_id_ = 0;
  Clock::duration idle_limit_{};  // 90% of the server's wait_timeout (MariaDB)
  std::shared_ptr<CancelTarget> cancel_ = std::make_shared<CancelTarget>();
  SQLINTEGER last_native_ = 0;  // the native error of the last diag()

  // The current request.
  ExecRequest req_;
  SQLHSTMT stmt_ = SQL_NULL_HSTMT;  // the statement being streamed (cached)
  bool streaming_ = false;
  ResultWriter writer_;
  std::vector<Column> cols_;
  std::vector<proto::ColumnDesc> descs_;
  std::vector<Cell> cells_;
  bool block_ = false;       // rows fetched in blocks into the bound arrays
  SQLULEN fetched_ = 0;      // block mode: rows of the current rowset
  SQLULEN pos_ = 0;          // ... and the next one to encode
  bool row_ready_ = false;   // cells_ hold a row that did not fit the last batch
  std::int64_t rows_ = 0;
  std::int64_t affected_ = 0;
  bool stmt_cancelled_ = false;  // SQLCancel hit the current statement: its handle is dropped
  bool timed_out_ = false;       // ... and it was statement_timeout's watchdog
  SQLHSTMT cancelled_handle_ = SQL_NULL_HSTMT;  // the handle it hit
  bool tx_control_ = false;      // req_ may begin or end a transaction in SQL
  bool tx_ends_ = false;         // ... and it is COMMIT or ROLLBACK
  std::uint64_t exec_gen_ = 0;   // loop thread: bumped per request (the cancel's target)
  std::vector<std::string> scratch_text_;  // getdata pieces

  // Parameter storage (reused).
  std::vector<SQLLEN> pind_;
  std::vector<std::int64_t> pint_;
  std::vector<double> pdbl_;
  std::vector<unsigned char> pbool_;

  std::vector<Cached> cache_;
  std::uint64_t use_counter_ = 0;
};

}  // namespace dbmgr::daemon
