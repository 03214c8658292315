// End to end on MariaDB: libdbmgr -> dbmgrd (the ODBC engine, driver "MariaDB Unicode") -> the
// private MariaDB server that scripts/test-servers.sh starts on a Unix socket
// (DBMGR_TEST_MARIADB_* in the environment). Mirrors pg_e2e_test.cpp case by case where
// MariaDB allows it.
//
// The oracle is the server itself, read around dbmgrd: the `mariadb` command-line client on
// the socket (Oracle below) for what dbmgrd must have done (rows stored, locks released,
// transactions ended, connections killed), never only what dbmgrd says about itself.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <limits>
#include <optional>
#include <thread>

#include <doctest/doctest.h>

#include "dbmgr/protocol/codec.hpp"
#include "harness.hpp"

using namespace std::chrono_literals;
using dbmgr::test::Daemon;
using dbmgr::test::DaemonOptions;
using dbmgr::test::fork_child;
using dbmgr::test::seconds_since;
using dbmgr::test::wait_child;
using Cmd = dbmgr::proto::AdminCommand;

namespace {

std::string env(const char* name) { return dbmgr::test::required_env(name); }

DaemonOptions mariadb_daemon(std::string yaml = {}) {
  return dbmgr::test::mariadb_daemon_options(std::move(yaml));
}

// The `mariadb` client on the test server's socket, beside dbmgrd: runs SQL (no placeholders)
// in `database` and returns the output, tab-separated, one line per row, no header; throws
// with the client's message when it fails.
class Oracle {
 public:
  explicit Oracle(std::string database = {}) : db_(std::move(database)) {}

  std::string run(const std::string& sql) const {
    dbmgr::test::TempDir dir;
    const std::string in = dir.path() + "/in.sql", out = dir.path() + "/out", err = dir.path() + "/err";
    std::ofstream(in) << sql << ";\n";
    const std::string cmd = "MYSQL_PWD='" + env("DBMGR_TEST_MARIADB_PASSWORD") +
                            "' mariadb --no-defaults --socket='" + env("DBMGR_TEST_MARIADB_SOCKET") +
                            "' -u '" + env("DBMGR_TEST_MARIADB_USER") + "' -N -B " +
                            (db_.empty() ? std::string() : "'" + db_ + "' ") + "<" + in + " >" + out +
                            " 2>" + err;
    int rc = std::system(cmd.c_str());
    auto slurp = [](const std::string& p) {
      std::ifstream f(p);
      return std::string(std::istreambuf_iterator<char>(f), {});
    };
    if (rc != 0) throw std::runtime_error("mariadb client failed on \"" + sql + "\": " + slurp(err));
    std::string s = slurp(out);
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
    return s;
  }
  std::int64_t integer(const std::string& sql) const { return std::stoll(run(sql)); }

 private:
  std::string db_;
};

// Open InnoDB transactions of the server connections `where` selects (a condition on
// information_schema.processlist p). innodb_trx is a copy the server refreshes at most every
// 100 ms, so this waits a little longer first.
std::int64_t open_transactions(const Oracle& o, const std::string& where) {
  std::this_thread::sleep_for(250ms);
  return o.integer(
      "SELECT count(*) FROM information_schema.innodb_trx t JOIN information_schema.processlist p "
      "ON p.id = t.trx_mysql_thread_id WHERE " + where);
}

void fresh_table(dbmgr::DatabaseManager& m, const std::string& ddl) {
  auto name = ddl.substr(std::string("CREATE TABLE ").size());
  name = name.substr(0, name.find_first_of(" ("));
  m.execute("DROP TABLE IF EXISTS " + name);
  m.execute(ddl);
}

// The expected failure of `f`, as a dbmgr::Error (FAIL when f succeeds).
template <typename F>
std::optional<dbmgr::Error> error_of(F&& f) {
  try {
    f();
  } catch (const dbmgr::Error& e) {
    return e;
  }
  return std::nullopt;
}

}  // namespace

TEST_CASE("MariaDB: info, prefixes created on demand and isolated") {
  Daemon d(mariadb_daemon());
  Oracle server;
  for (const char* db : {"test.mapp", "test.payment.mapp"}) server.run(std::string("DROP DATABASE IF EXISTS `") + db + "`");
  dbmgr::DatabaseManager a(d.options("test", "mapp"));
  dbmgr::DatabaseManager b(d.options("test.payment", "mapp"));
  CHECK(a.database_type() == "mariadb");
  CHECK(a.database_name() == "test.mapp");
  CHECK(b.database_name() == "test.payment.mapp");
  // MariaDB 10.11 has the UUID column type (10.7+).
  CHECK(a.pk_type() == "UUID");
  CHECK(a.pk_column_type() == "UUID");
  std::string uri = a.database_uri();
  INFO("uri: " << uri);
  CHECK(uri.rfind("mariadb://" + env("DBMGR_TEST_MARIADB_USER") + ":***@", 0) == 0);
  CHECK(uri.find(env("DBMGR_TEST_MARIADB_PASSWORD")) == std::string::npos);
  CHECK(uri.find("test.mapp") != std::string::npos);
  CHECK(uri.find(env("DBMGR_TEST_MARIADB_SOCKET")) != std::string::npos);
  for (auto* m : {&a, &b}) fresh_table(*m, "CREATE TABLE items (id UUID PRIMARY KEY DEFAULT UUID(), v TEXT)");
  a.execute("INSERT INTO items(v) VALUES (?)", {"a"});
  b.execute("INSERT INTO items(v) VALUES (?)", {"b"});
  b.execute("INSERT INTO items(v) VALUES (?)", {"b"});
  CHECK(a.execute("SELECT count(*) FROM items").scalar<std::int64_t>() == 1);
  CHECK(b.execute("SELECT count(*) FROM items").scalar<std::int64_t>() == 2);
  CHECK(a.execute("SELECT DATABASE()").scalar<std::string>() == "test.mapp");
  CHECK(b.execute("SELECT DATABASE()").scalar<std::string>() == "test.payment.mapp");
  // The server has both databases, each with its own rows.
  CHECK(Oracle("test.mapp").integer("SELECT count(*) FROM items WHERE v = 'a'") == 1);
  CHECK(Oracle("test.payment.mapp").integer("SELECT count(*) FROM items WHERE v = 'b'") == 2);
  CHECK(Oracle("test.payment.mapp").integer("SELECT count(*) FROM items WHERE v = 'a'") == 0);
  // Without an allowed prefix, a missing database is not created.
  server.run("DROP DATABASE IF EXISTS `prod.mapp`");
  dbmgr::DatabaseManager nope(d.options("prod", "mapp"));
  auto e = error_of([&] { nope.execute("SELECT 1"); });
  REQUIRE_MESSAGE(e, "a database was created for a prefix the policy does not allow");
  CHECK(e->category() == dbmgr::ErrorCategory::kNotFound);
  CHECK(e->message().find("prod.mapp") != std::string::npos);
  CHECK(server.integer("SELECT count(*) FROM information_schema.schemata WHERE schema_name = 'prod.mapp'") == 0);
  CHECK(d.log().find(env("DBMGR_TEST_MARIADB_PASSWORD")) == std::string::npos);
  for (const char* db : {"test.mapp", "test.payment.mapp"}) server.run(std::string("DROP DATABASE `") + db + "`");
}

