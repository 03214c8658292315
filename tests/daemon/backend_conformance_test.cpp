// The backend conformance suite: the same cases on every engine, through BackendConn only.
//
// Each engine is one row of engines() below: its name, how its database is configured (from
// the DBMGR_TEST_* variables scripts/test-servers.sh writes), its SQL for the few things SQL
// does not say alike, and its capabilities. A capability an engine lacks is a column that
// changes what the case asserts (never a skip): SQLite has no server to kill, so the "ping
// after kill" case asserts that its ping keeps working instead.
//
// Connections are made the daemon's way: driver_for(type).plan(db, ctx) and the factory of
// the pool a session would use (a read-only session: the kReader pool where the plan has
// one). PostgreSQL through psqlODBC has no DbType of its own, so its row makes an OdbcConn
// itself, as odbc_driver.cpp does for MariaDB. A real libuv loop runs in this thread; a
// Probe listener records each completion, and the loop is turned until it arrives (or a
// deadline passes, which fails the case instead of hanging it). Reply frames are decoded with
// the protocol's decoder and checked field by field.
//
// The completion contract is checked around every call: the Probe's `in_call` flag is set
// while the test is inside a BackendConn method, and a completion seen then is a failure.
//
// Needs the servers of scripts/test-servers.sh (`source /tmp/srv/servers.env`); a missing
// variable fails the engine's cases with a message naming it.
#include <doctest/doctest.h>

#include <unistd.h>
#include <uv.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include <fmt/format.h>

#include "backend/backend.hpp"
#include "backend/blocking_pool.hpp"
#include "backend/driver.hpp"
#include "backend/odbc/odbc_conn.hpp"
#include "clock.hpp"
#include "dbmgr/protocol/codec.hpp"

namespace proto = dbmgr::proto;
namespace config = dbmgr::config;
using namespace std::chrono_literals;
using dbmgr::daemon::BackendConn;
using dbmgr::daemon::BackendListener;
using dbmgr::daemon::BackendOp;
using dbmgr::daemon::BackendResult;
using dbmgr::daemon::DriverContext;
using dbmgr::daemon::ExecRequest;
using dbmgr::daemon::PoolPlan;
using dbmgr::daemon::PoolRole;
using dbmgr::daemon::TxBegin;
using Cat = proto::ErrorCategory;
using Tag = proto::ValueTag;

namespace {

// ---------------------------------------------------------------------------------------
// Values and decoded replies

// One value of a decoded row, owning its bytes.
struct Cell {
  Tag tag = Tag::kNull;
  bool b = false;
  std::int64_t i = 0;
  double d = 0;
  std::string bytes;

  static Cell null() { return {}; }
  static Cell boolean(bool v) { Cell c; c.tag = Tag::kBool; c.b = v; return c; }
  static Cell int64(std::int64_t v) { Cell c; c.tag = Tag::kInt64; c.i = v; return c; }
  static Cell real(double v) { Cell c; c.tag = Tag::kDouble; c.d = v; return c; }
  static Cell text(std::string v) { Cell c; c.tag = Tag::kText; c.bytes = std::move(v); return c; }
  static Cell blob(std::string v) { Cell c; c.tag = Tag::kBlob; c.bytes = std::move(v); return c; }
  static Cell of(const proto::Value& v) {
    Cell c;
    c.tag = v.tag;
    c.b = v.b;
    c.i = v.i;
    c.d = v.d;
    c.bytes.assign(v.bytes);
    return c;
  }
  proto::Value value() const {
    switch (tag) {
      case Tag::kNull: return proto::Value::null();
      case Tag::kBool: return proto::Value::boolean(b);
      case Tag::kInt64: return proto::Value::int64(i);
      case Tag::kDouble: return proto::Value::real(d);
      case Tag::kText: return proto::Value::text(bytes);
      case Tag::kBlob: return proto::Value::blob(bytes);
    }
    return proto::Value::null();
  }
  friend bool operator==(const Cell& a, const Cell& b) { return a.value() == b.value(); }
};

std::ostream& operator<<(std::ostream& os, const Cell& c) {
  os << proto::to_string(c.tag);
  switch (c.tag) {
    case Tag::kNull: break;
    case Tag::kBool: os << ' ' << (c.b ? "true" : "false"); break;
    case Tag::kInt64: os << ' ' << c.i; break;
    case Tag::kDouble: os << ' ' << fmt::format("{:.17g}", c.d); break;
    case Tag::kText:
    case Tag::kBlob: {
      os << '[' << c.bytes.size() << "] ";
      std::string shown;
      for (unsigned char ch : c.bytes.substr(0, 48)) {
        if (c.tag == Tag::kText && ch >= 0x20) shown += static_cast<char>(ch);
        else shown += fmt::format("\\x{:02x}", ch);
      }
      os << '"' << shown << (c.bytes.size() > 48 ? "\"..." : "\"");
      break;
    }
  }
  return os;
}

using Row = std::vector<Cell>;

// What the frames of one BackendResult say, decoded with the protocol's decoder.
struct Decoded {
  std::string problem;  // a frame the decoder refused, or one for another request
  int columns_frames = 0;
  std::vector<std::string> column_names;
  std::vector<Tag> column_types;
  std::vector<Row> rows;
  struct RowsFrame {
    std::uint32_t payload = 0;
    std::uint32_t rows = 0;
    std::size_t first_row = 0;  // index into `rows`
  };
  std::vector<RowsFrame> rows_frames;
  std::optional<proto::Complete> complete;
  int other_frames = 0;  // anything else (an error frame: the owner sends errors)
};

Decoded decode_frames(const dbmgr::daemon::Buffer& buf, std::uint32_t request_id,
                      std::uint32_t session_id) {
  Decoded d;
  const std::uint8_t* p = buf.data();
  std::size_t left = buf.size();
  while (left > 0) {
    if (left < proto::kHeaderSize) {
      d.problem = fmt::format("{} bytes after the last frame", left);
      break;
    }
    proto::Header h;
    if (auto e = proto::parse_header(p, 1u << 30, &h); e != proto::DecodeError::kOk) {
      d.problem = fmt::format("bad header: {}", proto::to_string(e));
      break;
    }
    if (left < proto::kHeaderSize + h.length) {
      d.problem = "a frame runs past the end of the result";
      break;
    }
    if (h.request_id != request_id || h.session_id != session_id) {
      d.problem = fmt::format("a {} frame for request {} session {} (expected {} / {})",
                              proto::to_string(h.type), h.request_id, h.session_id, request_id,
                              session_id);
    }
    proto::FrameView fv{h, p + proto::kHeaderSize};
    proto::Message m;
    if (auto e = proto::decode(fv, &m); e != proto::DecodeError::kOk) {
      d.problem = fmt::format("{} frame refused by the decoder: {}", proto::to_string(h.type),
                              proto::to_string(e));
      break;
    }
    if (auto* c = std::get_if<proto::Columns>(&m)) {
      ++d.columns_frames;
      d.column_names.clear();
      d.column_types.clear();
      c->columns.for_each([&](const proto::ColumnDesc& cd) {
        d.column_names.emplace_back(cd.name);
        d.column_types.push_back(cd.type);
      });
    } else if (auto* r = std::get_if<proto::Rows>(&m)) {
      d.rows_frames.push_back({h.length, r->row_count, d.rows.size()});
      Row row;
      for (const proto::Value& v : r->values) {
        row.push_back(Cell::of(v));
        if (row.size() == r->column_count) {
          d.rows.push_back(std::move(row));
          row.clear();
        }
      }
    } else if (auto* k = std::get_if<proto::Complete>(&m)) {
      if (d.complete) d.problem = "two kComplete frames";
      d.complete = *k;
    } else {
      ++d.other_frames;
    }
    p += proto::kHeaderSize + h.length;
    left -= proto::kHeaderSize + h.length;
  }
  return d;
}

// Parameters in the form ExecRequest takes (validated encoded values), owning their bytes.
struct Params {
  std::vector<std::uint8_t> raw;
  std::uint32_t count = 0;
  Params() = default;
  Params(std::initializer_list<Cell> cells) {
    for (const Cell& c : cells) add(c);
  }
  void add(const Cell& c) {
    proto::Encoder e(raw);
    e.put_value(c.value());
    ++count;
  }
  proto::ValueList list() const {
    return proto::ValueList(count, std::string_view(reinterpret_cast<const char*>(raw.data()),
                                                    raw.size()));
  }
};

std::string sub(std::string s, std::string_view key, std::string_view value) {
  for (std::size_t at = s.find(key); at != std::string::npos; at = s.find(key, at + value.size())) {
    s.replace(at, key.size(), value);
  }
  return s;
}

std::optional<std::string> env(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return std::nullopt;
  return std::string(v);
}

// ---------------------------------------------------------------------------------------
// The engine table

struct Engine;
// Fills `db` from the environment; returns the names of the variables that are missing.
using Configure = std::function<std::vector<std::string>(config::DatabaseConfig* db)>;
// An engine with no DbType of its own makes its pools here instead of driver_for().plan().
using CustomPlan =
    std::function<std::vector<PoolPlan>(const config::DatabaseConfig& db, const DriverContext&)>;

struct Engine {
  std::string name;
  Configure configure;
  CustomPlan custom_plan;  // empty: driver_for(db.type).plan(db, ctx)

