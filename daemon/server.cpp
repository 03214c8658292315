// Server: listener, loop, janitor, signals, drain, reload and engine registry.
#include "server.hpp"

#include "backend/blocking_pool.hpp"

#include <grp.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fstream>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "client_conn.hpp"
#include "metrics.hpp"

namespace dbmgr::daemon {
namespace {

constexpr int kJanitorMs = 100;
constexpr std::size_t kReadBufferSize = 64 * 1024;

// True when something accepts connections on `path` (a live daemon).
bool socket_answers(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  bool live = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return live;
}

}  // namespace

std::string Status::to_string() const {
  if (ok_) return "ok";
  if (sqlstate_.empty()) return fmt::format("{}: {}", proto::to_string(category_), message_);
  return fmt::format("{}: {} [{}]", proto::to_string(category_), message_, sqlstate_);
}

Server::Server(config::Settings settings, config::CommandLine cli, config::EnvLookup env,
               const TimeSource& clock, EngineFactory engines)
    : settings_(std::move(settings)),
      cli_(std::move(cli)),
      env_(std::move(env)),
      clock_(clock),
      make_engine_(engines ? std::move(engines) : EngineFactory(&Engine::create)),
      started_at_(clock.now()),
      read_buffer_(kReadBufferSize) {
  uv_loop_init(&loop_);
  loop_.data = this;
  ready_ = std::make_unique<ReadyQueue>(&loop_);
}

Server::~Server() {
  stop_listening();
  for (uv_signal_t* h : {&sigterm_, &sigint_, &sighup_}) {
    if (h->loop != nullptr && uv_is_closing(reinterpret_cast<uv_handle_t*>(h)) == 0) {
      const int signum = h->signum;  // uv_close() clears it
      uv_close(reinterpret_cast<uv_handle_t*>(h), nullptr);
      // Closing the last handle of a signal gives it back its default action (libuv), and
      // the default of SIGTERM kills: a second SIGTERM between here and exit() would turn
      // a clean stop into death by signal. What is left of the process only exits.
      if (signum != 0) std::signal(signum, SIG_IGN);
    }
  }
  for (PendingRequest* r : free_requests_) delete r;
  for (WriteReq* w : free_writes_) delete w;
  engines_.clear();
  ready_->close();
  blocking::close_all(&loop_);     // the ODBC threads (backend/blocking_pool.hpp)
  uv_run(&loop_, UV_RUN_NOWAIT);  // close callbacks of what is still open
  ready_.reset();
  uv_loop_close(&loop_);
}

void Server::on_callback_exception(std::string_view where, ClientConn* client) noexcept {
  if (client == nullptr) return;
  guard_callback("closing a client after an internal error", [&] {
    spdlog::error("{}: closing this client after the internal error in {}", client->tag(), where);
    client->close_soon("internal error");
  });
}

Status Server::bind_socket() {
  uv_pipe_init(&loop_, &listener_, 0);
  listener_.data = this;
  int n = sd_listen_fds(0);
  if (n >= 1) {  // socket activation: systemd made and owns the socket
    int rc = uv_pipe_open(&listener_, SD_LISTEN_FDS_START);
    if (rc != 0) return Status::internal(fmt::format("cannot use the systemd socket: {}", uv_strerror(rc)));
    spdlog::info("listening on the socket passed by systemd");
  } else {
    const std::string& path = settings_.socket_path;
    auto slash = path.rfind('/');
    if (slash != std::string::npos && slash > 0) {
      std::string dir = path.substr(0, slash);
      struct stat st{};
      if (::stat(dir.c_str(), &st) != 0 && ::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
        return Status::internal(fmt::format("cannot create the socket folder {}: {}", dir,
                                            std::strerror(errno)));
      }
    }
    struct stat st{};
    if (::lstat(path.c_str(), &st) == 0) {
      if (!S_ISSOCK(st.st_mode)) {
        return Status::internal(fmt::format(
            "{} exists and is not a socket; refusing to replace it (remove it, or choose "
            "another socket path)",
            path));
      }
      if (socket_answers(path)) {
        return Status::internal(
            fmt::format("another dbmgrd is already listening on {}; refusing to start", path));
      }
      spdlog::info("removing stale socket file {}", path);
      ::unlink(path.c_str());
    }
    int rc = uv_pipe_bind(&listener_, path.c_str());
    if (rc != 0) return Status::internal(fmt::format("cannot bind {}: {}", path, uv_strerror(rc)));
    socket_owned_ = true;
    if (::chmod(path.c_str(), settings_.socket_mode) != 0) {
      return Status::internal(fmt::format("cannot chmod {}: {}", path, std::strerror(errno)));
    }
    if (!settings_.socket_group.empty()) {
      group* g = ::getgrnam(settings_.socket_group.c_str());
      if (g == nullptr) {
        return Status::internal(fmt::format("socket group {} does not exist", settings_.socket_group));
      }
      if (::chown(path.c_str(), static_cast<uid_t>(-1), g->gr_gid) != 0) {
        return Status::internal(fmt::format("cannot give {} to group {}: {}", path,
                                            settings_.socket_group, std::strerror(errno)));
      }
    }
  }
  uv_os_fd_t fd = -1;
  if (uv_fileno(reinterpret_cast<uv_handle_t*>(&listener_), &fd) != 0 || fd < 0) {
    return Status::internal("the listening socket has no descriptor");
  }
  if (::listen(fd, 1024) != 0) {
    return Status::internal(fmt::format("cannot listen: {}", std::strerror(errno)));
  }
  if (int rc = uv_poll_init(&loop_, &accept_poll_, fd); rc != 0) {
    return Status::internal(fmt::format("cannot watch the socket: {}", uv_strerror(rc)));
  }
  accept_poll_.data = this;
  uv_timer_init(&loop_, &accept_pause_);
  accept_pause_.data = this;
  listen_fd_ = fd;
  listening_ = true;
  uv_poll_start(&accept_poll_, UV_READABLE, &Server::on_acceptable);
  return Status::ok();
}

void Server::stop_listening() {
  if (!listening_) return;
  listening_ = false;
  uv_poll_stop(&accept_poll_);
  uv_close(reinterpret_cast<uv_handle_t*>(&accept_poll_), nullptr);
  uv_timer_stop(&accept_pause_);
  uv_close(reinterpret_cast<uv_handle_t*>(&accept_pause_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&listener_), nullptr);  // closes the descriptor
  listen_fd_ = -1;
}

Status Server::start() {
  // Each client costs a descriptor; backends and the daemon itself need some too.
  max_clients_ = settings_.max_clients;
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
    // Backend connections (a SQLite connection takes 2-3 descriptors) and the daemon's own.
    const rlim_t reserve = std::min<rlim_t>(256, rl.rlim_cur / 4);
    rlim_t room = rl.rlim_cur > reserve ? rl.rlim_cur - reserve : 1;
    if (static_cast<rlim_t>(max_clients_) > room) {
      max_clients_ = static_cast<int>(room);
      spdlog::warn("max_clients {} is more than the descriptor limit allows ({}); serving at "
                   "most {} clients",
                   settings_.max_clients, rl.rlim_cur, max_clients_);
    }
  }
  if (Status s = bind_socket(); !s.is_ok()) {
    if (!listening_) uv_close(reinterpret_cast<uv_handle_t*>(&listener_), nullptr);
    uv_run(&loop_, UV_RUN_NOWAIT);
    return s;
  }
  // [issue 6] The Prometheus endpoint renders the same documents as the admin requests.
  if (settings_.metrics.enabled()) {
    metrics_ = std::make_unique<MetricsServer>(&loop_, [this] {
      using json = nlohmann::ordered_json;
      return render_prometheus(json::parse(status_json()), json::parse(pools_json()),
                               json::parse(sessions_json()));
    });
    if (Status s = metrics_->start(settings_.metrics); !s.is_ok()) {
      metrics_->close();
      stop_listening();
      if (socket_owned_) ::unlink(settings_.socket_path.c_str());
      uv_run(&loop_, UV_RUN_NOWAIT);
      return s;
    }
  }
  uv_signal_init(&loop_, &sigterm_);
  uv_signal_init(&loop_, &sigint_);
  uv_signal_init(&loop_, &sighup_);
  sigterm_.data = sigint_.data = sighup_.data = this;
  uv_signal_start(&sigterm_, &Server::on_signal, SIGTERM);
  uv_signal_start(&sigint_, &Server::on_signal, SIGINT);
  uv_signal_start(&sighup_, &Server::on_signal, SIGHUP);
  uv_timer_init(&loop_, &janitor_);
  janitor_.data = this;
  uv_timer_start(&janitor_, &Server::on_janitor, kJanitorMs, kJanitorMs);
  uv_prepare_init(&loop_, &flusher_);
  flusher_.data = this;
  uv_prepare_start(&flusher_, &Server::on_prepare);
  spdlog::info("dbmgrd {} listening on {} (pid {}, default database: {} {})", "0.1.0",
               settings_.socket_path, getpid(), config::to_string(settings_.default_database.type),
               settings_.default_database.type == config::DbType::kSqlite
                   ? settings_.default_database.path
                   : settings_.default_database.name);
  std::uint64_t watchdog_usec = 0;
  if (sd_watchdog_enabled(0, &watchdog_usec) > 0) {  // ping at half the systemd period
    watchdog_interval_ = std::chrono::microseconds(watchdog_usec / 2);
    spdlog::info("systemd watchdog: pinging every {} ms",
                 std::chrono::duration_cast<std::chrono::milliseconds>(watchdog_interval_).count());
  }
  sd_notify(0, "READY=1");
  return Status::ok();
}

