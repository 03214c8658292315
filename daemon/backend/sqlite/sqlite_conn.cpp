// SQLite backend: tuned connections, RE2 REGEXP, batched row streaming on worker threads.
#include "backend/sqlite/sqlite_conn.hpp"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>
#include <vector>

#include <fmt/format.h>
#include <re2/re2.h>

#include "backend/sql_scan.hpp"

#include <algorithm>
#include <cctype>
#include "backend/sqlstate.hpp"

namespace dbmgr::daemon {
namespace {

// x REGEXP y calls regexp(y, x). The compiled pattern is cached on the statement with
// sqlite3_set_auxdata, so a pattern bound once is compiled once per statement.
void regexp_fn(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
  if (argc != 2 || sqlite3_value_type(argv[0]) == SQLITE_NULL ||
      sqlite3_value_type(argv[1]) == SQLITE_NULL) {
    sqlite3_result_null(ctx);
    return;
  }
  auto* re = static_cast<RE2*>(sqlite3_get_auxdata(ctx, 0));
  if (re == nullptr) {
    const char* pat = reinterpret_cast<const char*>(sqlite3_value_text(argv[0]));
    int pat_len = sqlite3_value_bytes(argv[0]);
    RE2::Options opts;
    opts.set_log_errors(false);
    opts.set_max_mem(64 << 20);
    auto compiled = std::make_unique<RE2>(re2::StringPiece(pat, pat_len), opts);
    if (!compiled->ok()) {
      std::string msg = "invalid REGEXP pattern: " + compiled->error();
      sqlite3_result_error(ctx, msg.c_str(), static_cast<int>(msg.size()));
      return;
    }
    re = compiled.release();
    sqlite3_set_auxdata(ctx, 0, re, [](void* p) { delete static_cast<RE2*>(p); });
    // set_auxdata may have destroyed it already (out of memory); fetch it back.
    re = static_cast<RE2*>(sqlite3_get_auxdata(ctx, 0));
    if (re == nullptr) {
      sqlite3_result_error_nomem(ctx);
      return;
    }
  }
  const char* text = reinterpret_cast<const char*>(sqlite3_value_text(argv[1]));
  int text_len = sqlite3_value_bytes(argv[1]);
  sqlite3_result_int(ctx, RE2::PartialMatch(re2::StringPiece(text, text_len), *re) ? 1 : 0);
}

proto::ValueTag decl_to_tag(const char* decl) {
  if (decl == nullptr) return proto::ValueTag::kNull;
  std::string d(decl);
  for (auto& c : d) c = static_cast<char>(toupper(static_cast<unsigned char>(c)));
  if (d.find("BOOL") != std::string::npos) return proto::ValueTag::kBool;
  if (d.find("INT") != std::string::npos) return proto::ValueTag::kInt64;
  if (d.find("CHAR") != std::string::npos || d.find("CLOB") != std::string::npos ||
      d.find("TEXT") != std::string::npos)
    return proto::ValueTag::kText;
  if (d.find("BLOB") != std::string::npos) return proto::ValueTag::kBlob;
  if (d.find("REAL") != std::string::npos || d.find("FLOA") != std::string::npos ||
      d.find("DOUB") != std::string::npos)
    return proto::ValueTag::kDouble;
  return proto::ValueTag::kNull;
}

// The result's columns, to `writer` (names and declared types, read after a step).
Status write_columns(ResultWriter& writer, sqlite3_stmt* stmt, int ncols) {
  if (ncols > static_cast<int>(proto::kMaxColumns)) {
    return ResultWriter::too_many_columns(static_cast<std::size_t>(ncols));
  }
  if (ncols == 0) {
    writer.no_columns();
    return Status::ok();
  }
  thread_local std::vector<proto::ColumnDesc> cols;
  cols.resize(static_cast<std::size_t>(ncols));
  for (int c = 0; c < ncols; ++c) {
    const char* name = sqlite3_column_name(stmt, c);
    cols[static_cast<std::size_t>(c)].name = name != nullptr ? name : "";
    cols[static_cast<std::size_t>(c)].type = decl_to_tag(sqlite3_column_decltype(stmt, c));
  }
  return writer.columns(cols.data(), cols.size());
}

// The encoded size of the current row (what encode_row() will add to a batch).
std::size_t row_size(sqlite3_stmt* stmt, int ncols) {
  std::size_t n = 0;
  for (int c = 0; c < ncols; ++c) {
    switch (sqlite3_column_type(stmt, c)) {
      case SQLITE_INTEGER:
      case SQLITE_FLOAT: n += proto::encoded_size(proto::ValueTag::kInt64); break;
      case SQLITE_TEXT:
        (void)sqlite3_column_text(stmt, c);  // bytes() after text(): the UTF-8 length
        n += proto::encoded_size(proto::ValueTag::kText, sqlite3_column_bytes(stmt, c));
        break;
      case SQLITE_BLOB:
        (void)sqlite3_column_blob(stmt, c);
        n += proto::encoded_size(proto::ValueTag::kBlob, sqlite3_column_bytes(stmt, c));
        break;
      default: n += proto::encoded_size(proto::ValueTag::kNull); break;
    }
  }
  return n;
}

void encode_row(proto::RowBatchEncoder& batch, sqlite3_stmt* stmt, int ncols) {
  for (int c = 0; c < ncols; ++c) {
    switch (sqlite3_column_type(stmt, c)) {
      case SQLITE_INTEGER: batch.int64(sqlite3_column_int64(stmt, c)); break;
      case SQLITE_FLOAT: batch.real(sqlite3_column_double(stmt, c)); break;
      case SQLITE_TEXT: {
        auto* t = reinterpret_cast<const char*>(sqlite3_column_text(stmt, c));
        std::string_view v(t, static_cast<std::size_t>(sqlite3_column_bytes(stmt, c)));
        // SQLite stores whatever bytes it was given as TEXT (CAST(X'C0FF' AS TEXT)); the
        // protocol's text is UTF-8, so text that is not goes out as the blob it really is.
        if (proto::is_valid_utf8(v)) batch.text(v); else batch.blob(v);
        break;
      }
      case SQLITE_BLOB: {
        auto* b = static_cast<const char*>(sqlite3_column_blob(stmt, c));
        batch.blob(std::string_view(b, static_cast<std::size_t>(sqlite3_column_bytes(stmt, c))));
        break;
      }
      default: batch.null(); break;
    }
  }
  batch.end_row();
}

}  // namespace

namespace {
// The statement's first word outside comments (blank_opaque() keeps the text's positions).
std::string_view leading_word(std::string_view sql, std::string& blanked) {
  if (!sqlscan::blank_opaque(sql, SqlLexing::kSqlite, blanked)) return {};
  return sqlscan::first_word(blanked);
}
}  // namespace

// Before a statement: remembers the connection's last id and sets it to 0, so that what it
// holds afterwards is this statement's own (an UPSERT that updated, a WITHOUT ROWID table or
// an INSTEAD OF trigger insert no rowid). SQL that reads last_insert_rowid() itself keeps it.
void SqliteConn::start_rowid(std::string_view sql) {
  rowid_before_ = sqlite3_last_insert_rowid(db_);
  // A plain case-insensitive search, no lexing per statement: a hit inside a literal only
  // costs that statement the reset (it is then judged by whether the id moved).
  constexpr std::string_view kWord = "last_insert_rowid";
  auto it = std::search(sql.begin(), sql.end(), kWord.begin(), kWord.end(), [](char a, char b) {
    return std::tolower(static_cast<unsigned char>(a)) == b;
  });
  reads_rowid_ = it != sql.end();
  if (!reads_rowid_) sqlite3_set_last_insert_rowid(db_, 0);
}

// After it: the id it inserted, or 0; when 0, last_insert_rowid() in SQL goes on seeing the
// id from before. For SQL that reads it, only an id that moved counts.
std::int64_t SqliteConn::own_rowid(bool changed) {
  std::int64_t now = sqlite3_last_insert_rowid(db_);
  std::int64_t own = !changed ? 0 : reads_rowid_ ? (now != rowid_before_ ? now : 0) : now;
  if (own == 0 && !reads_rowid_) sqlite3_set_last_insert_rowid(db_, rowid_before_);
  return own;
}

bool SqliteConn::autocommit_only_sql(std::string_view sql) {
  thread_local std::string b;
  return sqlscan::word_is(leading_word(sql, b), "VACUUM");
}

bool SqliteConn::read_only_sql(std::string_view sql) {
  thread_local std::string b;
  std::string_view kw = leading_word(sql, b);
  if (sqlscan::word_is(kw, "SELECT") || sqlscan::word_is(kw, "VALUES")) {
    return sqlscan::single_statement(sql, SqlLexing::kSqlite);
  }
  if (!sqlscan::word_is(kw, "WITH")) return false;
  // WITH ... SELECT reads; WITH ... INSERT/UPDATE/DELETE/REPLACE writes.
  for (std::string_view w : {"INSERT", "UPDATE", "DELETE", "REPLACE"}) {
    if (sqlscan::has_word(b, w)) return false;
  }
  return sqlscan::single_statement(sql, SqlLexing::kSqlite);
}

bool SqliteConn::groupable_sql(std::string_view sql) {
  thread_local std::string b;
  std::string_view kw = leading_word(sql, b);
  if (!sqlscan::word_is(kw, "INSERT") && !sqlscan::word_is(kw, "UPDATE") &&
      !sqlscan::word_is(kw, "DELETE") && !sqlscan::word_is(kw, "REPLACE") &&
      !sqlscan::word_is(kw, "WITH")) {
    return false;
  }
  return sqlscan::single_statement(sql, SqlLexing::kSqlite);
}

bool SqliteConn::batch_groupable_sql(std::string_view sql) {
  thread_local std::string b;
  std::string_view kw = leading_word(sql, b);
  if (!sqlscan::word_is(kw, "SELECT") && !sqlscan::word_is(kw, "INSERT") &&
      !sqlscan::word_is(kw, "UPDATE") && !sqlscan::word_is(kw, "DELETE") &&
      !sqlscan::word_is(kw, "REPLACE") && !sqlscan::word_is(kw, "WITH") &&
      !sqlscan::word_is(kw, "VALUES")) {
    return false;
  }
  return sqlscan::single_statement(sql, SqlLexing::kSqlite);
}

SqliteConn::SqliteConn(uv_loop_t* loop, const TimeSource& clock, std::string path,
                       const config::SqliteSettings& settings, config::Millis statement_timeout,
                       std::uint32_t max_frame_bytes, Role role)
    : WorkerConn(loop, "SQLite"),
      clock_(clock),
      path_(std::move(path)),
      settings_(settings),
      statement_timeout_(statement_timeout),
      max_frame_bytes_(max_frame_bytes),
      role_(role) {}

SqliteConn::~SqliteConn() {
  if (checkpointer_ != nullptr) checkpointer_->close();  // it deletes itself when done
}

int SqliteConn::on_wal_commit(void* self, sqlite3* db, const char* /*name*/, int pages) {
  static_cast<SqliteConn*>(self)->wal_pages_ = pages;  // worker thread, inside a job
  if (pages >= WalCheckpointer::kWriterPages) {
    // The checkpoints beside the writer copied most of the WAL but never all of it (the
    // writer appended while they ran), so the WAL cannot start over: the writer copies the
    // rest itself, as SQLite's automatic checkpoint would, and its next write restarts the
    // WAL from its start. This bounds the WAL at about kWriterPages.
    sqlite3_wal_checkpoint_v2(db, nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
  }
  return SQLITE_OK;
}

void SqliteConn::after_job() {
  if (role_ != Role::kWriter || wal_pages_ < WalCheckpointer::kPages) return;
  if (checkpointer_ == nullptr) checkpointer_ = new WalCheckpointer(loop(), path_);
  checkpointer_->wal_size(wal_pages_);
}

Status SqliteConn::ensure_file(const std::string& path) {
  auto slash = path.rfind('/');
  if (slash != std::string::npos && slash > 0) {
    std::string dir = path.substr(0, slash);
    // mkdir -p with 0750 for every missing component.
    for (std::size_t pos = 1; pos <= dir.size(); ++pos) {
      if (pos == dir.size() || dir[pos] == '/') {
        std::string part = dir.substr(0, pos);
        if (::mkdir(part.c_str(), 0750) != 0 && errno != EEXIST) {
          return Status::internal(
              fmt::format("cannot create folder {}: {}", part, std::strerror(errno)));
        }
      }
    }
  }
  // Never open() and close() a file SQLite may already have open in this process: close()
  // drops every POSIX lock the process holds on it, including other connections' locks
  // (sqlite.org "How To Corrupt An SQLite Database File", 2.2). Create it only if missing.
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) return Status::ok();
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
  if (fd < 0) {
    if (errno == EEXIST) return Status::ok();
    return Status::connection(
        fmt::format("cannot create database file {}: {}", path, std::strerror(errno)));
  }
  ::close(fd);
  return Status::ok();
}

std::string SqliteConn::server_version() const { return sqlite3_libversion(); }

void SqliteConn::start(BackendOp op) {
  if (op != BackendOp::kExecute) deadline_ = Clock::time_point{};  // statement_timeout ended
  queue(op);
}

void SqliteConn::work_close() {
  finish_statement();
  for (sqlite3_stmt** st : {&savepoint_, &release_, &rollback_to_}) {
    if (*st != nullptr) sqlite3_finalize(*st);
    *st = nullptr;
  }
  for (auto& c : cache_) {
    if (c.stmt != nullptr) sqlite3_finalize(c.stmt);
    c.stmt = nullptr;
  }
  if (db_ != nullptr) sqlite3_close_v2(db_);
  db_ = nullptr;
}

void SqliteConn::work(BackendOp op) {
  switch (op) {
    case BackendOp::kOpen: work_open(); break;
    case BackendOp::kExecute: work_execute(); break;
    case BackendOp::kCommit: work_end_tx("COMMIT"); break;
    case BackendOp::kRollback: work_end_tx("ROLLBACK"); break;
    case BackendOp::kReset: work_end_tx(nullptr); break;
    case BackendOp::kPing: result_.status = exec_simple("SELECT 1"); break;
    case BackendOp::kGroup: group_->batches != nullptr ? work_batch_group() : work_group(); break;
    case BackendOp::kBatch: work_batch(); break;
  }
  result_.in_transaction = in_tx_;
}

void SqliteConn::do_execute(const ExecRequest& req) {
  req_ = req;
  deadline_ = statement_timeout_.count() > 0 ? clock_.now() + statement_timeout_
                                             : Clock::time_point{};
  timed_out_ = false;
  queue(BackendOp::kExecute);
}

void SqliteConn::do_group(GroupJob* job) {
  group_ = job;
  start(BackendOp::kGroup);
}

void SqliteConn::do_batch(std::unique_ptr<BatchJob> job) {
  batch_ = std::move(job);
  queue(BackendOp::kBatch);
}

void SqliteConn::do_resume() { queue(BackendOp::kExecute); }
void SqliteConn::do_commit() { start(BackendOp::kCommit); }
void SqliteConn::do_rollback() { start(BackendOp::kRollback); }
void SqliteConn::do_ping() { start(BackendOp::kPing); }
void SqliteConn::do_reset() { start(BackendOp::kReset); }

void SqliteConn::do_cancel() {
  if (db_ != nullptr && job_running()) sqlite3_interrupt(db_);
}

Status SqliteConn::error_status(int rc, std::string_view what, SqlitePhase phase) {
  int ext = db_ != nullptr ? sqlite3_extended_errcode(db_) : rc;
  if ((ext & 0xff) != (rc & 0xff)) ext = rc;  // the handle's code is another call's
  std::string raw = db_ != nullptr ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
  // The SQLSTATE, and from it the category, by the one table of sqlstate.hpp. Reader
  // connections run with PRAGMA query_only: a write there is the session's mistake.
  SqliteErrorKind kind = classify_sqlite_error(ext, raw, phase, role_ == Role::kReader);
  std::string msg = what.empty() ? raw : fmt::format("{}: {}", what, raw);
  using C = proto::ErrorCategory;
  if (denied_ != nullptr) {  // the authorizer refused this statement: say why
    msg = std::exchange(denied_, nullptr);
    return {C::kPermission, std::move(msg), "42501"};
  }
  switch (rc & 0xff) {
    case SQLITE_INTERRUPT:
      if (timed_out_) return {C::kTimeout, "statement_timeout reached: " + msg, "57014"};
      return {C::kCancelled, "statement cancelled", "57014"};
    case SQLITE_READONLY:
      if (kind.category == C::kReadOnly) msg = "the session is read-only: " + msg;
      else msg = "the database file cannot be written: " + msg;
      break;
    default:
      break;
  }
  return {kind.category, std::move(msg), kind.sqlstate};
}

void SqliteConn::work_open() {
  // The engine created the file (and its folder) before any connection opened it.
  int rc = sqlite3_open_v2(path_.c_str(), &db_,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                           nullptr);
  if (rc != SQLITE_OK) {
    result_.status = error_status(rc, fmt::format("cannot open {}", path_));
    result_.broken = true;
    sqlite3_close_v2(db_);
    db_ = nullptr;
    return;
  }
  sqlite3_extended_result_codes(db_, 1);
  sqlite3_busy_timeout(db_, static_cast<int>(settings_.busy_timeout.count()));
  std::string pragmas = fmt::format(
      "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON; "
      "PRAGMA busy_timeout={}; PRAGMA cache_size=-{};",
      settings_.busy_timeout.count(), settings_.cache_kib);
  if (role_ == Role::kReader) pragmas += " PRAGMA query_only=1;";
  if (Status s = exec_simple(pragmas.c_str()); !s.is_ok()) {
    result_.status = s;
    result_.broken = true;
    return;
  }
  // Clients run SQL with the daemon's rights: no file but this database's own. ATTACH and
  // VACUUM INTO would open or create any file the daemon may (the authorizer sees both as
  // SQLITE_ATTACH with the file name; plain VACUUM attaches a nameless temporary database,
  // which stays allowed, so SQLITE_LIMIT_ATTACHED cannot be 0). Extensions stay off, and
  // defensive mode keeps SQL from corrupting the file through writable_schema.
  sqlite3_set_authorizer(db_, &SqliteConn::authorize, this);
  sqlite3_db_config(db_, SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, 0, nullptr);
  sqlite3_db_config(db_, SQLITE_DBCONFIG_DEFENSIVE, 1, nullptr);
  sqlite3_db_config(db_, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, nullptr);
  sqlite3_create_function_v2(db_, "regexp", 2, SQLITE_UTF8 | SQLITE_DETERMINISTIC, nullptr,
                             &regexp_fn, nullptr, nullptr, nullptr);
  sqlite3_progress_handler(db_, 10000, &SqliteConn::on_progress, this);
  // The writer's automatic checkpoint is replaced by this hook (which reports the WAL's size
  // after each commit); a WalCheckpointer checkpoints beside it.
  if (role_ == Role::kWriter) sqlite3_wal_hook(db_, &SqliteConn::on_wal_commit, this);
}

namespace {

// Pragmas that may take a value through dbmgrd: they read something (an argument that names
// a table or an index, a check's limit), act once (optimize, wal_checkpoint,
// incremental_vacuum), last only for the transaction (defer_foreign_keys), or are stored in
// the database file for everyone (user_version, application_id, auto_vacuum, page_size).
bool pragma_argument_allowed(const char* name) {
  static constexpr const char* kAllowed[] = {
      "table_info",   "table_xinfo",       "table_list",       "index_info",  "index_xinfo",
      "index_list",   "foreign_key_list",  "foreign_key_check", "integrity_check",
      "quick_check",  "optimize",          "wal_checkpoint",   "incremental_vacuum",
      "defer_foreign_keys", "user_version", "application_id",  "auto_vacuum", "page_size",
  };
  for (const char* a : kAllowed) {
    if (sqlite3_stricmp(name, a) == 0) return true;
  }
  return false;
}

}  // namespace

int SqliteConn::authorize(void* self, int action, const char* a1, const char* a2,
                          const char* /*db*/, const char* /*trigger*/) {
  auto* conn = static_cast<SqliteConn*>(self);
  const char* why = nullptr;
  switch (action) {
    case SQLITE_ATTACH:
      if (a1 != nullptr && *a1 != '\0') {
        why = "ATTACH and VACUUM INTO are not allowed through dbmgrd: they would open another "
              "file with the daemon's rights";
      }
      break;
    case SQLITE_CREATE_TEMP_TABLE:
    case SQLITE_CREATE_TEMP_INDEX:
    case SQLITE_CREATE_TEMP_TRIGGER:
    case SQLITE_CREATE_TEMP_VIEW:
      conn->temp_made_ = true;
      break;
    case SQLITE_DETACH:
      why = "DETACH is not allowed through dbmgrd";
      break;
    case SQLITE_FUNCTION:
      if (a2 != nullptr && sqlite3_stricmp(a2, "load_extension") == 0) {
        why = "load_extension() is not allowed through dbmgrd";
      }
      break;
    case SQLITE_PRAGMA:
      if (a1 != nullptr && (sqlite3_stricmp(a1, "temp_store_directory") == 0 ||
                            sqlite3_stricmp(a1, "data_store_directory") == 0)) {
        why = "PRAGMA temp_store_directory and data_store_directory are not allowed through dbmgrd";
      } else if (a1 != nullptr && a2 != nullptr && !pragma_argument_allowed(a1)) {
        // A PRAGMA with a value sets the pooled connection's state, which the sessions after
        // this one would inherit: query_only (a reader's guard against writes),
        // foreign_keys, journal_mode, locking_mode, synchronous, busy_timeout, ... are the
        // daemon's (config: sqlite busy_timeout, cache_size).
        why = "PRAGMA with a value is not allowed through dbmgrd for this pragma: it would "
              "change the pooled connection for the sessions after this one (reading it "
              "without a value is allowed)";
      }
      break;
    default:
      break;
  }
  if (why == nullptr) return SQLITE_OK;
  conn->denied_ = why;
  return SQLITE_DENY;
}

int SqliteConn::on_progress(void* arg) {
  auto* self = static_cast<SqliteConn*>(arg);
  if (self->item_cancel_ != nullptr && self->item_cancel_->load(std::memory_order_relaxed)) {
    return 1;  // a group item cancelled while it runs: SQLITE_INTERRUPT for that statement
  }
  if (self->deadline_ != Clock::time_point{} && self->clock_.now() > self->deadline_) {
    self->timed_out_ = true;
    return 1;
  }
  return 0;
}

Status SqliteConn::exec_simple(const char* sql) {
  char* err = nullptr;
  int rc = sqlite3_exec(db_, sql, nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    Status s = error_status(rc, {});
    sqlite3_free(err);
    return s;
  }
  return Status::ok();
}

Status SqliteConn::prepare(std::string_view sql, sqlite3_stmt** out, bool* cached,
                           bool* script) {
  denied_ = nullptr;
  for (auto& c : cache_) {
    if (c.stmt != nullptr && c.sql == sql) {
      c.used = ++use_counter_;
      *out = c.stmt;
      *cached = true;
      return Status::ok();
    }
  }
  const char* end = sql.data() + sql.size();
  auto blank = [end](const char* p) {
    return p == nullptr ||
           std::string_view(p, end - p).find_first_not_of(" \t\r\n;") == std::string_view::npos;
  };
  const char* tail = nullptr;
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()),
                              SQLITE_PREPARE_PERSISTENT, &stmt, &tail);
  if (rc != SQLITE_OK) return error_status(rc, {}, SqlitePhase::kPrepare);
  if (blank(tail)) {
    *out = stmt;
    *cached = stmt != nullptr;
    if (stmt == nullptr) return Status::ok();  // only whitespace or comments
    // A single statement: cache it, evicting the least recently used.
    Cached* victim = &cache_[0];
    for (auto& c : cache_) {
      if (c.stmt == nullptr) {
        victim = &c;
        break;
      }
      if (c.used < victim->used) victim = &c;
    }
    if (victim->stmt != nullptr) sqlite3_finalize(victim->stmt);
    victim->sql.assign(sql.data(), sql.size());
    victim->stmt = stmt;
    victim->used = ++use_counter_;
    return Status::ok();
  }
  if (script != nullptr) {  // the caller runs single statements only
    sqlite3_finalize(stmt);
    *out = nullptr;
    *cached = false;
    *script = true;
    return Status::ok();
  }
  // A script: run every statement but the last to completion; the last one's result is the
  // reply. Parameters are only allowed with a single statement.
  if (req_.params.size() > 0) {
    sqlite3_finalize(stmt);
    return Status::invalid("parameters are only allowed in a single statement");
  }
  // SQLite copies statement text that is not NUL-terminated, and would copy the whole rest of
  // the script for every statement (quadratic: 80,000 statements took 46 s). The rest runs
  // from one NUL-terminated copy instead, whose length passed includes the terminator.
  script_.assign(tail, static_cast<std::size_t>(end - tail));
  const char* base = script_.c_str();
  const char* send = base + script_.size();
  tail = base;
  auto script_blank = [send](const char* q) {
    return q == nullptr ||
           std::string_view(q, send - q).find_first_not_of(" \t\r\n;") == std::string_view::npos;
  };
  for (;;) {
    if (stmt != nullptr) {
      while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
      }
      sqlite3_finalize(stmt);
      if (rc != SQLITE_DONE) return error_status(rc, {});
      result_.statements++;
    }
    const char* q = tail;
    stmt = nullptr;
    rc = sqlite3_prepare_v2(db_, q, static_cast<int>(send - q + 1), &stmt, &tail);
    if (rc != SQLITE_OK) return error_status(rc, {}, SqlitePhase::kPrepare);
    if (script_blank(tail)) {
      *out = stmt;
      *cached = false;
      return Status::ok();
    }
    if (tail == q) {  // no progress: a NUL byte inside the script ends SQLite's reading
      if (stmt != nullptr) sqlite3_finalize(stmt);
      return Status(proto::ErrorCategory::kSyntax, "the SQL contains a NUL byte", "42601");
    }
  }
}

