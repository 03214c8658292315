// ScriptedPeer: a fake dbmgrd on a Unix socket for client tests (see scripted_peer.hpp).
#include "scripted_peer.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <list>
#include <stdexcept>
#include <variant>

namespace dbmgr::test {

OwnedValue own(const proto::Value& v) {
  OwnedValue o;
  o.tag = v.tag;
  o.b = v.b;
  o.i = v.i;
  o.d = v.d;
  o.bytes.assign(v.bytes);
  return o;
}

void Reply::rows(const std::vector<std::vector<proto::Value>>& rows, std::size_t per_batch) {
  std::size_t i = 0;
  while (i < rows.size()) {
    proto::RowBatchEncoder b(enc_, req_.request_id, req_.session_id,
                             static_cast<std::uint16_t>(rows[i].size()));
    for (std::size_t n = 0; n < per_batch && i < rows.size(); ++n, ++i) {
      for (const proto::Value& v : rows[i]) b.value(v);
      b.end_row();
    }
    b.finish();
  }
}

ScriptedPeer::ScriptedPeer() {
  char tmpl[] = "/tmp/dbmgr-client-test-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp failed");
  dir_ = tmpl;
  path_ = dir_ + "/dbmgrd.sock";
  listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path_.c_str(), path_.size() + 1);
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::listen(listen_fd_, 64) != 0) {
    throw std::runtime_error("bind/listen failed");
  }
  if (::pipe2(wake_, O_CLOEXEC | O_NONBLOCK) != 0) throw std::runtime_error("pipe2 failed");
  thread_ = std::thread([this] { loop(); });
}

