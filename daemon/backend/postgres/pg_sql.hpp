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

// True when a top-level statement is CREATE, ALTER or DROP (DDL that may change what a
// statement prepared before it returns or accepts), except CREATE TEMP..., whose table only
// its own session sees (and which changes_session_state() resets).
bool changes_schema(std::string_view sql);

}  // namespace dbmgr::daemon::pgsql
