/* libdbmgr's C interface: the same client library as the C++ one (<dbmgr/dbmgr.hpp>),
 * for C programs and for other languages' foreign-function interfaces. Documented in
 * libdbmgr(3).
 *
 * Conventions
 *  - Every handle is opaque and freed by its own *_free (or dbmgr_session_close) function;
 *    NULL is accepted by every free function.
 *  - Functions that can fail return 0 on success and -1 on failure. On failure, when `err`
 *    is not NULL, *err receives an error the caller frees with dbmgr_error_free.
 *  - Strings in are UTF-8, given with a length (SIZE_MAX: NUL-terminated). Strings out are
 *    owned by the handle they come from and stay valid until it is freed.
 *  - A manager may be used from several threads at once, a session by one thread at a
 *    time (as in C++); after fork(), call dbmgr_manager_init_worker in the child.
 *  - Symbols are versioned (DBMGR_1); the ABI of this header only grows.
 */
#ifndef DBMGR_DBMGR_H
#define DBMGR_DBMGR_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define DBMGR_API __attribute__((visibility("default")))
#else
#define DBMGR_API
#endif

typedef struct dbmgr_manager dbmgr_manager;
typedef struct dbmgr_session dbmgr_session;
typedef struct dbmgr_result dbmgr_result;
typedef struct dbmgr_error dbmgr_error;

/* Value types, as the protocol carries them. */
typedef enum dbmgr_type {
  DBMGR_NULL = 0,
  DBMGR_BOOL = 1,
  DBMGR_INT64 = 2,
  DBMGR_DOUBLE = 3,
  DBMGR_TEXT = 4,
  DBMGR_BLOB = 5
} dbmgr_type;

/* One value: a parameter in, a cell out. `i` holds BOOL (0/1) and INT64, `d` DOUBLE,
 * `bytes`/`len` TEXT and BLOB (not NUL-terminated; for a cell, owned by its result). */
typedef struct dbmgr_value {
  dbmgr_type type;
  int64_t i;
  double d;
  const char* bytes;
  size_t len;
} dbmgr_value;

/* Error categories: the numbers of docs/protocol.md (dbmgr::ErrorCategory). */
enum {
  DBMGR_E_CONNECTION = 1,
  DBMGR_E_TIMEOUT = 2,
  DBMGR_E_POOL_EXHAUSTED = 3,
  DBMGR_E_CONSTRAINT = 4,
  DBMGR_E_SYNTAX = 5,
  DBMGR_E_PERMISSION = 6,
  DBMGR_E_PROTOCOL = 7,
  DBMGR_E_INTERNAL = 8,
  DBMGR_E_CANCELLED = 9,
  DBMGR_E_KILLED = 10,
  DBMGR_E_NOT_FOUND = 11,
  DBMGR_E_INVALID_REQUEST = 12,
  DBMGR_E_DATA = 13,
  DBMGR_E_SHUTTING_DOWN = 14,
  DBMGR_E_BUSY = 15,
  DBMGR_E_READ_ONLY = 16,
  DBMGR_E_TRANSACTION = 17,
  DBMGR_E_SERIALIZATION = 18,
  DBMGR_E_RESOURCES = 19,
  DBMGR_E_IO = 20,
  DBMGR_E_UNSUPPORTED = 21
};

/* Access of a session or one-shot. */
enum { DBMGR_READ_WRITE = 0, DBMGR_READ_ONLY = 1 };

/* Options of a manager; NULL or empty strings take the defaults: the socket
 * $DBMGR_SOCKET, else /run/dbmgr/dbmgrd.sock; the daemon's default database; no prefix;
 * the program's name (libdbmgr(3)). */
typedef struct dbmgr_options {
  const char* socket_path;
  const char* database;
  const char* db_prefix;
  const char* client_name;
  int test_connection; /* nonzero: open and ping a backend connection now */
} dbmgr_options;

/* The library's version, "0.1.0". */
DBMGR_API const char* dbmgr_version(void);

