// Which one-shot SQL may join a SQLite group commit (SqliteConn::groupable_sql).
#include <doctest/doctest.h>

#include "backend/sqlite/sqlite_conn.hpp"

using dbmgr::daemon::SqliteConn;

TEST_CASE("plain DML statements are groupable") {
  CHECK(SqliteConn::groupable_sql("INSERT INTO t VALUES (1)"));
  CHECK(SqliteConn::groupable_sql("  insert into t values (?)  ;  "));
  CHECK(SqliteConn::groupable_sql("UPDATE t SET a = 1 WHERE id = ?"));
  CHECK(SqliteConn::groupable_sql("delete from t"));
  CHECK(SqliteConn::groupable_sql("REPLACE INTO t VALUES (1)"));
  CHECK(SqliteConn::groupable_sql("INSERT OR IGNORE INTO t VALUES (1) RETURNING id"));
  CHECK(SqliteConn::groupable_sql("WITH x(a) AS (SELECT 1) INSERT INTO t SELECT a FROM x"));
  CHECK(SqliteConn::groupable_sql("-- a comment\n/* another; */ INSERT INTO t VALUES (';')"));
  CHECK(SqliteConn::groupable_sql("INSERT INTO t VALUES ('it''s; fine', \"a;b\", [c;d], `e;f`)"));
  CHECK(SqliteConn::groupable_sql("INSERT INTO t VALUES (1); -- trailing comment"));
  CHECK(SqliteConn::groupable_sql("INSERT INTO t VALUES (1);;"));
}

TEST_CASE("everything else runs alone") {
  for (const char* sql : {
           "SELECT 1", "BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT a", "RELEASE a", "END",
           "PRAGMA user_version = 3", "VACUUM", "ATTACH 'x.db' AS x", "DETACH x",
           "CREATE TABLE t (a)", "DROP TABLE t", "ALTER TABLE t ADD b", "CREATE INDEX i ON t(a)",
           "ANALYZE", "REINDEX", "EXPLAIN INSERT INTO t VALUES (1)", "", "   ", "-- only",
           "INSERT INTO t VALUES (1); INSERT INTO t VALUES (2)",
           "INSERT INTO t VALUES (1); COMMIT", "DELETE FROM t; BEGIN",
           "INSERT INTO t VALUES ('unterminated", "INSERT INTO t /* unterminated",
           "INSERTX INTO t VALUES (1)", "UPDATES t"}) {
    CAPTURE(sql);
    CHECK_FALSE(SqliteConn::groupable_sql(sql));
  }
}

TEST_CASE("read-only SQL (one-shots of it run on a reader)") {
  for (const char* sql : {"SELECT 1", "  select * from t where x = ';'", "VALUES (1), (2)",
                          "WITH c(x) AS (SELECT 1) SELECT x FROM c",
                          "WITH c(x) AS (SELECT 'insert') SELECT x FROM c;",
                          "/* c */ SELECT \"update\" FROM t -- delete"}) {
    CAPTURE(sql);
    CHECK(SqliteConn::read_only_sql(sql));
  }
  for (const char* sql : {"INSERT INTO t VALUES (1)", "WITH c(x) AS (SELECT 1) INSERT INTO t SELECT x FROM c",
                          "WITH c AS (SELECT 1) DELETE FROM t", "SELECT 1; DELETE FROM t",
                          "PRAGMA user_version = 3", "SELECT 'unterminated", "EXPLAIN SELECT 1",
                          "BEGIN", ""}) {
    CAPTURE(sql);
    CHECK_FALSE(SqliteConn::read_only_sql(sql));
  }
}
