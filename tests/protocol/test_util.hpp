// Helpers shared by the protocol tests: hex conversion, frame building, one-call decoding.
//
// Test-only code; nothing here is thread-safe or meant for production use.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "dbmgr/protocol/codec.hpp"

namespace dbmgr::proto::test {

using Bytes = std::vector<std::uint8_t>;

inline Bytes from_hex(std::string_view hex) {
  Bytes out;
  auto nib = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  int hi = -1;
  for (char c : hex) {
    const int v = nib(c);
    if (v < 0) continue;  // spaces and separators are for readers
    if (hi < 0) {
      hi = v;
    } else {
      out.push_back(static_cast<std::uint8_t>(hi * 16 + v));
      hi = -1;
    }
  }
  return out;
}

inline std::string to_hex(const Bytes& b) {
  static const char* kDigits = "0123456789abcdef";
  std::string s;
  for (std::uint8_t x : b) {
    s += kDigits[x >> 4];
    s += kDigits[x & 15];
  }
  return s;
}

// A frame with a correct header around `payload_hex`.
inline Bytes frame(std::uint8_t type, std::uint32_t request_id, std::uint32_t session_id,
                   std::string_view payload_hex) {
  const Bytes payload = from_hex(payload_hex);
  Bytes out;
  Encoder enc(out);
  enc.begin_frame(static_cast<MsgType>(type), request_id, session_id);
  out.insert(out.end(), payload.begin(), payload.end());
  enc.end_frame(0);
  return out;
}

inline Bytes frame(MsgType type, std::uint32_t request_id, std::uint32_t session_id,
                   std::string_view payload_hex) {
  return frame(static_cast<std::uint8_t>(type), request_id, session_id, payload_hex);
}

// parse_header() then decode() of one complete frame.
inline DecodeError decode_bytes(const Bytes& b, Message* out,
                                std::uint32_t max_frame_bytes = kDefaultMaxFrameBytes) {
  if (b.size() < kHeaderSize) return DecodeError::kTruncatedHeader;
  Header h;
  const DecodeError e = parse_header(b.data(), max_frame_bytes, &h);
  if (e != DecodeError::kOk) return e;
  if (b.size() - kHeaderSize < h.length) return DecodeError::kTruncatedPayload;
  return decode(FrameView{h, b.data() + kHeaderSize}, out);
}

inline DecodeError decode_bytes(const Bytes& b) {
  Message m;
  return decode_bytes(b, &m);
}

// Hex of a str field: u32 length + bytes.
inline std::string str_hex(std::string_view s) {
  Bytes b;
  Encoder enc(b);
  enc.put_str(s);
  return to_hex(b);
}

}  // namespace dbmgr::proto::test

namespace dbmgr::proto {
// doctest prints these in failed CHECKs.
inline std::ostream& operator<<(std::ostream& os, DecodeError e) { return os << to_string(e); }
}  // namespace dbmgr::proto
