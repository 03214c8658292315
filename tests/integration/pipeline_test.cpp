// Pipelined transactions (issue 14): Session::pipeline() sends the statements and the COMMIT
// in one write. Against a real dbmgrd on SQLite and PostgreSQL, beside what breaks them: an
// error in the middle, another writer waiting for the same connection, a pipeline larger than
// the socket's buffers (the client must read replies while it writes).
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include "harness.hpp"

using dbmgr::test::Daemon;
using dbmgr::test::DaemonOptions;

namespace {

std::string tname(const char* base) { return std::string(base) + "_" + std::to_string(getpid()); }

std::int64_t count(dbmgr::DatabaseManager& m, const std::string& sql) {
  return m.execute(sql).scalar<std::int64_t>();
}

// An error at statement 2 of 3: nothing of the transaction stays, the error is the
// statement's and names it, the session is failed until rollback, and the next pipeline on
// the same session commits.
void error_in_the_middle(dbmgr::DatabaseManager& m, const std::string& t) {
  m.execute("INSERT INTO " + t + " (id, v) VALUES (1, 'before')");
  dbmgr::Session s = m.get_session();
  dbmgr::Pipeline p = s.pipeline();
  p.add("INSERT INTO " + t + " (id, v) VALUES (?, ?)", {2, "first"});
  p.add("INSERT INTO " + t + " (id, v) VALUES (?, ?)", {1, "param-text-42"});
  p.add("INSERT INTO " + t + " (id, v) VALUES (?, ?)", {3, "after"});
  bool threw = false;
  try {
    p.commit();
  } catch (const dbmgr::Error& e) {
    threw = true;
    CHECK(e.category() == dbmgr::ErrorCategory::kConstraint);
    CHECK(e.sqlstate().substr(0, 2) == "23");
    CHECK(e.message().find("statement 2 of 3") != std::string::npos);
    CHECK(e.message().find("param-text-42") == std::string::npos);  // parameters are not shown
    CHECK(e.message().find("INSERT INTO " + t) != std::string::npos);
  }
  CHECK(threw);
  CHECK(p.empty());
  CHECK(s.failed());
  CHECK_THROWS_AS(s.execute("SELECT 1"), dbmgr::Error);
  s.rollback();
  CHECK(count(m, "SELECT count(*) FROM " + t) == 1);  // only 'before'
  p.add("INSERT INTO " + t + " (id, v) VALUES (?, ?)", {2, "second try"});
  p.add("UPDATE " + t + " SET v = ? WHERE id = ?", {"updated", 1});
  p.add("SELECT v FROM " + t + " WHERE id = ?", {1});
  std::vector<dbmgr::Result> r = p.commit();
  REQUIRE(r.size() == 3);
  CHECK(r[0].affected_rows() == 1);
  CHECK(r[1].affected_rows() == 1);
  REQUIRE(r[2].size() == 1);
  CHECK(r[2].scalar<std::string>() == "updated");
  CHECK_FALSE(s.in_transaction());
  CHECK(count(m, "SELECT count(*) FROM " + t) == 2);
}

// 4 threads x 50 pipelined transactions of 5 statements, beside 2 threads of interactive
// transactions on the same rows: every committed transaction is there exactly once.
void beside_waiters(dbmgr::DatabaseManager& m, const std::string& t) {
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < 6; ++w) {
    threads.emplace_back([&, w] {
      try {
        for (int i = 0; i < 50; ++i) {
          const int id = 1000 + w * 100 + i;
          dbmgr::Session s = m.get_session();
          if (w < 4) {
            dbmgr::Pipeline p = s.pipeline();
            p.add("INSERT INTO " + t + " (id, v) VALUES (?, 'p')", {id});
            for (int k = 0; k < 3; ++k) p.add("UPDATE " + t + " SET n = n + 1 WHERE id = 1");
            p.add("UPDATE " + t + " SET n = n + 1 WHERE id = ?", {id});
            p.commit();
          } else {
            s.execute("INSERT INTO " + t + " (id, v) VALUES (?, 'i')", {id});
            s.execute("UPDATE " + t + " SET n = n + 1 WHERE id = 1");
            s.commit();
          }
        }
      } catch (const std::exception& e) {
        MESSAGE(e.what());
        failures++;
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(failures == 0);
  CHECK(count(m, "SELECT count(*) FROM " + t + " WHERE v = 'p' AND n = 1") == 200);
  CHECK(count(m, "SELECT count(*) FROM " + t + " WHERE v = 'i'") == 100);
  CHECK(count(m, "SELECT n FROM " + t + " WHERE id = 1") == 4 * 50 * 3 + 2 * 50);
}

// 20,000 statements of 300 bytes each (6 MB, far more than a socket buffer holds) in one
// pipeline: sent while the replies are read, all committed.
void larger_than_the_socket(dbmgr::DatabaseManager& m, const std::string& t) {
  dbmgr::Session s = m.get_session();
  dbmgr::Pipeline p = s.pipeline();
  const std::string pad(300, 'x');
  constexpr int kN = 20000;
  for (int i = 0; i < kN; ++i) p.add("INSERT INTO " + t + " (id, v) VALUES (?, ?)", {100000 + i, pad});
  std::vector<dbmgr::Result> r = p.commit();
  CHECK(r.size() == kN);
  CHECK(count(m, "SELECT count(*) FROM " + t + " WHERE id >= 100000") == kN);
}

// A pipeline without COMMIT leaves the transaction open; rollback undoes it.
void execute_keeps_the_transaction(dbmgr::DatabaseManager& m, const std::string& t) {
  dbmgr::Session s = m.get_session();
  dbmgr::Pipeline p = s.pipeline();
  p.add("INSERT INTO " + t + " (id, v) VALUES (?, 'open')", {50});
  p.add("SELECT count(*) FROM " + t + " WHERE id = ?", {50});
  std::vector<dbmgr::Result> r = p.execute();
  CHECK(r[1].scalar<std::int64_t>() == 1);
  CHECK(s.in_transaction());
  s.rollback();
  CHECK(count(m, "SELECT count(*) FROM " + t + " WHERE id = 50") == 0);
}

const char* kTable = " (id BIGINT PRIMARY KEY, v TEXT, n BIGINT NOT NULL DEFAULT 0)";

}  // namespace

// A result rendered cell by cell: columns, each cell's type and value, affected rows and the
// last insert id.
static std::string render(const dbmgr::Result& r) {
  std::ostringstream o;
  for (const auto& c : r.columns()) o << c << "|";
  o << "\n";
  for (const dbmgr::Row& row : r) {
    for (std::size_t c = 0; c < row.size(); ++c) {
      o << dbmgr::to_string(row.type(c)) << ":";
      switch (row.type(c)) {
        case dbmgr::Type::kNull: break;
        case dbmgr::Type::kBool: o << row.get<bool>(c); break;
        case dbmgr::Type::kInt64: o << row.get<std::int64_t>(c); break;
        case dbmgr::Type::kDouble: o << row.get<double>(c); break;
        case dbmgr::Type::kText: o << row.get<std::string>(c); break;
        case dbmgr::Type::kBlob: o << row.get<dbmgr::Blob>(c).view(); break;
      }
      o << "|";
    }
    o << "\n";
  }
  o << "affected " << r.affected_rows() << " id " << r.last_insert_id();
  return o.str();
}

// The same statements pipelined (the daemon batches them) and one round trip each, on twin
// tables: every result equal cell by cell; then a column is added and the same SQL runs
// again (a cached statement whose table changed): equal again, the new column included.
static void same_as_one_by_one(dbmgr::DatabaseManager& m, const std::string& base) {
  const std::string ta = base + "_piped", tb = base + "_single";
  struct Stmt {
    std::string sql;  // "@" is the table
    std::vector<dbmgr::Param> params;
  };
  const std::vector<Stmt> work = {
      {"INSERT INTO @ (id, v, n) VALUES (?, ?, ?)", {1, "one", 10}},
      {"INSERT INTO @ (id, v, n) VALUES (?, ?, ?)", {2, nullptr, 20}},
      {"INSERT INTO @ (id, v, n) VALUES (?, ?, ?)", {3, "three", 30}},
      {"UPDATE @ SET n = n + ? WHERE id >= ?", {5, 2}},
      {"SELECT * FROM @ ORDER BY id", {}},
      {"SELECT id, v IS NULL, n * 0.5, ? FROM @ WHERE id < ? ORDER BY id", {"p", 3}},
      {"DELETE FROM @ WHERE id = ?", {1}},
      {"SELECT count(*), sum(n) FROM @", {}},
  };
  auto sql_for = [](const std::string& sql, const std::string& t) {
    std::string out = sql;
    out.replace(out.find('@'), 1, t);
    return out;
  };
  // A transaction, run again once when the server asks for it: PostgreSQL refuses a cached
  // plan whose result columns changed (0A000, category serialization, "run it again").
  auto transaction = [](auto&& body) {
    for (int attempt = 0;; ++attempt) {
      try {
        return body();
      } catch (const dbmgr::Error& e) {
        if (attempt > 0 || e.category() != dbmgr::ErrorCategory::kSerialization) throw;
        CHECK(e.message().find("run it again") != std::string::npos);
      }
    }
  };
  for (int run = 0; run < 2; ++run) {
    for (const auto& t : {ta, tb}) m.execute("DELETE FROM " + t);
    std::vector<dbmgr::Result> got = transaction([&] {
      dbmgr::Session s = m.get_session();
      dbmgr::Pipeline p = s.pipeline();
      for (const auto& st : work) p.add(sql_for(st.sql, ta), st.params);
      return p.commit();
    });
    std::vector<dbmgr::Result> want = transaction([&] {
      dbmgr::Session s = m.get_session();
      std::vector<dbmgr::Result> out;
      for (const auto& st : work) out.push_back(s.execute(sql_for(st.sql, tb), st.params));
      s.commit();
      return out;
    });
    REQUIRE(got.size() == work.size());
    REQUIRE(want.size() == work.size());
    for (std::size_t i = 0; i < work.size(); ++i) {
      CAPTURE(run);
      CAPTURE(work[i].sql);
      CHECK(render(got[i]) == render(want[i]));
    }
    if (run == 0) {  // a schema change between the two runs of the same statements
      for (const auto& t : {ta, tb}) m.execute("ALTER TABLE " + t + " ADD COLUMN extra TEXT");
    }
  }
  CHECK(m.execute("SELECT * FROM " + ta).columns().size() == 4);
}

// Each case on a fresh daemon (doctest runs the test case again for each SUBCASE).
static void every_case(dbmgr::DatabaseManager& m, const std::string& t) {
  SUBCASE("an error in the middle") { error_in_the_middle(m, t); }
  SUBCASE("beside waiters") {
    m.execute("INSERT INTO " + t + " (id, v) VALUES (1, 'counter')");
    beside_waiters(m, t);
  }
  SUBCASE("larger than the socket") { larger_than_the_socket(m, t); }
  SUBCASE("execute keeps the transaction") { execute_keeps_the_transaction(m, t); }
  SUBCASE("the same results as one by one") {
    for (const char* suffix : {"_piped", "_single"}) {
      m.execute("DROP TABLE IF EXISTS " + t + suffix);
      m.execute("CREATE TABLE " + t + suffix + kTable);
    }
    same_as_one_by_one(m, t);
    for (const char* suffix : {"_piped", "_single"}) m.execute("DROP TABLE " + t + suffix);
  }
}

TEST_CASE("SQLite: pipelined transactions") {
  Daemon d;
  dbmgr::DatabaseManager m(d.options("test", "pipe"));
  const std::string t = "items";
  m.execute(std::string("CREATE TABLE ") + t + kTable);
  every_case(m, t);
}

TEST_CASE("PostgreSQL: pipelined transactions") {
  Daemon d(dbmgr::test::pg_daemon_options());
  dbmgr::DatabaseManager m(d.options());
  const std::string t = tname("pipe");
  m.execute("DROP TABLE IF EXISTS " + t);
  m.execute("CREATE TABLE " + t + kTable);
  every_case(m, t);
  m.execute("DROP TABLE " + t);
}

// The README's quickstart (client/examples/quickstart.cpp), pipelined transaction included,
// prints what the README shows, and the database holds what it printed.
TEST_CASE("the README's quickstart prints what the README shows") {
  Daemon d;
  dbmgr::test::TempDir out;
  const std::string log = out.path() + "/out.txt";
  const std::string cmd = "DBMGR_SOCKET='" + d.socket() + "' '" +
                          dbmgr::test::required_env("DBMGR_EXAMPLE") + "' > '" + log + "' 2>&1";
  CHECK(std::system(cmd.c_str()) == 0);
  std::ifstream in(log);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string head = "database: sqlite test.default at sqlite:///";
  REQUIRE(text.compare(0, head.size(), head) == 0);
  const std::string rest = text.substr(text.find('\n') + 1);
  CHECK(rest ==
        "updated 2 rows\n"
        "pipelined: 3 statements, 4 visits in all\n"
        "ada@example.com visits=2\n"
        "cy@example.com visits=2\n"
        "3 users\n");
  dbmgr::DatabaseManager m(d.options("test"));
  CHECK(count(m, "SELECT SUM(visits) FROM quickstart_users") == 4);
  CHECK(count(m, "SELECT visits FROM quickstart_users WHERE email = 'bob@example.org'") == 0);
}

// The daemon runs a session's pipelined statements as one backend operation (a batch). A
// client killed while its batch runs: nothing of its transaction stays, the writer is free
// again at once, and a pipeline after it commits whole.
TEST_CASE("SQLite: a client killed while its pipeline runs leaves nothing; the daemon serves on") {
  Daemon d;
  dbmgr::DatabaseManager m(d.options("test", "pipe"));
  m.execute(std::string("CREATE TABLE items") + kTable);
  // About 3 s of work on the writer (a recursive count), between two inserts.
  const char* kSlow =
      "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 20000000) "
      "SELECT count(*) FROM c";
  for (int round = 0; round < 3; ++round) {
    std::fflush(nullptr);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      try {
        dbmgr::DatabaseManager c(d.options("test", "pipe"));
        dbmgr::Session s = c.get_session();
        dbmgr::Pipeline p = s.pipeline();
        p.add("INSERT INTO items (id, v) VALUES (?, 'killed')", {1000 + round});
        p.add(kSlow);
        p.add("INSERT INTO items (id, v) VALUES (?, 'killed')", {2000 + round});
        p.commit();
      } catch (...) {
      }
      _exit(0);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(700));
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    CHECK(WIFSIGNALED(status));  // it was still waiting for its pipeline
    const auto t0 = std::chrono::steady_clock::now();
    m.execute("INSERT INTO items (id, v) VALUES (?, 'after')", {round});  // needs the writer
    const double waited =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    CHECK(waited < 2.0);  // the killed batch was interrupted, not run to its end
    CHECK(count(m, "SELECT count(*) FROM items WHERE v = 'killed'") == 0);
    CHECK(count(m, "SELECT count(*) FROM items WHERE v = 'after'") == round + 1);
  }
  dbmgr::Session s = m.get_session();
  auto results = s.pipeline()
                     .add("INSERT INTO items (id, v) VALUES (?, ?)", {10, "whole"})
                     .add("INSERT INTO items (id, v) VALUES (?, ?)", {11, "whole"})
                     .add("SELECT count(*) FROM items")
                     .commit();
  REQUIRE(results.size() == 3);
  CHECK(results[2].scalar<std::int64_t>() == 5);
  CHECK(count(m, "SELECT count(*) FROM items WHERE v = 'whole'") == 2);
}

// Many sessions pipelining whole transactions at once: the writer runs those waiting in a row
// as one group commit (a SAVEPOINT each). Beside them, interactive transactions and one-shots
// on the same rows, and every fifth pipelined transfer fails in its middle (a duplicate log
// id). The oracle afterwards: exactly the transfers acknowledged are in the log, every
// balance is its start plus the acknowledged deltas, nothing was lost or doubled; and groups
// did form (the writer's counters), so this tested them.
TEST_CASE("SQLite: concurrent pipelined transfers in group commits; the oracle finds exactly "
          "what was acknowledged") {
  Daemon d;
  dbmgr::DatabaseManager m(d.options("test", "pipe"));
  constexpr int kAccounts = 8;
  constexpr int kThreads = 12;
  constexpr int kEach = 60;
  m.execute("CREATE TABLE acc (id INTEGER PRIMARY KEY, bal INTEGER NOT NULL)");
  m.execute("CREATE TABLE xlog (id INTEGER PRIMARY KEY, src INTEGER, dst INTEGER, amount INTEGER)");
  for (int a = 0; a < kAccounts; ++a) m.execute("INSERT INTO acc VALUES (?, 1000)", {a});
  m.execute("INSERT INTO xlog VALUES (0, 0, 0, 0)");  // the id every failing transfer reuses
  std::vector<std::vector<int>> acked(kThreads);
  std::atomic<int> unexpected{0};
  std::atomic<int> failed{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < kThreads; ++w) {
    threads.emplace_back([&, w] {
      try {
        for (int i = 0; i < kEach; ++i) {
          const int id = 1 + w * 1000 + i;
          const int src = (w + i) % kAccounts, dst = (w + 3 * i + 1) % kAccounts, amount = 1 + i % 7;
          dbmgr::Session s = m.get_session();
          if (w == kThreads - 1) {  // interactive, the writer held across round trips
            s.execute("UPDATE acc SET bal = bal - ? WHERE id = ?", {amount, src});
            s.execute("UPDATE acc SET bal = bal + ? WHERE id = ?", {amount, dst});
            s.execute("INSERT INTO xlog VALUES (?, ?, ?, ?)", {id, src, dst, amount});
            s.commit();
            acked[w].push_back(id);
            continue;
          }
          dbmgr::Pipeline p = s.pipeline();
          p.add("UPDATE acc SET bal = bal - ? WHERE id = ?", {amount, src});
          p.add("SELECT bal FROM acc WHERE id = ?", {src});
          p.add("INSERT INTO xlog VALUES (?, ?, ?, ?)", {i % 5 == 4 ? 0 : id, src, dst, amount});
          p.add("UPDATE acc SET bal = bal + ? WHERE id = ?", {amount, dst});
          try {
            auto r = p.commit();
            if (r.size() != 4 || r[1].size() != 1) unexpected++;
            acked[w].push_back(id);
            if (i % 5 == 4) unexpected++;  // it should have failed
          } catch (const dbmgr::Error& e) {
            if (i % 5 != 4 || e.category() != dbmgr::ErrorCategory::kConstraint ||
                e.message().find("statement 3 of 4") == std::string::npos) {
              MESSAGE(e.what());
              unexpected++;
            }
            failed++;
            s.rollback();
          }
        }
      } catch (const std::exception& e) {
        MESSAGE(e.what());
        unexpected++;
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(unexpected == 0);
  CHECK(failed == (kThreads - 1) * (kEach / 5));
  // The oracle: the log holds exactly the acknowledged transfers, the balances their sum.
  std::vector<std::int64_t> want(kAccounts, 1000);
  std::int64_t n = 0;
  for (int w = 0; w < kThreads; ++w) {
    for (int id : acked[w]) {
      const int i = (id - 1) % 1000;
      const int src = (w + i) % kAccounts, dst = (w + 3 * i + 1) % kAccounts, amount = 1 + i % 7;
      want[src] -= amount;
      want[dst] += amount;
      CHECK(count(m, "SELECT count(*) FROM xlog WHERE id = " + std::to_string(id) +
                         " AND amount = " + std::to_string(amount)) == 1);
      ++n;
    }
  }
  CHECK(count(m, "SELECT count(*) FROM xlog") == n + 1);
  CHECK(count(m, "SELECT sum(bal) FROM acc") == kAccounts * 1000);  // no transfer half done
  for (int a = 0; a < kAccounts; ++a) {
    CHECK(count(m, "SELECT bal FROM acc WHERE id = " + std::to_string(a)) == want[a]);
  }
  // Groups formed: the pipelined transactions did not all run alone.
  auto pools = d.admin(dbmgr::proto::AdminCommand::kPools);
  std::int64_t grouped = 0;
  for (const auto& p : pools) {
    if (p.value("role", "") == "writer") grouped += p.value("group_committed_transactions", 0);
  }
  MESSAGE("pipelined transactions committed in groups: " << grouped);
  CHECK(grouped > 0);
}
