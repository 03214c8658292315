// dbmgr-daemon-fuzz checker: a known workload with exact answers, timed call by call.
#include "checker.hpp"

#include <signal.h>

#include <cstdlib>
#include <iostream>
#include <map>
#include <sstream>

namespace dbmgr::fuzz {

namespace {
using Clock = std::chrono::steady_clock;
std::int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now().time_since_epoch())
      .count();
}
// A call that has not returned after this long will not: report and end the run.
constexpr std::int64_t kHangUs = 60'000'000;
}  // namespace

struct Checker::Slot {
  std::atomic<std::int64_t> since_us{0};  // 0: no call in flight
  std::atomic<const char*> what{""};
  std::atomic<bool> reported{false};
};

struct Checker::Model {
  struct Row {
    std::string v;
    std::string b;
    double d = 0;
  };
  std::map<std::int64_t, Row> rows;
  std::int64_t next_key = 1;
  Rng rng;
};

namespace {

// Marks one client call as in flight for the watchdog.
class Timed {
 public:
  Timed(Checker::Slot& s, const char* what, std::atomic<std::uint64_t>& max_us)
      : s_(s), max_us_(max_us) {
    s_.what = what;
    s_.reported = false;
    start_ = now_us();
    s_.since_us = start_;
  }
  ~Timed() {
    s_.since_us = 0;
    auto took = static_cast<std::uint64_t>(now_us() - start_);
    auto prev = max_us_.load();
    while (took > prev && !max_us_.compare_exchange_weak(prev, took)) {
    }
  }

 private:
  Checker::Slot& s_;
  std::atomic<std::uint64_t>& max_us_;
  std::int64_t start_ = 0;
};

std::string text_for(std::int64_t k, std::uint64_t r) {
  return "row " + std::to_string(k) + " caf\xC3\xA9 'q' " + std::to_string(r % 100000);
}
std::string blob_for(Rng& rng) {
  std::string b(1 + rng() % 48, '\0');
  for (auto& c : b) c = static_cast<char>(rng());
  return b;
}

}  // namespace

Checker::Checker(CheckerConfig cfg, Findings& findings)
    : cfg_(std::move(cfg)),
      findings_(findings),
      model_(std::make_unique<Model>()),
      tx_slot_(std::make_unique<Slot>()),
      os_slot_(std::make_unique<Slot>()) {
  model_->rng.seed(mix(cfg_.seed, 0xC4EC));
  dbmgr::Options o;
  o.socket_path = cfg_.socket;
  o.database = cfg_.database;
  o.client_name = "fuzz-checker";
  db_ = std::make_unique<dbmgr::DatabaseManager>(o);
}

Checker::~Checker() { stop(); }

void Checker::fail(const std::string& what) {
  ++failures_;
  findings_.add("checker: " + what);
}

void Checker::setup() {
  const std::string blob_type = cfg_.backend == "postgresql" ? "BYTEA" : "BLOB";
  db_->execute("DROP TABLE IF EXISTS " + cfg_.table);
  db_->execute("CREATE TABLE " + cfg_.table +
               " (k BIGINT PRIMARY KEY, v TEXT NOT NULL, b " + blob_type +
               " NOT NULL, d DOUBLE PRECISION NOT NULL)");
  if (!tx_round(0) || !oneshot_round(0)) throw std::runtime_error("the checker fails without attackers");
}

void Checker::start() {
  stop_ = false;
  tx_thread_ = std::thread([this] { tx_loop(); });
  os_thread_ = std::thread([this] { oneshot_loop(); });
  watchdog_ = std::thread([this] { watchdog_loop(); });
}

void Checker::stop() {
  stop_ = true;
  for (auto* t : {&tx_thread_, &os_thread_, &watchdog_}) {
    if (t->joinable()) t->join();
  }
}

void Checker::tx_loop() {
  for (std::uint64_t round = 1; !stop_; ++round) {
    if (!tx_round(round)) return;  // the model may no longer match; the finding is recorded
  }
}

void Checker::oneshot_loop() {
  for (std::uint64_t round = 1; !stop_; ++round) {
    if (!oneshot_round(round)) return;
  }
}