int Server::run() {
  uv_run(&loop_, UV_RUN_DEFAULT);
  spdlog::info("dbmgrd stopped");
  return exit_code_;
}

void Server::on_acceptable(uv_poll_t* h, int status, int /*events*/) {
  auto* self = static_cast<Server*>(h->data);
  self->guarded("accept", nullptr, [&] {
    if (status < 0) return self->pause_accepting(status);
    self->accept_ready();
  });
}

void Server::on_accept_resume(uv_timer_t* t) {
  auto* self = static_cast<Server*>(t->data);
  if (self->listening_) uv_poll_start(&self->accept_poll_, UV_READABLE, &Server::on_acceptable);
}

void Server::pause_accepting(int err) {
  // Out of descriptors (EMFILE/ENFILE) or memory: stop accepting for a moment. The waiting
  // connections stay in the listen backlog (their connect() has succeeded; their hello is
  // answered once accepted); the listener is never lost and the loop never spins on it.
  // Said at most once a second.
  ++totals_.accept_errors;
  uv_poll_stop(&accept_poll_);
  uv_timer_start(&accept_pause_, &Server::on_accept_resume, kAcceptPauseMs, 0);
  auto now = clock_.now();
  if (now - last_accept_warning_ >= std::chrono::seconds(1)) {
    last_accept_warning_ = now;
    spdlog::warn("accept failed: {} ({} so far); accepting again in {} ms, waiting connections "
                 "stay queued",
                 uv_strerror(err), totals_.accept_errors, kAcceptPauseMs);
  }
}

