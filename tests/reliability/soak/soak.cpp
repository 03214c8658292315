// dbmgr-soak: a thousand clients against one dbmgrd, its memory and descriptors watched
// (docs/reliability.md, "Soak").
//
//   dbmgr-soak [--backend sqlite] [--seconds N] [--clients N] [--think-ms MIN-MAX]
//              [--csv FILE] [--no-rss-check]
//
// Starts a private dbmgrd on SQLite ($DBMGRD) and runs N client threads in this process,
// each with its own DatabaseManager (its own socket to the daemon), doing short work until
// the time is up: read-only one-shot counts of its own rows, one-shot INSERTs, session
// transactions that insert and read back (a tenth rolled back), and now and then a
// disconnect and a fresh manager. Every second the daemon's VmRSS, open descriptors and
// client count are sampled; a probe thread measures how fast the daemon answers a one-shot.
//
// Asserted (exit 1 on any violation, 2 when the test cannot run):
//   - every operation succeeded and returned what the client's own bookkeeping predicts;
//   - the rows read directly from the SQLite file (sqlite3, not through dbmgrd) are exactly
//     the rows every client counted as committed;
//   - after the warm-up (the first 25 %), descriptors are flat: the maximum over the second
//     half exceeds the value at the end of the warm-up by at most kFdSlack, and once every
//     client is gone the daemon's descriptors that are not client sockets are as many as at
//     the end of the warm-up (within kIdleFdSlack);
//   - RSS is flat over the second half: its maximum exceeds the value at the half by less
//     than max(8 MiB, 10 %) (skipped with --no-rss-check, as under ASan, where RSS measures
//     the sanitizer's quarantine rather than the daemon);
//   - dbmgrd exits 0 on SIGTERM at the end.
// The probe's latencies (p50, p99, max) are reported, never asserted.
#define DOCTEST_CONFIG_IMPLEMENT  // the harness's ~Daemon uses CHECK; no doctest main here
#include <doctest/doctest.h>

#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "harness.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using dbmgr::test::Daemon;
using dbmgr::test::DaemonOptions;
using Cmd = dbmgr::proto::AdminCommand;

constexpr int kExitViolations = 1;
constexpr int kExitBroken = 2;
constexpr int kFdSlack = 20;        // clients between a disconnect and their next connect
constexpr int kIdleFdSlack = 4;     // descriptors that are not client sockets, warm-up vs end
constexpr long kRssSlackKib = 8 * 1024;
constexpr double kRssSlackFraction = 0.10;
constexpr std::size_t kThreadStack = 1 << 20;

struct Config {
  double seconds = 60;
  int clients = 1000;
  int think_min_ms = 5, think_max_ms = 40;
  std::string csv;
  bool rss_check = true;
};

using dbmgr::test::env_value;

void usage(std::ostream& o) {
  o << "usage: dbmgr-soak [--backend sqlite] [--seconds N] [--clients N] [--think-ms MIN-MAX]\n"
       "                  [--csv FILE] [--no-rss-check]\n"
       "  --seconds N       how long the clients run (default 60); $DBMGR_SOAK_SECONDS wins\n"
       "  --clients N       concurrent clients, one thread and one socket each (default 1000)\n"
       "  --think-ms A-B    pause A..B ms between a client's operations (default 5-40)\n"
       "  --csv FILE        write the curve (second, clients, rss_kib, fds, ops_per_s, probe_max_ms)\n"
       "  --no-rss-check    report RSS but do not assert it is flat (sanitized builds)\n"
       "Needs $DBMGRD (the dbmgrd binary).\n";
}

