// The pieces a transport shares with the session core (SessionCore, declared in
// dbmgr/session.hpp): the Outbox it encodes requests into, the daemon-side session a request
// names, and the Pendings of one execute. Internal to libdbmgr (not installed).
//
// A transport (the blocking Connection, the async Multiplexer) is an Outbox: an output
// buffer, its encoder, the reply router and the scratch vector for parameters. The session
// core writes whole frames into it and registers their Pendings; the transport sends the
// bytes and feeds the replies to the router.
//
// Thread-safety: none here; the Connection is used by one thread at a time, the
// Multiplexer guards its Outbox with its mutex.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "dbmgr/protocol/codec.hpp"
#include "dbmgr/session.hpp"
#include "reply_router.hpp"

namespace dbmgr::detail {

// The daemon-side session a socket keeps open for a Session (0: none). A blocking
// Connection keeps one across the Sessions that borrow it; an AsyncSession has its own.
struct DaemonSession {
  std::uint32_t id = 0;
  std::string database;
  std::string prefix;
  std::uint32_t flags = 0;
  // The daemon answered killed/not_found for it: it must be closed and a new one opened.
  bool dead = false;
  bool matches(std::string_view db, std::string_view pfx, std::uint32_t f) const {
    return id != 0 && !dead && database == db && prefix == pfx && flags == f;
  }
};

// The replies one execute waits for: kClose of a dead or other session, kOpen, kExecute.
struct ExecuteRequests {
  Pending close;
  Pending open;
  Pending exec;
  bool closing = false;  // a kClose was sent
  bool opening = false;  // a kOpen was sent
  std::uint32_t close_rid = 0, open_rid = 0;  // encoded, registered once all is encoded
  std::uint32_t session_id = 0;  // the daemon session the requests name
};

// The replies a pipelined transaction (dbmgr::Pipeline) waits for: [kClose] [kOpen], one
// kExecute per statement, [kCommit].
struct PipelineRequests {
  ExecuteRequests head;         // head.exec is unused
  std::vector<Pending> execs;   // sized before anything is registered (stable addresses)
  Pending commit;
  bool committing = false;
  std::size_t failed = 0;       // on_pipeline_replies(): which statement failed (size(): the commit)
};

class Outbox {
 public:
  explicit Outbox(std::string label) : router_(std::move(label)) {}
  Outbox(const Outbox&) = delete;
  Outbox& operator=(const Outbox&) = delete;

  proto::Encoder& encoder() { return encoder_; }
  ReplyRouter& router() { return router_; }
  std::size_t output_size() const { return out_.size(); }
  std::uint32_t max_frame_bytes() const { return max_frame_bytes_; }
  std::uint32_t new_session_id() {
    return ++last_session_id_ == 0 ? ++last_session_id_ : last_session_id_;
  }
  // Converts params into proto values (views into them) in a reused vector; throws
  // dbmgr::Error (data) on text that is not UTF-8, invalid_request on too many parameters.
  const std::vector<proto::Value>& values(const Param* params, std::size_t count) {
    to_values(params, count, values_);
    return values_;
  }
  // The same conversion into `out` (a Pipeline encodes its statements before it has a
  // transport).
  static void to_values(const Param* params, std::size_t count, std::vector<proto::Value>& out);
  // Throws dbmgr::Error (invalid_request) and drops the output from `mark` on if the frame
  // encoded since `frame_start` is larger than the daemon accepts.
  void check_frame_size(std::size_t mark, std::size_t frame_start);

 protected:
  std::vector<std::uint8_t> out_;
  proto::Encoder encoder_{out_};
  ReplyRouter router_;
  std::vector<proto::Value> values_;
  std::uint32_t max_frame_bytes_ = proto::kDefaultMaxFrameBytes;
  std::uint32_t last_session_id_ = 0;
};

}  // namespace dbmgr::detail
