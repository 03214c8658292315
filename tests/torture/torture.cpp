// dbmgr-torture: the differential torture test of dbmgrd (docs/testing.md, "Torture test").
//
//   dbmgr-torture --backend sqlite|postgresql|mariadb [--seconds N] [--seed S] [--clients N]
//                 [--threads N] [--kill-ms MIN-MAX] [--kinds K,...] [--no-schema]
//                 [--tamper] [--keep] [--verbose]
//
// Starts its own dbmgrd ($DBMGRD) with a small pool, forks client processes and a schema
// worker (client.cpp, schema.cpp), SIGKILLs a client now and then and starts a replacement,
// and when the time is up checks the database directly (oracle.cpp). Prints a summary and
// exits 0 (no violation), 1 (violations: the summary says which), 2 (the test itself could
// not run; also MariaDB asked for but DBMGR_TEST_MARIADB_* not set) or 77 (PostgreSQL asked
// for but DBMGR_TEST_PG_* not set: meson's skip).
#define DOCTEST_CONFIG_IMPLEMENT  // the harness's ~Daemon uses CHECK; no doctest main here
#include <doctest/doctest.h>

#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <thread>

#include "harness.hpp"
#include "fleet.hpp"
#include "torture.hpp"

namespace {

using namespace torture;
using dbmgr::test::Daemon;
using dbmgr::test::DaemonOptions;
using Cmd = dbmgr::proto::AdminCommand;

constexpr int kExitViolations = 1;
constexpr int kExitBroken = 2;
constexpr int kExitSkip = 77;
constexpr auto kGrace = std::chrono::seconds(60);  // for the processes to finish after the deadline

const char* const kSchema[] = {
    "CREATE TABLE tx_log (tag VARCHAR(64) PRIMARY KEY, stream BIGINT NOT NULL, "
    "kind VARCHAR(16) NOT NULL, nstmts INTEGER NOT NULL)",
    "CREATE INDEX tx_log_stream ON tx_log(stream)",
    "CREATE TABLE kv (k VARCHAR(80) PRIMARY KEY, stream BIGINT NOT NULL, tag VARCHAR(64) NOT NULL, "
    "v BIGINT NOT NULL)",
    "CREATE INDEX kv_stream ON kv(stream)",
    "CREATE TABLE parent (id BIGINT PRIMARY KEY, stream BIGINT NOT NULL, tag VARCHAR(64) NOT NULL)",
    "CREATE TABLE child (id BIGINT PRIMARY KEY, parent_id BIGINT NOT NULL REFERENCES parent(id) "
    "DEFERRABLE INITIALLY DEFERRED, stream BIGINT NOT NULL, tag VARCHAR(64) NOT NULL)",
    "CREATE TABLE counters (id INTEGER PRIMARY KEY, n BIGINT NOT NULL)",
};
// MariaDB has no deferred constraints: its foreign key is checked at each statement (the
// clients plan fk_fix and judge fk_bad accordingly: client.cpp, oracle.cpp).
const char* const kMariadbChild =
    "CREATE TABLE child (id BIGINT PRIMARY KEY, parent_id BIGINT NOT NULL, stream BIGINT NOT NULL, "
    "tag VARCHAR(64) NOT NULL, FOREIGN KEY (parent_id) REFERENCES parent(id))";

void usage(std::ostream& o) {
  o << "usage: dbmgr-torture --backend sqlite|postgresql|mariadb [--seconds N] [--seed S] [--clients N]\n"
       "                     [--threads N] [--kill-ms MIN-MAX] [--kinds K,...] [--no-schema]\n"
       "                     [--tamper] [--keep] [--verbose]\n"
       "  --seconds N     how long the clients run (default 60); $DBMGR_TORTURE_SECONDS wins\n"
       "  --seed S        the run's seed (default: random, printed); $DBMGR_TORTURE_SEED wins\n"
       "  --clients N     client processes (default: sqlite 6, postgresql and mariadb 7)\n"
       "  --threads N     threads (streams) per client process (default 2)\n"
       "  --kill-ms A-B   SIGKILL a client every A..B ms (default 300-1500)\n"
       "  --kinds K,...   run only these transaction kinds: commit, fk_fix, fk_bad, rollback,\n"
       "                  stmt_fail, ro_read, ro_write, oneshot, oneshot_fk, oneshot_ro\n"
       "  --no-schema     no schema worker\n"
       "  --tamper        self-check of the oracle: corrupt the database directly after the run\n"
       "                  (lose a commit, change a value and a counter, add a row); exits 0 only\n"
       "                  if the oracle reports each of the four\n"
       "  --keep          keep the logs and the SQLite file ($DBMGR_TORTURE_KEEP=1)\n"
       "  --verbose       print every violation, not five per class\n"
       "Needs $DBMGRD (the dbmgrd binary); PostgreSQL needs DBMGR_TEST_PG_HOST, _PORT, _USER,\n"
       "_PASSWORD and _DB (docs/testing.md), else it exits 77 (skipped); MariaDB needs\n"
       "DBMGR_TEST_MARIADB_SOCKET, _USER, _PASSWORD, _DB and _ODBC, else it fails (exit 2).\n";
}

const char* env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? v : nullptr;
}