/* ---- errors ---- */
DBMGR_API int dbmgr_error_category(const dbmgr_error* e);
DBMGR_API const char* dbmgr_error_category_name(const dbmgr_error* e); /* "constraint" */
DBMGR_API const char* dbmgr_error_sqlstate(const dbmgr_error* e);      /* "" when none */
DBMGR_API const char* dbmgr_error_message(const dbmgr_error* e);       /* the daemon's words */
DBMGR_API const char* dbmgr_error_what(const dbmgr_error* e); /* "dbmgr constraint error [23505]: ..." */
DBMGR_API int dbmgr_error_client_side(const dbmgr_error* e);  /* raised by the library itself */
DBMGR_API void dbmgr_error_free(dbmgr_error* e);

/* ---- the manager ---- */
DBMGR_API int dbmgr_manager_new(const dbmgr_options* options, dbmgr_manager** out,
                                dbmgr_error** err);
DBMGR_API void dbmgr_manager_free(dbmgr_manager* m);
/* In a child after fork(): forget the parent's daemon connections. */
DBMGR_API int dbmgr_manager_init_worker(dbmgr_manager* m, dbmgr_error** err);
DBMGR_API int dbmgr_manager_ping(dbmgr_manager* m, dbmgr_error** err);

/* The database info; the strings are the manager's, valid until the next call of this
 * function on it or dbmgr_manager_free. */
typedef struct dbmgr_info {
  const char* type;           /* "sqlite", "postgresql", "mysql", "mariadb", "mssql" */
  const char* name;           /* with prefix, "test.app" */
  const char* uri;            /* password masked as *** */
  const char* pk_type;        /* "String" or "UUID" */
  const char* pk_column_type; /* "TEXT", "UUID", "CHAR(36)", ... */
} dbmgr_info;
DBMGR_API int dbmgr_manager_info(dbmgr_manager* m, dbmgr_info* out, dbmgr_error** err);

/* A one-shot: the statement is its own transaction (committed on success). `out` may be
 * NULL when the rows are not wanted. */
DBMGR_API int dbmgr_execute(dbmgr_manager* m, const char* sql, size_t sql_len,
                            const dbmgr_value* params, size_t param_count, int access,
                            dbmgr_result** out, dbmgr_error** err);

/* ---- sessions: server-side transactions ---- */
DBMGR_API int dbmgr_session_open(dbmgr_manager* m, int access, dbmgr_session** out,
                                 dbmgr_error** err);
DBMGR_API int dbmgr_session_execute(dbmgr_session* s, const char* sql, size_t sql_len,
                                    const dbmgr_value* params, size_t param_count,
                                    dbmgr_result** out, dbmgr_error** err);
DBMGR_API int dbmgr_session_commit(dbmgr_session* s, dbmgr_error** err);
DBMGR_API int dbmgr_session_rollback(dbmgr_session* s, dbmgr_error** err);
DBMGR_API int dbmgr_session_in_transaction(const dbmgr_session* s);
DBMGR_API int dbmgr_session_failed(const dbmgr_session* s);
/* Rolls back what is open and frees the session. */
DBMGR_API void dbmgr_session_close(dbmgr_session* s);

/* ---- results (read whole; cells are not copied out) ---- */
DBMGR_API size_t dbmgr_result_column_count(const dbmgr_result* r);
DBMGR_API const char* dbmgr_result_column_name(const dbmgr_result* r, size_t column);
/* The column's declared type (DBMGR_NULL when the backend declares none). */
DBMGR_API dbmgr_type dbmgr_result_column_type(const dbmgr_result* r, size_t column);
DBMGR_API size_t dbmgr_result_row_count(const dbmgr_result* r);
/* -1 when the backend does not tell (docs/protocol.md, kComplete). */
DBMGR_API int64_t dbmgr_result_affected_rows(const dbmgr_result* r);
DBMGR_API int64_t dbmgr_result_last_insert_id(const dbmgr_result* r);
/* 0, or -1 when row or column is out of range (then *out is a NULL value). */
DBMGR_API int dbmgr_result_value(const dbmgr_result* r, size_t row, size_t column,
                                 dbmgr_value* out);
DBMGR_API void dbmgr_result_free(dbmgr_result* r);

#ifdef __cplusplus
}
#endif

#endif /* DBMGR_DBMGR_H */
