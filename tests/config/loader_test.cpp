// Tests of config's YAML loader, durations, sizes, load() and the precedence of sources.
#include <doctest/doctest.h>
#include <sys/stat.h>

#include <string>

#include "dbmgr/config/config.hpp"
#include "test_util.hpp"

using namespace dbmgr::config;
using namespace std::chrono_literals;
using dbmgr::config::testing::fake_env;
using dbmgr::config::testing::TempDir;

namespace {

Settings loaded(std::string_view yaml, std::string_view file = "t.yaml") {
  auto r = load_yaml(yaml, file);
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().to_string()));
  return *r;
}

Error load_error(std::string_view yaml, std::string_view file = "t.yaml") {
  auto r = load_yaml(yaml, file);
  REQUIRE_MESSAGE(!r.ok(), "expected an error");
  return r.error();
}

bool contains(const std::string& s, std::string_view part) {
  return s.find(part) != std::string::npos;
}

}  // namespace

TEST_CASE("Error::to_string leaves out the empty parts") {
  CHECK(Error{"f.yaml", 3, "pool.pool_size", "bad"}.to_string() == "f.yaml:3: pool.pool_size: bad");
  CHECK(Error{"f.yaml", 0, "", "bad"}.to_string() == "f.yaml: bad");
  CHECK(Error{"", 0, "DATABASE_PORT", "bad"}.to_string() == "DATABASE_PORT: bad");
  CHECK(Error{"", 0, "", "bad"}.to_string() == "bad");
}