// Returns false (after printing why) on a bad command line.
bool parse(int argc, char** argv, Config& cfg, bool& backend_given) {
  auto need = [&](int& i) -> const char* {
    if (i + 1 >= argc) throw std::invalid_argument(std::string(argv[i]) + " needs a value");
    return argv[++i];
  };
  bool seed_given = false;
  try {
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      if (a == "--backend") {
        std::string b = need(i);
        if (b == "sqlite") {
          cfg.backend = Backend::kSqlite;
        } else if (b == "postgresql" || b == "postgres" || b == "pg") {
          cfg.backend = Backend::kPostgres;
        } else if (b == "mariadb" || b == "mysql") {
          cfg.backend = Backend::kMariadb;
        } else {
          throw std::invalid_argument("unknown backend " + b);
        }
        backend_given = true;
      } else if (a == "--seconds") {
        cfg.seconds = std::stod(need(i));
      } else if (a == "--seed") {
        cfg.seed = std::stoull(need(i));
        seed_given = true;
      } else if (a == "--clients") {
        cfg.clients = std::stoi(need(i));
      } else if (a == "--threads") {
        cfg.threads = std::stoi(need(i));
      } else if (a == "--kill-ms") {
        std::string r = need(i);
        auto dash = r.find('-');
        cfg.kill_min_ms = std::stoi(r.substr(0, dash));
        cfg.kill_max_ms = dash == std::string::npos ? cfg.kill_min_ms : std::stoi(r.substr(dash + 1));
      } else if (a == "--kinds") {
        std::stringstream list(need(i));
        std::string k;
        while (std::getline(list, k, ',')) {
          const auto& all = all_kinds();
          if (std::find(all.begin(), all.end(), k) == all.end()) throw std::invalid_argument("unknown kind " + k);
          cfg.kinds.insert(k);
        }
      } else if (a == "--no-schema") {
        cfg.schema_worker = false;
      } else if (a == "--tamper") {
        cfg.tamper = true;
      } else if (a == "--keep") {
        cfg.keep = true;
      } else if (a == "--verbose") {
        cfg.verbose = true;
      } else if (a == "--help" || a == "-h") {
        usage(std::cout);
        std::exit(0);
      } else {
        throw std::invalid_argument("unknown argument " + a);
      }
    }
    if (const char* s = env("DBMGR_TORTURE_SECONDS")) cfg.seconds = std::stod(s);
    if (const char* s = env("DBMGR_TORTURE_SEED")) {
      cfg.seed = std::stoull(s);
      seed_given = true;
    }
    if (const char* k = env("DBMGR_TORTURE_KEEP")) cfg.keep = std::string(k) != "0";
  } catch (const std::exception& e) {
    std::cerr << "dbmgr-torture: " << e.what() << "\n";
    usage(std::cerr);
    return false;
  }
  if (!backend_given || cfg.seconds <= 0 || cfg.threads < 1 || cfg.threads > 15 || cfg.clients < 0 ||
      cfg.kill_min_ms < 1 || cfg.kill_max_ms < cfg.kill_min_ms) {
    std::cerr << "dbmgr-torture: bad or missing arguments\n";
    usage(std::cerr);
    return false;
  }
  if (!seed_given) cfg.seed = std::random_device{}() ^ (std::uint64_t{std::random_device{}()} << 32);
  if (cfg.clients == 0) cfg.clients = cfg.backend == Backend::kSqlite ? 6 : 7;
  return true;
}

