// SQL text helpers for PostgreSQL: placeholder rewriting, script and session-state detection.
#include "backend/postgres/pg_sql.hpp"

#include <utility>

#include "backend/sql_scan.hpp"

#include <cctype>

namespace dbmgr::daemon::pgsql {
namespace {

bool is_ident_char(char c) { return sqlscan::ident_char(c); }

// Calls on_code(i) for every byte that is plain SQL by PostgreSQL's lexing.
template <typename F>
void walk(std::string_view sql, F&& on_code) {
  sqlscan::walk(sql, SqlLexing::kPostgres, std::forward<F>(on_code));
}

std::string_view first_word(std::string_view s, std::size_t* pos) {
  std::size_t i = *pos;
  while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i])) != 0) ++i;
  std::size_t start = i;
  while (i < s.size() && is_ident_char(s[i])) ++i;
  *pos = i;
  return s.substr(start, i - start);
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

// The lower-case `word` (any case in `sql`) starting at i, not part of a longer identifier.
bool is_word_at(std::string_view sql, std::size_t i, std::string_view word) {
  if (i + word.size() > sql.size() || (i > 0 && is_ident_char(sql[i - 1]))) return false;
  if (i + word.size() < sql.size() && is_ident_char(sql[i + word.size()])) return false;
  for (std::size_t k = 0; k < word.size(); ++k) {
    if (std::tolower(static_cast<unsigned char>(sql[i + k])) != word[k]) return false;
  }
  return true;
}

bool is_regexp_word(std::string_view sql, std::size_t i) { return is_word_at(sql, i, "regexp"); }

}  // namespace

Scan scan(std::string_view sql) {
  Scan s;
  bool after_semicolon = false;
  walk(sql, [&](std::size_t i) {
    char c = sql[i];
    if (after_semicolon && std::isspace(static_cast<unsigned char>(c)) == 0 && c != ';') {
      s.multi_statement = true;
    }
    if (c == ';') after_semicolon = true;
    if (c == '?') ++s.question_marks;
    if (is_regexp_word(sql, i)) ++s.regexp_words;
    if (!s.returning && (c == 'r' || c == 'R') && is_word_at(sql, i, "returning")) s.returning = true;
    if (c == '$' && i + 1 < sql.size() && std::isdigit(static_cast<unsigned char>(sql[i + 1])) != 0) {
      int v = 0;
      for (std::size_t j = i + 1; j < sql.size() && std::isdigit(static_cast<unsigned char>(sql[j])) != 0; ++j) {
        v = v * 10 + (sql[j] - '0');
        if (v > 100000) break;
      }
      if (v > s.max_dollar) s.max_dollar = v;
    }
  });
  return s;
}

std::string rewrite_placeholders(std::string_view sql) {
  Scan s = scan(sql);
  const bool placeholders = s.question_marks > 0 && s.max_dollar == 0;
  if (!placeholders && s.regexp_words == 0) return std::string(sql);
  std::string out;
  out.reserve(sql.size() + static_cast<std::size_t>(s.question_marks) * 2);
  std::size_t copied = 0;
  std::size_t skip_to = 0;  // inside a REGEXP word being replaced
  int n = 0;
  walk(sql, [&](std::size_t i) {
    if (i < skip_to) return;
    if (placeholders && sql[i] == '?') {
      out.append(sql.substr(copied, i - copied));
      out += '$';
      out += std::to_string(++n);
      copied = i + 1;
    } else if (is_regexp_word(sql, i)) {
      out.append(sql.substr(copied, i - copied));
      out += '~';
      copied = skip_to = i + 6;
    }
  });
  out.append(sql.substr(copied));
  return out;
}

