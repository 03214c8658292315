// SQL scanning per dialect.
#include "backend/sql_scan.hpp"

#include <cctype>

namespace dbmgr::daemon::sqlscan {
namespace {

bool word_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_' || c == '$';
}

// Blanks a quoted run starting at i (the opening quote), returns the index after it.
std::size_t quoted(std::string_view s, std::size_t i, char close, bool backslash,
                   std::string& out) {
  std::size_t j = i + 1;
  while (j < s.size()) {
    if (backslash && s[j] == '\\' && j + 1 < s.size()) {
      j += 2;
      continue;
    }
    if (s[j] == close) {
      if (j + 1 < s.size() && s[j + 1] == close) {  // doubled quote inside
        j += 2;
        continue;
      }
      ++j;
      break;
    }
    ++j;
  }
  for (std::size_t k = i; k < j && k < s.size(); ++k) out[k] = ' ';
  return j;
}

}  // namespace

void blank_opaque(std::string_view s, SqlLexing lexing, std::string& out) {
  out.assign(s.data(), s.size());
  const bool mysql = lexing == SqlLexing::kMysql;
  const bool nested = lexing == SqlLexing::kPostgres || lexing == SqlLexing::kMssql;
  std::size_t i = 0;
  while (i < s.size()) {
    char c = s[i];
    char n = i + 1 < s.size() ? s[i + 1] : '\0';
    if (c == '\'') {
      bool esc = mysql || (lexing == SqlLexing::kPostgres && i > 0 &&
                           (s[i - 1] == 'E' || s[i - 1] == 'e'));
      i = quoted(s, i, '\'', esc, out);
    } else if (c == '"') {
      i = quoted(s, i, '"', mysql, out);  // MySQL: a string; elsewhere an identifier
    } else if (c == '`' && lexing != SqlLexing::kPostgres && lexing != SqlLexing::kMssql) {
      i = quoted(s, i, '`', false, out);
    } else if (c == '[' && (lexing == SqlLexing::kMssql || lexing == SqlLexing::kSqlite)) {
      i = quoted(s, i, ']', false, out);
    } else if ((c == '-' && n == '-') || (c == '#' && mysql)) {
      std::size_t j = i;
      while (j < s.size() && s[j] != '\n') out[j++] = ' ';
      i = j;
    } else if (c == '/' && n == '*') {
      int depth = 0;
      std::size_t j = i;
      while (j < s.size()) {
        if (s[j] == '/' && j + 1 < s.size() && s[j + 1] == '*') {
          ++depth;
          out[j] = out[j + 1] = ' ';
          j += 2;
          if (!nested) depth = 1;
        } else if (s[j] == '*' && j + 1 < s.size() && s[j + 1] == '/') {
          out[j] = out[j + 1] = ' ';
          j += 2;
          if (--depth == 0) break;
        } else {
          out[j++] = ' ';
        }
      }
      i = j;
    } else if (c == '$' && lexing == SqlLexing::kPostgres &&
               (i == 0 || !word_char(s[i - 1]))) {
      std::size_t j = i + 1;
      while (j < s.size() && (std::isalnum(static_cast<unsigned char>(s[j])) || s[j] == '_')) ++j;
      if (j < s.size() && s[j] == '$') {
        std::string_view tag = s.substr(i, j - i + 1);
        std::size_t end = s.find(tag, j + 1);
        std::size_t stop = end == std::string_view::npos ? s.size() : end + tag.size();
        for (std::size_t k = i; k < stop; ++k) out[k] = ' ';
        i = stop;
      } else {
        i = j;
      }
    } else {
      ++i;
    }
  }
}

std::string_view first_word(std::string_view b, std::size_t* end) {
  std::size_t i = 0;
  while (i < b.size() && !word_char(b[i])) ++i;
  std::size_t j = i;
  while (j < b.size() && word_char(b[j])) ++j;
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

bool has_word(std::string_view b, std::string_view upper) {
  std::size_t i = 0;
  while (i < b.size()) {
    while (i < b.size() && !word_char(b[i])) ++i;
    std::size_t j = i;
    while (j < b.size() && word_char(b[j])) ++j;
    if (j > i && word_is(b.substr(i, j - i), upper)) return true;
    i = j;
  }
  return false;
}

bool changes_session_state(std::string_view sql, SqlLexing lexing) {
  thread_local std::string b;
  blank_opaque(sql, lexing, b);
  std::size_t end = 0;
  std::string_view w = first_word(b, &end);
  if (word_is(w, "SET")) {
    std::string_view next = first_word(std::string_view(b).substr(end));
    return !word_is(next, "TRANSACTION");  // shapes only the next transaction
  }
  for (std::string_view k : {"USE", "PREPARE", "DEALLOCATE", "LOCK", "HANDLER", "DECLARE"}) {
    if (word_is(w, k)) return true;
  }
  if (has_word(b, "TEMPORARY")) return true;  // CREATE TEMPORARY TABLE
  for (std::string_view f : {"GET_LOCK", "RELEASE_LOCK", "SP_GETAPPLOCK", "SP_SETAPPROLE"}) {
    if (has_word(b, f)) return true;
  }
  for (std::size_t i = 0; i < b.size(); ++i) {
    // A user variable (@x, not the read of a system variable @@x) or a SQL Server #temp table.
    if (b[i] == '@' && (i + 1 >= b.size() || b[i + 1] != '@') && (i == 0 || b[i - 1] != '@')) {
      if (lexing == SqlLexing::kMysql) return true;
    }
    if (b[i] == '#' && lexing == SqlLexing::kMssql && i + 1 < b.size() && word_char(b[i + 1])) {
      return true;
    }
  }
  return false;
}

}  // namespace dbmgr::daemon::sqlscan
