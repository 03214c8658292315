// dbmgr::Session (a transaction handle) and dbmgr::ScopedSession (what get_db() returns).
//
// A Session is a handle on one daemon-side session: its transaction begins at the first
// execute() and ends with commit() or rollback(); the Session may then run another. It
// borrows one socket connection from its DatabaseManager at its first statement and gives it
// back when closed, so the daemon-side session (and the socket) is reused by the next
// Session of that manager. The borrowed socket is never used by two Sessions at once.
//
// Failure handling follows the daemon: after any statement or commit error the daemon has
// already rolled the transaction back, and the Session is failed() until rollback() (or
// close()) acknowledges it; execute() and commit() on a failed Session throw right away
// naming the original error. If the socket to the daemon breaks, the transaction is lost
// (the daemon rolls it back when it sees the socket close); execute() and commit() throw a
// connection error naming the socket path, rollback() then makes the Session usable again,
// and the next statement connects afresh. commit() failures always throw: never ignore them.
//
// close() (and the destructor) roll back a transaction that is still open and never throw.
// ScopedSession, returned by DatabaseManager::get_db(), additionally commits at scope exit
// when auto_commit is on and no exception is unwinding; a commit that fails there cannot
// throw out of a destructor, so it is logged to stderr: call commit() yourself where you
// need to handle that error.
//
// Fork: a Session created in a parent never touches the parent's socket in a child; using
// it there throws (inside a transaction) or reconnects (between transactions).
//
// Thread-safety: a Session belongs to one thread at a time (move it between threads freely).
#pragma once

#include <cstdint>
#include <exception>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "dbmgr/error.hpp"
#include "dbmgr/result.hpp"
#include "dbmgr/value.hpp"

namespace dbmgr {

namespace detail {
class Connection;
struct ManagerCore;
}  // namespace detail

// Whether a session may write. Read-only sessions let SQLite run them on reader connections.
enum class Access : std::uint8_t { kReadWrite, kReadOnly };

class Session {
 public:
  // A closed Session that holds nothing (every call but close() throws).
  Session() noexcept;
  Session(Session&& other) noexcept;
  Session& operator=(Session&& other) noexcept;
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
  ~Session();  // close()

  // Runs one statement with `?` placeholders and reads its whole result.
  Result execute(std::string_view sql, std::initializer_list<Param> params = {});
  Result execute(std::string_view sql, const std::vector<Param>& params);
  Result execute(std::string_view sql, const Param* params, std::size_t count);

  // Commits the open transaction (no round trip when none is open). Throws on any failure;
  // after a daemon-side commit error the Session is failed() until rollback().
  void commit();
  // Rolls back the open transaction, or acknowledges a failed one. Throws only when the
  // daemon answers with an error; a broken socket needs no rollback (the daemon already
  // rolled back) and is just forgotten.
  void rollback();
  // Rolls back what is open, returns the socket to the manager; never throws. Idempotent.
  void close() noexcept;

  // A transaction is open (a statement ran and neither commit nor rollback ended it).
  bool in_transaction() const { return state_ == State::kInTransaction; }
  // The last statement or commit failed and rollback() has not been called yet.
  bool failed() const { return state_ == State::kFailed || state_ == State::kBroken; }
  // Not closed (and not moved from).
  bool is_open() const { return state_ != State::kClosed; }
  Access access() const { return access_; }
  // The database and prefix this session was opened for (empty database: the default).
  const std::string& database() const { return database_; }
  const std::string& prefix() const { return prefix_; }

 protected:
  friend class DatabaseManager;
  Session(std::shared_ptr<detail::ManagerCore> core, std::string database, std::string prefix,
          Access access);
  // Rollback that swallows every error (destructors, scope exits).
  void rollback_noexcept() noexcept;

 private:
  // The states of a Session; one transition happens per request outcome.
  enum class State : std::uint8_t {
    kIdle,           // no transaction; the next execute() begins one
    kInTransaction,  // statements ran; commit() or rollback() ends it
    kFailed,         // the daemon reported an error and rolled back; awaiting rollback()
    kBroken,         // the socket broke or belongs to another process; awaiting rollback()
    kClosed,         // closed or moved from; holds no connection
  };

  void detect_fork();
  void check_usable();
  void forget_inherited_connection() noexcept;  // init_worker()
  void acquire_connection(bool* fresh, bool after_dead_send = false);
  void release_connection() noexcept;
  void drop_connection() noexcept;
  Error broken_error() const;

  std::shared_ptr<detail::ManagerCore> core_;
  std::unique_ptr<detail::Connection> conn_;  // borrowed from core_ while open
  std::string database_;
  std::string prefix_;
  Access access_ = Access::kReadWrite;
  State state_ = State::kClosed;
  std::string failure_;  // what() of the error that failed or broke the transaction
};

// The scope object of DatabaseManager::get_db(): a Session that commits when it leaves its
// scope normally (auto_commit) and rolls back when it leaves by an exception or without
// auto_commit. See the top of this file for why a failing scope-exit commit only logs.
class ScopedSession : public Session {
 public:
  ScopedSession(ScopedSession&& other) noexcept = default;
  ScopedSession& operator=(ScopedSession&&) = delete;
  ~ScopedSession();

  bool auto_commit() const { return auto_commit_; }

 private:
  friend class DatabaseManager;
  ScopedSession(Session&& session, bool auto_commit)
      : Session(std::move(session)),
        auto_commit_(auto_commit),
        uncaught_at_start_(std::uncaught_exceptions()) {}

  bool auto_commit_;
  int uncaught_at_start_;
};

}  // namespace dbmgr
