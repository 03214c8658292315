// `?` placeholder rewriting and session-state detection for PostgreSQL.
#include <doctest/doctest.h>

#include "backend/postgres/pg_sql.hpp"

using namespace dbmgr::daemon::pgsql;

TEST_CASE("? becomes $n in order, outside literals, identifiers, dollar quotes and comments") {
  CHECK(rewrite_placeholders("SELECT ?, ?") == "SELECT $1, $2");
  CHECK(rewrite_placeholders("INSERT INTO t VALUES (?, '?', ?)") == "INSERT INTO t VALUES ($1, '?', $2)");
  CHECK(rewrite_placeholders("SELECT 'it''s ?' , ?") == "SELECT 'it''s ?' , $1");
  CHECK(rewrite_placeholders("SELECT E'\\'?', ?") == "SELECT E'\\'?', $1");
  CHECK(rewrite_placeholders("SELECT \"quoted?\" FROM t WHERE a = ?") ==
        "SELECT \"quoted?\" FROM t WHERE a = $1");
  CHECK(rewrite_placeholders("SELECT $$ what? $$, ?") == "SELECT $$ what? $$, $1");
  CHECK(rewrite_placeholders("SELECT $body$ a ? b $body$ || ?") == "SELECT $body$ a ? b $body$ || $1");
  CHECK(rewrite_placeholders("SELECT ? -- why?\n, ?") == "SELECT $1 -- why?\n, $2");
  CHECK(rewrite_placeholders("SELECT /* a? /* nested? */ still? */ ?") ==
        "SELECT /* a? /* nested? */ still? */ $1");
}

TEST_CASE("native $n placeholders are accepted untouched") {
  CHECK(rewrite_placeholders("SELECT $1, $2") == "SELECT $1, $2");
  Scan s = scan("SELECT $1, $12");
  CHECK(s.max_dollar == 12);
  CHECK(s.question_marks == 0);
  // With native $n present, a ? is left alone (it is PostgreSQL's jsonb operator then).
  CHECK(rewrite_placeholders("SELECT doc ? 'k' FROM t WHERE id = $1") ==
        "SELECT doc ? 'k' FROM t WHERE id = $1");
}

TEST_CASE("scripts are told apart from one statement") {
  CHECK_FALSE(scan("SELECT 1").multi_statement);
  CHECK_FALSE(scan("SELECT 1;").multi_statement);
  CHECK_FALSE(scan("SELECT 1;  \n ").multi_statement);
  CHECK_FALSE(scan("SELECT ';' || 'x'").multi_statement);
  CHECK_FALSE(scan("CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; SELECT 2; $$ LANGUAGE sql").multi_statement);
  CHECK(scan("CREATE TABLE a(x int); INSERT INTO a VALUES (1)").multi_statement);
}

TEST_CASE("statements that change session state are recognised") {
  CHECK(changes_session_state("SET statement_timeout = 5"));
  CHECK(changes_session_state("set search_path to x"));
  CHECK_FALSE(changes_session_state("SET LOCAL statement_timeout = 5"));
  CHECK_FALSE(changes_session_state("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"));
  CHECK(changes_session_state("RESET ALL"));
  CHECK(changes_session_state("CREATE TEMP TABLE t (x int)"));
  CHECK(changes_session_state("create temporary table t (x int)"));
  CHECK(changes_session_state("CREATE GLOBAL TEMPORARY TABLE t (x int)"));
  CHECK_FALSE(changes_session_state("CREATE TABLE t (x int)"));
  CHECK(changes_session_state("SELECT pg_advisory_lock(42)"));
  CHECK_FALSE(changes_session_state("SELECT 'pg_advisory_lock(42)'"));
  CHECK(changes_session_state("PREPARE p AS SELECT 1"));
  CHECK(changes_session_state("LISTEN chan"));
  CHECK(changes_session_state("SELECT set_config('a.b', 'c', false)"));
  CHECK(changes_session_state("SELECT 1; SET work_mem = '64MB'"));
  CHECK_FALSE(changes_session_state("SELECT * FROM settings WHERE k = 'set'"));
}

