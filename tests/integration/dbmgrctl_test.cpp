// dbmgrctl against a real dbmgrd: every command, human and --json, reload, kill, permissions,
// drain, /metrics and the one-line failures, with figures matching what the test did.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "harness.hpp"

using namespace std::chrono_literals;
using dbmgr::test::Daemon;
using dbmgr::test::DaemonOptions;
using dbmgr::test::fork_child;
using dbmgr::test::TempDir;
using dbmgr::test::wait_child;
using json = nlohmann::json;

namespace {

constexpr uid_t kNobody = 65534;

struct Run {
  int code = -1;
  std::string out;
  std::string err;
};

std::string slurp_fd(int fd) {
  std::string s;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) s.append(buf, static_cast<std::size_t>(n));
  return s;
}

const char* ctl_path() {
  const char* p = std::getenv("DBMGRCTL");
  REQUIRE_MESSAGE(p != nullptr, "$DBMGRCTL is not set (run the tests with meson test)");
  return p;
}

// Runs dbmgrctl with `args`; stdout and stderr go to files (no pipe deadlock on big output).
Run ctl(const std::vector<std::string>& args, const std::string& socket = {}) {
  TempDir tmp;
  std::string out_path = tmp.path() + "/out", err_path = tmp.path() + "/err";
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    int out = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int err = open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(out, 1);
    dup2(err, 2);
    std::vector<std::string> all{ctl_path()};
    if (!socket.empty()) {
      all.push_back("--socket");
      all.push_back(socket);
    }
    all.insert(all.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : all) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  Run r;
  r.code = wait_child(pid);
  int out = open(out_path.c_str(), O_RDONLY);
  int err = open(err_path.c_str(), O_RDONLY);
  r.out = slurp_fd(out);
  r.err = slurp_fd(err);
  close(out);
  close(err);
  return r;
}

Run ctl(const Daemon& d, std::vector<std::string> args) { return ctl(args, d.socket()); }

json ctl_json(const Daemon& d, std::vector<std::string> args) {
  args.insert(args.begin(), "--json");
  Run r = ctl(d, args);
  REQUIRE_MESSAGE(r.code == 0, r.err);
  return json::parse(r.out);
}

bool contains(const std::string& s, std::string_view part) {
  return s.find(part) != std::string::npos;
}

int count_lines(const std::string& s) {
  int n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

json find_pool(const json& pools, std::string_view database, std::string_view role) {
  for (const auto& p : pools) {
    if (p["database"] == database && p["role"] == role) return p;
  }
  return nullptr;
}

json my_sessions(const json& sessions) {
  json mine = json::array();
  for (const auto& s : sessions) {
    if (s["client_pid"] == getpid()) mine.push_back(s);
  }
  return mine;
}

// Polls `pred` for up to 5 s.
template <typename F>
bool eventually(F pred) {
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return pred();
}

std::string pool_yaml(int size, int overflow, const std::string& timeout,
                      const std::string& extra = {}) {
  return "socket:\n  mode: \"0660\"\n  group: nogroup\npool:\n  pool_size: " + std::to_string(size) +
         "\n  max_overflow: " + std::to_string(overflow) + "\n  pool_timeout: " + timeout + "\n" +
         extra;
}

// A loopback TCP port nobody listens on right now.
int free_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0);
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

// One HTTP/1.0 request over a connected socket; returns the whole response.
std::string http_over(int fd, const std::string& request) {
  REQUIRE(send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
          static_cast<ssize_t>(request.size()));
  std::string resp;
  pollfd p{fd, POLLIN, 0};
  while (poll(&p, 1, 5000) > 0) {
    char buf[8192];
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    resp.append(buf, static_cast<std::size_t>(n));
  }
  close(fd);
  return resp;
}

std::string http_tcp(int port, const std::string& request) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0);
  return http_over(fd, request);
}

std::string http_unix(const std::string& path, const std::string& request) {
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, path.c_str(), sizeof(a.sun_path) - 1);
  REQUIRE(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0);
  return http_over(fd, request);
}

// Prometheus text -> {"name{labels}": value}; CHECKs every line's syntax on the way.
std::map<std::string, double> parse_prometheus(const std::string& body) {
  std::map<std::string, double> samples;
  std::istringstream in(body);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    if (line[0] == '#') {
      bool ok = line.rfind("# HELP ", 0) == 0 || line.rfind("# TYPE ", 0) == 0;
      CHECK_MESSAGE(ok, line);
      if (line.rfind("# TYPE ", 0) == 0) {
        std::string type = line.substr(line.rfind(' ') + 1);
        CHECK_MESSAGE((type == "gauge" || type == "counter"), line);
      }
      continue;
    }
    auto sp = line.rfind(' ');
    REQUIRE_MESSAGE(sp != std::string::npos, line);
    std::string key = line.substr(0, sp);
    char* end = nullptr;
    double v = std::strtod(line.c_str() + sp + 1, &end);
    CHECK_MESSAGE(*end == '\0', line);
    CHECK_MESSAGE(samples.count(key) == 0, ("duplicate sample " + key));
    samples[key] = v;
  }
  return samples;
}

