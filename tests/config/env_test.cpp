// Tests of config::apply_env: every DATABASE_* variable and DBMGR_SOCKET.
#include <doctest/doctest.h>

#include <string>

#include "dbmgr/config/config.hpp"
#include "test_util.hpp"

using namespace dbmgr::config;
using dbmgr::config::testing::fake_env;
using dbmgr::config::testing::TempDir;

namespace {

Settings env_applied(std::map<std::string, std::string> vars, Settings base = {}) {
  auto r = apply_env(std::move(base), fake_env(std::move(vars)));
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().to_string()));
  return *r;
}

Error env_error(std::map<std::string, std::string> vars) {
  auto r = apply_env(Settings{}, fake_env(std::move(vars)));
  REQUIRE_FALSE(r.ok());
  return r.error();
}

}  // namespace

TEST_CASE("no environment leaves the settings alone") {
  Settings s = env_applied({});
  CHECK(s.default_database == Settings{}.default_database);
  CHECK(s.socket_path == "/run/dbmgr/dbmgrd.sock");
}

TEST_CASE("DATABASE_TYPE") {
  CHECK(env_applied({{"DATABASE_TYPE", "mariadb"}, {"DATABASE_NAME", "x"}}).default_database.type ==
        DbType::kMariadb);
  CHECK(
      env_applied({{"DATABASE_TYPE", "postgres"}, {"DATABASE_NAME", "x"}}).default_database.type ==
      DbType::kPostgresql);
  Error e = env_error({{"DATABASE_TYPE", "oracle"}});
  CHECK(e.key == "DATABASE_TYPE");
  CHECK(e.message.find("'oracle'") != std::string::npos);
  CHECK(e.file.empty());
  CHECK(e.to_string().rfind("DATABASE_TYPE: unknown database type 'oracle'", 0) == 0);
}

TEST_CASE("a server type needs DATABASE_NAME") {
  Error e = env_error({{"DATABASE_TYPE", "postgresql"}});
  CHECK(e.key == "DATABASE_NAME");
  CHECK(e.message.find("needs a name") != std::string::npos);
}

TEST_CASE("DATABASE_NAME") {
  CHECK(env_applied({{"DATABASE_NAME", "app"}}).default_database.name == "app");
  // A SQLite name is a file stem: no paths.
  Error e = env_error({{"DATABASE_NAME", "../etc/x"}});
  CHECK(e.key == "DATABASE_NAME");
}

TEST_CASE("DATABASE_PATH, DATABASE_USER, DATABASE_HOST") {
  Settings s = env_applied(
      {{"DATABASE_PATH", "/srv/db"}, {"DATABASE_USER", "bob"}, {"DATABASE_HOST", "pg.local"}});
  CHECK(s.default_database.path == "/srv/db");
  CHECK(s.default_database.user == "bob");
  CHECK(s.default_database.host == "pg.local");
}

TEST_CASE("an empty variable counts as unset") {
  Settings base;
  base.default_database.host = "from-file";
  CHECK(env_applied({{"DATABASE_HOST", ""}}, base).default_database.host == "from-file");
}

TEST_CASE("DATABASE_PORT is an integer 1..65535") {
  CHECK(env_applied({{"DATABASE_PORT", "5433"}}).default_database.port == 5433);
  CHECK(env_applied({{"DATABASE_PORT", "1"}}).default_database.port == 1);
  CHECK(env_applied({{"DATABASE_PORT", "65535"}}).default_database.port == 65535);
  for (const char* bad : {"0", "65536", "-1", "54x", "abc", " 5432", "5432.0"}) {
    auto r = apply_env(Settings{}, fake_env({{"DATABASE_PORT", bad}}));
    REQUIRE_MESSAGE(!r.ok(), bad);
    CHECK(r.error().key == "DATABASE_PORT");
  }
}

TEST_CASE("DATABASE_DRIVER names the ODBC driver") {
  CHECK(env_applied({{"DATABASE_DRIVER", "ODBC Driver 18 for SQL Server"}}).default_database.driver ==
        "ODBC Driver 18 for SQL Server");
  CHECK(env_applied({}).default_database.driver.empty());
}

