// Frame encoder and incremental decoder for protocol v1 (see protocol.hpp, docs/protocol.md).
//
// Decoding happens in two steps:
//   1. FrameDecoder::feed() takes bytes in chunks of any size (one byte at a time works) and
//      hands every complete frame to a callback. A frame that arrives whole inside one chunk
//      is handed over as a view into that chunk (no copy); only a frame split across chunks
//      is assembled in the decoder's own buffer, which never grows past the frame's declared
//      length, and that length is checked against max_frame_bytes before any allocation.
//   2. decode() turns one frame into a typed Message whose strings are views into the
//      frame's payload: nothing is allocated. The views live as long as the frame's bytes.
//
// Encoding appends whole frames to a caller-owned std::vector<std::uint8_t> (the caller
// reuses it, so steady-state encoding allocates nothing). RowBatchEncoder writes each value
// straight from the caller's memory into the output: one copy per value.
//
// Thread-safety: a FrameDecoder or encoder belongs to one thread at a time.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <variant>
#include <vector>

#include "dbmgr/protocol/protocol.hpp"

namespace dbmgr::proto {

// Why a frame or payload was refused. Each malformed input has its own code.
enum class DecodeError : std::uint8_t {
  kOk = 0,
  kTruncatedHeader,   // the stream ended (finish()) inside a frame header
  kTruncatedPayload,  // the stream ended inside a payload, or a field runs past the payload
  kOversizedFrame,    // header length > max_frame_bytes
  kUnknownType,       // header type is not a MsgType
  kBadHeader,         // flags or reserved bytes not zero, or session id where none belongs
  kUnknownVersion,    // kHello with no version this side speaks, or kHelloOk outside it
  kBadValueTag,       // a value tag that is not a ValueTag, or a bool byte other than 0/1
  kStringPastFrame,   // a string or blob length runs past the end of the payload
  kInvalidUtf8,       // text that must be UTF-8 is not
  kTrailingGarbage,   // bytes left in the payload after the last field
  kTooManyItems,      // a count above kMaxParams/kMaxColumns or above what the bytes can hold
  kBadEnum,           // an ErrorCategory, AdminCommand or flag bit that v1 does not define,
                      // or kComplete's in_transaction byte other than 0/1
};
std::string_view to_string(DecodeError e);

struct Header {
  std::uint32_t length = 0;
  MsgType type = MsgType::kPing;
  std::uint8_t flags = 0;
  std::uint32_t request_id = 0;
  std::uint32_t session_id = 0;
};

struct FrameView {
  Header header;
  const std::uint8_t* payload = nullptr;  // header.length bytes
};

// Parses and checks a 16-byte header (length <= limit, type known, flags/reserved zero; checked
// in that order). The session-id rules are checked by decode(), not here. On error *out still
// holds every field that was read, so the caller can name the request in its error reply.
DecodeError parse_header(const std::uint8_t* bytes, std::uint32_t max_frame_bytes, Header* out);

// One decoded value; text and blob point into the frame.
struct Value {
  ValueTag tag = ValueTag::kNull;
  bool b = false;
  std::int64_t i = 0;
  double d = 0;
  std::string_view bytes;  // kText / kBlob

