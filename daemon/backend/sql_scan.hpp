// Dialect-aware SQL scanning: what in a statement is opaque (string literals, quoted
// identifiers, comments, dollar quotes) for each engine's lexing rules, so that words and
// placeholders are looked for only in the SQL itself.
//
// walk() visits every byte of plain SQL; blank_opaque() copies the statement with every
// opaque part replaced by spaces (same length, so positions still match), for the word
// helpers. The one lexer of the daemon: SQLite's statement classification (group commit,
// read-only one-shots), PostgreSQL's `?` rewriting and session-state detection, and the
// ODBC engine's session-state detection all stand on it.
//
// Threading: pure functions.
#pragma once

#include <cctype>
#include <cstddef>
#include <string>
#include <string_view>

#include "backend/driver.hpp"

namespace dbmgr::daemon::sqlscan {

// A byte that may be part of an identifier (letters, digits, '_', UTF-8 bytes).
inline bool ident_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_' ||
         static_cast<unsigned char>(c) >= 0x80;
}

// The index after the opaque part that starts at `i` (a literal, quoted identifier, comment
// or dollar quote by the rules of `lexing`), or `i` when none starts there. An opaque part
// that never closes runs to the end and sets *unterminated.
std::size_t skip_opaque(std::string_view sql, std::size_t i, SqlLexing lexing,
                        bool* unterminated);

// Calls on_code(i) for every byte of `sql` that is plain SQL. False when the text ends
// inside an unterminated literal, identifier or comment.
template <typename F>
bool walk(std::string_view sql, SqlLexing lexing, F&& on_code) {
  bool unterminated = false;
  std::size_t i = 0;
  while (i < sql.size()) {
    std::size_t j = skip_opaque(sql, i, lexing, &unterminated);
    if (j != i) {
      i = j;
      continue;
    }
    on_code(i);
    ++i;
  }
  return !unterminated;
}

// `sql` with literals, quoted identifiers and comments blanked, by the rules of `lexing`.
// False when one of them is unterminated.
bool blank_opaque(std::string_view sql, SqlLexing lexing, std::string& out);
// The first word (letters, digits, '_') of blanked SQL from `from`, or empty; *end is set
// after it.
std::string_view first_word(std::string_view blanked, std::size_t* end = nullptr,
                            std::size_t from = 0);
// Whether `upper` appears as a whole word (case-insensitive) in blanked SQL.
bool has_word(std::string_view blanked, std::string_view upper);
// Case-insensitive equality of a word and an upper-case keyword.
bool word_is(std::string_view word, std::string_view upper);
// Whether `upper` (an upper-case word) starts at i of `sql`, not inside a longer identifier.
bool word_at(std::string_view sql, std::size_t i, std::string_view upper);
// One statement: no plain-SQL byte other than blanks and ';' after the first ';' (and no
// unterminated literal or comment).
bool single_statement(std::string_view sql, SqlLexing lexing);

// True when the statement changes session state that must not reach the next user of a
// pooled connection, for MySQL/MariaDB and SQL Server lexing: SET (but SET TRANSACTION, which
// only shapes the next transaction), USE, PREPARE, DEALLOCATE, LOCK TABLES, HANDLER,
// temporary tables, user variables (@x outside literals, also `@x := ...` and INTO @x),
// GET_LOCK and friends; SQL Server #temp tables and sp_getapplock.
bool changes_session_state(std::string_view sql, SqlLexing lexing);

}  // namespace dbmgr::daemon::sqlscan
