// dbmgr-bench: dbmgrd side by side with direct access and PgBouncer (issue 7).
//
// One invocation runs every (workload, client count) point against every target, the
// targets alternating A B A B over --rounds rounds, and prints one table (and a CSV) with
// TPS, latency percentiles, errors by kind, and the CPU and peak RSS of the daemon or
// PgBouncer serving the target. It starts what it needs itself (scripts/test-servers.sh for
// PostgreSQL, PgBouncer and MariaDB in a temp folder, dbmgrd on temp sockets) unless told
// where running servers are. See docs/benchmarks.md.
#include <fcntl.h>
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sql.h>
#include <sqlext.h>
#include <sqlite3.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dbmgr/dbmgr.hpp>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#ifndef DBMGR_BENCH_SOURCE_DIR
#define DBMGR_BENCH_SOURCE_DIR "."
#endif
#ifndef DBMGR_BENCH_DEFAULT_DBMGRD
#define DBMGR_BENCH_DEFAULT_DBMGRD "dbmgrd"
#endif

namespace {

using Clock = std::chrono::steady_clock;

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

[[noreturn]] void die(const std::string& msg) {
  std::fprintf(stderr, "dbmgr-bench: %s\n", msg.c_str());
  std::exit(2);
}

void note(const std::string& msg) {
  std::fprintf(stderr, "dbmgr-bench: %s\n", msg.c_str());
  std::fflush(stderr);
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  std::istringstream in(s);
  while (std::getline(in, cur, sep)) {
    if (!cur.empty()) out.push_back(cur);
  }
  return out;
}

// ---- enums -------------------------------------------------------------------------------

// tpcb-pipelined: tpcb-like sent as one batch where the client can (dbmgrd: Session::pipeline();
// libpq: pipeline mode, one Sync). Direct SQLite and MariaDB clients have no round trip to save
// or no pipeline API, and run it as tpcb-like.
enum class Workload {
  kSelect1,
  kPointSelect,
  kTpcb,
  kInsert,
  kConnectPerTxn,
  kDisconnect,
  kTpcbPipelined
};
enum class Target {
  kPgDirect,
  kPgBouncer,
  kPgDbmgrd,
  kSqliteInproc,
  kSqliteProcs,
  kSqliteDbmgrd,
  kMariadbDirect,
  kMariadbDbmgrd,
  kPgDbmgrdAsync,
  kSqliteDbmgrdAsync
};

constexpr std::array<const char*, 7> kWorkloadNames = {
    "select1", "point-select", "tpcb-like", "insert", "connect-per-txn", "disconnect",
    "tpcb-pipelined"};
constexpr std::array<const char*, 10> kTargetNames = {
    "pg-direct",      "pg-pgbouncer",    "pg-dbmgrd",       "sqlite-inproc",
    "sqlite-procs",   "sqlite-dbmgrd",   "mariadb-direct",  "mariadb-dbmgrd",
    "pg-dbmgrd-async", "sqlite-dbmgrd-async"};

const char* name(Workload w) { return kWorkloadNames[static_cast<int>(w)]; }
const char* name(Target t) { return kTargetNames[static_cast<int>(t)]; }

Workload parse_workload(const std::string& s) {
  for (std::size_t i = 0; i < kWorkloadNames.size(); ++i) {
    if (s == kWorkloadNames[i]) return static_cast<Workload>(i);
  }
  die("unknown workload '" + s +
      "' (select1, point-select, tpcb-like, insert, connect-per-txn, disconnect, "
      "tpcb-pipelined)");
}

Target parse_target(const std::string& s) {
  for (std::size_t i = 0; i < kTargetNames.size(); ++i) {
    if (s == kTargetNames[i]) return static_cast<Target>(i);
  }
  die("unknown target '" + s + "'");
}

bool is_pg(Target t) {
  return t == Target::kPgDirect || t == Target::kPgBouncer || t == Target::kPgDbmgrd ||
         t == Target::kPgDbmgrdAsync;
}
// One client thread (the library's I/O thread doing the work) with N AsyncSessions in flight
// over one daemon connection, instead of N client threads.
bool uses_async(Target t) {
  return t == Target::kPgDbmgrdAsync || t == Target::kSqliteDbmgrdAsync;
}
bool is_mariadb(Target t) { return t == Target::kMariadbDirect || t == Target::kMariadbDbmgrd; }
bool is_sqlite(Target t) { return !is_pg(t) && !is_mariadb(t); }
bool uses_processes(Target t) { return t == Target::kSqliteProcs; }
// How a point's clients run: threads, forked processes, or (disconnect) a forked process that
// is killed and a waiter thread.
const char* client_mode(Workload w, Target t) {
  if (w == Workload::kDisconnect) return "killed";
  if (uses_async(t)) return "async";
  return uses_processes(t) ? "procs" : "threads";
}
// The disconnect workload needs a pool in the middle: dbmgrd only (the direct targets have
// none; PgBouncer is not wired up for it).
bool disconnect_applies(Target t) { return t == Target::kPgDbmgrd || t == Target::kSqliteDbmgrd; }

// Error kinds, as counted per point. `wrong`: a wrong outcome with no error reported (the
// disconnect workload: the waiter ran while the killed client held the lock, or saw its
// change, or that change survived).
enum ErrKind {
  kErrBusy,
  kErrPoolExhausted,
  kErrConnection,
  kErrTimeout,
  kErrOther,
  kErrWrong,
  kErrKinds
};
constexpr std::array<const char*, kErrKinds> kErrNames = {"busy",    "pool_exhausted", "connection",
                                                          "timeout", "other",          "wrong"};

struct BenchError : std::runtime_error {
  BenchError(ErrKind k, const std::string& m, bool reconnect = false)
      : std::runtime_error(m), kind(k), needs_reconnect(reconnect) {}
  ErrKind kind;
  bool needs_reconnect;
};

// ---- latency histogram (plain data: lives in shared memory for forked workers) ------------

struct Histogram {
  // Log-linear: values below 64 ns exact, then 32 sub-buckets per power of two (~3%).
  static constexpr int kBuckets = 64 + 36 * 32;
  std::uint64_t counts[kBuckets];

  static int index(std::uint64_t v) {
    if (v < 64) return static_cast<int>(v);
    int p = 63 - std::countl_zero(v);  // >= 6
    int shift = p - 5;
    int mant = static_cast<int>(v >> shift);  // [32, 64)
    int idx = 64 + (p - 6) * 32 + (mant - 32);
    return std::min(idx, kBuckets - 1);
  }
  static double value(int idx) {  // the middle of the bucket
    if (idx < 64) return idx;
    int p = (idx - 64) / 32 + 6;
    int mant = (idx - 64) % 32 + 32;
    double lo = std::ldexp(mant, p - 5);
    return lo + std::ldexp(0.5, p - 5);
  }
  void add(std::uint64_t v) { ++counts[index(v)]; }
  void merge(const Histogram& o) {
    for (int i = 0; i < kBuckets; ++i) counts[i] += o.counts[i];
  }
  std::uint64_t total() const {
    std::uint64_t t = 0;
    for (auto c : counts) t += c;
    return t;
  }
  double percentile(double q) const {  // ns
    std::uint64_t t = total();
    if (t == 0) return 0;
    auto want = static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(t)));
    if (want == 0) want = 1;
    std::uint64_t c = 0;
    for (int i = 0; i < kBuckets; ++i) {
      c += counts[i];
      if (c >= want) return value(i);
    }
    return value(kBuckets - 1);
  }
};

struct WorkerStats {
  std::uint64_t txns;
  std::uint64_t errors[kErrKinds];
  Histogram hist;
  char first_error[200];
};

// The start gate, in shared memory: a process-shared mutex and condition variable, so that
// a thousand waiting clients (threads or forked processes) sleep instead of polling.
struct Control {
  std::atomic<int> ready;
  std::atomic<int> go;
  std::atomic<std::int64_t> end_ns;
  pthread_mutex_t mu;
  pthread_cond_t cv;

  void init() {
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
    pthread_mutex_init(&mu, &ma);
    pthread_mutexattr_destroy(&ma);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setpshared(&ca, PTHREAD_PROCESS_SHARED);
    pthread_cond_init(&cv, &ca);
    pthread_condattr_destroy(&ca);
  }
  void destroy() {
    pthread_cond_destroy(&cv);
    pthread_mutex_destroy(&mu);
  }
  void wait_go() {
    pthread_mutex_lock(&mu);
    while (go.load() == 0) pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
  }
  void open_gate(std::int64_t end) {
    pthread_mutex_lock(&mu);
    end_ns.store(end);
    go.store(1);
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
  }
};

template <typename T>
T* shared_alloc(std::size_t n) {
  void* p = mmap(nullptr, sizeof(T) * n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) die("mmap failed");
  std::memset(p, 0, sizeof(T) * n);
  return static_cast<T*>(p);
}
template <typename T>
void shared_free(T* p, std::size_t n) {
  munmap(p, sizeof(T) * n);
}

// ---- configuration ------------------------------------------------------------------------

struct Config {
  std::vector<Workload> workloads;
  std::vector<Target> targets;
  std::vector<int> clients = {1, 16, 64};
  double duration_s = 5;
  int rounds = 3;
  double scale = 10;  // pgbench scale: 100,000 accounts each
  std::vector<int> idle_clients;
  std::string csv;
  bool smoke = false;
  bool keep = false;
  int sqlite_busy_timeout_ms = 30000;
  std::string pg_host, pg_port = "5433", pg_user = "dbmgr", pg_password, pg_db = "dbmgr_test";
  std::string pgbouncer_host, pgbouncer_port = "6432";
  int pgbouncer_pid = 0;
  bool pgbouncer_prepared = false;  // pg-pgbouncer: named prepared statements (1.21 and later)
  std::string dbmgr_socket;  // a running dbmgrd for pg-dbmgrd
  int dbmgr_pid = 0;
  std::string dbmgr_sqlite_socket;  // a running dbmgrd for sqlite-dbmgrd
  std::string sqlite_dir;           // with dbmgr_sqlite_socket: its DATABASE_PATH
  // MariaDB: a running server on a Unix socket (else a private one via test-servers.sh).
  std::string mariadb_socket, mariadb_user = "dbmgr", mariadb_password, mariadb_db = "dbmgr_test";
  std::string mariadb_odbc_driver = "MariaDB Unicode";
  std::string dbmgr_mariadb_socket;  // a running dbmgrd in front of that MariaDB
  int dbmgr_mariadb_pid = 0;
  bool mariadb_private_db = false;  // smoke on a given server: a database of its own, dropped
  int dbmgr_mariadb_worker_threads = 0;  // mariadb-dbmgrd's worker_threads; 0: its default
  // dbmgrd targets: reads (select1, point-select) as read-only one-shots (the default) or as
  // plain one-shots.
  bool dbmgr_reads_read_only = true;
  std::string dbmgrd = DBMGR_BENCH_DEFAULT_DBMGRD;
  std::string source_dir = DBMGR_BENCH_SOURCE_DIR;
  std::string workdir;
  std::string dbmgrd_log_level = "warn";
};

// Everything a client needs to reach a target.
struct Endpoints {
  std::string pg_conninfo;
  std::string pgbouncer_conninfo;
  std::string dbmgr_pg_socket;
  std::string dbmgr_sqlite_socket;
  std::string dbmgr_pg1_socket;  // disconnect workload: a dbmgrd whose pool is 1 connection
  std::string sqlite_file;
  std::string dbmgr_sqlite_file;  // the file sqlite-dbmgrd serves (read directly to check)
  std::string mariadb_odbc;       // the ODBC connection string of mariadb-direct
  std::string dbmgr_mariadb_socket;
  int sqlite_busy_timeout_ms = 30000;
  bool dbmgr_reads_read_only = true;
  bool pgbouncer_prepared = false;
  std::int64_t accounts = 0, tellers = 0, branches = 0;
  int pgbouncer_pid = 0, dbmgr_pg_pid = 0, dbmgr_sqlite_pid = 0, dbmgr_pg1_pid = 0,
      dbmgr_mariadb_pid = 0;
};

std::string pg_quote(const std::string& v) {
  std::string out = "'";
  for (char c : v) {
    if (c == '\'' || c == '\\') out += '\\';
    out += c;
  }
  return out + "'";
}

// ---- the SQL of each workload ---------------------------------------------------------------

struct Rng {
  std::mt19937_64 gen;
  explicit Rng(std::uint64_t seed) : gen(seed) {}
  std::int64_t uniform(std::int64_t lo, std::int64_t hi) {
    return std::uniform_int_distribution<std::int64_t>(lo, hi)(gen);
  }
};

struct TpcbArgs {
  std::int64_t aid, tid, bid, delta;
};
TpcbArgs tpcb_args(Rng& rng, const Endpoints& ep) {
  return {rng.uniform(1, ep.accounts), rng.uniform(1, ep.tellers), rng.uniform(1, ep.branches),
          rng.uniform(-5000, 5000)};
}

// Statements with ? placeholders (SQLite, dbmgrd) and $n (libpq).
enum Stmt { kSSelect1, kSPoint, kSUpdAcc, kSUpdTel, kSUpdBr, kSInsHist, kStmts };
constexpr std::array<const char*, kStmts> kSqlQ = {
    "SELECT 1",
    "SELECT abalance FROM bench_accounts WHERE aid = ?",
    "UPDATE bench_accounts SET abalance = abalance + ? WHERE aid = ?",
    "UPDATE bench_tellers SET tbalance = tbalance + ? WHERE tid = ?",
    "UPDATE bench_branches SET bbalance = bbalance + ? WHERE bid = ?",
    "INSERT INTO bench_history (tid, bid, aid, delta, mtime) VALUES (?, ?, ?, ?, "
    "CURRENT_TIMESTAMP)",
};
std::string dollar_sql(const char* q) {
  std::string out;
  int n = 0;
  for (const char* p = q; *p != '\0'; ++p) {
    if (*p == '?') {
      out += '$' + std::to_string(++n);
    } else {
      out += *p;
    }
  }
  return out;
}

// ---- clients ------------------------------------------------------------------------------

class Client {
 public:
  virtual ~Client() = default;
  virtual void connect() = 0;
  virtual void disconnect() = 0;
  virtual bool connected() const = 0;
  virtual void txn(Workload w, Rng& rng) = 0;
};

// libpq. Direct: named prepared statements. PgBouncer (transaction pooling, 1.18 has no
// prepared-statement support): the extended protocol with unnamed statements.
class PgClient : public Client {
 public:
  PgClient(std::string conninfo, bool prepared, const Endpoints& ep)
      : conninfo_(std::move(conninfo)), prepared_(prepared), ep_(ep) {
    for (int i = 0; i < kStmts; ++i) sql_[i] = dollar_sql(kSqlQ[i]);
  }
  ~PgClient() override { disconnect(); }

  void connect() override {
    disconnect();
    conn_ = PQconnectdb(conninfo_.c_str());
    if (PQstatus(conn_) != CONNECTION_OK) {
      std::string msg = PQerrorMessage(conn_);
      disconnect();
      throw BenchError(kErrConnection, "connect: " + msg, true);
    }
    if (prepared_) {
      for (int i = 0; i < kStmts; ++i) {
        PGresult* r =
            PQprepare(conn_, ("s" + std::to_string(i)).c_str(), sql_[i].c_str(), 0, nullptr);
        bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        std::string msg = PQresultErrorMessage(r);
        PQclear(r);
        if (!ok) throw BenchError(kErrOther, "prepare: " + msg, true);
      }
    }
  }
  void disconnect() override {
    if (conn_ != nullptr) PQfinish(conn_);
    conn_ = nullptr;
  }
  bool connected() const override { return conn_ != nullptr; }

  void txn(Workload w, Rng& rng) override {
    switch (w) {
      case Workload::kSelect1:
      case Workload::kConnectPerTxn:
        exec(kSSelect1, {});
        break;
      case Workload::kPointSelect:
        exec(kSPoint, {rng.uniform(1, ep_.accounts)});
        break;
      case Workload::kInsert: {
        TpcbArgs a = tpcb_args(rng, ep_);
        exec(kSInsHist, {a.tid, a.bid, a.aid, a.delta});
        break;
      }
      case Workload::kTpcb: {
        TpcbArgs a = tpcb_args(rng, ep_);
        simple("BEGIN");
        try {
          exec(kSUpdAcc, {a.delta, a.aid});
          exec(kSPoint, {a.aid});
          exec(kSUpdTel, {a.delta, a.tid});
          exec(kSUpdBr, {a.delta, a.bid});
          exec(kSInsHist, {a.tid, a.bid, a.aid, a.delta});
        } catch (const BenchError& e) {
          if (!e.needs_reconnect) simple("ROLLBACK");
          throw;
        }
        simple("COMMIT");
        break;
      }
      case Workload::kTpcbPipelined:
        tpcb_pipelined(tpcb_args(rng, ep_));
        break;
      case Workload::kDisconnect:  // run_disconnect_point(), not a client loop
        throw BenchError(kErrOther, "disconnect is not a per-client workload");
    }
  }

