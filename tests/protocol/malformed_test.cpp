// One test per malformed input, each asserting its own DecodeError; decode() never allocates.
#include <doctest/doctest.h>

#include <string>

#include "alloc_counter.hpp"
#include "test_util.hpp"

namespace dbmgr::proto {
namespace {

using test::Bytes;
using test::decode_bytes;
using test::frame;
using test::str_hex;

// A valid request of each kind, as hex payloads, for tests that break one field.
const std::string kHelloPayload = "0001 0001" + str_hex("app") + "00001092";

TEST_SUITE("protocol") {
  TEST_CASE("malformed: truncated header") {
    const Bytes b = test::from_hex(test::to_hex(frame(MsgType::kPing, 1, 0, "")).substr(0, 20));
    FrameDecoder dec;
    CHECK(dec.feed(b.data(), b.size(), [](const FrameView&) { return true; }) == DecodeError::kOk);
    CHECK(dec.buffered_bytes() == 10);
    CHECK(dec.finish() == DecodeError::kTruncatedHeader);
  }

  TEST_CASE("malformed: truncated payload (stream ends inside a frame)") {
    Bytes b = frame(MsgType::kAdminResult, 1, 0, str_hex("{\"a\":1}"));
    b.resize(b.size() - 3);
    FrameDecoder dec;
    int frames = 0;
    CHECK(dec.feed(b.data(), b.size(), [&](const FrameView&) { return ++frames, true; }) ==
          DecodeError::kOk);
    CHECK(frames == 0);
    CHECK(dec.finish() == DecodeError::kTruncatedPayload);
  }

  TEST_CASE("malformed: a fixed-width field runs past the payload") {
    // kComplete needs 17 bytes; give 16.
    CHECK(decode_bytes(frame(MsgType::kComplete, 1, 1, "0000000000000001 0000000000000000")) ==
          DecodeError::kTruncatedPayload);
    // kHello cut inside the pid.
    CHECK(decode_bytes(frame(MsgType::kHello, 1, 0, "0001 0001" + str_hex("app") + "0000")) ==
          DecodeError::kTruncatedPayload);
    // A str whose length prefix itself is cut.
    CHECK(decode_bytes(frame(MsgType::kAdminResult, 1, 0, "0000")) ==
          DecodeError::kTruncatedPayload);
    // An int64 value cut short.
    CHECK(decode_bytes(frame(MsgType::kExecute, 1, 1, str_hex("x") + "0001 02 0000")) ==
          DecodeError::kTruncatedPayload);
  }

  TEST_CASE("malformed: oversized length is refused from the header alone") {
    Bytes b = frame(MsgType::kPing, 1, 0, "");
    b[0] = 0x01;  // length 16 MiB + 0: over a 16 MiB - 1 limit
    Header h;
    CHECK(parse_header(b.data(), kDefaultMaxFrameBytes - 1, &h) == DecodeError::kOversizedFrame);
    CHECK(h.request_id == 1);  // fields stay readable for the error reply
    CHECK(parse_header(b.data(), kDefaultMaxFrameBytes, &h) == DecodeError::kOk);
  }

  TEST_CASE("malformed: unknown type") {
    for (int t : {0x00, 0x0c, 0x7f, 0x80, 0x8a, 0xff}) {
      CAPTURE(t);
      CHECK(decode_bytes(frame(static_cast<std::uint8_t>(t), 1, 0, "")) ==
            DecodeError::kUnknownType);
      // decode() checks too, for a hand-made FrameView.
      Message m;
      FrameView f;
      f.header.type = static_cast<MsgType>(t);
      CHECK(decode(f, &m) == DecodeError::kUnknownType);
    }
  }

  TEST_CASE("malformed: flags or reserved bytes not zero") {
    Bytes b = frame(MsgType::kPing, 1, 0, "");
    b[5] = 1;
    CHECK(decode_bytes(b) == DecodeError::kBadHeader);
    b[5] = 0;
    b[6] = 0x80;
    CHECK(decode_bytes(b) == DecodeError::kBadHeader);
    b[6] = 0;
    b[7] = 1;
    CHECK(decode_bytes(b) == DecodeError::kBadHeader);
    b[7] = 0;
    CHECK(decode_bytes(b) == DecodeError::kOk);
    // decode() refuses flags in a hand-made header as well.
    Message m;
    FrameView f;
    f.header.type = MsgType::kPing;
    f.header.flags = 2;
    CHECK(decode(f, &m) == DecodeError::kBadHeader);
  }

  TEST_CASE("malformed: session id missing where one is required") {
    const std::string open = str_hex("app") + str_hex("") + "00000000";
    CHECK(decode_bytes(frame(MsgType::kOpen, 1, 0, open)) == DecodeError::kBadHeader);
    CHECK(decode_bytes(frame(MsgType::kExecute, 1, 0, str_hex("SELECT 1") + "0000")) ==
          DecodeError::kBadHeader);
    for (MsgType t : {MsgType::kCommit, MsgType::kRollback, MsgType::kClose, MsgType::kCancel}) {
      CAPTURE(to_string(t));
      CHECK(decode_bytes(frame(t, 1, 0, "")) == DecodeError::kBadHeader);
      CHECK(decode_bytes(frame(t, 1, 9, "")) == DecodeError::kOk);
    }
  }

  TEST_CASE("malformed: session id given where none belongs") {
    CHECK(decode_bytes(frame(MsgType::kHello, 1, 5, kHelloPayload)) == DecodeError::kBadHeader);
    CHECK(decode_bytes(frame(MsgType::kOneShot, 1, 5,
                             str_hex("app") + str_hex("") + "00000000" + str_hex("SELECT 1") +
                                 "0000")) == DecodeError::kBadHeader);
    CHECK(decode_bytes(frame(MsgType::kInfo, 1, 5, str_hex("app") + str_hex("") + "00000000")) ==
          DecodeError::kBadHeader);
    CHECK(decode_bytes(frame(MsgType::kAdmin, 1, 5, "01" + str_hex(""))) ==
          DecodeError::kBadHeader);
    CHECK(decode_bytes(frame(MsgType::kPing, 1, 5, "")) == DecodeError::kBadHeader);
    // Replies may carry any session id.
    for (std::uint32_t sid : {0u, 5u}) {
      CHECK(decode_bytes(frame(MsgType::kOk, 1, sid, "")) == DecodeError::kOk);
      CHECK(decode_bytes(frame(MsgType::kPong, 1, sid, "")) == DecodeError::kOk);
    }
  }

  TEST_CASE("malformed: kHello with no common version") {
    auto hello = [](std::string_view versions) {
      return decode_bytes(
          frame(MsgType::kHello, 1, 0, std::string(versions) + str_hex("app") + "00000001"));
    };
    CHECK(hello("0002 0003") == DecodeError::kUnknownVersion);  // only newer versions
    CHECK(hello("0000 0000") == DecodeError::kUnknownVersion);  // only older versions
    CHECK(hello("0002 0001") == DecodeError::kUnknownVersion);  // min > max
    CHECK(hello("0001 0000") == DecodeError::kUnknownVersion);  // min > max
    CHECK(hello("0000 0001") == DecodeError::kOk);
    CHECK(hello("0001 0002") == DecodeError::kOk);  // a v2 client talking to this v1 side
    CHECK(hello("0001 ffff") == DecodeError::kOk);
  }

  TEST_CASE("malformed: kHelloOk with a version this side does not speak") {
    auto hello_ok = [](std::string_view version) {
      return decode_bytes(frame(MsgType::kHelloOk, 1, 0,
                                std::string(version) + str_hex("x") + "01000000 00000001"));
    };
    CHECK(hello_ok("0000") == DecodeError::kUnknownVersion);
    CHECK(hello_ok("0002") == DecodeError::kUnknownVersion);
    CHECK(hello_ok("0001") == DecodeError::kOk);
  }

  TEST_CASE("malformed: bad value tag") {
    const std::string sql = str_hex("SELECT ?");
    CHECK(decode_bytes(frame(MsgType::kExecute, 1, 1, sql + "0001 06")) ==
          DecodeError::kBadValueTag);
    CHECK(decode_bytes(frame(MsgType::kExecute, 1, 1, sql + "0001 ff")) ==
          DecodeError::kBadValueTag);
    // bool byte other than 0/1
    CHECK(decode_bytes(frame(MsgType::kExecute, 1, 1, sql + "0001 0102")) ==
          DecodeError::kBadValueTag);
    // in a row batch
    CHECK(decode_bytes(frame(MsgType::kRows, 1, 1, "00000001 0001 09")) ==
          DecodeError::kBadValueTag);
    // a declared column type
    CHECK(decode_bytes(frame(MsgType::kColumns, 1, 1, "0001" + str_hex("id") + "06")) ==
          DecodeError::kBadValueTag);
  }

  TEST_CASE("malformed: string length past the frame") {
    CHECK(decode_bytes(frame(MsgType::kExecute, 1, 1, "00000064 53454c454354")) ==
          DecodeError::kStringPastFrame);
    CHECK(decode_bytes(frame(MsgType::kExecute, 1, 1, str_hex("?") + "0001 04 00000005 6162")) ==
          DecodeError::kStringPastFrame);
    CHECK(decode_bytes(frame(MsgType::kExecute, 1, 1, str_hex("?") + "0001 05 ffffffff 00")) ==
          DecodeError::kStringPastFrame);
    CHECK(decode_bytes(frame(MsgType::kAdminResult, 1, 0, "00000002 7b")) ==
          DecodeError::kStringPastFrame);
  }

  TEST_CASE("malformed: invalid UTF-8 where text is required") {
    const std::string bad = "00000002 c328";          // invalid continuation byte
    const std::string overlong = "00000002 c0af";     // overlong '/'
    const std::string surrogate = "00000003 eda080";  // U+D800
    const std::string too_big = "00000004 f4908080";  // above U+10FFFF
    const std::string cut = "00000001 e2";            // sequence cut by the string's end
    for (const std::string& s : {bad, overlong, surrogate, too_big, cut}) {
      CAPTURE(s);
      CHECK(decode_bytes(frame(MsgType::kExecute, 1, 1, s + "0000")) ==
            DecodeError::kInvalidUtf8);  // sql
      CHECK(decode_bytes(frame(MsgType::kOpen, 1, 1, s + str_hex("") + "00000000")) ==
            DecodeError::kInvalidUtf8);  // database name
      CHECK(decode_bytes(frame(MsgType::kHello, 1, 0, "0001 0001" + s + "00000001")) ==
            DecodeError::kInvalidUtf8);  // client name
      CHECK(decode_bytes(frame(MsgType::kExecute, 1, 1, str_hex("?") + "0001 04" + s)) ==
            DecodeError::kInvalidUtf8);  // text value
      CHECK(decode_bytes(frame(MsgType::kError, 1, 1, "05" + str_hex("42601") + s)) ==
            DecodeError::kInvalidUtf8);  // message
      CHECK(decode_bytes(frame(MsgType::kColumns, 1, 1, "0001" + s + "00")) ==
            DecodeError::kInvalidUtf8);  // column name
      // Blobs are bytes: never checked.
      CHECK(decode_bytes(frame(MsgType::kExecute, 1, 1, str_hex("?") + "0001 05" + s)) ==
            DecodeError::kOk);
    }
    // Valid multi-byte text passes.
    CHECK(decode_bytes(frame(MsgType::kExecute, 1, 1, "0000000b 68c3a9e282acf09f9880 41 0000")) ==
          DecodeError::kOk);
  }

  TEST_CASE("malformed: trailing garbage") {
    CHECK(decode_bytes(frame(MsgType::kPing, 1, 0, "00")) == DecodeError::kTrailingGarbage);
    CHECK(decode_bytes(frame(MsgType::kCommit, 1, 1, "00")) == DecodeError::kTrailingGarbage);
    CHECK(decode_bytes(frame(MsgType::kHello, 1, 0, kHelloPayload + "00")) ==
          DecodeError::kTrailingGarbage);
    CHECK(decode_bytes(frame(MsgType::kExecute, 1, 1, str_hex("?") + "0001 00 00")) ==
          DecodeError::kTrailingGarbage);
    CHECK(
        decode_bytes(frame(MsgType::kComplete, 1, 1, "0000000000000001 0000000000000000 00 00")) ==
        DecodeError::kTrailingGarbage);
  }

  TEST_CASE("malformed: too many items") {
    // Above the column cap.
    CHECK(decode_bytes(frame(MsgType::kColumns, 1, 1, "1001")) == DecodeError::kTooManyItems);
    CHECK(decode_bytes(frame(MsgType::kRows, 1, 1, "00000001 1001")) == DecodeError::kTooManyItems);
    // More than the bytes left could hold (checked before looping).
    CHECK(decode_bytes(frame(MsgType::kColumns, 1, 1, "0003" + str_hex("a") + "00")) ==
          DecodeError::kTooManyItems);
    CHECK(decode_bytes(frame(MsgType::kRows, 1, 1, "ffffffff 0fff 00 00 00")) ==
          DecodeError::kTooManyItems);
    CHECK(decode_bytes(frame(MsgType::kRows, 1, 1, "00000002 0002 00 00 00")) ==
          DecodeError::kTooManyItems);
    CHECK(decode_bytes(frame(MsgType::kExecute, 1, 1, str_hex("?") + "ffff 00 00")) ==
          DecodeError::kTooManyItems);
    CHECK(decode_bytes(frame(MsgType::kOneShot, 1, 0,
                             str_hex("a") + str_hex("") + "00000000" + str_hex("?") + "0002 00")) ==
          DecodeError::kTooManyItems);
    // Exactly enough is fine; rows without columns carry no values.
    CHECK(decode_bytes(frame(MsgType::kRows, 1, 1, "00000002 0002 00 00 00 00")) ==
          DecodeError::kOk);
    CHECK(decode_bytes(frame(MsgType::kRows, 1, 1, "ffffffff 0000")) == DecodeError::kOk);
  }

  TEST_CASE("malformed: enumeration or flag value v1 does not define") {
    for (const char* cat : {"00", "16", "ff"}) {
      CHECK(decode_bytes(
                frame(MsgType::kError, 1, 0, std::string(cat) + str_hex("") + str_hex("x"))) ==
            DecodeError::kBadEnum);
    }
    for (const char* cat : {"01", "0f", "10", "15"}) {  // 1..21 are defined
      CHECK(decode_bytes(
                frame(MsgType::kError, 1, 0, std::string(cat) + str_hex("") + str_hex("x"))) ==
            DecodeError::kOk);
    }
    for (const char* cmd : {"00", "0b", "ff"}) {
      CHECK(decode_bytes(frame(MsgType::kAdmin, 1, 0, std::string(cmd) + str_hex(""))) ==
            DecodeError::kBadEnum);
    }
    CHECK(decode_bytes(frame(MsgType::kOpen, 1, 1, str_hex("a") + str_hex("") + "00000002")) ==
          DecodeError::kBadEnum);
    CHECK(decode_bytes(frame(MsgType::kOpen, 1, 1, str_hex("a") + str_hex("") + "80000000")) ==
          DecodeError::kBadEnum);
    CHECK(decode_bytes(frame(MsgType::kOneShot, 1, 0,
                             str_hex("a") + str_hex("") + "00000004" + str_hex("?") + "0000")) ==
          DecodeError::kBadEnum);
    CHECK(decode_bytes(frame(MsgType::kInfo, 1, 0, str_hex("a") + str_hex("") + "00000002")) ==
          DecodeError::kBadEnum);
    CHECK(decode_bytes(frame(MsgType::kComplete, 1, 1, "0000000000000001 0000000000000000 02")) ==
          DecodeError::kBadEnum);
  }

  TEST_CASE("decode() allocates nothing") {
    const Bytes frames[] = {
        frame(MsgType::kExecute, 1, 1,
              str_hex("SELECT ?, ?") + "0002 04" + str_hex("text") + "0101"),
        frame(MsgType::kRows, 1, 1, "00000002 0002 020000000000000001 00 03 3ff0000000000000 00"),
        frame(MsgType::kColumns, 1, 1, "0002" + str_hex("a") + "02" + str_hex("b") + "04"),
        frame(MsgType::kError, 1, 1, "05" + str_hex("42601") + str_hex("syntax error")),
        frame(MsgType::kExecute, 1, 1, "00000002 c328 0000"),  // and on the error path
    };
    Message m;
    const long before = dbmgr_test_allocations();
    int ok = 0;
    for (const Bytes& b : frames) ok += decode_bytes(b, &m) == DecodeError::kOk;
    const long after = dbmgr_test_allocations();
    CHECK(ok == 4);
    CHECK(after == before);
  }

  TEST_CASE("DecodeError names are distinct") {
    for (int a = 0; a <= static_cast<int>(DecodeError::kBadEnum); ++a) {
      for (int b = a + 1; b <= static_cast<int>(DecodeError::kBadEnum); ++b) {
        CHECK(to_string(static_cast<DecodeError>(a)) != to_string(static_cast<DecodeError>(b)));
      }
    }
  }
}

}  // namespace
}  // namespace dbmgr::proto