// ---- PostgreSQL: the run's own database ----

PgParams maintenance_params() {
  return PgParams{env("DBMGR_TEST_PG_HOST"), env("DBMGR_TEST_PG_PORT"), env("DBMGR_TEST_PG_USER"),
                  env("DBMGR_TEST_PG_PASSWORD"), env("DBMGR_TEST_PG_DB")};
}

// Drops this run's database and those of earlier runs whose process is gone (a run that was
// killed cannot drop its own). Runs of other builds are alive and keep theirs.
void drop_databases(const std::string& mine, bool only_mine) {
  auto db = open_pg(maintenance_params());
  for (const auto& r : db->query("SELECT datname FROM pg_database WHERE datname LIKE 'test.torture\\_%'").rows) {
    const std::string& name = r[0].bytes;
    bool drop = name == mine;
    if (!only_mine && !drop) {
      std::string digits = name.substr(std::string("test.torture_").size());
      if (!digits.empty() && digits.find_first_not_of("0123456789") == std::string::npos) {
        pid_t pid = static_cast<pid_t>(std::stol(digits));
        drop = kill(pid, 0) != 0 && errno == ESRCH;
      }
    }
    if (drop) db->exec("DROP DATABASE IF EXISTS \"" + name + "\" WITH (FORCE)");
  }
}

// ---- MariaDB: the run's own database, the same way ----

void drop_mariadb_databases(const std::string& mine, bool only_mine) {
  auto db = open_odbc(env("DBMGR_TEST_MARIADB_ODBC"));
  for (const auto& r :
       db->query("SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE 'test.torture\\_%'").rows) {
    const std::string& name = r[0].bytes;
    bool drop = name == mine;
    if (!only_mine && !drop) {
      std::string digits = name.substr(std::string("test.torture_").size());
      if (!digits.empty() && digits.find_first_not_of("0123456789") == std::string::npos) {
        pid_t pid = static_cast<pid_t>(std::stol(digits));
        drop = kill(pid, 0) != 0 && errno == ESRCH;
      }
    }
    if (drop) db->exec("DROP DATABASE IF EXISTS `" + name + "`");
  }
}

// ---- processes ----

// The clients and the schema worker (incarnation 0).
class Processes : public Fleet {
 public:
  Processes(const Config& cfg, int sfd, sigset_t old_mask)
      : Fleet("dbmgr-torture process",
              [&cfg](int incarnation) {
                return incarnation == 0 ? run_schema_worker(cfg) : run_client(cfg, incarnation);
              },
              [sfd, old_mask] {
                sigprocmask(SIG_SETMASK, &old_mask, nullptr);
                close(sfd);
              }) {}

  // SIGKILLs one running client (the schema worker too when stuck); false if none runs.
  bool kill_one(Rng& rng, bool stuck = false) {
    return Fleet::kill_one(rng, stuck,
                           [stuck](const ProcessFate& f) { return stuck || f.incarnation != 0; });
  }

  void kill_all(Rng& rng, bool stuck) {
    while (kill_one(rng, stuck)) {
    }
  }

  std::vector<std::string> running_names() const {
    std::vector<std::string> v;
    for (const auto& [pid, f] : live()) {
      v.push_back((f->incarnation == 0 ? std::string("schema worker")
                                       : "client " + std::to_string(f->incarnation)) +
                  " (pid " + std::to_string(pid) + ")");
    }
    return v;
  }
};

// The pools of the run's database as the daemon reports them.
std::vector<nlohmann::json> my_pools(const Daemon& d, const Config& cfg) {
  std::vector<nlohmann::json> v;
  for (auto& p : d.admin(Cmd::kPools)) {
    if (p["database"] == cfg.resolved) v.push_back(p);
  }
  return v;
}

