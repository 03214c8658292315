// ClientConn: framing, handshake, request routing and batched, backpressured replies.
#include "client_conn.hpp"

#include <grp.h>
#include <pwd.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "engine.hpp"
#include "server.hpp"
#include "session.hpp"

namespace dbmgr::daemon {
namespace {


constexpr std::string_view kServerVersion = "dbmgrd 0.1.0";

}  // namespace

ClientConn::ClientConn(Server& server, std::uint64_t id)
    : server_(server),
      id_(id),
      decoder_(server.settings().max_frame_bytes),
      connected_at_(server.clock().now()) {
  pipe_.data = this;
}

std::string ClientConn::tag() const {
  if (!handshaken_) return fmt::format("client {} pid {}", id_, pid_);
  return fmt::format("client {} pid {} ({})", id_, pid_, name_);
}

ClientConn::~ClientConn() = default;

int ClientConn::adopt(int fd) {
  int rc = uv_pipe_init(server_.loop(), &pipe_, 0);
  if (rc != 0) {
    ::close(fd);
    return rc;
  }
  rc = uv_pipe_open(&pipe_, fd);
  if (rc != 0) {
    ::close(fd);
    return rc;
  }
  {
    ucred cred{};
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
      pid_ = cred.pid;
      uid_ = cred.uid;
      gid_ = cred.gid;
    }
  }
  spdlog::debug("{}: connected (uid {}, gid {})", tag(), uid_, gid_);
  update_reading();
  return 0;
}

void ClientConn::on_alloc(uv_handle_t* h, std::size_t /*suggested*/, uv_buf_t* buf) {
  auto* self = static_cast<ClientConn*>(h->data);
  // One read buffer for the whole loop: its bytes are consumed before the next read.
  buf->base = self->server_.read_buffer();
  buf->len = self->server_.read_buffer_size();
}

void ClientConn::on_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
  auto* self = static_cast<ClientConn*>(s->data);
  self->server_.guarded("reading a request", self, [&] { self->read(n, buf); });
}

void ClientConn::read(ssize_t n, const uv_buf_t* buf) {
  ClientConn* self = this;
  if (n == 0) return;
  if (n < 0) {
    self->close(n == UV_EOF ? "client closed the connection" : uv_strerror(static_cast<int>(n)));
    return;
  }
  auto err = self->decoder_.feed(reinterpret_cast<const std::uint8_t*>(buf->base),
                                 static_cast<std::size_t>(n),
                                 [self](const proto::FrameView& f) { return self->on_frame(f); });
  self->decode_failed(err);
  if (!self->closing_) {
    if (self->decoder_.idle()) self->decoder_.release();
    if (!self->account_input()) return;
    self->update_reading();
  }
}

void ClientConn::decode_failed(proto::DecodeError err) {
  if (err == proto::DecodeError::kOk || shutting_down_ || closing_) return;
  if (err == proto::DecodeError::kOversizedFrame) {  // docs/protocol.md section 12
    protocol_error(0, fmt::format("frame of {} bytes exceeds max_frame_bytes {}",
                                  decoder_.failed_length(), server_.settings().max_frame_bytes));
  } else {
    protocol_error(0, "malformed frame: " + std::string(proto::to_string(err)));
  }
}

std::size_t ClientConn::sync_held() {
  const std::size_t held =
      decoder_.buffer_capacity() + decoder_.pending_bytes() + queued_bytes_;
  server_.add_buffered(static_cast<std::int64_t>(held) - static_cast<std::int64_t>(held_bytes_));
  held_bytes_ = held;
  return held;
}

bool ClientConn::account_input() {
  const std::size_t held = sync_held();
  if (closing_ || shutting_down_) return !closing_;
  const auto& st = server_.settings();
  const char* which = nullptr;
  std::uint64_t limit = 0;
  if (held > st.max_client_buffered_bytes) {
    which = "max_client_buffered_bytes";
    limit = st.max_client_buffered_bytes;
  } else if (server_.buffered_bytes() > st.max_buffered_bytes) {
    which = "max_buffered_bytes";
    limit = st.max_buffered_bytes;
  }
  if (which == nullptr) return true;
  server_.count_input_limit_close();
  protocol_error(0, fmt::format("input limit: {} bytes held for this connection ({} is {})", held,
                                which, limit));
  return !closing_;
}

void ClientConn::schedule_resume() {
  if (closing_ || resume_pending_) return;
  resume_pending_ = true;
  server_.ready().post(this);
}

