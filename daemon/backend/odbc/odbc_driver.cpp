// The ODBC driver (MariaDB/MySQL, MSSQL through unixODBC): not served yet.
#include <fmt/format.h>

#include "backend/drivers.hpp"

namespace dbmgr::daemon {
namespace {

class OdbcDriver final : public Driver {
 public:
  explicit OdbcDriver(config::DbType type) : type_(type) {}
  std::string_view name() const override { return "odbc"; }
  const Dialect& dialect() const override {
    static const Dialect d{};
    return d;
  }
  Result<std::vector<PoolPlan>> plan(const config::DatabaseConfig& c,
                                     const DriverContext&) const override {
    return Status::invalid(fmt::format("database type {} is not served by this dbmgrd yet",
                                       config::to_string(c.type)));
  }

 private:
  config::DbType type_;
};

}  // namespace

const Driver& odbc_driver(config::DbType type) {
  static const OdbcDriver mysql(config::DbType::kMysql);
  static const OdbcDriver mariadb(config::DbType::kMariadb);
  static const OdbcDriver mssql(config::DbType::kMssql);
  switch (type) {
    case config::DbType::kMssql: return mssql;
    case config::DbType::kMysql: return mysql;
    default: return mariadb;
  }
}

}  // namespace dbmgr::daemon
