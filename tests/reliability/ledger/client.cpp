// A dbmgr-ledger client process: transfers money in session transactions until the deadline
// and journals what it was told, so that the oracle can judge the database against it.
//
// Journal lines (tab-separated, one write(2) each, so a SIGKILL loses nothing written; no
// fsync, since only processes die here, never the machine):
//   P pid incarnation
//   A id src dst amount api       before the first statement (api: session or run)
//   C id                          just before commit() is called
//   K id                          after commit() returned: acknowledged
//   R id                          rolled back on purpose (before the rollback is sent)
//   F id category stage sqlstate message   a dbmgr::Error before or from commit (not lost
//                                 connections during commit): the transfer must be absent
//   U id category message         the connection broke during commit: outcome unknown
//   S sum count | V what detail   a read of the total through dbmgrd, and a wrong one
// An A without outcome is a transfer whose process was killed: absent unless a C follows.
#include <unistd.h>

#include <thread>

#include "ledger.hpp"

namespace ledger {
namespace {

using torture::EventLog;
using torture::clean;

// Thrown inside DatabaseManager::run() to roll a transfer back on purpose.
struct RollBackOnPurpose {};

struct Transfer {
  std::string id;
  std::int64_t src = 0, dst = 0, amount = 0;
  bool roll_back = false;
  bool use_run = false;  // DatabaseManager::run() instead of get_session() + commit()
};

class Client {
 public:
  Client(const Config& cfg, int incarnation)
      : cfg_(cfg),
        incarnation_(incarnation),
        journal_(cfg.dir + "/journal-" + std::to_string(incarnation) + ".log"),
        rng_(torture::mix_seed(cfg.seed, static_cast<std::uint64_t>(incarnation))),
        manager_(cfg.options()) {
    debit_ = "UPDATE " + cfg.accounts_table + " SET balance = balance - ? WHERE id = ?";
    credit_ = "UPDATE " + cfg.accounts_table + " SET balance = balance + ? WHERE id = ?";
    insert_ = "INSERT INTO " + cfg.transfers_table + "(id, src, dst, amount) VALUES (?, ?, ?, ?)";
    // PostgreSQL's sum(bigint) is numeric, MariaDB's DECIMAL (text on the wire): cast it back.
    total_ = std::string("SELECT CAST(sum(balance) AS ") + (cfg.backend == Backend::kMariadb ? "SIGNED" : "BIGINT") +
             "), count(*) FROM " + cfg.accounts_table;
  }

  int run() {
    journal_.line({"P", std::to_string(getpid()), std::to_string(incarnation_)});
    std::int64_t n = 0;
    while (Clock::now() < cfg_.deadline) {
      if (rng_.chance(0.05)) read_total();
      Transfer t;
      t.id = "c" + std::to_string(incarnation_) + "n" + std::to_string(++n);
      t.src = rng_.uniform(1, kAccounts);
      do {
        t.dst = rng_.uniform(1, kAccounts);
      } while (t.dst == t.src);
      t.amount = rng_.uniform(1, kMaxAmount);
      t.roll_back = rng_.chance(0.1);
      t.use_run = rng_.chance(0.5);
      transfer(t);
    }
    return 0;
  }

 private:
  // A short pause now and then, so that SIGKILLs and daemon restarts land inside
  // transactions more often (load shaping, never a correctness check).
  void maybe_pause() {
    if (rng_.chance(0.3)) std::this_thread::sleep_for(std::chrono::microseconds(rng_.uniform(100, 3000)));
  }

  // The statements of transfer `t`, in `s`; `stage` says how far it got.
  void statements(dbmgr::Session& s, const Transfer& t, std::string& stage) {
    stage = "debit";
    s.execute(debit_, {t.amount, t.src});
    maybe_pause();
    stage = "credit";
    s.execute(credit_, {t.amount, t.dst});
    maybe_pause();
    stage = "insert";
    s.execute(insert_, {t.id, t.src, t.dst, t.amount});
    maybe_pause();
  }

  void transfer(const Transfer& t) {
    journal_.line({"A", t.id, std::to_string(t.src), std::to_string(t.dst), std::to_string(t.amount),
                   t.use_run ? "run" : "session"});
    std::string stage = "open";
    try {
      if (t.use_run) {
        manager_.run([&](dbmgr::Session& s) {
          statements(s, t, stage);
          if (t.roll_back) {
            journal_.line({"R", t.id});
            throw RollBackOnPurpose{};
          }
          stage = "commit";
          journal_.line({"C", t.id});
        });
      } else {
        dbmgr::Session s = manager_.get_session();
        statements(s, t, stage);
        if (t.roll_back) {
          journal_.line({"R", t.id});
          s.rollback();
          return;
        }
        stage = "commit";
        journal_.line({"C", t.id});
        s.commit();
      }
      journal_.line({"K", t.id});
    } catch (const RollBackOnPurpose&) {
      // run() rolled it back; R is journaled.
    } catch (const dbmgr::Error& e) {
      // (A rollback on purpose that failed has its R journaled: the transfer is absent either way.)
      if (stage == "commit" && e.category() == dbmgr::ErrorCategory::kConnection) {
        journal_.line({"U", t.id, torture::category_of(e), clean(e.message())});
      } else {
        journal_.line({"F", t.id, torture::category_of(e), stage, e.sqlstate().empty() ? "-" : e.sqlstate(),
                       clean(e.message())});
      }
      back_off(e);
    }
  }

  // While the daemon is down or draining every attempt fails at once; wait a little
  // before the next so that the journals do not fill with them.
  void back_off(const dbmgr::Error& e) {
    using C = dbmgr::ErrorCategory;
    if (e.category() == C::kConnection || e.category() == C::kShuttingDown) {
      std::this_thread::sleep_for(std::chrono::milliseconds(rng_.uniform(10, 50)));
    }
  }

  // Every committed state holds the initial total: a read through dbmgrd that sees another
  // sum saw a partial transfer.
  void read_total() {
    try {
      dbmgr::Result r = manager_.execute(total_, {}, dbmgr::Access::kReadOnly);
      auto sum = r[0].get<std::int64_t>(0);
      auto count = r[0].get<std::int64_t>(1);
      journal_.line({"S", std::to_string(sum), std::to_string(count)});
      if (sum != kAccounts * kInitialBalance || count != kAccounts) {
        journal_.line({"V", "READ_TOTAL", "a read-only one-shot saw sum " + std::to_string(sum) + " over " +
                                              std::to_string(count) + " accounts, not " +
                                              std::to_string(kAccounts * kInitialBalance) + " over " +
                                              std::to_string(kAccounts)});
      }
    } catch (const dbmgr::Error& e) {
      using C = dbmgr::ErrorCategory;
      const C c = e.category();
      if (c != C::kConnection && c != C::kShuttingDown && c != C::kTimeout && c != C::kPoolExhausted) {
        journal_.line({"V", "READ_FAILED", std::string("a read-only one-shot of the total failed: ") + clean(e.what())});
      }
      back_off(e);  // the daemon is restarting: nothing to judge
    }
  }

  const Config& cfg_;
  int incarnation_;
  EventLog journal_;
  torture::Rng rng_;
  dbmgr::DatabaseManager manager_;
  std::string debit_, credit_, insert_, total_;
};

}  // namespace

int run_client(const Config& cfg, int incarnation) {
  Client c(cfg, incarnation);
  return c.run();
}

}  // namespace ledger
