// Integration-test harness: a real dbmgrd in a temp folder, raw protocol access, forks.
#include "harness.hpp"

#include <doctest/doctest.h>

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <utility>

#include "dbmgr/protocol/codec.hpp"

namespace dbmgr::test {

using namespace std::chrono_literals;

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base != nullptr ? base : "/tmp") + "/dbmgr-test-XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

bool can_connect(const std::string& path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return ok;
}

int open_fds(pid_t pid) {
  DIR* d = opendir(("/proc/" + std::to_string(pid) + "/fd").c_str());
  if (d == nullptr) return -1;
  int n = 0;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] != '.') ++n;
  }
  closedir(d);
  return n;
}

long rss_kib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
  }
  return -1;
}

const char* env_value(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? v : nullptr;
}

bool eventually(const std::function<bool()>& cond, std::chrono::milliseconds timeout) {
  auto start = std::chrono::steady_clock::now();
  for (;;) {
    if (cond()) return true;
    if (std::chrono::steady_clock::now() - start > timeout) return false;
    std::this_thread::sleep_for(2ms);
  }
}

Daemon::Daemon(DaemonOptions opts) : opts_(std::move(opts)), socket_name_(opts_.socket_name) {
  start();
}

void Daemon::start() {
  if (pid_ > 0) throw std::runtime_error("Daemon::start: dbmgrd is running");
  const DaemonOptions& opts = opts_;
  const char* exe_env = std::getenv("DBMGRD");
  if (exe_env == nullptr) throw std::runtime_error("$DBMGRD is not set (run the tests with meson test)");
  const std::string exe_path = std::filesystem::absolute(exe_env).string();  // the child chdirs
  const char* exe = exe_path.c_str();
  std::filesystem::create_directories(data_dir());
  if (!opts.config_yaml.empty()) {
    std::ofstream(config_path()) << opts.config_yaml;
  }
  std::string log_path = dir() + "/dbmgrd.log";
  pid_ = fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    int log_fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    dup2(log_fd, 1);
    dup2(log_fd, 2);
    for (const char* v : {"DATABASE_TYPE", "DATABASE_NAME", "DATABASE_USER", "DATABASE_PASSWORD",
                          "DATABASE_PASSWORD_FILE", "DATABASE_HOST", "DATABASE_PORT",
                          "DATABASE_SSL", "DBMGR_SOCKET", "DBMGR_CONFIG"}) {
      unsetenv(v);
    }
    setenv("DATABASE_PATH", data_dir().c_str(), 1);
    // Relative paths (a `databases:` entry without `path:` means the working folder) land
    // in the daemon's own temp folder, never in the tree the tests run from.
    if (chdir(dir().c_str()) != 0) _exit(125);
    if (!opts.config_yaml.empty()) setenv("DBMGR_CONFIG", config_path().c_str(), 1);
    for (auto& [k, v] : opts.env) setenv(k.c_str(), v.c_str(), 1);
    if (opts.nofile != 0) {
      rlimit rl{opts.nofile, opts.nofile};
      if (setrlimit(RLIMIT_NOFILE, &rl) != 0) _exit(126);
    }
    std::string sock = socket();
    execl(exe, exe, "--socket", sock.c_str(), "--log-level", opts.log_level.c_str(),
          static_cast<char*>(nullptr));
    _exit(127);
  }
  auto start = std::chrono::steady_clock::now();
  while (!can_connect(socket())) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      throw std::runtime_error("dbmgrd exited at start:\n" + log());
    }
    if (seconds_since(start) > 10) throw std::runtime_error("dbmgrd did not listen in 10 s:\n" + log());
    std::this_thread::sleep_for(5ms);
  }
}

Daemon::~Daemon() {
  if (pid_ > 0) {
    // SIGTERM must end in a clean exit 0; under the sanitizers a leak or an error report
    // makes it non-zero, and that fails the test that owned this daemon.
    int status = stop();
    if (status != 0) std::cerr << "dbmgrd exit status " << status << "; its log:\n" << log();
    CHECK_MESSAGE(status == 0, "dbmgrd did not exit cleanly on SIGTERM (status ", status,
                  "); see its log above");
  }
}

std::string Daemon::log() const {
  std::ifstream in(dir() + "/dbmgrd.log");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

int Daemon::stop(int sig, std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return -1;
  kill(pid_, sig);
  auto start = std::chrono::steady_clock::now();
  int status = 0;
  for (;;) {
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) break;
    if (std::chrono::steady_clock::now() - start > timeout) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
      pid_ = -1;
      return -1;
    }
    std::this_thread::sleep_for(5ms);
  }
  pid_ = -1;
  return status;
}

dbmgr::Options Daemon::options(std::string prefix, std::string database) const {
  dbmgr::Options o;
  o.socket_path = socket();
  o.db_prefix = std::move(prefix);
  o.database = std::move(database);
  return o;
}

nlohmann::json Daemon::admin(proto::AdminCommand cmd, std::string_view arg) const {
  RawConn c(socket());
  c.hello();
  std::vector<std::uint8_t> out;
  proto::Encoder enc(out);
  proto::Admin a;
  a.command = cmd;
  a.argument = arg;
  enc.admin(7, a);
  c.send(out);
  auto frame = c.read_frame();
  if (frame.empty()) throw std::runtime_error("no admin reply");
  proto::Header h;
  if (proto::parse_header(frame.data(), proto::kDefaultMaxFrameBytes, &h) != proto::DecodeError::kOk) {
    throw std::runtime_error("bad admin reply header");
  }
  proto::Message m;
  if (proto::decode(proto::FrameView{h, frame.data() + proto::kHeaderSize}, &m) != proto::DecodeError::kOk) {
    throw std::runtime_error("bad admin reply");
  }
  if (auto* e = std::get_if<proto::ErrorMsg>(&m)) {
    throw dbmgr::Error(static_cast<dbmgr::ErrorCategory>(e->category), std::string(e->message),
                       std::string(e->sqlstate));
  }
  return nlohmann::json::parse(std::get<proto::AdminResult>(m).json);
}

