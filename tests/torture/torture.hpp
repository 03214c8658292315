// dbmgr-torture: the differential torture test of dbmgrd (docs/testing.md, "Torture test").
//
// One parent process starts a private dbmgrd, forks client processes (each with its own
// DatabaseManager and several threads) and one schema worker, SIGKILLs clients now and then,
// and afterwards checks the database directly (sqlite3 / libpq / unixODBC, never through dbmgrd)
// against what every client was told. This header holds what the parts share: the run's
// configuration, typed cells and tables as both sides see them, direct engine access, the
// append-only event logs, the operations a transaction performs and how they change a
// stream's state (the client's model and the oracle's replay use the same code).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <dbmgr/dbmgr.hpp>

namespace torture {

using Clock = std::chrono::steady_clock;

enum class Backend { kSqlite, kPostgres, kMariadb };
std::string_view backend_name(Backend b);

struct PgParams {
  std::string host, port, user, password, dbname;
};

struct Config {
  Backend backend = Backend::kSqlite;
  double seconds = 60;
  std::uint64_t seed = 0;
  int clients = 0;  // client processes (0: the backend's default)
  int threads = 2;  // threads per client process, each its own stream of transactions
  int kill_min_ms = 300;
  int kill_max_ms = 1500;
  bool keep = false;     // keep the logs (and the SQLite file) after the run
  bool verbose = false;  // print every violation, not the first few of each class
  std::set<std::string> kinds;  // transaction kinds the clients run (empty: all)
  bool schema_worker = true;
  bool tamper = false;  // self-check: corrupt the database before the oracle, which must notice
  std::string socket;
  std::string prefix = "test";
  std::string database;  // before prefixing: torture_<pid>
  std::string resolved;  // test.torture_<pid>
  std::string log_dir;
  std::string sqlite_path;
  PgParams pg;  // the run's database on the server (pg.dbname == resolved)
  std::string odbc;  // MariaDB: the ODBC connection string of the run's database (resolved)
  Clock::time_point deadline;

  dbmgr::Options options() const;
};

// std::mt19937_64 seeded through splitmix64 so that nearby seeds give unrelated streams.
std::uint64_t mix_seed(std::uint64_t a, std::uint64_t b);
class Rng {
 public:
  explicit Rng(std::uint64_t seed) : g_(mix_seed(seed, 0x7f4a7c15u)) {}
  std::int64_t uniform(std::int64_t lo, std::int64_t hi) {  // inclusive
    return std::uniform_int_distribution<std::int64_t>(lo, hi)(g_);
  }
  bool chance(double p) { return std::uniform_real_distribution<double>(0, 1)(g_) < p; }
  // An index into `weights`, each chosen with probability weight / sum.
  std::size_t weighted(const std::vector<int>& weights);
  template <typename T>
  const T& pick(const std::vector<T>& v) {
    return v[static_cast<std::size_t>(uniform(0, static_cast<std::int64_t>(v.size()) - 1))];
  }

 private:
  std::mt19937_64 g_;
};

// ---- cells and tables, as dbmgrd returns them and as read directly ----

struct Cell {
  dbmgr::Type type = dbmgr::Type::kNull;
  std::int64_t i = 0;  // kBool (0/1), kInt64
  double d = 0;        // kDouble
  std::string bytes;   // kText, kBlob
};
bool same_cell(const Cell& a, const Cell& b);
std::string describe(const Cell& c);  // "int64 5", "text 'ab'", "null", ...

struct Table {
  std::vector<std::string> columns;
  std::vector<dbmgr::Type> declared;  // one per column where the engine reports it, else empty
  std::vector<std::vector<Cell>> rows;
};
Table from_result(const dbmgr::Result& r);
// nullopt when equal: same column names in the same order, same declared types (when both
// sides have them), same rows with the same typed values (in order, or failing that as a
// multiset, since SELECT * has no ORDER BY). Otherwise the first difference, in words.
std::optional<std::string> compare_tables(const Table& via_dbmgrd, const Table& direct);
std::string describe_columns(const Table& t);

// ---- direct engine access (never through dbmgrd) ----

class Direct {
 public:
  virtual ~Direct() = default;
  // Runs SQL without parameters (a script is fine); throws std::runtime_error on failure.
  virtual void exec(const std::string& sql) = 0;
  // One statement with `?` placeholders, parameters typed as dbmgrd types them.
  virtual void exec(const std::string& sql, const std::vector<dbmgr::Param>& params) = 0;
  // One query; every cell typed as dbmgrd documents it (docs/protocol.md).
  virtual Table query(const std::string& sql) = 0;
};
// The run's database: the SQLite file, or the run's database on the PostgreSQL or MariaDB
// server.
std::unique_ptr<Direct> open_direct(const Config& cfg);
// PostgreSQL only: a connection to another database of the same server (maintenance).
std::unique_ptr<Direct> open_pg(const PgParams& p);
// MariaDB through unixODBC (the MariaDB driver), with an ODBC connection string such as
// $DBMGR_TEST_MARIADB_ODBC. exec() without parameters runs a script statement by statement
// (split at ';' outside quotes), as the schema worker sends scripts through dbmgrd.
std::unique_ptr<Direct> open_odbc(const std::string& connection_string);
// `connection_string` with its Database attribute replaced by `database`.
std::string odbc_with_database(const std::string& connection_string, const std::string& database);
// MariaDB's SQLSTATE for a duplicate key or a broken foreign key is 23000 (PostgreSQL and
// SQLite's mapping: 23505, 23503).
std::string duplicate_key_sqlstate(Backend b);

// ---- append-only event logs ----

// One file per process, opened O_APPEND; each line goes out in one write(2), so lines of
// several threads never interleave and a SIGKILL loses nothing that was written.
class EventLog {
 public:
  explicit EventLog(const std::string& path);
  ~EventLog();
  EventLog(const EventLog&) = delete;
  EventLog& operator=(const EventLog&) = delete;
  void line(const std::vector<std::string>& fields);  // tab-separated, '\n' appended

