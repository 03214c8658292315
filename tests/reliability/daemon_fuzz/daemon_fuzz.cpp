// dbmgr-daemon-fuzz: the whole-daemon fuzzer (docs/reliability.md, "Whole-daemon fuzzer").
//
//   dbmgr-daemon-fuzz [--seconds N] [--seed S] [--backend sqlite|postgresql] [--attackers N]
//                     [--bound-ms MS] [--kinds K,...] [--replay T:N] [--verbose]
//                     [--waive-protocol-error-session-0]
//
// Starts its own dbmgrd ($DBMGRD) with small limits, a checker client (checker.cpp) and
// attacker threads (attacker.cpp) for N seconds, then checks that the daemon is alive and
// tidy: it answers, its status is readable, no session, buffered byte or engine is left, its
// descriptors are back to the count it started with, no internal error was counted, and
// SIGTERM ends it with exit 0 (under ASan a leak report makes that non-zero). Prints what
// each kind of attacker sent and how the daemon answered. Exits 0 (no finding), 1 (findings,
// listed with the seed and --replay arguments that reproduce them), 2 (could not run) or 77
// (PostgreSQL asked for but DBMGR_TEST_PG_* not set: meson's skip).
#define DOCTEST_CONFIG_IMPLEMENT  // the harness's ~Daemon uses CHECK; no doctest main here
#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <thread>

#include "attacker.hpp"
#include "checker.hpp"
#include "harness.hpp"

namespace dbmgr::fuzz {

std::string_view to_string(Kind k) {
  switch (k) {
    case Kind::kRandomBytes: return "random_bytes";
    case Kind::kRandomAfterHello: return "random_after_hello";
    case Kind::kMutatedFrames: return "mutated_frames";
    case Kind::kSessionChaos: return "session_chaos";
    case Kind::kAdminChaos: return "admin_chaos";
    case Kind::kOversized: return "oversized";
    case Kind::kPipelineFlood: return "pipeline_flood";
    case Kind::kHalfClosed: return "half_closed";
    case Kind::kSlowWriter: return "slow_writer";
    case Kind::kAbruptClose: return "abrupt_close";
    case Kind::kSilent: return "silent";
    case Kind::kCount: break;
  }
  return "?";
}

void Stats::merge(const Stats& o) {
  rejected_scripts += o.rejected_scripts;
  for (int i = 0; i < static_cast<int>(Kind::kCount); ++i) {
    kinds[i].connections += o.kinds[i].connections;
    kinds[i].frames += o.kinds[i].frames;
    kinds[i].bytes += o.kinds[i].bytes;
    for (auto& [k, v] : o.kinds[i].outcomes) kinds[i].outcomes[k] += v;
  }
}

void Findings::add(std::string what) {
  std::lock_guard<std::mutex> lock(mu_);
  if (items_.size() >= 50) {
    ++dropped_;
    return;
  }
  std::cerr << "FINDING " << what << "\n";
  items_.push_back(std::move(what));
}
std::vector<std::string> Findings::all() const {
  std::lock_guard<std::mutex> lock(mu_);
  auto v = items_;
  if (dropped_ > 0) v.push_back("... and " + std::to_string(dropped_) + " more");
  return v;
}
std::size_t Findings::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return items_.size() + dropped_;
}

std::uint64_t mix(std::uint64_t a, std::uint64_t b) {  // splitmix64 of a combination
  std::uint64_t z = a ^ (b + 0x9E3779B97F4A7C15ull + (a << 6) + (a >> 2));
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

}  // namespace dbmgr::fuzz

