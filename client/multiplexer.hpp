// detail::Multiplexer: the multiplexed async transport, one daemon socket carrying every
// AsyncSession of a manager, driven by the library's own I/O thread. Internal to libdbmgr.
//
// Any thread encodes requests into the Outbox (through the session core) under mu_ and calls
// wake(); the I/O thread writes the output, reads replies and feeds them to the router, whose
// sinks (AsyncOps) record their outcome under mu_ and queue themselves on ready_. After
// letting go of mu_ the I/O thread completes the ready operations: it resumes their
// coroutines and fulfils their futures, so continuations run on the I/O thread, and requests
// they make are sent by the same loop turn without a wake-up. Many requests made at once by
// another thread cost one eventfd write (wake_pending_ coalesces them).
//
// When the socket breaks (EOF, error, malformed frame) or the manager goes away, every
// registered request fails with one connection error and later requests fail at once; the
// manager replaces a broken multiplexer on the next get_async_db().
//
// Ownership: shared by the manager, every AsyncSessionState and the I/O thread itself (so a
// continuation may drop the last AsyncSession safely); stop() ends the thread.
// Thread-safety: the Outbox, the router, every AsyncSessionState and ready_ are guarded by mu_.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "dbmgr/error.hpp"
#include "session_core.hpp"

namespace dbmgr::detail {

class AsyncOp;

class Multiplexer : public Outbox, public std::enable_shared_from_this<Multiplexer> {
 public:
  // Connects and handshakes on the caller's thread (throws dbmgr::Error), then starts the
  // I/O thread.
  // `io_thread` false: no thread; the application drives it (socket(), process_events()).
  static std::shared_ptr<Multiplexer> open(const std::string& socket_path,
                                           std::string_view client_name, bool io_thread = true);
  ~Multiplexer();
  Multiplexer(const Multiplexer&) = delete;
  Multiplexer& operator=(const Multiplexer&) = delete;

  // Ends the I/O thread: what is in flight fails with a connection error. Idempotent.
  void stop();
  // After encoding: makes the I/O thread send (no-op on the I/O thread itself).
  void wake();
  bool on_io_thread() const { return std::this_thread::get_id() == io_thread_id_.load(); }
  pid_t pid() const { return pid_; }

  // The application-driven mode (no I/O thread): see DatabaseManager::process_events().
  int socket() const { return fd_; }
  bool wants_write();
  void process_events();
  const std::string& label() const { return label_; }

  std::mutex mu_;
  // Guarded by mu_: the error every request fails with once the socket is unusable.
  std::optional<Error> broken_;
  // Guarded by mu_: operations whose reply is complete, completed after mu_ is released.
  std::vector<AsyncOp*> ready_;

 private:
  Multiplexer(int fd, std::string label);
  void run();
  // Under mu_: fails everything registered; the caller completes ready_ afterwards.
  void fail_locked(Error e);
  // Sends what it can without blocking; false (and fail_locked) when the socket broke.
  bool flush_locked();
  void complete_ready(std::unique_lock<std::mutex>& lock);
  // Under mu_: reads what the socket has (all of it when `drain`), feeds the router.
  void feed_locked(std::size_t n);  // decode n bytes of in_; a bad stream fails all
  void read_locked(bool drain);

  int fd_;
  int event_fd_ = -1;
  bool io_thread_ = true;
  pid_t pid_;
  std::string label_;
  std::size_t sent_ = 0;  // guarded by mu_: bytes at the front of out_ already written
  std::atomic<bool> stop_{false};
  std::atomic<bool> wake_pending_{false};
  std::atomic<std::thread::id> io_thread_id_{};
  std::thread thread_;
  std::shared_ptr<Multiplexer> self_;  // the I/O thread's reference, dropped as it ends
  std::vector<std::uint8_t> in_;       // I/O thread only
  proto::FrameDecoder decoder_;        // guarded by mu_
};

}  // namespace dbmgr::detail