TEST_CASE("statement effects: schema changes, temp tables, dropped prepared statements") {
  auto schema = [](const char* sql) { return effects(sql).schema; };
  CHECK(schema("CREATE TABLE t (x int)"));
  CHECK(schema("alter table t add column y text"));
  CHECK(schema("/* migration */ DROP TABLE t"));
  CHECK(schema("DO $$ BEGIN EXECUTE 'ALTER TABLE t ADD c int'; END $$"));
  CHECK_FALSE(schema("CALL migrate()"));
  CHECK(effects("DO $$ BEGIN PERFORM set_config('a.b', 'c', false); END $$").session_state);
  CHECK(schema("IMPORT FOREIGN SCHEMA s FROM SERVER x INTO y"));
  CHECK(schema("SELECT 1; CREATE INDEX i ON t(x)"));
  CHECK_FALSE(schema("CREATE TEMP TABLE t (x int)"));
  CHECK_FALSE(schema("ALTER ROLE app SET work_mem = '8MB'"));
  CHECK_FALSE(schema("CREATE DATABASE other"));
  CHECK_FALSE(schema("ALTER SYSTEM SET work_mem = '8MB'"));
  CHECK_FALSE(schema("ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO app"));
  CHECK_FALSE(schema("SELECT 'create table x'"));
  CHECK_FALSE(schema("INSERT INTO ddl_log VALUES ('drop')"));
  CHECK(effects("CREATE TEMPORARY TABLE t (x int)").local_schema);
  CHECK_FALSE(effects("CREATE TABLE t (x int)").local_schema);
  CHECK(effects("ROLLBACK TO SAVEPOINT sa_savepoint_1").local_schema);
  CHECK(effects("rollback to s").local_schema);
  CHECK(effects("ROLLBACK TRANSACTION TO SAVEPOINT s").local_schema);
  CHECK_FALSE(effects("ROLLBACK").local_schema);
  CHECK(effects("DISCARD TEMP").local_schema);
  CHECK(effects("DEALLOCATE ALL").drops_statements);
  CHECK(effects("deallocate prepare p").drops_statements);
  CHECK(effects("DISCARD ALL").drops_statements);
  CHECK_FALSE(effects("DISCARD PLANS").drops_statements);
  CHECK(effects("DISCARD ALL").session_state == changes_session_state("DISCARD ALL"));
  CHECK(effects("SET search_path TO x").session_state);
}

TEST_CASE("REGEXP becomes PostgreSQL's ~ outside literals and identifiers") {
  CHECK(rewrite_placeholders("SELECT email FROM u WHERE email REGEXP ?") ==
        "SELECT email FROM u WHERE email ~ $1");
  CHECK(rewrite_placeholders("SELECT 'a REGEXP b', \"regexp\", my_regexp FROM t WHERE x regexp '^a'") ==
        "SELECT 'a REGEXP b', \"regexp\", my_regexp FROM t WHERE x ~ '^a'");
}

TEST_CASE("RETURNING is found as a word outside literals, identifiers and comments") {
  using dbmgr::daemon::pgsql::scan;
  CHECK(scan("INSERT INTO t VALUES (1) RETURNING id").returning);
  CHECK(scan("update t set x = 1 returning *").returning);
  CHECK_FALSE(scan("INSERT INTO t VALUES ('returning')").returning);
  CHECK_FALSE(scan("INSERT INTO \"returning\" VALUES (1)").returning);
  CHECK_FALSE(scan("INSERT INTO t VALUES (1) -- returning id").returning);
  CHECK_FALSE(scan("SELECT returning_id FROM t").returning);
  CHECK_FALSE(scan("SELECT 1").returning);
}
