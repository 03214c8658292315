// PostgreSQL backend: non-blocking libpq in the loop, pipelined, prepared, streamed.
#include "backend/postgres/pg_conn.hpp"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <map>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "guard.hpp"
#include "backend/postgres/pg_sql.hpp"
#include "backend/sqlstate.hpp"

namespace dbmgr::daemon {
namespace {

// Type OIDs from pg_type.h.
constexpr Oid kBoolOid = 16;
constexpr Oid kByteaOid = 17;
constexpr Oid kInt8Oid = 20;
constexpr Oid kInt2Oid = 21;
constexpr Oid kInt4Oid = 23;
constexpr Oid kOidOid = 26;
constexpr Oid kFloat4Oid = 700;
constexpr Oid kFloat8Oid = 701;

// Schema epochs: one per database (server and name), moved on each time DDL
// (pgsql::Effects::schema) is sent through any connection of this daemon to it, and again
// when that DDL's transaction ends. A cached statement prepared in an older epoch is prepared
// anew before it runs, so a schema change made through dbmgrd never leaves a stale plan (0A000
// "cached plan must not change result type", or an inferred parameter type that no longer
// fits) in the middle of another transaction, where it could not be retried. Only DDL from
// outside the daemon, or run by a function a statement calls, can; see docs/protocol.md
// "Schema changes". The map only grows: one counter per database ever connected to.
std::atomic<std::uint64_t>* schema_epoch_for(const PgParams& p) {
  static std::mutex mu;
  static std::map<std::string, std::atomic<std::uint64_t>> epochs;
  std::lock_guard<std::mutex> lock(mu);
  return &epochs[p.host + '\0' + std::to_string(p.port) + '\0' + p.dbname];
}

proto::ValueTag tag_of(Oid t) {
  switch (t) {
    case kBoolOid: return proto::ValueTag::kBool;
    case kInt2Oid:
    case kInt4Oid:
    case kInt8Oid:
    case kOidOid: return proto::ValueTag::kInt64;
    case kFloat4Oid:
    case kFloat8Oid: return proto::ValueTag::kDouble;
    case kByteaOid: return proto::ValueTag::kBlob;
    default: return proto::ValueTag::kText;
  }
}

void put_be64(char* p, std::uint64_t v) {
  for (int i = 7; i >= 0; --i) {
    p[i] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
}

int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

void ignore_notice(void* /*arg*/, const PGresult* /*res*/) {}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

}  // namespace

PgConn::PgConn(uv_loop_t* loop, PgParams params)
    : loop_(loop), params_(std::move(params)), schema_epoch_(schema_epoch_for(params_)) {
  uv_timer_init(loop_, &timer_);
  timer_.data = this;
  open_handles_ = 1;
  cache_.reserve(16);
}

PgConn::~PgConn() {
  if (pending_row_ != nullptr) PQclear(pending_row_);
  if (conn_ != nullptr) PQfinish(conn_);
  if (schema_tx_open_) schema_tx_ended();  // the server rolls it back
}

std::string PgConn::server_version() const { return server_version_; }

// ---- plumbing ----

void PgConn::watch(int events) {
  if (poll_ == nullptr || events == poll_events_) return;
  poll_events_ = events;
  if (events == 0) {
    uv_poll_stop(poll_);
  } else {
    uv_poll_start(poll_, events, &PgConn::on_poll);
  }
}

void PgConn::rewatch_socket() {
  int fd = PQsocket(conn_);
  if (fd == poll_fd_ && poll_ != nullptr) return;
  if (poll_ != nullptr) {
    uv_close(reinterpret_cast<uv_handle_t*>(poll_), &PgConn::on_handle_closed);
    poll_ = nullptr;
  }
  poll_fd_ = fd;
  poll_events_ = 0;
  if (fd < 0) return;
  poll_ = new uv_poll_t;
  uv_poll_init(loop_, poll_, fd);
  poll_->data = this;
  ++open_handles_;
}

void PgConn::on_handle_closed(uv_handle_t* h) {
  auto* self = static_cast<PgConn*>(h->data);
  if (h != reinterpret_cast<uv_handle_t*>(&self->timer_)) delete reinterpret_cast<uv_poll_t*>(h);
  if (--self->open_handles_ == 0 && self->phase_ == Phase::kClosed) delete self;
}

void PgConn::start_timer(std::uint64_t ms) { uv_timer_start(&timer_, &PgConn::on_timer, ms, 0); }
void PgConn::stop_timer() { uv_timer_stop(&timer_); }

void PgConn::finish_op() {
  if (in_call()) {  // found while starting the operation: report it on a later loop turn
    async_complete_ = true;
    start_timer(0);
    return;
  }
  complete(op_, std::move(result_));
}

void PgConn::deliver_async(Status s) {
  result_.status = std::move(s);
  async_complete_ = true;
  start_timer(0);
}

void PgConn::on_timer(uv_timer_t* t) {
  auto* self = static_cast<PgConn*>(t->data);
  if (!guard_callback("a PostgreSQL timer", [self] { self->timer_fired(); })) {
    guard_callback("a PostgreSQL timer", [self] { self->fail_after_exception(); });
  }
}

void PgConn::fail_after_exception() {
  // The operation in flight is in an unknown state: end it with an error (the owner closes
  // the connection, which reports broken) rather than leave its session waiting forever.
  if (state() != State::kBusy || async_complete_) return;
  if (phase_ == Phase::kConnecting) {
    return connect_failed(Status::internal("internal error in dbmgrd while connecting"));
  }
  if (phase_ == Phase::kRunning || phase_ == Phase::kCreatingDb) {
    fail_broken("internal error in dbmgrd");
  }
}

void PgConn::timer_fired() {
  PgConn* self = this;
  if (self->async_complete_) {
    self->async_complete_ = false;
    self->phase_ = Phase::kIdle;
    self->complete(self->op_, std::move(self->result_));
    return;
  }
  if (self->resume_pending_) {
    self->resume_pending_ = false;
    self->drain_results();
    return;
  }
  if (self->phase_ == Phase::kConnecting && self->connect_step_running_) {
    self->connect_timed_out_ = true;  // the step's return reports it
    return;
  }
  if (self->phase_ == Phase::kConnecting || self->phase_ == Phase::kCreatingDb) {
    self->connect_failed(self->connect_timeout_status());
  }
}

void PgConn::on_poll(uv_poll_t* h, int status, int events) {
  auto* self = static_cast<PgConn*>(h->data);
  if (!guard_callback("PostgreSQL I/O", [&] { self->poll_fired(status, events); })) {
    guard_callback("PostgreSQL I/O", [self] { self->fail_after_exception(); });
  }
}

void PgConn::poll_fired(int status, int events) {
  PgConn* self = this;
  if (self->phase_ == Phase::kConnecting) {
    if (status < 0) {
      return self->connect_failed(Status::connection(uv_strerror(status)));
    }
    return self->continue_connect();
  }
  if (self->phase_ == Phase::kCreatingDb || self->phase_ == Phase::kRunning) {
    if (status < 0) return self->fail_broken(uv_strerror(status));
    self->on_io(events);
    return;
  }
  if (self->phase_ == Phase::kIdle && self->conn_ != nullptr) {
    // The server spoke while nothing ran: a notice, or the connection ending (terminated
    // backend, server restart). Read it so the poll does not fire again; a dead connection
    // is reported by the next operation (pre-ping, or the first statement, which is retried).
    if (status < 0 || PQconsumeInput(self->conn_) == 0 || PQstatus(self->conn_) == CONNECTION_BAD) {
      self->watch(0);
    }
  }
}

// ---- connecting ----

void PgConn::do_open() {
  op_ = BackendOp::kOpen;
  result_ = BackendResult{};
  start_connect(false);
}

void PgConn::start_connect(bool maintenance) {
  phase_ = Phase::kConnecting;
  connect_for_create_ = maintenance;
  std::string port = params_.port > 0 ? std::to_string(params_.port) : "";
  std::string options = params_.statement_timeout.count() > 0
                            ? fmt::format("-c statement_timeout={}", params_.statement_timeout.count())
                            : "";
  std::vector<const char*> kw, val;
  auto add = [&](const char* k, const std::string& v) {
    if (!v.empty()) {
      kw.push_back(k);
      val.push_back(v.c_str());
    }
  };
  std::string db = maintenance ? params_.maintenance_db : params_.dbname;
  std::string app = "dbmgrd";
  std::string utf8 = "UTF8";
  add("host", params_.host);
  add("port", port);
  add("user", params_.user);
  add("password", params_.password.reveal());
  add("dbname", db);
  add("sslmode", params_.sslmode);
  add("application_name", app);
  add("client_encoding", utf8);
  add("options", options);
  kw.push_back(nullptr);
  val.push_back(nullptr);
  conn_ = PQconnectStartParams(kw.data(), val.data(), 0);
  if (conn_ == nullptr || PQstatus(conn_) == CONNECTION_BAD) {
    std::string msg = conn_ != nullptr ? trim(PQerrorMessage(conn_)) : "out of memory";
    if (conn_ != nullptr) PQfinish(conn_);
    conn_ = nullptr;
    result_.broken = true;
    deliver_async(Status::connection(
        fmt::format("cannot connect to PostgreSQL database {}: {}", db, msg)));
    return;
  }
  PQsetnonblocking(conn_, 1);
  PQsetNoticeReceiver(conn_, &ignore_notice, nullptr);
  start_timer(static_cast<std::uint64_t>(params_.connect_timeout.count()));
  rewatch_socket();
  watch(UV_WRITABLE);  // libpq: behave as if PQconnectPoll had said PGRES_POLLING_WRITING
}

Status PgConn::connect_timeout_status() const {
  return Status::connection(
      fmt::format("cannot connect to PostgreSQL database {} at {}: no answer within {} ms",
                  params_.dbname, params_.host, params_.connect_timeout.count()));
}

void PgConn::continue_connect() {
  if (connect_step_running_) return;
  // No events for conn_ while a worker holds it, and no poll handle either: during the step
  // libpq may close its socket and open another (next address or host), and the old fd
  // number may be reused by then; removing it from epoll afterwards could unregister
  // someone else's socket. The step's return watches whatever PQsocket() is then.
  if (poll_ != nullptr) {
    uv_close(reinterpret_cast<uv_handle_t*>(poll_), &PgConn::on_handle_closed);
    poll_ = nullptr;
  }
  poll_fd_ = -1;
  poll_events_ = 0;
  connect_step_running_ = true;
  ++open_handles_;  // keeps this object alive until the step returns
  connect_work_.data = this;
  uv_queue_work(
      loop_, &connect_work_,
      [](uv_work_t* w) {
        auto* self = static_cast<PgConn*>(w->data);
        self->connect_step_result_ = PQconnectPoll(self->conn_);
      },
      [](uv_work_t* w, int /*status*/) {
        auto* self = static_cast<PgConn*>(w->data);
        guard_callback("a PostgreSQL connect step", [self] { self->connect_step_done(); });
      });
}

void PgConn::connect_step_done() {
  connect_step_running_ = false;
  --open_handles_;
  if (phase_ == Phase::kClosed) {  // closed while the step ran
    if (conn_ != nullptr) PQfinish(conn_);
    conn_ = nullptr;
    if (open_handles_ == 0) delete this;
    return;
  }
  if (connect_timed_out_) {
    connect_timed_out_ = false;
    return connect_failed(connect_timeout_status());
  }
  on_connect_poll(connect_step_result_);
}

void PgConn::on_connect_poll(PostgresPollingStatusType st) {
  switch (st) {
    case PGRES_POLLING_READING:
      rewatch_socket();
      watch(UV_READABLE);
      return;
    case PGRES_POLLING_WRITING:
      rewatch_socket();
      watch(UV_WRITABLE);
      return;
    case PGRES_POLLING_OK:
      stop_timer();
      rewatch_socket();  // the step ran with no poll handle: make one for the final socket
      return after_connect();
    default:
      return connect_failed(Status::connection(trim(PQerrorMessage(conn_))));
  }
}

void PgConn::connect_failed(Status s) {
  stop_timer();
  std::string msg = s.message();
  std::string db = connect_for_create_ ? params_.maintenance_db : params_.dbname;
  if (conn_ != nullptr) {
    watch(0);
    if (poll_ != nullptr) {
      uv_close(reinterpret_cast<uv_handle_t*>(poll_), &PgConn::on_handle_closed);
      poll_ = nullptr;
      poll_fd_ = -1;
    }
    PQfinish(conn_);
    conn_ = nullptr;
  }
  bool missing = msg.find("does not exist") != std::string::npos &&
                 msg.find("database") != std::string::npos;
  if (missing && params_.create_if_missing && !connect_for_create_ && !created_db_) {
    spdlog::info("PostgreSQL database {} does not exist; creating it (prefix policy allows)",
                 params_.dbname);
    return start_connect(true);
  }
  result_.status = Status::connection(
      msg.rfind("cannot connect", 0) == 0
          ? msg
          : fmt::format("cannot connect to PostgreSQL database {} at {}: {}", db,
                        params_.host.empty() ? "the default socket" : params_.host, msg));
  if (missing && !params_.create_if_missing) {
    result_.status = Status(proto::ErrorCategory::kNotFound,
                            fmt::format("PostgreSQL database {} does not exist, and the prefix "
                                        "policy does not allow creating it",
                                        params_.dbname),
                            "3D000");
  }
  result_.broken = true;
  phase_ = Phase::kIdle;
  finish_op();
}

void PgConn::after_connect() {
  if (connect_for_create_) {
    // CREATE DATABASE cannot run in a pipeline or a transaction: plain query mode.
    phase_ = Phase::kCreatingDb;
    char* quoted = PQescapeIdentifier(conn_, params_.dbname.c_str(), params_.dbname.size());
    std::string sql = fmt::format("CREATE DATABASE {}", quoted);
    PQfreemem(quoted);
    nsteps_ = cur_ = 0;
    push(Step::kScript);
    if (PQsendQuery(conn_, sql.c_str()) == 0) {
      return connect_failed(Status::connection(trim(PQerrorMessage(conn_))));
    }
    finish_send();
    return;
  }
  backend_pid_ = PQbackendPID(conn_);
  if (const char* v = PQparameterStatus(conn_, "server_version")) server_version_ = v;
  PQenterPipelineMode(conn_);
  phase_ = Phase::kIdle;
  // The socket stays registered for reading while idle: no epoll_ctl per statement.
  watch(UV_READABLE);
  result_.status = Status::ok();
  finish_op();
}

// ---- operations ----

void PgConn::begin_op(BackendOp op) {
  op_ = op;
  phase_ = Phase::kRunning;
  if (pending_row_ != nullptr) {  // a stream that was not read to its end
    PQclear(pending_row_);
    pending_row_ = nullptr;
  }
  nsteps_ = cur_ = 0;
  single_row_ = false;
  paused_ = false;
  rollback_after_error_ = false;
  result_ = BackendResult{};
}

void PgConn::send_simple(const char* sql, Step step) {
  push(step);
  if (PQsendQueryParams(conn_, sql, 0, nullptr, nullptr, nullptr, nullptr, 0) == 0) {
    return fail_broken(trim(PQerrorMessage(conn_)));
  }
  if (PQpipelineSync(conn_) == 0) return fail_broken(trim(PQerrorMessage(conn_)));
  finish_send();
}

void PgConn::do_commit() {
  begin_op(BackendOp::kCommit);
  send_simple("COMMIT", Step::kCommit);
}

void PgConn::do_rollback() {
  if (paused_) {
    // A stream the client abandoned: the rest of its rows are still in the pipeline, ahead
    // of anything sent now. Closing the connection is the rollback (the server ends the
    // transaction with the session); the owner closes it, since it reports broken.
    begin_op(BackendOp::kRollback);
    result_.broken = true;
    result_.in_transaction = false;
    watch(0);
    return deliver_async(Status::ok());
  }
  begin_op(BackendOp::kRollback);
  send_simple("ROLLBACK", Step::kRollback);
}

void PgConn::do_ping() {
  begin_op(BackendOp::kPing);
  if (conn_ == nullptr || PQstatus(conn_) == CONNECTION_BAD) {
    result_.broken = true;
    return deliver_async(Status::connection("connection is closed"));
  }
  send_simple("SELECT 1", Step::kPing);
}

bool PgConn::needs_reset() const {
  return dirty_ || cancels_in_flight_ > 0 ||
         (conn_ != nullptr && PQtransactionStatus(conn_) != PQTRANS_IDLE);
}

void PgConn::do_reset() {
  begin_op(BackendOp::kReset);
  if (cancels_in_flight_ > 0) {
    // A cancel request for the last user's statement is still on its way to the server:
    // the next user's statement must not be the one it interrupts. Reset once it is done.
    reset_after_cancel_ = true;
    return;
  }
  continue_reset();
}

void PgConn::continue_reset() {
  if (conn_ == nullptr || PQstatus(conn_) == CONNECTION_BAD) {
    result_.broken = true;
    return deliver_async(Status::connection("connection is closed"));
  }
  if (PQtransactionStatus(conn_) != PQTRANS_IDLE) {
    if (dirty_) {  // ROLLBACK then DISCARD ALL, one round trip
      push(Step::kRollback);
      PQsendQueryParams(conn_, "ROLLBACK", 0, nullptr, nullptr, nullptr, nullptr, 0);
    } else {
      return send_simple("ROLLBACK", Step::kRollback);
    }
  }
  if (dirty_) {
    dirty_ = false;
    cache_.clear();  // DISCARD ALL deallocates every prepared statement
    pending_deallocate_.clear();
    app_name_.clear();
    return send_simple("DISCARD ALL", Step::kDiscard);
  }
  deliver_async(Status::ok());
}

void PgConn::do_execute(const ExecRequest& req) {
  begin_op(BackendOp::kExecute);
  req_ = req;
  // The label is a view into the client's connection, which may be gone before a retry of
  // this request reads it: keep a copy (no allocation while the same client repeats).
  if (req.client_label != label_) label_.assign(req.client_label);
  req_.client_label = label_;
  stale_ = Stale::kNone;
  stale_retried_ = false;
  late_commit_sent_ = false;
  streamed_ = false;
  retry_rollback_ = false;
  writer_.begin(req_.request_id, req_.session_id, params_.max_frame_bytes);
  writer_.start(result_.frames.bytes());
  affected_ = 0;
  if (conn_ == nullptr || PQstatus(conn_) == CONNECTION_BAD) {
    result_.broken = true;
    return deliver_async(Status::connection("the PostgreSQL connection is closed"));
  }
  if (!send_exec()) return;
  finish_send();
}

bool PgConn::send_exec() {
  prepared_now_ = false;
  pgsql::Scan scan = pgsql::scan(req_.sql);
  // A one-shot in autocommit would commit before its rows are sent; if sending them fails
  // (a row larger than max_frame_bytes) the client would be told "failed" about a committed
  // write. A one-shot with RETURNING therefore runs in BEGIN, and op_done() commits it after
  // its last row (one more round trip, for these statements only).
  const bool late_commit = req_.commit_after && req_.begin == TxBegin::kNone && scan.returning;
  const bool begin = req_.begin != TxBegin::kNone || late_commit;
  // What a paused batch reports as in_transaction: the statement runs inside a transaction
  // (one it begins, or one already open), not in autocommit.
  stream_in_tx_ = begin || PQtransactionStatus(conn_) == PQTRANS_INTRANS;
  // PostgreSQL text cannot hold a NUL byte, and libpq would cut the value at it: refuse the
  // statement, as psycopg does, before anything is sent (blobs carry NULs).
  {
    std::uint32_t i = 0;
    for (const proto::Value& v : req_.params) {
      ++i;
      if (v.tag == proto::ValueTag::kText && v.bytes.find('\0') != std::string_view::npos) {
        result_.in_transaction = PQtransactionStatus(conn_) != PQTRANS_IDLE;
        deliver_async(Status(proto::ErrorCategory::kData,
                             fmt::format("text parameter {} contains a NUL byte, which "
                                         "PostgreSQL text cannot hold (send it as a blob)",
                                         i),
                             "22021"));
        return false;
      }
    }
  }
  // Parameters that do not match the statement's placeholders: the client's mistake, told as
  // SQLite and ODBC tell it (07001, invalid_request), not as the server's 08P01 about the
  // bind message, which reads as a broken connection. Like any error it ends the transaction.
  if (!scan.multi_statement) {
    const int wanted = scan.question_marks > 0 ? scan.question_marks : scan.max_dollar;
    if (static_cast<std::uint32_t>(wanted) != req_.params.size()) {
      Status s(proto::ErrorCategory::kInvalidRequest,
               fmt::format("the statement has {} parameter(s), {} given", wanted,
                           req_.params.size()),
               "07001");
      if (PQtransactionStatus(conn_) == PQTRANS_INTRANS) {
        result_.status = std::move(s);
        rollback_after_error_ = true;
        send_simple("ROLLBACK", Step::kRollback);
      } else {
        deliver_async(std::move(s));
      }
      return false;
    }
  }
  if (scan.multi_statement) {
    if (req_.params.size() == 0) after_effects(pgsql::effects(req_.sql));
    if (req_.params.size() > 0) {
      deliver_async(Status::invalid("parameters are only allowed in a single statement"));
      return false;
    }
    // A script runs through the simple query protocol, which pipelines do not allow.
    PQexitPipelineMode(conn_);
    std::string sql = begin ? (req_.read_only ? "BEGIN READ ONLY;" : "BEGIN;") : "";
    sql.append(req_.sql);
    push(Step::kScript);
    if (PQsendQuery(conn_, sql.c_str()) == 0) {
      fail_broken(trim(PQerrorMessage(conn_)));
      return false;
    }
    return true;
  }
  auto fail_send = [&] {
    fail_broken(trim(PQerrorMessage(conn_)));
    return false;
  };
  if (retry_rollback_) {  // the failed first attempt left the transaction aborted
    retry_rollback_ = false;
    push(Step::kRollback);
    if (PQsendQueryParams(conn_, "ROLLBACK", 0, nullptr, nullptr, nullptr, nullptr, 0) == 0) return fail_send();
  }
  if (begin) {
    push(Step::kBegin);
    const char* sql = req_.read_only ? "BEGIN READ ONLY" : "BEGIN";
    if (PQsendQueryParams(conn_, sql, 0, nullptr, nullptr, nullptr, nullptr, 0) == 0) return fail_send();
  }
  if (!label_.empty() && label_ != app_name_) {
    app_name_.assign(label_);
    const char* v[1] = {app_name_.c_str()};
    push(Step::kSetName);
    if (PQsendQueryParams(conn_, "SELECT pg_catalog.set_config('application_name', $1, false)", 1,
                          nullptr, v, nullptr, nullptr, 0) == 0) {
      return fail_send();
    }
  }
  // Statements evicted from the cache or gone stale; at most two per pipeline (steps_ is
  // small), the rest go with the next ones.
  for (int k = 0; k < 2 && !pending_deallocate_.empty(); ++k) {
    std::string sql = "DEALLOCATE " + pending_deallocate_.back();
    pending_deallocate_.pop_back();
    push(Step::kDeallocate);
    if (PQsendQueryParams(conn_, sql.c_str(), 0, nullptr, nullptr, nullptr, nullptr, 0) == 0) return fail_send();
  }

  // Parameters: binary for numbers, booleans and blobs; text for text.
  const std::size_t n = req_.params.size();
  types_.assign(n, 0);
  values_.assign(n, nullptr);
  lengths_.assign(n, 0);
  formats_.assign(n, 0);
  key_.clear();
  std::size_t bytes = 0;
  for (const proto::Value& v : req_.params) {
    if (v.tag == proto::ValueTag::kText) bytes += v.bytes.size() + 1;
    if (v.tag == proto::ValueTag::kInt64 || v.tag == proto::ValueTag::kDouble) bytes += 8;
    if (v.tag == proto::ValueTag::kBool) bytes += 1;
  }
  scratch_.resize(bytes);
  std::size_t off = 0;
  std::size_t i = 0;
  for (const proto::Value& v : req_.params) {
    char* p = scratch_.data() + off;
    switch (v.tag) {
      case proto::ValueTag::kNull:
        key_ += 'n';
        break;
      case proto::ValueTag::kBool:
        key_ += 'b';
        types_[i] = kBoolOid;
        *p = v.b ? 1 : 0;
        values_[i] = p;
        lengths_[i] = 1;
        formats_[i] = 1;
        off += 1;
        break;
      case proto::ValueTag::kInt64:
        key_ += 'i';
        types_[i] = kInt8Oid;
        put_be64(p, static_cast<std::uint64_t>(v.i));
        values_[i] = p;
        lengths_[i] = 8;
        formats_[i] = 1;
        off += 8;
        break;
      case proto::ValueTag::kDouble: {
        key_ += 'd';
        types_[i] = kFloat8Oid;
        std::uint64_t bits;
        std::memcpy(&bits, &v.d, 8);
        put_be64(p, bits);
        values_[i] = p;
        lengths_[i] = 8;
        formats_[i] = 1;
        off += 8;
        break;
      }
      case proto::ValueTag::kText:
        key_ += 't';
        std::memcpy(p, v.bytes.data(), v.bytes.size());
        p[v.bytes.size()] = '\0';
        values_[i] = p;
        off += v.bytes.size() + 1;
        break;
      case proto::ValueTag::kBlob:
        key_ += 'x';
        types_[i] = kByteaOid;
        values_[i] = v.bytes.data();
        lengths_[i] = static_cast<int>(v.bytes.size());
        formats_[i] = 1;
        break;
    }
    ++i;
  }
  key_ += '|';
  key_.append(req_.sql);

  // The prepared statement for this SQL and parameter types, prepared on first use.
  Cached* hit = nullptr;
  const std::uint64_t epoch = schema_epoch_->load(std::memory_order_relaxed);
  for (auto it = cache_.begin(); it != cache_.end(); ++it) {
    if (it->key == key_) {
      if (it->epoch == epoch && it->local_epoch == local_epoch_) {
        hit = &*it;
      } else {  // the schema changed since it was prepared: prepare it anew
        pending_deallocate_.push_back(std::move(it->name));
        cache_.erase(it);
      }
      break;
    }
  }
  if (hit == nullptr) {
    if (cache_.size() >= kStmtCacheSize) {
      auto lru = cache_.begin();
      for (auto it = cache_.begin(); it != cache_.end(); ++it) {
        if (it->used < lru->used) lru = it;
      }
      pending_deallocate_.push_back(lru->name);  // sent with the next pipeline
      cache_.erase(lru);
    }
    // Whether the SQL changes session state is decided once, when it is first prepared.
    cache_.push_back(Cached{key_, fmt::format("dbmgr_{}", ++name_counter_), 0,
                            pgsql::effects(req_.sql), epoch, local_epoch_});
    hit = &cache_.back();
    std::string sql = pgsql::rewrite_placeholders(req_.sql);
    prepared_now_ = true;
    push(Step::kPrepare);
    if (PQsendPrepare(conn_, hit->name.c_str(), sql.c_str(), static_cast<int>(n), types_.data()) == 0) {
      return fail_send();
    }
  }
  hit->used = ++use_counter_;
  current_stmt_ = hit->name;
  push(Step::kExec);
  if (PQsendQueryPrepared(conn_, hit->name.c_str(), static_cast<int>(n), values_.data(),
                          lengths_.data(), formats_.data(), 0) == 0) {
    return fail_send();
  }
  after_effects(hit->fx);  // last: it may empty the cache (hit)
  if (req_.commit_after && begin && !late_commit) {  // a one-shot that needed BEGIN READ ONLY
    push(Step::kCommit);
    if (PQsendQueryParams(conn_, "COMMIT", 0, nullptr, nullptr, nullptr, nullptr, 0) == 0) return fail_send();
  }
  if (PQpipelineSync(conn_) == 0) return fail_send();
  return true;
}

void PgConn::finish_send() {
  int rc = PQflush(conn_);
  if (rc < 0) return fail_broken(trim(PQerrorMessage(conn_)));
  watch(rc == 1 ? (UV_READABLE | UV_WRITABLE) : UV_READABLE);
}

void PgConn::do_resume() {
  paused_ = false;
  result_ = BackendResult{};
  writer_.start(result_.frames.bytes());
  // Go on from the loop, not from inside the caller's callback (no recursion per batch).
  resume_pending_ = true;
  start_timer(0);
}

void PgConn::on_io(int events) {
  if ((events & UV_WRITABLE) != 0) {
    int rc = PQflush(conn_);
    if (rc < 0) return fail_broken(trim(PQerrorMessage(conn_)));
    if (rc == 0) watch(UV_READABLE);
  }
  if ((events & UV_READABLE) != 0) {
    if (PQconsumeInput(conn_) == 0) return fail_broken(trim(PQerrorMessage(conn_)));
    drain_results();
  }
}

void PgConn::pause_stream() {
  writer_.finish_batch();
  result_.more = true;
  result_.in_transaction = stream_in_tx_;
  paused_ = true;
  watch(0);  // the server waits while the client reads what we have
  phase_ = Phase::kRunning;
  streamed_ = true;
  finish_op();
}

void PgConn::drain_results() {
  if (nsteps_ == 0 && phase_ == Phase::kRunning) {
    // Nothing was sent for the operation in flight (a reset waiting for a cancel request, a
    // result delivered on the next turn): what the server said is a notice, a NOTIFY, or
    // the connection ending. Nothing to wait for here.
    while (PGnotify* n = PQnotifies(conn_)) PQfreemem(n);
    if (PQstatus(conn_) == CONNECTION_BAD && !async_complete_) {
      return fail_broken(trim(PQerrorMessage(conn_)));
    }
    return;
  }
  if (pending_row_ != nullptr && !paused_ && phase_ == Phase::kRunning) {
    // The row that did not fit the last batch goes first, in a new one (its size was
    // checked when it arrived).
    PGresult* r = std::exchange(pending_row_, nullptr);
    ResultWriter::Room room = ResultWriter::Room::kRow;
    if (Status st = writer_.room(row_bytes(r, 0), &room); !st.is_ok()) result_.status = std::move(st);
    handle_result(r);
    PQclear(r);
  }
  while (phase_ == Phase::kRunning || phase_ == Phase::kCreatingDb) {
    if (paused_) return;
    // Single-row mode must be chosen before libpq starts parsing this statement's rows,
    // which PQisBusy() may do; a result that arrives whole anyway is handled too.
    if (cur_ < nsteps_ && steps_[cur_] == Step::kExec && !single_row_) {
      PQsetSingleRowMode(conn_);
      single_row_ = true;
    }
    if (PQisBusy(conn_) != 0) {
      if (PQstatus(conn_) == CONNECTION_BAD) return fail_broken(trim(PQerrorMessage(conn_)));
      if (poll_events_ == 0) watch(UV_READABLE);
      return;
    }
    PGresult* r = PQgetResult(conn_);
    if (r == nullptr) {  // the end of one statement's results
      if (cur_ < nsteps_ && steps_[cur_] == Step::kScript) return op_done();
      if (cur_ < nsteps_) ++cur_;
      single_row_ = false;
      if (PQstatus(conn_) == CONNECTION_BAD) return fail_broken(trim(PQerrorMessage(conn_)));
      continue;
    }
    if (PQresultStatus(r) == PGRES_PIPELINE_SYNC) {
      PQclear(r);
      return op_done();
    }
    if (PQresultStatus(r) == PGRES_SINGLE_TUPLE && result_.status.is_ok() &&
        cur_ < nsteps_ && steps_[cur_] == Step::kExec) {
      send_columns(r);
      ResultWriter::Room room = ResultWriter::Room::kRow;
      if (Status s = writer_.room(row_bytes(r, 0), &room); !s.is_ok()) {
        // No frame may pass max_frame_bytes: the statement fails; its remaining rows are
        // read and dropped until the pipeline's end.
        result_.status = std::move(s);
      } else if (room == ResultWriter::Room::kFull) {
        // The batch ends before a row that would take it past kMaxRowBatchBytes: keep the
        // row for resume() and let the client read what we have.
        pending_row_ = r;
        return pause_stream();
      }
    }
    handle_result(r);
    PQclear(r);
  }
}

std::size_t PgConn::row_bytes(const PGresult* r, int row) const {
  std::size_t n = 0;
  for (int c = 0, cols = PQnfields(r); c < cols; ++c) {
    if (PQgetisnull(r, row, c) != 0) {
      n += proto::encoded_size(proto::ValueTag::kNull);
      continue;
    }
    auto len = static_cast<std::size_t>(PQgetlength(r, row, c));
    switch (PQftype(r, c)) {
      case kBoolOid: n += proto::encoded_size(proto::ValueTag::kBool); break;
      case kInt2Oid:
      case kInt4Oid:
      case kInt8Oid:
      case kOidOid:
      case kFloat4Oid:
      case kFloat8Oid: n += proto::encoded_size(proto::ValueTag::kInt64); break;
      case kByteaOid:  // text format: \x and two hex digits a byte
        n += proto::encoded_size(proto::ValueTag::kBlob, len >= 2 ? (len - 2) / 2 : len);
        break;
      default: n += proto::encoded_size(proto::ValueTag::kText, len); break;
    }
  }
  return n;
}

void PgConn::send_columns(const PGresult* r) {
  if (writer_.columns_sent()) return;
  int n = PQnfields(r);
  if (n == 0) return writer_.no_columns();
  cols_.resize(static_cast<std::size_t>(n));  // reused: no allocation per result
  for (int c = 0; c < n; ++c) {
    cols_[static_cast<std::size_t>(c)].name = PQfname(r, c);
    cols_[static_cast<std::size_t>(c)].type = tag_of(PQftype(r, c));
  }
  if (Status s = writer_.columns(cols_.data(), cols_.size()); !s.is_ok()) result_.status = std::move(s);
}

// Encodes a row the writer made room for (ResultWriter::room()).
void PgConn::encode_row(const PGresult* r, int row) {
  int n = PQnfields(r);
  proto::RowBatchEncoder& batch = writer_.row();
  for (int c = 0; c < n; ++c) {
    if (PQgetisnull(r, row, c) != 0) {
      batch.null();
      continue;
    }
    const char* v = PQgetvalue(r, row, c);
    int len = PQgetlength(r, row, c);
    switch (PQftype(r, c)) {
      case kBoolOid: batch.boolean(v[0] == 't'); break;
      case kInt2Oid:
      case kInt4Oid:
      case kInt8Oid:
      case kOidOid: batch.int64(std::strtoll(v, nullptr, 10)); break;
      case kFloat4Oid:
      case kFloat8Oid: batch.real(std::strtod(v, nullptr)); break;
      case kByteaOid: {
        // Text format: \x followed by hex pairs.
        std::string_view s(v, static_cast<std::size_t>(len));
        if (s.size() >= 2 && s[0] == '\\' && s[1] == 'x') {
          std::size_t out = (s.size() - 2) / 2;
          scratch_.resize(out);
          for (std::size_t k = 0; k < out; ++k) {
            scratch_[k] = static_cast<char>(hexval(s[2 + 2 * k]) * 16 + hexval(s[3 + 2 * k]));
          }
          batch.blob(std::string_view(scratch_.data(), out));
        } else {
          batch.blob(s);
        }
        break;
      }
      default: batch.text(std::string_view(v, static_cast<std::size_t>(len))); break;
    }
  }
  batch.end_row();
}

void PgConn::handle_result(PGresult* r) {
  Step step = cur_ < nsteps_ ? steps_[cur_] : Step::kPing;
  switch (PQresultStatus(r)) {
    case PGRES_SINGLE_TUPLE:
      if (step == Step::kExec && result_.status.is_ok()) encode_row(r, 0);  // room made

      return;
    case PGRES_TUPLES_OK:
    case PGRES_COMMAND_OK:
      if (step == Step::kExec || step == Step::kScript) {
        if (step == Step::kExec && result_.status.is_ok()) {
          send_columns(r);
          // Rows that came whole (single-row mode could not be set): encode them all.
          for (int row = 0, n = PQntuples(r); row < n && result_.status.is_ok(); ++row) {
            ResultWriter::Room room = ResultWriter::Room::kRow;
            Status s = writer_.room(row_bytes(r, row), &room);
            // A whole result cannot pause: a full batch just starts the next one.
            if (s.is_ok() && room == ResultWriter::Room::kFull) s = writer_.room(row_bytes(r, row), &room);
            if (!s.is_ok()) {
              result_.status = std::move(s);
              break;
            }
            encode_row(r, row);
          }
        }
        const char* t = PQcmdTuples(r);
        affected_ = (t != nullptr && *t != '\0') ? std::strtoll(t, nullptr, 10) : 0;
      }
      return;
    case PGRES_EMPTY_QUERY:
      return;
    case PGRES_PIPELINE_ABORTED:
      if (step == Step::kPrepare) forget_statement(false);
      return;
    case PGRES_COPY_IN:
    case PGRES_COPY_OUT:
    case PGRES_COPY_BOTH:
      if (result_.status.is_ok()) result_.status = Status::invalid("COPY is not supported through dbmgrd");
      return;
    default: {  // errors
      if (step == Step::kPrepare) forget_statement(false);
      if (step == Step::kExec) {
        const char* state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        // The prepared statement went stale (DDL) or is gone: prepare it again next time.
        if (state != nullptr && std::strcmp(state, "26000") == 0) forget_statement(false);
        if (state != nullptr && std::strcmp(state, "0A000") == 0) {
          // "cached plan must not change result type": a table the statement reads was
          // altered or recreated since it was prepared. The server keeps the old statement:
          // deallocate it, prepare anew; op_done() retries once where that is safe.
          const char* primary = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
          if (primary != nullptr && std::strstr(primary, "cached plan") != nullptr) {
            stale_ = Stale::kPlan;
          }
          forget_statement(true);
        } else if (state != nullptr && !prepared_now_ && stale_types_error(state)) {
          // A statement from the cache keeps the parameter types the server inferred when it
          // was prepared; a column whose type changed since makes it fail ("column is of
          // type smallint but expression is of type character varying") where the same SQL
          // prepared now succeeds. These errors are raised while planning or binding, before
          // anything ran: prepare it anew, and op_done() runs it again once where that is
          // safe (a genuine error then comes back the same).
          stale_ = Stale::kTypes;
          forget_statement(true);
        }
      }
      if (result_.status.is_ok()) result_.status = error_of(r);
      return;
    }
  }
}

bool PgConn::stale_types_error(const char* state) {
  // datatype_mismatch, undefined_function (operator does not exist: integer = text),
  // indeterminate_datatype, ambiguous_parameter, invalid_text_representation (a text value
  // for a parameter inferred as a number).
  for (const char* s : {"42804", "42883", "42P18", "42P08", "22P02"}) {
    if (std::strcmp(state, s) == 0) return true;
  }
  return false;
}

void PgConn::forget_statement(bool deallocate) {
  for (auto it = cache_.begin(); it != cache_.end(); ++it) {
    if (it->name == current_stmt_) {
      if (deallocate) pending_deallocate_.push_back(it->name);
      cache_.erase(it);
      return;
    }
  }
}

Status PgConn::error_of(const PGresult* r) const {
  const char* state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
  const char* primary = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
  const char* detail = PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL);
  std::string msg = primary != nullptr ? primary : trim(PQresultErrorMessage(r));
  if (detail != nullptr) msg += fmt::format(" ({})", detail);
  std::string s = state != nullptr ? state : "";
  using C = proto::ErrorCategory;
  // One table for every backend (sqlstate.hpp). libpq's own errors carry no SQLSTATE: the
  // connection broke, or libpq itself failed.
  C cat = s.empty() ? (PQstatus(conn_) == CONNECTION_BAD ? C::kConnection : C::kInternal)
                    : category_of_sqlstate(s);
  if (s == "57014" && msg.find("statement timeout") != std::string::npos) cat = C::kTimeout;
  return {cat, msg, s};
}

void PgConn::op_done() {
  if (phase_ == Phase::kCreatingDb) {
    // CREATE DATABASE answered: success or "already exists" (another connection won).
    PQfinish(conn_);
    conn_ = nullptr;
    if (poll_ != nullptr) {
      uv_close(reinterpret_cast<uv_handle_t*>(poll_), &PgConn::on_handle_closed);
      poll_ = nullptr;
      poll_fd_ = -1;
    }
    Status st = result_.status;
    if (!st.is_ok() && st.sqlstate() != "42P04") {
      result_.broken = true;
      phase_ = Phase::kIdle;
      return finish_op();
    }
    result_.status = Status::ok();
    created_db_ = true;
    return start_connect(false);
  }
  if (!steps_.empty() && nsteps_ > 0 && steps_[0] == Step::kScript) PQenterPipelineMode(conn_);
  const PGTransactionStatusType tx = PQtransactionStatus(conn_);
  if (schema_tx_open_ && tx == PQTRANS_IDLE) schema_tx_ended();
  const bool in_tx = tx == PQTRANS_INTRANS || tx == PQTRANS_INERROR;
  if (op_ == BackendOp::kExecute && !rollback_after_error_) {
    if (!result_.status.is_ok()) {
      result_.frames.bytes().clear();
      writer_.abandon();
      if (stale_ != Stale::kNone && PQstatus(conn_) != CONNECTION_BAD) {
        const Stale why = std::exchange(stale_, Stale::kNone);
        // pgjdbc's rule: the statement is run again once, prepared anew, when nothing of
        // the transaction is lost by it (a one-shot, or the statement that began the
        // transaction) and no row of it reached the client yet.
        if (!stale_retried_ && !streamed_ &&
            (req_.begin != TxBegin::kNone || req_.commit_after)) {
          stale_retried_ = true;
          spdlog::debug("PostgreSQL connection {}: {}; preparing the statement again",
                        backend_pid_,
                        why == Stale::kPlan ? "its result columns changed"
                                            : result_.status.message());
          retry_rollback_ = in_tx;
          nsteps_ = cur_ = 0;
          single_row_ = false;
          result_ = BackendResult{};
          writer_.begin(req_.request_id, req_.session_id, params_.max_frame_bytes);
          writer_.start(result_.frames.bytes());
          affected_ = 0;
          if (!send_exec()) return;
          return finish_send();
        }
        if (why == Stale::kPlan) {
          result_.status = Status(
              proto::ErrorCategory::kSerialization,
              "the result columns of this statement changed since it was prepared (a table "
              "it reads was altered or recreated while this transaction was open): cached "
              "plan must not change result type; the transaction was rolled back, run it again",
              "0A000");
        }
      }
      if (in_tx && PQstatus(conn_) != CONNECTION_BAD) {
        // An error ends the transaction: roll back now, report the error after.
        rollback_after_error_ = true;
        nsteps_ = cur_ = 0;
        single_row_ = false;
        return send_simple("ROLLBACK", Step::kRollback);
      }
    } else if (req_.commit_after && tx == PQTRANS_INTRANS && !late_commit_sent_) {
      // A one-shot is its own transaction: what it left open (a RETURNING statement run in
      // BEGIN so that its rows are sent before it commits, or SQL that began a transaction
      // itself) is committed now, and the reply completes only once COMMIT succeeded.
      late_commit_sent_ = true;
      nsteps_ = cur_ = 0;
      single_row_ = false;
      return send_simple("COMMIT", Step::kCommit);
    } else {
      proto::Complete done;
      done.affected_rows = affected_;
      done.in_transaction = in_tx;
      writer_.complete(done);
    }
  }
  result_.in_transaction = in_tx;
  result_.broken = PQstatus(conn_) == CONNECTION_BAD;
  result_.statements = op_ == BackendOp::kExecute ? 1 : 0;
  phase_ = Phase::kIdle;
  watch(result_.broken ? 0 : UV_READABLE);
  finish_op();
}

void PgConn::schema_tx_ended() {
  // Statements other connections prepared while the DDL's transaction was open saw the old
  // schema: after its commit they are stale too.
  schema_tx_open_ = false;
  schema_epoch_->fetch_add(1, std::memory_order_relaxed);
}

void PgConn::after_effects(pgsql::Effects fx) {
  if (fx.session_state) dirty_ = true;
  if (fx.schema) {
    schema_epoch_->fetch_add(1, std::memory_order_relaxed);
    schema_tx_open_ = true;
  }
  if (fx.local_schema) ++local_epoch_;  // e.g. a temp table may hide a table a statement read
  if (fx.drops_statements) {
    // DEALLOCATE or DISCARD ALL from the client: the server may no longer have the cached
    // statements (a DEALLOCATE of one of them would then fail an unrelated statement).
    // Forgotten ones that still exist go at the reset (DISCARD ALL).
    cache_.clear();
    pending_deallocate_.clear();
    dirty_ = true;
  }
}

void PgConn::fail_broken(std::string why) {
  if (schema_tx_open_) schema_tx_ended();
  if (phase_ == Phase::kCreatingDb) {
    return connect_failed(Status::connection(why));
  }
  spdlog::debug("PostgreSQL connection {} broke: {}", backend_pid_, why);
  result_.status = Status::connection(
      fmt::format("the connection to PostgreSQL database {} broke: {}", params_.dbname,
                  why.empty() ? "server closed the connection" : why));
  result_.frames.bytes().clear();
  result_.broken = true;
  result_.in_transaction = false;
  result_.more = false;
  writer_.abandon();
  phase_ = Phase::kIdle;
  watch(0);
  finish_op();
}

void PgConn::do_cancel() {
  if (phase_ != Phase::kRunning || conn_ == nullptr) return;
  struct CancelWork {
    uv_work_t work;
    PGcancel* cancel;
    PgConn* conn;
  };
  auto* w = new CancelWork{{}, PQgetCancel(conn_), this};
  w->work.data = w;
  if (w->cancel == nullptr) {
    delete w;
    return;
  }
  // The connection is not leased again until the request is done (needs_reset()), and not
  // deleted while it runs (open_handles_).
  ++cancels_in_flight_;
  ++open_handles_;
  uv_queue_work(
      loop_, &w->work,
      [](uv_work_t* req) {
        auto* cw = static_cast<CancelWork*>(req->data);
        char err[256];
        PQcancel(cw->cancel, err, sizeof(err));
      },
      [](uv_work_t* req, int) {
        auto* cw = static_cast<CancelWork*>(req->data);
        PgConn* self = cw->conn;
        PQfreeCancel(cw->cancel);
        delete cw;
        guard_callback("a PostgreSQL cancel", [self] { self->cancel_done(); });
      });
}

void PgConn::cancel_done() {
  --cancels_in_flight_;
  --open_handles_;
  if (phase_ == Phase::kClosed) {
    if (open_handles_ == 0) delete this;
    return;
  }
  if (cancels_in_flight_ == 0 && reset_after_cancel_) {
    reset_after_cancel_ = false;
    continue_reset();
  }
}

void PgConn::do_close() {
  set_listener(nullptr);
  phase_ = Phase::kClosed;
  stop_timer();
  if (poll_ != nullptr) {
    uv_close(reinterpret_cast<uv_handle_t*>(poll_), &PgConn::on_handle_closed);
    poll_ = nullptr;
  }
  if (conn_ != nullptr && !connect_step_running_) {  // else the step's return finishes it
    PQfinish(conn_);  // the server rolls back whatever was open
    conn_ = nullptr;
  }
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), &PgConn::on_handle_closed);
}

}  // namespace dbmgr::daemon
