// Golden byte vectors for every message type, checked both ways (encode and decode).
//
// These vectors pin the v1 wire format: if one of them has to change, the protocol changed
// and docs/protocol.md, the version number and every client must change with it. The same
// vectors are the hex examples in docs/protocol.md and the seeds in tests/fuzz/corpus/.
#include <doctest/doctest.h>

#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "test_util.hpp"

namespace dbmgr::proto {
namespace {

using test::Bytes;
using test::from_hex;
using test::to_hex;

struct Golden {
  const char* name;
  const char* hex;
  std::function<void(Encoder&)> encode;                      // with the typed Encoder function
  std::function<void(const Header&, const Message&)> check;  // the decoded message, field by field
};

const Value kParams[] = {
    Value::null(),    Value::boolean(true),     Value::int64(-2),
    Value::real(1.5), Value::text("h\xc3\xa9"), Value::blob(std::string_view("\x00\xff", 2))};
const Value kOneShotParams[] = {Value::int64(42)};
const ColumnDesc kColumns[] = {{"id", ValueTag::kInt64}, {"name", ValueTag::kNull}};
const Value kRowValues[] = {Value::int64(1), Value::text("a"), Value::int64(2), Value::null()};

void check_values(const ValueList& got, const Value* want, std::size_t n) {
  REQUIRE(got.size() == n);
  std::size_t k = 0;
  for (const Value& v : got) {
    CHECK(v == want[k]);
    ++k;
  }
  CHECK(k == n);
}

template <typename T>
const T& as(const Message& m) {
  REQUIRE(std::holds_alternative<T>(m));
  return std::get<T>(m);
}

void check_header(const Header& h, MsgType type, std::uint32_t request_id,
                  std::uint32_t session_id) {
  CHECK(h.type == type);
  CHECK(h.request_id == request_id);
  CHECK(h.session_id == session_id);
  CHECK(h.flags == 0);
}

const std::vector<Golden>& goldens() {
  static const std::vector<Golden> g = {
      {"hello", "0000000f010000000000000100000000 0001 0001 00000003617070 00001092",
       [](Encoder& e) {
         e.hello(1, Hello{1, 1, "app", 4242});
       },
       [](const Header& h, const Message& m) {
         check_header(h, MsgType::kHello, 1, 0);
         CHECK(as<Hello>(m) == Hello{1, 1, "app", 4242});
       }},
      {"open", "0000001302000000000000020000000700000003617070 0000000474657374 00000001",
       [](Encoder& e) {
         e.open(2, 7, Open{"app", "test", kOpenReadOnly});
       },
       [](const Header& h, const Message& m) {
         check_header(h, MsgType::kOpen, 2, 7);
         CHECK(as<Open>(m) == Open{"app", "test", kOpenReadOnly});
       }},
      {"execute",
       "00000032030000000000000300000007 0000000853454c454354203f 0006 00 0101 02fffffffffffffffe "
       "033ff8000000000000 040000000368c3a9 050000000200ff",
       [](Encoder& e) { e.execute(3, 7, "SELECT ?", kParams, 6); },
       [](const Header& h, const Message& m) {
         check_header(h, MsgType::kExecute, 3, 7);
         const auto& x = as<Execute>(m);
         CHECK(x.sql == "SELECT ?");
         check_values(x.params, kParams, 6);
       }},
      {"one_shot",
       "00000038040000000000000400000000 00000003617070 00000000 00000000 0000001a44454c4554452046"
       "524f4d2074205748455245206964203d203f 0001 02000000000000002a",
       [](Encoder& e) {
         e.one_shot(4, "app", "", 0, "DELETE FROM t WHERE id = ?", kOneShotParams, 1);
       },
       [](const Header& h, const Message& m) {
         check_header(h, MsgType::kOneShot, 4, 0);
         const auto& x = as<OneShot>(m);
         CHECK(x.database == "app");
         CHECK(x.prefix == "");
         CHECK(x.flags == 0);
         CHECK(x.sql == "DELETE FROM t WHERE id = ?");
         check_values(x.params, kOneShotParams, 1);
       }},
      {"commit", "00000000050000000000000500000007",
       [](Encoder& e) { e.empty(MsgType::kCommit, 5, 7); },
       [](const Header& h, const Message& m) {
         check_header(h, MsgType::kCommit, 5, 7);
         CHECK(std::holds_alternative<Commit>(m));
       }},
      {"rollback", "00000000060000000000000600000007",
       [](Encoder& e) { e.empty(MsgType::kRollback, 6, 7); },
       [](const Header& h, const Message& m) {
         check_header(h, MsgType::kRollback, 6, 7);
         CHECK(std::holds_alternative<Rollback>(m));
       }},
      {"close", "00000000070000000000000700000007",
       [](Encoder& e) { e.empty(MsgType::kClose, 7, 7); },
       [](const Header& h, const Message& m) {
         check_header(h, MsgType::kClose, 7, 7);
         CHECK(std::holds_alternative<Close>(m));
       }},
      {"cancel", "00000000080000000000000800000007",
       [](Encoder& e) { e.empty(MsgType::kCancel, 8, 7); },
       [](const Header& h, const Message& m) {
         check_header(h, MsgType::kCancel, 8, 7);
         CHECK(std::holds_alternative<Cancel>(m));
       }},
      {"ping", "00000000090000000000000900000000",
       [](Encoder& e) { e.empty(MsgType::kPing, 9, 0); },
       [](const Header& h, const Message& m) {
         check_header(h, MsgType::kPing, 9, 0);
         CHECK(std::holds_alternative<Ping>(m));
       }},
      {"info", "000000130a0000000000000a00000000 00000003617070 0000000474657374 00000001",
       [](Encoder& e) {
         e.info(10, Info{"app", "test", kInfoTestConnection});
       },
       [](const Header& h, const Message& m) {
         check_header(h, MsgType::kInfo, 10, 0);
         CHECK(as<Info>(m) == Info{"app", "test", kInfoTestConnection});
       }},
      {"admin", "000000080b0000000000000b00000000 07 00000003333a37",
       [](Encoder& e) {
         e.admin(11, Admin{AdminCommand::kKill, "3:7"});
       },
       [](const Header& h, const Message& m) {
         check_header(h, MsgType::kAdmin, 11, 0);
         CHECK(as<Admin>(m) == Admin{AdminCommand::kKill, "3:7"});
       }},
      {"hello_ok", "00000013810000000000000100000000 0001 00000005302e312e30 01000000 00000064",
       [](Encoder& e) {
         e.hello_ok(1, HelloOk{1, "0.1.0", kDefaultMaxFrameBytes, 100});
       },
       [](const Header& h, const Message& m) {
         check_header(h, MsgType::kHelloOk, 1, 0);
         CHECK(as<HelloOk>(m) == HelloOk{1, "0.1.0", kDefaultMaxFrameBytes, 100});
       }},
      {"ok", "00000000820000000000000200000007", [](Encoder& e) { e.empty(MsgType::kOk, 2, 7); },
       [](const Header& h, const Message& m) {
         check_header(h, MsgType::kOk, 2, 7);
         CHECK(std::holds_alternative<Ok>(m));
       }},
      {"columns", "00000012830000000000000300000007 0002 000000026964 02 000000046e616d65 00",
       [](Encoder& e) { e.columns(3, 7, kColumns, 2); },
       [](const Header& h, const Message& m) {
         check_header(h, MsgType::kColumns, 3, 7);
         const auto& x = as<Columns>(m);
         REQUIRE(x.columns.size() == 2);
         std::vector<ColumnDesc> got;
         x.columns.for_each([&](const ColumnDesc& c) { got.push_back(c); });
         REQUIRE(got.size() == 2);
         CHECK(got[0] == kColumns[0]);
         CHECK(got[1] == kColumns[1]);
       }},
      {"rows",
       "0000001f840000000000000300000007 00000002 0002 020000000000000001 040000000161 "
       "020000000000000002 00",
       [](Encoder& e) {
         RowBatchEncoder rb(e, 3, 7, 2);
         rb.int64(1);
         rb.text("a");
         rb.end_row();
         rb.int64(2);
         rb.null();
         rb.end_row();
         rb.finish();
       },
       [](const Header& h, const Message& m) {
         check_header(h, MsgType::kRows, 3, 7);
         const auto& x = as<Rows>(m);
         CHECK(x.row_count == 2);
         CHECK(x.column_count == 2);
         check_values(x.values, kRowValues, 4);
       }},
      {"complete", "00000011850000000000000300000007 0000000000000002 0000000000000000 01",
       [](Encoder& e) {
         e.complete(3, 7, Complete{2, 0, true});
       },
       [](const Header& h, const Message& m) {
         check_header(h, MsgType::kComplete, 3, 7);
         CHECK(as<Complete>(m) == Complete{2, 0, true});
       }},
      {"error",
       "0000001b860000000000000400000000 04 000000053233353035 0000000d6475706c6963617465206b6579",
       [](Encoder& e) {
         e.error(4, 0, ErrorMsg{ErrorCategory::kConstraint, "23505", "duplicate key"});
       },
       [](const Header& h, const Message& m) {
         check_header(h, MsgType::kError, 4, 0);
         CHECK(as<ErrorMsg>(m) == ErrorMsg{ErrorCategory::kConstraint, "23505", "duplicate key"});
       }},
      {"pong", "00000000870000000000000900000000",
       [](Encoder& e) { e.empty(MsgType::kPong, 9, 0); },
       [](const Header& h, const Message& m) {
         check_header(h, MsgType::kPong, 9, 0);
         CHECK(std::holds_alternative<Pong>(m));
       }},
      {"info_result",
       "00000043880000000000000a00000000 0000000673716c697465 00000008746573742e617070 "
       "0000001773716c6974653a2f2f2f642f746573742e6170702e6462 00000006537472696e67 "
       "0000000454455854",
       [](Encoder& e) {
         e.info_result(
             10, InfoResult{"sqlite", "test.app", "sqlite:///d/test.app.db", "String", "TEXT"});
       },
       [](const Header& h, const Message& m) {
         check_header(h, MsgType::kInfoResult, 10, 0);
         CHECK(as<InfoResult>(m) ==
               InfoResult{"sqlite", "test.app", "sqlite:///d/test.app.db", "String", "TEXT"});
       }},
      {"admin_result", "0000000f890000000000000b00000000 0000000b7b226f6b223a747275657d",
       [](Encoder& e) { e.admin_result(11, "{\"ok\":true}"); },
       [](const Header& h, const Message& m) {
         check_header(h, MsgType::kAdminResult, 11, 0);
         CHECK(as<AdminResult>(m) == AdminResult{"{\"ok\":true}"});
       }},
  };
  return g;
}

TEST_SUITE("protocol") {
  TEST_CASE("golden vectors cover every message type") {
    std::vector<bool> seen(256, false);
    for (const Golden& g : goldens()) seen[from_hex(g.hex)[4]] = true;
    for (int t = 0; t < 256; ++t) {
      if (is_known(static_cast<MsgType>(t))) {
        CAPTURE(t);
        CHECK(seen[t]);
      }
    }
    CHECK(goldens().size() == std::variant_size_v<Message>);
  }

  TEST_CASE("golden vectors: encode gives exactly these bytes") {
    for (const Golden& g : goldens()) {
      CAPTURE(g.name);
      Bytes out;
      Encoder enc(out);
      g.encode(enc);
      CHECK(to_hex(out) == to_hex(from_hex(g.hex)));
    }
  }

  TEST_CASE("golden vectors: decode gives exactly the message, and it re-encodes the same") {
    for (const Golden& g : goldens()) {
      CAPTURE(g.name);
      const Bytes b = from_hex(g.hex);
      Header h;
      REQUIRE(parse_header(b.data(), kDefaultMaxFrameBytes, &h) == DecodeError::kOk);
      REQUIRE(h.length == b.size() - kHeaderSize);
      Message m;
      REQUIRE(decode(FrameView{h, b.data() + kHeaderSize}, &m) == DecodeError::kOk);
      g.check(h, m);
      CHECK(type_of(m) == h.type);
      Bytes again;
      Encoder enc(again);
      enc.message(h.request_id, h.session_id, m);
      CHECK(to_hex(again) == to_hex(b));
    }
  }

  TEST_CASE("golden vectors: the whole set as one stream") {
    Bytes stream;
    for (const Golden& g : goldens()) {
      const Bytes b = from_hex(g.hex);
      stream.insert(stream.end(), b.begin(), b.end());
    }
    FrameDecoder dec;
    std::size_t k = 0;
    CHECK(dec.feed(stream.data(), stream.size(), [&](const FrameView& f) {
      Message m;
      CHECK(decode(f, &m) == DecodeError::kOk);
      goldens()[k].check(f.header, m);
      ++k;
      return true;
    }) == DecodeError::kOk);
    CHECK(k == goldens().size());
    CHECK(dec.finish() == DecodeError::kOk);
  }

  TEST_CASE("golden vectors match the fuzz seed corpus") {
    // tests/fuzz/corpus/decoder/<name>.bin holds each vector's bytes.
    for (const Golden& g : goldens()) {
      CAPTURE(g.name);
      const std::string path = std::string(DBMGR_FUZZ_CORPUS_DIR) + "/" + g.name + ".bin";
      std::FILE* f = std::fopen(path.c_str(), "rb");
      REQUIRE(f != nullptr);
      Bytes file;
      int c;
      while ((c = std::fgetc(f)) != EOF) file.push_back(static_cast<std::uint8_t>(c));
      std::fclose(f);
      CHECK(to_hex(file) == to_hex(from_hex(g.hex)));
    }
  }
}

}  // namespace
}  // namespace dbmgr::proto
