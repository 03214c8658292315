// One blocking Unix-socket connection to dbmgrd: connect, handshake, batched round trips.
#include "connection.hpp"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <string>
#include <utility>
#include <variant>

namespace dbmgr::detail {
namespace {

std::string errno_text(int err) { return std::strerror(err); }

// Counts forks in this process (a pthread_atfork child handler), so that a connection can
// tell it was inherited without a getpid() system call per request.
std::atomic<unsigned> g_fork_generation{0};
void on_fork_child() { g_fork_generation.fetch_add(1, std::memory_order_relaxed); }
unsigned fork_generation() {
  static const bool registered = (::pthread_atfork(nullptr, nullptr, &on_fork_child), true);
  (void)registered;
  return g_fork_generation.load(std::memory_order_relaxed);
}

constexpr auto kPeekAfterIdle = std::chrono::seconds(1);

}  // namespace

// ---------------------------------------------------------------- Connection

Connection::Connection(int fd, std::string label)
    : Outbox(label),
      fd_(fd),
      pid_(::getpid()),
      fork_generation_(fork_generation()),
      last_io_(std::chrono::steady_clock::now()),
      label_(std::move(label)),
      in_(kReadChunk) {}

Connection::~Connection() {
  if (fd_ >= 0) ::close(fd_);
}

std::unique_ptr<Connection> Connection::open(const std::string& socket_path,
                                             std::string_view client_name) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.empty() || socket_path.size() >= sizeof(addr.sun_path)) {
    throw Error::client(ErrorCategory::kConnection,
                        "invalid dbmgrd socket path '" + socket_path + "' (empty or longer than " +
                            std::to_string(sizeof(addr.sun_path) - 1) + " bytes)");
  }
  std::memcpy(addr.sun_path, socket_path.data(), socket_path.size());
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    throw Error::client(ErrorCategory::kConnection, "cannot create a socket for dbmgrd at '" +
                                                        socket_path + "': " + errno_text(errno));
  }
  int rc;
  do {
    rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr));
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    int err = errno;
    ::close(fd);
    std::string hint = (err == ENOENT || err == ECONNREFUSED)
                           ? " (is dbmgrd running? set DBMGR_SOCKET or Options::socket_path)"
                           : (err == EACCES ? " (permission denied on the socket)" : "");
    throw Error::client(ErrorCategory::kConnection, "cannot connect to dbmgrd at '" + socket_path +
                                                        "': " + errno_text(err) + hint);
  }
  std::unique_ptr<Connection> c(new Connection(fd, socket_path));
  c->handshake(client_name);
  return c;
}

std::unique_ptr<Connection> Connection::adopt(int fd, std::string label,
                                              std::string_view client_name) {
  std::unique_ptr<Connection> c(new Connection(fd, std::move(label)));
  c->handshake(client_name);
  return c;
}

void Connection::handshake(std::string_view client_name) {
  begin_batch();
  std::uint32_t rid = next_request_id();
  proto::Hello hello;
  hello.min_version = proto::kMinVersion;
  hello.max_version = proto::kMaxVersion;
  hello.client_name = client_name;
  hello.pid = static_cast<std::uint32_t>(pid_);
  encoder_.hello(rid, hello);
  Pending p;
  expect(p, rid, Expect::kHelloOk, nullptr, nullptr, &server_version_);
  round_trip();
  if (!p.error) {
    // The daemon's limit, both ways: what we may send and what it may send us.
    max_frame_bytes_ = p.max_frame_bytes;
    decoder_.set_max_frame_bytes(std::max(p.max_frame_bytes, proto::kDefaultMaxFrameBytes));
  }
  if (p.error) {
    broken_ = true;
    Error e = *p.error;
    throw Error(e.category(), "dbmgrd at '" + label_ + "' refused the handshake: " + e.message(),
                e.sqlstate());
  }
}

bool Connection::owned_by_this_process() const {
  return fork_generation_ == fork_generation();
}