TEST_CASE("MariaDB: types round trip (NULL, bool, int64 limits, double, text, blob, MBs)") {
  Daemon d(mariadb_daemon());
  dbmgr::DatabaseManager m(d.options("test", "mtypes"));
  fresh_table(m,
              "CREATE TABLE v (id INT PRIMARY KEY, b BOOLEAN, i BIGINT, f DOUBLE, t LONGTEXT, bl LONGBLOB, "
              "n INT NULL)");
  const std::int64_t lo = std::numeric_limits<std::int64_t>::min();
  const std::int64_t hi = std::numeric_limits<std::int64_t>::max();
  const std::string text = "h\xc3\xa9llo w\xc3\xb6rld \xe2\x9c\x93 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x8e\x89 'q' \"dq\" \\ ?";
  std::string bytes;
  for (int i = 0; i < 256; ++i) bytes += static_cast<char>(i);
  bytes += std::string("\0\0\0", 3);
  const dbmgr::Blob blob = dbmgr::Blob::from_string(bytes);
  m.execute("INSERT INTO v VALUES (?, ?, ?, ?, ?, ?, ?)", {1, true, lo, 3.141592653589793, text, blob, nullptr});
  m.execute("INSERT INTO v VALUES (?, ?, ?, ?, ?, ?, ?)", {2, false, hi, -1.5e300, "", dbmgr::Blob(), 7});
  auto r = m.execute("SELECT id, b, i, f, t, bl, n FROM v ORDER BY id");
  REQUIRE(r.size() == 2);
  CHECK(r.declared_type(2) == dbmgr::Type::kInt64);
  CHECK(r.declared_type(3) == dbmgr::Type::kDouble);
  CHECK(r.declared_type(4) == dbmgr::Type::kText);
  CHECK(r.declared_type(5) == dbmgr::Type::kBlob);
  CHECK(r[0].get<bool>(1) == true);
  CHECK(r[1].get<bool>(1) == false);
  CHECK(r[0].get<std::int64_t>(2) == lo);
  CHECK(r[1].get<std::int64_t>(2) == hi);
  CHECK(r[0].get<double>(3) == 3.141592653589793);
  CHECK(r[1].get<double>(3) == -1.5e300);
  CHECK(r[0].get<std::string>(4) == text);
  CHECK(r[1].get<std::string>(4).empty());
  CHECK(r[0].type(5) == dbmgr::Type::kBlob);
  CHECK(r[0].get<dbmgr::Blob>(5) == blob);
  CHECK(r[1].get<dbmgr::Blob>(5) == dbmgr::Blob());
  CHECK(r[0].type(6) == dbmgr::Type::kNull);
  CHECK(!r[0].get<std::optional<std::int64_t>>(6).has_value());
  CHECK(r[1].get<std::int64_t>(6) == 7);
  // Stored as sent: the server's own view of the bytes.
  Oracle o("test.mtypes");
  CHECK(o.run("SELECT HEX(t), LENGTH(bl), HEX(bl) = HEX(UNHEX('" + [&] {
          static const char* hx = "0123456789ABCDEF";
          std::string s;
          for (unsigned char c : bytes) s += {hx[c >> 4], hx[c & 15]};
          return s;
        }() + "')), i, b FROM v WHERE id = 1") ==
        [&] {
          static const char* hx = "0123456789ABCDEF";
          std::string s;
          for (unsigned char c : text) s += {hx[c >> 4], hx[c & 15]};
          return s;
        }() + "\t259\t1\t-9223372036854775808\t1");
  // Parameters in expressions keep their types.
  auto x = m.execute("SELECT ? + 1, ? * 2, CONCAT(?, '!'), ? IS NULL, ?", {41, 1.5, "hi", nullptr, lo});
  REQUIRE(x.size() == 1);
  CHECK(x[0].get<std::int64_t>(0) == 42);
  CHECK(x[0].get<double>(1) == 3.0);
  CHECK(x[0].get<std::string>(2) == "hi!");
  CHECK(x[0].get<bool>(3) == true);
  CHECK(x[0].get<std::int64_t>(4) == lo);
  // BIT(1) is the server's boolean bit: a bool cell.
  fresh_table(m, "CREATE TABLE bits (x BIT(1))");
  m.execute("INSERT INTO bits VALUES (?), (?)", {true, false});
  auto bits = m.execute("SELECT x FROM bits ORDER BY x DESC");
  REQUIRE(bits.size() == 2);
  CHECK(bits[0].type(0) == dbmgr::Type::kBool);
  CHECK(bits[0].get<bool>(0) == true);
  CHECK(bits[1].get<bool>(0) == false);
  // Large values, 1-4 MB, both ways, through a session and a one-shot.
  for (std::size_t size : {std::size_t{1} << 20, std::size_t{4} << 20}) {
    std::string big_text;
    big_text.reserve(size);
    for (std::size_t i = 0; big_text.size() < size; ++i) big_text += i % 97 == 0 ? "\xc3\xa9" : "x";
    std::string big_bytes(size, '\0');
    for (std::size_t i = 0; i < size; ++i) big_bytes[i] = static_cast<char>((i * 131) % 256);
    m.run([&](dbmgr::Session& s) {
      s.execute("DELETE FROM v WHERE id = 3");
      s.execute("INSERT INTO v(id, t, bl) VALUES (3, ?, ?)", {big_text, dbmgr::Blob::from_string(big_bytes)});
    });
    auto big = m.execute("SELECT t, bl, LENGTH(t), LENGTH(bl) FROM v WHERE id = 3");
    REQUIRE(big.size() == 1);
    CHECK(big[0].get<std::string>(0) == big_text);
    CHECK(big[0].get<dbmgr::Blob>(1) == dbmgr::Blob::from_string(big_bytes));
    CHECK(big[0].get<std::int64_t>(2) == static_cast<std::int64_t>(big_text.size()));
    CHECK(big[0].get<std::int64_t>(3) == static_cast<std::int64_t>(size));
    CHECK(o.integer("SELECT LENGTH(bl) FROM v WHERE id = 3") == static_cast<std::int64_t>(size));
  }
}