Status SqliteConn::bind(sqlite3_stmt* stmt, const proto::ValueList& params) {
  int n = sqlite3_bind_parameter_count(stmt);
  if (static_cast<std::uint32_t>(n) != params.size()) {
    return Status(proto::ErrorCategory::kInvalidRequest,
                  fmt::format("the statement has {} parameter(s), {} given", n, params.size()),
                  "07001");
  }
  int i = 1;
  for (const proto::Value& v : params) {
    int rc = SQLITE_OK;
    switch (v.tag) {
      case proto::ValueTag::kNull: rc = sqlite3_bind_null(stmt, i); break;
      case proto::ValueTag::kBool: rc = sqlite3_bind_int(stmt, i, v.b ? 1 : 0); break;
      case proto::ValueTag::kInt64: rc = sqlite3_bind_int64(stmt, i, v.i); break;
      case proto::ValueTag::kDouble: rc = sqlite3_bind_double(stmt, i, v.d); break;
      case proto::ValueTag::kText:
        rc = sqlite3_bind_text64(stmt, i, v.bytes.data(), v.bytes.size(), SQLITE_STATIC,
                                 SQLITE_UTF8);
        break;
      case proto::ValueTag::kBlob:
        rc = sqlite3_bind_blob64(stmt, i, v.bytes.data(), v.bytes.size(), SQLITE_STATIC);
        break;
    }
    if (rc != SQLITE_OK) return error_status(rc, fmt::format("parameter {}", i));
    ++i;
  }
  return Status::ok();
}