bool Connection::idle_and_alive(bool always_peek) const {
  if (broken() || !owned_by_this_process() || !decoder_.idle()) return false;
  if (!always_peek && std::chrono::steady_clock::now() - last_io_ < kPeekAfterIdle) return true;
  if (pid_ != ::getpid()) return false;
  std::uint8_t byte;
  ssize_t n;
  do {
    n = ::recv(fd_, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK;
  return false;  // 0: the daemon closed it; > 0: an unasked frame (an error before closing)
}

void Connection::abandon() noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  broken_ = true;
}

void Connection::begin_batch() {
  out_.clear();
  send_failed_ = false;
}

void Connection::fail(ErrorCategory category, std::string message) {
  broken_ = true;
  throw Error::client(category, std::move(message));
}

void Connection::fail_io(const char* what, int err) {
  std::string msg = "connection to dbmgrd at '" + label_ + "' ";
  if (err == 0) {
    msg += "was closed by the daemon while ";
    msg += what;
    msg += " (daemon restarted or stopped?)";
  } else {
    msg += "failed while ";
    msg += what;
    msg += ": " + errno_text(err);
  }
  fail(ErrorCategory::kConnection, std::move(msg));
}

template <typename On>
void Connection::send_all(On& on) {
  if (fd_ < 0)
    fail(ErrorCategory::kConnection, "connection to dbmgrd at '" + label_ + "' is closed");
  // A batch larger than the socket's buffer (a long pipeline) is written as the daemon reads
  // it, and its replies are read meanwhile: the daemon stops reading a client whose replies
  // pile up, so a client that only wrote would wait for it forever.
  std::size_t sent = 0;
  while (sent < out_.size()) {
    ssize_t n = ::send(fd_, out_.data() + sent, out_.size() - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n >= 0) {
      sent += static_cast<std::size_t>(n);
      continue;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      int err = errno;
      if (sent == 0) send_failed_ = true;
      fail_io("sending a request", err == EPIPE ? 0 : err);
    }
    pollfd p{fd_, POLLIN | POLLOUT, 0};
    if (::poll(&p, 1, -1) < 0) {
      if (errno == EINTR) continue;
      fail_io("sending a request", errno);
    }
    if ((p.revents & POLLIN) != 0) read_once(on);
  }
  out_.clear();
}

void Connection::round_trip() {
  // Whatever way this ends, no Pending of the batch (they live in the caller's frame) stays
  // registered: a failure ends them all with its error.
  try {
    if (broken()) {
      fail(ErrorCategory::kConnection, "connection to dbmgrd at '" + label_ + "' is broken");
    }
    if (!owned_by_this_process()) {
      fail(ErrorCategory::kConnection, "connection to dbmgrd at '" + label_ +
                                           "' belongs to process " + std::to_string(pid_) +
                                           " (used after fork)");
    }
    router_.clear_stream_error();
    auto on = [this](const proto::FrameView& f) { return router_.on_frame(f); };
    send_all(on);
    read_replies(on);
  } catch (const Error& e) {
    router_.fail_all(e);
    throw;
  }
  if (router_.closing()) broken_ = true;
  if (router_.stream_error()) {
    broken_ = true;
    Error e = *router_.stream_error();
    router_.fail_all(e);
    throw e;
  }
  last_io_ = std::chrono::steady_clock::now();
}

template <typename On>
void Connection::read_replies(On& on) {
  // Frames kept from an earlier read (none in normal operation) come first.
  if (decoder_.paused()) {
    proto::DecodeError err = decoder_.resume(on);
    if (err != proto::DecodeError::kOk) {
      fail(ErrorCategory::kProtocol, "malformed frame from dbmgrd at '" + label_ +
                                         "': " + std::string(proto::to_string(err)));
    }
  }
  // Waits in poll() for POLLIN, not in a blocking recv(): a thread asleep in recv() on a
  // Unix socket is also woken each time the daemon reads what this socket sent (the
  // kernel's write-space wake-up of the sender carries no event filter for it), so every
  // request cost the client a spurious wake-up and the daemon the work of waking it: 20 %
  // of the daemon's CPU under load (perf). poll() waiters are only woken for the events
  // they asked for. After a read, the next one is tried without waiting first.
  bool readable = false;
  while (router_.outstanding() > 0 && !router_.stream_error()) {
    if (!readable) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, -1) < 0) {
        if (errno == EINTR) continue;
        fail_io("waiting for a reply", errno);
      }
    }
    readable = read_once(on);
  }
}

template <typename On>
bool Connection::read_once(On& on) {
  ssize_t n;
  do {
    n = ::recv(fd_, in_.data(), in_.size(), MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return false;
    fail_io("reading a reply", errno);
  }
  if (n == 0) fail_io("reading a reply", 0);
  proto::DecodeError err = decoder_.feed(in_.data(), static_cast<std::size_t>(n), on);
  if (err != proto::DecodeError::kOk && !router_.stream_error()) {
    fail(ErrorCategory::kProtocol, "malformed frame from dbmgrd at '" + label_ +
                                       "': " + std::string(proto::to_string(err)));
  }
  return true;
}

}  // namespace dbmgr::detail
