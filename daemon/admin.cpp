// Admin requests: status, pools, sessions, clients, engines as JSON; reload, kill, drain,
// shutdown for root, the daemon's own user and the admin group.
#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <charconv>
#include <cmath>
#include <iterator>
#include <type_traits>
#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "client_conn.hpp"
#include "server.hpp"

namespace dbmgr::daemon {
namespace {

using json = nlohmann::ordered_json;

double seconds_since(Clock::time_point t, Clock::time_point now) {
  if (t == Clock::time_point{}) return 0;
  return std::chrono::duration<double>(now - t).count();
}

std::uint64_t rss_kb() {
  std::ifstream statm("/proc/self/statm");
  std::uint64_t size = 0, resident = 0;
  statm >> size >> resident;
  return resident * static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE)) / 1024;
}

// Strings from outside (paths, client names, URIs) as valid UTF-8 for JSON: every byte that
// is not part of a well-formed UTF-8 sequence is written as the four characters \xNN, so
// an operator sees exactly which bytes were there (nlohmann would throw on them).
std::string text(std::string_view s) {
  if (proto::is_valid_utf8(s)) return std::string(s);
  std::string out;
  out.reserve(s.size() + 16);
  std::size_t i = 0;
  while (i < s.size()) {
    // The longest well-formed sequence starting at i (1 to 4 bytes).
    std::size_t len = 0;
    for (std::size_t n = 1; n <= 4 && i + n <= s.size(); ++n) {
      if (proto::is_valid_utf8(s.substr(i, n))) {
        len = n;
        break;
      }
    }
    if (len == 0) {
      out += fmt::format("\\x{:02X}", static_cast<unsigned char>(s[i]));
      ++i;
    } else {
      out.append(s.substr(i, len));
      i += len;
    }
  }
  return out;
}

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

// The long lists (sessions, clients: one entry per session or connection, thousands of them)
// are written straight into their string, in the same compact form as dump(): building an
// nlohmann tree of them cost about 7 ms per 1,500 sessions on the loop thread, this a tenth.
class ListWriter {
 public:
  ListWriter() { out_.reserve(4096); out_ += '['; }
  void begin() {
    if (entries_++ != 0) out_ += ',';
    out_ += '{';
    fields_ = 0;
  }
  void end() { out_ += '}'; }
  void field(std::string_view k, std::string_view v) {
    key(k);
    quoted(text(v));
  }
  void field(std::string_view k, const char* v) { field(k, std::string_view(v)); }
  void field(std::string_view k, bool v) {
    key(k);
    out_ += v ? "true" : "false";
  }
  template <typename Int>
    requires std::is_integral_v<Int>
  void field(std::string_view k, Int v) {
    key(k);
    fmt::format_to(std::back_inserter(out_), "{}", v);
  }
  void field(std::string_view k, double v) {
    key(k);
    if (!std::isfinite(v)) {
      out_ += "null";
      return;
    }
    const std::size_t at = out_.size();
    fmt::format_to(std::back_inserter(out_), "{}", v);  // shortest round trip, as dump()
    if (out_.find_first_of(".eE", at) == std::string::npos) out_ += ".0";
  }
  std::string finish() {
    out_ += ']';
    return std::move(out_);
  }

 private:
  void key(std::string_view k) {
    if (fields_++ != 0) out_ += ',';
    quoted(k);
    out_ += ':';
  }
  // s is valid UTF-8 (text() made it so); JSON needs '"', '\\' and control characters escaped.
  void quoted(std::string_view s) {
    out_ += '"';
    std::size_t run = 0;  // start of the bytes not yet copied
    for (std::size_t i = 0; i < s.size(); ++i) {
      const auto u = static_cast<unsigned char>(s[i]);
      if (u >= 0x20 && u != '"' && u != '\\') continue;
      out_.append(s.data() + run, i - run);
      run = i + 1;
      switch (u) {
        case '"': out_ += "\\\""; break;
        case '\\': out_ += "\\\\"; break;
        case '\n': out_ += "\\n"; break;
        case '\r': out_ += "\\r"; break;
        case '\t': out_ += "\\t"; break;
        default: fmt::format_to(std::back_inserter(out_), "\\u{:04x}", u);
      }
    }
    out_.append(s.data() + run, s.size() - run);
    out_ += '"';
  }
  std::string out_;
  std::size_t entries_ = 0;
  std::size_t fields_ = 0;
};

