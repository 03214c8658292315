// SQL scanning per dialect.
#include "backend/sql_scan.hpp"

namespace dbmgr::daemon::sqlscan {
namespace {

// The quoted run starting at i (the opening quote): the index after its closing quote.
std::size_t quoted(std::string_view s, std::size_t i, char close, bool backslash, bool* bad) {
  std::size_t j = i + 1;
  while (j < s.size()) {
    if (backslash && s[j] == '\\') {
      j += 2;
      continue;
    }
    if (s[j] == close) {
      if (j + 1 < s.size() && s[j + 1] == close) {  // a doubled quote inside
        j += 2;
        continue;
      }
      return j + 1;
    }
    ++j;
  }
  *bad = true;
  return s.size();
}

}  // namespace

std::size_t skip_opaque(std::string_view s, std::size_t i, SqlLexing lexing, bool* bad) {
  const char c = s[i];
  const char n = i + 1 < s.size() ? s[i + 1] : '\0';
  const bool mysql = lexing == SqlLexing::kMysql;
  const bool pg = lexing == SqlLexing::kPostgres;
  switch (c) {
    case '\'': {
      // PostgreSQL's E'...' allows backslash escapes; MySQL's strings always do.
      bool esc = mysql || (pg && i > 0 && (s[i - 1] == 'E' || s[i - 1] == 'e') &&
                           (i < 2 || !ident_char(s[i - 2])));
      return quoted(s, i, '\'', esc, bad);
    }
    case '"': return quoted(s, i, '"', mysql, bad);  // MySQL: a string; elsewhere an identifier
    case '`':
      if (mysql || lexing == SqlLexing::kSqlite) return quoted(s, i, '`', false, bad);
      return i;
    case '[':
      if (lexing == SqlLexing::kMssql || lexing == SqlLexing::kSqlite) {
        return quoted(s, i, ']', false, bad);
      }
      return i;
    case '#':
      if (!mysql) return i;
      [[fallthrough]];
    case '-': {
      if (c == '-' && n != '-') return i;
      std::size_t nl = s.find('\n', i);
      return nl == std::string_view::npos ? s.size() : nl + 1;
    }
    case '/': {
      if (n != '*') return i;
      const bool nested = pg || lexing == SqlLexing::kMssql;
      int depth = 1;
      std::size_t j = i + 2;
      while (j < s.size()) {
        if (nested && s[j] == '/' && j + 1 < s.size() && s[j + 1] == '*') {
          ++depth;
          j += 2;
        } else if (s[j] == '*' && j + 1 < s.size() && s[j + 1] == '/') {
          j += 2;
          if (--depth == 0) return j;
        } else {
          ++j;
        }
      }
      *bad = true;
      return s.size();
    }
    case '$': {
      // PostgreSQL's $tag$ ... $tag$ (the tag may be empty); $1 is a parameter, not a quote.
      if (!pg || (i > 0 && ident_char(s[i - 1]))) return i;
      std::size_t j = i + 1;
      while (j < s.size() && (std::isalpha(static_cast<unsigned char>(s[j])) != 0 || s[j] == '_' ||
                              (j > i + 1 && std::isdigit(static_cast<unsigned char>(s[j])) != 0))) {
        ++j;
      }
      if (j >= s.size() || s[j] != '$') return i;
      std::string_view tag = s.substr(i, j - i + 1);
      std::size_t end = s.find(tag, j + 1);
      if (end == std::string_view::npos) {
        *bad = true;
        return s.size();
      }
      return end + tag.size();
    }
    default: return i;
  }
}

bool blank_opaque(std::string_view s, SqlLexing lexing, std::string& out) {
  out.assign(s.size(), ' ');
  return walk(s, lexing, [&](std::size_t i) { out[i] = s[i]; });
}

std::string_view first_word(std::string_view b, std::size_t* end, std::size_t from) {
  std::size_t i = from;
  while (i < b.size() && !ident_char(b[i])) ++i;
  std::size_t j = i;
  while (j < b.size() && ident_char(b[j])) ++j;
  if (end != nullptr) *end = j;
  return b.substr(i, j - i);
}

bool word_is(std::string_view w, std::string_view upper) {
  if (w.size() != upper.size()) return false;
  for (std::size_t i = 0; i < w.size(); ++i) {
    if (std::toupper(static_cast<unsigned char>(w[i])) != upper[i]) return false;
  }
  return true;
}

bool word_at(std::string_view s, std::size_t i, std::string_view upper) {
  if (i + upper.size() > s.size() || (i > 0 && ident_char(s[i - 1]))) return false;
  if (i + upper.size() < s.size() && ident_char(s[i + upper.size()])) return false;
  return word_is(s.substr(i, upper.size()), upper);
}

bool has_word(std::string_view b, std::string_view upper) {
  std::size_t i = 0;
  while (i < b.size()) {
    std::size_t j = 0;
    std::string_view w = first_word(b, &j, i);
    if (w.empty()) return false;
    if (word_is(w, upper)) return true;
    i = j;
  }
  return false;
}

bool single_statement(std::string_view sql, SqlLexing lexing) {
  bool after_semicolon = false;
  bool more = false;
  bool closed = walk(sql, lexing, [&](std::size_t i) {
    char c = sql[i];
    if (c == ';') {
      after_semicolon = true;
    } else if (after_semicolon && std::isspace(static_cast<unsigned char>(c)) == 0) {
      more = true;
    }
  });
  return closed && !more;
}

bool changes_session_state(std::string_view sql, SqlLexing lexing) {
  thread_local std::string b;
  blank_opaque(sql, lexing, b);
  std::size_t end = 0;
  std::string_view w = first_word(b, &end);
  if (word_is(w, "SET")) {
    return !word_is(first_word(b, nullptr, end), "TRANSACTION");  // shapes the next one only
  }
  for (std::string_view k : {"USE", "PREPARE", "DEALLOCATE", "LOCK", "HANDLER", "DECLARE"}) {
    if (word_is(w, k)) return true;
  }
  if (has_word(b, "TEMPORARY")) return true;  // CREATE TEMPORARY TABLE
  for (std::string_view f : {"GET_LOCK", "RELEASE_LOCK", "SP_GETAPPLOCK", "SP_SETAPPROLE"}) {
    if (has_word(b, f)) return true;
  }
  for (std::size_t i = 0; i < b.size(); ++i) {
    // A MySQL user variable (@x, not a system variable @@x) or a SQL Server #temp table.
    if (lexing == SqlLexing::kMysql && b[i] == '@' && (i + 1 >= b.size() || b[i + 1] != '@') &&
        (i == 0 || b[i - 1] != '@')) {
      return true;
    }
    if (lexing == SqlLexing::kMssql && b[i] == '#' && i + 1 < b.size() && ident_char(b[i + 1])) {
      return true;
    }
  }
  return false;
}

}  // namespace dbmgr::daemon::sqlscan