void Server::accept_ready() {
  for (int i = 0; i < kAcceptBatch && listening_; ++i) {
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      const int e = errno;
      if (e == EAGAIN || e == EWOULDBLOCK) return;
      if (e == EINTR || e == ECONNABORTED) continue;
      return pause_accepting(-e);
    }
    auto* c = new ClientConn(*this, next_client_id_++);
    clients_.push_back(c);
    int rc = c->adopt(fd);
    if (rc != 0) {
      spdlog::warn("accept failed: {}", uv_strerror(rc));
      c->close("accept failed");
      continue;
    }
    ++totals_.clients_accepted;
    if (static_cast<int>(clients_.size()) > max_clients_) {
      ++totals_.clients_refused;
      c->refuse(Status(proto::ErrorCategory::kResources,
                       fmt::format("dbmgrd serves at most {} clients (max_clients); try again "
                                   "later",
                                   max_clients_),
                       "53300"));
      continue;
    }
    unshaken_.push_back(c);
  }
}

void Server::on_handshake(ClientConn* c) {
  auto it = std::find(unshaken_.begin(), unshaken_.end(), c);
  if (it != unshaken_.end()) {
    *it = unshaken_.back();
    unshaken_.pop_back();
  }
}

void Server::on_client_closed(ClientConn* c) {
  clients_.erase(std::remove(clients_.begin(), clients_.end(), c), clients_.end());
  on_handshake(c);
  if (c->dirty_) {
    dirty_.erase(std::remove(dirty_.begin(), dirty_.end(), c), dirty_.end());
    c->dirty_ = false;
  }
}

