// dbmgr::DatabaseManager: the application's handle on one database served by dbmgrd.
//
// The manager owns a small pool of idle Unix-socket connections to the daemon (created on
// demand, handshaken once, reused LIFO) and hands out Sessions that borrow one of them for
// their lifetime: get_db() (scoped: commit at scope exit), run(f) (commit on return,
// rollback + rethrow on throw), get_session() (raw), thread_session() (one per thread), and
// execute() for one-shot statements (own transaction, one round trip). The database's
// type, name, URI and primary-key type come from the daemon, which resolved the engine,
// and are cached until the prefix changes.
//
// Reconnecting: an idle pooled connection is checked without blocking before reuse; one
// the daemon closed (a restart) is dropped and replaced, so new sessions reconnect by
// themselves. A Session whose socket breaks mid-transaction gets a connection error.
//
// Fork-safety: every connection remembers the pid that opened it and is never written to
// from another process. Call init_worker() in each child after fork() to close the
// inherited sockets early; it also happens lazily. (As with any mutex, do not fork while
// another thread is inside a manager call.)
//
// Ownership and thread-safety: the manager is thread-safe; its state is shared with the
// Sessions it handed out (a Session may outlive its manager). Sessions themselves are
// single-threaded. Moving a manager is allowed; copying is not.
#pragma once

#include <cstddef>
#include <cstdint>
#include <exception>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "dbmgr/async.hpp"
#include "dbmgr/error.hpp"
#include "dbmgr/result.hpp"
#include "dbmgr/session.hpp"
#include "dbmgr/value.hpp"

namespace dbmgr {

struct Options {
  // Prefix for the database name: "test" + "app" -> "test.app". Empty: none.
  std::string db_prefix;
  // Ask the daemon at construction to open and ping a backend connection; throws if it can't.
  bool test_connection = false;
  // The daemon's socket. Empty: $DBMGR_SOCKET, else /run/dbmgr/dbmgrd.sock.
  std::string socket_path;
  // Database name before prefixing. Empty: the daemon's default database (DATABASE_NAME).
  std::string database;
  // Shown by `dbmgrctl clients`. Empty: this program's name (/proc/self/comm).
  std::string client_name;
  // Idle socket connections kept for reuse; more are closed when returned.
  std::size_t max_idle_connections = 8;
  // Async sessions: true, the library's own I/O thread drives their socket; false, the
  // application does, by polling async_socket() and calling process_events() (no thread).
  bool async_io_thread = true;
};

// What the daemon reports about the resolved database (see DESIGN section 6).
struct DatabaseInfo {
  std::string type;            // "sqlite", "postgresql", "mysql", "mariadb", "mssql"
  std::string name;            // with prefix, e.g. "test.app"
  std::string uri;             // password masked as ***
  std::string pk_type;         // "String" (SQLite) or "UUID"
  std::string pk_column_type;  // the dialect's column type, e.g. "TEXT", "UUID", "CHAR(36)"
};

class DatabaseManager {
 public:
  explicit DatabaseManager(Options options = {});
  ~DatabaseManager();
  DatabaseManager(DatabaseManager&&) noexcept;
  DatabaseManager& operator=(DatabaseManager&&) noexcept;
  DatabaseManager(const DatabaseManager&) = delete;
  DatabaseManager& operator=(const DatabaseManager&) = delete;

  // Sets (or changes) the prefix for sessions started from now on and forgets the cached
  // database info. With test_connection, asks the daemon to open and ping a backend now
  // and throws dbmgr::Error if it cannot.
  void init_engine_config(std::string_view prefix, bool test_connection = false);
  // In a worker process after fork(): closes every socket inherited from the parent without
  // writing to it (the parent keeps using its own), and this thread's thread_session().
  void init_worker();

  // A Session that commits at scope exit (auto_commit, no exception unwinding) and rolls
  // back otherwise. Call commit() on it yourself when you need to handle a commit error.
  ScopedSession get_db(bool auto_commit = true, Access access = Access::kReadWrite);

  // Runs f(Session&) in a transaction: commits when f returns (a failed commit throws),
  // rolls back and rethrows when f throws. Returns what f returns.
  template <typename F>
  std::invoke_result_t<F&, Session&> run(F&& f, Access access = Access::kReadWrite);

  // A raw Session: commit() yourself; close() or its destructor rolls back what is open.
  Session get_session(Access access = Access::kReadWrite);

  // This thread's Session for this manager, created on first use and reused after;
  // cleanup_thread() closes it (also done when the thread exits).
  Session& thread_session();
  void cleanup_thread();

