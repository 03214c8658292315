// The daemon's life: start over stale or live sockets, drain on SIGTERM, bad clients,
// restarts under a running client.
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include <doctest/doctest.h>

#include "dbmgr/protocol/codec.hpp"
#include "harness.hpp"

using namespace std::chrono_literals;
using dbmgr::test::Daemon;
using dbmgr::test::RawConn;
using dbmgr::test::seconds_since;
using Cmd = dbmgr::proto::AdminCommand;

namespace {

dbmgr::proto::Header header_of(const std::vector<std::uint8_t>& f) {
  dbmgr::proto::Header h;
  REQUIRE(dbmgr::proto::parse_header(f.data(), dbmgr::proto::kDefaultMaxFrameBytes, &h) ==
          dbmgr::proto::DecodeError::kOk);
  return h;
}

dbmgr::proto::ErrorMsg error_of(const std::vector<std::uint8_t>& f, std::string* text) {
  auto h = header_of(f);
  REQUIRE(h.type == dbmgr::proto::MsgType::kError);
  dbmgr::proto::Message m;
  REQUIRE(dbmgr::proto::decode({h, f.data() + dbmgr::proto::kHeaderSize}, &m) ==
          dbmgr::proto::DecodeError::kOk);
  auto e = std::get<dbmgr::proto::ErrorMsg>(m);
  *text = std::string(e.message);
  return e;
}

}  // namespace