 private:
  // tpcb-like in one round trip: libpq's pipeline mode, BEGIN, the five statements and COMMIT
  // queued before one Sync (what Session::pipeline() sends to dbmgrd). Every result is read
  // before the first error is thrown; a failed transaction block is rolled back.
  void tpcb_pipelined(const TpcbArgs& a) {
    if (PQenterPipelineMode(conn_) != 1)
      throw BenchError(kErrOther, std::string("pipeline mode: ") + PQerrorMessage(conn_));
    constexpr int kQueued = 7;
    bool sent = send_sql("BEGIN") && send(kSUpdAcc, {a.delta, a.aid}) && send(kSPoint, {a.aid}) &&
                send(kSUpdTel, {a.delta, a.tid}) && send(kSUpdBr, {a.delta, a.bid}) &&
                send(kSInsHist, {a.tid, a.bid, a.aid, a.delta}) && send_sql("COMMIT") &&
                PQpipelineSync(conn_) == 1;
    std::optional<BenchError> first;
    if (!sent) first = BenchError(kErrConnection, std::string("send: ") + PQerrorMessage(conn_), true);
    for (int i = 0; i < kQueued && !first_broken(first); ++i) {
      PGresult* r = PQgetResult(conn_);
      if (r == nullptr) {
        first = BenchError(kErrConnection, std::string("pipeline: ") + PQerrorMessage(conn_), true);
        break;
      }
      if (PQresultStatus(r) == PGRES_PIPELINE_ABORTED) {
        PQclear(r);
      } else {
        try {
          check(r);
        } catch (const BenchError& e) {
          if (!first || e.needs_reconnect) first = e;
        }
      }
      while ((r = PQgetResult(conn_)) != nullptr) PQclear(r);  // the end of this query's results
    }
    if (!first_broken(first)) {
      PGresult* r = PQgetResult(conn_);
      bool synced = r != nullptr && PQresultStatus(r) == PGRES_PIPELINE_SYNC;
      PQclear(r);
      if (!synced)
        first = BenchError(kErrConnection, std::string("no sync: ") + PQerrorMessage(conn_), true);
      else if (PQexitPipelineMode(conn_) != 1)
        first = BenchError(kErrOther, std::string("pipeline exit: ") + PQerrorMessage(conn_), true);
    }
    if (!first) return;
    if (!first->needs_reconnect && PQtransactionStatus(conn_) == PQTRANS_INERROR) simple("ROLLBACK");
    throw *first;
  }
  static bool first_broken(const std::optional<BenchError>& e) { return e && e->needs_reconnect; }

  void check(PGresult* r) {
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
      PQclear(r);
      return;
    }
    std::string msg = r != nullptr ? PQresultErrorMessage(r) : PQerrorMessage(conn_);
    const char* state = r != nullptr ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
    PQclear(r);
    bool bad = PQstatus(conn_) != CONNECTION_OK;
    ErrKind kind = kErrOther;
    if (bad || (state != nullptr && std::strncmp(state, "08", 2) == 0)) kind = kErrConnection;
    if (state != nullptr && (std::strcmp(state, "57014") == 0 || std::strcmp(state, "25P03") == 0))
      kind = kErrTimeout;
    if (state != nullptr && (std::strcmp(state, "40001") == 0 || std::strcmp(state, "40P01") == 0 ||
                             std::strcmp(state, "55P03") == 0))
      kind = kErrBusy;
    if (msg.find("no more connections") != std::string::npos) kind = kErrPoolExhausted;
    throw BenchError(kind, msg, bad);
  }
  void simple(const char* sql) { check(PQexec(conn_, sql)); }
  bool send_sql(const char* sql) {
    return PQsendQueryParams(conn_, sql, 0, nullptr, nullptr, nullptr, nullptr, 0) == 1;
  }
  // Text parameters for libpq, alive for one call.
  struct TextParams {
    std::array<std::string, 4> text;
    std::array<const char*, 4> values{};
    int n = 0;
    explicit TextParams(std::initializer_list<std::int64_t> args) {
      for (std::int64_t a : args) {
        text[n] = std::to_string(a);
        values[n] = text[n].c_str();
        ++n;
      }
    }
  };
  static const char* stmt_name(int stmt) {
    static const std::array<std::string, kStmts> kNames = {"s0", "s1", "s2", "s3", "s4", "s5"};
    return kNames[stmt].c_str();
  }
  // Queues one statement (pipeline mode); false when libpq refused it.
  bool send(int stmt, std::initializer_list<std::int64_t> args) {
    TextParams p(args);
    if (prepared_) {
      return PQsendQueryPrepared(conn_, stmt_name(stmt), p.n, p.values.data(), nullptr, nullptr,
                                 0) == 1;
    }
    return PQsendQueryParams(conn_, sql_[stmt].c_str(), p.n, nullptr, p.values.data(), nullptr,
                             nullptr, 0) == 1;
  }
  void exec(int stmt, std::initializer_list<std::int64_t> args) {
    TextParams p(args);
    check(prepared_ ? PQexecPrepared(conn_, stmt_name(stmt), p.n, p.values.data(), nullptr,
                                     nullptr, 0)
                    : PQexecParams(conn_, sql_[stmt].c_str(), p.n, nullptr, p.values.data(),
                                   nullptr, nullptr, 0));
  }

  std::string conninfo_;
  bool prepared_;
  const Endpoints& ep_;
  std::array<std::string, kStmts> sql_;
  PGconn* conn_ = nullptr;
};

ErrKind kind_of(const dbmgr::Error& e) {
  switch (e.category()) {
    case dbmgr::ErrorCategory::kBusy:
    case dbmgr::ErrorCategory::kSerialization:  // 40001/40P01, as the libpq client counts them
      return kErrBusy;
    case dbmgr::ErrorCategory::kPoolExhausted:
      return kErrPoolExhausted;
    case dbmgr::ErrorCategory::kConnection:
      return kErrConnection;
    case dbmgr::ErrorCategory::kTimeout:
      return kErrTimeout;
    default:
      return kErrOther;
  }
}

// libdbmgr: one DatabaseManager (one daemon connection) per client. Single statements are
// one-shots (one round trip, their own transaction); tpcb-like is a session.
class DbmgrClient : public Client {
 public:
  DbmgrClient(std::string socket, const Endpoints& ep) : socket_(std::move(socket)), ep_(ep) {}

  void connect() override {
    try {
      mgr_ = std::make_unique<dbmgr::DatabaseManager>(dbmgr::Options{
          .socket_path = socket_, .client_name = "dbmgr-bench", .max_idle_connections = 1});
      mgr_->ping();  // the connection and its handshake, before the clock starts
    } catch (const dbmgr::Error& e) {
      mgr_.reset();
      throw BenchError(kind_of(e), std::string("connect: ") + e.what(), true);
    }
  }
  void disconnect() override { mgr_.reset(); }
  bool connected() const override { return mgr_ != nullptr; }

  void txn(Workload w, Rng& rng) override {
    try {
      switch (w) {
        case Workload::kConnectPerTxn: {
          // A fresh connection (handshake included) for one one-shot, as a CGI script does.
          dbmgr::DatabaseManager m(
              dbmgr::Options{.socket_path = socket_, .client_name = "dbmgr-bench"});
          m.execute(kSqlQ[kSSelect1], {}, reads());
          break;
        }
        case Workload::kSelect1:
          mgr_->execute(kSqlQ[kSSelect1], {}, reads());
          break;
        case Workload::kPointSelect:
          mgr_->execute(kSqlQ[kSPoint], {rng.uniform(1, ep_.accounts)}, reads());
          break;
        case Workload::kInsert: {
          TpcbArgs a = tpcb_args(rng, ep_);
          mgr_->execute(kSqlQ[kSInsHist], {a.tid, a.bid, a.aid, a.delta});
          break;
        }
        case Workload::kTpcb: {
          TpcbArgs a = tpcb_args(rng, ep_);
          mgr_->run([&](dbmgr::Session& s) {
            s.execute(kSqlQ[kSUpdAcc], {a.delta, a.aid});
            s.execute(kSqlQ[kSPoint], {a.aid});
            s.execute(kSqlQ[kSUpdTel], {a.delta, a.tid});
            s.execute(kSqlQ[kSUpdBr], {a.delta, a.bid});
            s.execute(kSqlQ[kSInsHist], {a.tid, a.bid, a.aid, a.delta});
          });
          break;
        }
        case Workload::kTpcbPipelined: {
          // The same transaction, its statements and COMMIT in one write (Session::pipeline()).
          TpcbArgs a = tpcb_args(rng, ep_);
          dbmgr::Session s = mgr_->get_session();
          s.pipeline()
              .add(kSqlQ[kSUpdAcc], {a.delta, a.aid})
              .add(kSqlQ[kSPoint], {a.aid})
              .add(kSqlQ[kSUpdTel], {a.delta, a.tid})
              .add(kSqlQ[kSUpdBr], {a.delta, a.bid})
              .add(kSqlQ[kSInsHist], {a.tid, a.bid, a.aid, a.delta})
              .commit();
          break;
        }
        case Workload::kDisconnect:  // run_disconnect_point(), not a client loop
          throw BenchError(kErrOther, "disconnect is not a per-client workload");
      }
    } catch (const dbmgr::Error& e) {
      throw BenchError(kind_of(e), e.what(), e.category() == dbmgr::ErrorCategory::kConnection);
    }
  }

 private:
  dbmgr::Access reads() const {
    return ep_.dbmgr_reads_read_only ? dbmgr::Access::kReadOnly : dbmgr::Access::kReadWrite;
  }

  std::string socket_;
  const Endpoints& ep_;
  std::unique_ptr<dbmgr::DatabaseManager> mgr_;
};

// SQLite directly: one connection per client, WAL, the daemon's pragmas (synchronous=NORMAL),
// busy_timeout 30 s unless told otherwise. Write transactions take the write lock up front
// (BEGIN IMMEDIATE), as a careful application does.
class SqliteClient : public Client {
 public:
  SqliteClient(const Endpoints& ep) : ep_(ep) {}
  ~SqliteClient() override { disconnect(); }

  void connect() override {
    disconnect();
    int rc = sqlite3_open_v2(ep_.sqlite_file.c_str(), &db_,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr);
    if (rc != SQLITE_OK) {
      std::string msg = db_ != nullptr ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
      disconnect();
      throw BenchError(kErrConnection, "open: " + msg, true);
    }
    sqlite3_busy_timeout(db_, ep_.sqlite_busy_timeout_ms);
    exec_simple("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA cache_size=-65536;");
    for (int i = 0; i < kStmts; ++i) {
      if (sqlite3_prepare_v3(db_, kSqlQ[i], -1, SQLITE_PREPARE_PERSISTENT, &stmts_[i], nullptr) !=
          SQLITE_OK) {
        fail(sqlite3_extended_errcode(db_), true);
      }
    }
  }
  void disconnect() override {
    for (auto*& s : stmts_) {
      sqlite3_finalize(s);
      s = nullptr;
    }
    if (db_ != nullptr) sqlite3_close_v2(db_);
    db_ = nullptr;
  }
  bool connected() const override { return db_ != nullptr; }

  void txn(Workload w, Rng& rng) override {
    switch (w) {
      case Workload::kConnectPerTxn:
        connect();
        step(kSSelect1, {});
        disconnect();
        break;
      case Workload::kSelect1:
        step(kSSelect1, {});
        break;
      case Workload::kPointSelect:
        step(kSPoint, {rng.uniform(1, ep_.accounts)});
        break;
      case Workload::kInsert: {
        TpcbArgs a = tpcb_args(rng, ep_);
        step(kSInsHist, {a.tid, a.bid, a.aid, a.delta});
        break;
      }
      case Workload::kTpcb:
      case Workload::kTpcbPipelined: {  // nothing to pipeline: no round trips
        TpcbArgs a = tpcb_args(rng, ep_);
        exec_simple("BEGIN IMMEDIATE");
        try {
          step(kSUpdAcc, {a.delta, a.aid});
          step(kSPoint, {a.aid});
          step(kSUpdTel, {a.delta, a.tid});
          step(kSUpdBr, {a.delta, a.bid});
          step(kSInsHist, {a.tid, a.bid, a.aid, a.delta});
          exec_simple("COMMIT");
        } catch (const BenchError&) {
          if (!sqlite3_get_autocommit(db_))
            sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
          throw;
        }
        break;
      }
      case Workload::kDisconnect:  // run_disconnect_point(), not a client loop
        throw BenchError(kErrOther, "disconnect is not a per-client workload");
    }
  }

 private:
  [[noreturn]] void fail(int rc, bool reconnect = false) {
    int primary = rc & 0xff;
    ErrKind k = (primary == SQLITE_BUSY || primary == SQLITE_LOCKED) ? kErrBusy : kErrOther;
    throw BenchError(k,
                     std::string("sqlite: ") + sqlite3_errstr(rc) + ": " +
                         (db_ != nullptr ? sqlite3_errmsg(db_) : ""),
                     reconnect);
  }
  void exec_simple(const char* sql) {
    int rc = sqlite3_exec(db_, sql, nullptr, nullptr, nullptr);
    if (rc != SQLITE_OK) fail(sqlite3_extended_errcode(db_));
  }
  void step(int i, std::initializer_list<std::int64_t> args) {
    sqlite3_stmt* s = stmts_[i];
    int n = 1;
    for (std::int64_t a : args) sqlite3_bind_int64(s, n++, a);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
      (void)sqlite3_column_int64(s, 0);
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) fail(sqlite3_extended_errcode(db_));
  }

  const Endpoints& ep_;
  sqlite3* db_ = nullptr;
  std::array<sqlite3_stmt*, kStmts> stmts_{};
};

// ---- MariaDB through ODBC (unixODBC + MariaDB Connector/ODBC) ------------------------------

bool odbc_ok(SQLRETURN rc) { return rc == SQL_SUCCESS || rc == SQL_SUCCESS_WITH_INFO; }

// The process-wide ODBC environment: ODBC 3, driver-manager pooling off (as dbmgrd's).
SQLHENV odbc_env() {
  static SQLHENV env = [] {
    SQLSetEnvAttr(SQL_NULL_HANDLE, SQL_ATTR_CONNECTION_POOLING,
                  reinterpret_cast<SQLPOINTER>(SQL_CP_OFF), SQL_IS_UINTEGER);
    SQLHENV e = SQL_NULL_HENV;
    if (!odbc_ok(SQLAllocHandle(SQL_HANDLE_ENV, SQL_NULL_HANDLE, &e))) die("no ODBC environment");
    SQLSetEnvAttr(e, SQL_ATTR_ODBC_VERSION, reinterpret_cast<SQLPOINTER>(SQL_OV_ODBC3), 0);
    return e;
  }();
  return env;
}

// The first diagnostic record of a handle: SQLSTATE, the native (server) error, the message.
struct OdbcDiag {
  std::string state;
  SQLINTEGER native = 0;
  std::string message;
};
OdbcDiag odbc_diag(SQLSMALLINT type, SQLHANDLE h) {
  SQLCHAR state[6] = {0};
  SQLCHAR msg[1024] = {0};
  SQLSMALLINT len = 0;
  OdbcDiag d;
  if (odbc_ok(SQLGetDiagRec(type, h, 1, state, &d.native, msg, sizeof msg, &len))) {
    d.state = reinterpret_cast<char*>(state);
    d.message = reinterpret_cast<char*>(msg);
  } else {
    d.message = "(no ODBC diagnostic record)";
  }
  return d;
}

// A MariaDB error as the benchmark counts it: deadlocks (1213, 40001) are `busy`, lock waits
// (1205) and query timeouts `timeout`, a lost or refused connection `connection`.
BenchError mariadb_error(const std::string& what, const OdbcDiag& d) {
  ErrKind k = kErrOther;
  bool reconnect = false;
  if (d.native == 1213 || d.state == "40001") k = kErrBusy;
  if (d.native == 1205 || d.state == "HYT00" || d.state == "HYT01") k = kErrTimeout;
  if (d.state.rfind("08", 0) == 0 || d.native == 2006 || d.native == 2013 || d.native == 1040 ||
      d.native == 1927 || d.native == 4031) {
    k = kErrConnection;
    reconnect = true;
  }
  if (d.native == 1040) k = kErrPoolExhausted;  // too many connections
  return BenchError(k, what + ": [" + d.state + "/" + std::to_string(d.native) + "] " + d.message,
                    reconnect);
}