  // Capabilities: each is a documented column that changes what a case asserts.
  bool native_bool = true;         // a BOOLEAN column comes back as kBool (false: int64 0/1)
  bool has_session_state = true;   // SET / temporary tables exist and reset() must undo them
  bool supports_cancel = true;     // cancel() interrupts a running statement
  bool deferred_constraints = true;  // a constraint may be checked at COMMIT (else at once)
  bool server_kill = true;         // another connection can end this one's server session
  bool reports_backend_id = true;  // BackendConn::backend_id() is the server's session id
  // Who refuses a result of more than proto::kMaxColumns columns: the server itself (its own
  // limit is lower: SQLite 2000, PostgreSQL 1664) or dbmgrd's ResultWriter.
  bool server_limits_columns = true;

  // A stream paused inside a transaction is not rolled back on the connection: rollback()
  // reports it broken and the owner closes it, which ends the transaction (PgConn: the rest
  // of the rows is still in libpq's pipeline ahead of a ROLLBACK). False: the statement is
  // ended and the transaction rolled back on the same connection (SQLite resets the
  // statement; OdbcConn closes the cursor, which makes the driver read the remaining rows).
  bool rollback_mid_stream_closes = true;
  // SQL around a parameter of each type where a bare `?` in a select list loses its type
  // (psqlODBC sends untyped parameters; MariaDB makes a bare `?` text). Empty: a bare `?`.
  std::map<Tag, std::string> echo;
  // A character-typed result holding the bytes of a blob parameter (not UTF-8); with
  // binary_text_refused the server refuses to make one (SQLSTATE class 22, category data).
  std::string binary_as_text_sql;
  bool binary_text_refused = false;

  std::string param(Tag t) const {
    auto it = echo.find(t);
    return it == echo.end() ? "?" : it->second;
  }

  // SQL. {t} is a table name, {n} a count, {id} a server session id.
  std::string types_ddl;     // id, b (bool), i (int64), d (double), tx (text), bl (blob)
  std::string key_ddl;       // id integer primary key
  std::string parent_ddl;    // id integer primary key
  std::string child_ddl;     // id, pid -> {p}.id (deferred where the engine can)
  std::string series_sql;    // x = 1..{n} in order, and the parameter as `pad`
  std::string long_sql;      // runs for many seconds unless cancelled
  std::string backend_id_sql;  // one value: this connection's server session id
  std::string kill_sql;      // ends server session {id}
  std::string session_alive_sql;  // 1 while server session {id} exists, else 0
  std::vector<std::string> session_set;  // statements that change session state
  std::string session_probe;             // one value that shows it
  Cell session_value;                    // ... while it is set
};

config::DatabaseConfig base_config(config::DbType type) {
  config::DatabaseConfig db;
  db.type = type;
  db.key = "conformance";
  db.pool.statement_timeout = config::Millis{0};
  return db;
}

// Reads the variables into `out`, collecting the names of the missing ones.
std::vector<std::string> need(std::initializer_list<std::pair<const char*, std::string*>> vars) {
  std::vector<std::string> missing;
  for (auto& [name, out] : vars) {
    if (auto v = env(name)) *out = *v;
    else missing.emplace_back(name);
  }
  return missing;
}

std::string sqlite_folder() {
  static const std::string dir = [] {
    std::string tmpl = (std::filesystem::temp_directory_path() / "dbmgr-conformance-XXXXXX").string();
    const char* made = ::mkdtemp(tmpl.data());
    return std::string(made != nullptr ? made : "");
  }();
  return dir;
}

std::vector<std::string> configure_pg(config::DatabaseConfig* db) {
  std::string port, password;
  auto missing = need({{"DBMGR_TEST_PG_HOST", &db->host},
                       {"DBMGR_TEST_PG_PORT", &port},
                       {"DBMGR_TEST_PG_USER", &db->user},
                       {"DBMGR_TEST_PG_PASSWORD", &password},
                       {"DBMGR_TEST_PG_DB", &db->name}});
  db->port = port.empty() ? 0 : std::atoi(port.c_str());
  db->password = config::Secret(password);
  return missing;
}

// The PostgreSQL SQL shared by libpq and psqlODBC.
Engine pg_sql(Engine e) {
  e.types_ddl =
      "CREATE TABLE {t} (id integer PRIMARY KEY, b boolean, i bigint, d double precision, "
      "tx text, bl bytea)";
  e.key_ddl = "CREATE TABLE {t} (id integer PRIMARY KEY)";
  e.parent_ddl = "CREATE TABLE {t} (id integer PRIMARY KEY)";
  e.child_ddl =
      "CREATE TABLE {t} (id integer PRIMARY KEY, pid integer REFERENCES {p} (id) "
      "DEFERRABLE INITIALLY DEFERRED)";
  e.series_sql = "SELECT x, ? AS pad FROM generate_series(1, {n}) AS x ORDER BY x";
  e.long_sql = "SELECT pg_sleep(10)";
  e.backend_id_sql = "SELECT pg_backend_pid()";
  e.kill_sql = "SELECT pg_terminate_backend({id})";
  e.session_alive_sql = "SELECT count(*) FROM pg_stat_activity WHERE pid = {id}";
  e.session_set = {"SET work_mem = '7777kB'", "CREATE TEMPORARY TABLE conf_session_tmp (x int)"};
  e.session_probe = "SHOW work_mem";
  e.session_value = Cell::text("7777kB");
  e.binary_as_text_sql = "SELECT convert_from(CAST(? AS bytea), 'UTF8')";
  e.binary_text_refused = true;  // text in a UTF8 database is UTF-8 (22021)
  return e;
}

// The dialect of PostgreSQL spoken through psqlODBC. psqlODBC begins the transaction itself
// (autocommit off sends BEGIN before the first statement), so a read-only one is made by
// SET TRANSACTION inside it rather than by a second BEGIN.
const dbmgr::daemon::Dialect& pg_odbc_dialect() {
  static const dbmgr::daemon::Dialect d{.lexing = dbmgr::daemon::SqlLexing::kPostgres,
                                        .native_question_marks = true,
                                        .begin_read_write = "BEGIN",
                                        .begin_read_only = "SET TRANSACTION READ ONLY",
                                        .ping = "SELECT 1",
                                        .quote_open = '"',
                                        .quote_close = '"'};
  return d;
}

const std::vector<Engine>& engines() {
  static const std::vector<Engine> all = [] {
    std::vector<Engine> v;

    // SQLite: real files in a temp folder; a writer and query_only readers.
    Engine sqlite;
    sqlite.name = "sqlite";
    sqlite.configure = [](config::DatabaseConfig* db) {
      *db = base_config(config::DbType::kSqlite);
      db->name = "conformance";
      db->path = sqlite_folder();
      return std::vector<std::string>{};
    };
    sqlite.native_bool = false;        // no boolean type: BOOLEAN columns hold integers
    sqlite.has_session_state = false;  // (reset() only makes sure no transaction is open)
    sqlite.server_kill = false;        // no server
    sqlite.reports_backend_id = false;
    sqlite.types_ddl =
        "CREATE TABLE {t} (id INTEGER PRIMARY KEY, b BOOLEAN, i INTEGER, d REAL, tx TEXT, "
        "bl BLOB)";
    sqlite.key_ddl = "CREATE TABLE {t} (id INTEGER PRIMARY KEY)";
    sqlite.parent_ddl = "CREATE TABLE {t} (id INTEGER PRIMARY KEY)";
    sqlite.child_ddl =
        "CREATE TABLE {t} (id INTEGER PRIMARY KEY, pid INTEGER REFERENCES {p} (id) "
        "DEFERRABLE INITIALLY DEFERRED)";
    sqlite.series_sql =
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {n}) "
        "SELECT x, ? AS pad FROM c ORDER BY x";
    sqlite.long_sql =
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2000000000) "
        "SELECT count(*) FROM c";
    sqlite.rollback_mid_stream_closes = false;  // the statement is reset, then ROLLBACK
    sqlite.binary_as_text_sql = "SELECT CAST(? AS TEXT)";
    v.push_back(sqlite);