ScriptedPeer::~ScriptedPeer() {
  stop_ = true;
  wake();
  thread_.join();
  ::close(listen_fd_);
  ::close(wake_[0]);
  ::close(wake_[1]);
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

void ScriptedPeer::wake() {
  char b = 1;
  (void)!::write(wake_[1], &b, 1);
}

void ScriptedPeer::serve_fd(int fd) {
  {
    std::lock_guard lock(mu_);
    adopted_.push_back(fd);
  }
  wake();
}

void ScriptedPeer::set_handler(Handler h) {
  std::lock_guard lock(mu_);
  handler_ = std::move(h);
}

std::vector<Request> ScriptedPeer::requests() const {
  std::lock_guard lock(mu_);
  return requests_;
}

std::vector<Request> ScriptedPeer::requests_of(proto::MsgType type) const {
  std::lock_guard lock(mu_);
  std::vector<Request> out;
  for (const Request& r : requests_) {
    if (r.type == type) out.push_back(r);
  }
  return out;
}

void ScriptedPeer::clear_requests() {
  std::lock_guard lock(mu_);
  requests_.clear();
}

int ScriptedPeer::open_connections() const {
  std::lock_guard lock(mu_);
  return open_;
}

void ScriptedPeer::drop_all_connections() {
  drop_all_ = true;
  wake();
  for (int i = 0; i < 200 && drop_all_; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

bool ScriptedPeer::wait_for_requests(std::size_t n) const {
  for (int i = 0; i < 400; ++i) {
    {
      std::lock_guard lock(mu_);
      if (requests_.size() >= n) return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

void ScriptedPeer::loop() {
  std::list<Conn> conns;
  int next_index = 0;
  std::vector<std::uint8_t> buf(64 * 1024);
  std::vector<std::uint8_t> out;
  auto add = [&](int fd) {
    Conn& c = conns.emplace_back();
    c.fd = fd;
    c.index = next_index++;
    std::lock_guard lock(mu_);
    ++open_;
  };
  auto drop = [&](std::list<Conn>::iterator it) {
    ::close(it->fd);
    {
      std::lock_guard lock(mu_);
      --open_;
    }
    return conns.erase(it);
  };
  while (!stop_) {
    std::vector<pollfd> fds;
    fds.push_back({listen_fd_, POLLIN, 0});
    fds.push_back({wake_[0], POLLIN, 0});
    for (Conn& c : conns) fds.push_back({c.fd, POLLIN, 0});
    if (::poll(fds.data(), fds.size(), 1000) < 0) continue;
    if (fds[1].revents != 0) {
      char drain[64];
      while (::read(wake_[0], drain, sizeof drain) > 0) {
      }
    }
    {
      std::vector<int> adopted;
      {
        std::lock_guard lock(mu_);
        adopted.swap(adopted_);
      }
      for (int fd : adopted) add(fd);
    }
    if (drop_all_) {
      for (auto it = conns.begin(); it != conns.end();) it = drop(it);
      drop_all_ = false;
      continue;
    }
    if (fds[0].revents & POLLIN) {
      int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd >= 0) {
        ++accepted_;
        add(fd);
      }
    }
    std::size_t k = 2;
    for (auto it = conns.begin(); it != conns.end();) {
      // Connections added in this turn have no pollfd yet.
      if (k >= fds.size() || fds[k].fd != it->fd) {
        ++it;
        continue;
      }
      short rev = fds[k++].revents;
      if (rev == 0) {
        ++it;
        continue;
      }
      ssize_t n = ::recv(it->fd, buf.data(), buf.size(), 0);
      if (n <= 0) {
        it = drop(it);
        continue;
      }
      bool close = false;
      out.clear();
      Conn& c = *it;
      proto::DecodeError err =
          c.decoder.feed(buf.data(), static_cast<std::size_t>(n), [&](const proto::FrameView& f) {
            handle(c, f, out, &close);
            return !close;
          });
      ++c.chunks;
      if (err != proto::DecodeError::kOk) close = true;
      if (!out.empty()) {
        (void)!::send(c.fd, out.data(), out.size(), MSG_NOSIGNAL);
      }
      if (close) {
        it = drop(it);
      } else {
        ++it;
      }
    }
  }
  for (auto it = conns.begin(); it != conns.end();) it = drop(it);
}

void ScriptedPeer::handle(Conn& c, const proto::FrameView& f, std::vector<std::uint8_t>& out,
                          bool* close) {
  proto::Message msg;
  Request r;
  r.type = f.header.type;
  r.request_id = f.header.request_id;
  r.session_id = f.header.session_id;
  r.connection = c.index;
  r.chunk = c.chunks;
  proto::Encoder enc(out);
  Reply reply(enc, r);
  if (proto::decode(f, &msg) != proto::DecodeError::kOk) {
    reply.error(proto::ErrorCategory::kProtocol, "", "malformed frame");
    *close = true;
    return;
  }
  std::visit(
      [&](const auto& m) {
        using M = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<M, proto::Hello>) {
          r.client_name.assign(m.client_name);
          r.pid = m.pid;
        } else if constexpr (std::is_same_v<M, proto::Open> || std::is_same_v<M, proto::Info>) {
          r.database.assign(m.database);
          r.prefix.assign(m.prefix);
          r.flags = m.flags;
        } else if constexpr (std::is_same_v<M, proto::Execute>) {
          r.sql.assign(m.sql);
          for (proto::Value v : m.params) r.params.push_back(own(v));
        } else if constexpr (std::is_same_v<M, proto::OneShot>) {
          r.database.assign(m.database);
          r.prefix.assign(m.prefix);
          r.flags = m.flags;
          r.sql.assign(m.sql);
          for (proto::Value v : m.params) r.params.push_back(own(v));
        }
      },
      msg);
  Handler h;
  {
    std::lock_guard lock(mu_);
    requests_.push_back(r);
    h = handler_;
  }
  if (!(h && h(r, reply))) fake_daemon(c, r, reply);
  if (reply.closing()) *close = true;
}

// The rules the real daemon follows, reduced to what the client tests need. SQL keywords:
//   SELECT rows N  -> 6 columns of every type, N rows in batches of 3
//   ECHO           -> one row holding the parameters
//   FAIL           -> a constraint error (SQLSTATE 23505)
//   DIE            -> the connection closes without a reply
//   INSERT...      -> affected 1, last id 42
//   anything else  -> affected 0
void ScriptedPeer::fake_daemon(Conn& c, const Request& r, Reply& reply) {
  using proto::ErrorCategory;
  using proto::MsgType;
  auto run_sql = [&](bool in_txn_after) -> bool {  // false: the statement failed
    const std::string& sql = r.sql;
    if (sql.rfind("SELECT rows ", 0) == 0) {
      int n = std::atoi(sql.c_str() + 12);
      reply.columns({{"id", proto::ValueTag::kInt64},
                     {"name", proto::ValueTag::kText},
                     {"data", proto::ValueTag::kBlob},
                     {"score", proto::ValueTag::kDouble},
                     {"flag", proto::ValueTag::kBool},
                     {"nothing", proto::ValueTag::kNull}});
      std::vector<std::string> names;
      for (int i = 0; i < n; ++i) names.push_back("name-" + std::to_string(i));
      std::vector<std::vector<proto::Value>> rows;
      for (int i = 0; i < n; ++i) {
        rows.push_back({proto::Value::int64(i), proto::Value::text(names[i]),
                        proto::Value::blob(std::string_view("\0\x01\xff", 3)),
                        proto::Value::real(i + 0.5), proto::Value::boolean(i % 2 == 1),
                        proto::Value::null()});
      }
      reply.rows(rows, 3);
      reply.complete(-1, 0, in_txn_after);
    } else if (sql == "ECHO") {
      std::vector<proto::ColumnDesc> cols;
      std::vector<std::string> names;
      for (std::size_t i = 0; i < r.params.size(); ++i)
        names.push_back("p" + std::to_string(i + 1));
      for (const std::string& n : names) cols.push_back({n, proto::ValueTag::kNull});
      if (cols.empty()) {
        reply.complete(0, 0, in_txn_after);
        return true;
      }
      reply.columns(cols);
      std::vector<proto::Value> row;
      for (const OwnedValue& o : r.params) {
        proto::Value v;
        v.tag = o.tag;
        v.b = o.b;
        v.i = o.i;
        v.d = o.d;
        v.bytes = o.bytes;
        row.push_back(v);
      }
      reply.rows({row}, 1);
      reply.complete(-1, 0, in_txn_after);
    } else if (sql == "FAIL") {
      reply.error(ErrorCategory::kConstraint, "23505",
                  "duplicate key value violates unique constraint \"users_pkey\"");
      return false;
    } else if (sql == "DIE") {
      reply.close_after();
    } else if (sql.rfind("INSERT", 0) == 0) {
      reply.complete(1, 42, in_txn_after);
    } else {
      reply.complete(0, 0, in_txn_after);
    }
    return true;
  };

  switch (r.type) {
    case MsgType::kHello: {
      proto::HelloOk h;
      h.version = proto::kVersion1;
      h.server_version = "scripted-peer 1.0";
      h.max_frame_bytes = 1024 * 1024;
      h.server_pid = static_cast<std::uint32_t>(::getpid());
      reply.encoder().hello_ok(r.request_id, h);
      break;
    }
    case MsgType::kOpen:
      if (r.database == "missing") {
        reply.error(ErrorCategory::kNotFound, "", "no database named 'missing' is configured");
      } else {
        c.sessions[r.session_id] = {false, false, r.database, r.prefix};
        reply.ok();
      }
      break;
    case MsgType::kExecute: {
      auto it = c.sessions.find(r.session_id);
      if (it == c.sessions.end()) {
        reply.error(ErrorCategory::kNotFound, "", "no session " + std::to_string(r.session_id));
      } else if (it->second.failed) {
        reply.error(ErrorCategory::kInvalidRequest, "",
                    "the transaction failed; send rollback or close");
      } else if (run_sql(true)) {
        it->second.in_txn = true;
      } else {
        it->second.failed = true;
        it->second.in_txn = false;
      }
      break;
    }
    case MsgType::kOneShot:
      run_sql(false);
      break;
    case MsgType::kCommit: {
      auto it = c.sessions.find(r.session_id);
      if (it == c.sessions.end()) {
        reply.error(ErrorCategory::kNotFound, "", "no session");
      } else if (it->second.failed) {
        reply.error(ErrorCategory::kInvalidRequest, "", "the transaction failed");
      } else if (fail_next_commit_.exchange(false)) {
        it->second.failed = true;
        it->second.in_txn = false;
        reply.error(ErrorCategory::kConstraint, "23503",
                    "deferred foreign key constraint violated at commit");
      } else {
        it->second.in_txn = false;
        reply.ok();
      }
      break;
    }
    case MsgType::kRollback: {
      auto it = c.sessions.find(r.session_id);
      if (it == c.sessions.end()) {
        reply.error(ErrorCategory::kNotFound, "", "no session");
      } else {
        it->second.failed = false;
        it->second.in_txn = false;
        reply.ok();
      }
      break;
    }
    case MsgType::kClose:
      c.sessions.erase(r.session_id);
      reply.ok();
      break;
    case MsgType::kPing:
      reply.pong();
      break;
    case MsgType::kInfo: {
      if ((r.flags & proto::kInfoTestConnection) && r.database == "down") {
        reply.error(ErrorCategory::kConnection, "08006",
                    "could not connect to server: Connection refused");
        break;
      }
      std::string db = r.database.empty() ? "app" : r.database;
      std::string name = r.prefix.empty() ? db : r.prefix + "." + db;
      std::string uri = "sqlite:///var/lib/dbmgr/" + name + ".db";
      proto::InfoResult info;
      info.type = "sqlite";
      info.name = name;
      info.uri = uri;
      info.pk_type = "String";
      info.pk_column_type = "TEXT";
      reply.encoder().info_result(r.request_id, info);
      break;
    }
    default:
      reply.error(ErrorCategory::kProtocol, "", "unexpected request");
      reply.close_after();
      break;
  }
}

}  // namespace dbmgr::test