void ClientConn::update_reading() {
  if (closing_ || shutting_down_) return;
  bool want = write_queue_bytes_ < kHighWater && pending_requests_ < max_pending_requests();
  if (want) {
    // Frames kept by an earlier stop go first; with a resume queued (an admin document's
    // turn is over) they wait for it.
    if (decoder_.paused() && !output_full() && !resume_pending_) {
      // Bytes kept by the stop may hold a malformed frame: the same error as when read.
      decode_failed(decoder_.resume([this](const proto::FrameView& f) { return on_frame(f); }));
      if (closing_ || shutting_down_) return;
      if (!account_input()) return;
    }
    if (!reading_ &&
        uv_read_start(reinterpret_cast<uv_stream_t*>(&pipe_), &on_alloc, &on_read) == 0) {
      reading_ = true;
    }
  } else if (reading_) {
    uv_read_stop(reinterpret_cast<uv_stream_t*>(&pipe_));
    reading_ = false;
  }
}

bool ClientConn::on_frame(const proto::FrameView& f) {
  if (closing_ || shutting_down_) return false;
  proto::Message msg;
  auto err = proto::decode(f, &msg);
  if (err != proto::DecodeError::kOk) {
    protocol_error(f.header.request_id,  // the header was sound: its ids are the frame's
                   fmt::format("malformed {} frame: {}", proto::to_string(f.header.type),
                               proto::to_string(err)),
                   f.header.session_id);
    return false;
  }
  if (!handshaken_) {
    auto* hello = std::get_if<proto::Hello>(&msg);
    if (hello == nullptr) {
      protocol_error(f.header.request_id, "the first frame must be hello");
      return false;
    }
    auto version = proto::negotiate_version(hello->min_version, hello->max_version);
    if (!version) {
      protocol_error(f.header.request_id,
                     fmt::format("unsupported protocol version {}..{}; this dbmgrd speaks {}..{}",
                                 hello->min_version, hello->max_version, proto::kMinVersion,
                                 proto::kMaxVersion));
      return false;
    }
    // The name reaches logs and dbmgrctl: at most kMaxNameBytes, control characters (a
    // newline that would forge a log line, terminal escapes) written as \xNN.
    name_.clear();
    for (unsigned char ch : hello->client_name.substr(0, kMaxNameBytes)) {
      if (ch < 0x20 || ch == 0x7f) {
        name_ += fmt::format("\\x{:02X}", ch);
      } else {
        name_ += static_cast<char>(ch);
      }
    }
    if (pid_ == 0) pid_ = static_cast<pid_t>(hello->pid);
    label_ = fmt::format("{} pid {}", name_.empty() ? "dbmgr" : name_.substr(0, 40), pid_);
    handshaken_ = true;
    server_.on_handshake(this);
    proto::HelloOk ok;
    ok.version = *version;
    ok.server_version = kServerVersion;
    ok.max_frame_bytes = server_.settings().max_frame_bytes;
    ok.server_pid = static_cast<std::uint32_t>(getpid());
    encoder().hello_ok(f.header.request_id, ok);
    spdlog::info("{}: hello, protocol v{}, uid {}", tag(), *version, uid_);
    return true;
  }
  handle(f, msg);
  if (f.header.type == proto::MsgType::kAdmin && !closing_ && !shutting_down_) {
    // An admin document is rendered on the loop (a `sessions` list of thousands of sessions
    // takes a millisecond or more): one per connection per loop turn, so that a client
    // pipelining hundreds of them takes turns with everyone else instead of holding the loop.
    server_.ready().cancel(this);  // a resume already queued for this turn waits too
    resume_pending_ = true;
    server_.ready().post_next_turn(this);
    return false;
  }
  // Stop taking requests while a megabyte of replies waits (admin documents, results): the
  // rest stay in the decoder until the output drains (schedule_resume()).
  return !closing_ && !shutting_down_ && pending_requests_ < max_pending_requests() &&
         !output_full();
}

