// detail::ManagerCore: the state a DatabaseManager shares with its Sessions: where the
// daemon is, the current prefix, the free list of idle connections and the cached info.
// Internal to libdbmgr (not installed).
//
// Ownership: held by shared_ptr from the DatabaseManager and from every Session it handed
// out, so a Session may outlive its manager and still return its connection.
// Thread-safety: the fields after mu_ are guarded by it; the rest are set once.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "connection.hpp"
#include "dbmgr/manager.hpp"

namespace dbmgr::detail {

class Multiplexer;

struct ManagerCore {
  explicit ManagerCore(const Options& options);
  ~ManagerCore();  // stops the async transport: what is in flight on it fails

  // An idle connection that passed the liveness check, or a new one (then *fresh = true).
  // Dead, foreign-process and surplus connections met on the way are closed.
  // A pooled connection if one is alive, else a new one (*fresh). `after_dead_send`: a
  // reused connection was just found closed by the daemon (restarted?): the idle ones are
  // checked one by one, the dead dropped, and the caller gets a new connection.
  std::unique_ptr<Connection> acquire(bool* fresh, bool after_dead_send = false);
  // Takes a connection back; keeps it if healthy, owned by this process and there is room.
  void release(std::unique_ptr<Connection> conn) noexcept;
  // After fork: closes every inherited idle connection without writing to it.
  void drop_inherited() noexcept;
  std::string prefix() const;
  std::size_t idle_count() const;
  // The multiplexed socket of this manager's AsyncSessions, connected on first use and
  // replaced when broken or inherited from a parent process; throws dbmgr::Error.
  std::shared_ptr<Multiplexer> async_transport();
  // Without the library's I/O thread: the broken sockets async_transport() replaced since the
  // last call. Their failed operations complete in the application's next process_events()
  // (a send that broke a socket fails what is in flight without completing it there).
  std::vector<std::shared_ptr<Multiplexer>> take_replaced_transports();

  const std::string socket_path_;
  const std::string client_name_;
  const std::string database_;
  const std::size_t max_idle_;
  const bool async_io_thread_;
  const std::uint64_t id_;  // distinguishes managers in thread_session()'s per-thread table

  mutable std::mutex mu_;
  std::string prefix_;                             // guarded by mu_
  std::vector<std::unique_ptr<Connection>> idle_;  // guarded by mu_; most recent last
  std::optional<DatabaseInfo> info_;               // guarded by mu_; for prefix_
  std::shared_ptr<Multiplexer> mux_;               // guarded by mu_
  std::vector<std::shared_ptr<Multiplexer>> replaced_;  // guarded by mu_; see above
};

// Where a client connects when Options::socket_path is empty.
std::string default_socket_path();
// This program's name from /proc/self/comm, or "dbmgr-client".
std::string default_client_name();

}  // namespace dbmgr::detail
