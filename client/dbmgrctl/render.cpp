// dbmgrctl's human output: aligned tables and key/value lists from the daemon's JSON.
#include "render.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

namespace dbmgr::ctl {
namespace {

constexpr std::string_view kMissing = "-";
constexpr std::size_t kGap = 2;

// Text for a terminal: control characters (a client name may carry ESC sequences or a
// newline that would forge a line) are shown as \xNN, never sent to the terminal.
std::string printable(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02X", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

// A field as text: strings as they are (made printable), integers plainly, doubles with
// `decimals`.
std::string field(const Json& obj, const char* key, int decimals = 1) {
  if (!obj.is_object()) return std::string(kMissing);
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return std::string(kMissing);
  if (it->is_string()) {
    const auto& s = it->get_ref<const std::string&>();
    return s.empty() ? std::string(kMissing) : printable(s);
  }
  if (it->is_boolean()) return it->get<bool>() ? "yes" : "no";
  if (it->is_number_integer()) return it->dump();
  if (it->is_number_float()) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), "%.*f", decimals, it->get<double>());
    return buf;
  }
  return it->dump();
}

double number(const Json& obj, const char* key) {
  if (!obj.is_object()) return 0;
  auto it = obj.find(key);
  return it != obj.end() && it->is_number() ? it->get<double>() : 0;
}

}  // namespace

std::string Table::str() const {
  std::vector<std::size_t> width(columns_.size());
  for (std::size_t c = 0; c < columns_.size(); ++c) width[c] = columns_[c].title.size();
  for (const auto& row : rows_) {
    for (std::size_t c = 0; c < columns_.size() && c < row.size(); ++c) {
      width[c] = std::max(width[c], row[c].size());
    }
  }
  std::string out;
  auto line = [&](auto cell_of) {
    std::string l;
    for (std::size_t c = 0; c < columns_.size(); ++c) {
      std::string cell = cell_of(c);
      std::string pad(width[c] - std::min(width[c], cell.size()), ' ');
      if (c > 0) l.append(kGap, ' ');
      if (columns_[c].numeric) {
        l += pad + cell;
      } else {
        l += cell;
        if (c + 1 < columns_.size()) l += pad;
      }
    }
    while (!l.empty() && l.back() == ' ') l.pop_back();
    out += l + "\n";
  };
  line([&](std::size_t c) { return columns_[c].title; });
  for (const auto& row : rows_) {
    line([&](std::size_t c) { return c < row.size() ? row[c] : std::string(kMissing); });
  }
  return out;
}

std::string format_duration(double seconds) {
  if (seconds < 60) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%.1fs", seconds);
    return buf;
  }
  auto total = static_cast<long long>(seconds);
  long long d = total / 86400, h = total / 3600 % 24, m = total / 60 % 60, s = total % 60;
  char buf[64];
  if (d > 0) {
    std::snprintf(buf, sizeof(buf), "%lldd %02lldh %02lldm", d, h, m);
  } else if (h > 0) {
    std::snprintf(buf, sizeof(buf), "%lldh %02lldm %02llds", h, m, s);
  } else {
    std::snprintf(buf, sizeof(buf), "%lldm %02llds", m, s);
  }
  return buf;
}

std::string format_kib(std::uint64_t kib) {
  char buf[32];
  if (kib < 1024) {
    std::snprintf(buf, sizeof(buf), "%llu KiB", static_cast<unsigned long long>(kib));
  } else if (kib < 1024 * 1024) {
    std::snprintf(buf, sizeof(buf), "%.1f MiB", static_cast<double>(kib) / 1024);
  } else {
    std::snprintf(buf, sizeof(buf), "%.2f GiB", static_cast<double>(kib) / (1024 * 1024));
  }
  return buf;
}

