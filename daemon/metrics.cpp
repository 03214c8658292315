// MetricsServer: a tiny HTTP/1.0 responder for GET /metrics in Prometheus text format.
#include "metrics.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>

namespace dbmgr::daemon {
namespace {

using json = nlohmann::ordered_json;

constexpr std::string_view kContentType = "text/plain; version=0.0.4; charset=utf-8";

// Label values escape backslash, double quote and newline (exposition format).
std::string escape_label(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string number(const json& v) {
  if (v.is_number_integer() || v.is_number_unsigned()) return v.dump();
  if (v.is_number_float()) return fmt::format("{}", v.get<double>());
  if (v.is_boolean()) return v.get<bool>() ? "1" : "0";
  return "0";
}

// Collects families so each gets its HELP and TYPE once, before its samples.
class Exposition {
 public:
  void family(std::string name, std::string_view type, std::string_view help) {
    order_.push_back(name);
    auto& f = families_[name];
    f.type = type;
    f.help = help;
  }
  void sample(const std::string& name, std::string labels, std::string value) {
    families_[name].samples.push_back(labels.empty()
                                          ? fmt::format("{} {}", name, value)
                                          : fmt::format("{}{{{}}} {}", name, labels, value));
  }
  std::string str() const {
    std::string out;
    for (const auto& name : order_) {
      const auto& f = families_.at(name);
      out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, f.help, name, f.type);
      for (const auto& s : f.samples) out += s + "\n";
    }
    return out;
  }

 private:
  struct Family {
    std::string type;
    std::string help;
    std::vector<std::string> samples;
  };
  std::vector<std::string> order_;
  std::map<std::string, Family> families_;
};

const char* reason_phrase(int code) {
  switch (code) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 431:
      return "Request Header Fields Too Large";
    default:
      return "Error";
  }
}

}  // namespace

