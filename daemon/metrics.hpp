// MetricsServer: the Prometheus text endpoint (GET /metrics) on the daemon's libuv loop.
//
// Off unless `metrics.listen` is configured (a loopback TCP address or a Unix socket; the
// config loader refuses anything else). It is a tiny HTTP/1.0 responder: it reads one
// request head (at most kMaxRequestBytes, within kRequestTimeoutMs), answers GET or HEAD of
// /metrics with the text exposition format, anything else with 404/405/400/431, and closes
// the connection. It never blocks the loop: the body is rendered from the same figures as
// `dbmgrctl --json pools/sessions/status` (render_prometheus below, fed by the Server's
// JSON documents) and written with one uv_write.
//
// Ownership: the Server owns the MetricsServer; each accepted connection is owned by itself
// and freed from its close callback. close() closes the listener and every connection; the
// object may be destroyed once the loop has run their close callbacks (Server::run()
// returns only after that).
//
// Threading: loop thread only.
#pragma once

#include <uv.h>

#include <cstddef>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "dbmgr/config/config.hpp"
#include "status.hpp"

namespace dbmgr::daemon {

// The exposition text for the daemon's status, pools and sessions documents (as the admin
// requests return them). Pool gauges and counters carry the labels database, type, role.
std::string render_prometheus(const nlohmann::ordered_json& status,
                              const nlohmann::ordered_json& pools,
                              const nlohmann::ordered_json& sessions);

class MetricsServer {
 public:
  static constexpr std::size_t kMaxRequestBytes = 8 * 1024;
  static constexpr std::uint64_t kRequestTimeoutMs = 5'000;
  static constexpr std::size_t kMaxConnections = 64;

  // `render` produces the body of GET /metrics.
  MetricsServer(uv_loop_t* loop, std::function<std::string()> render);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // Binds and listens; errors name the address.
  Status start(const config::MetricsSettings& settings);
  // Closes the listener and every open connection; removes a Unix socket file we made.
  void close();
  const std::string& address() const { return address_; }

 private:
  struct Conn;
  static void on_connection(uv_stream_t* listener, int status);
  void accept();
  void forget(Conn* c);

  uv_loop_t* loop_;
  std::function<std::string()> render_;
  union {
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  } listener_{};
  bool listening_ = false;
  bool initialized_ = false;
  std::string unix_path_;  // removed at close()
  std::string address_;
  std::vector<Conn*> conns_;
};

}  // namespace dbmgr::daemon
