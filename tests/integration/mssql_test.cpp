// SQL Server: what can be tested without a server (none runs on this machine). A database of
// type mssql whose server cannot be reached gives a clear connection error, with the
// password never shown, while the daemon goes on serving its other databases. Connection
// strings, quoting and DDL are unit-tested in tests/daemon/odbc_test.cpp.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include "harness.hpp"

using dbmgr::test::Daemon;
using dbmgr::test::DaemonOptions;

namespace {

// A loopback port nothing listens on (bound once to learn a free one, then closed).
int closed_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  socklen_t len = sizeof a;
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0);
  ::close(fd);
  return ntohs(a.sin_port);
}

DaemonOptions mssql_daemon() {
  DaemonOptions o;
  o.config_yaml = "databases:\n"
                  "  ledger:\n"
                  "    type: mssql\n"
                  "    name: Ledger\n"
                  "    host: 127.0.0.1\n"
                  "    port: " + std::to_string(closed_port()) + "\n"
                  "    user: sa\n"
                  "    password: \"Pa55-w0rd;secret}\"\n"
                  "    pool_timeout: 5s\n"
                  "  lite:\n"
                  "    type: sqlite\n";
  return o;
}

}  // namespace

TEST_CASE("mssql: an unreachable server is a clear connection error; other databases go on") {
  Daemon d(mssql_daemon());
  dbmgr::DatabaseManager lite(d.options("", "lite"));
  lite.execute("CREATE TABLE IF NOT EXISTS t (x INTEGER)");
  auto held = lite.get_db();  // a transaction open on the SQLite database throughout
  held.execute("INSERT INTO t VALUES (1)");

  // Several clients at once: every one gets the error; none hangs the daemon.
  std::atomic<int> connection_errors{0};
  std::atomic<int> other{0};
  std::vector<std::string> messages(6);
  std::vector<std::thread> threads;
  for (int i = 0; i < 6; ++i) {
    threads.emplace_back([&, i] {
      try {
        dbmgr::DatabaseManager m(d.options("", "ledger"));
        m.execute("SELECT 1");
        ++other;
      } catch (const dbmgr::Error& e) {
        messages[static_cast<std::size_t>(i)] = e.what();
        if (e.category() == dbmgr::ErrorCategory::kConnection) {
          ++connection_errors;
        } else {
          ++other;
        }
      }
    });
  }
  // Meanwhile the SQLite database answers.
  for (int i = 0; i < 20; ++i) {
    CHECK(lite.execute("SELECT count(*) FROM t").scalar<std::int64_t>() == 0);
  }
  for (auto& t : threads) t.join();
  MESSAGE("the error: " << messages[0]);
  CHECK(connection_errors == 6);
  CHECK(other == 0);
  for (const auto& m : messages) {
    INFO(m);
    CHECK(m.find("cannot connect to Ledger") != std::string::npos);
    CHECK(m.find("PWD=***") != std::string::npos);
    CHECK(m.find("Pa55") == std::string::npos);
    CHECK(m.find("secret") == std::string::npos);
  }
  held.execute("INSERT INTO t VALUES (2)");
  held.commit();
  CHECK(lite.execute("SELECT count(*) FROM t").scalar<std::int64_t>() == 2);
  // test_connection fails early, with the same error.
  try {
    dbmgr::DatabaseManager m({.test_connection = true, .socket_path = d.socket(), .database = "ledger"});
    FAIL("test_connection succeeded against a closed port");
  } catch (const dbmgr::Error& e) {
    CHECK(e.category() == dbmgr::ErrorCategory::kConnection);
  }
  // The password is in no log line either.
  CHECK(d.log().find("Pa55") == std::string::npos);
  CHECK(d.admin(dbmgr::proto::AdminCommand::kStatus).dump().find("Pa55") == std::string::npos);
}
