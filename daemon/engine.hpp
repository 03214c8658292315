// Engine: everything the daemon holds for one resolved database (prefix applied): its
// configuration, its masked URI and PK type, and its pools.
//
// Engines are created lazily on the first request that names them. One that has had no
// session and no connection leased, opening or awaited for engine_idle_timeout is disposed
// by the janitor (its connections and descriptors closed) and made again on next use; the
// rest live until shutdown.
// Its pools are its driver's plan (backend/driver.hpp): SQLite engines have two, the writer
// (exactly one connection; write transactions queue for it FIFO and begin with BEGIN
// IMMEDIATE, so no client ever sees SQLITE_BUSY from another) and the readers (query_only
// connections for read-only sessions, which run concurrently: min(pool_size, sqlite.readers)
// kept, max_overflow more under load). Server engines have one pool. Queued one-shot writes
// may be group-committed where the driver offers it (SQLite; group_commit.hpp).
//
// Threading: loop thread only.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <uv.h>

#include "backend/driver.hpp"
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
  // An engine of one pool whose connections `factory` makes (tests: a fake backend), with
  // no group commit.
  static std::unique_ptr<Engine> with_factory(ReadyQueue& ready, const TimeSource& clock,
                                              std::string key, config::DatabaseConfig db,
                                              Pool::Factory factory);

  const Driver& driver() const { return *driver_; }
  Pool& pool_for(bool read_only);
  // Whether a one-shot's statement runs inside BEGIN ... COMMIT (Driver::one_shot_begins).
  bool one_shot_begins(bool read_only, std::string_view sql) const {
    return driver_->one_shot_begins(read_only, sql);
  }
  std::vector<Pool*> pools();
  // Group commit of queued one-shot writes (drivers that offer it; null otherwise).
  GroupCommit* group_commit() { return group_.get(); }
  const GroupCommit* group_commit() const { return group_.get(); }
  PoolRole role(const Pool* p) const;

  const std::string& key() const { return key_; }
  const config::DatabaseConfig& config() const { return db_; }
  const std::string& name() const { return db_.name; }
  const config::DatabaseInfo& info() const { return info_; }
  // The server told its version: the database info (PK type) follows it (MariaDB 10.7+ has
  // a native UUID type).
  void learn_server_version(std::string_view version);
  // The info waits for the server's version (Driver::info_needs_server()).
  bool info_pending() const { return driver_->info_needs_server() && !version_known_; }
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
  void build(std::vector<PoolPlan> plans, ReadyQueue& ready, const TimeSource& clock,
             bool group_commit);

  std::string key_;
  config::DatabaseConfig db_;
  const Driver* driver_;
  config::DatabaseInfo info_;
  bool version_known_ = false;
  std::vector<std::unique_ptr<Pool>> pools_;  // the driver's plan, in its order
  std::vector<PoolRole> roles_;
  Pool* readers_ = nullptr;             // a kReader pool, if the plan has one
  std::unique_ptr<GroupCommit> group_;  // on pools_[0], if the driver offers group commit
  Clock::time_point created_at_;
  Clock::time_point last_session_end_;
  int sessions_ = 0;  // Session objects (named and one-shot) on this engine
};

}  // namespace dbmgr::daemon