TEST_CASE("MariaDB: 16 processes x 200 write transactions, exact count") {
  // A statement that waits this long for the counter's row lock is a defect here (a lock
  // holder that cannot get on with its transaction): fail in 10 s, not InnoDB's 50 s.
  Daemon d(mariadb_daemon("pool:\n  statement_timeout: 10s\n"));
  dbmgr::DatabaseManager m(d.options("test", "mconc"));
  fresh_table(m, "CREATE TABLE counters (id INT PRIMARY KEY, n INT NOT NULL)");
  m.execute("INSERT INTO counters VALUES (1, 0)");
  fresh_table(m, "CREATE TABLE log (owner INT, i INT)");
  constexpr int kProcs = 16;
  constexpr int kTx = 200;
  std::vector<pid_t> kids;
  for (int p = 0; p < kProcs; ++p) {
    kids.push_back(fork_child([&, p] {
      dbmgr::DatabaseManager child(d.options("test", "mconc"));
      for (int i = 0; i < kTx; ++i) {
        child.run([&](dbmgr::Session& s) {
          s.execute("UPDATE counters SET n = n + 1 WHERE id = 1");
          s.execute("INSERT INTO log VALUES (?, ?)", {p, i});
        });
      }
    }));
  }
  for (pid_t k : kids) CHECK(wait_child(k) == 0);
  Oracle o("test.mconc");
  CHECK(o.integer("SELECT n FROM counters WHERE id = 1") == kProcs * kTx);
  CHECK(o.integer("SELECT count(*) FROM log") == kProcs * kTx);
  CHECK(o.integer("SELECT count(DISTINCT owner, i) FROM log") == kProcs * kTx);
  CHECK(d.admin(Cmd::kStatus)["totals"]["errors"] == 0);
  CHECK(d.pool("test.mconc", "main")["in_use"] == 0);
}

TEST_CASE("MariaDB: SIGKILL inside a transaction rolls back and frees the row lock at once") {
  Daemon d(mariadb_daemon());
  dbmgr::DatabaseManager m(d.options("test", "mkill"));
  fresh_table(m, "CREATE TABLE acct (id INT PRIMARY KEY, bal INT)");
  m.execute("INSERT INTO acct VALUES (1, 100), (2, 200)");
  int ready[2];
  REQUIRE(pipe(ready) == 0);
  pid_t kid = fork_child([&] {
    dbmgr::DatabaseManager child(d.options("test", "mkill"));
    auto s = child.get_session();
    std::int64_t backend = s.execute("SELECT CONNECTION_ID()").scalar<std::int64_t>();
    s.execute("UPDATE acct SET bal = 0 WHERE id = 1");  // holds the row lock
    s.execute("INSERT INTO acct VALUES (3, 300)");
    (void)!write(ready[1], &backend, sizeof(backend));
    pause();
  });
  std::int64_t backend = 0;
  REQUIRE(read(ready[0], &backend, sizeof(backend)) == sizeof(backend));
  Oracle o("test.mkill");
  // The transaction is open on the server while the client lives.
  CHECK(open_transactions(o, "p.id = " + std::to_string(backend)) == 1);
  kill(kid, SIGKILL);
  CHECK(wait_child(kid) == 128 + SIGKILL);
  auto killed_at = std::chrono::steady_clock::now();
  // Another session updates the row (innodb_lock_wait_timeout is 50 s: a lock still held
  // would show as a long wait, not as an early error).
  m.execute("UPDATE acct SET bal = bal + 1 WHERE id = 1");
  CHECK(seconds_since(killed_at) < 1.0);
  CHECK(o.run("SELECT id, bal FROM acct ORDER BY id") == "1\t101\n2\t200");
  CHECK(open_transactions(o, "p.id = " + std::to_string(backend)) == 0);
  CHECK(d.admin(Cmd::kStatus)["totals"]["rollbacks_on_disconnect"] == 1);
  CHECK(dbmgr::test::eventually([&] { return d.pool("test.mkill", "main")["in_use"] == 0; }, 5s));
}

TEST_CASE("MariaDB: a long statement is cancelled when its client is killed") {
  Daemon d(mariadb_daemon());
  Oracle o;
  int ready[2];
  REQUIRE(pipe(ready) == 0);
  pid_t kid = fork_child([&] {
    dbmgr::DatabaseManager child(d.options("test", "msleep"));
    char c = 'r';
    (void)!write(ready[1], &c, 1);
    child.execute("SELECT SLEEP(60)");
  });
  char c = 0;
  REQUIRE(read(ready[0], &c, 1) == 1);
  auto sleeping = [&] {
    return o.integer("SELECT count(*) FROM information_schema.processlist WHERE info LIKE 'SELECT SLEEP(60)%' "
                     "AND db = 'test.msleep'");
  };
  for (int i = 0; i < 100 && sleeping() == 0; ++i) std::this_thread::sleep_for(20ms);
  REQUIRE(sleeping() == 1);
  kill(kid, SIGKILL);
  wait_child(kid);
  auto start = std::chrono::steady_clock::now();
  while (sleeping() != 0 && seconds_since(start) < 5) std::this_thread::sleep_for(20ms);
  CHECK(sleeping() == 0);
  CHECK(seconds_since(start) < 2.0);
  CHECK(dbmgr::test::eventually([&] {
    auto p = d.pool("test.msleep", "main");
    return p["in_use"] == 0 && p["idle"] == 1;
  }, 5s));
}