    // PostgreSQL through libpq, in the loop.
    Engine pg = pg_sql({});
    pg.name = "postgresql";
    pg.configure = [](config::DatabaseConfig* db) {
      *db = base_config(config::DbType::kPostgresql);
      return configure_pg(db);
    };
    v.push_back(pg);

    // MariaDB through unixODBC and MariaDB Connector/ODBC ("MariaDB Unicode").
    Engine maria;
    maria.name = "mariadb-odbc";
    maria.configure = [](config::DatabaseConfig* db) {
      *db = base_config(config::DbType::kMariadb);
      std::string password;
      auto missing = need({{"DBMGR_TEST_MARIADB_SOCKET", &db->host},
                           {"DBMGR_TEST_MARIADB_USER", &db->user},
                           {"DBMGR_TEST_MARIADB_PASSWORD", &password},
                           {"DBMGR_TEST_MARIADB_DB", &db->name}});
      db->password = config::Secret(password);
      db->driver = "MariaDB Unicode";
      return missing;
    };
    maria.native_bool = false;  // BOOLEAN is TINYINT(1)
    maria.echo = {{Tag::kBlob, "CAST(? AS BINARY)"}};  // a bare `?` is text to MariaDB
    maria.binary_as_text_sql = "SELECT ?";
    maria.deferred_constraints = false;  // InnoDB checks foreign keys at each statement
    maria.server_limits_columns = false; // 4097 columns reach dbmgrd's own limit
    maria.types_ddl =
        "CREATE TABLE {t} (id INT PRIMARY KEY, b BOOLEAN, i BIGINT, d DOUBLE, tx LONGTEXT, "
        "bl LONGBLOB) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";
    maria.key_ddl = "CREATE TABLE {t} (id INT PRIMARY KEY) ENGINE=InnoDB";
    maria.parent_ddl = "CREATE TABLE {t} (id INT PRIMARY KEY) ENGINE=InnoDB";
    maria.child_ddl =
        "CREATE TABLE {t} (id INT PRIMARY KEY, pid INT, FOREIGN KEY (pid) REFERENCES {p} (id)) "
        "ENGINE=InnoDB";
    maria.series_sql = "SELECT CAST(seq AS SIGNED) AS x, ? AS pad FROM seq_1_to_{n} ORDER BY seq";
    maria.long_sql = "SELECT SLEEP(10)";
    maria.backend_id_sql = "SELECT CONNECTION_ID()";
    maria.kill_sql = "KILL {id}";
    maria.session_alive_sql = "SELECT count(*) FROM information_schema.processlist WHERE id = {id}";
    maria.session_set = {"SET @conf_v = 'set in this session'",
                         "CREATE TEMPORARY TABLE conf_session_tmp (x INT)"};
    maria.session_probe = "SELECT @conf_v";
    maria.rollback_mid_stream_closes = false;  // OdbcConn closes the cursor and rolls back
    maria.session_value = Cell::text("set in this session");
    v.push_back(maria);

    // PostgreSQL through unixODBC and psqlODBC ("PostgreSQL Unicode"): the ODBC engine with a
    // second, unrelated driver. Options: bytea as binary, bool as SQL_BIT, a cursor that
    // fetches in pieces (UseDeclareFetch) instead of the whole result at once.
    Engine pgodbc = pg_sql({});
    pgodbc.name = "postgresql-odbc";
    pgodbc.configure = [](config::DatabaseConfig* db) {
      *db = base_config(config::DbType::kPostgresql);
      return configure_pg(db);
    };
    pgodbc.custom_plan = [](const config::DatabaseConfig& db, const DriverContext& ctx) {
      namespace odbc = dbmgr::daemon::odbc;
      auto conn_string = [&](std::string_view database) {
        std::string head = fmt::format(
            "DRIVER={{PostgreSQL Unicode}};Servername={};Port={};Database={};UID={};",
            odbc::escape_value(db.host), db.port, odbc::escape_value(database),
            odbc::escape_value(db.user));
        std::string tail = "ByteaAsLongVarBinary=1;BoolsAsChar=0;UseDeclareFetch=1;Fetch=256;";
        return odbc::ConnString{
            head + fmt::format("PWD={};", odbc::escape_value(db.password.reveal())) + tail,
            head + "PWD=***;" + tail};
      };
      dbmgr::daemon::OdbcParams p;
      p.flavor = dbmgr::daemon::OdbcParams::Flavor::kPostgres;
      p.dialect = &pg_odbc_dialect();
      p.connect = conn_string(db.name);
      p.maintenance = conn_string("postgres");
      p.dbname = db.name;
      p.max_frame_bytes = ctx.max_frame_bytes;
      uv_loop_t* loop = ctx.loop;
      std::vector<PoolPlan> plans;
      plans.push_back(PoolPlan{.role = PoolRole::kMain,
                               .label = db.name,
                               .settings = db.pool,
                               .factory = [loop, p] {
                                 return new dbmgr::daemon::OdbcConn(loop, p);
                               }});
      return plans;
    };
    pgodbc.reports_backend_id = false;  // OdbcConn learns the connection id on MariaDB only
    // psqlODBC leaves parameter types to the server: a bare `?` comes back as text (a blob as
    // its hex text), and one over 4,000 bytes fails ("Could not convert binary other than
    // LO type"); with a cast the server types it.
    pgodbc.echo = {{Tag::kNull, "CAST(? AS text)"},
                   {Tag::kBool, "CAST(? AS boolean)"},
                   {Tag::kInt64, "CAST(? AS bigint)"},
                   {Tag::kDouble, "CAST(? AS double precision)"},
                   {Tag::kText, "CAST(? AS text)"},
                   {Tag::kBlob, "CAST(? AS bytea)"}};  // OdbcConn learns the connection id on MariaDB only
    pgodbc.rollback_mid_stream_closes = false;  // OdbcConn closes the cursor and rolls back
    v.push_back(pgodbc);
    return v;
  }();
  return all;
}

// ---------------------------------------------------------------------------------------
// The loop, the listener and one engine's connections

struct Outcome {
  BackendConn* conn = nullptr;
  BackendOp op = BackendOp::kOpen;
  BackendResult r;
  Decoded frames;  // r.frames decoded
  bool ok() const { return r.status.is_ok(); }
  std::string error() const { return r.status.is_ok() ? "ok" : r.status.to_string(); }
};

class Probe final : public BackendListener {
 public:
  void on_backend_result(BackendConn* conn, BackendOp op, BackendResult&& result) override {
    if (in_call) ++inside_call;  // the completion contract: never inside the caller's call
    Outcome o;
    o.conn = conn;
    o.op = op;
    o.r = std::move(result);
    got.push_back(std::move(o));
    if (loop != nullptr) uv_stop(loop);  // back to the test (Fixture::turn_until)
    if (then) {  // the listener starts the next operation from inside the callback
      auto f = std::move(then);
      then = nullptr;
      in_call = true;
      f();
      in_call = false;
    }
  }
  uv_loop_t* loop = nullptr;
  bool in_call = false;
  int inside_call = 0;
  std::deque<Outcome> got;
  std::function<void()> then;
};

struct Exec {
  TxBegin begin = TxBegin::kNone;
  bool read_only = false;
  bool commit_after = false;
};

