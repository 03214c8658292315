// ClientConn: one worker process's connection to dbmgrd, and the sessions it carries.
//
// Bytes from the socket go through proto::FrameDecoder; each frame is handled here: the
// handshake, then requests routed to their Session (queued in order per session), one-shot
// requests (a Session of their own), ping, cancel, info and admin. Replies are encoded into
// out_, a buffer borrowed from the BufferPool while output is pending, and written once per
// loop turn by the Server (so many replies become one write).
//
// Backpressure: while more than kHighWater bytes wait to be written, the connection stops
// reading and row streams pause; they go on once less than kLowWater is queued.
//
// A protocol violation gets an error frame, then the connection is shut down after the
// frame is written. On EOF or a socket error every session is abandoned (rolled back).
//
// Threading: loop thread only. Ownership: the Server's client list; freed from the libuv
// close callback.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include <uv.h>

#include "buffer_pool.hpp"
#include "dbmgr/protocol/codec.hpp"
#include "ready_queue.hpp"
#include "status.hpp"

namespace dbmgr::daemon {

class ClientConn;
class Engine;
class Server;
class Session;
class ConnectionProbe;

// One socket write in flight: the bytes and the libuv request, pooled by the Server.
struct WriteReq {
  uv_write_t req;
  Buffer buf;
  std::size_t queued = 0;  // bytes of buf handed to uv_write (the tail the socket refused)
  ClientConn* conn = nullptr;
};

class ClientConn final : private Deferred {
 public:
  static constexpr std::size_t kHighWater = 1024 * 1024;
  static constexpr std::size_t kLowWater = 256 * 1024;
  // Requests queued behind their sessions at which reading stops: at least this many, and
  // at least two per allowed session (max_pending_requests()). A request waiting for a pool
  // lease counts, so a lower cap than the sessions a client may open lets waiters fill it:
  // the commit that would free the lease is then never read (10,000 AsyncSessions on one
  // socket waiting for the SQLite writer deadlocked until pool_timeout). Memory stays bounded
  // by max_client_buffered_bytes, which counts the queued requests' bytes.
  static constexpr int kMinPendingRequests = 4096;
  static constexpr std::size_t kMaxNameBytes = 64;  // of the client name in hello

  ClientConn(Server& server, std::uint64_t id);
  ~ClientConn();
  ClientConn(const ClientConn&) = delete;
  ClientConn& operator=(const ClientConn&) = delete;

  // Accepts a pending connection of `listener`; returns a libuv error code.
  // Takes an accepted socket (closed on failure); 0 or a libuv error.
  int adopt(int fd);
  // Abandons every session (rolled back) and closes the socket; freed from the close callback.
  void close(std::string_view reason);
  // close() on a later loop turn: safe from inside any callback of this client's sessions.
  void close_soon(std::string_view reason);

  proto::Encoder encoder();  // replies appended to out_; flushed this loop turn
  void send_error(std::uint32_t request_id, std::uint32_t session_id, const Status& s);
  void send_frames(Buffer&& frames);
  void send_bytes(const std::uint8_t* frames, std::size_t n);  // encoded frames, copied
  void send_info(std::uint32_t request_id, const Engine& engine);
  bool backed_up() const { return write_queue_bytes_ >= kHighWater; }
  void wait_writable(Session* s) { blocked_.push_back(s); }
  void forget(Session* s);
  void request_done(std::size_t payload_bytes);
  // Sends `why` as an error frame (request id 0) and closes once it is written: max_clients,
  // handshake_timeout, input limits.
  void refuse(Status why);
  // Stops reading, writes what is queued (the error), then closes.
  void close_after_error();
  // Primary and supplementary groups of the peer's user (for allow_gids), computed once.
  const std::vector<gid_t>& groups() const;
  int engines_made() const { return engines_made_; }
  void count_engine_made() { ++engines_made_; }
  const std::vector<Session*>& blocked() const { return blocked_; }
  void flush();  // called by the Server once per loop turn

  void add_probe(ConnectionProbe* p) { probes_.push_back(p); }
  void remove_probe(ConnectionProbe* p);

  std::uint64_t id() const { return id_; }
  pid_t pid() const { return pid_; }
  uid_t uid() const { return uid_; }
  gid_t gid() const { return gid_; }
  const std::string& name() const { return name_; }
  // "client N pid P (name)" for logs; built when asked, so an idle client keeps no copy.
  std::string tag() const;
  // "name pid N", as PostgreSQL's application_name shows the client.
  const std::string& label() const { return label_; }
  std::chrono::steady_clock::time_point connected_at() const { return connected_at_; }
  const std::unordered_map<std::uint32_t, Session*>& sessions() const { return sessions_; }
  const std::vector<Session*>& one_shots() const { return one_shots_; }
  std::size_t write_queue_bytes() const { return write_queue_bytes_; }
  bool closing() const { return closing_; }
  bool dirty_ = false;  // listed in Server::dirty_

 private:
  static void on_alloc(uv_handle_t* h, std::size_t suggested, uv_buf_t* buf);
  static void on_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf);
  static void on_write(uv_write_t* req, int status);
  static void on_shutdown(uv_shutdown_t* req, int status);
  static void on_close(uv_handle_t* h);
  void read(ssize_t n, const uv_buf_t* buf);
  void run_deferred() override;  // close_soon(), or resuming a paused decoder
  void schedule_resume();
  // Recomputes the input held for this client and enforces max_client_buffered_bytes and
  // max_buffered_bytes; false when it closed the connection for it.
  bool account_input();
  std::size_t sync_held();  // account_input() without the limits
  Status session_room() const;  // max_sessions_per_client
  int max_pending_requests() const;
  bool output_full() const { return write_queue_bytes_ + out_.size() >= kHighWater; }

  bool on_frame(const proto::FrameView& f);
  void decode_failed(proto::DecodeError err);  // a protocol error unless kOk
  void handle(const proto::FrameView& f, const proto::Message& m);
  void enqueue_to(Session* s, const proto::FrameView& f);
  void protocol_error(std::uint32_t request_id, std::string message, std::uint32_t session_id = 0);
  void on_drained();
  void update_reading();

  Server& server_;
  std::uint64_t id_;
  uv_pipe_t pipe_{};
  std::unique_ptr<uv_shutdown_t> shutdown_req_;  // only after a protocol error
  proto::FrameDecoder decoder_;
  Buffer out_;
  std::size_t write_queue_bytes_ = 0;
  int pending_requests_ = 0;
  std::unordered_map<std::uint32_t, Session*> sessions_;
  std::vector<Session*> one_shots_;        // one-shot requests in progress
  std::vector<Session*> blocked_;          // row streams paused until output drains
  std::vector<ConnectionProbe*> probes_;   // test_connection probes answering to us
  bool handshaken_ = false;
  bool reading_ = false;
  bool closing_ = false;       // uv_close called
  bool shutting_down_ = false; // a protocol error: no more reads, close after the write
  pid_t pid_ = 0;
  uid_t uid_ = 0;
  gid_t gid_ = 0;
  std::string name_;
  std::string label_;
  std::string close_reason_;  // close_soon()
  bool close_pending_ = false;
  bool resume_pending_ = false;
  std::size_t queued_bytes_ = 0;  // payloads of requests queued in sessions
  std::size_t held_bytes_ = 0;    // what this client adds to Server::buffered_bytes()
  int engines_made_ = 0;
  mutable std::vector<gid_t> groups_;
  mutable bool groups_known_ = false;
  std::chrono::steady_clock::time_point connected_at_;
};

}  // namespace dbmgr::daemon
