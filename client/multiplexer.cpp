// The multiplexed async transport: one daemon socket for many sessions, its I/O thread.
#include "multiplexer.hpp"

#include <errno.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "async_op.hpp"
#include "connection.hpp"

namespace dbmgr::detail {

std::shared_ptr<Multiplexer> Multiplexer::open(const std::string& socket_path,
                                               std::string_view client_name, bool io_thread) {
  std::unique_ptr<Connection> c = Connection::open(socket_path, client_name);
  const std::uint32_t limit = c->max_frame_bytes();
  std::shared_ptr<Multiplexer> m(new Multiplexer(c->release_fd(), socket_path));
  m->max_frame_bytes_ = limit;
  m->decoder_.set_max_frame_bytes(std::max(limit, proto::kDefaultMaxFrameBytes));
  m->event_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (m->event_fd_ < 0) {
    throw Error::client(ErrorCategory::kResources,
                        std::string("cannot create an eventfd for the async client: ") +
                            std::strerror(errno));
  }
  m->io_thread_ = io_thread;
  if (io_thread) {
    m->self_ = m;
    m->thread_ = std::thread([raw = m.get()] { raw->run(); });
  }
  return m;
}

Multiplexer::Multiplexer(int fd, std::string label)
    : Outbox(label), fd_(fd), pid_(::getpid()), label_(std::move(label)), in_(64 * 1024) {
  // Only this connection's session ids: the blocking connections have their own.
}

Multiplexer::~Multiplexer() {
  if (thread_.joinable()) {
    if (on_io_thread()) {
      thread_.detach();  // the last reference went away in a continuation; run() is ending
    } else {
      thread_.join();
    }
  }
  if (fd_ >= 0) ::close(fd_);
  if (event_fd_ >= 0) ::close(event_fd_);
}

void Multiplexer::stop() {
  if (stop_.exchange(true)) return;
  if (!io_thread_) {
    std::unique_lock lock(mu_);
    fail_locked(Error::client(ErrorCategory::kConnection,
                              "the DatabaseManager of this async session was destroyed"));
    complete_ready(lock);
    return;
  }
  std::uint64_t one = 1;
  (void)!::write(event_fd_, &one, sizeof one);
  if (thread_.joinable() && !on_io_thread()) thread_.join();
}

void Multiplexer::wake() {
  if (!io_thread_) {
    // Application-driven: write now what fits; process_events() sends the rest.
    // A send that breaks the socket fails what is in flight; those operations complete in
    // the next process_events() (never inside the call that made a request).
    std::lock_guard lock(mu_);
    if (!broken_) flush_locked();
    return;
  }
  if (on_io_thread()) return;  // the loop sends before it waits again
  if (wake_pending_.exchange(true)) return;
  std::uint64_t one = 1;
  (void)!::write(event_fd_, &one, sizeof one);
}

void Multiplexer::fail_locked(Error e) {
  if (!broken_) broken_ = e;
  router_.fail_all(*broken_);
  out_.clear();
  sent_ = 0;
}

bool Multiplexer::flush_locked() {
  while (sent_ < out_.size()) {
    ssize_t n = ::send(fd_, out_.data() + sent_, out_.size() - sent_, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
      int err = errno;
      fail_locked(Error::client(ErrorCategory::kConnection,
                                "connection to dbmgrd at '" + label_ + "' " +
                                    (err == EPIPE ? std::string("was closed by the daemon")
                                                  : "failed while sending: " +
                                                        std::string(std::strerror(err)))));
      return false;
    }
    sent_ += static_cast<std::size_t>(n);
  }
  out_.clear();  // keeps its capacity
  sent_ = 0;
  return true;
}

void Multiplexer::complete_ready(std::unique_lock<std::mutex>& lock) {
  // Completions may make new requests (they lock mu_ again): complete outside the lock, in
  // rounds until nothing is left.
  std::vector<AsyncOp*> batch;
  while (!ready_.empty()) {
    batch.swap(ready_);
    lock.unlock();
    for (AsyncOp* op : batch) {
      op->complete();
      release(op);  // the transport's reference
    }
    batch.clear();
    lock.lock();
  }
}

void Multiplexer::feed_locked(std::size_t n) {
  auto on_frame = [this](const proto::FrameView& f) { return router_.on_frame(f); };
  proto::DecodeError e = decoder_.feed(in_.data(), n, on_frame);
  if (router_.stream_error()) {
    fail_locked(*router_.stream_error());
  } else if (e != proto::DecodeError::kOk) {
    fail_locked(Error::client(ErrorCategory::kProtocol, "malformed frame from dbmgrd at '" +
                                                            label_ + "': " +
                                                            std::string(proto::to_string(e))));
  }
}

void Multiplexer::read_locked(bool drain) {
  while (!broken_) {
    ssize_t n = ::recv(fd_, in_.data(), in_.size(), MSG_DONTWAIT);
    int err = errno;
    if (n > 0) {
      feed_locked(static_cast<std::size_t>(n));
      if (!drain || static_cast<std::size_t>(n) < in_.size()) return;
    } else if (n == 0) {
      fail_locked(Error::client(ErrorCategory::kConnection,
                                "connection to dbmgrd at '" + label_ +
                                    "' was closed by the daemon (daemon restarted or stopped?)"));
    } else if (err == EINTR) {
      continue;
    } else if (err == EAGAIN || err == EWOULDBLOCK) {
      return;
    } else {
      fail_locked(Error::client(ErrorCategory::kConnection,
                                "connection to dbmgrd at '" + label_ +
                                    "' failed while reading: " + std::strerror(err)));
    }
  }
}

bool Multiplexer::wants_write() {
  std::lock_guard lock(mu_);
  return !broken_ && sent_ < out_.size();
}

void Multiplexer::process_events() {
  std::unique_lock lock(mu_);
  if (!broken_ && flush_locked()) read_locked(/*drain=*/true);
  complete_ready(lock);  // continuations may queue requests: send them before returning
  if (!broken_) flush_locked();
  complete_ready(lock);
}

void Multiplexer::run() {
  io_thread_id_ = std::this_thread::get_id();
  std::shared_ptr<Multiplexer> self = std::move(self_);  // keeps this alive until the end
  std::unique_lock lock(mu_);
  while (!broken_) {
    if (stop_) {
      fail_locked(Error::client(ErrorCategory::kConnection,
                                "the DatabaseManager of this async session was destroyed"));
      break;
    }
    if (!flush_locked()) break;
    const bool want_write = sent_ < out_.size();
    lock.unlock();
    pollfd fds[2] = {{fd_, static_cast<short>(POLLIN | (want_write ? POLLOUT : 0)), 0},
                     {event_fd_, POLLIN, 0}};
    int rc = ::poll(fds, 2, -1);
    if (rc < 0 && errno != EINTR) {
      lock.lock();
      fail_locked(Error::client(ErrorCategory::kConnection,
                                std::string("poll() failed in the async client: ") +
                                    std::strerror(errno)));
      break;
    }
    if (rc > 0 && (fds[1].revents & POLLIN) != 0) {
      std::uint64_t v;
      (void)!::read(event_fd_, &v, sizeof v);
      wake_pending_ = false;
    }
    if (rc > 0 && (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
      ssize_t n = ::recv(fd_, in_.data(), in_.size(), MSG_DONTWAIT);
      int err = errno;
      lock.lock();
      if (n > 0) {
        feed_locked(static_cast<std::size_t>(n));
      } else if (n == 0) {
        fail_locked(Error::client(ErrorCategory::kConnection,
                                  "connection to dbmgrd at '" + label_ +
                                      "' was closed by the daemon (daemon restarted or stopped?)"));
      } else if (err != EAGAIN && err != EWOULDBLOCK && err != EINTR) {
        fail_locked(Error::client(ErrorCategory::kConnection,
                                  "connection to dbmgrd at '" + label_ +
                                      "' failed while reading: " + std::strerror(err)));
      }
    } else {
      lock.lock();
    }
    complete_ready(lock);
  }
  complete_ready(lock);
  ::shutdown(fd_, SHUT_RDWR);
  lock.unlock();
  // `self` goes last: when it is the final reference, the destructor runs here and detaches.
}

}  // namespace dbmgr::detail
