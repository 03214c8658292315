// Template bodies of codec.hpp: FrameDecoder::feed/resume and ColumnList::for_each.
//
// Included at the end of codec.hpp; do not include it directly. Same ownership and
// thread-safety rules as codec.hpp.
#pragma once

#include <algorithm>
#include <cstring>

namespace dbmgr::proto {

namespace detail {

inline std::uint16_t load_be16(const void* p) {
  const auto* b = static_cast<const std::uint8_t*>(p);
  return static_cast<std::uint16_t>((b[0] << 8) | b[1]);
}

inline std::uint32_t load_be32(const void* p) {
  const auto* b = static_cast<const std::uint8_t*>(p);
  return (std::uint32_t{b[0]} << 24) | (std::uint32_t{b[1]} << 16) | (std::uint32_t{b[2]} << 8) |
         std::uint32_t{b[3]};
}

inline std::uint64_t load_be64(const void* p) {
  const auto* b = static_cast<const std::uint8_t*>(p);
  return (std::uint64_t{load_be32(b)} << 32) | load_be32(b + 4);
}

}  // namespace detail

template <typename F>
void ColumnList::for_each(F&& f) const {
  // raw_ was validated by decode(): per column u32 length, name bytes, u8 tag.
  const char* p = raw_.data();
  for (std::uint16_t i = 0; i < count_; ++i) {
    const std::uint32_t len = detail::load_be32(p);
    ColumnDesc c;
    c.name = std::string_view(p + 4, len);
    c.type = static_cast<ValueTag>(static_cast<std::uint8_t>(p[4 + len]));
    p += 5 + len;
    f(c);
  }
}

template <typename OnFrame>
FrameDecoder::Step FrameDecoder::process(const std::uint8_t* data, std::size_t n,
                                         OnFrame& on_frame) {
  Step st;
  std::size_t pos = 0;

  // 1. Continue a frame split across earlier chunks.
  if (header_have_ > 0 || !buffered_.empty()) {
    if (buffered_.empty()) {
      const std::size_t take = std::min<std::size_t>(kHeaderSize - header_have_, n);
      std::memcpy(header_buf_.data() + header_have_, data, take);
      header_have_ = static_cast<std::uint8_t>(header_have_ + take);
      pos += take;
      if (header_have_ < kHeaderSize) {
        st.consumed = pos;
        return st;
      }
      Header h;
      const DecodeError e = parse_header(header_buf_.data(), max_frame_bytes_, &h);
      if (e != DecodeError::kOk) {
        failed_ = e;
        failed_length_ = load_length(header_buf_.data());
        st.error = e;
        st.consumed = pos;
        return st;
      }
      // The length passed the limit: now, and only now, memory for the frame is reserved.
      buffered_.reserve(kHeaderSize + std::size_t{h.length});
      buffered_.assign(header_buf_.begin(), header_buf_.end());
      header_have_ = 0;
      current_ = h;
    }
    const std::size_t want = kHeaderSize + std::size_t{current_.length} - buffered_.size();
    const std::size_t take = std::min(want, n - pos);
    buffered_.insert(buffered_.end(), data + pos, data + pos + take);
    pos += take;
    if (take < want) {
      st.consumed = pos;
      return st;
    }
    const FrameView f{current_, buffered_.data() + kHeaderSize};
    const bool go = on_frame(f);
    buffered_.clear();  // keeps capacity: the next split frame of this size costs nothing
    if (!go) {
      st.stopped = true;
      st.consumed = pos;
      return st;
    }
  }

  // 2. Frames wholly inside the chunk: handed over in place.
  while (n - pos >= kHeaderSize) {
    Header h;
    const DecodeError e = parse_header(data + pos, max_frame_bytes_, &h);
    if (e != DecodeError::kOk) {
      failed_ = e;
      failed_length_ = load_length(data + pos);
      st.error = e;
      st.consumed = pos;
      return st;
    }
    if (n - pos - kHeaderSize < h.length) {
      // 3a. Header complete, payload split: reserve exactly the frame, keep what we have.
      buffered_.reserve(kHeaderSize + std::size_t{h.length});
      buffered_.assign(data + pos, data + n);
      current_ = h;
      st.consumed = n;
      return st;
    }
    const FrameView f{h, data + pos + kHeaderSize};
    pos += kHeaderSize + h.length;
    if (!on_frame(f)) {
      st.stopped = true;
      st.consumed = pos;
      return st;
    }
  }

  // 3b. A header split across chunks: keep its first bytes in the fixed header buffer.
  if (pos < n) {
    std::memcpy(header_buf_.data(), data + pos, n - pos);
    header_have_ = static_cast<std::uint8_t>(n - pos);
  }
  st.consumed = n;
  return st;
}

template <typename OnFrame>
DecodeError FrameDecoder::feed(const std::uint8_t* data, std::size_t n, OnFrame&& on_frame) {
  if (failed_ != DecodeError::kOk) return failed_;
  if (paused()) {
    // Keep order: the new bytes go behind the ones still waiting. Drop the delivered prefix
    // first so a consumer that keeps feeding while paused does not grow the vector forever.
    pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(pending_pos_));
    pending_pos_ = 0;
    pending_.insert(pending_.end(), data, data + n);
    return resume(on_frame);
  }
  const Step st = process(data, n, on_frame);
  if (st.stopped && st.consumed < n) {
    pending_.assign(data + st.consumed, data + n);
    pending_pos_ = 0;
  }
  return st.error;
}

template <typename OnFrame>
DecodeError FrameDecoder::resume(OnFrame&& on_frame) {
  if (failed_ != DecodeError::kOk) return failed_;
  if (!paused()) {
    pending_.clear();
    pending_pos_ = 0;
    return DecodeError::kOk;
  }
  const std::size_t left = pending_.size() - pending_pos_;
  const Step st = process(pending_.data() + pending_pos_, left, on_frame);
  if (st.stopped && st.consumed < left) {
    pending_pos_ += st.consumed;
  } else {
    pending_.clear();  // keeps capacity for the next stop; release() frees it
    pending_pos_ = 0;
  }
  return st.error;
}

}  // namespace dbmgr::proto