TEST_CASE("MariaDB: nothing a session changed leaks to the next one on that connection") {
  Daemon d(mariadb_daemon("pool:\n  pool_size: 1\n  max_overflow: 0\n"));
  dbmgr::DatabaseManager m(d.options("test", "mleak"));
  Oracle o;
  const std::string lock = "dbmgr_leak_" + std::to_string(getpid());
  m.run([&](dbmgr::Session& s) {
    s.execute("SET @leak = 42");
    s.execute("SET SESSION sql_select_limit = 1");
    s.execute("SET SESSION sql_mode = 'ANSI_QUOTES'");
    s.execute("SET SESSION character_set_results = 'latin1'");
    s.execute("CREATE TEMPORARY TABLE leaked (x INT)");
    s.execute("INSERT INTO leaked VALUES (1), (2)");
    CHECK(s.execute("SELECT GET_LOCK(?, 0)", {lock}).scalar<std::int64_t>() == 1);
    s.execute("PREPARE leaked_stmt FROM 'SELECT 1'");
    // The session sees its own changes.
    CHECK(s.execute("SELECT @leak").scalar<std::int64_t>() == 42);
    CHECK(s.execute("SELECT x FROM leaked").size() == 1);  // sql_select_limit = 1
  });
  // Named locks are the connection's, not the transaction's: nobody may hold this one now.
  CHECK(o.run("SELECT IS_USED_LOCK('" + lock + "') IS NULL") == "1");
  m.run([&](dbmgr::Session& s) {
    auto r = s.execute("SELECT @leak IS NULL, @@session.sql_select_limit = @@global.sql_select_limit, "
                       "@@session.sql_mode = @@global.sql_mode, @@session.character_set_results");
    REQUIRE(r.size() == 1);
    CHECK(r[0].get<bool>(0));
    CHECK(r[0].get<bool>(1));
    CHECK(r[0].get<bool>(2));
    CHECK(r[0].get<std::string>(3) == "utf8mb4");
    CHECK(s.execute("SELECT IS_FREE_LOCK(?)", {lock}).scalar<std::int64_t>() == 1);
    // More than one row again.
    CHECK(s.execute("SELECT 1 UNION ALL SELECT 2").size() == 2);
  });
  auto temp = error_of([&] { m.execute("SELECT count(*) FROM leaked"); });
  CHECK_MESSAGE(temp.has_value(), "the temporary table of the previous session is still there");
  if (temp) CHECK(temp->sqlstate() == "42S02");
  auto prepared = error_of([&] { m.execute("EXECUTE leaked_stmt"); });
  CHECK_MESSAGE(prepared.has_value(), "the prepared statement of the previous session is still there");
}

TEST_CASE("MariaDB: a killed pooled backend is replaced without an error") {
  Daemon d(mariadb_daemon("pool:\n  pool_size: 1\n  max_overflow: 0\n"));
  dbmgr::DatabaseManager m(d.options("test", "mping"));
  Oracle o;
  auto id1 = m.execute("SELECT CONNECTION_ID()").scalar<std::int64_t>();
  o.run("KILL CONNECTION " + std::to_string(id1));
  // At once (the first statement is retried on a new connection) ...
  auto id2 = m.execute("SELECT CONNECTION_ID()").scalar<std::int64_t>();
  CHECK(id2 != id1);
  // ... and after a pause (the pre-ping finds it dead before the lease).
  o.run("KILL CONNECTION " + std::to_string(id2));
  std::this_thread::sleep_for(1200ms);
  auto s = m.get_session();
  auto id3 = s.execute("SELECT CONNECTION_ID()").scalar<std::int64_t>();
  s.execute("SELECT 1");
  s.commit();
  CHECK(id3 != id2);
  CHECK(o.integer("SELECT count(*) FROM information_schema.processlist WHERE id IN (" + std::to_string(id1) +
                  ", " + std::to_string(id2) + ")") == 0);
  CHECK(d.admin(Cmd::kStatus)["totals"]["errors"] == 0);
}

TEST_CASE("MariaDB: pool exhaustion, idle-in-transaction timeout, run/get_db semantics") {
  Daemon d(mariadb_daemon(
      "pool:\n  pool_size: 1\n  max_overflow: 0\n  pool_timeout: 1s\n"
      "  idle_in_transaction_timeout: 2s\n"));
  dbmgr::DatabaseManager m(d.options("test", "mpool"));
  fresh_table(m, "CREATE TABLE t (v INT)");
  {
    auto holder = m.get_session();
    holder.execute("INSERT INTO t VALUES (1)");
    auto start = std::chrono::steady_clock::now();
    auto e = error_of([&] { m.execute("INSERT INTO t VALUES (2)"); });
    REQUIRE_MESSAGE(e, "no pool_exhausted");
    CHECK(e->category() == dbmgr::ErrorCategory::kPoolExhausted);
    INFO(e->what());
    CHECK(e->message().find("test.mpool") != std::string::npos);
    CHECK(e->message().find("size 1") != std::string::npos);
    CHECK(seconds_since(start) >= 0.9);
    CHECK(seconds_since(start) < 3.0);
    holder.commit();
  }
  Oracle o("test.mpool");
  {
    auto s = m.get_session();
    s.execute("INSERT INTO t VALUES (3)");
    std::this_thread::sleep_for(2600ms);
    auto e = error_of([&] { s.execute("INSERT INTO t VALUES (4)"); });
    REQUIRE_MESSAGE(e, "the idle transaction was not aborted");
    CHECK(e->category() == dbmgr::ErrorCategory::kTimeout);
    s.rollback();
    // Rolled back on the server, not only forgotten by the session.
    CHECK(o.integer("SELECT count(*) FROM t WHERE v IN (3, 4)") == 0);
    CHECK(open_transactions(o, "p.db = 'test.mpool'") == 0);
  }
  m.run([](dbmgr::Session& s) { s.execute("INSERT INTO t VALUES (5)"); });
  CHECK_THROWS_AS(m.run([](dbmgr::Session& s) {
    s.execute("INSERT INTO t VALUES (6)");
    throw std::runtime_error("boom");
  }), std::runtime_error);
  {
    auto db = m.get_db(false);
    db.execute("INSERT INTO t VALUES (7)");
  }
  {
    auto db = m.get_db();
    db.execute("INSERT INTO t VALUES (8)");
  }
  CHECK(o.run("SELECT v FROM t ORDER BY v") == "1\n5\n8");
}

