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

Error daemon_error(const proto::ErrorMsg& m) {
  return Error(static_cast<ErrorCategory>(m.category), std::string(m.message),
               std::string(m.sqlstate));
}

Type to_type(proto::ValueTag t) { return static_cast<Type>(t); }

}  // namespace

// ---------------------------------------------------------------- ResultBuilder

void ResultBuilder::begin(Result& r) { r = Result(); }

bool ResultBuilder::columns(Result& r, const proto::ColumnList& cols) {
  if (!r.columns_.empty() || r.row_count_ != 0) return false;
  r.columns_.reserve(cols.size());
  r.declared_types_.reserve(cols.size());
  cols.for_each([&](const proto::ColumnDesc& c) {
    r.columns_.emplace_back(c.name);
    r.declared_types_.push_back(to_type(c.type));
  });
  return !r.columns_.empty();
}

bool ResultBuilder::rows(Result& r, const proto::Rows& rows) {
  if (r.columns_.empty() || rows.column_count != r.columns_.size()) return false;
  std::size_t add_bytes = 0;
  r.cells_.reserve(r.cells_.size() + std::size_t{rows.row_count} * rows.column_count);
  for (proto::Value v : rows.values) {
    if (v.tag == proto::ValueTag::kText || v.tag == proto::ValueTag::kBlob) {
      add_bytes += v.bytes.size();
    }
  }
  r.bytes_.reserve(r.bytes_.size() + add_bytes);
  for (proto::Value v : rows.values) add_cell(r, v);
  r.row_count_ += rows.row_count;
  return true;
}

void ResultBuilder::complete(Result& r, const proto::Complete& c) {
  r.affected_rows_ = c.affected_rows;
  r.last_insert_id_ = c.last_insert_id;
}

void ResultBuilder::add_cell(Result& r, const proto::Value& v) {
  Result::Cell cell;
  cell.type = to_type(v.tag);
  switch (v.tag) {
    case proto::ValueTag::kNull:
      break;
    case proto::ValueTag::kBool:
      cell.i = v.b ? 1 : 0;
      break;
    case proto::ValueTag::kInt64:
      cell.i = v.i;
      break;
    case proto::ValueTag::kDouble:
      cell.d = v.d;
      break;
    case proto::ValueTag::kText:
    case proto::ValueTag::kBlob:
      cell.offset = r.bytes_.size();
      cell.length = v.bytes.size();
      r.bytes_.append(v.bytes);
      break;
  }
  r.cells_.push_back(cell);
}

void ResultBuilder::set_columns(Result& r, std::vector<std::string> names) {
  r.declared_types_.assign(names.size(), Type::kNull);
  r.columns_ = std::move(names);
}

// ---------------------------------------------------------------- Connection

Connection::Connection(int fd, std::string label)
    : fd_(fd),
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
  std::size_t i = expect(rid, Expect::kHelloOk);
  round_trip();
  if (pending_[i].error) {
    broken_ = true;
    Error e = *pending_[i].error;
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
  for (std::size_t i = 0; i < pending_count_; ++i) pending_[i] = Pending();
  pending_count_ = 0;
  pending_done_ = 0;
  send_failed_ = false;
}

const std::vector<proto::Value>& Connection::values(const Param* params, std::size_t count) {
  if (count > proto::kMaxParams) {
    throw Error::client(ErrorCategory::kInvalidRequest,
                        std::to_string(count) + " parameters; a statement takes at most " +
                            std::to_string(proto::kMaxParams));
  }
  values_.clear();
  for (std::size_t i = 0; i < count; ++i) {
    const Param& p = params[i];
    switch (p.type()) {
      case Type::kNull:
        values_.push_back(proto::Value::null());
        break;
      case Type::kBool:
        values_.push_back(proto::Value::boolean(p.as_bool()));
        break;
      case Type::kInt64:
        values_.push_back(proto::Value::int64(p.as_int64()));
        break;
      case Type::kDouble:
        values_.push_back(proto::Value::real(p.as_double()));
        break;
      case Type::kText:
        if (!proto::is_valid_utf8(p.bytes())) {
          throw Error::client(ErrorCategory::kData,
                              "parameter " + std::to_string(i + 1) +
                                  " is not valid UTF-8 text; pass binary data as dbmgr::Blob");
        }
        values_.push_back(proto::Value::text(p.bytes()));
        break;
      case Type::kBlob:
        values_.push_back(proto::Value::blob(p.bytes()));
        break;
    }
  }
  return values_;
}