void SqliteConn::finish_statement() {
  if (stmt_ != nullptr) {
    if (stmt_cached_) {
      sqlite3_reset(stmt_);
      sqlite3_clear_bindings(stmt_);
    } else {
      sqlite3_finalize(stmt_);
    }
  }
  stmt_ = nullptr;
  stmt_cached_ = false;
}

void SqliteConn::work_execute() {
  auto fail = [&](Status s) {
    finish_statement();
    writer_.discard();
    result_.more = false;
    result_.status = std::move(s);
    // An error ends the transaction: roll back whatever this one did. In a group of
    // batches the group rolls back to the batch's savepoint instead.
    if (in_group_) return;
    if (in_tx_ && !sqlite3_get_autocommit(db_)) exec_simple("ROLLBACK").is_ok();
    in_tx_ = false;
  };

  if (stmt_ == nullptr) {  // a new statement, not a resumed stream
    writer_.begin(req_.request_id, req_.session_id, max_frame_bytes_);
    writer_.start(result_.frames.bytes());
    if (req_.begin != TxBegin::kNone) {
      Status s = exec_simple(role_ == Role::kWriter ? "BEGIN IMMEDIATE" : "BEGIN");
      if (!s.is_ok()) return fail(std::move(s));
      in_tx_ = true;
      // last_insert_rowid() in SQL starts from 0 in each transaction: no earlier lease's id
      sqlite3_set_last_insert_rowid(db_, 0);
    }
    sqlite3_stmt* stmt = nullptr;
    bool cached = false;
    bool script = false;
    Status s = prepare(req_.sql, &stmt, &cached, in_group_ ? &script : nullptr);
    if (!s.is_ok()) return fail(std::move(s));
    if (script) {  // in a group only single statements run: the textual check missed it
      writer_.discard();
      group_script_ = true;
      return;
    }
    stmt_ = stmt;
    stmt_cached_ = cached;
    row_pending_ = false;
    ncols_ = 0;
    rows_ = 0;
    if (stmt_ != nullptr) {
      if (Status bs = bind(stmt_, req_.params); !bs.is_ok()) return fail(std::move(bs));
    }
    // What this statement changes and inserts is measured against these: sqlite3_changes()
    // keeps the last INSERT/UPDATE/DELETE's count through DDL, and last_insert_rowid() the
    // connection's last id (another client's, on a pooled connection).
    changes_before_ = sqlite3_total_changes64(db_);
    start_rowid(req_.sql);
    result_.statements++;
  } else {
    writer_.start(result_.frames.bytes());
  }

  // Result metadata is read after a step, never before: sqlite3_step() re-prepares a cached
  // statement whose tables changed (ALTER, DROP + CREATE), and only then do the column
  // count and names describe what the step returns.
  auto send_columns = [&]() -> Status {
    if (writer_.columns_sent()) return Status::ok();
    ncols_ = stmt_ != nullptr ? sqlite3_column_count(stmt_) : 0;
    return write_columns(writer_, stmt_, ncols_);
  };

  int rc = stmt_ != nullptr ? SQLITE_ROW : SQLITE_DONE;
  while (stmt_ != nullptr) {
    if (row_pending_) {  // the row that did not fit the last batch
      row_pending_ = false;
      rc = SQLITE_ROW;
    } else {
      rc = sqlite3_step(stmt_);
      if (rc != SQLITE_ROW) break;
    }
    if (Status cs = send_columns(); !cs.is_ok()) return fail(std::move(cs));
    ResultWriter::Room room = ResultWriter::Room::kRow;
    if (Status rs = writer_.room(row_size(stmt_, ncols_), &room); !rs.is_ok()) {
      return fail(std::move(rs));
    }
    if (room == ResultWriter::Room::kFull) {
      row_pending_ = true;
      result_.more = true;  // keep stmt_ (and its current row) for resume()
      return;
    }
    encode_row(writer_.row(), stmt_, ncols_);
    ++rows_;
  }
  if (rc != SQLITE_DONE) return fail(error_status(rc, {}));
  if (Status cs = send_columns(); !cs.is_ok()) return fail(std::move(cs));
  proto::Complete done;
  bool readonly = stmt_ == nullptr || sqlite3_stmt_readonly(stmt_);
  bool changed = !readonly && sqlite3_total_changes64(db_) != changes_before_;
  done.affected_rows = readonly ? rows_ : changed ? sqlite3_changes64(db_) : 0;
  done.last_insert_id = own_rowid(changed);
  finish_statement();
  // A one-shot is its own transaction: commit it, including one its own SQL began (BEGIN as
  // a one-shot on a reader, which otherwise begins nothing).
  if (req_.commit_after && (in_tx_ || !sqlite3_get_autocommit(db_))) {
    in_tx_ = true;
    Status s = exec_simple("COMMIT");
    if (!s.is_ok()) return fail(std::move(s));
    in_tx_ = false;
  }
  // A statement may have ended the transaction itself (COMMIT/ROLLBACK sent as SQL).
  if (in_tx_ && sqlite3_get_autocommit(db_)) in_tx_ = false;
  if (!in_tx_ && !sqlite3_get_autocommit(db_)) in_tx_ = true;  // BEGIN sent as SQL
  done.in_transaction = in_tx_;
  writer_.complete(done);
}