std::string render_prometheus(const json& status, const json& pools, const json& sessions) {
  Exposition e;
  struct PoolMetric {
    const char* field;
    const char* name;
    const char* type;
    const char* help;
  };
  static constexpr PoolMetric kPoolMetrics[] = {
      {"size", "dbmgr_pool_size", "gauge", "Connections the pool keeps (pool_size)."},
      {"max_overflow", "dbmgr_pool_max_overflow", "gauge",
       "Extra connections allowed under load (max_overflow)."},
      {"in_use", "dbmgr_pool_in_use", "gauge", "Connections leased to sessions now."},
      {"idle", "dbmgr_pool_idle", "gauge", "Idle connections ready to lease."},
      {"opening", "dbmgr_pool_opening", "gauge", "Connections being opened or pinged."},
      {"waiting", "dbmgr_pool_waiting", "gauge", "Sessions queued for a connection."},
      {"leases", "dbmgr_pool_leases_total", "counter", "Connections handed to sessions."},
      {"waits", "dbmgr_pool_waits_total", "counter", "Leases that had to wait."},
      {"wait_ms_max", "dbmgr_pool_wait_ms_max", "gauge", "Longest wait for a lease, in ms."},
      {"wait_ms_avg", "dbmgr_pool_wait_ms_avg", "gauge",
       "Average wait of the leases that waited, in ms."},
      {"timeouts", "dbmgr_pool_timeouts_total", "counter",
       "Waits that ended in pool_exhausted after pool_timeout."},
      {"errors", "dbmgr_pool_errors_total", "counter", "Failed opens, pings and resets."},
      {"opened", "dbmgr_pool_opened_total", "counter", "Backend connections opened."},
      {"closed", "dbmgr_pool_closed_total", "counter", "Backend connections closed."},
      {"group_commits", "dbmgr_pool_group_commits_total", "counter",
       "SQLite writer: transactions that committed a group of queued one-shot writes."},
      {"group_committed_statements", "dbmgr_pool_group_committed_statements_total", "counter",
       "SQLite writer: one-shot writes committed inside group commits."},
      {"group_deferred", "dbmgr_pool_group_deferred_total", "counter",
       "SQLite writer: one-shot writes and pipelined transactions taken out of a group to "
       "run alone."},
      {"group_batch_commits", "dbmgr_pool_group_batch_commits_total", "counter",
       "SQLite writer: transactions that committed a group of queued pipelined transactions."},
      {"group_committed_transactions", "dbmgr_pool_group_committed_transactions_total",
       "counter", "SQLite writer: pipelined transactions committed inside group commits."},
  };
  for (const auto& m : kPoolMetrics) e.family(m.name, m.type, m.help);
  for (const json& p : pools) {
    std::string labels = fmt::format(
        "database=\"{}\",type=\"{}\",role=\"{}\"", escape_label(p.value("database", "")),
        escape_label(p.value("type", "")), escape_label(p.value("role", "")));
    for (const auto& m : kPoolMetrics) {
      if (p.contains(m.field)) e.sample(m.name, labels, number(p[m.field]));
    }
  }

  e.family("dbmgr_sessions", "gauge", "Open sessions by database and state.");
  std::map<std::pair<std::string, std::string>, int> by_state;
  for (const json& s : sessions) {
    ++by_state[{s.value("database", ""), s.value("state", "")}];
  }
  for (const auto& [key, n] : by_state) {
    e.sample("dbmgr_sessions",
             fmt::format("database=\"{}\",state=\"{}\"", escape_label(key.first),
                         escape_label(key.second)),
             std::to_string(n));
  }

  e.family("dbmgr_up", "gauge", "1 while dbmgrd answers.");
  e.sample("dbmgr_up", fmt::format("version=\"{}\"", escape_label(status.value("version", ""))),
           "1");
  struct StatusMetric {
    const char* field;
    const char* name;
    const char* type;
    const char* help;
  };
  static constexpr StatusMetric kStatusMetrics[] = {
      {"uptime_s", "dbmgr_uptime_seconds", "gauge", "Seconds since dbmgrd started."},
      {"draining", "dbmgr_draining", "gauge", "1 while dbmgrd drains (no new sessions)."},
      {"clients", "dbmgr_clients", "gauge", "Connected client processes."},
      {"sessions", "dbmgr_sessions_open", "gauge", "Open sessions."},
      {"engines", "dbmgr_engines", "gauge", "Databases opened by the daemon."},
  };
  for (const auto& m : kStatusMetrics) {
    e.family(m.name, m.type, m.help);
    if (status.contains(m.field)) e.sample(m.name, {}, number(status[m.field]));
  }
  e.family("dbmgr_resident_memory_bytes", "gauge", "Resident memory of dbmgrd.");
  if (status.contains("rss_kb")) {
    e.sample("dbmgr_resident_memory_bytes", {},
             std::to_string(status["rss_kb"].get<std::uint64_t>() * 1024));
  }
  static constexpr StatusMetric kTotals[] = {
      {"transactions", "dbmgr_transactions_total", "counter", "Transactions ended."},
      {"statements", "dbmgr_statements_total", "counter", "Statements run."},
      {"errors", "dbmgr_errors_total", "counter", "Requests answered with an error."},
      {"rollbacks_on_disconnect", "dbmgr_rollbacks_on_disconnect_total", "counter",
       "Transactions rolled back because their client went away."},
      {"clients_accepted", "dbmgr_clients_accepted_total", "counter", "Client connections."},
      {"sessions_opened", "dbmgr_sessions_opened_total", "counter", "Sessions opened."},
      {"protocol_errors", "dbmgr_protocol_errors_total", "counter", "Protocol violations."},
      {"internal_errors", "dbmgr_internal_errors_total", "counter",
       "Exceptions caught at an event-loop callback (each closed at most its client)."},
      {"engines_created", "dbmgr_engines_created_total", "counter", "Engines made."},
      {"engines_disposed", "dbmgr_engines_disposed_total", "counter",
       "Engines disposed after engine_idle_timeout without sessions."},
      {"clients_refused", "dbmgr_clients_refused_total", "counter",
       "Clients refused over max_clients."},
      {"handshake_timeouts", "dbmgr_handshake_timeouts_total", "counter",
       "Connections closed for sending no hello within handshake_timeout."},
      {"input_limit_closes", "dbmgr_input_limit_closes_total", "counter",
       "Connections closed over max_client_buffered_bytes or max_buffered_bytes."},
      {"accept_errors", "dbmgr_accept_errors_total", "counter",
       "Accepts that failed (out of descriptors)."},
      {"stalled_streams", "dbmgr_stalled_streams_total", "counter",
       "Statements ended because their client did not read the rows (stream_stall_timeout)."},
  };
  const json totals = status.value("totals", json::object());
  for (const auto& m : kTotals) {
    e.family(m.name, m.type, m.help);
    if (totals.contains(m.field)) e.sample(m.name, {}, number(totals[m.field]));
  }
  return e.str();
}

