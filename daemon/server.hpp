// Server: the daemon's one event loop and everything it owns: the listening socket, client
// connections, engines, the janitor timer, signals, and the admin requests.
//
// Lifecycle: start() binds the socket (refusing to start if a live daemon answers on it,
// replacing a stale file), then run() turns the loop until shutdown. SIGTERM/SIGINT (or the
// admin `shutdown`) drain: the listener closes, new sessions and transactions are refused,
// open transactions get drain_timeout to finish, then the rest are rolled back, every engine
// is disposed, the socket file is removed and run() returns 0. SIGHUP (or `reload`) re-reads
// the configuration: a broken file is refused and the old settings stay.
//
// Threading: everything here runs on the loop thread. The design leaves room for one Server
// per core sharing the listening socket; nothing in it is global except the BufferPool.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include <uv.h>

#include "dbmgr/config/config.hpp"
#include "clock.hpp"
#include "engine.hpp"
#include "guard.hpp"
#include "ready_queue.hpp"
#include "session.hpp"
#include "status.hpp"

namespace dbmgr::daemon {

class ClientConn;
struct WriteReq;
class MetricsServer;

struct Totals {
  std::uint64_t transactions = 0;
  std::uint64_t statements = 0;
  std::uint64_t errors = 0;
  std::uint64_t rollbacks_on_disconnect = 0;
  std::uint64_t clients_accepted = 0;
  std::uint64_t sessions_opened = 0;
  std::uint64_t protocol_errors = 0;
  std::uint64_t engines_created = 0;
  std::uint64_t engines_disposed = 0;  // by engine_idle_timeout
  std::uint64_t clients_refused = 0;   // over max_clients
  std::uint64_t handshake_timeouts = 0;
  std::uint64_t input_limit_closes = 0;  // max_client_buffered_bytes / max_buffered_bytes
  std::uint64_t stalled_streams = 0;     // ended by stream_stall_timeout
  std::uint64_t accept_errors = 0;       // accept failed (out of descriptors)
};

class Server {
 public:
  // Makes the engine for a resolved database (tests: engines on a fake backend).
  using EngineFactory = std::function<Result<std::unique_ptr<Engine>>(
      uv_loop_t* loop, ReadyQueue& ready, const TimeSource& clock, std::string key,
      config::DatabaseConfig db, std::uint32_t max_frame_bytes, bool create_if_missing)>;

  // `clock` (tests inject one) must outlive the Server.
  Server(config::Settings settings, config::CommandLine cli, config::EnvLookup env,
         const TimeSource& clock = TimeSource::system(), EngineFactory engines = {});
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds the socket (or takes a systemd-activated one). Errors name the path.
  Status start();
  // Runs until shutdown; returns the process exit code.
  int run();
  // Starts the drain from inside the loop (signals and the admin request use it), then exits.
  void begin_shutdown(std::string_view why);
  // [issue 6] Drain without exiting (admin `drain`): no new sessions or transactions, open
  // transactions get drain_timeout, the socket stays open for admin requests.
  void begin_drain(std::string_view why);
  Status reload();

  uv_loop_t* loop() { return &loop_; }
  ReadyQueue& ready() { return *ready_; }
  const TimeSource& clock() const { return clock_; }
  const config::Settings& settings() const { return settings_; }
  bool draining() const { return draining_; }
  // One janitor pass now (the timer runs it every 100 ms; tests with a ManualClock call it).
  void janitor_tick();
  // Runs `f` as a libuv callback must: an exception is caught, counted and logged, and the
  // client it concerns (if any) is closed; it never reaches libuv.
  template <typename F>
  void guarded(std::string_view where, ClientConn* client, F&& f) noexcept;
  void on_callback_exception(std::string_view where, ClientConn* client) noexcept;

  // The engine for `database` with `prefix`, created on first use (counted against the
  // client's max_engines_per_client; `client` may be null). Checks the database's
  // allow_uids/allow_gids against `client`.
  Result<Engine*> engine_for(std::string_view database, std::string_view prefix,
                             ClientConn* client = nullptr);

  // Requests waiting or running in a session; pooled.
  WriteReq* take_write_req();
  void give_write_req(WriteReq* w);
  PendingRequest* take_request();
  void free_request(PendingRequest* r, ClientConn* owner);

  void mark_dirty(ClientConn* c);
  void on_client_closed(ClientConn* c);
  void on_handshake(ClientConn* c);  // the client's hello arrived (handshake_timeout)
  // Input held for clients (decoders and queued requests), for max_buffered_bytes.
  std::uint64_t buffered_bytes() const { return buffered_bytes_; }
  void add_buffered(std::int64_t delta) { buffered_bytes_ += static_cast<std::uint64_t>(delta); }
  // Sessions whose rows wait for their client (the janitor checks stream_stall_timeout).
  void count_paused(int delta) { paused_sessions_ += delta; }
  int effective_max_clients() const { return max_clients_; }
  void on_session_gone(Session* s);
  char* read_buffer() { return read_buffer_.data(); }
  std::size_t read_buffer_size() const { return read_buffer_.size(); }

  // Admin requests: the JSON reply, or an error.
  Result<std::string> admin(ClientConn& from, proto::AdminCommand cmd, std::string_view arg);