void Server::on_session_gone(Session* /*s*/) {}

void Server::mark_dirty(ClientConn* c) {
  if (!c->dirty_ && !c->closing()) {  // a closing one is deleted on a later loop turn
    c->dirty_ = true;
    dirty_.push_back(c);
  }
}

void Server::on_prepare(uv_prepare_t* p) {
  auto* self = static_cast<Server*>(p->data);
  // Flush every connection that got replies this loop turn: one write each.
  while (!self->dirty_.empty()) {
    self->flushing_.swap(self->dirty_);  // both keep their capacity: no allocation per turn
    for (ClientConn* c : self->flushing_) {
      c->dirty_ = false;
      self->guarded("flush", c, [c] { c->flush(); });
    }
    self->flushing_.clear();
  }
}

WriteReq* Server::take_write_req() {
  if (free_writes_.empty()) return new WriteReq();
  WriteReq* w = free_writes_.back();
  free_writes_.pop_back();
  return w;
}

void Server::give_write_req(WriteReq* w) {
  w->buf.release();
  w->conn = nullptr;
  if (free_writes_.size() < 1024) {
    free_writes_.push_back(w);
  } else {
    delete w;
  }
}

PendingRequest* Server::take_request() {
  if (free_requests_.empty()) return new PendingRequest();
  PendingRequest* r = free_requests_.back();
  free_requests_.pop_back();
  return r;
}

void Server::free_request(PendingRequest* r, ClientConn* owner) {
  const std::size_t bytes = r->payload.size();
  r->payload.release();
  r->next = nullptr;
  if (free_requests_.size() < 4096) {
    free_requests_.push_back(r);
  } else {
    delete r;
  }
  if (owner != nullptr) owner->request_done(bytes);
}

Result<Engine*> Server::engine_for(std::string_view database, std::string_view prefix,
                                   ClientConn* client) {
  // Every one-shot and session asks; the answer for a (database, prefix) pair only changes
  // with a reload, so it is remembered without allocating per request.
  cache_key_.assign(database);
  cache_key_.push_back('\0');
  cache_key_.append(prefix);
  Engine* e = nullptr;
  if (auto hit = engine_cache_.find(cache_key_); hit != engine_cache_.end()) {
    e = hit->second;
  } else {
    auto found = resolve_engine(database, prefix, client);  // leaves cache_key_ alone
    if (!found.is_ok()) return found;
    e = found.value();
    engine_cache_.emplace(cache_key_, e);
  }
  if (client != nullptr) {
    if (Status s = check_access(*e, *client); !s.is_ok()) return s;
  }
  return e;
}

Status Server::check_access(const Engine& e, const ClientConn& c) const {
  const config::DatabaseConfig& db = e.config();
  if (db.allow_uids.empty() && db.allow_gids.empty()) return Status::ok();
  if (std::find(db.allow_uids.begin(), db.allow_uids.end(), c.uid()) != db.allow_uids.end()) {
    return Status::ok();
  }
  for (gid_t g : c.groups()) {
    if (std::find(db.allow_gids.begin(), db.allow_gids.end(), g) != db.allow_gids.end()) {
      return Status::ok();
    }
  }
  spdlog::warn("{}: refused database {} (uid {} is not in its allow_uids/allow_gids)", c.tag(),
               e.name(), c.uid());
  return Status(proto::ErrorCategory::kPermission,
                fmt::format("uid {} may not use database {} (allow_uids/allow_gids)", c.uid(),
                            e.name()),
                "42501");
}

