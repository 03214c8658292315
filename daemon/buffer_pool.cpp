// Byte buffers borrowed while a frame is in flight (see buffer_pool.hpp).
#include "buffer_pool.hpp"

namespace dbmgr::daemon {

BufferPool& BufferPool::instance() {
  static BufferPool pool;
  return pool;
}

std::vector<std::uint8_t> BufferPool::take() {
  {
    std::lock_guard lock(mu_);
    if (!free_.empty()) {
      std::vector<std::uint8_t> v = std::move(free_.back());
      free_.pop_back();
      return v;
    }
  }
  std::vector<std::uint8_t> v;
  v.reserve(kInitialCapacity);
  return v;
}

void BufferPool::give(std::vector<std::uint8_t>&& v) {
  if (v.capacity() == 0 || v.capacity() > kMaxKeptCapacity) return;  // freed by the caller
  v.clear();
  std::lock_guard lock(mu_);
  if (free_.size() < kMaxKept) free_.push_back(std::move(v));
}

std::size_t BufferPool::kept() const {
  std::lock_guard lock(mu_);
  return free_.size();
}

}  // namespace dbmgr::daemon
