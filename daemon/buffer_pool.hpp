// Byte buffers borrowed while a frame is in flight, returned when it has been written.
//
// A client connection owns no buffer while idle: replies are encoded into a Buffer taken
// from the pool and handed back after the socket write completes. Worker threads (SQLite)
// take buffers too, so the pool is guarded by a mutex; a take/give pair is two uncontended
// lock operations and no malloc in steady state. Buffers grown past kMaxKeptCapacity are
// freed instead of kept, so one huge result does not pin memory.
#pragma once

#include <cstdint>
#include <mutex>
#include <utility>
#include <vector>

namespace dbmgr::daemon {

class BufferPool {
 public:
  static constexpr std::size_t kInitialCapacity = 16 * 1024;
  static constexpr std::size_t kMaxKeptCapacity = 1024 * 1024;
  static constexpr std::size_t kMaxKept = 256;

  static BufferPool& instance();
  std::vector<std::uint8_t> take();
  void give(std::vector<std::uint8_t>&& v);
  std::size_t kept() const;

 private:
  mutable std::mutex mu_;
  std::vector<std::vector<std::uint8_t>> free_;  // guarded by mu_
};

// A pooled byte vector: taken on first use, returned on destruction.
class Buffer {
 public:
  Buffer() = default;
  Buffer(Buffer&& o) noexcept : v_(std::move(o.v_)), taken_(std::exchange(o.taken_, false)) {}
  Buffer& operator=(Buffer&& o) noexcept {
    if (this != &o) {
      release();
      v_ = std::move(o.v_);
      taken_ = std::exchange(o.taken_, false);
    }
    return *this;
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() { release(); }

  std::vector<std::uint8_t>& bytes() {
    if (!taken_) {
      v_ = BufferPool::instance().take();
      taken_ = true;
    }
    return v_;
  }
  bool empty() const { return v_.empty(); }
  std::size_t size() const { return v_.size(); }
  const std::uint8_t* data() const { return v_.data(); }
  void release() {
    if (taken_) {
      v_.clear();
      BufferPool::instance().give(std::move(v_));
      v_ = {};
      taken_ = false;
    }
  }

 private:
  std::vector<std::uint8_t> v_;
  bool taken_ = false;
};

}  // namespace dbmgr::daemon
