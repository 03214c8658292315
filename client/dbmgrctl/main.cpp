// dbmgrctl: the operator tool of dbmgrd (status, pools, sessions, reload, kill, drain, watch).
//
// A thin command line over dbmgr::AdminClient: each command sends one admin request and
// prints the daemon's JSON document, either as it is (--json, one document) or as an
// aligned table. Exit codes (documented in dbmgrctl(1)): 0 success, 1 the daemon refused or
// failed the command, 2 usage error, 3 dbmgrd cannot be reached (not running, socket
// permission, protocol version mismatch), 4 permission denied for the command, 5 no such
// session. Every failure is one line on stderr.
#include <algorithm>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <iostream>
#include <string>
#include <thread>

#include "dbmgr/admin.hpp"
#include "render.hpp"

namespace {

using dbmgr::ctl::Json;

constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;
constexpr int kExitUnreachable = 3;
constexpr int kExitPermission = 4;
constexpr int kExitNotFound = 5;
constexpr std::string_view kClearScreen = "\033[H\033[2J";

struct Options {
  std::string socket;
  bool json = false;
  std::string session;      // kill
  int count = 0;            // watch: refreshes before exiting; 0 = until interrupted
  double interval_s = 1.0;  // watch
};

Json parse(const std::string& text) { return Json::parse(text); }

void print_json(const Json& j) { std::cout << j.dump(2) << "\n"; }

// Prints a read command's document as JSON or through `render`.
int show(const Options& o, const std::string& text, std::string (*render)(const Json&)) {
  Json j = parse(text);
  if (o.json) {
    print_json(j);
  } else {
    std::cout << render(j);
  }
  return kExitOk;
}

std::string now_hms() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[16];
  std::strftime(buf, sizeof(buf), "%H:%M:%S", &tm);
  return buf;
}

int watch(dbmgr::AdminClient& admin, const Options& o) {
  bool tty = ::isatty(STDOUT_FILENO) == 1;
  auto interval = std::chrono::duration<double>(o.interval_s);
  for (int i = 0; o.count == 0 || i < o.count; ++i) {
    auto start = std::chrono::steady_clock::now();
    Json status = parse(admin.status());
    Json pools = parse(admin.pools());
    Json sessions = parse(admin.sessions());
    if (o.json) {
      // One compact document per refresh (JSON lines), for scripts that follow the daemon.
      std::cout << Json{{"status", status}, {"pools", pools}, {"sessions", sessions}}.dump()
                << "\n";
    } else {
      std::string screen;
      if (tty) screen += kClearScreen;
      screen += "dbmgrctl watch " + now_hms() + "  dbmgrd pid " +
                status.value("pid", Json(0)).dump() + "  clients " +
                status.value("clients", Json(0)).dump() + "  sessions " +
                status.value("sessions", Json(0)).dump() +
                (status.value("draining", false) ? "  DRAINING" : "") + "\n\n";
      screen += dbmgr::ctl::render_pools(pools) + "\n" + dbmgr::ctl::render_sessions(sessions);
      if (!tty) screen += "\n";
      std::cout << screen << std::flush;
    }
    std::cout.flush();
    if (o.count != 0 && i + 1 >= o.count) break;
    std::this_thread::sleep_until(start +
                                  std::chrono::duration_cast<std::chrono::nanoseconds>(interval));
  }
  return kExitOk;
}

int run(const std::string& command, const Options& o) {
  dbmgr::AdminClient admin(o.socket);
  if (command == "status") return show(o, admin.status(), dbmgr::ctl::render_status);
  if (command == "pools") return show(o, admin.pools(), dbmgr::ctl::render_pools);
  if (command == "sessions") return show(o, admin.sessions(), dbmgr::ctl::render_sessions);
  if (command == "clients") return show(o, admin.clients(), dbmgr::ctl::render_clients);
  if (command == "engines") return show(o, admin.engines(), dbmgr::ctl::render_engines);
  if (command == "servers") return show(o, admin.servers(), dbmgr::ctl::render_servers);
  if (command == "watch") return watch(admin, o);
  if (command == "ping") {
    std::string version = admin.server_version();
    double ms = std::chrono::duration<double, std::milli>(admin.ping()).count();
    if (o.json) {
      print_json(
          Json{{"socket", admin.socket_path()}, {"server_version", version}, {"rtt_ms", ms}});
    } else {
      std::printf("%s at %s answered in %.3f ms\n", version.c_str(), admin.socket_path().c_str(),
                  ms);
    }
    return kExitOk;
  }
  Json reply;
  std::string said;
  if (command == "reload") {
    reply = parse(admin.reload());
    said = "configuration reloaded from " + reply.value("config_file", std::string("(none)"));
  } else if (command == "kill") {
    reply = parse(admin.kill(o.session));
    said = "session " + o.session + " killed; its transaction was rolled back";
  } else if (command == "drain") {
    reply = parse(admin.drain());
    said = "dbmgrd is draining: no new sessions or transactions; open transactions get " +
           reply.value("drain_timeout_ms", Json(0)).dump() + " ms";
  } else if (command == "shutdown") {
    reply = parse(admin.shutdown());
    said = "dbmgrd is shutting down: open transactions get " +
           reply.value("drain_timeout_ms", Json(0)).dump() + " ms, then it exits";
  } else {
    std::cerr << "dbmgrctl: unknown command " << command << "\n";
    return kExitUsage;
  }
  if (o.json) {
    print_json(reply);
  } else {
    std::cout << said << "\n";
  }
  return kExitOk;
}

