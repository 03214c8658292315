// detail::Connection: the blocking transport, one Unix-socket connection to dbmgrd,
// handshaken, driven by poll() on the caller's thread. Internal to libdbmgr (not installed).
//
// A request batch is built in three steps: begin_batch(), then per request encode it into
// the Outbox (encoder()) and register the Pending that receives its reply with the router
// (expect()), then round_trip(), which writes the whole batch with one send() and reads until
// every registered reply arrived. The ReplyRouter matches each frame to its request by
// request id (replies of different sessions may interleave, docs/protocol.md section 4);
// there is no limit on how many requests a batch holds. Errors the daemon reports are stored
// per request (Pending::error) so the caller can tell, say, a failed kOpen from a failed
// kExecute; round_trip() itself throws only when the connection is unusable (socket error,
// EOF, malformed or unexpected frame), after marking it broken.
//
// Buffers (the output vector, the read buffer, the decoder's assembly buffer, the router's
// table and the parameter scratch vector) live as long as the connection and are reused, so
// a steady stream of requests allocates nothing but the Results' own storage.
//
// The connection also remembers the daemon-side session it keeps open (daemon_session_), so
// the next Session borrowing it with the same database/prefix/flags skips kOpen.
//
// Thread-safety: none; a Connection is used by one Session (or one one-shot call) at a
// time, which the manager's free list guarantees. pid() is the process that opened it;
// no other process may write to it (abandon() just closes the fd).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "dbmgr/error.hpp"
#include "dbmgr/manager.hpp"
#include "dbmgr/protocol/codec.hpp"
#include "dbmgr/result.hpp"
#include "session_core.hpp"

namespace dbmgr::detail {

class Connection : public Outbox {
 public:
  static constexpr std::size_t kReadChunk = 64 * 1024;

  // Connects to `socket_path` and completes the handshake; throws dbmgr::Error.
  static std::unique_ptr<Connection> open(const std::string& socket_path,
                                          std::string_view client_name);
  // Takes over a connected stream socket (tests use a socketpair) and handshakes on it.
  // `label` names the peer in error messages. Closes fd and throws on failure.
  static std::unique_ptr<Connection> adopt(int fd, std::string label, std::string_view client_name);

  ~Connection();  // closes the fd; the daemon rolls back whatever this socket had open
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  pid_t pid() const { return pid_; }
  bool owned_by_this_process() const;
  bool broken() const { return fd_ < 0 || broken_; }
  // True when the last failure happened while sending, so the daemon received nothing of
  // the batch and resending it on another connection is safe.
  bool failed_before_sending() const { return send_failed_; }
  // Non-blocking look at the socket of an idle connection: false when the daemon closed it
  // (EOF, error) or sent something nobody asked for (an error frame before closing). Only
  // looks (one syscall) when the connection has been unused for a second or more; a
  // connection used a moment ago is taken as alive, and if the daemon closed it since, the
  // send fails and the request is resent on a new connection (failed_before_sending()).
  // `always_peek` looks regardless (after a send found one pooled connection dead). The
  // peek also compares getpid(): a child made without fork() (raw clone, vfork, _Fork)
  // runs no atfork handler, so only this catches its inherited connections.
  bool idle_and_alive(bool always_peek = false) const;
  // Closes the fd without writing anything (the connection belongs to another process).
  void abandon() noexcept;
  // Hands the handshaken socket over (the async transport takes it); the Connection is then
  // broken and closes nothing.
  int release_fd() noexcept {
    broken_ = true;
    return std::exchange(fd_, -1);
  }

  const std::string& label() const { return label_; }
  const std::string& server_version() const { return server_version_; }

  // ---- building and running a batch ----
  // Drops unsent output (a batch is built from empty).
  void begin_batch();
  std::uint32_t next_request_id() { return router_.next_request_id(); }
  // Registers `p` for the reply of the request just encoded (see ReplyRouter::expect).
  void expect(Pending& p, std::uint32_t request_id, Expect what, Result* result = nullptr,
              DatabaseInfo* info = nullptr, std::string* text = nullptr) {
    router_.expect(p, request_id, what, result, info, text);
  }
  // Sends the batch and reads until every registered reply arrived (see the top).
  void round_trip();

  // The daemon-side session this socket keeps open (id 0: none).
  DaemonSession daemon_session_;

 private:
  Connection(int fd, std::string label);
  void handshake(std::string_view client_name);
  template <typename On>
  void send_all(On& on);
  // One non-blocking read fed to the decoder; false when nothing was there.
  template <typename On>
  bool read_once(On& on);
  template <typename On>
  void read_replies(On& on);
  [[noreturn]] void fail(ErrorCategory category, std::string message);
  [[noreturn]] void fail_io(const char* what, int err);

  int fd_;
  pid_t pid_;
  unsigned fork_generation_;  // the process's fork count when this connection was made
  std::chrono::steady_clock::time_point last_io_;  // end of the last round trip
  std::string label_;
  bool broken_ = false;
  bool send_failed_ = false;
  std::string server_version_;

  std::vector<std::uint8_t> in_;
  proto::FrameDecoder decoder_;
};

}  // namespace dbmgr::detail