  void count_transaction() { ++totals_.transactions; }
  void count_statements(std::uint64_t n) { totals_.statements += n; }
  void count_error() { ++totals_.errors; }
  void count_rollback_on_disconnect() { ++totals_.rollbacks_on_disconnect; }
  void count_protocol_error() { ++totals_.protocol_errors; }
  void count_input_limit_close() { ++totals_.input_limit_closes; }
  void count_stalled_stream() { ++totals_.stalled_streams; }
  void count_session() { ++totals_.sessions_opened; }
  const Totals& totals() const { return totals_; }

 private:
  static void on_acceptable(uv_poll_t* h, int status, int events);
  static void on_accept_resume(uv_timer_t* t);
  void accept_ready();
  void pause_accepting(int err);
  void stop_listening();
  static void on_signal(uv_signal_t* h, int signum);
  static void on_janitor(uv_timer_t* t);
  static void on_prepare(uv_prepare_t* p);

  // engine_for() without its cache: resolves the name and creates the engine if needed.
  Result<Engine*> resolve_engine(std::string_view database, std::string_view prefix,
                                 ClientConn* client);
  Status check_access(const Engine& e, const ClientConn& c) const;
  void check_streams(Clock::time_point now);
  void force_close_stuck(Clock::time_point now);
  Status bind_socket();
  void dispose_idle_engines(Clock::time_point now);
  void finish_shutdown();
  bool is_admin(const ClientConn& c) const;
  std::string status_json();
  std::string pools_json();
  std::string sessions_json();
  std::string clients_json();
  std::string engines_json();
  std::string servers_json();

  config::Settings settings_;
  config::CommandLine cli_;
  config::EnvLookup env_;
  const TimeSource& clock_;
  EngineFactory make_engine_;
  uv_loop_t loop_{};
  std::unique_ptr<ReadyQueue> ready_;  // after loop_: its handles live on it
  // The listening socket: bound by a pipe handle (the path, systemd's socket), accepted from
  // by hand through a poll handle, so that running out of descriptors pauses accepting for
  // kAcceptPauseMs (the connections wait in the backlog) instead of spinning in libuv.
  uv_pipe_t listener_{};
  uv_poll_t accept_poll_{};
  uv_timer_t accept_pause_{};
  int listen_fd_ = -1;
  static constexpr int kAcceptBatch = 64;  // accepts per loop turn, then the others go
  static constexpr std::uint64_t kAcceptPauseMs = 100;
  uv_signal_t sigterm_{}, sigint_{}, sighup_{};
  uv_timer_t janitor_{};
  uv_prepare_t flusher_{};
  bool listening_ = false;
  bool draining_ = false;
  bool exiting_ = false;  // [issue 6] draining to exit (shutdown), not only draining
  bool finished_ = false;
  bool socket_owned_ = false;  // we created the socket file and remove it at exit
  Clock::time_point drain_deadline_{};
  std::chrono::microseconds watchdog_interval_{0};  // 0: systemd asked for no watchdog
  Clock::time_point last_watchdog_{};
  Clock::time_point started_at_;
  std::uint64_t next_client_id_ = 1;
  std::vector<ClientConn*> clients_;
  std::vector<ClientConn*> unshaken_;  // accepted, no hello yet (handshake_timeout)
  std::uint64_t buffered_bytes_ = 0;
  int paused_sessions_ = 0;
  int max_clients_ = 0;           // max_clients, capped by the descriptor limit
  bool drain_warned_ = false;     // "drain_timeout reached" is logged once
  bool forced_ = false;           // backend connections that did not answer were closed
  Clock::time_point last_accept_warning_{};
  std::vector<ClientConn*> dirty_;
  std::vector<ClientConn*> flushing_;  // on_prepare's copy of dirty_ while it flushes
  std::map<std::string, std::unique_ptr<Engine>> engines_;  // by "key|resolved name"
  // engine_for()'s answers by "database\0prefix"; cleared by a reload.
  std::unordered_map<std::string, Engine*> engine_cache_;
  std::string cache_key_;
  std::vector<PendingRequest*> free_requests_;
  std::vector<WriteReq*> free_writes_;
  std::vector<char> read_buffer_;
  Totals totals_;
  int exit_code_ = 0;
  std::unique_ptr<MetricsServer> metrics_;  // [issue 6] GET /metrics, when configured
};

template <typename F>
void Server::guarded(std::string_view where, ClientConn* client, F&& f) noexcept {
  if (!guard_callback(where, std::forward<F>(f))) on_callback_exception(where, client);
}

// Answers a kInfo with kInfoTestConnection: leases a connection, pings it, replies.
class ConnectionProbe final : public PoolWaiter, public BackendListener {
 public:
  ConnectionProbe(ClientConn* conn, std::uint32_t request_id, Engine* engine);
  ~ConnectionProbe();
  void start();
  // The client is gone: stop waiting (or drop the reply) and delete this when done.
  void detach();

 private:
  void on_lease(BackendConn* conn, Status status) override;
  void on_backend_result(BackendConn* conn, BackendOp op, BackendResult&& r) override;
  LeaseHolder holder() const override { return LeaseHolder{0, 0, "probe"}; }
  void done(const Status& s);

  ClientConn* conn_;
  std::uint32_t request_id_;
  Engine* engine_;
  BackendConn* lease_ = nullptr;
};

}  // namespace dbmgr::daemon
