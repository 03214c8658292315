// ReadyQueue: the loop's list of deferred work, drained in the check phase.
#include "ready_queue.hpp"

#include <cassert>
#include <exception>

#include <spdlog/spdlog.h>

#include "clock.hpp"
#include "guard.hpp"

namespace dbmgr::daemon {

const TimeSource& TimeSource::system() {
  struct Steady final : TimeSource {
    Clock::time_point now() const override { return Clock::now(); }
  };
  static const Steady steady;
  return steady;
}

ReadyQueue::ReadyQueue(uv_loop_t* loop) {
  if (loop == nullptr) return;
  uv_check_init(loop, &check_);
  uv_idle_init(loop, &idle_);
  check_.data = idle_.data = this;
  uv_check_start(&check_, &ReadyQueue::on_check);
  uv_unref(reinterpret_cast<uv_handle_t*>(&check_));  // the check alone keeps no loop alive
  has_handles_ = true;
}

ReadyQueue::~ReadyQueue() { assert(!has_handles_ && "ReadyQueue::close() before destruction"); }

void ReadyQueue::close() {
  if (!has_handles_) return;
  has_handles_ = false;
  uv_close(reinterpret_cast<uv_handle_t*>(&check_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&idle_), nullptr);
}

void ReadyQueue::post(Deferred* d) {
  if (d->queued_) return;
  d->queued_ = true;
  d->next_ = nullptr;
  if (tail_ != nullptr) tail_->next_ = d; else head_ = d;
  tail_ = d;
  if (has_handles_ && !idle_active_) {  // poll must not block while work is ready
    uv_idle_start(&idle_, &ReadyQueue::on_idle);
    idle_active_ = true;
  }
}

void ReadyQueue::post_next_turn(Deferred* d) {
  if (d->queued_) return;
  d->queued_ = true;
  d->next_ = nullptr;
  if (later_tail_ != nullptr) later_tail_->next_ = d; else later_head_ = d;
  later_tail_ = d;
  if (has_handles_ && !idle_active_) {
    uv_idle_start(&idle_, &ReadyQueue::on_idle);
    idle_active_ = true;
  }
}

namespace {
// Unlinks d from the list head..tail; true when it was there.
bool unlink(Deferred*& head, Deferred*& tail, Deferred* d, Deferred* (*next)(Deferred*),
            void (*set_next)(Deferred*, Deferred*)) {
  Deferred* prev = nullptr;
  for (Deferred* p = head; p != nullptr; prev = p, p = next(p)) {
    if (p != d) continue;
    if (prev != nullptr) set_next(prev, next(p)); else head = next(p);
    if (tail == p) tail = prev;
    return true;
  }
  return false;
}
}  // namespace

void ReadyQueue::cancel(Deferred* d) {
  if (!d->queued_) return;
  auto next = [](Deferred* p) { return p->next_; };
  auto set_next = [](Deferred* p, Deferred* n) { p->next_ = n; };
  if (!unlink(head_, tail_, d, next, set_next)) unlink(later_head_, later_tail_, d, next, set_next);
  d->queued_ = false;
  d->next_ = nullptr;
}

void ReadyQueue::drain() {
  if (draining_) return;  // an item that drains runs the rest from the outer loop
  if (later_head_ != nullptr) {  // what waited for this turn goes after what is queued
    if (tail_ != nullptr) tail_->next_ = later_head_; else head_ = later_head_;
    tail_ = later_tail_;
    later_head_ = later_tail_ = nullptr;
  }
  drain_queue();
}

void ReadyQueue::drain_queue() {
  if (draining_) return;
  draining_ = true;
  while (Deferred* d = head_) {
    head_ = d->next_;
    if (head_ == nullptr) tail_ = nullptr;
    d->next_ = nullptr;
    d->queued_ = false;
    guard_callback("deferred work", [d] { d->run_deferred(); });
  }
  draining_ = false;
  if (idle_active_ && later_head_ == nullptr) {  // work for the next turn keeps poll from blocking
    uv_idle_stop(&idle_);
    idle_active_ = false;
  }
}

void ReadyQueue::on_check(uv_check_t* h) { static_cast<ReadyQueue*>(h->data)->drain(); }

// The idle handle keeps poll from blocking. It runs what timers posted; what waits for the
// next turn stays for the check phase, after this iteration's I/O.
void ReadyQueue::on_idle(uv_idle_t* h) { static_cast<ReadyQueue*>(h->data)->drain_queue(); }

std::atomic<std::uint64_t>& internal_errors() {
  static std::atomic<std::uint64_t> n{0};
  return n;
}

void report_internal_error(std::string_view where, const char* what) noexcept {
  internal_errors().fetch_add(1, std::memory_order_relaxed);
  try {
    spdlog::error("internal error in {}: {}", where, what);
  } catch (...) {  // logging failed too (out of memory): the count remains
  }
}

}  // namespace dbmgr::daemon