bool parse(int argc, char** argv, Config& cfg) {
  auto need = [&](int& i) -> std::string {
    if (i + 1 >= argc) throw std::invalid_argument(std::string(argv[i]) + " needs a value");
    return argv[++i];
  };
  try {
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      if (a == "--backend") {
        if (need(i) != "sqlite") throw std::invalid_argument("only --backend sqlite is implemented");
      } else if (a == "--seconds") {
        cfg.seconds = std::stod(need(i));
      } else if (a == "--clients") {
        cfg.clients = std::stoi(need(i));
      } else if (a == "--think-ms") {
        std::string r = need(i);
        auto dash = r.find('-');
        cfg.think_min_ms = std::stoi(r.substr(0, dash));
        cfg.think_max_ms = dash == std::string::npos ? cfg.think_min_ms : std::stoi(r.substr(dash + 1));
      } else if (a == "--csv") {
        cfg.csv = need(i);
      } else if (a == "--no-rss-check") {
        cfg.rss_check = false;
      } else if (a == "--help" || a == "-h") {
        usage(std::cout);
        std::exit(0);
      } else {
        throw std::invalid_argument("unknown argument " + a);
      }
    }
    if (const char* s = env_value("DBMGR_SOAK_SECONDS")) cfg.seconds = std::stod(s);
  } catch (const std::exception& e) {
    std::cerr << "dbmgr-soak: " << e.what() << "\n";
    usage(std::cerr);
    return false;
  }
  if (cfg.seconds < 4 || cfg.clients < 1 || cfg.think_min_ms < 0 || cfg.think_max_ms < cfg.think_min_ms) {
    std::cerr << "dbmgr-soak: bad arguments (at least 4 seconds, 1 client)\n";
    usage(std::cerr);
    return false;
  }
  return true;
}

// ---- what the clients share ----

// Violations seen by the threads: counted, the first few kept with their words.
class Problems {
 public:
  void add(const std::string& what) {
    std::lock_guard<std::mutex> lock(mutex_);
    ++count_;
    if (examples_.size() < 10) examples_.push_back(what);
  }
  std::size_t count() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return count_;
  }
  std::vector<std::string> examples() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return examples_;
  }

 private:
  mutable std::mutex mutex_;
  std::size_t count_ = 0;
  std::vector<std::string> examples_;
};

struct Shared {
  Config cfg;
  std::string socket;
  Clock::time_point deadline;
  std::atomic<bool> stop{false};
  std::atomic<std::int64_t> ops{0};
  std::atomic<std::int64_t> reconnects{0};
  std::atomic<std::int64_t> rollbacks{0};
  std::atomic<int> running{0};  // client threads not yet finished
  Problems problems;
  // Per client: rows it counts as committed (written by its own thread only, read at the end).
  std::vector<std::int64_t> committed;
  std::vector<char> uncertain;  // an INSERT whose outcome is unknown (it reported an error)

  dbmgr::Options options(const char* name) const {
    dbmgr::Options o;
    o.socket_path = socket;
    o.client_name = name;
    o.max_idle_connections = 1;
    return o;
  }
};

// One client: its own manager (one socket), operations until the deadline.
void run_client(Shared& sh, int id) {
  std::mt19937_64 rng(0x5eed0000u + static_cast<std::uint64_t>(id));
  auto uniform = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  std::unique_ptr<dbmgr::DatabaseManager> m;
  std::int64_t& committed = sh.committed[static_cast<std::size_t>(id)];
  std::int64_t seq = 0;
  const std::string who = "client " + std::to_string(id);
  const std::string count_sql = "SELECT count(*) FROM items WHERE client = ?";
  const std::string insert_sql = "INSERT INTO items(client, seq) VALUES (?, ?)";
  // The first pause spreads the clients' first requests over the think time.
  std::this_thread::sleep_for(std::chrono::milliseconds(uniform(0, sh.cfg.think_max_ms)));
  while (!sh.stop.load(std::memory_order_relaxed) && Clock::now() < sh.deadline) {
    if (!m) m = std::make_unique<dbmgr::DatabaseManager>(sh.options("dbmgr-soak"));
    const int r = uniform(0, 99);
    std::string what;
    try {
      if (r < 35) {
        what = "read-only one-shot count";
        auto n = m->execute(count_sql, {id}, dbmgr::Access::kReadOnly).scalar<std::int64_t>();
        if (n != committed) {
          sh.problems.add(who + ": a read-only one-shot counted " + std::to_string(n) + " own rows, " +
                          std::to_string(committed) + " are committed");
        }
      } else if (r < 70) {
        what = "one-shot INSERT";
        auto res = m->execute(insert_sql, {id, ++seq});
        ++committed;
        if (res.affected_rows() != 1) {
          sh.problems.add(who + ": a one-shot INSERT reported " + std::to_string(res.affected_rows()) +
                          " affected rows");
        }
      } else if (r < 95) {
        what = "session transaction";
        const bool roll_back = uniform(0, 9) == 0;
        dbmgr::Session s = m->get_session();
        s.execute(insert_sql, {id, ++seq});
        s.execute(insert_sql, {id, ++seq});
        auto n = s.execute(count_sql, {id}).scalar<std::int64_t>();
        if (n != committed + 2) {
          sh.problems.add(who + ": inside its transaction it counted " + std::to_string(n) + " own rows, not " +
                          std::to_string(committed + 2));
        }
        if (roll_back) {
          s.rollback();
          sh.rollbacks.fetch_add(1, std::memory_order_relaxed);
        } else {
          what = "commit";
          s.commit();
          committed += 2;
        }
      } else {
        m.reset();  // closes the socket; the next operation connects afresh
        sh.reconnects.fetch_add(1, std::memory_order_relaxed);
      }
      sh.ops.fetch_add(1, std::memory_order_relaxed);
    } catch (const dbmgr::Error& e) {
      // Nothing here may fail; an INSERT or commit that did leaves its outcome unknown.
      sh.problems.add(who + ": " + what + " failed: " + e.what());
      if (what != "read-only one-shot count") sh.uncertain[static_cast<std::size_t>(id)] = 1;
      m.reset();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(uniform(sh.cfg.think_min_ms, sh.cfg.think_max_ms)));
  }
  m.reset();
}

