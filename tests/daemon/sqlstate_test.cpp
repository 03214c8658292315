// SQLSTATE -> category table, and SQLite errors -> SQLSTATE, checked against the SQLite that
// is installed: every SQLite error below is provoked for real through the C API and the code
// and message SQLite returned are what classify_sqlite_error() is given.
#include <doctest/doctest.h>
#include <re2/re2.h>
#include <sqlite3.h>
#include <unistd.h>

#include <climits>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "backend/sqlstate.hpp"

using dbmgr::daemon::category_of_sqlstate;
using dbmgr::daemon::classify_sqlite_error;
using dbmgr::daemon::SqliteErrorKind;
using dbmgr::daemon::SqlitePhase;
using C = dbmgr::proto::ErrorCategory;

namespace {

bool well_formed(const char* s) {
  if (s == nullptr) return false;
  std::string_view v(s);
  if (v.size() != 5) return false;
  for (char c : v) {
    if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z'))) return false;
  }
  return true;
}

// ---- a real SQLite database ----

struct Db {
  sqlite3* db = nullptr;
  int open_rc = SQLITE_OK;
  explicit Db(const std::string& path = ":memory:",
              int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) {
    open_rc = sqlite3_open_v2(path.c_str(), &db, flags, nullptr);
    if (db != nullptr) sqlite3_extended_result_codes(db, 1);
  }
  ~Db() { sqlite3_close_v2(db); }
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;
  void exec(const char* sql) {
    char* err = nullptr;
    int rc = sqlite3_exec(db, sql, nullptr, nullptr, &err);
    INFO(sql, " -> ", (err != nullptr ? err : ""));
    sqlite3_free(err);
    REQUIRE(rc == SQLITE_OK);
  }
};

struct Failure {
  int code = SQLITE_OK;  // the return code (extended: extended_result_codes is on)
  std::string message;   // sqlite3_errmsg() right after it
  SqlitePhase phase = SqlitePhase::kStep;
};

Failure capture(sqlite3* db, int rc, SqlitePhase phase) {
  Failure f;
  f.code = rc;
  f.message = sqlite3_errmsg(db);
  f.phase = phase;
  // The daemon reads sqlite3_extended_errcode(); it must agree with what the call returned.
  CHECK(sqlite3_extended_errcode(db) == rc);
  return f;
}

// Prepares and runs each statement of `sql` in turn, as the daemon does, and returns the
// first failure. Fails the test when every statement succeeds.
Failure run_failing(sqlite3* db, const std::string& sql) {
  const char* tail = sql.c_str();
  while (tail != nullptr && *tail != '\0') {
    sqlite3_stmt* stmt = nullptr;
    int rc = sqlite3_prepare_v3(db, tail, -1, 0, &stmt, &tail);
    if (rc != SQLITE_OK) return capture(db, rc, SqlitePhase::kPrepare);
    if (stmt == nullptr) continue;  // whitespace or a comment
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    }
    if (rc != SQLITE_DONE) {
      Failure f = capture(db, rc, SqlitePhase::kStep);
      sqlite3_finalize(stmt);
      return f;
    }
    sqlite3_finalize(stmt);
  }
  FAIL("no statement failed: ", sql);
  return {};
}

// The failure is the one expected (code, a piece of SQLite's message, the phase) and
// classify_sqlite_error() maps it to `state` and `category`.
void expect(const Failure& f, int code, std::string_view text, SqlitePhase phase,
            std::string_view state, C category, bool query_only = false) {
  CAPTURE(f.code);
  CAPTURE(f.message);
  CHECK(f.code == code);
  CHECK(f.message.find(text) != std::string::npos);
  CHECK(f.phase == phase);
  SqliteErrorKind k = classify_sqlite_error(f.code, f.message, f.phase, query_only);
  CHECK(std::string_view(k.sqlstate) == state);
  CHECK(k.category == category);
  CHECK(category_of_sqlstate(k.sqlstate) == k.category);
}

void expect_sql(sqlite3* db, const std::string& sql, int code, std::string_view text,
                SqlitePhase phase, std::string_view state, C category,
                bool query_only = false) {
  CAPTURE(sql);
  expect(run_failing(db, sql), code, text, phase, state, category, query_only);
}

constexpr auto kPrepare = SqlitePhase::kPrepare;
constexpr auto kStep = SqlitePhase::kStep;

// A folder under /tmp for file databases, removed with everything in it.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    std::string t = (std::filesystem::temp_directory_path() / "dbmgr-sqlstate-XXXXXX").string();
    REQUIRE(mkdtemp(t.data()) != nullptr);
    path = t;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string file(const char* name) const { return (path / name).string(); }
};

// The same message backend_sqlite.cpp's regexp() reports for a pattern RE2 refuses (that
// function is internal to the backend), so the REGEXP row is checked on a real statement.
void regexp_like_daemon(sqlite3_context* ctx, int, sqlite3_value** argv) {
  const char* pat = reinterpret_cast<const char*>(sqlite3_value_text(argv[0]));
  RE2::Options opts;
  opts.set_log_errors(false);
  RE2 re(pat != nullptr ? pat : "", opts);
  if (!re.ok()) {
    std::string msg = "invalid REGEXP pattern: " + re.error();
    sqlite3_result_error(ctx, msg.c_str(), static_cast<int>(msg.size()));
    return;
  }
  const char* text = reinterpret_cast<const char*>(sqlite3_value_text(argv[1]));
  sqlite3_result_int(ctx, RE2::PartialMatch(text != nullptr ? text : "", re) ? 1 : 0);
}

}  // namespace

