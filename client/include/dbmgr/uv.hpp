// dbmgr::UvDriver: drives a DatabaseManager's async socket from the application's own libuv
// loop (issue 14). Header-only: libdbmgr does not depend on libuv; an application that
// includes this header links libuv itself (pkg-config libuv).
//
//   dbmgr::Options opts;
//   opts.async_io_thread = false;          // no library I/O thread: the loop does the I/O
//   dbmgr::DatabaseManager db_manager(opts);
//   dbmgr::UvDriver driver(loop, db_manager);
//   ... start AsyncSessions / coroutines from any callback of `loop` ...
//   uv_run(loop, UV_RUN_DEFAULT);
//
// What it does: a uv_poll_t on DatabaseManager::async_socket(), armed for UV_READABLE always
// and for UV_WRITABLE while async_wants_write(); when it fires, process_events() runs (never
// re-entrantly) and coroutines resume inside it, on the loop's thread. A uv_prepare_t (unref'd:
// it never keeps the loop alive) re-checks the socket and the write interest before the loop
// blocks, so operations started from any callback of the loop (a timer, a coroutine resumed
// by the driver, ...) are sent without further calls. The socket changes when a broken one is
// replaced: the driver follows (a new poll handle on the new socket).
//
// Loop lifetime: while the driver polls, its poll handle keeps uv_run(UV_RUN_DEFAULT) running
// (call uv_stop, or destroy the driver, to end it). When the socket breaks (daemon killed or
// restarted), process_events() fails every operation in flight with a `connection` error and
// the driver asks for the socket again, which connects afresh (a blocking connect and
// handshake on the loop's thread; with a live daemon polling goes on on the new socket). If
// that throws (no daemon), the error is kept in last_error() and the driver goes idle: it no
// longer keeps the loop alive, and kick() tries again.
//
// Threads: use the driver, the manager's async sessions and the loop from the loop's thread
// only. The DatabaseManager must have Options::async_io_thread = false and outlive the driver.
#pragma once

#include <sys/stat.h>
#include <uv.h>

#include <exception>
#include <string>

#include "dbmgr/error.hpp"
#include "dbmgr/manager.hpp"

namespace dbmgr {

class UvDriver {
 public:
  // Connects the async socket now (throws dbmgr::Error if the daemon is not there) and
  // starts polling it on `loop`.
  UvDriver(uv_loop_t* loop, DatabaseManager& mgr) : loop_(loop), mgr_(mgr) {
    const int fd = mgr_.async_socket();
    prepare_ = new uv_prepare_t;
    uv_prepare_init(loop_, prepare_);
    prepare_->data = this;
    uv_prepare_start(prepare_, &UvDriver::on_prepare);
    uv_unref(reinterpret_cast<uv_handle_t*>(prepare_));
    if (!watch(fd)) {
      close_handle(prepare_);
      prepare_ = nullptr;
      throw Error::client(ErrorCategory::kConnection,
                          "dbmgr::UvDriver: cannot poll the async socket: " + uv_error_);
    }
    update_interest();
  }

  // Stops polling at once: no callback of the driver runs after this. Its handles are
  // uv_close()d and freed by their close callbacks, so the loop must run once more (e.g.
  // uv_run(loop, UV_RUN_NOWAIT)) before uv_loop_close() returns 0. Safe at any time on the
  // loop's thread, also from a coroutine the driver resumed. Operations still in flight stay
  // pending until the manager's socket is driven again (another driver) or the manager goes.
  ~UvDriver() {
    if (destroyed_ != nullptr) *destroyed_ = true;
    stop_poll();
    if (prepare_ != nullptr) close_handle(prepare_);
  }
  UvDriver(const UvDriver&) = delete;
  UvDriver& operator=(const UvDriver&) = delete;

  // Re-checks the socket (following a replaced one) and the write interest now, and resumes
  // after the driver went idle (see last_error(), which it clears; it is set again if the
  // socket still cannot be had). Not needed for operations started inside the loop: the
  // driver picks them up before the loop blocks.
  void kick() {
    error_ = nullptr;
    if (prepare_ != nullptr && !uv_is_active(reinterpret_cast<uv_handle_t*>(prepare_))) {
      uv_prepare_start(prepare_, &UvDriver::on_prepare);
    }
    sync();
  }

