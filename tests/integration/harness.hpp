// Integration-test harness: starts a real dbmgrd on a temp socket and talks to it.
//
// Daemon runs build/daemon/dbmgrd (path from $DBMGRD, set by meson) as a child process with
// a private folder (socket, SQLite data, log, config) and stops it with SIGTERM at the end.
// admin() sends one admin request over a raw protocol connection and returns the JSON, so
// tests can see pools and sessions exactly as the daemon counts them.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <string>

#include <dbmgr/dbmgr.hpp>
#include <nlohmann/json.hpp>

#include "dbmgr/protocol/protocol.hpp"

namespace dbmgr::test {

// A fresh folder under $TMPDIR (or /tmp), removed by the destructor.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

struct DaemonOptions {
  std::string config_yaml;                    // written to dir/dbmgr.yaml when not empty
  std::map<std::string, std::string> env;     // extra environment for the daemon
  std::string log_level = "debug";
  std::string socket_name = "dbmgrd.sock";   // in the daemon's folder (any bytes but '/')
  unsigned long nofile = 0;                   // RLIMIT_NOFILE (soft and hard) for it; 0: inherit
};

class Daemon {
 public:
  explicit Daemon(DaemonOptions opts = {});
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // Sends `sig` and waits up to `timeout` for the exit; returns the exit status as
  // waitpid() reports it, or -1 if the daemon did not exit in time (it is then killed).
  int stop(int sig = SIGTERM, std::chrono::milliseconds timeout = std::chrono::seconds(15));
  // Starts it again after stop(), in the same folder: same socket, data, config and options.
  void start();
  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }

  const std::string& dir() const { return dir_.path(); }
  std::string socket() const { return dir() + "/" + socket_name_; }
  std::string data_dir() const { return dir() + "/data"; }
  std::string config_path() const { return dir() + "/dbmgr.yaml"; }
  std::string log() const;  // what the daemon wrote so far

  dbmgr::Options options(std::string prefix = {}, std::string database = {}) const;
  nlohmann::json admin(proto::AdminCommand cmd, std::string_view arg = {}) const;
  // The pools entry for `database` with `role` ("writer", "reader", "main").
  nlohmann::json pool(std::string_view database, std::string_view role) const;

 private:
  TempDir dir_;
  DaemonOptions opts_;
  std::string socket_name_;
  pid_t pid_ = -1;
};

// Raw protocol access for tests that must send what no well-behaved client would.
class RawConn {
 public:
  explicit RawConn(const std::string& socket_path);
  ~RawConn();
  void send(const void* data, std::size_t n);
  void send(const std::vector<std::uint8_t>& bytes) { send(bytes.data(), bytes.size()); }
  // Reads until one whole frame is there; returns {header bytes + payload}. Empty on EOF.
  std::vector<std::uint8_t> read_frame(std::chrono::milliseconds timeout = std::chrono::seconds(5));
  // True when the daemon closed the connection (EOF) within `timeout`.
  bool closed_by_peer(std::chrono::milliseconds timeout = std::chrono::seconds(5));
  void hello();

 private:
  int fd_ = -1;
  std::vector<std::uint8_t> in_;
};

// A variable the test command always sets (scripts/test.sh starts PostgreSQL and MariaDB); missing
// means a broken set-up, and throws (no skipping).
std::string required_env(const char* name);
// A daemon whose default database is the test PostgreSQL (DBMGR_TEST_PG_*), with `yaml`.
DaemonOptions pg_daemon_options(std::string yaml = {});
// A daemon whose default database is the test MariaDB (DBMGR_TEST_MARIADB_*: `type: mariadb`,
// `host:` its socket file), with `yaml`.
DaemonOptions mariadb_daemon_options(std::string yaml = {});

// Runs f in a forked child; the child exits 0 if f returns, 1 if it throws (the message
// goes to stderr). Returns the child's pid.
pid_t fork_child(const std::function<void()>& f);
// Waits for the child; returns its exit code, or 128+signal.
int wait_child(pid_t pid);

double seconds_since(std::chrono::steady_clock::time_point t);

// True when something accepts connections on the Unix socket `path`.
bool can_connect(const std::string& path);
// A process seen from /proc: its open descriptors and resident memory (-1 when it is gone).
int open_fds(pid_t pid);
long rss_kib(pid_t pid);
// The nonempty value of an environment variable, or nullptr.
const char* env_value(const char* name);

// Polls `cond` every few milliseconds until it is true (returns true) or `timeout` passes
// (returns false). For waiting on the daemon's state (a waiter queued, an engine gone).
bool eventually(const std::function<bool()>& cond,
                std::chrono::milliseconds timeout = std::chrono::seconds(10));

}  // namespace dbmgr::test
