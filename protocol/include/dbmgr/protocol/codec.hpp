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
  kTruncatedHeader,    // the stream ended (finish()) inside a frame header
  kTruncatedPayload,   // the stream ended inside a payload, or a field runs past the payload
  kOversizedFrame,     // header length > max_frame_bytes
  kUnknownType,        // header type is not a MsgType
  kBadHeader,          // flags or reserved bytes not zero, or session id where none belongs
  kUnknownVersion,     // kHello with no version this side speaks, or kHelloOk outside it
  kBadValueTag,        // a value tag that is not a ValueTag, or a bool byte other than 0/1
  kStringPastFrame,    // a string or blob length runs past the end of the payload
  kInvalidUtf8,        // text that must be UTF-8 is not
  kTrailingGarbage,    // bytes left in the payload after the last field
  kTooManyItems,       // a count above kMaxParams/kMaxColumns or above what the bytes can hold
  kBadEnum,            // an ErrorCategory, AdminCommand or flag bit that v1 does not define
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

// Parses and checks a 16-byte header (type known, flags/reserved zero, length <= limit).
DecodeError parse_header(const std::uint8_t* bytes, std::uint32_t max_frame_bytes, Header* out);

// One decoded value; text and blob point into the frame.
struct Value {
  ValueTag tag = ValueTag::kNull;
  bool b = false;
  std::int64_t i = 0;
  double d = 0;
  std::string_view bytes;  // kText / kBlob

  static Value null() { return {}; }
  static Value boolean(bool v) { Value x; x.tag = ValueTag::kBool; x.b = v; return x; }
  static Value int64(std::int64_t v) { Value x; x.tag = ValueTag::kInt64; x.i = v; return x; }
  static Value real(double v) { Value x; x.tag = ValueTag::kDouble; x.d = v; return x; }
  static Value text(std::string_view v) { Value x; x.tag = ValueTag::kText; x.bytes = v; return x; }
  static Value blob(std::string_view v) { Value x; x.tag = ValueTag::kBlob; x.bytes = v; return x; }
  friend bool operator==(const Value& a, const Value& b);
};

// A run of encoded values that decode() has already validated; iterate to read them.
class ValueList {
 public:
  ValueList() = default;
  ValueList(std::uint32_t count, std::string_view raw) : count_(count), raw_(raw) {}
  std::uint32_t size() const { return count_; }
  std::string_view raw() const { return raw_; }

  class Iterator {
   public:
    Iterator(const char* p, std::uint32_t left);
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
};

// A validated column list of kColumns.
class ColumnList {
 public:
  ColumnList() = default;
  ColumnList(std::uint16_t count, std::string_view raw) : count_(count), raw_(raw) {}
  std::uint16_t size() const { return count_; }
  // Calls f(ColumnDesc) for each column in order.
  template <typename F>
  void for_each(F&& f) const;

 private:
  std::uint16_t count_ = 0;
  std::string_view raw_;
};

struct Hello { std::uint16_t min_version = kMinVersion; std::uint16_t max_version = kMaxVersion; std::string_view client_name; std::uint32_t pid = 0; };
struct Open { std::string_view database; std::string_view prefix; std::uint32_t flags = 0; };
struct Execute { std::string_view sql; ValueList params; };
struct OneShot { std::string_view database; std::string_view prefix; std::uint32_t flags = 0; std::string_view sql; ValueList params; };
struct Commit {};
struct Rollback {};
struct Close {};
struct Cancel {};
struct Ping {};
struct Info { std::string_view database; std::string_view prefix; std::uint32_t flags = 0; };
struct Admin { AdminCommand command = AdminCommand::kStatus; std::string_view argument; };
struct HelloOk { std::uint16_t version = kVersion1; std::string_view server_version; std::uint32_t max_frame_bytes = kDefaultMaxFrameBytes; std::uint32_t server_pid = 0; };
struct Ok {};
struct Columns { ColumnList columns; };
struct Rows { std::uint32_t row_count = 0; std::uint16_t column_count = 0; ValueList values; };
struct Complete { std::int64_t affected_rows = 0; std::int64_t last_insert_id = 0; bool in_transaction = false; };
struct ErrorMsg { ErrorCategory category = ErrorCategory::kInternal; std::string_view sqlstate; std::string_view message; };
struct Pong {};
struct InfoResult { std::string_view type; std::string_view name; std::string_view uri; std::string_view pk_type; std::string_view pk_column_type; };
struct AdminResult { std::string_view json; };

using Message = std::variant<Hello, Open, Execute, OneShot, Commit, Rollback, Close, Cancel, Ping,
                             Info, Admin, HelloOk, Ok, Columns, Rows, Complete, ErrorMsg, Pong,
                             InfoResult, AdminResult>;

// Decodes one frame's payload. On success *out holds views into frame.payload.
DecodeError decode(const FrameView& frame, Message* out);

// Picks the highest version both sides speak, or nullopt.
std::optional<std::uint16_t> negotiate_version(std::uint16_t client_min, std::uint16_t client_max);

// Assembles frames from a byte stream; see the top of this file.
class FrameDecoder {
 public:
  explicit FrameDecoder(std::uint32_t max_frame_bytes = kDefaultMaxFrameBytes)
      : max_frame_bytes_(max_frame_bytes) {}

  // Feeds bytes. For each complete frame calls `on_frame(const FrameView&)`, which returns
  // bool: false stops feeding (the rest of the chunk is kept buffered for the next call to
  // resume()). Returns the first header error; after an error the decoder stays failed.
  template <typename OnFrame>
  DecodeError feed(const std::uint8_t* data, std::size_t n, OnFrame&& on_frame);

  // The stream ended: kOk if no partial frame is pending, else kTruncatedHeader/Payload.
  DecodeError finish() const;
  // True when no partial frame is buffered.
  bool idle() const { return buffered_.empty(); }
  // Frees the assembly buffer's memory when idle (so an idle connection holds none).
  void release() { if (buffered_.empty()) std::vector<std::uint8_t>().swap(buffered_); }
  std::size_t buffered_bytes() const { return buffered_.size(); }

 private:
  std::uint32_t max_frame_bytes_;
  DecodeError failed_ = DecodeError::kOk;
  std::vector<std::uint8_t> buffered_;  // an incomplete frame: header and what came of its payload
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
  void empty(MsgType type, std::uint32_t request_id, std::uint32_t session_id);  // commit, rollback, close, cancel, ping, ok, pong
  void info(std::uint32_t request_id, const Info& m);
  void admin(std::uint32_t request_id, const Admin& m);
  void hello_ok(std::uint32_t request_id, const HelloOk& m);
  void columns(std::uint32_t request_id, std::uint32_t session_id, const ColumnDesc* cols,
               std::size_t count);
  void complete(std::uint32_t request_id, std::uint32_t session_id, const Complete& m);
  void error(std::uint32_t request_id, std::uint32_t session_id, const ErrorMsg& m);
  void info_result(std::uint32_t request_id, const InfoResult& m);
  void admin_result(std::uint32_t request_id, std::string_view json);

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
  void end_row() { ++rows_; }
  std::uint32_t rows() const { return rows_; }
  // Payload bytes written so far; end the batch when this passes kMaxRowBatchBytes.
  std::size_t payload_bytes() const;
  void finish();  // patches row count and frame length

 private:
  Encoder& enc_;
  std::size_t frame_start_;
  std::uint32_t rows_ = 0;
};

}  // namespace dbmgr::proto

#include "dbmgr/protocol/codec_inl.hpp"