// Each statement exactly as work_execute() runs it alone (its own statement_timeout), its
// frames appended to the ones before; stops where BatchJob says.
void SqliteConn::work_batch() {
  BatchJob& job = *batch_;
  job.ran = 0;
  job.committed = false;
  job.commit_status = Status::ok();
  job.commit_broken = false;
  for (std::size_t i = 0; i < job.count; ++i) {
    req_ = job.reqs[i];
    deadline_ = statement_timeout_.count() > 0 ? clock_.now() + statement_timeout_
                                               : Clock::time_point{};
    timed_out_ = false;
    work_execute();
    job.frame_ends[i] = result_.frames.size();
    job.ran = i + 1;
    if (!result_.status.is_ok() || result_.more || !in_tx_ ||
        result_.frames.size() >= BatchJob::kMaxBatchFrames) {
      break;
    }
  }
  if (job.commit && job.ran == job.count && result_.status.is_ok() && !result_.more && in_tx_) {
    // As commit() would run it next: the statement's result stays ok, the COMMIT's is apart.
    deadline_ = Clock::time_point{};
    work_end_tx("COMMIT");
    job.committed = true;
    job.commit_status = std::exchange(result_.status, Status::ok());
    job.commit_broken = std::exchange(result_.broken, false);
  }
  result_.batch = std::move(batch_);
}

