// dbmgr-ledger: a money-moving ledger against a real dbmgrd that is killed and restarted
// (docs/reliability.md, "Ledger").
//
// The parent process owns a private dbmgrd (started, SIGKILLed, SIGTERMed and started again
// on the same socket and data), forks client processes that move money between accounts in
// session transactions and journal what they were told, SIGKILLs some of them, and at the end
// reads the database directly (sqlite3 / libpq / unixODBC, never through dbmgrd) and judges it against
// the journals. This header holds what the three parts share (ledger.cpp: the parent;
// client.cpp: a client process; oracle.cpp: the final check). Direct engine access, the
// append-only logs, random numbers and the list of violations come from the torture test
// (tests/torture/torture.hpp), compiled in as they are.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include <dbmgr/dbmgr.hpp>

#include "torture.hpp"

namespace ledger {

using Clock = std::chrono::steady_clock;
using torture::Backend;

constexpr int kAccounts = 16;
constexpr std::int64_t kInitialBalance = 1000;
// A transfer moves 1..kMaxAmount: often more than the source holds, so the CHECK
// (balance >= 0) refuses many debits.
constexpr std::int64_t kMaxAmount = 800;

struct Config {
  Backend backend = Backend::kSqlite;
  double seconds = 25;
  std::uint64_t seed = 0;
  int clients = 12;                       // client processes running at once
  int kill_min_ms = 400, kill_max_ms = 1500;   // a client SIGKILL every A..B ms
  int daemon_min_ms = 2500, daemon_max_ms = 5000;  // a daemon SIGKILL or SIGTERM every A..B ms
  bool keep = false;
  bool verbose = false;
  std::string dir;     // the run's temp folder: journals, the daemon's socket, data and log
  std::string socket;  // dir/dbmgrd.sock, the same for every start of the daemon
  std::string accounts_table;   // accounts_<pid>: two builds may share one server
  std::string transfers_table;  // transfers_<pid>
  std::string sqlite_path;      // dir/data/ledger.db
  torture::PgParams pg;         // the test server's database (DBMGR_TEST_PG_*)
  std::string odbc;             // MariaDB: $DBMGR_TEST_MARIADB_ODBC (the test database)
  Clock::time_point deadline;   // the clients start no transfer after it

  dbmgr::Options options() const;
  // The torture test's Config, as far as its direct engine access reads it.
  torture::Config direct_config() const;
};

// In a forked client process: transfers until the deadline. Returns the exit code.
int run_client(const Config& cfg, int incarnation);

// What the parent knows about each client process it started.
using ClientFate = torture::ProcessFate;  // a client process: killed, stuck, its status

// What the parent did to the daemon, for the summary and the coverage checks.
struct DaemonFate {
  int starts = 0;
  int sigkills = 0;
  int sigterms = 0;
};

// Reads every journal in cfg.dir and the database directly; adds what it finds to `v` and
// prints the outcome counts to `out`.
void run_oracle(const Config& cfg, const std::vector<ClientFate>& clients, const DaemonFate& daemon,
                torture::Direct& db, torture::Violations& v, std::ostream& out);

}  // namespace ledger
