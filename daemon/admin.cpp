// Admin requests: status, pools, sessions, clients, engines as JSON; reload, kill, drain,
// shutdown for root, the daemon's own user and the admin group.
#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <charconv>
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

// Group commit counters of a SQLite engine (on its writer pool and on the engine).
void add_group_counters(const GroupCommit& g, json& j) {
  j["group_commits"] = g.commits();
  j["group_committed_statements"] = g.statements();
  j["group_deferred"] = g.deferred();
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
  switch (cmd) {
    case C::kStatus: return status_json();
    case C::kPools: return pools_json();
    case C::kSessions: return sessions_json();
    case C::kClients: return clients_json();
    case C::kEngines: return engines_json();
    case C::kReload: {
      Status s = reload();
      if (!s.is_ok()) return s;
      return json{{"reloaded", true}, {"config_file", settings_.config_file}}.dump();
    }
    case C::kKill: {
      // "<client id>:<session id>" as listed by sessions.
      auto colon = arg.find(':');
      std::uint64_t cid = 0;
      std::uint32_t sid = 0;
      bool ok = colon != std::string_view::npos &&
                std::from_chars(arg.data(), arg.data() + colon, cid).ec == std::errc() &&
                std::from_chars(arg.data() + colon + 1, arg.data() + arg.size(), sid).ec ==
                    std::errc();
      if (!ok) return Status::invalid(fmt::format("kill wants CLIENT:SESSION, got '{}'", arg));
      for (ClientConn* c : clients_) {
        if (c->id() != cid) continue;
        auto it = c->sessions().find(sid);
        if (it == c->sessions().end()) break;
        spdlog::warn("{} session {}: killed by {}", c->tag(), sid, from.tag());
        it->second->abort_transaction(Status(proto::ErrorCategory::kKilled,
                                             "the session was killed by an operator "
                                             "(dbmgrctl kill); its transaction was rolled back"));
        return json{{"killed", std::string(arg)}}.dump();
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
      return json{{"draining", true},
                  {"exiting", exiting_},
                  {"drain_timeout_ms", settings_.drain_timeout.count()}}
          .dump();
  }
  return Status::invalid("unknown admin command");
}

std::string Server::status_json() {
  auto now = Clock::now();
  std::size_t sessions = 0;
  for (ClientConn* c : clients_) sessions += c->sessions().size();
  json j{
      {"version", "0.1.0"},
      {"pid", getpid()},
      {"uptime_s", seconds_since(started_at_, now)},
      {"config_file", settings_.config_file},
      {"socket", settings_.socket_path},
      {"draining", draining_},
      {"state", exiting_ ? "shutting_down" : (draining_ ? "draining" : "running")},  // [issue 6]
      {"metrics", settings_.metrics.listen},                                         // [issue 6]
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
        {"protocol_errors", totals_.protocol_errors}}},
  };
  return j.dump();
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
          {"role", e->role(p)},
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
      if (g != nullptr && e->role(p) == "writer") add_group_counters(*g, j);
      arr.push_back(std::move(j));
    }
  }
  return arr.dump();
}

std::string Server::sessions_json() {
  auto now = Clock::now();
  json arr = json::array();
  auto add = [&](ClientConn* c, Session* s) {
    bool in_tx = s->state() == Session::State::kInTx || s->state() == Session::State::kRunning;
    arr.push_back(json{
        {"id", fmt::format("{}:{}", c->id(), s->id())},
        {"client_id", c->id()},
        {"session_id", s->id()},
        {"database", s->engine()->name()},
        {"client_pid", c->pid()},
        {"client_name", c->name()},
        {"state", s->state_name()},
        {"read_only", s->read_only()},
        {"age_s", seconds_since(s->created_at(), now)},
        {"in_transaction_s", in_tx ? seconds_since(s->tx_started(), now) : 0.0},
    });
  };
  for (ClientConn* c : clients_) {
    for (auto& [id, s] : c->sessions()) add(c, s);
    for (Session* s : c->one_shots()) add(c, s);
  }
  return arr.dump();
}

std::string Server::clients_json() {
  auto now = Clock::now();
  json arr = json::array();
  for (ClientConn* c : clients_) {
    arr.push_back(json{
        {"id", c->id()},
        {"pid", c->pid()},
        {"uid", c->uid()},
        {"gid", c->gid()},
        {"name", c->name()},
        {"sessions", c->sessions().size()},
        {"age_s", seconds_since(c->connected_at(), now)},
        {"write_queue_bytes", c->write_queue_bytes()},
    });
  }
  return arr.dump();
}

std::string Server::engines_json() {
  auto now = Clock::now();
  json arr = json::array();
  for (auto& [key, e] : engines_) {
    const auto& info = e->info();
    arr.push_back(json{
        {"database", e->name()},
        {"config_key", e->key()},
        {"type", config::to_string(info.type)},
        {"uri", info.uri},
        {"pk_type", info.pk.name},
        {"pk_column_type", info.pk.column_type},
        {"age_s", seconds_since(e->created_at(), now)},
    });
    if (const GroupCommit* g = e->group_commit()) add_group_counters(*g, arr.back());
  }
  return arr.dump();
}

}  // namespace dbmgr::daemon