Status SqliteConn::exec_prepared(sqlite3_stmt** stmt, const char* sql) {
  if (*stmt == nullptr) {
    int rc = sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, stmt, nullptr);
    if (rc != SQLITE_OK) {
      *stmt = nullptr;
      return error_status(rc, sql, SqlitePhase::kPrepare);
    }
  }
  int rc = sqlite3_step(*stmt);
  Status s = rc == SQLITE_DONE ? Status::ok() : error_status(rc, sql);
  sqlite3_reset(*stmt);
  return s;
}

void SqliteConn::run_group_item(GroupItem& it, std::vector<std::uint8_t>& out) {
  sqlite3_stmt* stmt = nullptr;
  bool cached = false;
  bool script = false;
  Status s = prepare(it.sql, &stmt, &cached, &script);
  if (!s.is_ok()) {
    it.status = std::move(s);
    return;
  }
  if (script) {  // the textual check missed it: run it alone, as a script
    it.deferred = true;
    return;
  }
  ResultWriter w;
  w.begin(it.request_id, 0, max_frame_bytes_);
  w.start(out);
  proto::Complete done;
  if (stmt == nullptr) {  // only blanks and comments
    w.no_columns();
    w.complete(done);
    return;
  }
  auto finish = [&] {
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
    if (!cached) sqlite3_finalize(stmt);
  };
  if (Status bs = bind(stmt, it.params); !bs.is_ok()) {
    finish();
    it.status = std::move(bs);
    return;
  }
  deadline_ = statement_timeout_.count() > 0 ? clock_.now() + statement_timeout_
                                             : Clock::time_point{};
  timed_out_ = false;
  item_cancel_ = &it.cancel;
  sqlite3_set_last_insert_rowid(db_, 0);  // so last_insert_id is this statement's own
  const std::int64_t changes_before = sqlite3_total_changes64(db_);  // see work_execute
  int ncols = 0;  // read after a step (see work_execute)
  std::int64_t rows = 0;
  int rc = SQLITE_DONE;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    if (!w.columns_sent()) {
      ncols = sqlite3_column_count(stmt);
      // Too many columns: run alone, where the error is reported.
      if (!write_columns(w, stmt, ncols).is_ok()) it.deferred = true;
      if (it.deferred) break;
    }
    std::size_t bytes = row_size(stmt, ncols);
    if (out.size() + bytes - it.frames_begin > kGroupItemFramesMax) {
      it.deferred = true;  // a large result streams: run it alone
      break;
    }
    ResultWriter::Room room = ResultWriter::Room::kRow;
    if (!w.room(bytes, &room).is_ok()) {
      it.deferred = true;
      break;
    }
    if (room == ResultWriter::Room::kFull) w.room(bytes, &room).is_ok();  // a new batch
    encode_row(w.row(), stmt, ncols);
    ++rows;
  }
  item_cancel_ = nullptr;
  deadline_ = Clock::time_point{};
  if (it.deferred) return finish();
  if (rc != SQLITE_DONE) {
    w.discard();
    it.status = error_status(rc, {});
    return finish();
  }
  if (!w.columns_sent()) {
    ncols = sqlite3_column_count(stmt);
    if (!write_columns(w, stmt, ncols).is_ok()) {
      it.deferred = true;
      return finish();
    }
  }
  bool readonly = sqlite3_stmt_readonly(stmt) != 0;
  bool changed = sqlite3_total_changes64(db_) != changes_before;
  done.affected_rows = readonly ? rows : changed ? sqlite3_changes64(db_) : 0;
  done.last_insert_id = readonly ? 0 : sqlite3_last_insert_rowid(db_);
  w.complete(done);
  finish();
}