// ---- connections ----

struct MetricsServer::Conn {
  union {
    uv_tcp_t tcp;
    uv_pipe_t pipe;
    uv_stream_t stream;
    uv_handle_t handle;
  } h{};
  uv_timer_t timer{};
  uv_write_t write_req{};
  MetricsServer* owner = nullptr;  // null once the server forgot us
  std::string in;
  std::string out;
  int open_handles = 0;
  bool closing = false;

  uv_stream_t* stream() { return &h.stream; }

  void close() {
    if (closing) return;
    closing = true;
    if (owner != nullptr) owner->forget(this);
    owner = nullptr;
    uv_read_stop(stream());
    uv_timer_stop(&timer);
    uv_close(&h.handle, &Conn::on_closed);
    uv_close(reinterpret_cast<uv_handle_t*>(&timer), &Conn::on_closed);
  }

  static void on_closed(uv_handle_t* handle) {
    auto* c = static_cast<Conn*>(handle->data);
    if (--c->open_handles == 0) delete c;
  }

  static void on_alloc(uv_handle_t* handle, std::size_t /*suggested*/, uv_buf_t* buf) {
    auto* c = static_cast<Conn*>(handle->data);
    std::size_t have = c->in.size();
    // Room for one byte past the limit, so an oversized request is seen as such.
    std::size_t room = kMaxRequestBytes + 1 - std::min(have, kMaxRequestBytes);
    c->in.resize(have + room);
    *buf = uv_buf_init(c->in.data() + have, static_cast<unsigned>(room));
  }

  static void on_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
    auto* c = static_cast<Conn*>(s->data);
    std::size_t used = static_cast<std::size_t>(buf->base - c->in.data());
    c->in.resize(used + (n > 0 ? static_cast<std::size_t>(n) : 0));
    if (n < 0) return c->close();  // EOF before a whole request, or an error
    if (n == 0) return;
    c->maybe_answer();
  }

  static void on_timeout(uv_timer_t* t) {
    auto* c = static_cast<Conn*>(t->data);
    c->respond(408, "request not received in time\n", false);
  }

  static void on_written(uv_write_t* req, int /*status*/) {
    auto* c = static_cast<Conn*>(req->data);
    c->close();
  }

  // Answers once the request head is complete (blank line) or too large.
  void maybe_answer() {
    std::size_t end = in.find("\r\n\r\n");
    if (end == std::string::npos) end = in.find("\n\n");
    if (end == std::string::npos) {
      if (in.size() > kMaxRequestBytes) respond(431, "request too large\n", false);
      return;
    }
    std::string_view line(in.data(), in.find_first_of("\r\n"));
    auto sp1 = line.find(' ');
    auto sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
    if (sp1 == std::string_view::npos || sp2 == std::string_view::npos ||
        line.substr(sp2 + 1, 5) != "HTTP/") {
      return respond(400, "malformed request line\n", false);
    }
    std::string_view method = line.substr(0, sp1);
    std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
    std::string_view path = target.substr(0, target.find('?'));
    bool head = method == "HEAD";
    if (method != "GET" && !head) return respond(405, "only GET and HEAD\n", false);
    if (path != "/metrics") return respond(404, "the only path is /metrics\n", head);
    std::string body = owner != nullptr ? owner->render_() : std::string();
    respond(200, std::move(body), head);
  }

  void respond(int code, std::string body, bool head_only) {
    if (closing || !out.empty()) return;
    uv_read_stop(stream());
    uv_timer_stop(&timer);
    out = fmt::format(
        "HTTP/1.0 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        code, reason_phrase(code), code == 200 ? kContentType : "text/plain; charset=utf-8",
        body.size());
    if (!head_only) out += body;
    uv_buf_t b = uv_buf_init(out.data(), static_cast<unsigned>(out.size()));
    write_req.data = this;
    if (uv_write(&write_req, stream(), &b, 1, &Conn::on_written) != 0) close();
  }
};

