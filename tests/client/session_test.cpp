// Protocol-level tests of libdbmgr against a scripted peer (a fake dbmgrd on a Unix socket
// or a socketpair): handshake, pipelined open + execute, result assembly across row batches,
// error propagation, failed-session handling, run()/get_db() transaction scopes, one-shots,
// info, reconnect after a daemon restart, fork and threads. The real daemon is tested in
// tests/integration.
#include <doctest/doctest.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "connection.hpp"
#include "dbmgr/dbmgr.hpp"
#include "scripted_peer.hpp"

using dbmgr::Error;
using dbmgr::ErrorCategory;
using dbmgr::test::Request;
using dbmgr::test::ScriptedPeer;
using proto_t = dbmgr::proto::MsgType;
namespace proto = dbmgr::proto;

namespace {

dbmgr::Options options_for(const ScriptedPeer& peer, std::string prefix = "test") {
  dbmgr::Options o;
  o.socket_path = peer.socket_path();
  o.db_prefix = std::move(prefix);
  o.client_name = "client-test";
  return o;
}

template <typename F>
Error catch_error(F f) {
  try {
    f();
  } catch (const Error& e) {
    return e;
  }
  FAIL("no dbmgr::Error thrown");
  return Error(ErrorCategory::kInternal, "unreachable");
}

std::size_t count(const std::vector<Request>& rs, proto_t type) {
  std::size_t n = 0;
  for (const Request& r : rs) n += r.type == type ? 1 : 0;
  return n;
}

}  // namespace