void Checker::watchdog_loop() {
  while (!stop_) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    for (Slot* s : {tx_slot_.get(), os_slot_.get()}) {
      const std::int64_t since = s->since_us.load();
      if (since == 0) continue;
      const std::int64_t waited = now_us() - since;
      if (waited > std::int64_t{cfg_.bound_ms} * 1000 && !s->reported.exchange(true)) {
        fail(std::string("waited more than ") + std::to_string(cfg_.bound_ms) + " ms for " +
             s->what.load());
      }
      if (waited > kHangUs) {
        std::cerr << "checker: " << s->what.load() << " has not returned for "
                  << waited / 1'000'000 << " s; the daemon (pid " << cfg_.daemon_pid
                  << ") is hung. Its threads:\n";
        std::string cmd = "gdb -p " + std::to_string(cfg_.daemon_pid) +
                          " -batch -ex 'thread apply all bt' 2>/dev/null | grep -E '^(#|Thread)' >&2";
        if (std::system(cmd.c_str()) != 0) std::cerr << "(gdb failed)\n";
        for (const auto& f : findings_.all()) std::cerr << "FINDING " << f << "\n";
        kill(cfg_.daemon_pid, SIGKILL);
        std::_Exit(1);
      }
    }
  }
}

// One transaction: inserts, an update and a delete, read back inside the transaction; then
// committed (the model follows) or rolled back (it does not); then read back outside.
bool Checker::tx_round(std::uint64_t round) {
  Model& m = *model_;
  const std::string& t = cfg_.table;
  try {
    auto s = db_->get_session();
    std::map<std::int64_t, Model::Row> next = m.rows;
    const int inserts = 1 + static_cast<int>(m.rng() % 4);
    for (int i = 0; i < inserts; ++i) {
      const std::int64_t k = m.next_key++;
      Model::Row r{text_for(k, m.rng()), blob_for(m.rng), static_cast<double>(k) / 8.0};
      Timed w(*tx_slot_, "a session INSERT", max_wait_us_);
      auto res = s.execute("INSERT INTO " + t + " (k, v, b, d) VALUES (?, ?, ?, ?)",
                           {k, r.v, dbmgr::Blob::from_string(r.b), r.d});
      ++statements_;
      if (res.affected_rows() != 1) {
        fail("INSERT affected " + std::to_string(res.affected_rows()) + " rows, not 1");
        return false;
      }
      next[k] = std::move(r);
    }
    if (!next.empty() && m.rng() % 2 == 0) {  // an update of some row
      auto it = next.begin();
      std::advance(it, static_cast<long>(m.rng() % next.size()));
      it->second.v = text_for(it->first, m.rng());
      Timed w(*tx_slot_, "a session UPDATE", max_wait_us_);
      auto res = s.execute("UPDATE " + t + " SET v = ? WHERE k = ?", {it->second.v, it->first});
      ++statements_;
      if (res.affected_rows() != 1) {
        fail("UPDATE affected " + std::to_string(res.affected_rows()) + " rows, not 1");
        return false;
      }
    }
    while (next.size() > 200) {  // keep the table small: delete the oldest
      const std::int64_t k = next.begin()->first;
      Timed w(*tx_slot_, "a session DELETE", max_wait_us_);
      auto res = s.execute("DELETE FROM " + t + " WHERE k = ?", {k});
      ++statements_;
      if (res.affected_rows() != 1) {
        fail("DELETE affected " + std::to_string(res.affected_rows()) + " rows, not 1");
        return false;
      }
      next.erase(next.begin());
    }
    {
      Timed w(*tx_slot_, "a count inside the transaction", max_wait_us_);
      auto n = s.execute("SELECT count(*) FROM " + t).scalar<std::int64_t>();
      ++statements_;
      if (n != static_cast<std::int64_t>(next.size())) {
        fail("count inside the transaction is " + std::to_string(n) + ", expected " +
             std::to_string(next.size()));
        return false;
      }
    }
    const bool commit = m.rng() % 4 != 0;
    {
      Timed w(*tx_slot_, commit ? "a COMMIT" : "a ROLLBACK", max_wait_us_);
      if (commit) {
        s.commit();
      } else {
        s.rollback();
      }
    }
    ++transactions_;
    if (commit) m.rows = std::move(next);
    s.close();
    if (round % 5 == 0) {
      auto r = db_->get_session(dbmgr::Access::kReadOnly);
      if (!compare_all(r, "a read-only session")) return false;
      r.commit();
    } else {
      Timed w(*tx_slot_, "a read-only one-shot count", max_wait_us_);
      auto n = db_->execute("SELECT count(*) FROM " + t, {}, dbmgr::Access::kReadOnly)
                   .scalar<std::int64_t>();
      ++statements_;
      if (n != static_cast<std::int64_t>(m.rows.size())) {
        fail("count after " + std::string(commit ? "commit" : "rollback") + " is " +
             std::to_string(n) + ", expected " + std::to_string(m.rows.size()));
        return false;
      }
    }
  } catch (const dbmgr::Error& e) {
    fail(std::string("unexpected error in the transaction workload: ") + e.what());
    return false;
  }
  return true;
}