void make_reachable_for_nobody(const Daemon& d) { REQUIRE(chmod(d.dir().c_str(), 0755) == 0); }

}  // namespace

TEST_CASE("every read command, human and --json, follows sessions and pools as they change") {
  Daemon d({.config_yaml = pool_yaml(2, 0, "5s")});
  dbmgr::DatabaseManager m(d.options("test", "ctl"));
  m.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, v TEXT)");

  // No session yet.
  CHECK(my_sessions(ctl_json(d, {"sessions"})).empty());
  auto s = std::make_unique<dbmgr::Session>(m.get_session());
  s->execute("INSERT INTO items(v) VALUES ('a')");

  // In a transaction: the session, the writer in use.
  json sessions = my_sessions(ctl_json(d, {"sessions"}));
  REQUIRE(sessions.size() == 1);
  json ses = sessions[0];
  CHECK(ses["database"] == "test.ctl");
  CHECK(ses["state"] == "idle in transaction");
  CHECK(ses["client_pid"] == getpid());
  CHECK(ses["age_s"].get<double>() >= 0);
  CHECK(ses["in_transaction_s"].get<double>() > 0);
  std::string id = ses["id"];
  Run human = ctl(d, {"sessions"});
  REQUIRE(human.code == 0);
  CHECK(contains(human.out, "id"));
  CHECK(contains(human.out, "in_transaction"));
  CHECK(contains(human.out, id));
  CHECK(contains(human.out, "idle in transaction"));

  json w = find_pool(ctl_json(d, {"pools"}), "test.ctl", "writer");
  REQUIRE(w.is_object());
  CHECK(w["type"] == "sqlite");
  CHECK(w["size"] == 1);  // a SQLite writer always has exactly one connection
  CHECK(w["max_overflow"] == 0);
  CHECK(w["in_use"] == 1);
  CHECK(w["idle"] == 0);
  CHECK(w["waiting"] == 0);
  json r = find_pool(ctl_json(d, {"pools"}), "test.ctl", "reader");
  REQUIRE(r.is_object());
  CHECK(r["size"] == 2);
  for (const char* k : {"leases", "waits", "wait_ms_max", "wait_ms_avg", "timeouts", "errors"}) {
    CHECK_MESSAGE(w.contains(k), k);
  }

  // A second writer waits for the one connection the test holds.
  std::atomic<bool> done{false};
  std::thread other([&] {
    dbmgr::DatabaseManager m2(d.options("test", "ctl"));
    m2.execute("INSERT INTO items(v) VALUES ('b')");
    done = true;
  });
  CHECK(eventually(
      [&] { return find_pool(ctl_json(d, {"pools"}), "test.ctl", "writer")["waiting"] == 1; }));
  Run pools_human = ctl(d, {"pools"});
  CHECK(contains(pools_human.out, "in_use"));
  CHECK(contains(pools_human.out, "waiting"));
  // The writer row: database type role size overflow in_use idle opening waiting ...
  std::istringstream rows(pools_human.out);
  std::string line;
  bool saw_writer = false;
  while (std::getline(rows, line)) {
    std::istringstream cells(line);
    std::vector<std::string> c{std::istream_iterator<std::string>(cells), {}};
    if (c.size() >= 9 && c[0] == "test.ctl" && c[2] == "writer") {
      saw_writer = true;
      CHECK(c[1] == "sqlite");
      CHECK(c[5] == "1");  // in_use
      CHECK(c[6] == "0");  // idle
      CHECK(c[8] == "1");  // waiting
    }
  }
  CHECK(saw_writer);

  s->commit();
  other.join();
  CHECK(done);
  w = find_pool(ctl_json(d, {"pools"}), "test.ctl", "writer");
  CHECK(w["in_use"] == 0);
  CHECK(w["idle"] == 1);
  CHECK(w["waiting"] == 0);
  CHECK(w["waits"].get<int>() >= 1);
  CHECK(w["wait_ms_max"].get<double>() > 0);
  CHECK(w["timeouts"] == 0);
  // After the commit the session is idle, then gone with its manager's connection.
  sessions = my_sessions(ctl_json(d, {"sessions"}));
  REQUIRE(sessions.size() == 1);
  CHECK(sessions[0]["state"] == "idle");
  CHECK(sessions[0]["in_transaction_s"] == 0);
  s.reset();
  { dbmgr::DatabaseManager gone = std::move(m); }
  CHECK(eventually([&] { return my_sessions(ctl_json(d, {"sessions"})).empty(); }));

  // status, clients, engines, ping.
  json st = ctl_json(d, {"status"});
  CHECK(st["version"] == "0.1.0");
  CHECK(st["pid"] == d.pid());
  CHECK(st["config_file"] == d.config_path());
  CHECK(st["state"] == "running");
  CHECK(st["engines"] == 1);
  CHECK(st["rss_kb"].get<int>() > 0);
  CHECK(st["totals"]["transactions"].get<int>() >= 3);
  Run st_human = ctl(d, {"status"});
  CHECK(st_human.code == 0);
  CHECK(contains(st_human.out, "dbmgrd 0.1.0, pid " + std::to_string(d.pid())));
  CHECK(contains(st_human.out, "memory (RSS)"));
  CHECK(contains(st_human.out, "rollbacks on disconnect"));

  dbmgr::DatabaseManager held(d.options("test", "ctl"));
  auto hs = held.get_session();
  hs.execute("SELECT 1");
  json clients = ctl_json(d, {"clients"});
  bool saw_me = false;
  for (const auto& c : clients) saw_me = saw_me || (c["pid"] == getpid() && c["sessions"] == 1);
  CHECK(saw_me);
  CHECK(contains(ctl(d, {"clients"}).out, "dbmgrctl"));  // dbmgrctl sees itself
  json engines = ctl_json(d, {"engines"});
  REQUIRE(engines.size() == 1);
  CHECK(engines[0]["database"] == "test.ctl");
  CHECK(engines[0]["uri"] == "sqlite:///" + d.data_dir() + "/test.ctl.db");
  CHECK(contains(ctl(d, {"engines"}).out, "test.ctl"));
  json ping = ctl_json(d, {"ping"});
  CHECK(ping["rtt_ms"].get<double>() > 0);
  CHECK(contains(ctl(d, {"ping"}).out, "answered in"));
}

