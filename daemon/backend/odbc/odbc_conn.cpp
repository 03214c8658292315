// ODBC backend: connection, transactions, statements and block fetch on the worker pool.
#include "backend/odbc/odbc_conn.hpp"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <map>
#include <thread>
#include <cstdlib>
#include <cstring>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "backend/blocking_pool.hpp"
#include "backend/sql_scan.hpp"
#include "backend/sqlstate.hpp"

namespace dbmgr::daemon {
namespace {

bool ok(SQLRETURN rc) { return rc == SQL_SUCCESS || rc == SQL_SUCCESS_WITH_INFO; }

// "[ma-3.1.15][10.11.6-MariaDB]Duplicate entry..." -> "Duplicate entry...": the driver's
// and server's tags say nothing a person needs.
std::string_view strip_tags(std::string_view m) {
  while (!m.empty() && m.front() == '[') {
    auto close = m.find(']');
    if (close == std::string_view::npos) break;
    m.remove_prefix(close + 1);
  }
  while (!m.empty() && m.front() == ' ') m.remove_prefix(1);
  return m;
}

proto::ValueTag tag_of(SQLSMALLINT type) {
  switch (type) {
    case SQL_BIT: return proto::ValueTag::kBool;
    case SQL_TINYINT:
    case SQL_SMALLINT:
    case SQL_INTEGER: return proto::ValueTag::kInt64;
    case SQL_BIGINT: return proto::ValueTag::kInt64;  // unsigned past INT64_MAX: as text
    case SQL_REAL:
    case SQL_FLOAT:
    case SQL_DOUBLE: return proto::ValueTag::kDouble;
    case SQL_BINARY:
    case SQL_VARBINARY:
    case SQL_LONGVARBINARY: return proto::ValueTag::kBlob;
    default: return proto::ValueTag::kText;  // character, decimal, date/time, GUID...
  }
}

// statement_timeout: drivers do not all honour SQL_ATTR_QUERY_TIMEOUT (MariaDB Connector/ODBC
// 3.1 ignores it), so one thread cancels statements that run past their deadline.
class Watchdog {
 public:
  using Target = std::shared_ptr<OdbcConn::CancelTarget>;
  using Clock = std::chrono::steady_clock;
  struct Entry {
    Target target;
    std::uint64_t seq;
    bool fired = false;
  };
  using Key = std::multimap<Clock::time_point, Entry>::iterator;

  static Watchdog& instance() {
    static Watchdog* w = new Watchdog;  // lives as long as the process
    return *w;
  }
  // Every arm() is followed by one disarm() of its key (the entry stays until then, fired
  // or not).
  Key arm(Target t, std::uint64_t seq, Clock::time_point deadline) {
    std::lock_guard<std::mutex> lock(mu_);
    Key k = due_.emplace(deadline, Entry{std::move(t), seq});
    cv_.notify_one();
    return k;
  }
  void disarm(Key k) {
    std::lock_guard<std::mutex> lock(mu_);
    due_.erase(k);
  }