TEST_SUITE("client") {
  TEST_CASE("handshake over a socketpair: hello carries name and pid, hello_ok is remembered") {
    ScriptedPeer peer;
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    peer.serve_fd(sv[1]);
    auto conn = dbmgr::detail::Connection::adopt(sv[0], "socketpair", "handshake-test");
    CHECK(conn->server_version() == "scripted-peer 1.0");
    CHECK(conn->max_frame_bytes() == 1024 * 1024);
    CHECK_FALSE(conn->broken());
    CHECK(conn->idle_and_alive());
    auto hellos = peer.requests_of(proto_t::kHello);
    REQUIRE(hellos.size() == 1);
    CHECK(hellos[0].client_name == "handshake-test");
    CHECK(hellos[0].pid == static_cast<std::uint32_t>(::getpid()));
    CHECK(hellos[0].request_id != 0);

    // The peer going away is seen by the liveness check without blocking, once the
    // connection has been idle for a second (before that it is taken as alive: a send on it
    // would fail and be retried on a new connection, see the restart test below).
    peer.drop_all_connections();
    for (int i = 0; i < 1000 && conn->idle_and_alive(); ++i) ::usleep(2000);
    CHECK_FALSE(conn->idle_and_alive());
  }

  TEST_CASE("handshake refused: the daemon's error is thrown with its category") {
    ScriptedPeer peer;
    peer.set_handler([](const Request& r, dbmgr::test::Reply& reply) {
      if (r.type != proto_t::kHello) return false;
      reply.error(proto::ErrorCategory::kShuttingDown, "", "dbmgrd is draining");
      reply.close_after();
      return true;
    });
    dbmgr::DatabaseManager db(options_for(peer));
    Error e = catch_error([&] { db.ping(); });
    CHECK(e.category() == ErrorCategory::kShuttingDown);
    CHECK(e.message().find("draining") != std::string::npos);
    CHECK(e.message().find(peer.socket_path()) != std::string::npos);
  }

  TEST_CASE("no daemon: a connection error names the socket path") {
    dbmgr::Options o;
    o.socket_path = "/nonexistent/dbmgr-test/dbmgrd.sock";
    dbmgr::DatabaseManager db(o);
    Error e = catch_error([&] { db.execute("SELECT 1"); });
    CHECK(e.category() == ErrorCategory::kConnection);
    CHECK(e.client_side());
    CHECK(e.message().find("/nonexistent/dbmgr-test/dbmgrd.sock") != std::string::npos);
  }

  TEST_CASE("socket path defaults to $DBMGR_SOCKET") {
    ScriptedPeer peer;
    ::setenv("DBMGR_SOCKET", peer.socket_path().c_str(), 1);
    dbmgr::DatabaseManager db;
    ::unsetenv("DBMGR_SOCKET");
    CHECK(db.socket_path() == peer.socket_path());
    db.ping();
    auto hellos = peer.requests_of(proto_t::kHello);
    REQUIRE(hellos.size() == 1);
    CHECK_FALSE(hellos[0].client_name.empty());  // the program's name
  }

  TEST_CASE("first execute pipelines open + execute in one write; rows assemble across batches") {
    ScriptedPeer peer;
    dbmgr::Options o = options_for(peer);
    o.database = "app";
    dbmgr::DatabaseManager db(o);
    auto session = db.get_session();
    dbmgr::Result r = session.execute("SELECT rows 7");
    CHECK(session.in_transaction());

    auto rs = peer.requests();
    REQUIRE(rs.size() == 3);
    CHECK(rs[0].type == proto_t::kHello);
    CHECK(rs[1].type == proto_t::kOpen);
    CHECK(rs[2].type == proto_t::kExecute);
    CHECK(rs[1].chunk == rs[2].chunk);  // arrived in the same recv(): one write
    CHECK(rs[1].session_id != 0);
    CHECK(rs[1].session_id == rs[2].session_id);
    CHECK(rs[1].database == "app");
    CHECK(rs[1].prefix == "test");
    CHECK(rs[1].flags == 0);
    CHECK(rs[2].request_id != rs[1].request_id);

    REQUIRE(r.size() == 7);  // 3 + 3 + 1 rows in three kRows frames
    CHECK(r.columns() ==
          std::vector<std::string>{"id", "name", "data", "score", "flag", "nothing"});
    CHECK(r.declared_type(0) == dbmgr::Type::kInt64);
    for (std::size_t i = 0; i < r.size(); ++i) {
      CHECK(r[i].get<std::int64_t>("id") == static_cast<std::int64_t>(i));
      CHECK(r[i].get<std::string>("name") == "name-" + std::to_string(i));
      CHECK(r[i].get<dbmgr::Blob>("data").view() == std::string_view("\0\x01\xff", 3));
      CHECK(r[i].get<double>("score") == i + 0.5);
      CHECK(r[i].get<bool>("flag") == (i % 2 == 1));
      CHECK(r[i].is_null("nothing"));
    }
    session.commit();
    CHECK_FALSE(session.in_transaction());
    CHECK(peer.requests_of(proto_t::kCommit).size() == 1);
  }

  TEST_CASE("params travel typed; affected rows and last insert id come back") {
    ScriptedPeer peer;
    dbmgr::DatabaseManager db(options_for(peer));
    auto s = db.get_session();
    std::string email = "ada@example.com";
    std::optional<int> none;
    auto r = s.execute("ECHO", {42, email, nullptr, none, true, 2.5, "lit",
                                dbmgr::Blob::from_string("b\0b"), std::string("moved")});
    REQUIRE(r.size() == 1);
    CHECK(r[0].get<int>(0) == 42);
    CHECK(r[0].get<std::string>(1) == email);
    CHECK(r[0].is_null(2));
    CHECK(r[0].is_null(3));
    CHECK(r[0].get<bool>(4));
    CHECK(r[0].get<double>(5) == 2.5);
    CHECK(r[0].get<std::string>(6) == "lit");
    CHECK(r[0].type(7) == dbmgr::Type::kBlob);
    CHECK(r[0].get<std::string>(8) == "moved");
    auto ex = peer.requests_of(proto_t::kExecute);
    REQUIRE(ex.size() == 1);
    CHECK(ex[0].params[0].tag == proto::ValueTag::kInt64);
    CHECK(ex[0].params[7].tag == proto::ValueTag::kBlob);

    std::vector<dbmgr::Param> params{1, "x"};
    auto ins = s.execute("INSERT INTO t VALUES (?, ?)", params);
    CHECK(ins.affected_rows() == 1);
    CHECK(ins.last_insert_id() == 42);
    CHECK(ins.empty());
    CHECK(ins.columns().empty());

    // Text that is not UTF-8 is refused before anything is sent.
    Error e = catch_error([&] { s.execute("ECHO", {std::string("\xff\xfe")}); });
    CHECK(e.category() == ErrorCategory::kData);
    CHECK(peer.requests_of(proto_t::kExecute).size() == 2);
    // The session is still fine.
    CHECK(s.execute("ECHO", {1}).scalar<int>() == 1);
  }

  TEST_CASE("a pooled connection keeps its daemon session for the next Session") {
    ScriptedPeer peer;
    dbmgr::DatabaseManager db(options_for(peer));
    {
      auto s = db.get_session();
      s.execute("SELECT rows 1");
      s.commit();
    }
    {
      auto s = db.get_session();
      s.execute("SELECT rows 1");
    }  // destructor: rollback
    auto rs = peer.requests();
    CHECK(peer.accepted() == 1);
    CHECK(count(rs, proto_t::kOpen) == 1);
    CHECK(count(rs, proto_t::kExecute) == 2);
    CHECK(count(rs, proto_t::kRollback) == 1);
    auto ex = peer.requests_of(proto_t::kExecute);
    CHECK(ex[0].session_id == ex[1].session_id);

    // A new prefix: the old daemon session is closed and a new one opened, in the same write
    // as the statement.
    db.init_engine_config("test.other");
    peer.clear_requests();
    auto s = db.get_session();
    s.execute("SELECT rows 1");
    rs = peer.requests();
    REQUIRE(rs.size() == 3);
    CHECK(rs[0].type == proto_t::kClose);
    CHECK(rs[1].type == proto_t::kOpen);
    CHECK(rs[2].type == proto_t::kExecute);
    CHECK(rs[0].chunk == rs[2].chunk);
    CHECK(rs[1].prefix == "test.other");
    CHECK(rs[1].session_id != rs[0].session_id);
    CHECK(rs[2].session_id == rs[1].session_id);

    // Read-only sessions open with the read-only flag.
    s.close();
    auto ro = db.get_session(dbmgr::Access::kReadOnly);
    ro.execute("SELECT rows 1");
    auto opens = peer.requests_of(proto_t::kOpen);
    CHECK(opens.back().flags == proto::kOpenReadOnly);
  }

  TEST_CASE("a statement error fails the session until rollback") {
    ScriptedPeer peer;
    dbmgr::DatabaseManager db(options_for(peer));
    auto s = db.get_session();
    s.execute("INSERT INTO t VALUES (1)");
    Error e = catch_error([&] { s.execute("FAIL"); });
    CHECK(e.category() == ErrorCategory::kConstraint);
    CHECK(e.sqlstate() == "23505");
    CHECK(e.message().find("users_pkey") != std::string::npos);
    CHECK_FALSE(e.client_side());
    CHECK(s.failed());
    CHECK_FALSE(s.in_transaction());

    // Further statements and commit are refused locally, naming the first error.
    Error again = catch_error([&] { s.execute("SELECT rows 1"); });
    CHECK(again.category() == ErrorCategory::kInvalidRequest);
    CHECK(again.message().find("users_pkey") != std::string::npos);
    Error commit = catch_error([&] { s.commit(); });
    CHECK(commit.category() == ErrorCategory::kInvalidRequest);
    CHECK(peer.requests_of(proto_t::kExecute).size() == 2);
    CHECK(peer.requests_of(proto_t::kCommit).empty());

    s.rollback();
    CHECK(peer.requests_of(proto_t::kRollback).size() == 1);
    CHECK_FALSE(s.failed());
    CHECK(s.execute("SELECT rows 2").size() == 2);
    s.commit();
  }

  TEST_CASE("a failed open throws the open's error; the session stays usable") {
    ScriptedPeer peer;
    dbmgr::Options o = options_for(peer);
    o.database = "missing";
    dbmgr::DatabaseManager db(o);
    auto s = db.get_session();
    Error e = catch_error([&] { s.execute("SELECT rows 1"); });
    CHECK(e.category() == ErrorCategory::kNotFound);
    CHECK(e.message().find("no database named 'missing'") != std::string::npos);
    CHECK(peer.requests_of(proto_t::kOpen).size() == 1);
    CHECK(peer.requests_of(proto_t::kExecute).size() == 1);  // pipelined; answered not_found
    CHECK_FALSE(s.failed());
    // Next try opens again (the daemon has no such session).
    CHECK_THROWS_AS(s.execute("SELECT rows 1"), Error);
    CHECK(peer.requests_of(proto_t::kOpen).size() == 2);
  }

  TEST_CASE("run(): commit on return, rollback and rethrow on throw, failed commit throws") {
    ScriptedPeer peer;
    dbmgr::DatabaseManager db(options_for(peer));
    int n = db.run([](dbmgr::Session& s) {
      s.execute("INSERT INTO t VALUES (1)");
      return 5;
    });
    CHECK(n == 5);
    CHECK(peer.requests_of(proto_t::kCommit).size() == 1);
    CHECK(peer.requests_of(proto_t::kRollback).empty());

    CHECK_THROWS_AS(db.run([](dbmgr::Session& s) {
      s.execute("INSERT INTO t VALUES (2)");
      throw std::runtime_error("app failure");
    }),
                    std::runtime_error);
    CHECK(peer.requests_of(proto_t::kCommit).size() == 1);
    CHECK(peer.requests_of(proto_t::kRollback).size() == 1);

    // A statement error inside run(): rolled back (acknowledged) and rethrown.
    Error e = catch_error([&] { db.run([](dbmgr::Session& s) { s.execute("FAIL"); }); });
    CHECK(e.category() == ErrorCategory::kConstraint);
    CHECK(peer.requests_of(proto_t::kRollback).size() == 2);

    // The commit itself fails: never swallowed.
    peer.fail_next_commit();
    Error c = catch_error(
        [&] { db.run([](dbmgr::Session& s) { s.execute("INSERT INTO t VALUES (3)"); }); });
    CHECK(c.category() == ErrorCategory::kConstraint);
    CHECK(c.sqlstate() == "23503");
    CHECK(peer.requests_of(proto_t::kRollback).size() == 3);  // acknowledged on close

    // A run() with no statement sends nothing.
    peer.clear_requests();
    db.run([](dbmgr::Session&) {});
    CHECK(peer.requests().empty());
    CHECK(peer.accepted() == 1);  // every run reused the one connection
  }

  TEST_CASE("get_db(): commits at scope exit, rolls back while unwinding or without auto_commit") {
    ScriptedPeer peer;
    dbmgr::DatabaseManager db(options_for(peer));
    {
      auto s = db.get_db();
      s.execute("INSERT INTO t VALUES (1)");
    }
    CHECK(peer.requests_of(proto_t::kCommit).size() == 1);
    try {
      auto s = db.get_db();
      s.execute("INSERT INTO t VALUES (2)");
      throw std::runtime_error("boom");
    } catch (const std::runtime_error&) {
    }
    CHECK(peer.requests_of(proto_t::kCommit).size() == 1);
    CHECK(peer.requests_of(proto_t::kRollback).size() == 1);
    {
      auto s = db.get_db(/*auto_commit=*/false);
      s.execute("INSERT INTO t VALUES (3)");
    }
    CHECK(peer.requests_of(proto_t::kCommit).size() == 1);
    CHECK(peer.requests_of(proto_t::kRollback).size() == 2);
    {
      auto s = db.get_db(false);
      s.execute("INSERT INTO t VALUES (4)");
      s.commit();  // explicit commit: errors would throw here
    }
    CHECK(peer.requests_of(proto_t::kCommit).size() == 2);
    CHECK(peer.requests_of(proto_t::kRollback).size() == 2);

    // A scope opened while an exception is already unwinding still commits when it ends
    // normally (uncaught count compared to the one at its start).
    struct Committer {
      dbmgr::DatabaseManager& db;
      ~Committer() {
        auto s = db.get_db();
        s.execute("INSERT INTO t VALUES (5)");
      }
    };
    try {
      Committer c{db};
      throw std::runtime_error("unwinding");
    } catch (const std::runtime_error&) {
    }
    CHECK(peer.requests_of(proto_t::kCommit).size() == 3);

    // A failing scope-exit commit cannot throw; it is logged and rolled back.
    peer.fail_next_commit();
    {
      auto s = db.get_db();
      s.execute("INSERT INTO t VALUES (6)");
    }
    CHECK(peer.requests_of(proto_t::kCommit).size() == 4);
    CHECK(peer.requests_of(proto_t::kRollback).size() == 3);
  }

  TEST_CASE("one-shot: one request with session 0, own transaction") {
    ScriptedPeer peer;
    dbmgr::Options o = options_for(peer);
    o.database = "app";
    dbmgr::DatabaseManager db(o);
    auto r = db.execute("UPDATE counters SET n = n + 1 WHERE id = ?", {7});
    CHECK(r.affected_rows() == 0);
    auto r2 = db.execute("SELECT rows 4", {}, dbmgr::Access::kReadOnly);
    CHECK(r2.size() == 4);
    auto shots = peer.requests_of(proto_t::kOneShot);
    REQUIRE(shots.size() == 2);
    CHECK(shots[0].session_id == 0);
    CHECK(shots[0].database == "app");
    CHECK(shots[0].prefix == "test");
    CHECK(shots[0].params.size() == 1);
    CHECK(shots[0].params[0].i == 7);
    CHECK(shots[1].flags == proto::kOpenReadOnly);
    CHECK(peer.requests_of(proto_t::kOpen).empty());

    Error e = catch_error([&] { db.execute("FAIL"); });
    CHECK(e.category() == ErrorCategory::kConstraint);
    // The connection survives a daemon error and is reused.
    db.execute("INSERT INTO t VALUES (1)");
    CHECK(peer.accepted() == 1);
  }

  TEST_CASE("database info comes from the daemon and is cached per prefix") {
    ScriptedPeer peer;
    dbmgr::DatabaseManager db(options_for(peer));
    CHECK(db.database_type() == "sqlite");
    CHECK(db.database_name() == "test.app");
    CHECK(db.database_uri() == "sqlite:///var/lib/dbmgr/test.app.db");
    CHECK(db.pk_type() == "String");
    CHECK(db.pk_column_type() == "TEXT");
    CHECK(peer.requests_of(proto_t::kInfo).size() == 1);
    CHECK(peer.requests_of(proto_t::kInfo)[0].flags == 0);

    db.init_engine_config("test.payment", /*test_connection=*/true);
    auto infos = peer.requests_of(proto_t::kInfo);
    REQUIRE(infos.size() == 2);
    CHECK(infos[1].flags == proto::kInfoTestConnection);
    CHECK(infos[1].prefix == "test.payment");
    CHECK(db.database_name() == "test.payment.app");
    CHECK(peer.requests_of(proto_t::kInfo).size() == 2);  // cached by the test

    dbmgr::Options down = options_for(peer);
    down.database = "down";
    down.test_connection = true;
    Error e = catch_error([&] { dbmgr::DatabaseManager bad(down); });
    CHECK(e.category() == ErrorCategory::kConnection);
    CHECK(e.sqlstate() == "08006");
    CHECK_FALSE(e.client_side());
  }

  TEST_CASE("after a daemon restart, several pooled connections used a moment ago are all dead") {
    ScriptedPeer peer;
    dbmgr::DatabaseManager db(options_for(peer));
    {  // three connections in the manager's free list, each used just now
      auto a = db.get_session();
      auto b = db.get_session();
      auto c = db.get_session();
      a.execute("INSERT INTO t VALUES (1)");
      b.execute("INSERT INTO t VALUES (2)");
      c.execute("INSERT INTO t VALUES (3)");
      a.commit();
      b.commit();
      c.commit();
    }
    CHECK(peer.accepted() == 3);
    peer.drop_all_connections();  // the "restart", well within a second of their last use
    db.execute("INSERT INTO t VALUES (4)");  // one-shot: the retry must not take another dead one
    CHECK(peer.accepted() == 4);
    db.run([](dbmgr::Session& s) { s.execute("INSERT INTO t VALUES (5)"); });
    CHECK(peer.accepted() == 4);  // the new connection was kept; the dead ones were dropped

    {  // the same through a session's first statement
      auto a = db.get_session();
      auto b = db.get_session();
      a.execute("INSERT INTO t VALUES (6)");
      b.execute("INSERT INTO t VALUES (7)");
      a.commit();
      b.commit();
    }
    const int before = peer.accepted();
    peer.drop_all_connections();
    db.run([](dbmgr::Session& s) { s.execute("INSERT INTO t VALUES (8)"); });
    CHECK(peer.accepted() == before + 1);
  }

  TEST_CASE("after a daemon restart new sessions reconnect; an in-flight one gets a clear error") {
    ScriptedPeer peer;
    dbmgr::DatabaseManager db(options_for(peer));
    db.run([](dbmgr::Session& s) { s.execute("INSERT INTO t VALUES (1)"); });
    CHECK(peer.accepted() == 1);

    peer.drop_all_connections();  // the "restart"
    db.run([](dbmgr::Session& s) { s.execute("INSERT INTO t VALUES (2)"); });
    CHECK(peer.accepted() == 2);
    db.execute("INSERT INTO t VALUES (3)");
    CHECK(peer.accepted() == 2);

    // In flight: the transaction is open when the daemon goes away.
    auto s = db.get_session();
    s.execute("INSERT INTO t VALUES (4)");
    peer.drop_all_connections();
    Error e = catch_error([&] { s.execute("INSERT INTO t VALUES (5)"); });
    CHECK(e.category() == ErrorCategory::kConnection);
    CHECK(e.client_side());
    CHECK(e.message().find(peer.socket_path()) != std::string::npos);
    CHECK(s.failed());
    Error commit = catch_error([&] { s.commit(); });
    CHECK(commit.category() == ErrorCategory::kConnection);
    s.rollback();  // forgets the lost transaction without I/O
    CHECK_FALSE(s.failed());
    s.execute("INSERT INTO t VALUES (6)");  // reconnects
    s.commit();
    CHECK(peer.accepted() == 3);
  }

  TEST_CASE("the daemon closing mid-statement is a connection error, not a hang") {
    ScriptedPeer peer;
    dbmgr::DatabaseManager db(options_for(peer));
    auto s = db.get_session();
    s.execute("INSERT INTO t VALUES (1)");
    Error e = catch_error([&] { s.execute("DIE"); });
    CHECK(e.category() == ErrorCategory::kConnection);
    CHECK(e.message().find("closed by the daemon") != std::string::npos);
    s.rollback();
    CHECK(s.execute("SELECT rows 1").size() == 1);
  }

  TEST_CASE("malformed or unexpected replies break the connection with a protocol error") {
    ScriptedPeer peer;
    peer.set_handler([](const Request& r, dbmgr::test::Reply& reply) {
      if (r.type == proto_t::kExecute && r.sql == "GARBAGE") {
        reply.raw(std::vector<std::uint8_t>(16, 0xee));  // not a valid header
        return true;
      }
      if (r.type == proto_t::kExecute && r.sql == "WRONG ID") {
        proto::Complete c;
        reply.encoder().complete(r.request_id + 100, r.session_id, c);
        return true;
      }
      if (r.type == proto_t::kExecute && r.sql == "ROWS FIRST") {
        reply.rows({{proto::Value::int64(1)}}, 1);
        reply.complete(0, 0, true);
        return true;
      }
      return false;
    });
    dbmgr::DatabaseManager db(options_for(peer));
    for (const char* sql : {"GARBAGE", "WRONG ID", "ROWS FIRST"}) {
      CAPTURE(sql);
      auto s = db.get_session();
      Error e = catch_error([&] { s.execute(sql); });
      CHECK(e.category() == ErrorCategory::kProtocol);
      s.rollback();
    }
    CHECK(peer.accepted() == 3);  // each broken connection was dropped, not reused
    db.ping();
  }

  TEST_CASE("replies of different sessions may interleave: matched by request id") {
    ScriptedPeer peer;
    std::uint32_t close_rid = 0, close_sid = 0;  // touched only on the peer thread
    peer.set_handler([&](const Request& r, dbmgr::test::Reply& reply) {
      if (r.type == proto_t::kClose) {  // answer it after the next statement's reply
        close_rid = r.request_id;
        close_sid = r.session_id;
        return true;
      }
      if (r.type == proto_t::kExecute && close_rid != 0) {
        reply.columns({{"x", proto::ValueTag::kInt64}});
        reply.rows({{proto::Value::int64(1)}}, 1);
        reply.encoder().empty(proto_t::kOk, close_rid, close_sid);  // in between
        reply.rows({{proto::Value::int64(2)}}, 1);
        reply.complete(2, 0, true);
        close_rid = 0;
        return true;
      }
      return false;
    });
    dbmgr::DatabaseManager db(options_for(peer));
    db.run([](dbmgr::Session& s) { s.execute("SELECT rows 1"); });
    db.init_engine_config("test.other");
    auto s = db.get_session();
    auto r =
        s.execute("SELECT x");  // kClose(old) + kOpen + kExecute; kOk(close) arrives mid-result
    REQUIRE(r.size() == 2);
    CHECK(r[1].get<int>("x") == 2);
    s.commit();
    CHECK(peer.accepted() == 1);
  }

  TEST_CASE("a killed daemon session: error, rollback acknowledges, next statement reopens") {
    ScriptedPeer peer;
    std::atomic<std::uint32_t> killed{0};
    peer.set_handler([&](const Request& r, dbmgr::test::Reply& reply) {
      if (r.session_id != 0 && r.session_id == killed.load() && r.type != proto_t::kClose) {
        reply.error(proto::ErrorCategory::kKilled, "", "session killed by an operator");
        return true;
      }
      return false;
    });
    dbmgr::DatabaseManager db(options_for(peer));
    auto s = db.get_session();
    s.execute("INSERT INTO t VALUES (1)");
    killed = peer.requests_of(proto_t::kOpen).back().session_id;
    Error e = catch_error([&] { s.execute("INSERT INTO t VALUES (2)"); });
    CHECK(e.category() == ErrorCategory::kKilled);
    CHECK(s.failed());
    s.rollback();  // no round trip: the killed session holds nothing
    CHECK(peer.requests_of(proto_t::kRollback).empty());
    peer.clear_requests();
    s.execute("INSERT INTO t VALUES (3)");
    auto rs = peer.requests();
    REQUIRE(rs.size() == 3);
    CHECK(rs[0].type == proto_t::kClose);
    CHECK(rs[0].session_id == killed.load());
    CHECK(rs[1].type == proto_t::kOpen);
    s.commit();
    s.close();

    // Killed while idle in the pool: the next Session's first statement reopens by itself.
    killed = peer.requests_of(proto_t::kOpen).back().session_id;
    peer.clear_requests();
    db.run([](dbmgr::Session& t) { t.execute("INSERT INTO t VALUES (4)"); });
    rs = peer.requests();
    REQUIRE(rs.size() == 5);  // execute (killed), close, open, execute, commit
    CHECK(rs[0].type == proto_t::kExecute);
    CHECK(rs[1].type == proto_t::kClose);
    CHECK(rs[2].type == proto_t::kOpen);
    CHECK(rs[3].type == proto_t::kExecute);
    CHECK(rs[4].type == proto_t::kCommit);
  }

  TEST_CASE("session moves, close, thread_session and cleanup_thread") {
    ScriptedPeer peer;
    dbmgr::DatabaseManager db(options_for(peer));
    dbmgr::Session a = db.get_session();
    a.execute("INSERT INTO t VALUES (1)");
    dbmgr::Session b = std::move(a);
    CHECK_FALSE(a.is_open());
    CHECK(b.in_transaction());
    CHECK(catch_error([&] { a.execute("SELECT rows 1"); }).category() ==
          ErrorCategory::kInvalidRequest);
    b.close();
    b.close();
    CHECK(peer.requests_of(proto_t::kRollback).size() == 1);

    dbmgr::Session& t1 = db.thread_session();
    dbmgr::Session& t2 = db.thread_session();
    CHECK(&t1 == &t2);
    t1.execute("INSERT INTO t VALUES (2)");
    t1.commit();
    std::thread other([&] {
      dbmgr::Session& t3 = db.thread_session();
      CHECK(&t3 != &t1);
      t3.execute("SELECT rows 1");
    });  // thread exit closes t3 (rollback)
    other.join();
    CHECK(peer.requests_of(proto_t::kRollback).size() == 2);
    db.cleanup_thread();
    dbmgr::Session& t4 = db.thread_session();
    CHECK(t4.is_open());
    CHECK_FALSE(t4.in_transaction());
    db.cleanup_thread();
  }

  TEST_CASE("a Session outlives its manager and still returns its connection") {
    ScriptedPeer peer;
    dbmgr::Session s;
    {
      dbmgr::DatabaseManager db(options_for(peer));
      s = db.get_session();
    }
    s.execute("INSERT INTO t VALUES (1)");
    s.commit();
    s.close();
  }

  TEST_CASE("fork: the child never writes to the parent's socket") {
    ScriptedPeer peer;
    dbmgr::DatabaseManager db(options_for(peer));
    auto parent_session = db.get_session();
    parent_session.execute("INSERT INTO t VALUES (2)");  // a transaction open across fork
    db.execute("INSERT INTO t VALUES (1)");  // a second connection, idle in the pool at fork
    REQUIRE(peer.accepted() == 2);
    peer.clear_requests();

    pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      int code = 0;
      try {
        db.init_worker();
        // The inherited session's transaction is not the child's.
        try {
          parent_session.execute("INSERT INTO t VALUES (3)");
          code = 10;
        } catch (const Error& e) {
          if (e.category() != ErrorCategory::kConnection) code = 11;
        }
        parent_session.rollback();
        // New work uses new connections.
        db.execute("INSERT INTO t VALUES (4)");
        db.run([](dbmgr::Session& s) { s.execute("INSERT INTO t VALUES (5)"); });
      } catch (...) {
        code = 20;
      }
      ::_exit(code);
    }
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);

    // Everything the child sent came over connections it opened itself.
    for (const Request& r : peer.requests()) {
      CAPTURE(static_cast<int>(r.type));
      CHECK(r.connection >= 2);
      if (r.type == proto_t::kHello) CHECK(r.pid == static_cast<std::uint32_t>(child));
    }
    CHECK(peer.requests_of(proto_t::kOneShot).size() == 1);
    // The parent's transaction is intact and commits.
    parent_session.execute("INSERT INTO t VALUES (6)");
    parent_session.commit();
    db.execute("INSERT INTO t VALUES (7)");
  }

  TEST_CASE("threads share one manager safely") {
    ScriptedPeer peer;
    dbmgr::DatabaseManager db(options_for(peer));
    constexpr int kThreads = 8;
    constexpr int kIterations = 40;
    std::atomic<int> ok{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < kIterations; ++i) {
          if (i % 4 == 0) {
            db.execute("INSERT INTO t VALUES (?)", {t * 1000 + i});
          } else if (i % 4 == 1) {
            auto s = db.get_db();
            if (s.execute("SELECT rows 4").size() != 4) return;
          } else {
            db.run([&](dbmgr::Session& s) { s.execute("ECHO", {t, i}); });
          }
          ok.fetch_add(1);
        }
      });
    }
    for (auto& th : threads) th.join();
    CHECK(ok.load() == kThreads * kIterations);
    CHECK(peer.accepted() <= kThreads);
    CHECK(peer.requests_of(proto_t::kHello).size() == static_cast<std::size_t>(peer.accepted()));
  }

}  // TEST_SUITE
