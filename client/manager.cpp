// dbmgr::DatabaseManager: the free list of daemon connections, sessions, one-shots, info.
#include "dbmgr/manager.hpp"

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <utility>

#include "async_op.hpp"
#include "connection.hpp"
#include "manager_core.hpp"
#include "multiplexer.hpp"

namespace dbmgr {
namespace detail {
namespace {

std::atomic<std::uint64_t> g_next_manager_id{1};

// Borrows a connection for one request and gives it back however the scope ends.
struct Lease {
  ManagerCore& core;
  std::unique_ptr<Connection> conn;
  ~Lease() { core.release(std::move(conn)); }
};

}  // namespace

std::string default_socket_path() {
  const char* env = std::getenv("DBMGR_SOCKET");
  if (env != nullptr && *env != '\0') return env;
  return "/run/dbmgr/dbmgrd.sock";
}

std::string default_client_name() {
  std::ifstream comm("/proc/self/comm");
  std::string name;
  if (comm && std::getline(comm, name) && !name.empty()) return name;
  return "dbmgr-client";
}

ManagerCore::ManagerCore(const Options& options)
    : socket_path_(options.socket_path.empty() ? default_socket_path() : options.socket_path),
      client_name_(options.client_name.empty() ? default_client_name() : options.client_name),
      database_(options.database),
      max_idle_(options.max_idle_connections),
      async_io_thread_(options.async_io_thread),
      id_(g_next_manager_id.fetch_add(1)),
      prefix_(options.db_prefix) {}

ManagerCore::~ManagerCore() {
  if (!mux_) return;
  if (mux_->pid() != ::getpid()) {
    // Inherited through fork(): its thread does not exist here, and its socket is the
    // parent's. Leave it (and its memory) alone.
    new std::shared_ptr<Multiplexer>(std::move(mux_));
    return;
  }
  mux_->stop();
}

std::shared_ptr<Multiplexer> ManagerCore::async_transport() {
  std::lock_guard lock(mu_);
  if (mux_ && mux_->pid() != ::getpid()) {
    new std::shared_ptr<Multiplexer>(std::move(mux_));  // the parent's; see ~ManagerCore
  }
  if (mux_) {
    std::lock_guard mux_lock(mux_->mu_);
    if (mux_->broken_) {  // its sessions keep it until they are gone
      if (!async_io_thread_) replaced_.push_back(mux_);  // process_events() completes its failures
      mux_.reset();
    }
  }
  if (!mux_) mux_ = Multiplexer::open(socket_path_, client_name_, async_io_thread_);
  return mux_;
}

std::vector<std::shared_ptr<Multiplexer>> ManagerCore::take_replaced_transports() {
  std::lock_guard lock(mu_);
  return std::exchange(replaced_, {});
}

std::unique_ptr<Connection> ManagerCore::acquire(bool* fresh, bool after_dead_send) {
  std::vector<std::unique_ptr<Connection>> dead;  // closed after unlocking
  {
    std::lock_guard lock(mu_);
    // Alive, or moved to `dead` (an inherited one is abandoned: its socket is the parent's).
    auto alive = [&](std::unique_ptr<Connection>& c, bool always_peek) {
      if (!c->owned_by_this_process()) {
        c->abandon();
      } else if (c->idle_and_alive(always_peek)) {
        return true;
      }
      dead.push_back(std::move(c));
      return false;
    };
    if (after_dead_send) {
      std::erase_if(idle_, [&](std::unique_ptr<Connection>& c) { return !alive(c, true); });
    } else {
      while (!idle_.empty()) {
        std::unique_ptr<Connection> c = std::move(idle_.back());
        idle_.pop_back();
        if (alive(c, false)) {
          *fresh = false;
          return c;
        }
      }
    }
  }
  dead.clear();
  *fresh = true;
  return Connection::open(socket_path_, client_name_);
}

void ManagerCore::release(std::unique_ptr<Connection> conn) noexcept {
  if (!conn) return;
  if (!conn->owned_by_this_process()) {
    conn->abandon();
    return;
  }
  if (conn->broken()) return;
  std::lock_guard lock(mu_);
  if (idle_.size() < max_idle_) idle_.push_back(std::move(conn));
  // Otherwise conn closes here; the daemon closes its session with it.
}

void ManagerCore::drop_inherited() noexcept {
  std::lock_guard lock(mu_);
  for (auto& c : idle_) {
    if (!c->owned_by_this_process()) c->abandon();
  }
  std::erase_if(idle_, [](const std::unique_ptr<Connection>& c) { return c->broken(); });
}

std::string ManagerCore::prefix() const {
  std::lock_guard lock(mu_);
  return prefix_;
}

std::size_t ManagerCore::idle_count() const {
  std::lock_guard lock(mu_);
  return idle_.size();
}

}  // namespace detail

namespace {

using detail::Connection;
using detail::Expect;

// This thread's thread_session() per manager (by ManagerCore::id_). unique_ptr keeps the
// references handed out stable while the table grows.
struct ThreadSessions {
  std::vector<std::pair<std::uint64_t, std::unique_ptr<Session>>> entries;
};
thread_local ThreadSessions t_sessions;

}  // namespace

DatabaseManager::DatabaseManager(Options options)
    : core_(std::make_shared<detail::ManagerCore>(options)) {
  if (options.test_connection) {
    DatabaseInfo info = fetch_info(true);
    std::lock_guard lock(core_->mu_);
    core_->info_ = std::move(info);
  }
}

DatabaseManager::~DatabaseManager() = default;
DatabaseManager::DatabaseManager(DatabaseManager&&) noexcept = default;
DatabaseManager& DatabaseManager::operator=(DatabaseManager&&) noexcept = default;

void DatabaseManager::init_engine_config(std::string_view prefix, bool test_connection) {
  {
    std::lock_guard lock(core_->mu_);
    core_->prefix_.assign(prefix);
    core_->info_.reset();
  }
  if (test_connection) {
    DatabaseInfo info = fetch_info(true);
    std::lock_guard lock(core_->mu_);
    if (core_->prefix_ == prefix) core_->info_ = std::move(info);
  }
}

void DatabaseManager::init_worker() {
  core_->drop_inherited();
  for (auto& [id, session] : t_sessions.entries) {
    if (id == core_->id_) session->forget_inherited_connection();
  }
}

ScopedSession DatabaseManager::get_db(bool auto_commit, Access access) {
  return ScopedSession(get_session(access), auto_commit);
}

Session DatabaseManager::get_session(Access access) {
  return Session(core_, core_->database_, core_->prefix(), access);
}

Session& DatabaseManager::thread_session() {
  for (auto& [id, session] : t_sessions.entries) {
    if (id == core_->id_) {
      if (!session->is_open()) *session = get_session();
      return *session;
    }
  }
  t_sessions.entries.emplace_back(core_->id_, std::make_unique<Session>(get_session()));
  return *t_sessions.entries.back().second;
}

void DatabaseManager::cleanup_thread() {
  std::erase_if(t_sessions.entries, [this](const auto& e) { return e.first == core_->id_; });
}

Result DatabaseManager::execute(std::string_view sql, std::initializer_list<Param> params,
                                Access access) {
  return one_shot(sql, params.begin(), params.size(), access);
}

Result DatabaseManager::execute(std::string_view sql, const std::vector<Param>& params,
                                Access access) {
  return one_shot(sql, params.data(), params.size(), access);
}

namespace {

// Sends one request on a pooled connection and waits for its reply: `queue(c, p)` encodes
// it and registers `p` for what to expect. It is resent once, on a fresh connection, only when a
// reused one failed before the daemon got any of it (it may have restarted meanwhile), so
// nothing ever runs twice.
template <typename Queue>
void request(detail::ManagerCore& core, Queue&& queue) {
  for (int attempt = 0;; ++attempt) {
    bool fresh = false;
    detail::Lease lease{core, core.acquire(&fresh, attempt > 0)};
    Connection& c = *lease.conn;
    c.begin_batch();
    detail::Pending p;
    queue(c, p);
    try {
      c.round_trip();
    } catch (const Error&) {
      if (attempt == 0 && !fresh && c.failed_before_sending()) continue;
      throw;
    }
    if (p.error) throw *p.error;
    return;
  }
}

}  // namespace

Result DatabaseManager::one_shot(std::string_view sql, const Param* params, std::size_t count,
                                 Access access) {
  const std::uint32_t flags = access == Access::kReadOnly ? proto::kOpenReadOnly : 0;
  const std::string prefix = core_->prefix();
  Result result;
  request(*core_, [&](Connection& c, detail::Pending& p) {
    const std::vector<proto::Value>& values = c.values(params, count);
    std::uint32_t rid = c.next_request_id();
    std::size_t start = c.output_size();
    c.encoder().one_shot(rid, core_->database_, prefix, flags, sql, values.data(), values.size());
    c.check_frame_size(start, start);
    c.expect(p, rid, Expect::kResult, &result);
  });
  return result;
}

DatabaseInfo DatabaseManager::fetch_info(bool test_connection) {
  const std::string prefix = core_->prefix();
  DatabaseInfo info;
  request(*core_, [&](Connection& c, detail::Pending& p) {
    std::uint32_t rid = c.next_request_id();
    proto::Info req;
    req.database = core_->database_;
    req.prefix = prefix;
    req.flags = test_connection ? proto::kInfoTestConnection : 0;
    c.encoder().info(rid, req);
    c.expect(p, rid, Expect::kInfo, nullptr, &info);
  });
  return info;
}

DatabaseInfo DatabaseManager::info() {
  std::string prefix;
  {
    std::lock_guard lock(core_->mu_);
    if (core_->info_) return *core_->info_;
    prefix = core_->prefix_;
  }
  DatabaseInfo info = fetch_info(false);
  std::lock_guard lock(core_->mu_);
  if (core_->prefix_ == prefix) core_->info_ = info;
  return info;
}

void DatabaseManager::ping() {
  request(*core_, [](Connection& c, detail::Pending& p) {
    std::uint32_t rid = c.next_request_id();
    c.encoder().empty(proto::MsgType::kPing, rid, 0);
    c.expect(p, rid, Expect::kPong);
  });
}

AsyncSession DatabaseManager::get_async_db(Access access) {
  std::shared_ptr<detail::Multiplexer> mux = core_->async_transport();
  return AsyncSession(std::make_shared<detail::AsyncSessionState>(std::move(mux), core_->database_,
                                                                  core_->prefix(), access));
}

Async<Result> DatabaseManager::execute_async(std::string_view sql,
                                             std::initializer_list<Param> params,
                                             Access access) {
  return one_shot_async(sql, params.begin(), params.size(), access);
}

Async<Result> DatabaseManager::execute_async(std::string_view sql,
                                             const std::vector<Param>& params, Access access) {
  return one_shot_async(sql, params.data(), params.size(), access);
}

Async<Result> DatabaseManager::one_shot_async(std::string_view sql, const Param* params,
                                              std::size_t count, Access access) {
  using detail::AsyncOp;
  auto finished = [](Error e) {
    AsyncOp* op = AsyncOp::finished(detail::OpKind::kOneShot, std::move(e));
    op->refs_ = 1;
    return Async<Result>(op);
  };
  std::shared_ptr<detail::Multiplexer> mux;
  try {
    mux = core_->async_transport();
  } catch (const Error& e) {
    return finished(e);
  }
  const std::uint32_t flags = access == Access::kReadOnly ? proto::kOpenReadOnly : 0;
  const std::string prefix = core_->prefix();
  AsyncOp* op;
  {
    std::lock_guard lock(mux->mu_);
    if (mux->broken_) return finished(*mux->broken_);
    try {
      const std::vector<proto::Value>& values = mux->values(params, count);
      std::uint32_t rid = mux->router().next_request_id();
      std::size_t start = mux->output_size();
      mux->encoder().one_shot(rid, core_->database_, prefix, flags, sql, values.data(),
                              values.size());
      mux->check_frame_size(start, start);
      op = new AsyncOp(detail::OpKind::kOneShot, mux, nullptr);
      mux->router().expect(op->req_.exec, rid, Expect::kResult, &op->result_);
    } catch (const Error& e) {
      return finished(e);
    }
    op->remaining_ = 1;
    op->refs_ = 2;  // the handle's and the transport's
  }
  mux->wake();
  return Async<Result>(op);
}

int DatabaseManager::async_socket() { return core_->async_transport()->socket(); }

bool DatabaseManager::async_wants_write() { return core_->async_transport()->wants_write(); }

void DatabaseManager::process_events() {
  // A socket that broke while sending was replaced (here or by async_socket()): what its
  // break failed completes now, before the new socket's events; also when no new socket can
  // be had.
  std::shared_ptr<detail::Multiplexer> current;
  std::exception_ptr failed;
  try {
    current = core_->async_transport();
  } catch (...) {
    failed = std::current_exception();
  }
  for (auto& old : core_->take_replaced_transports()) old->process_events();
  if (failed) std::rethrow_exception(failed);
  current->process_events();
}

std::string DatabaseManager::prefix() const { return core_->prefix(); }
const std::string& DatabaseManager::socket_path() const { return core_->socket_path_; }
const std::string& DatabaseManager::database() const { return core_->database_; }

}  // namespace dbmgr
