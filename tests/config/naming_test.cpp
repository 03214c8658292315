// Tests of config/naming: prefixes, names, SQLite paths, masked URIs, PK types.
#include <doctest/doctest.h>

#include <string>

#include "dbmgr/config/config.hpp"

using namespace dbmgr::config;

namespace {

// The error message of a failed validation, or "" when it passed.
template <typename R>
std::string problem(const R& r) {
  return r.ok() ? std::string() : r.error().message;
}

DatabaseConfig server(DbType type) {
  DatabaseConfig db;
  db.type = type;
  db.user = "app";
  db.password = Secret("s3cr3t-pw");
  db.host = "db.example";
  return db;
}

}  // namespace

TEST_CASE("validate_prefix accepts dot-separated lowercase words") {
  for (const char* p : {"test", "test.payment", "a_b.c9", "0"}) {
    auto r = validate_prefix(p);
    REQUIRE_MESSAGE(r.ok(), p);
    CHECK(*r == p);
  }
}

TEST_CASE("validate_prefix refuses each bad form with a message saying what is wrong") {
  CHECK(problem(validate_prefix("")) == "prefix is empty");
  CHECK(problem(validate_prefix("../x")).find("starts with a dot") != std::string::npos);
  CHECK(problem(validate_prefix("a..b")).find("empty word between two dots") != std::string::npos);
  CHECK(problem(validate_prefix("/etc")).find("contains '/'") != std::string::npos);
  CHECK(problem(validate_prefix("a/b")).find("contains '/'") != std::string::npos);
  CHECK(problem(validate_prefix("Test")).find("uppercase letter 'T'") != std::string::npos);
  CHECK(problem(validate_prefix("te st")).find("contains a space") != std::string::npos);
  CHECK(problem(validate_prefix(".test")).find("starts with a dot") != std::string::npos);
  CHECK(problem(validate_prefix("test.")).find("ends with a dot") != std::string::npos);
  CHECK(problem(validate_prefix("te-st")).find("contains '-'") != std::string::npos);
  CHECK(problem(validate_prefix(std::string(64, 'a'))).find("at most 63") != std::string::npos);
  // The message quotes the prefix and states the rule.
  CHECK(problem(validate_prefix("a..b")) ==
        "prefix 'a..b' has an empty word between two dots; a prefix is dot-separated words of "
        "[a-z0-9_]");
}

TEST_CASE("validate_name allows upper case and '-', refuses paths and empty words") {
  CHECK(validate_name("App-1.Main_db").ok());
  CHECK(validate_name(std::string(63, 'x')).ok());
  CHECK_FALSE(validate_name(std::string(64, 'x')).ok());
  CHECK(problem(validate_name("")) == "database name is empty");
  CHECK(problem(validate_name("a/b")).find("contains '/'") != std::string::npos);
  CHECK(problem(validate_name("..")).find("starts with a dot") != std::string::npos);
  CHECK(problem(validate_name("a..b")).find("empty word") != std::string::npos);
  CHECK(problem(validate_name("a b")).find("a space") != std::string::npos);
  CHECK(problem(validate_name("a\\b")).find("'\\'") != std::string::npos);
  CHECK(problem(validate_name("a\nb")).find("byte 0x0a") != std::string::npos);
}

TEST_CASE("resolve_name prefixes once") {
  CHECK(*resolve_name("test", "app") == "test.app");
  CHECK(*resolve_name("test.payment", "app") == "test.payment.app");
  CHECK(*resolve_name("test", "test.app") == "test.app");
  CHECK(*resolve_name("test.payment", "test.payment.app") == "test.payment.app");
  CHECK(*resolve_name("", "app") == "app");
  // Only the whole prefix followed by a dot counts as already prefixed.
  CHECK(*resolve_name("test", "testing") == "test.testing");
  CHECK(*resolve_name("test.payment", "test.app") == "test.payment.test.app");
  CHECK(*resolve_name("test", "test") == "test.test");
  // Idempotent.
  CHECK(*resolve_name("test", *resolve_name("test", "app")) == "test.app");
}

TEST_CASE("resolve_name validates both parts and the result") {
  CHECK(problem(resolve_name("../x", "app")).find("prefix '../x'") != std::string::npos);
  CHECK(problem(resolve_name("Test", "app")).find("uppercase") != std::string::npos);
  CHECK(problem(resolve_name("test", "a/b")).find("contains '/'") != std::string::npos);
  CHECK(problem(resolve_name("test", "")).find("empty") != std::string::npos);
  CHECK(problem(resolve_name("test", std::string(60, 'a'))).find("at most 63") !=
        std::string::npos);
}