class Fixture {
 public:
  explicit Fixture(const Engine& e) : engine_(e) {
    REQUIRE(uv_loop_init(&loop_) == 0);
    REQUIRE(uv_timer_init(&loop_, &guard_) == 0);
    guard_.data = this;
    probe_.loop = &loop_;
    ctx_.loop = &loop_;
    ctx_.clock = &dbmgr::daemon::TimeSource::system();
    ctx_.max_frame_bytes = 16u << 20;
    auto missing = e.configure(&db_);
    if (!missing.empty()) {
      std::string names;
      for (auto& m : missing) names += (names.empty() ? "" : ", ") + m;
      FAIL("engine " << e.name << ": " << names
                     << " not set; start the servers with scripts/test-servers.sh and "
                        "`source /tmp/srv/servers.env`");
    }
    if (e.custom_plan) {
      plans_ = e.custom_plan(db_, ctx_);
    } else {
      auto r = dbmgr::daemon::driver_for(db_.type).plan(db_, ctx_);
      REQUIRE_MESSAGE(r.is_ok(), "plan(): " << r.status().to_string());
      plans_ = std::move(r.value());
    }
    REQUIRE(!plans_.empty());
    prefix_ = fmt::format("conf_{}_", ::getpid());
  }

  ~Fixture() {
    if (!tables_.empty() && !conns_.empty()) {  // best effort: leave the test database clean
      BackendConn* c = conns_.front();
      for (auto it = tables_.rbegin(); it != tables_.rend(); ++it) {
        if (c->state() != BackendConn::State::kIdle) break;
        exec_quiet(c, "DROP TABLE IF EXISTS " + *it);
      }
    }
    for (BackendConn* c : conns_) c->close();
    conns_.clear();
    uv_close(reinterpret_cast<uv_handle_t*>(&guard_), nullptr);
    // Connections finish closing on later turns (a worker job, libuv handles). The ODBC
    // threads of this loop stay until close_all(), which the daemon too calls last.
    auto deadline = std::chrono::steady_clock::now() + 10s;
    auto settle = [&] {
      while (uv_run(&loop_, UV_RUN_NOWAIT) != 0 && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(1ms);
      }
    };
    settle();
    dbmgr::daemon::blocking::close_all(&loop_);
    settle();
    int rc = uv_loop_close(&loop_);
    CHECK_MESSAGE(rc == 0, engine_.name << ": the loop still has handles or requests after "
                                           "every connection was closed");
  }

  Fixture(const Fixture&) = delete;
  Fixture& operator=(const Fixture&) = delete;

  const Engine& engine() const { return engine_; }
  uv_loop_t* loop() { return &loop_; }

  // A table name of this process.
  std::string table(std::string_view what) { return prefix_ + std::string(what); }

  // A new open connection of the pool a read-write (or read-only) session uses.
  BackendConn* connect(bool read_only = false) {
    const PoolPlan* plan = &plans_.front();
    if (read_only) {
      for (const PoolPlan& p : plans_) {
        if (p.role == PoolRole::kReader) plan = &p;
      }
    }
    BackendConn* c = plan->factory();
    REQUIRE(c != nullptr);
    conns_.push_back(c);
    c->set_listener(&probe_);
    CHECK(c->state() == BackendConn::State::kNew);
    Outcome o = run(c, BackendOp::kOpen, [c] { c->open(); });
    REQUIRE_MESSAGE(o.ok(), engine_.name << ": open failed: " << o.error());
    CHECK_FALSE(o.r.in_transaction);
    CHECK_FALSE(o.r.broken);
    return c;
  }

  // Runs the loop until `pred` holds or `timeout` passes; false on timeout.
  template <typename Pred>
  bool turn_until(Pred pred, std::chrono::milliseconds timeout) {
    timed_out_ = false;
    uv_timer_start(
        &guard_,
        [](uv_timer_t* t) {
          static_cast<Fixture*>(t->data)->timed_out_ = true;
          uv_stop(t->loop);
        },
        static_cast<std::uint64_t>(timeout.count()), 0);
    // A completion stops the loop (Probe), so a turn that delivers one does not go on to
    // wait in the poll phase for the guard.
    while (!pred() && !timed_out_) uv_run(&loop_, UV_RUN_ONCE);
    uv_timer_stop(&guard_);
    return pred();
  }

  // Starts an operation and waits for its completion, checking the completion contract, the
  // op reported and the state the connection is left in.
  Outcome run(BackendConn* c, BackendOp op, const std::function<void()>& start,
              std::chrono::milliseconds timeout = 15s) {
    REQUIRE(probe_.got.empty());
    probe_.in_call = true;
    start();
    probe_.in_call = false;
    CHECK_MESSAGE(probe_.got.empty(), engine_.name << ": completion contract: " << to_string(op)
                                                   << " completed inside the call that started it");
    bool done = turn_until([&] { return !probe_.got.empty(); }, timeout);
    REQUIRE_MESSAGE(done, engine_.name << ": no completion of " << to_string(op) << " within "
                                       << timeout.count() << " ms");
    CHECK(probe_.inside_call == 0);
    Outcome o = std::move(probe_.got.front());
    probe_.got.pop_front();
    CHECK(o.conn == c);
    CHECK(o.op == op);
    const bool paused = o.r.more && o.r.status.is_ok() && !o.r.broken;
    CHECK(c->state() == (paused ? BackendConn::State::kPaused : BackendConn::State::kIdle));
    if (!o.r.status.is_ok()) {
      CHECK_MESSAGE(o.r.frames.empty(), "frames beside an error: " << o.error());
      CHECK_FALSE(o.r.more);
    }
    return o;
  }

  // Executes `sql` (its text and parameters stay alive for the fixture's life, as a
  // stream's request must until the stream ends).
  Outcome exec(BackendConn* c, std::string sql, Params params = {}, Exec x = {},
               std::chrono::milliseconds timeout = 15s) {
    ExecRequest req = request(std::move(sql), std::move(params), x);
    Outcome o = run(c, BackendOp::kExecute, [c, &req] { c->execute(req); }, timeout);
    o.frames = decode_frames(o.r.frames, req.request_id, req.session_id);
    CHECK_MESSAGE(o.frames.problem.empty(), o.frames.problem);
    last_request_ = req.request_id;
    return o;
  }
  ExecRequest request(std::string sql, Params params, Exec x) {
    sql_.push_back(std::move(sql));
    params_.push_back(std::move(params));
    ExecRequest req;
    req.request_id = ++request_id_;
    req.session_id = kSession;
    req.sql = sql_.back();
    req.params = params_.back().list();
    req.begin = x.begin;
    req.read_only = x.read_only;
    req.commit_after = x.commit_after;
    req.client_label = "backend_conformance";
    return req;
  }
  // The next batch of a paused stream.
  Outcome resume(BackendConn* c) {
    Outcome o = run(c, BackendOp::kExecute, [c] { c->resume(); });
    o.frames = decode_frames(o.r.frames, last_request_, kSession);
    CHECK_MESSAGE(o.frames.problem.empty(), o.frames.problem);
    return o;
  }
  // Closes a connection of this fixture now (the owner's answer to `broken`).
  void close(BackendConn* c) {
    auto it = std::find(conns_.begin(), conns_.end(), c);
    REQUIRE(it != conns_.end());
    conns_.erase(it);
    c->close();
  }
  Outcome simple(BackendConn* c, BackendOp op) {
    Outcome o = simple_op(c, op);
    o.frames = decode_frames(o.r.frames, 0, 0);
    CHECK_MESSAGE(o.r.frames.empty(), to_string(op) << " left " << o.r.frames.size()
                                                    << " bytes of frames (execute only)");
    return o;
  }
  Outcome simple_op(BackendConn* c, BackendOp op) {
    return run(c, op, [c, op] {
      switch (op) {
        case BackendOp::kCommit: c->commit(); break;
        case BackendOp::kRollback: c->rollback(); break;
        case BackendOp::kPing: c->ping(); break;
        case BackendOp::kReset: c->reset(); break;
        default: FAIL("not a simple op"); break;
      }
    });
  }