// Group commit counters of a SQLite engine (on its writer pool and on the engine).
void add_group_counters(const GroupCommit& g, json& j) {
  j["group_commits"] = g.commits();
  j["group_committed_statements"] = g.statements();
  j["group_deferred"] = g.deferred();
  j["group_batch_commits"] = g.batch_commits();
  j["group_committed_transactions"] = g.batch_transactions();
}

}  // namespace

bool Server::is_admin(const ClientConn& c) const {
  if (c.uid() == 0 || c.uid() == geteuid()) return true;
  if (settings_.admin_group.empty()) return false;
  group* g = getgrnam(settings_.admin_group.c_str());
  if (g == nullptr) return false;
  if (c.gid() == g->gr_gid) return true;
  // Supplementary groups of the peer's user.
  passwd* pw = getpwuid(c.uid());
  if (pw == nullptr) return false;
  int n = 64;
  std::vector<gid_t> groups(static_cast<std::size_t>(n));
  if (getgrouplist(pw->pw_name, pw->pw_gid, groups.data(), &n) < 0) {
    groups.resize(static_cast<std::size_t>(n));
    getgrouplist(pw->pw_name, pw->pw_gid, groups.data(), &n);
  }
  for (int i = 0; i < n; ++i) {
    if (groups[static_cast<std::size_t>(i)] == g->gr_gid) return true;
  }
  return false;
}

Result<std::string> Server::admin(ClientConn& from, proto::AdminCommand cmd, std::string_view arg) {
  using C = proto::AdminCommand;
  bool changes = cmd == C::kReload || cmd == C::kKill || cmd == C::kDrain || cmd == C::kShutdown;
  if (changes && !is_admin(from)) {
    spdlog::warn("{}: refused admin {} for uid {}", from.tag(), proto::to_string(cmd), from.uid());
    return Status::permission(fmt::format(
        "{} needs root, the daemon's user or the admin group{}; uid {} is none of them",
        proto::to_string(cmd),
        settings_.admin_group.empty() ? "" : " (" + settings_.admin_group + ")", from.uid()));
  }
  if (cmd != C::kKill && !arg.empty()) {
    return Status::invalid(fmt::format("admin {} takes no argument, got {} byte(s)",
                                       proto::to_string(cmd), arg.size()));
  }
  switch (cmd) {
    case C::kServers: return servers_json();
    case C::kStatus: return status_json();
    case C::kPools: return pools_json();
    case C::kSessions: return sessions_json();
    case C::kClients: return clients_json();
    case C::kEngines: return engines_json();
    case C::kReload: {
      Status s = reload();
      if (!s.is_ok()) return s;
      return dump(json{{"reloaded", true}, {"config_file", text(settings_.config_file)}});
    }
    case C::kKill: {
      // "<client id>:<session id>" as listed by sessions.
      auto colon = arg.find(':');
      std::uint64_t cid = 0;
      std::uint32_t sid = 0;
      // Each number must be the whole of its part: "1x:2", "1:2:3" and "1:2garbage" are
      // malformed, not session 1:2.
      auto whole = [](const char* b, const char* e, auto& out) {
        auto r = std::from_chars(b, e, out);
        return b != e && r.ec == std::errc() && r.ptr == e;
      };
      bool ok = colon != std::string_view::npos &&
                whole(arg.data(), arg.data() + colon, cid) &&
                whole(arg.data() + colon + 1, arg.data() + arg.size(), sid);
      if (!ok) {
        return Status::invalid(
            fmt::format("kill wants CLIENT:SESSION, got '{}'", text(arg.substr(0, 64))));
      }
      for (ClientConn* c : clients_) {
        if (c->id() != cid) continue;
        auto it = c->sessions().find(sid);
        if (it == c->sessions().end()) break;
        spdlog::warn("{} session {}: killed by {}", c->tag(), sid, from.tag());
        it->second->abort_transaction(Status(proto::ErrorCategory::kKilled,
                                             "the session was killed by an operator "
                                             "(dbmgrctl kill); its transaction was rolled back"));
        return dump(json{{"killed", std::string(arg)}});
      }
      return Status::not_found(fmt::format("no session {}", arg));
    }
    case C::kDrain:
    case C::kShutdown:
      // [issue 6] drain keeps the daemon up (and answering admin requests); shutdown exits.
      if (cmd == C::kDrain) {
        begin_drain(fmt::format("admin drain by {}", from.tag()));
      } else {
        begin_shutdown(fmt::format("admin shutdown by {}", from.tag()));
      }
      return dump(json{{"draining", true},
                       {"exiting", exiting_},
                       {"drain_timeout_ms", settings_.drain_timeout.count()}});
  }
  return Status::invalid("unknown admin command");
}

