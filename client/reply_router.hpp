// detail::ReplyRouter: matches reply frames to the requests in flight on one daemon socket
// (request id -> Pending) and runs each reply's state machine. No I/O. Internal to libdbmgr.
//
// The caller owns every Pending (on its stack for a blocking round trip, inside an
// AsyncOp for the multiplexed transport) and registers it with expect() after encoding its
// request; the router keeps only a pointer, in an open-addressing table that grows as
// needed, so there is no fixed limit on requests in flight and registering one allocates
// nothing once the table has grown to the peak. When a reply is complete (its kComplete,
// kOk, ... or a kError) the router marks the Pending done, forgets it and tells its sink,
// if it has one. fail_all() ends every registered request with one error (the socket broke).
//
// Replies of different sessions may interleave (docs/protocol.md section 4); the frames of
// one reply arrive in order, and a Pending only ever sees frames carrying its request id.
// A frame for no registered request is a protocol error for the whole stream, except a
// kError with request id 0, which is the daemon's last word before it closes.
//
// Thread-safety: none; the transport serializes calls (the blocking Connection is used by one
// thread at a time, the Multiplexer holds its mutex).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
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
  kHelloOk,  // kHelloOk (server version to Pending::text, its limit to Pending::max_frame_bytes)
  kOk,       // kOk
  kResult,   // [kColumns] kRows* kComplete
  kInfo,     // kInfoResult
  kPong,     // kPong
  kAdmin,    // kAdminResult (its JSON text goes to Pending::text)
};

struct Pending;

// Told when a Pending's reply is complete (or failed with the stream). Runs inside the
// router's call (under the transport's lock): record, do not block or resume anything.
class ReplySink {
 public:
  virtual void on_reply(Pending& p) = 0;

 protected:
  ~ReplySink() = default;
};

// One request in flight and what its reply filled in.
struct Pending {
  std::uint32_t request_id = 0;
  Expect expect = Expect::kOk;
  Result* result = nullptr;      // kResult: filled as frames arrive
  DatabaseInfo* info = nullptr;  // kInfo
  std::string* text = nullptr;   // kAdmin: the JSON document; kHelloOk: the server version
  ReplySink* sink = nullptr;     // told when done (may be null)
  std::optional<Error> error;    // the daemon's kError for this request, or the stream's
  std::uint32_t max_frame_bytes = 0;  // kHelloOk
  bool in_transaction = false;   // kResult: from kComplete
  bool done = false;
  bool saw_columns = false;
};

// request id -> Pending*, open addressing with linear probing and backward-shift deletion.
// Key 0 marks an empty slot (request id 0 is never used, docs/protocol.md section 2).
class PendingTable {
 public:
  // False when the key is already present (nothing changes then).
  bool insert(std::uint32_t key, Pending* value);
  Pending* find(std::uint32_t key) const;
  void erase(std::uint32_t key);
  std::size_t size() const { return size_; }
  std::size_t capacity() const { return slots_.size(); }
  // Calls f(Pending*) for each entry, then empties the table (keeps its memory).
  template <typename F>
  void drain(F&& f) {
    for (Slot& s : slots_) {
      if (s.key != 0) {
        Pending* p = s.value;
        s = Slot();
        f(p);
      }
    }
    size_ = 0;
  }

 private:
  struct Slot {
    std::uint32_t key = 0;
    Pending* value = nullptr;
  };
  std::size_t home(std::uint32_t key) const {
    return (key * 0x9E3779B1u) & (slots_.size() - 1);
  }
  void grow();

  std::vector<Slot> slots_;  // size 0 or a power of two
  std::size_t size_ = 0;
};

class ReplyRouter {
 public:
  explicit ReplyRouter(std::string label) : label_(std::move(label)) {}

  std::uint32_t next_request_id() {
    return ++last_request_id_ == 0 ? ++last_request_id_ : last_request_id_;
  }
  // Registers what the request just encoded expects; `p` must stay valid until done.
  // A kResult's Result is reset here.
  void expect(Pending& p, std::uint32_t request_id, Expect what, Result* result = nullptr,
              DatabaseInfo* info = nullptr, std::string* text = nullptr);
  // Forgets a Pending that was registered but whose request was never sent.
  void forget(const Pending& p) { table_.erase(p.request_id); }
  std::size_t outstanding() const { return table_.size(); }

  // Routes one frame. False: the stream is unusable (stream_error() says why), and nothing
  // more should be fed; the caller then calls fail_all().
  bool on_frame(const proto::FrameView& frame);
  const std::optional<Error>& stream_error() const { return stream_error_; }
  void set_stream_error(Error e) { stream_error_ = std::move(e); }
  void clear_stream_error() { stream_error_.reset(); }
  // A protocol error from the daemon was routed: it closes the connection after it.
  bool closing() const { return closing_; }

  // Ends every registered request with `e` (marked done, sinks told) and forgets them all.
  void fail_all(const Error& e);
  const std::string& label() const { return label_; }

 private:
  bool protocol_error(std::string what);
  void finish(Pending& p);

  std::string label_;
  std::uint32_t last_request_id_ = 0;
  PendingTable table_;
  std::optional<Error> stream_error_;
  bool closing_ = false;
};

}  // namespace dbmgr::detail
