// Settings of dbmgr: the model with its defaults, the YAML loader, the environment overlay
// and the database naming rules (prefixes, SQLite paths, URIs, primary-key types).
//
// Precedence: built-in defaults < YAML file < environment < command line. Loading either
// yields a complete Settings or an error naming file, line and key: a broken file is never
// half applied. Nothing here throws: yaml-cpp's exceptions are caught inside the loader.
//
// Passwords are held in Secret, which has no way to be printed; every URI this library
// builds for people masks the password as ***.
//
// Thread-safety: plain values; a loaded Settings is immutable by convention and may be
// shared read-only between threads.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace dbmgr::config {

using Millis = std::chrono::milliseconds;

// An error in configuration or naming. `file`/`line`/`key` are empty/0 where they do not
// apply (an environment variable names itself in `key`).
struct Error {
  std::string file;
  int line = 0;
  std::string key;
  std::string message;
  // "FILE:LINE: KEY: MESSAGE", leaving out the parts that are empty.
  std::string to_string() const;
};

// A value or an Error. Small on purpose: C++20 has no std::expected.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}      // NOLINT: implicit by design
  Result(Error error) : v_(std::move(error)) {}  // NOLINT
  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() { return std::get<0>(v_); }
  const T& value() const { return std::get<0>(v_); }
  T& operator*() { return value(); }
  const T& operator*() const { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

// A password. It cannot be streamed or formatted; reveal() is for the one place that hands
// it to a driver.
class Secret {
 public:
  Secret() = default;
  explicit Secret(std::string v) : v_(std::move(v)) {}
  const std::string& reveal() const { return v_; }
  bool empty() const { return v_.empty(); }
  friend bool operator==(const Secret&, const Secret&) = default;

 private:
  std::string v_;
};

enum class DbType { kSqlite, kPostgresql, kMysql, kMariadb, kMssql };
std::string_view to_string(DbType t);
std::optional<DbType> parse_db_type(std::string_view s);  // also accepts "postgres", "sqlite3"

struct PoolSettings {
  int pool_size = 20;
  int max_overflow = 10;
  Millis pool_timeout{30'000};
  Millis pool_recycle{3'600'000};
  bool pool_pre_ping = true;
  Millis idle_in_transaction_timeout{0};  // 0 = off
  Millis statement_timeout{0};            // 0 = off
  friend bool operator==(const PoolSettings&, const PoolSettings&) = default;
};

struct SqliteSettings {
  Millis busy_timeout{30'000};
  std::int64_t cache_kib = 65'536;  // PRAGMA cache_size=-65536 (64 MB)
  int readers = 4;                  // reader connections kept (capped by pool_size), besides the writer
  friend bool operator==(const SqliteSettings&, const SqliteSettings&) = default;
};

// One database as the daemon serves it. `key` is the name clients ask for.
struct DatabaseConfig {
  std::string key;
  DbType type = DbType::kSqlite;
  std::string name;  // database name on the server, or the SQLite file stem
  std::string host;  // host name or Unix socket folder (PostgreSQL, MariaDB)
  int port = 0;      // 0 = the driver's default
  std::string user;
  Secret password;         // from `password`, `password_file` or DATABASE_PASSWORD[_FILE]
  std::string path = ".";  // SQLite folder (DATABASE_PATH)
  std::string sslmode;     // PostgreSQL sslmode (DATABASE_SSL); empty = libpq default
  std::string driver;      // ODBC driver name (MariaDB/MySQL/MSSQL through unixODBC)
  PoolSettings pool;
  SqliteSettings sqlite;
  // Who may use this database (SO_PEERCRED): a peer whose uid is in allow_uids, or whose
  // primary or supplementary group is in allow_gids. Both empty: anyone who can connect.
  std::vector<std::uint32_t> allow_uids;
  std::vector<std::uint32_t> allow_gids;
  friend bool operator==(const DatabaseConfig&, const DatabaseConfig&) = default;
};

// Which prefixes may create databases on demand (default: prefixes starting with "test").
struct PrefixPolicy {
  std::vector<std::string> create_on_demand{"test"};
  // True when `prefix` equals one of the entries or begins with one followed by '.'.
  bool allows_create(std::string_view prefix) const;
};

// The Prometheus endpoint (`metrics: {listen: ...}`), off unless `listen` is set. Only a
// loopback TCP address or a Unix socket is accepted: the figures name databases and pools,
// which is nobody else's business, and the endpoint has no authentication.
struct MetricsSettings {
  std::string listen;     // as written in the file; empty = off
  std::string unix_path;  // "unix:/run/dbmgr/metrics.sock" -> "/run/dbmgr/metrics.sock"
  std::string host;       // TCP: a numeric loopback address ("127.0.0.1", "::1")
  int port = 0;           // TCP: 1..65535
  bool enabled() const { return !listen.empty(); }
};

// Parses `metrics.listen`: "127.0.0.1:9187" (any 127.x.y.z), "localhost:9187" (as
// 127.0.0.1), "[::1]:9187", or "unix:/absolute/path". Refuses any other host with a message
// saying why. The error's `key` is "metrics.listen".
Result<MetricsSettings> parse_metrics_listen(std::string_view listen);

struct Settings {
  std::string config_file;  // the file loaded, empty if none
  std::string socket_path = "/run/dbmgr/dbmgrd.sock";
  mode_t socket_mode = 0660;
  std::string socket_group;  // empty = the daemon's primary group
  std::string admin_group;   // members may reload/kill/drain/shutdown; empty = root and self only
  std::uint32_t max_frame_bytes = 16u * 1024 * 1024;
  Millis drain_timeout{30'000};
  // An engine with no session and no connection in use for this long is disposed (its
  // connections and descriptors closed) and made again on next use; 0 = never.
  Millis engine_idle_timeout{600'000};
  // Limits (docs/admin.md "Limits"). Each refusal is a clear error and touches nobody else.
  int max_clients = 10'000;            // client connections at once (also capped by the fd limit)
  Millis handshake_timeout{5'000};     // a connection must complete its hello within this
  int max_sessions_per_client = 16'384;  // sessions and one-shots in flight on one connection
  std::uint64_t max_client_buffered_bytes = 64ull << 20;  // input held for one connection
  std::uint64_t max_buffered_bytes = 512ull << 20;        // input held for all connections
  Millis stream_stall_timeout{30'000};  // rows unread by the client this long end the statement
  int max_engines = 1'000;              // databases open at once
  int max_engines_per_client = 64;      // engines one client connection may cause to be made
  std::string log_level = "info";
  int worker_threads = 4;  // blocking backends (SQLite, ODBC)
  PoolSettings pool;       // global defaults for every database
  SqliteSettings sqlite;
  DatabaseConfig default_database;                  // from `default:` and DATABASE_*
  std::map<std::string, DatabaseConfig> databases;  // the `databases:` map, by key
  PrefixPolicy prefixes;
  MetricsSettings metrics;  // `metrics:`; applies at start (a reload keeps the running one)

  // The database a client means by `key` ("" = the default). An unknown key that is a valid
  // name resolves to the default database's server with `name` = key (another file in the
  // same folder for SQLite); an invalid one gives nullopt.
  std::optional<DatabaseConfig> find_database(std::string_view key) const;
};

// Looks up an environment variable; injectable for tests.
using EnvLookup = std::function<std::optional<std::string>(std::string_view name)>;
EnvLookup process_env();

// What the command line gives; every field overrides the environment.
struct CommandLine {
  std::optional<std::string> config_file;
  std::optional<std::string> socket_path;
  std::optional<std::string> log_level;
};

// Loads the configuration: defaults, then the YAML file (command line --config, else
// DBMGR_CONFIG, else /etc/dbmgr/dbmgr.yaml if it exists), then the environment, then the
// command line.
Result<Settings> load(const CommandLine& cli, const EnvLookup& env);
// The file load() reads when neither --config nor DBMGR_CONFIG names one (and it exists).
inline constexpr std::string_view kSystemConfigFile = "/etc/dbmgr/dbmgr.yaml";
// As load(), with another fallback file than kSystemConfigFile (for tests).
Result<Settings> load(const CommandLine& cli, const EnvLookup& env, std::string_view system_file);
// Parses YAML text as if it came from `file_name` (for tests and reload).
Result<Settings> load_yaml(std::string_view yaml_text, std::string_view file_name,
                           Settings base = {});
// Applies DATABASE_* and DBMGR_SOCKET to `s`.
Result<Settings> apply_env(Settings s, const EnvLookup& env);

// Parses "30s", "250ms", "5m", "1h", "2d", "1500" (milliseconds) and "0". The YAML loader
// refuses a bare non-zero number ("30": seconds or milliseconds?) and asks for a unit.
std::optional<Millis> parse_duration(std::string_view s);

// Parses a size: a plain number counts `unit` bytes; "512B", "64k"/"64KB"/"64KiB",
// "16M"/"16MB"/"16MiB", "1G"/"1GB"/"1GiB" are binary multiples (KB = KiB = 1024, as
// PostgreSQL reads them). Returns bytes, or nullopt on a bad string or overflow.
std::optional<std::uint64_t> parse_size(std::string_view s, std::uint64_t unit = 1);

// ---- naming ----

// Checks a prefix: dot-separated words of [a-z0-9_]+. The error says what is wrong.
Result<std::string> validate_prefix(std::string_view prefix);
// Checks a database name: dot-separated words of [A-Za-z0-9_-]+, at most 63 bytes.
Result<std::string> validate_name(std::string_view name);
// "test" + "app" -> "test.app"; "test.payment" + "app" -> "test.payment.app";
// "test" + "test.app" -> "test.app"; "" + "app" -> "app". Validates both parts. Only the
// whole prefix followed by '.' counts as already there: "test" + "test" -> "test.test",
// "test.payment" + "test.app" -> "test.payment.test.app". The result is at most 63 bytes.
Result<std::string> resolve_name(std::string_view prefix, std::string_view name);
// SQLite: DATABASE_PATH/NAME.db with forward slashes, never outside `folder`. The folder is
// normalized lexically (no file system access): "/srv/db/" -> "/srv/db/NAME.db", "." or ""
// -> "./NAME.db" (relative stays relative; the daemon resolves it against its own folder).
// Refuses any name validate_name() refuses, so '/', "..", and empty words never get through.
Result<std::string> db_name_to_path(std::string_view folder, std::string_view name);

struct PkType {
  std::string name;         // "String" or "UUID"
  std::string column_type;  // "TEXT", "UUID", "CHAR(36)", "UNIQUEIDENTIFIER"
};
// server_version: e.g. "10.11.6-MariaDB" or "8.0.36"; empty when unknown.
PkType pk_type(DbType type, std::string_view server_version = {});

// The URI of a database for people: the password, if any, is always ***.
// SQLAlchemy's forms: sqlite:///./name.db (relative) or sqlite:////abs/path/name.db,
// postgresql://user:***@host:5432/name?sslmode=require, a socket folder as host goes in the
// query (postgresql://user:***@/name?host=/tmp/x&port=5433), mysql://user:***@host:3306/name
// (a socket path as ?unix_socket=), mariadb://..., mssql+odbc://user:***@host:1433/name?driver=
// ODBC+Driver+18+for+SQL+Server. Port only when set; no ":***" when the password is empty.
std::string database_uri(const DatabaseConfig& db, std::string_view resolved_name);

struct DatabaseInfo {
  DbType type;
  std::string name;  // resolved (prefix applied)
  std::string uri;   // masked
  PkType pk;
};
DatabaseInfo get_database_info(const DatabaseConfig& db, std::string_view resolved_name,
                               std::string_view server_version = {});

}  // namespace dbmgr::config