std::string Server::status_json() {
  auto now = clock_.now();
  std::size_t sessions = 0;
  for (ClientConn* c : clients_) sessions += c->sessions().size();
  json j{
      {"version", "0.1.0"},
      {"pid", getpid()},
      {"uptime_s", seconds_since(started_at_, now)},
      {"config_file", text(settings_.config_file)},
      {"socket", text(settings_.socket_path)},
      {"draining", draining_},
      {"state", exiting_ ? "shutting_down" : (draining_ ? "draining" : "running")},  // [issue 6]
      {"metrics", text(settings_.metrics.listen)},                                   // [issue 6]
      {"clients", clients_.size()},
      {"sessions", sessions},
      {"engines", engines_.size()},
      {"rss_kb", rss_kb()},
      {"totals",
       {{"transactions", totals_.transactions},
        {"statements", totals_.statements},
        {"errors", totals_.errors},
        {"rollbacks_on_disconnect", totals_.rollbacks_on_disconnect},
        {"clients_accepted", totals_.clients_accepted},
        {"sessions_opened", totals_.sessions_opened},
        {"protocol_errors", totals_.protocol_errors},
        {"internal_errors", internal_errors().load()},
        {"engines_created", totals_.engines_created},
        {"engines_disposed", totals_.engines_disposed},
        {"clients_refused", totals_.clients_refused},
        {"handshake_timeouts", totals_.handshake_timeouts},
        {"input_limit_closes", totals_.input_limit_closes},
        {"stalled_streams", totals_.stalled_streams},
        {"accept_errors", totals_.accept_errors}}},
      {"max_clients", max_clients_},
      {"buffered_bytes", buffered_bytes_},
  };
  return dump(j);
}

std::string Server::pools_json() {
  json arr = json::array();
  for (auto& [key, e] : engines_) {
    for (Pool* p : e->pools()) {
      const PoolStats& st = p->stats();
      double wait_avg_ms = st.waits ? static_cast<double>(st.wait_us_total) / st.waits / 1000.0 : 0;
      json j{
          {"database", e->name()},
          {"type", config::to_string(e->config().type)},
          {"role", to_string(e->role(p))},
          {"size", p->settings().pool_size},
          {"max_overflow", p->settings().max_overflow},
          {"in_use", p->in_use()},
          {"idle", p->idle()},
          {"opening", p->opening()},
          {"waiting", p->waiting()},
          {"leases", st.leases},
          {"waits", st.waits},
          {"wait_ms_max", static_cast<double>(st.wait_us_max) / 1000.0},
          {"wait_ms_avg", wait_avg_ms},
          {"timeouts", st.timeouts},
          {"errors", st.errors},
          {"opened", st.opened},
          {"closed", st.closed},
      };
      const GroupCommit* g = e->group_commit();
      if (g != nullptr && p == g->pool()) add_group_counters(*g, j);
      arr.push_back(std::move(j));
    }
  }
  return dump(arr);
}

