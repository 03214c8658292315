// BlockingPool: a thread per concurrent blocking call, completions through one uv_async_t.
#include "backend/blocking_pool.hpp"

#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace dbmgr::daemon::blocking {
namespace {

struct Job {
  void* arg;
  Fn work;
  Fn done;
};

class Pool {
 public:
  explicit Pool(uv_loop_t* loop) {
    uv_async_init(loop, &async_, &Pool::on_async);
    async_.data = this;
    uv_unref(reinterpret_cast<uv_handle_t*>(&async_));
  }

  void submit(Job j) {
    if (in_flight_++ == 0) uv_ref(reinterpret_cast<uv_handle_t*>(&async_));
    std::lock_guard<std::mutex> lock(mu_);
    todo_.push_back(j);
    if (idle_ == 0 && static_cast<int>(threads_.size()) < kMaxThreads) {
      threads_.emplace_back([this] { run(); });
    } else {
      cv_.notify_one();
    }
  }

  void close() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
    threads_.clear();
    uv_close(reinterpret_cast<uv_handle_t*>(&async_), [](uv_handle_t* h) {
      delete static_cast<Pool*>(h->data);
    });
  }

  int threads() {
    std::lock_guard<std::mutex> lock(mu_);
    return static_cast<int>(threads_.size());
  }

 private:
  void run() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      while (!stop_ && todo_.empty()) {
        ++idle_;
        cv_.wait(lock);
        --idle_;
      }
      if (todo_.empty()) return;  // stopping, nothing left
      Job j = todo_.front();
      todo_.pop_front();
      lock.unlock();
      j.work(j.arg);
      lock.lock();
      done_.push_back(j);
      uv_async_send(&async_);
    }
  }

  static void on_async(uv_async_t* h) {
    auto* self = static_cast<Pool*>(h->data);
    std::vector<Job> done;
    {
      std::lock_guard<std::mutex> lock(self->mu_);
      done.swap(self->done_);
    }
    for (const Job& j : done) {
      if (--self->in_flight_ == 0) uv_unref(reinterpret_cast<uv_handle_t*>(&self->async_));
      j.done(j.arg);  // may submit() again
    }
  }

  uv_async_t async_{};
  int in_flight_ = 0;  // loop thread
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> todo_;  // guarded by mu_
  std::vector<Job> done_;
  std::vector<std::thread> threads_;
  int idle_ = 0;
  bool stop_ = false;
};

std::mutex registry_mu;
std::map<uv_loop_t*, Pool*>& registry() {
  static std::map<uv_loop_t*, Pool*> r;
  return r;
}

Pool& pool_of(uv_loop_t* loop) {
  std::lock_guard<std::mutex> lock(registry_mu);
  Pool*& p = registry()[loop];
  if (p == nullptr) p = new Pool(loop);
  return *p;
}

}  // namespace

void submit(uv_loop_t* loop, void* arg, Fn work, Fn done) { pool_of(loop).submit(Job{arg, work, done}); }

void close_all(uv_loop_t* loop) {
  Pool* p = nullptr;
  {
    std::lock_guard<std::mutex> lock(registry_mu);
    auto it = registry().find(loop);
    if (it == registry().end()) return;
    p = it->second;
    registry().erase(it);
  }
  p->close();
}

int threads(uv_loop_t* loop) {
  {
    std::lock_guard<std::mutex> lock(registry_mu);
    if (registry().count(loop) == 0) return 0;
  }
  return pool_of(loop).threads();
}

}  // namespace dbmgr::daemon::blocking
