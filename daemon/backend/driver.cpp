// The registry of drivers, and what every driver shares.
#include "backend/driver.hpp"

#include "backend/drivers.hpp"

namespace dbmgr::daemon {

std::string_view to_string(PoolRole r) {
  switch (r) {
    case PoolRole::kMain: return "main";
    case PoolRole::kWriter: return "writer";
    case PoolRole::kReader: return "reader";
  }
  return "?";
}

std::string Dialect::quote_ident(std::string_view name) const {
  std::string out;
  out.reserve(name.size() + 2);
  out += quote_open;
  for (char c : name) {
    out += c;
    if (c == quote_close) out += c;
  }
  out += quote_close;
  return out;
}

std::vector<config::PoolSettings> Driver::settings(const config::DatabaseConfig& /*db*/,
                                                   const config::PoolSettings& s) const {
  return {s};
}

bool Driver::one_shot_begins(bool read_only, std::string_view /*sql*/) const {
  return read_only;
}

const Driver& driver_for(config::DbType type) {
  switch (type) {
    case config::DbType::kSqlite: return sqlite_driver();
    case config::DbType::kPostgresql: return postgres_driver();
    case config::DbType::kMysql:
    case config::DbType::kMariadb:
    case config::DbType::kMssql: return odbc_driver(type);
  }
  return sqlite_driver();
}

}  // namespace dbmgr::daemon