TEST_CASE("db_name_to_path builds FOLDER/NAME.db and never leaves the folder") {
  CHECK(*db_name_to_path("/var/lib/dbmgr", "app") == "/var/lib/dbmgr/app.db");
  CHECK(*db_name_to_path("/var/lib/dbmgr/", "app") == "/var/lib/dbmgr/app.db");
  CHECK(*db_name_to_path("/var/lib/./dbmgr//x/..", "test.app") == "/var/lib/dbmgr/test.app.db");
  CHECK(*db_name_to_path(".", "app") == "./app.db");
  CHECK(*db_name_to_path("", "app") == "./app.db");
  CHECK(*db_name_to_path("./", "app") == "./app.db");
  CHECK(*db_name_to_path("data", "app") == "data/app.db");
  CHECK(*db_name_to_path("./data/", "app") == "data/app.db");
  CHECK(*db_name_to_path("../shared", "app") == "../shared/app.db");
  CHECK(*db_name_to_path("/", "app") == "/app.db");
  for (const char* bad : {"../x", "a/b", "/etc/passwd", "..", ".", "", "a..b", "x/../../y"}) {
    auto r = db_name_to_path("/srv/db", bad);
    CHECK_MESSAGE(!r.ok(), bad);
  }
}

TEST_CASE("database_uri for SQLite uses the path with three slashes") {
  DatabaseConfig db;
  db.path = "/srv/db";
  CHECK(database_uri(db, "test.app") == "sqlite:////srv/db/test.app.db");
  db.path = ".";
  CHECK(database_uri(db, "app") == "sqlite:///./app.db");
  db.path = "data";
  CHECK(database_uri(db, "app") == "sqlite:///data/app.db");
}

TEST_CASE("database_uri for PostgreSQL masks the password") {
  DatabaseConfig db = server(DbType::kPostgresql);
  db.port = 5432;
  db.sslmode = "require";
  CHECK(database_uri(db, "main") == "postgresql://app:***@db.example:5432/main?sslmode=require");
  db.port = 0;
  db.sslmode.clear();
  CHECK(database_uri(db, "main") == "postgresql://app:***@db.example/main");
  db.password = Secret();
  CHECK(database_uri(db, "main") == "postgresql://app@db.example/main");
  db.user.clear();
  CHECK(database_uri(db, "main") == "postgresql://db.example/main");
  db.host = "::1";
  db.port = 5433;
  CHECK(database_uri(db, "main") == "postgresql://[::1]:5433/main");
}

TEST_CASE("database_uri puts a PostgreSQL socket folder in the query, encoded") {
  DatabaseConfig db = server(DbType::kPostgresql);
  db.host = "/tmp/x";
  CHECK(database_uri(db, "name") == "postgresql://app:***@/name?host=/tmp/x");
  db.port = 5433;
  db.sslmode = "disable";
  db.host = "/tmp/my sockets&co";
  CHECK(database_uri(db, "name") ==
        "postgresql://app:***@/name?host=/tmp/my+sockets%26co&port=5433&sslmode=disable");
}

TEST_CASE("database_uri encodes user and database names") {
  DatabaseConfig db = server(DbType::kPostgresql);
  db.user = "a@b:c/d";
  CHECK(database_uri(db, "my db") == "postgresql://a%40b%3Ac%2Fd:***@db.example/my%20db");
}

TEST_CASE("database_uri for MySQL, MariaDB and MSSQL") {
  DatabaseConfig my = server(DbType::kMysql);
  my.port = 3306;
  CHECK(database_uri(my, "shop") == "mysql://app:***@db.example:3306/shop");
  DatabaseConfig maria = server(DbType::kMariadb);
  maria.port = 3306;
  maria.driver = "MariaDB Unicode";
  CHECK(database_uri(maria, "shop") ==
        "mariadb://app:***@db.example:3306/shop?driver=MariaDB+Unicode");
  maria.host = "/run/mysqld/mysqld.sock";
  maria.port = 0;
  maria.driver.clear();
  CHECK(database_uri(maria, "shop") ==
        "mariadb://app:***@/shop?unix_socket=/run/mysqld/mysqld.sock");
  DatabaseConfig ms = server(DbType::kMssql);
  ms.port = 1433;
  ms.driver = "ODBC Driver 18 for SQL Server";
  CHECK(database_uri(ms, "Ledger") ==
        "mssql+odbc://app:***@db.example:1433/Ledger?driver=ODBC+Driver+18+for+SQL+Server");
}

TEST_CASE("no URI ever contains the password") {
  for (DbType t :
       {DbType::kSqlite, DbType::kPostgresql, DbType::kMysql, DbType::kMariadb, DbType::kMssql}) {
    DatabaseConfig db = server(t);
    db.password = Secret("hunter2");
    CHECK(database_uri(db, "x").find("hunter2") == std::string::npos);
    CHECK(get_database_info(db, "x").uri.find("hunter2") == std::string::npos);
  }
}

