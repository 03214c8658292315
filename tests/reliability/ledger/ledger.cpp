// dbmgr-ledger: money moves between accounts while clients and dbmgrd itself are killed
// (docs/reliability.md, "Ledger").
//
//   dbmgr-ledger --backend sqlite|postgresql|mariadb [--seconds N] [--seed S] [--clients N]
//                [--kill-ms MIN-MAX] [--daemon-ms MIN-MAX] [--keep] [--verbose]
//
// Starts its own dbmgrd ($DBMGRD) in a temp folder, creates the accounts, forks client
// processes (client.cpp), SIGKILLs a client now and then and starts another, SIGKILLs or
// SIGTERMs dbmgrd and starts it again on the same socket and data, and when the time is up
// checks the database directly against every client's journal (oracle.cpp). Exits 0 (no
// violation), 1 (violations, listed), 2 (the test itself could not run) or 77 (PostgreSQL
// asked for but DBMGR_TEST_PG_* not set: meson's skip).
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <sstream>
#include <thread>

#define DOCTEST_CONFIG_IMPLEMENT  // the harness is linked (can_connect, env_value); no doctest main here
#include <doctest/doctest.h>

#include "fleet.hpp"
#include "harness.hpp"
#include "ledger.hpp"

namespace ledger {

dbmgr::Options Config::options() const {
  dbmgr::Options o;
  o.socket_path = socket;
  o.client_name = "dbmgr-ledger";
  o.max_idle_connections = 2;
  return o;  // no prefix, no name: the daemon's default database
}

torture::Config Config::direct_config() const {
  torture::Config t;
  t.backend = backend;
  t.sqlite_path = sqlite_path;
  t.pg = pg;
  t.odbc = odbc;
  return t;
}

namespace {

using torture::Rng;
using torture::Violations;

constexpr int kExitViolations = 1;
constexpr int kExitBroken = 2;
constexpr int kExitSkip = 77;
constexpr auto kGrace = std::chrono::seconds(60);        // for the clients after the deadline
constexpr auto kStopTimeout = std::chrono::seconds(20);  // for dbmgrd after SIGTERM
constexpr auto kQuietEnd = std::chrono::seconds(3);      // no daemon restart this close to the end

using dbmgr::test::env_value;

void usage(std::ostream& o) {
  o << "usage: dbmgr-ledger --backend sqlite|postgresql|mariadb [--seconds N] [--seed S] [--clients N]\n"
       "                    [--kill-ms MIN-MAX] [--daemon-ms MIN-MAX] [--keep] [--verbose]\n"
       "  --seconds N      how long the clients run (default 25); $DBMGR_LEDGER_SECONDS wins\n"
       "  --seed S         the run's seed (default: random, printed); $DBMGR_LEDGER_SEED wins\n"
       "  --clients N      client processes at once (default 12)\n"
       "  --kill-ms A-B    SIGKILL a client every A..B ms (default 400-1500)\n"
       "  --daemon-ms A-B  SIGKILL or SIGTERM dbmgrd every A..B ms (default 2500-5000)\n"
       "  --keep           keep the journals, dbmgrd's log and the SQLite file ($DBMGR_LEDGER_KEEP=1)\n"
       "  --verbose        print every violation, not five per class\n"
       "Needs $DBMGRD (the dbmgrd binary); PostgreSQL needs DBMGR_TEST_PG_HOST, _PORT, _USER,\n"
       "_PASSWORD and _DB (docs/testing.md), else it exits 77 (skipped); MariaDB needs\n"
       "DBMGR_TEST_MARIADB_SOCKET, _USER, _PASSWORD, _DB and _ODBC, else it fails (exit 2).\n";
}

void parse_range(const std::string& r, int& lo, int& hi) {
  auto dash = r.find('-');
  lo = std::stoi(r.substr(0, dash));
  hi = dash == std::string::npos ? lo : std::stoi(r.substr(dash + 1));
}

bool parse(int argc, char** argv, Config& cfg) {
  bool backend_given = false, seed_given = false;
  auto need = [&](int& i) -> std::string {
    if (i + 1 >= argc) throw std::invalid_argument(std::string(argv[i]) + " needs a value");
    return argv[++i];
  };
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
      } else if (a == "--kill-ms") {
        parse_range(need(i), cfg.kill_min_ms, cfg.kill_max_ms);
      } else if (a == "--daemon-ms") {
        parse_range(need(i), cfg.daemon_min_ms, cfg.daemon_max_ms);
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
    if (const char* s = env_value("DBMGR_LEDGER_SECONDS")) cfg.seconds = std::stod(s);
    if (const char* s = env_value("DBMGR_LEDGER_SEED")) {
      cfg.seed = std::stoull(s);
      seed_given = true;
    }
    if (const char* k = env_value("DBMGR_LEDGER_KEEP")) cfg.keep = std::string(k) != "0";
  } catch (const std::exception& e) {
    std::cerr << "dbmgr-ledger: " << e.what() << "\n";
    usage(std::cerr);
    return false;
  }
  if (!backend_given || cfg.seconds <= 0 || cfg.clients < 1 || cfg.kill_min_ms < 1 ||
      cfg.kill_max_ms < cfg.kill_min_ms || cfg.daemon_min_ms < 100 || cfg.daemon_max_ms < cfg.daemon_min_ms) {
    std::cerr << "dbmgr-ledger: bad or missing arguments\n";
    usage(std::cerr);
    return false;
  }
  if (!seed_given) cfg.seed = std::random_device{}() ^ (std::uint64_t{std::random_device{}()} << 32);
  return true;
}

using torture::status_words;
using torture::tail;

using dbmgr::test::can_connect;

// dbmgrd as a child that can be killed and started again on the same socket, data and
// configuration (the integration harness's Daemon owns a fresh folder per start, so it
// cannot restart on the same data). Everything lives in cfg.dir; the log is appended to.
class DaemonProcess {
 public:
  DaemonProcess(const Config& cfg, std::map<std::string, std::string> env)
      : cfg_(cfg), env_(std::move(env)), exe_(std::filesystem::absolute(std::getenv("DBMGRD")).string()) {}
  ~DaemonProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }

