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
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "dbmgr/error.hpp"
#include "dbmgr/result.hpp"
#include "dbmgr/value.hpp"

namespace dbmgr {

// Whether a session may write. Read-only sessions let SQLite run them on reader connections.
enum class Access : std::uint8_t { kReadWrite, kReadOnly };

namespace detail {
class Connection;
class Outbox;
struct DaemonSession;
struct ExecuteRequests;
struct PipelineRequests;
struct ManagerCore;
struct Pending;

// The states of a session (Session or AsyncSession); one transition happens per outcome.
enum class SessionState : std::uint8_t {
  kIdle,           // no transaction; the next execute() begins one
  kInTransaction,  // statements ran; commit() or rollback() ends it
  kFailed,         // the daemon reported an error and rolled back; awaiting rollback()
  kBroken,         // the socket broke or belongs to another process; awaiting rollback()
  kClosed,         // closed or moved from; holds no connection
};

// The session core shared by Session and AsyncSession: what a session sends for execute,
// commit and rollback, and how each outcome moves its state. It does no I/O: it encodes
// requests into a transport's Outbox and registers their Pendings with its router, and
// reads the Pendings back once the transport has the replies. Defined in
// client/session_core.cpp; not part of the API (its layout is here so a Session holds it
// without an allocation).
class SessionCore {
 public:
  SessionCore() = default;
  SessionCore(std::string database, std::string prefix, Access access)
      : database_(std::move(database)),
        prefix_(std::move(prefix)),
        access_(access),
        state_(SessionState::kIdle) {}

  SessionState state() const { return state_; }
  const std::string& database() const { return database_; }
  const std::string& prefix() const { return prefix_; }
  Access access() const { return access_; }
  std::uint32_t open_flags() const;

  // The error execute() and commit() give in the failed and broken states.
  Error broken_error() const;
  // Throws what execute() on a closed, failed or broken session throws.
  void check_usable() const;

  // Encodes [kClose dead/other session] [kOpen] kExecute for `ds` (one write) and registers
  // their replies in `req`. Throws (nothing encoded, nothing registered) on parameters that
  // do not travel or a frame over the daemon's limit.
  void send_execute(Outbox& out, DaemonSession& ds, ExecuteRequests& req, std::string_view sql,
                    const Param* params, std::size_t count, Result* result) const;
  // Moves the state by the replies of send_execute(). Returns the error to report, if any;
  // *retry: the daemon session was gone (killed, unknown) while no transaction was open, so
  // the statement may be sent again (it reopens) when `may_retry`.
  std::optional<Error> on_execute_replies(const ExecuteRequests& req, DaemonSession& ds,
                                          bool may_retry, bool* retry);
  // The socket broke under an execute: an open transaction is lost.
  void on_execute_lost(const Error& e);

  // A pipelined transaction: [kClose] [kOpen], the statements Pipeline::add() encoded
  // (`frames`, each starting at `starts[i]`, their ids set here), [kCommit], in one write;
  // results[i] receives statement i's result.
  void send_pipeline(Outbox& out, DaemonSession& ds, PipelineRequests& req,
                     std::span<const std::uint8_t> frames, std::span<const std::size_t> starts,
                     Result* results, bool commit) const;
  // Moves the state by the replies of send_pipeline(). The error of the first statement
  // that failed names it (its number and the start of its SQL); *retry as for an execute,
  // when the first statement found the daemon session gone.
  std::optional<Error> on_pipeline_replies(PipelineRequests& req, DaemonSession& ds,
                                           std::span<const std::uint8_t> frames,
                                           std::span<const std::size_t> starts, bool may_retry,
                                           bool* retry);

  // commit(): true when a kCommit must be sent (a transaction is open).
  bool needs_commit() const { return state_ == SessionState::kInTransaction; }
  void send_commit(Outbox& out, const DaemonSession& ds, Pending& p) const;
  std::optional<Error> on_commit_reply(const Pending& p);
  // The socket broke during COMMIT: the outcome is unknown; returns the error to report.
  Error on_commit_lost(const Error& e);

  // rollback(): moves to idle; true when a kRollback must be sent on `ds` (null: none).
  bool begin_rollback(const DaemonSession* ds);
  void send_rollback(Outbox& out, const DaemonSession& ds, Pending& p) const;
  // An error to report (the caller then forgets the daemon session), or none (a killed or
  // unknown session: nothing was left to roll back; `ds` is marked dead).
  std::optional<Error> on_rollback_reply(const Pending& p, DaemonSession& ds);

  void set_state(SessionState s) { state_ = s; }
  void set_broken(std::string why) {
    state_ = SessionState::kBroken;
    failure_ = std::move(why);
  }
  void clear_failure() { failure_.clear(); }

 private:
  // [kClose ds] [kOpen new], encoded (not registered) when ds is not this session's.
  void encode_head(Outbox& out, const DaemonSession& ds, ExecuteRequests& req,
                   std::size_t mark) const;
  // Registers the head's replies and remembers the new daemon session in ds.
  void register_head(Outbox& out, DaemonSession& ds, ExecuteRequests& req) const;
  // A kExecute answered with `e`: the state moves to failed (or *retry, see above).
  std::optional<Error> on_exec_error(const Error& e, DaemonSession& ds, bool may_retry,
                                     bool* retry);