TEST_CASE("counters are exact: 6 transactions of 15 statements say 6 and 15") {
  Daemon d;
  dbmgr::DatabaseManager m(d.options("test", "count"));
  m.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)");
  json before = ctl_json(d, {"status"})["totals"];
  const int statements_per_tx[6] = {3, 3, 3, 2, 2, 2};
  for (int n : statements_per_tx) {
    m.run([&](dbmgr::Session& s) {
      for (int i = 0; i < n; ++i) s.execute("INSERT INTO t(v) VALUES (?)", {i});
    });
  }
  json after = ctl_json(d, {"status"})["totals"];
  CHECK(after["transactions"].get<int>() - before["transactions"].get<int>() == 6);
  CHECK(after["statements"].get<int>() - before["statements"].get<int>() == 15);
  CHECK(after["errors"] == before["errors"]);
  // From a fresh daemon the totals are exactly the work done: 1 one-shot + 6 transactions.
  CHECK(after["transactions"] == 7);
  CHECK(after["statements"] == 16);
  Run human = ctl(d, {"status"});
  CHECK(contains(human.out, "transactions             7"));
  CHECK(contains(human.out, "statements               16"));
}

TEST_CASE("reload raises the reader pool from 1 to 3; a broken file is refused, the size stays") {
  Daemon d({.config_yaml = pool_yaml(1, 0, "1s")});
  dbmgr::DatabaseManager m(d.options("test", "reload"));
  m.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)");
  m.execute("INSERT INTO t DEFAULT VALUES");
  auto read_in_tx = [&](dbmgr::Session& s) {
    CHECK(s.execute("SELECT count(*) FROM t").scalar<std::int64_t>() == 1);
  };
  {
    auto a = m.get_session(dbmgr::Access::kReadOnly);
    read_in_tx(a);  // holds the only reader connection
    auto b = m.get_session(dbmgr::Access::kReadOnly);
    try {
      b.execute("SELECT 1");
      FAIL("a second reader got a connection from a pool of 1");
    } catch (const dbmgr::Error& e) {
      CHECK(e.category() == dbmgr::ErrorCategory::kPoolExhausted);
    }
  }
  std::ofstream(d.config_path()) << pool_yaml(3, 0, "1s");
  Run r = ctl(d, {"reload"});
  CHECK_MESSAGE(r.code == 0, r.err);
  CHECK(contains(r.out, "configuration reloaded from " + d.config_path()));
  json reader = find_pool(ctl_json(d, {"pools"}), "test.reload", "reader");
  CHECK(reader["size"] == 3);

  // Three read transactions at once, in three threads, without a restart.
  std::atomic<int> holding{0};
  std::atomic<int> failures{0};
  std::atomic<bool> release{false};
  std::vector<std::thread> threads;
  for (int i = 0; i < 3; ++i) {
    threads.emplace_back([&] {
      try {
        dbmgr::DatabaseManager mt(d.options("test", "reload"));
        auto s = mt.get_session(dbmgr::Access::kReadOnly);
        s.execute("SELECT count(*) FROM t");
        ++holding;
        auto deadline = std::chrono::steady_clock::now() + 5s;
        while (!release && std::chrono::steady_clock::now() < deadline) {
          std::this_thread::sleep_for(5ms);
        }
        s.commit();
      } catch (...) {
        ++failures;
      }
    });
  }
  CHECK(eventually(
      [&] { return find_pool(ctl_json(d, {"pools"}), "test.reload", "reader")["in_use"] == 3; }));
  CHECK(holding == 3);
  release = true;
  for (auto& t : threads) t.join();
  CHECK(failures == 0);
  CHECK(holding == 3);

  // A broken file: refused with file, line and key; the running size stays.
  std::ofstream(d.config_path()) << "pool:\n  pool_size: many\n";
  Run bad = ctl(d, {"reload"});
  CHECK(bad.code == 1);
  CHECK(bad.out.empty());
  CHECK(count_lines(bad.err) == 1);
  CHECK(contains(bad.err, "the old one stays"));
  CHECK(contains(bad.err, d.config_path() + ":2: pool.pool_size"));
  CHECK(find_pool(ctl_json(d, {"pools"}), "test.reload", "reader")["size"] == 3);
  CHECK(ctl_json(d, {"status"})["state"] == "running");
}