Result<Engine*> Server::resolve_engine(std::string_view database, std::string_view prefix,
                                       ClientConn* client) {
  if (!prefix.empty()) {
    auto p = config::validate_prefix(prefix);
    if (!p.ok()) return Status::invalid(p.error().to_string());
  }
  auto base = settings_.find_database(database);
  if (!base) {
    return Status::not_found(fmt::format("unknown database '{}': it is not in the databases: "
                                         "section of the configuration",
                                         database));
  }
  if (base->name.empty()) base->name = "default";
  auto resolved = config::resolve_name(prefix, base->name);
  if (!resolved.ok()) return Status::invalid(resolved.error().to_string());
  std::string key = fmt::format("{}|{}", base->key, *resolved);
  auto it = engines_.find(key);
  if (it != engines_.end()) return it->second.get();
  if (draining_) return Status(proto::ErrorCategory::kShuttingDown, "dbmgrd is shutting down");
  if (static_cast<int>(engines_.size()) >= settings_.max_engines) {
    return Status(proto::ErrorCategory::kResources,
                  fmt::format("dbmgrd has {} databases open (max_engines); {} is not opened",
                              engines_.size(), *resolved),
                  "53000");
  }
  if (client != nullptr && client->engines_made() >= settings_.max_engines_per_client) {
    return Status(proto::ErrorCategory::kResources,
                  fmt::format("this connection has opened {} databases (max_engines_per_client); "
                              "{} is not opened",
                              client->engines_made(), *resolved),
                  "53000");
  }
  config::DatabaseConfig db = *base;
  db.name = *resolved;
  bool create = !prefix.empty() && settings_.prefixes.allows_create(prefix);
  // A database the configuration names is made on first use; any other name only under a
  // prefix the policy lets create (prefixes.create_on_demand), or if it exists already.
  const bool configured = database.empty() || settings_.databases.count(std::string(database)) != 0;
  if (db.type == config::DbType::kSqlite && !configured && !create) {
    auto file = config::db_name_to_path(db.path, db.name);
    struct stat st{};
    if (file.ok() && ::stat(file->c_str(), &st) != 0) {
      return Status::not_found(fmt::format(
          "database {} does not exist, and it is not created on demand (neither in the "
          "configuration nor under a prefix of prefixes.create_on_demand)",
          db.name));
    }
  }
  auto engine = make_engine_(&loop_, *ready_, clock_, base->key, std::move(db),
                             settings_.max_frame_bytes, create);
  if (!engine.is_ok()) return engine.status();
  Engine* e = engine.value().get();
  spdlog::info("engine {}: created ({}, {})", e->name(), config::to_string(e->config().type),
               e->info().uri);
  ++totals_.engines_created;
  if (client != nullptr) client->count_engine_made();
  engines_.emplace(key, std::move(engine.value()));
  return e;
}

void Server::on_signal(uv_signal_t* h, int signum) {
  auto* self = static_cast<Server*>(h->data);
  self->guarded("signal", nullptr, [&] {
    if (signum == SIGHUP) {
      Status s = self->reload();
      if (!s.is_ok()) spdlog::error("reload refused: {}", s.message());
      return;
    }
    self->begin_shutdown(signum == SIGTERM ? "SIGTERM" : "SIGINT");
  });
}

Status Server::reload() {
  auto loaded = config::load(cli_, env_);
  if (!loaded.ok()) {
    return Status(proto::ErrorCategory::kInvalidRequest,
                  "the configuration was not reloaded, the old one stays: " +
                      loaded.error().to_string());
  }
  config::Settings next = std::move(*loaded);
  // The socket cannot move while we listen on it; everything else applies.
  next.socket_path = settings_.socket_path;
  // [issue 6] Nor does the metrics endpoint: it keeps the address it started with.
  if (next.metrics.listen != settings_.metrics.listen) {
    spdlog::warn("metrics.listen changed to '{}'; it applies at the next start",
                 next.metrics.listen);
  }
  next.metrics = settings_.metrics;
  settings_ = std::move(next);
  engine_cache_.clear();  // a name may map to another server now
  for (auto& [key, engine] : engines_) {
    auto db = settings_.find_database(engine->key());
    if (db) engine->apply(db->pool);
  }
  spdlog::info("configuration reloaded from {}",
               settings_.config_file.empty() ? "(environment only)" : settings_.config_file);
  return Status::ok();
}

void Server::begin_drain(std::string_view why) {
  if (draining_) return;
  draining_ = true;
  drain_deadline_ = clock_.now() + settings_.drain_timeout;
  spdlog::info("{}: draining; no new sessions or transactions, open ones get up to {} ms; "
               "dbmgrd stays up until shutdown",
               why, settings_.drain_timeout.count());
  uv_timer_start(&janitor_, &Server::on_janitor, 0, kJanitorMs);
}