// ---- the daemon seen from /proc ----

struct Sample {
  int second = 0;
  int clients = 0;  // as dbmgrd counts them (the asking admin connection excluded)
  long rss_kib = 0;
  int fds = 0;
  std::int64_t ops = 0;  // in this second
  double probe_max_ms = 0;
};

// What the daemon says about its clients; -1 when it does not answer.
int daemon_clients(const Daemon& d) {
  try {
    return d.admin(Cmd::kStatus)["clients"].get<int>() - 1;  // without the asking one
  } catch (const std::exception&) {
    return -1;
  }
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  auto i = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

std::int64_t count_rows_directly(const std::string& path, std::map<std::int64_t, std::int64_t>& per_client) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    std::string msg = db != nullptr ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    throw std::runtime_error("cannot open " + path + " directly: " + msg);
  }
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db, "SELECT client, count(*) FROM items GROUP BY client", -1, &st, nullptr) != SQLITE_OK) {
    std::string msg = sqlite3_errmsg(db);
    sqlite3_close(db);
    throw std::runtime_error("sqlite3 direct: " + msg);
  }
  std::int64_t total = 0;
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    per_client[sqlite3_column_int64(st, 0)] = sqlite3_column_int64(st, 1);
    total += sqlite3_column_int64(st, 1);
  }
  std::string msg = sqlite3_errmsg(db);
  sqlite3_finalize(st);
  sqlite3_close(db);
  if (rc != SQLITE_DONE) throw std::runtime_error("sqlite3 direct: " + msg);
  return total;
}