namespace {

using namespace dbmgr::fuzz;
using dbmgr::test::Daemon;
using dbmgr::test::DaemonOptions;
using Cmd = dbmgr::proto::AdminCommand;

constexpr int kExitFindings = 1;
constexpr int kExitBroken = 2;
constexpr int kExitSkip = 77;
constexpr std::uint32_t kMaxFrame = 1024 * 1024;
constexpr int kMaxSessions = 64;

// How often each kind is chosen (out of the sum).
int weight(Kind k) {
  switch (k) {
    case Kind::kMutatedFrames: return 30;
    case Kind::kSessionChaos: return 15;
    case Kind::kRandomBytes:
    case Kind::kRandomAfterHello:
    case Kind::kAdminChaos: return 8;
    case Kind::kHalfClosed:
    case Kind::kAbruptClose: return 6;
    case Kind::kOversized:
    case Kind::kPipelineFlood:
    case Kind::kSlowWriter: return 4;
    case Kind::kSilent: return 2;
    case Kind::kCount: break;
  }
  return 0;
}

bool parse_kind(std::string_view s, Kind* out) {
  for (int i = 0; i < static_cast<int>(Kind::kCount); ++i) {
    if (to_string(static_cast<Kind>(i)) == s) {
      *out = static_cast<Kind>(i);
      return true;
    }
  }
  return false;
}

Options parse(int argc, char** argv) {
  Options o;
  o.seed = std::random_device{}() ^ (std::uint64_t{std::random_device{}()} << 32);
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw std::runtime_error(a + " needs a value");
      return argv[++i];
    };
    if (a == "--seconds") {
      o.seconds = std::stod(next());
    } else if (a == "--seed") {
      o.seed = std::stoull(next());
    } else if (a == "--backend") {
      o.backend = next();
      if (o.backend != "sqlite" && o.backend != "postgresql") throw std::runtime_error("--backend sqlite|postgresql");
    } else if (a == "--attackers") {
      o.attackers = std::stoi(next());
    } else if (a == "--bound-ms") {
      o.reply_bound_ms = std::stoi(next());
    } else if (a == "--waive-protocol-error-session-0") {
      waive_protocol_error_session_0 = true;
    } else if (a == "--verbose") {
      o.verbose = true;
    } else if (a == "--kinds") {
      std::stringstream ss(next());
      std::string k;
      while (std::getline(ss, k, ',')) {
        Kind kind;
        if (!parse_kind(k, &kind)) throw std::runtime_error("unknown kind " + k);
        o.kinds.insert(kind);
      }
    } else if (a == "--replay") {
      std::string v = next();
      auto colon = v.find(':');
      if (colon == std::string::npos) throw std::runtime_error("--replay T:N");
      o.replay_thread = std::stoi(v.substr(0, colon));
      o.replay_conn = std::stoull(v.substr(colon + 1));
    } else {
      throw std::runtime_error("unknown argument " + a);
    }
  }
  return o;
}

std::string yaml(const Options& o) {
  std::ostringstream y;
  y << "max_frame_bytes: 1MiB\n"
       "handshake_timeout: 500ms\n"
       "max_clients: 300\n"
       "max_sessions_per_client: " << kMaxSessions << "\n"
       "max_client_buffered_bytes: 4MiB\n"
       "max_buffered_bytes: 64MiB\n"
       "stream_stall_timeout: 3s\n"
       "max_engines: 64\n"
       "max_engines_per_client: 8\n"
       "engine_idle_timeout: 2s\n"
       "drain_timeout: 5s\n"
       "pool:\n"
       "  pool_size: 4\n"
       "  max_overflow: 2\n"
       "  pool_timeout: 1s\n"
       "  idle_in_transaction_timeout: 2s\n"
       "  statement_timeout: 2s\n"
       "databases:\n";
  // The checker's database keeps the generous defaults: it must never wait long anyway.
  auto entry = [&](const char* key, bool checker) {
    y << "  " << key << ":\n";
    if (o.backend == "postgresql") {
      y << "    type: postgresql\n"
        << "    name: " << dbmgr::test::required_env("DBMGR_TEST_PG_DB") << "\n"
        << "    host: " << dbmgr::test::required_env("DBMGR_TEST_PG_HOST") << "\n"
        << "    port: " << dbmgr::test::required_env("DBMGR_TEST_PG_PORT") << "\n"
        << "    user: " << dbmgr::test::required_env("DBMGR_TEST_PG_USER") << "\n"
        << "    password: \"" << dbmgr::test::required_env("DBMGR_TEST_PG_PASSWORD") << "\"\n"
        << "    pool_size: " << (checker ? 4 : 6) << "\n";
    } else {
      y << "    type: sqlite\n";
    }
    if (checker) {
      y << "    pool_timeout: 30s\n"
           "    idle_in_transaction_timeout: 0\n"
           "    statement_timeout: 0\n";
    }
  };
  entry("checker", true);
  if (o.backend == "postgresql") entry("fzpg", false);
  return y.str();
}