  // The last error process_events() or async_socket() threw (the driver then went idle),
  // or null.
  std::exception_ptr last_error() const { return error_; }
  // True while the driver polls a socket (false after an error made it idle).
  bool polling() const { return poll_ != nullptr; }

 private:
  static void on_prepare(uv_prepare_t* h) { static_cast<UvDriver*>(h->data)->sync(); }
  static void on_poll(uv_poll_t* h, int /*status*/, int /*events*/) {
    // An error status (e.g. the socket failed) is left to process_events(), which sees it.
    static_cast<UvDriver*>(h->data)->process();
  }
  template <typename H>
  static void close_handle(H* h) {
    uv_close(reinterpret_cast<uv_handle_t*>(h),
             [](uv_handle_t* handle) { delete reinterpret_cast<H*>(handle); });
  }
  static ino_t inode_of(int fd) {
    struct stat st {};
    return ::fstat(fd, &st) == 0 ? st.st_ino : 0;
  }

  void process() {
    if (processing_) return;  // never re-entrant
    processing_ = true;
    bool destroyed = false;
    destroyed_ = &destroyed;
    bool failed = false;
    try {
      mgr_.process_events();
    } catch (...) {
      error_ = std::current_exception();
      failed = true;
    }
    if (destroyed) return;  // a resumed coroutine destroyed the driver
    destroyed_ = nullptr;
    processing_ = false;
    if (failed) {
      go_idle();
    } else {
      sync();
    }
  }

  // Follows a replaced socket and sets the poll events; idle when the socket cannot be had.
  void sync() {
    if (processing_) return;  // process() syncs when process_events() returns
    int fd = -1;
    try {
      fd = mgr_.async_socket();
    } catch (...) {
      error_ = std::current_exception();
      go_idle();
      return;
    }
    // The same number may be a new socket (the old one closed first): compare the inode too.
    if (poll_ == nullptr || fd != fd_ || inode_of(fd) != ino_) {
      stop_poll();
      if (!watch(fd)) {
        error_ = std::make_exception_ptr(Error::client(
            ErrorCategory::kConnection, "dbmgr::UvDriver: cannot poll the async socket: " + uv_error_));
        go_idle();
        return;
      }
    }
    update_interest();
  }

  bool watch(int fd) {
    auto* p = new uv_poll_t;
    int rc = uv_poll_init(loop_, p, fd);
    if (rc != 0) {
      delete p;  // uv_poll_init failed: the handle is not registered with the loop
      uv_error_ = uv_strerror(rc);
      return false;
    }
    p->data = this;
    poll_ = p;
    fd_ = fd;
    ino_ = inode_of(fd);
    events_ = 0;
    return true;
  }

  // async_wants_write() may reconnect (and throw) too: never let an exception into libuv.
  void update_interest() {
    bool wants_write = false;
    try {
      wants_write = mgr_.async_wants_write();
    } catch (...) {
      error_ = std::current_exception();
      go_idle();
      return;
    }
    const int want = UV_READABLE | (wants_write ? UV_WRITABLE : 0);
    if (poll_ != nullptr && want != events_) {
      uv_poll_start(poll_, want, &UvDriver::on_poll);
      events_ = want;
    }
  }

  void stop_poll() {
    if (poll_ == nullptr) return;
    uv_poll_stop(poll_);
    close_handle(poll_);
    poll_ = nullptr;
    events_ = 0;
  }

  void go_idle() {
    stop_poll();
    if (prepare_ != nullptr) uv_prepare_stop(prepare_);
  }

  uv_loop_t* loop_;
  DatabaseManager& mgr_;
  uv_prepare_t* prepare_ = nullptr;  // freed by its close callback
  uv_poll_t* poll_ = nullptr;        // freed by its close callback
  int fd_ = -1;
  ino_t ino_ = 0;
  int events_ = 0;
  bool processing_ = false;
  bool* destroyed_ = nullptr;  // set while process_events() runs
  std::exception_ptr error_;
  std::string uv_error_;
};

}  // namespace dbmgr