void ClientConn::handle(const proto::FrameView& f, const proto::Message& m) {
  const std::uint32_t rid = f.header.request_id;
  const std::uint32_t sid = f.header.session_id;
  auto find = [&]() -> Session* {
    auto it = sessions_.find(sid);
    if (it == sessions_.end()) {
      send_error(rid, sid,
                 Status::not_found(fmt::format("no session {} on this connection", sid)));
      return nullptr;
    }
    return it->second;
  };

  switch (f.header.type) {
    case proto::MsgType::kPing:
      encoder().empty(proto::MsgType::kPong, rid, 0);
      return;
    case proto::MsgType::kOpen: {
      const auto& o = std::get<proto::Open>(m);
      if (sessions_.count(sid) != 0) {
        send_error(rid, sid, Status::invalid(fmt::format("session {} is already open", sid)));
        return;
      }
      if (server_.draining()) {
        send_error(rid, sid, Status(proto::ErrorCategory::kShuttingDown,
                                    "dbmgrd is shutting down and opens no new sessions"));
        return;
      }
      if (Status s = session_room(); !s.is_ok()) {
        send_error(rid, sid, s);
        return;
      }
      auto engine = server_.engine_for(o.database, o.prefix, this);
      if (!engine.is_ok()) {
        send_error(rid, sid, engine.status());
        return;
      }
      auto* s = new Session(server_, this, sid, engine.value(),
                            (o.flags & proto::kOpenReadOnly) != 0, false);
      sessions_.emplace(sid, s);
      server_.count_session();
      if (spdlog::should_log(spdlog::level::debug)) {  // tag() formats: only when logged
        spdlog::debug("{} session {} {}: opened{}", tag(), sid, engine.value()->name(),
                      s->read_only() ? " read-only" : "");
      }
      encoder().empty(proto::MsgType::kOk, rid, sid);
      return;
    }
    case proto::MsgType::kExecute:
    case proto::MsgType::kCommit:
    case proto::MsgType::kRollback:
    case proto::MsgType::kClose:
      if (Session* s = find()) enqueue_to(s, f);
      return;
    case proto::MsgType::kOneShot: {
      const auto& o = std::get<proto::OneShot>(m);
      if (server_.draining()) {
        send_error(rid, 0, Status(proto::ErrorCategory::kShuttingDown,
                                  "dbmgrd is shutting down and starts no new transactions"));
        return;
      }
      if (Status st = session_room(); !st.is_ok()) {
        send_error(rid, 0, st);
        return;
      }
      auto engine = server_.engine_for(o.database, o.prefix, this);
      if (!engine.is_ok()) {
        send_error(rid, 0, engine.status());
        return;
      }
      // A SQLite one-shot that only reads runs on a reader connection, never holding the
      // writer (whose lock a client that stops reading rows would keep).
      bool read_only = (o.flags & proto::kOpenReadOnly) != 0 ||
                       engine.value()->driver().one_shot_only_reads(o.sql);
      auto* s = new Session(server_, this, 0, engine.value(), read_only, true);
      one_shots_.push_back(s);
      enqueue_to(s, f);
      return;
    }
    case proto::MsgType::kCancel:
      if (Session* s = find()) {
        s->cancel();
        encoder().empty(proto::MsgType::kOk, rid, sid);
      }
      return;
    case proto::MsgType::kInfo: {
      const auto& i = std::get<proto::Info>(m);
      auto engine = server_.engine_for(i.database, i.prefix, this);
      if (!engine.is_ok()) {
        send_error(rid, 0, engine.status());
        return;
      }
      // A probe connection answers test_connection, and tells the server's version where the
      // info depends on it (the PK column type of MariaDB).
      if ((i.flags & proto::kInfoTestConnection) != 0 || engine.value()->info_pending()) {
        auto* probe = new ConnectionProbe(this, rid, engine.value());
        add_probe(probe);
        probe->start();
        return;
      }
      send_info(rid, *engine.value());
      return;
    }
    case proto::MsgType::kAdmin: {
      const auto& a = std::get<proto::Admin>(m);
      auto result = server_.admin(*this, a.command, a.argument);
      if (!result.is_ok()) {
        send_error(rid, 0, result.status());
      } else {
        encoder().admin_result(rid, result.value());
      }
      return;
    }
    case proto::MsgType::kHello:
      protocol_error(rid, "a second hello: the handshake is done", sid);
      return;
    default:
      protocol_error(rid, fmt::format("{} is a reply; a client may not send it",
                                      proto::to_string(f.header.type)),
                     sid);
      return;
  }
}

void ClientConn::enqueue_to(Session* s, const proto::FrameView& f) {
  PendingRequest* r = server_.take_request();
  r->header = f.header;
  auto& bytes = r->payload.bytes();
  bytes.assign(f.payload, f.payload + f.header.length);
  ++pending_requests_;
  queued_bytes_ += bytes.size();
  s->enqueue(r);
}

void ClientConn::request_done(std::size_t payload_bytes) {
  --pending_requests_;
  queued_bytes_ -= std::min(queued_bytes_, payload_bytes);
  if (!closing_) sync_held();
  // Called from inside sessions' callbacks: reading resumes on a later loop turn.
  if (!reading_ || decoder_.paused()) schedule_resume();
}

