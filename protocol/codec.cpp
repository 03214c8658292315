// Frame header parsing, message decoding with full validation, and the frame encoders.
#include "dbmgr/protocol/codec.hpp"

#include <bit>
#include <cassert>
#include <cstring>
#include <limits>

namespace dbmgr::proto {

using detail::load_be16;
using detail::load_be32;
using detail::load_be64;

#define DBMGR_TRY(expr)                                        \
  do {                                                         \
    const DecodeError dbmgr_try_e_ = (expr);                   \
    if (dbmgr_try_e_ != DecodeError::kOk) return dbmgr_try_e_; \
  } while (0)

std::string_view to_string(DecodeError e) {
  switch (e) {
    case DecodeError::kOk:
      return "ok";
    case DecodeError::kTruncatedHeader:
      return "truncated frame header";
    case DecodeError::kTruncatedPayload:
      return "truncated payload";
    case DecodeError::kOversizedFrame:
      return "frame longer than max_frame_bytes";
    case DecodeError::kUnknownType:
      return "unknown message type";
    case DecodeError::kBadHeader:
      return "bad frame header (flags, reserved bytes or session id)";
    case DecodeError::kUnknownVersion:
      return "no common protocol version";
    case DecodeError::kBadValueTag:
      return "bad value tag";
    case DecodeError::kStringPastFrame:
      return "string length runs past the frame";
    case DecodeError::kInvalidUtf8:
      return "text is not valid UTF-8";
    case DecodeError::kTrailingGarbage:
      return "trailing bytes after the last field";
    case DecodeError::kTooManyItems:
      return "too many items";
    case DecodeError::kBadEnum:
      return "unknown enumeration value or flag";
  }
  return "unknown decode error";
}

// ---------------------------------------------------------------------------------------------
// UTF-8

bool is_valid_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const std::uint8_t*>(s.data());
  const auto* end = p + s.size();
  while (p < end) {
    // ASCII fast path, 8 bytes at a time.
    if (end - p >= 8) {
      std::uint64_t w;
      std::memcpy(&w, p, 8);
      if ((w & 0x8080808080808080ull) == 0) {
        p += 8;
        continue;
      }
    }
    const std::uint8_t c = *p;
    if (c < 0x80) {
      ++p;
      continue;
    }
    std::size_t need;
    std::uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (c >= 0xC2 && c <= 0xDF) {
      need = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
      need = 2;
      if (c == 0xE0) lo = 0xA0;  // no overlongs
      if (c == 0xED) hi = 0x9F;  // no surrogates
    } else if (c >= 0xF0 && c <= 0xF4) {
      need = 3;
      if (c == 0xF0) lo = 0x90;  // no overlongs
      if (c == 0xF4) hi = 0x8F;  // nothing above U+10FFFF
    } else {
      return false;
    }
    if (static_cast<std::size_t>(end - p) <= need) return false;
    if (p[1] < lo || p[1] > hi) return false;
    for (std::size_t k = 2; k <= need; ++k) {
      if ((p[k] & 0xC0) != 0x80) return false;
    }
    p += need + 1;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Values

bool operator==(const Value& a, const Value& b) {
  if (a.tag != b.tag) return false;
  switch (a.tag) {
    case ValueTag::kNull:
      return true;
    case ValueTag::kBool:
      return a.b == b.b;
    case ValueTag::kInt64:
      return a.i == b.i;
    case ValueTag::kDouble:
      return std::bit_cast<std::uint64_t>(a.d) == std::bit_cast<std::uint64_t>(b.d);
    case ValueTag::kText:
    case ValueTag::kBlob:
      return a.bytes == b.bytes;
  }
  return false;
}

Value ValueList::Iterator::operator*() const {
  Value v;
  v.tag = static_cast<ValueTag>(static_cast<std::uint8_t>(p_[0]));
  switch (v.tag) {
    case ValueTag::kNull:
      break;
    case ValueTag::kBool:
      v.b = p_[1] != 0;
      break;
    case ValueTag::kInt64:
      v.i = static_cast<std::int64_t>(load_be64(p_ + 1));
      break;
    case ValueTag::kDouble:
      v.d = std::bit_cast<double>(load_be64(p_ + 1));
      break;
    case ValueTag::kText:
    case ValueTag::kBlob:
      v.bytes = std::string_view(p_ + 5, load_be32(p_ + 1));
      break;
  }
  return v;
}

ValueList::Iterator& ValueList::Iterator::operator++() {
  const auto tag = static_cast<ValueTag>(static_cast<std::uint8_t>(p_[0]));
  const std::size_t len =
      (tag == ValueTag::kText || tag == ValueTag::kBlob) ? load_be32(p_ + 1) : 0;
  p_ += encoded_size(tag, len);
  --left_;
  return *this;
}

// ---------------------------------------------------------------------------------------------
// Decoding

DecodeError parse_header(const std::uint8_t* b, std::uint32_t max_frame_bytes, Header* out) {
  out->length = load_be32(b);
  out->type = static_cast<MsgType>(b[4]);
  out->flags = b[5];
  out->request_id = load_be32(b + 8);
  out->session_id = load_be32(b + 12);
  const std::uint16_t reserved = load_be16(b + 6);
  if (out->length > max_frame_bytes) return DecodeError::kOversizedFrame;
  if (!is_known(out->type)) return DecodeError::kUnknownType;
  if (out->flags != 0 || reserved != 0) return DecodeError::kBadHeader;
  return DecodeError::kOk;
}

namespace {

// Bounds-checked cursor over one payload. Every read checks the bytes left first.
class Reader {
 public:
  Reader(const std::uint8_t* p, std::size_t n) : p_(p), end_(p + n) {}
  std::size_t left() const { return static_cast<std::size_t>(end_ - p_); }
  const char* pos() const { return reinterpret_cast<const char*>(p_); }

  DecodeError u8(std::uint8_t* v) {
    if (left() < 1) return DecodeError::kTruncatedPayload;
    *v = *p_++;
    return DecodeError::kOk;
  }
  DecodeError u16(std::uint16_t* v) {
    if (left() < 2) return DecodeError::kTruncatedPayload;
    *v = load_be16(p_);
    p_ += 2;
    return DecodeError::kOk;
  }
  DecodeError u32(std::uint32_t* v) {
    if (left() < 4) return DecodeError::kTruncatedPayload;
    *v = load_be32(p_);
    p_ += 4;
    return DecodeError::kOk;
  }
  DecodeError u64(std::uint64_t* v) {
    if (left() < 8) return DecodeError::kTruncatedPayload;
    *v = load_be64(p_);
    p_ += 8;
    return DecodeError::kOk;
  }
  DecodeError i64(std::int64_t* v) {
    std::uint64_t u;
    DBMGR_TRY(u64(&u));
    *v = static_cast<std::int64_t>(u);
    return DecodeError::kOk;
  }
  // u32 length + bytes; text must be UTF-8.
  DecodeError bytes(std::string_view* s, bool text) {
    std::uint32_t len;
    DBMGR_TRY(u32(&len));
    if (len > left()) return DecodeError::kStringPastFrame;
    *s = std::string_view(pos(), len);
    if (text && !is_valid_utf8(*s)) return DecodeError::kInvalidUtf8;
    p_ += len;
    return DecodeError::kOk;
  }
  DecodeError text(std::string_view* s) { return bytes(s, true); }
  DecodeError end() const { return left() == 0 ? DecodeError::kOk : DecodeError::kTrailingGarbage; }

 private:
  const std::uint8_t* p_;
  const std::uint8_t* end_;
};

DecodeError read_value(Reader& r) {
  std::uint8_t tag;
  DBMGR_TRY(r.u8(&tag));
  switch (static_cast<ValueTag>(tag)) {
    case ValueTag::kNull:
      return DecodeError::kOk;
    case ValueTag::kBool: {
      std::uint8_t b;
      DBMGR_TRY(r.u8(&b));
      return b <= 1 ? DecodeError::kOk : DecodeError::kBadValueTag;
    }
    case ValueTag::kInt64:
    case ValueTag::kDouble: {
      std::uint64_t u;
      return r.u64(&u);
    }
    case ValueTag::kText:
    case ValueTag::kBlob: {
      std::string_view s;
      return r.bytes(&s, static_cast<ValueTag>(tag) == ValueTag::kText);
    }
  }
  return DecodeError::kBadValueTag;
}

// `count` values follow; each takes at least one byte, so a count above the bytes left is
// refused before the loop.
DecodeError read_values(Reader& r, std::uint64_t count, ValueList* out) {
  if (count > r.left()) return DecodeError::kTooManyItems;
  const char* start = r.pos();
  for (std::uint64_t k = 0; k < count; ++k) DBMGR_TRY(read_value(r));
  *out = ValueList(static_cast<std::uint32_t>(count),
                   std::string_view(start, static_cast<std::size_t>(r.pos() - start)));
  return DecodeError::kOk;
}

DecodeError read_params(Reader& r, ValueList* out) {
  std::uint16_t count16;
  DBMGR_TRY(r.u16(&count16));
  const std::uint32_t count = count16;
  if (count > kMaxParams) return DecodeError::kTooManyItems;
  return read_values(r, count, out);
}

bool version_supported(std::uint16_t v) { return v >= kMinVersion && v <= kMaxVersion; }

DecodeError decode_payload(MsgType type, Reader& r, Message* out) {
  switch (type) {
    case MsgType::kHello: {
      Hello m;
      DBMGR_TRY(r.u16(&m.min_version));
      DBMGR_TRY(r.u16(&m.max_version));
      DBMGR_TRY(r.text(&m.client_name));
      DBMGR_TRY(r.u32(&m.pid));
      DBMGR_TRY(r.end());
      if (!negotiate_version(m.min_version, m.max_version)) return DecodeError::kUnknownVersion;
      *out = m;
      return DecodeError::kOk;
    }
    case MsgType::kOpen: {
      Open m;
      DBMGR_TRY(r.text(&m.database));
      DBMGR_TRY(r.text(&m.prefix));
      DBMGR_TRY(r.u32(&m.flags));
      DBMGR_TRY(r.end());
      if ((m.flags & ~kOpenKnownFlags) != 0) return DecodeError::kBadEnum;
      *out = m;
      return DecodeError::kOk;
    }
    case MsgType::kExecute: {
      Execute m;
      DBMGR_TRY(r.text(&m.sql));
      DBMGR_TRY(read_params(r, &m.params));
      DBMGR_TRY(r.end());
      *out = m;
      return DecodeError::kOk;
    }
    case MsgType::kOneShot: {
      OneShot m;
      DBMGR_TRY(r.text(&m.database));
      DBMGR_TRY(r.text(&m.prefix));
      DBMGR_TRY(r.u32(&m.flags));
      if ((m.flags & ~kOpenKnownFlags) != 0) return DecodeError::kBadEnum;
      DBMGR_TRY(r.text(&m.sql));
      DBMGR_TRY(read_params(r, &m.params));
      DBMGR_TRY(r.end());
      *out = m;
      return DecodeError::kOk;
    }
    case MsgType::kCommit:
      DBMGR_TRY(r.end());
      *out = Commit{};
      return DecodeError::kOk;
    case MsgType::kRollback:
      DBMGR_TRY(r.end());
      *out = Rollback{};
      return DecodeError::kOk;
    case MsgType::kClose:
      DBMGR_TRY(r.end());
      *out = Close{};
      return DecodeError::kOk;
    case MsgType::kCancel:
      DBMGR_TRY(r.end());
      *out = Cancel{};
      return DecodeError::kOk;
    case MsgType::kPing:
      DBMGR_TRY(r.end());
      *out = Ping{};
      return DecodeError::kOk;
    case MsgType::kOk:
      DBMGR_TRY(r.end());
      *out = Ok{};
      return DecodeError::kOk;
    case MsgType::kPong:
      DBMGR_TRY(r.end());
      *out = Pong{};
      return DecodeError::kOk;
    case MsgType::kInfo: {
      Info m;
      DBMGR_TRY(r.text(&m.database));
      DBMGR_TRY(r.text(&m.prefix));
      DBMGR_TRY(r.u32(&m.flags));
      DBMGR_TRY(r.end());
      if ((m.flags & ~kInfoKnownFlags) != 0) return DecodeError::kBadEnum;
      *out = m;
      return DecodeError::kOk;
    }
    case MsgType::kAdmin: {
      Admin m;
      std::uint8_t cmd;
      DBMGR_TRY(r.u8(&cmd));
      m.command = static_cast<AdminCommand>(cmd);
      if (!is_known(m.command)) return DecodeError::kBadEnum;
      DBMGR_TRY(r.text(&m.argument));
      DBMGR_TRY(r.end());
      *out = m;
      return DecodeError::kOk;
    }
    case MsgType::kHelloOk: {
      HelloOk m;
      DBMGR_TRY(r.u16(&m.version));
      DBMGR_TRY(r.text(&m.server_version));
      DBMGR_TRY(r.u32(&m.max_frame_bytes));
      DBMGR_TRY(r.u32(&m.server_pid));
      DBMGR_TRY(r.end());
      if (!version_supported(m.version)) return DecodeError::kUnknownVersion;
      *out = m;
      return DecodeError::kOk;
    }
    case MsgType::kColumns: {
      std::uint16_t count16;
      DBMGR_TRY(r.u16(&count16));
      const std::uint32_t count = count16;
      // Each column takes at least 5 bytes (empty name + tag).
      if (count > kMaxColumns || std::uint64_t{count} * 5 > r.left()) {
        return DecodeError::kTooManyItems;
      }
      const char* start = r.pos();
      for (std::uint32_t k = 0; k < count; ++k) {
        std::string_view name;
        DBMGR_TRY(r.text(&name));
        std::uint8_t tag;
        DBMGR_TRY(r.u8(&tag));
        if (!is_known(static_cast<ValueTag>(tag))) return DecodeError::kBadValueTag;
      }
      DBMGR_TRY(r.end());
      *out =
          Columns{ColumnList(static_cast<std::uint16_t>(count),
                             std::string_view(start, static_cast<std::size_t>(r.pos() - start)))};
      return DecodeError::kOk;
    }
    case MsgType::kRows: {
      Rows m;
      DBMGR_TRY(r.u32(&m.row_count));
      DBMGR_TRY(r.u16(&m.column_count));
      if (m.column_count > kMaxColumns) return DecodeError::kTooManyItems;
      DBMGR_TRY(read_values(r, std::uint64_t{m.row_count} * m.column_count, &m.values));
      DBMGR_TRY(r.end());
      *out = m;
      return DecodeError::kOk;
    }
    case MsgType::kComplete: {
      Complete m;
      DBMGR_TRY(r.i64(&m.affected_rows));
      DBMGR_TRY(r.i64(&m.last_insert_id));
      std::uint8_t in_tx;
      DBMGR_TRY(r.u8(&in_tx));
      DBMGR_TRY(r.end());
      if (in_tx > 1) return DecodeError::kBadEnum;
      m.in_transaction = in_tx == 1;
      *out = m;
      return DecodeError::kOk;
    }
    case MsgType::kError: {
      ErrorMsg m;
      std::uint8_t cat;
      DBMGR_TRY(r.u8(&cat));
      m.category = static_cast<ErrorCategory>(cat);
      if (!is_known(m.category)) return DecodeError::kBadEnum;
      DBMGR_TRY(r.text(&m.sqlstate));
      DBMGR_TRY(r.text(&m.message));
      DBMGR_TRY(r.end());
      *out = m;
      return DecodeError::kOk;
    }
    case MsgType::kInfoResult: {
      InfoResult m;
      DBMGR_TRY(r.text(&m.type));
      DBMGR_TRY(r.text(&m.name));
      DBMGR_TRY(r.text(&m.uri));
      DBMGR_TRY(r.text(&m.pk_type));
      DBMGR_TRY(r.text(&m.pk_column_type));
      DBMGR_TRY(r.end());
      *out = m;
      return DecodeError::kOk;
    }
    case MsgType::kAdminResult: {
      AdminResult m;
      DBMGR_TRY(r.text(&m.json));
      DBMGR_TRY(r.end());
      *out = m;
      return DecodeError::kOk;
    }
  }
  return DecodeError::kUnknownType;
}

}  // namespace

std::optional<std::uint16_t> negotiate_version(std::uint16_t client_min, std::uint16_t client_max) {
  if (client_min > client_max) return std::nullopt;
  const std::uint16_t hi = client_max < kMaxVersion ? client_max : kMaxVersion;
  const std::uint16_t lo = client_min > kMinVersion ? client_min : kMinVersion;
  if (hi < lo) return std::nullopt;
  return hi;
}

DecodeError decode(const FrameView& frame, Message* out) {
  const Header& h = frame.header;
  if (!is_known(h.type)) return DecodeError::kUnknownType;
  if (h.flags != 0) return DecodeError::kBadHeader;
  if (needs_session(h.type) && h.session_id == 0) return DecodeError::kBadHeader;
  if (forbids_session(h.type) && h.session_id != 0) return DecodeError::kBadHeader;
  if (h.length > 0 && frame.payload == nullptr) return DecodeError::kTruncatedPayload;
  Reader r(frame.payload, h.length);
  return decode_payload(h.type, r, out);
}

MsgType type_of(const Message& m) {
  static constexpr MsgType kTypes[] = {
      MsgType::kHello,  MsgType::kOpen,     MsgType::kExecute,    MsgType::kOneShot,
      MsgType::kCommit, MsgType::kRollback, MsgType::kClose,      MsgType::kCancel,
      MsgType::kPing,   MsgType::kInfo,     MsgType::kAdmin,      MsgType::kHelloOk,
      MsgType::kOk,     MsgType::kColumns,  MsgType::kRows,       MsgType::kComplete,
      MsgType::kError,  MsgType::kPong,     MsgType::kInfoResult, MsgType::kAdminResult,
  };
  static_assert(std::size(kTypes) == std::variant_size_v<Message>);
  return kTypes[m.index()];
}

DecodeError FrameDecoder::finish() const {
  if (failed_ != DecodeError::kOk) return failed_;
  if (paused()) {
    // Nothing is assembled while paused; judge the kept bytes frame by frame.
    std::size_t p = pending_pos_;
    while (pending_.size() - p >= kHeaderSize) {
      Header h;
      DBMGR_TRY(parse_header(pending_.data() + p, max_frame_bytes_, &h));
      if (pending_.size() - p - kHeaderSize < h.length) return DecodeError::kTruncatedPayload;
      p += kHeaderSize + h.length;
    }
    return p < pending_.size() ? DecodeError::kTruncatedHeader : DecodeError::kOk;
  }
  if (header_have_ > 0) return DecodeError::kTruncatedHeader;
  if (!buffered_.empty()) return DecodeError::kTruncatedPayload;
  return DecodeError::kOk;
}

// ---------------------------------------------------------------------------------------------
// Encoding

void Encoder::put_u8(std::uint8_t v) { out_.push_back(v); }

void Encoder::put_u16(std::uint16_t v) {
  const std::uint8_t b[2] = {static_cast<std::uint8_t>(v >> 8), static_cast<std::uint8_t>(v)};
  out_.insert(out_.end(), b, b + 2);
}

void Encoder::put_u32(std::uint32_t v) {
  const std::uint8_t b[4] = {static_cast<std::uint8_t>(v >> 24), static_cast<std::uint8_t>(v >> 16),
                             static_cast<std::uint8_t>(v >> 8), static_cast<std::uint8_t>(v)};
  out_.insert(out_.end(), b, b + 4);
}

void Encoder::put_i64(std::int64_t v) {
  const auto u = static_cast<std::uint64_t>(v);
  std::uint8_t b[8];
  for (int k = 0; k < 8; ++k) b[k] = static_cast<std::uint8_t>(u >> (56 - 8 * k));
  out_.insert(out_.end(), b, b + 8);
}

void Encoder::put_f64(double v) { put_i64(std::bit_cast<std::int64_t>(v)); }

void Encoder::put_str(std::string_view s) {
  assert(s.size() <= std::numeric_limits<std::uint32_t>::max());
  put_u32(static_cast<std::uint32_t>(s.size()));
  out_.insert(out_.end(), s.begin(), s.end());
}

void Encoder::put_value(const Value& v) {
  put_u8(static_cast<std::uint8_t>(v.tag));
  switch (v.tag) {
    case ValueTag::kNull:
      break;
    case ValueTag::kBool:
      put_u8(v.b ? 1 : 0);
      break;
    case ValueTag::kInt64:
      put_i64(v.i);
      break;
    case ValueTag::kDouble:
      put_f64(v.d);
      break;
    case ValueTag::kText:
    case ValueTag::kBlob:
      put_str(v.bytes);
      break;
  }
}

void Encoder::put_values(const ValueList& values) {
  for (const Value& v : values) put_value(v);
}

std::size_t Encoder::begin_frame(MsgType type, std::uint32_t request_id, std::uint32_t session_id) {
  const std::size_t start = out_.size();
  put_u32(0);  // length, patched by end_frame()
  put_u8(static_cast<std::uint8_t>(type));
  put_u8(0);   // flags
  put_u16(0);  // reserved
  put_u32(request_id);
  put_u32(session_id);
  return start;
}

void Encoder::set_ids(std::uint8_t* frame, std::uint32_t request_id, std::uint32_t session_id) {
  // The header: u32 length, u8 type, u8 flags, u16 reserved, u32 request id, u32 session id.
  for (int i = 0; i < 4; ++i) {
    frame[8 + i] = static_cast<std::uint8_t>(request_id >> (24 - 8 * i));
    frame[12 + i] = static_cast<std::uint8_t>(session_id >> (24 - 8 * i));
  }
}

void Encoder::end_frame(std::size_t frame_start) {
  const std::size_t len = out_.size() - frame_start - kHeaderSize;
  assert(len <= std::numeric_limits<std::uint32_t>::max());
  const auto v = static_cast<std::uint32_t>(len);
  out_[frame_start + 0] = static_cast<std::uint8_t>(v >> 24);
  out_[frame_start + 1] = static_cast<std::uint8_t>(v >> 16);
  out_[frame_start + 2] = static_cast<std::uint8_t>(v >> 8);
  out_[frame_start + 3] = static_cast<std::uint8_t>(v);
}

namespace {

void put_params(Encoder& e, const Value* params, std::size_t count) {
  assert(count <= kMaxParams);
  e.put_u16(static_cast<std::uint16_t>(count));
  for (std::size_t k = 0; k < count; ++k) e.put_value(params[k]);
}

void put_params(Encoder& e, const ValueList& params) {
  assert(params.size() <= kMaxParams);
  e.put_u16(static_cast<std::uint16_t>(params.size()));
  e.put_values(params);
}

// The payload of each message; the frame around it is the caller's.
struct PayloadWriter {
  Encoder& e;
  void operator()(const Hello& m) const {
    e.put_u16(m.min_version);
    e.put_u16(m.max_version);
    e.put_str(m.client_name);
    e.put_u32(m.pid);
  }
  void operator()(const Open& m) const {
    e.put_str(m.database);
    e.put_str(m.prefix);
    e.put_u32(m.flags);
  }
  void operator()(const Execute& m) const {
    e.put_str(m.sql);
    put_params(e, m.params);
  }
  void operator()(const OneShot& m) const {
    e.put_str(m.database);
    e.put_str(m.prefix);
    e.put_u32(m.flags);
    e.put_str(m.sql);
    put_params(e, m.params);
  }
  void operator()(const Commit&) const {}
  void operator()(const Rollback&) const {}
  void operator()(const Close&) const {}
  void operator()(const Cancel&) const {}
  void operator()(const Ping&) const {}
  void operator()(const Ok&) const {}
  void operator()(const Pong&) const {}
  void operator()(const Info& m) const {
    e.put_str(m.database);
    e.put_str(m.prefix);
    e.put_u32(m.flags);
  }
  void operator()(const Admin& m) const {
    e.put_u8(static_cast<std::uint8_t>(m.command));
    e.put_str(m.argument);
  }
  void operator()(const HelloOk& m) const {
    e.put_u16(m.version);
    e.put_str(m.server_version);
    e.put_u32(m.max_frame_bytes);
    e.put_u32(m.server_pid);
  }
  void operator()(const Columns& m) const {
    e.put_u16(m.columns.size());
    m.columns.for_each([this](const ColumnDesc& c) {
      e.put_str(c.name);
      e.put_u8(static_cast<std::uint8_t>(c.type));
    });
  }
  void operator()(const Rows& m) const {
    e.put_u32(m.row_count);
    e.put_u16(m.column_count);
    e.put_values(m.values);
  }
  void operator()(const Complete& m) const {
    e.put_i64(m.affected_rows);
    e.put_i64(m.last_insert_id);
    e.put_u8(m.in_transaction ? 1 : 0);
  }
  void operator()(const ErrorMsg& m) const {
    e.put_u8(static_cast<std::uint8_t>(m.category));
    e.put_str(m.sqlstate);
    e.put_str(m.message);
  }
  void operator()(const InfoResult& m) const {
    e.put_str(m.type);
    e.put_str(m.name);
    e.put_str(m.uri);
    e.put_str(m.pk_type);
    e.put_str(m.pk_column_type);
  }
  void operator()(const AdminResult& m) const { e.put_str(m.json); }
};

}  // namespace

void Encoder::hello(std::uint32_t request_id, const Hello& m) {
  const std::size_t f = begin_frame(MsgType::kHello, request_id, 0);
  PayloadWriter{*this}(m);
  end_frame(f);
}

void Encoder::open(std::uint32_t request_id, std::uint32_t session_id, const Open& m) {
  const std::size_t f = begin_frame(MsgType::kOpen, request_id, session_id);
  PayloadWriter{*this}(m);
  end_frame(f);
}

void Encoder::execute(std::uint32_t request_id, std::uint32_t session_id, std::string_view sql,
                      const Value* params, std::size_t param_count) {
  const std::size_t f = begin_frame(MsgType::kExecute, request_id, session_id);
  put_str(sql);
  put_params(*this, params, param_count);
  end_frame(f);
}

void Encoder::one_shot(std::uint32_t request_id, std::string_view database, std::string_view prefix,
                       std::uint32_t flags, std::string_view sql, const Value* params,
                       std::size_t param_count) {
  const std::size_t f = begin_frame(MsgType::kOneShot, request_id, 0);
  put_str(database);
  put_str(prefix);
  put_u32(flags);
  put_str(sql);
  put_params(*this, params, param_count);
  end_frame(f);
}

void Encoder::empty(MsgType type, std::uint32_t request_id, std::uint32_t session_id) {
  end_frame(begin_frame(type, request_id, session_id));
}

void Encoder::info(std::uint32_t request_id, const Info& m) {
  const std::size_t f = begin_frame(MsgType::kInfo, request_id, 0);
  PayloadWriter{*this}(m);
  end_frame(f);
}

void Encoder::admin(std::uint32_t request_id, const Admin& m) {
  const std::size_t f = begin_frame(MsgType::kAdmin, request_id, 0);
  PayloadWriter{*this}(m);
  end_frame(f);
}

void Encoder::hello_ok(std::uint32_t request_id, const HelloOk& m) {
  const std::size_t f = begin_frame(MsgType::kHelloOk, request_id, 0);
  PayloadWriter{*this}(m);
  end_frame(f);
}

void Encoder::columns(std::uint32_t request_id, std::uint32_t session_id, const ColumnDesc* cols,
                      std::size_t count) {
  assert(count <= kMaxColumns);
  const std::size_t f = begin_frame(MsgType::kColumns, request_id, session_id);
  put_u16(static_cast<std::uint16_t>(count));
  for (std::size_t k = 0; k < count; ++k) {
    put_str(cols[k].name);
    put_u8(static_cast<std::uint8_t>(cols[k].type));
  }
  end_frame(f);
}

void Encoder::complete(std::uint32_t request_id, std::uint32_t session_id, const Complete& m) {
  const std::size_t f = begin_frame(MsgType::kComplete, request_id, session_id);
  PayloadWriter{*this}(m);
  end_frame(f);
}

void Encoder::error(std::uint32_t request_id, std::uint32_t session_id, const ErrorMsg& m) {
  const std::size_t f = begin_frame(MsgType::kError, request_id, session_id);
  PayloadWriter{*this}(m);
  end_frame(f);
}

void Encoder::info_result(std::uint32_t request_id, const InfoResult& m) {
  const std::size_t f = begin_frame(MsgType::kInfoResult, request_id, 0);
  PayloadWriter{*this}(m);
  end_frame(f);
}

void Encoder::admin_result(std::uint32_t request_id, std::string_view json) {
  const std::size_t f = begin_frame(MsgType::kAdminResult, request_id, 0);
  put_str(json);
  end_frame(f);
}

void Encoder::rows(std::uint32_t request_id, std::uint32_t session_id, std::uint16_t column_count,
                   const Value* values, std::size_t value_count) {
  RowBatchEncoder rb(*this, request_id, session_id, column_count);
  if (column_count != 0) {
    assert(value_count % column_count == 0);
    for (std::size_t k = 0; k < value_count; ++k) {
      rb.value(values[k]);
      if ((k + 1) % column_count == 0) rb.end_row();
    }
  }
  rb.finish();
}

void Encoder::message(std::uint32_t request_id, std::uint32_t session_id, const Message& m) {
  const std::size_t f = begin_frame(type_of(m), request_id, session_id);
  std::visit(PayloadWriter{*this}, m);
  end_frame(f);
}

RowBatchEncoder::RowBatchEncoder(Encoder& enc, std::uint32_t request_id, std::uint32_t session_id,
                                 std::uint16_t column_count)
    : enc_(enc),
      frame_start_(enc.begin_frame(MsgType::kRows, request_id, session_id)),
      column_count_(column_count) {
  assert(column_count <= kMaxColumns);
  enc_.put_u32(0);  // row count, patched by finish()
  enc_.put_u16(column_count);
}

void RowBatchEncoder::null() { enc_.put_u8(static_cast<std::uint8_t>(ValueTag::kNull)); }

void RowBatchEncoder::boolean(bool v) {
  enc_.put_u8(static_cast<std::uint8_t>(ValueTag::kBool));
  enc_.put_u8(v ? 1 : 0);
}

void RowBatchEncoder::int64(std::int64_t v) {
  enc_.put_u8(static_cast<std::uint8_t>(ValueTag::kInt64));
  enc_.put_i64(v);
}

void RowBatchEncoder::real(double v) {
  enc_.put_u8(static_cast<std::uint8_t>(ValueTag::kDouble));
  enc_.put_f64(v);
}

void RowBatchEncoder::text(std::string_view v) {
  enc_.put_u8(static_cast<std::uint8_t>(ValueTag::kText));
  enc_.put_str(v);
}

void RowBatchEncoder::blob(std::string_view v) {
  enc_.put_u8(static_cast<std::uint8_t>(ValueTag::kBlob));
  enc_.put_str(v);
}

void RowBatchEncoder::value(const Value& v) { enc_.put_value(v); }

std::size_t RowBatchEncoder::payload_bytes() const {
  return enc_.out().size() - frame_start_ - kHeaderSize;
}

void RowBatchEncoder::finish() {
  const std::uint32_t n = rows_;
  auto& out = enc_.out();
  const std::size_t at = frame_start_ + kHeaderSize;
  out[at + 0] = static_cast<std::uint8_t>(n >> 24);
  out[at + 1] = static_cast<std::uint8_t>(n >> 16);
  out[at + 2] = static_cast<std::uint8_t>(n >> 8);
  out[at + 3] = static_cast<std::uint8_t>(n);
  enc_.end_frame(frame_start_);
}

}  // namespace dbmgr::proto