std::string Server::sessions_json() {
  auto now = clock_.now();
  ListWriter w;
  auto add = [&](ClientConn* c, Session* s) {
    bool in_tx = s->in_transaction();
    w.begin();
    w.field("id", fmt::format("{}:{}", c->id(), s->id()));
    w.field("client_id", c->id());
    w.field("session_id", s->id());
    w.field("database", s->engine()->name());
    w.field("client_pid", c->pid());
    w.field("client_name", c->name());
    w.field("state", s->state_name());
    w.field("read_only", s->read_only());
    w.field("age_s", seconds_since(s->created_at(), now));
    w.field("in_transaction_s", in_tx ? seconds_since(s->tx_started(), now) : 0.0);
    w.end();
  };
  for (ClientConn* c : clients_) {
    for (auto& [id, s] : c->sessions()) add(c, s);
    for (Session* s : c->one_shots()) add(c, s);
  }
  return w.finish();
}

std::string Server::clients_json() {
  auto now = clock_.now();
  ListWriter w;
  for (ClientConn* c : clients_) {
    w.begin();
    w.field("id", c->id());
    w.field("pid", c->pid());
    w.field("uid", c->uid());
    w.field("gid", c->gid());
    w.field("name", c->name());
    w.field("sessions", c->sessions().size());
    w.field("age_s", seconds_since(c->connected_at(), now));
    w.field("write_queue_bytes", c->write_queue_bytes());
    w.end();
  }
  return w.finish();
}

std::string Server::servers_json() {
  auto now = clock_.now();
  json arr = json::array();
  for (auto& entry : engines_) {
    const Engine* e = entry.second.get();  // a structured binding cannot be captured (clang 14)
    for (Pool* p : entry.second->pools()) {
      p->for_each_conn([&](const Pool::ConnInfo& c) {
        json j{
            {"database", e->name()},
            {"type", config::to_string(e->config().type)},
            {"role", to_string(e->role(p))},
            {"id", c.id},
            {"state", Pool::to_string(c.state)},
            {"backend_pid", c.conn->backend_id()},
            {"age_s", seconds_since(c.created_at, now)},
            {"state_s", seconds_since(c.state_since, now)},
            {"idle_s", c.state == Pool::ConnState::kIdle ? seconds_since(c.last_used, now) : 0.0},
            {"holder", std::string(c.holder.what)},
            {"session", c.holder.client_id != 0
                            ? fmt::format("{}:{}", c.holder.client_id, c.holder.session_id)
                            : std::string()},
            {"server_version", text(c.conn->server_version())},
        };
        arr.push_back(std::move(j));
      });
    }
  }
  return dump(arr);
}

std::string Server::engines_json() {
  auto now = clock_.now();
  json arr = json::array();
  for (auto& [key, e] : engines_) {
    const auto& info = e->info();
    arr.push_back(json{
        {"database", e->name()},
        {"config_key", e->key()},
        {"type", config::to_string(info.type)},
        {"uri", text(info.uri)},
        {"pk_type", info.pk.name},
        {"pk_column_type", info.pk.column_type},
        {"age_s", seconds_since(e->created_at(), now)},
        {"sessions", e->sessions()},
        {"idle_s", e->idle() ? seconds_since(e->last_active(), now) : 0.0},
    });
    if (const GroupCommit* g = e->group_commit()) add_group_counters(*g, arr.back());
  }
  return dump(arr);
}

}  // namespace dbmgr::daemon
