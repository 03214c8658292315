// Engine: the pools, naming and settings of one resolved database.
#include "engine.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "backend_pg.hpp"
#include "backend_sqlite.hpp"

namespace dbmgr::daemon {

Engine::Engine(std::string key, config::DatabaseConfig db, const TimeSource& clock)
    : key_(std::move(key)),
      db_(std::move(db)),
      created_at_(clock.now()),
      last_session_end_(created_at_) {}

std::unique_ptr<Engine> Engine::with_factories(ReadyQueue& ready, const TimeSource& clock,
                                               std::string key, config::DatabaseConfig db,
                                               Pool::Factory writer, Pool::Factory readers) {
  std::unique_ptr<Engine> e(new Engine(std::move(key), std::move(db), clock));
  e->info_ = config::get_database_info(e->db_, e->db_.name);
  config::PoolSettings w = e->db_.pool;
  if (readers) {
    w.pool_size = 1;
    w.max_overflow = 0;
  }
  e->writer_ = std::make_unique<Pool>(e->db_.name, w, std::move(writer), ready, clock);
  if (readers) {
    e->readers_ = std::make_unique<Pool>(fmt::format("{} (readers)", e->db_.name),
                                         reader_settings(e->db_.pool, e->db_.sqlite),
                                         std::move(readers), ready, clock);
  }
  return e;
}

Result<std::unique_ptr<Engine>> Engine::create(uv_loop_t* loop, ReadyQueue& ready,
                                               const TimeSource& clock, std::string key,
                                               config::DatabaseConfig db,
                                               std::uint32_t max_frame_bytes,
                                               bool create_if_missing) {
  std::unique_ptr<Engine> e(new Engine(std::move(key), std::move(db), clock));
  const config::DatabaseConfig& c = e->db_;
  switch (c.type) {
    case config::DbType::kSqlite: {
      auto path = config::db_name_to_path(c.path, c.name);
      if (!path.ok()) return Status::invalid(path.error().to_string());
      std::string file = *path;
      // Once, on the loop, before any connection of this engine exists (see ensure_file).
      if (Status st = SqliteConn::ensure_file(file); !st.is_ok()) return st;
      e->info_ = config::get_database_info(c, c.name);
      config::PoolSettings writer = c.pool;
      writer.pool_size = 1;
      writer.max_overflow = 0;
      auto sqlite = c.sqlite;
      auto timeout = c.pool.statement_timeout;
      const TimeSource* clk = &clock;
      e->writer_ = std::make_unique<Pool>(
          fmt::format("{} (writer)", c.name), writer,
          [=] {
            return new SqliteConn(loop, *clk, file, sqlite, timeout, max_frame_bytes,
                                  SqliteConn::Role::kWriter);
          },
          ready, clock);
      e->group_ = std::make_unique<GroupCommit>(*e->writer_);
      e->readers_ = std::make_unique<Pool>(
          fmt::format("{} (readers)", c.name), reader_settings(c.pool, c.sqlite),
          [=] {
            return new SqliteConn(loop, *clk, file, sqlite, timeout, max_frame_bytes,
                                  SqliteConn::Role::kReader);
          },
          ready, clock);
      return e;
    }
    case config::DbType::kPostgresql: {
      e->info_ = config::get_database_info(c, c.name);
      PgParams p;
      p.host = c.host;
      p.port = c.port;
      p.user = c.user;
      p.password = c.password;
      p.dbname = c.name;
      p.sslmode = c.sslmode;
      p.statement_timeout = c.pool.statement_timeout;
      p.max_frame_bytes = max_frame_bytes;
      p.create_if_missing = create_if_missing;
      e->writer_ = std::make_unique<Pool>(
          c.name, c.pool, [loop, p] { return new PgConn(loop, p); }, ready, clock);
      return e;
    }
    default:
      return Status::invalid(fmt::format("database type {} is not served by this dbmgrd yet",
                                         config::to_string(c.type)));
  }
}

config::PoolSettings Engine::reader_settings(const config::PoolSettings& pool,
                                             const config::SqliteSettings& sqlite) {
  // `sqlite.readers` caps the reader connections kept; max_overflow may add more under load.
  config::PoolSettings r = pool;
  r.pool_size = std::max(1, std::min(pool.pool_size, sqlite.readers));
  return r;
}

Pool& Engine::pool_for(bool read_only) {
  return read_only && readers_ ? *readers_ : *writer_;
}

TxBegin Engine::one_shot_begin(bool read_only, std::string_view sql) const {
  // A single PostgreSQL statement in autocommit is its own transaction: no BEGIN/COMMIT,
  // unless it must run read-only (BEGIN READ ONLY ... COMMIT, in the same round trip).
  if (db_.type != config::DbType::kSqlite) return read_only ? TxBegin::kDeferred : TxBegin::kNone;
  if (read_only || SqliteConn::autocommit_only_sql(sql)) return TxBegin::kNone;
  return TxBegin::kImmediate;
}

TxBegin Engine::begin_mode(bool read_only) const {
  if (db_.type == config::DbType::kSqlite && !read_only) return TxBegin::kImmediate;
  return TxBegin::kDeferred;
}

std::vector<Pool*> Engine::pools() {
  std::vector<Pool*> v{writer_.get()};
  if (readers_) v.push_back(readers_.get());
  return v;
}

std::string_view Engine::role(const Pool* p) const {
  if (!readers_) return "main";
  return p == readers_.get() ? "reader" : "writer";
}

void Engine::apply(const config::PoolSettings& s) {
  db_.pool = s;
  if (readers_) {
    config::PoolSettings w = s;
    w.pool_size = 1;
    w.max_overflow = 0;
    writer_->apply(w);
    readers_->apply(reader_settings(s, db_.sqlite));
  } else {
    writer_->apply(s);
  }
}

void Engine::expire(Clock::time_point now) {
  writer_->expire(now);
  if (readers_) readers_->expire(now);
}

void Engine::dispose() {
  writer_->dispose();
  if (readers_) readers_->dispose();
}

bool Engine::idle() const {
  auto quiet = [](const Pool* p) {
    return p == nullptr || (p->in_use() == 0 && p->opening() == 0 && p->waiting() == 0);
  };
  return sessions_ == 0 && quiet(writer_.get()) && quiet(readers_.get()) &&
         (group_ == nullptr || !group_->running());
}

Clock::time_point Engine::last_active() const {
  Clock::time_point t = std::max(last_session_end_, writer_->last_active());
  if (readers_) t = std::max(t, readers_->last_active());
  return t;
}

}  // namespace dbmgr::daemon
