// dbmgr::AdminClient: admin requests (status, pools, ..., reload, kill) over detail::Connection.
#include "dbmgr/admin.hpp"

#include <errno.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>

#include "connection.hpp"

namespace dbmgr {
namespace {

constexpr std::string_view kClientName = "dbmgrctl";

std::string default_socket() {
  const char* env = std::getenv("DBMGR_SOCKET");
  if (env != nullptr && *env != '\0') return env;
  return std::string(AdminClient::kDefaultSocket);
}

[[noreturn]] void fail(std::string message) {
  throw Error::client(ErrorCategory::kConnection, std::move(message));
}

// Connects to the daemon's socket, turning each way it can fail into one line that says
// what an operator should look at.
int connect_socket(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    fail("invalid socket path '" + path + "' (empty or longer than " +
         std::to_string(sizeof(addr.sun_path) - 1) + " bytes)");
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) fail("cannot create a socket: " + std::string(std::strerror(errno)));
  int rc;
  do {
    rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr));
  } while (rc != 0 && errno == EINTR);
  if (rc == 0) return fd;
  int err = errno;
  ::close(fd);
  switch (err) {
    case ENOENT:
      fail("dbmgrd is not running (no socket at " + path + ")");
    case ECONNREFUSED:
      fail("dbmgrd is not running (nothing listens on " + path + ")");
    case EACCES:
    case EPERM:
      fail("permission denied on " + path +
           " (run as root, the daemon's user or a member of the socket's group)");
    case ENOTDIR:
      fail("dbmgrd is not running (no socket at " + path + ": a parent is not a folder)");
    default:
      fail("cannot connect to dbmgrd at " + path + ": " + std::strerror(err));
  }
}

}  // namespace

AdminClient::AdminClient(std::string socket_path)
    : socket_path_(socket_path.empty() ? default_socket() : std::move(socket_path)) {}

AdminClient::~AdminClient() = default;
AdminClient::AdminClient(AdminClient&&) noexcept = default;
AdminClient& AdminClient::operator=(AdminClient&&) noexcept = default;

detail::Connection& AdminClient::connection() {
  // A connection the daemon closed (restart, shutdown) is replaced before anything is sent.
  if (conn_ && !conn_->idle_and_alive()) conn_.reset();
  if (conn_) return *conn_;
  int fd = connect_socket(socket_path_);
  try {
    conn_ = detail::Connection::adopt(fd, socket_path_, kClientName);
  } catch (const Error& e) {
    // adopt() closed fd. A daemon that speaks none of our versions answers the handshake
    // with a protocol error; one that answers a version we do not speak is caught by the
    // connection as a protocol error too.
    if (e.category() == ErrorCategory::kProtocol) {
      throw Error::client(ErrorCategory::kConnection,
                          "protocol version mismatch with dbmgrd at " + socket_path_ +
                              " (this dbmgrctl speaks " + std::to_string(proto::kMinVersion) +
                              ".." + std::to_string(proto::kMaxVersion) + "): " + e.message());
    }
    throw;
  }
  return *conn_;
}

std::string AdminClient::request(std::uint8_t command, std::string_view argument) {
  detail::Connection& c = connection();
  c.begin_batch();
  std::uint32_t rid = c.next_request_id();
  proto::Admin a;
  a.command = static_cast<proto::AdminCommand>(command);
  a.argument = argument;
  c.encoder().admin(rid, a);
  std::string text;
  detail::Pending p;
  c.expect(p, rid, detail::Expect::kAdmin, nullptr, nullptr, &text);
  c.round_trip();
  if (p.error) throw *p.error;
  return text;
}

std::string AdminClient::status() { return request(1, {}); }
std::string AdminClient::pools() { return request(2, {}); }
std::string AdminClient::sessions() { return request(3, {}); }
std::string AdminClient::clients() { return request(4, {}); }
std::string AdminClient::engines() { return request(5, {}); }
std::string AdminClient::servers() { return request(10, {}); }
std::string AdminClient::reload() { return request(6, {}); }
std::string AdminClient::kill(std::string_view session) { return request(7, session); }
std::string AdminClient::drain() { return request(8, {}); }
std::string AdminClient::shutdown() { return request(9, {}); }

std::chrono::nanoseconds AdminClient::ping() {
  detail::Connection& c = connection();
  auto start = std::chrono::steady_clock::now();
  c.begin_batch();
  std::uint32_t rid = c.next_request_id();
  c.encoder().empty(proto::MsgType::kPing, rid, 0);
  detail::Pending p;
  c.expect(p, rid, detail::Expect::kPong);
  c.round_trip();
  if (p.error) throw *p.error;
  return std::chrono::steady_clock::now() - start;
}

std::string AdminClient::server_version() { return connection().server_version(); }

}  // namespace dbmgr