std::size_t Connection::expect(std::uint32_t request_id, Expect what, Result* result,
                               DatabaseInfo* info, std::string* text) {
  // The library never pipelines more than kMaxPending requests; more is a bug here.
  if (pending_count_ >= kMaxPending) std::abort();
  Pending& p = pending_[pending_count_];
  p = Pending();
  p.request_id = request_id;
  p.expect = what;
  p.result = result;
  p.info = info;
  p.text = text;
  if (result != nullptr) ResultBuilder::begin(*result);
  return pending_count_++;
}

void Connection::check_frame_size(std::size_t frame_start) {
  std::size_t payload = out_.size() - frame_start - proto::kHeaderSize;
  if (payload > max_frame_bytes_) {
    begin_batch();
    throw Error::client(ErrorCategory::kInvalidRequest,
                        "request of " + std::to_string(payload) +
                            " bytes exceeds the daemon's max_frame_bytes (" +
                            std::to_string(max_frame_bytes_) + ")");
  }
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

void Connection::send_all() {
  if (fd_ < 0)
    fail(ErrorCategory::kConnection, "connection to dbmgrd at '" + label_ + "' is closed");
  std::size_t sent = 0;
  while (sent < out_.size()) {
    ssize_t n = ::send(fd_, out_.data() + sent, out_.size() - sent, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      if (sent == 0) send_failed_ = true;
      fail_io("sending a request", err == EPIPE ? 0 : err);
    }
    sent += static_cast<std::size_t>(n);
  }
  out_.clear();
}

void Connection::round_trip() {
  if (broken()) {
    fail(ErrorCategory::kConnection, "connection to dbmgrd at '" + label_ + "' is broken");
  }
  if (!owned_by_this_process()) {
    fail(ErrorCategory::kConnection, "connection to dbmgrd at '" + label_ +
                                         "' belongs to process " + std::to_string(pid_) +
                                         " (used after fork)");
  }
  send_all();
  stream_error_.reset();
  auto on = [this](const proto::FrameView& f) { return on_frame(f); };
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
  while (pending_done_ < pending_count_ && !stream_error_) {
    if (!readable) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, -1) < 0) {
        if (errno == EINTR) continue;
        fail_io("waiting for a reply", errno);
      }
    }
    ssize_t n = ::recv(fd_, in_.data(), in_.size(), MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        readable = false;
        continue;
      }
      fail_io("reading a reply", errno);
    }
    readable = true;
    if (n == 0) fail_io("reading a reply", 0);
    proto::DecodeError err = decoder_.feed(in_.data(), static_cast<std::size_t>(n), on);
    if (err != proto::DecodeError::kOk && !stream_error_) {
      fail(ErrorCategory::kProtocol, "malformed frame from dbmgrd at '" + label_ +
                                         "': " + std::string(proto::to_string(err)));
    }
  }
  if (stream_error_) {
    broken_ = true;
    throw *stream_error_;
  }
  last_io_ = std::chrono::steady_clock::now();
}