int exit_code_for(const dbmgr::Error& e) {
  using C = dbmgr::ErrorCategory;
  if (e.client_side() && (e.category() == C::kConnection || e.category() == C::kProtocol)) {
    return kExitUnreachable;
  }
  switch (e.category()) {
    case C::kPermission:
      return kExitPermission;
    case C::kNotFound:
      return kExitNotFound;
    default:
      return kExitFailed;
  }
}

std::string one_line(std::string s) {
  for (char& c : s) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"dbmgrctl: look at and operate a running dbmgrd", "dbmgrctl"};
  app.require_subcommand(1);
  app.fallthrough();
  app.add_option("-s,--socket", o.socket,
                 "dbmgrd's Unix socket (default: $DBMGR_SOCKET, else /run/dbmgr/dbmgrd.sock)")
      ->type_name("PATH");
  app.add_flag("-j,--json", o.json, "print the daemon's JSON document instead of a table");

  struct Sub {
    const char* name;
    const char* help;
  };
  const Sub subs[] = {
      {"status", "version, pid, uptime, config file, clients, sessions, engines, memory, totals"},
      {"pools", "every pool: size, in use, idle, waiting, leases, waits, timeouts, errors"},
      {"sessions", "open sessions: id, database, client pid, state, age, time in transaction"},
      {"clients", "connected client processes: id, pid, uid, name, sessions"},
      {"engines", "databases the daemon has opened: type, URI (password masked), PK type"},
      {"servers", "every backend connection: pool, state (idle, leased...), backend pid, holder"},
      {"ping", "one round trip to the daemon; prints the time it took"},
      {"reload", "re-read the configuration (admin); a broken file is refused, the old stays"},
      {"kill", "end a session and roll back its transaction (admin)"},
      {"drain", "stop giving out sessions; open transactions get drain_timeout (admin)"},
      {"shutdown", "drain, then exit, as SIGTERM does (admin)"},
      {"watch", "pools and sessions refreshed every second, like top"},
  };
  for (const Sub& s : subs) {
    CLI::App* sub = app.add_subcommand(s.name, s.help);
    if (std::string_view(s.name) == "kill") {
      sub->add_option("session", o.session, "session id as listed by `dbmgrctl sessions`")
          ->type_name("CLIENT:SESSION")
          ->required();
    } else if (std::string_view(s.name) == "watch") {
      sub->add_option("-n,--count", o.count, "stop after N refreshes (default: until Ctrl-C)")
          ->type_name("N")
          ->check(CLI::NonNegativeNumber);
      sub->add_option("-i,--interval", o.interval_s, "seconds between refreshes (default 1)")
          ->type_name("SECONDS")
          ->check(CLI::Range(0.05, 3600.0));
    }
  }
  try {
    // Parse without argv[0], so help says "dbmgrctl" however the program was invoked.
    std::vector<std::string> args(argv + 1, argv + argc);
    std::reverse(args.begin(), args.end());
    app.parse(args);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "dbmgrctl: " << one_line(e.what()) << " (see dbmgrctl --help)\n";
    return kExitUsage;
  }
  std::string command = app.get_subcommands().front()->get_name();
  try {
    return run(command, o);
  } catch (const dbmgr::Error& e) {
    std::string reason = e.client_side()
                             ? e.message()
                             : std::string(dbmgr::to_string(e.category())) + ": " + e.message();
    std::cerr << "dbmgrctl: " << one_line(reason) << "\n";
    return exit_code_for(e);
  } catch (const Json::exception& e) {
    std::cerr << "dbmgrctl: dbmgrd sent a document that is not JSON: " << one_line(e.what())
              << "\n";
    return kExitFailed;
  } catch (const std::exception& e) {
    std::cerr << "dbmgrctl: " << one_line(e.what()) << "\n";
    return kExitFailed;
  }
}
