// SQL text helpers for PostgreSQL: `?` placeholders to `$n`, and script detection.
//
// The lexer knows what PostgreSQL treats as opaque: 'string' literals ('' escapes),
// E'...' literals (backslash escapes), "quoted identifiers", $tag$ dollar-quoted bodies $tag$,
// -- line comments and /* nested block comments */. A `?` inside any of them is left alone.
// SQL that already uses native $1..$n placeholders is passed through untouched.
//
// Threading: pure functions.
#pragma once

#include <string>
#include <string_view>

namespace dbmgr::daemon::pgsql {

struct Scan {
  int question_marks = 0;   // `?` outside literals, identifiers and comments
  int max_dollar = 0;       // highest native $n seen outside them
  bool multi_statement = false;  // a `;` followed by more SQL at top level
  int regexp_words = 0;          // the word REGEXP outside literals, identifiers and comments
  bool returning = false;        // the word RETURNING outside them (DML that sends rows back)
};

Scan scan(std::string_view sql);

// Rewrites `?` to `$1..$n` in order (unless the SQL already uses native $n placeholders),
// and the SQLite/MySQL operator `x REGEXP y` to PostgreSQL's `x ~ y`, so the same SQL runs
// on every backend.
std::string rewrite_placeholders(std::string_view sql);

// True when the statement changes session state that must be undone before another
// client gets the connection (SET, RESET, PREPARE, LISTEN, temp tables, advisory locks,
// cursors WITH HOLD, set_config(..., false), SET SESSION AUTHORIZATION/ROLE).
bool changes_session_state(std::string_view sql);

// What a statement does beyond its result, decided in one pass over its text (at prepare
// time, once per cached statement).
struct Effects {
  bool session_state = false;  // changes_session_state()
  // DDL that may change what a statement prepared before it returns or accepts, as other
  // sessions see it: CREATE, ALTER or DROP (but of a role, user, group, database,
  // tablespace, the system or default privileges, and CREATE TEMP ...), DO (its body may run
  // DDL) and IMPORT FOREIGN SCHEMA. Not CALL, nor a function a statement calls.
  bool schema = false;
  // What only this connection's statements can be stale after: CREATE TEMP ... (a table
  // only its session sees), ROLLBACK TO SAVEPOINT (undoes this transaction's DDL), DISCARD
  // TEMP.
  bool local_schema = false;
  bool drops_statements = false;  // DEALLOCATE, DISCARD ALL: prepared statements are gone
};
Effects effects(std::string_view sql);

}  // namespace dbmgr::daemon::pgsql
