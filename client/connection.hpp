// detail::Connection: one blocking Unix-socket connection to dbmgrd, handshaken, with its
// pipelined request/reply bookkeeping. Internal to libdbmgr (not installed).
//
// A request batch is built in three steps: begin_batch(), then per request encode it with
// encoder() and register what it expects back with expect(), then round_trip(), which
// writes the whole batch with one send() and reads until every expected reply arrived,
// matching each reply frame to its request by request id (replies of different sessions may
// interleave, docs/protocol.md section 4; the frames of one reply arrive in order). Errors the
// daemon reports are stored per request (pending(i).error) so the caller can tell, say, a failed
// kOpen from a failed kExecute; round_trip() itself throws only when the connection is
// unusable (socket error, EOF, malformed or unexpected frame), after marking it broken.
//
// Buffers (the output vector, the read buffer, the decoder's assembly buffer and the
// parameter scratch vector) live as long as the connection and are reused, so a steady
// stream of requests allocates nothing but the Results' own storage.
//
// The connection also remembers the daemon-side session it keeps open (session_*), so the
// next Session borrowing it with the same database/prefix/flags skips kOpen.
//
// Thread-safety: none; a Connection is used by one Session (or one one-shot call) at a
// time, which the manager's free list guarantees. pid() is the process that opened it;
// no other process may write to it (abandon() just closes the fd).
#pragma once

#include <sys/types.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dbmgr/error.hpp"
#include "dbmgr/manager.hpp"
#include "dbmgr/protocol/codec.hpp"
#include "dbmgr/result.hpp"

namespace dbmgr::detail {

// Copies decoded result frames into a Result (a friend of Result).
class ResultBuilder {
 public:
  static void begin(Result& r);
  // false: malformed (a second kColumns, or too many columns).
  static bool columns(Result& r, const proto::ColumnList& cols);
  // false: rows before kColumns, or a column count different from kColumns'.
  static bool rows(Result& r, const proto::Rows& rows);
  static void complete(Result& r, const proto::Complete& c);
  // For tests: appends one cell to a Result being built by hand.
  static void add_cell(Result& r, const proto::Value& v);
  static void set_columns(Result& r, std::vector<std::string> names);
  static void finish_rows(Result& r, std::size_t row_count) { r.row_count_ = row_count; }
};

// What a request expects back.
enum class Expect : std::uint8_t {
  kHelloOk,  // kHelloOk
  kOk,       // kOk
  kResult,   // [kColumns] kRows* kComplete
  kInfo,     // kInfoResult
  kPong,     // kPong
  kAdmin,    // kAdminResult (its JSON text goes to Pending::text)
};

struct Pending {
  std::uint32_t request_id = 0;
  Expect expect = Expect::kOk;
  Result* result = nullptr;      // kResult: filled as frames arrive
  DatabaseInfo* info = nullptr;  // kInfo
  std::string* text = nullptr;   // kAdmin: the JSON document
  std::optional<Error> error;    // the daemon's kError for this request
  bool in_transaction = false;   // kResult: from kComplete
  bool done = false;
  bool saw_columns = false;
};

class Connection {
 public:
  static constexpr std::size_t kMaxPending = 4;
  static constexpr std::size_t kReadChunk = 64 * 1024;

  // Connects to `socket_path` and completes the handshake; throws dbmgr::Error.
  static std::unique_ptr<Connection> open(const std::string& socket_path,
                                          std::string_view client_name);
  // Takes over a connected stream socket (tests use a socketpair) and handshakes on it.
  // `label` names the peer in error messages. Closes fd and throws on failure.
  static std::unique_ptr<Connection> adopt(int fd, std::string label, std::string_view client_name);

