// Engine: everything the daemon holds for one resolved database (prefix applied): its
// configuration, its masked URI and PK type, and its pools.
//
// Engines are created lazily on the first request that names them. One that has had no
// session and no connection leased, opening or awaited for engine_idle_timeout is disposed
// by the janitor (its connections and descriptors closed) and made again on next use; the
// rest live until shutdown.
// SQLite engines have two pools: the writer (exactly one connection; write transactions
// queue for it FIFO and begin with BEGIN IMMEDIATE, so no client ever sees SQLITE_BUSY from
// another) and the readers (pool_size + max_overflow query_only connections for read-only
// sessions, which run concurrently: min(pool_size, sqlite.readers) kept, max_overflow more
// under load). Server engines have one pool. Queued one-shot writes to a SQLite engine may
// be group-committed (group_commit.hpp).
//
// Threading: loop thread only.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <uv.h>

#include "backend.hpp"
#include "dbmgr/config/config.hpp"
#include "group_commit.hpp"
#include "pool.hpp"

namespace dbmgr::daemon {

class Engine {
 public:
  // `db` is the database's configuration with `name` already resolved (prefix applied).
  static Result<std::unique_ptr<Engine>> create(uv_loop_t* loop, ReadyQueue& ready,
                                                const TimeSource& clock, std::string key,
                                                config::DatabaseConfig db,
                                                std::uint32_t max_frame_bytes,
                                                bool create_if_missing);
  // An engine whose pools make connections with the given factories (tests: a fake
  // backend). `readers` may be empty: then there is one pool.
  static std::unique_ptr<Engine> with_factories(ReadyQueue& ready, const TimeSource& clock,
                                                std::string key, config::DatabaseConfig db,
                                                Pool::Factory writer, Pool::Factory readers);

  Pool& pool_for(bool read_only);
  TxBegin begin_mode(bool read_only) const;
  TxBegin one_shot_begin(bool read_only, std::string_view sql) const;
  std::vector<Pool*> pools();
  // Group commit of queued one-shot writes (SQLite engines only; null otherwise).
  GroupCommit* group_commit() { return group_.get(); }
  const GroupCommit* group_commit() const { return group_.get(); }
  // The role of a pool for people: "writer", "reader" or "main".
  std::string_view role(const Pool* p) const;

  const std::string& key() const { return key_; }
  const config::DatabaseConfig& config() const { return db_; }
  const std::string& name() const { return db_.name; }
  const config::DatabaseInfo& info() const { return info_; }
  Clock::time_point created_at() const { return created_at_; }

  void apply(const config::PoolSettings& s);
  void expire(Clock::time_point now);
  void dispose();
  // No session, and no connection leased, opening or awaited.
  bool idle() const;
  // The last time a session ended or a pool was used (for engine_idle_timeout).
  Clock::time_point last_active() const;
  int sessions() const { return sessions_; }
  void session_opened() { ++sessions_; }
  void session_closed(Clock::time_point now) {
    --sessions_;
    last_session_end_ = now;
  }

 private:
  Engine(std::string key, config::DatabaseConfig db, const TimeSource& clock);
  static config::PoolSettings reader_settings(const config::PoolSettings& pool,
                                              const config::SqliteSettings& sqlite);

  std::string key_;
  config::DatabaseConfig db_;
  config::DatabaseInfo info_;
  std::unique_ptr<Pool> writer_;   // SQLite writer, or the only pool of a server engine
  std::unique_ptr<Pool> readers_;  // SQLite only
  std::unique_ptr<GroupCommit> group_;  // SQLite only; uses writer_
  Clock::time_point created_at_;
  Clock::time_point last_session_end_;
  int sessions_ = 0;  // Session objects (named and one-shot) on this engine
};

}  // namespace dbmgr::daemon