// One ODBC connection; SQLDriverConnect with the given string (its own handle).
SQLHDBC odbc_connect(const std::string& connstr, OdbcDiag* err) {
  SQLHDBC dbc = SQL_NULL_HDBC;
  if (!odbc_ok(SQLAllocHandle(SQL_HANDLE_DBC, odbc_env(), &dbc))) {
    *err = OdbcDiag{"HY001", 0, "cannot make an ODBC connection handle"};
    return SQL_NULL_HDBC;
  }
  SQLCHAR out[1024];
  SQLSMALLINT outlen = 0;
  SQLRETURN rc = SQLDriverConnect(dbc, nullptr,
                                  reinterpret_cast<SQLCHAR*>(const_cast<char*>(connstr.c_str())),
                                  static_cast<SQLSMALLINT>(connstr.size()), out, sizeof out,
                                  &outlen, SQL_DRIVER_NOPROMPT);
  if (!odbc_ok(rc)) {
    *err = odbc_diag(SQL_HANDLE_DBC, dbc);
    SQLFreeHandle(SQL_HANDLE_DBC, dbc);
    return SQL_NULL_HDBC;
  }
  return dbc;
}

void odbc_close(SQLHDBC dbc) {
  if (dbc == SQL_NULL_HDBC) return;
  SQLDisconnect(dbc);
  SQLFreeHandle(SQL_HANDLE_DBC, dbc);
}

// SQLExecDirect on a fresh statement; the first column of the first row into *first (if
// given and there is one). Returns the error message, empty on success.
std::string odbc_exec(SQLHDBC dbc, const std::string& sql, std::int64_t* first = nullptr,
                      bool* had_row = nullptr) {
  SQLHSTMT st = SQL_NULL_HSTMT;
  if (!odbc_ok(SQLAllocHandle(SQL_HANDLE_STMT, dbc, &st))) return "cannot make a statement";
  SQLRETURN rc = SQLExecDirect(st, reinterpret_cast<SQLCHAR*>(const_cast<char*>(sql.c_str())),
                               SQL_NTS);
  std::string err;
  if (!odbc_ok(rc) && rc != SQL_NO_DATA) {
    OdbcDiag d = odbc_diag(SQL_HANDLE_STMT, st);
    err = "[" + d.state + "/" + std::to_string(d.native) + "] " + d.message;
  } else if (first != nullptr) {
    SQLSMALLINT ncols = 0;
    SQLNumResultCols(st, &ncols);
    if (had_row != nullptr) *had_row = false;
    if (ncols > 0 && odbc_ok(SQLFetch(st))) {
      SQLBIGINT v = 0;
      SQLLEN ind = 0;
      if (odbc_ok(SQLGetData(st, 1, SQL_C_SBIGINT, &v, sizeof v, &ind))) {
        *first = ind == SQL_NULL_DATA ? -1 : v;
        if (had_row != nullptr) *had_row = true;
      }
    }
  }
  SQLFreeHandle(SQL_HANDLE_STMT, st);
  return err;
}

// MariaDB directly: MariaDB Connector/ODBC through unixODBC, one connection per client,
// SQLPrepare'd statements (server-side prepared: COM_STMT_EXECUTE, one round trip each),
// BIGINT parameters as dbmgrd binds them. Single statements run in autocommit; tpcb-like
// turns autocommit off and ends with SQLEndTran, as dbmgrd's ODBC engine does (its
// read-write BEGIN is autocommit off, no statement).
class MariadbClient : public Client {
 public:
  explicit MariadbClient(const Endpoints& ep) : ep_(ep) {}
  ~MariadbClient() override { disconnect(); }

  void connect() override {
    disconnect();
    OdbcDiag err;
    dbc_ = odbc_connect(ep_.mariadb_odbc, &err);
    if (dbc_ == SQL_NULL_HDBC) {
      BenchError e = mariadb_error("connect", err);
      throw BenchError(e.kind == kErrOther ? kErrConnection : e.kind, e.what(), true);
    }
    autocommit_ = true;
    static constexpr std::array<int, kStmts> kParams = {0, 1, 2, 2, 2, 4};
    for (int i = 0; i < kStmts; ++i) {
      SQLHSTMT& st = stmts_[i];
      if (!odbc_ok(SQLAllocHandle(SQL_HANDLE_STMT, dbc_, &st))) {
        st = SQL_NULL_HSTMT;
        throw BenchError(kErrOther, "cannot make a statement handle", true);
      }
      if (!odbc_ok(SQLPrepare(st, reinterpret_cast<SQLCHAR*>(const_cast<char*>(kSqlQ[i])),
                              SQL_NTS))) {
        throw with_reconnect(mariadb_error("prepare", odbc_diag(SQL_HANDLE_STMT, st)));
      }
      for (int p = 0; p < kParams[i]; ++p) {
        if (!odbc_ok(SQLBindParameter(st, static_cast<SQLUSMALLINT>(p + 1), SQL_PARAM_INPUT,
                                      SQL_C_SBIGINT, SQL_BIGINT, 19, 0, &args_[i][p], 0,
                                      nullptr))) {
          throw with_reconnect(mariadb_error("bind", odbc_diag(SQL_HANDLE_STMT, st)));
        }
      }
    }
  }
  void disconnect() override {
    for (auto& st : stmts_) {
      if (st != SQL_NULL_HSTMT) SQLFreeHandle(SQL_HANDLE_STMT, st);
      st = SQL_NULL_HSTMT;
    }
    odbc_close(dbc_);
    dbc_ = SQL_NULL_HDBC;
  }
  bool connected() const override { return dbc_ != SQL_NULL_HDBC; }

  void txn(Workload w, Rng& rng) override {
    switch (w) {
      case Workload::kConnectPerTxn: {
        // A fresh connection (SQLDriverConnect: the server's login) for one SELECT 1.
        OdbcDiag err;
        SQLHDBC dbc = odbc_connect(ep_.mariadb_odbc, &err);
        if (dbc == SQL_NULL_HDBC) throw mariadb_error("connect", err);
        std::string e = odbc_exec(dbc, kSqlQ[kSSelect1]);
        odbc_close(dbc);
        if (!e.empty()) throw BenchError(kErrOther, "SELECT 1: " + e);
        break;
      }
      case Workload::kSelect1:
        autocommit(true);
        exec(kSSelect1, {});
        break;
      case Workload::kPointSelect:
        autocommit(true);
        exec(kSPoint, {rng.uniform(1, ep_.accounts)});
        break;
      case Workload::kInsert: {
        autocommit(true);
        TpcbArgs a = tpcb_args(rng, ep_);
        exec(kSInsHist, {a.tid, a.bid, a.aid, a.delta});
        break;
      }
      case Workload::kTpcb:
      case Workload::kTpcbPipelined: {  // the ODBC driver has no pipeline: tpcb-like
        TpcbArgs a = tpcb_args(rng, ep_);
        autocommit(false);  // the transaction begins with its first statement
        try {
          exec(kSUpdAcc, {a.delta, a.aid});
          exec(kSPoint, {a.aid});
          exec(kSUpdTel, {a.delta, a.tid});
          exec(kSUpdBr, {a.delta, a.bid});
          exec(kSInsHist, {a.tid, a.bid, a.aid, a.delta});
        } catch (const BenchError& e) {
          if (!e.needs_reconnect) SQLEndTran(SQL_HANDLE_DBC, dbc_, SQL_ROLLBACK);
          throw;
        }
        if (!odbc_ok(SQLEndTran(SQL_HANDLE_DBC, dbc_, SQL_COMMIT))) {
          BenchError e = mariadb_error("COMMIT", odbc_diag(SQL_HANDLE_DBC, dbc_));
          if (!e.needs_reconnect) SQLEndTran(SQL_HANDLE_DBC, dbc_, SQL_ROLLBACK);
          throw e;
        }
        break;
      }
      case Workload::kDisconnect:  // run_disconnect_point(), not a client loop
        throw BenchError(kErrOther, "disconnect is not a per-client workload");
    }
  }

 private:
  static BenchError with_reconnect(const BenchError& e) {
    return BenchError(e.kind, e.what(), true);
  }
  void autocommit(bool on) {
    if (autocommit_ == on) return;
    SQLRETURN rc = SQLSetConnectAttr(
        dbc_, SQL_ATTR_AUTOCOMMIT,
        reinterpret_cast<SQLPOINTER>(static_cast<SQLULEN>(on ? SQL_AUTOCOMMIT_ON : SQL_AUTOCOMMIT_OFF)),
        SQL_IS_UINTEGER);
    if (!odbc_ok(rc)) throw mariadb_error("autocommit", odbc_diag(SQL_HANDLE_DBC, dbc_));
    autocommit_ = on;
  }
  void exec(int i, std::initializer_list<std::int64_t> args) {
    SQLHSTMT st = stmts_[i];
    int n = 0;
    for (std::int64_t a : args) args_[i][n++] = a;
    SQLRETURN rc = SQLExecute(st);
    if (!odbc_ok(rc) && rc != SQL_NO_DATA) {
      throw mariadb_error(kSqlQ[i], odbc_diag(SQL_HANDLE_STMT, st));
    }
    SQLSMALLINT ncols = 0;
    SQLNumResultCols(st, &ncols);
    if (ncols > 0) {
      while ((rc = SQLFetch(st)) != SQL_NO_DATA) {
        if (!odbc_ok(rc)) {
          BenchError e = mariadb_error(kSqlQ[i], odbc_diag(SQL_HANDLE_STMT, st));
          SQLFreeStmt(st, SQL_CLOSE);
          throw e;
        }
        SQLBIGINT v = 0;
        SQLLEN ind = 0;
        SQLGetData(st, 1, SQL_C_SBIGINT, &v, sizeof v, &ind);
      }
      SQLFreeStmt(st, SQL_CLOSE);
    }
  }

  const Endpoints& ep_;
  SQLHDBC dbc_ = SQL_NULL_HDBC;
  bool autocommit_ = true;
  std::array<SQLHSTMT, kStmts> stmts_{};
  std::array<std::array<SQLBIGINT, 4>, kStmts> args_{};
};

std::unique_ptr<Client> make_client(Target t, const Endpoints& ep) {
  switch (t) {
    case Target::kPgDirect:
      return std::make_unique<PgClient>(ep.pg_conninfo, true, ep);
    case Target::kPgBouncer:
      return std::make_unique<PgClient>(ep.pgbouncer_conninfo, ep.pgbouncer_prepared, ep);
    case Target::kPgDbmgrd:
      return std::make_unique<DbmgrClient>(ep.dbmgr_pg_socket, ep);
    case Target::kSqliteDbmgrd:
      return std::make_unique<DbmgrClient>(ep.dbmgr_sqlite_socket, ep);
    case Target::kSqliteInproc:
    case Target::kSqliteProcs:
      return std::make_unique<SqliteClient>(ep);
    case Target::kMariadbDirect:
      return std::make_unique<MariadbClient>(ep);
    case Target::kMariadbDbmgrd:
      return std::make_unique<DbmgrClient>(ep.dbmgr_mariadb_socket, ep);
    case Target::kPgDbmgrdAsync:  // async_worker_main(), not a Client
    case Target::kSqliteDbmgrdAsync:
      break;
  }
  return nullptr;
}

// ---- /proc --------------------------------------------------------------------------------

// This process's user + system CPU in seconds (every thread).
double self_cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

