// Seeded random protocol messages for round-trip and chunking tests.
//
// Strings live in the generator (a deque, so views stay valid); one generator per thread.
#pragma once

#include <bit>
#include <cstdint>
#include <deque>
#include <random>
#include <string>
#include <vector>

#include "dbmgr/protocol/codec.hpp"

namespace dbmgr::proto::test {

class RandomMessages {
 public:
  explicit RandomMessages(std::uint32_t seed) : rng_(seed) {}

  std::uint32_t u32() { return static_cast<std::uint32_t>(rng_()); }
  std::uint32_t below(std::uint32_t n) { return n == 0 ? 0 : u32() % n; }
  std::int64_t i64() { return static_cast<std::int64_t>((std::uint64_t{u32()} << 32) | u32()); }

  // Valid UTF-8 of 0..max code points, mixing 1- to 4-byte sequences.
  std::string_view text(std::uint32_t max = 40) {
    std::string s;
    const std::uint32_t n = below(max + 1);
    for (std::uint32_t k = 0; k < n; ++k) {
      switch (below(4)) {
        case 0:
          s += static_cast<char>(below(0x80));
          break;
        case 1:
          append_utf8(s, 0x80 + below(0x800 - 0x80));
          break;
        case 2: {
          std::uint32_t cp = 0x800 + below(0x10000 - 0x800);
          if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xE000;
          append_utf8(s, cp);
          break;
        }
        default:
          append_utf8(s, 0x10000 + below(0x110000 - 0x10000));
          break;
      }
    }
    return keep(std::move(s));
  }
  std::string_view blob(std::uint32_t max = 40) {
    std::string s(below(max + 1), '\0');
    for (char& c : s) c = static_cast<char>(u32());
    return keep(std::move(s));
  }
  Value value() {
    switch (below(6)) {
      case 0:
        return Value::null();
      case 1:
        return Value::boolean(below(2) == 1);
      case 2:
        return Value::int64(i64());
      case 3: {
        // Any bit pattern, NaNs and infinities included: doubles travel bit for bit.
        const auto bits = static_cast<std::uint64_t>(i64());
        return Value::real(std::bit_cast<double>(bits));
      }
      case 4:
        return Value::text(text());
      default:
        return Value::blob(blob());
    }
  }
  std::vector<Value> values(std::size_t n) {
    std::vector<Value> v;
    for (std::size_t k = 0; k < n; ++k) v.push_back(value());
    return v;
  }

  // Appends one random valid frame of a random type to `out`.
  void frame(Encoder& enc) {
    const std::uint32_t req = u32();
    const std::uint32_t sid = 1 + below(1000);
    switch (below(20)) {
      case 0:
        enc.hello(req, Hello{kMinVersion, static_cast<std::uint16_t>(kMaxVersion + below(3)),
                             text(), u32()});
        break;
      case 1:
        enc.open(req, sid, Open{text(), text(), below(2)});
        break;
      case 2: {
        const auto p = values(below(8));
        enc.execute(req, sid, text(200), p.data(), p.size());
        break;
      }
      case 3: {
        const auto p = values(below(8));
        enc.one_shot(req, text(), text(), below(2), text(200), p.data(), p.size());
        break;
      }
      case 4:
        enc.empty(MsgType::kCommit, req, sid);
        break;
      case 5:
        enc.empty(MsgType::kRollback, req, sid);
        break;
      case 6:
        enc.empty(MsgType::kClose, req, sid);
        break;
      case 7:
        enc.empty(MsgType::kCancel, req, sid);
        break;
      case 8:
        enc.empty(MsgType::kPing, req, 0);
        break;
      case 9:
        enc.info(req, Info{text(), text(), below(2)});
        break;
      case 10:
        enc.admin(req, Admin{static_cast<AdminCommand>(1 + below(9)), text()});
        break;
      case 11:
        enc.hello_ok(req, HelloOk{kVersion1, text(), u32(), u32()});
        break;
      case 12:
        enc.empty(MsgType::kOk, req, sid);
        break;
      case 13: {
        std::vector<ColumnDesc> cols(below(10));
        for (auto& c : cols) c = ColumnDesc{text(), static_cast<ValueTag>(below(6))};
        enc.columns(req, sid, cols.data(), cols.size());
        break;
      }
      case 14: {
        const auto cols = static_cast<std::uint16_t>(below(6));
        const auto v = values(std::size_t{cols} * below(10));
        enc.rows(req, sid, cols, v.data(), v.size());
        break;
      }
      case 15:
        enc.complete(req, sid, Complete{i64(), i64(), below(2) == 1});
        break;
      case 16:
        enc.error(req, sid,
                  ErrorMsg{static_cast<ErrorCategory>(1 + below(21)),
                           below(2) ? std::string_view("40001") : std::string_view(), text(100)});
        break;
      case 17:
        enc.empty(MsgType::kPong, req, below(2) ? sid : 0);
        break;
      case 18:
        enc.info_result(req, InfoResult{text(), text(), text(), text(), text()});
        break;
      default:
        enc.admin_result(req, text(300));
        break;
    }
  }

 private:
  static void append_utf8(std::string& s, std::uint32_t cp) {
    if (cp < 0x80) {
      s += static_cast<char>(cp);
    } else if (cp < 0x800) {
      s += static_cast<char>(0xC0 | (cp >> 6));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      s += static_cast<char>(0xE0 | (cp >> 12));
      s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      s += static_cast<char>(0xF0 | (cp >> 18));
      s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }
  std::string_view keep(std::string s) {
    strings_.push_back(std::move(s));
    return strings_.back();
  }

  std::mt19937 rng_;
  std::deque<std::string> strings_;
};

}  // namespace dbmgr::proto::test