 private:
  int fd_ = -1;
};
// A message fit for one log field: tabs and newlines become spaces, at most 300 bytes.
std::string clean(std::string_view s);
std::vector<std::string> split_tabs(const std::string& line);

std::string category_of(const dbmgr::Error& e);  // to_string(category)

// ---- what transactions do ----

// One statement of a transaction. Kinds and their fields:
//   txlog      k = tag, a = statements in the transaction    INSERT INTO tx_log
//   ins_kv     k = key, a = value                            INSERT INTO kv
//   upd_kv     k = key, a = delta                            UPDATE kv SET v = v + a, tag = tx
//   del_kv     k = key                                       DELETE FROM kv
//   ctr        a = counter id, b = delta                     UPDATE counters SET n = n + b
//   parent     a = id                                        INSERT INTO parent
//   child      a = id, b = parent id (exists, or is inserted later in the transaction)
//   bad_child  a = id, b = parent id that never exists       (deferred FK: the commit fails)
//   get_kv     k = key                                       SELECT (checked against the model)
//   dup_txlog  k = a tag already in tx_log                   (must fail: duplicate key)
//   read_kv / count_txlog / count_kv                         SELECTs of read-only sessions
//   ro_txlog / ro_kv                                         writes a read-only session tries
enum class OpKind {
  kTxLog, kInsKv, kUpdKv, kDelKv, kCtr, kParent, kChild, kBadChild,
  kGetKv, kDupTxLog, kReadKv, kCountTxLog, kCountKv, kRoTxLog, kRoKv,
};
struct Op {
  OpKind kind = OpKind::kTxLog;
  std::string k;
  std::int64_t a = 0;
  std::int64_t b = 0;
};
std::string_view op_name(OpKind k);
std::optional<OpKind> op_from_name(std::string_view s);
// Whether the op changes the database when its transaction commits.
bool op_writes(OpKind k);

struct Sql {
  std::string text;
  std::vector<dbmgr::Param> params;  // own their strings
};
// The statement for `op` of transaction `tag` in `stream`; `kind` is the transaction's kind.
Sql sql_for(const Op& op, const std::string& tag, std::int64_t stream, const std::string& kind);

struct KvRow {
  std::int64_t v = 0;
  std::string tag;  // the transaction that wrote the row last
  bool operator==(const KvRow&) const = default;
};
struct ChildRow {
  std::int64_t parent = 0;
  std::string tag;
  bool operator==(const ChildRow&) const = default;
};
// Everything one stream (one client thread) has committed; rows carry the stream's number.
struct StreamState {
  std::map<std::string, std::string> txlog;  // tag -> kind
  std::map<std::string, KvRow> kv;           // key -> row
  std::map<std::int64_t, std::string> parents;  // id -> tag
  std::map<std::int64_t, ChildRow> children;    // id -> row
  std::map<std::int64_t, std::int64_t> counters;  // counter id -> sum of deltas
};
// Applies what a committed op does (ops that write nothing are ignored).
void apply(StreamState& s, const Op& op, const std::string& tag, const std::string& kind);

constexpr int kCounters = 4;
// Every kind of client transaction (client.cpp).
const std::vector<std::string>& all_kinds();

// A transaction's tag: "s<stream>n<number>"; the stream is "<incarnation>*16 + thread".
std::string make_tag(std::int64_t stream, std::int64_t n);
constexpr std::int64_t kStreamsPerIncarnation = 16;

// ---- the parts, each in its own file ----

// In a forked client process: runs cfg.threads streams until the deadline. Exit code.
int run_client(const Config& cfg, int incarnation);
// In the forked schema worker process. Exit code.
int run_schema_worker(const Config& cfg);

// What the parent knows about each process it started.
struct ProcessFate {
  int incarnation = 0;  // 0: the schema worker
  pid_t pid = 0;
  bool killed = false;  // by the parent's SIGKILL (on purpose)
  bool stuck = false;   // killed because it did not finish after the deadline
  int status = 0;       // waitpid() status
};

// Violations of the contract, by class, with a few examples each.
class Violations {
 public:
  void add(const std::string& cls, const std::string& detail);
  std::size_t total() const;
  std::size_t count(const std::string& cls) const;
  bool empty() const { return total() == 0; }
  // Prints every class with its count and examples (all of them with `all`).
  void print(std::ostream& out, bool all) const;

 private:
  struct Entry {
    std::size_t count = 0;
    std::vector<std::string> examples;
  };
  std::map<std::string, Entry> by_class_;
};

struct OracleStats;
// Reads every log in cfg.log_dir and the database directly; adds what it finds to `v` and
// prints the outcome counts to `out`.
void run_oracle(const Config& cfg, const std::vector<ProcessFate>& fates, Direct& db,
                Violations& v, std::ostream& out);

}  // namespace torture