bool Connection::on_frame(const proto::FrameView& frame) {
  auto protocol_error = [&](std::string what) {
    stream_error_ = Error::client(ErrorCategory::kProtocol,
                                  "dbmgrd at '" + label_ + "' sent " + std::move(what));
    return false;
  };
  proto::Message msg;
  proto::DecodeError err = proto::decode(frame, &msg);
  if (err != proto::DecodeError::kOk) {
    return protocol_error("a malformed " + std::string(proto::to_string(frame.header.type)) +
                          " frame: " + std::string(proto::to_string(err)));
  }
  // Replies of different sessions may interleave: find the request this frame answers.
  Pending* found = nullptr;
  if (frame.header.request_id != 0) {
    for (std::size_t i = 0; i < pending_count_; ++i) {
      if (!pending_[i].done && pending_[i].request_id == frame.header.request_id) {
        found = &pending_[i];
        break;
      }
    }
  }
  // An error that names no pending request ends the connection: the daemon sends one with
  // request id 0 before closing (protocol error, shutdown).
  if (found == nullptr) {
    if (const auto* e = std::get_if<proto::ErrorMsg>(&msg)) {
      Error de = daemon_error(*e);
      stream_error_ =
          Error(de.category(), "dbmgrd at '" + label_ + "' closed the connection: " + de.message(),
                de.sqlstate());
      return false;
    }
    return protocol_error("an unexpected " + std::string(proto::to_string(frame.header.type)) +
                          " frame (request id " + std::to_string(frame.header.request_id) + ")");
  }
  Pending& p = *found;
  if (const auto* e = std::get_if<proto::ErrorMsg>(&msg)) {
    p.error = daemon_error(*e);
    p.done = true;
    ++pending_done_;
    // Only protocol errors close the connection; the daemon does so right after this one.
    if (e->category == proto::ErrorCategory::kProtocol) broken_ = true;
    return true;
  }
  auto unexpected = [&]() {
    return protocol_error("a " + std::string(proto::to_string(frame.header.type)) +
                          " frame where it was not expected (request id " +
                          std::to_string(p.request_id) + ")");
  };
  switch (p.expect) {
    case Expect::kHelloOk: {
      const auto* h = std::get_if<proto::HelloOk>(&msg);
      if (h == nullptr) return unexpected();
      if (h->version < proto::kMinVersion || h->version > proto::kMaxVersion) {
        return protocol_error("protocol version " + std::to_string(h->version) +
                              ", which this client does not speak");
      }
      server_version_.assign(h->server_version);
      // The daemon's limit, both ways: what we may send and what it may send us. The
      // decoder applies it from the next frame on (this one is already whole).
      max_frame_bytes_ = h->max_frame_bytes;
      decoder_.set_max_frame_bytes(std::max(h->max_frame_bytes, proto::kDefaultMaxFrameBytes));
      break;
    }
    case Expect::kOk:
      if (!std::holds_alternative<proto::Ok>(msg)) return unexpected();
      break;
    case Expect::kPong:
      if (!std::holds_alternative<proto::Pong>(msg)) return unexpected();
      break;
    case Expect::kAdmin: {
      const auto* r = std::get_if<proto::AdminResult>(&msg);
      if (r == nullptr) return unexpected();
      if (p.text != nullptr) p.text->assign(r->json);
      break;
    }
    case Expect::kInfo: {
      const auto* r = std::get_if<proto::InfoResult>(&msg);
      if (r == nullptr) return unexpected();
      if (p.info != nullptr) {
        p.info->type.assign(r->type);
        p.info->name.assign(r->name);
        p.info->uri.assign(r->uri);
        p.info->pk_type.assign(r->pk_type);
        p.info->pk_column_type.assign(r->pk_column_type);
      }
      break;
    }
    case Expect::kResult: {
      if (const auto* c = std::get_if<proto::Columns>(&msg)) {
        if (p.saw_columns || !ResultBuilder::columns(*p.result, c->columns)) return unexpected();
        p.saw_columns = true;
        return true;
      }
      if (const auto* r = std::get_if<proto::Rows>(&msg)) {
        if (!ResultBuilder::rows(*p.result, *r)) {
          return protocol_error("a row batch that does not match its column list");
        }
        return true;
      }
      const auto* done = std::get_if<proto::Complete>(&msg);
      if (done == nullptr) return unexpected();
      ResultBuilder::complete(*p.result, *done);
      p.in_transaction = done->in_transaction;
      break;
    }
  }
  p.done = true;
  ++pending_done_;
  return true;
}

void Connection::throw_first_error() const {
  for (std::size_t i = 0; i < pending_count_; ++i) {
    if (pending_[i].error) throw *pending_[i].error;
  }
}

}  // namespace dbmgr::detail