TEST_CASE("overflow connections stay idle after a burst and close after 10 s without use") {
  // Reader pool: size 1, max_overflow 2. Three read transactions at once open all three.
  Daemon d({.config_yaml = pool_yaml(1, 2, "5s")});
  dbmgr::DatabaseManager m(d.options("test", "overflow"));
  m.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)");
  std::atomic<int> holding{0};
  std::atomic<bool> release{false};
  std::vector<std::thread> threads;
  for (int i = 0; i < 3; ++i) {
    threads.emplace_back([&] {
      dbmgr::DatabaseManager mt(d.options("test", "overflow"));
      auto s = mt.get_session(dbmgr::Access::kReadOnly);
      s.execute("SELECT count(*) FROM t");
      ++holding;
      auto deadline = std::chrono::steady_clock::now() + 5s;
      while (!release && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(5ms);
      }
      s.commit();
    });
  }
  CHECK(eventually(
      [&] { return find_pool(ctl_json(d, {"pools"}), "test.overflow", "reader")["in_use"] == 3; }));
  release = true;
  for (auto& t : threads) t.join();
  CHECK(holding == 3);
  auto started = std::chrono::steady_clock::now();

  // Back from the burst: all three kept, none closed, the next burst needs no new login.
  // (That they close after exactly 10 s idle is tested with an injected clock in
  // tests/daemon/pool_test.cpp, without waiting 10 s.)
  json r = find_pool(ctl_json(d, {"pools"}), "test.overflow", "reader");
  CHECK(r["in_use"] == 0);
  CHECK(r["idle"] == 3);
  CHECK(r["closed"] == 0);
  std::this_thread::sleep_for(1s);
  r = find_pool(ctl_json(d, {"pools"}), "test.overflow", "reader");
  CHECK(r["idle"] == 3);
  CHECK(r["closed"] == 0);
  CHECK(dbmgr::test::seconds_since(started) < 10);
  CHECK(m.execute("SELECT count(*) FROM t", {}, dbmgr::Access::kReadOnly).scalar<std::int64_t>() ==
        0);
  CHECK(find_pool(ctl_json(d, {"pools"}), "test.overflow", "reader")["opened"] == 3);
}

TEST_CASE("servers lists every backend connection with its state and holder") {
  Daemon d;
  dbmgr::DatabaseManager m(d.options("test", "servers"));
  m.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)");
  auto s = m.get_session();
  s.execute("INSERT INTO t VALUES (1)");
  json servers = ctl_json(d, {"servers"});
  json mine = json::array();
  for (auto& c : servers) {
    if (c["database"] == "test.servers") mine.push_back(c);
  }
  REQUIRE(mine.size() >= 1);
  json writer;
  for (auto& c : mine) {
    if (c["role"] == "writer") writer = c;
  }
  REQUIRE(writer.is_object());
  CHECK(writer["state"] == "leased");
  CHECK(writer["holder"] == "session");
  std::string session = writer["session"];
  json sessions = my_sessions(ctl_json(d, {"sessions"}));
  bool found = false;
  for (auto& x : sessions) found = found || x["id"] == session;
  CHECK_MESSAGE(found, "the holder ", session, " is not among ", sessions.dump());
  Run human = ctl(d, {"servers"});
  CHECK(human.code == 0);
  CHECK(contains(human.out, "database"));
  CHECK(contains(human.out, "leased"));
  s.commit();
  for (auto& c : ctl_json(d, {"servers"})) {
    if (c["database"] == "test.servers" && c["role"] == "writer") CHECK(c["state"] == "idle");
  }
}

