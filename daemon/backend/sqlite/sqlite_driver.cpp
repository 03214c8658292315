// The SQLite driver: one writer connection and a pool of query_only readers per database
// file; group commit of queued one-shot writes on the writer.
#include <algorithm>

#include <fmt/format.h>

#include "backend/drivers.hpp"
#include "backend/sqlite/sqlite_conn.hpp"

namespace dbmgr::daemon {
namespace {

config::PoolSettings writer_settings(const config::PoolSettings& s) {
  config::PoolSettings w = s;
  w.pool_size = 1;
  w.max_overflow = 0;
  return w;
}

// `sqlite.readers` caps the reader connections kept; max_overflow may add more under load.
config::PoolSettings reader_settings(const config::PoolSettings& pool,
                                     const config::SqliteSettings& sqlite) {
  config::PoolSettings r = pool;
  r.pool_size = std::max(1, std::min(pool.pool_size, sqlite.readers));
  return r;
}

// `sqlite.cache_size` is the page cache of one database, not of each connection (a reader
// pool of 4 + 10 overflow at 64 MiB each held 900 MB): the writer keeps half, the readers
// share the other half, each at least 1 MiB. Readers miss into the OS page cache, which holds
// the file once for all of them.
std::int64_t writer_cache_kib(const config::SqliteSettings& s) {
  return std::max<std::int64_t>(s.cache_kib / 2, std::min<std::int64_t>(s.cache_kib, 1024));
}
std::int64_t reader_cache_kib(const config::SqliteSettings& s, const config::PoolSettings& r) {
  const std::int64_t readers = std::max(1, r.pool_size + std::max(0, r.max_overflow));
  return std::max<std::int64_t>((s.cache_kib - writer_cache_kib(s)) / readers,
                                std::min<std::int64_t>(s.cache_kib, 1024));
}

class SqliteDriver final : public Driver {
 public:
  std::string_view name() const override { return "sqlite"; }
  const Dialect& dialect() const override {
    static const Dialect d{.lexing = SqlLexing::kSqlite,
                           .native_question_marks = true,
                           .begin_read_write = "BEGIN IMMEDIATE",
                           .begin_read_only = "BEGIN",
                           .ping = "SELECT 1",
                           .quote_open = '"',
                           .quote_close = '"'};
    return d;
  }

  Result<std::vector<PoolPlan>> plan(const config::DatabaseConfig& c,
                                     const DriverContext& ctx) const override {
    auto path = config::db_name_to_path(c.path, c.name);
    if (!path.ok()) return Status::invalid(path.error().to_string());
    std::string file = *path;
    // Once, on the loop, before any connection of this engine exists (see ensure_file).
    if (Status st = SqliteConn::ensure_file(file); !st.is_ok()) return st;
    auto writer = c.sqlite;
    writer.cache_kib = writer_cache_kib(c.sqlite);
    auto reader = c.sqlite;
    reader.cache_kib = reader_cache_kib(c.sqlite, reader_settings(c.pool, c.sqlite));
    auto timeout = c.pool.statement_timeout;
    DriverContext x = ctx;
    std::vector<PoolPlan> plans;
    plans.push_back(PoolPlan{
        .role = PoolRole::kWriter,
        .label = fmt::format("{} (writer)", c.name),
        .settings = writer_settings(c.pool),
        .factory = [=] {
          return new SqliteConn(x.loop, *x.clock, file, writer, timeout, x.max_frame_bytes,
                                SqliteConn::Role::kWriter);
        }});
    plans.push_back(PoolPlan{
        .role = PoolRole::kReader,
        .label = fmt::format("{} (readers)", c.name),
        .settings = reader_settings(c.pool, c.sqlite),
        .factory = [=] {
          return new SqliteConn(x.loop, *x.clock, file, reader, timeout, x.max_frame_bytes,
                                SqliteConn::Role::kReader);
        }});
    return plans;
  }

  std::vector<config::PoolSettings> settings(const config::DatabaseConfig& db,
                                             const config::PoolSettings& s) const override {
    return {writer_settings(s), reader_settings(s, db.sqlite)};
  }

  // A one-shot write runs inside BEGIN IMMEDIATE ... COMMIT on the writer, except VACUUM
  // (refused inside a transaction). A read-only one runs on a query_only reader in
  // autocommit.
  bool one_shot_begins(bool read_only, std::string_view sql) const override {
    return !read_only && !SqliteConn::autocommit_only_sql(sql);
  }
  bool one_shot_only_reads(std::string_view sql) const override {
    return SqliteConn::read_only_sql(sql);
  }
  bool group_commit() const override { return true; }
  bool batches() const override { return true; }
  bool batch_groupable_sql(std::string_view sql) const override {
    return SqliteConn::batch_groupable_sql(sql);
  }
  bool groupable_sql(std::string_view sql) const override {
    return SqliteConn::groupable_sql(sql);
  }
};

}  // namespace

const Driver& sqlite_driver() {
  static const SqliteDriver d;
  return d;
}

}  // namespace dbmgr::daemon
