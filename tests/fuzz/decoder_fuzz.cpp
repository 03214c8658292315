// libFuzzer target: FrameDecoder under several chunkings, decode() of every frame, re-encoding.
//
// For one input it checks that (1) the frames and the error are the same whether the bytes
// arrive whole, one at a time, in pseudo-random chunks, or with a stop/resume after every
// frame; (2) decode() never reads out of bounds (ASan) and (3) every frame that decodes
// re-encodes to exactly its own bytes, since the v1 format has one encoding per message.
// The input is also decoded directly as one payload whose type is the first byte, which
// reaches the payload checks faster than whole frames do.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "dbmgr/protocol/codec.hpp"

namespace proto = dbmgr::proto;

namespace {

constexpr std::uint32_t kFuzzMaxFrame = 2048;

struct Outcome {
  std::vector<std::vector<std::uint8_t>> frames;  // header + payload, as delivered
  proto::DecodeError error = proto::DecodeError::kOk;
  proto::DecodeError finish = proto::DecodeError::kOk;
  bool operator==(const Outcome&) const = default;
};

std::vector<std::uint8_t> frame_bytes(const proto::FrameView& f) {
  std::vector<std::uint8_t> out;
  proto::Encoder enc(out);
  enc.begin_frame(f.header.type, f.header.request_id, f.header.session_id);
  out.insert(out.end(), f.payload, f.payload + f.header.length);
  enc.end_frame(0);
  return out;
}

void check(bool ok) {
  if (!ok) std::abort();
}

// Decodes, walks every view, and re-encodes when the frame is valid.
void decode_and_reencode(const proto::FrameView& f) {
  proto::Message m;
  if (proto::decode(f, &m) != proto::DecodeError::kOk) return;
  // Walk lists so their iterators run over what decode() accepted.
  std::size_t sink = 0;
  if (auto* r = std::get_if<proto::Rows>(&m)) {
    for (const proto::Value& v : r->values) sink += v.bytes.size() + static_cast<int>(v.tag);
  } else if (auto* c = std::get_if<proto::Columns>(&m)) {
    c->columns.for_each([&](const proto::ColumnDesc& d) { sink += d.name.size(); });
  } else if (auto* e = std::get_if<proto::Execute>(&m)) {
    for (const proto::Value& v : e->params) sink += v.bytes.size();
  }
  (void)sink;
  std::vector<std::uint8_t> out;
  proto::Encoder enc(out);
  enc.message(f.header.request_id, f.header.session_id, m);
  check(out.size() == proto::kHeaderSize + f.header.length);
  check(std::memcmp(out.data() + proto::kHeaderSize, f.payload, f.header.length) == 0);
  check(proto::type_of(m) == f.header.type);
  // And the re-encoded frame decodes to the same message.
  proto::Message again;
  proto::FrameView g{f.header, out.data() + proto::kHeaderSize};
  check(proto::decode(g, &again) == proto::DecodeError::kOk);
  check(again == m);
}

template <typename NextChunk>
Outcome run(const std::uint8_t* data, std::size_t size, NextChunk next_chunk, bool stop_each) {
  Outcome o;
  proto::FrameDecoder dec(kFuzzMaxFrame);
  auto on_frame = [&](const proto::FrameView& f) {
    o.frames.push_back(frame_bytes(f));
    decode_and_reencode(f);
    return !stop_each;
  };
  std::size_t pos = 0;
  while (pos < size && o.error == proto::DecodeError::kOk) {
    const std::size_t n = std::min(size - pos, next_chunk());
    o.error = dec.feed(data + pos, n, on_frame);
    pos += n;
    while (o.error == proto::DecodeError::kOk && dec.paused()) o.error = dec.resume(on_frame);
  }
  o.finish = dec.finish();
  check(dec.buffered_bytes() <= proto::kHeaderSize + kFuzzMaxFrame);
  return o;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // Direct payload decode: first byte is the type, the session id is whatever the type needs.
  if (size >= 1) {
    proto::FrameView f;
    f.header.type = static_cast<proto::MsgType>(data[0]);
    f.header.length = static_cast<std::uint32_t>(size - 1);
    f.header.request_id = 7;
    f.header.session_id = proto::needs_session(f.header.type) ? 3 : 0;
    f.payload = data + 1;
    decode_and_reencode(f);
  }

  const Outcome whole = run(
      data, size, [&] { return size; }, false);
  const Outcome bytewise = run(
      data, size, [] { return std::size_t{1}; }, false);
  check(whole == bytewise);
  std::uint32_t state = static_cast<std::uint32_t>(size) * 2654435761u + 1;
  const Outcome random = run(
      data, size,
      [&] {
        state = state * 1103515245u + 12345u;
        return std::size_t{1} + (state >> 16) % 97;
      },
      false);
  check(whole == random);
  const Outcome stopping = run(
      data, size, [&] { return size; }, true);
  check(whole == stopping);

  // Backpressure with bytes arriving while paused: stop after every frame, resume only now
  // and then, keep feeding in between.
  {
    Outcome o;
    proto::FrameDecoder dec(kFuzzMaxFrame);
    auto on_frame = [&](const proto::FrameView& f) {
      o.frames.push_back(frame_bytes(f));
      return false;
    };
    std::uint32_t st = static_cast<std::uint32_t>(size) + 99;
    std::size_t pos = 0;
    while (pos < size && o.error == proto::DecodeError::kOk) {
      st = st * 1103515245u + 12345u;
      const std::size_t n = std::min(size - pos, std::size_t{1} + (st >> 16) % 61);
      o.error = dec.feed(data + pos, n, on_frame);
      pos += n;
      if (o.error == proto::DecodeError::kOk && (st >> 8) % 3 == 0) o.error = dec.resume(on_frame);
    }
    while (o.error == proto::DecodeError::kOk && dec.paused()) o.error = dec.resume(on_frame);
    o.finish = dec.finish();
    check(whole == o);
  }
  return 0;
}