  // Starts dbmgrd and waits until it accepts connections; throws if it exits or does not
  // listen within 20 s.
  void start() {
    std::cout.flush();
    std::cerr.flush();
    const std::string log_path = log_path_(), config = cfg_.dir + "/dbmgr.yaml", data = cfg_.dir + "/data";
    pid_ = fork();
    if (pid_ < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
    if (pid_ == 0) {
      sigset_t none;
      sigemptyset(&none);
      sigprocmask(SIG_SETMASK, &none, nullptr);
      signal(SIGPIPE, SIG_DFL);
      prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the test
      int log_fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      dup2(log_fd, 1);
      dup2(log_fd, 2);
      for (const char* v : {"DATABASE_TYPE", "DATABASE_NAME", "DATABASE_USER", "DATABASE_PASSWORD",
                            "DATABASE_PASSWORD_FILE", "DATABASE_HOST", "DATABASE_PORT", "DATABASE_SSL",
                            "DBMGR_SOCKET", "DBMGR_CONFIG"}) {
        unsetenv(v);
      }
      setenv("DATABASE_PATH", data.c_str(), 1);
      setenv("DBMGR_CONFIG", config.c_str(), 1);
      for (auto& [k, v] : env_) setenv(k.c_str(), v.c_str(), 1);
      if (chdir(cfg_.dir.c_str()) != 0) _exit(125);
      execl(exe_.c_str(), exe_.c_str(), "--socket", cfg_.socket.c_str(), "--log-level", "info",
            static_cast<char*>(nullptr));
      _exit(127);
    }
    ++fate_.starts;
    auto start = Clock::now();
    while (!can_connect(cfg_.socket)) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        throw std::runtime_error("dbmgrd exited at start (" + status_words(status) + "):\n" + tail(log(), 30));
      }
      if (Clock::now() - start > std::chrono::seconds(20)) {
        throw std::runtime_error("dbmgrd did not listen within 20 s:\n" + tail(log(), 30));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }

  // Sends `sig` and waits for the exit (SIGKILL after kStopTimeout). Returns the waitpid()
  // status, or -1 if it had to be killed.
  int stop(int sig) {
    if (pid_ <= 0) return -1;
    (sig == SIGKILL ? fate_.sigkills : fate_.sigterms)++;
    kill(pid_, sig);
    auto start = Clock::now();
    int status = 0;
    for (;;) {
      if (waitpid(pid_, &status, WNOHANG) == pid_) break;
      if (Clock::now() - start > kStopTimeout) {
        kill(pid_, SIGKILL);
        waitpid(pid_, &status, 0);
        pid_ = -1;
        return -1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    pid_ = -1;
    return status;
  }

  // True (with the status) when dbmgrd has exited without being asked to.
  bool died(int& status) {
    if (pid_ > 0 && waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return true;
    }
    return false;
  }

  bool running() const { return pid_ > 0; }
  std::string log() const {
    std::ifstream in(log_path_());
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  const DaemonFate& fate() const { return fate_; }

 private:
  std::string log_path_() const { return cfg_.dir + "/dbmgrd.log"; }

  const Config& cfg_;
  std::map<std::string, std::string> env_;
  std::string exe_;
  pid_t pid_ = -1;
  DaemonFate fate_;
};

// PostgreSQL: the tables of earlier runs whose process is gone (a killed run cannot drop its
// own); runs of other builds are alive and keep theirs.
void drop_stale_tables(torture::Direct& db, Backend backend) {
  const std::string sql =
      backend == Backend::kMariadb
          ? "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE() AND "
            "(table_name LIKE 'ledger\\_accounts\\_%' OR table_name LIKE 'ledger\\_transfers\\_%')"
          : "SELECT tablename FROM pg_tables WHERE tablename LIKE 'ledger\\_accounts\\_%' "
            "OR tablename LIKE 'ledger\\_transfers\\_%'";
  for (const auto& r : db.query(sql).rows) {
    const std::string& name = r[0].bytes;
    std::string digits = name.substr(name.rfind('_') + 1);
    if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos) continue;
    if (kill(static_cast<pid_t>(std::stol(digits)), 0) != 0 && errno == ESRCH) {
      db.exec(backend == Backend::kMariadb ? "DROP TABLE IF EXISTS `" + name + "`"
                                           : "DROP TABLE IF EXISTS \"" + name + "\"");
    }
  }
}

int run(Config& cfg) {
  const auto started = Clock::now();
  {
    const char* base = env_value("TMPDIR");
    std::string tmpl = std::string(base != nullptr ? base : "/tmp") + "/dbmgr-ledger-XXXXXX";
    if (mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    cfg.dir = tmpl;
  }
  struct RemoveAtExit {
    const Config& cfg;
    ~RemoveAtExit() {
      if (cfg.keep) return;
      std::error_code ec;
      std::filesystem::remove_all(cfg.dir, ec);
    }
  } remove_at_exit{cfg};
  std::filesystem::create_directories(cfg.dir + "/data");
  cfg.socket = cfg.dir + "/dbmgrd.sock";
  cfg.accounts_table = "ledger_accounts_" + std::to_string(getpid());
  cfg.transfers_table = "ledger_transfers_" + std::to_string(getpid());
  cfg.sqlite_path = cfg.dir + "/data/ledger.db";

  // A small pool, so that sessions queue for connections; drain_timeout short, so that a
  // SIGTERM both lets some transactions finish and rolls others back within the run.
  std::ofstream(cfg.dir + "/dbmgr.yaml") << "drain_timeout: 2s\n"
                                            "pool:\n  pool_size: 4\n  max_overflow: 0\n  pool_timeout: 20s\n"
                                            "sqlite:\n  readers: 2\n";
  std::map<std::string, std::string> daemon_env;
  if (cfg.backend == Backend::kPostgres) {
    cfg.pg = torture::PgParams{env_value("DBMGR_TEST_PG_HOST"), env_value("DBMGR_TEST_PG_PORT"), env_value("DBMGR_TEST_PG_USER"),
                               env_value("DBMGR_TEST_PG_PASSWORD"), env_value("DBMGR_TEST_PG_DB")};
    daemon_env = {{"DATABASE_TYPE", "postgresql"},        {"DATABASE_HOST", cfg.pg.host},
                  {"DATABASE_PORT", cfg.pg.port},         {"DATABASE_USER", cfg.pg.user},
                  {"DATABASE_PASSWORD", cfg.pg.password}, {"DATABASE_NAME", cfg.pg.dbname}};
  } else if (cfg.backend == Backend::kMariadb) {
    cfg.odbc = env_value("DBMGR_TEST_MARIADB_ODBC");
    daemon_env = {{"DATABASE_TYPE", "mariadb"},
                  {"DATABASE_HOST", env_value("DBMGR_TEST_MARIADB_SOCKET")},
                  {"DATABASE_USER", env_value("DBMGR_TEST_MARIADB_USER")},
                  {"DATABASE_PASSWORD", env_value("DBMGR_TEST_MARIADB_PASSWORD")},
                  {"DATABASE_NAME", env_value("DBMGR_TEST_MARIADB_DB")}};
  } else {
    daemon_env = {{"DATABASE_TYPE", "sqlite"}, {"DATABASE_NAME", "ledger"}};
  }
  std::cout << "dbmgr-ledger: backend " << torture::backend_name(cfg.backend) << ", seed " << cfg.seed << ", "
            << cfg.seconds << " s, " << cfg.clients << " client processes, client SIGKILL every "
            << cfg.kill_min_ms << "-" << cfg.kill_max_ms << " ms, dbmgrd SIGKILL/SIGTERM every "
            << cfg.daemon_min_ms << "-" << cfg.daemon_max_ms << " ms; tables " << cfg.accounts_table << ", "
            << cfg.transfers_table << "; folder " << cfg.dir << std::endl;

  struct DropAtExit {
    const Config& cfg;
    ~DropAtExit() {
      if (cfg.backend == Backend::kSqlite) return;
      try {
        auto db = torture::open_direct(cfg.direct_config());
        db->exec("DROP TABLE IF EXISTS " + cfg.transfers_table + "; DROP TABLE IF EXISTS " + cfg.accounts_table);
      } catch (const std::exception& e) {
        std::cerr << "dbmgr-ledger: could not drop the tables: " << e.what() << "\n";
      }
    }
  } drop_at_exit{cfg};
  if (cfg.backend != Backend::kSqlite) drop_stale_tables(*torture::open_direct(cfg.direct_config()), cfg.backend);

  DaemonProcess daemon(cfg, daemon_env);
  daemon.start();
  signal(SIGPIPE, SIG_IGN);  // a reader of our output that goes away must not stop the cleanup
  {
    dbmgr::DatabaseManager m(cfg.options());
    m.execute("CREATE TABLE " + cfg.accounts_table +
              " (id INTEGER PRIMARY KEY, balance BIGINT NOT NULL CHECK (balance >= 0))");
    m.execute("CREATE TABLE " + cfg.transfers_table +
              " (id VARCHAR(64) PRIMARY KEY, src INTEGER NOT NULL, dst INTEGER NOT NULL, amount BIGINT NOT NULL)");
    m.run([&](dbmgr::Session& s) {
      for (int id = 1; id <= kAccounts; ++id) {
        s.execute("INSERT INTO " + cfg.accounts_table + "(id, balance) VALUES (?, ?)", {id, kInitialBalance});
      }
    });
  }
  // The direct side sees what dbmgrd created, or nothing below can be trusted.
  if (torture::open_direct(cfg.direct_config())->query("SELECT id FROM " + cfg.accounts_table).rows.size() !=
      static_cast<std::size_t>(kAccounts)) {
    throw std::runtime_error("the accounts dbmgrd inserted are not in the database read directly");
  }

  Violations v;
  Rng rng(cfg.seed);
  cfg.deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(cfg.seconds));
  torture::Fleet clients("dbmgr-ledger client",
                         [&cfg](int incarnation) { return run_client(cfg, incarnation); });
  int incarnation = 0;
  for (int i = 0; i < cfg.clients; ++i) clients.spawn(++incarnation);

  auto gap = [&](int lo, int hi) { return std::chrono::milliseconds(rng.uniform(lo, hi)); };
  auto next_kill = Clock::now() + gap(cfg.kill_min_ms, cfg.kill_max_ms);
  auto next_daemon = Clock::now() + gap(cfg.daemon_min_ms, cfg.daemon_max_ms);
  double downtime = 0;
  // A daemon that does not start again on its own socket and data is a defect, not a broken
  // test: it is reported, and the clients are stopped.
  auto restart = [&] {
    try {
      daemon.start();
      return true;
    } catch (const std::exception& e) {
      v.add("DAEMON_RESTART", std::string("dbmgrd did not start again on the same socket and data: ") + e.what());
      while (clients.kill_one(rng)) {
      }
      return false;
    }
  };
  for (;;) {
    clients.reap();
    const auto now = Clock::now();
    int status = 0;
    if (daemon.died(status)) {
      v.add("DAEMON_DIED", "dbmgrd exited by itself (" + status_words(status) + "); the end of its log:\n" +
                               tail(daemon.log(), 30));
      if (!restart()) break;
    }
    if (now >= cfg.deadline && clients.empty()) break;
    if (now >= cfg.deadline + kGrace) {
      while (clients.kill_one(rng, /*stuck=*/true)) {
      }
      v.add("STUCK", "client processes had not finished " + std::to_string(kGrace.count()) +
                         " s after the deadline (waiting for dbmgrd?); killed");
      break;
    }
    if (now < cfg.deadline && now >= next_kill) {
      if (clients.kill_one(rng) && cfg.deadline - now > std::chrono::seconds(1)) clients.spawn(++incarnation);
      next_kill = now + gap(cfg.kill_min_ms, cfg.kill_max_ms);
      continue;
    }
    if (now >= next_daemon && cfg.deadline - now > kQuietEnd) {
      // The first stop is a SIGKILL, the second a SIGTERM, then either.
      const DaemonFate& f = daemon.fate();
      int sig = f.sigkills == 0 ? SIGKILL : f.sigterms == 0 ? SIGTERM : rng.chance(0.5) ? SIGKILL : SIGTERM;
      const auto down = Clock::now();
      int st = daemon.stop(sig);
      if (sig == SIGTERM && st != 0) {
        v.add("DAEMON_EXIT", "dbmgrd did not exit 0 on SIGTERM (" + (st < 0 ? std::string("no exit in time") : status_words(st)) +
                                 "); the end of its log:\n" + tail(daemon.log(), 30));
      }
      if (!restart()) break;
      downtime += std::chrono::duration<double>(Clock::now() - down).count();
      next_daemon = Clock::now() + gap(cfg.daemon_min_ms, cfg.daemon_max_ms);
      continue;
    }
    // Wake for the next event, or every 50 ms to reap clients and notice the daemon's end.
    poll(nullptr, 0, 50);
  }
  clients.reap();

  int status = daemon.stop(SIGTERM);
  if (status != 0) {
    v.add("DAEMON_EXIT", "dbmgrd did not exit 0 on the final SIGTERM (" +
                             (status < 0 ? std::string("no exit in time") : status_words(status)) +
                             "); the end of its log:\n" + tail(daemon.log(), 30));
  }
  const double ran = std::chrono::duration<double>(Clock::now() - started).count();

  std::cout << "\n==== dbmgr-ledger summary (" << torture::backend_name(cfg.backend) << ", seed " << cfg.seed << ")\n";
  std::size_t killed = 0, failed = 0;
  for (const ClientFate& f : clients.fates()) {
    if (f.killed) ++killed;
    if (!f.killed && !f.stuck && f.status != 0) {
      ++failed;
      v.add("CLIENT_FAILED", "client " + std::to_string(f.incarnation) + " (pid " + std::to_string(f.pid) +
                                 ") ended with " + status_words(f.status));
    }
  }
  const DaemonFate& df = daemon.fate();
  std::cout << "ran " << ran << " s (clients " << cfg.seconds << " s); client processes: " << clients.fates().size()
            << " started, " << killed << " SIGKILLed on purpose, " << failed << " failed\n";
  std::cout << "dbmgrd: " << df.starts << " starts, " << df.sigkills << " SIGKILLs, " << df.sigterms - 1
            << " SIGTERMs during the run (+1 at the end), " << df.starts - 1 << " restarts, down "
            << downtime << " s in all\n";
  {
    std::istringstream in(daemon.log());
    std::string line;
    std::size_t warnings = 0, errors = 0;
    while (std::getline(in, line)) {
      if (line.find(" warning ") != std::string::npos) ++warnings;
      if (line.find(" error ") != std::string::npos || line.find(" critical ") != std::string::npos) ++errors;
    }
    std::cout << "dbmgrd log: " << warnings << " warning and " << errors << " error lines\n";
  }
  DaemonFate during = df;
  during.sigterms -= 1;  // the final one does not count as coverage
  try {
    auto db = torture::open_direct(cfg.direct_config());
    run_oracle(cfg, clients.fates(), during, *db, v, std::cout);
  } catch (const std::exception& e) {
    v.add("ORACLE_FAILED", std::string("the final check could not read the database: ") + e.what());
  }
  if (v.empty()) {
    std::cout << "violations: none\nRESULT: PASS (seed " << cfg.seed << ")\n";
  } else {
    v.print(std::cout, cfg.verbose);
    std::cout << "RESULT: FAIL, " << v.total() << " violations (seed " << cfg.seed << "; replay: DBMGR_LEDGER_SEED="
              << cfg.seed << " dbmgr-ledger --backend " << torture::backend_name(cfg.backend) << " --seconds "
              << cfg.seconds << " --clients " << cfg.clients << ")\n";
  }
  if (cfg.keep) std::cout << "journals, dbmgrd.log and data kept in " << cfg.dir << "\n";
  return v.empty() ? 0 : kExitViolations;
}

}  // namespace
}  // namespace ledger

int main(int argc, char** argv) {
  ledger::Config cfg;
  if (!ledger::parse(argc, argv, cfg)) return ledger::kExitBroken;
  if (dbmgr::test::env_value("DBMGRD") == nullptr) {
    std::cerr << "dbmgr-ledger: $DBMGRD is not set (the dbmgrd binary; meson test sets it)\n";
    return ledger::kExitBroken;
  }
  if (cfg.backend == ledger::Backend::kPostgres) {
    for (const char* var : {"DBMGR_TEST_PG_HOST", "DBMGR_TEST_PG_PORT", "DBMGR_TEST_PG_USER",
                            "DBMGR_TEST_PG_PASSWORD", "DBMGR_TEST_PG_DB"}) {
      if (dbmgr::test::env_value(var) == nullptr) {
        std::cout << "dbmgr-ledger: SKIP: " << var << " is not set (start the test servers: docs/testing.md)\n";
        return ledger::kExitSkip;
      }
    }
  }
  if (cfg.backend == ledger::Backend::kMariadb) {
    for (const char* var : {"DBMGR_TEST_MARIADB_SOCKET", "DBMGR_TEST_MARIADB_USER", "DBMGR_TEST_MARIADB_PASSWORD",
                            "DBMGR_TEST_MARIADB_DB", "DBMGR_TEST_MARIADB_ODBC"}) {
      if (dbmgr::test::env_value(var) == nullptr) {
        std::cerr << "dbmgr-ledger: " << var
                  << " is not set: start the test servers (scripts/test-servers.sh start DIR pg mariadb; "
                     "source DIR/servers.env; docs/testing.md)\n";
        return ledger::kExitBroken;
      }
    }
  }
  try {
    return ledger::run(cfg);
  } catch (const std::exception& e) {
    std::cerr << "dbmgr-ledger: the test could not run: " << e.what() << "\n";
    return ledger::kExitBroken;
  }
}
