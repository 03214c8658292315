// The ODBC driver: MariaDB/MySQL and Microsoft SQL Server through unixODBC, one pool of
// OdbcConn per database.
#include <fmt/format.h>

#include "backend/drivers.hpp"
#include "backend/odbc/odbc_conn.hpp"
#include "backend/odbc/odbc_connstr.hpp"

namespace dbmgr::daemon {
namespace {

class OdbcDriver final : public Driver {
 public:
  explicit OdbcDriver(config::DbType type) : type_(type) {}
  std::string_view name() const override { return "odbc"; }
  const Dialect& dialect() const override {
    static const Dialect mysql{.lexing = SqlLexing::kMysql,
                               .native_question_marks = true,
                               .begin_read_write = "START TRANSACTION",
                               .begin_read_only = "START TRANSACTION READ ONLY",
                               .ping = "SELECT 1",
                               .quote_open = '`',
                               .quote_close = '`'};
    // SQL Server has no read-only transactions: read-only sessions are refused there (see
    // OdbcConn) rather than allowed to write.
    static const Dialect mssql{.lexing = SqlLexing::kMssql,
                               .native_question_marks = true,
                               .begin_read_write = "BEGIN TRANSACTION",
                               .begin_read_only = "",
                               .ping = "SELECT 1",
                               .quote_open = '[',
                               .quote_close = ']'};
    return type_ == config::DbType::kMssql ? mssql : mysql;
  }

  Result<std::vector<PoolPlan>> plan(const config::DatabaseConfig& c,
                                     const DriverContext& ctx) const override {
    OdbcParams p;
    p.flavor = type_ == config::DbType::kMssql ? OdbcParams::Flavor::kMssql
                                               : OdbcParams::Flavor::kMariadb;
    p.dialect = &dialect();
    p.connect = odbc::connection_string(c, c.name);
    p.maintenance = odbc::connection_string(c, type_ == config::DbType::kMssql ? "master" : "");
    p.dbname = c.name;
    p.create_if_missing = ctx.create_if_missing;
    p.statement_timeout = c.pool.statement_timeout;
    p.max_frame_bytes = ctx.max_frame_bytes;
    uv_loop_t* loop = ctx.loop;
    std::vector<PoolPlan> plans;
    plans.push_back(PoolPlan{.role = PoolRole::kMain,
                             .label = c.name,
                             .settings = c.pool,
                             .factory = [loop, p] { return new OdbcConn(loop, p); }});
    return plans;
  }

  // The PK column type depends on the server's version (MariaDB 10.7 has UUID).
  bool info_needs_server() const override { return type_ != config::DbType::kMssql; }

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