  static Value null() { return {}; }
  static Value boolean(bool v) {
    Value x;
    x.tag = ValueTag::kBool;
    x.b = v;
    return x;
  }
  static Value int64(std::int64_t v) {
    Value x;
    x.tag = ValueTag::kInt64;
    x.i = v;
    return x;
  }
  static Value real(double v) {
    Value x;
    x.tag = ValueTag::kDouble;
    x.d = v;
    return x;
  }
  static Value text(std::string_view v) {
    Value x;
    x.tag = ValueTag::kText;
    x.bytes = v;
    return x;
  }
  static Value blob(std::string_view v) {
    Value x;
    x.tag = ValueTag::kBlob;
    x.bytes = v;
    return x;
  }
  // Equal when they encode to the same bytes (doubles compare by bit pattern, so NaN == NaN
  // and 0.0 != -0.0); fields the tag does not use are ignored.
  friend bool operator==(const Value& a, const Value& b);
};

// Bytes one value takes on the wire: 1 tag byte plus its body (len = text/blob length).
constexpr std::size_t encoded_size(ValueTag tag, std::size_t len = 0) {
  switch (tag) {
    case ValueTag::kNull:
      return 1;
    case ValueTag::kBool:
      return 2;
    case ValueTag::kInt64:
    case ValueTag::kDouble:
      return 9;
    case ValueTag::kText:
    case ValueTag::kBlob:
      return 5 + len;
  }
  return 1;
}
inline std::size_t encoded_size(const Value& v) { return encoded_size(v.tag, v.bytes.size()); }

// A run of encoded values that decode() has already validated; iterate to read them.
// Iterating anything else (a hand-made raw string) is undefined behaviour.
class ValueList {
 public:
  ValueList() = default;
  ValueList(std::uint32_t count, std::string_view raw) : count_(count), raw_(raw) {}
  std::uint32_t size() const { return count_; }
  std::string_view raw() const { return raw_; }
  // Same count and same bytes.
  friend bool operator==(const ValueList&, const ValueList&) = default;

  class Iterator {
   public:
    Iterator(const char* p, std::uint32_t left) : p_(p), left_(left) {}
    Value operator*() const;
    Iterator& operator++();
    bool operator==(const Iterator& o) const { return left_ == o.left_; }

   private:
    const char* p_;
    std::uint32_t left_;
  };
  Iterator begin() const { return Iterator(raw_.data(), count_); }
  Iterator end() const { return Iterator(nullptr, 0); }

 private:
  std::uint32_t count_ = 0;
  std::string_view raw_;
};

struct ColumnDesc {
  std::string_view name;
  ValueTag type = ValueTag::kNull;  // declared type where the backend knows it, else kNull
  friend bool operator==(const ColumnDesc&, const ColumnDesc&) = default;
};

// A validated column list of kColumns.
class ColumnList {
 public:
  ColumnList() = default;
  ColumnList(std::uint16_t count, std::string_view raw) : count_(count), raw_(raw) {}
  std::uint16_t size() const { return count_; }
  std::string_view raw() const { return raw_; }
  friend bool operator==(const ColumnList&, const ColumnList&) = default;
  // Calls f(ColumnDesc) for each column in order.
  template <typename F>
  void for_each(F&& f) const;