Target target_for(const Options& o) {
  Target t;
  t.backend = o.backend;
  t.max_frame_bytes = kMaxFrame;
  t.max_sessions_per_client = kMaxSessions;
  if (o.backend == "postgresql") {
    t.databases = {"fzpg"};
  } else {
    t.databases = {"fz0", "fz1", "fz2"};
    t.prefix = "test";
  }
  return t;
}

int count_fds(pid_t pid) { return dbmgr::test::open_fds(pid); }

Kind choose_kind(Rng& rng, const Options& o) {
  int total = 0;
  for (int i = 0; i < static_cast<int>(Kind::kCount); ++i) {
    auto k = static_cast<Kind>(i);
    if (o.kinds.empty() || o.kinds.count(k) != 0) total += weight(k);
  }
  int r = static_cast<int>(rng() % static_cast<std::uint64_t>(total));
  for (int i = 0; i < static_cast<int>(Kind::kCount); ++i) {
    auto k = static_cast<Kind>(i);
    if (!o.kinds.empty() && o.kinds.count(k) == 0) continue;
    r -= weight(k);
    if (r < 0) return k;
  }
  return Kind::kMutatedFrames;
}

// Connection `n` of attacker `thread`: the same bytes for the same seed, every time. A script
// that would touch the checker is replaced by the generator's next one (and counted).
Script script_for(const Options& o, int thread, std::uint64_t n, const Target& t,
                  const Protected& p, Prediction* pred, Stats* stats) {
  Rng rng(mix(o.seed, mix(static_cast<std::uint64_t>(thread) + 1, n)));
  for (;;) {
    Kind kind = choose_kind(rng, o);
    Script s = make_script(kind, rng, t);
    *pred = predict(s, t, p);
    if (!pred->dangerous) return s;
    ++stats->rejected_scripts;
  }
}

std::string tag_for(const Options& o, int thread, std::uint64_t n) {
  return "--seed " + std::to_string(o.seed) + " --replay " + std::to_string(thread) + ":" +
         std::to_string(n);
}

void print_stats(const Stats& s) {
  std::cout << "\nper kind: connections, frames, bytes; then how the daemon answered\n";
  for (int i = 0; i < static_cast<int>(Kind::kCount); ++i) {
    const KindStats& k = s.kinds[i];
    if (k.connections == 0) continue;
    std::cout << std::left << std::setw(20) << to_string(static_cast<Kind>(i)) << std::right
              << std::setw(9) << k.connections << std::setw(11) << k.frames << std::setw(13)
              << k.bytes << "\n";
    for (auto& [what, n] : k.outcomes) {
      std::cout << "    " << std::left << std::setw(34) << what << std::right << std::setw(10) << n << "\n";
    }
  }
  std::cout << "scripts replaced (would have touched the checker): " << s.rejected_scripts << "\n";
}

std::set<std::uint64_t> checker_ids(const Daemon& d) {
  std::set<std::uint64_t> ids;
  for (auto& c : d.admin(Cmd::kClients)) {
    if (c["name"] == "fuzz-checker") ids.insert(c["id"].get<std::uint64_t>());
  }
  return ids;
}