nlohmann::json Daemon::pool(std::string_view database, std::string_view role) const {
  for (auto& p : admin(proto::AdminCommand::kPools)) {
    if (p["database"] == database && p["role"] == role) return p;
  }
  return nullptr;
}

RawConn::RawConn(const std::string& socket_path) {
  fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, socket_path.c_str(), sizeof(addr.sun_path) - 1);
  if (connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    throw std::runtime_error("cannot connect to " + socket_path);
  }
}

RawConn::~RawConn() {
  if (fd_ >= 0) close(fd_);
}

void RawConn::send(const void* data, std::size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = ::send(fd_, p, n, MSG_NOSIGNAL);
    if (w <= 0) throw std::runtime_error("send failed");
    p += w;
    n -= static_cast<std::size_t>(w);
  }
}

std::vector<std::uint8_t> RawConn::read_frame(std::chrono::milliseconds timeout) {
  auto start = std::chrono::steady_clock::now();
  for (;;) {
    if (in_.size() >= proto::kHeaderSize) {
      std::uint32_t len = (std::uint32_t{in_[0]} << 24) | (std::uint32_t{in_[1]} << 16) |
                          (std::uint32_t{in_[2]} << 8) | in_[3];
      if (in_.size() >= proto::kHeaderSize + len) {
        std::vector<std::uint8_t> frame(in_.begin(), in_.begin() + proto::kHeaderSize + len);
        in_.erase(in_.begin(), in_.begin() + static_cast<std::ptrdiff_t>(frame.size()));
        return frame;
      }
    }
    auto left = timeout - std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::steady_clock::now() - start);
    if (left.count() <= 0) throw std::runtime_error("timed out waiting for a frame");
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    char buf[65536];
    ssize_t n = recv(fd_, buf, sizeof(buf), 0);
    if (n <= 0) return {};
    in_.insert(in_.end(), buf, buf + n);
  }
}

bool RawConn::closed_by_peer(std::chrono::milliseconds timeout) {
  auto start = std::chrono::steady_clock::now();
  for (;;) {
    auto left = timeout - std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::steady_clock::now() - start);
    if (left.count() <= 0) return false;
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    char buf[65536];
    ssize_t n = recv(fd_, buf, sizeof(buf), 0);
    if (n == 0) return true;
    if (n < 0) return errno == ECONNRESET;
  }
}

void RawConn::hello() {
  std::vector<std::uint8_t> out;
  proto::Encoder enc(out);
  proto::Hello h;
  h.client_name = "harness";
  h.pid = static_cast<std::uint32_t>(getpid());
  enc.hello(1, h);
  send(out);
  auto f = read_frame();
  if (f.size() < proto::kHeaderSize || f[4] != static_cast<std::uint8_t>(proto::MsgType::kHelloOk)) {
    throw std::runtime_error("handshake failed");
  }
}

std::string required_env(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') {
    throw std::runtime_error(std::string(name) +
                             " is not set: run the tests through scripts/test.sh, which starts "
                             "PostgreSQL and MariaDB (scripts/test-servers.sh start DIR pg mariadb; "
                             "source DIR/servers.env)");
  }
  return v;
}

DaemonOptions pg_daemon_options(std::string yaml) {
  DaemonOptions o;
  o.env = {
      {"DATABASE_TYPE", "postgresql"},
      {"DATABASE_HOST", required_env("DBMGR_TEST_PG_HOST")},
      {"DATABASE_PORT", required_env("DBMGR_TEST_PG_PORT")},
      {"DATABASE_USER", required_env("DBMGR_TEST_PG_USER")},
      {"DATABASE_PASSWORD", required_env("DBMGR_TEST_PG_PASSWORD")},
      {"DATABASE_NAME", required_env("DBMGR_TEST_PG_DB")},
  };
  o.config_yaml = std::move(yaml);
  return o;
}

DaemonOptions mariadb_daemon_options(std::string yaml) {
  DaemonOptions o;
  o.env = {
      {"DATABASE_TYPE", "mariadb"},
      {"DATABASE_HOST", required_env("DBMGR_TEST_MARIADB_SOCKET")},
      {"DATABASE_USER", required_env("DBMGR_TEST_MARIADB_USER")},
      {"DATABASE_PASSWORD", required_env("DBMGR_TEST_MARIADB_PASSWORD")},
      {"DATABASE_NAME", required_env("DBMGR_TEST_MARIADB_DB")},
  };
  o.config_yaml = std::move(yaml);
  return o;
}

pid_t fork_child(const std::function<void()>& f) {
  std::cout.flush();
  std::cerr.flush();
  pid_t pid = fork();
  if (pid == 0) {
    int code = 0;
    try {
      f();
    } catch (const std::exception& e) {
      std::cerr << "child " << getpid() << ": " << e.what() << "\n";
      code = 1;
    }
    std::cerr.flush();
    _exit(code);
  }
  return pid;
}

int wait_child(pid_t pid) {
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) return -1;
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

}  // namespace dbmgr::test