 private:
  std::uint16_t count_ = 0;
  std::string_view raw_;
};

// The messages. Strings are views into the frame's payload. operator== compares contents.
struct Hello {
  std::uint16_t min_version = kMinVersion;
  std::uint16_t max_version = kMaxVersion;
  std::string_view client_name;
  std::uint32_t pid = 0;
  friend bool operator==(const Hello&, const Hello&) = default;
};
struct Open {
  std::string_view database;
  std::string_view prefix;
  std::uint32_t flags = 0;  // kOpen* bits
  friend bool operator==(const Open&, const Open&) = default;
};
struct Execute {
  std::string_view sql;
  ValueList params;
  friend bool operator==(const Execute&, const Execute&) = default;
};
struct OneShot {
  std::string_view database;
  std::string_view prefix;
  std::uint32_t flags = 0;  // kOpen* bits
  std::string_view sql;
  ValueList params;
  friend bool operator==(const OneShot&, const OneShot&) = default;
};
struct Commit {
  friend bool operator==(const Commit&, const Commit&) = default;
};
struct Rollback {
  friend bool operator==(const Rollback&, const Rollback&) = default;
};
struct Close {
  friend bool operator==(const Close&, const Close&) = default;
};
struct Cancel {
  friend bool operator==(const Cancel&, const Cancel&) = default;
};
struct Ping {
  friend bool operator==(const Ping&, const Ping&) = default;
};
struct Info {
  std::string_view database;
  std::string_view prefix;
  std::uint32_t flags = 0;  // kInfo* bits
  friend bool operator==(const Info&, const Info&) = default;
};
struct Admin {
  AdminCommand command = AdminCommand::kStatus;
  std::string_view argument;
  friend bool operator==(const Admin&, const Admin&) = default;
};
struct HelloOk {
  std::uint16_t version = kVersion1;
  std::string_view server_version;
  std::uint32_t max_frame_bytes = kDefaultMaxFrameBytes;
  std::uint32_t server_pid = 0;
  friend bool operator==(const HelloOk&, const HelloOk&) = default;
};
struct Ok {
  friend bool operator==(const Ok&, const Ok&) = default;
};
struct Columns {
  ColumnList columns;
  friend bool operator==(const Columns&, const Columns&) = default;
};
struct Rows {
  std::uint32_t row_count = 0;
  std::uint16_t column_count = 0;
  ValueList values;  // row_count * column_count values, row-major
  friend bool operator==(const Rows&, const Rows&) = default;
};
struct Complete {
  std::int64_t affected_rows = 0;
  std::int64_t last_insert_id = 0;
  bool in_transaction = false;
  friend bool operator==(const Complete&, const Complete&) = default;
};
struct ErrorMsg {
  ErrorCategory category = ErrorCategory::kInternal;
  std::string_view sqlstate;
  std::string_view message;
  friend bool operator==(const ErrorMsg&, const ErrorMsg&) = default;
};
struct Pong {
  friend bool operator==(const Pong&, const Pong&) = default;
};
struct InfoResult {
  std::string_view type;
  std::string_view name;
  std::string_view uri;
  std::string_view pk_type;
  std::string_view pk_column_type;
  friend bool operator==(const InfoResult&, const InfoResult&) = default;
};
struct AdminResult {
  std::string_view json;
  friend bool operator==(const AdminResult&, const AdminResult&) = default;
};

using Message =
    std::variant<Hello, Open, Execute, OneShot, Commit, Rollback, Close, Cancel, Ping, Info, Admin,
                 HelloOk, Ok, Columns, Rows, Complete, ErrorMsg, Pong, InfoResult, AdminResult>;

// The MsgType a Message alternative is sent as.
MsgType type_of(const Message& m);

// Decodes one frame's payload. On success *out holds views into frame.payload; on error *out
// is untouched. Checks the header again (type, flags, session-id rules) and every field; never
// reads outside [payload, payload + header.length) and never allocates.
DecodeError decode(const FrameView& frame, Message* out);

// True when `s` is well-formed UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF).
bool is_valid_utf8(std::string_view s);

// Picks the highest version both sides speak, or nullopt.
std::optional<std::uint16_t> negotiate_version(std::uint16_t client_min, std::uint16_t client_max);

// Assembles frames from a byte stream; see the top of this file.
//
// Views handed to on_frame are valid only during that call: a frame inside the caller's chunk
// points into the chunk, an assembled one into the decoder's buffer, which is reused.
//
// Backpressure: when on_frame returns false, feed() stops right after that frame and copies
// the rest of the chunk (possibly several frames) into the decoder ("paused"). The caller may
// then release its chunk. Later, resume(on_frame) delivers the kept bytes exactly as feed()
// would have, and may stop again the same way. While paused, feed() appends the new bytes to
// the kept ones and then behaves like resume(): nothing is lost or reordered. A daemon that
// stops reading its socket while paused() holds at most one read's worth of bytes here.
//
// on_frame must not call feed() or resume() on the same decoder.
class FrameDecoder {
 public:
  explicit FrameDecoder(std::uint32_t max_frame_bytes = kDefaultMaxFrameBytes)
      : max_frame_bytes_(max_frame_bytes) {}