TEST_CASE("MariaDB: read-only sessions refuse writes and leave nothing") {
  Daemon d(mariadb_daemon("pool:\n  pool_size: 1\n  max_overflow: 0\n"));
  dbmgr::DatabaseManager m(d.options("test", "mro"));
  fresh_table(m, "CREATE TABLE t (v INT PRIMARY KEY)");
  m.execute("INSERT INTO t VALUES (1)");
  {
    auto s = m.get_session(dbmgr::Access::kReadOnly);
    CHECK(s.execute("SELECT count(*) FROM t").scalar<std::int64_t>() == 1);
    auto e = error_of([&] { s.execute("INSERT INTO t VALUES (2)"); });
    REQUIRE_MESSAGE(e, "a write in a read-only session succeeded");
    CHECK(e->category() == dbmgr::ErrorCategory::kReadOnly);
    CHECK(e->sqlstate() == "25006");
    s.rollback();
  }
  auto one = error_of([&] { m.execute("UPDATE t SET v = 9", {}, dbmgr::Access::kReadOnly); });
  REQUIRE_MESSAGE(one, "a read-only one-shot UPDATE succeeded");
  CHECK(one->category() == dbmgr::ErrorCategory::kReadOnly);
  CHECK(one->sqlstate() == "25006");
  CHECK(m.execute("SELECT count(*) FROM t", {}, dbmgr::Access::kReadOnly).scalar<std::int64_t>() == 1);
  // The same pooled connection writes again for a read-write session.
  m.run([](dbmgr::Session& s) { s.execute("INSERT INTO t VALUES (3)"); });
  m.execute("INSERT INTO t VALUES (4)");
  CHECK(Oracle("test.mro").run("SELECT v FROM t ORDER BY v") == "1\n3\n4");
}

TEST_CASE("MariaDB: a read-only session or one-shot cannot write through DDL, COMMIT, CALL, SET or a function") {
  Daemon d(mariadb_daemon("pool:\n  pool_size: 1\n  max_overflow: 0\n"));
  dbmgr::DatabaseManager m(d.options("test", "mroh"));
  fresh_table(m, "CREATE TABLE t (v INT PRIMARY KEY)");
  m.execute("INSERT INTO t VALUES (1)");
  m.execute("DROP TABLE IF EXISTS made_ro");
  m.execute("CREATE OR REPLACE PROCEDURE ro_p() BEGIN SET SESSION TRANSACTION READ WRITE; "
            "INSERT INTO t VALUES (50); END");
  m.execute("CREATE OR REPLACE FUNCTION ro_w() RETURNS INT MODIFIES SQL DATA BEGIN "
            "INSERT INTO t VALUES (60); RETURN 1; END");
  m.execute("CREATE OR REPLACE FUNCTION ro_flip() RETURNS INT BEGIN "
            "SET @@session.tx_read_only = 0; RETURN 1; END");
  auto refused = [](const std::optional<dbmgr::Error>& e, const std::string& what) {
    REQUIRE_MESSAGE(e, what << ": succeeded in a read-only session");
    CHECK_MESSAGE(e->category() == dbmgr::ErrorCategory::kReadOnly, what << ": " << std::string(e->what()));
    CHECK_MESSAGE(e->sqlstate() == "25006", what << ": " << std::string(e->what()));
  };
  const char* one_shots[] = {
      "CREATE TABLE made_ro (x INT)",                        // DDL commits and goes on outside
      "CREATE TEMPORARY TABLE made_ro_tmp (x INT)",
      "INSERT INTO t VALUES (2)",
      "SELECT ro_w()",                                       // a function that writes
      "CALL ro_p()",                                         // a procedure that makes itself read-write
      "SET STATEMENT tx_read_only=0 FOR INSERT INTO t VALUES (3)",
      "EXECUTE IMMEDIATE 'INSERT INTO t VALUES (4)'",
      "/* c */ UPDATE t SET v = 7",
      "SELECT v FROM t FOR UPDATE",
  };
  for (const char* sql : one_shots) {
    refused(error_of([&] { m.execute(sql, {}, dbmgr::Access::kReadOnly); }), sql);
  }
  {
    // In a session: COMMIT in SQL, then a write (the next transaction would be read-write).
    auto s = m.get_session(dbmgr::Access::kReadOnly);
    CHECK(s.execute("SELECT count(*) FROM t").scalar<std::int64_t>() == 1);
    auto e = error_of([&] { s.execute("COMMIT"); s.execute("INSERT INTO t VALUES (5)"); });
    refused(e, "COMMIT; INSERT");
    s.rollback();
    refused(error_of([&] { s.execute("SET SESSION TRANSACTION READ WRITE"); }), "SET SESSION TRANSACTION");
    s.rollback();
    refused(error_of([&] { s.execute("CREATE TABLE made_ro (x INT)"); }), "DDL in a session");
    s.rollback();
  }
  // A function that turns the session's default read-write does not open the next read-only
  // statement to writes (each read-only request begins its own read-only transaction), on
  // the one pooled connection.
  CHECK(m.execute("SELECT ro_flip()", {}, dbmgr::Access::kReadOnly).scalar<std::int64_t>() == 1);
  refused(error_of([&] { m.execute("INSERT INTO t VALUES (8)", {}, dbmgr::Access::kReadOnly); }),
          "INSERT after a function made the session read-write");
  // Reads of every shape still work read-only.
  CHECK(m.execute("(SELECT 1) UNION ALL (SELECT 2)", {}, dbmgr::Access::kReadOnly).size() == 2);
  CHECK(m.execute("/* lead */ SELECT v FROM t WHERE v = ?", {1}, dbmgr::Access::kReadOnly)
            .scalar<std::int64_t>() == 1);
  CHECK(m.execute("WITH a AS (SELECT v FROM t) SELECT count(*) FROM a", {}, dbmgr::Access::kReadOnly)
            .scalar<std::int64_t>() == 1);
  CHECK(m.execute("SHOW TABLES LIKE 'made_ro%'", {}, dbmgr::Access::kReadOnly).size() == 0);
  // The pooled connection writes again for a read-write one-shot and session.
  m.execute("INSERT INTO t VALUES (9)");
  m.run([](dbmgr::Session& s) { s.execute("INSERT INTO t VALUES (10)"); });
  CHECK(Oracle("test.mroh").run("SELECT v FROM t ORDER BY v") == "1\n9\n10");
  CHECK(Oracle("test.mroh").run("SHOW TABLES LIKE 'made_ro%'") == "");
  m.execute("DROP PROCEDURE ro_p");
  m.execute("DROP FUNCTION ro_w");
  m.execute("DROP FUNCTION ro_flip");
}

