// Unit tests of the split client against the scripted peer: the router's table, a blocking
// batch with more requests than the old fixed limit, and the async client (one socket for
// many sessions, futures and co_await, errors through them, a broken socket failing what is
// in flight, cancellation sending kCancel + kRollback). The real daemon: tests/integration.
#include <doctest/doctest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <chrono>
#include <future>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "connection.hpp"
#include "dbmgr/dbmgr.hpp"
#include "reply_router.hpp"
#include "scripted_peer.hpp"

using dbmgr::Error;
using dbmgr::ErrorCategory;
using dbmgr::test::Request;
using dbmgr::test::ScriptedPeer;
using proto_t = dbmgr::proto::MsgType;
namespace proto = dbmgr::proto;
using namespace std::chrono_literals;

namespace {

dbmgr::Options options_for(const ScriptedPeer& peer) {
  dbmgr::Options o;
  o.socket_path = peer.socket_path();
  o.db_prefix = "test";
  o.client_name = "async-test";
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

dbmgr::Task<std::int64_t> insert_and_commit(dbmgr::AsyncSession s, int i) {
  dbmgr::Result r = co_await s.execute("INSERT INTO t VALUES (?)", dbmgr::params(i));
  co_await s.commit();
  co_await s.close();
  co_return r.last_insert_id();
}

bool eventually_request(const ScriptedPeer& peer, const std::string& sql) {
  for (int i = 0; i < 2000; ++i) {
    for (const Request& r : peer.requests_of(proto_t::kExecute)) {
      if (r.sql == sql) return true;
    }
    ::usleep(1000);
  }
  return false;
}

dbmgr::Task<int> add_after(dbmgr::Task<std::int64_t> t, int k) {
  std::int64_t v = co_await t;
  co_return static_cast<int>(v) + k;
}

}  // namespace

TEST_SUITE("client") {
  TEST_CASE("PendingTable: insert, find, erase across growth and probe runs") {
    dbmgr::detail::PendingTable t;
    std::vector<dbmgr::detail::Pending> ps(5000);
    std::map<std::uint32_t, dbmgr::detail::Pending*> model;
    for (std::uint32_t i = 0; i < ps.size(); ++i) {
      std::uint32_t key = i * 7919u + 1;  // spread keys
      CHECK(t.insert(key, &ps[i]));
      model[key] = &ps[i];
    }
    CHECK_FALSE(t.insert(1, &ps[0]));  // already there
    CHECK(t.size() == ps.size());
    CHECK(t.capacity() >= 2 * ps.size());
    // Erase every third key, then check every key against the model.
    for (auto it = model.begin(); it != model.end();) {
      if (it->first % 3 == 0) {
        t.erase(it->first);
        it = model.erase(it);
      } else {
        ++it;
      }
    }
    CHECK(t.size() == model.size());
    for (std::uint32_t i = 0; i < ps.size(); ++i) {
      std::uint32_t key = i * 7919u + 1;
      auto it = model.find(key);
      CHECK(t.find(key) == (it == model.end() ? nullptr : it->second));
    }
    CHECK(t.find(0) == nullptr);
    std::size_t drained = 0;
    t.drain([&](dbmgr::detail::Pending*) { ++drained; });
    CHECK(drained == model.size());
    CHECK(t.size() == 0);
  }

  TEST_CASE("a blocking batch carries more than four requests (the old limit aborted)") {
    ScriptedPeer peer;
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    peer.serve_fd(sv[1]);
    auto conn = dbmgr::detail::Connection::adopt(sv[0], "socketpair", "batch-test");
    conn->begin_batch();
    std::vector<dbmgr::detail::Pending> ps(100);
    for (auto& p : ps) {
      std::uint32_t rid = conn->next_request_id();
      conn->encoder().empty(proto_t::kPing, rid, 0);
      conn->expect(p, rid, dbmgr::detail::Expect::kPong);
    }
    conn->round_trip();
    for (auto& p : ps) {
      CHECK(p.done);
      CHECK_FALSE(p.error);
    }
    auto pings = peer.requests_of(proto_t::kPing);
    REQUIRE(pings.size() == 100);
    CHECK(conn->router().outstanding() == 0);
  }

  TEST_CASE("async: many sessions share one socket; futures and co_await give the results") {
    ScriptedPeer peer;
    dbmgr::DatabaseManager db(options_for(peer));
    std::vector<dbmgr::Task<std::int64_t>> tasks;
    for (int i = 0; i < 50; ++i) tasks.push_back(insert_and_commit(db.get_async_db(), i));
    for (auto& t : tasks) CHECK(t.get() == 42);  // the scripted peer's last insert id
    CHECK(peer.accepted() == 1);                  // one daemon connection for all of them
    auto opens = peer.requests_of(proto_t::kOpen);
    REQUIRE(opens.size() == 50);
    std::set<std::uint32_t> ids;
    for (const Request& r : opens) ids.insert(r.session_id);
    CHECK(ids.size() == 50);  // each AsyncSession its own daemon session
    CHECK(peer.requests_of(proto_t::kCommit).size() == 50);
    CHECK(peer.requests_of(proto_t::kClose).size() == 50);

    // A Task awaiting another Task.
    CHECK(add_after(insert_and_commit(db.get_async_db(), 7), 1).get() == 43);

    // The future form, and the conversion to std::future.
    auto s = db.get_async_db();
    std::future<dbmgr::Result> f = s.execute("SELECT rows 5");
    dbmgr::Result r = f.get();
    CHECK(r.size() == 5);
    CHECK(r[4].get<std::string>("name") == "name-4");
    CHECK(s.in_transaction());
    s.commit().get();
    CHECK_FALSE(s.in_transaction());
    // Nothing open: commit finishes at once, without a request.
    std::size_t commits = peer.requests_of(proto_t::kCommit).size();
    auto c = s.commit();
    CHECK(c.ready());
    c.get();
    CHECK(peer.requests_of(proto_t::kCommit).size() == commits);
    s.close().get();
    CHECK_FALSE(s.is_open());
    Error e = catch_error([&] { s.execute("SELECT 1").get(); });
    CHECK(e.category() == ErrorCategory::kInvalidRequest);

    // A one-shot over the async transport.
    auto one = db.execute_async("INSERT INTO t VALUES (1)");
    CHECK(one.get().affected_rows() == 1);
    auto shots = peer.requests_of(proto_t::kOneShot);
    REQUIRE(shots.size() == 1);
    CHECK(shots[0].session_id == 0);
    CHECK(peer.accepted() == 1);
  }

  TEST_CASE("async: errors arrive through the future; the session is failed until rollback") {
    ScriptedPeer peer;
    dbmgr::DatabaseManager db(options_for(peer));
    auto s = db.get_async_db();
    s.execute("INSERT INTO t VALUES (1)").get();
    Error e = catch_error([&] { s.execute("FAIL").get(); });
    CHECK(e.category() == ErrorCategory::kConstraint);
    CHECK(e.sqlstate() == "23505");
    CHECK(s.failed());
    Error again = catch_error([&] { s.execute("SELECT rows 1").get(); });
    CHECK(again.category() == ErrorCategory::kInvalidRequest);
    CHECK(again.message().find("23505") != std::string::npos);  // names the first failure
    s.rollback().get();
    CHECK_FALSE(s.failed());
    CHECK(s.execute("SELECT rows 2").get().size() == 2);
    // Bad parameters fail the operation, not the call.
    auto bad = s.execute("SELECT ?", {std::string("\xff\xfe")});
    CHECK(bad.ready());
    Error data = catch_error([&] { bad.get(); });
    CHECK(data.category() == ErrorCategory::kData);

    // A failed commit.
    peer.fail_next_commit();
    Error ce = catch_error([&] { s.commit().get(); });
    CHECK(ce.sqlstate() == "23503");
  }

  TEST_CASE("async: rollback via run_async when the coroutine throws; commit when it returns") {
    ScriptedPeer peer;
    dbmgr::DatabaseManager db(options_for(peer));
    auto ok = db.run_async([](dbmgr::AsyncSession& s) -> dbmgr::Task<int> {
      co_await s.execute("INSERT INTO t VALUES (1)");
      co_return 5;
    });
    CHECK(ok.get() == 5);
    CHECK(peer.requests_of(proto_t::kCommit).size() == 1);
    CHECK(peer.requests_of(proto_t::kRollback).empty());
    auto bad = db.run_async([](dbmgr::AsyncSession& s) -> dbmgr::Task<void> {
      co_await s.execute("INSERT INTO t VALUES (2)");
      throw std::runtime_error("application error");
    });
    CHECK_THROWS_WITH_AS(bad.get(), "application error", std::runtime_error);
    CHECK(peer.requests_of(proto_t::kCommit).size() == 1);
    CHECK(peer.requests_of(proto_t::kRollback).size() == 1);
    CHECK(peer.requests_of(proto_t::kClose).size() == 2);
  }

  TEST_CASE("async: a broken socket fails every operation in flight with a connection error") {
    ScriptedPeer peer;
    peer.set_handler([](const Request& r, dbmgr::test::Reply&) {
      return r.type == proto_t::kExecute && r.sql == "HANG";  // never answered
    });
    dbmgr::DatabaseManager db(options_for(peer));
    std::vector<dbmgr::AsyncSession> sessions;
    std::vector<std::future<dbmgr::Result>> futures;
    for (int i = 0; i < 20; ++i) {
      sessions.push_back(db.get_async_db());
      futures.push_back(sessions.back().execute("HANG").future());
    }
    REQUIRE(peer.wait_for_requests(1 + 40));  // hello, then open + execute each
    for (auto& f : futures) CHECK(f.wait_for(0ms) == std::future_status::timeout);
    peer.drop_all_connections();
    for (auto& f : futures) {
      REQUIRE(f.wait_for(10s) == std::future_status::ready);
      Error e = catch_error([&] { f.get(); });
      CHECK(e.category() == ErrorCategory::kConnection);
      CHECK(e.client_side());
    }
    // Later operations on those sessions fail at once; a new session reconnects.
    Error later = catch_error([&] { sessions[0].execute("SELECT rows 1").get(); });
    CHECK(later.category() == ErrorCategory::kConnection);
    auto fresh = db.get_async_db();
    CHECK(fresh.execute("SELECT rows 3").get().size() == 3);
    CHECK(peer.accepted() == 2);
  }

  TEST_CASE("async: destroying a pending operation sends kCancel, then kRollback") {
    ScriptedPeer peer;
    std::uint32_t hung_rid = 0;  // peer thread only
    peer.set_handler([&](const Request& r, dbmgr::test::Reply& reply) {
      if (r.type == proto_t::kExecute && r.sql == "SLOW") {
        hung_rid = r.request_id;
        return true;  // answered when cancelled
      }
      if (r.type == proto_t::kCancel) {
        reply.ok();
        if (hung_rid != 0) {
          reply.error(proto::ErrorCategory::kCancelled, "57014",
                      "canceling statement due to user request", hung_rid);
          hung_rid = 0;
        }
        return true;
      }
      return false;
    });
    dbmgr::DatabaseManager db(options_for(peer));
    auto s = db.get_async_db();
    s.execute("INSERT INTO t VALUES (1)").get();
    {
      auto pending = s.execute("SLOW");
      REQUIRE(peer.wait_for_requests(4));  // hello, open, insert, slow
    }  // destroyed while pending: nobody awaits it
    REQUIRE(peer.wait_for_requests(6));
    auto rs = peer.requests();
    REQUIRE(rs.size() >= 6);
    CHECK(rs[4].type == proto_t::kCancel);
    CHECK(rs[5].type == proto_t::kRollback);
    CHECK(rs[4].session_id == rs[3].session_id);
    CHECK(rs[5].session_id == rs[3].session_id);
    // The rollback's reply brings the session back to idle: the next statement runs.
    for (int i = 0; i < 1000 && s.failed(); ++i) ::usleep(1000);
    CHECK(s.execute("SELECT rows 1").get().size() == 1);
    CHECK(s.in_transaction());

    // cancel() on an operation someone waits for: the error comes through the future.
    auto op = s.execute("SLOW");
    auto f = op.future();
    op.cancel();
    Error e = catch_error([&] { f.get(); });
    CHECK(e.category() == ErrorCategory::kCancelled);
  }

  TEST_CASE("async without an I/O thread: the application polls async_socket(), process_events()") {
    ScriptedPeer peer;
    peer.set_handler([](const Request& r, dbmgr::test::Reply&) {
      return r.type == proto_t::kExecute && r.sql == "HANG";  // never answered
    });
    dbmgr::Options o = options_for(peer);
    o.async_io_thread = false;
    dbmgr::DatabaseManager db(o);
    auto threads = [] {
      int n = 0;
      namespace fs = std::filesystem;
      for ([[maybe_unused]] const auto& e : fs::directory_iterator("/proc/self/task")) ++n;
      return n;
    };
    const int before = threads();
    std::vector<dbmgr::Task<std::int64_t>> tasks;
    for (int i = 0; i < 30; ++i) tasks.push_back(insert_and_commit(db.get_async_db(), i));
    CHECK(threads() == before);  // no I/O thread was started
    CHECK_FALSE(tasks[0].done());
    int turns = 0;
    auto all_done = [&] {
      for (auto& t : tasks) {
        if (!t.done()) return false;
      }
      return true;
    };
    while (!all_done() && turns < 10000) {
      pollfd p{db.async_socket(),
               static_cast<short>(POLLIN | (db.async_wants_write() ? POLLOUT : 0)), 0};
      REQUIRE(::poll(&p, 1, 5000) > 0);
      db.process_events();  // the coroutines resume here, on this thread
      ++turns;
    }
    REQUIRE(all_done());
    for (auto& t : tasks) CHECK(t.get() == 42);
    CHECK(threads() == before);
    CHECK(peer.accepted() == 1);
    CHECK(peer.requests_of(proto_t::kCommit).size() == 30);
    CHECK_FALSE(db.async_wants_write());

    // A future in this mode is made ready by process_events().
    auto s = db.get_async_db();
    std::future<dbmgr::Result> f = s.execute("SELECT rows 2");
    while (f.wait_for(0ms) != std::future_status::ready) {
      pollfd p{db.async_socket(), POLLIN, 0};
      REQUIRE(::poll(&p, 1, 5000) > 0);
      db.process_events();
    }
    CHECK(f.get().size() == 2);

    // The daemon going away: the next process_events() fails what is in flight.
    auto hang = s.execute("HANG").future();
    REQUIRE(peer.requests_of(proto_t::kExecute).size() >= 1);
    REQUIRE(eventually_request(peer, "HANG"));
    peer.drop_all_connections();
    while (hang.wait_for(0ms) != std::future_status::ready) {
      pollfd p{db.async_socket(), POLLIN, 0};
      REQUIRE(::poll(&p, 1, 5000) > 0);
      db.process_events();
    }
    Error e = catch_error([&] { hang.get(); });
    CHECK(e.category() == ErrorCategory::kConnection);
  }

  TEST_CASE("async without an I/O thread: a send that finds the socket broken fails its operation "
            "in the next process_events(), after the socket was replaced") {
    ScriptedPeer peer;
    dbmgr::Options o = options_for(peer);
    o.async_io_thread = false;
    dbmgr::DatabaseManager db(o);
    auto s = db.get_async_db();
    std::future<dbmgr::Result> first = s.execute("SELECT rows 1");
    while (first.wait_for(0ms) != std::future_status::ready) {
      pollfd p{db.async_socket(), POLLIN, 0};
      REQUIRE(::poll(&p, 1, 5000) > 0);
      db.process_events();
    }
    CHECK(first.get().size() == 1);
    peer.drop_all_connections();
    // Not read yet: this request's send is what finds the socket closed (EPIPE).
    std::this_thread::sleep_for(50ms);
    std::future<dbmgr::Result> lost = s.execute("SELECT rows 2");
    // The application's loop asks for the socket first (as UvDriver does): a new one.
    for (int turn = 0; turn < 50 && lost.wait_for(0ms) != std::future_status::ready; ++turn) {
      pollfd p{db.async_socket(), POLLIN, 0};
      ::poll(&p, 1, 20);
      db.process_events();
    }
    REQUIRE(lost.wait_for(0ms) == std::future_status::ready);
    Error e = catch_error([&] { lost.get(); });
    CHECK(e.category() == ErrorCategory::kConnection);
    CHECK(peer.accepted() == 2);  // the loop went on with a new socket
  }
}