  std::string database_;
  std::string prefix_;
  Access access_ = Access::kReadWrite;
  SessionState state_ = SessionState::kClosed;
  std::string failure_;  // what() of the error that failed or broke the transaction
};

}  // namespace detail

class Session;

// A pipelined transaction, made by Session::pipeline(): statements are queued on the client
// and sent together with the COMMIT in one write; the daemon runs them back to back on one
// backend connection and the replies come back together. A transaction whose statements do
// not need each other's results then costs one round trip instead of one per statement, and
// on SQLite it holds the one writer only while the daemon runs it, not across the client's
// round trips.
//
//   dbmgr::Pipeline p = session.pipeline();
//   p.add("UPDATE accounts SET balance = balance + ? WHERE id = ?", {delta, id});
//   p.add("INSERT INTO history (account, delta) VALUES (?, ?)", {id, delta});
//   std::vector<dbmgr::Result> r = p.commit();  // r[i]: statement i's result
//
// Errors: the first statement that fails ends the transaction as one execute() would (the
// daemon rolls it all back, the statements after it are not run, the COMMIT is skipped): the
// Error thrown has that statement's category and SQLSTATE, and its message names it ("the
// pipelined transaction was rolled back: statement 2 of 3 (INSERT INTO ...) failed: ...").
// The Session is then failed() until rollback(), as after a failed execute(). A commit()
// whose socket broke after sending throws a connection error: the outcome is unknown.
//
// add() encodes the statement at once (SQL and parameters are copied), so Params that point
// at the caller's strings need only live during add(). After commit() or execute() the
// pipeline is empty and may be filled again. A Pipeline refers to its Session: use it while
// the Session lives and is not moved. Statements queued on a Pipeline of a Session that
// already has a transaction open join that transaction.
class Pipeline {
 public:
  Pipeline(Pipeline&&) noexcept = default;
  Pipeline& operator=(Pipeline&&) noexcept = default;

  // Queues one statement. Throws (nothing queued) on parameters that do not travel.
  Pipeline& add(std::string_view sql, std::initializer_list<Param> params = {});
  Pipeline& add(std::string_view sql, const std::vector<Param>& params);
  Pipeline& add(std::string_view sql, const Param* params, std::size_t count);
  // Statements queued.
  std::size_t size() const { return starts_.size(); }
  bool empty() const { return starts_.empty(); }
  // Forgets the queued statements.
  void clear() noexcept;

  // Sends the statements and COMMIT in one write; returns their results, in order. Throws
  // as described above; with nothing queued it is Session::commit().
  std::vector<Result> commit();
  // Sends the statements without COMMIT: the transaction stays open (for more statements,
  // session.commit() or session.rollback()).
  std::vector<Result> execute();

 private:
  friend class Session;
  explicit Pipeline(Session& s) : session_(&s) {}
  std::vector<Result> run(bool commit);

  Session* session_;
  std::vector<std::uint8_t> frames_;  // the kExecute frames, ids set when sent
  std::vector<std::size_t> starts_;   // where each frame begins in frames_
};

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

  // A pipelined transaction on this session (see Pipeline).
  Pipeline pipeline() { return Pipeline(*this); }

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
  bool in_transaction() const { return txn_.state() == detail::SessionState::kInTransaction; }
  // The last statement or commit failed and rollback() has not been called yet.
  bool failed() const {
    return txn_.state() == detail::SessionState::kFailed ||
           txn_.state() == detail::SessionState::kBroken;
  }
  // Not closed (and not moved from).
  bool is_open() const { return txn_.state() != detail::SessionState::kClosed; }
  Access access() const { return txn_.access(); }
  // The database and prefix this session was opened for (empty database: the default).
  const std::string& database() const { return txn_.database(); }
  const std::string& prefix() const { return txn_.prefix(); }

 protected:
  friend class DatabaseManager;
  friend class Pipeline;
  Session(std::shared_ptr<detail::ManagerCore> core, std::string database, std::string prefix,
          Access access);
  // Rollback that swallows every error (destructors, scope exits).
  void rollback_noexcept() noexcept;

 private:
  void detect_fork();
  void forget_inherited_connection() noexcept;  // init_worker()
  void acquire_connection(bool* fresh, bool after_dead_send = false);
  void release_connection() noexcept;
  void drop_connection() noexcept;
  // Sends a batch on the borrowed connection and reads its replies, resending it once on a
  // new connection when that is safe (see execute()). send(Connection&) encodes it;
  // replies(Connection&, bool may_retry, bool* retry) returns the error to throw;
  // lost(const Error&) returns what to throw when the socket broke.
  template <typename Send, typename Replies, typename Lost>
  void exchange(Send&& send, Replies&& replies, Lost&& lost);

  std::shared_ptr<detail::ManagerCore> core_;
  std::unique_ptr<detail::Connection> conn_;  // borrowed from core_ while open
  detail::SessionCore txn_;                   // the transaction state and its transitions
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