TEST_CASE("MariaDB: an UPDATE counts the rows it matched, also those it left unchanged") {
  Daemon d(mariadb_daemon());
  dbmgr::DatabaseManager m(d.options("test", "mrows"));
  fresh_table(m, "CREATE TABLE r (id INT PRIMARY KEY, v INT)");
  m.execute("INSERT INTO r VALUES (1, 5), (2, 5), (3, 6)");
  // MariaDB's own default would say 1 (only row 3 changes); PostgreSQL and SQLite say 3.
  CHECK(m.execute("UPDATE r SET v = 5").affected_rows() == 3);
  CHECK(m.execute("UPDATE r SET v = 5 WHERE id = 1").affected_rows() == 1);
  CHECK(m.execute("DELETE FROM r WHERE id > 1").affected_rows() == 2);
}

TEST_CASE("MariaDB: errors carry SQLSTATE and category; placeholders; REGEXP") {
  Daemon d(mariadb_daemon());
  dbmgr::DatabaseManager m(d.options("test", "merr"));
  fresh_table(m, "CREATE TABLE p (id INT PRIMARY KEY, name VARCHAR(5) NOT NULL)");
  fresh_table(m, "CREATE TABLE c (id INT PRIMARY KEY, p INT, FOREIGN KEY (p) REFERENCES p(id))");
  m.execute("INSERT INTO p VALUES (1, 'a')");
  struct Case {
    const char* what;
    const char* sql;
    dbmgr::ErrorCategory category;
    const char* sqlstate;
  };
  const Case cases[] = {
      {"duplicate key", "INSERT INTO p VALUES (1, 'b')", dbmgr::ErrorCategory::kConstraint, "23000"},
      {"foreign key", "INSERT INTO c VALUES (1, 99)", dbmgr::ErrorCategory::kConstraint, "23000"},
      {"not null", "INSERT INTO p VALUES (2, NULL)", dbmgr::ErrorCategory::kConstraint, "23000"},
      {"syntax", "SELEC 1", dbmgr::ErrorCategory::kSyntax, "42000"},
      {"unknown table", "SELECT * FROM no_such_table_here", dbmgr::ErrorCategory::kSyntax, "42S02"},
      {"unknown column", "SELECT nope FROM p", dbmgr::ErrorCategory::kSyntax, "42S22"},
      {"too long (strict mode)", "INSERT INTO p VALUES (3, 'abcdefgh')", dbmgr::ErrorCategory::kData, "22001"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.what);
    auto e = error_of([&] { m.execute(c.sql); });
    REQUIRE_MESSAGE(e, c.what << ": no error");
    INFO(e->what());
    CHECK(e->category() == c.category);
    CHECK(e->sqlstate() == c.sqlstate);
    CHECK(!e->message().empty());
    // The same in a session: the error ends the transaction, which left nothing.
    auto s = m.get_session();
    s.execute("INSERT INTO p VALUES (10, 'in')");
    auto se = error_of([&] { s.execute(c.sql); });
    REQUIRE(se);
    CHECK(se->sqlstate() == c.sqlstate);
    CHECK(error_of([&] { s.commit(); }).has_value());
    s.rollback();
  }
  CHECK(Oracle("test.merr").run("SELECT id FROM p ORDER BY id") == "1");
  CHECK(d.running());
  // Placeholders inside literals, quoted identifiers and comments (all three kinds) stay.
  auto q = m.execute("SELECT '?' AS `what?`, \"?\" AS dq, 'it\\'s ?' AS esc, ? /* ? */ AS v -- trailing ?\n"
                     ", ? AS w # hash ?\n",
                     {"x", 5});
  REQUIRE(q.column_count() == 5);
  CHECK(q[0].get<std::string>("what?") == "?");
  CHECK(q[0].get<std::string>("dq") == "?");
  CHECK(q[0].get<std::string>("esc") == "it's ?");
  CHECK(q[0].get<std::string>("v") == "x");
  CHECK(q[0].get<std::int64_t>("w") == 5);
  // REGEXP is MariaDB's own operator.
  CHECK(m.execute("SELECT 'ada@example.com' REGEXP ?", {"@example\\.com$"}).scalar<bool>());
  CHECK(!m.execute("SELECT 'ada@example.org' REGEXP ?", {"@example\\.com$"}).scalar<bool>());
  CHECK(m.execute("SELECT count(*) FROM p WHERE name REGEXP ?", {"^a"}).scalar<std::int64_t>() == 1);
  // LAST_INSERT_ID() in the session that inserted (docs/protocol.md, kComplete).
  fresh_table(m, "CREATE TABLE ai (id BIGINT AUTO_INCREMENT PRIMARY KEY, v INT)");
  m.execute("INSERT INTO ai(v) VALUES (1), (2)");
  m.run([](dbmgr::Session& s) {
    s.execute("INSERT INTO ai(v) VALUES (?)", {3});
    // LAST_INSERT_ID() is a BIGINT UNSIGNED: int64 while it fits (docs/protocol.md).
    CHECK(s.execute("SELECT LAST_INSERT_ID()").scalar<std::int64_t>() ==
          s.execute("SELECT id FROM ai WHERE v = 3").scalar<std::int64_t>());
  });
}

