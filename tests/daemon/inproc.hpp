// An in-process dbmgrd for unit tests of sessions, the janitor and group commit: a real
// Server (real libuv loop, real socket in a temp folder, real ClientConn and Session code)
// whose loop the test turns itself, one step at a time, on its own thread, with an injected
// ManualClock. Engines are either on the fake backend (fake_backend.hpp: the test decides
// when each operation completes, so the order of events is exact) or real SQLite.
//
// RawClient speaks the wire protocol on a non-blocking socket: the test sends frames, turns
// the loop, and reads what came back. Nothing here sleeps to synchronise except where a real
// SQLite worker thread must finish (InProc::until()).
#pragma once

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include "dbmgr/protocol/codec.hpp"
#include "engine.hpp"
#include "fake_backend.hpp"
#include "server.hpp"

namespace dbmgr::daemon::test {

// A decoded reply, with its bytes kept (the Message's views point into `bytes`).
struct Reply {
  proto::Header header;
  std::vector<std::uint8_t> bytes;
  proto::Message msg;
  proto::MsgType type() const { return header.type; }
  const proto::ErrorMsg* error() const { return std::get_if<proto::ErrorMsg>(&msg); }
  std::string error_text() const {
    auto* e = error();
    return e != nullptr ? std::string(proto::to_string(e->category)) + ": " + std::string(e->message)
                        : std::string();
  }
};

class RawClient {
 public:
  explicit RawClient(const std::string& path) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    REQUIRE(::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
    ::fcntl(fd_, F_SETFL, O_NONBLOCK);
  }
  ~RawClient() { close(); }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  std::uint32_t next_id() { return ++rid_; }
  void send(const std::vector<std::uint8_t>& b) {
    std::size_t off = 0;
    while (off < b.size()) {
      ssize_t n = ::send(fd_, b.data() + off, b.size() - off, MSG_NOSIGNAL);
      REQUIRE(n > 0);
      off += static_cast<std::size_t>(n);
    }
  }
  // Requests; each returns its request id.
  std::uint32_t hello() {
    std::vector<std::uint8_t> out;
    proto::Encoder e(out);
    proto::Hello h;
    h.client_name = "inproc";
    h.pid = static_cast<std::uint32_t>(::getpid());
    auto id = next_id();
    e.hello(id, h);
    send(out);
    return id;
  }
  std::uint32_t open(std::uint32_t sid, bool read_only = false) {
    std::vector<std::uint8_t> out;
    proto::Encoder e(out);
    proto::Open o;
    o.flags = read_only ? proto::kOpenReadOnly : 0;
    auto id = next_id();
    e.open(id, sid, o);
    send(out);
    return id;
  }
  std::uint32_t execute(std::uint32_t sid, std::string_view sql) {
    std::vector<std::uint8_t> out;
    proto::Encoder e(out);
    auto id = next_id();
    e.execute(id, sid, sql, nullptr, 0);
    send(out);
    return id;
  }
  std::uint32_t one_shot(std::string_view sql) {
    std::vector<std::uint8_t> out;
    proto::Encoder e(out);
    auto id = next_id();
    e.one_shot(id, "", "", 0, sql, nullptr, 0);
    send(out);
    return id;
  }
  std::uint32_t simple(proto::MsgType t, std::uint32_t sid) {
    std::vector<std::uint8_t> out;
    proto::Encoder e(out);
    auto id = next_id();
    e.empty(t, id, sid);
    send(out);
    return id;
  }
  std::uint32_t admin(proto::AdminCommand c, std::string_view arg = {}) {
    std::vector<std::uint8_t> out;
    proto::Encoder e(out);
    proto::Admin a;
    a.command = c;
    a.argument = arg;
    auto id = next_id();
    e.admin(id, a);
    send(out);
    return id;
  }
  // Reads whatever arrived (never blocks); returns the complete frames.
  void pump() {
    std::uint8_t buf[65536];
    for (;;) {
      ssize_t n = ::recv(fd_, buf, sizeof(buf), MSG_DONTWAIT);
      if (n <= 0) break;
      in_.insert(in_.end(), buf, buf + n);
    }
    while (in_.size() >= proto::kHeaderSize) {
      proto::Header h;
      REQUIRE(proto::parse_header(in_.data(), 1u << 30, &h) == proto::DecodeError::kOk);
      if (in_.size() < proto::kHeaderSize + h.length) break;
      Reply r;
      r.header = h;
      r.bytes.assign(in_.begin(), in_.begin() + proto::kHeaderSize + h.length);
      in_.erase(in_.begin(), in_.begin() + static_cast<std::ptrdiff_t>(r.bytes.size()));
      replies_.push_back(std::move(r));
    }
  }
  // The replies to `rid` that have arrived (decoded), in order.
  std::vector<Reply*> replies_to(std::uint32_t rid) {
    pump();
    std::vector<Reply*> out;
    for (Reply& r : replies_) {
      if (r.header.request_id != rid) continue;
      proto::FrameView f{r.header, r.bytes.data() + proto::kHeaderSize};
      REQUIRE(proto::decode(f, &r.msg) == proto::DecodeError::kOk);
      out.push_back(&r);
    }
    return out;
  }
  // The final reply to `rid` (kOk, kComplete, kError, kAdminResult, kHelloOk...), if any.
  Reply* final_reply(std::uint32_t rid) {
    for (Reply* r : replies_to(rid)) {
      auto t = r->type();
      if (t != proto::MsgType::kColumns && t != proto::MsgType::kRows) return r;
    }
    return nullptr;
  }
  // The final reply's type, category and text; kHello (0x01, never a reply) / category 0 /
  // "(no reply)" when nothing arrived yet, so a failing CHECK says so instead of crashing.
  proto::MsgType type_of(std::uint32_t rid) {
    Reply* r = final_reply(rid);
    return r != nullptr ? r->type() : proto::MsgType::kHello;
  }
  proto::ErrorCategory category_of(std::uint32_t rid) {
    Reply* r = final_reply(rid);
    return r != nullptr && r->error() != nullptr ? r->error()->category
                                                 : static_cast<proto::ErrorCategory>(0);
  }
  std::string error_text(std::uint32_t rid) {
    Reply* r = final_reply(rid);
    return r != nullptr ? r->error_text() : "(no reply)";
  }
  std::size_t count() {
    pump();
    return replies_.size();
  }