  // Feeds bytes. For each complete frame calls `on_frame(const FrameView&)`, which returns
  // bool: false stops feeding (the rest of the chunk is kept for resume(), see above).
  // Returns the first header error (frames before the bad header are delivered); after an
  // error the decoder stays failed and returns that error from every later call.
  template <typename OnFrame>
  DecodeError feed(const std::uint8_t* data, std::size_t n, OnFrame&& on_frame);

  // Delivers bytes kept by an earlier stop; same contract as feed(). A no-op when !paused().
  template <typename OnFrame>
  DecodeError resume(OnFrame&& on_frame);

  // True after on_frame returned false and bytes are kept that were not yet delivered.
  bool paused() const { return pending_pos_ < pending_.size(); }

  // The stream ended: kOk if no partial frame is pending, else kTruncatedHeader/Payload.
  // While paused it judges the kept bytes (a complete frame kept is not an error), and after
  // an error it returns that error.
  DecodeError finish() const;
  // True when no partial frame is buffered and nothing is kept for resume().
  bool idle() const { return header_have_ == 0 && buffered_.empty() && !paused(); }
  // Frees the buffers' memory when idle (so an idle connection holds none).
  void release() {
    if (idle()) {
      std::vector<std::uint8_t>().swap(buffered_);
      std::vector<std::uint8_t>().swap(pending_);
      pending_pos_ = 0;
    }
  }
  // Bytes held: a partial frame plus bytes kept for resume().
  std::size_t buffered_bytes() const {
    return header_have_ + buffered_.size() + (pending_.size() - pending_pos_);
  }
  // Memory reserved for assembling a split frame (for tests and memory accounting).
  std::size_t buffer_capacity() const { return buffered_.capacity(); }
  // Bytes kept for resume() that were not yet delivered.
  std::size_t pending_bytes() const { return pending_.size() - pending_pos_; }
  DecodeError error() const { return failed_; }
  // The length field of the header that failed (kOversizedFrame names it), else 0.
  std::uint32_t failed_length() const { return failed_length_; }
  std::uint32_t max_frame_bytes() const { return max_frame_bytes_; }
  // E.g. the client adopts the limit announced in kHelloOk. Applies to the next header.
  void set_max_frame_bytes(std::uint32_t n) { max_frame_bytes_ = n; }

 private:
  struct Step {
    DecodeError error = DecodeError::kOk;
    std::size_t consumed = 0;  // bytes of the input used (delivered or buffered)
    bool stopped = false;      // on_frame returned false
  };
  // Runs the input through the assembly state; frames wholly inside are delivered in place.
  template <typename OnFrame>
  Step process(const std::uint8_t* data, std::size_t n, OnFrame& on_frame);

  static std::uint32_t load_length(const std::uint8_t* p) {
    return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
           std::uint32_t{p[3]};
  }
  std::uint32_t max_frame_bytes_;
  DecodeError failed_ = DecodeError::kOk;
  std::uint32_t failed_length_ = 0;
  // A header split across chunks is collected here, so nothing is allocated before the
  // header has been checked.
  std::array<std::uint8_t, kHeaderSize> header_buf_{};
  std::uint8_t header_have_ = 0;
  Header current_;                      // the header of the frame in buffered_
  std::vector<std::uint8_t> buffered_;  // an incomplete frame: header and what came of its payload
  std::vector<std::uint8_t> pending_;   // bytes after a stop, delivered by resume()
  std::size_t pending_pos_ = 0;         // first undelivered byte of pending_
};

// Appends frames to `out`. Each function writes one complete frame.
class Encoder {
 public:
  explicit Encoder(std::vector<std::uint8_t>& out) : out_(out) {}