TEST_CASE("MariaDB: 100k rows stream to a slow reader; others are served meanwhile") {
  Daemon d(mariadb_daemon());
  dbmgr::DatabaseManager m(d.options("test", "mstream"));
  fresh_table(m, "CREATE TABLE big (id INT PRIMARY KEY, pad VARCHAR(200))");
  m.execute("INSERT INTO big SELECT seq, CONCAT(seq, ':', REPEAT('x', 150)) FROM seq_1_to_100000");
  constexpr std::int64_t kRows = 100000;
  // Through the client library: every row, in order.
  auto all = m.execute("SELECT id, pad FROM big ORDER BY id");
  REQUIRE(all.size() == kRows);
  CHECK(all[kRows - 1].get<std::int64_t>(0) == kRows);
  CHECK(all.affected_rows() == kRows);
  // A raw client that reads slowly: ~15 MB while it pauses after every frame at first.
  dbmgr::test::RawConn c(d.socket());
  c.hello();
  std::vector<std::uint8_t> out;
  dbmgr::proto::Encoder e(out);
  e.one_shot(7, "mstream", "test", 0, "SELECT id, pad FROM big ORDER BY id", nullptr, 0);
  c.send(out);
  std::int64_t next = 1, frames = 0;
  bool complete = false;
  auto start = std::chrono::steady_clock::now();
  bool others_served = false;
  while (!complete) {
    auto bytes = c.read_frame(30s);
    REQUIRE_MESSAGE(!bytes.empty(), "the daemon closed the connection after row " << next);
    dbmgr::proto::Header h;
    REQUIRE(dbmgr::proto::parse_header(bytes.data(), 1u << 30, &h) == dbmgr::proto::DecodeError::kOk);
    dbmgr::proto::Message msg;
    REQUIRE(dbmgr::proto::decode({h, bytes.data() + dbmgr::proto::kHeaderSize}, &msg) ==
            dbmgr::proto::DecodeError::kOk);
    if (auto* rows = std::get_if<dbmgr::proto::Rows>(&msg)) {
      REQUIRE(rows->column_count == 2);
      std::uint32_t i = 0;
      for (dbmgr::proto::Value v : rows->values) {
        if (i++ % 2 != 0) continue;
        REQUIRE(v.tag == dbmgr::proto::ValueTag::kInt64);
        REQUIRE(v.i == next);
        ++next;
      }
      if (++frames < 40) std::this_thread::sleep_for(50ms);
      if (frames == 20) {
        // While this result backs up, other clients get answers.
        auto t = std::chrono::steady_clock::now();
        CHECK(m.execute("SELECT count(*) FROM big WHERE id <= 10").scalar<std::int64_t>() == 10);
        others_served = seconds_since(t) < 2.0;
      }
    } else if (auto* done = std::get_if<dbmgr::proto::Complete>(&msg)) {
      CHECK(done->affected_rows == kRows);
      complete = true;
    } else if (auto* err = std::get_if<dbmgr::proto::ErrorMsg>(&msg)) {
      FAIL("the stream ended with an error after row " << next << ": " << std::string(err->message));
    }
  }
  CHECK(next == kRows + 1);
  CHECK(others_served);
  CHECK(seconds_since(start) >= 1.9);  // it really was slow
  MESSAGE("100k rows in " << frames << " frames, " << seconds_since(start) << " s");
  CHECK(dbmgr::test::eventually([&] { return d.pool("test.mstream", "main")["in_use"] == 0; }, 5s));
}