// utime + stime in seconds; -1 when the process cannot be read.
double proc_cpu_seconds(int pid) {
  if (pid <= 0) return -1;
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string s;
  if (!std::getline(f, s)) return -1;
  auto close = s.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream in(s.substr(close + 2));
  std::string field;
  unsigned long long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && in >> field; ++i) {
    if (i == 14) utime = std::stoull(field);
    if (i == 15) stime = std::stoull(field);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// A "VmRSS:"-style field of /proc/PID/status in KB; -1 if unknown.
long proc_status_kb(int pid, const char* key) {
  if (pid <= 0) return -1;
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  std::size_t n = std::strlen(key);
  while (std::getline(f, line)) {
    if (line.compare(0, n, key) == 0) return std::atol(line.c_str() + n + 1);
  }
  return -1;
}

int read_pid_file(const std::string& path) {
  std::ifstream f(path);
  int pid = 0;
  f >> pid;
  return pid;
}

// ---- one point ----------------------------------------------------------------------------

struct PointResult {
  Workload workload;
  Target target;
  int clients;
  int round;  // 0: every round merged
  double seconds = 0;
  std::uint64_t txns = 0;
  std::array<std::uint64_t, kErrKinds> errors{};
  Histogram hist{};
  double server_cpu_s = -1;  // daemon or PgBouncer CPU over the window
  double client_cpu_s = -1;  // this process's CPU over the window (thread and async clients)
  long server_hwm_kb = -1;
  std::vector<double> round_tps;
  std::string first_error;
  bool setup_failed = false;
  // disconnect: clients killed, and end-of-round checks that found the killed transactions'
  // effects absent / present (or could not run).
  std::uint64_t kills = 0;
  int checks_ok = 0, checks_failed = 0;
  // ... and the daemon's own count of them (admin status, totals.rollbacks_on_disconnect,
  // over the round); -1: not read.
  std::int64_t rollbacks_on_disconnect = -1;
  // ... and, for scale, of the measured iterations: kill -> the child's descriptors closed
  // (the kernel's part) and closed -> the waiter's reply (dbmgrd's part, from 0); and the
  // waiter's statement alone (no kill, nothing else queued).
  Histogram closed_hist{}, after_close_hist{}, ref_hist{};

  double tps() const { return seconds > 0 ? static_cast<double>(txns) / seconds : 0; }
  std::uint64_t error_total() const {
    std::uint64_t t = 0;
    for (auto e : errors) t += e;
    return t;
  }
};

int server_pid(Target t, Workload w, const Endpoints& ep) {
  switch (t) {
    case Target::kPgBouncer:
      return ep.pgbouncer_pid;
    case Target::kPgDbmgrd:
      return w == Workload::kDisconnect ? ep.dbmgr_pg1_pid : ep.dbmgr_pg_pid;
    case Target::kPgDbmgrdAsync:
      return ep.dbmgr_pg_pid;
    case Target::kSqliteDbmgrd:
    case Target::kSqliteDbmgrdAsync:
      return ep.dbmgr_sqlite_pid;
    case Target::kMariadbDbmgrd:
      return ep.dbmgr_mariadb_pid;
    default:
      return 0;
  }
}

void worker_main(Target t, Workload w, const Endpoints& ep, Control* ctl, WorkerStats* st,
                 int idx) {
  std::unique_ptr<Client> client = make_client(t, ep);
  Rng rng(0x9e3779b97f4a7c15ULL * static_cast<std::uint64_t>(idx + 1) ^
          static_cast<std::uint64_t>(now_ns()));
  auto record = [&](const BenchError& e) {
    ++st->errors[e.kind];
    if (st->first_error[0] == '\0') {
      std::snprintf(st->first_error, sizeof st->first_error, "%s", e.what());
    }
  };
  // connect-per-txn connects inside the clock (libpq below, libdbmgr and SQLite in txn());
  // every other workload connects before it starts.
  bool per_txn_connect = w == Workload::kConnectPerTxn;
  // Before the clock, a refused connect (a full listen backlog when hundreds of clients
  // connect at once: EAGAIN) is retried; only the last failure counts as an error.
  if (!per_txn_connect) {
    for (int attempt = 0;; ++attempt) {
      try {
        client->connect();
        break;
      } catch (const BenchError& e) {
        if (attempt >= 30) {
          record(e);
          break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20 + 10 * attempt));
      }
    }
  }
  ctl->ready.fetch_add(1);
  ctl->wait_go();
  const std::int64_t end = ctl->end_ns.load();
  while (true) {
    std::int64_t t0 = now_ns();
    if (t0 >= end) break;
    bool ok = true;
    try {
      if (per_txn_connect && is_pg(t) && t != Target::kPgDbmgrd) {
        client->connect();
        client->txn(w, rng);
        client->disconnect();
      } else {
        if (!per_txn_connect && !client->connected()) client->connect();
        client->txn(w, rng);
      }
    } catch (const BenchError& e) {
      ok = false;
      record(e);
      if (e.needs_reconnect) client->disconnect();
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    std::int64_t t1 = now_ns();
    if (ok && t1 <= end) {
      ++st->txns;
      st->hist.add(static_cast<std::uint64_t>(t1 - t0));
    }
  }
  client->disconnect();
}

// The async targets: `n` AsyncSessions of one DatabaseManager (one daemon socket, the
// library's I/O thread), each a coroutine running the workload in a loop. A coroutine resumes
// on the I/O thread; each writes only its own WorkerStats.
dbmgr::Task<void> async_loop(dbmgr::DatabaseManager& m, Workload w, const Endpoints& ep,
                             WorkerStats* st, std::int64_t end, std::uint64_t seed) {
  Rng rng(seed);
  const dbmgr::Access reads =
      ep.dbmgr_reads_read_only ? dbmgr::Access::kReadOnly : dbmgr::Access::kReadWrite;
  const std::vector<dbmgr::Param> none;
  while (true) {
    std::int64_t t0 = now_ns();
    if (t0 >= end) break;
    bool ok = true;
    bool stop = false;
    try {
      switch (w) {
        case Workload::kSelect1:
          co_await m.execute_async(kSqlQ[kSSelect1], none, reads);
          break;
        case Workload::kPointSelect: {
          std::vector<dbmgr::Param> p{rng.uniform(1, ep.accounts)};
          co_await m.execute_async(kSqlQ[kSPoint], p, reads);
          break;
        }
        case Workload::kInsert: {
          TpcbArgs a = tpcb_args(rng, ep);
          std::vector<dbmgr::Param> p{a.tid, a.bid, a.aid, a.delta};
          co_await m.execute_async(kSqlQ[kSInsHist], p);
          break;
        }
        case Workload::kTpcb: {  // each statement waits for the one before
          TpcbArgs a = tpcb_args(rng, ep);
          dbmgr::AsyncSession s = m.get_async_db();
          co_await s.execute(kSqlQ[kSUpdAcc], dbmgr::params(a.delta, a.aid));
          co_await s.execute(kSqlQ[kSPoint], dbmgr::params(a.aid));
          co_await s.execute(kSqlQ[kSUpdTel], dbmgr::params(a.delta, a.tid));
          co_await s.execute(kSqlQ[kSUpdBr], dbmgr::params(a.delta, a.bid));
          co_await s.execute(kSqlQ[kSInsHist], dbmgr::params(a.tid, a.bid, a.aid, a.delta));
          co_await s.commit();
          break;  // s's destructor closes it without a round trip
        }
        case Workload::kTpcbPipelined: {  // every request made at once, awaited in order
          TpcbArgs a = tpcb_args(rng, ep);
          dbmgr::AsyncSession s = m.get_async_db();
          auto r1 = s.execute(kSqlQ[kSUpdAcc], dbmgr::params(a.delta, a.aid));
          auto r2 = s.execute(kSqlQ[kSPoint], dbmgr::params(a.aid));
          auto r3 = s.execute(kSqlQ[kSUpdTel], dbmgr::params(a.delta, a.tid));
          auto r4 = s.execute(kSqlQ[kSUpdBr], dbmgr::params(a.delta, a.bid));
          auto r5 = s.execute(kSqlQ[kSInsHist], dbmgr::params(a.tid, a.bid, a.aid, a.delta));
          auto c = s.commit();
          co_await r1;
          co_await r2;
          co_await r3;
          co_await r4;
          co_await r5;
          co_await c;
          break;
        }
        case Workload::kConnectPerTxn:
        case Workload::kDisconnect:
          throw BenchError(kErrOther, std::string(name(w)) + " is not run on the async targets");
      }
    } catch (const dbmgr::Error& e) {
      ok = false;
      ++st->errors[kind_of(e)];
      if (st->first_error[0] == '\0') std::snprintf(st->first_error, sizeof st->first_error, "%s", e.what());
      stop = e.category() == dbmgr::ErrorCategory::kConnection;  // the socket is gone
    } catch (const BenchError& e) {
      ok = false;
      ++st->errors[e.kind];
      if (st->first_error[0] == '\0') std::snprintf(st->first_error, sizeof st->first_error, "%s", e.what());
      stop = true;
    }
    std::int64_t t1 = now_ns();
    if (ok && t1 <= end) {
      ++st->txns;
      st->hist.add(static_cast<std::uint64_t>(t1 - t0));
    }
    if (stop) break;
  }
}

void async_worker_main(Target t, Workload w, const Endpoints& ep, Control* ctl, WorkerStats* stats,
                       int sessions) {
  const std::string& socket = t == Target::kPgDbmgrdAsync ? ep.dbmgr_pg_socket
                                                           : ep.dbmgr_sqlite_socket;
  std::unique_ptr<dbmgr::DatabaseManager> mgr;
  try {
    mgr = std::make_unique<dbmgr::DatabaseManager>(
        dbmgr::Options{.socket_path = socket, .client_name = "dbmgr-bench-async"});
    dbmgr::AsyncSession warm = mgr->get_async_db();  // connects the async socket, before the clock
    warm.close().get();
  } catch (const dbmgr::Error& e) {
    ++stats[0].errors[kErrConnection];
    std::snprintf(stats[0].first_error, sizeof stats[0].first_error, "connect: %s", e.what());
    mgr.reset();
  }
  ctl->ready.fetch_add(sessions);
  ctl->wait_go();
  if (!mgr) return;
  const std::int64_t end = ctl->end_ns.load();
  std::vector<dbmgr::Task<void>> tasks;
  tasks.reserve(static_cast<std::size_t>(sessions));
  for (int i = 0; i < sessions; ++i) {
    std::uint64_t seed = 0x9e3779b97f4a7c15ULL * static_cast<std::uint64_t>(i + 1) ^
                         static_cast<std::uint64_t>(now_ns());
    tasks.push_back(async_loop(*mgr, w, ep, &stats[i], end, seed));
  }
  for (auto& task : tasks) task.get();  // the loops catch their own errors
}

PointResult run_point(Target t, Workload w, int clients, double duration_s, int round,
                      const Endpoints& ep) {
  PointResult res;
  res.workload = w;
  res.target = t;
  res.clients = clients;
  res.round = round;
  auto* ctl = shared_alloc<Control>(1);
  ctl->init();
  auto* stats = shared_alloc<WorkerStats>(static_cast<std::size_t>(clients));
  std::vector<std::thread> threads;
  std::vector<pid_t> children;
  if (uses_async(t)) {
    threads.emplace_back(async_worker_main, t, w, std::cref(ep), ctl, stats, clients);
  } else if (uses_processes(t)) {
    std::fflush(nullptr);
    for (int i = 0; i < clients; ++i) {
      pid_t pid = fork();
      if (pid < 0) {
        note("fork failed: " + std::string(std::strerror(errno)));
        ctl->ready.fetch_add(1);
        continue;
      }
      if (pid == 0) {
        worker_main(t, w, ep, ctl, &stats[i], i);
        _exit(0);
      }
      children.push_back(pid);
    }
  } else {
    threads.reserve(static_cast<std::size_t>(clients));
    for (int i = 0; i < clients; ++i) {
      threads.emplace_back(worker_main, t, w, std::cref(ep), ctl, &stats[i], i);
    }
  }
  // Every client connected (or failed to): start the clock.
  std::int64_t deadline = now_ns() + 300'000'000'000LL;
  while (ctl->ready.load() < clients && now_ns() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  int spid = server_pid(t, w, ep);
  double cpu0 = proc_cpu_seconds(spid);
  double self0 = self_cpu_seconds();
  std::int64_t start = now_ns();
  std::int64_t end = start + static_cast<std::int64_t>(duration_s * 1e9);
  if (ctl->ready.load() < clients) end = start;  // setup hung: no measurement
  ctl->open_gate(end);
  std::this_thread::sleep_until(Clock::time_point(std::chrono::nanoseconds(end)));
  double cpu1 = proc_cpu_seconds(spid);
  double self1 = self_cpu_seconds();
  if (!uses_processes(t)) res.client_cpu_s = self1 - self0;
  for (auto& th : threads) th.join();
  for (pid_t pid : children) {
    int status = 0;
    waitpid(pid, &status, 0);
  }
  res.seconds = static_cast<double>(end - start) / 1e9;
  for (int i = 0; i < clients; ++i) {
    res.txns += stats[i].txns;
    for (int k = 0; k < kErrKinds; ++k) res.errors[k] += stats[i].errors[k];
    res.hist.merge(stats[i].hist);
    if (res.first_error.empty() && stats[i].first_error[0] != '\0') {
      res.first_error = stats[i].first_error;
    }
  }
  if (cpu0 >= 0 && cpu1 >= 0) res.server_cpu_s = cpu1 - cpu0;
  res.server_hwm_kb = proc_status_kb(spid, "VmHWM:");
  res.round_tps.push_back(res.tps());
  shared_free(stats, static_cast<std::size_t>(clients));
  ctl->destroy();
  shared_free(ctl, 1);
  return res;
}

// ---- disconnect: a client dies mid-transaction; how soon is its connection serving again? ---
//
// One iteration: a forked child (a real process, so its death closes its socket the way a
// crashed worker's does) opens its own libdbmgr connection and starts a session transaction
// that takes the write lock: it updates branch 1 and inserts a marker row (tid = -1) into
// bench_history, then reports over a pipe that it holds the lock, and blocks. A waiter
// thread of this process then sends a one-shot write of the same row, which can only run on
// the connection the child holds (sqlite-dbmgrd: the single writer connection; pg-dbmgrd: a
// dedicated dbmgrd whose pool is 1 connection with no overflow). Once the daemon's admin
// `pools` document shows it queued (waiting >= 1 on that pool), the child is SIGKILLed.
// Latency: the waiter's reply - the clock read just before kill(). The waiter's statement
// returns the branch balance, which must be the one from before (the killed change rolled
// back); at the end of each round no marker row may exist and the balance must be unchanged.
// A wrong outcome is an error of kind `wrong`.

constexpr const char* kDiscBalance = "SELECT bbalance FROM bench_branches WHERE bid = 1";
constexpr const char* kDiscChildUpdate =
    "UPDATE bench_branches SET bbalance = bbalance + 1000000 WHERE bid = 1";
constexpr const char* kDiscChildMark =
    "INSERT INTO bench_history (tid, bid, aid, delta, mtime) VALUES (-1, 1, -1, ?, "
    "CURRENT_TIMESTAMP)";
constexpr const char* kDiscWaiter =
    "UPDATE bench_branches SET bbalance = bbalance WHERE bid = 1 RETURNING bbalance";
constexpr const char* kDiscCheck =
    "SELECT (SELECT bbalance FROM bench_branches WHERE bid = 1), (SELECT count(*) FROM "
    "bench_history WHERE tid = -1)";
constexpr std::int64_t kDiscQueueTimeoutNs = 5'000'000'000LL;
constexpr int kDiscReferenceStatements = 100;
constexpr int kDiscChildTimeoutMs = 10000;

// The largest `waiting` among the pools of this role in an admin `pools` document (a JSON
// array of flat objects, as daemon/admin.cpp writes it with json::dump()); -1 if none.
// An integer field of an admin JSON document, found by its key (unique in `status`); -1 if
// absent.
std::int64_t json_int_field(const std::string& json, const std::string& key) {
  std::size_t at = json.find("\"" + key + "\":");
  return at == std::string::npos ? -1 : std::atoll(json.c_str() + at + key.size() + 3);
}

int pool_waiting(const std::string& json, const std::string& role) {
  int best = -1;
  const std::string want_role = "\"role\":\"" + role + "\"";
  std::size_t pos = 0;
  while ((pos = json.find('{', pos)) != std::string::npos) {
    std::size_t end = json.find('}', pos);
    if (end == std::string::npos) break;
    std::string obj = json.substr(pos, end - pos);
    pos = end;
    std::size_t w = obj.find("\"waiting\":");
    if (obj.find(want_role) == std::string::npos || w == std::string::npos) continue;
    best = std::max(best, std::atoi(obj.c_str() + w + 10));
  }
  return best;
}

// kDiscCheck straight from the database under target t (libpq; SQLite read-only): branch
// 1's balance and the marker rows. Returns an error message, empty on success.
std::string read_directly(Target t, const Endpoints& ep, std::int64_t* balance,
                          std::int64_t* marks) {
  if (t == Target::kPgDbmgrd) {
    PGconn* c = PQconnectdb(ep.pg_conninfo.c_str());
    std::string err;
    if (PQstatus(c) != CONNECTION_OK) {
      err = PQerrorMessage(c);
    } else {
      PGresult* r = PQexec(c, kDiscCheck);
      if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
        *balance = std::atoll(PQgetvalue(r, 0, 0));
        *marks = std::atoll(PQgetvalue(r, 0, 1));
      } else {
        err = PQresultErrorMessage(r);
      }
      PQclear(r);
    }
    PQfinish(c);
    return err.empty() ? err : "PostgreSQL: " + err;
  }
  sqlite3* db = nullptr;
  sqlite3_stmt* st = nullptr;
  std::string err;
  if (sqlite3_open_v2(ep.dbmgr_sqlite_file.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) !=
          SQLITE_OK ||
      sqlite3_prepare_v2(db, kDiscCheck, -1, &st, nullptr) != SQLITE_OK) {
    err = db != nullptr ? sqlite3_errmsg(db) : "cannot open";
  } else if (sqlite3_step(st) == SQLITE_ROW) {
    *balance = sqlite3_column_int64(st, 0);
    *marks = sqlite3_column_int64(st, 1);
  } else {
    err = sqlite3_errmsg(db);
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  return err.empty() ? err : "SQLite " + ep.dbmgr_sqlite_file + ": " + err;
}

// The killed client. Reports "K" when it holds the lock (then waits for SIGKILL), or "E",
// an error kind digit and the message.
[[noreturn]] void disconnect_child(const std::string& socket, int report_fd,
                                   std::int64_t iteration) {
  std::string msg;
  try {
    dbmgr::DatabaseManager m(dbmgr::Options{
        .socket_path = socket, .client_name = "dbmgr-bench-victim", .max_idle_connections = 1});
    dbmgr::Session s = m.get_session();
    s.execute(kDiscChildUpdate);
    s.execute(kDiscChildMark, {iteration});
    if (write(report_fd, "K", 1) == 1) {
      while (true) pause();  // holds the transaction until killed
    }
    _exit(1);
  } catch (const dbmgr::Error& e) {
    msg = "E" + std::to_string(static_cast<int>(kind_of(e))) + e.what();
  } catch (const std::exception& e) {
    msg = "E" + std::to_string(static_cast<int>(kErrOther)) + e.what();
  }
  if (write(report_fd, msg.data(), std::min<std::size_t>(msg.size(), 400)) < 0) _exit(1);
  _exit(1);
}

// What the child reported: "K", "E<kind><message>", or "" (died or timed out).
std::string read_child_report(int fd, int timeout_ms) {
  pollfd p{fd, POLLIN, 0};
  if (poll(&p, 1, timeout_ms) != 1) return "";
  char buf[512];
  ssize_t n = read(fd, buf, sizeof buf);
  return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : "";
}

PointResult run_disconnect_point(Target t, double duration_s, int round, const Endpoints& ep) {
  PointResult res;
  res.workload = Workload::kDisconnect;
  res.target = t;
  res.clients = 1;
  res.round = round;
  const bool pg = t == Target::kPgDbmgrd;
  const std::string socket = pg ? ep.dbmgr_pg1_socket : ep.dbmgr_sqlite_socket;
  const std::string role = pg ? "main" : "writer";
  auto fail = [&](ErrKind k, const std::string& m, std::uint64_t n = 1) {
    res.errors[k] += n;
    if (res.first_error.empty()) res.first_error = m;
  };

  std::unique_ptr<dbmgr::DatabaseManager> mgr;
  dbmgr::AdminClient admin(socket);
  std::int64_t baseline = 0, rollbacks0 = -1;
  try {
    rollbacks0 = json_int_field(admin.status(), "rollbacks_on_disconnect");
    mgr = std::make_unique<dbmgr::DatabaseManager>(dbmgr::Options{
        .socket_path = socket, .client_name = "dbmgr-bench-waiter", .max_idle_connections = 1});
    baseline = mgr->execute(kDiscBalance).scalar<std::int64_t>();
    if (pool_waiting(admin.pools(), role) < 0) {
      fail(kErrOther, "setup: no '" + role + "' pool in the admin pools document");
      res.setup_failed = true;
      return res;
    }
  } catch (const dbmgr::Error& e) {
    fail(kind_of(e), std::string("setup: ") + e.what());
    res.setup_failed = true;
    return res;
  }

  int spid = server_pid(t, Workload::kDisconnect, ep);
  double cpu0 = proc_cpu_seconds(spid);
  const std::int64_t start = now_ns();
  const std::int64_t end = start + static_cast<std::int64_t>(duration_s * 1e9);
  std::int64_t iteration = 0;
  while (now_ns() < end) {
    ++iteration;
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) die("pipe failed");
    std::fflush(nullptr);
    // No other thread of this process runs here (the last waiter was joined), so the child
    // may use libdbmgr and malloc freely.
    pid_t pid = fork();
    if (pid < 0) {
      close(fds[0]);
      close(fds[1]);
      fail(kErrOther, std::string("fork: ") + std::strerror(errno));
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      continue;
    }
    if (pid == 0) {
      close(fds[0]);
      disconnect_child(socket, fds[1], iteration);
    }
    close(fds[1]);

    // 1. The child holds the write lock.
    std::string report = read_child_report(fds[0], kDiscChildTimeoutMs);
    if (report != "K") {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
      close(fds[0]);
      if (report.size() >= 2 && report[0] == 'E' && report[1] >= '0' &&
          report[1] < '0' + kErrKinds) {
        fail(static_cast<ErrKind>(report[1] - '0'), "killed client: " + report.substr(2));
      } else {
        fail(kErrTimeout, "killed client: no report within " +
                              std::to_string(kDiscChildTimeoutMs / 1000) + " s");
      }
      continue;
    }

    // 2. The waiter, from a thread: a one-shot write that queues behind the child.
    std::atomic<bool> done{false};
    std::int64_t reply_ns = 0, value = 0;
    std::string waiter_error;
    ErrKind waiter_kind = kErrOther;
    std::thread waiter([&] {
      try {
        value = mgr->execute(kDiscWaiter).scalar<std::int64_t>();
      } catch (const dbmgr::Error& e) {
        waiter_error = e.what();
        waiter_kind = kind_of(e);
      }
      reply_ns = now_ns();
      done.store(true);
    });

    // 3. Wait until the daemon has it queued for the pool (exact: the admin `pools` gauge).
    bool queued = false;
    std::string admin_error;
    const std::int64_t queue_deadline = now_ns() + kDiscQueueTimeoutNs;
    while (!done.load() && now_ns() < queue_deadline) {
      try {
        if (pool_waiting(admin.pools(), role) >= 1) {
          queued = true;
          break;
        }
      } catch (const dbmgr::Error& e) {
        admin_error = e.what();
        break;
      }
    }

    // 4. Kill the client in the middle of its transaction.
    const bool answered_before_kill = done.load();
    const std::int64_t kill_ns = now_ns();
    kill(pid, SIGKILL);
    ++res.kills;
    // The kernel closes the dying child's descriptors together (its socket to dbmgrd and the
    // report pipe, whose only write end it holds): the pipe's hang-up tells when, as seen by
    // this thread (which may be woken late).
    std::int64_t closed_ns = 0;
    {
      pollfd hup{fds[0], POLLIN, 0};
      char drain[64];
      while (poll(&hup, 1, kDiscChildTimeoutMs) == 1 && read(fds[0], drain, sizeof drain) > 0) {
      }
      closed_ns = now_ns();
    }
    waitpid(pid, nullptr, 0);
    waiter.join();
    close(fds[0]);

    if (!queued) {
      if (!admin_error.empty()) {
        fail(kErrOther, "admin pools: " + admin_error);
      } else if (answered_before_kill && waiter_error.empty()) {
        fail(kErrWrong, "the waiter was answered while the killed client still held the lock");
      } else if (answered_before_kill) {
        fail(waiter_kind, "waiter (before the kill): " + waiter_error);
      } else {
        fail(kErrTimeout, "the waiter did not show as queued within 5 s");
      }
      continue;
    }
    if (!waiter_error.empty()) {
      fail(waiter_kind, "waiter: " + waiter_error);
      continue;
    }
    if (reply_ns < kill_ns) {
      fail(kErrWrong, "the waiter was answered before the kill, though it was queued");
      continue;
    }
    if (value != baseline) {
      fail(kErrWrong, "the waiter saw bbalance " + std::to_string(value) + ", expected " +
                          std::to_string(baseline) +
                          ": the killed transaction's update is visible");
      continue;
    }
    if (reply_ns <= end) {
      ++res.txns;
      res.hist.add(static_cast<std::uint64_t>(reply_ns - kill_ns));
      res.closed_hist.add(static_cast<std::uint64_t>(closed_ns - kill_ns));
      res.after_close_hist.add(
          static_cast<std::uint64_t>(std::max<std::int64_t>(0, reply_ns - closed_ns)));
    }
  }
  double cpu1 = proc_cpu_seconds(spid);

  // For scale: the waiter's statement on its own (the connection idle in the pool).
  try {
    for (int i = 0; i < kDiscReferenceStatements; ++i) {
      std::int64_t t0 = now_ns();
      mgr->execute(kDiscWaiter);
      res.ref_hist.add(static_cast<std::uint64_t>(now_ns() - t0));
    }
  } catch (const dbmgr::Error& e) {
    fail(kind_of(e), std::string("reference statement: ") + e.what());
  }

  // The killed transactions' effects are absent: no marker row, the balance as before, read
  // directly from the database (not through dbmgrd).
  try {
    std::int64_t rollbacks1 = json_int_field(admin.status(), "rollbacks_on_disconnect");
    if (rollbacks0 >= 0 && rollbacks1 >= 0) res.rollbacks_on_disconnect = rollbacks1 - rollbacks0;
  } catch (const dbmgr::Error&) {
  }
  std::int64_t balance = 0, marks = 0;
  if (std::string err = read_directly(t, ep, &balance, &marks); !err.empty()) {
    fail(kErrOther, "final check: " + err);
    ++res.checks_failed;
  } else {
    bool ok = true;
    if (balance != baseline) {
      fail(kErrWrong, "after the round: bbalance of branch 1 is " + std::to_string(balance) +
                          ", was " + std::to_string(baseline));
      ok = false;
    }
    if (marks != 0) {
      fail(kErrWrong,
           "after the round: " + std::to_string(marks) +
               " marker rows (tid = -1) of killed transactions are in bench_history",
           static_cast<std::uint64_t>(marks));
      ok = false;
    }
    ++(ok ? res.checks_ok : res.checks_failed);
  }

  res.seconds = static_cast<double>(end - start) / 1e9;
  if (cpu0 >= 0 && cpu1 >= 0) res.server_cpu_s = cpu1 - cpu0;
  res.server_hwm_kb = proc_status_kb(spid, "VmHWM:");
  res.round_tps.push_back(res.tps());
  return res;
}

// ---- the floor: one Unix-socket round trip between two processes --------------------------

struct Floor {
  double p50_us = 0, mean_us = 0;
};

Floor measure_floor() {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) die("socketpair failed");
  constexpr int kWarm = 2000, kIters = 20000;
  pid_t pid = fork();
  if (pid == 0) {
    close(sv[0]);
    char buf[64];
    while (true) {
      ssize_t n = read(sv[1], buf, sizeof buf);
      if (n <= 0) _exit(0);
      if (write(sv[1], buf, static_cast<std::size_t>(n)) != n) _exit(1);
    }
  }
  close(sv[1]);
  Histogram* h = new Histogram{};
  char msg[16] = "ping-ping-ping!";
  std::int64_t total = 0;
  for (int i = 0; i < kWarm + kIters; ++i) {
    std::int64_t t0 = now_ns();
    if (write(sv[0], msg, sizeof msg) != static_cast<ssize_t>(sizeof msg)) die("floor: write");
    std::size_t got = 0;
    while (got < sizeof msg) {
      ssize_t n = read(sv[0], msg + got, sizeof msg - got);
      if (n <= 0) die("floor: read");
      got += static_cast<std::size_t>(n);
    }
    std::int64_t dt = now_ns() - t0;
    if (i >= kWarm) {
      h->add(static_cast<std::uint64_t>(dt));
      total += dt;
    }
  }
  close(sv[0]);
  waitpid(pid, nullptr, 0);
  Floor f{h->percentile(0.5) / 1000.0, static_cast<double>(total) / kIters / 1000.0};
  delete h;
  return f;
}