TEST_CASE("pk_type per dialect") {
  auto check = [](PkType p, const char* name, const char* column) {
    CHECK(p.name == name);
    CHECK(p.column_type == column);
  };
  check(pk_type(DbType::kSqlite), "String", "TEXT");
  check(pk_type(DbType::kPostgresql), "UUID", "UUID");
  check(pk_type(DbType::kMssql), "UUID", "UNIQUEIDENTIFIER");
  check(pk_type(DbType::kMysql, "8.0.36"), "UUID", "CHAR(36)");
  check(pk_type(DbType::kMariadb, "10.11.6-MariaDB"), "UUID", "UUID");
  check(pk_type(DbType::kMariadb, "10.7.0-MariaDB"), "UUID", "UUID");
  check(pk_type(DbType::kMariadb, "11.2.2-MariaDB"), "UUID", "UUID");
  check(pk_type(DbType::kMariadb, "10.6.16-MariaDB"), "UUID", "CHAR(36)");
  check(pk_type(DbType::kMariadb, "5.5.5-10.11.6-MariaDB"), "UUID", "UUID");
  check(pk_type(DbType::kMariadb, ""), "UUID", "CHAR(36)");
  check(pk_type(DbType::kMariadb, "garbage"), "UUID", "CHAR(36)");
  // A MySQL-configured connection to a MariaDB server gets MariaDB's type.
  check(pk_type(DbType::kMysql, "10.11.6-MariaDB"), "UUID", "UUID");
}

TEST_CASE("get_database_info gathers type, name, uri and pk") {
  DatabaseConfig db = server(DbType::kMariadb);
  DatabaseInfo info = get_database_info(db, "test.app", "10.11.6-MariaDB");
  CHECK(info.type == DbType::kMariadb);
  CHECK(info.name == "test.app");
  CHECK(info.uri == "mariadb://app:***@db.example/test.app");
  CHECK(info.pk.column_type == "UUID");
}

TEST_CASE("db types print and parse") {
  CHECK(to_string(DbType::kPostgresql) == "postgresql");
  CHECK(to_string(DbType::kMssql) == "mssql");
  CHECK(parse_db_type("postgres") == DbType::kPostgresql);
  CHECK(parse_db_type("PostgreSQL") == DbType::kPostgresql);
  CHECK(parse_db_type("sqlite3") == DbType::kSqlite);
  CHECK(parse_db_type("mariadb") == DbType::kMariadb);
  CHECK(parse_db_type("mysql") == DbType::kMysql);
  CHECK(parse_db_type("oracle") == std::nullopt);
  for (DbType t :
       {DbType::kSqlite, DbType::kPostgresql, DbType::kMysql, DbType::kMariadb, DbType::kMssql}) {
    CHECK(parse_db_type(to_string(t)) == t);
  }
}

TEST_CASE("PrefixPolicy::allows_create matches whole words") {
  PrefixPolicy p;
  CHECK(p.allows_create("test"));
  CHECK(p.allows_create("test.payment"));
  CHECK_FALSE(p.allows_create("testing"));
  CHECK_FALSE(p.allows_create("prod"));
  CHECK_FALSE(p.allows_create(""));
  p.create_on_demand = {"ci.build"};
  CHECK(p.allows_create("ci.build.42"));
  CHECK_FALSE(p.allows_create("ci"));
  CHECK_FALSE(p.allows_create("test"));
}

TEST_CASE("Settings::find_database") {
  Settings s;
  s.default_database.path = "/srv/db";
  s.default_database.name = "app";
  DatabaseConfig main;
  main.key = "main";
  main.type = DbType::kPostgresql;
  main.name = "main_db";
  s.databases["main"] = main;

  CHECK(s.find_database("")->name == "app");
  CHECK(s.find_database("main")->name == "main_db");
  auto other = s.find_database("test.other");
  REQUIRE(other.has_value());
  CHECK(other->type == DbType::kSqlite);
  CHECK(other->name == "test.other");
  CHECK(other->key == "test.other");
  CHECK(other->path == "/srv/db");
  CHECK_FALSE(s.find_database("../etc/passwd").has_value());

  s.default_database.type = DbType::kPostgresql;
  s.default_database.host = "/run/postgresql";
  auto unknown = s.find_database("unknown");
  REQUIRE(unknown.has_value());  // another database on the default server
  CHECK(unknown->type == DbType::kPostgresql);
  CHECK(unknown->name == "unknown");
  CHECK(unknown->host == "/run/postgresql");
  CHECK_FALSE(s.find_database("bad name").has_value());
  CHECK(s.find_database("main").has_value());
}