bool SqliteConn::deferred_fk_violations() {
  int current = 0, high = 0;
  if (sqlite3_db_status(db_, SQLITE_DBSTATUS_DEFERRED_FKS, &current, &high, 0) != SQLITE_OK) {
    return false;
  }
  return current != 0;
}

void SqliteConn::work_group() {
  GroupJob& job = *group_;
  std::vector<std::uint8_t>& out = job.frames.bytes();
  job.committed = false;
  job.restarts = 0;
  auto fail_all = [&](const Status& why) {
    out.clear();
    if (db_ != nullptr && !sqlite3_get_autocommit(db_)) exec_simple("ROLLBACK").is_ok();
    in_tx_ = false;
    for (std::size_t k = 0; k < job.count; ++k) {
      GroupItem& it = job.items[k];
      it.frames_begin = it.frames_end = 0;
      it.ran = false;
      if (!it.final && !it.deferred) it.status = why;
    }
  };
  if (db_ == nullptr) {
    result_.status = Status::connection("database connection is closed");
    result_.broken = true;
    return fail_all(result_.status);
  }
  for (;;) {  // once, or again after an error that rolled back the whole transaction
    out.clear();
    for (std::size_t k = 0; k < job.count; ++k) {
      GroupItem& it = job.items[k];
      if (!it.final) it.status = Status::ok();
      it.deferred = false;
      it.ran = false;
      it.frames_begin = it.frames_end = 0;
    }
    if (Status s = exec_simple("BEGIN IMMEDIATE"); !s.is_ok()) return fail_all(s);
    in_tx_ = true;
    bool restart = false;
    for (std::size_t k = 0; k < job.count && !restart; ++k) {
      GroupItem& it = job.items[k];
      if (it.final) continue;
      it.frames_begin = it.frames_end = out.size();
      if (it.cancel.load(std::memory_order_relaxed)) {
        it.status = Status(proto::ErrorCategory::kCancelled, "statement cancelled", "57014");
        it.final = true;
        continue;
      }
      if (out.size() >= kGroupFramesMax) {  // enough held in memory: the rest run after
        it.deferred = true;
        continue;
      }
      if (Status sp = exec_prepared(&savepoint_, "SAVEPOINT dbmgr_group"); !sp.is_ok()) {
        return fail_all(sp);
      }
      run_group_item(it, out);
      if (it.status.is_ok() && !it.deferred && deferred_fk_violations()) {
        // Alone, this one-shot would fail at its COMMIT (a DEFERRABLE INITIALLY DEFERRED
        // foreign key it broke). In the group it must fail the same way, and alone: roll it
        // back to its savepoint (which restores SQLite's count of deferred violations) so
        // the group's COMMIT does not fail for everyone.
        it.status = Status(proto::ErrorCategory::kConstraint, "FOREIGN KEY constraint failed",
                           "23503");
      }
      if (it.status.is_ok() && !it.deferred) {
        if (Status rel = exec_prepared(&release_, "RELEASE dbmgr_group"); !rel.is_ok()) {
          return fail_all(rel);
        }
        it.frames_end = out.size();
        it.ran = true;
        continue;
      }
      out.resize(it.frames_begin);
      if (!it.deferred) it.final = true;
      if (sqlite3_get_autocommit(db_)) {
        // The error rolled back the whole transaction (an interrupt, OR ROLLBACK,
        // RAISE(ROLLBACK), I/O error): run the others again without this one.
        in_tx_ = false;
        ++job.restarts;
        restart = true;
        continue;
      }
      Status rb = exec_prepared(&rollback_to_, "ROLLBACK TO dbmgr_group");
      if (rb.is_ok()) rb = exec_prepared(&release_, "RELEASE dbmgr_group");
      if (!rb.is_ok()) return fail_all(rb);
    }
    if (restart) {
      if (job.restarts > static_cast<int>(job.count)) {
        return fail_all(Status::internal("group commit: the transaction keeps failing"));
      }
      continue;
    }
    if (Status c = exec_simple("COMMIT"); !c.is_ok()) return fail_all(c);
    in_tx_ = false;
    job.committed = true;
    return;
  }
}