// ---- servers ------------------------------------------------------------------------------

bool can_connect_unix(const std::string& path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  close(fd);
  return ok;
}

struct Daemon {
  pid_t pid = 0;
  std::string socket;
};

Daemon start_dbmgrd(const Config& cfg, const std::string& socket, const std::string& log,
                    const std::vector<std::pair<std::string, std::string>>& env,
                    const std::string& config_file = {}) {
  pid_t pid = fork();
  if (pid < 0) die("fork failed");
  if (pid == 0) {
    for (const char* v : {"DATABASE_TYPE", "DATABASE_NAME", "DATABASE_USER", "DATABASE_PASSWORD",
                          "DATABASE_PASSWORD_FILE", "DATABASE_HOST", "DATABASE_PORT",
                          "DATABASE_SSL", "DATABASE_PATH", "DBMGR_SOCKET", "DBMGR_CONFIG"}) {
      unsetenv(v);
    }
    for (const auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
    int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
      close(fd);
    }
    std::vector<const char*> args = {cfg.dbmgrd.c_str(), "--socket", socket.c_str(), "--log-level",
                                     cfg.dbmgrd_log_level.c_str()};
    if (!config_file.empty()) {
      args.push_back("--config");
      args.push_back(config_file.c_str());
    }
    args.push_back(nullptr);
    execv(cfg.dbmgrd.c_str(), const_cast<char* const*>(args.data()));
    std::perror("exec dbmgrd");
    _exit(127);
  }
  std::int64_t deadline = now_ns() + 30'000'000'000LL;
  while (!can_connect_unix(socket)) {
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) die("dbmgrd exited at start; see " + log);
    if (now_ns() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
      die("dbmgrd did not listen on " + socket + " within 30 s; see " + log);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return {pid, socket};
}

void stop_dbmgrd(Daemon& d) {
  if (d.pid <= 0) return;
  kill(d.pid, SIGTERM);
  std::int64_t deadline = now_ns() + 40'000'000'000LL;
  while (waitpid(d.pid, nullptr, WNOHANG) == 0) {
    if (now_ns() > deadline) {
      kill(d.pid, SIGKILL);
      waitpid(d.pid, nullptr, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  d.pid = 0;
}

int run_shell(const std::string& cmd) {
  int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : 1;
}

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

// Reads `export NAME=value` lines of servers.env (values as printf %q writes simple paths).
std::map<std::string, std::string> read_env_file(const std::string& path) {
  std::map<std::string, std::string> out;
  std::ifstream f(path);
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("export ", 0) != 0) continue;
    auto eq = line.find('=');
    if (eq == std::string::npos) continue;
    std::string v = line.substr(eq + 1);
    std::string un;
    for (std::size_t i = 0; i < v.size(); ++i) {
      if (v[i] == '\\' && i + 1 < v.size()) {
        un += v[++i];
      } else if (v[i] != '\'') {
        un += v[i];
      }
    }
    out[line.substr(7, eq - 7)] = un;
  }
  return out;
}

// ---- data ---------------------------------------------------------------------------------

void pg_exec_or_die(PGconn* c, const std::string& sql) {
  PGresult* r = PQexec(c, sql.c_str());
  ExecStatusType st = PQresultStatus(r);
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
    std::string msg = PQresultErrorMessage(r);
    PQclear(r);
    die("PostgreSQL: " + sql.substr(0, 80) + ": " + msg);
  }
  PQclear(r);
}

void setup_pg_data(const Endpoints& ep) {
  PGconn* c = PQconnectdb(ep.pg_conninfo.c_str());
  if (PQstatus(c) != CONNECTION_OK)
    die("cannot connect to PostgreSQL: " + std::string(PQerrorMessage(c)));
  // Already there with the right size (a server given on the command line, a second run)?
  PGresult* r = PQexec(c,
                       "SELECT (SELECT count(*) FROM bench_branches), (SELECT max(aid) FROM "
                       "bench_accounts), (SELECT count(*) FROM bench_tellers)");
  bool have = PQresultStatus(r) == PGRES_TUPLES_OK &&
              std::atoll(PQgetvalue(r, 0, 0)) == ep.branches &&
              std::atoll(PQgetvalue(r, 0, 1)) == ep.accounts &&
              std::atoll(PQgetvalue(r, 0, 2)) == ep.tellers;
  PQclear(r);
  if (have) {
    pg_exec_or_die(c, "TRUNCATE bench_history");
    PQfinish(c);
    return;
  }
  note("loading PostgreSQL: " + std::to_string(ep.accounts) + " accounts");
  std::string a = std::to_string(ep.accounts), b = std::to_string(ep.branches),
              t = std::to_string(ep.tellers);
  for (const std::string& sql : {
           std::string("DROP TABLE IF EXISTS bench_accounts, bench_tellers, bench_branches, "
                       "bench_history"),
           std::string("CREATE TABLE bench_branches (bid int NOT NULL, bbalance int, filler "
                       "char(88)) WITH (fillfactor = 100)"),
           std::string("CREATE TABLE bench_tellers (tid int NOT NULL, bid int, tbalance int, "
                       "filler char(84)) WITH (fillfactor = 100)"),
           std::string("CREATE TABLE bench_accounts (aid int NOT NULL, bid int, abalance int, "
                       "filler char(84)) WITH (fillfactor = 100)"),
           std::string("CREATE TABLE bench_history (tid int, bid int, aid int, delta int, mtime "
                       "timestamp, filler char(22))"),
           "INSERT INTO bench_branches SELECT g, 0, '' FROM generate_series(1, " + b + ") g",
           "INSERT INTO bench_tellers SELECT g, (g - 1) / 10 + 1, 0, '' FROM generate_series(1, " +
               t + ") g",
           "INSERT INTO bench_accounts SELECT g, (g - 1) / 100000 + 1, 0, '' FROM "
           "generate_series(1, " +
               a + ") g",
           std::string("ALTER TABLE bench_branches ADD PRIMARY KEY (bid)"),
           std::string("ALTER TABLE bench_tellers ADD PRIMARY KEY (tid)"),
           std::string("ALTER TABLE bench_accounts ADD PRIMARY KEY (aid)"),
           std::string("VACUUM ANALYZE bench_branches, bench_tellers, bench_accounts, "
                       "bench_history"),
       }) {
    pg_exec_or_die(c, sql);
  }
  PQfinish(c);
}

void setup_sqlite_data(const Endpoints& ep, const std::string& file) {
  sqlite3* db = nullptr;
  if (sqlite3_open(file.c_str(), &db) != SQLITE_OK) die("cannot open " + file);
  auto exec = [&](const std::string& sql) {
    char* err = nullptr;
    if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
      std::string m = err != nullptr ? err : "?";
      sqlite3_free(err);
      die("SQLite: " + sql.substr(0, 80) + ": " + m);
    }
  };
  exec("PRAGMA journal_mode=WAL");
  sqlite3_stmt* s = nullptr;
  bool have = false;
  if (sqlite3_prepare_v2(db,
                         "SELECT (SELECT count(*) FROM bench_branches), (SELECT max(aid) FROM "
                         "bench_accounts), (SELECT count(*) FROM bench_tellers)",
                         -1, &s, nullptr) == SQLITE_OK &&
      sqlite3_step(s) == SQLITE_ROW) {
    have = sqlite3_column_int64(s, 0) == ep.branches && sqlite3_column_int64(s, 1) == ep.accounts &&
           sqlite3_column_int64(s, 2) == ep.tellers;
  }
  sqlite3_finalize(s);
  if (have) {
    exec("DELETE FROM bench_history");
  } else {
    note("loading SQLite " + file + ": " + std::to_string(ep.accounts) + " accounts");
    std::string a = std::to_string(ep.accounts), b = std::to_string(ep.branches),
                t = std::to_string(ep.tellers);
    exec(
        "DROP TABLE IF EXISTS bench_accounts; DROP TABLE IF EXISTS bench_tellers; "
        "DROP TABLE IF EXISTS bench_branches; DROP TABLE IF EXISTS bench_history;");
    exec("BEGIN");
    exec("CREATE TABLE bench_branches (bid INTEGER PRIMARY KEY, bbalance INTEGER, filler TEXT)");
    exec(
        "CREATE TABLE bench_tellers (tid INTEGER PRIMARY KEY, bid INTEGER, tbalance INTEGER, "
        "filler TEXT)");
    exec(
        "CREATE TABLE bench_accounts (aid INTEGER PRIMARY KEY, bid INTEGER, abalance INTEGER, "
        "filler TEXT)");
    exec(
        "CREATE TABLE bench_history (tid INTEGER, bid INTEGER, aid INTEGER, delta INTEGER, "
        "mtime TEXT, filler TEXT)");
    exec("WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < " + b +
         ") INSERT INTO bench_branches SELECT x, 0, printf('%88s', '') FROM g");
    exec("WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < " + t +
         ") INSERT INTO bench_tellers SELECT x, (x - 1) / 10 + 1, 0, printf('%84s', '') FROM g");
    exec("WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < " + a +
         ") INSERT INTO bench_accounts SELECT x, (x - 1) / 100000 + 1, 0, printf('%84s', '') "
         "FROM g");
    exec("COMMIT");
  }
  exec("PRAGMA wal_checkpoint(TRUNCATE)");
  sqlite3_close(db);
}