int run(Config& cfg) {
  // One descriptor per client socket here; the daemon inherits the limit and raises its own.
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  const auto fd_needed = static_cast<rlim_t>(cfg.clients) + 200;
  if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < fd_needed) {
    int fewer = static_cast<int>(rl.rlim_cur) - 200;
    std::cout << "dbmgr-soak: the descriptor limit is " << rl.rlim_cur << " (hard), too low for "
              << cfg.clients << " clients: running " << std::max(fewer, 1) << " clients instead\n";
    cfg.clients = std::max(fewer, 1);
  }

  DaemonOptions opts;
  opts.log_level = "warn";
  // A page cache of 2 MiB per connection fills in the warm-up (the table outgrows it in
  // seconds), so what RSS does after it is the daemon's own memory. No overflow: the reader
  // connections, and their descriptors, are the same after the warm-up as at the end.
  opts.config_yaml =
      "drain_timeout: 5s\n"
      "pool:\n  pool_size: 4\n  max_overflow: 0\n  pool_timeout: 60s\n"
      "sqlite:\n  readers: 4\n  cache_size: 2MiB\n";
  opts.env = {{"DATABASE_TYPE", "sqlite"}, {"DATABASE_NAME", "soak"}};
  Daemon d(opts);
  signal(SIGPIPE, SIG_IGN);
  const std::string db_path = d.data_dir() + "/soak.db";

  Shared sh;
  sh.cfg = cfg;
  sh.socket = d.socket();
  sh.committed.assign(static_cast<std::size_t>(cfg.clients), 0);
  sh.uncertain.assign(static_cast<std::size_t>(cfg.clients), 0);
  {
    dbmgr::DatabaseManager m(sh.options("dbmgr-soak-setup"));
    m.execute("CREATE TABLE items (client INTEGER NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (client, seq))");
  }
  std::cout << "dbmgr-soak: sqlite, " << cfg.clients << " clients (one thread and socket each), " << cfg.seconds
            << " s, think " << cfg.think_min_ms << "-" << cfg.think_max_ms << " ms; dbmgrd pid " << d.pid()
            << ", folder " << d.dir() << std::endl;

  const auto start = Clock::now();
  sh.deadline = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(cfg.seconds));

  // The probe: its own manager, one one-shot every 100 ms, latencies kept.
  std::mutex probe_mutex;
  std::vector<double> probe_ms;       // every answer of the run
  double probe_second_max = 0;        // since the last sample
  std::int64_t probe_failures = 0;
  std::thread probe([&] {
    dbmgr::DatabaseManager m(sh.options("dbmgr-soak-probe"));
    while (Clock::now() < sh.deadline) {
      auto t0 = Clock::now();
      try {
        auto v = m.execute("SELECT 41 + 1", {}, dbmgr::Access::kReadOnly).scalar<std::int64_t>();
        double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
        std::lock_guard<std::mutex> lock(probe_mutex);
        probe_ms.push_back(ms);
        probe_second_max = std::max(probe_second_max, ms);
        if (v != 42) sh.problems.add("probe: SELECT 41 + 1 returned " + std::to_string(v));
      } catch (const dbmgr::Error& e) {
        std::lock_guard<std::mutex> lock(probe_mutex);
        ++probe_failures;
        sh.problems.add(std::string("probe: the one-shot failed: ") + e.what());
      }
      std::this_thread::sleep_until(t0 + std::chrono::milliseconds(100));
    }
  });

  // The clients: plain pthreads with 1 MiB stacks (std::thread takes 8 MiB of address space each).
  std::vector<pthread_t> threads;
  struct Arg {
    Shared* sh;
    int id;
  };
  std::vector<Arg> args(static_cast<std::size_t>(cfg.clients));
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, kThreadStack);
  for (int i = 0; i < cfg.clients; ++i) {
    args[static_cast<std::size_t>(i)] = Arg{&sh, i};
    pthread_t t;
    int rc = pthread_create(
        &t, &attr,
        [](void* p) -> void* {
          auto* a = static_cast<Arg*>(p);
          a->sh->running.fetch_add(1);
          try {
            run_client(*a->sh, a->id);
          } catch (const std::exception& e) {
            a->sh->problems.add("client " + std::to_string(a->id) + ": " + e.what());
          }
          a->sh->running.fetch_sub(1);
          return nullptr;
        },
        &args[static_cast<std::size_t>(i)]);
    if (rc != 0) {
      sh.stop = true;
      for (pthread_t j : threads) pthread_join(j, nullptr);
      probe.join();
      throw std::runtime_error("pthread_create failed after " + std::to_string(i) + " threads: " + std::strerror(rc));
    }
    threads.push_back(t);
  }
  pthread_attr_destroy(&attr);

  // Sampling, once a second, on this thread.
  std::vector<Sample> samples;
  std::int64_t last_ops = 0;
  for (int s = 1;; ++s) {
    std::this_thread::sleep_until(start + std::chrono::seconds(s));
    if (Clock::now() >= sh.deadline + std::chrono::milliseconds(500)) break;
    Sample x;
    x.second = s;
    x.rss_kib = dbmgr::test::rss_kib(d.pid());
    x.fds = dbmgr::test::open_fds(d.pid());
    x.clients = daemon_clients(d);
    std::int64_t ops = sh.ops.load();
    x.ops = ops - last_ops;
    last_ops = ops;
    {
      std::lock_guard<std::mutex> lock(probe_mutex);
      x.probe_max_ms = probe_second_max;
      probe_second_max = 0;
    }
    samples.push_back(x);
    if (s % 10 == 0) {
      std::cout << "  t=" << s << " s: clients " << x.clients << ", rss " << x.rss_kib << " KiB, fds " << x.fds
                << ", " << x.ops << " ops/s, problems " << sh.problems.count() << std::endl;
    }
  }
  for (pthread_t t : threads) pthread_join(t, nullptr);
  probe.join();
  const double ran = std::chrono::duration<double>(Clock::now() - start).count();

  std::vector<std::string> violations;
  auto violation = [&](const std::string& what) { violations.push_back(what); };
  for (const auto& p : sh.problems.examples()) violation(p);
  if (sh.problems.count() > sh.problems.examples().size()) {
    violation("... " + std::to_string(sh.problems.count() - sh.problems.examples().size()) + " more client problems");
  }

  // After every client is gone: the daemon's descriptors that are not client sockets.
  int idle_clients = -1, idle_fds = -1;
  dbmgr::test::eventually([&] {
    idle_clients = daemon_clients(d);
    idle_fds = dbmgr::test::open_fds(d.pid());
    return idle_clients == 0;
  });
  const long end_rss = dbmgr::test::rss_kib(d.pid());

  if (!cfg.csv.empty()) {
    std::ofstream out(cfg.csv);
    out << "second,clients,rss_kib,fds,ops_per_s,probe_max_ms\n";
    for (const auto& x : samples) {
      out << x.second << ',' << x.clients << ',' << x.rss_kib << ',' << x.fds << ',' << x.ops << ','
          << std::fixed << std::setprecision(2) << x.probe_max_ms << "\n";
    }
    if (!out) violation("could not write " + cfg.csv);
  }

  // ---- flatness, after the warm-up ----
  const std::size_t n = samples.size();
  long rss_half = 0, rss_max2 = 0, rss_warm = 0;
  int fds_warm = 0, fds_max2 = 0, clients_warm = 0;
  if (n < 4) {
    violation("only " + std::to_string(n) + " samples: too short a run to judge");
  } else {
    const Sample& warm = samples[n / 4 - 1];
    const Sample& half = samples[n / 2];
    rss_warm = warm.rss_kib;
    fds_warm = warm.fds;
    clients_warm = warm.clients;
    rss_half = half.rss_kib;
    for (std::size_t i = n / 2; i < n; ++i) {
      rss_max2 = std::max(rss_max2, samples[i].rss_kib);
      fds_max2 = std::max(fds_max2, samples[i].fds);
    }
    if (fds_max2 - fds_warm > kFdSlack) {
      violation("descriptors grow: " + std::to_string(fds_max2) + " at most over the second half, " +
                std::to_string(fds_warm) + " at the end of the warm-up (slack " + std::to_string(kFdSlack) + ")");
    }
    if (idle_clients != 0) {
      violation("dbmgrd still counts " + std::to_string(idle_clients) + " clients after every client closed");
    } else if (clients_warm >= 0) {
      int base_warm = fds_warm - clients_warm, base_end = idle_fds;
      if (std::abs(base_end - base_warm) > kIdleFdSlack) {
        violation("descriptors besides client sockets: " + std::to_string(base_warm) +
                  " at the end of the warm-up, " + std::to_string(base_end) + " after every client left (slack " +
                  std::to_string(kIdleFdSlack) + "): a descriptor leak");
      }
    }
    const long rss_bound = std::max(kRssSlackKib, static_cast<long>(kRssSlackFraction * static_cast<double>(rss_half)));
    if (cfg.rss_check && rss_max2 - rss_half >= rss_bound) {
      violation("RSS grows: " + std::to_string(rss_max2) + " KiB at most over the second half, " +
                std::to_string(rss_half) + " KiB at its start (bound " + std::to_string(rss_bound) + " KiB)");
    }
  }

  // ---- the rows, read directly ----
  std::map<std::int64_t, std::int64_t> per_client;
  std::int64_t stored = 0, expected = 0;
  std::size_t uncertain = 0;
  try {
    stored = count_rows_directly(db_path, per_client);
    std::size_t mismatches = 0;
    for (int i = 0; i < cfg.clients; ++i) {
      const auto want = sh.committed[static_cast<std::size_t>(i)];
      expected += want;
      if (sh.uncertain[static_cast<std::size_t>(i)] != 0) {
        ++uncertain;
        continue;
      }
      auto it = per_client.find(i);
      const std::int64_t got = it == per_client.end() ? 0 : it->second;
      if (got != want && ++mismatches <= 5) {
        violation("client " + std::to_string(i) + ": " + std::to_string(got) + " rows stored, " +
                  std::to_string(want) + " committed");
      }
    }
    for (const auto& [client, rows] : per_client) {
      if (client < 0 || client >= cfg.clients) violation("rows of a client that never ran: " + std::to_string(client));
    }
    if (mismatches > 5) violation("... " + std::to_string(mismatches - 5) + " more clients whose rows differ");
  } catch (const std::exception& e) {
    violation(std::string("the final count could not read the database: ") + e.what());
  }
  if (cfg.seconds >= 10 && sh.reconnects.load() == 0) violation("coverage: no client ever disconnected");

  int status = d.stop();
  if (status != 0) violation("dbmgrd did not exit 0 on SIGTERM (status " + std::to_string(status) + ")");

  std::vector<double> lat;
  {
    std::lock_guard<std::mutex> lock(probe_mutex);
    lat = probe_ms;
  }
  std::int64_t total_ops = sh.ops.load();
  std::cout << "\n==== dbmgr-soak summary\n"
            << "ran " << std::fixed << std::setprecision(1) << ran << " s, " << cfg.clients << " clients: "
            << total_ops << " operations (" << std::setprecision(0) << static_cast<double>(total_ops) / cfg.seconds
            << "/s), " << sh.reconnects.load() << " reconnects, " << sh.rollbacks.load() << " rollbacks, "
            << sh.problems.count() << " client problems\n"
            << "rows: " << stored << " stored (read directly), " << expected << " committed by the clients"
            << (uncertain > 0 ? ", " + std::to_string(uncertain) + " clients with an unknown outcome" : "") << "\n"
            << "dbmgrd rss KiB: end of warm-up " << rss_warm << ", half " << rss_half << ", max of second half "
            << rss_max2 << ", after the clients left " << end_rss << (cfg.rss_check ? "" : " (not asserted)") << "\n"
            << "dbmgrd fds: end of warm-up " << fds_warm << " (" << clients_warm << " clients), max of second half "
            << fds_max2 << ", after the clients left " << idle_fds << " (" << idle_clients << " clients)\n"
            << std::setprecision(2) << "probe one-shot latency ms: p50 " << percentile(lat, 0.50) << ", p99 "
            << percentile(lat, 0.99) << ", max " << percentile(lat, 1.0) << " over " << lat.size() << " answers, "
            << probe_failures << " failures\n";
  if (!cfg.csv.empty()) std::cout << "curve written to " << cfg.csv << "\n";
  if (violations.empty()) {
    std::cout << "RESULT: PASS\n";
    return 0;
  }
  std::cout << "violations: " << violations.size() << "\n";
  for (const auto& v : violations) std::cout << "  " << v << "\n";
  std::cout << "RESULT: FAIL\n";
  return kExitViolations;
}

}  // namespace

int main(int argc, char** argv) {
  doctest::Context doctest_context;
  doctest_context.setAsDefaultForAssertsOutOfTestCases();
  doctest_context.setAssertHandler([](const doctest::AssertData& ad) {
    std::cerr << "dbmgr-soak: harness check failed: " << ad.m_expr << "\n";
  });
  Config cfg;
  if (!parse(argc, argv, cfg)) return kExitBroken;
  if (env_value("DBMGRD") == nullptr) {
    std::cerr << "dbmgr-soak: $DBMGRD is not set (the dbmgrd binary; meson test sets it)\n";
    return kExitBroken;
  }
  try {
    return run(cfg);
  } catch (const std::exception& e) {
    std::cerr << "dbmgr-soak: the test could not run: " << e.what() << "\n";
    return kExitBroken;
  }
}
