// Database naming: prefix and name rules, SQLite paths, masked URIs and primary-key types.
#include <charconv>
#include <cstdio>
#include <filesystem>
#include <string>

#include "dbmgr/config/config.hpp"

namespace dbmgr::config {
namespace {

constexpr std::size_t kMaxNameBytes = 63;

std::string describe_char(char c) {
  if (c == ' ') return "a space";
  if (c == '\t') return "a tab";
  if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "byte 0x%02x", static_cast<unsigned char>(c));
    return buf;
  }
  return std::string("'") + c + "'";
}

// Checks dot-separated words; `what` is "prefix" or "name", `allowed` says which characters a
// word may hold. Returns an empty string when fine, else what is wrong.
template <typename WordChar>
std::string check_words(std::string_view s, std::string_view what, WordChar word_char,
                        std::string_view rule) {
  const std::string quoted = std::string(what) + " '" + std::string(s) + "'";
  if (s.empty()) return std::string(what) + " is empty";
  if (s.size() > kMaxNameBytes) {
    return quoted + " is " + std::to_string(s.size()) + " bytes long; at most " +
           std::to_string(kMaxNameBytes) + " are allowed";
  }
  if (s.front() == '.') return quoted + " starts with a dot; " + std::string(rule);
  if (s.back() == '.') return quoted + " ends with a dot; " + std::string(rule);
  if (s.find("..") != std::string_view::npos) {
    return quoted + " has an empty word between two dots; " + std::string(rule);
  }
  for (char c : s) {
    if (c == '.' || word_char(c)) continue;
    if (c == '/' || c == '\\') {
      return quoted + " contains " + describe_char(c) + " (no paths); " + std::string(rule);
    }
    if (c >= 'A' && c <= 'Z') {
      return quoted + " contains the uppercase letter " + describe_char(c) + "; " +
             std::string(rule);
    }
    return quoted + " contains " + describe_char(c) + "; " + std::string(rule);
  }
  return {};
}

bool is_lower_word_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
}

bool is_name_word_char(char c) {
  return is_lower_word_char(c) || (c >= 'A' && c <= 'Z') || c == '-';
}

bool is_unreserved(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

// Percent-encodes everything but RFC 3986's unreserved characters (user names, database names).
std::string encode_component(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (is_unreserved(c)) {
      out += c;
    } else {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", static_cast<unsigned char>(c));
      out += buf;
    }
  }
  return out;
}

// Query values as SQLAlchemy renders them: '/' and ':' stay readable (host=/tmp/x), a space
// becomes '+' (driver=ODBC+Driver+18+for+SQL+Server), the rest is percent-encoded.
std::string encode_query_value(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (is_unreserved(c) || c == '/' || c == ':') {
      out += c;
    } else if (c == ' ') {
      out += '+';
    } else {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", static_cast<unsigned char>(c));
      out += buf;
    }
  }
  return out;
}

void add_query(std::string* query, std::string_view key, std::string_view value) {
  if (value.empty()) return;
  *query += query->empty() ? "?" : "&";
  *query += key;
  *query += '=';
  *query += encode_query_value(value);
}

// scheme://[user[:***]@]host[:port]/name?query, the password always masked.
std::string server_uri(std::string_view scheme, const DatabaseConfig& db,
                       std::string_view resolved_name, std::string_view socket_key) {
  std::string uri(scheme);
  uri += "://";
  if (!db.user.empty() || !db.password.empty()) {
    uri += encode_component(db.user);
    if (!db.password.empty()) uri += ":***";
    uri += '@';
  }
  std::string query;
  const bool socket = !db.host.empty() && db.host.front() == '/';
  if (socket) {
    add_query(&query, socket_key, db.host);
    if (db.port != 0) add_query(&query, "port", std::to_string(db.port));
  } else {
    if (db.host.find(':') != std::string::npos) {
      uri += "[" + db.host + "]";  // IPv6 literal
    } else {
      uri += encode_component(db.host);
    }
    if (db.port != 0) uri += ":" + std::to_string(db.port);
  }
  uri += '/';
  uri += encode_component(resolved_name);
  if (db.type == DbType::kPostgresql) add_query(&query, "sslmode", db.sslmode);
  add_query(&query, "driver", db.driver);
  return uri + query;
}

// "10.11.6-MariaDB" -> (10, 11); "5.5.5-10.11.6-MariaDB" (the old MySQL-protocol disguise)
// -> (10, 11). Returns false when no version can be read.
bool parse_major_minor(std::string_view v, int* major, int* minor) {
  if (v.substr(0, 6) == "5.5.5-") v.remove_prefix(6);
  const char* p = v.data();
  const char* end = v.data() + v.size();
  auto r1 = std::from_chars(p, end, *major);
  if (r1.ec != std::errc() || r1.ptr == end || *r1.ptr != '.') return false;
  auto r2 = std::from_chars(r1.ptr + 1, end, *minor);
  return r2.ec == std::errc();
}

}  // namespace

