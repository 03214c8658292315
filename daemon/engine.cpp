// Engine: the pools, naming and settings of one resolved database.
#include "engine.hpp"

#include <algorithm>

#include <fmt/format.h>

namespace dbmgr::daemon {

Engine::Engine(std::string key, config::DatabaseConfig db, const TimeSource& clock)
    : key_(std::move(key)),
      db_(std::move(db)),
      driver_(&driver_for(db_.type)),
      info_(config::get_database_info(db_, db_.name)),
      created_at_(clock.now()),
      last_session_end_(created_at_) {}

void Engine::build(std::vector<PoolPlan> plans, ReadyQueue& ready, const TimeSource& clock,
                   bool group_commit) {
  for (PoolPlan& p : plans) {
    pools_.push_back(std::make_unique<Pool>(std::move(p.label), p.settings, std::move(p.factory),
                                            ready, clock));
    roles_.push_back(p.role);
    if (p.role == PoolRole::kReader && readers_ == nullptr) readers_ = pools_.back().get();
  }
  if (group_commit) group_ = std::make_unique<GroupCommit>(*pools_.front(), ready);
}

std::unique_ptr<Engine> Engine::with_factory(ReadyQueue& ready, const TimeSource& clock,
                                             std::string key, config::DatabaseConfig db,
                                             Pool::Factory factory) {
  std::unique_ptr<Engine> e(new Engine(std::move(key), std::move(db), clock));
  std::vector<PoolPlan> plans;
  plans.push_back(PoolPlan{.role = PoolRole::kMain,
                           .label = e->db_.name,
                           .settings = e->db_.pool,
                           .factory = std::move(factory)});
  e->build(std::move(plans), ready, clock, /*group_commit=*/false);
  return e;
}

Result<std::unique_ptr<Engine>> Engine::create(uv_loop_t* loop, ReadyQueue& ready,
                                               const TimeSource& clock, std::string key,
                                               config::DatabaseConfig db,
                                               std::uint32_t max_frame_bytes,
                                               bool create_if_missing) {
  std::unique_ptr<Engine> e(new Engine(std::move(key), std::move(db), clock));
  DriverContext ctx{.loop = loop,
                    .clock = &clock,
                    .max_frame_bytes = max_frame_bytes,
                    .create_if_missing = create_if_missing};
  auto plans = e->driver_->plan(e->db_, ctx);
  if (!plans.is_ok()) return plans.status();
  e->build(std::move(plans.value()), ready, clock, e->driver_->group_commit());
  return e;
}

void Engine::learn_server_version(std::string_view version) {
  if (version_known_ || version.empty()) return;
  version_known_ = true;
  info_ = config::get_database_info(db_, db_.name, version);
}

Pool& Engine::pool_for(bool read_only) {
  return read_only && readers_ != nullptr ? *readers_ : *pools_.front();
}

std::vector<Pool*> Engine::pools() {
  std::vector<Pool*> v;
  v.reserve(pools_.size());
  for (auto& p : pools_) v.push_back(p.get());
  return v;
}

PoolRole Engine::role(const Pool* p) const {
  for (std::size_t i = 0; i < pools_.size(); ++i) {
    if (pools_[i].get() == p) return roles_[i];
  }
  return PoolRole::kMain;
}

void Engine::apply(const config::PoolSettings& s) {
  db_.pool = s;
  std::vector<config::PoolSettings> settings =
      pools_.size() == 1 ? std::vector<config::PoolSettings>{s} : driver_->settings(db_, s);
  for (std::size_t i = 0; i < pools_.size() && i < settings.size(); ++i) {
    pools_[i]->apply(settings[i]);
  }
}

void Engine::expire(Clock::time_point now) {
  for (auto& p : pools_) p->expire(now);
}

void Engine::dispose() {
  for (auto& p : pools_) p->dispose();
}

bool Engine::idle() const {
  for (const auto& p : pools_) {
    if (p->in_use() != 0 || p->opening() != 0 || p->waiting() != 0) return false;
  }
  return sessions_ == 0 && (group_ == nullptr || !group_->running());
}

Clock::time_point Engine::last_active() const {
  Clock::time_point t = last_session_end_;
  for (const auto& p : pools_) t = std::max(t, p->last_active());
  return t;
}

}  // namespace dbmgr::daemon