int ClientConn::max_pending_requests() const {
  const int per_sessions = server_.settings().max_sessions_per_client;
  return per_sessions > kMinPendingRequests / 2 ? 2 * per_sessions : kMinPendingRequests;
}

Status ClientConn::session_room() const {
  const int limit = server_.settings().max_sessions_per_client;
  if (static_cast<int>(sessions_.size() + one_shots_.size()) < limit) return Status::ok();
  return Status(proto::ErrorCategory::kResources,
                fmt::format("this connection has {} sessions and one-shots open "
                            "(max_sessions_per_client {})",
                            sessions_.size() + one_shots_.size(), limit),
                "53000");
}

const std::vector<gid_t>& ClientConn::groups() const {
  if (groups_known_) return groups_;
  groups_known_ = true;
  groups_.push_back(gid_);
  if (passwd* pw = ::getpwuid(uid_)) {
    int n = 64;
    std::vector<gid_t> gs(static_cast<std::size_t>(n));
    if (::getgrouplist(pw->pw_name, pw->pw_gid, gs.data(), &n) < 0) {
      gs.resize(static_cast<std::size_t>(n));
      ::getgrouplist(pw->pw_name, pw->pw_gid, gs.data(), &n);
    }
    gs.resize(static_cast<std::size_t>(std::max(n, 0)));
    groups_.insert(groups_.end(), gs.begin(), gs.end());
  }
  return groups_;
}

void ClientConn::refuse(Status why) {
  if (closing_ || shutting_down_) return;
  spdlog::warn("{}: refused: {}", tag(), why.message());
  send_error(0, 0, why);
  close_after_error();
}

proto::Encoder ClientConn::encoder() {
  server_.mark_dirty(this);
  return proto::Encoder(out_.bytes());
}

void ClientConn::send_error(std::uint32_t request_id, std::uint32_t session_id, const Status& s) {
  proto::ErrorMsg e;
  e.category = s.category();
  e.sqlstate = s.sqlstate();
  e.message = s.message();
  encoder().error(request_id, session_id, e);
}

void ClientConn::send_info(std::uint32_t request_id, const Engine& engine) {
  const config::DatabaseInfo& info = engine.info();
  proto::InfoResult r;
  r.type = config::to_string(info.type);
  r.name = info.name;
  r.uri = info.uri;
  r.pk_type = info.pk.name;
  r.pk_column_type = info.pk.column_type;
  encoder().info_result(request_id, r);
}

void ClientConn::send_frames(Buffer&& frames) {
  if (closing_) return;
  if (out_.empty()) {
    out_ = std::move(frames);
  } else if (frames.size() < 16 * 1024) {
    auto& o = out_.bytes();
    o.insert(o.end(), frames.data(), frames.data() + frames.size());
  } else {
    flush();
    if (closing_) return;
    out_ = std::move(frames);
  }
  server_.mark_dirty(this);
}

void ClientConn::send_bytes(const std::uint8_t* frames, std::size_t n) {
  if (closing_ || n == 0) return;
  auto& o = out_.bytes();
  o.insert(o.end(), frames, frames + n);
  server_.mark_dirty(this);
}

void ClientConn::flush() {
  if (closing_ || out_.empty()) {
    out_.release();
    return;
  }
  auto* stream = reinterpret_cast<uv_stream_t*>(&pipe_);
  std::size_t written = 0;
  if (write_queue_bytes_ == 0) {
    // Nothing queued: write now. A reply that fits the socket buffer (nearly all of them)
    // needs no write request, no completion callback and no change of the socket's epoll
    // interest, which uv_write's completion costs (an epoll_ctl and an extra loop turn).
    uv_buf_t b = uv_buf_init(reinterpret_cast<char*>(out_.bytes().data()),
                             static_cast<unsigned>(out_.size()));
    int n = uv_try_write(stream, &b, 1);
    if (n == static_cast<int>(out_.size())) {
      out_.release();
      if (decoder_.paused()) schedule_resume();  // requests held back for the output
      return;
    }
    // A partial write queues the rest. An error (EPIPE: the client is gone) is not acted on
    // here: flush() runs inside send_frames() and result callbacks, which must not see the
    // connection close under them, so uv_write below reports it through on_write.
    if (n > 0) written = static_cast<std::size_t>(n);
  }
  WriteReq* w = server_.take_write_req();
  w->req.data = w;
  w->conn = this;
  w->buf = std::move(out_);
  w->queued = w->buf.size() - written;
  uv_buf_t b = uv_buf_init(reinterpret_cast<char*>(w->buf.bytes().data() + written),
                           static_cast<unsigned>(w->queued));
  write_queue_bytes_ += w->queued;
  int rc = uv_write(&w->req, stream, &b, 1, &on_write);
  if (rc != 0) {
    write_queue_bytes_ -= w->queued;
    server_.give_write_req(w);
    // flush() runs inside send_frames(), from a session's result callback: close on a later
    // loop turn, never under the caller's feet.
    close_soon(fmt::format("write failed: {}", uv_strerror(rc)));
    return;
  }
  if (backed_up()) {
    update_reading();
  } else if (decoder_.paused()) {
    schedule_resume();
  }
}