MetricsServer::MetricsServer(uv_loop_t* loop, std::function<std::string()> render)
    : loop_(loop), render_(std::move(render)) {}

MetricsServer::~MetricsServer() {
  for (Conn* c : conns_) c->owner = nullptr;
}

Status MetricsServer::start(const config::MetricsSettings& s) {
  int rc = 0;
  if (!s.unix_path.empty()) {
    address_ = "unix:" + s.unix_path;
    uv_pipe_init(loop_, &listener_.pipe, 0);
    initialized_ = true;
    struct stat st {};
    if (::lstat(s.unix_path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) {
      ::unlink(s.unix_path.c_str());  // a stale socket of an earlier run
    }
    rc = uv_pipe_bind(&listener_.pipe, s.unix_path.c_str());
    if (rc == 0) unix_path_ = s.unix_path;
  } else {
    address_ = s.host.find(':') != std::string::npos ? fmt::format("[{}]:{}", s.host, s.port)
                                                     : fmt::format("{}:{}", s.host, s.port);
    uv_tcp_init(loop_, &listener_.tcp);
    initialized_ = true;
    sockaddr_storage addr{};
    if (s.host.find(':') != std::string::npos) {
      rc = uv_ip6_addr(s.host.c_str(), s.port, reinterpret_cast<sockaddr_in6*>(&addr));
    } else {
      rc = uv_ip4_addr(s.host.c_str(), s.port, reinterpret_cast<sockaddr_in*>(&addr));
    }
    if (rc == 0) rc = uv_tcp_bind(&listener_.tcp, reinterpret_cast<sockaddr*>(&addr), 0);
  }
  listener_.tcp.data = this;
  if (rc == 0) {
    rc = uv_listen(reinterpret_cast<uv_stream_t*>(&listener_), 64, &MetricsServer::on_connection);
  }
  if (rc != 0) {
    return Status::internal(
        fmt::format("cannot serve metrics on {}: {}", address_, uv_strerror(rc)));
  }
  listening_ = true;
  spdlog::info("metrics: serving GET /metrics on {}", address_);
  return Status::ok();
}

void MetricsServer::close() {
  if (initialized_) {
    uv_close(reinterpret_cast<uv_handle_t*>(&listener_), nullptr);
    initialized_ = false;
  }
  listening_ = false;
  for (Conn* c : std::vector<Conn*>(conns_)) c->close();
  conns_.clear();
  if (!unix_path_.empty()) {
    ::unlink(unix_path_.c_str());
    unix_path_.clear();
  }
}

void MetricsServer::on_connection(uv_stream_t* listener, int status) {
  auto* self = static_cast<MetricsServer*>(listener->data);
  if (status != 0) {
    spdlog::warn("metrics: accept failed: {}", uv_strerror(status));
    return;
  }
  self->accept();
}

void MetricsServer::accept() {
  auto* c = new Conn();
  c->owner = this;
  if (!unix_path_.empty()) {
    uv_pipe_init(loop_, &c->h.pipe, 0);
  } else {
    uv_tcp_init(loop_, &c->h.tcp);
  }
  c->h.handle.data = c;
  uv_timer_init(loop_, &c->timer);
  c->timer.data = c;
  c->open_handles = 2;
  conns_.push_back(c);
  int rc = uv_accept(reinterpret_cast<uv_stream_t*>(&listener_), c->stream());
  if (rc != 0 || conns_.size() > kMaxConnections) {
    if (rc != 0) spdlog::warn("metrics: accept failed: {}", uv_strerror(rc));
    return c->close();
  }
  uv_timer_start(&c->timer, &Conn::on_timeout, kRequestTimeoutMs, 0);
  uv_read_start(c->stream(), &Conn::on_alloc, &Conn::on_read);
}

void MetricsServer::forget(Conn* c) {
  conns_.erase(std::remove(conns_.begin(), conns_.end(), c), conns_.end());
}

}  // namespace dbmgr::daemon