int run(const Options& o) {
  std::cout << "dbmgr-daemon-fuzz: seed " << o.seed << ", " << o.seconds << " s, backend "
            << o.backend << ", " << o.attackers << " attackers, reply bound " << o.reply_bound_ms
            << " ms" << std::endl;
  DaemonOptions dopts;
  if (o.backend == "postgresql") dopts = dbmgr::test::pg_daemon_options();
  dopts.config_yaml = yaml(o);
  dopts.log_level = "warn";
  Daemon d(dopts);
  const pid_t pid = d.pid();
  Findings findings;
  // The daemon's own descriptors before any client: listening socket, loop, log, threads.
  int baseline = count_fds(pid);
  std::cout << "daemon pid " << pid << ", " << baseline << " descriptors at start" << std::endl;

  const Target target = target_for(o);
  Protected prot;
  prot.checker_database = "checker";

  if (o.replay_thread >= 0) {  // one connection, alone, with its frames shown
    Stats stats;
    Prediction pred;
    Script s = script_for(o, o.replay_thread, o.replay_conn, target, prot, &pred, &stats);
    std::cout << "connection " << o.replay_thread << ":" << o.replay_conn << " is "
              << to_string(s.kind) << ", " << s.bytes.size() << " bytes, "
              << (s.byte_delay_us > 0 ? "one byte every " + std::to_string(s.byte_delay_us) + " us"
                                      : std::to_string(s.cuts.size() + 1) + " writes")
              << ", end " << static_cast<int>(s.end) << "; predicted: " << pred.frames
              << " frames, violation " << (pred.violation ? pred.violation_why : "none") << "\n"
              << dump_frames(s, kMaxFrame);
    run_script(d.socket(), s, pred, stats.kinds[static_cast<int>(s.kind)], findings,
               tag_for(o, o.replay_thread, o.replay_conn), true);
    print_stats(stats);
    auto st = d.admin(Cmd::kStatus);
    std::cout << "daemon status after it: clients " << st["clients"] << ", protocol errors "
              << st["totals"]["protocol_errors"] << ", internal errors "
              << st["totals"]["internal_errors"] << "\n";
    int status = d.stop();
    if (status != 0) findings.add("dbmgrd exit status " + std::to_string(status) + " on SIGTERM");
    return findings.size() == 0 ? 0 : kExitFindings;
  }

  CheckerConfig cc;
  cc.socket = d.socket();
  cc.database = "checker";
  cc.backend = o.backend;
  cc.table = "fzck_" + std::to_string(getpid());
  cc.bound_ms = o.reply_bound_ms;
  cc.seed = o.seed;
  cc.daemon_pid = pid;
  Checker checker(cc, findings);
  try {
    checker.setup();
  } catch (const std::exception& e) {
    std::cerr << "the checker cannot run against an idle daemon: " << e.what() << "\n" << d.log();
    return kExitBroken;
  }
  prot.client_ids = checker_ids(d);
  std::cout << "checker connections (protected from kill): " << prot.client_ids.size() << std::endl;

  const auto start = std::chrono::steady_clock::now();
  const auto deadline = start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                    std::chrono::duration<double>(o.seconds));
  checker.start();
  std::vector<Stats> stats(static_cast<std::size_t>(o.attackers));
  std::vector<std::thread> threads;
  for (int t = 0; t < o.attackers; ++t) {
    threads.emplace_back([&, t] {
      for (std::uint64_t n = 0; std::chrono::steady_clock::now() < deadline; ++n) {
        Prediction pred;
        Script s = script_for(o, t, n, target, prot, &pred, &stats[static_cast<std::size_t>(t)]);
        run_script(d.socket(), s, pred, stats[static_cast<std::size_t>(t)].kinds[static_cast<int>(s.kind)],
                   findings, tag_for(o, t, n), o.verbose);
      }
    });
  }
  int max_fds = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    max_fds = std::max(max_fds, count_fds(pid));
    if (waitpid(pid, nullptr, WNOHANG) == pid) break;  // reported below
  }
  for (auto& t : threads) t.join();
  checker.stop();
  Stats total;
  for (auto& s : stats) total.merge(s);
  const double attack_s = dbmgr::test::seconds_since(start);

  // The daemon after the attack.
  bool alive = kill(pid, 0) == 0 && count_fds(pid) >= 0;
  nlohmann::json status;
  if (!alive) {
    findings.add("dbmgrd is gone after the attack; its log:\n" + d.log());
  } else {
    checker.final_check();
    try {
      status = d.admin(Cmd::kStatus);
      if (!status.contains("pid") || status["pid"] != pid) findings.add("admin status without our pid: " + status.dump());
      if (status["totals"]["internal_errors"] != 0) {
        findings.add("the daemon counted internal errors: " + status["totals"].dump());
      }
    } catch (const std::exception& e) {
      findings.add(std::string("admin status unreadable after the attack: ") + e.what());
    }
    checker.teardown();
    // Every client gone, nothing held: no session, no buffered input, no engine (each is
    // disposed after engine_idle_timeout), and the descriptors of the start.
    nlohmann::json last;
    bool tidy = dbmgr::test::eventually(
        [&] {
          last = d.admin(Cmd::kStatus);
          return last["clients"] == 1 && last["sessions"] == 0 && last["buffered_bytes"] == 0 &&
                 last["engines"] == 0;
        },
        std::chrono::seconds(30));
    if (!tidy) findings.add("the daemon still holds something 30 s after the last client: " + last.dump());
    int fds = -1;
    bool fds_back = dbmgr::test::eventually(
        [&] {
          fds = count_fds(pid);
          return fds >= 0 && fds <= baseline + 1;
        },
        std::chrono::seconds(10));
    std::cout << "descriptors: " << baseline << " at start, " << max_fds << " at most, " << fds
              << " at the end" << std::endl;
    if (!fds_back) {
      findings.add("descriptor leak: " + std::to_string(fds) + " open at the end, " +
                   std::to_string(baseline) + " at start (ls -l /proc/" + std::to_string(pid) + "/fd)");
      std::string cmd = "ls -l /proc/" + std::to_string(pid) + "/fd >&2";
      if (std::system(cmd.c_str()) != 0) std::cerr << "(ls failed)\n";
    }
  }
  int exit_status = d.stop();
  if (alive && exit_status != 0) {
    std::ostringstream why;
    why << "dbmgrd did not exit 0 on SIGTERM (wait status " << exit_status << "); its log:\n" << d.log();
    findings.add(why.str());
  }

  print_stats(total);
  std::uint64_t conns = 0, frames = 0, bytes = 0;
  for (auto& k : total.kinds) {
    conns += k.connections;
    frames += k.frames;
    bytes += k.bytes;
  }
  std::cout << "\nattack: " << std::fixed << std::setprecision(1) << attack_s << " s, " << conns
            << " connections, " << frames << " frames, " << bytes << " bytes\n"
            << "checker: " << checker.transactions() << " transactions, " << checker.statements()
            << " statements, longest call " << checker.max_wait_ms() << " ms\n";
  if (!status.is_null()) {
    std::cout << "daemon totals: " << status["totals"].dump() << "\n";
  }
  auto all = findings.all();
  if (all.empty()) {
    std::cout << "no findings (seed " << o.seed << ")\n";
    return 0;
  }
  std::cout << all.size() << " finding(s); replay one connection with the arguments shown:\n";
  for (auto& f : all) std::cout << "  " << f << "\n";
  return kExitFindings;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  try {
    o = parse(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "dbmgr-daemon-fuzz: " << e.what() << "\n";
    return kExitBroken;
  }
  if (o.backend == "postgresql" && std::getenv("DBMGR_TEST_PG_HOST") == nullptr) {
    std::cout << "DBMGR_TEST_PG_* not set: skipped\n";
    return kExitSkip;
  }
  try {
    return run(o);
  } catch (const std::exception& e) {
    std::cerr << "dbmgr-daemon-fuzz (seed " << o.seed << "): " << e.what() << "\n";
    return kExitBroken;
  }
}