  void hello(std::uint32_t request_id, const Hello& m);
  void open(std::uint32_t request_id, std::uint32_t session_id, const Open& m);
  // params: any range of Value.
  void execute(std::uint32_t request_id, std::uint32_t session_id, std::string_view sql,
               const Value* params, std::size_t param_count);
  void one_shot(std::uint32_t request_id, std::string_view database, std::string_view prefix,
                std::uint32_t flags, std::string_view sql, const Value* params,
                std::size_t param_count);
  void empty(MsgType type, std::uint32_t request_id,
             std::uint32_t session_id);  // commit, rollback, close, cancel, ping, ok, pong
  void info(std::uint32_t request_id, const Info& m);
  void admin(std::uint32_t request_id, const Admin& m);
  void hello_ok(std::uint32_t request_id, const HelloOk& m);
  void columns(std::uint32_t request_id, std::uint32_t session_id, const ColumnDesc* cols,
               std::size_t count);
  void complete(std::uint32_t request_id, std::uint32_t session_id, const Complete& m);
  void error(std::uint32_t request_id, std::uint32_t session_id, const ErrorMsg& m);
  void info_result(std::uint32_t request_id, const InfoResult& m);
  void admin_result(std::uint32_t request_id, std::string_view json);
  // A whole kRows frame from values already in memory (tests, small results).
  void rows(std::uint32_t request_id, std::uint32_t session_id, std::uint16_t column_count,
            const Value* values, std::size_t value_count);
  // Any decoded message, e.g. to forward or re-encode one. Every valid frame re-encodes to
  // exactly the bytes it was decoded from (the format has one encoding per message).
  void message(std::uint32_t request_id, std::uint32_t session_id, const Message& m);
  // Rewrites the request and session ids in the header of the encoded frame at `frame` (a
  // frame encoded ahead of time with placeholder ids, e.g. a client's queued pipeline).
  static void set_ids(std::uint8_t* frame, std::uint32_t request_id, std::uint32_t session_id);

  // Low-level pieces, used by the functions above and by RowBatchEncoder.
  std::size_t begin_frame(MsgType type, std::uint32_t request_id, std::uint32_t session_id);
  void end_frame(std::size_t frame_start);  // patches the length field
  void put_u8(std::uint8_t v);
  void put_u16(std::uint16_t v);
  void put_u32(std::uint32_t v);
  void put_i64(std::int64_t v);
  void put_f64(double v);
  void put_str(std::string_view s);
  void put_value(const Value& v);
  void put_values(const ValueList& values);  // values only, no count
  std::vector<std::uint8_t>& out() { return out_; }

 private:
  std::vector<std::uint8_t>& out_;
};

// Streams one kRows frame: begin(), then per row the values and end_row(), then finish().
// Values are written once, straight into the output buffer.
class RowBatchEncoder {
 public:
  RowBatchEncoder(Encoder& enc, std::uint32_t request_id, std::uint32_t session_id,
                  std::uint16_t column_count);
  void null();
  void boolean(bool v);
  void int64(std::int64_t v);
  void real(double v);
  void text(std::string_view v);
  void blob(std::string_view v);
  void value(const Value& v);
  void end_row() { ++rows_; }
  std::uint32_t rows() const { return rows_; }
  std::uint16_t column_count() const { return column_count_; }
  // Payload bytes written so far.
  std::size_t payload_bytes() const;
  // Whether a row of `row_bytes` encoded bytes (sum of encoded_size() of its values) may be
  // added to this batch: it keeps the payload within kMaxRowBatchBytes, or the batch is still
  // empty (a row bigger than the limit travels alone). When false: finish() and start another.
  bool fits(std::size_t row_bytes) const {
    return rows_ == 0 || payload_bytes() + row_bytes <= kMaxRowBatchBytes;
  }
  void finish();  // patches row count and frame length

 private:
  Encoder& enc_;
  std::size_t frame_start_;
  std::uint32_t rows_ = 0;
  std::uint16_t column_count_;
};

}  // namespace dbmgr::proto

#include "dbmgr/protocol/codec_inl.hpp"