Result<std::string> validate_prefix(std::string_view prefix) {
  std::string problem = check_words(prefix, "prefix", is_lower_word_char,
                                    "a prefix is dot-separated words of [a-z0-9_]");
  if (!problem.empty()) return Error{.message = std::move(problem)};
  return std::string(prefix);
}

Result<std::string> validate_name(std::string_view name) {
  std::string problem = check_words(name, "database name", is_name_word_char,
                                    "a name is dot-separated words of [A-Za-z0-9_-]");
  if (!problem.empty()) return Error{.message = std::move(problem)};
  return std::string(name);
}

Result<std::string> resolve_name(std::string_view prefix, std::string_view name) {
  if (auto n = validate_name(name); !n.ok()) return n.error();
  if (prefix.empty()) return std::string(name);
  if (auto p = validate_prefix(prefix); !p.ok()) return p.error();
  // Nesting prevention: a name that already starts with "PREFIX." keeps it once.
  if (name.size() > prefix.size() && name.substr(0, prefix.size()) == prefix &&
      name[prefix.size()] == '.') {
    return std::string(name);
  }
  std::string resolved = std::string(prefix) + "." + std::string(name);
  if (auto r = validate_name(resolved); !r.ok()) return r.error();
  return resolved;
}

Result<std::string> db_name_to_path(std::string_view folder, std::string_view name) {
  if (auto n = validate_name(name); !n.ok()) return n.error();
  // The folder, lexically normalized, without trailing slashes; "" for the current folder.
  std::string dir = std::filesystem::path(folder).lexically_normal().generic_string();
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  if (dir == ".") dir.clear();
  const std::string file_name = std::string(name) + ".db";
  std::string file = dir.empty() ? file_name : (dir == "/" ? dir : dir + "/") + file_name;
  // A valid name holds no '/' and no empty word, so this cannot fail; checked all the same
  // because the whole point of the function is that it never leaves the folder.
  std::filesystem::path normal = std::filesystem::path(file).lexically_normal();
  if (normal.generic_string() != file || normal.filename() != file_name) {
    return Error{.message = "database name '" + std::string(name) + "' leaves the folder '" +
                            std::string(folder) + "'"};
  }
  // A relative path keeps a leading "./" so that it reads as a path, not a bare name.
  if (dir.empty()) return "./" + file;
  return file;
}

PkType pk_type(DbType type, std::string_view server_version) {
  switch (type) {
    case DbType::kSqlite:
      return {"String", "TEXT"};
    case DbType::kPostgresql:
      return {"UUID", "UUID"};
    case DbType::kMssql:
      return {"UUID", "UNIQUEIDENTIFIER"};
    case DbType::kMysql:
    case DbType::kMariadb: {
      // MariaDB has a native UUID column type since 10.7; a MySQL driver may talk to a MariaDB
      // server, so the version string decides, not only the configured type.
      const bool mariadb =
          type == DbType::kMariadb || server_version.find("MariaDB") != std::string_view::npos;
      int major = 0;
      int minor = 0;
      if (mariadb && parse_major_minor(server_version, &major, &minor) &&
          (major > 10 || (major == 10 && minor >= 7))) {
        return {"UUID", "UUID"};
      }
      return {"UUID", "CHAR(36)"};
    }
  }
  return {"UUID", "CHAR(36)"};
}

std::string database_uri(const DatabaseConfig& db, std::string_view resolved_name) {
  switch (db.type) {
    case DbType::kSqlite: {
      auto path = db_name_to_path(db.path, resolved_name);
      if (path.ok()) return "sqlite:///" + *path;
      return "sqlite:///" + db.path + "/" + std::string(resolved_name);
    }
    case DbType::kPostgresql:
      return server_uri("postgresql", db, resolved_name, "host");
    case DbType::kMysql:
      return server_uri("mysql", db, resolved_name, "unix_socket");
    case DbType::kMariadb:
      return server_uri("mariadb", db, resolved_name, "unix_socket");
    case DbType::kMssql:
      return server_uri("mssql+odbc", db, resolved_name, "host");
  }
  return {};
}

DatabaseInfo get_database_info(const DatabaseConfig& db, std::string_view resolved_name,
                               std::string_view server_version) {
  return DatabaseInfo{.type = db.type,
                      .name = std::string(resolved_name),
                      .uri = database_uri(db, resolved_name),
                      .pk = pk_type(db.type, server_version)};
}

}  // namespace dbmgr::config
