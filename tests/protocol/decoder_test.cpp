// FrameDecoder: chunking independence, zero copy, allocation only after the length check,
// stop/resume for backpressure, errors mid-stream.
#include <doctest/doctest.h>

#include <random>

#include "random_messages.hpp"
#include "test_util.hpp"

namespace dbmgr::proto {
namespace {

using test::Bytes;
using test::frame;

struct Seen {
  std::vector<Bytes> frames;  // header fields re-encoded + payload
  DecodeError error = DecodeError::kOk;
  DecodeError finish = DecodeError::kOk;
  bool operator==(const Seen&) const = default;
};

Bytes copy_frame(const FrameView& f) {
  Bytes out;
  Encoder enc(out);
  enc.begin_frame(f.header.type, f.header.request_id, f.header.session_id);
  out.insert(out.end(), f.payload, f.payload + f.header.length);
  enc.end_frame(0);
  return out;
}

// Feeds `stream` in chunks whose sizes come from next_size().
template <typename NextSize>
Seen feed_in_chunks(const Bytes& stream, NextSize next_size,
                    std::uint32_t max = kDefaultMaxFrameBytes) {
  Seen s;
  FrameDecoder dec(max);
  std::size_t pos = 0;
  while (pos < stream.size() && s.error == DecodeError::kOk) {
    const std::size_t n = std::min(stream.size() - pos, next_size());
    s.error = dec.feed(stream.data() + pos, n, [&](const FrameView& f) {
      s.frames.push_back(copy_frame(f));
      return true;
    });
    pos += n;
  }
  s.finish = dec.finish();
  return s;
}

Bytes random_stream(std::uint32_t seed, int frames) {
  test::RandomMessages r(seed);
  Bytes out;
  Encoder enc(out);
  for (int k = 0; k < frames; ++k) r.frame(enc);
  return out;
}

TEST_SUITE("protocol") {
  TEST_CASE("decoder: whole, 1-byte and random chunks give the same frames") {
    const std::uint32_t seed = 777;
    INFO("seed " << seed);
    const Bytes stream = random_stream(seed, 500);
    const Seen whole = feed_in_chunks(stream, [&] { return stream.size(); });
    CHECK(whole.frames.size() == 500);
    CHECK(whole.error == DecodeError::kOk);
    CHECK(whole.finish == DecodeError::kOk);
    const Seen bytes = feed_in_chunks(stream, [] { return std::size_t{1}; });
    CHECK(bytes == whole);
    std::mt19937 rng(seed);
    for (int round = 0; round < 20; ++round) {
      const std::size_t max_chunk = std::size_t{1} << (round % 12);
      const Seen random = feed_in_chunks(stream, [&] { return 1 + rng() % max_chunk; });
      CAPTURE(round);
      CHECK(random == whole);
    }
    // Concatenated frames are exactly the input.
    Bytes joined;
    for (const Bytes& f : whole.frames) joined.insert(joined.end(), f.begin(), f.end());
    CHECK(joined == stream);
  }

  TEST_CASE("decoder: frames inside the chunk are views into it (zero copy)") {
    const Bytes stream = random_stream(1, 50);
    FrameDecoder dec;
    int frames = 0;
    CHECK(dec.feed(stream.data(), stream.size(), [&](const FrameView& f) {
      CHECK(f.payload >= stream.data());
      CHECK(f.payload + f.header.length <= stream.data() + stream.size());
      ++frames;
      return true;
    }) == DecodeError::kOk);
    CHECK(frames == 50);
    CHECK(dec.buffer_capacity() == 0);  // nothing was ever copied
    CHECK(dec.idle());
  }

  TEST_CASE("decoder: a split frame is buffered in exactly header + length bytes") {
    const Bytes f = frame(MsgType::kAdminResult, 1, 0, test::str_hex(std::string(1000, 'j')));
    FrameDecoder dec;
    int frames = 0;
    auto on = [&](const FrameView& v) {
      ++frames;
      CHECK(v.header.length == 1004);
      return true;
    };
    // Half a header: kept in the fixed header buffer, nothing allocated yet.
    CHECK(dec.feed(f.data(), 8, on) == DecodeError::kOk);
    CHECK(dec.buffer_capacity() == 0);
    CHECK(dec.buffered_bytes() == 8);
    // Rest of the header and some payload: now exactly one frame's worth is reserved.
    CHECK(dec.feed(f.data() + 8, 100, on) == DecodeError::kOk);
    CHECK(dec.buffer_capacity() == f.size());
    CHECK(dec.buffered_bytes() == 108);
    CHECK(dec.finish() == DecodeError::kTruncatedPayload);
    CHECK(dec.feed(f.data() + 108, f.size() - 108, on) == DecodeError::kOk);
    CHECK(frames == 1);
    CHECK(dec.idle());
    CHECK(dec.buffer_capacity() == f.size());
    dec.release();
    CHECK(dec.buffer_capacity() == 0);
  }

  TEST_CASE("decoder: oversized length rejected before any allocation") {
    Bytes f = frame(MsgType::kAdminResult, 1, 0, "");
    f[0] = 0x40;  // 1 GiB
    FrameDecoder dec(1024);
    DecodeError e = DecodeError::kOk;
    for (std::size_t k = 0; k < f.size(); ++k) {
      e = dec.feed(&f[k], 1, [](const FrameView&) { return true; });
      CHECK(dec.buffered_bytes() <= kHeaderSize);
    }
    CHECK(e == DecodeError::kOversizedFrame);
    CHECK(dec.buffer_capacity() == 0);
    CHECK(dec.error() == DecodeError::kOversizedFrame);
    // Stays failed.
    const Bytes ping = frame(MsgType::kPing, 2, 0, "");
    int frames = 0;
    CHECK(dec.feed(ping.data(), ping.size(), [&](const FrameView&) { return ++frames, true; }) ==
          DecodeError::kOversizedFrame);
    CHECK(frames == 0);
    CHECK(dec.finish() == DecodeError::kOversizedFrame);

    // Whole in one chunk: the same.
    FrameDecoder dec2(1024);
    CHECK(dec2.feed(f.data(), f.size(), [](const FrameView&) { return true; }) ==
          DecodeError::kOversizedFrame);
    CHECK(dec2.buffer_capacity() == 0);
  }

  TEST_CASE("decoder: the limit is inclusive and adjustable") {
    const Bytes f = frame(MsgType::kAdminResult, 1, 0, test::str_hex("abcd"));  // 8 bytes
    FrameDecoder dec(8);
    CHECK(dec.feed(f.data(), f.size(), [](const FrameView&) { return true; }) == DecodeError::kOk);
    dec.set_max_frame_bytes(7);
    CHECK(dec.feed(f.data(), f.size(), [](const FrameView&) { return true; }) ==
          DecodeError::kOversizedFrame);
  }

  TEST_CASE("decoder: frames before a bad header are delivered, then the error") {
    Bytes stream = frame(MsgType::kPing, 1, 0, "");
    const Bytes ok = frame(MsgType::kOk, 2, 3, "");
    stream.insert(stream.end(), ok.begin(), ok.end());
    Bytes bad = frame(MsgType::kPing, 3, 0, "");
    bad[4] = 0x55;  // unknown type
    stream.insert(stream.end(), bad.begin(), bad.end());
    stream.insert(stream.end(), ok.begin(), ok.end());
    for (std::size_t chunk : {stream.size(), std::size_t{1}, std::size_t{5}}) {
      CAPTURE(chunk);
      const Seen s = feed_in_chunks(stream, [&] { return chunk; });
      CHECK(s.frames.size() == 2);
      CHECK(s.error == DecodeError::kUnknownType);
      CHECK(s.finish == DecodeError::kUnknownType);
    }
    Bytes flags = frame(MsgType::kPing, 3, 0, "");
    flags[7] = 1;
    CHECK(feed_in_chunks(flags, [] { return std::size_t{3}; }).error == DecodeError::kBadHeader);
  }

  TEST_CASE("decoder: stop and resume (backpressure)") {
    const Bytes stream = random_stream(42, 40);
    const Seen whole = feed_in_chunks(stream, [&] { return stream.size(); });

    // Stop after every frame; resume until drained; the chunk itself is not needed again.
    FrameDecoder dec;
    Seen s;
    auto stop_each = [&](const FrameView& f) {
      s.frames.push_back(copy_frame(f));
      return false;
    };
    {
      Bytes chunk = stream;  // freed right after feed(): the decoder must have kept a copy
      CHECK(dec.feed(chunk.data(), chunk.size(), stop_each) == DecodeError::kOk);
    }
    CHECK(s.frames.size() == 1);
    CHECK(dec.paused());
    CHECK_FALSE(dec.idle());
    CHECK(dec.pending_bytes() == stream.size() - s.frames[0].size());
    CHECK(dec.finish() == DecodeError::kOk);  // kept bytes are whole frames: not truncated
    while (dec.paused()) {
      const std::size_t before = s.frames.size();
      CHECK(dec.resume(stop_each) == DecodeError::kOk);
      CHECK(s.frames.size() == before + 1);
    }
    CHECK(s.frames == whole.frames);
    CHECK(dec.idle());
    CHECK(dec.resume(stop_each) == DecodeError::kOk);  // no-op
    CHECK(s.frames.size() == whole.frames.size());
  }

  TEST_CASE("decoder: bytes fed while paused queue behind the kept ones") {
    const Bytes stream = random_stream(43, 30);
    const Seen whole = feed_in_chunks(stream, [&] { return stream.size(); });
    std::mt19937 rng(43);
    FrameDecoder dec;
    Seen s;
    int budget = 0;  // frames the consumer accepts before it pushes back
    auto on = [&](const FrameView& f) {
      s.frames.push_back(copy_frame(f));
      return --budget > 0;
    };
    std::size_t pos = 0;
    while (pos < stream.size()) {
      const std::size_t n = std::min<std::size_t>(stream.size() - pos, 1 + rng() % 300);
      budget = 1 + static_cast<int>(rng() % 3);
      CHECK(dec.feed(stream.data() + pos, n, on) == DecodeError::kOk);
      pos += n;
    }
    while (dec.paused()) {
      budget = 2;
      CHECK(dec.resume(on) == DecodeError::kOk);
    }
    CHECK(dec.finish() == DecodeError::kOk);
    CHECK(s.frames == whole.frames);
  }

  TEST_CASE("decoder: stop with a partial frame behind it, and finish() while paused") {
    const Bytes a = frame(MsgType::kPing, 1, 0, "");
    const Bytes b = frame(MsgType::kAdminResult, 2, 0, test::str_hex("xyz"));
    Bytes stream = a;
    stream.insert(stream.end(), b.begin(), b.end() - 2);  // b is cut
    FrameDecoder dec;
    int frames = 0;
    CHECK(dec.feed(stream.data(), stream.size(),
                   [&](const FrameView&) { return ++frames, false; }) == DecodeError::kOk);
    CHECK(frames == 1);
    CHECK(dec.paused());
    CHECK(dec.finish() == DecodeError::kTruncatedPayload);
    // Resume moves the partial frame into the assembly buffer; the rest completes it.
    CHECK(dec.resume([&](const FrameView&) { return ++frames, true; }) == DecodeError::kOk);
    CHECK_FALSE(dec.paused());
    CHECK(frames == 1);
    CHECK(dec.feed(b.data() + b.size() - 2, 2, [&](const FrameView& f) {
      CHECK(f.header.request_id == 2);
      return ++frames, true;
    }) == DecodeError::kOk);
    CHECK(frames == 2);
    CHECK(dec.idle());
  }

  TEST_CASE("decoder: stop on a frame that was assembled from pieces") {
    const Bytes a = frame(MsgType::kAdminResult, 1, 0, test::str_hex("hello"));
    const Bytes b = frame(MsgType::kPong, 2, 0, "");
    Bytes stream = a;
    stream.insert(stream.end(), b.begin(), b.end());
    FrameDecoder dec;
    std::vector<std::uint32_t> ids;
    auto on = [&](const FrameView& f) {
      ids.push_back(f.header.request_id);
      return false;
    };
    CHECK(dec.feed(stream.data(), 10, on) == DecodeError::kOk);
    CHECK(dec.feed(stream.data() + 10, stream.size() - 10, on) == DecodeError::kOk);
    CHECK(ids == std::vector<std::uint32_t>{1});
    CHECK(dec.paused());
    CHECK(dec.pending_bytes() == b.size());
    CHECK(dec.resume(on) == DecodeError::kOk);
    CHECK(ids == std::vector<std::uint32_t>{1, 2});
    CHECK(dec.idle());
    dec.release();
    CHECK(dec.buffer_capacity() == 0);
  }

  TEST_CASE("decoder: empty-payload frames split anywhere") {
    Bytes stream;
    for (std::uint32_t k = 1; k <= 10; ++k) {
      const Bytes f = frame(MsgType::kPing, k, 0, "");
      stream.insert(stream.end(), f.begin(), f.end());
    }
    for (std::size_t chunk = 1; chunk <= 33; ++chunk) {
      const Seen s = feed_in_chunks(stream, [&] { return chunk; });
      CAPTURE(chunk);
      CHECK(s.frames.size() == 10);
      CHECK(s.finish == DecodeError::kOk);
    }
  }
}

}  // namespace
}  // namespace dbmgr::proto