 private:
  Watchdog() { std::thread([this] { run(); }).detach(); }
  void run() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      auto next = std::find_if(due_.begin(), due_.end(), [](const auto& e) { return !e.second.fired; });
      if (next == due_.end()) {
        cv_.wait(lock);
        continue;
      }
      const Clock::time_point when = next->first;  // a copy: the entry may go while we wait
      if (Clock::now() < when) {
        cv_.wait_until(lock, when);
        continue;
      }
      next->second.fired = true;
      Target target = next->second.target;
      const std::uint64_t seq = next->second.seq;
      lock.unlock();
      {
        std::lock_guard<std::mutex> t(target->mu);
        if (target->seq == seq && target->running != SQL_NULL_HSTMT) {
          target->timed_out = true;
          target->cancelled = true;
          SQLCancel(target->running);
        }
      }
      lock.lock();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::multimap<Clock::time_point, Entry> due_;
};

}  // namespace

SQLHENV OdbcConn::environment() {
  static SQLHENV env = [] {
    // Driver-manager pooling off: the daemon pools connections itself.
    SQLSetEnvAttr(SQL_NULL_HANDLE, SQL_ATTR_CONNECTION_POOLING,
                  reinterpret_cast<SQLPOINTER>(SQL_CP_OFF), SQL_IS_UINTEGER);
    SQLHENV e = SQL_NULL_HENV;
    if (!ok(SQLAllocHandle(SQL_HANDLE_ENV, SQL_NULL_HANDLE, &e))) return SQLHENV{SQL_NULL_HENV};
    SQLSetEnvAttr(e, SQL_ATTR_ODBC_VERSION, reinterpret_cast<SQLPOINTER>(SQL_OV_ODBC3), 0);
    return e;
  }();
  return env;
}

OdbcConn::OdbcConn(uv_loop_t* loop, OdbcParams params)
    : WorkerConn(loop, "ODBC", Threads::kBlocking), params_(std::move(params)) {}

OdbcConn::~OdbcConn() = default;

// ---- loop thread ----

void OdbcConn::do_execute(const ExecRequest& req) {
  req_ = req;
  ++exec_gen_;
  queue(BackendOp::kExecute);
}

void OdbcConn::do_resume() {
  queue(BackendOp::kExecute);  // the same request: exec_gen_ stays
}

void OdbcConn::do_cancel() {
  if (!job_running()) return;
  // SQLCancel may block (MariaDB's driver connects to the server to KILL QUERY): it runs on
  // a worker thread, holding only the shared target, so it may outlive this connection.
  // The request it is meant for: a cancel that runs after that request ended must not hit
  // the next user's statement.
  struct Job {
    std::shared_ptr<CancelTarget> target;
    std::uint64_t gen;
  };
  blocking::submit(
      loop(), new Job{cancel_, exec_gen_},
      [](void* p) {
        auto* j = static_cast<Job*>(p);
        std::lock_guard<std::mutex> lock(j->target->mu);
        if (j->target->running != SQL_NULL_HSTMT && j->target->gen == j->gen) {
          j->target->cancelled = true;
          SQLCancel(j->target->running);
        }
      },
      [](void* p) { delete static_cast<Job*>(p); });
}

// ---- worker thread ----

void OdbcConn::work(BackendOp op) {
  switch (op) {
    case BackendOp::kOpen: work_open(); break;
    case BackendOp::kExecute: work_execute(); break;
    case BackendOp::kCommit: work_end(true); break;
    case BackendOp::kRollback: work_end(false); break;
    case BackendOp::kPing: work_ping(); break;
    case BackendOp::kReset: work_reset(); break;
    case BackendOp::kGroup: result_.status = Status::internal("no group commit on ODBC"); break;
    case BackendOp::kBatch: result_.status = Status::internal("no batches on ODBC"); break;
  }
  result_.in_transaction = in_tx_;
}

void OdbcConn::work_close() {
  running(SQL_NULL_HSTMT);
  // A transaction still open is rolled back first: a driver may refuse to disconnect with
  // one open (25000), and the handle would leak. (An unfinished stream is not: that would
  // read the rest of it; the server rolls back when the connection goes.)
  if (connected_ && in_tx_ && !streaming_) end_tx(false).is_ok();
  // SQLFreeHandle refuses a handle that is still connected (HY010): without SQLDisconnect
  // the server's session stayed, with its open transaction and its locks.
  disconnect();
  if (dbc_ != SQL_NULL_HDBC) SQLFreeHandle(SQL_HANDLE_DBC, dbc_);
  dbc_ = SQL_NULL_HDBC;
}

Status OdbcConn::diag(SQLSMALLINT type, SQLHANDLE h, std::string_view what) {
  SQLCHAR state[6] = {0};
  SQLINTEGER native = 0;
  SQLCHAR msg[1024] = {0};
  SQLSMALLINT len = 0;
  SQLRETURN rc = SQLGetDiagRec(type, h, 1, state, &native, msg, sizeof msg, &len);
  last_native_ = 0;
  if (!ok(rc)) {
    return Status::internal(fmt::format("{}: the ODBC driver reported an error without a "
                                        "diagnostic record", what));
  }
  last_native_ = native;
  spdlog::debug("ODBC {}: [{}] native {}: {}", what.empty() ? "error" : what,
                reinterpret_cast<char*>(state), native, reinterpret_cast<char*>(msg));
  std::string sqlstate(reinterpret_cast<char*>(state));
  std::string message(strip_tags(reinterpret_cast<char*>(msg)));
  // Server errors that the SQLSTATE alone does not tell apart.
  proto::ErrorCategory cat = category_of_sqlstate(sqlstate);
  if (params_.flavor == OdbcParams::Flavor::kMariadb) {
    switch (native) {
      case 1969:  // ER_STATEMENT_TIMEOUT (max_statement_time)
      case 3024:  // MySQL: maximum statement execution time exceeded
        cat = proto::ErrorCategory::kTimeout;
        sqlstate = "57014";
        break;
      case 1317:  // ER_QUERY_INTERRUPTED (KILL QUERY, SQLCancel)
        cat = proto::ErrorCategory::kCancelled;
        sqlstate = "57014";
        break;
      case 1792:  // ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION
        sqlstate = "25006";
        cat = category_of_sqlstate(sqlstate);
        break;
      case 1205:  // ER_LOCK_WAIT_TIMEOUT
        cat = proto::ErrorCategory::kTimeout;
        break;
      case 1049:  // ER_BAD_DB_ERROR
        cat = proto::ErrorCategory::kNotFound;
        break;
      case 1045:  // ER_ACCESS_DENIED_ERROR
        cat = proto::ErrorCategory::kPermission;
        break;
      default: break;
    }
  }
  if (what.empty()) return Status(cat, std::move(message), std::move(sqlstate));
  return Status(cat, fmt::format("{}: {}", what, message), std::move(sqlstate));
}

bool OdbcConn::broken_error(const Status& s, SQLINTEGER native) const {
  if (s.sqlstate().rfind("08", 0) == 0) return true;
  if (params_.flavor == OdbcParams::Flavor::kMariadb) {
    // Server gone away, lost connection, connection killed, client interaction timeout.
    return native == 2006 || native == 2013 || native == 2055 || native == 1927 ||
           native == 4031;
  }
  return false;
}

void OdbcConn::fail(Status s) {
  const SQLINTEGER native = last_native_;
  // After SQLCancel the driver or the driver manager may report anything (HY008, 1317, or
  // HY010 from the next call on the handle): the cause is the cancel.
  if (timed_out_) {
    s = Status(proto::ErrorCategory::kTimeout,
               fmt::format("statement_timeout ({} ms) reached; the statement was cancelled",
                           params_.statement_timeout.count()),
               "57014");
  } else if (stmt_cancelled_ && s.category() != proto::ErrorCategory::kCancelled) {
    s = Status(proto::ErrorCategory::kCancelled, "the statement was cancelled", "57014");
  }
  timed_out_ = false;
  close_cursor();
  drop_cancelled_handle();
  streaming_ = false;
  writer_.discard();
  result_.more = false;
  if (broken_error(s, native)) {
    result_.broken = true;
    in_tx_ = false;
    result_.status = std::move(s);
    return;
  }
  // An error ends the transaction: roll back whatever this one did (and what SQL may have
  // begun).
  if (tx_control_ && !in_tx_) learn_tx_state();
  if (in_tx_ && !end_tx(false).is_ok()) result_.broken = true;
  in_tx_ = false;
  result_.status = std::move(s);
}

Status OdbcConn::driver_connect(const odbc::ConnString& cs) {
  if (dbc_ == SQL_NULL_HDBC) {
    SQLHENV env = environment();
    if (env == SQL_NULL_HENV) return Status::internal("cannot make an ODBC environment");
    if (!ok(SQLAllocHandle(SQL_HANDLE_DBC, env, &dbc_))) {
      dbc_ = SQL_NULL_HDBC;
      return Status::internal("cannot make an ODBC connection handle");
    }
  }
  auto secs = static_cast<SQLULEN>(std::max<std::int64_t>(1, (params_.connect_timeout.count() + 999) / 1000));
  SQLSetConnectAttr(dbc_, SQL_ATTR_LOGIN_TIMEOUT, reinterpret_cast<SQLPOINTER>(secs), 0);
  SQLSetConnectAttr(dbc_, SQL_ATTR_CONNECTION_TIMEOUT, reinterpret_cast<SQLPOINTER>(secs), 0);
  SQLCHAR out[1024];
  SQLSMALLINT outlen = 0;
  SQLRETURN rc = SQLDriverConnect(dbc_, nullptr,
                                  reinterpret_cast<SQLCHAR*>(const_cast<char*>(cs.text.c_str())),
                                  static_cast<SQLSMALLINT>(cs.text.size()), out, sizeof out,
                                  &outlen, SQL_DRIVER_NOPROMPT);
  if (!ok(rc)) {
    Status s = diag(SQL_HANDLE_DBC, dbc_, "");
    // The message is the driver's; the connection string is shown masked, never the password.
    return Status(s.category() == proto::ErrorCategory::kInternal ||
                          s.category() == proto::ErrorCategory::kSyntax
                      ? proto::ErrorCategory::kConnection
                      : s.category(),
                  fmt::format("cannot connect to {} ({}): {}", params_.dbname, cs.masked,
                              s.message()),
                  s.sqlstate());
  }
  connected_ = true;
  autocommit_ = true;
  in_tx_ = false;
  return Status::ok();
}

Status OdbcConn::connect() {
  Status s = driver_connect(params_.connect);
  const bool missing_db = !s.is_ok() && params_.flavor == OdbcParams::Flavor::kMariadb
                              ? last_native_ == 1049
                              : !s.is_ok() && params_.flavor == OdbcParams::Flavor::kMssql &&
                                    last_native_ == 4060;
  if (!s.is_ok() && missing_db && params_.create_if_missing) {
    if (Status c = create_database(); !c.is_ok()) return c;
    s = driver_connect(params_.connect);
  }
  if (!s.is_ok()) return s;
  if (!ok(SQLAllocHandle(SQL_HANDLE_STMT, dbc_, &scratch_))) {
    scratch_ = SQL_NULL_HSTMT;
    return Status::internal("cannot make an ODBC statement handle");
  }
  learn_server();
  return Status::ok();
}

Status OdbcConn::create_database() {
  Status s = driver_connect(params_.maintenance);
  if (!s.is_ok()) return s;
  if (!ok(SQLAllocHandle(SQL_HANDLE_STMT, dbc_, &scratch_))) {
    scratch_ = SQL_NULL_HSTMT;
    disconnect();
    return Status::internal("cannot make an ODBC statement handle");
  }
  std::string sql = odbc::create_database_sql(
      params_.flavor == OdbcParams::Flavor::kMssql ? config::DbType::kMssql
                                                   : config::DbType::kMariadb,
      params_.dbname);
  s = exec_direct(sql);
  disconnect();
  if (!s.is_ok()) {
    return Status(s.category(),
                  fmt::format("cannot create database {}: {}", params_.dbname, s.message()),
                  s.sqlstate());
  }
  return Status::ok();
}

void OdbcConn::learn_server() {
  SQLCHAR buf[256] = {0};
  SQLSMALLINT len = 0;
  if (ok(SQLGetInfo(dbc_, SQL_DBMS_VER, buf, sizeof buf, &len))) {
    version_ = reinterpret_cast<char*>(buf);
  }
  if (params_.flavor == OdbcParams::Flavor::kMariadb) {
    // The server's connection id (for dbmgrctl servers and KILL), and how long it lets an
    // idle connection live (wait_timeout): the pool retires connections before that.
    const char* sql = "SELECT CONNECTION_ID(), @@wait_timeout";
    if (ok(SQLExecDirect(scratch_, reinterpret_cast<SQLCHAR*>(const_cast<char*>(sql)), SQL_NTS)) &&
        ok(SQLFetch(scratch_))) {
      SQLBIGINT id = 0;
      SQLBIGINT wait = 0;
      SQLLEN ind = 0;
      if (ok(SQLGetData(scratch_, 1, SQL_C_SBIGINT, &id, sizeof id, &ind))) backend_id_ = id;
      if (ok(SQLGetData(scratch_, 2, SQL_C_SBIGINT, &wait, sizeof wait, &ind)) && wait > 0) {
        idle_limit_ = std::chrono::milliseconds(wait * 900);
      }
    }
    SQLFreeStmt(scratch_, SQL_CLOSE);
  }
}

void OdbcConn::disconnect() {
  free_cache();
  if (scratch_ != SQL_NULL_HSTMT) SQLFreeHandle(SQL_HANDLE_STMT, scratch_);
  scratch_ = SQL_NULL_HSTMT;
  if (connected_ && !ok(SQLDisconnect(dbc_))) {
    SQLEndTran(SQL_HANDLE_DBC, dbc_, SQL_ROLLBACK);
    SQLDisconnect(dbc_);
  }
  connected_ = false;
  in_tx_ = false;
  autocommit_ = true;
  dirty_ = false;
}

void OdbcConn::free_cache() {
  std::lock_guard<std::mutex> lock(cancel_->mu);
  cancel_->running = SQL_NULL_HSTMT;
  for (Cached& c : cache_) {
    if (c.stmt != SQL_NULL_HSTMT) SQLFreeHandle(SQL_HANDLE_STMT, c.stmt);
  }
  cache_.clear();
  if (direct_ != SQL_NULL_HSTMT) SQLFreeHandle(SQL_HANDLE_STMT, direct_);
  direct_ = SQL_NULL_HSTMT;
  stmt_ = SQL_NULL_HSTMT;
  streaming_ = false;
}

void OdbcConn::work_open() {
  Status s = connect();
  if (!s.is_ok()) {
    disconnect();
    result_.status = std::move(s);
    result_.broken = true;
  }
}

Status OdbcConn::exec_direct(std::string_view sql) {
  SQLRETURN rc = SQLExecDirect(scratch_, reinterpret_cast<SQLCHAR*>(const_cast<char*>(sql.data())),
                               static_cast<SQLINTEGER>(sql.size()));
  Status s = ok(rc) || rc == SQL_NO_DATA ? Status::ok() : diag(SQL_HANDLE_STMT, scratch_, "");
  SQLFreeStmt(scratch_, SQL_CLOSE);
  return s;
}

Status OdbcConn::set_autocommit(bool on) {
  SQLRETURN rc = SQLSetConnectAttr(
      dbc_, SQL_ATTR_AUTOCOMMIT,
      reinterpret_cast<SQLPOINTER>(static_cast<SQLULEN>(on ? SQL_AUTOCOMMIT_ON : SQL_AUTOCOMMIT_OFF)),
      SQL_IS_UINTEGER);
  if (!ok(rc)) return diag(SQL_HANDLE_DBC, dbc_, "cannot switch autocommit");
  autocommit_ = on;
  return Status::ok();
}

Status OdbcConn::prepare(std::string_view sql, bool cacheable, SQLHSTMT* out) {
  if (!cacheable || direct_exec()) {  // on the connection's own uncached handle
    if (direct_ == SQL_NULL_HSTMT && !ok(SQLAllocHandle(SQL_HANDLE_STMT, dbc_, &direct_))) {
      direct_ = SQL_NULL_HSTMT;
      return diag(SQL_HANDLE_DBC, dbc_, "cannot make a statement handle");
    }
    if (direct_exec()) {  // prepared and run in one call, by run()
      *out = direct_;
      return Status::ok();
    }
    if (!ok(SQLPrepare(direct_, reinterpret_cast<SQLCHAR*>(const_cast<char*>(sql.data())),
                       static_cast<SQLINTEGER>(sql.size())))) {
      return diag(SQL_HANDLE_STMT, direct_, "");
    }
    *out = direct_;
    return Status::ok();
  }
  ++use_counter_;
  for (Cached& c : cache_) {
    if (c.sql == sql) {
      c.used = use_counter_;
      *out = c.stmt;
      return Status::ok();
    }
  }
  if (cache_.size() >= kStmtCacheSize) {  // evict the least recently used
    auto lru = std::min_element(cache_.begin(), cache_.end(),
                                [](const Cached& a, const Cached& b) { return a.used < b.used; });
    std::lock_guard<std::mutex> lock(cancel_->mu);
    SQLFreeHandle(SQL_HANDLE_STMT, lru->stmt);
    cache_.erase(lru);
  }
  SQLHSTMT st = SQL_NULL_HSTMT;
  if (!ok(SQLAllocHandle(SQL_HANDLE_STMT, dbc_, &st))) {
    return diag(SQL_HANDLE_DBC, dbc_, "cannot make a statement handle");
  }
  SQLRETURN rc = SQLPrepare(st, reinterpret_cast<SQLCHAR*>(const_cast<char*>(sql.data())),
                            static_cast<SQLINTEGER>(sql.size()));
  if (!ok(rc)) {
    Status s = diag(SQL_HANDLE_STMT, st, "");
    SQLFreeHandle(SQL_HANDLE_STMT, st);
    return s;
  }
  cache_.push_back(Cached{std::string(sql), st, use_counter_});
  *out = st;
  return Status::ok();
}

Status OdbcConn::bind_params(SQLHSTMT st, const proto::ValueList& params) {
  SQLFreeStmt(st, SQL_RESET_PARAMS);
  const std::size_t n = params.size();
  // Drivers ignore parameters past the markers and report too few in their own words (07002,
  // or MariaDB's "Malformed communication packet" when the statement goes with
  // SQLExecDirect): the `?` of req_ outside literals and comments are counted here (not by
  // SQLNumParams, which a direct handle answers for its previous statement), and a mismatch
  // told as SQLite and PostgreSQL tell it.
  thread_local std::string blanked;
  if (sqlscan::blank_opaque(req_.sql, params_.dialect->lexing, blanked)) {
    const auto markers = static_cast<std::size_t>(std::count(blanked.begin(), blanked.end(), '?'));
    if (markers != n) {
      return Status(proto::ErrorCategory::kInvalidRequest,
                    fmt::format("the statement has {} parameter(s), {} given", markers, n),
                    "07001");
    }
  }
  pind_.resize(n);
  pint_.resize(n);
  pdbl_.resize(n);
  pbool_.resize(n);
  static char empty[1] = {0};
  SQLUSMALLINT i = 0;
  for (proto::Value v : params) {
    SQLSMALLINT ctype = SQL_C_CHAR;
    SQLSMALLINT stype = SQL_VARCHAR;
    SQLULEN size = 1;
    SQLPOINTER ptr = empty;
    SQLLEN buflen = 0;
    SQLLEN& ind = pind_[i];
    switch (v.tag) {
      case proto::ValueTag::kNull:
        ind = SQL_NULL_DATA;
        break;
      case proto::ValueTag::kBool:
        pbool_[i] = v.b ? 1 : 0;
        ctype = SQL_C_BIT;
        stype = SQL_BIT;
        ptr = &pbool_[i];
        ind = 1;
        break;
      case proto::ValueTag::kInt64:
        pint_[i] = v.i;
        ctype = SQL_C_SBIGINT;
        stype = SQL_BIGINT;
        size = 19;
        ptr = &pint_[i];
        ind = sizeof(std::int64_t);
        break;
      case proto::ValueTag::kDouble:
        pdbl_[i] = v.d;
        ctype = SQL_C_DOUBLE;
        stype = SQL_DOUBLE;
        size = 15;
        ptr = &pdbl_[i];
        ind = sizeof(double);
        break;
      case proto::ValueTag::kText:
      case proto::ValueTag::kBlob: {
        const bool text = v.tag == proto::ValueTag::kText;
        ctype = text ? SQL_C_CHAR : SQL_C_BINARY;
        const bool lng = v.bytes.size() > 4000;
        stype = text ? (lng ? SQL_LONGVARCHAR : SQL_VARCHAR)
                     : (lng ? SQL_LONGVARBINARY : SQL_VARBINARY);
        size = std::max<SQLULEN>(1, v.bytes.size());
        ptr = v.bytes.empty() ? static_cast<SQLPOINTER>(empty)
                              : const_cast<char*>(v.bytes.data());
        buflen = static_cast<SQLLEN>(v.bytes.size());
        ind = static_cast<SQLLEN>(v.bytes.size());
        break;
      }
    }
    ++i;
    SQLRETURN rc = SQLBindParameter(st, i, SQL_PARAM_INPUT, ctype, stype, size, 0, ptr, buflen,
                                    &ind);
    if (!ok(rc)) return diag(SQL_HANDLE_STMT, st, fmt::format("cannot bind parameter {}", i));
  }
  return Status::ok();
}

void OdbcConn::running(SQLHSTMT st) {
  std::lock_guard<std::mutex> lock(cancel_->mu);
  if (st == SQL_NULL_HSTMT && cancel_->cancelled) {
    stmt_cancelled_ = true;
    cancelled_handle_ = cancel_->running;
  }
  cancel_->running = st;
  cancel_->cancelled = false;
  ++cancel_->seq;  // a watchdog entry of an earlier step no longer matches
}

void OdbcConn::drop_cancelled_handle() {
  if (!stmt_cancelled_) return;
  stmt_cancelled_ = false;
  SQLHSTMT h = cancelled_handle_;
  cancelled_handle_ = SQL_NULL_HSTMT;
  if (h == SQL_NULL_HSTMT) return;
  std::lock_guard<std::mutex> lock(cancel_->mu);
  if (h == direct_) {
    SQLFreeHandle(SQL_HANDLE_STMT, direct_);
    direct_ = SQL_NULL_HSTMT;
    return;
  }
  for (auto it = cache_.begin(); it != cache_.end(); ++it) {
    if (it->stmt == h) {
      SQLFreeHandle(SQL_HANDLE_STMT, it->stmt);
      cache_.erase(it);
      return;
    }
  }
}

Status OdbcConn::run(SQLHSTMT st) {
  std::uint64_t seq = 0;
  {
    std::lock_guard<std::mutex> lock(cancel_->mu);
    cancel_->running = st;
    cancel_->gen = exec_gen_;
    seq = ++cancel_->seq;
    cancel_->timed_out = false;
    cancel_->cancelled = false;
  }
  const bool timed = params_.statement_timeout.count() > 0;
  Watchdog::Key key{};
  if (timed) {
    key = Watchdog::instance().arm(cancel_, seq,
                                   Watchdog::Clock::now() + params_.statement_timeout);
  }
  SQLRETURN rc = direct_exec() && st == direct_
                     ? SQLExecDirect(st, reinterpret_cast<SQLCHAR*>(const_cast<char*>(req_.sql.data())),
                                     static_cast<SQLINTEGER>(req_.sql.size()))
                     : SQLExecute(st);
  if (timed) Watchdog::instance().disarm(key);
  bool timed_out = false;
  {
    std::lock_guard<std::mutex> lock(cancel_->mu);
    if (cancel_->cancelled) {
      stmt_cancelled_ = true;
      cancelled_handle_ = st;
    }
    cancel_->running = SQL_NULL_HSTMT;
    ++cancel_->seq;  // disarmed: a watchdog that took the entry just now no longer matches
    timed_out = cancel_->timed_out;
  }
  timed_out_ = timed_out;
  // A statement that finished although it was cancelled (MariaDB's SLEEP() and BENCHMARK()
  // return early) succeeded: its result stands, if the driver still gives it.
  if (ok(rc) || rc == SQL_NO_DATA) return Status::ok();
  return diag(SQL_HANDLE_STMT, st, "");
}

void OdbcConn::close_cursor() {
  if (stmt_ != SQL_NULL_HSTMT) {
    SQLFreeStmt(stmt_, SQL_CLOSE);
    SQLFreeStmt(stmt_, SQL_UNBIND);
    // Back to one row per fetch for the statement's next use.
    SQLSetStmtAttr(stmt_, SQL_ATTR_ROW_ARRAY_SIZE, reinterpret_cast<SQLPOINTER>(1), 0);
    SQLSetStmtAttr(stmt_, SQL_ATTR_ROWS_FETCHED_PTR, nullptr, 0);
  }
  stmt_ = SQL_NULL_HSTMT;
  streaming_ = false;
}

void OdbcConn::work_execute() {
  result_.frames.bytes();
  if (streaming_) {  // resume(): the next batch of the same result
    writer_.start(result_.frames.bytes());
    Status s = fetch_rows();
    if (!s.is_ok()) return fail(std::move(s));
    if (!result_.more) finish_request(rows_);
    return;
  }
  if (!connected_) {
    result_.status = Status::connection("the database connection is closed");
    result_.broken = true;
    return;
  }
  writer_.begin(req_.request_id, req_.session_id, params_.max_frame_bytes);
  writer_.start(result_.frames.bytes());
  last_native_ = 0;
  stmt_cancelled_ = false;
  timed_out_ = false;
  tx_control_ = tx_control_sql(req_.sql, &tx_ends_);
  if (req_.read_only && params_.dialect->begin_read_only.empty()) {
    return fail(Status::invalid(
        "this database's server has no read-only transactions; dbmgrd cannot make this "
        "session read-only"));
  }
  if (req_.read_only && params_.flavor == OdbcParams::Flavor::kMariadb) {
    if (Status s = read_only_check(req_.sql); !s.is_ok()) return fail(std::move(s));
  }
  if (req_.begin == TxBegin::kBegin) {
    if (autocommit_) {
      if (Status s = set_autocommit(false); !s.is_ok()) return fail(std::move(s));
    }
    in_tx_ = true;
    if (req_.read_only) {
      if (Status s = exec_direct(params_.dialect->begin_read_only); !s.is_ok()) {
        return fail(std::move(s));
      }
    }
  } else if (!in_tx_ && !autocommit_) {
    // A one-shot in autocommit: the statement is its own transaction.
    if (Status s = set_autocommit(true); !s.is_ok()) return fail(std::move(s));
  }
  if (sqlscan::changes_session_state(req_.sql, params_.dialect->lexing)) dirty_ = true;
  // A cached statement whose tables changed may bring new result columns the driver cannot
  // fetch into the old ones (MariaDB: CR_NEW_STMT_METADATA, 2057). Nothing reached the
  // client then: the statement is prepared afresh and run once more. Only statements that are
  // harmless to run twice are cached: not CALL, not DML with RETURNING (prepared each time).
  const bool cacheable = cacheable_sql(req_.sql);
  result_.statements++;
  for (int attempt = 0;; ++attempt) {
    bool done = false;
    Status s = start_statement(cacheable, &done);
    if (s.is_ok()) {
      if (done || !result_.more) finish_request(done ? affected_ : rows_);
      return;
    }
    if (attempt == 0 && cacheable && params_.flavor == OdbcParams::Flavor::kMariadb &&
        last_native_ == 2057) {
      spdlog::debug("ODBC: the result columns of a cached statement changed; preparing again");
      close_cursor();
      evict(req_.sql);
      writer_.discard();
      writer_.begin(req_.request_id, req_.session_id, params_.max_frame_bytes);
      writer_.start(result_.frames.bytes());
      result_.more = false;
      continue;
    }
    return fail(std::move(s));
  }
}

Status OdbcConn::read_only_check(std::string_view sql) const {
  thread_local std::string blanked;
  sqlscan::blank_opaque(sql, params_.dialect->lexing, blanked);
  const std::string_view b = blanked;
  // Statement by statement: a `;` outside literals and comments ends one.
  for (std::size_t start = 0; start < b.size();) {
    std::size_t stop = b.find(';', start);
    if (stop == std::string_view::npos) stop = b.size();
    const std::string_view stmt = b.substr(start, stop - start);
    std::size_t end = 0;
    const std::string_view w = sqlscan::first_word(stmt, &end);
    std::string_view refused;
    bool ends = false;
    if (sqlscan::word_is(w, "CALL") || sqlscan::word_is(w, "EXECUTE")) {
      refused = sqlscan::word_is(w, "CALL") ? "CALL" : "EXECUTE";
    } else if (sqlscan::word_is(w, "SET") &&
               (sqlscan::word_is(sqlscan::first_word(stmt, nullptr, end), "STATEMENT") ||
                sqlscan::has_word(stmt, "TRANSACTION") || sqlscan::has_word(stmt, "TX_READ_ONLY") ||
                sqlscan::has_word(stmt, "TRANSACTION_READ_ONLY") ||
                sqlscan::has_word(stmt, "AUTOCOMMIT"))) {
      refused = "SET STATEMENT, SET TRANSACTION or SET autocommit";
    } else if (!w.empty() && tx_control_sql(sql.substr(start, stop - start), &ends)) {
      refused = "SQL that begins or ends a transaction (DDL included)";
    }
    if (!refused.empty()) {
      return Status(proto::ErrorCategory::kReadOnly,
                    fmt::format("the session is read-only: {} is refused in a read-only "
                                "session on MariaDB/MySQL (the server would let it end the "
                                "read-only transaction and go on read-write)",
                                refused),
                    "25006");
    }
    start = stop + 1;
  }
  return Status::ok();
}

bool OdbcConn::cacheable_sql(std::string_view sql) const {
  thread_local std::string b;
  sqlscan::blank_opaque(sql, params_.dialect->lexing, b);
  std::string_view w = sqlscan::first_word(b);
  if (sqlscan::word_is(w, "CALL") || sqlscan::word_is(w, "EXEC") ||
      sqlscan::word_is(w, "EXECUTE")) {
    return false;
  }
  return !sqlscan::has_word(b, "RETURNING") && !sqlscan::has_word(b, "OUTPUT");
}

void OdbcConn::evict(std::string_view sql) {
  std::lock_guard<std::mutex> lock(cancel_->mu);
  for (auto it = cache_.begin(); it != cache_.end(); ++it) {
    if (it->sql == sql) {
      SQLFreeHandle(SQL_HANDLE_STMT, it->stmt);
      cache_.erase(it);
      return;
    }
  }
}

Status OdbcConn::start_statement(bool cacheable, bool* done) {
  SQLHSTMT st = SQL_NULL_HSTMT;
  if (Status s = prepare(req_.sql, cacheable, &st); !s.is_ok()) return s;
  if (Status s = bind_params(st, req_.params); !s.is_ok()) return s;
  stmt_ = st;
  if (Status s = run(st); !s.is_ok()) return s;
  SQLSMALLINT ncols = 0;
  if (!ok(SQLNumResultCols(st, &ncols))) return diag(SQL_HANDLE_STMT, st, "");
  if (ncols == 0) {
    SQLLEN count = 0;
    if (!ok(SQLRowCount(st, &count))) count = 0;
    writer_.no_columns();
    affected_ = count;  // -1: the driver does not know (protocol.md, kComplete)
    *done = true;
    return Status::ok();
  }
  if (static_cast<std::size_t>(ncols) > proto::kMaxColumns) {
    return ResultWriter::too_many_columns(static_cast<std::size_t>(ncols));
  }
  if (Status s = describe(st, ncols); !s.is_ok()) return s;
  if (Status s = writer_.columns(descs_.data(), descs_.size()); !s.is_ok()) return s;
  streaming_ = true;
  rows_ = 0;
  fetched_ = 0;
  pos_ = 0;
  row_ready_ = false;
  return fetch_rows();
}

Status OdbcConn::describe(SQLHSTMT st, SQLSMALLINT ncols) {
  const auto n = static_cast<std::size_t>(ncols);
  cols_.resize(n);
  descs_.resize(n);
  cells_.resize(n);
  SQLULEN row_width = 0;
  block_ = true;
  for (std::size_t c = 0; c < n; ++c) {
    SQLCHAR name[256] = {0};
    SQLSMALLINT name_len = 0;
    SQLSMALLINT type = 0;
    SQLULEN size = 0;
    SQLSMALLINT digits = 0;
    SQLSMALLINT nullable = 0;
    auto col = static_cast<SQLUSMALLINT>(c + 1);
    if (!ok(SQLDescribeCol(st, col, name, sizeof name, &name_len, &type, &size, &digits,
                           &nullable))) {
      return diag(SQL_HANDLE_STMT, st, "cannot describe the result");
    }
    SQLLEN is_unsigned = SQL_FALSE;
    SQLColAttribute(st, col, SQL_DESC_UNSIGNED, nullptr, 0, nullptr, &is_unsigned);
    Column& k = cols_[c];
    k.name.assign(reinterpret_cast<char*>(name));
    k.tag = tag_of(type);
    k.unsigned_big = type == SQL_BIGINT && is_unsigned == SQL_TRUE;
    switch (k.tag) {
      case proto::ValueTag::kBool: k.ctype = SQL_C_BIT; k.width = 1; break;
      case proto::ValueTag::kInt64:
        k.ctype = k.unsigned_big ? SQL_C_UBIGINT : SQL_C_SBIGINT;
        k.width = 8;
        break;
      case proto::ValueTag::kDouble: k.ctype = SQL_C_DOUBLE; k.width = 8; break;
      case proto::ValueTag::kBlob:
        k.ctype = SQL_C_BINARY;
        k.width = size > 0 && size <= kBoundedCell ? size : 0;
        break;
      default:
        k.ctype = SQL_C_CHAR;
        // Characters may take up to 4 bytes in UTF-8, plus the terminator; decimals and
        // date/times their digits and punctuation.
        k.width = size > 0 && size <= kBoundedCell ? size * 4 + 8 : 0;
        break;
    }
    if (k.width == 0) block_ = false;
    row_width += k.width + sizeof(SQLLEN);
    descs_[c] = proto::ColumnDesc{k.name, k.tag};
  }
  if (!block_) return Status::ok();
  // Rows per fetch: as many as fit a batch, at most kMaxBlockRows.
  SQLULEN rows = std::clamp<SQLULEN>(proto::kMaxRowBatchBytes / std::max<SQLULEN>(1, row_width),
                                     1, kMaxBlockRows);
  SQLSetStmtAttr(st, SQL_ATTR_ROW_BIND_TYPE, reinterpret_cast<SQLPOINTER>(SQL_BIND_BY_COLUMN), 0);
  if (!ok(SQLSetStmtAttr(st, SQL_ATTR_ROW_ARRAY_SIZE, reinterpret_cast<SQLPOINTER>(rows), 0))) {
    block_ = false;  // the driver fetches one row at a time only
    return Status::ok();
  }
  SQLSetStmtAttr(st, SQL_ATTR_ROWS_FETCHED_PTR, &fetched_, 0);
  for (std::size_t c = 0; c < n; ++c) {
    Column& k = cols_[c];
    k.data.resize(k.width * rows);
    k.ind.resize(rows);
    if (!ok(SQLBindCol(st, static_cast<SQLUSMALLINT>(c + 1), k.ctype, k.data.data(),
                       static_cast<SQLLEN>(k.width), k.ind.data()))) {
      return diag(SQL_HANDLE_STMT, st, "cannot bind a result column");
    }
  }
  return Status::ok();
}

// A BIGINT UNSIGNED value past INT64_MAX goes out as its digits (text).
void OdbcConn::unsigned_past_int64(const Column& k, Cell* out) {
  if (!k.unsigned_big || out->i >= 0) return;
  out->bytes = std::to_string(static_cast<std::uint64_t>(out->i));
  out->view = out->bytes;
  out->tag = proto::ValueTag::kText;
}

Status OdbcConn::read_cell(std::size_t c, Cell* out) {
  Column& k = cols_[c];
  if (block_) {
    SQLLEN ind = k.ind[pos_];
    const char* p = k.data.data() + pos_ * k.width;
    if (ind == SQL_NULL_DATA) {
      out->tag = proto::ValueTag::kNull;
      return Status::ok();
    }
    out->tag = k.tag;
    switch (k.tag) {
      case proto::ValueTag::kBool: out->b = *reinterpret_cast<const unsigned char*>(p) != 0; break;
      case proto::ValueTag::kInt64:
        std::memcpy(&out->i, p, 8);
        unsigned_past_int64(k, out);
        break;
      case proto::ValueTag::kDouble: std::memcpy(&out->d, p, 8); break;
      default: {
        const SQLLEN room = static_cast<SQLLEN>(k.width) - (k.ctype == SQL_C_CHAR ? 1 : 0);
        if (ind == SQL_NO_TOTAL || ind > room) {
          return Status(proto::ErrorCategory::kInternal,
                        fmt::format("column {} holds a value longer than the driver described",
                                    k.name));
        }
        out->view = std::string_view(p, static_cast<std::size_t>(ind));
      }
    }
    return Status::ok();
  }
  // Row by row: SQLGetData, long values in pieces.
  const auto col = static_cast<SQLUSMALLINT>(c + 1);
  SQLLEN ind = 0;
  SQLRETURN rc = SQL_SUCCESS;
  switch (k.tag) {
    case proto::ValueTag::kBool: {
      unsigned char v = 0;
      rc = SQLGetData(stmt_, col, SQL_C_BIT, &v, 1, &ind);
      out->b = v != 0;
      break;
    }
    case proto::ValueTag::kInt64:
      rc = SQLGetData(stmt_, col, k.ctype, &out->i, 8, &ind);
      break;
    case proto::ValueTag::kDouble:
      rc = SQLGetData(stmt_, col, SQL_C_DOUBLE, &out->d, 8, &ind);
      break;
    default: {
      const bool text = k.ctype == SQL_C_CHAR;
      out->bytes.clear();
      char piece[65536];
      for (;;) {
        rc = SQLGetData(stmt_, col, k.ctype, piece, sizeof piece, &ind);
        if (rc == SQL_NO_DATA) break;
        if (!ok(rc)) break;
        if (ind == SQL_NULL_DATA) break;
        const std::size_t room = sizeof piece - (text ? 1 : 0);
        // A piece the driver did not fill (it stops at a character boundary when it
        // converts) ends at its terminator.
        std::size_t got = ind == SQL_NO_TOTAL || static_cast<std::size_t>(ind) > room
                              ? (text ? strnlen(piece, room) : room)
                              : static_cast<std::size_t>(ind);
        out->bytes.append(piece, got);
        if (out->bytes.size() > params_.max_frame_bytes) {
          return ResultWriter::row_too_large(out->bytes.size(), params_.max_frame_bytes);
        }
        if (rc == SQL_SUCCESS) break;  // the last piece
      }
      if (rc == SQL_NO_DATA) rc = SQL_SUCCESS;
      out->view = out->bytes;
      break;
    }
  }
  if (!ok(rc)) return diag(SQL_HANDLE_STMT, stmt_, "");
  out->tag = ind == SQL_NULL_DATA ? proto::ValueTag::kNull : k.tag;
  if (out->tag == proto::ValueTag::kInt64) unsigned_past_int64(k, out);
  return Status::ok();
}

Status OdbcConn::fetch_rows() {
  const std::size_t n = cols_.size();
  for (;;) {
    if (!row_ready_) {
      // The next row: from the rowset in hand, or the next fetch.
      if (!block_ || pos_ >= fetched_) {
        if (block_) {
          // MariaDB Connector/ODBC leaves the indicator of a non-NULL fixed-size value (BIT,
          // integers) as it was in an array fetch: a NULL earlier at that row of the array
          // would stay NULL (torture_mariadb found it). Every indicator starts as "not NULL".
          for (Column& k : cols_) {
            if (k.tag == proto::ValueTag::kBool || k.tag == proto::ValueTag::kInt64 ||
                k.tag == proto::ValueTag::kDouble) {
              std::fill(k.ind.begin(), k.ind.end(), static_cast<SQLLEN>(k.width));
            }
          }
        }
        running(stmt_);
        SQLRETURN rc = SQLFetch(stmt_);
        running(SQL_NULL_HSTMT);
        if (rc == SQL_NO_DATA) {
          writer_.finish_batch();
          return Status::ok();
        }
        if (!ok(rc)) return diag(SQL_HANDLE_STMT, stmt_, "");
        pos_ = 0;
        if (!block_) fetched_ = 1;
        if (fetched_ == 0) {
          writer_.finish_batch();
          return Status::ok();
        }
      }
      for (std::size_t c = 0; c < n; ++c) {
        if (Status s = read_cell(c, &cells_[c]); !s.is_ok()) return s;
      }
      row_ready_ = true;
    }
    std::size_t bytes = 0;
    for (const Cell& cell : cells_) bytes += proto::encoded_size(cell.tag, cell.view.size());
    ResultWriter::Room room = ResultWriter::Room::kRow;
    if (Status s = writer_.room(bytes, &room); !s.is_ok()) return s;
    if (room == ResultWriter::Room::kFull) {
      result_.more = true;  // cells_ (and the rowset) wait for resume()
      return Status::ok();
    }
    proto::RowBatchEncoder& row = writer_.row();
    for (const Cell& cell : cells_) {
      switch (cell.tag) {
        case proto::ValueTag::kNull: row.null(); break;
        case proto::ValueTag::kBool: row.boolean(cell.b); break;
        case proto::ValueTag::kInt64: row.int64(cell.i); break;
        case proto::ValueTag::kDouble: row.real(cell.d); break;
        // The protocol's text is UTF-8: a character column holding other bytes (MariaDB
        // describes `SELECT ?` of a binary parameter as text) goes out as the blob it is, as
        // SQLite's text does.
        case proto::ValueTag::kText:
          if (proto::is_valid_utf8(cell.view)) row.text(cell.view); else row.blob(cell.view);
          break;
        case proto::ValueTag::kBlob: row.blob(cell.view); break;
      }
    }
    row.end_row();
    ++rows_;
    ++pos_;
    row_ready_ = false;
  }
}

void OdbcConn::finish_request(std::int64_t affected) {
  close_cursor();
  if (tx_control_) learn_tx_state();
  // A one-shot is its own transaction: one it began (a read-only one, or SQL that began one)
  // commits now.
  if (req_.commit_after && in_tx_) {
    in_tx_ = true;
    if (Status s = end_tx(true); !s.is_ok()) {
      in_tx_ = true;  // so that fail() rolls back
      return fail(std::move(s));
    }
  }
  proto::Complete done;
  done.affected_rows = affected;
  done.in_transaction = in_tx_;
  writer_.complete(done);
  drop_cancelled_handle();
  timed_out_ = false;
}

Status OdbcConn::end_tx(bool commit) {
  in_tx_ = false;
  // With autocommit on, a transaction is open only because SQL began one (START
  // TRANSACTION): it ends in SQL too. Otherwise SQLEndTran.
  if (autocommit_) {
    return exec_direct(commit ? "COMMIT" : "ROLLBACK");
  }
  if (ok(SQLEndTran(SQL_HANDLE_DBC, dbc_, commit ? SQL_COMMIT : SQL_ROLLBACK))) return Status::ok();
  return diag(SQL_HANDLE_DBC, dbc_, commit ? "COMMIT failed" : "ROLLBACK failed");
}

bool OdbcConn::tx_control_sql(std::string_view sql, bool* ends) const {
  *ends = false;
  thread_local std::string b;
  sqlscan::blank_opaque(sql, params_.dialect->lexing, b);
  std::size_t end = 0;
  std::string_view w = sqlscan::first_word(b, &end);
  for (std::string_view k : {"START", "BEGIN", "XA", "SAVE", "SAVEPOINT", "RELEASE"}) {
    if (sqlscan::word_is(w, k)) return true;
  }
  if (sqlscan::word_is(w, "COMMIT") || sqlscan::word_is(w, "END") ||
      (sqlscan::word_is(w, "ROLLBACK") &&
       !sqlscan::word_is(sqlscan::first_word(b, nullptr, end), "TO"))) {
    *ends = true;
    return true;
  }
  if (sqlscan::word_is(w, "SET")) {
    std::string_view next = sqlscan::first_word(b, nullptr, end);
    return sqlscan::word_is(next, "AUTOCOMMIT") || sqlscan::word_is(next, "IMPLICIT_TRANSACTIONS") ||
           sqlscan::has_word(b, "AUTOCOMMIT");
  }
  // DDL commits implicitly on MariaDB.
  return sqlscan::word_is(w, "CREATE") || sqlscan::word_is(w, "ALTER") ||
         sqlscan::word_is(w, "DROP") || sqlscan::word_is(w, "TRUNCATE") ||
         sqlscan::word_is(w, "RENAME") || sqlscan::word_is(w, "LOCK") ||
         sqlscan::word_is(w, "UNLOCK");
}

void OdbcConn::learn_tx_state() {
  // The server's own word on whether a transaction is open, after SQL that may have begun
  // or ended one: @@in_transaction (MariaDB), @@TRANCOUNT (SQL Server).
  const char* sql = params_.flavor == OdbcParams::Flavor::kMariadb ? "SELECT @@in_transaction"
                    : params_.flavor == OdbcParams::Flavor::kMssql ? "SELECT @@TRANCOUNT"
                                                                   : nullptr;
  if (sql == nullptr) return;
  SQLBIGINT open = 0;
  SQLLEN ind = 0;
  if (ok(SQLExecDirect(scratch_, reinterpret_cast<SQLCHAR*>(const_cast<char*>(sql)), SQL_NTS)) &&
      ok(SQLFetch(scratch_)) && ok(SQLGetData(scratch_, 1, SQL_C_SBIGINT, &open, sizeof open, &ind))) {
    // An open transaction is the session's. None open means it ended only after COMMIT or
    // ROLLBACK in SQL, or in autocommit: without autocommit, a transaction whose statements
    // touched no table yet (SET, CREATE TEMPORARY TABLE) or that DDL just committed goes on
    // with the next statement.
    if (open > 0) {
      in_tx_ = true;
    } else if (autocommit_ || tx_ends_) {
      in_tx_ = false;
    }
  } else {
    in_tx_ = true;  // unknown: the session's end rolls back whatever is open
  }
  SQLFreeStmt(scratch_, SQL_CLOSE);
}

void OdbcConn::work_end(bool commit) {
  // A result not read to its end is closed first. Without a result cache the driver reads
  // the rest of it from the server to do so (the driver manager refuses to end the
  // transaction or disconnect before): a long unread result costs that time, on this
  // connection's thread only.
  close_cursor();
  if (!connected_) {
    result_.status = Status::connection("the database connection is closed");
    result_.broken = true;
    in_tx_ = false;
    return;
  }
  stmt_cancelled_ = false;
  timed_out_ = false;
  if (!in_tx_ && autocommit_) return;  // nothing is open
  if (!in_tx_ && !commit) return;      // autocommit off, nothing begun since the last end
  Status s = end_tx(commit);
  if (!s.is_ok()) {
    if (commit) end_tx(false).is_ok();
    result_.broken = broken_error(s, last_native_) || !commit;
    result_.status = std::move(s);
  }
}

void OdbcConn::work_ping() {
  if (!connected_) {
    result_.status = Status::connection("the database connection is closed");
    result_.broken = true;
    return;
  }
  Status s = exec_direct(params_.dialect->ping);
  // Without autocommit the ping began a transaction: end it, so the next user starts fresh.
  if (s.is_ok() && !autocommit_) {
    if (!ok(SQLEndTran(SQL_HANDLE_DBC, dbc_, SQL_ROLLBACK))) s = diag(SQL_HANDLE_DBC, dbc_, "");
  }
  if (!s.is_ok()) {
    result_.broken = true;
    result_.status = std::move(s);
  }
}

void OdbcConn::work_reset() {
  // No reset attribute in the drivers dbmgrd serves: a connection whose session state
  // changed is connected afresh (its statement cache goes with it).
  close_cursor();
  disconnect();
  Status s = connect();
  if (!s.is_ok()) {
    disconnect();
    result_.status = std::move(s);
    result_.broken = true;
  }
}

}  // namespace dbmgr::daemon
