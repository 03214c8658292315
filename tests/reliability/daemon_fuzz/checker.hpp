// dbmgr-daemon-fuzz checker: a well-behaved client that must be served right, and in time,
// while the attackers run.
//
// Two threads share one dbmgr::DatabaseManager. The transaction thread inserts, updates and
// deletes rows of its own table in session transactions (some committed, some rolled back),
// keeps a model of what must be there, and reads the table back (in the transaction, and
// afterwards in read-only sessions and one-shots) comparing every cell. The one-shot thread
// runs selects with known answers (parameters of every type round-tripped, arithmetic),
// pings and info requests. Any error, any wrong answer, and any call that takes longer than
// the bound is a finding. A watchdog thread measures the calls; if one never returns it
// reports, kills the daemon and ends the process (a hang must not hang the test).
//
// Thread-safety: start()/stop()/final_check() from one thread (main); the workers are private.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include <dbmgr/dbmgr.hpp>

#include "fuzz.hpp"

namespace dbmgr::fuzz {

struct CheckerConfig {
  std::string socket;
  std::string database;  // as configured in the daemon
  std::string backend;   // "sqlite" or "postgresql"
  std::string table;     // private to this run
  int bound_ms = 5000;
  std::uint64_t seed = 0;
  pid_t daemon_pid = -1;  // killed by the watchdog when a call never returns
};

class Checker {
 public:
  Checker(CheckerConfig cfg, Findings& findings);
  ~Checker();
  // Creates the table and runs each workload once, so every connection the checker needs is
  // open before the attackers start. Throws dbmgr::Error when that already fails.
  void setup();
  void start();
  void stop();
  // After the attack: the whole table against the model, SELECT 1 on a fresh manager.
  void final_check();
  // The table is dropped (PostgreSQL: it lives in the shared test database).
  void teardown();
  std::uint64_t transactions() const { return transactions_.load(); }
  std::uint64_t statements() const { return statements_.load(); }
  double max_wait_ms() const { return max_wait_us_.load() / 1000.0; }

  struct Slot;  // one measured call in flight per worker thread

 private:
  void tx_loop();
  void oneshot_loop();
  void watchdog_loop();
  bool tx_round(std::uint64_t round);
  bool oneshot_round(std::uint64_t round);
  bool compare_all(dbmgr::Session& s, const char* where);
  void fail(const std::string& what);

  CheckerConfig cfg_;
  Findings& findings_;
  std::unique_ptr<dbmgr::DatabaseManager> db_;
  struct Model;
  std::unique_ptr<Model> model_;  // owned by the transaction thread while it runs
  std::unique_ptr<Slot> tx_slot_, os_slot_;
  std::atomic<bool> stop_{false};
  std::atomic<std::uint64_t> transactions_{0}, statements_{0}, max_wait_us_{0};
  std::atomic<int> failures_{0};
  std::thread tx_thread_, os_thread_, watchdog_;
};

}  // namespace dbmgr::fuzz