// pgbench's tables in MariaDB (InnoDB), loaded from the sequence engine (seq_1_to_N), kept
// when already there with the right size (bench_history emptied).
void setup_mariadb_data(const Endpoints& ep) {
  OdbcDiag err;
  SQLHDBC dbc = odbc_connect(ep.mariadb_odbc, &err);
  if (dbc == SQL_NULL_HDBC) {
    die("cannot connect to MariaDB through ODBC: [" + err.state + "/" +
        std::to_string(err.native) + "] " + err.message);
  }
  auto exec = [&](const std::string& sql) {
    if (std::string e = odbc_exec(dbc, sql); !e.empty()) die("MariaDB: " + sql.substr(0, 80) + ": " + e);
  };
  std::int64_t n = -1;
  bool have = odbc_exec(dbc, "SELECT count(*) FROM bench_branches", &n).empty() && n == ep.branches;
  have = have && odbc_exec(dbc, "SELECT max(aid) FROM bench_accounts", &n).empty() &&
         n == ep.accounts;
  have = have && odbc_exec(dbc, "SELECT count(*) FROM bench_tellers", &n).empty() &&
         n == ep.tellers;
  if (have) {
    exec("TRUNCATE TABLE bench_history");
    odbc_close(dbc);
    return;
  }
  note("loading MariaDB: " + std::to_string(ep.accounts) + " accounts");
  std::string a = std::to_string(ep.accounts), b = std::to_string(ep.branches),
              t = std::to_string(ep.tellers);
  for (const std::string& sql : {
           std::string("DROP TABLE IF EXISTS bench_accounts, bench_tellers, bench_branches, "
                       "bench_history"),
           std::string("CREATE TABLE bench_branches (bid int NOT NULL PRIMARY KEY, bbalance int, "
                       "filler char(88)) ENGINE=InnoDB"),
           std::string("CREATE TABLE bench_tellers (tid int NOT NULL PRIMARY KEY, bid int, "
                       "tbalance int, filler char(84)) ENGINE=InnoDB"),
           std::string("CREATE TABLE bench_accounts (aid int NOT NULL PRIMARY KEY, bid int, "
                       "abalance int, filler char(84)) ENGINE=InnoDB"),
           std::string("CREATE TABLE bench_history (tid int, bid int, aid int, delta int, mtime "
                       "datetime, filler char(22)) ENGINE=InnoDB"),
           "INSERT INTO bench_branches SELECT seq, 0, '' FROM seq_1_to_" + b,
           "INSERT INTO bench_tellers SELECT seq, (seq - 1) DIV 10 + 1, 0, '' FROM seq_1_to_" + t,
           "INSERT INTO bench_accounts SELECT seq, (seq - 1) DIV 100000 + 1, 0, '' FROM seq_1_to_" +
               a,
           std::string("ANALYZE TABLE bench_branches, bench_tellers, bench_accounts, "
                       "bench_history"),
       }) {
    exec(sql);
  }
  odbc_close(dbc);
}

// ---- idle clients -------------------------------------------------------------------------

struct IdleResult {
  std::string server;
  int clients = 0;
  int opened = 0;
  long rss_before_kb = -1, rss_after_kb = -1, hwm_kb = -1;
  double seconds_to_open = 0;
  std::string first_error;
  double kb_per_client() const {
    return opened > 0 ? static_cast<double>(rss_after_kb - rss_before_kb) / opened : 0;
  }
};

// Opens n connections with `open_one` from a few threads, waits, reads the server's RSS.
template <typename Conn>
IdleResult hold_idle(const std::string& server, int pid, int n,
                     const std::function<std::unique_ptr<Conn>(std::string*)>& open_one) {
  IdleResult r;
  r.server = server;
  r.clients = n;
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  r.rss_before_kb = proc_status_kb(pid, "VmRSS:");
  std::vector<std::unique_ptr<Conn>> conns(static_cast<std::size_t>(n));
  std::atomic<int> next{0}, opened{0};
  std::mutex mu;
  std::int64_t t0 = now_ns();
  std::vector<std::thread> th;
  for (int k = 0; k < 8; ++k) {
    th.emplace_back([&] {
      int i;
      while ((i = next.fetch_add(1)) < n) {
        std::string err;
        conns[static_cast<std::size_t>(i)] = open_one(&err);
        if (conns[static_cast<std::size_t>(i)]) {
          opened.fetch_add(1);
        } else {
          std::lock_guard lock(mu);
          if (r.first_error.empty()) r.first_error = err;
        }
      }
    });
  }
  for (auto& t : th) t.join();
  r.seconds_to_open = static_cast<double>(now_ns() - t0) / 1e9;
  r.opened = opened.load();
  std::this_thread::sleep_for(std::chrono::seconds(1));
  r.rss_after_kb = proc_status_kb(pid, "VmRSS:");
  r.hwm_kb = proc_status_kb(pid, "VmHWM:");
  conns.clear();
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  return r;
}

struct PgConnHolder {
  explicit PgConnHolder(PGconn* conn) : c(conn) {}  // clang 14 has no paren aggregate init
  PgConnHolder(const PgConnHolder&) = delete;
  PgConnHolder& operator=(const PgConnHolder&) = delete;
  ~PgConnHolder() { PQfinish(c); }
  PGconn* c;
};

// ---- output -------------------------------------------------------------------------------