TEST_CASE("DATABASE_SSL takes an sslmode or a boolean") {
  for (const char* mode : {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}) {
    CHECK(env_applied({{"DATABASE_SSL", mode}}).default_database.sslmode == mode);
  }
  CHECK(env_applied({{"DATABASE_SSL", "true"}}).default_database.sslmode == "require");
  CHECK(env_applied({{"DATABASE_SSL", "1"}}).default_database.sslmode == "require");
  CHECK(env_applied({{"DATABASE_SSL", "false"}}).default_database.sslmode == "disable");
  CHECK(env_applied({{"DATABASE_SSL", "0"}}).default_database.sslmode == "disable");
  CHECK(env_applied({{"DATABASE_SSL", "REQUIRE"}}).default_database.sslmode == "require");
  Error e = env_error({{"DATABASE_SSL", "maybe"}});
  CHECK(e.key == "DATABASE_SSL");
  CHECK(e.message.find("verify-full") != std::string::npos);
}

TEST_CASE("DATABASE_PASSWORD") {
  Settings s = env_applied({{"DATABASE_PASSWORD", "pw-from-env"}});
  CHECK(s.default_database.password.reveal() == "pw-from-env");
}

TEST_CASE("DATABASE_PASSWORD_FILE reads the file and strips the trailing newline") {
  TempDir dir;
  std::string f = dir.write("pw", "file-secret\n");
  CHECK(env_applied({{"DATABASE_PASSWORD_FILE", f}}).default_database.password.reveal() ==
        "file-secret");
  f = dir.write("pw-crlf", "crlf-secret\r\n");
  CHECK(env_applied({{"DATABASE_PASSWORD_FILE", f}}).default_database.password.reveal() ==
        "crlf-secret");
  f = dir.write("pw-inner", "in ner\nline");
  CHECK(env_applied({{"DATABASE_PASSWORD_FILE", f}}).default_database.password.reveal() ==
        "in ner\nline");
}

TEST_CASE("DATABASE_PASSWORD_FILE that cannot be read is an error naming the variable") {
  TempDir dir;
  Error e = env_error({{"DATABASE_PASSWORD_FILE", dir.path() + "/missing"}});
  CHECK(e.key == "DATABASE_PASSWORD_FILE");
  CHECK(e.message.find("No such file") != std::string::npos);
  CHECK(e.message.find(dir.path() + "/missing") != std::string::npos);
}

TEST_CASE("DATABASE_PASSWORD and DATABASE_PASSWORD_FILE together are refused, quietly") {
  TempDir dir;
  std::string f = dir.write("pw", "file-secret\n");
  Error e = env_error({{"DATABASE_PASSWORD", "env-secret"}, {"DATABASE_PASSWORD_FILE", f}});
  CHECK(e.key == "DATABASE_PASSWORD_FILE");
  CHECK(e.to_string().find("env-secret") == std::string::npos);
  CHECK(e.to_string().find("file-secret") == std::string::npos);
}

TEST_CASE("DBMGR_SOCKET sets the socket path") {
  CHECK(env_applied({{"DBMGR_SOCKET", "/tmp/d.sock"}}).socket_path == "/tmp/d.sock");
}

TEST_CASE("the environment applies to the default database only") {
  Settings base;
  DatabaseConfig other;
  other.key = "other";
  other.type = DbType::kPostgresql;
  other.name = "other";
  other.host = "file-host";
  base.databases["other"] = other;
  Settings s = env_applied({{"DATABASE_HOST", "env-host"}}, base);
  CHECK(s.default_database.host == "env-host");
  CHECK(s.databases.at("other").host == "file-host");
}

TEST_CASE("a PostgreSQL default from the environment, URI masked") {
  Settings s = env_applied({{"DATABASE_TYPE", "postgresql"},
                            {"DATABASE_NAME", "main"},
                            {"DATABASE_USER", "app"},
                            {"DATABASE_PASSWORD", "pw-from-env"},
                            {"DATABASE_HOST", "/run/postgresql"},
                            {"DATABASE_PORT", "5433"},
                            {"DATABASE_SSL", "false"}});
  CHECK(database_uri(s.default_database, s.default_database.name) ==
        "postgresql://app:***@/main?host=/run/postgresql&port=5433&sslmode=disable");
}