  // Resumes a stream to its end, gathering every batch's frames into `o` (batches counts
  // the results).
  Outcome drain(BackendConn* c, Outcome o, int* batches = nullptr) {
    int n = 1;
    while (o.ok() && o.r.more) {
      Outcome next = resume(c);
      ++n;
      REQUIRE(n < 10000);
      for (auto rf : next.frames.rows_frames) {
        rf.first_row += o.frames.rows.size();
        o.frames.rows_frames.push_back(rf);
      }
      for (Row& r : next.frames.rows) o.frames.rows.push_back(std::move(r));
      o.frames.columns_frames += next.frames.columns_frames;
      o.frames.other_frames += next.frames.other_frames;
      if (next.frames.complete) o.frames.complete = next.frames.complete;
      o.r.status = next.r.status;
      o.r.more = next.r.more;
      o.r.in_transaction = next.r.in_transaction;
      o.r.broken = next.r.broken;
    }
    if (batches != nullptr) *batches = n;
    return o;
  }

  // A statement that must succeed (REQUIREd), in autocommit unless told; a stream is read to
  // its end.
  Outcome ok(BackendConn* c, std::string sql, Params params = {}, Exec x = {}) {
    std::string shown = sql.substr(0, 200);
    Outcome o = drain(c, exec(c, std::move(sql), std::move(params), x));
    REQUIRE_MESSAGE(o.ok(), engine_.name << ": `" << shown << "` failed: " << o.error());
    REQUIRE_MESSAGE(o.frames.complete.has_value(), engine_.name << ": `" << shown << "`: no kComplete ("
                                                     << o.frames.rows.size() << " rows, more "
                                                     << o.r.more << ")");
    return o;
  }
  // The rows of a query that must succeed.
  std::vector<Row> rows(BackendConn* c, std::string sql, Params params = {}) {
    Outcome o = ok(c, std::move(sql), std::move(params));
    CHECK_FALSE(o.r.more);
    return std::move(o.frames.rows);
  }
  // Creates a table of this process from the engine's DDL (dropped first and at the end).
  std::string create(BackendConn* c, std::string_view what, const std::string& ddl,
                     const std::string& parent = {}) {
    std::string t = table(what);
    exec_quiet(c, "DROP TABLE IF EXISTS " + t);
    ok(c, sub(sub(ddl, "{t}", t), "{p}", parent));
    tables_.push_back(t);
    return t;
  }
  void exec_quiet(BackendConn* c, std::string sql) {
    ExecRequest req = request(std::move(sql), {}, {});
    probe_.in_call = true;
    c->execute(req);
    probe_.in_call = false;
    turn_until([&] { return !probe_.got.empty(); }, 10s);
    probe_.got.clear();
  }

  Probe& probe() { return probe_; }
  static constexpr std::uint32_t kSession = 7;

 private:
  const Engine& engine_;
  uv_loop_t loop_{};
  uv_timer_t guard_{};
  bool timed_out_ = false;
  DriverContext ctx_;
  config::DatabaseConfig db_;
  std::vector<PoolPlan> plans_;
  std::vector<BackendConn*> conns_;
  Probe probe_;
  std::deque<std::string> sql_;
  std::deque<Params> params_;
  std::uint32_t request_id_ = 0;
  std::uint32_t last_request_ = 0;
  std::string prefix_;
  std::vector<std::string> tables_;
};

// Runs `body` once per engine, each in its own subcase and fixture. A REQUIRE that fails in
// one engine ends that engine's run only (the failure is recorded by doctest all the same).
void each_engine(const std::function<void(Fixture&)>& body) {
  for (const Engine& e : engines()) {
    SUBCASE(e.name.c_str()) {
      INFO("engine: " << e.name);
      try {
        Fixture f(e);
        body(f);
      } catch (const std::exception& ex) {
        FAIL_CHECK(e.name << ": exception: " << ex.what());
      } catch (...) {
        // doctest's own REQUIRE failure: already reported.
      }
    }
  }
}

// A value that must be one row of one column.
Cell single(const std::vector<Row>& rows) {
  REQUIRE(rows.size() == 1);
  REQUIRE(rows[0].size() == 1);
  return rows[0][0];
}

// The ids of `sql`'s rows (first column, integers).
std::vector<std::int64_t> ids(Fixture& f, BackendConn* c, const std::string& sql) {
  std::vector<std::int64_t> out;
  for (const Row& r : f.rows(c, sql)) {
    REQUIRE(!r.empty());
    CHECK(r[0].tag == Tag::kInt64);
    out.push_back(r[0].i);
  }
  return out;
}

// Asserts that `o` failed with `category` and a SQLSTATE of `sqlstate_class`, with the
// connection left out of any transaction and not broken.
void check_error(const Outcome& o, Cat category, std::string_view sqlstate_class) {
  REQUIRE_MESSAGE(!o.ok(), "expected an error of category " << proto::to_string(category));
  CHECK_MESSAGE(o.r.status.category() == category,
                "category " << proto::to_string(o.r.status.category()) << ", expected "
                            << proto::to_string(category) << ": " << o.error());
  CHECK_MESSAGE(o.r.status.sqlstate().rfind(sqlstate_class, 0) == 0,
                "SQLSTATE '" << o.r.status.sqlstate() << "', expected class " << sqlstate_class
                             << ": " << o.error());
  CHECK_FALSE(o.r.status.message().empty());
  CHECK_FALSE(o.r.in_transaction);
  CHECK_FALSE(o.r.broken);
}

// The connection still works: a statement in a new transaction and its commit.
void check_usable(Fixture& f, BackendConn* c) {
  Outcome o = f.exec(c, "SELECT 42", {}, {.begin = TxBegin::kBegin});
  REQUIRE_MESSAGE(o.ok(), "the connection does not work after the error: " << o.error());
  CHECK(o.r.in_transaction);
  REQUIRE(o.frames.rows.size() == 1);
  CHECK(o.frames.rows[0][0] == Cell::int64(42));
  Outcome k = f.simple(c, BackendOp::kCommit);
  CHECK_MESSAGE(k.ok(), k.error());
  CHECK_FALSE(k.r.in_transaction);
}

std::string pattern_text(std::size_t n) {
  std::string s;
  s.reserve(n);
  const std::string_view unit = "abcdefghijklmnopqrstuvwxyz0123456789-é-";
  while (s.size() + unit.size() <= n) s += unit;
  while (s.size() < n) s += 'z';
  return s;
}

std::string pattern_blob(std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 7 + i / 256) & 0xff);
  return s;
}

}  // namespace

// ---------------------------------------------------------------------------------------
// The cases