void Server::begin_shutdown(std::string_view why) {
  if (exiting_) return;
  exiting_ = true;
  // [issue 6] After an admin drain, shutdown keeps the drain's deadline.
  if (!draining_) drain_deadline_ = clock_.now() + settings_.drain_timeout;
  draining_ = true;
  std::size_t open_tx = 0;
  for (ClientConn* c : clients_) {
    for (auto& [id, s] : c->sessions()) open_tx += s->holds_connection() ? 1 : 0;
    open_tx += c->one_shots().size();
  }
  spdlog::info("{}: draining; {} transaction(s) in flight get up to {} ms", why, open_tx,
               settings_.drain_timeout.count());
  sd_notify(0, "STOPPING=1");
  stop_listening();
  // [issue 6] The first tick runs on the next loop turn, so the reply to an admin shutdown
  // is encoded (and flushed by finish_shutdown) before the clients are closed.
  uv_timer_start(&janitor_, &Server::on_janitor, 0, kJanitorMs);
}

void Server::on_janitor(uv_timer_t* t) {
  auto* self = static_cast<Server*>(t->data);
  self->guarded("janitor", nullptr, [self] { self->janitor_tick(); });
}

void Server::dispose_idle_engines(Clock::time_point now) {
  auto limit = settings_.engine_idle_timeout;
  if (limit.count() <= 0 || draining_) return;
  for (auto it = engines_.begin(); it != engines_.end();) {
    Engine* e = it->second.get();
    if (!e->idle() || now - e->last_active() < limit) {
      ++it;
      continue;
    }
    spdlog::info("engine {}: disposed after {:.0f} s without sessions (engine_idle_timeout); it "
                 "is made again on next use",
                 e->name(), std::chrono::duration<double>(now - e->last_active()).count());
    for (auto c = engine_cache_.begin(); c != engine_cache_.end();) {
      if (c->second == e) c = engine_cache_.erase(c); else ++c;
    }
    e->dispose();
    ++totals_.engines_disposed;
    it = engines_.erase(it);
  }
}

void Server::check_streams(Clock::time_point now) {
  if (paused_sessions_ <= 0) return;
  for (ClientConn* c : std::vector<ClientConn*>(clients_)) {
    for (Session* s : std::vector<Session*>(c->blocked())) s->check_stall(now);
  }
}

void Server::force_close_stuck(Clock::time_point now) {
  // Past drain_timeout the rollbacks were asked for; a backend that answers neither them nor
  // the cancel would keep the daemon from ever exiting. A second later, its connections are
  // closed (the server rolls back what was open when the connection goes).
  if (forced_ || now < drain_deadline_ + std::chrono::seconds(1)) return;
  forced_ = true;
  int closed = 0;
  for (ClientConn* c : std::vector<ClientConn*>(clients_)) {
    std::vector<Session*> sessions;
    for (auto& [id, s] : c->sessions()) sessions.push_back(s);
    for (Session* s : c->one_shots()) sessions.push_back(s);
    for (Session* s : sessions) closed += s->force_close_backend() ? 1 : 0;
  }
  if (closed > 0) {
    spdlog::warn("drain_timeout passed: closed {} backend connection(s) that did not answer "
                 "their rollback or cancel",
                 closed);
  }
}