  // A one-shot statement: its own transaction (commit on success), one round trip, no
  // session. Returns the result like Session::execute().
  Result execute(std::string_view sql, std::initializer_list<Param> params = {},
                 Access access = Access::kReadWrite);
  Result execute(std::string_view sql, const std::vector<Param>& params,
                 Access access = Access::kReadWrite);

  // An AsyncSession (dbmgr/async.hpp) on this manager's one multiplexed daemon socket, which
  // the first call connects (throws dbmgr::Error if it cannot) and a broken one replaces.
  AsyncSession get_async_db(Access access = Access::kReadWrite);
  // Runs the coroutine f(AsyncSession&) (returning a Task<R> or another awaitable) in a
  // transaction: commits when it returns (a failed commit fails the Task), rolls back and
  // rethrows when it throws. The Task starts at once; the manager must outlive it.
  template <typename F>
  auto run_async(F f, Access access = Access::kReadWrite)
      -> Task<decltype(std::declval<std::invoke_result_t<F&, AsyncSession&>&>().await_resume())>;
  // A one-shot statement over the async transport: its own transaction, one round trip.
  Async<Result> execute_async(std::string_view sql, std::initializer_list<Param> params = {},
                              Access access = Access::kReadWrite);
  Async<Result> execute_async(std::string_view sql, const std::vector<Param>& params,
                              Access access = Access::kReadWrite);

  // Driving the async socket from the application's own loop (Options::async_io_thread =
  // false), as with libpq's PQsocket: poll async_socket() for reading (and for writing while
  // async_wants_write()), then call process_events(), which writes what is queued, reads
  // what arrived and completes those operations on the calling thread (coroutines resume
  // inside it). Never blocks. The socket changes when a broken one is replaced by
  // get_async_db(): ask again after it. Not reentrant (do not call it from a coroutine it
  // resumes). Throws dbmgr::Error when the transport cannot be connected.
  int async_socket();
  bool async_wants_write();
  void process_events();

  // Round trip to the daemon (kPing); throws dbmgr::Error if it does not answer.
  void ping();

  // From the daemon (one kInfo request, cached until the prefix changes).
  DatabaseInfo info();
  std::string database_type() { return info().type; }
  std::string database_name() { return info().name; }
  std::string database_uri() { return info().uri; }
  std::string pk_type() { return info().pk_type; }
  std::string pk_column_type() { return info().pk_column_type; }

  std::string prefix() const;
  const std::string& socket_path() const;
  const std::string& database() const;

 private:
  Result one_shot(std::string_view sql, const Param* params, std::size_t count, Access access);
  Async<Result> one_shot_async(std::string_view sql, const Param* params, std::size_t count,
                               Access access);
  DatabaseInfo fetch_info(bool test_connection);

  std::shared_ptr<detail::ManagerCore> core_;
};

template <typename F>
std::invoke_result_t<F&, Session&> DatabaseManager::run(F&& f, Access access) {
  using R = std::invoke_result_t<F&, Session&>;
  Session session = get_session(access);
  if constexpr (std::is_void_v<R>) {
    try {
      f(session);
    } catch (...) {
      session.rollback_noexcept();
      throw;
    }
    session.commit();
  } else {
    // Keep the result outside the try so a commit failure is not mistaken for f's.
    auto produce = [&]() -> R {
      try {
        return f(session);
      } catch (...) {
        session.rollback_noexcept();
        throw;
      }
    };
    R result = produce();
    session.commit();
    return result;
  }
}

template <typename F>
auto DatabaseManager::run_async(F f, Access access)
    -> Task<decltype(std::declval<std::invoke_result_t<F&, AsyncSession&>&>().await_resume())> {
  using R = decltype(std::declval<std::invoke_result_t<F&, AsyncSession&>&>().await_resume());
  AsyncSession session = get_async_db(access);
  std::exception_ptr failure;
  if constexpr (std::is_void_v<R>) {
    try {
      co_await f(session);
    } catch (...) {
      failure = std::current_exception();
    }
    if (failure) {
      try {
        co_await session.rollback();
      } catch (...) {
      }
      co_await session.close();
      std::rethrow_exception(failure);
    }
    co_await session.commit();
    co_await session.close();
  } else {
    std::optional<R> result;
    try {
      result.emplace(co_await f(session));
    } catch (...) {
      failure = std::current_exception();
    }
    if (failure) {
      try {
        co_await session.rollback();
      } catch (...) {
      }
      co_await session.close();
      std::rethrow_exception(failure);
    }
    co_await session.commit();
    co_await session.close();
    co_return std::move(*result);
  }
}

}  // namespace dbmgr