void ClientConn::on_write(uv_write_t* req, int status) {
  auto* w = static_cast<WriteReq*>(req->data);
  ClientConn* self = w->conn;
  self->write_queue_bytes_ -= w->queued;
  self->server_.give_write_req(w);
  self->server_.guarded("writing a reply", self, [&] {
    if (status != 0) {
      if (status != UV_ECANCELED) self->close(fmt::format("write failed: {}", uv_strerror(status)));
      return;
    }
    self->on_drained();
  });
}

void ClientConn::on_drained() {
  if (closing_ || write_queue_bytes_ >= kLowWater) return;
  if (!blocked_.empty()) {
    std::vector<Session*> resume;
    resume.swap(blocked_);
    for (Session* s : resume) s->resume_stream();
  }
  update_reading();
}

void ClientConn::protocol_error(std::uint32_t request_id, std::string message,
                                std::uint32_t session_id) {
  server_.count_protocol_error();
  spdlog::warn("{}: protocol error: {}", tag(), message);
  send_error(request_id, session_id, Status::protocol(std::move(message)));
  close_after_error();
}

void ClientConn::close_after_error() {
  shutting_down_ = true;
  if (reading_) {
    uv_read_stop(reinterpret_cast<uv_stream_t*>(&pipe_));
    reading_ = false;
  }
  flush();
  if (closing_) return;
  // Closes once the error frame has been written.
  shutdown_req_ = std::make_unique<uv_shutdown_t>();
  shutdown_req_->data = this;
  if (uv_shutdown(shutdown_req_.get(), reinterpret_cast<uv_stream_t*>(&pipe_), &on_shutdown) !=
      0) {
    close("error sent");
  }
}

void ClientConn::on_shutdown(uv_shutdown_t* req, int /*status*/) {
  auto* self = static_cast<ClientConn*>(req->data);
  self->server_.guarded("closing", self, [self] { self->close("error sent"); });
}

void ClientConn::forget(Session* s) {
  auto it = sessions_.find(s->id());
  if (it != sessions_.end() && it->second == s) sessions_.erase(it);
  one_shots_.erase(std::remove(one_shots_.begin(), one_shots_.end(), s), one_shots_.end());
  blocked_.erase(std::remove(blocked_.begin(), blocked_.end(), s), blocked_.end());
}

void ClientConn::remove_probe(ConnectionProbe* p) {
  probes_.erase(std::remove(probes_.begin(), probes_.end(), p), probes_.end());
}

void ClientConn::close(std::string_view reason) {
  if (closing_) return;
  closing_ = true;
  reading_ = false;
  std::size_t open_tx = 0;
  for (auto& [sid, s] : sessions_) {
    if (s->holds_connection()) ++open_tx;
  }
  open_tx += one_shots_.size();
  spdlog::info("{}: disconnected ({}); {} session(s), {} with a transaction to roll back", tag(),
               reason, sessions_.size(), open_tx);
  for (ConnectionProbe* p : probes_) p->detach();
  probes_.clear();
  blocked_.clear();
  auto sessions = std::move(sessions_);
  sessions_.clear();
  auto one_shots = std::move(one_shots_);
  one_shots_.clear();
  for (auto& [sid, s] : sessions) s->abandon();
  for (Session* s : one_shots) s->abandon();
  out_.release();
  server_.ready().cancel(this);
  server_.add_buffered(-static_cast<std::int64_t>(held_bytes_));
  held_bytes_ = 0;
  server_.on_client_closed(this);
  uv_close(reinterpret_cast<uv_handle_t*>(&pipe_), &on_close);
}

void ClientConn::close_soon(std::string_view reason) {
  if (closing_) return;
  close_reason_.assign(reason);
  close_pending_ = true;
  server_.ready().post(this);
}

void ClientConn::run_deferred() {
  if (close_pending_) return close(close_reason_);
  resume_pending_ = false;
  update_reading();
}

void ClientConn::on_close(uv_handle_t* h) { delete static_cast<ClientConn*>(h->data); }

}  // namespace dbmgr::daemon