  ~Connection();  // closes the fd; the daemon rolls back whatever this socket had open
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  pid_t pid() const { return pid_; }
  bool owned_by_this_process() const;
  bool broken() const { return fd_ < 0 || broken_; }
  // True when the last failure happened while sending, so the daemon received nothing of
  // the batch and resending it on another connection is safe.
  bool failed_before_sending() const { return send_failed_; }
  // Non-blocking look at the socket of an idle connection: false when the daemon closed it
  // (EOF, error) or sent something nobody asked for (an error frame before closing). Only
  // looks (one syscall) when the connection has been unused for a second or more; a
  // connection used a moment ago is taken as alive, and if the daemon closed it since, the
  // send fails and the request is resent on a new connection (failed_before_sending()).
  // `always_peek` looks regardless (after a send found one pooled connection dead). The
  // peek also compares getpid(): a child made without fork() (raw clone, vfork, _Fork)
  // runs no atfork handler, so only this catches its inherited connections.
  bool idle_and_alive(bool always_peek = false) const;
  // Closes the fd without writing anything (the connection belongs to another process).
  void abandon() noexcept;

  const std::string& label() const { return label_; }
  std::uint32_t max_frame_bytes() const { return max_frame_bytes_; }
  const std::string& server_version() const { return server_version_; }

  // ---- building and running a batch ----
  void begin_batch();
  std::uint32_t next_request_id() {
    return ++last_request_id_ == 0 ? ++last_request_id_ : last_request_id_;
  }
  std::uint32_t new_session_id() {
    return ++last_session_id_ == 0 ? ++last_session_id_ : last_session_id_;
  }
  proto::Encoder& encoder() { return encoder_; }
  // Converts params into proto values (views into them) in a reused vector; throws
  // dbmgr::Error (data) on text that is not UTF-8 or too many parameters.
  const std::vector<proto::Value>& values(const Param* params, std::size_t count);
  // Registers the reply the request just encoded expects; returns its index for pending().
  std::size_t expect(std::uint32_t request_id, Expect what, Result* result = nullptr,
                     DatabaseInfo* info = nullptr, std::string* text = nullptr);
  // Throws dbmgr::Error (invalid_request) and drops the batch if the frame encoded since
  // `frame_start` (an offset in the output) is larger than the daemon accepts.
  void check_frame_size(std::size_t frame_start);
  std::size_t output_size() const { return out_.size(); }
  // Sends the batch and reads every expected reply (see the top of this file).
  void round_trip();
  const Pending& pending(std::size_t i) const { return pending_[i]; }
  std::size_t pending_count() const { return pending_count_; }
  // Throws the first daemon error of the batch, if any.
  void throw_first_error() const;

  // ---- the daemon-side session this socket keeps open (0: none) ----
  std::uint32_t session_id_ = 0;
  std::string session_database_;
  std::string session_prefix_;
  std::uint32_t session_flags_ = 0;
  // The daemon answered killed/not_found for it: it must be closed and a new one opened.
  bool session_dead_ = false;
  bool session_matches(std::string_view database, std::string_view prefix,
                       std::uint32_t flags) const {
    return session_id_ != 0 && !session_dead_ && session_database_ == database &&
           session_prefix_ == prefix && session_flags_ == flags;
  }

 private:
  Connection(int fd, std::string label);
  void handshake(std::string_view client_name);
  void send_all();
  bool on_frame(const proto::FrameView& frame);
  [[noreturn]] void fail(ErrorCategory category, std::string message);
  [[noreturn]] void fail_io(const char* what, int err);

  int fd_;
  pid_t pid_;
  unsigned fork_generation_;  // the process's fork count when this connection was made
  std::chrono::steady_clock::time_point last_io_;  // end of the last round trip
  std::string label_;
  bool broken_ = false;
  bool send_failed_ = false;
  std::uint32_t max_frame_bytes_ = proto::kDefaultMaxFrameBytes;
  std::string server_version_;
  std::uint32_t last_request_id_ = 0;
  std::uint32_t last_session_id_ = 0;

  std::vector<std::uint8_t> out_;
  proto::Encoder encoder_{out_};
  std::vector<std::uint8_t> in_;
  proto::FrameDecoder decoder_;
  std::vector<proto::Value> values_;

  std::array<Pending, kMaxPending> pending_;
  std::size_t pending_count_ = 0;
  std::size_t pending_done_ = 0;         // requests whose reply has fully arrived
  std::optional<Error> stream_error_;    // set by on_frame when the stream is unusable
};

}  // namespace dbmgr::detail
