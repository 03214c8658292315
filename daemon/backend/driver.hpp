// A Driver describes one engine to the rest of the daemon: which pools an engine of it has
// and how their connections are made, how transactions begin, and the dialect facts that
// Session, Pool, Engine and the admin code would otherwise have to know by engine name.
// Nothing outside daemon/backend/ names an engine; it asks the Driver of the database's type
// (driver_for()).
//
// One folder per engine implements a Driver and its BackendConn: backend/sqlite/,
// backend/postgres/, backend/odbc/ (MariaDB/MySQL and MSSQL through unixODBC).
//
// Threading: drivers are immutable singletons; every method is const and may be called from
// any thread (the loop thread in practice).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <uv.h>

#include "backend/backend.hpp"
#include "clock.hpp"
#include "dbmgr/config/config.hpp"
#include "status.hpp"

namespace dbmgr::daemon {

// What a pool of an engine is for.
enum class PoolRole : std::uint8_t {
  kMain,    // the one pool of a server engine: every session
  kWriter,  // SQLite: the one connection read-write transactions queue for
  kReader,  // SQLite: read-only sessions and one-shots that only read
};
std::string_view to_string(PoolRole r);  // "main", "writer", "reader"

// How SQL text is lexed (sql_scan.hpp): which quotes and comments are opaque.
enum class SqlLexing : std::uint8_t {
  kSqlite,    // 'str', "ident", `ident`, [ident], -- and /* */ (not nested)
  kPostgres,  // 'str', E'str', "ident", $tag$...$tag$, -- and nested /* */
  kMysql,     // 'str' and "str" with backslash escapes, `ident`, --, # and /* */
  kMssql,     // 'str', "ident", [ident], -- and nested /* */
};

// The dialect facts of one engine.
struct Dialect {
  SqlLexing lexing = SqlLexing::kSqlite;
  bool native_question_marks = true;  // `?` placeholders reach the driver as they are
  std::string_view begin_read_write;  // how a read-write transaction begins
  std::string_view begin_read_only;   // ... and a read-only one
  std::string_view ping = "SELECT 1";
  char quote_open = '"';   // identifier quoting
  char quote_close = '"';
  // `name` quoted as an identifier (the closing quote doubled inside).
  std::string quote_ident(std::string_view name) const;
};

// What a driver needs to make connections.
struct DriverContext {
  uv_loop_t* loop = nullptr;
  const TimeSource* clock = nullptr;
  std::uint32_t max_frame_bytes = 16u << 20;
  bool create_if_missing = false;  // the prefix policy lets the database be created
};

// One pool of an engine: what it is for, its settings and how it makes a connection.
struct PoolPlan {
  PoolRole role = PoolRole::kMain;
  std::string label;  // for logs and dbmgrctl: "app", "app (writer)"
  config::PoolSettings settings;
  std::function<BackendConn*()> factory;
};

class Driver {
 public:
  virtual ~Driver() = default;

  // The driver's name for people and metrics: "sqlite", "postgresql", "odbc".
  virtual std::string_view name() const = 0;
  virtual const Dialect& dialect() const = 0;

  // The pools of an engine for `db` (name resolved), first the one read-write sessions use;
  // a plan with a kReader pool sends read-only sessions there. An error when the database
  // cannot be served (a bad path, a file that cannot be created).
  virtual Result<std::vector<PoolPlan>> plan(const config::DatabaseConfig& db,
                                             const DriverContext& ctx) const = 0;
  // The pool settings of each planned pool after a reload changed `s` (same order as plan()).
  virtual std::vector<config::PoolSettings> settings(const config::DatabaseConfig& db,
                                                     const config::PoolSettings& s) const;

  // Whether a session transaction begins with the dialect's BEGIN (always, by default), and
  // whether a one-shot runs inside BEGIN ... COMMIT: by default only a read-only one (a
  // single statement in autocommit is its own transaction).
  virtual bool one_shot_begins(bool read_only, std::string_view sql) const;
  // A one-shot that needs no write: it may run on a read-only pool (SQLite readers).
  virtual bool one_shot_only_reads(std::string_view /*sql*/) const { return false; }

  // Group commit (group_commit.hpp) is a policy a driver may offer: queued one-shot writes
  // of its writer pool run as one transaction. The driver's connections then implement
  // BackendConn::execute_group().
  virtual bool group_commit() const { return false; }
  virtual bool groupable_sql(std::string_view /*sql*/) const { return false; }

  // Batches (BatchJob): a session's pipelined statements run back to back in one operation.
  // The driver's connections then implement BackendConn::execute_batch().
  virtual bool batches() const { return false; }
  // With group commit too: a statement a pipelined transaction may hold to run in a group of
  // such transactions, each in a savepoint of the group's one transaction.
  virtual bool batch_groupable_sql(std::string_view /*sql*/) const { return false; }

  // The database info (its PK column type) depends on the server's version, which a
  // connection learns (BackendConn::server_version()): an info request opens one first.
  virtual bool info_needs_server() const { return false; }
};

// The driver for a database type (never null).
const Driver& driver_for(config::DbType type);

}  // namespace dbmgr::daemon
