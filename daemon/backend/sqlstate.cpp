// SQLSTATE classes -> categories, SQLite result codes and messages -> SQLSTATEs.
// The tables here are the ones docs/protocol.md lists; change both together.
#include "backend/sqlstate.hpp"

#include <sqlite3.h>

#include <cctype>

namespace dbmgr::daemon {
namespace {

using C = proto::ErrorCategory;

struct CodeRule {
  std::string_view code;  // a full SQLSTATE (exact) or a class (two characters)
  C category;
};

// Exact SQLSTATEs whose category differs from their class's, or that are not in a class
// of their own (ODBC). Looked up before the class table.
constexpr CodeRule kExact[] = {
    {"25006", C::kReadOnly},       // read_only_sql_transaction: a write in a read-only transaction
    {"25P03", C::kTimeout},        // idle_in_transaction_session_timeout
    {"25P04", C::kTimeout},        // transaction_timeout (PostgreSQL 17)
    {"40000", C::kTransaction},    // transaction_rollback: it was rolled back, not a conflict
                                   // (SQLite's SQLITE_ABORT_ROLLBACK); 40001/40P01 are retries
    {"40002", C::kConstraint},     // transaction_integrity_constraint_violation
    {"40003", C::kConnection},     // statement_completion_unknown: the outcome is not known,
                                   // as with 08007 transaction_resolution_unknown
    {"42501", C::kPermission},     // insufficient_privilege
    {"55006", C::kBusy},           // object_in_use: another session holds it, try later
    {"55P03", C::kBusy},           // lock_not_available (lock_timeout, NOWAIT)
    {"57014", C::kCancelled},      // query_canceled; statement_timeout is the backend's call
    {"57P01", C::kConnection},     // admin_shutdown: the server ended the connection
    {"57P02", C::kConnection},     // crash_shutdown
    {"57P03", C::kConnection},     // cannot_connect_now (starting up, shutting down)
    {"57P04", C::kConnection},     // database_dropped
    {"57P05", C::kConnection},     // idle_session_timeout: the server closed the connection
    {"HYT00", C::kTimeout},        // ODBC: timeout expired (query timeout)
    {"HYT01", C::kConnection},     // ODBC: connection timeout expired
    {"HY008", C::kCancelled},      // ODBC: operation canceled
    {"HY001", C::kResources},      // ODBC: memory allocation error
};

// SQLSTATE classes (the first two characters).
constexpr CodeRule kClasses[] = {
    {"08", C::kConnection},      // connection exception
    {"57", C::kCancelled},       // operator intervention (57000; the rest are exact above)
    {"22", C::kData},            // data exception: overflow, bad input syntax, division by zero
    {"23", C::kConstraint},      // integrity constraint violation
    {"27", C::kConstraint},      // triggered data change violation
    {"2B", C::kConstraint},      // dependent privilege descriptors / objects still exist
    {"44", C::kConstraint},      // WITH CHECK OPTION violation: the row fails the view's rule
    {"P0", C::kConstraint},      // PL/pgSQL: RAISE EXCEPTION, ASSERT, INTO STRICT row count
    {"25", C::kTransaction},     // invalid transaction state (in failed transaction, ...)
    {"0B", C::kTransaction},     // invalid transaction initiation
    {"2D", C::kTransaction},     // invalid transaction termination
    {"3B", C::kTransaction},     // savepoint exception
    {"40", C::kSerialization},   // transaction rollback: serialization failure, deadlock
    {"72", C::kSerialization},   // snapshot too old
    {"55", C::kInvalidRequest},  // object not in prerequisite state (currval before nextval)
    {"07", C::kInvalidRequest},  // dynamic SQL error: parameters that do not fit the markers
    {"28", C::kPermission},      // invalid authorization specification (bad password)
    {"0L", C::kPermission},      // invalid grantor
    {"0P", C::kPermission},      // invalid role specification
    {"3D", C::kNotFound},        // invalid catalog name: no such database
    {"42", C::kSyntax},          // syntax error or access rule violation (42501 is exact)
    {"26", C::kSyntax},          // invalid SQL statement name (no such prepared statement)
    {"34", C::kSyntax},          // invalid cursor name
    {"3F", C::kSyntax},          // invalid schema name
    {"20", C::kSyntax},          // case not found
    {"21", C::kSyntax},          // cardinality violation (a subquery returned several rows)
    {"24", C::kSyntax},          // invalid cursor state
    {"2F", C::kSyntax},          // SQL routine exception (function ended without RETURN)
    {"03", C::kSyntax},          // SQL statement not yet complete
    {"0Z", C::kSyntax},          // diagnostics exception (GET STACKED DIAGNOSTICS misuse)
    {"53", C::kResources},       // insufficient resources: disk full, out of memory, connections
    {"54", C::kResources},       // program limit exceeded: too complex, too many columns
    {"58", C::kIo},              // system error: I/O error, missing or duplicate file
    {"0A", C::kUnsupported},     // feature not supported
    {"XX", C::kInternal},        // internal error, data or index corrupted
    {"F0", C::kInternal},        // configuration file error
    {"38", C::kInternal},        // external routine exception
    {"39", C::kInternal},        // external routine invocation exception
    {"HV", C::kInternal},        // foreign data wrapper error
    // Anything else (00 success, 01/02 warnings, 09, 0F, other HY/IM, unknown) is internal.
};

bool well_formed(std::string_view s) {
  if (s.size() != 5) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z'))) return false;
  }
  return true;
}

bool has(std::string_view message, std::string_view needle) {
  return message.find(needle) != std::string_view::npos;
}

bool has_nocase(std::string_view message, std::string_view lower_needle) {
  if (lower_needle.size() > message.size()) return false;
  for (std::size_t i = 0; i + lower_needle.size() <= message.size(); ++i) {
    std::size_t j = 0;
    while (j < lower_needle.size() &&
           std::tolower(static_cast<unsigned char>(message[i + j])) == lower_needle[j]) {
      ++j;
    }
    if (j == lower_needle.size()) return true;
  }
  return false;
}

struct MessageRule {
  std::string_view needle;  // a substring of sqlite3_errmsg()
  const char* sqlstate;
};

// Plain SQLITE_ERROR (and its SQLITE_ERROR_* extended codes), refined by the message, first
// match wins. The texts are SQLite's own (tests/daemon/sqlstate_test.cpp provokes each one),
// except "invalid REGEXP pattern", which backend_sqlite.cpp's regexp() reports; it comes first
// because that message quotes the user's pattern.
constexpr MessageRule kMessageRules[] = {
    {"invalid REGEXP pattern", "2201B"},                 // invalid_regular_expression
    {"syntax error", "42601"},                           // near "SELEC": syntax error
    {"incomplete input", "42601"},                       // SELECT (1
    {"unrecognized token", "42601"},                     // SELECT 'abc
    {"no such table", "42P01"},                          // undefined_table
    {"no such view", "42P01"},                           // undefined_table (views too)
    {"no such column", "42703"},                         // undefined_column
    {"has no column named", "42703"},                    // INSERT INTO t(nope)
    {"no such function", "42883"},                       // undefined_function
    {"wrong number of arguments to function", "42883"},  // undefined_function (no such overload)
    {"no such savepoint", "3B001"},                      // invalid_savepoint_specification
    {"no such ", "42704"},        // undefined_object: index, trigger, collation sequence, module
    {"already exists", "42P07"},  // duplicate_table: table, index, view or trigger
    {"there is already another table or index", "42P07"},  // ALTER TABLE ... RENAME TO
    {"duplicate column name", "42701"},                    // duplicate_column
    {"ambiguous column name", "42702"},                    // ambiguous_column
    {"misuse of aggregate", "42803"},                      // grouping_error
    {"aggregate functions are not allowed", "42803"},      // grouping_error (GROUP BY sum(x))
    {"misuse of window function", "42P20"},                // windowing_error
    {"may not be dropped", "42501"},     // insufficient_privilege: sqlite_master and friends
    {"may not be modified", "42501"},    // insufficient_privilege
    {"may not be altered", "42501"},     // insufficient_privilege
    {"not authorized", "42501"},         // insufficient_privilege: load_extension() disabled
    {"object name reserved for internal use", "42939"},  // reserved_name (sqlite_*)
    {"within a transaction", "25001"},   // active_sql_transaction: BEGIN in BEGIN, VACUUM
    {"inside a transaction", "25001"},   // active_sql_transaction: PRAGMA synchronous
    {"no transaction is active", "25P01"},            // no_active_sql_transaction
    {"too many columns", "54011"},                    // too_many_columns
    {"too many SQL variables", "54023"},              // too_many_arguments
    {"too many arguments on function", "54023"},      // too_many_arguments
    {"too many levels of trigger recursion", "54001"},  // statement_too_complex
    {"too many terms in compound SELECT", "54001"},     // statement_too_complex
    {"Expression tree is too large", "54001"},          // statement_too_complex
    {"parser stack overflow", "54001"},                 // statement_too_complex
    {"too many ", "54000"},             // program_limit_exceeded: attached databases, ...
    {"integer overflow", "22003"},      // numeric_value_out_of_range: sum(), abs()
};

const char* sqlite_error_sqlstate(std::string_view message, SqlitePhase phase) {
  for (const MessageRule& r : kMessageRules) {
    if (has(message, r.needle)) return r.sqlstate;
  }
  // malformed JSON, JSON path error, json_object() requires an even number of arguments...
  if (has_nocase(message, "json")) return "22032";  // invalid_json_text
  return phase == SqlitePhase::kPrepare ? "42000" : "22000";
}

const char* sqlite_sqlstate(int ext, std::string_view message, SqlitePhase phase,
                            bool query_only) {
  // Extended codes whose meaning differs from their primary code's.
  switch (ext) {
    case SQLITE_CONSTRAINT_UNIQUE:
    case SQLITE_CONSTRAINT_PRIMARYKEY:
    case SQLITE_CONSTRAINT_ROWID:
      return "23505";  // unique_violation
    case SQLITE_CONSTRAINT_FOREIGNKEY:
      return "23503";  // foreign_key_violation (also a deferred one at COMMIT)
    case SQLITE_CONSTRAINT_NOTNULL:
      return "23502";  // not_null_violation
    case SQLITE_CONSTRAINT_CHECK:
      return "23514";  // check_violation
    case SQLITE_BUSY_SNAPSHOT:
      return "40001";  // serialization_failure: a WAL read snapshot is stale, retry
    case SQLITE_READONLY:
      // query_only refuses the write: the session's choice. Otherwise the file is read-only.
      return query_only ? "25006" : "58030";
    case SQLITE_IOERR_NOMEM:
      return "53200";  // out_of_memory
    case SQLITE_ABORT_ROLLBACK:
      return "40000";  // transaction_rollback: the statement's transaction was rolled back
    default:
      break;
  }
  switch (ext & 0xff) {
    case SQLITE_ERROR:
      return sqlite_error_sqlstate(message, phase);
    case SQLITE_CONSTRAINT:
      return "23000";  // integrity_constraint_violation: RAISE() in a trigger, STRICT type...
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return "55P03";  // lock_not_available
    case SQLITE_READONLY:
      return "58030";  // SQLITE_READONLY_*: cannot lock, recovery, moved, directory...
    case SQLITE_FULL:
      return "53100";  // disk_full (also PRAGMA max_page_count reached)
    case SQLITE_NOMEM:
      return "53200";  // out_of_memory
    case SQLITE_TOOBIG:
      return "54000";  // program_limit_exceeded: string, blob or SQL text too long
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
    case SQLITE_PROTOCOL:
      return "58030";  // io_error
    case SQLITE_NOLFS:
      return "58000";  // system_error: no large file support
    case SQLITE_AUTH:
    case SQLITE_PERM:
      return "42501";  // insufficient_privilege: the authorizer denied it, file permissions
    case SQLITE_MISMATCH:
      return "22000";  // data_exception: a value that does not fit (a rowid that is not an
                       // integer); the statement is fine, the value is not
    case SQLITE_RANGE:
      return "22023";  // invalid_parameter_value: parameter index out of range
    case SQLITE_SCHEMA:
      return "40001";  // serialization_failure: the schema changed under it, retry
    case SQLITE_INTERRUPT:
      return "57014";  // query_canceled
    case SQLITE_ABORT:
      return "57000";  // operator_intervention: aborted on the application's request
    default:
      return "XX000";  // internal_error: SQLITE_INTERNAL, MISUSE, NOTFOUND, or not an error
  }
}

}  // namespace

proto::ErrorCategory category_of_sqlstate(std::string_view sqlstate) {
  if (!well_formed(sqlstate)) return C::kInternal;
  for (const CodeRule& r : kExact) {
    if (r.code == sqlstate) return r.category;
  }
  const std::string_view cls = sqlstate.substr(0, 2);
  for (const CodeRule& r : kClasses) {
    if (r.code == cls) return r.category;
  }
  return C::kInternal;
}

SqliteErrorKind classify_sqlite_error(int extended_code, std::string_view message,
                                      SqlitePhase phase, bool query_only) {
  const char* state = sqlite_sqlstate(extended_code, message, phase, query_only);
  return {category_of_sqlstate(state), state};
}

}  // namespace dbmgr::daemon