// A group of pipelined transactions (GroupJob::batches): BEGIN IMMEDIATE, then per batch
// SAVEPOINT, its statements as work_batch() runs them, RELEASE (ROLLBACK TO when one of them
// fails, which touches no other batch), then one COMMIT, whose outcome is each batch's
// commit. A batch that would have to stream rows, or hold too many frames, is rolled back to
// its savepoint and deferred: it runs alone next. An error that rolled back the whole
// transaction (an interrupt, RAISE(ROLLBACK), an I/O error) runs the others again without
// the failed batch.
void SqliteConn::work_batch_group() {
  GroupJob& g = *group_;
  g.committed = false;
  g.restarts = 0;
  auto reset = [](BatchJob& b) {
    b.group_result = BackendResult{};
    b.ran = 0;
    b.committed = false;
    b.commit_status = Status::ok();
    b.commit_broken = false;
    b.deferred = false;
  };
  auto each = [&](auto&& fn) {
    for (std::size_t k = 0; k < g.count; ++k) fn(*g.batches[k]);
  };
  each([&](BatchJob& b) {
    b.final = false;
    reset(b);
  });
  // A failure of the group's own statements: every batch not decided yet fails with it at its
  // first statement, as it would have alone.
  auto fail_all = [&](const Status& why, bool broken) {
    finish_statement();
    in_group_ = false;
    item_cancel_ = nullptr;
    if (db_ != nullptr && !sqlite3_get_autocommit(db_)) exec_simple("ROLLBACK").is_ok();
    in_tx_ = false;
    each([&](BatchJob& b) {
      if (b.final || b.deferred) return;
      reset(b);
      b.ran = 1;
      b.group_result.status = why;
      b.group_result.broken = broken;
    });
    result_ = BackendResult{};
    result_.broken = broken;
  };
  if (db_ == nullptr) return fail_all(Status::connection("database connection is closed"), true);
  for (;;) {  // once, or again after an error that rolled back the whole transaction
    std::size_t held = 0;  // frames held in memory by the batches run so far
    each([&](BatchJob& b) {
      if (!b.final) reset(b);
    });
    if (Status s = exec_simple("BEGIN IMMEDIATE"); !s.is_ok()) return fail_all(s, false);
    in_tx_ = true;
    bool restart = false;
    for (std::size_t k = 0; k < g.count && !restart; ++k) {
      BatchJob& b = *g.batches[k];
      if (b.final) continue;
      if (b.cancel.load(std::memory_order_relaxed)) {
        b.ran = 1;
        b.group_result.status =
            Status(proto::ErrorCategory::kCancelled, "statement cancelled", "57014");
        b.final = true;
        continue;
      }
      if (held >= kGroupFramesMax) {  // enough held in memory: the rest run after
        b.deferred = true;
        continue;
      }
      if (Status sp = exec_prepared(&savepoint_, "SAVEPOINT dbmgr_group"); !sp.is_ok()) {
        return fail_all(sp, false);
      }
      result_ = BackendResult{};
      in_group_ = true;
      item_cancel_ = &b.cancel;
      bool ok = true;
      for (std::size_t i = 0; i < b.count; ++i) {
        req_ = b.reqs[i];
        req_.begin = TxBegin::kNone;
        req_.commit_after = false;
        deadline_ = statement_timeout_.count() > 0 ? clock_.now() + statement_timeout_
                                                   : Clock::time_point{};
        timed_out_ = false;
        group_script_ = false;
        work_execute();
        b.frame_ends[i] = result_.frames.size();
        b.ran = i + 1;
        if (group_script_) {  // a script: the whole transaction runs alone, after the group
          group_script_ = false;
          b.deferred = true;
          break;
        }
        if (!result_.status.is_ok()) {
          ok = false;
          break;
        }
        if (result_.more || result_.frames.size() >= BatchJob::kMaxBatchFrames) {
          finish_statement();  // rows to stream: alone, after the group
          b.deferred = true;
          break;
        }
        if (sqlite3_get_autocommit(db_)) {  // cannot happen for batch-groupable SQL
          result_.status = Status::internal("a statement of a grouped transaction ended it");
          ok = false;
          break;
        }
      }
      in_group_ = false;
      item_cancel_ = nullptr;
      deadline_ = Clock::time_point{};
      if (ok && !b.deferred) {
        if (deferred_fk_violations()) {
          // Alone, its COMMIT would fail (a DEFERRABLE INITIALLY DEFERRED foreign key it
          // broke): it fails so here too, alone, and the group's COMMIT does not.
          b.committed = true;
          b.commit_status = Status(proto::ErrorCategory::kConstraint,
                                   "FOREIGN KEY constraint failed", "23503");
          b.final = true;
        } else {
          if (Status rel = exec_prepared(&release_, "RELEASE dbmgr_group"); !rel.is_ok()) {
            return fail_all(rel, false);
          }
          held += result_.frames.size();
          b.group_result = std::move(result_);
          continue;
        }
      } else if (!b.deferred) {
        b.final = true;
      }
      if (b.final) {
        b.group_result = std::move(result_);
        b.group_result.more = false;
      }
      if (sqlite3_get_autocommit(db_)) {
        // The error rolled back the whole transaction: run the others again without it.
        in_tx_ = false;
        ++g.restarts;
        restart = true;
        continue;
      }
      Status rb = exec_prepared(&rollback_to_, "ROLLBACK TO dbmgr_group");
      if (rb.is_ok()) rb = exec_prepared(&release_, "RELEASE dbmgr_group");
      if (!rb.is_ok()) return fail_all(rb, false);
    }
    if (restart) {
      if (g.restarts > static_cast<int>(g.count)) {
        return fail_all(Status::internal("group commit: the transaction keeps failing"), false);
      }
      continue;
    }
    Status c = exec_simple("COMMIT");
    if (!c.is_ok() && !sqlite3_get_autocommit(db_)) exec_simple("ROLLBACK").is_ok();
    in_tx_ = !sqlite3_get_autocommit(db_);
    g.committed = c.is_ok();
    each([&](BatchJob& b) {
      if (b.final || b.deferred) {
        b.group_result.in_transaction = false;
        return;
      }
      b.committed = true;  // as commit() would have run it next, the statements' result ok
      b.commit_status = c;
      b.group_result.in_transaction = in_tx_;
    });
    result_ = BackendResult{};
    return;
  }
}

