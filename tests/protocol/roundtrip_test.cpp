// Round trips over seeded random messages: encode, decode, compare; plus version negotiation,
// UTF-8 validation and RowBatchEncoder batching.
#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>

#include "random_messages.hpp"
#include "test_util.hpp"

namespace dbmgr::proto {
namespace {

using test::Bytes;
using test::RandomMessages;

// DBMGR_TEST_SEED=<n> reproduces a failing run; the seed in use is always printed.
std::uint32_t test_seed() {
  static const std::uint32_t seed = [] {
    const char* env = std::getenv("DBMGR_TEST_SEED");
    const std::uint32_t s =
        env ? static_cast<std::uint32_t>(std::strtoul(env, nullptr, 10)) : 20240601u;
    std::printf("protocol round-trip seed: %u (set DBMGR_TEST_SEED to change)\n", s);
    return s;
  }();
  return seed;
}

// A random message without value lists, whose fields can be compared directly.
Message random_plain(RandomMessages& r) {
  switch (r.below(16)) {
    case 0:
      return Hello{static_cast<std::uint16_t>(r.below(2)),
                   static_cast<std::uint16_t>(1 + r.below(5)), r.text(), r.u32()};
    case 1:
      return Open{r.text(), r.text(), r.below(2)};
    case 2:
      return Commit{};
    case 3:
      return Rollback{};
    case 4:
      return Close{};
    case 5:
      return Cancel{};
    case 6:
      return Ping{};
    case 7:
      return Info{r.text(), r.text(), r.below(2)};
    case 8:
      return Admin{static_cast<AdminCommand>(1 + r.below(9)), r.text()};
    case 9:
      return HelloOk{kVersion1, r.text(), r.u32(), r.u32()};
    case 10:
      return Ok{};
    case 11:
      return Complete{r.i64(), r.i64(), r.below(2) == 1};
    case 12:
      return ErrorMsg{static_cast<ErrorCategory>(1 + r.below(21)), r.text(5), r.text(200)};
    case 13:
      return Pong{};
    case 14:
      return InfoResult{r.text(), r.text(), r.text(), r.text(), r.text()};
    default:
      return AdminResult{r.text(500)};
  }
}

Message decode_one(const Bytes& b) {
  Message m;
  Header h;
  REQUIRE(parse_header(b.data(), kDefaultMaxFrameBytes, &h) == DecodeError::kOk);
  REQUIRE(h.length == b.size() - kHeaderSize);
  REQUIRE(decode(FrameView{h, b.data() + kHeaderSize}, &m) == DecodeError::kOk);
  return m;
}

void check_values(const ValueList& got, const std::vector<Value>& want) {
  REQUIRE(got.size() == want.size());
  std::size_t k = 0;
  for (const Value& v : got) CHECK(v == want[k++]);
}

TEST_SUITE("protocol") {
  TEST_CASE("round trip: random plain messages decode to exactly what was encoded") {
    RandomMessages r(test_seed());
    for (int n = 0; n < 5000; ++n) {
      const Message m = random_plain(r);
      const std::uint32_t req = r.u32();
      const std::uint32_t sid = needs_session(type_of(m))     ? 1 + r.below(100)
                                : forbids_session(type_of(m)) ? 0
                                                              : r.below(3);
      Bytes b;
      Encoder enc(b);
      enc.message(req, sid, m);
      const Message back = decode_one(b);
      CAPTURE(n);
      CHECK(back == m);
    }
  }

  TEST_CASE("round trip: random parameter and row values") {
    RandomMessages r(test_seed() + 1);
    for (int n = 0; n < 2000; ++n) {
      CAPTURE(n);
      const auto params = r.values(r.below(20));
      const auto sql = r.text(100);
      Bytes b;
      Encoder enc(b);
      enc.execute(1, 2, sql, params.data(), params.size());
      Message m = decode_one(b);
      const auto& ex = std::get<Execute>(m);
      CHECK(ex.sql == sql);
      check_values(ex.params, params);

      b.clear();
      enc.one_shot(3, "db", "pre", kOpenReadOnly, sql, params.data(), params.size());
      m = decode_one(b);
      const auto& os = std::get<OneShot>(m);
      CHECK(os == OneShot{"db", "pre", kOpenReadOnly, sql, os.params});
      check_values(os.params, params);

      const auto cols = static_cast<std::uint16_t>(1 + r.below(8));
      const auto vals = r.values(std::size_t{cols} * r.below(30));
      b.clear();
      enc.rows(4, 5, cols, vals.data(), vals.size());
      m = decode_one(b);
      const auto& rows = std::get<Rows>(m);
      CHECK(rows.column_count == cols);
      CHECK(rows.row_count == vals.size() / cols);
      check_values(rows.values, vals);
    }
  }

  TEST_CASE("round trip: random frames re-encode to the same bytes") {
    RandomMessages r(test_seed() + 2);
    Bytes stream;
    Encoder enc(stream);
    for (int n = 0; n < 3000; ++n) r.frame(enc);
    FrameDecoder dec;
    int frames = 0;
    CHECK(dec.feed(stream.data(), stream.size(), [&](const FrameView& f) {
      Message m;
      REQUIRE(decode(f, &m) == DecodeError::kOk);
      Bytes again;
      Encoder e2(again);
      e2.message(f.header.request_id, f.header.session_id, m);
      REQUIRE(again.size() == kHeaderSize + f.header.length);
      CHECK(std::equal(again.begin() + kHeaderSize, again.end(), f.payload));
      ++frames;
      return true;
    }) == DecodeError::kOk);
    CHECK(frames == 3000);
  }

  TEST_CASE("doubles travel bit for bit") {
    const double specials[] = {0.0,
                               -0.0,
                               1e308,
                               -1e-308,
                               5e-324,
                               std::numeric_limits<double>::infinity(),
                               std::numeric_limits<double>::quiet_NaN()};
    for (double d : specials) {
      const Value v = Value::real(d);
      Bytes b;
      Encoder enc(b);
      enc.execute(1, 1, "?", &v, 1);
      const Message m = decode_one(b);
      CHECK(*std::get<Execute>(m).params.begin() == v);
    }
    CHECK_FALSE(Value::real(0.0) == Value::real(-0.0));
  }

  TEST_CASE("version negotiation") {
    CHECK(negotiate_version(1, 1) == std::optional<std::uint16_t>(1));
    CHECK(negotiate_version(1, 2) == std::optional<std::uint16_t>(1));  // v2 client, v1 side
    CHECK(negotiate_version(0, 9) == std::optional<std::uint16_t>(kMaxVersion));
    CHECK_FALSE(negotiate_version(2, 3));
    CHECK_FALSE(negotiate_version(0, 0));
    CHECK_FALSE(negotiate_version(2, 1));
  }

  TEST_CASE("UTF-8 validation") {
    CHECK(is_valid_utf8(""));
    CHECK(is_valid_utf8("plain ascii that is longer than eight bytes"));
    CHECK(is_valid_utf8("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf"));
    CHECK(is_valid_utf8(std::string_view("a\0b", 3)));
    CHECK_FALSE(is_valid_utf8("\x80"));
    CHECK_FALSE(is_valid_utf8("\xc1\xbf"));          // overlong
    CHECK_FALSE(is_valid_utf8("\xe0\x9f\xbf"));      // overlong
    CHECK_FALSE(is_valid_utf8("\xf0\x8f\xbf\xbf"));  // overlong
    CHECK_FALSE(is_valid_utf8("\xed\xbf\xbf"));      // surrogate
    CHECK_FALSE(is_valid_utf8("\xf5\x80\x80\x80"));  // beyond U+10FFFF
    CHECK_FALSE(is_valid_utf8("12345678\xe2\x82"));  // cut after the fast path
    CHECK_FALSE(is_valid_utf8("\xe2\x28\xa1"));
  }

  TEST_CASE("RowBatchEncoder: counts patched at finish, batches bounded by kMaxRowBatchBytes") {
    Bytes out;
    Encoder enc(out);
    std::vector<std::size_t> frame_starts;
    const std::string big(1000, 'x');
    const std::size_t row_bytes =
        encoded_size(ValueTag::kInt64) + encoded_size(ValueTag::kText, big.size());
    std::uint32_t total_rows = 0;
    const std::uint32_t kRows = 1000;
    std::uint32_t next = 0;
    while (next < kRows) {
      frame_starts.push_back(out.size());
      RowBatchEncoder rb(enc, 9, 4, 2);
      while (next < kRows && rb.fits(row_bytes)) {
        const std::size_t before = rb.payload_bytes();
        rb.int64(next);
        rb.text(big);
        rb.end_row();
        CHECK(rb.payload_bytes() - before == row_bytes);
        ++next;
      }
      CHECK(rb.payload_bytes() <= kMaxRowBatchBytes);
      rb.finish();
    }
    CHECK(frame_starts.size() > 1);
    FrameDecoder dec;
    std::int64_t expect = 0;
    CHECK(dec.feed(out.data(), out.size(), [&](const FrameView& f) {
      CHECK(f.header.length <= kMaxRowBatchBytes);
      Message m;
      REQUIRE(decode(f, &m) == DecodeError::kOk);
      const auto& rows = std::get<Rows>(m);
      total_rows += rows.row_count;
      std::size_t k = 0;
      for (const Value& v : rows.values) {
        if (k++ % 2 == 0)
          CHECK(v == Value::int64(expect++));
        else
          CHECK(v == Value::text(big));
      }
      return true;
    }) == DecodeError::kOk);
    CHECK(total_rows == kRows);

    // A row larger than the batch limit still fits an empty batch, and only that.
    out.clear();
    RowBatchEncoder rb(enc, 1, 1, 1);
    CHECK(rb.fits(kMaxRowBatchBytes * 2));
    rb.blob(std::string(kMaxRowBatchBytes * 2, 'b'));
    rb.end_row();
    CHECK_FALSE(rb.fits(1));
    rb.finish();
    CHECK(decode_one(out).index() == Message(Rows{}).index());
  }

  TEST_CASE("enumeration names") {
    CHECK(to_string(MsgType::kOneShot) == "one_shot");
    CHECK(to_string(ErrorCategory::kPoolExhausted) == "pool_exhausted");
    CHECK(to_string(ErrorCategory::kInvalidRequest) == "invalid_request");
    CHECK(to_string(ErrorCategory::kBusy) == "busy");
    CHECK(to_string(ErrorCategory::kReadOnly) == "read_only");
    CHECK(to_string(ErrorCategory::kTransaction) == "transaction");
    CHECK(to_string(ErrorCategory::kSerialization) == "serialization");
    CHECK(to_string(ErrorCategory::kResources) == "resources");
    CHECK(to_string(ErrorCategory::kIo) == "io");
    CHECK(to_string(ErrorCategory::kUnsupported) == "unsupported");
    for (int c = 1; c <= 21; ++c) CHECK(is_known(static_cast<ErrorCategory>(c)));
    CHECK_FALSE(is_known(static_cast<ErrorCategory>(22)));
    CHECK(to_string(ValueTag::kBlob) == "blob");
    CHECK(to_string(AdminCommand::kShutdown) == "shutdown");
    CHECK(to_string(static_cast<MsgType>(0x42)) == "unknown");
    CHECK_FALSE(is_known(static_cast<ErrorCategory>(0)));
    CHECK(is_reply(MsgType::kPong));
    CHECK_FALSE(is_reply(MsgType::kPing));
  }
}

}  // namespace
}  // namespace dbmgr::proto