TEST_CASE("conformance: types round trip through parameters and results") {
  each_engine([](Fixture& f) {
    const Engine& e = f.engine();
    BackendConn* c = f.connect();
    const std::string t = f.create(c, "types", e.types_ddl);
    const std::int64_t kMin = std::numeric_limits<std::int64_t>::min();
    const std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
    const std::string unicode = "h\xc3\xa9llo w\xc3\xb6rld \xe2\x9c\x93 \xe6\x97\xa5\xe6\x9c\xac "
                                "\xf0\x9f\x8e\x89";  // héllo wörld ✓ 日本 🎉
    const std::string zeros("\x00\x01\x00\xff\x00", 5);
    const std::string big_text = pattern_text(3u << 20);  // above kMaxRowBatchBytes
    const std::string big_blob = pattern_blob(3u << 20);
    auto flag = [&](bool v) { return e.native_bool ? Cell::boolean(v) : Cell::int64(v ? 1 : 0); };

    struct Case {
      std::int64_t id;
      Cell b, i, d, tx, bl;
    };
    const std::vector<Case> cases = {
        {1, Cell::null(), Cell::null(), Cell::null(), Cell::null(), Cell::null()},
        {2, Cell::boolean(true), Cell::int64(kMin), Cell::real(3.141592653589793),
         Cell::text(unicode), Cell::blob(zeros)},
        {3, Cell::boolean(false), Cell::int64(kMax), Cell::real(-1.0e300), Cell::text(""),
         Cell::blob("")},
        {4, Cell::boolean(true), Cell::int64(0), Cell::real(0.1), Cell::text(big_text),
         Cell::blob(big_blob)},
    };
    const std::string insert = "INSERT INTO " + t + " (id, b, i, d, tx, bl) VALUES (?, ?, ?, ?, ?, ?)";
    for (const Case& k : cases) {
      CAPTURE(k.id);
      Outcome o = f.ok(c, insert, {Cell::int64(k.id), k.b, k.i, k.d, k.tx, k.bl});
      CHECK(o.frames.complete->affected_rows == 1);
      CHECK(o.frames.columns_frames == 0);
      CHECK(o.frames.rows.empty());
    }

    int batches = 0;
    Outcome o = f.drain(c, f.exec(c, "SELECT id, b, i, d, tx, bl FROM " + t + " ORDER BY id"),
                        &batches);
    REQUIRE_MESSAGE(o.ok(), o.error());
    REQUIRE(o.frames.complete.has_value());
    CHECK(batches >= 2);  // the 3 MB row is a batch of its own
    CHECK(o.frames.columns_frames == 1);
    CHECK(o.frames.column_names == std::vector<std::string>{"id", "b", "i", "d", "tx", "bl"});
    REQUIRE(o.frames.rows.size() == cases.size());
    CHECK(o.frames.complete->affected_rows == static_cast<std::int64_t>(cases.size()));
    for (std::size_t r = 0; r < cases.size(); ++r) {
      const Case& k = cases[r];
      const Row& row = o.frames.rows[r];
      CAPTURE(k.id);
      REQUIRE(row.size() == 6);
      CHECK(row[0] == Cell::int64(k.id));
      CHECK(row[1] == (k.b.tag == Tag::kNull ? k.b : flag(k.b.b)));
      CHECK(row[2] == k.i);
      CHECK(row[3] == k.d);
      CHECK(row[4] == k.tx);
      CHECK(row[5] == k.bl);
    }
    // The 3 MB row is larger than a batch: it travels alone; the others share frames within
    // the limit.
    for (const auto& rf : o.frames.rows_frames) {
      const bool has_big = rf.first_row <= 3 && 3 < rf.first_row + rf.rows;
      if (has_big) CHECK(rf.rows == 1);
      else CHECK(rf.payload <= proto::kMaxRowBatchBytes);
    }

    // Through parameters straight back into the result (no table, no declared type).
    auto P = [&](Tag tag) { return e.param(tag); };
    Outcome p = f.ok(c, fmt::format("SELECT {}, {}, {}, {}, {}, {}, {}, {}", P(Tag::kInt64),
                                    P(Tag::kDouble), P(Tag::kText), P(Tag::kBlob), P(Tag::kInt64),
                                    P(Tag::kText), P(Tag::kNull), P(Tag::kBool)),
                     {Cell::int64(kMin), Cell::real(-2.5e-300), Cell::text(unicode),
                      Cell::blob(zeros), Cell::int64(kMax), Cell::text(""), Cell::null(),
                      Cell::boolean(true)});
    REQUIRE(p.frames.rows.size() == 1);
    REQUIRE(p.frames.rows[0].size() == 8);
    CHECK(p.frames.rows[0][0] == Cell::int64(kMin));
    CHECK(p.frames.rows[0][1] == Cell::real(-2.5e-300));
    CHECK(p.frames.rows[0][2] == Cell::text(unicode));
    CHECK(p.frames.rows[0][3] == Cell::blob(zeros));
    CHECK(p.frames.rows[0][4] == Cell::int64(kMax));
    CHECK(p.frames.rows[0][5] == Cell::text(""));
    CHECK(p.frames.rows[0][6] == Cell::null());
    CHECK(p.frames.rows[0][7] == flag(true));
    // Bytes that are not UTF-8 in a character-typed result: the protocol's text is UTF-8, so
    // they go out as a blob (or the server refuses to make such text).
    Outcome bt = f.exec(c, e.binary_as_text_sql, {Cell::blob(zeros)});
    if (e.binary_text_refused) {
      check_error(bt, Cat::kData, "22");
    } else {
      REQUIRE_MESSAGE(bt.ok(), bt.error());
      REQUIRE(bt.frames.rows.size() == 1);
      CHECK(bt.frames.rows[0].at(0) == Cell::blob(zeros));
    }
    // A bool parameter compared on the server.
    Outcome q = f.ok(c, fmt::format("SELECT id FROM {} WHERE b = {} AND i = {}", t, P(Tag::kBool),
                                    P(Tag::kInt64)),
                     {Cell::boolean(true), Cell::int64(kMin)});
    std::vector<std::int64_t> got;
    for (const Row& r : q.frames.rows) got.push_back(r.at(0).i);
    CHECK(got == std::vector<std::int64_t>{2});
    // Large values as parameters come back whole.
    Outcome big = f.ok(c, fmt::format("SELECT {}, {}", P(Tag::kText), P(Tag::kBlob)),
                       {Cell::text(big_text), Cell::blob(big_blob)});
    REQUIRE(big.frames.rows.size() == 1);
    CHECK(big.frames.rows[0].at(0) == Cell::text(big_text));
    CHECK(big.frames.rows[0].at(1) == Cell::blob(big_blob));
  });
}

TEST_CASE("conformance: a long result streams in batches with backpressure") {
  each_engine([](Fixture& f) {
    const Engine& e = f.engine();
    BackendConn* c = f.connect();
    const int n = 20000;
    const std::string pad(100, 'p');
    const std::string sql = sub(e.series_sql, "{n}", std::to_string(n));
    Outcome o = f.exec(c, sql, {Cell::text(pad)});
    REQUIRE_MESSAGE(o.ok(), o.error());
    CHECK(o.frames.columns_frames == 1);
    std::int64_t next = 1;
    int batches = 0;
    bool paused_checked = false;
    for (;;) {
      ++batches;
      REQUIRE(batches < 1000);
      const Decoded& d = o.frames;
      if (batches > 1) CHECK(d.columns_frames == 0);
      std::size_t payload = 0;
      for (const auto& rf : d.rows_frames) {
        CHECK(rf.rows > 0);
        CHECK_MESSAGE(rf.payload <= proto::kMaxRowBatchBytes,
                      "a kRows frame of " << rf.payload << " bytes");
        payload += rf.payload;
      }
      for (const Row& r : d.rows) {
        REQUIRE(r.size() == 2);
        REQUIRE_MESSAGE(r[0] == Cell::int64(next), "row " << next << " out of order: " << r[0]);
        CHECK(r[1] == Cell::text(pad));
        ++next;
      }
      if (!o.r.more) {
        REQUIRE(d.complete.has_value());
        CHECK(d.complete->affected_rows == n);
        CHECK_FALSE(d.complete->in_transaction);
        break;
      }
      CHECK_FALSE(d.complete.has_value());
      CHECK_FALSE(o.r.in_transaction);  // an autocommit statement, paused
      CHECK(c->state() == BackendConn::State::kPaused);
      // A batch ends only before a row that would not fit: it is (nearly) full.
      CHECK_MESSAGE(payload + 200 > proto::kMaxRowBatchBytes,
                    "a batch of " << payload << " bytes ended with rows left");
      if (!paused_checked) {  // backpressure: nothing arrives while the owner does not resume
        paused_checked = true;
        f.turn_until([&] { return !f.probe().got.empty(); }, 150ms);
        CHECK(f.probe().got.empty());
        CHECK(c->state() == BackendConn::State::kPaused);
      }
      o = f.resume(c);
      REQUIRE_MESSAGE(o.ok(), o.error());
    }
    CHECK(next == n + 1);
    CHECK(batches >= 5);  // 20,000 rows of ~115 bytes: at least 9 batches of 256 KiB
    check_usable(f, c);
  });
}