bool Checker::compare_all(dbmgr::Session& s, const char* where) {
  const Model& m = *model_;
  Timed w(*tx_slot_, "a full read of the table", max_wait_us_);
  auto res = s.execute("SELECT k, v, b, d FROM " + cfg_.table + " ORDER BY k");
  ++statements_;
  if (res.size() != m.rows.size()) {
    fail(std::string(where) + ": " + std::to_string(res.size()) + " rows, expected " +
         std::to_string(m.rows.size()));
    return false;
  }
  auto it = m.rows.begin();
  for (const dbmgr::Row& row : res) {
    const auto k = row.get<std::int64_t>(std::size_t{0});
    const auto v = row.get<std::string>(std::size_t{1});
    const auto b = row.get<dbmgr::Blob>(std::size_t{2});
    const auto d = row.get<double>(std::size_t{3});
    if (k != it->first || v != it->second.v || b.view() != it->second.b || d != it->second.d) {
      fail(std::string(where) + ": row " + std::to_string(k) + " differs from the model (key " +
           std::to_string(it->first) + ", v '" + v + "' vs '" + it->second.v + "')");
      return false;
    }
    ++it;
  }
  return true;
}

bool Checker::oneshot_round(std::uint64_t round) {
  Rng rng(mix(cfg_.seed, round));
  try {
    const std::int64_t i = static_cast<std::int64_t>(rng());
    const std::string text = "t\xC3\xA9xt " + std::to_string(rng() % 1000) + std::string(rng() % 300, 'x');
    std::string blob = blob_for(rng);
    const double d = static_cast<double>(rng() % 100000) / 16.0;
    const char* sql = cfg_.backend == "postgresql"
                          ? "SELECT CAST(? AS BIGINT), CAST(? AS TEXT), CAST(? AS BYTEA), "
                            "CAST(? AS DOUBLE PRECISION), NULL"
                          : "SELECT ?, ?, ?, ?, NULL";
    {
      Timed w(*os_slot_, "a one-shot SELECT of parameters", max_wait_us_);
      auto r = db_->execute(sql, {i, text, dbmgr::Blob::from_string(blob), d},
                            round % 2 == 0 ? dbmgr::Access::kReadOnly : dbmgr::Access::kReadWrite);
      ++statements_;
      if (r.size() != 1 || r.column_count() != 5) {
        fail("parameter round trip: " + std::to_string(r.size()) + " rows of " +
             std::to_string(r.column_count()) + " columns");
        return false;
      }
      if (r[0].get<std::int64_t>(std::size_t{0}) != i || r[0].get<std::string>(std::size_t{1}) != text ||
          r[0].get<dbmgr::Blob>(std::size_t{2}).view() != blob ||
          r[0].get<double>(std::size_t{3}) != d || !r[0].is_null(std::size_t{4})) {
        fail("parameter round trip returned other values than it was given");
        return false;
      }
    }
    {
      const std::int64_t a = static_cast<std::int64_t>(rng() % 1000000);
      Timed w(*os_slot_, "a one-shot arithmetic SELECT", max_wait_us_);
      auto v = db_->execute(cfg_.backend == "postgresql" ? "SELECT CAST(? AS BIGINT) * 3 + 1"
                                                         : "SELECT ? * 3 + 1",
                            {a})
                   .scalar<std::int64_t>();
      ++statements_;
      if (v != a * 3 + 1) {
        fail("SELECT " + std::to_string(a) + " * 3 + 1 returned " + std::to_string(v));
        return false;
      }
    }
    {
      Timed w(*os_slot_, "a ping", max_wait_us_);
      db_->ping();
    }
    if (round % 10 == 0) {
      Timed w(*os_slot_, "an info request", max_wait_us_);
      auto info = db_->info();
      if (info.type != cfg_.backend) {
        fail("info says type " + info.type + ", expected " + cfg_.backend);
        return false;
      }
    }
  } catch (const dbmgr::Error& e) {
    fail(std::string("unexpected error in the one-shot workload: ") + e.what());
    return false;
  }
  return true;
}

void Checker::final_check() {
  try {
    auto s = db_->get_session(dbmgr::Access::kReadOnly);
    compare_all(s, "the final read");
    s.commit();
    dbmgr::Options o;
    o.socket_path = cfg_.socket;
    o.database = cfg_.database;
    o.client_name = "fuzz-final";
    dbmgr::DatabaseManager fresh(o);
    if (fresh.execute("SELECT 1").scalar<std::int64_t>() != 1) fail("SELECT 1 is not 1");
  } catch (const dbmgr::Error& e) {
    fail(std::string("final check: ") + e.what());
  }
}

void Checker::teardown() {
  try {
    db_->execute("DROP TABLE IF EXISTS " + cfg_.table);
  } catch (const dbmgr::Error& e) {
    fail(std::string("dropping the table: ") + e.what());
  }
  db_.reset();  // closes the checker's sockets
}

}  // namespace dbmgr::fuzz