TEST_CASE("SIGTERM with an open transaction: waits drain_timeout, rolls back, exits 0") {
  Daemon d({.config_yaml = "drain_timeout: 1s\n"});
  dbmgr::DatabaseManager m(d.options("test", "drain"));
  m.execute("CREATE TABLE t (v INTEGER)");
  auto s = m.get_session();
  s.execute("INSERT INTO t VALUES (1)");
  auto start = std::chrono::steady_clock::now();
  int status = d.stop(SIGTERM);
  double took = seconds_since(start);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(took >= 0.9);  // it waited for the open transaction
  CHECK(took < 5.0);
  CHECK_FALSE(std::filesystem::exists(d.socket()));
  CHECK(d.log().find("drain_timeout reached") != std::string::npos);
  // The open transaction was rolled back: its row is not in the file.
  std::string file = d.data_dir() + "/test.drain.db";
  REQUIRE(std::filesystem::exists(file));
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2(file.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, "SELECT count(*) FROM t", -1, &st, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_step(st) == SQLITE_ROW);
  CHECK(sqlite3_column_int64(st, 0) == 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  CHECK_THROWS_AS(s.execute("INSERT INTO t VALUES (2)"), dbmgr::Error);
}

TEST_CASE("SIGTERM with no open transaction exits at once and removes the socket") {
  Daemon d;
  dbmgr::DatabaseManager m(d.options("test", "quick"));
  m.execute("SELECT 1");
  auto start = std::chrono::steady_clock::now();
  int status = d.stop(SIGTERM);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(seconds_since(start) < 2.0);
  CHECK_FALSE(std::filesystem::exists(d.socket()));
}

TEST_CASE("a stale socket file is replaced; a live daemon's socket is refused") {
  Daemon d;
  // A second daemon on the same socket must refuse to start.
  const char* exe = std::getenv("DBMGRD");
  REQUIRE(exe != nullptr);
  std::string cmd = std::string(exe) + " --socket " + d.socket() + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  std::string out;
  char buf[512];
  while (fgets(buf, sizeof(buf), p) != nullptr) out += buf;
  int rc = pclose(p);
  CHECK(WEXITSTATUS(rc) != 0);
  CHECK(out.find("already listening") != std::string::npos);
  dbmgr::DatabaseManager m(d.options("test", "live"));
  CHECK(m.execute("SELECT 7").scalar<std::int64_t>() == 7);  // the first one still serves

  // Kill it hard: the socket file stays behind, stale. A new daemon replaces it.
  d.stop(SIGKILL);
  REQUIRE(std::filesystem::exists(d.socket()));
  std::string cmd2 = "DATABASE_PATH=" + d.data_dir() + " " + std::string(exe) + " --socket " + d.socket() + " > " + d.dir() +
                     "/second.log 2>&1 & echo $!";
  FILE* p2 = popen(cmd2.c_str(), "r");
  REQUIRE(p2 != nullptr);
  pid_t pid2 = 0;
  REQUIRE(fscanf(p2, "%d", &pid2) == 1);
  pclose(p2);
  dbmgr::DatabaseManager m2(d.options("test", "live"));
  bool served = false;
  for (int i = 0; i < 200 && !served; ++i) {
    try {
      served = m2.execute("SELECT 8").scalar<std::int64_t>() == 8;
    } catch (const dbmgr::Error&) {
      std::this_thread::sleep_for(20ms);
    }
  }
  CHECK(served);
  kill(pid2, SIGTERM);
  for (int i = 0; i < 200 && std::filesystem::exists(d.socket()); ++i) std::this_thread::sleep_for(20ms);
  CHECK_FALSE(std::filesystem::exists(d.socket()));
}

TEST_CASE("bad clients get a clear error and are closed; others keep being served") {
  Daemon d({.config_yaml = "max_frame_bytes: 65536\n"});
  dbmgr::DatabaseManager good(d.options("test", "bad"));
  good.execute("CREATE TABLE t (v INTEGER)");
  auto held = good.get_session();
  held.execute("INSERT INTO t VALUES (1)");

  SUBCASE("oversized frame") {
    RawConn c(d.socket());
    c.hello();
    std::uint8_t h[16] = {0x7f, 0xff, 0xff, 0xff, 0x09, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0};
    c.send(h, sizeof(h));
    std::string text;
    auto e = error_of(c.read_frame(), &text);
    CHECK(e.category == dbmgr::proto::ErrorCategory::kProtocol);
    CHECK(text == "frame of 2147483647 bytes exceeds max_frame_bytes 65536");  // protocol.md 12
    CHECK(c.closed_by_peer());
  }
  SUBCASE("garbage instead of hello") {
    RawConn c(d.socket());
    std::string junk = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    c.send(junk.data(), junk.size());
    auto f = c.read_frame();
    if (!f.empty()) {
      std::string text;
      CHECK(error_of(f, &text).category == dbmgr::proto::ErrorCategory::kProtocol);
    }
    CHECK(c.closed_by_peer());
  }
  SUBCASE("unsupported protocol version") {
    RawConn c(d.socket());
    std::vector<std::uint8_t> out;
    dbmgr::proto::Encoder enc(out);
    // Hand-made hello for versions 7..9.
    std::size_t start = enc.begin_frame(dbmgr::proto::MsgType::kHello, 1, 0);
    enc.put_u16(7);
    enc.put_u16(9);
    enc.put_str("future");
    enc.put_u32(1);
    enc.end_frame(start);
    c.send(out);
    std::string text;
    auto f = c.read_frame();
    REQUIRE_FALSE(f.empty());
    auto e = error_of(f, &text);
    CHECK(e.category == dbmgr::proto::ErrorCategory::kProtocol);
    CHECK(text.find("version") != std::string::npos);
    CHECK(c.closed_by_peer());
  }
  SUBCASE("a client that vanishes mid-frame") {
    {
      RawConn c(d.socket());
      c.hello();
      std::uint8_t h[10] = {0, 0, 1, 0, 0x03, 0, 0, 0, 0, 0};
      c.send(h, sizeof(h));
    }
  }
  // The well-behaved client is untouched: its transaction goes on and commits.
  held.execute("INSERT INTO t VALUES (2)");
  held.commit();
  CHECK(good.execute("SELECT count(*) FROM t").scalar<std::int64_t>() == 2);
  CHECK(d.admin(Cmd::kStatus)["clients"].get<int>() >= 1);
}

TEST_CASE("after a daemon restart new sessions reconnect; an in-flight one gets an error") {
  dbmgr::test::TempDir keep;
  auto d = std::make_unique<Daemon>();
  std::string sock = d->socket();
  dbmgr::DatabaseManager m(d->options("test", "restart"));
  m.execute("CREATE TABLE t (v INTEGER)");
  auto s = m.get_session();
  s.execute("INSERT INTO t VALUES (1)");
  // Restart on the same socket and data folder: stop it and start a new dbmgrd in place.
  const std::string dir = d->dir();
  REQUIRE(d->stop(SIGKILL) != 0);
  const char* exe = std::getenv("DBMGRD");
  std::string cmd = "DATABASE_PATH=" + dir + "/data " + exe + " --socket " + sock + " > " +
                    keep.path() + "/restart.log 2>&1 & echo $!";
  FILE* p = popen(cmd.c_str(), "r");
  pid_t pid = 0;
  REQUIRE(fscanf(p, "%d", &pid) == 1);
  pclose(p);
  try {
    s.execute("INSERT INTO t VALUES (2)");
    FAIL("the in-flight session did not notice the restart");
  } catch (const dbmgr::Error& e) {
    CHECK(e.category() == dbmgr::ErrorCategory::kConnection);
  }
  bool ok = false;
  for (int i = 0; i < 200 && !ok; ++i) {
    try {
      ok = m.execute("SELECT count(*) FROM t").scalar<std::int64_t>() == 0;
    } catch (const dbmgr::Error&) {
      std::this_thread::sleep_for(20ms);
    }
  }
  CHECK(ok);  // reconnected by itself; the killed transaction's row is not there
  kill(pid, SIGTERM);
  for (int i = 0; i < 250 && std::filesystem::exists(sock); ++i) std::this_thread::sleep_for(20ms);
  CHECK_FALSE(std::filesystem::exists(sock));  // the restarted daemon drained and cleaned up
}

TEST_CASE("a client that does not read its replies cannot make the daemon buffer without bound") {
  // A small page cache, so RSS shows the daemon's own buffering and not SQLite's cache.
  Daemon d({.config_yaml = "sqlite:\n  cache_size: 2MB\n"});
  dbmgr::DatabaseManager m(d.options("test", "slow"));
  m.execute("CREATE TABLE big (id INTEGER PRIMARY KEY, pad TEXT)");
  m.execute(
      "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) "
      "INSERT INTO big(pad) SELECT printf('%.1000c', 'x') FROM n");  // ~2 MB per full scan
  auto rss_before = d.admin(Cmd::kStatus)["rss_kb"].get<std::int64_t>();

  RawConn c(d.socket());
  c.hello();
  std::vector<std::uint8_t> out;
  dbmgr::proto::Encoder enc(out);
  dbmgr::proto::Open open;
  open.database = "slow";
  open.prefix = "test";
  open.flags = dbmgr::proto::kOpenReadOnly;
  enc.open(2, 1, open);
  constexpr int kQueries = 50;  // ~100 MB of replies that nobody reads for a while
  for (int i = 0; i < kQueries; ++i) enc.execute(100 + i, 1, "SELECT id, pad FROM big", nullptr, 0);
  c.send(out);
  std::this_thread::sleep_for(1500ms);

  // The daemon stopped producing: its queue for this client is bounded.
  std::int64_t queued = -1;
  for (auto& cl : d.admin(Cmd::kClients)) {
    if (cl["name"] == "harness") queued = cl["write_queue_bytes"].get<std::int64_t>();
  }
  CHECK(queued >= 0);
  CHECK(queued < 4 * 1024 * 1024);
  auto rss_during = d.admin(Cmd::kStatus)["rss_kb"].get<std::int64_t>();
  INFO("daemon RSS before " << rss_before << " KB, while the client stalls " << rss_during << " KB");
  CHECK(rss_during - rss_before < 32 * 1024);
  // Everyone else is served meanwhile.
  CHECK(m.execute("SELECT count(*) FROM big").scalar<std::int64_t>() == 2000);

  // Now read everything: nothing was lost.
  int completes = 0;
  std::int64_t rows = 0;
  while (completes < kQueries) {
    auto f = c.read_frame(std::chrono::seconds(30));
    REQUIRE_FALSE(f.empty());
    auto h = header_of(f);
    REQUIRE(h.type != dbmgr::proto::MsgType::kError);
    if (h.type == dbmgr::proto::MsgType::kRows) {
      dbmgr::proto::Message msg;
      REQUIRE(dbmgr::proto::decode({h, f.data() + dbmgr::proto::kHeaderSize}, &msg) ==
              dbmgr::proto::DecodeError::kOk);
      rows += std::get<dbmgr::proto::Rows>(msg).row_count;
    }
    if (h.type == dbmgr::proto::MsgType::kComplete) ++completes;
  }
  CHECK(rows == std::int64_t{kQueries} * 2000);
}

TEST_CASE("a client that stops receiving while pipelined replies arrive is dropped cleanly") {
  // Regression: a failed write inside a batch of replies used to close the connection in
  // the middle of queueing them, and the next loop turn flushed the freed connection
  // (caught by ASan). Forty large read-only one-shots in one write, then the client shuts
  // its receiving side: the daemon's writes fail with EPIPE while results keep coming.
  Daemon d;
  for (int round = 0; round < 3; ++round) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::snprintf(a.sun_path, sizeof a.sun_path, "%s", d.socket().c_str());
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    std::vector<std::uint8_t> out;
    dbmgr::proto::Encoder enc(out);
    dbmgr::proto::Hello h;
    h.client_name = "stops-reading";
    h.pid = static_cast<std::uint32_t>(getpid());
    h.min_version = h.max_version = dbmgr::proto::kMaxVersion;
    enc.hello(1, h);
    for (std::uint32_t i = 0; i < 40; ++i) {
      enc.one_shot(2 + i, "", "test", dbmgr::proto::kOpenReadOnly,
                   "SELECT hex(randomblob(20000)) || (SELECT count(*) FROM (WITH RECURSIVE "
                   "c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 20000) "
                   "SELECT x FROM c))",
                   nullptr, 0);
    }
    REQUIRE(::write(fd, out.data(), out.size()) == static_cast<ssize_t>(out.size()));
    std::this_thread::sleep_for(20ms);
    ::shutdown(fd, SHUT_RD);
    std::this_thread::sleep_for(300ms);
    ::close(fd);
  }
  // Still serving, and still exits 0 on SIGTERM (checked when d goes out of scope).
  dbmgr::DatabaseManager m(d.options("test", "after"));
  CHECK(m.execute("SELECT 40 + 2").scalar<std::int64_t>() == 42);
}