TEST_CASE("conformance: rollback in the middle of a paused stream ends it") {
  each_engine([](Fixture& f) {
    const Engine& e = f.engine();
    BackendConn* c = f.connect();
    BackendConn* observer = f.connect(/*read_only=*/true);
    const std::string t = f.create(c, "stream_tx", e.key_ddl);
    const Cell server_id = e.server_kill ? single(f.rows(c, e.backend_id_sql)) : Cell::int64(0);
    Outcome ins = f.ok(c, "INSERT INTO " + t + " (id) VALUES (1)", {}, {.begin = TxBegin::kBegin});
    CHECK(ins.r.in_transaction);
    Outcome o = f.exec(c, sub(e.series_sql, "{n}", "20000"), {Cell::text(std::string(100, 'q'))});
    REQUIRE_MESSAGE(o.ok(), o.error());
    REQUIRE(o.r.more);
    CHECK(o.r.in_transaction);
    CHECK_FALSE(o.frames.rows.empty());
    Outcome rb = f.simple(c, BackendOp::kRollback);
    CHECK_MESSAGE(rb.ok(), rb.error());
    CHECK_FALSE(rb.r.in_transaction);
    CHECK_FALSE(rb.r.more);
    CHECK(rb.frames.rows.empty());
    if (e.rollback_mid_stream_closes) {
      // The owner closes it; closing ends the transaction on the server.
      CHECK(rb.r.broken);
      f.close(c);
      // The server's session ends with the close (it held the transaction and its locks).
      const std::string alive = sub(e.session_alive_sql, "{id}", std::to_string(server_id.i));
      bool gone = false;
      for (int i = 0; i < 40 && !gone; ++i) {
        gone = single(f.rows(observer, alive)) == Cell::int64(0);
        if (!gone) f.turn_until([] { return false; }, 50ms);
      }
      CHECK_MESSAGE(gone, "server session " << server_id.i << " still there 2 s after close()");
      CHECK(ids(f, observer, "SELECT id FROM " + t).empty());
      c = f.connect();
      CHECK(ids(f, c, "SELECT id FROM " + t).empty());
      return;
    }
    CHECK_FALSE(rb.r.broken);
    // Nothing of the dropped stream follows: the next statement's frames are its own.
    Outcome next = f.exec(c, "SELECT 7");
    REQUIRE_MESSAGE(next.ok(), next.error());
    REQUIRE(next.frames.rows.size() == 1);
    CHECK(next.frames.rows[0].at(0) == Cell::int64(7));
    CHECK(next.frames.complete.has_value());
    CHECK(ids(f, observer, "SELECT id FROM " + t).empty());
    CHECK(ids(f, c, "SELECT id FROM " + t).empty());
  });
}

TEST_CASE("conformance: more than kMaxColumns columns is refused with an error") {
  each_engine([](Fixture& f) {
    const Engine& e = f.engine();
    BackendConn* c = f.connect();
    std::string sql = "SELECT 1 AS c1";
    for (std::uint32_t i = 2; i <= proto::kMaxColumns + 1; ++i) sql += fmt::format(", {} AS c{}", i % 10, i);
    Outcome o = f.exec(c, sql, {}, {.begin = TxBegin::kBegin});
    REQUIRE_MESSAGE(!o.ok(), "a result of " << proto::kMaxColumns + 1 << " columns was accepted");
    // A program limit (class 54, category resources), whoever's limit it is.
    INFO("refused by " << std::string(e.server_limits_columns ? "the server" : "dbmgrd") << ": "
                       << o.error());
    check_error(o, Cat::kResources, "54");
    // Exactly kMaxColumns is not refused by dbmgrd (the server may have a lower limit).
    if (!e.server_limits_columns) {
      std::string fits = "SELECT 1 AS c1";
      for (std::uint32_t i = 2; i <= proto::kMaxColumns; ++i) fits += fmt::format(", {} AS c{}", i % 10, i);
      Outcome w = f.exec(c, fits);
      REQUIRE_MESSAGE(w.ok(), w.error());
      REQUIRE(w.frames.column_names.size() == proto::kMaxColumns);
      REQUIRE(w.frames.rows.size() == 1);
      CHECK(w.frames.rows[0].size() == proto::kMaxColumns);
    }
    check_usable(f, c);
  });
}

TEST_CASE("conformance: errors carry SQLSTATE and category, and the connection stays usable") {
  each_engine([](Fixture& f) {
    const Engine& e = f.engine();
    BackendConn* c = f.connect();
    const std::string t = f.create(c, "errors", e.key_ddl);
    f.ok(c, "INSERT INTO " + t + " (id) VALUES (1)");

    SUBCASE("unique violation") {
      Outcome o = f.exec(c, "INSERT INTO " + t + " (id) VALUES (1)", {}, {.begin = TxBegin::kBegin});
      check_error(o, Cat::kConstraint, "23");
    }
    SUBCASE("syntax error") {
      Outcome o = f.exec(c, "SELEC 1 FROM " + t, {}, {.begin = TxBegin::kBegin});
      check_error(o, Cat::kSyntax, "42");
    }
    SUBCASE("unknown table") {
      Outcome o = f.exec(c, "SELECT * FROM " + f.table("no_such_table"), {}, {.begin = TxBegin::kBegin});
      check_error(o, Cat::kSyntax, "42");
    }
    SUBCASE("an error later in a transaction rolls back its earlier statements") {
      f.ok(c, "INSERT INTO " + t + " (id) VALUES (2)", {}, {.begin = TxBegin::kBegin});
      Outcome o = f.exec(c, "INSERT INTO " + t + " (id) VALUES (1)");
      check_error(o, Cat::kConstraint, "23");
      CHECK(ids(f, c, "SELECT id FROM " + t + " ORDER BY id") == std::vector<std::int64_t>{1});
    }
    check_usable(f, c);
    // And in autocommit.
    Outcome a = f.exec(c, "SELECT 5");
    REQUIRE_MESSAGE(a.ok(), a.error());
    CHECK_FALSE(a.r.in_transaction);
  });
}

TEST_CASE("conformance: commit and rollback, seen from a second connection") {
  each_engine([](Fixture& f) {
    const Engine& e = f.engine();
    BackendConn* c = f.connect();
    BackendConn* observer = f.connect(/*read_only=*/true);
    const std::string t = f.create(c, "tx", e.key_ddl);
    const std::string all = "SELECT id FROM " + t + " ORDER BY id";

    Outcome a = f.ok(c, "INSERT INTO " + t + " (id) VALUES (1)", {}, {.begin = TxBegin::kBegin});
    CHECK(a.r.in_transaction);
    CHECK(a.frames.complete->in_transaction);
    Outcome rb = f.simple(c, BackendOp::kRollback);
    CHECK_MESSAGE(rb.ok(), rb.error());
    CHECK_FALSE(rb.r.in_transaction);
    CHECK(ids(f, observer, all).empty());

    Outcome b = f.ok(c, "INSERT INTO " + t + " (id) VALUES (2)", {}, {.begin = TxBegin::kBegin});
    CHECK(b.r.in_transaction);
    CHECK(ids(f, observer, all).empty());  // not yet committed
    Outcome cm = f.simple(c, BackendOp::kCommit);
    CHECK_MESSAGE(cm.ok(), cm.error());
    CHECK_FALSE(cm.r.in_transaction);
    CHECK(ids(f, observer, all) == std::vector<std::int64_t>{2});

    // A one-shot (commit_after) commits by itself.
    Outcome one = f.ok(c, "INSERT INTO " + t + " (id) VALUES (3)", {}, {.commit_after = true});
    CHECK_FALSE(one.r.in_transaction);
    CHECK(ids(f, observer, all) == std::vector<std::int64_t>{2, 3});
  });
}

TEST_CASE("conformance: a failed commit reports an error and its data is absent") {
  each_engine([](Fixture& f) {
    const Engine& e = f.engine();
    BackendConn* c = f.connect();
    BackendConn* observer = f.connect(/*read_only=*/true);
    const std::string parent = f.create(c, "parent", e.parent_ddl);
    const std::string child = f.create(c, "child", e.child_ddl, parent);
    const std::string ins = "INSERT INTO " + child + " (id, pid) VALUES (1, 999)";
    if (e.deferred_constraints) {
      Outcome o = f.ok(c, ins, {}, {.begin = TxBegin::kBegin});  // checked at COMMIT
      CHECK(o.r.in_transaction);
      Outcome cm = f.simple(c, BackendOp::kCommit);
      check_error(cm, Cat::kConstraint, "23");
    } else {
      // The engine checks at once: the statement fails and its transaction is rolled back.
      Outcome o = f.exec(c, ins, {}, {.begin = TxBegin::kBegin});
      check_error(o, Cat::kConstraint, "23");
      Outcome cm = f.simple(c, BackendOp::kCommit);  // nothing left to commit
      CHECK_MESSAGE(cm.ok(), cm.error());
      CHECK_FALSE(cm.r.in_transaction);
    }
    CHECK(ids(f, observer, "SELECT id FROM " + child).empty());
    CHECK(ids(f, c, "SELECT id FROM " + child).empty());
    check_usable(f, c);
  });
}

