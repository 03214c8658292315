// The oracle of dbmgr-ledger: every journal against the database read directly.
//
// A transfer's fate, from its journal: acknowledged (K) must be stored exactly once; failed
// (F: an error before or from commit), rolled back on purpose (R) and killed before commit
// (an A with neither C nor outcome) must be absent; unknown (U: the connection broke during
// commit, or a C without outcome: the process was killed with the commit in flight) may be
// either. Whatever is stored must be whole: the balances are recomputed from the stored
// transfers, so a debit without its credit or its transfer row shows as a wrong balance.
#include <algorithm>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "ledger.hpp"

namespace ledger {
namespace {

using torture::split_tabs;

enum class Fate { kNone, kAcked, kFailed, kRolledBack, kUnknown };

struct Attempt {
  std::int64_t src = 0, dst = 0, amount = 0;
  int incarnation = 0;
  bool commit_sent = false;
  bool rolled_back = false;
  Fate fate = Fate::kNone;
  std::string category, stage, sqlstate, message;
};

std::string fate_word(const Attempt& a) {
  switch (a.fate) {
    case Fate::kAcked: return "acknowledged";
    case Fate::kFailed: return "failed (" + a.category + " at " + a.stage + ": " + a.message + ")";
    case Fate::kRolledBack: return "rolled back on purpose";
    case Fate::kUnknown: return "unknown (" + a.category + " during commit)";
    case Fate::kNone: return a.commit_sent ? "commit in flight when killed" : "killed before commit";
  }
  return "?";
}

// The categories a transfer may fail with here, and where.
//   constraint at the debit: the CHECK (balance >= 0), an overdraft
//   connection, shutting_down, timeout: the daemon was killed, draining or rolled back by drain
//   pool_exhausted: no connection within pool_timeout while the daemon restarted
//   serialization: PostgreSQL's deadlock detector (two transfers locking the same accounts
//                  in opposite orders)
// Anything else (internal, protocol, syntax, busy, invalid_request...) is a defect.
bool allowed_failure(const Attempt& a) {
  if (a.category == "constraint") return a.stage == "debit";
  return a.category == "connection" || a.category == "shutting_down" || a.category == "timeout" ||
         a.category == "pool_exhausted" || a.category == "serialization";
}

}  // namespace

void run_oracle(const Config& cfg, const std::vector<ClientFate>& clients, const DaemonFate& daemon,
                torture::Direct& db, torture::Violations& v, std::ostream& out) {
  // ---- the journals ----
  std::map<std::string, Attempt> attempts;
  std::size_t total_reads = 0;
  for (const ClientFate& c : clients) {
    std::ifstream in(cfg.dir + "/journal-" + std::to_string(c.incarnation) + ".log");
    std::string line;
    while (std::getline(in, line)) {
      auto f = split_tabs(line);
      const std::string& kind = f[0];
      if (kind == "P") continue;
      if (kind == "S") {
        ++total_reads;
        continue;
      }
      if (kind == "V") {
        v.add(f.size() > 1 ? f[1] : "CLIENT_CHECK", f.size() > 2 ? f[2] : line);
        continue;
      }
      if (f.size() < 2) {
        v.add("JOURNAL", "unreadable line in journal " + std::to_string(c.incarnation) + ": " + line);
        continue;
      }
      const std::string& id = f[1];
      if (kind == "A" && f.size() >= 5) {
        Attempt& a = attempts[id];
        a.src = std::stoll(f[2]);
        a.dst = std::stoll(f[3]);
        a.amount = std::stoll(f[4]);
        a.incarnation = c.incarnation;
        continue;
      }
      auto it = attempts.find(id);
      if (it == attempts.end()) {
        v.add("JOURNAL", "outcome of a transfer never attempted: " + line);
        continue;
      }
      Attempt& a = it->second;
      if (kind == "C") {
        a.commit_sent = true;
      } else if (kind == "K") {
        a.fate = Fate::kAcked;
      } else if (kind == "R") {
        a.rolled_back = true;
        a.fate = Fate::kRolledBack;
      } else if (kind == "F" && f.size() >= 6) {
        // A failed rollback on purpose stays a rollback; its error is not the transfer's.
        if (!a.rolled_back) {
          a.fate = Fate::kFailed;
          a.category = f[2];
          a.stage = f[3];
          a.sqlstate = f[4];
          a.message = f[5];
        }
      } else if (kind == "U" && f.size() >= 3) {
        a.fate = Fate::kUnknown;
        a.category = f[2];
        a.message = f.size() > 3 ? f[3] : "";
      } else {
        v.add("JOURNAL", "unreadable line in journal " + std::to_string(c.incarnation) + ": " + line);
      }
    }
  }

  // ---- the database ----
  struct Row {
    std::int64_t src = 0, dst = 0, amount = 0;
    std::size_t copies = 0;
  };
  std::map<std::string, Row> stored;
  for (const auto& r : db.query("SELECT id, src, dst, amount FROM " + cfg.transfers_table).rows) {
    Row& row = stored[r[0].bytes];
    row.src = r[1].i;
    row.dst = r[2].i;
    row.amount = r[3].i;
    ++row.copies;
  }
  std::map<std::int64_t, std::int64_t> balance;
  for (const auto& r : db.query("SELECT id, balance FROM " + cfg.accounts_table).rows) balance[r[0].i] = r[1].i;

  // ---- fates against the database ----
  std::map<std::string, std::size_t> failed_by;  // "category at stage" -> count
  std::size_t acked = 0, failed = 0, rolled_back = 0, killed_before = 0, unknown_present = 0,
              unknown_absent = 0, in_flight_present = 0, in_flight_absent = 0;
  for (const auto& [id, a] : attempts) {
    auto it = stored.find(id);
    const bool present = it != stored.end();
    const std::string what = "transfer " + id + " (" + std::to_string(a.amount) + " from " +
                             std::to_string(a.src) + " to " + std::to_string(a.dst) + ", client " +
                             std::to_string(a.incarnation) + "), " + fate_word(a);
    if (present && it->second.copies != 1) {
      v.add("DUPLICATE_TRANSFER", what + ": stored " + std::to_string(it->second.copies) + " times");
    }
    if (present && (it->second.src != a.src || it->second.dst != a.dst || it->second.amount != a.amount)) {
      v.add("WRONG_TRANSFER_ROW", what + ": stored as " + std::to_string(it->second.amount) + " from " +
                                      std::to_string(it->second.src) + " to " + std::to_string(it->second.dst));
    }
    switch (a.fate) {
      case Fate::kAcked:
        ++acked;
        if (!present) v.add("ACKED_TRANSFER_LOST", what + ": not stored");
        break;
      case Fate::kFailed:
        ++failed;
        ++failed_by[a.category + " at " + a.stage];
        if (present) v.add("FAILED_TRANSFER_STORED", what + ": stored");
        if (!allowed_failure(a)) {
          v.add(a.category == "constraint" ? "WRONG_ERROR" : "UNEXPECTED_ERROR",
                what + (a.sqlstate != "-" ? ", SQLSTATE " + a.sqlstate : std::string()));
        }
        break;
      case Fate::kRolledBack:
        ++rolled_back;
        if (present) v.add("ROLLED_BACK_TRANSFER_STORED", what + ": stored");
        break;
      case Fate::kUnknown:
        (present ? unknown_present : unknown_absent)++;
        break;
      case Fate::kNone:
        if (a.commit_sent) {
          (present ? in_flight_present : in_flight_absent)++;
        } else {
          ++killed_before;
          if (present) v.add("KILLED_TRANSFER_STORED", what + ": stored");
        }
        break;
    }
  }
  for (const auto& [id, row] : stored) {
    if (attempts.count(id) == 0) {
      v.add("UNKNOWN_TRANSFER", "transfer " + id + " (" + std::to_string(row.amount) + " from " +
                                    std::to_string(row.src) + " to " + std::to_string(row.dst) +
                                    ") is stored but no client journaled it");
    }
  }

  // ---- balances: whole transfers only, money neither made nor lost ----
  std::map<std::int64_t, std::int64_t> expected;
  for (int id = 1; id <= kAccounts; ++id) expected[id] = kInitialBalance;
  for (const auto& [id, row] : stored) {
    expected[row.src] -= row.amount * static_cast<std::int64_t>(row.copies);
    expected[row.dst] += row.amount * static_cast<std::int64_t>(row.copies);
  }
  std::int64_t sum = 0;
  for (const auto& [id, b] : balance) sum += b;
  if (balance.size() != static_cast<std::size_t>(kAccounts)) {
    v.add("ACCOUNTS", std::to_string(balance.size()) + " accounts stored, not " + std::to_string(kAccounts));
  }
  if (sum != kAccounts * kInitialBalance) {
    v.add("SUM_CHANGED", "the balances sum to " + std::to_string(sum) + ", not the initial " +
                             std::to_string(kAccounts * kInitialBalance));
  }
  for (const auto& [id, want] : expected) {
    auto it = balance.find(id);
    if (it == balance.end()) {
      v.add("ACCOUNTS", "account " + std::to_string(id) + " is missing");
      continue;
    }
    if (it->second != want) {
      v.add("BALANCE_MISMATCH", "account " + std::to_string(id) + " holds " + std::to_string(it->second) +
                                    ", but the stored transfers make it " + std::to_string(want) +
                                    " (a partial transfer?)");
    }
    if (it->second < 0) v.add("NEGATIVE_BALANCE", "account " + std::to_string(id) + " holds " + std::to_string(it->second));
  }
  std::string integrity = "-";
  if (cfg.backend == Backend::kSqlite) {
    auto t = db.query("PRAGMA integrity_check");
    integrity = t.rows.empty() || t.rows[0].empty() ? "(no answer)" : t.rows[0][0].bytes;
    if (t.rows.size() != 1 || integrity != "ok") {
      std::string all;
      for (const auto& r : t.rows) all += (r.empty() ? "" : r[0].bytes) + "; ";
      v.add("INTEGRITY", "PRAGMA integrity_check: " + all);
    }
  }

  // ---- the run must have done what it claims (only for runs of some length) ----
  std::size_t kills = 0, connection_failures = 0, overdrafts = 0;
  for (const ClientFate& c : clients) kills += c.killed ? 1 : 0;
  for (const auto& [what, n] : failed_by) {
    if (what.rfind("connection", 0) == 0) connection_failures += n;
    if (what == "constraint at debit") overdrafts += n;
  }
  if (cfg.seconds >= 10) {
    auto need = [&](bool ok, const std::string& what) {
      if (!ok) v.add("COVERAGE", what);
    };
    need(acked > 0, "no transfer was acknowledged");
    need(overdrafts > 0, "no transfer failed by the CHECK (overdraft)");
    need(rolled_back > 0, "no transfer was rolled back on purpose");
    need(kills > 0, "no client was killed");
    need(daemon.sigkills > 0, "dbmgrd was never SIGKILLed");
    need(daemon.sigterms > 0, "dbmgrd was never SIGTERMed");
    need(connection_failures > 0, "no client ever saw a connection error");
    need(total_reads > 0, "no read of the total succeeded");
  }

  out << "transfers attempted " << attempts.size() << ": acknowledged " << acked << ", failed " << failed
      << ", rolled back on purpose " << rolled_back << ", killed before commit " << killed_before << "\n";
  out << "  unknown outcome: connection lost during commit " << unknown_present + unknown_absent << " (stored "
      << unknown_present << ", absent " << unknown_absent << "), commit in flight when killed "
      << in_flight_present + in_flight_absent << " (stored " << in_flight_present << ", absent "
      << in_flight_absent << ")\n";
  out << "  failed by category:";
  for (const auto& [what, n] : failed_by) out << " [" << what << "] " << n;
  out << "\n";
  out << "stored: " << stored.size() << " transfers; balances sum " << sum << " (initial "
      << kAccounts * kInitialBalance << "), min "
      << (balance.empty() ? 0 : std::min_element(balance.begin(), balance.end(), [](auto& a, auto& b) {
                                  return a.second < b.second;
                                })->second)
      << "; integrity_check " << integrity << "; reads of the total through dbmgrd " << total_reads << "\n";
}

}  // namespace ledger