TEST_SUITE("daemon") {
  TEST_CASE("SQLSTATE exact codes that differ from their class") {
    CHECK(category_of_sqlstate("25006") == C::kReadOnly);
    CHECK(category_of_sqlstate("25P03") == C::kTimeout);
    CHECK(category_of_sqlstate("25P04") == C::kTimeout);
    CHECK(category_of_sqlstate("40000") == C::kTransaction);
    CHECK(category_of_sqlstate("40002") == C::kConstraint);
    CHECK(category_of_sqlstate("40003") == C::kConnection);
    CHECK(category_of_sqlstate("42501") == C::kPermission);
    CHECK(category_of_sqlstate("55006") == C::kBusy);
    CHECK(category_of_sqlstate("55P03") == C::kBusy);
    CHECK(category_of_sqlstate("57014") == C::kCancelled);
    CHECK(category_of_sqlstate("57P01") == C::kConnection);
    CHECK(category_of_sqlstate("57P02") == C::kConnection);
    CHECK(category_of_sqlstate("57P03") == C::kConnection);
    CHECK(category_of_sqlstate("57P04") == C::kConnection);
    CHECK(category_of_sqlstate("57P05") == C::kConnection);
    CHECK(category_of_sqlstate("HYT00") == C::kTimeout);
    CHECK(category_of_sqlstate("HYT01") == C::kConnection);
    CHECK(category_of_sqlstate("HY008") == C::kCancelled);
    CHECK(category_of_sqlstate("HY001") == C::kResources);
  }

  TEST_CASE("SQLSTATE classes, row by row") {
    struct Row {
      const char* state;
      C category;
    };
    const Row rows[] = {
        // 08 connection exception
        {"08000", C::kConnection}, {"08003", C::kConnection}, {"08006", C::kConnection},
        {"08001", C::kConnection}, {"08004", C::kConnection}, {"08007", C::kConnection},
        {"08P01", C::kConnection}, {"08S01", C::kConnection},  // ODBC communication link
        // 57 operator intervention, other than the exact codes
        {"57000", C::kCancelled},
        // 22 data exception
        {"22000", C::kData}, {"22001", C::kData}, {"22003", C::kData}, {"22012", C::kData},
        {"22023", C::kData}, {"2201B", C::kData}, {"22032", C::kData}, {"22P02", C::kData},
        {"22P05", C::kData}, {"2200G", C::kData},
        // 23 integrity constraint violation
        {"23000", C::kConstraint}, {"23001", C::kConstraint}, {"23502", C::kConstraint},
        {"23503", C::kConstraint}, {"23505", C::kConstraint}, {"23514", C::kConstraint},
        {"23P01", C::kConstraint},
        // 27 triggered data change, 2B dependent objects, 44 check option, P0 PL/pgSQL
        {"27000", C::kConstraint}, {"2B000", C::kConstraint}, {"2BP01", C::kConstraint},
        {"44000", C::kConstraint}, {"P0000", C::kConstraint}, {"P0001", C::kConstraint},
        {"P0002", C::kConstraint}, {"P0003", C::kConstraint}, {"P0004", C::kConstraint},
        // 25 invalid transaction state, 0B initiation, 2D termination, 3B savepoint
        {"25000", C::kTransaction}, {"25001", C::kTransaction}, {"25002", C::kTransaction},
        {"25008", C::kTransaction}, {"25P01", C::kTransaction}, {"25P02", C::kTransaction},
        {"0B000", C::kTransaction}, {"2D000", C::kTransaction}, {"3B000", C::kTransaction},
        {"3B001", C::kTransaction},
        // 40 transaction rollback, 72 snapshot failure
        {"40001", C::kSerialization}, {"40P01", C::kSerialization},
        {"72000", C::kSerialization},
        // 55 object not in prerequisite state, other than 55006 and 55P03
        {"55000", C::kInvalidRequest}, {"55P02", C::kInvalidRequest},
        {"55P04", C::kInvalidRequest},
        // 28 authorization, 0L grantor, 0P role
        {"28000", C::kPermission}, {"28P01", C::kPermission}, {"0L000", C::kPermission},
        {"0LP01", C::kPermission}, {"0P000", C::kPermission},
        // 3D invalid catalog name
        {"3D000", C::kNotFound},
        // 42 and the other programming-error classes
        {"42000", C::kSyntax}, {"42601", C::kSyntax}, {"42P01", C::kSyntax},
        {"42703", C::kSyntax}, {"42883", C::kSyntax}, {"42P07", C::kSyntax},
        {"42804", C::kSyntax}, {"42S02", C::kSyntax},  // ODBC base table not found
        {"26000", C::kSyntax}, {"34000", C::kSyntax}, {"3F000", C::kSyntax},
        {"20000", C::kSyntax}, {"21000", C::kSyntax}, {"24000", C::kSyntax},
        {"2F000", C::kSyntax}, {"2F005", C::kSyntax}, {"03000", C::kSyntax},
        {"0Z000", C::kSyntax}, {"0Z002", C::kSyntax},
        // 53 insufficient resources, 54 program limit exceeded
        {"53000", C::kResources}, {"53100", C::kResources}, {"53200", C::kResources},
        {"53300", C::kResources}, {"53400", C::kResources}, {"54000", C::kResources},
        {"54001", C::kResources}, {"54011", C::kResources}, {"54023", C::kResources},
        // 58 system error
        {"58000", C::kIo}, {"58030", C::kIo}, {"58P01", C::kIo}, {"58P02", C::kIo},
        {"58P03", C::kIo},
        // 0A feature not supported
        {"0A000", C::kUnsupported},
        // internal: XX, F0, 38, 39, HV, and everything without a row
        {"XX000", C::kInternal}, {"XX001", C::kInternal}, {"XX002", C::kInternal},
        {"F0000", C::kInternal}, {"F0001", C::kInternal}, {"38000", C::kInternal},
        {"38001", C::kInternal}, {"39000", C::kInternal}, {"39P01", C::kInternal},
        {"HV000", C::kInternal}, {"HV00N", C::kInternal},
        {"00000", C::kInternal}, {"01000", C::kInternal}, {"02000", C::kInternal},
        {"09000", C::kInternal}, {"0F000", C::kInternal}, {"HY000", C::kInternal},
        {"IM002", C::kInternal}, {"ZZ999", C::kInternal}, {"99999", C::kInternal},
    };
    for (const Row& r : rows) {
      CAPTURE(r.state);
      CHECK(category_of_sqlstate(r.state) == r.category);
    }
  }

  TEST_CASE("category_of_sqlstate is total: junk gives internal, every class gives a category") {
    for (const char* junk : {"", "2", "23", "2350", "235050", "23505 ", " 23505", "23-05",
                             "23p01", "2350\x01", "42 01", "\xff\xff\xff\xff\xff"}) {
      CAPTURE(junk);
      CHECK(category_of_sqlstate(junk) == C::kInternal);
    }
    CHECK(category_of_sqlstate(std::string_view("23\0" "05", 5)) == C::kInternal);
    CHECK(category_of_sqlstate(std::string_view("23505", 4)) == C::kInternal);  // a prefix
    // Every well-formed class: a known category, and the generic code agrees with a
    // PostgreSQL-style specific code of the same class unless one of them is an exact row.
    const std::string alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    for (char a : alphabet) {
      for (char b : alphabet) {
        const std::string generic = std::string{a, b} + "000";
        const std::string specific = std::string{a, b} + "Q99";
        CAPTURE(generic);
        CHECK(dbmgr::proto::is_known(category_of_sqlstate(generic)));
        if (generic != "40000") {  // the one exact row that ends in 000
          CHECK(category_of_sqlstate(generic) == category_of_sqlstate(specific));
        }
      }
    }
    std::mt19937 rng(7);
    for (int i = 0; i < 20000; ++i) {
      std::string s(rng() % 8, '\0');
      for (char& c : s) c = static_cast<char>(rng() % 256);
      CHECK(dbmgr::proto::is_known(category_of_sqlstate(s)));
    }
  }

  TEST_CASE("classify_sqlite_error is total and always returns a SQLSTATE of the table") {
    std::vector<int> codes = {INT_MIN, -1, INT_MAX, 0x7fff, 0x10000};
    for (int c = 0; c <= 4096; ++c) codes.push_back(c);
    const char* messages[] = {"", "x", "no such table: t", "JSON", "\xff\xfe"};
    for (int code : codes) {
      for (const char* m : messages) {
        for (SqlitePhase p : {kPrepare, kStep}) {
          for (bool qo : {false, true}) {
            SqliteErrorKind k = classify_sqlite_error(code, m, p, qo);
            CAPTURE(code);
            REQUIRE(well_formed(k.sqlstate));
            CHECK(k.category == category_of_sqlstate(k.sqlstate));
          }
        }
      }
    }
    // Not an error at all is a bug in the caller: internal.
    for (int code : {SQLITE_OK, SQLITE_ROW, SQLITE_DONE}) {
      CHECK(std::string_view(classify_sqlite_error(code, "", kStep, false).sqlstate) == "XX000");
    }
  }

  TEST_CASE("SQLite result codes that cannot be provoked here, by code") {
    struct Row {
      int code;
      const char* state;
      C category;
    };
    const Row rows[] = {
        // Primary codes alone (extended result codes off) still map by family.
        {SQLITE_CONSTRAINT, "23000", C::kConstraint},
        {SQLITE_CONSTRAINT_COMMITHOOK, "23000", C::kConstraint},
        {SQLITE_CONSTRAINT_FUNCTION, "23000", C::kConstraint},
        {SQLITE_CONSTRAINT_VTAB, "23000", C::kConstraint},
        {SQLITE_CONSTRAINT_PINNED, "23000", C::kConstraint},
        {SQLITE_BUSY_RECOVERY, "55P03", C::kBusy},
        {SQLITE_BUSY_TIMEOUT, "55P03", C::kBusy},
        {SQLITE_LOCKED_SHAREDCACHE, "55P03", C::kBusy},
        {SQLITE_LOCKED_VTAB, "55P03", C::kBusy},
        {SQLITE_READONLY_RECOVERY, "58030", C::kIo},
        {SQLITE_READONLY_CANTLOCK, "58030", C::kIo},
        {SQLITE_READONLY_ROLLBACK, "58030", C::kIo},
        {SQLITE_READONLY_CANTINIT, "58030", C::kIo},
        {SQLITE_READONLY_DIRECTORY, "58030", C::kIo},
        {SQLITE_IOERR, "58030", C::kIo},
        {SQLITE_IOERR_READ, "58030", C::kIo},
        {SQLITE_IOERR_SHORT_READ, "58030", C::kIo},
        {SQLITE_IOERR_WRITE, "58030", C::kIo},
        {SQLITE_IOERR_FSYNC, "58030", C::kIo},
        {SQLITE_IOERR_TRUNCATE, "58030", C::kIo},
        {SQLITE_IOERR_LOCK, "58030", C::kIo},
        {SQLITE_IOERR_SHMMAP, "58030", C::kIo},
        {SQLITE_IOERR_CORRUPTFS, "58030", C::kIo},
        {SQLITE_IOERR_NOMEM, "53200", C::kResources},
        {SQLITE_CANTOPEN_ISDIR, "58030", C::kIo},
        {SQLITE_CANTOPEN_FULLPATH, "58030", C::kIo},
        {SQLITE_CORRUPT_INDEX, "58030", C::kIo},
        {SQLITE_CORRUPT_SEQUENCE, "58030", C::kIo},
        {SQLITE_PROTOCOL, "58030", C::kIo},
        {SQLITE_NOLFS, "58000", C::kIo},
        {SQLITE_PERM, "42501", C::kPermission},
        {SQLITE_AUTH_USER, "42501", C::kPermission},
        {SQLITE_INTERNAL, "XX000", C::kInternal},
        {SQLITE_NOTFOUND, "XX000", C::kInternal},
        {SQLITE_EMPTY, "XX000", C::kInternal},
        {SQLITE_FORMAT, "XX000", C::kInternal},
        {SQLITE_NOTICE, "XX000", C::kInternal},
        {SQLITE_WARNING, "XX000", C::kInternal},
    };
    for (const Row& r : rows) {
      CAPTURE(r.code);
      for (SqlitePhase p : {kPrepare, kStep}) {
        for (bool qo : {false, true}) {
          SqliteErrorKind k = classify_sqlite_error(r.code, "some message", p, qo);
          CHECK(std::string_view(k.sqlstate) == r.state);
          CHECK(k.category == r.category);
        }
      }
    }
  }

  TEST_CASE("real SQLite: runtime errors at step, by message") {
    Db d;
    d.exec("CREATE TABLE t(x); INSERT INTO t VALUES (1), (2)");
    // The example: an integer overflow in sum() is data, not syntax.
    expect_sql(d.db, "SELECT sum(x) FROM (SELECT 9223372036854775807 AS x UNION ALL SELECT 1)",
               SQLITE_ERROR, "integer overflow", kStep, "22003", C::kData);
    expect_sql(d.db, "SELECT abs(-9223372036854775807 - 1)", SQLITE_ERROR, "integer overflow",
               kStep, "22003", C::kData);
    expect_sql(d.db, "SELECT json('{')", SQLITE_ERROR, "malformed JSON", kStep, "22032",
               C::kData);
    expect_sql(d.db, "SELECT * FROM json_each('[1')", SQLITE_ERROR, "malformed JSON", kStep,
               "22032", C::kData);
    expect_sql(d.db, "SELECT json_extract('{}', 'nope')", SQLITE_ERROR, "JSON path error",
               kStep, "22032", C::kData);
    expect_sql(d.db, "SELECT json_object('a')", SQLITE_ERROR,
               "json_object() requires an even number of arguments", kStep, "22032", C::kData);
    // No rule matches: a runtime SQLITE_ERROR is data by default.
    expect_sql(d.db, "SELECT ntile(0) OVER () FROM t", SQLITE_ERROR,
               "argument of ntile must be a positive integer", kStep, "22000", C::kData);
    expect_sql(d.db, "SELECT load_extension('nope')", SQLITE_ERROR, "not authorized", kStep,
               "42501", C::kPermission);
    expect_sql(d.db, "DETACH nope", SQLITE_ERROR, "no such database", kStep, "42704",
               C::kSyntax);
    expect_sql(d.db, "CREATE VIRTUAL TABLE v USING nope", SQLITE_ERROR, "no such module",
               kStep, "42704", C::kSyntax);
    d.exec(
        "PRAGMA recursive_triggers = ON; CREATE TABLE rt(a);"
        "CREATE TRIGGER rtt AFTER INSERT ON rt BEGIN INSERT INTO rt VALUES (new.a + 1); END");
    expect_sql(d.db, "INSERT INTO rt VALUES (1)", SQLITE_ERROR,
               "too many levels of trigger recursion", kStep, "54001", C::kResources);
  }

  TEST_CASE("real SQLite: the daemon's REGEXP error") {
    Db d;
    REQUIRE(sqlite3_create_function_v2(d.db, "regexp", 2, SQLITE_UTF8, nullptr,
                                       &regexp_like_daemon, nullptr, nullptr,
                                       nullptr) == SQLITE_OK);
    // RE2's own text follows and quotes the pattern; the pattern must not steer the rule.
    expect_sql(d.db, "SELECT 'x' REGEXP '(no such table: syntax error'", SQLITE_ERROR,
               "invalid REGEXP pattern: missing )", kStep, "2201B", C::kData);
  }

  TEST_CASE("real SQLite: prepare errors, by message") {
    Db d;
    d.exec(
        "CREATE TABLE p(id INTEGER PRIMARY KEY, u TEXT); CREATE INDEX pu ON p(u);"
        "CREATE VIEW pv AS SELECT id FROM p;"
        "CREATE TRIGGER pt AFTER INSERT ON p BEGIN SELECT 1; END; CREATE TABLE r(a)");
    expect_sql(d.db, "SELEC 1", SQLITE_ERROR, "syntax error", kPrepare, "42601", C::kSyntax);
    expect_sql(d.db, "SELECT (1", SQLITE_ERROR, "incomplete input", kPrepare, "42601",
               C::kSyntax);
    expect_sql(d.db, "SELECT 'abc", SQLITE_ERROR, "unrecognized token", kPrepare, "42601",
               C::kSyntax);
    expect_sql(d.db, "SELECT * FROM nope", SQLITE_ERROR, "no such table", kPrepare, "42P01",
               C::kSyntax);
    expect_sql(d.db, "DROP VIEW nope", SQLITE_ERROR, "no such view", kPrepare, "42P01",
               C::kSyntax);
    expect_sql(d.db, "SELECT nope FROM p", SQLITE_ERROR, "no such column", kPrepare, "42703",
               C::kSyntax);
    expect_sql(d.db, "INSERT INTO p(nope) VALUES (1)", SQLITE_ERROR, "has no column named",
               kPrepare, "42703", C::kSyntax);
    expect_sql(d.db, "SELECT nope(1)", SQLITE_ERROR, "no such function", kPrepare, "42883",
               C::kSyntax);
    expect_sql(d.db, "SELECT abs(1, 2)", SQLITE_ERROR, "wrong number of arguments to function",
               kPrepare, "42883", C::kSyntax);
    expect_sql(d.db, "DROP INDEX nope", SQLITE_ERROR, "no such index", kPrepare, "42704",
               C::kSyntax);
    expect_sql(d.db, "DROP TRIGGER nope", SQLITE_ERROR, "no such trigger", kPrepare, "42704",
               C::kSyntax);
    expect_sql(d.db, "SELECT 'a' = 'b' COLLATE nope", SQLITE_ERROR_MISSING_COLLSEQ,
               "no such collation sequence", kPrepare, "42704", C::kSyntax);
    expect_sql(d.db, "CREATE TABLE p(x)", SQLITE_ERROR, "table p already exists", kPrepare,
               "42P07", C::kSyntax);
    expect_sql(d.db, "CREATE INDEX pu ON p(u)", SQLITE_ERROR, "index pu already exists",
               kPrepare, "42P07", C::kSyntax);
    expect_sql(d.db, "CREATE VIEW pv AS SELECT 1", SQLITE_ERROR, "view pv already exists",
               kPrepare, "42P07", C::kSyntax);
    expect_sql(d.db, "CREATE TRIGGER pt AFTER INSERT ON p BEGIN SELECT 1; END", SQLITE_ERROR,
               "trigger pt already exists", kPrepare, "42P07", C::kSyntax);
    expect_sql(d.db, "ALTER TABLE r RENAME TO p", SQLITE_ERROR,
               "there is already another table or index with this name", kPrepare, "42P07",
               C::kSyntax);
    expect_sql(d.db, "CREATE TABLE z(a, a)", SQLITE_ERROR, "duplicate column name", kPrepare,
               "42701", C::kSyntax);
    expect_sql(d.db, "SELECT id FROM p, p AS q", SQLITE_ERROR, "ambiguous column name",
               kPrepare, "42702", C::kSyntax);
    expect_sql(d.db, "SELECT id FROM p WHERE sum(id) > 1", SQLITE_ERROR,
               "misuse of aggregate function sum()", kPrepare, "42803", C::kSyntax);
    expect_sql(d.db, "SELECT sum(id) AS s FROM p WHERE s > 1", SQLITE_ERROR,
               "misuse of aggregate: sum()", kPrepare, "42803", C::kSyntax);
    expect_sql(d.db, "SELECT id FROM p GROUP BY sum(id)", SQLITE_ERROR,
               "aggregate functions are not allowed in the GROUP BY clause", kPrepare, "42803",
               C::kSyntax);
    expect_sql(d.db, "SELECT id FROM p WHERE row_number() OVER () > 1", SQLITE_ERROR,
               "misuse of window function", kPrepare, "42P20", C::kSyntax);
    expect_sql(d.db, "DROP TABLE sqlite_master", SQLITE_ERROR, "may not be dropped", kPrepare,
               "42501", C::kPermission);
    expect_sql(d.db, "UPDATE sqlite_master SET name = 'x'", SQLITE_ERROR, "may not be modified",
               kPrepare, "42501", C::kPermission);
    expect_sql(d.db, "ALTER TABLE sqlite_master RENAME TO x", SQLITE_ERROR,
               "may not be altered", kPrepare, "42501", C::kPermission);
    expect_sql(d.db, "CREATE TABLE sqlite_foo(x)", SQLITE_ERROR,
               "object name reserved for internal use", kPrepare, "42939", C::kSyntax);
    // No rule matches: a prepare-time SQLITE_ERROR is syntax by default.
    expect_sql(d.db, "SELECT (SELECT 1, 2)", SQLITE_ERROR, "sub-select returns 2 columns",
               kPrepare, "42000", C::kSyntax);
    expect_sql(d.db, "INSERT INTO r VALUES (1, 2)", SQLITE_ERROR,
               "table r has 1 columns but 2 values were supplied", kPrepare, "42000",
               C::kSyntax);
  }

  TEST_CASE("real SQLite: program limits") {
    Db d;
    d.exec("CREATE TABLE t(x)");
    sqlite3_limit(d.db, SQLITE_LIMIT_COLUMN, 3);
    expect_sql(d.db, "CREATE TABLE tm(a, b, c, d)", SQLITE_ERROR, "too many columns on tm",
               kPrepare, "54011", C::kResources);
    expect_sql(d.db, "SELECT 1, 2, 3, 4", SQLITE_ERROR, "too many columns in result set",
               kPrepare, "54011", C::kResources);
    sqlite3_limit(d.db, SQLITE_LIMIT_COLUMN, 2000);
    sqlite3_limit(d.db, SQLITE_LIMIT_VARIABLE_NUMBER, 2);
    expect_sql(d.db, "SELECT ?, ?, ?", SQLITE_ERROR, "too many SQL variables", kPrepare,
               "54023", C::kResources);
    sqlite3_limit(d.db, SQLITE_LIMIT_VARIABLE_NUMBER, 999);
    sqlite3_limit(d.db, SQLITE_LIMIT_FUNCTION_ARG, 2);
    expect_sql(d.db, "SELECT max(1, 2, 3)", SQLITE_ERROR, "too many arguments on function",
               kPrepare, "54023", C::kResources);
    sqlite3_limit(d.db, SQLITE_LIMIT_FUNCTION_ARG, 100);
    sqlite3_limit(d.db, SQLITE_LIMIT_EXPR_DEPTH, 5);
    expect_sql(d.db, "SELECT 1+(1+(1+(1+(1+(1+(1+1))))))", SQLITE_ERROR,
               "Expression tree is too large", kPrepare, "54001", C::kResources);
    sqlite3_limit(d.db, SQLITE_LIMIT_EXPR_DEPTH, 1000);
    sqlite3_limit(d.db, SQLITE_LIMIT_COMPOUND_SELECT, 2);
    expect_sql(d.db, "SELECT 1 UNION SELECT 2 UNION SELECT 3 UNION SELECT 4", SQLITE_ERROR,
               "too many terms in compound SELECT", kPrepare, "54001", C::kResources);
    sqlite3_limit(d.db, SQLITE_LIMIT_COMPOUND_SELECT, 500);
    const std::string deep = "SELECT " + std::string(300, '(') + "1" + std::string(300, ')');
    expect_sql(d.db, deep, SQLITE_ERROR, "parser stack overflow", kPrepare, "54001",
               C::kResources);
    Failure attach_fail;
    for (int i = 0; i < 64; ++i) {
      const std::string sql = "ATTACH ':memory:' AS a" + std::to_string(i);
      char* err = nullptr;
      int rc = sqlite3_exec(d.db, sql.c_str(), nullptr, nullptr, &err);
      sqlite3_free(err);
      if (rc != SQLITE_OK) {
        attach_fail = capture(d.db, rc, kStep);
        break;
      }
    }
    expect(attach_fail, SQLITE_ERROR, "too many attached databases", kStep, "54000",
           C::kResources);
    // A value longer than SQLITE_LIMIT_LENGTH at step, SQL longer than its limit at prepare.
    sqlite3_limit(d.db, SQLITE_LIMIT_LENGTH, 100);
    expect_sql(d.db, "SELECT zeroblob(1000)", SQLITE_TOOBIG, "string or blob too big", kStep,
               "54000", C::kResources);
    expect_sql(d.db, "INSERT INTO t VALUES (randomblob(1000))", SQLITE_TOOBIG,
               "string or blob too big", kStep, "54000", C::kResources);
    sqlite3_limit(d.db, SQLITE_LIMIT_LENGTH, 1000000000);
    sqlite3_limit(d.db, SQLITE_LIMIT_SQL_LENGTH, 10);
    expect_sql(d.db, "SELECT 1 + 2 + 3 + 4", SQLITE_TOOBIG, "string or blob too big", kPrepare,
               "54000", C::kResources);
  }

  TEST_CASE("real SQLite: transaction state") {
    Db d;
    d.exec("CREATE TABLE t(x)");
    expect_sql(d.db, "BEGIN; BEGIN", SQLITE_ERROR,
               "cannot start a transaction within a transaction", kStep, "25001",
               C::kTransaction);
    expect_sql(d.db, "VACUUM", SQLITE_ERROR, "cannot VACUUM from within a transaction", kStep,
               "25001", C::kTransaction);
    expect_sql(d.db, "PRAGMA synchronous = OFF", SQLITE_ERROR,
               "Safety level may not be changed inside a transaction", kPrepare, "25001",
               C::kTransaction);
    d.exec("ROLLBACK");
    expect_sql(d.db, "COMMIT", SQLITE_ERROR, "cannot commit - no transaction is active", kStep,
               "25P01", C::kTransaction);
    expect_sql(d.db, "ROLLBACK", SQLITE_ERROR, "cannot rollback - no transaction is active",
               kStep, "25P01", C::kTransaction);
    expect_sql(d.db, "ROLLBACK TO nosp", SQLITE_ERROR, "no such savepoint", kStep, "3B001",
               C::kTransaction);
    expect_sql(d.db, "RELEASE nosp", SQLITE_ERROR, "no such savepoint", kStep, "3B001",
               C::kTransaction);

    // A statement whose transaction is rolled back under it (the rollback changed the
    // schema): SQLITE_ABORT_ROLLBACK.
    d.exec("INSERT INTO t VALUES (1), (2), (3); BEGIN; CREATE TABLE z(x)");
    sqlite3_stmt* stmt = nullptr;
    REQUIRE(sqlite3_prepare_v2(d.db, "SELECT x FROM t", -1, &stmt, nullptr) == SQLITE_OK);
    REQUIRE(sqlite3_step(stmt) == SQLITE_ROW);
    d.exec("ROLLBACK");
    int rc = sqlite3_step(stmt);
    expect(capture(d.db, rc, kStep), SQLITE_ABORT_ROLLBACK, "abort due to ROLLBACK", kStep,
           "40000", C::kTransaction);
    sqlite3_finalize(stmt);
  }

  TEST_CASE("real SQLite: constraints, including a deferred foreign key at COMMIT") {
    Db d;
    d.exec(
        "PRAGMA foreign_keys = ON;"
        "CREATE TABLE p(id INTEGER PRIMARY KEY, u TEXT UNIQUE, n TEXT NOT NULL DEFAULT 'x',"
        "               c INT CHECK (c > 0));"
        "CREATE TABLE ch(pid INT REFERENCES p(id));"
        "CREATE TABLE d(pid INT REFERENCES p(id) DEFERRABLE INITIALLY DEFERRED);"
        "CREATE TABLE s(a INTEGER) STRICT; CREATE TABLE r(a);"
        "CREATE TRIGGER rt BEFORE INSERT ON r WHEN new.a < 0 BEGIN SELECT RAISE(ABORT, 'negative'); END;"
        "INSERT INTO p(id, u) VALUES (1, 'a')");
    expect_sql(d.db, "INSERT INTO p(id, u) VALUES (2, 'a')", SQLITE_CONSTRAINT_UNIQUE,
               "UNIQUE constraint failed: p.u", kStep, "23505", C::kConstraint);
    expect_sql(d.db, "INSERT INTO p(id, u) VALUES (1, 'b')", SQLITE_CONSTRAINT_PRIMARYKEY,
               "UNIQUE constraint failed: p.id", kStep, "23505", C::kConstraint);
    expect_sql(d.db, "INSERT INTO r(rowid, a) VALUES (1, 1), (1, 2)", SQLITE_CONSTRAINT_ROWID,
               "UNIQUE constraint failed: r.rowid", kStep, "23505", C::kConstraint);
    expect_sql(d.db, "INSERT INTO ch VALUES (99)", SQLITE_CONSTRAINT_FOREIGNKEY,
               "FOREIGN KEY constraint failed", kStep, "23503", C::kConstraint);
    expect_sql(d.db, "INSERT INTO p(id, u, n) VALUES (3, 'c', NULL)", SQLITE_CONSTRAINT_NOTNULL,
               "NOT NULL constraint failed: p.n", kStep, "23502", C::kConstraint);
    expect_sql(d.db, "INSERT INTO p(id, u, c) VALUES (4, 'd', -1)", SQLITE_CONSTRAINT_CHECK,
               "CHECK constraint failed", kStep, "23514", C::kConstraint);
    expect_sql(d.db, "INSERT INTO r VALUES (-1)", SQLITE_CONSTRAINT_TRIGGER, "negative", kStep,
               "23000", C::kConstraint);
    expect_sql(d.db, "INSERT INTO s VALUES ('abc')", SQLITE_CONSTRAINT_DATATYPE,
               "cannot store TEXT value in INTEGER column s.a", kStep, "23000", C::kConstraint);
    // The deferred check runs at COMMIT, whose step fails; the transaction stays open.
    d.exec("BEGIN; INSERT INTO d VALUES (77)");
    expect_sql(d.db, "COMMIT", SQLITE_CONSTRAINT_FOREIGNKEY, "FOREIGN KEY constraint failed",
               kStep, "23503", C::kConstraint);
    d.exec("ROLLBACK");
    // A rowid that is not an integer: the value is wrong, not the statement.
    expect_sql(d.db, "INSERT INTO p(id, u) VALUES ('abc', 'e')", SQLITE_MISMATCH,
               "datatype mismatch", kStep, "22000", C::kData);
  }

  TEST_CASE("real SQLite: read-only connections and files") {
    TempDir dir;
    const std::string path = dir.file("ro.db");
    {
      Db w(path);
      w.exec("CREATE TABLE t(x)");
    }
    // PRAGMA query_only, as on the daemon's reader connections: read_only only when the
    // caller says the connection is query-only; the same code elsewhere is a read-only file.
    {
      Db r(path);
      r.exec("PRAGMA query_only = 1");
      Failure f = run_failing(r.db, "INSERT INTO t VALUES (1)");
      expect(f, SQLITE_READONLY, "attempt to write a readonly database", kStep, "25006",
             C::kReadOnly, true);
      expect(f, SQLITE_READONLY, "attempt to write a readonly database", kStep, "58030", C::kIo,
             false);
    }
    {
      Db r(path, SQLITE_OPEN_READONLY);
      REQUIRE(r.open_rc == SQLITE_OK);
      Failure f = run_failing(r.db, "INSERT INTO t VALUES (1)");
      expect(f, SQLITE_READONLY, "attempt to write a readonly database", kStep, "25006",
             C::kReadOnly, true);
    }
    // The file went away under the connection: SQLITE_READONLY_DBMOVED is I/O even on a
    // connection that is query-only by design.
    {
      const std::string moved = dir.file("moved.db");
      Db m(moved);
      m.exec("CREATE TABLE t(x)");
      REQUIRE(::unlink(moved.c_str()) == 0);
      Failure f = run_failing(m.db, "INSERT INTO t VALUES (1)");
      expect(f, SQLITE_READONLY_DBMOVED, "attempt to write a readonly database", kStep, "58030",
             C::kIo, false);
      expect(f, SQLITE_READONLY_DBMOVED, "attempt to write a readonly database", kStep, "58030",
             C::kIo, true);
    }
  }

  TEST_CASE("real SQLite: locks, snapshots, schema changes") {
    TempDir dir;
    const std::string path = dir.file("locks.db");
    Db a(path);
    Db b(path);
    a.exec("PRAGMA journal_mode = WAL; CREATE TABLE t(x); INSERT INTO t VALUES (1), (2), (3)");
    // b has no busy timeout: the lock a holds is SQLITE_BUSY at once.
    a.exec("BEGIN IMMEDIATE");
    expect_sql(b.db, "BEGIN IMMEDIATE", SQLITE_BUSY, "database is locked", kStep, "55P03",
               C::kBusy);
    a.exec("COMMIT");
    // b reads, a commits a write, b's snapshot is too old to write from.
    b.exec("BEGIN; SELECT count(*) FROM t");
    a.exec("INSERT INTO t VALUES (4)");
    expect_sql(b.db, "INSERT INTO t VALUES (5)", SQLITE_BUSY_SNAPSHOT, "database is locked",
               kStep, "40001", C::kSerialization);
    b.exec("ROLLBACK");
    // A table a statement of the same connection is reading cannot be dropped.
    sqlite3_stmt* stmt = nullptr;
    REQUIRE(sqlite3_prepare_v2(a.db, "SELECT x FROM t", -1, &stmt, nullptr) == SQLITE_OK);
    REQUIRE(sqlite3_step(stmt) == SQLITE_ROW);
    expect_sql(a.db, "DROP TABLE t", SQLITE_LOCKED, "database table is locked", kStep, "55P03",
               C::kBusy);
    sqlite3_finalize(stmt);
    // The schema changes after a legacy sqlite3_prepare(): step says SQLITE_ERROR, reset
    // gives SQLITE_SCHEMA (sqlite3_prepare_v2/v3 re-prepare by themselves instead).
    REQUIRE(sqlite3_prepare(a.db, "SELECT x FROM t", -1, &stmt, nullptr) == SQLITE_OK);
    b.exec("CREATE TABLE u(x)");
    CHECK(sqlite3_step(stmt) == SQLITE_ERROR);
    int rc = sqlite3_reset(stmt);
    expect(capture(a.db, rc, kStep), SQLITE_SCHEMA, "database schema has changed", kStep,
           "40001", C::kSerialization);
    sqlite3_finalize(stmt);
    // prepare_v2 re-prepares at step; when that fails the step reports the prepare error.
    REQUIRE(sqlite3_prepare_v2(a.db, "SELECT x FROM u", -1, &stmt, nullptr) == SQLITE_OK);
    b.exec("DROP TABLE u");
    rc = sqlite3_step(stmt);
    expect(capture(a.db, rc, kStep), SQLITE_ERROR, "no such table: u", kStep, "42P01",
           C::kSyntax);
    sqlite3_finalize(stmt);
    b.exec("CREATE TABLE u(x, y)");
    REQUIRE(sqlite3_prepare_v2(a.db, "SELECT y FROM u", -1, &stmt, nullptr) == SQLITE_OK);
    b.exec("DROP TABLE u; CREATE TABLE u(x)");
    rc = sqlite3_step(stmt);
    expect(capture(a.db, rc, kStep), SQLITE_ERROR, "no such column: y", kStep, "42703",
           C::kSyntax);
    sqlite3_finalize(stmt);
  }

  TEST_CASE("real SQLite: interrupt, abort, authorizer, misuse, range") {
    Db d;
    d.exec("CREATE TABLE t(x); INSERT INTO t VALUES (1)");
    // The progress handler is how the daemon stops a statement (cancel, statement_timeout).
    sqlite3_progress_handler(d.db, 1, [](void*) { return 1; }, nullptr);
    expect_sql(d.db,
               "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c) "
               "SELECT count(*) FROM c",
               SQLITE_INTERRUPT, "interrupted", kStep, "57014", C::kCancelled);
    sqlite3_progress_handler(d.db, 0, nullptr, nullptr);
    // sqlite3_exec's callback asked to stop.
    int rc = sqlite3_exec(
        d.db, "SELECT x FROM t", [](void*, int, char**, char**) { return 1; }, nullptr, nullptr);
    expect(capture(d.db, rc, kStep), SQLITE_ABORT, "query aborted", kStep, "57000",
           C::kCancelled);
    sqlite3_set_authorizer(
        d.db,
        [](void*, int op, const char*, const char*, const char*, const char*) {
          return op == SQLITE_DELETE ? SQLITE_DENY : SQLITE_OK;
        },
        nullptr);
    expect_sql(d.db, "DELETE FROM t", SQLITE_AUTH, "not authorized", kPrepare, "42501",
               C::kPermission);
    sqlite3_set_authorizer(d.db, nullptr, nullptr);
    sqlite3_stmt* stmt = nullptr;
    REQUIRE(sqlite3_prepare_v2(d.db, "SELECT ?", -1, &stmt, nullptr) == SQLITE_OK);
    rc = sqlite3_bind_int(stmt, 5, 1);
    expect(capture(d.db, rc, kStep), SQLITE_RANGE, "column index out of range", kStep, "22023",
           C::kData);
    REQUIRE(sqlite3_bind_int(stmt, 1, 1) == SQLITE_OK);
    REQUIRE(sqlite3_step(stmt) == SQLITE_ROW);
    rc = sqlite3_bind_int(stmt, 1, 2);  // bound while it runs: a bug in the caller
    expect(capture(d.db, rc, kStep), SQLITE_MISUSE, "bad parameter or other API misuse", kStep,
           "XX000", C::kInternal);
    sqlite3_finalize(stmt);
  }

  TEST_CASE("real SQLite: disk full, out of memory") {
    Db d;
    d.exec("CREATE TABLE f(x); PRAGMA max_page_count = 3");
    expect_sql(d.db, "INSERT INTO f SELECT randomblob(100000)", SQLITE_FULL,
               "database or disk is full", kStep, "53100", C::kResources);
    // SQLite's own allocator refuses past the hard heap limit: SQLITE_NOMEM.
    Db m;
    const sqlite3_int64 before = sqlite3_hard_heap_limit64(-1);
    sqlite3_hard_heap_limit64(sqlite3_memory_used() + 4096);
    Failure f = run_failing(m.db, "SELECT randomblob(1000000)");
    sqlite3_hard_heap_limit64(before);
    expect(f, SQLITE_NOMEM, "out of memory", f.phase, "53200", C::kResources);
  }

  TEST_CASE("real SQLite: unreadable, missing or corrupt files") {
    TempDir dir;
    {
      Db o(dir.file("no/such/folder/x.db"));
      REQUIRE(o.db != nullptr);
      expect(capture(o.db, o.open_rc, kStep), SQLITE_CANTOPEN, "unable to open database file",
             kStep, "58030", C::kIo);
    }
    {
      Db d;
      const std::string sql = "ATTACH '" + dir.file("no/such/folder/y.db") + "' AS y";
      expect_sql(d.db, sql, SQLITE_CANTOPEN, "unable to open database", kStep, "58030", C::kIo);
    }
    {
      const std::string junk = dir.file("junk.db");
      std::ofstream(junk) << std::string(4096, 'x');
      Db j(junk);
      expect_sql(j.db, "SELECT * FROM sqlite_master", SQLITE_NOTADB, "file is not a database",
                 kPrepare, "58030", C::kIo);
    }
    {
      const std::string path = dir.file("corrupt.db");
      {
        Db w(path);
        w.exec(
            "PRAGMA page_size = 4096; CREATE TABLE t(x);"
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)"
            "INSERT INTO t SELECT randomblob(100) FROM n");
      }
      {
        std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(4096);  // page 2, the table's root page
        const std::string garbage(4096, '\xff');
        f.write(garbage.data(), static_cast<std::streamsize>(garbage.size()));
      }
      Db c(path);
      expect_sql(c.db, "SELECT count(*) FROM t", SQLITE_CORRUPT, "database disk image is malformed",
                 kStep, "58030", C::kIo);
    }
  }
}  // TEST_SUITE