TEST_CASE("conformance: reset() on return undoes session state and open transactions") {
  each_engine([](Fixture& f) {
    const Engine& e = f.engine();
    BackendConn* c = f.connect();
    BackendConn* observer = f.connect(/*read_only=*/true);
    const std::string t = f.create(c, "reset", e.key_ddl);

    // A transaction left open is rolled back by reset().
    f.ok(c, "INSERT INTO " + t + " (id) VALUES (1)", {}, {.begin = TxBegin::kBegin});
    Outcome r1 = f.simple(c, BackendOp::kReset);
    REQUIRE_MESSAGE(r1.ok(), r1.error());
    CHECK_FALSE(r1.r.in_transaction);
    CHECK_FALSE(r1.r.broken);
    CHECK(ids(f, observer, "SELECT id FROM " + t).empty());
    CHECK(ids(f, c, "SELECT id FROM " + t).empty());

    if (e.has_session_state) {
      const Cell before = single(f.rows(c, e.session_probe));
      CHECK_FALSE(before == e.session_value);
      for (const std::string& s : e.session_set) f.ok(c, s);
      CHECK(single(f.rows(c, e.session_probe)) == e.session_value);
      CHECK(ids(f, c, "SELECT count(*) FROM conf_session_tmp") == std::vector<std::int64_t>{0});
      CHECK_MESSAGE(c->needs_reset(), "session state was changed but needs_reset() is false");
      Outcome r2 = f.simple(c, BackendOp::kReset);
      REQUIRE_MESSAGE(r2.ok(), r2.error());
      CHECK_FALSE(r2.r.broken);
      CHECK_FALSE(c->needs_reset());
      CHECK(single(f.rows(c, e.session_probe)) == before);
      Outcome gone = f.exec(c, "SELECT count(*) FROM conf_session_tmp");
      check_error(gone, Cat::kSyntax, "42");
    } else {
      CHECK_FALSE(c->needs_reset());
    }
    check_usable(f, c);
  });
}

TEST_CASE("conformance: cancel() interrupts a long statement") {
  each_engine([](Fixture& f) {
    const Engine& e = f.engine();
    BackendConn* c = f.connect();
    ExecRequest req = f.request(e.long_sql, {}, {.begin = TxBegin::kBegin});
    auto& probe = f.probe();
    const auto t0 = std::chrono::steady_clock::now();
    probe.in_call = true;
    c->execute(req);
    probe.in_call = false;
    CHECK(probe.got.empty());
    // Let the statement reach the server, then cancel it.
    CHECK_FALSE(f.turn_until([&] { return !probe.got.empty(); }, 300ms));
    CHECK(c->state() == BackendConn::State::kBusy);
    probe.in_call = true;
    c->cancel();
    probe.in_call = false;
    CHECK_MESSAGE(probe.got.empty(), "cancel() completed the statement inside the call");
    CHECK(c->state() == BackendConn::State::kBusy);
    const bool done = f.turn_until([&] { return !probe.got.empty(); }, 15s);
    REQUIRE_MESSAGE(done, "the cancelled statement did not complete");
    const auto elapsed = std::chrono::steady_clock::now() - t0;
    Outcome o = std::move(probe.got.front());
    probe.got.pop_front();
    CHECK(o.op == BackendOp::kExecute);
    if (e.supports_cancel) {
      CHECK_MESSAGE(elapsed < 5s, "the statement ran "
                                      << std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count()
                                      << " ms although cancelled after 300 ms");
      REQUIRE_MESSAGE(!o.ok(), "the cancelled statement succeeded");
      check_error(o, Cat::kCancelled, "57014");
    }
    CHECK(c->state() == BackendConn::State::kIdle);
    check_usable(f, c);
  });
}

TEST_CASE("conformance: a read-only transaction refuses writes") {
  each_engine([](Fixture& f) {
    const Engine& e = f.engine();
    BackendConn* writer = f.connect();
    const std::string t = f.create(writer, "readonly", e.key_ddl);
    BackendConn* c = f.connect(/*read_only=*/true);
    const Exec ro{.begin = TxBegin::kBegin, .read_only = true};
    // Reading works.
    Outcome r = f.exec(c, "SELECT count(*) FROM " + t, {}, ro);
    REQUIRE_MESSAGE(r.ok(), r.error());
    CHECK(r.r.in_transaction);
    CHECK(f.simple(c, BackendOp::kCommit).ok());
    // Writing does not.
    Outcome w = f.exec(c, "INSERT INTO " + t + " (id) VALUES (1)", {}, ro);
    check_error(w, Cat::kReadOnly, "25006");
    CHECK(ids(f, writer, "SELECT id FROM " + t).empty());
    // The read-only connection still reads.
    Outcome again = f.exec(c, "SELECT count(*) FROM " + t, {}, ro);
    REQUIRE_MESSAGE(again.ok(), again.error());
    REQUIRE(again.frames.rows.size() == 1);
    CHECK(again.frames.rows[0].at(0) == Cell::int64(0));
    CHECK(f.simple(c, BackendOp::kRollback).ok());
  });
}

TEST_CASE("conformance: ping after the server ended the connection reports it broken") {
  each_engine([](Fixture& f) {
    const Engine& e = f.engine();
    BackendConn* victim = f.connect();
    Outcome p0 = f.simple(victim, BackendOp::kPing);
    REQUIRE_MESSAGE(p0.ok(), p0.error());
    CHECK_FALSE(p0.r.broken);
    if (!e.server_kill) {
      CHECK(f.simple(victim, BackendOp::kPing).ok());
      return;
    }
    BackendConn* killer = f.connect();
    const Cell id = single(f.rows(victim, e.backend_id_sql));
    REQUIRE(id.tag == Tag::kInt64);
    if (e.reports_backend_id) CHECK(victim->backend_id() == id.i);
    f.ok(killer, sub(e.kill_sql, "{id}", std::to_string(id.i)));
    f.turn_until([] { return false; }, 100ms);  // the server closes the socket
    Outcome p = f.run(victim, BackendOp::kPing, [victim] { victim->ping(); }, 5s);
    CHECK_MESSAGE(!p.ok(), "ping succeeded on a connection the server ended");
    CHECK(p.r.broken);
    CHECK(p.r.status.category() == Cat::kConnection);
    CHECK_FALSE(p.r.in_transaction);
    // Another operation on it fails the same way, also on a later loop turn.
    Outcome x = f.exec(victim, "SELECT 1", {}, {}, 5s);
    CHECK_FALSE(x.ok());
    CHECK(x.r.broken);
    // The killer's connection is unaffected.
    check_usable(f, killer);
  });
}

TEST_CASE("conformance: completion contract, and results owned by the listener") {
  each_engine([](Fixture& f) {
    BackendConn* c = f.connect();
    auto& probe = f.probe();
    // The listener starts the next statement from inside the completion of the first; the
    // first's result is the listener's own and stays intact while the connection works on.
    ExecRequest first = f.request("SELECT ?", {Cell::text("first")}, {});
    ExecRequest second = f.request("SELECT ?", {Cell::text("second")}, {});
    probe.then = [c, &second] { c->execute(second); };
    probe.in_call = true;
    c->execute(first);
    probe.in_call = false;
    CHECK(probe.got.empty());
    REQUIRE(f.turn_until([&] { return probe.got.size() == 2; }, 10s));
    CHECK(probe.inside_call == 0);
    Decoded a = decode_frames(probe.got[0].r.frames, first.request_id, Fixture::kSession);
    Decoded b = decode_frames(probe.got[1].r.frames, second.request_id, Fixture::kSession);
    CHECK_MESSAGE(a.problem.empty(), a.problem);
    CHECK_MESSAGE(b.problem.empty(), b.problem);
    REQUIRE(a.rows.size() == 1);
    REQUIRE(b.rows.size() == 1);
    CHECK(a.rows[0].at(0) == Cell::text("first"));
    CHECK(b.rows[0].at(0) == Cell::text("second"));
    probe.got.clear();
    // An error found when the statement starts (parameters that do not fit its placeholders)
    // is delivered on a later turn as well, alike on every engine, and ends the transaction.
    Outcome o = f.exec(c, "SELECT ?", {});
    check_error(o, Cat::kInvalidRequest, "07");
    f.ok(c, "SELECT 1", {}, {.begin = TxBegin::kBegin});
    Outcome two = f.exec(c, "SELECT ?", {Cell::int64(1), Cell::int64(2)});
    check_error(two, Cat::kInvalidRequest, "07");
    check_usable(f, c);
  });
}