 private:
  int fd_ = -1;
  std::uint32_t rid_ = 0;
  std::vector<std::uint8_t> in_;
  std::vector<Reply> replies_;
};

struct InProcOptions {
  std::string yaml;   // the daemon's config file (empty: none)
  bool fake = true;   // engines on the fake backend; false: real SQLite in the temp folder
};

class InProc {
 public:
  explicit InProc(InProcOptions o = {}) {
    std::signal(SIGPIPE, SIG_IGN);  // as dbmgrd's main() does
    char tmpl[] = "/tmp/dbmgr-inproc-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    dir_ = tmpl;
    std::map<std::string, std::string> env{{"DATABASE_PATH", dir_}, {"DBMGR_SOCKET", socket()}};
    if (!o.yaml.empty()) {
      std::ofstream(dir_ + "/dbmgr.yaml") << o.yaml;
      env["DBMGR_CONFIG"] = dir_ + "/dbmgr.yaml";
    }
    config::EnvLookup lookup = [env](std::string_view name) -> std::optional<std::string> {
      auto it = env.find(std::string(name));
      if (it == env.end()) return std::nullopt;
      return it->second;
    };
    auto settings = config::load(config::CommandLine{}, lookup, "");
    REQUIRE(settings.ok());
    Server::EngineFactory factory;
    if (o.fake) {
      factory = [this](uv_loop_t*, ReadyQueue& ready, const TimeSource& clock, std::string key,
                       config::DatabaseConfig db, std::uint32_t, bool)
          -> Result<std::unique_ptr<Engine>> {
        return Engine::with_factory(ready, clock, std::move(key), std::move(db),
                                    fake.factory());
      };
    }
    server = std::make_unique<Server>(std::move(*settings), config::CommandLine{}, lookup, clock,
                                      factory);
    Status s = server->start();
    REQUIRE_MESSAGE(s.is_ok(), s.message());
  }
  ~InProc() {
    clients_.clear();  // closes the sockets: sessions are abandoned
    step(5);
    while (!fake.in_flight.empty()) {  // rollbacks of abandoned sessions, closes
      fake.finish_next();
      step(2);
    }
    server->begin_shutdown("end of test");
    for (int i = 0; i < 1000 && uv_loop_alive(server->loop()) != 0; ++i) {
      clock.advance(std::chrono::seconds(1));
      step(1);
      while (!fake.in_flight.empty()) fake.finish_next();
      if (i > 10) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    server.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  std::string socket() const { return dir_ + "/d.sock"; }
  const std::string& dir() const { return dir_; }
  // Turns the loop `n` times without blocking.
  void step(int n = 3) {
    for (int i = 0; i < n; ++i) uv_run(server->loop(), UV_RUN_NOWAIT);
  }
  // Turns the loop until `cond` holds (real SQLite work runs on worker threads).
  bool until(const std::function<bool()>& cond, std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
    auto start = std::chrono::steady_clock::now();
    while (!cond()) {
      if (std::chrono::steady_clock::now() - start > timeout) return false;
      uv_run(server->loop(), UV_RUN_NOWAIT);
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    return true;
  }
  RawClient& client() {
    clients_.push_back(std::make_unique<RawClient>(socket()));
    RawClient& c = *clients_.back();
    auto id = c.hello();
    step();
    REQUIRE(c.final_reply(id) != nullptr);
    return c;
  }
  void drop(RawClient& c) { c.close(); }

  ManualClock clock;
  FakeBackend fake;
  std::unique_ptr<Server> server;

 private:
  std::string dir_;
  std::vector<std::unique_ptr<RawClient>> clients_;
};

}  // namespace dbmgr::daemon::test