void SqliteConn::work_end_tx(const char* sql) {
  finish_statement();
  if (db_ == nullptr) {
    result_.status = Status::connection("database connection is closed");
    result_.broken = true;
    return;
  }
  if (sql == nullptr) {  // reset: make sure nothing is left open
    if (!sqlite3_get_autocommit(db_)) result_.status = exec_simple("ROLLBACK");
    in_tx_ = false;
    if (result_.status.is_ok() && temp_made_) {
      result_.status = drop_temp_objects();
      if (!result_.status.is_ok()) result_.broken = true;  // closed rather than passed on
    }
    return;
  }
  if (sqlite3_get_autocommit(db_)) {  // nothing open (already ended by an error or by SQL)
    in_tx_ = false;
    return;
  }
  result_.status = exec_simple(sql);
  if (!result_.status.is_ok() && !sqlite3_get_autocommit(db_)) {
    exec_simple("ROLLBACK").is_ok();
  }
  in_tx_ = !sqlite3_get_autocommit(db_);
}

Status SqliteConn::drop_temp_objects() {
  std::vector<std::string> drops;
  sqlite3_stmt* st = nullptr;
  int rc = sqlite3_prepare_v2(db_,
                              "SELECT type, name FROM temp.sqlite_master WHERE type IN "
                              "('trigger', 'view', 'table') ORDER BY type = 'table'",
                              -1, &st, nullptr);
  while (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
    std::string type(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)));
    std::string name(reinterpret_cast<const char*>(sqlite3_column_text(st, 1)));
    std::string quoted = "\"";
    for (char ch : name) {
      quoted += ch;
      if (ch == '"') quoted += '"';
    }
    quoted += '"';
    for (char& ch : type) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    drops.push_back(fmt::format("DROP {} IF EXISTS temp.{}", type, quoted));
  }
  sqlite3_finalize(st);
  if (rc != SQLITE_OK) return error_status(rc, "cannot list the session's temporary objects");
  for (const std::string& d : drops) {
    if (Status s = exec_simple(d.c_str()); !s.is_ok()) return s;
  }
  // The cached statements that named them are stale now; SQLite re-prepares them itself.
  temp_made_ = false;
  return Status::ok();
}

std::string_view to_string(BackendOp op) {
  switch (op) {
    case BackendOp::kOpen: return "open";
    case BackendOp::kExecute: return "execute";
    case BackendOp::kCommit: return "commit";
    case BackendOp::kRollback: return "rollback";
    case BackendOp::kPing: return "ping";
    case BackendOp::kReset: return "reset";
    case BackendOp::kGroup: return "group commit";
    case BackendOp::kBatch: return "batch";
  }
  return "?";
}

}  // namespace dbmgr::daemon
