// Settings model: errors, database types, durations, prefix policy and database lookup.
#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdlib>
#include <limits>
#include <string>

#include "dbmgr/config/config.hpp"

namespace dbmgr::config {

std::string Error::to_string() const {
  std::string out;
  if (!file.empty()) {
    out += file;
    if (line > 0) out += ":" + std::to_string(line);
    out += ": ";
  }
  if (!key.empty()) out += key + ": ";
  out += message;
  return out;
}

std::string_view to_string(DbType t) {
  switch (t) {
    case DbType::kSqlite:
      return "sqlite";
    case DbType::kPostgresql:
      return "postgresql";
    case DbType::kMysql:
      return "mysql";
    case DbType::kMariadb:
      return "mariadb";
    case DbType::kMssql:
      return "mssql";
  }
  return "unknown";
}

std::optional<DbType> parse_db_type(std::string_view s) {
  std::string lower(s);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (lower == "sqlite" || lower == "sqlite3") return DbType::kSqlite;
  if (lower == "postgresql" || lower == "postgres") return DbType::kPostgresql;
  if (lower == "mysql") return DbType::kMysql;
  if (lower == "mariadb") return DbType::kMariadb;
  if (lower == "mssql") return DbType::kMssql;
  return std::nullopt;
}

// A number followed by an optional unit. A bare number is milliseconds (the loader refuses
// bare non-zero numbers in YAML so that "30" is never silently read as 30 ms; see loader.cpp).
std::optional<Millis> parse_duration(std::string_view s) {
  if (s.empty()) return std::nullopt;
  std::int64_t n = 0;
  const char* begin = s.data();
  const char* end = s.data() + s.size();
  auto [ptr, ec] = std::from_chars(begin, end, n);
  if (ec != std::errc() || ptr == begin || n < 0) return std::nullopt;
  std::string_view unit(ptr, static_cast<std::size_t>(end - ptr));
  std::int64_t scale = 0;
  if (unit.empty() || unit == "ms") {
    scale = 1;
  } else if (unit == "s") {
    scale = 1'000;
  } else if (unit == "m" || unit == "min") {
    scale = 60'000;
  } else if (unit == "h") {
    scale = 3'600'000;
  } else if (unit == "d") {
    scale = 86'400'000;
  } else {
    return std::nullopt;
  }
  if (n > std::numeric_limits<std::int64_t>::max() / scale) return std::nullopt;
  return Millis{n * scale};
}

std::optional<std::uint64_t> parse_size(std::string_view s, std::uint64_t unit) {
  std::uint64_t n = 0;
  const char* begin = s.data();
  const char* end = s.data() + s.size();
  auto [ptr, ec] = std::from_chars(begin, end, n);
  if (s.empty() || ec != std::errc() || ptr == begin) return std::nullopt;
  std::string suffix(ptr, static_cast<std::size_t>(end - ptr));
  std::transform(suffix.begin(), suffix.end(), suffix.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  std::uint64_t scale = 0;
  if (suffix.empty()) {
    scale = unit;
  } else if (suffix == "b") {
    scale = 1;
  } else if (suffix == "k" || suffix == "kb" || suffix == "kib") {
    scale = 1ull << 10;
  } else if (suffix == "m" || suffix == "mb" || suffix == "mib") {
    scale = 1ull << 20;
  } else if (suffix == "g" || suffix == "gb" || suffix == "gib") {
    scale = 1ull << 30;
  } else {
    return std::nullopt;
  }
  if (scale != 0 && n > std::numeric_limits<std::uint64_t>::max() / scale) return std::nullopt;
  return n * scale;
}

bool PrefixPolicy::allows_create(std::string_view prefix) const {
  for (const std::string& allowed : create_on_demand) {
    if (prefix == allowed) return true;
    if (prefix.size() > allowed.size() && prefix.substr(0, allowed.size()) == allowed &&
        prefix[allowed.size()] == '.') {
      return true;
    }
  }
  return false;
}

std::optional<DatabaseConfig> Settings::find_database(std::string_view key) const {
  if (key.empty()) return default_database;
  if (auto it = databases.find(std::string(key)); it != databases.end()) return it->second;
  // An unknown key is another database of the default server (another file in the same
  // folder for SQLite), like PgBouncer's "*" entry. The key must be a valid name, so it can
  // never address a file outside the folder; whether a missing server database may be
  // created is the prefix policy's decision.
  if (!validate_name(key).ok()) return std::nullopt;
  DatabaseConfig db = default_database;
  db.key = std::string(key);
  db.name = std::string(key);
  return db;
}

EnvLookup process_env() {
  return [](std::string_view name) -> std::optional<std::string> {
    const char* v = std::getenv(std::string(name).c_str());
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  };
}

}  // namespace dbmgr::config
