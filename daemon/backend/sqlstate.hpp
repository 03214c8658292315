// SQLSTATE -> wire error category, and SQLite result codes -> SQLSTATE.
//
// One table decides the category of every backend error: category_of_sqlstate() looks at
// the SQLSTATE's class (its first two characters) after a few exact codes. Backends that
// have no SQLSTATE of their own (SQLite) first translate their error to the PostgreSQL-style
// SQLSTATE that means the same (classify_sqlite_error()), so a unique violation is 23505
// and `constraint` whichever backend reported it. docs/protocol.md ("SQLSTATE classes and
// categories") lists both tables as implemented here.
//
// Threading: pure functions, no I/O, no state.
#pragma once

#include <string_view>

#include "dbmgr/protocol/protocol.hpp"

namespace dbmgr::daemon {

// The category for a five-character SQLSTATE (PostgreSQL's codes, which follow the SQL
// standard, plus the ODBC codes HYT00, HYT01, HY008 and HY001). Total: an empty, short,
// long or malformed string (anything but five of 0-9 and A-Z), a success or warning code
// and an unknown class all give kInternal. 57014 (query_canceled) gives kCancelled; a
// backend that knows the cancel came from its statement timeout reports kTimeout instead.
proto::ErrorCategory category_of_sqlstate(std::string_view sqlstate);

// Where SQLite reported the error: sqlite3_prepare*() (kPrepare), or running a statement,
// sqlite3_step() or sqlite3_exec() of BEGIN/COMMIT/... (kStep). It matters only for plain
// SQLITE_ERROR whose message says nothing more specific: 42000 (syntax) at prepare,
// 22000 (data) at step.
enum class SqlitePhase { kPrepare, kStep };

struct SqliteErrorKind {
  proto::ErrorCategory category;  // always category_of_sqlstate(sqlstate)
  const char* sqlstate;           // a static five-character SQLSTATE, never null
};

// Translates SQLite's error to a SQLSTATE and its category. `extended_code` is
// sqlite3_extended_errcode() (a primary code works too, less precisely), `message` is
// sqlite3_errmsg() (it refines plain SQLITE_ERROR; other codes ignore it). `query_only` is
// true when the connection refuses writes by design (PRAGMA query_only=1, or opened with
// SQLITE_OPEN_READONLY): plain SQLITE_READONLY there is a write in a read-only session
// (25006, kReadOnly); anywhere else it means the file or folder is read-only (58030, kIo).
// SQLITE_INTERRUPT gives 57014 kCancelled; the backend turns it into kTimeout when its own
// deadline interrupted the statement. Total: any code gives a result (unknown -> XX000).
SqliteErrorKind classify_sqlite_error(int extended_code, std::string_view message,
                                      SqlitePhase phase, bool query_only);

}  // namespace dbmgr::daemon