TEST_CASE("a client name with control characters is shown escaped, never sent to the terminal") {
  Daemon d;
  dbmgr::Options o = d.options("test", "names");
  o.client_name = "evil\x1b[31mred\nfake line";
  dbmgr::DatabaseManager m(o);
  m.ping();
  CHECK(m.execute("SELECT 1").scalar<std::int64_t>() == 1);
  Run r = ctl(d, {"clients"});
  CHECK(r.code == 0);
  CHECK_FALSE(contains(r.out, "\x1b"));
  CHECK_FALSE(contains(r.out, "\nfake"));
  CHECK(contains(r.out, "evil\\x1B[31mred\\x0Afake line"));
}

TEST_CASE("kill ends a session: its transaction rolls back, its next request says killed") {
  Daemon d;
  dbmgr::DatabaseManager m(d.options("test", "kill"));
  m.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)");
  auto s = m.get_session();
  s.execute("INSERT INTO t(v) VALUES ('doomed')");
  json mine = my_sessions(ctl_json(d, {"sessions"}));
  REQUIRE(mine.size() == 1);
  std::string id = mine[0]["id"];
  Run r = ctl(d, {"kill", id});
  CHECK_MESSAGE(r.code == 0, r.err);
  CHECK(contains(r.out, "session " + id + " killed"));
  try {
    s.execute("INSERT INTO t(v) VALUES ('after')");
    FAIL("a killed session ran a statement");
  } catch (const dbmgr::Error& e) {
    CHECK(e.category() == dbmgr::ErrorCategory::kKilled);
    CHECK(contains(e.message(), "killed by an operator"));
  }
  CHECK(m.execute("SELECT count(*) FROM t").scalar<std::int64_t>() == 0);
  CHECK(find_pool(ctl_json(d, {"pools"}), "test.kill", "writer")["in_use"] == 0);

  // --json, and an unknown session.
  auto s2 = m.get_session();
  s2.execute("INSERT INTO t(v) VALUES ('x')");
  json again = my_sessions(ctl_json(d, {"sessions"}));
  std::string id2;
  for (const auto& x : again) {
    if (x["state"] == "idle in transaction") id2 = x["id"];
  }
  REQUIRE(!id2.empty());
  // A real id with something around it is malformed, and kills nothing.
  const std::string cid2 = id2.substr(0, id2.find(':'));
  for (const std::string& bad : {id2 + "garbage", id2 + ":3", cid2 + "x" + id2.substr(cid2.size()),
                                 ":" + id2.substr(cid2.size() + 1), cid2 + ":"}) {
    Run r2 = ctl(d, {"kill", bad});
    CHECK_MESSAGE(r2.code == 1, bad);
    CHECK_MESSAGE(contains(r2.err, "CLIENT:SESSION"), bad);
  }
  CHECK(ctl_json(d, {"kill", id2})["killed"] == id2);  // still there to be killed
  Run unknown = ctl(d, {"kill", "999:1"});
  CHECK(unknown.code == 5);
  CHECK(count_lines(unknown.err) == 1);
  CHECK(contains(unknown.err, "no session 999:1"));
  Run malformed = ctl(d, {"kill", "nonsense"});
  CHECK(malformed.code == 1);
  CHECK(contains(malformed.err, "CLIENT:SESSION"));
}