std::string render_status(const Json& st) {
  const Json empty = Json::object();
  const Json& totals = st.contains("totals") ? st["totals"] : empty;
  std::string out = "dbmgrd " + field(st, "version") + ", pid " + field(st, "pid") + ", up " +
                    format_duration(number(st, "uptime_s")) + ", " +
                    (st.value("draining", false) ? "draining" : "running") + "\n";
  Table t({{"", false}, {"", false}});
  t.add({"config file", field(st, "config_file")});
  t.add({"socket", field(st, "socket")});
  t.add({"clients", field(st, "clients")});
  t.add({"sessions", field(st, "sessions")});
  t.add({"engines", field(st, "engines")});
  t.add({"memory (RSS)", format_kib(static_cast<std::uint64_t>(number(st, "rss_kb")))});
  t.add({"transactions", field(totals, "transactions")});
  t.add({"statements", field(totals, "statements")});
  t.add({"errors", field(totals, "errors")});
  t.add({"rollbacks on disconnect", field(totals, "rollbacks_on_disconnect")});
  t.add({"sessions opened", field(totals, "sessions_opened")});
  t.add({"clients accepted", field(totals, "clients_accepted")});
  t.add({"protocol errors", field(totals, "protocol_errors")});
  t.add({"internal errors", field(totals, "internal_errors")});
  t.add({"engines created", field(totals, "engines_created")});
  t.add({"engines disposed (idle)", field(totals, "engines_disposed")});
  std::string body = t.str();
  // The table's header row is empty for a key/value list: drop it.
  body.erase(0, body.find('\n') + 1);
  return out + body;
}

std::string render_pools(const Json& pools) {
  Table t({{"database", false},
           {"type", false},
           {"role", false},
           {"size", true},
           {"overflow", true},
           {"in_use", true},
           {"idle", true},
           {"opening", true},
           {"waiting", true},
           {"leases", true},
           {"waits", true},
           {"wait_avg_ms", true},
           {"wait_max_ms", true},
           {"timeouts", true},
           {"errors", true}});
  for (const Json& p : pools) {
    t.add({field(p, "database"), field(p, "type"), field(p, "role"), field(p, "size"),
           field(p, "max_overflow"), field(p, "in_use"), field(p, "idle"), field(p, "opening"),
           field(p, "waiting"), field(p, "leases"), field(p, "waits"), field(p, "wait_ms_avg", 3),
           field(p, "wait_ms_max", 3), field(p, "timeouts"), field(p, "errors")});
  }
  return t.str();
}

std::string render_sessions(const Json& sessions) {
  Table t({{"id", false},
           {"database", false},
           {"client_pid", true},
           {"client", false},
           {"state", false},
           {"access", false},
           {"age", true},
           {"in_transaction", true}});
  for (const Json& s : sessions) {
    double in_tx = number(s, "in_transaction_s");
    t.add({field(s, "id"), field(s, "database"), field(s, "client_pid"), field(s, "client_name"),
           field(s, "state"), s.value("read_only", false) ? "read" : "write",
           format_duration(number(s, "age_s")),
           in_tx > 0 ? format_duration(in_tx) : std::string(kMissing)});
  }
  return t.str();
}

std::string render_clients(const Json& clients) {
  Table t({{"id", true},
           {"pid", true},
           {"uid", true},
           {"name", false},
           {"sessions", true},
           {"age", true},
           {"write_queue_bytes", true}});
  for (const Json& c : clients) {
    t.add({field(c, "id"), field(c, "pid"), field(c, "uid"), field(c, "name"), field(c, "sessions"),
           format_duration(number(c, "age_s")), field(c, "write_queue_bytes")});
  }
  return t.str();
}

std::string render_engines(const Json& engines) {
  Table t({{"database", false},
           {"type", false},
           {"uri", false},
           {"pk_type", false},
           {"pk_column_type", false},
           {"sessions", true},
           {"idle", true},
           {"age", true}});
  for (const Json& e : engines) {
    double idle = number(e, "idle_s");
    t.add({field(e, "database"), field(e, "type"), field(e, "uri"), field(e, "pk_type"),
           field(e, "pk_column_type"), field(e, "sessions"),
           idle > 0 ? format_duration(idle) : std::string(kMissing),
           format_duration(number(e, "age_s"))});
  }
  return t.str();
}

std::string render_servers(const Json& servers) {
  Table t({{"database", false},
           {"role", false},
           {"id", true},
           {"state", false},
           {"for", true},
           {"backend_pid", true},
           {"holder", false},
           {"session", false},
           {"age", true}});
  for (const Json& c : servers) {
    t.add({field(c, "database"), field(c, "role"), field(c, "id"), field(c, "state"),
           format_duration(number(c, "state_s")),
           number(c, "backend_pid") > 0 ? field(c, "backend_pid") : std::string(kMissing),
           field(c, "holder"), field(c, "session"), format_duration(number(c, "age_s"))});
  }
  return t.str();
}

}  // namespace dbmgr::ctl