void Server::janitor_tick() {
  auto now = clock_.now();
  dispose_idle_engines(now);
  if (!unshaken_.empty() && settings_.handshake_timeout.count() > 0) {
    for (ClientConn* c : std::vector<ClientConn*>(unshaken_)) {
      if (now - c->connected_at() >= settings_.handshake_timeout) {
        on_handshake(c);
        ++totals_.handshake_timeouts;
        c->refuse(Status(proto::ErrorCategory::kTimeout,
                         fmt::format("no hello within handshake_timeout ({} ms)",
                                     settings_.handshake_timeout.count()),
                         ""));
      }
    }
  }
  check_streams(now);
  bool idle_timeouts = false;
  for (auto& [key, engine] : engines_) {
    engine->expire(now);
    idle_timeouts = idle_timeouts || engine->config().pool.idle_in_transaction_timeout.count() > 0;
  }
  // check_idle() only starts a rollback: it never adds or removes sessions or clients. The
  // walk touches every client, so it runs only when some database has the timeout on
  // (10,000 idle clients cost about a millisecond of loop time per walk).
  if (idle_timeouts) {
    for (ClientConn* c : clients_) {
      for (auto& [id, s] : c->sessions()) s->check_idle(now);
    }
  }
  if (watchdog_interval_.count() > 0 && now - last_watchdog_ >= watchdog_interval_) {
    sd_notify(0, "WATCHDOG=1");
    last_watchdog_ = now;
  }
  if (!draining_ || finished_) return;
  bool busy = false;
  for (ClientConn* c : clients_) {
    for (auto& [id, s] : c->sessions()) busy = busy || s->holds_connection();
    busy = busy || !c->one_shots().empty();
  }
  if (busy && now >= drain_deadline_) {
    if (!drain_warned_) {
      drain_warned_ = true;
      spdlog::warn("drain_timeout reached: rolling back the transactions still open");
    }
    force_close_stuck(now);
    for (ClientConn* c : std::vector<ClientConn*>(clients_)) {
      std::vector<Session*> sessions;
      for (auto& [id, s] : c->sessions()) sessions.push_back(s);
      for (Session* s : c->one_shots()) sessions.push_back(s);
      for (Session* s : sessions) {
        if (s->holds_connection()) {
          s->abort_transaction(Status(proto::ErrorCategory::kShuttingDown,
                                      "dbmgrd shut down: drain_timeout reached and the "
                                      "transaction was rolled back"));
        }
      }
    }
    return;  // finish once the rollbacks are done
  }
  if (!busy && exiting_) finish_shutdown();
}

void Server::finish_shutdown() {
  finished_ = true;
  if (metrics_) metrics_->close();  // [issue 6]
  on_prepare(&flusher_);            // [issue 6] replies already encoded go out first
  for (ClientConn* c : std::vector<ClientConn*>(clients_)) c->close("dbmgrd shut down");
  for (auto& [key, engine] : engines_) engine->dispose();
  if (socket_owned_) ::unlink(settings_.socket_path.c_str());
  // The signal handlers stay installed until the Server is destroyed (a second SIGTERM in
  // these last moments must not kill the process with the default action); unreferenced,
  // they do not keep the loop running.
  uv_unref(reinterpret_cast<uv_handle_t*>(&sigterm_));
  uv_unref(reinterpret_cast<uv_handle_t*>(&sigint_));
  uv_unref(reinterpret_cast<uv_handle_t*>(&sighup_));
  uv_close(reinterpret_cast<uv_handle_t*>(&janitor_), nullptr);
  // Grants and results still queued run now; then the flusher writes the last replies, and
  // both go with the rest.
  ready_->drain();
  on_prepare(&flusher_);
  uv_close(reinterpret_cast<uv_handle_t*>(&flusher_), nullptr);
  ready_->close();
  spdlog::info("shutdown complete; engines disposed, socket removed");
}

// ---- ConnectionProbe ----

ConnectionProbe::ConnectionProbe(ClientConn* conn, std::uint32_t request_id, Engine* engine)
    : conn_(conn), request_id_(request_id), engine_(engine) {}

ConnectionProbe::~ConnectionProbe() = default;

void ConnectionProbe::detach() { conn_ = nullptr; }

void ConnectionProbe::start() {
  Pool& pool = engine_->pool_for(false);
  if (BackendConn* c = pool.try_lease(holder())) {
    on_lease(c, Status::ok());
  } else {
    pool.wait(this);
  }
}

void ConnectionProbe::on_lease(BackendConn* conn, Status status) {
  if (!status.is_ok()) return done(status);
  lease_ = conn;
  conn->set_listener(this);
  conn->ping();
}

void ConnectionProbe::on_backend_result(BackendConn* conn, BackendOp /*op*/, BackendResult&& r) {
  conn->set_listener(nullptr);
  if (r.status.is_ok()) engine_->learn_server_version(conn->server_version());
  engine_->pool_for(false).release(conn, r.status.is_ok() && !r.broken);
  lease_ = nullptr;
  done(r.status);
}

void ConnectionProbe::done(const Status& s) {
  if (conn_ != nullptr) {
    if (!s.is_ok()) {
      conn_->send_error(request_id_, 0, s);
    } else {
      conn_->send_info(request_id_, *engine_);
    }
    conn_->remove_probe(this);
  }
  delete this;
}

}  // namespace dbmgr::daemon