TEST_CASE("a non-admin uid may read but is refused reload, kill, drain and shutdown") {
  Daemon d({.config_yaml = "socket:\n  mode: \"0660\"\n  group: nogroup\n"});  // nobody's group
  make_reachable_for_nobody(d);
  dbmgr::DatabaseManager m(d.options("test", "perm"));
  auto s = m.get_session();
  s.execute("SELECT 1");
  std::string id = my_sessions(ctl_json(d, {"sessions"}))[0]["id"];
  std::string socket = d.socket();
  bool ctl_reachable = true;

  pid_t kid = fork_child([&] {
    if (setgroups(0, nullptr) != 0 || setgid(kNobody) != 0 || setuid(kNobody) != 0) {
      throw std::runtime_error("cannot become nobody");
    }
    dbmgr::AdminClient admin(socket);
    if (!contains(admin.status(), "\"version\"")) throw std::runtime_error("status failed");
    admin.pools();
    admin.sessions();
    int refused = 0;
    auto expect_refused = [&](auto call) {
      try {
        call();
      } catch (const dbmgr::Error& e) {
        if (e.category() == dbmgr::ErrorCategory::kPermission &&
            contains(e.message(), "uid 65534")) {
          ++refused;
        }
      }
    };
    expect_refused([&] { admin.reload(); });
    expect_refused([&] { admin.kill(id); });
    expect_refused([&] { admin.drain(); });
    expect_refused([&] { admin.shutdown(); });
    if (refused != 4) throw std::runtime_error("not every change was refused");
    // The same through dbmgrctl: exit 4 and one line naming the command.
    if (access(ctl_path(), X_OK) != 0) _exit(3);
    for (std::string cmd : {"reload", "drain", "shutdown"}) {
      Run r = ctl({cmd}, socket);
      if (r.code != 4 || count_lines(r.err) != 1 || !contains(r.err, "permission") ||
          !contains(r.err, cmd + " needs root")) {
        throw std::runtime_error("dbmgrctl " + cmd + ": exit " + std::to_string(r.code) + ": " +
                                 r.err);
      }
    }
    Run k = ctl({"kill", id}, socket);
    if (k.code != 4) throw std::runtime_error("dbmgrctl kill as nobody: " + k.err);
    Run st = ctl({"status"}, socket);
    if (st.code != 0) throw std::runtime_error("dbmgrctl status as nobody: " + st.err);
  });
  int code = wait_child(kid);
  if (code == 3) {
    ctl_reachable = false;
    MESSAGE("dbmgrctl is not executable by nobody here; checked through AdminClient only");
  } else {
    CHECK(code == 0);
  }
  (void)ctl_reachable;
  // Nothing changed: the session is alive, the daemon runs and is not draining.
  CHECK(s.execute("SELECT 2").scalar<std::int64_t>() == 2);
  CHECK(ctl_json(d, {"status"})["state"] == "running");
  CHECK(d.running());
}

TEST_CASE("the socket refuses nobody when its mode does not let them in") {
  Daemon d;  // default socket mode 0660, owned by root
  make_reachable_for_nobody(d);
  std::string socket = d.socket();
  pid_t kid = fork_child([&] {
    if (setgroups(0, nullptr) != 0 || setgid(kNobody) != 0 || setuid(kNobody) != 0) {
      throw std::runtime_error("cannot become nobody");
    }
    try {
      dbmgr::AdminClient(socket).status();
    } catch (const dbmgr::Error& e) {
      if (e.message() != "permission denied on " + socket +
                             " (run as root, the daemon's user or a member of the socket's "
                             "group)") {
        throw;
      }
      return;
    }
    throw std::runtime_error("nobody connected to a 0660 root socket");
  });
  CHECK(wait_child(kid) == 0);
}

TEST_CASE("drain keeps the daemon up, refuses new work, lets open transactions finish") {
  Daemon d({.config_yaml = "drain_timeout: 10s\n"});
  dbmgr::DatabaseManager m(d.options("test", "drain"));
  m.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)");
  auto s = m.get_session();
  s.execute("INSERT INTO t DEFAULT VALUES");
  Run r = ctl(d, {"drain"});
  CHECK_MESSAGE(r.code == 0, r.err);
  CHECK(contains(r.out, "draining"));
  json st = ctl_json(d, {"status"});
  CHECK(st["draining"] == true);
  CHECK(st["state"] == "draining");
  CHECK(contains(ctl(d, {"status"}).out, ", draining"));
  // The open transaction finishes; new work is refused.
  s.execute("INSERT INTO t DEFAULT VALUES");
  s.commit();
  try {
    m.execute("INSERT INTO t DEFAULT VALUES");
    FAIL("a one-shot ran while draining");
  } catch (const dbmgr::Error& e) {
    CHECK(e.category() == dbmgr::ErrorCategory::kShuttingDown);
  }
  std::this_thread::sleep_for(300ms);  // idle and drained: still up
  CHECK(ctl(d, {"ping"}).code == 0);
  // shutdown exits cleanly, and answers first.
  json bye = ctl_json(d, {"shutdown"});
  CHECK(bye["exiting"] == true);
  auto deadline = std::chrono::steady_clock::now() + 10s;
  int code = -1;
  while (std::chrono::steady_clock::now() < deadline) {
    Run p = ctl(d, {"ping"});
    if (p.code == 3) {
      code = p.code;
      CHECK(contains(p.err, "dbmgrd is not running"));
      break;
    }
    std::this_thread::sleep_for(20ms);
  }
  CHECK(code == 3);
  // The socket goes first; wait for the process to be gone (a zombie) before reaping it.
  CHECK(eventually([&] {
    std::ifstream stat("/proc/" + std::to_string(d.pid()) + "/stat");
    std::string pid, comm, state;
    stat >> pid >> comm >> state;
    return state == "Z";
  }));
  CHECK(d.stop() == 0);  // it had already exited with status 0
}