TEST_CASE("systemd: READY=1 at start, WATCHDOG=1 at half of WatchdogSec, STOPPING=1 on SIGTERM") {
  dbmgr::test::TempDir tmp;
  std::string path = tmp.path() + "/notify.sock";
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
  dbmgr::test::DaemonOptions o;
  o.env = {{"NOTIFY_SOCKET", path}, {"WATCHDOG_USEC", "400000"}};  // WatchdogSec=0.4s
  Daemon d(o);
  std::vector<std::string> got;
  auto wait_for = [&](const std::string& what, std::chrono::milliseconds limit) {
    auto start = std::chrono::steady_clock::now();
    while (std::chrono::steady_clock::now() - start < limit) {
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, 50) <= 0) continue;
      char buf[512];
      ssize_t n = recv(fd, buf, sizeof(buf), 0);
      if (n <= 0) continue;
      got.emplace_back(buf, static_cast<std::size_t>(n));
      if (got.back().find(what) != std::string::npos) return true;
    }
    return false;
  };
  CHECK(wait_for("READY=1", 5s));
  auto t0 = std::chrono::steady_clock::now();
  int pings = 0;
  while (seconds_since(t0) < 1.0) pings += wait_for("WATCHDOG=1", 1s) ? 1 : 0;
  CHECK(pings >= 3);  // every 0.2 s (the janitor's 100 ms tick decides when)
  CHECK(d.log().find("systemd watchdog: pinging every 200 ms") != std::string::npos);
  kill(d.pid(), SIGTERM);
  CHECK(wait_for("STOPPING=1", 5s));
  kill(d.pid(), SIGTERM);  // a second one while it stops (an impatient operator) changes nothing
  CHECK(d.stop(0) == 0);  // signal 0: only wait for the exit
  close(fd);
}

TEST_CASE("SQLite text that is not UTF-8 arrives as a blob; the connection stays usable") {
  Daemon d;
  dbmgr::DatabaseManager m(d.options("test", "utf8"));
  auto r = m.execute("SELECT CAST(X'C0FF41' AS TEXT) AS t, 'ok' AS u");
  REQUIRE(r.size() == 1);
  CHECK(r[0].type(0) == dbmgr::Type::kBlob);
  CHECK(r[0].get<std::string>(0) == std::string("\xC0\xFF\x41", 3));
  CHECK(r[0].type(1) == dbmgr::Type::kText);
  CHECK(m.execute("SELECT 7").scalar<std::int64_t>() == 7);
}
