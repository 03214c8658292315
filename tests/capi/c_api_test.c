/* libdbmgr's C interface against a real dbmgrd: built by run.sh with `cc` and
 * `pkg-config dbmgr` as a user's program would be. Usage:
 * c_api_test sqlite|postgresql [DATABASE PREFIX] (DBMGR_SOCKET names the daemon). Every check prints what it saw when it fails. */
#include <dbmgr/dbmgr.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures = 0;

#define CHECK(cond, ...)                                   \
  do {                                                     \
    if (!(cond)) {                                         \
      fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
      fprintf(stderr, __VA_ARGS__);                        \
      fprintf(stderr, "\n");                               \
      failures++;                                          \
    }                                                      \
  } while (0)

#define MUST(call, err)                                                          \
  do {                                                                           \
    if ((call) != 0) {                                                           \
      fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #call,      \
              dbmgr_error_what(err));                                            \
      exit(1);                                                                   \
    }                                                                            \
  } while (0)

static dbmgr_value v_null(void) { dbmgr_value v = {DBMGR_NULL, 0, 0, NULL, 0}; return v; }
static dbmgr_value v_int(int64_t i) { dbmgr_value v = {DBMGR_INT64, i, 0, NULL, 0}; return v; }
static dbmgr_value v_bool(int b) { dbmgr_value v = {DBMGR_BOOL, b, 0, NULL, 0}; return v; }
static dbmgr_value v_double(double d) { dbmgr_value v = {DBMGR_DOUBLE, 0, d, NULL, 0}; return v; }
static dbmgr_value v_text(const char* s) {
  dbmgr_value v = {DBMGR_TEXT, 0, 0, s, strlen(s)};
  return v;
}
static dbmgr_value v_blob(const char* p, size_t n) {
  dbmgr_value v = {DBMGR_BLOB, 0, 0, p, n};
  return v;
}

