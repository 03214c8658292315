// Google Benchmark micro-benchmarks of the protocol codec: row batches and small requests.
//
// Run: build-proto/tests/bench/codec_bench (a plain executable, not a meson test). Results go
// into docs/benchmarks.md by hand; nothing here asserts a speed.
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "dbmgr/protocol/codec.hpp"

namespace proto = dbmgr::proto;

namespace {

constexpr int kRows = 1000;
constexpr std::uint16_t kCols = 5;

// One row of 5 mixed columns: id, name, price, flag, note (NULL every third row).
struct RowSource {
  std::vector<std::string> names;
  std::vector<std::string> notes;
  RowSource() {
    for (int r = 0; r < kRows; ++r) {
      names.push_back("customer-" + std::to_string(r * 7919));
      notes.push_back(std::string(20 + r % 40, static_cast<char>('a' + r % 26)));
    }
  }
};

const RowSource& source() {
  static const RowSource s;
  return s;
}

// Encodes the 1000-row result into as many kRows frames as kMaxRowBatchBytes needs.
void encode_rows(proto::Encoder& enc) {
  const RowSource& s = source();
  int r = 0;
  while (r < kRows) {
    proto::RowBatchEncoder rb(enc, 1, 1, kCols);
    for (; r < kRows; ++r) {
      const std::size_t row_bytes =
          proto::encoded_size(proto::ValueTag::kInt64) +
          proto::encoded_size(proto::ValueTag::kText, s.names[r].size()) +
          proto::encoded_size(proto::ValueTag::kDouble) +
          proto::encoded_size(proto::ValueTag::kBool) +
          (r % 3 == 0 ? 1 : proto::encoded_size(proto::ValueTag::kText, s.notes[r].size()));
      if (!rb.fits(row_bytes)) break;
      rb.int64(r);
      rb.text(s.names[r]);
      rb.real(r * 1.25);
      rb.boolean(r % 2 == 0);
      if (r % 3 == 0) {
        rb.null();
      } else {
        rb.text(s.notes[r]);
      }
      rb.end_row();
    }
    rb.finish();
  }
}

void BM_EncodeRowBatch(benchmark::State& state) {
  std::vector<std::uint8_t> out;
  out.reserve(1 << 17);
  proto::Encoder enc(out);
  for (auto _ : state) {
    out.clear();
    encode_rows(enc);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) *
                          static_cast<std::int64_t>(out.size()));
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * kRows);
  state.counters["bytes_per_result"] = static_cast<double>(out.size());
}
BENCHMARK(BM_EncodeRowBatch);

// Frame split + decode() + reading every value, as a client does.
void BM_DecodeRowBatch(benchmark::State& state) {
  std::vector<std::uint8_t> wire;
  proto::Encoder enc(wire);
  encode_rows(enc);
  proto::FrameDecoder dec;
  std::int64_t sum = 0;
  for (auto _ : state) {
    const auto err = dec.feed(wire.data(), wire.size(), [&](const proto::FrameView& f) {
      proto::Message m;
      if (proto::decode(f, &m) != proto::DecodeError::kOk) return false;
      for (const proto::Value& v : std::get<proto::Rows>(m).values) {
        sum += v.i + static_cast<std::int64_t>(v.bytes.size());
      }
      return true;
    });
    if (err != proto::DecodeError::kOk) state.SkipWithError("decode failed");
    benchmark::DoNotOptimize(sum);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) *
                          static_cast<std::int64_t>(wire.size()));
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * kRows);
}
BENCHMARK(BM_DecodeRowBatch);

const proto::Value kParams[] = {proto::Value::int64(42), proto::Value::text("alice@example.com")};
constexpr std::string_view kSql = "SELECT id, name FROM users WHERE id = ? OR email = ?";

void BM_EncodeExecute(benchmark::State& state) {
  std::vector<std::uint8_t> out;
  out.reserve(256);
  proto::Encoder enc(out);
  std::size_t bytes = 0;
  for (auto _ : state) {
    out.clear();
    enc.execute(7, 3, kSql, kParams, 2);
    bytes += out.size();
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(bytes));
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_EncodeExecute);

// 64 pipelined small requests per chunk (execute, commit, ping), decoded in place.
void BM_DecodeSmallRequests(benchmark::State& state) {
  std::vector<std::uint8_t> wire;
  proto::Encoder enc(wire);
  for (int k = 0; k < 64; ++k) {
    switch (k % 3) {
      case 0:
        enc.execute(k + 1, 3, kSql, kParams, 2);
        break;
      case 1:
        enc.empty(proto::MsgType::kCommit, k + 1, 3);
        break;
      default:
        enc.empty(proto::MsgType::kPing, k + 1, 0);
        break;
    }
  }
  proto::FrameDecoder dec;
  std::size_t n = 0;
  for (auto _ : state) {
    dec.feed(wire.data(), wire.size(), [&](const proto::FrameView& f) {
      proto::Message m;
      n += proto::decode(f, &m) == proto::DecodeError::kOk;
      return true;
    });
    benchmark::DoNotOptimize(n);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) *
                          static_cast<std::int64_t>(wire.size()));
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * 64);
}
BENCHMARK(BM_DecodeSmallRequests);

}  // namespace

BENCHMARK_MAIN();
