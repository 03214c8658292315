// dbmgr::AdminClient: the operator's view of a running dbmgrd (what dbmgrctl uses).
//
// Each read method sends one admin request over the daemon's Unix socket and returns the
// daemon's JSON document as text, unchanged, so an application can hand it to whatever JSON
// library it already uses (libdbmgr itself depends on none). docs/admin.md and
// dbmgrctl(1) list the fields of each document. ping() measures one round trip.
//
// reload(), kill(), drain() and shutdown() change the daemon; it allows them to root, to
// its own user and to members of its configured admin_group (checked with SO_PEERCRED) and
// answers everyone else with a dbmgr::Error of category kPermission.
//
// Failures are dbmgr::Error with a one-line message a person can act on:
//   kConnection  "dbmgrd is not running (no socket at PATH)", "... (nothing listens on
//                PATH)", "permission denied on PATH ...", "protocol version mismatch: ..."
//   kPermission  the daemon refused a command for these credentials
//   kNotFound    kill() of a session the daemon does not know
//   kInvalidRequest  a refused reload (the message names file, line and key)
//
// The socket is opened on the first request and kept; a request on a connection the daemon
// closed reconnects once. Ownership and thread-safety: one AdminClient per thread; it may
// be moved, not copied.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "dbmgr/error.hpp"

namespace dbmgr {

namespace detail {
class Connection;
}

class AdminClient {
 public:
  // The daemon's default socket when neither the argument nor $DBMGR_SOCKET names one.
  static constexpr std::string_view kDefaultSocket = "/run/dbmgr/dbmgrd.sock";

  // `socket_path` empty: $DBMGR_SOCKET, else kDefaultSocket. Does not connect yet.
  explicit AdminClient(std::string socket_path = {});
  ~AdminClient();
  AdminClient(AdminClient&&) noexcept;
  AdminClient& operator=(AdminClient&&) noexcept;
  AdminClient(const AdminClient&) = delete;
  AdminClient& operator=(const AdminClient&) = delete;

  // Reads: one JSON document each (an object for status, arrays for the others).
  std::string status();
  std::string pools();
  std::string sessions();
  std::string clients();
  std::string engines();
  // Every backend (server) connection of every pool with its state, as PgBouncer's SHOW
  // SERVERS: database, role, id, state (opening, idle, pinging, resetting, granted, leased),
  // backend pid, who holds it.
  std::string servers();
  // One kPing round trip on an established connection (connecting first if needed).
  std::chrono::nanoseconds ping();

  // Changes (admin rights needed). Each returns the daemon's JSON acknowledgement.
  std::string reload();
  // `session` is an id as listed by sessions(): "<client id>:<session id>".
  std::string kill(std::string_view session);
  // No new sessions or transactions; open ones get drain_timeout; the daemon stays up
  // (and keeps answering admin requests) until shutdown() or SIGTERM.
  std::string drain();
  // As SIGTERM: drain, then exit.
  std::string shutdown();

  const std::string& socket_path() const { return socket_path_; }
  // The daemon's version from the handshake (connects if needed).
  std::string server_version();

 private:
  detail::Connection& connection();
  std::string request(std::uint8_t command, std::string_view argument);

  std::string socket_path_;
  std::unique_ptr<detail::Connection> conn_;
};

}  // namespace dbmgr