TEST_CASE("parse_duration") {
  CHECK(parse_duration("30s") == Millis{30'000});
  CHECK(parse_duration("250ms") == Millis{250});
  CHECK(parse_duration("5m") == Millis{300'000});
  CHECK(parse_duration("1h") == Millis{3'600'000});
  CHECK(parse_duration("2d") == Millis{172'800'000});
  CHECK(parse_duration("1500") == Millis{1500});
  CHECK(parse_duration("0") == Millis{0});
  for (const char* bad :
       {"", "s", "-1s", "1.5s", "10x", "30 s", " 30s", "1sec", "99999999999999999999"}) {
    CHECK_MESSAGE(parse_duration(bad) == std::nullopt, bad);
  }
}

TEST_CASE("parse_size") {
  CHECK(parse_size("16MiB") == 16u * 1024 * 1024);
  CHECK(parse_size("16MB") == 16u * 1024 * 1024);
  CHECK(parse_size("16m") == 16u * 1024 * 1024);
  CHECK(parse_size("512KiB") == 512u * 1024);
  CHECK(parse_size("1G") == 1024u * 1024 * 1024);
  CHECK(parse_size("100B") == 100u);
  CHECK(parse_size("100") == 100u);
  CHECK(parse_size("100", 1024) == 102'400u);
  for (const char* bad : {"", "MiB", "-1", "1.5MiB", "16XB", "99999999999G"}) {
    CHECK_MESSAGE(parse_size(bad) == std::nullopt, bad);
  }
}

TEST_CASE("an empty file gives the defaults") {
  Settings s = loaded("", "empty.yaml");
  CHECK(s.config_file == "empty.yaml");
  Settings d;
  CHECK(s.socket_path == d.socket_path);
  CHECK(s.pool == d.pool);
  CHECK(s.sqlite == d.sqlite);
  CHECK(s.default_database == d.default_database);
  CHECK(s.databases.empty());
  CHECK(s.prefixes.create_on_demand == std::vector<std::string>{"test"});
  CHECK(loaded("# only a comment\n").databases.empty());
}

TEST_CASE("the built-in defaults are DESIGN's") {
  Settings d;
  CHECK(d.socket_path == "/run/dbmgr/dbmgrd.sock");
  CHECK(d.socket_mode == 0660);
  CHECK(d.max_frame_bytes == 16u * 1024 * 1024);
  CHECK(d.drain_timeout == 30s);
  CHECK(d.engine_idle_timeout == 10min);
  CHECK(d.pool.pool_size == 20);
  CHECK(d.pool.max_overflow == 10);
  CHECK(d.pool.pool_timeout == 30s);
  CHECK(d.pool.pool_recycle == 1h);
  CHECK(d.pool.pool_pre_ping);
  CHECK(d.sqlite.cache_kib == 65'536);
  CHECK(d.default_database.type == DbType::kSqlite);
  CHECK(d.default_database.path == ".");
}

TEST_CASE("every global key is read") {
  Settings s = loaded(R"(socket:
  path: /tmp/d.sock
  mode: "0600"
  group: dbusers
admin_group: dbadmin
max_frame_bytes: 1MiB
drain_timeout: 5s
engine_idle_timeout: 0
log_level: WARNING
worker_threads: 8
pool:
  pool_size: 7
  max_overflow: 0
  pool_timeout: 250ms
  pool_recycle: 0
  pool_pre_ping: false
  idle_in_transaction_timeout: 1m
  statement_timeout: 2s
sqlite:
  busy_timeout: 1s
  cache_size: 2048
  readers: 0
prefixes:
  create_on_demand: [test, ci.build]
)");
  CHECK(s.socket_path == "/tmp/d.sock");
  CHECK(s.socket_mode == 0600);
  CHECK(s.socket_group == "dbusers");
  CHECK(s.admin_group == "dbadmin");
  CHECK(s.max_frame_bytes == 1024u * 1024);
  CHECK(s.drain_timeout == 5s);
  CHECK(s.engine_idle_timeout.count() == 0);
  CHECK(s.log_level == "warn");
  CHECK(s.worker_threads == 8);
  PoolSettings p{7, 0, 250ms, 0ms, false, 1min, 2s};
  CHECK(s.pool == p);
  CHECK(s.sqlite == SqliteSettings{1s, 2048, 0});
  CHECK(s.prefixes.create_on_demand == std::vector<std::string>{"test", "ci.build"});
  // The default database inherits the global sections.
  CHECK(s.default_database.pool == p);
  CHECK(s.default_database.sqlite == s.sqlite);
}

TEST_CASE("socket.mode is octal in every spelling") {
  CHECK(loaded("socket: {mode: 0640}").socket_mode == 0640);
  CHECK(loaded("socket: {mode: 640}").socket_mode == 0640);
  CHECK(loaded("socket: {mode: 0o600}").socket_mode == 0600);
  CHECK(loaded("socket: {mode: \"0770\"}").socket_mode == 0770);
  // Never world-writable: anyone could connect and use every database.
  Error w = load_error("socket:\n  mode: \"0666\"\n");
  CHECK(w.key == "socket.mode");
  CHECK(w.message.find("every user") != std::string::npos);
  Error e = load_error("socket:\n  mode: \"0999\"\n");
  CHECK(e.line == 2);
  CHECK(e.key == "socket.mode");
  CHECK(load_error("socket: {mode: 01777}").key == "socket.mode");
  CHECK(load_error("socket: {mode: rw}").key == "socket.mode");
}

TEST_CASE("sizes: max_frame_bytes and cache_size") {
  CHECK(loaded("max_frame_bytes: 65536").max_frame_bytes == 65'536u);
  CHECK(loaded("max_frame_bytes: 16MiB").max_frame_bytes == 16u * 1024 * 1024);
  CHECK(loaded("sqlite: {cache_size: 64MB}").sqlite.cache_kib == 65'536);
  CHECK(loaded("sqlite: {cache_size: 1000}").sqlite.cache_kib == 1000);
  Error e = load_error("max_frame_bytes: 100\n");
  CHECK(e.key == "max_frame_bytes");
  CHECK(contains(e.message, "out of range"));
  e = load_error("max_frame_bytes: 2GiB\n");
  CHECK(e.key == "max_frame_bytes");
  e = load_error("sqlite:\n  cache_size: lots\n");
  CHECK(e.key == "sqlite.cache_size");
  CHECK(e.line == 2);
}

TEST_CASE("databases: entries, inheritance and both knob shapes") {
  // `pool:` comes after `databases:` on purpose: inheritance does not depend on key order.
  Settings s = loaded(R"(databases:
  main:
    type: postgresql
    name: main_db
    host: /var/run/postgresql
    port: 5433
    user: app
    password: pw
    sslmode: Require
    pool_size: 40
  shop:
    type: mariadb
    name: shop
    driver: MariaDB Unicode
    pool:
      pool_size: 3
      pool_timeout: 1s
  files:
    type: sqlite
    path: ./var
    readers: 2
    sqlite:
      busy_timeout: 2s
pool:
  pool_size: 9
  statement_timeout: 10s
)");
  REQUIRE(s.databases.size() == 3);
  const DatabaseConfig& main = s.databases.at("main");
  CHECK(main.key == "main");
  CHECK(main.type == DbType::kPostgresql);
  CHECK(main.name == "main_db");
  CHECK(main.host == "/var/run/postgresql");
  CHECK(main.port == 5433);
  CHECK(main.user == "app");
  CHECK(main.password.reveal() == "pw");
  CHECK(main.sslmode == "require");
  CHECK(main.pool.pool_size == 40);
  CHECK(main.pool.statement_timeout == 10s);  // inherited
  CHECK(main.pool.max_overflow == 10);        // default
  const DatabaseConfig& shop = s.databases.at("shop");
  CHECK(shop.type == DbType::kMariadb);
  CHECK(shop.driver == "MariaDB Unicode");
  CHECK(shop.pool.pool_size == 3);
  CHECK(shop.pool.pool_timeout == 1s);
  CHECK(shop.pool.statement_timeout == 10s);
  const DatabaseConfig& files = s.databases.at("files");
  CHECK(files.name == "files");  // SQLite name defaults to the key
  CHECK(files.path == "./var");
  CHECK(files.sqlite.readers == 2);
  CHECK(files.sqlite.busy_timeout == 2s);
  CHECK(files.pool.pool_size == 9);
}

TEST_CASE("the default entry") {
  Settings s = loaded(R"(default:
  type: postgres
  name: app
  host: localhost
  pool_size: 3
)");
  CHECK(s.default_database.type == DbType::kPostgresql);
  CHECK(s.default_database.key.empty());
  CHECK(s.default_database.name == "app");
  CHECK(s.default_database.pool.pool_size == 3);
  CHECK(s.pool.pool_size == 20);
  CHECK(s.find_database("")->host == "localhost");
}

TEST_CASE("the example file loads") {
  auto r = load(CommandLine{.config_file = DBMGR_EXAMPLE_CONFIG}, fake_env({}), "");
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().to_string()));
  const Settings& s = *r;
  CHECK(s.config_file == DBMGR_EXAMPLE_CONFIG);
  CHECK(s.max_frame_bytes == 16u * 1024 * 1024);
  CHECK(s.default_database.name == "app");
  REQUIRE(s.databases.size() == 4);
  CHECK(s.databases.at("main").pool.pool_size == 40);
  CHECK(s.databases.at("main").pool.statement_timeout == 15s);
  CHECK(s.databases.at("main").pool.pool_timeout == 30s);
  CHECK(s.databases.at("reports").pool.pool_recycle == 30min);
  CHECK(s.databases.at("ledger").type == DbType::kMssql);
  CHECK(s.databases.at("cache").sqlite.cache_kib == 16 * 1024);
  CHECK(database_uri(s.databases.at("cache"), "cache") == "sqlite:///var/cache.db");
}

// ---- errors: file, line, key ----

TEST_CASE("unknown keys are errors at their line") {
  Error e = load_error("log_level: info\nlog_levle: debug\n", "/etc/dbmgr/x.yaml");
  CHECK(e.file == "/etc/dbmgr/x.yaml");
  CHECK(e.line == 2);
  CHECK(e.key == "log_levle");
  CHECK(e.message == "unknown key");
  CHECK(e.to_string() == "/etc/dbmgr/x.yaml:2: log_levle: unknown key");

  e = load_error("pool:\n  pool_size: 3\n  poolsize: 4\n");
  CHECK(e.line == 3);
  CHECK(e.key == "pool.poolsize");

  e = load_error("databases:\n  main:\n    type: sqlite\n    hots: x\n");
  CHECK(e.line == 4);
  CHECK(e.key == "databases.main.hots");

  e = load_error("databases:\n  main:\n    type: sqlite\n    pool:\n      size: 3\n");
  CHECK(e.line == 5);
  CHECK(e.key == "databases.main.pool.size");

  e = load_error("socket:\n  owner: root\n");
  CHECK(e.key == "socket.owner");
  CHECK(e.line == 2);
}

TEST_CASE("a key given twice is an error") {
  Error e = load_error("pool:\n  pool_size: 3\n  pool_size: 4\n");
  CHECK(e.line == 3);
  CHECK(e.key == "pool.pool_size");
  CHECK(contains(e.message, "twice"));
}

TEST_CASE("wrong types are errors at the value's line") {
  Error e = load_error("pool:\n  pool_size: abc\n");
  CHECK(e.line == 2);
  CHECK(e.key == "pool.pool_size");
  CHECK(e.message == "expected an integer, got 'abc'");

  e = load_error("worker_threads:\n  - 1\n  - 2\n");
  CHECK(e.key == "worker_threads");
  CHECK(e.message == "expected an integer, got a list");

  e = load_error("pool: 5\n");
  CHECK(e.line == 1);
  CHECK(e.key == "pool");
  CHECK(e.message == "expected a map, got '5'");

  e = load_error(
      "log_level: info\ndatabases:\n  main:\n    type: sqlite\n    pool_pre_ping: maybe\n");
  CHECK(e.line == 5);
  CHECK(e.key == "databases.main.pool_pre_ping");

  e = load_error("databases:\n  main:\n    type: postgresql\n    name: m\n    port: 70000\n");
  CHECK(e.line == 5);
  CHECK(e.key == "databases.main.port");
  CHECK(contains(e.message, "out of range 1..65535"));

  e = load_error("pool:\n  pool_size: 0\n");
  CHECK(e.key == "pool.pool_size");

  e = load_error("- a\n- b\n");
  CHECK(e.line == 1);
  CHECK(contains(e.message, "must be a map"));

  e = load_error("databases: [a]\n");
  CHECK(e.key == "databases");

  e = load_error("log_level: loud\n");
  CHECK(e.key == "log_level");
  CHECK(contains(e.message, "'loud'"));

  e = load_error("prefixes:\n  create_on_demand: test\n");
  CHECK(e.key == "prefixes.create_on_demand");
  CHECK(e.line == 2);
}

TEST_CASE("bad durations") {
  Error e = load_error("pool:\n  pool_size: 3\n  pool_timeout: 10x\n");
  CHECK(e.line == 3);
  CHECK(e.key == "pool.pool_timeout");
  CHECK(contains(e.message, "bad duration '10x'"));

  e = load_error("drain_timeout: 30\n");
  CHECK(e.line == 1);
  CHECK(e.key == "drain_timeout");
  CHECK(contains(e.message, "has no unit"));
  CHECK(loaded("drain_timeout: 0").drain_timeout == 0ms);

  e = load_error("databases:\n  m:\n    type: sqlite\n    busy_timeout: soon\n");
  CHECK(e.key == "databases.m.busy_timeout");
  CHECK(e.line == 4);
}

TEST_CASE("missing required fields") {
  Error e = load_error("log_level: info\ndatabases:\n  main:\n    name: x\n");
  CHECK(e.line == 3);
  CHECK(e.key == "databases.main.type");
  CHECK(contains(e.message, "missing required field 'type'"));

  e = load_error("databases:\n  main:\n");
  CHECK(e.line == 2);
  CHECK(e.key == "databases.main.type");

  e = load_error("databases:\n  x: {}\n  main:\n    type: postgresql\n    host: h\n");
  CHECK(e.key == "databases.x.type");

  e = load_error("databases:\n  main:\n    type: postgresql\n    host: h\n");
  CHECK(e.line == 2);
  CHECK(e.key == "databases.main.name");
  CHECK(contains(e.message, "missing required field 'name'"));

  e = load_error("default:\n  type: mssql\n");
  CHECK(e.key == "default.name");
  CHECK(e.line == 1);
}

TEST_CASE("invalid database type, key and SQLite name") {
  Error e = load_error("databases:\n  main:\n    type: oracle\n");
  CHECK(e.line == 3);
  CHECK(e.key == "databases.main.type");
  CHECK(contains(e.message, "unknown database type 'oracle'"));

  e = load_error("databases:\n  ../evil:\n    type: sqlite\n");
  CHECK(e.line == 2);
  CHECK(e.key == "databases.../evil");

  e = load_error("databases:\n  ok:\n    type: sqlite\n    name: a/b\n");
  CHECK(e.line == 4);
  CHECK(e.key == "databases.ok.name");

  e = load_error("databases:\n  ok:\n    type: sqlite\n    sslmode: sometimes\n");
  CHECK(e.key == "databases.ok.sslmode");

  e = load_error("prefixes:\n  create_on_demand:\n    - test\n    - ../x\n");
  CHECK(e.line == 4);
  CHECK(e.key == "prefixes.create_on_demand[1]");
  CHECK(contains(e.message, "prefix '../x'"));
}

TEST_CASE("password and password_file") {
  TempDir dir;
  dir.write("main.pw", "from-file\n");
  std::string cfg = dir.path() + "/dbmgr.yaml";
  // A relative password_file is relative to the config file's folder.
  Settings s = loaded(
      "databases:\n  main:\n    type: postgresql\n    name: m\n    password_file: main.pw\n", cfg);
  CHECK(s.databases.at("main").password.reveal() == "from-file");
  s = loaded("default:\n  password_file: " + dir.path() + "/main.pw\n", "elsewhere.yaml");
  CHECK(s.default_database.password.reveal() == "from-file");

  Error e = load_error(
      "databases:\n  main:\n    type: postgresql\n    name: m\n    password: inline-secret\n"
      "    password_file: main.pw\n",
      cfg);
  CHECK(e.line == 6);
  CHECK(e.key == "databases.main.password_file");
  CHECK(contains(e.message, "not both"));
  CHECK_FALSE(contains(e.to_string(), "inline-secret"));

  e = load_error(
      "databases:\n  main:\n    type: postgresql\n    name: m\n    password_file: nope.pw\n", cfg);
  CHECK(e.file == cfg);
  CHECK(e.line == 5);
  CHECK(e.key == "databases.main.password_file");
  CHECK(contains(e.message, "cannot read '" + dir.path() + "/nope.pw'"));
  CHECK(contains(e.message, "No such file"));
}

TEST_CASE("a wrong-type password is not echoed") {
  Error e = load_error("default:\n  password:\n    secret: hunter2\n");
  CHECK(e.key == "default.password");
  CHECK(e.line == 3);
  CHECK(e.message == "expected a string, got a map");
  CHECK_FALSE(contains(e.to_string(), "hunter2"));
  e = load_error("default:\n  password: [hunter2, x]\n");
  CHECK_FALSE(contains(e.to_string(), "hunter2"));
  CHECK(e.key == "default.password");
}

TEST_CASE("a password survives only in Secret: not in errors after it") {
  Error e = load_error("default:\n  password: hunter2\n  port: nope\n");
  CHECK(e.key == "default.port");
  CHECK_FALSE(contains(e.to_string(), "hunter2"));
}

TEST_CASE("syntax errors name file and line") {
  Error e = load_error("pool:\n  pool_size: 3\n  max_overflow: [1, 2\n", "/x/broken.yaml");
  CHECK(e.file == "/x/broken.yaml");
  CHECK(e.line == 4);  // yaml-cpp notices the unclosed list at the end of the text
  CHECK(e.message == "end of sequence flow not found");
  CHECK_FALSE(e.message.empty());

  e = load_error("log_level: info\ndefault:\n  password: secret-value\n  port: [1\n", "b.yaml");
  CHECK(e.file == "b.yaml");
  CHECK(e.line == 5);
  CHECK_FALSE(contains(e.to_string(), "secret-value"));

  e = load_error("a: b\nc: d: e\n");
  CHECK(e.line == 2);
  CHECK(e.to_string() == "t.yaml:2: illegal map value");

  e = load_error("log_level: *nope\n");
  CHECK(e.line == 1);
  CHECK(contains(e.message, "anchor"));
}

TEST_CASE("load_yaml applies over a base and a broken file leaves nothing applied") {
  Settings base;
  base.log_level = "debug";
  base.pool.pool_size = 2;
  auto r = load_yaml("worker_threads: 2\n", "f.yaml", base);
  REQUIRE(r.ok());
  CHECK(r->log_level == "debug");
  CHECK(r->worker_threads == 2);
  CHECK(r->pool.pool_size == 2);

  r = load_yaml("worker_threads: 2\nlog_level: nope\n", "f.yaml", base);
  CHECK_FALSE(r.ok());
}

// ---- load(): which file, precedence ----

TEST_CASE("load picks --config, else DBMGR_CONFIG, else the system file, else none") {
  TempDir dir;
  std::string a = dir.write("a.yaml", "log_level: debug\n");
  std::string b = dir.write("b.yaml", "log_level: error\n");
  std::string sys = dir.write("sys.yaml", "log_level: critical\n");

  auto r = load(CommandLine{.config_file = a}, fake_env({{"DBMGR_CONFIG", b}}), sys);
  REQUIRE(r.ok());
  CHECK(r->config_file == a);
  CHECK(r->log_level == "debug");

  r = load(CommandLine{}, fake_env({{"DBMGR_CONFIG", b}}), sys);
  REQUIRE(r.ok());
  CHECK(r->config_file == b);
  CHECK(r->log_level == "error");

  r = load(CommandLine{}, fake_env({}), sys);
  REQUIRE(r.ok());
  CHECK(r->config_file == sys);
  CHECK(r->log_level == "critical");

  r = load(CommandLine{}, fake_env({}), dir.path() + "/absent.yaml");
  REQUIRE(r.ok());
  CHECK(r->config_file.empty());
  CHECK(r->log_level == "info");
}

TEST_CASE("a named file that is missing is an error") {
  TempDir dir;
  std::string missing = dir.path() + "/missing.yaml";
  auto r = load(CommandLine{.config_file = missing}, fake_env({}), "");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().file == missing);
  CHECK(contains(r.error().message, "No such file"));

  r = load(CommandLine{}, fake_env({{"DBMGR_CONFIG", missing}}), "");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().file == missing);
}

TEST_CASE("load reports a broken file with its name") {
  TempDir dir;
  std::string f = dir.write("bad.yaml", "pool:\n  pool_size: -3\n");
  auto r = load(CommandLine{.config_file = f}, fake_env({}), "");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().to_string() == f + ":2: pool.pool_size: -3 is out of range 1..10000");
}

TEST_CASE("precedence: defaults < file < environment < command line") {
  TempDir dir;
  std::string f = dir.write("p.yaml", R"(socket:
  path: /file.sock
log_level: error
default:
  path: /file/db
  name: fileapp
  host: file-host
)");
  // File over defaults.
  auto r = load(CommandLine{.config_file = f}, fake_env({}), "");
  REQUIRE(r.ok());
  CHECK(r->socket_path == "/file.sock");
  CHECK(r->log_level == "error");
  CHECK(r->default_database.path == "/file/db");
  CHECK(r->default_database.host == "file-host");
  CHECK(r->worker_threads == 4);  // untouched default

  // Environment over file.
  auto env = fake_env({{"DBMGR_SOCKET", "/env.sock"}, {"DATABASE_PATH", "/env/db"}});
  r = load(CommandLine{.config_file = f}, env, "");
  REQUIRE(r.ok());
  CHECK(r->socket_path == "/env.sock");
  CHECK(r->default_database.path == "/env/db");
  CHECK(r->default_database.name == "fileapp");  // not in the environment: the file's

  // Command line over environment.
  r = load(CommandLine{.config_file = f, .socket_path = "/cli.sock", .log_level = "trace"}, env,
           "");
  REQUIRE(r.ok());
  CHECK(r->socket_path == "/cli.sock");
  CHECK(r->log_level == "trace");
  CHECK(r->default_database.path == "/env/db");
}

TEST_CASE("the default section may leave its name to DATABASE_NAME") {
  TempDir dir;
  std::string f = dir.write("n.yaml", "default:\n  type: postgresql\n  pool_size: 1\n");
  auto r = load(CommandLine{.config_file = f}, fake_env({{"DATABASE_NAME", "app"}}), "");
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().to_string()));
  CHECK(r->default_database.type == DbType::kPostgresql);
  CHECK(r->default_database.name == "app");
  CHECK(r->default_database.pool.pool_size == 1);
  // Without it the file's error stands, with its line.
  r = load(CommandLine{.config_file = f}, fake_env({}), "");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().key == "default.name");
  CHECK(r.error().line == 1);
  // A listed database still needs its own name.
  std::string g = dir.write("g.yaml", "databases:\n  main:\n    type: postgresql\n");
  r = load(CommandLine{.config_file = g}, fake_env({{"DATABASE_NAME", "app"}}), "");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().key == "databases.main.name");
}

TEST_CASE("command-line values are validated") {
  auto r = load(CommandLine{.log_level = "chatty"}, fake_env({}), "");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().key == "--log-level");
  r = load(CommandLine{.socket_path = ""}, fake_env({}), "");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().key == "--socket");
}

TEST_CASE("an environment error surfaces from load") {
  auto r = load(CommandLine{}, fake_env({{"DATABASE_PORT", "http"}}), "");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().key == "DATABASE_PORT");
}
