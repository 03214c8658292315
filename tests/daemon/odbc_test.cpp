// The ODBC engine's pieces that need no server: connection strings (escaping, masking, each
// driver family), CREATE DATABASE statements, identifier quoting, the dialects, PK types,
// and the session-state classification of MariaDB and SQL Server statements. SQL Server is
// tested only this far here: no server can run on this machine (README, "MSSQL").
#include <doctest/doctest.h>

#include "backend/driver.hpp"
#include "backend/odbc/odbc_connstr.hpp"
#include "backend/sql_scan.hpp"

using namespace dbmgr;
using namespace dbmgr::daemon;

namespace {

config::DatabaseConfig db(config::DbType type) {
  config::DatabaseConfig c;
  c.type = type;
  c.name = "app";
  c.user = "svc";
  c.password = config::Secret("s3cr;et}pw");
  return c;
}

}  // namespace

TEST_CASE("ODBC values are escaped with braces and doubled closing braces") {
  CHECK(odbc::escape_value("plain") == "plain");
  CHECK(odbc::escape_value("a;b") == "{a;b}");
  CHECK(odbc::escape_value("x}y") == "{x}}y}");
  CHECK(odbc::escape_value("{start") == "{{start}");
  CHECK(odbc::escape_value("k=v") == "{k=v}");
  CHECK(odbc::escape_value(" padded ") == "{ padded }");
  CHECK(odbc::escape_value("") == "");
}

TEST_CASE("MariaDB connection strings: socket or host, the password escaped and masked") {
  auto c = db(config::DbType::kMariadb);
  c.host = "/run/mysqld/mysqld.sock";
  auto s = odbc::connection_string(c, "test.app");
  CHECK(s.text.rfind("DRIVER={MariaDB Unicode};", 0) == 0);
  CHECK(s.text.find("SOCKET=/run/mysqld/mysqld.sock;") != std::string::npos);
  CHECK(s.text.find("SERVER=") == std::string::npos);
  CHECK(s.text.find("DATABASE=test.app;") != std::string::npos);
  CHECK(s.text.find("UID=svc;") != std::string::npos);
  CHECK(s.text.find("PWD={s3cr;et}}pw};") != std::string::npos);
  CHECK(s.text.find("CHARSET=utf8mb4;") != std::string::npos);
  CHECK(s.masked.find("PWD=***;") != std::string::npos);
  CHECK(s.masked.find("s3cr") == std::string::npos);

  c.host = "db.internal";
  c.port = 3307;
  c.sslmode = "verify-full";
  s = odbc::connection_string(c, "app");
  CHECK(s.text.find("SERVER=db.internal;PORT=3307;") != std::string::npos);
  CHECK(s.text.find("FORCETLS=1;") != std::string::npos);
  CHECK(s.text.find("SSLVERIFY=1;") != std::string::npos);
  // Without a database: the server only (to create one on demand).
  s = odbc::connection_string(c, "");
  CHECK(s.text.find("DATABASE=") == std::string::npos);
  // A driver given by library path goes without braces.
  c.driver = "/usr/lib/x86_64-linux-gnu/odbc/libmaodbc.so";
  s = odbc::connection_string(c, "app");
  CHECK(s.text.rfind("DRIVER=/usr/lib/x86_64-linux-gnu/odbc/libmaodbc.so;", 0) == 0);
}

TEST_CASE("MSSQL connection strings for FreeTDS and for Microsoft's driver") {
  auto c = db(config::DbType::kMssql);
  c.host = "sql.internal";
  CHECK(odbc::target_for(config::DbType::kMssql, "") == odbc::Target::kMssqlFreetds);
  CHECK(odbc::target_for(config::DbType::kMssql, "ODBC Driver 18 for SQL Server") ==
        odbc::Target::kMssqlMicrosoft);
  CHECK(odbc::target_for(config::DbType::kMariadb, "FreeTDS") == odbc::Target::kMariadb);
  auto s = odbc::connection_string(c, "Ledger");
  CHECK(s.text.rfind("DRIVER={FreeTDS};", 0) == 0);
  CHECK(s.text.find("SERVER=sql.internal;PORT=1433;DATABASE=Ledger;") != std::string::npos);
  CHECK(s.text.find("TDS_Version=7.4;") != std::string::npos);
  CHECK(s.text.find("ClientCharset=UTF-8;") != std::string::npos);
  CHECK(s.masked.find("PWD=***;") != std::string::npos);
  CHECK(s.masked.find("s3cr") == std::string::npos);

  c.driver = "ODBC Driver 18 for SQL Server";
  c.port = 14330;
  s = odbc::connection_string(c, "Ledger");
  CHECK(s.text.rfind("DRIVER={ODBC Driver 18 for SQL Server};", 0) == 0);
  CHECK(s.text.find("Server=tcp:sql.internal,14330;Database=Ledger;") != std::string::npos);
  CHECK(s.text.find("Encrypt=no;") != std::string::npos);
  c.sslmode = "require";
  s = odbc::connection_string(c, "Ledger");
  CHECK(s.text.find("Encrypt=yes;TrustServerCertificate=yes;") != std::string::npos);
  c.sslmode = "verify-full";
  s = odbc::connection_string(c, "Ledger");
  CHECK(s.text.find("Encrypt=yes;TrustServerCertificate=no;") != std::string::npos);
}

TEST_CASE("CREATE DATABASE on demand, quoted for each server") {
  CHECK(odbc::create_database_sql(config::DbType::kMariadb, "test.app") ==
        "CREATE DATABASE IF NOT EXISTS `test.app`");
  CHECK(odbc::create_database_sql(config::DbType::kMariadb, "we`ird") ==
        "CREATE DATABASE IF NOT EXISTS `we``ird`");
  CHECK(odbc::create_database_sql(config::DbType::kMssql, "test.app") ==
        "IF DB_ID(N'test.app') IS NULL CREATE DATABASE [test.app]");
  CHECK(odbc::create_database_sql(config::DbType::kMssql, "o'b]x") ==
        "IF DB_ID(N'o''b]x') IS NULL CREATE DATABASE [o'b]]x]");
}