int run(Config& cfg) {
  const auto started = Clock::now();
  cfg.database = "torture_" + std::to_string(getpid());
  cfg.resolved = cfg.prefix + "." + cfg.database;
  {
    const char* base = env("TMPDIR");
    std::string tmpl = std::string(base != nullptr ? base : "/tmp") + "/dbmgr-torture-XXXXXX";
    if (mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    cfg.log_dir = tmpl;
  }
  std::cout << "dbmgr-torture: backend " << backend_name(cfg.backend) << ", seed " << cfg.seed << ", "
            << cfg.seconds << " s, " << cfg.clients << " client processes x " << cfg.threads
            << " threads" << (cfg.schema_worker ? " + 1 schema worker" : "") << ", SIGKILL every " << cfg.kill_min_ms << "-" << cfg.kill_max_ms
            << " ms; database " << cfg.resolved << "; logs in " << cfg.log_dir << std::endl;

  DaemonOptions opts;
  opts.log_level = "info";
  opts.config_yaml =
      "drain_timeout: 5s\n"
      "pool:\n  pool_size: 2\n  max_overflow: 0\n  pool_timeout: 30s\n"
      "sqlite:\n  readers: 2\n";
  if (cfg.backend == Backend::kPostgres) {
    cfg.pg = maintenance_params();
    cfg.pg.dbname = cfg.resolved;
    drop_databases(cfg.resolved, /*only_mine=*/false);
    opts.env = {{"DATABASE_TYPE", "postgresql"},        {"DATABASE_HOST", cfg.pg.host},
                {"DATABASE_PORT", cfg.pg.port},         {"DATABASE_USER", cfg.pg.user},
                {"DATABASE_PASSWORD", cfg.pg.password}, {"DATABASE_NAME", env("DBMGR_TEST_PG_DB")}};
  }
  if (cfg.backend == Backend::kMariadb) {
    cfg.odbc = odbc_with_database(env("DBMGR_TEST_MARIADB_ODBC"), cfg.resolved);
    drop_mariadb_databases(cfg.resolved, /*only_mine=*/false);
    opts.env = {{"DATABASE_TYPE", "mariadb"},
                {"DATABASE_HOST", env("DBMGR_TEST_MARIADB_SOCKET")},
                {"DATABASE_USER", env("DBMGR_TEST_MARIADB_USER")},
                {"DATABASE_PASSWORD", env("DBMGR_TEST_MARIADB_PASSWORD")},
                {"DATABASE_NAME", env("DBMGR_TEST_MARIADB_DB")}};
  }
  struct DropAtExit {
    const Config& cfg;
    ~DropAtExit() {
      if (cfg.backend == Backend::kSqlite) return;
      try {
        if (cfg.backend == Backend::kPostgres) drop_databases(cfg.resolved, /*only_mine=*/true);
        if (cfg.backend == Backend::kMariadb) drop_mariadb_databases(cfg.resolved, /*only_mine=*/true);
      } catch (const std::exception& e) {
        std::cerr << "dbmgr-torture: could not drop database " << cfg.resolved << ": " << e.what() << "\n";
      }
    }
  } drop_at_exit{cfg};

  Daemon d(opts);  // before the signal changes below: dbmgrd must not inherit them
  // A reader of our output that goes away (| head) must not stop us before the cleanup.
  signal(SIGPIPE, SIG_IGN);
  cfg.socket = d.socket();
  cfg.sqlite_path = d.data_dir() + "/" + cfg.resolved + ".db";
  {
    dbmgr::DatabaseManager m(cfg.options());
    for (const char* ddl : kSchema) {
      const bool child = std::string_view(ddl).rfind("CREATE TABLE child", 0) == 0;
      m.execute(child && cfg.backend == Backend::kMariadb ? kMariadbChild : ddl);
    }
    for (int i = 1; i <= kCounters; ++i) m.execute("INSERT INTO counters(id, n) VALUES (?, 0)", {i});
  }
  // The direct side sees what dbmgrd created, or nothing below can be trusted.
  if (open_direct(cfg)->query("SELECT id FROM counters").rows.size() != kCounters) {
    throw std::runtime_error("the counters dbmgrd inserted are not in the database read directly");
  }

  Violations v;
  sigset_t mask, old_mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGCHLD);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGTERM);
  sigprocmask(SIG_BLOCK, &mask, &old_mask);
  int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sfd < 0) throw std::runtime_error("signalfd failed");

  Rng rng(cfg.seed);
  cfg.deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(cfg.seconds));
  Processes procs(cfg, sfd, old_mask);
  if (cfg.schema_worker) procs.spawn(0);
  int incarnation = 0;
  for (int i = 0; i < cfg.clients; ++i) procs.spawn(++incarnation);

  auto kill_gap = [&] { return std::chrono::milliseconds(rng.uniform(cfg.kill_min_ms, cfg.kill_max_ms)); };
  auto next_kill = Clock::now() + kill_gap();
  int kills = 0;
  bool interrupted = false, daemon_died = false;
  for (;;) {
    procs.reap();
    auto now = Clock::now();
    siginfo_t si{};
    if (waitid(P_PID, static_cast<id_t>(d.pid()), &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == d.pid()) {
      daemon_died = true;
      v.add("DAEMON_DIED", "dbmgrd exited during the run (" +
                               std::string(si.si_code == CLD_EXITED ? "exit " + std::to_string(si.si_status)
                                                                    : std::string("signal ") + strsignal(si.si_status)) +
                               "); the end of its log:\n" + tail(d.log(), 30));
      procs.kill_all(rng, /*stuck=*/false);
      break;
    }
    if (now >= cfg.deadline && procs.empty()) break;
    if (interrupted) {
      procs.kill_all(rng, false);
      break;
    }
    if (now >= cfg.deadline + kGrace) {
      for (const auto& name : procs.running_names()) {
        v.add("STUCK", name + " had not finished " + std::to_string(kGrace.count()) +
                           " s after the deadline (waiting for dbmgrd?); killed");
      }
      procs.kill_all(rng, /*stuck=*/true);
      break;
    }
    if (now < cfg.deadline && now >= next_kill) {
      if (procs.kill_one(rng)) {
        ++kills;
        if (cfg.deadline - now > std::chrono::seconds(1)) procs.spawn(++incarnation);
      }
      next_kill = now + kill_gap();
      continue;
    }
    auto wake = now < cfg.deadline ? std::min(next_kill, cfg.deadline) : cfg.deadline + kGrace;
    // SIGCHLD wakes us when a process ends; the daemon's end is noticed within 200 ms.
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(wake - now).count() + 1;
    pollfd p{sfd, POLLIN, 0};
    poll(&p, 1, static_cast<int>(std::min<std::int64_t>(ms, 200)));
    signalfd_siginfo info;
    while (read(sfd, &info, sizeof info) == sizeof info) {
      if (info.ssi_signo == SIGINT || info.ssi_signo == SIGTERM) interrupted = true;
    }
  }
  procs.reap();
  close(sfd);
  sigprocmask(SIG_SETMASK, &old_mask, nullptr);
  const double ran = std::chrono::duration<double>(Clock::now() - started).count();
  if (interrupted) v.add("INTERRUPTED", "the run was interrupted by a signal; the checks below are partial");

  std::ostringstream pools_line;
  std::size_t waits = 0;
  if (!daemon_died) {
    // Every client has exited: every pooled connection must come back (the daemon rolls
    // back what a killed client left open). There is no event to wait on but the count.
    auto until = Clock::now() + std::chrono::seconds(5);
    std::vector<nlohmann::json> pools = my_pools(d, cfg);
    auto in_use = [&] {
      int n = 0;
      for (auto& p : pools) n += p["in_use"].get<int>();
      return n;
    };
    while (in_use() != 0 && Clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      pools = my_pools(d, cfg);
    }
    for (auto& p : pools) {
      std::string role = p["role"].get<std::string>();
      pools_line << "  " << role << ": size " << p["size"] << ", leases " << p["leases"] << ", waits "
                 << p["waits"] << " (avg " << p["wait_ms_avg"] << " ms, max " << p["wait_ms_max"]
                 << " ms), timeouts " << p["timeouts"] << ", errors " << p["errors"] << ", in use now "
                 << p["in_use"] << ", waiting now " << p["waiting"] << "\n";
      if (role != "reader") waits += p["waits"].get<std::size_t>();
      if (p["in_use"].get<int>() != 0 || p["waiting"].get<int>() != 0) {
        v.add("CONNECTION_LEAK", "pool " + role + " of " + cfg.resolved + " still has in_use " +
                                     p["in_use"].dump() + ", waiting " + p["waiting"].dump() +
                                     " 5 s after every client exited");
      }
    }
    int status = d.stop();
    if (status != 0) {
      v.add("DAEMON_EXIT", "dbmgrd did not exit 0 on SIGTERM (" + (status < 0 ? std::string("timeout") : status_words(status)) +
                               "); the end of its log:\n" + tail(d.log(), 30));
    }
  } else {
    d.stop(SIGKILL);
  }
  std::string daemon_log = d.log();
  std::ofstream(cfg.log_dir + "/dbmgrd.log") << daemon_log;

  std::cout << "\n==== dbmgr-torture summary (" << backend_name(cfg.backend) << ", seed " << cfg.seed << ")\n";
  std::size_t started_n = procs.fates().size(), killed_n = 0, failed_n = 0;
  for (const auto& f : procs.fates()) {
    if (f.killed) ++killed_n;
    if (!f.killed && !f.stuck && f.status != 0) {
      ++failed_n;
      v.add("CLIENT_FAILED", (f.incarnation == 0 ? std::string("schema worker")
                                                 : "client " + std::to_string(f.incarnation)) +
                                 " (pid " + std::to_string(f.pid) + ") ended with " + status_words(f.status));
    }
  }
  std::cout << "ran " << ran << " s (clients " << cfg.seconds << " s); processes: " << started_n
            << " started, " << killed_n << " killed with SIGKILL on purpose, " << failed_n << " failed\n";
  std::cout << "pools of " << cfg.resolved << " (pool_size 2, max_overflow 0):\n" << pools_line.str();
  {
    std::istringstream in(daemon_log);
    std::string line;
    std::size_t warnings = 0, errors = 0;
    std::vector<std::string> first_errors;
    while (std::getline(in, line)) {
      if (line.find(" warning ") != std::string::npos) ++warnings;
      if (line.find(" error ") != std::string::npos || line.find(" critical ") != std::string::npos) {
        if (first_errors.size() < 3) first_errors.push_back(line.substr(0, 300));
        ++errors;
      }
    }
    std::cout << "dbmgrd log: " << warnings << " warning and " << errors << " error lines\n";
    for (const auto& l : first_errors) std::cout << "  " << l << "\n";
  }

  // The faults --tamper injects, each with the class the oracle must report it as.
  const std::vector<std::pair<std::string, std::string>> tampering = {
      {"DELETE FROM tx_log WHERE tag = (SELECT min(tag) FROM tx_log WHERE kind = 'commit')", "ACK_COMMIT_LOST"},
      {"UPDATE kv SET v = v + 1 WHERE k = (SELECT min(k) FROM kv WHERE k NOT LIKE '%.ro')", "STATE_MISMATCH"},
      {"UPDATE counters SET n = n + 1 WHERE id = 1", "COUNTER_MISMATCH"},
      {"INSERT INTO kv(k, stream, tag, v) VALUES ('tampered', 1, 'tampered', 0)", "UNKNOWN_ROW"},
  };
  std::map<std::string, std::size_t> before;
  try {
    auto db = open_direct(cfg);
    if (cfg.tamper) {
      for (const auto& [sql, cls] : tampering) {
        db->exec(sql);
        before[cls] = v.count(cls);
      }
    }
    run_oracle(cfg, procs.fates(), *db, v, std::cout);
  } catch (const std::exception& e) {
    v.add("ORACLE_FAILED", std::string("the final check could not read the database: ") + e.what());
  }
  // The run must have exercised what it claims to (only meaningful for runs of some length).
  if (cfg.seconds >= 10 && !interrupted && !daemon_died) {
    if (kills == 0) v.add("COVERAGE", "no client was killed");
    if (waits == 0) v.add("COVERAGE", "no session ever waited for a pooled connection: the pool was never contended");
  }

  if (cfg.keep && cfg.backend == Backend::kSqlite) {
    for (const char* suffix : {"", "-wal", "-shm"}) {
      std::error_code ec;
      std::filesystem::copy_file(cfg.sqlite_path + suffix, cfg.log_dir + "/" + cfg.resolved + ".db" + suffix, ec);
    }
  }
  std::ostringstream replay;
  replay << "DBMGRD=" << (env("DBMGRD") != nullptr ? env("DBMGRD") : "...") << " dbmgr-torture --backend "
         << backend_name(cfg.backend) << " --seconds " << cfg.seconds << " --seed " << cfg.seed
         << " --clients " << cfg.clients << " --threads " << cfg.threads;
  bool tamper_ok = true;
  if (cfg.tamper) {
    for (const auto& [sql, cls] : tampering) {
      bool found = v.count(cls) > before[cls];
      tamper_ok = tamper_ok && found;
      std::cout << "tamper self-check: " << (found ? "found   " : "MISSED  ") << cls << " <- " << sql << "\n";
    }
  }
  if (v.empty()) {
    std::cout << "violations: none\nRESULT: PASS (seed " << cfg.seed << ")\n";
  } else {
    v.print(std::cout, cfg.verbose);
    std::cout << "RESULT: FAIL, " << v.total() << " violations (seed " << cfg.seed << "; replay: " << replay.str()
              << ")\n";
  }
  if (cfg.keep) {
    std::cout << "logs kept in " << cfg.log_dir << "\n";
  } else {
    std::error_code ec;
    std::filesystem::remove_all(cfg.log_dir, ec);
    if (!v.empty()) std::cout << "(the logs were removed; --keep or DBMGR_TORTURE_KEEP=1 keeps them)\n";
  }
  if (cfg.tamper) {
    std::cout << "RESULT (--tamper): " << (tamper_ok ? "PASS, the oracle found every injected fault"
                                                     : "FAIL, the oracle missed an injected fault")
              << "\n";
    return tamper_ok ? 0 : kExitViolations;
  }
  return v.empty() ? 0 : kExitViolations;
}

}  // namespace

