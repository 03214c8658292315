// Dialect-aware SQL scanning: what in a statement is opaque (string literals, quoted
// identifiers, comments, dollar quotes) for each engine's lexing rules, so that words and
// placeholders are looked for only in the SQL itself.
//
// blank_opaque() copies the statement with every opaque part replaced by spaces (same length,
// so positions still match); the word helpers then look at what is left. Used for statement
// classification on the engines that need it (session-state changes on MariaDB and SQL
// Server); PostgreSQL's `?` rewriting has its own pass (postgres/pg_sql.hpp).
//
// Threading: pure functions.
#pragma once

#include <string>
#include <string_view>

#include "backend/driver.hpp"

namespace dbmgr::daemon::sqlscan {

// `sql` with literals, quoted identifiers and comments blanked, by the rules of `lexing`.
void blank_opaque(std::string_view sql, SqlLexing lexing, std::string& out);
// The first word (letters, digits, '_') of blanked SQL, or empty.
std::string_view first_word(std::string_view blanked, std::size_t* end = nullptr);
// Whether `word` appears as a whole word (case-insensitive) in blanked SQL.
bool has_word(std::string_view blanked, std::string_view word);
// Case-insensitive equality of a word and an upper-case keyword.
bool word_is(std::string_view word, std::string_view upper);

// True when the statement changes session state that must not reach the next user of a
// pooled connection, for MySQL/MariaDB and SQL Server lexing: SET (but SET TRANSACTION, which
// only shapes the next transaction), USE, PREPARE, DEALLOCATE, LOCK TABLES, HANDLER,
// temporary tables, user variables (@x outside literals, also `@x := ...` and INTO @x),
// GET_LOCK and friends; SQL Server #temp tables and sp_getapplock.
bool changes_session_state(std::string_view sql, SqlLexing lexing);

}  // namespace dbmgr::daemon::sqlscan