int main(int argc, char** argv) {
  if (argc != 2 && argc != 4) {
    fprintf(stderr, "usage: c_api_test sqlite|postgresql [DATABASE PREFIX]\n");
    return 2;
  }
  const char* database = argc == 4 ? argv[2] : NULL;
  const char* prefix = argc == 4 ? argv[3] : NULL;
  const int pg = strcmp(argv[1], "postgresql") == 0;
  dbmgr_error* err = NULL;
  dbmgr_manager* m = NULL;
  dbmgr_options opt = {NULL, database, prefix, "c_api_test", 1};
  MUST(dbmgr_manager_new(&opt, &m, &err), err);

  CHECK(strcmp(dbmgr_version(), "0.1.0") == 0, "version %s", dbmgr_version());

  dbmgr_info info;
  MUST(dbmgr_manager_info(m, &info, &err), err);
  CHECK(strcmp(info.type, argv[1]) == 0, "type %s", info.type);
  if (database != NULL) {
    char want[256];
    snprintf(want, sizeof want, "%s.%s", prefix, database);
    CHECK(strcmp(info.name, want) == 0, "name %s, not %s", info.name, want);
  }
  CHECK(strlen(info.pk_type) > 0 && strlen(info.pk_column_type) > 0, "no PK type");
  CHECK(strstr(info.uri, "dbmgr_test_pw") == NULL, "the password shows in the URI: %s", info.uri);
  MUST(dbmgr_manager_ping(m, &err), err);

  const char* drop = "DROP TABLE IF EXISTS capi_t";
  const char* create =
      pg ? "CREATE TABLE capi_t (id BIGINT PRIMARY KEY, name TEXT, score DOUBLE PRECISION, "
           "flag BOOLEAN, data BYTEA)"
         : "CREATE TABLE capi_t (id INTEGER PRIMARY KEY, name TEXT, score REAL, flag BOOLEAN, "
           "data BLOB)";
  MUST(dbmgr_execute(m, drop, SIZE_MAX, NULL, 0, DBMGR_READ_WRITE, NULL, &err), err);
  MUST(dbmgr_execute(m, create, SIZE_MAX, NULL, 0, DBMGR_READ_WRITE, NULL, &err), err);

  /* A session: two rows, every type, NULLs, non-ASCII text, a blob with NUL bytes. */
  static const char blob[] = {'a', 0, 'b', (char)0xff, 0};
  const char* insert = "INSERT INTO capi_t (id, name, score, flag, data) VALUES (?, ?, ?, ?, ?)";
  dbmgr_session* s = NULL;
  MUST(dbmgr_session_open(m, DBMGR_READ_WRITE, &s, &err), err);
  dbmgr_value row1[5] = {v_int(1), v_text("gr\xc3\xbc\xc3\x9f dich \xe2\x82\xac"), v_double(2.5),
                         v_bool(1), v_blob(blob, sizeof blob)};
  dbmgr_value row2[5] = {v_int(INT64_C(9007199254740993)), v_null(), v_null(), v_bool(0),
                         v_null()};
  dbmgr_result* r = NULL;
  MUST(dbmgr_session_execute(s, insert, SIZE_MAX, row1, 5, &r, &err), err);
  CHECK(dbmgr_result_affected_rows(r) == 1, "affected %lld",
        (long long)dbmgr_result_affected_rows(r));
  dbmgr_result_free(r);
  MUST(dbmgr_session_execute(s, insert, strlen(insert), row2, 5, NULL, &err), err);
  CHECK(dbmgr_session_in_transaction(s) == 1, "in_transaction %d", dbmgr_session_in_transaction(s));
  MUST(dbmgr_session_commit(s, &err), err);
  CHECK(dbmgr_session_in_transaction(s) == 0, "in_transaction after commit");

  /* Rolled back: absent afterwards. */
  dbmgr_value row3[5] = {v_int(3), v_text("gone"), v_null(), v_null(), v_null()};
  MUST(dbmgr_session_execute(s, insert, SIZE_MAX, row3, 5, NULL, &err), err);
  MUST(dbmgr_session_rollback(s, &err), err);

  /* An error fails the transaction: constraint, with an SQLSTATE; rollback() acknowledges. */
  dbmgr_value dup[5] = {v_int(1), v_null(), v_null(), v_null(), v_null()};
  CHECK(dbmgr_session_execute(s, insert, SIZE_MAX, dup, 5, NULL, &err) == -1, "duplicate accepted");
  CHECK(err != NULL, "no error handed out");
  if (err != NULL) {
    CHECK(dbmgr_error_category(err) == DBMGR_E_CONSTRAINT, "category %d (%s)",
          dbmgr_error_category(err), dbmgr_error_what(err));
    CHECK(strcmp(dbmgr_error_category_name(err), "constraint") == 0, "name %s",
          dbmgr_error_category_name(err));
    CHECK(strlen(dbmgr_error_sqlstate(err)) == 5, "sqlstate '%s'", dbmgr_error_sqlstate(err));
    CHECK(strlen(dbmgr_error_message(err)) > 0, "empty message");
    CHECK(dbmgr_error_client_side(err) == 0, "a daemon error marked client-side");
    dbmgr_error_free(err);
    err = NULL;
  }
  CHECK(dbmgr_session_failed(s) == 1, "session not failed after an error");
  MUST(dbmgr_session_rollback(s, &err), err);
  CHECK(dbmgr_session_failed(s) == 0, "session still failed after rollback");
  dbmgr_session_close(s);

  /* Read back, cell by cell. */
  const char* select = "SELECT id, name, score, flag, data FROM capi_t WHERE id >= ? ORDER BY id";
  dbmgr_value from = v_int(0);
  MUST(dbmgr_execute(m, select, SIZE_MAX, &from, 1, DBMGR_READ_ONLY, &r, &err), err);
  CHECK(dbmgr_result_column_count(r) == 5, "columns %zu", dbmgr_result_column_count(r));
  CHECK(dbmgr_result_row_count(r) == 2, "rows %zu", dbmgr_result_row_count(r));
  CHECK(strcmp(dbmgr_result_column_name(r, 1), "name") == 0, "column 1 %s",
        dbmgr_result_column_name(r, 1));
  CHECK(dbmgr_result_column_name(r, 5) == NULL, "column 5 exists");
  dbmgr_value c;
  MUST(dbmgr_result_value(r, 0, 0, &c), err);
  CHECK(c.type == DBMGR_INT64 && c.i == 1, "id type %d value %lld", c.type, (long long)c.i);
  MUST(dbmgr_result_value(r, 0, 1, &c), err);
  CHECK(c.type == DBMGR_TEXT && c.len == strlen(row1[1].bytes) &&
            memcmp(c.bytes, row1[1].bytes, c.len) == 0,
        "name type %d len %zu", c.type, c.len);
  MUST(dbmgr_result_value(r, 0, 2, &c), err);
  CHECK(c.type == DBMGR_DOUBLE && c.d == 2.5, "score type %d value %g", c.type, c.d);
  MUST(dbmgr_result_value(r, 0, 3, &c), err);
  /* SQLite has no boolean storage class: the 1 comes back as an integer. */
  CHECK((pg ? c.type == DBMGR_BOOL : c.type == DBMGR_INT64) && c.i == 1, "flag type %d value %lld",
        c.type, (long long)c.i);
  MUST(dbmgr_result_value(r, 0, 4, &c), err);
  CHECK(c.type == DBMGR_BLOB && c.len == sizeof blob && memcmp(c.bytes, blob, sizeof blob) == 0,
        "data type %d len %zu", c.type, c.len);
  MUST(dbmgr_result_value(r, 1, 0, &c), err);
  CHECK(c.type == DBMGR_INT64 && c.i == INT64_C(9007199254740993), "big id %lld", (long long)c.i);
  for (size_t col = 1; col <= 4; col += (col == 2 ? 2 : 1)) {
    MUST(dbmgr_result_value(r, 1, col, &c), err);
    CHECK(c.type == DBMGR_NULL, "row 2 column %zu type %d, not NULL", col, c.type);
  }
  MUST(dbmgr_result_value(r, 1, 3, &c), err);
  CHECK((pg ? c.type == DBMGR_BOOL : c.type == DBMGR_INT64) && c.i == 0, "flag 2 type %d", c.type);
  CHECK(dbmgr_result_value(r, 2, 0, &c) == -1 && c.type == DBMGR_NULL, "row 2 is out of range");
  CHECK(dbmgr_result_value(r, 0, 5, &c) == -1, "column 5 is out of range");
  dbmgr_result_free(r);

  /* A read-only one-shot cannot write. */
  CHECK(dbmgr_execute(m, "DELETE FROM capi_t", SIZE_MAX, NULL, 0, DBMGR_READ_ONLY, NULL, &err) == -1,
        "read-only DELETE accepted");
  if (err != NULL) {
    CHECK(dbmgr_error_category(err) == DBMGR_E_READ_ONLY, "category %d (%s)",
          dbmgr_error_category(err), dbmgr_error_what(err));
    CHECK(strcmp(dbmgr_error_sqlstate(err), "25006") == 0, "sqlstate %s", dbmgr_error_sqlstate(err));
    dbmgr_error_free(err);
    err = NULL;
  }

  /* Bad arguments are the library's own errors. */
  dbmgr_value bad = {(dbmgr_type)42, 0, 0, NULL, 0};
  CHECK(dbmgr_execute(m, "SELECT ?", SIZE_MAX, &bad, 1, DBMGR_READ_WRITE, NULL, &err) == -1,
        "an unknown type accepted");
  if (err != NULL) {
    CHECK(dbmgr_error_category(err) == DBMGR_E_INVALID_REQUEST && dbmgr_error_client_side(err),
          "category %d client_side %d", dbmgr_error_category(err), dbmgr_error_client_side(err));
    dbmgr_error_free(err);
    err = NULL;
  }
  CHECK(dbmgr_execute(m, NULL, 0, NULL, 0, 0, NULL, NULL) == -1, "NULL sql accepted");
  CHECK(dbmgr_execute(m, "SELECT ?", SIZE_MAX, NULL, 1, 0, NULL, NULL) == -1, "NULL params accepted");

  /* The count is what was committed (rows 1 and 2), the rolled-back row absent. */
  MUST(dbmgr_execute(m, "SELECT count(*) FROM capi_t WHERE id = 3", SIZE_MAX, NULL, 0,
                     DBMGR_READ_ONLY, &r, &err), err);
  MUST(dbmgr_result_value(r, 0, 0, &c), err);
  CHECK(c.type == DBMGR_INT64 && c.i == 0, "rolled-back row present (%lld)", (long long)c.i);
  dbmgr_result_free(r);
  MUST(dbmgr_execute(m, drop, SIZE_MAX, NULL, 0, DBMGR_READ_WRITE, NULL, &err), err);
  dbmgr_manager_free(m);

  /* No daemon there: a connection error, not a crash. */
  dbmgr_options none = {"/nonexistent/dbmgrd.sock", NULL, NULL, NULL, 0};
  MUST(dbmgr_manager_new(&none, &m, &err), err);
  CHECK(dbmgr_execute(m, "SELECT 1", SIZE_MAX, NULL, 0, 0, NULL, &err) == -1, "no daemon, yet ok");
  if (err != NULL) {
    CHECK(dbmgr_error_category(err) == DBMGR_E_CONNECTION, "category %d (%s)",
          dbmgr_error_category(err), dbmgr_error_what(err));
    dbmgr_error_free(err);
    err = NULL;
  }
  dbmgr_manager_free(m);
  dbmgr_manager_free(NULL);
  dbmgr_result_free(NULL);
  dbmgr_session_close(NULL);
  dbmgr_error_free(NULL);

  if (failures > 0) {
    fprintf(stderr, "c_api_test %s: %d check(s) failed\n", argv[1], failures);
    return 1;
  }
  printf("c_api_test %s: all checks passed\n", argv[1]);
  return 0;
}