namespace {

// The SQL lowercased outside literals, identifiers and comments.
std::string lowered_code(std::string_view sql) {
  std::string lower;
  lower.reserve(sql.size());
  walk(sql, [&](std::size_t i) {
    lower += static_cast<char>(std::tolower(static_cast<unsigned char>(sql[i])));
  });
  return lower;
}

// Calls f(stmt, w1, w2, w3) with each top-level statement of `lower` and its leading words;
// stops at the first call that returns true, and returns whether one did.
template <typename F>
bool any_statement(std::string_view lower, F&& f) {
  std::size_t start = 0;
  while (start < lower.size()) {
    std::size_t end = lower.find(';', start);
    if (end == std::string::npos) end = lower.size();
    std::string_view stmt(lower.data() + start, end - start);
    std::size_t pos = 0;
    std::string_view w1 = first_word(stmt, &pos);
    std::string_view w2 = first_word(stmt, &pos);
    std::string_view w3 = first_word(stmt, &pos);
    if (f(stmt, w1, w2, w3)) return true;
    start = end + 1;
  }
  return false;
}

bool creates_temp(std::string_view w1, std::string_view w2, std::string_view w3) {
  return iequals(w1, "create") &&
         (iequals(w2, "temp") || iequals(w2, "temporary") ||
          ((iequals(w2, "global") || iequals(w2, "local") || iequals(w2, "unlogged")) &&
           (iequals(w3, "temp") || iequals(w3, "temporary"))));
}

}  // namespace

namespace {

bool session_state_statement(std::string_view stmt, std::string_view w1, std::string_view w2,
                             std::string_view w3) {
  if (iequals(w1, "set") && !iequals(w2, "local") && !iequals(w2, "transaction") &&
      !iequals(w2, "constraints")) {
    return true;
  }
  if (iequals(w1, "reset") || iequals(w1, "prepare") || iequals(w1, "listen") ||
      iequals(w1, "load")) {
    return true;
  }
  if (creates_temp(w1, w2, w3)) return true;
  return iequals(w1, "declare") && stmt.find(" with hold") != std::string_view::npos;
}

bool schema_statement(std::string_view w1, std::string_view w2) {
  // DO runs an anonymous block, usually a migration (CALL is not counted: procedures may run
  // per request, and each would re-prepare every cached statement of the database).
  if (iequals(w1, "do")) return true;
  if (iequals(w1, "import")) return iequals(w2, "foreign");
  if (!iequals(w1, "create") && !iequals(w1, "alter") && !iequals(w1, "drop")) return false;
  // Objects no prepared statement's result or parameters depend on.
  for (std::string_view o : {"role", "user", "group", "database", "tablespace", "system",
                             "default"}) {
    if (iequals(w2, o)) return false;
  }
  return true;
}

// Functions anywhere in the text that make the session's state need a reset.
bool session_state_call(std::string_view lower) {
  return lower.find("advisory_lock") != std::string::npos ||
         lower.find("advisory_xact") != std::string::npos ||
         lower.find("set_config") != std::string::npos;
}

}  // namespace

bool changes_session_state(std::string_view sql) { return effects(sql).session_state; }

Effects effects(std::string_view sql) {
  const std::string lower = lowered_code(sql);
  Effects e;
  e.session_state = session_state_call(lower);
  any_statement(lower, [&](std::string_view stmt, std::string_view w1, std::string_view w2,
                           std::string_view w3) {
    if (session_state_statement(stmt, w1, w2, w3)) e.session_state = true;
    // A DO block's body is a literal the scan does not read: whatever it sets (set_config,
    // temp tables) is reset after the transaction.
    if (iequals(w1, "do")) e.session_state = true;
    // ROLLBACK TO SAVEPOINT undoes DDL of this transaction, DISCARD TEMP drops temp tables:
    // statements this connection prepared since may no longer fit.
    if ((iequals(w1, "rollback") && (iequals(w2, "to") || iequals(w3, "to"))) ||
        (iequals(w1, "discard") && (iequals(w2, "temp") || iequals(w2, "temporary")))) {
      e.local_schema = true;
    }
    if (creates_temp(w1, w2, w3)) {
      e.local_schema = true;
    } else if (schema_statement(w1, w2)) {
      e.schema = true;
    }
    if (iequals(w1, "deallocate") || (iequals(w1, "discard") && iequals(w2, "all"))) {
      e.drops_statements = true;
    }
    return false;  // every statement
  });
  return e;
}

}  // namespace dbmgr::daemon::pgsql