int main(int argc, char** argv) {
  // The harness checks the daemon's exit with doctest's CHECK; outside a test case that needs
  // a context and a handler (this program reports the daemon's exit status itself).
  doctest::Context doctest_context;
  doctest_context.setAsDefaultForAssertsOutOfTestCases();
  doctest_context.setAssertHandler([](const doctest::AssertData& ad) {
    std::cerr << "dbmgr-torture: harness check failed: " << ad.m_expr << "\n";
  });

  Config cfg;
  bool backend_given = false;
  if (!parse(argc, argv, cfg, backend_given)) return kExitBroken;
  if (env("DBMGRD") == nullptr) {
    std::cerr << "dbmgr-torture: $DBMGRD is not set (the dbmgrd binary; meson test sets it)\n";
    return kExitBroken;
  }
  if (cfg.backend == Backend::kPostgres) {
    for (const char* var : {"DBMGR_TEST_PG_HOST", "DBMGR_TEST_PG_PORT", "DBMGR_TEST_PG_USER",
                            "DBMGR_TEST_PG_PASSWORD", "DBMGR_TEST_PG_DB"}) {
      if (env(var) == nullptr) {
        std::cout << "dbmgr-torture: SKIP: " << var
                  << " is not set (start the test servers: docs/testing.md)\n";
        return kExitSkip;
      }
    }
  }
  if (cfg.backend == Backend::kMariadb) {
    for (const char* var : {"DBMGR_TEST_MARIADB_SOCKET", "DBMGR_TEST_MARIADB_USER", "DBMGR_TEST_MARIADB_PASSWORD",
                            "DBMGR_TEST_MARIADB_DB", "DBMGR_TEST_MARIADB_ODBC"}) {
      if (env(var) == nullptr) {
        std::cerr << "dbmgr-torture: " << var
                  << " is not set: start the test servers (scripts/test-servers.sh start DIR pg mariadb; "
                     "source DIR/servers.env; docs/testing.md)\n";
        return kExitBroken;
      }
    }
  }
  try {
    return run(cfg);
  } catch (const std::exception& e) {
    std::cerr << "dbmgr-torture: the test could not run: " << e.what() << "\n";
    return kExitBroken;
  }
}