std::string errors_text(const PointResult& r) {
  std::string s;
  for (int k = 0; k < kErrKinds; ++k) {
    if (r.errors[k] == 0) continue;
    if (!s.empty()) s += ' ';
    s += std::string(kErrNames[k]) + "=" + std::to_string(r.errors[k]);
  }
  return s.empty() ? "0" : s;
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  std::size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

void print_table(const std::vector<PointResult>& merged) {
  std::printf("\n%-16s %7s %-19s %-7s %10s %18s %9s %9s %9s %8s %8s %8s  %s\n", "workload",
              "clients", "target", "clients", "tps", "tps min..max", "p50 us", "p99 us",
              "p99.9 us", "srv ms/1k", "srv MB", "cli ms/1k", "errors");
  std::printf("%s\n", std::string(154, '-').c_str());
  for (const auto& r : merged) {
    auto [lo, hi] = std::minmax_element(r.round_tps.begin(), r.round_tps.end());
    std::string range = r.round_tps.empty() ? "-" : fmt("%.0f", *lo) + ".." + fmt("%.0f", *hi);
    std::string cpu =
        r.server_cpu_s < 0 || r.txns == 0
            ? "-"
            : fmt("%.1f", r.server_cpu_s * 1000.0 / static_cast<double>(r.txns) * 1000.0);
    std::string rss = r.server_hwm_kb < 0 ? "-" : fmt("%.1f", r.server_hwm_kb / 1024.0);
    std::string cli =
        r.client_cpu_s < 0 || r.txns == 0
            ? "-"
            : fmt("%.1f", r.client_cpu_s * 1000.0 / static_cast<double>(r.txns) * 1000.0);
    std::printf("%-16s %7d %-19s %-7s %10.0f %18s %9.1f %9.1f %9.1f %8s %8s %8s  %s\n",
                name(r.workload), r.clients, name(r.target), client_mode(r.workload, r.target),
                median(r.round_tps), range.c_str(), r.hist.percentile(0.5) / 1000.0,
                r.hist.percentile(0.99) / 1000.0, r.hist.percentile(0.999) / 1000.0, cpu.c_str(),
                rss.c_str(), cli.c_str(), errors_text(r).c_str());
  }
  std::fflush(stdout);
}

void write_csv(const std::string& path, const std::vector<PointResult>& rows,
               const std::vector<IdleResult>& idle, const Floor& floor) {
  std::ofstream f(path);
  if (!f) die("cannot write " + path);
  f << "kind,workload,target,clients,client_mode,round,seconds,txns,tps,tps_min,tps_max,p50_us,"
       "p99_us,p999_us,max_us,errors,err_busy,err_pool_exhausted,err_connection,err_timeout,"
       "err_other,err_wrong,server_cpu_ms_per_1k,server_hwm_kb,idle_kb_per_client,floor_p50_us,"
       "client_cpu_ms_per_1k\n";
  for (const auto& r : rows) {
    double lo = r.round_tps.empty() ? 0 : *std::min_element(r.round_tps.begin(), r.round_tps.end());
    double hi = r.round_tps.empty() ? 0 : *std::max_element(r.round_tps.begin(), r.round_tps.end());
    double cpu =
        r.server_cpu_s < 0 || r.txns == 0 ? -1 : r.server_cpu_s * 1e6 / static_cast<double>(r.txns);
    f << "point," << name(r.workload) << ',' << name(r.target) << ',' << r.clients << ','
      << client_mode(r.workload, r.target) << ','
      << (r.round == 0 ? std::string("all") : std::to_string(r.round)) << ',' << r.seconds << ','
      << r.txns << ',' << (r.round == 0 ? median(r.round_tps) : r.tps()) << ',' << lo << ',' << hi
      << ',' << r.hist.percentile(0.5) / 1000 << ',' << r.hist.percentile(0.99) / 1000 << ','
      << r.hist.percentile(0.999) / 1000 << ',' << r.hist.percentile(1.0) / 1000 << ','
      << r.error_total();
    for (auto e : r.errors) f << ',' << e;
    double cli =
        r.client_cpu_s < 0 || r.txns == 0 ? -1 : r.client_cpu_s * 1e6 / static_cast<double>(r.txns);
    f << ',' << cpu << ',' << r.server_hwm_kb << ",," << floor.p50_us << ',' << cli << '\n';
  }
  for (const auto& i : idle) {
    f << "idle,idle-clients," << i.server << ',' << i.clients << ",threads,all,"
      << i.seconds_to_open << ",0,0,0,0,0,0,0,0," << (i.clients - i.opened) << ",0,0,0,0,0,0,-1,"
      << i.hwm_kb << ',' << i.kb_per_client() << ',' << floor.p50_us << ",-1\n";
  }
}

// ---- command line -------------------------------------------------------------------------

void usage() {
  std::puts(
      R"(dbmgr-bench: dbmgrd side by side with direct access and PgBouncer (docs/benchmarks.md)

  --workloads LIST    select1,point-select,tpcb-like,insert,connect-per-txn,disconnect,
                      tpcb-pipelined (default: select1,point-select); none: only
                      --idle-clients. tpcb-pipelined: tpcb-like in one batch where the
                      client can (dbmgrd: Session::pipeline(); libpq: pipeline mode, one
                      Sync); direct SQLite and MariaDB clients run it as tpcb-like.
                      disconnect (pg-dbmgrd, sqlite-dbmgrd only; one client at a time): a
                      forked client takes the write lock in a transaction and is SIGKILLed
                      while a one-shot write waits for its connection; latency = kill to
                      the waiter's reply (pg-dbmgrd: a dbmgrd of its own, pool 1, no overflow)
  --targets LIST      pg-direct,pg-pgbouncer,pg-dbmgrd,sqlite-inproc,sqlite-procs,sqlite-dbmgrd,
                      mariadb-direct,mariadb-dbmgrd,pg-dbmgrd-async,sqlite-dbmgrd-async
                      (default: the first six). *-async: one client thread, N AsyncSessions
                      in flight over one daemon connection (coroutines on the library's
                      I/O thread; tpcb-pipelined makes all six requests before awaiting);
                      not for connect-per-txn and disconnect
                      mariadb-direct: MariaDB Connector/ODBC through unixODBC, a connection
                      per client, prepared statements; mariadb-dbmgrd: libdbmgr to a dbmgrd
                      serving that MariaDB (type mariadb, pool 20, no overflow)
  --clients LIST      client counts (default 1,16,64); e.g. 1,16,64,256,1000
  --duration SECONDS  measured time per point and round (default 5)
  --rounds N          rounds; the targets alternate A B A B within each point (default 3)
  --scale S           pgbench scale: 100,000 accounts per unit (default 10 = 1,000,000 rows;
                      0.01 = 1,000 rows)
  --idle-clients LIST hold N idle connections to dbmgrd and PgBouncer, report RSS per client
  --csv FILE          also write every round and the merged rows as CSV (plot: tests/bench/plot.py)
  --sqlite-busy-timeout MS   busy_timeout of the direct SQLite targets (default 30000)
  --pg-host DIR --pg-port P --pg-user U --pg-password PW --pg-db DB
                      a running PostgreSQL (else a private one via scripts/test-servers.sh)
  --pgbouncer-host DIR --pgbouncer-port P [--pgbouncer-pid PID]
  --pgbouncer-prepared  pg-pgbouncer uses named prepared statements, as users of PgBouncer
                      1.21 and later do (max_prepared_statements); default: unnamed, as 1.18
                      needs. The PgBouncer started by the tool is the first on PATH
                      (../shared/anchors/build-pgbouncer.sh DIR builds 1.25.2)
  --dbmgr-socket PATH [--dbmgr-pid PID]     a running dbmgrd in front of that PostgreSQL
  --dbmgr-sqlite-socket PATH --sqlite-dir DIR   a running SQLite dbmgrd and its DATABASE_PATH
                      (the database file is DIR/bench.db, DATABASE_NAME=bench)
  --mariadb-socket PATH --mariadb-user U --mariadb-password PW --mariadb-db DB
                      a running MariaDB (else a private one via scripts/test-servers.sh)
  --mariadb-own-db    on that server, a database of the benchmark's own (dbmgr_bench_PID),
                      dropped at the end, instead of --mariadb-db
  --mariadb-odbc-driver NAME  the ODBC driver (default "MariaDB Unicode")
  --dbmgr-mariadb-socket PATH [--dbmgr-mariadb-pid PID]   a running dbmgrd for that MariaDB
  --dbmgr-mariadb-worker-threads N   worker_threads of the MariaDB dbmgrd it starts
                      (default: dbmgrd's, 4); each ODBC call holds one for its duration
  --dbmgr-reads read-only|read-write   how the dbmgrd targets send select1 and
                      point-select: read-only one-shots (default) or plain ones
  --dbmgrd PATH       the daemon to start (default: $DBMGRD, else the build tree's)
  --workdir DIR       temp folder (default mktemp -d /tmp/dbmgr-bench.XXXXXX); --keep keeps it
  --smoke             harness check: SQLite targets, every workload, 2 clients, 0.5 s, tiny
                      data (disconnect: sqlite-dbmgrd), and the MariaDB targets when
                      DBMGR_TEST_MARIADB_SOCKET is set (in a database of their own, dropped
                      after); exits 1 unless every point has TPS > 0 and no errors
Clients are threads, except sqlite-procs (one forked process per client), the *-async targets
(one thread, N sessions) and disconnect.)");
}

Config parse_args(int argc, char** argv) {
  Config c;
  if (const char* d = std::getenv("DBMGRD"); d != nullptr && *d != '\0') c.dbmgrd = d;
  std::string workloads = "select1,point-select", targets, clients;
  auto need = [&](int& i) -> std::string {
    if (i + 1 >= argc) die(std::string("missing value after ") + argv[i]);
    return argv[++i];
  };
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      usage();
      std::exit(0);
    } else if (a == "--workloads") {
      workloads = need(i);
    } else if (a == "--targets") {
      targets = need(i);
    } else if (a == "--clients") {
      clients = need(i);
    } else if (a == "--duration") {
      c.duration_s = std::stod(need(i));
    } else if (a == "--rounds") {
      c.rounds = std::stoi(need(i));
    } else if (a == "--scale") {
      c.scale = std::stod(need(i));
    } else if (a == "--idle-clients") {
      for (auto& s : split(need(i), ',')) c.idle_clients.push_back(std::stoi(s));
    } else if (a == "--csv") {
      c.csv = need(i);
    } else if (a == "--sqlite-busy-timeout") {
      c.sqlite_busy_timeout_ms = std::stoi(need(i));
    } else if (a == "--pg-host") {
      c.pg_host = need(i);
    } else if (a == "--pg-port") {
      c.pg_port = need(i);
    } else if (a == "--pg-user") {
      c.pg_user = need(i);
    } else if (a == "--pg-password") {
      c.pg_password = need(i);
    } else if (a == "--pg-db") {
      c.pg_db = need(i);
    } else if (a == "--pgbouncer-host") {
      c.pgbouncer_host = need(i);
    } else if (a == "--pgbouncer-port") {
      c.pgbouncer_port = need(i);
    } else if (a == "--pgbouncer-pid") {
      c.pgbouncer_pid = std::stoi(need(i));
    } else if (a == "--dbmgr-socket") {
      c.dbmgr_socket = need(i);
    } else if (a == "--dbmgr-pid") {
      c.dbmgr_pid = std::stoi(need(i));
    } else if (a == "--dbmgr-sqlite-socket") {
      c.dbmgr_sqlite_socket = need(i);
    } else if (a == "--sqlite-dir") {
      c.sqlite_dir = need(i);
    } else if (a == "--mariadb-socket") {
      c.mariadb_socket = need(i);
    } else if (a == "--mariadb-user") {
      c.mariadb_user = need(i);
    } else if (a == "--mariadb-password") {
      c.mariadb_password = need(i);
    } else if (a == "--mariadb-db") {
      c.mariadb_db = need(i);
    } else if (a == "--mariadb-own-db") {
      c.mariadb_private_db = true;
    } else if (a == "--mariadb-odbc-driver") {
      c.mariadb_odbc_driver = need(i);
    } else if (a == "--dbmgr-mariadb-socket") {
      c.dbmgr_mariadb_socket = need(i);
    } else if (a == "--dbmgr-mariadb-pid") {
      c.dbmgr_mariadb_pid = std::stoi(need(i));
    } else if (a == "--dbmgr-mariadb-worker-threads") {
      c.dbmgr_mariadb_worker_threads = std::stoi(need(i));
    } else if (a == "--pgbouncer-prepared") {
      c.pgbouncer_prepared = true;
    } else if (a == "--dbmgr-reads") {
      std::string v = need(i);
      if (v != "read-only" && v != "read-write") die("--dbmgr-reads: read-only or read-write");
      c.dbmgr_reads_read_only = v == "read-only";
    } else if (a == "--dbmgrd") {
      c.dbmgrd = need(i);
    } else if (a == "--workdir") {
      c.workdir = need(i);
    } else if (a == "--keep") {
      c.keep = true;
    } else if (a == "--smoke") {
      c.smoke = true;
    } else {
      die("unknown option " + a + " (--help)");
    }
  }
  if (c.smoke) {
    workloads = "select1,point-select,tpcb-like,insert,connect-per-txn,disconnect,tpcb-pipelined";
    if (targets.empty()) {
      targets = "sqlite-inproc,sqlite-procs,sqlite-dbmgrd,sqlite-dbmgrd-async";
      // The test suite's MariaDB (scripts/test.sh exports DBMGR_TEST_MARIADB_*), when there is
      // one: the MariaDB targets too, in a database of their own on it.
      const char* sock = std::getenv("DBMGR_TEST_MARIADB_SOCKET");
      if (c.mariadb_socket.empty() && sock != nullptr && *sock != '\0') {
        c.mariadb_socket = sock;
        if (const char* v = std::getenv("DBMGR_TEST_MARIADB_USER")) c.mariadb_user = v;
        if (const char* v = std::getenv("DBMGR_TEST_MARIADB_PASSWORD")) c.mariadb_password = v;
        c.mariadb_private_db = true;
      }
      if (!c.mariadb_socket.empty()) {
        targets += ",mariadb-direct,mariadb-dbmgrd";
      } else {
        note("smoke: no DBMGR_TEST_MARIADB_SOCKET: the MariaDB targets are left out");
      }
    }
    if (clients.empty()) clients = "2";
    c.duration_s = 0.5;
    c.rounds = 1;
    c.scale = 0.01;
  }
  if (workloads != "none") {
    for (auto& s : split(workloads, ',')) c.workloads.push_back(parse_workload(s));
  }
  // The default: the PostgreSQL and SQLite targets (MariaDB only when asked for).
  if (targets.empty())
    targets = "pg-direct,pg-pgbouncer,pg-dbmgrd,sqlite-inproc,sqlite-procs,sqlite-dbmgrd";
  for (auto& s : split(targets, ',')) c.targets.push_back(parse_target(s));
  if (!clients.empty()) {
    c.clients.clear();
    for (auto& s : split(clients, ',')) c.clients.push_back(std::stoi(s));
  }
  if (c.rounds < 1 || c.duration_s <= 0 || c.scale <= 0) die("bad --rounds, --duration or --scale");
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  Config cfg = parse_args(argc, argv);
  signal(SIGPIPE, SIG_IGN);

  // Many clients: raise the descriptor limit first, so that the servers started below
  // (PostgreSQL, PgBouncer, dbmgrd) inherit it too.
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);

  bool want_pg = false, want_sqlite = false, want_pgb = false, want_mariadb = false;
  for (Target t : cfg.targets) {
    if (is_pg(t)) want_pg = true;
    if (is_sqlite(t)) want_sqlite = true;
    if (is_mariadb(t)) want_mariadb = true;
    if (t == Target::kPgBouncer) want_pgb = true;
  }
  int max_clients = *std::max_element(cfg.clients.begin(), cfg.clients.end());
  int max_idle = cfg.idle_clients.empty()
                     ? 0
                     : *std::max_element(cfg.idle_clients.begin(), cfg.idle_clients.end());
  if (!cfg.idle_clients.empty()) want_pg = want_pgb = true;
  if (static_cast<rlim_t>(std::max(max_clients, max_idle) + 200) > rl.rlim_cur) {
    note("RLIMIT_NOFILE is " + std::to_string(rl.rlim_cur) + ": too few descriptors for " +
         std::to_string(std::max(max_clients, max_idle)) + " clients");
  }

  if (cfg.workdir.empty()) {
    char tmpl[] = "/tmp/dbmgr-bench.XXXXXX";
    if (mkdtemp(tmpl) == nullptr) die("mkdtemp failed");
    cfg.workdir = tmpl;
  }
  mkdir(cfg.workdir.c_str(), 0755);
  chmod(cfg.workdir.c_str(), 0755);
  const std::string& wd = cfg.workdir;

  Endpoints ep;
  ep.sqlite_busy_timeout_ms = cfg.sqlite_busy_timeout_ms;
  ep.dbmgr_reads_read_only = cfg.dbmgr_reads_read_only;
  ep.pgbouncer_prepared = cfg.pgbouncer_prepared;
  ep.accounts = std::max<std::int64_t>(1, std::llround(cfg.scale * 100000));
  ep.branches = std::max<std::int64_t>(1, static_cast<std::int64_t>(std::ceil(cfg.scale)));
  ep.tellers = ep.branches * 10;

  bool own_servers = false;
  std::string servers_dir = wd + "/srv";
  std::vector<Daemon> daemons;
  std::string mariadb_drop_db;  // smoke on a given MariaDB: its private database, dropped
  std::string mariadb_server_odbc;  // ... through this connection string (no database)
  auto cleanup = [&] {
    for (auto& d : daemons) stop_dbmgrd(d);
    if (!mariadb_drop_db.empty()) {
      OdbcDiag err;
      if (SQLHDBC c = odbc_connect(mariadb_server_odbc, &err); c != SQL_NULL_HDBC) {
        odbc_exec(c, "DROP DATABASE IF EXISTS `" + mariadb_drop_db + "`");
        odbc_close(c);
      }
    }
    if (own_servers) {
      run_shell("bash " + shell_quote(cfg.source_dir + "/scripts/test-servers.sh") + " stop " +
                shell_quote(servers_dir) + " >/dev/null 2>&1");
    }
    if (!cfg.keep) run_shell("rm -rf " + shell_quote(wd));
  };

  // The servers not given on the command line: one scripts/test-servers.sh start.
  const std::string script = "bash " + shell_quote(cfg.source_dir + "/scripts/test-servers.sh");
  const bool start_pg = want_pg && cfg.pg_host.empty();
  const bool need_pgb_start = start_pg && want_pgb && cfg.pgbouncer_host.empty();
  const bool start_mariadb = want_mariadb && cfg.mariadb_socket.empty();
  std::map<std::string, std::string> env;
  if (start_pg || start_mariadb) {
    std::string list = std::string(start_pg ? " pg" : "") + (need_pgb_start ? " pgbouncer" : "") +
                       (start_mariadb ? " mariadb" : "");
    note("starting" + list + " in " + servers_dir);
    own_servers = true;
    if (run_shell(script + " start " + shell_quote(servers_dir) + list + " >" +
                  shell_quote(wd + "/servers.log") + " 2>&1") != 0) {
      run_shell("tail -n 30 " + shell_quote(wd + "/servers.log") + " >&2");
      cleanup();
      die("scripts/test-servers.sh start failed");
    }
    env = read_env_file(servers_dir + "/servers.env");
  }

  // PostgreSQL and PgBouncer.
  if (want_pg) {
    if (start_pg) {
      cfg.pg_host = env["DBMGR_TEST_PG_HOST"];
      cfg.pg_port = env["DBMGR_TEST_PG_PORT"];
      cfg.pg_user = env["DBMGR_TEST_PG_USER"];
      cfg.pg_password = env["DBMGR_TEST_PG_PASSWORD"];
      cfg.pg_db = env["DBMGR_TEST_PG_DB"];
      // Direct connections for every client: raise max_connections (300 in the script).
      if (max_clients > 250) {
        std::string ci = "host=" + pg_quote(cfg.pg_host) + " port=" + cfg.pg_port +
                         " user=" + pg_quote(cfg.pg_user) +
                         " password=" + pg_quote(cfg.pg_password) +
                         " dbname=" + pg_quote(cfg.pg_db);
        PGconn* c = PQconnectdb(ci.c_str());
        if (PQstatus(c) == CONNECTION_OK) {
          pg_exec_or_die(c,
                         "ALTER SYSTEM SET max_connections = " + std::to_string(max_clients + 100));
        }
        PQfinish(c);
        run_shell(script + " restart-pg " + shell_quote(servers_dir) + " >>" +
                  shell_quote(wd + "/servers.log") + " 2>&1");
      }
      if (need_pgb_start) {
        cfg.pgbouncer_host = env["DBMGR_TEST_PGBOUNCER_HOST"];
        cfg.pgbouncer_port = env["DBMGR_TEST_PGBOUNCER_PORT"];
        // Room for every client (the script allows 1000): edit its file and reload.
        std::string ini = cfg.pgbouncer_host + "/pgbouncer.ini";
        int want = std::max(max_clients, max_idle) + 100;
        if (want > 1000) {
          run_shell("sed -i 's/^max_client_conn = .*/max_client_conn = " + std::to_string(want) +
                    "/' " + shell_quote(ini));
          int pid = read_pid_file(cfg.pgbouncer_host + "/pgbouncer.pid");
          if (pid > 0) kill(pid, SIGHUP);
          std::this_thread::sleep_for(std::chrono::milliseconds(500));
        }
      }
    }
    ep.pg_conninfo = "host=" + pg_quote(cfg.pg_host) + " port=" + cfg.pg_port +
                     " user=" + pg_quote(cfg.pg_user) + " password=" + pg_quote(cfg.pg_password) +
                     " dbname=" + pg_quote(cfg.pg_db);
    if (!cfg.pgbouncer_host.empty()) {
      ep.pgbouncer_conninfo = "host=" + pg_quote(cfg.pgbouncer_host) +
                              " port=" + cfg.pgbouncer_port + " user=" + pg_quote(cfg.pg_user) +
                              " password=" + pg_quote(cfg.pg_password) +
                              " dbname=" + pg_quote(cfg.pg_db);
      ep.pgbouncer_pid = cfg.pgbouncer_pid > 0
                             ? cfg.pgbouncer_pid
                             : read_pid_file(cfg.pgbouncer_host + "/pgbouncer.pid");
    }
    setup_pg_data(ep);
    if (cfg.dbmgr_socket.empty()) {
      // The same number of server connections as PgBouncer's pool (20): dbmgrd's default
      // max_overflow of 10 would let it run 30 backends where PgBouncer runs 20.
      std::string pg_yaml = wd + "/dbmgrd-pg.yaml";
      std::ofstream(pg_yaml) << "# dbmgr-bench: 20 server connections, like PgBouncer's pool.\n"
                                "pool:\n"
                                "  pool_size: 20\n"
                                "  max_overflow: 0\n";
      Daemon d = start_dbmgrd(cfg, wd + "/dbmgrd-pg.sock", wd + "/dbmgrd-pg.log",
                              {{"DATABASE_TYPE", "postgresql"},
                               {"DATABASE_HOST", cfg.pg_host},
                               {"DATABASE_PORT", cfg.pg_port},
                               {"DATABASE_USER", cfg.pg_user},
                               {"DATABASE_PASSWORD", cfg.pg_password},
                               {"DATABASE_NAME", cfg.pg_db}},
                              pg_yaml);
      daemons.push_back(d);
      ep.dbmgr_pg_socket = d.socket;
      ep.dbmgr_pg_pid = d.pid;
    } else {
      ep.dbmgr_pg_socket = cfg.dbmgr_socket;
      ep.dbmgr_pg_pid = cfg.dbmgr_pid;
    }
    // disconnect on pg-dbmgrd: a dbmgrd of its own whose pool for the database is one
    // connection with no overflow, so the waiter can only run on the killed client's.
    if (std::count(cfg.workloads.begin(), cfg.workloads.end(), Workload::kDisconnect) > 0 &&
        std::count(cfg.targets.begin(), cfg.targets.end(), Target::kPgDbmgrd) > 0) {
      // The file must name the database itself (dbmgrd checks the file before applying
      // DATABASE_*); the password comes from DATABASE_PASSWORD only.
      auto yaml_quote = [](const std::string& v) {
        std::string out = "\"";
        for (char ch : v) {
          if (ch == '"' || ch == '\\') out += '\\';
          out += ch;
        }
        return out + "\"";
      };
      std::string yaml = wd + "/dbmgrd-pg-pool1.yaml";
      std::ofstream(yaml) << "# dbmgr-bench, workload disconnect: one pooled connection, no "
                             "overflow.\n"
                             "default:\n"
                             "  type: postgresql\n"
                          << "  name: " << yaml_quote(cfg.pg_db) << "\n"
                          << "  host: " << yaml_quote(cfg.pg_host) << "\n"
                          << "  port: " << yaml_quote(cfg.pg_port) << "\n"
                          << "  user: " << yaml_quote(cfg.pg_user) << "\n"
                          << "  pool_size: 1\n"
                             "  max_overflow: 0\n";
      Daemon d = start_dbmgrd(cfg, wd + "/dbmgrd-pg-pool1.sock", wd + "/dbmgrd-pg-pool1.log",
                              {{"DATABASE_TYPE", "postgresql"},
                               {"DATABASE_HOST", cfg.pg_host},
                               {"DATABASE_PORT", cfg.pg_port},
                               {"DATABASE_USER", cfg.pg_user},
                               {"DATABASE_PASSWORD", cfg.pg_password},
                               {"DATABASE_NAME", cfg.pg_db}},
                              yaml);
      daemons.push_back(d);
      ep.dbmgr_pg1_socket = d.socket;
      ep.dbmgr_pg1_pid = d.pid;
    }
  }
  // MariaDB: mariadb-direct's ODBC connection string, the data, a dbmgrd in front of it.
  if (want_mariadb) {
    if (start_mariadb) {
      cfg.mariadb_socket = env["DBMGR_TEST_MARIADB_SOCKET"];
      cfg.mariadb_user = env["DBMGR_TEST_MARIADB_USER"];
      cfg.mariadb_password = env["DBMGR_TEST_MARIADB_PASSWORD"];
      cfg.mariadb_db = env["DBMGR_TEST_MARIADB_DB"];
      if (cfg.mariadb_socket.empty()) {
        cleanup();
        die("scripts/test-servers.sh wrote no DBMGR_TEST_MARIADB_SOCKET");
      }
    }
    // Values escaped as ODBC wants them: in braces when they hold ; { } = (a } doubled).
    auto odbc_value = [](const std::string& v) {
      if (v.find_first_of(";{}=") == std::string::npos) return v;
      std::string out = "{";
      for (char c : v) {
        out += c;
        if (c == '}') out += '}';
      }
      return out + "}";
    };
    // As DBMGR_TEST_MARIADB_ODBC is written (scripts/test-servers.sh).
    mariadb_server_odbc = "Driver={" + cfg.mariadb_odbc_driver +
                          "};Socket=" + odbc_value(cfg.mariadb_socket) +
                          ";Uid=" + odbc_value(cfg.mariadb_user) +
                          ";Pwd=" + odbc_value(cfg.mariadb_password);
    if (start_mariadb || cfg.mariadb_private_db) {
      OdbcDiag err;
      SQLHDBC c = odbc_connect(mariadb_server_odbc, &err);
      if (c == SQL_NULL_HDBC) {
        cleanup();
        die("cannot connect to MariaDB on " + cfg.mariadb_socket + ": [" + err.state + "/" +
            std::to_string(err.native) + "] " + err.message);
      }
      if (start_mariadb) {
        // Our own server: room for every direct client (300 in the script) and a buffer
        // pool that holds the data (the script's is 64 MiB; 1,000,000 accounts take about
        // 150 MB in InnoDB). Both are dynamic.
        for (const std::string& sql :
             {"SET GLOBAL max_connections = " + std::to_string(std::max(300, max_clients + 100)),
              std::string("SET GLOBAL innodb_buffer_pool_size = 536870912")}) {
          if (std::string e = odbc_exec(c, sql); !e.empty()) note("MariaDB: " + sql + ": " + e);
        }
      }
      if (cfg.mariadb_private_db) {
        // A server shared with others (the test suite's): a database of our own.
        cfg.mariadb_db = "dbmgr_bench_" + std::to_string(getpid());
        if (std::string e = odbc_exec(c, "CREATE DATABASE IF NOT EXISTS `" + cfg.mariadb_db + "`");
            !e.empty()) {
          odbc_close(c);
          cleanup();
          die("MariaDB: CREATE DATABASE " + cfg.mariadb_db + ": " + e);
        }
        mariadb_drop_db = cfg.mariadb_db;
      }
      odbc_close(c);
    }
    ep.mariadb_odbc = mariadb_server_odbc + ";Database=" + odbc_value(cfg.mariadb_db);
    setup_mariadb_data(ep);
    if (cfg.dbmgr_mariadb_socket.empty()) {
      // As for PostgreSQL: 20 server connections, no overflow. MariaDB runs a thread per
      // connection; dbmgrd runs each ODBC call on its worker threads (worker_threads: 4).
      std::string yaml = wd + "/dbmgrd-mariadb.yaml";
      {
        std::ofstream f(yaml);
        f << "# dbmgr-bench: 20 server connections, as for PostgreSQL.\n"
             "pool:\n"
             "  pool_size: 20\n"
             "  max_overflow: 0\n";
        if (cfg.dbmgr_mariadb_worker_threads > 0) {
          f << "worker_threads: " << cfg.dbmgr_mariadb_worker_threads << "\n";
        }
      }
      Daemon d = start_dbmgrd(cfg, wd + "/dbmgrd-mariadb.sock", wd + "/dbmgrd-mariadb.log",
                              {{"DATABASE_TYPE", "mariadb"},
                               {"DATABASE_HOST", cfg.mariadb_socket},
                               {"DATABASE_USER", cfg.mariadb_user},
                               {"DATABASE_PASSWORD", cfg.mariadb_password},
                               {"DATABASE_NAME", cfg.mariadb_db}},
                              yaml);
      daemons.push_back(d);
      ep.dbmgr_mariadb_socket = d.socket;
      ep.dbmgr_mariadb_pid = d.pid;
    } else {
      ep.dbmgr_mariadb_socket = cfg.dbmgr_mariadb_socket;
      ep.dbmgr_mariadb_pid = cfg.dbmgr_mariadb_pid;
    }
  }
  if (want_sqlite) {
    std::string dir = cfg.sqlite_dir.empty() ? wd + "/sqlite" : cfg.sqlite_dir;
    mkdir(dir.c_str(), 0755);
    // The direct targets get a file of their own: sharing dbmgrd's file with other writing
    // processes corrupted it here (dbmgrd opens and closes the file with open()/close()
    // when it opens a connection, which drops its POSIX locks; see docs/benchmarks.md).
    ep.sqlite_file = dir + "/direct.db";
    ep.dbmgr_sqlite_file = dir + "/bench.db";
    setup_sqlite_data(ep, ep.sqlite_file);
    setup_sqlite_data(ep, dir + "/bench.db");
    if (cfg.dbmgr_sqlite_socket.empty()) {
      Daemon d = start_dbmgrd(
          cfg, wd + "/dbmgrd-sqlite.sock", wd + "/dbmgrd-sqlite.log",
          {{"DATABASE_TYPE", "sqlite"}, {"DATABASE_PATH", dir}, {"DATABASE_NAME", "bench"}});
      daemons.push_back(d);
      ep.dbmgr_sqlite_socket = d.socket;
      ep.dbmgr_sqlite_pid = d.pid;
    } else {
      ep.dbmgr_sqlite_socket = cfg.dbmgr_sqlite_socket;
    }
  }

  Floor floor = measure_floor();
  std::printf("dbmgr-bench: %s, %ld CPUs; clients are threads except sqlite-procs (processes)\n",
              wd.c_str(), sysconf(_SC_NPROCESSORS_ONLN));
  std::printf(
      "floor: one Unix-socket round trip (socketpair, two processes): p50 %.1f us, mean "
      "%.1f us\n",
      floor.p50_us, floor.mean_us);
  if (!ep.pgbouncer_conninfo.empty()) {
    std::string version = "unknown version";
    if (FILE* p = popen("pgbouncer --version 2>/dev/null", "r")) {
      char line[256] = {0};
      if (std::fgets(line, sizeof line, p) != nullptr) {
        version = line;
        while (!version.empty() && (version.back() == '\n' || version.back() == '\r')) version.pop_back();
      }
      pclose(p);
    }
    std::printf("pgbouncer: %s (the first on PATH), %s statements\n", version.c_str(),
                ep.pgbouncer_prepared ? "named prepared" : "unnamed");
  }
  std::printf("data: %lld accounts, %lld tellers, %lld branches; %.1f s per point, %d rounds\n",
              static_cast<long long>(ep.accounts), static_cast<long long>(ep.tellers),
              static_cast<long long>(ep.branches), cfg.duration_s, cfg.rounds);
  std::fflush(stdout);

  std::vector<PointResult> rounds_rows, merged;
  for (Workload w : cfg.workloads) {
    std::vector<int> client_counts = cfg.clients;
    std::vector<Target> targets = cfg.targets;
    if (w == Workload::kConnectPerTxn || w == Workload::kDisconnect) {
      std::erase_if(targets, [w](Target t) {
        if (!uses_async(t)) return false;
        std::printf("%s: not run on %s (its sessions share one connection); skipped\n", name(w),
                    name(t));
        return true;
      });
    }
    if (w == Workload::kDisconnect) {
      // One killed client and one waiter at a time, on dbmgrd's targets only.
      if (client_counts != std::vector<int>{1} && !cfg.smoke) {
        note("disconnect: one killed client and one waiter at a time; --clients ignored");
      }
      client_counts = {1};
      std::erase_if(targets, [](Target t) {
        if (disconnect_applies(t)) return false;
        std::printf("disconnect: does not apply to %s (%s); skipped\n", name(t),
                    t == Target::kPgBouncer || t == Target::kMariadbDbmgrd
                        ? "not wired up"
                        : "no pool in the middle");
        return true;
      });
      std::fflush(stdout);
    }
    for (int n : client_counts) {
      std::vector<PointResult> acc;
      for (Target t : targets) {
        PointResult m;
        m.workload = w;
        m.target = t;
        m.clients = n;
        m.round = 0;
        acc.push_back(m);
      }
      for (int r = 1; r <= cfg.rounds; ++r) {
        for (std::size_t ti = 0; ti < targets.size(); ++ti) {
          Target t = targets[ti];
          PointResult p = w == Workload::kDisconnect
                              ? run_disconnect_point(t, cfg.duration_s, r, ep)
                              : run_point(t, w, n, cfg.duration_s, r, ep);
          std::fprintf(stderr, "  %-16s %5d %-19s round %d: %9.0f tps, p99 %8.1f us, errors %s%s\n",
                       name(w), n, name(t), r, p.tps(), p.hist.percentile(0.99) / 1000,
                       errors_text(p).c_str(),
                       p.first_error.empty() ? "" : (" (" + p.first_error + ")").c_str());
          PointResult& m = acc[ti];
          m.seconds += p.seconds;
          m.txns += p.txns;
          for (int k = 0; k < kErrKinds; ++k) m.errors[k] += p.errors[k];
          m.hist.merge(p.hist);
          if (p.server_cpu_s >= 0) m.server_cpu_s = std::max(0.0, m.server_cpu_s) + p.server_cpu_s;
          if (p.client_cpu_s >= 0) m.client_cpu_s = std::max(0.0, m.client_cpu_s) + p.client_cpu_s;
          m.server_hwm_kb = p.server_hwm_kb;
          m.round_tps.push_back(p.tps());
          if (m.first_error.empty()) m.first_error = p.first_error;
          m.kills += p.kills;
          m.checks_ok += p.checks_ok;
          m.checks_failed += p.checks_failed;
          m.closed_hist.merge(p.closed_hist);
          m.after_close_hist.merge(p.after_close_hist);
          m.ref_hist.merge(p.ref_hist);
          if (p.rollbacks_on_disconnect >= 0) {
            m.rollbacks_on_disconnect =
                std::max<std::int64_t>(0, m.rollbacks_on_disconnect) + p.rollbacks_on_disconnect;
          }
          rounds_rows.push_back(std::move(p));
        }
      }
      for (auto& m : acc) merged.push_back(std::move(m));
    }
  }
  if (!merged.empty()) print_table(merged);

  // The floor against dbmgrd's overhead at one client.
  auto find = [&](Workload w, Target t, int n) -> const PointResult* {
    for (const auto& r : merged) {
      if (r.workload == w && r.target == t && r.clients == n) return &r;
    }
    return nullptr;
  };
  if (const PointResult* d = find(Workload::kSelect1, Target::kPgDirect, 1),
      *m = find(Workload::kSelect1, Target::kPgDbmgrd, 1);
      d != nullptr && m != nullptr && d->txns > 0 && m->txns > 0) {
    double dp = d->hist.percentile(0.5) / 1000, mp = m->hist.percentile(0.5) / 1000;
    double dmean = d->seconds / static_cast<double>(d->txns) * 1e6;
    double mmean = m->seconds / static_cast<double>(m->txns) * 1e6;
    std::printf(
        "\nselect1, 1 client: direct libpq p50 %.1f us, dbmgrd p50 %.1f us: overhead %.1f "
        "us = %.2fx the floor (%.1f us); by mean latency %.1f us = %.2fx (target <= 1.25x)\n",
        dp, mp, mp - dp, (mp - dp) / floor.p50_us, floor.p50_us, mmean - dmean,
        (mmean - dmean) / floor.mean_us);
    if (const PointResult* b = find(Workload::kSelect1, Target::kPgBouncer, 1);
        b != nullptr && b->txns > 0) {
      double bp = b->hist.percentile(0.5) / 1000;
      std::printf("select1, 1 client: PgBouncer p50 %.1f us: overhead %.1f us = %.2fx the floor\n",
                  bp, bp - dp, (bp - dp) / floor.p50_us);
    }
  }

  // MariaDB (issue 13): dbmgrd's added latency at 1 client in floors (target <= 2), and its
  // throughput over direct ODBC at every point (target >= 1.2x at 64 clients and more).
  for (Workload w : {Workload::kSelect1, Workload::kPointSelect, Workload::kInsert,
                     Workload::kTpcb}) {
    const PointResult* d = find(w, Target::kMariadbDirect, 1);
    const PointResult* m = find(w, Target::kMariadbDbmgrd, 1);
    if (d == nullptr || m == nullptr || d->txns == 0 || m->txns == 0) continue;
    double dp = d->hist.percentile(0.5) / 1000, mp = m->hist.percentile(0.5) / 1000;
    double dmean = d->seconds / static_cast<double>(d->txns) * 1e6;
    double mmean = m->seconds / static_cast<double>(m->txns) * 1e6;
    double floors = (mp - dp) / floor.p50_us;
    std::printf(
        "\nmariadb %s, 1 client: direct ODBC p50 %.1f us, dbmgrd p50 %.1f us: added %.1f us = "
        "%.2f floors (%.1f us); by mean %.1f us = %.2f floors%s\n",
        name(w), dp, mp, mp - dp, floors, floor.p50_us, mmean - dmean,
        (mmean - dmean) / floor.mean_us,
        w == Workload::kSelect1 ? (floors <= 2.0 ? " (target <= 2: met)" : " (target <= 2: MISSED)")
                                : "");
  }
  bool mariadb_header = false;
  for (const auto& m : merged) {
    if (m.target != Target::kMariadbDbmgrd) continue;
    const PointResult* d = find(m.workload, Target::kMariadbDirect, m.clients);
    if (d == nullptr || d->txns == 0 || m.txns == 0) continue;
    if (!mariadb_header) {
      std::printf("\nmariadb, dbmgrd / direct (TPS: medians of the rounds):\n");
      mariadb_header = true;
    }
    double ratio = median(m.round_tps) / std::max(1e-9, median(d->round_tps));
    std::printf("  %-15s %5d clients: TPS %.2fx, p50 %.2fx, p99 %.2fx%s\n", name(m.workload),
                m.clients, ratio, m.hist.percentile(0.5) / d->hist.percentile(0.5),
                m.hist.percentile(0.99) / d->hist.percentile(0.99),
                m.clients >= 64 ? (ratio >= 1.2 ? " (target >= 1.2x: met)"
                                                : " (target >= 1.2x: MISSED)")
                                : "");
  }

  // disconnect against the issue's target.
  for (Target t : {Target::kPgDbmgrd, Target::kSqliteDbmgrd}) {
    const PointResult* d = find(Workload::kDisconnect, t, 1);
    if (d == nullptr) continue;
    std::string effects = d->checks_failed > 0
                              ? "PRESENT (or unchecked) after " + std::to_string(d->checks_failed) +
                                    " of " + std::to_string(d->checks_ok + d->checks_failed) +
                                    " rounds"
                              : "absent after every round";
    if (d->txns == 0) {
      std::printf("\ndisconnect: %s: no kill measured (%llu killed, errors %s%s)\n", name(t),
                  static_cast<unsigned long long>(d->kills), errors_text(*d).c_str(),
                  d->first_error.empty() ? "" : ("; " + d->first_error).c_str());
      continue;
    }
    double p99 = d->hist.percentile(0.99) / 1e6;
    std::printf(
        "\ndisconnect: %s p99 %.2f ms (target < 5 ms: %s); p50 %.2f ms, p99.9 %.2f ms, max "
        "%.2f ms over %llu kills measured (%llu killed; dbmgrd counted %lld rollbacks on "
        "disconnect); errors %s; the killed transactions' effects %s\n",
        t == Target::kPgDbmgrd ? "dbmgrd (PostgreSQL, pool 1)" : "dbmgrd (SQLite writer)", p99,
        d->error_total() > 0 || d->checks_failed > 0 ? "NOT VALID: see errors"
        : p99 < 5.0                                  ? "met"
                                                     : "MISSED",
        d->hist.percentile(0.5) / 1e6, d->hist.percentile(0.999) / 1e6,
        d->hist.percentile(1.0) / 1e6, static_cast<unsigned long long>(d->txns),
        static_cast<unsigned long long>(d->kills),
        static_cast<long long>(d->rollbacks_on_disconnect), errors_text(*d).c_str(),
        effects.c_str());
    std::printf(
        "disconnect: %s, split: kill -> the child's descriptors closed (kernel) p50 %.2f ms, "
        "p99 %.2f ms; closed -> the waiter's reply (dbmgrd) p50 %.2f ms, p99 %.2f ms; for "
        "scale, the waiter's statement alone (no kill, its pool idle) p50 %.2f ms, p99 %.2f "
        "ms over %llu statements\n",
        name(t), d->closed_hist.percentile(0.5) / 1e6, d->closed_hist.percentile(0.99) / 1e6,
        d->after_close_hist.percentile(0.5) / 1e6, d->after_close_hist.percentile(0.99) / 1e6,
        d->ref_hist.percentile(0.5) / 1e6, d->ref_hist.percentile(0.99) / 1e6,
        static_cast<unsigned long long>(d->ref_hist.total()));
  }

  // Idle clients.
  std::vector<IdleResult> idle;
  for (int n : cfg.idle_clients) {
    if (!ep.dbmgr_pg_socket.empty()) {
      std::string sock = ep.dbmgr_pg_socket;
      idle.push_back(
          hold_idle<dbmgr::DatabaseManager>("dbmgrd", ep.dbmgr_pg_pid, n, [&](std::string* err) {
            try {
              auto m = std::make_unique<dbmgr::DatabaseManager>(
                  dbmgr::Options{.socket_path = sock,
                                 .client_name = "dbmgr-bench-idle",
                                 .max_idle_connections = 1});
              m->ping();
              return m;
            } catch (const std::exception& e) {
              *err = e.what();
              return std::unique_ptr<dbmgr::DatabaseManager>();
            }
          }));
    }
    if (!ep.pgbouncer_conninfo.empty()) {
      std::string ci = ep.pgbouncer_conninfo;
      idle.push_back(
          hold_idle<PgConnHolder>("pgbouncer", ep.pgbouncer_pid, n, [&](std::string* err) {
            PGconn* c = PQconnectdb(ci.c_str());
            if (PQstatus(c) != CONNECTION_OK) {
              *err = PQerrorMessage(c);
              PQfinish(c);
              return std::unique_ptr<PgConnHolder>();
            }
            return std::make_unique<PgConnHolder>(c);
          }));
    }
  }
  if (!idle.empty()) {
    std::printf("\n%-10s %8s %8s %12s %12s %10s %12s %10s\n", "server", "idle", "opened",
                "RSS before", "RSS after", "KB/client", "open time s", "VmHWM MB");
    for (const auto& i : idle) {
      std::printf("%-10s %8d %8d %9ld KB %9ld KB %10.2f %12.1f %10.1f%s\n", i.server.c_str(),
                  i.clients, i.opened, i.rss_before_kb, i.rss_after_kb, i.kb_per_client(),
                  i.seconds_to_open, i.hwm_kb / 1024.0,
                  i.first_error.empty() ? "" : ("  first error: " + i.first_error).c_str());
    }
  }

  if (!cfg.csv.empty()) {
    std::vector<PointResult> all = rounds_rows;
    for (const auto& m : merged) all.push_back(m);
    write_csv(cfg.csv, all, idle, floor);
    std::printf("\nCSV: %s\n", cfg.csv.c_str());
  }

  cleanup();

  if (cfg.smoke) {
    bool ok = !merged.empty();
    for (const auto& r : merged) {
      if (r.txns == 0 || r.error_total() != 0) {
        std::fprintf(stderr, "smoke: %s %s %d clients: %llu txns, errors %s %s\n", name(r.workload),
                     name(r.target), r.clients, static_cast<unsigned long long>(r.txns),
                     errors_text(r).c_str(), r.first_error.c_str());
        ok = false;
      }
    }
    std::printf("smoke: %s\n", ok ? "ok" : "FAILED");
    return ok ? 0 : 1;
  }
  return 0;
}