TEST_CASE("MariaDB: a schema change between two runs of the same statement returns the new columns") {
  Daemon d(mariadb_daemon("pool:\n  pool_size: 1\n  max_overflow: 0\n"));
  dbmgr::DatabaseManager m(d.options("test", "mschema"));
  fresh_table(m, "CREATE TABLE sc (a INT)");
  m.execute("INSERT INTO sc VALUES (1)");
  auto columns = [](const dbmgr::Result& r) {
    std::string s;
    for (std::size_t i = 0; i < r.column_count(); ++i) s += (i ? "," : "") + r.columns()[i];
    return s;
  };
  // Each path runs the statement before and after the change on the one pooled connection;
  // a path that fails is reported with its error (and the others still run).
  auto read_all = [&](const char* when) {
    std::vector<dbmgr::Result> v;
    auto path = [&](const char* name, const std::function<dbmgr::Result()>& f) {
      try {
        v.push_back(f());
      } catch (const dbmgr::Error& e) {
        const std::string what = std::string("SELECT * FROM sc ") + when + ", " + name + ": " + e.what();
        FAIL_CHECK(what);
      }
    };
    path("one-shot", [&] { return m.execute("SELECT * FROM sc"); });
    path("read-only one-shot", [&] { return m.execute("SELECT * FROM sc", {}, dbmgr::Access::kReadOnly); });
    path("first statement of a session",
         [&] { return m.run([&](dbmgr::Session& s) { return s.execute("SELECT * FROM sc"); }); });
    path("second statement of a session", [&] {
      return m.run([&](dbmgr::Session& s) {
        s.execute("SELECT 1");
        return s.execute("SELECT * FROM sc");
      });
    });
    return v;
  };
  // The changes themselves must work on that connection, whatever the reads before did.
  auto change = [&](const std::string& sql) {
    try {
      m.execute(sql);
    } catch (const dbmgr::Error& e) {
      const std::string what = "\"" + sql + "\" failed: " + e.what();
      FAIL_CHECK(what);
    }
  };
  for (auto& r : read_all("before")) CHECK(columns(r) == "a");
  change("ALTER TABLE sc ADD COLUMN b VARCHAR(10) DEFAULT 'dflt'");
  for (auto& r : read_all("after ADD COLUMN")) {
    CHECK(columns(r) == "a,b");
    REQUIRE(r.size() == 1);
    CHECK(r[0].get<std::string>(1) == "dflt");
  }
  change("DROP TABLE sc");
  change("CREATE TABLE sc (x VARCHAR(10), y BIGINT, z DOUBLE, w BLOB)");
  change("INSERT INTO sc VALUES ('x1', 5, 2.5, x'00ff'), ('x2', 6, 3.5, NULL)");
  for (auto& r : read_all("after DROP + CREATE")) {
    CHECK(columns(r) == "x,y,z,w");
    REQUIRE(r.size() == 2);
    CHECK(r.declared_type(0) == dbmgr::Type::kText);
    CHECK(r.declared_type(1) == dbmgr::Type::kInt64);
    CHECK(r.declared_type(2) == dbmgr::Type::kDouble);
    CHECK(r.declared_type(3) == dbmgr::Type::kBlob);
    CHECK(r[0].get<std::int64_t>(1) + r[1].get<std::int64_t>(1) == 11);
  }
  change("ALTER TABLE sc DROP COLUMN y, MODIFY COLUMN z TEXT");
  for (auto& r : read_all("after DROP COLUMN, MODIFY")) {
    CHECK(columns(r) == "x,z,w");
    REQUIRE(r.size() == 2);
    CHECK(r.declared_type(1) == dbmgr::Type::kText);
  }
  // Changes that keep the number of columns: their names and types must be the new ones too.
  change("ALTER TABLE sc RENAME COLUMN x TO renamed");
  for (auto& r : read_all("after RENAME COLUMN")) CHECK(columns(r) == "renamed,z,w");
  change("UPDATE sc SET w = 'now text'");  // no bytes that are not UTF-8 left in the BLOB
  change("ALTER TABLE sc MODIFY COLUMN w VARCHAR(20)");
  for (auto& r : read_all("after MODIFY COLUMN w VARCHAR(20)")) {
    CHECK(columns(r) == "renamed,z,w");
    REQUIRE(r.size() == 2);
    CHECK(r.declared_type(2) == dbmgr::Type::kText);
    CHECK(r[0].type(2) == dbmgr::Type::kText);
    CHECK(r[0].get<std::string>(2) == "now text");
  }
  change("DROP TABLE sc");
  change("CREATE TABLE sc (p DOUBLE, q VARCHAR(10), r BIGINT)");
  change("INSERT INTO sc VALUES (0.5, 'q1', 7)");
  for (auto& r : read_all("after DROP + CREATE with as many columns")) {
    CHECK(columns(r) == "p,q,r");
    REQUIRE(r.size() == 1);
    CHECK(r.declared_type(0) == dbmgr::Type::kDouble);
    CHECK(r.declared_type(1) == dbmgr::Type::kText);
    CHECK(r.declared_type(2) == dbmgr::Type::kInt64);
    CHECK(r[0].type(0) == dbmgr::Type::kDouble);
    CHECK(r[0].type(1) == dbmgr::Type::kText);
    CHECK(r[0].get<std::string>(1) == "q1");
    CHECK(r[0].get<std::int64_t>(2) == 7);
  }
}

TEST_CASE("MariaDB: a server restart fails in-flight sessions; new ones work after it") {
  Daemon d(mariadb_daemon());
  dbmgr::DatabaseManager m(d.options("test", "mrestart"));
  fresh_table(m, "CREATE TABLE t (v INT)");
  auto s = m.get_session();
  s.execute("INSERT INTO t VALUES (1)");
  REQUIRE(std::system(env("DBMGR_TEST_MARIADB_CTL").c_str()) == 0);
  auto e = error_of([&] { s.execute("INSERT INTO t VALUES (2)"); });
  REQUIRE_MESSAGE(e, "the in-flight session did not notice the restart");
  CHECK(e->category() == dbmgr::ErrorCategory::kConnection);
  s.rollback();
  bool ok = false;
  for (int i = 0; i < 100 && !ok; ++i) {
    try {
      m.execute("INSERT INTO t VALUES (3)");
      ok = true;
    } catch (const dbmgr::Error& err) {
      INFO(err.what());
      std::this_thread::sleep_for(100ms);
    }
  }
  CHECK(ok);
  CHECK(Oracle("test.mrestart").run("SELECT v FROM t") == "3");
  // The server away for a while: a clear connection error, soon; then it is back.
  REQUIRE(std::system(env("DBMGR_TEST_MARIADB_STOP").c_str()) == 0);
  auto start = std::chrono::steady_clock::now();
  auto down = error_of([&] { m.execute("INSERT INTO t VALUES (4)"); });
  CHECK(seconds_since(start) < 6.0);
  REQUIRE_MESSAGE(down, "a statement succeeded while the server was stopped");
  CHECK(down->category() == dbmgr::ErrorCategory::kConnection);
  CHECK(down->message().find("test.mrestart") != std::string::npos);
  CHECK(d.running());
  REQUIRE(std::system(env("DBMGR_TEST_MARIADB_START").c_str()) == 0);
  ok = false;
  for (int i = 0; i < 100 && !ok; ++i) {
    try {
      m.run([](dbmgr::Session& x) { x.execute("INSERT INTO t VALUES (5)"); });
      ok = true;
    } catch (const dbmgr::Error& err) {
      INFO(err.what());
      std::this_thread::sleep_for(100ms);
    }
  }
  CHECK(ok);
  CHECK(Oracle("test.mrestart").run("SELECT v FROM t ORDER BY v") == "3\n5");
  CHECK(d.running());
}

TEST_CASE("MariaDB down: a clear connection error, other databases keep being served") {
  DaemonOptions o = mariadb_daemon();
  o.config_yaml =
      "databases:\n"
      "  gone:\n"
      "    type: mariadb\n"
      "    host: /nonexistent/socket/mysqld.sock\n"
      "    name: gone\n"
      "    user: nobody\n";
  Daemon d(o);
  dbmgr::DatabaseManager gone(d.options({}, "gone"));
  auto start = std::chrono::steady_clock::now();
  auto e = error_of([&] { gone.execute("SELECT 1"); });
  REQUIRE_MESSAGE(e, "no error from a server that is not there");
  CHECK(e->category() == dbmgr::ErrorCategory::kConnection);
  CHECK(e->message().find("gone") != std::string::npos);
  CHECK(seconds_since(start) < 6.0);
  dbmgr::DatabaseManager alive(d.options("test", "malive"));
  CHECK(alive.execute("SELECT 6").scalar<std::int64_t>() == 6);
}