TEST_CASE("/metrics over loopback TCP: parseable, the same numbers as --json pools and status") {
  int port = free_port();
  Daemon d({.config_yaml = pool_yaml(
                2, 1, "5s", "metrics:\n  listen: \"127.0.0.1:" + std::to_string(port) + "\"\n")});
  dbmgr::DatabaseManager m(d.options("test", "metrics"));
  m.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)");
  auto s = m.get_session();
  s.execute("INSERT INTO t DEFAULT VALUES");  // holds the writer
  auto r = m.get_session(dbmgr::Access::kReadOnly);
  r.execute("SELECT count(*) FROM t");  // holds a reader

  json pools = ctl_json(d, {"pools"});
  json status = ctl_json(d, {"status"});
  std::string resp = http_tcp(port, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n");
  REQUIRE(resp.rfind("HTTP/1.0 200 OK\r\n", 0) == 0);
  CHECK(contains(resp, "Content-Type: text/plain; version=0.0.4"));
  std::string body = resp.substr(resp.find("\r\n\r\n") + 4);
  auto samples = parse_prometheus(body);
  REQUIRE(pools.size() == 2);
  for (const auto& p : pools) {
    std::string labels = "{database=\"" + p["database"].get<std::string>() + "\",type=\"" +
                         p["type"].get<std::string>() + "\",role=\"" +
                         p["role"].get<std::string>() + "\"}";
    const std::pair<const char*, const char*> fields[] = {
        {"size", "dbmgr_pool_size"},
        {"max_overflow", "dbmgr_pool_max_overflow"},
        {"in_use", "dbmgr_pool_in_use"},
        {"idle", "dbmgr_pool_idle"},
        {"waiting", "dbmgr_pool_waiting"},
        {"leases", "dbmgr_pool_leases_total"},
        {"waits", "dbmgr_pool_waits_total"},
        {"timeouts", "dbmgr_pool_timeouts_total"},
        {"errors", "dbmgr_pool_errors_total"},
        {"wait_ms_max", "dbmgr_pool_wait_ms_max"},
        {"wait_ms_avg", "dbmgr_pool_wait_ms_avg"}};
    for (auto [field, metric] : fields) {
      std::string key = std::string(metric) + labels;
      REQUIRE_MESSAGE(samples.count(key) == 1, key);
      CHECK_MESSAGE(samples[key] == doctest::Approx(p[field].get<double>()), key);
    }
  }
  CHECK(samples["dbmgr_pool_in_use{database=\"test.metrics\",type=\"sqlite\",role=\"writer\"}"] ==
        1);
  CHECK(samples["dbmgr_pool_in_use{database=\"test.metrics\",type=\"sqlite\",role=\"reader\"}"] ==
        1);
  CHECK(samples["dbmgr_pool_size{database=\"test.metrics\",type=\"sqlite\",role=\"reader\"}"] == 2);
  CHECK(samples["dbmgr_sessions{database=\"test.metrics\",state=\"idle in transaction\"}"] == 2);
  for (const char* t : {"transactions", "statements", "errors", "rollbacks_on_disconnect",
                        "internal_errors", "engines_created", "engines_disposed",
                        "clients_refused", "handshake_timeouts", "input_limit_closes",
                        "stalled_streams"}) {
    std::string key = std::string("dbmgr_") + t + "_total";
    REQUIRE_MESSAGE(samples.count(key) == 1, key);
    CHECK_MESSAGE(samples[key] == status["totals"][t].get<double>(), key);
  }
  CHECK(samples["dbmgr_up{version=\"0.1.0\"}"] == 1);
  CHECK(samples["dbmgr_resident_memory_bytes"] > 0);
  CHECK(ctl_json(d, {"status"})["metrics"] == "127.0.0.1:" + std::to_string(port));

  // Other requests: 404, 405, 400, 431; HEAD has no body.
  CHECK(http_tcp(port, "GET / HTTP/1.0\r\n\r\n").rfind("HTTP/1.0 404", 0) == 0);
  CHECK(http_tcp(port, "POST /metrics HTTP/1.0\r\n\r\n").rfind("HTTP/1.0 405", 0) == 0);
  CHECK(http_tcp(port, "garbage\r\n\r\n").rfind("HTTP/1.0 400", 0) == 0);
  CHECK(http_tcp(port, "GET /metrics HTTP/1.0\r\nX: " + std::string(10000, 'a') + "\r\n\r\n")
            .rfind("HTTP/1.0 431", 0) == 0);
  std::string head = http_tcp(port, "HEAD /metrics HTTP/1.0\r\n\r\n");
  CHECK(head.rfind("HTTP/1.0 200", 0) == 0);
  CHECK(head.substr(head.find("\r\n\r\n") + 4).empty());
  // A client that sends nothing does not hold the loop: the daemon still answers.
  int idle_fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(connect(idle_fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0);
  CHECK(ctl(d, {"ping"}).code == 0);
  CHECK(http_tcp(port, "GET /metrics HTTP/1.0\r\n\r\n").rfind("HTTP/1.0 200", 0) == 0);
  close(idle_fd);
}

TEST_CASE("/metrics on a Unix socket, and a non-loopback listen address stops the start") {
  TempDir tmp;
  std::string path = tmp.path() + "/metrics.sock";
  {
    Daemon d({.config_yaml = "metrics:\n  listen: \"unix:" + path + "\"\n"});
    dbmgr::DatabaseManager m(d.options("test", "um"));
    m.execute("SELECT 1");
    std::string resp = http_unix(path, "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n");
    REQUIRE(resp.rfind("HTTP/1.0 200 OK", 0) == 0);
    auto samples = parse_prometheus(resp.substr(resp.find("\r\n\r\n") + 4));
    json status = ctl_json(d, {"status"});
    CHECK(samples["dbmgr_transactions_total"] == status["totals"]["transactions"].get<double>());
    CHECK(samples.count("dbmgr_pool_leases_total{database=\"test.um\",type=\"sqlite\",role="
                        "\"writer\"}") == 1);
  }
  struct stat st {};
  CHECK(lstat(path.c_str(), &st) != 0);  // removed at shutdown
  try {
    Daemon bad({.config_yaml = "metrics:\n  listen: \"0.0.0.0:9187\"\n"});
    FAIL("dbmgrd started with metrics on 0.0.0.0");
  } catch (const std::runtime_error& e) {
    CHECK(contains(e.what(), "not a loopback address"));
  }
}

TEST_CASE("watch --count N refreshes N times; plain output when stdout is not a tty") {
  Daemon d;
  dbmgr::DatabaseManager m(d.options("test", "watch"));
  auto s = m.get_session();
  s.execute("SELECT 1");
  Run r = ctl(d, {"watch", "--count", "3", "--interval", "0.1"});
  CHECK_MESSAGE(r.code == 0, r.err);
  int headers = 0;
  for (std::size_t p = 0; (p = r.out.find("dbmgrctl watch ", p)) != std::string::npos; ++p) {
    ++headers;
  }
  CHECK(headers == 3);
  CHECK(!contains(r.out, "\033["));  // no ANSI codes into a file
  CHECK(contains(r.out, "test.watch"));
  CHECK(contains(r.out, "idle in transaction"));
  Run j = ctl(d, {"--json", "watch", "-n", "2", "-i", "0.1"});
  CHECK(j.code == 0);
  std::istringstream lines(j.out);
  std::string line;
  int docs = 0;
  while (std::getline(lines, line)) {
    json doc = json::parse(line);
    CHECK(doc.contains("status"));
    CHECK(doc["pools"].is_array());
    CHECK(doc["sessions"].is_array());
    ++docs;
  }
  CHECK(docs == 2);
}

TEST_CASE("failures are one line and a non-zero exit; --help for every command") {
  TempDir tmp;
  std::string missing = tmp.path() + "/dbmgrd.sock";
  Run r = ctl({"status"}, missing);
  CHECK(r.code == 3);
  CHECK(r.out.empty());
  CHECK(r.err == "dbmgrctl: dbmgrd is not running (no socket at " + missing + ")\n");
  // A socket file nobody listens on (a crashed daemon).
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, missing.c_str(), sizeof(a.sun_path) - 1);
  REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0);
  close(fd);
  Run refused = ctl({"--json", "pools"}, missing);
  CHECK(refused.code == 3);
  CHECK(refused.err == "dbmgrctl: dbmgrd is not running (nothing listens on " + missing + ")\n");
  // $DBMGR_SOCKET is the default socket.
  setenv("DBMGR_SOCKET", missing.c_str(), 1);
  Run env = ctl({"ping"});
  unsetenv("DBMGR_SOCKET");
  CHECK(env.code == 3);
  CHECK(contains(env.err, missing));
  // Usage errors.
  Run none = ctl({});
  CHECK(none.code == 2);
  CHECK(count_lines(none.err) == 1);
  Run bogus = ctl({"frobnicate"});
  CHECK(bogus.code == 2);
  CHECK(ctl({"kill"}).code == 2);
  for (const char* cmd : {"status", "pools", "sessions", "clients", "engines", "ping", "reload",
                          "kill", "drain", "shutdown", "watch"}) {
    Run h = ctl({cmd, "--help"});
    CHECK_MESSAGE(h.code == 0, cmd);
    CHECK_MESSAGE(contains(h.out, std::string("Usage: dbmgrctl ") + cmd), h.out);
  }
  Run top = ctl({"--help"});
  CHECK(top.code == 0);
  CHECK(contains(top.out, "--json"));
  CHECK(contains(top.out, "watch"));
}
