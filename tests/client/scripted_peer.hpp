// A scripted stand-in for dbmgrd, for testing the CLIENT library only.
//
// ScriptedPeer listens on a Unix socket in a fresh temp folder (or serves a socketpair end
// given to serve_fd()) on one thread with poll(). It decodes every request with the real
// codec, records it (type, ids, strings, params, and which recv() chunk it arrived in, to
// check pipelining), and answers through a FakeDaemon that implements the session rules the
// real daemon follows: kOpen creates a session, kExecute answers by SQL keyword, after an
// error the session is failed until kRollback/kClose, and so on. Tests override parts with
// `on_request` (return true when handled) to script odd replies.
//
// Thread-safety: the recorded requests and the knobs are guarded by one mutex; accessors
// copy. The peer thread owns every socket.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "dbmgr/protocol/codec.hpp"

namespace dbmgr::test {

struct OwnedValue {
  proto::ValueTag tag = proto::ValueTag::kNull;
  bool b = false;
  std::int64_t i = 0;
  double d = 0;
  std::string bytes;
};

struct Request {
  proto::MsgType type = proto::MsgType::kPing;
  std::uint32_t request_id = 0;
  std::uint32_t session_id = 0;
  int connection = 0;  // index of the accepted connection (0, 1, ...)
  int chunk = 0;       // index of the recv() on that connection that completed the frame
  std::string database, prefix, sql, client_name;
  std::uint32_t flags = 0;
  std::uint32_t pid = 0;
  std::vector<OwnedValue> params;
};

// Reply writer handed to handlers: appends frames for the current request.
class Reply {
 public:
  Reply(proto::Encoder& enc, const Request& req) : enc_(enc), req_(req) {}
  void ok() { enc_.empty(proto::MsgType::kOk, req_.request_id, req_.session_id); }
  void pong() { enc_.empty(proto::MsgType::kPong, req_.request_id, 0); }
  void error(proto::ErrorCategory c, std::string_view sqlstate, std::string_view message,
             std::uint32_t request_id_override = UINT32_MAX) {
    proto::ErrorMsg m;
    m.category = c;
    m.sqlstate = sqlstate;
    m.message = message;
    enc_.error(request_id_override == UINT32_MAX ? req_.request_id : request_id_override,
               req_.session_id, m);
  }
  void complete(std::int64_t affected, std::int64_t last_id, bool in_transaction) {
    proto::Complete c;
    c.affected_rows = affected;
    c.last_insert_id = last_id;
    c.in_transaction = in_transaction;
    enc_.complete(req_.request_id, req_.session_id, c);
  }
  void columns(const std::vector<proto::ColumnDesc>& cols) {
    enc_.columns(req_.request_id, req_.session_id, cols.data(), cols.size());
  }
  // Rows of values, `per_batch` rows per kRows frame.
  void rows(const std::vector<std::vector<proto::Value>>& rows, std::size_t per_batch);
  void raw(const std::vector<std::uint8_t>& bytes) {
    enc_.out().insert(enc_.out().end(), bytes.begin(), bytes.end());
  }
  proto::Encoder& encoder() { return enc_; }
  // Close this connection after writing the replies.
  void close_after() { close_ = true; }
  bool closing() const { return close_; }

 private:
  proto::Encoder& enc_;
  const Request& req_;
  bool close_ = false;
};

class ScriptedPeer {
 public:
  // Returns true when it wrote the reply itself; false lets the FakeDaemon answer.
  using Handler = std::function<bool(const Request&, Reply&)>;

  ScriptedPeer();  // listens on <tmp>/dbmgrd.sock
  ~ScriptedPeer();
  ScriptedPeer(const ScriptedPeer&) = delete;
  ScriptedPeer& operator=(const ScriptedPeer&) = delete;

  const std::string& socket_path() const { return path_; }
  // Serves an already connected socket (a socketpair end) as an extra connection.
  void serve_fd(int fd);
  void set_handler(Handler h);

  std::vector<Request> requests() const;
  std::vector<Request> requests_of(proto::MsgType type) const;
  void clear_requests();
  int accepted() const { return accepted_.load(); }
  int open_connections() const;
  // Closes every client socket, as a daemon restart would (the listener stays).
  void drop_all_connections();
  // Waits until the peer has recorded at least n requests (or ~2 s).
  bool wait_for_requests(std::size_t n) const;

  // FakeDaemon knobs.
  void fail_next_commit() { fail_next_commit_ = true; }

 private:
  struct Conn {
    int fd = -1;
    int index = 0;
    int chunks = 0;
    proto::FrameDecoder decoder;
    // session id -> state
    struct Sess {
      bool in_txn = false;
      bool failed = false;
      std::string database, prefix;
    };
    std::map<std::uint32_t, Sess> sessions;
  };

  void loop();
  void handle(Conn& c, const proto::FrameView& f, std::vector<std::uint8_t>& out, bool* close);
  void fake_daemon(Conn& c, const Request& r, Reply& reply);
  void wake();

  std::string dir_, path_;
  int listen_fd_ = -1;
  int wake_[2] = {-1, -1};
  std::atomic<bool> stop_{false};
  std::atomic<int> accepted_{0};
  std::atomic<bool> fail_next_commit_{false};
  std::atomic<bool> drop_all_{false};

  mutable std::mutex mu_;
  std::vector<Request> requests_;  // guarded by mu_
  Handler handler_;                // guarded by mu_
  std::vector<int> adopted_;       // guarded by mu_: fds from serve_fd() not yet polled
  int open_ = 0;                   // guarded by mu_

  std::thread thread_;
};

// Copies a decoded value.
OwnedValue own(const proto::Value& v);

}  // namespace dbmgr::test
