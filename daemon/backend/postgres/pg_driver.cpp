// The PostgreSQL driver: one pool of libpq connections per database, driven in the loop.
#include "backend/drivers.hpp"
#include "backend/postgres/pg_conn.hpp"

namespace dbmgr::daemon {
namespace {

class PostgresDriver final : public Driver {
 public:
  std::string_view name() const override { return "postgresql"; }
  const Dialect& dialect() const override {
    static const Dialect d{.lexing = SqlLexing::kPostgres,
                           .native_question_marks = false,  // rewritten to $n (pg_sql.hpp)
                           .begin_read_write = "BEGIN",
                           .begin_read_only = "BEGIN READ ONLY",
                           .ping = "SELECT 1",
                           .quote_open = '"',
                           .quote_close = '"'};
    return d;
  }

  Result<std::vector<PoolPlan>> plan(const config::DatabaseConfig& c,
                                     const DriverContext& ctx) const override {
    PgParams p;
    p.host = c.host;
    p.port = c.port;
    p.user = c.user;
    p.password = c.password;
    p.dbname = c.name;
    p.sslmode = c.sslmode;
    p.statement_timeout = c.pool.statement_timeout;
    p.max_frame_bytes = ctx.max_frame_bytes;
    p.create_if_missing = ctx.create_if_missing;
    uv_loop_t* loop = ctx.loop;
    std::vector<PoolPlan> plans;
    plans.push_back(PoolPlan{.role = PoolRole::kMain,
                             .label = c.name,
                             .settings = c.pool,
                             .factory = [loop, p] { return new PgConn(loop, p); }});
    return plans;
  }
};

}  // namespace

const Driver& postgres_driver() {
  static const PostgresDriver d;
  return d;
}

}  // namespace dbmgr::daemon