TEST_CASE("dialects: identifier quoting, read-only transactions, PK types") {
  const Dialect& maria = driver_for(config::DbType::kMariadb).dialect();
  const Dialect& mssql = driver_for(config::DbType::kMssql).dialect();
  const Dialect& pg = driver_for(config::DbType::kPostgresql).dialect();
  const Dialect& lite = driver_for(config::DbType::kSqlite).dialect();
  CHECK(maria.quote_ident("a`b") == "`a``b`");
  CHECK(mssql.quote_ident("a]b") == "[a]]b]");
  CHECK(pg.quote_ident("a\"b") == "\"a\"\"b\"");
  CHECK(maria.begin_read_only == "START TRANSACTION READ ONLY");
  CHECK(mssql.begin_read_only.empty());  // refused, not allowed to write
  CHECK(lite.begin_read_write == "BEGIN IMMEDIATE");
  CHECK(driver_for(config::DbType::kMysql).name() == "odbc");
  CHECK(driver_for(config::DbType::kMariadb).info_needs_server());
  CHECK_FALSE(driver_for(config::DbType::kPostgresql).info_needs_server());
  CHECK_FALSE(driver_for(config::DbType::kMariadb).group_commit());
  CHECK(driver_for(config::DbType::kSqlite).group_commit());

  auto info = [](config::DbType t, std::string_view version) {
    config::DatabaseConfig c;
    c.type = t;
    c.name = "x";
    return config::get_database_info(c, "x", version).pk;
  };
  CHECK(info(config::DbType::kMssql, "").column_type == "UNIQUEIDENTIFIER");
  CHECK(info(config::DbType::kMariadb, "10.11.6-MariaDB-0+deb12u1").column_type == "UUID");
  CHECK(info(config::DbType::kMariadb, "10.6.18-MariaDB").column_type == "CHAR(36)");
  CHECK(info(config::DbType::kMariadb, "").column_type == "CHAR(36)");
  CHECK(info(config::DbType::kMysql, "8.0.36").column_type == "CHAR(36)");
}

TEST_CASE("MariaDB statements that change session state") {
  auto dirty = [](std::string_view sql) {
    return sqlscan::changes_session_state(sql, SqlLexing::kMysql);
  };
  CHECK(dirty("SET @x = 1"));
  CHECK(dirty("set session sql_mode = ''"));
  CHECK(dirty("SET NAMES latin1"));
  CHECK_FALSE(dirty("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"));
  CHECK(dirty("USE other"));
  CHECK(dirty("CREATE TEMPORARY TABLE t (x INT)"));
  CHECK(dirty("SELECT GET_LOCK('k', 1)"));
  CHECK(dirty("SELECT @n := @n + 1 FROM t"));
  CHECK(dirty("SELECT x INTO @v FROM t"));
  CHECK(dirty("PREPARE s FROM 'SELECT 1'"));
  CHECK(dirty("LOCK TABLES t WRITE"));
  CHECK(dirty("/* lead */ SET @a = 2"));
  CHECK_FALSE(dirty("SELECT @@version"));
  CHECK_FALSE(dirty("SELECT '@x', \"SET @y\", `@z` FROM t"));
  CHECK_FALSE(dirty("SELECT 'it\\'s @x' FROM t"));  // backslash escapes in MySQL strings
  CHECK_FALSE(dirty("SELECT 1 # @x in a comment"));
  CHECK_FALSE(dirty("INSERT INTO t VALUES (?, 'temporary')"));
  CHECK_FALSE(dirty("UPDATE accounts SET balance = balance + ? WHERE id = ?"));
}

TEST_CASE("SQL Server statements that change session state") {
  auto dirty = [](std::string_view sql) {
    return sqlscan::changes_session_state(sql, SqlLexing::kMssql);
  };
  CHECK(dirty("SET LANGUAGE French"));
  CHECK(dirty("CREATE TABLE #work (x INT)"));
  CHECK(dirty("SELECT * INTO #copy FROM t"));
  CHECK(dirty("EXEC sp_getapplock @Resource = 'k', @LockMode = 'Exclusive'"));
  CHECK_FALSE(dirty("SELECT [#x], '#y' FROM t WHERE a = @p"));  // @p is a batch variable
}

TEST_CASE("the shared lexer per dialect") {
  std::string b;
  CHECK(sqlscan::blank_opaque("SELECT 'a;b' -- c\n; x", SqlLexing::kMysql, b));
  CHECK(b.find("a;b") == std::string::npos);
  CHECK_FALSE(sqlscan::single_statement("SELECT 1; SELECT 2", SqlLexing::kMysql));
  CHECK(sqlscan::single_statement("SELECT ';' ; -- trailing\n", SqlLexing::kMysql));
  CHECK(sqlscan::single_statement("SELECT $$;$$", SqlLexing::kPostgres));
  CHECK_FALSE(sqlscan::single_statement("SELECT $$;$$", SqlLexing::kMysql));
  CHECK(sqlscan::single_statement("SELECT [a;b]", SqlLexing::kMssql));
  CHECK_FALSE(sqlscan::blank_opaque("SELECT 'open", SqlLexing::kSqlite, b));
  CHECK(sqlscan::single_statement("SELECT /* /* nested */ ; */ 1", SqlLexing::kPostgres));
  CHECK_FALSE(sqlscan::single_statement("SELECT /* /* nested */ ; */ 1", SqlLexing::kSqlite));
}
