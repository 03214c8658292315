// BlockingPool: every call gets a thread of its own when the others are busy, even calls
// submitted in the same loop turn as an idle thread's wake-up; completions arrive on the
// loop thread; the loop runs while calls are in flight and stops after them.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include <doctest/doctest.h>
#include <uv.h>

#include "backend/blocking_pool.hpp"

using namespace dbmgr::daemon;

namespace {

// N calls that each wait for all N to be running at once (or give up after 10 s).
struct Rendezvous {
  std::mutex mu;
  std::condition_variable cv;
  int arrived = 0;
  int want = 0;
  std::atomic<int> met{0};
  std::atomic<int> done{0};
  std::thread::id loop_thread;
  std::atomic<int> done_off_loop{0};
};

void meet(void* p) {
  auto* r = static_cast<Rendezvous*>(p);
  std::unique_lock<std::mutex> lock(r->mu);
  ++r->arrived;
  r->cv.notify_all();
  if (r->cv.wait_for(lock, std::chrono::seconds(10), [r] { return r->arrived >= r->want; })) {
    ++r->met;
  }
}

void finished(void* p) {
  auto* r = static_cast<Rendezvous*>(p);
  if (std::this_thread::get_id() != r->loop_thread) ++r->done_off_loop;
  ++r->done;
}

}  // namespace

TEST_CASE("blocking pool: calls submitted together all run at once, on idle threads or new ones") {
  uv_loop_t loop;
  uv_loop_init(&loop);
  Rendezvous warm;
  warm.want = 1;
  warm.loop_thread = std::this_thread::get_id();
  blocking::submit(&loop, &warm, meet, finished);
  uv_run(&loop, UV_RUN_DEFAULT);  // returns once the call completed
  CHECK(warm.done == 1);
  CHECK(blocking::threads(&loop) == 1);  // one thread made, now idle

  // Three calls in one turn: the idle thread takes one, two more threads are made. Each
  // call waits until all three run: calls queued behind another would never meet.
  Rendezvous r;
  r.want = 3;
  r.loop_thread = std::this_thread::get_id();
  for (int i = 0; i < 3; ++i) blocking::submit(&loop, &r, meet, finished);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(r.done == 3);
  CHECK(r.met == 3);
  CHECK(r.done_off_loop == 0);  // completions on the loop thread
  CHECK(blocking::threads(&loop) == 3);

  // Reused, not grown, when enough threads are idle.
  Rendezvous again;
  again.want = 2;
  again.loop_thread = std::this_thread::get_id();
  for (int i = 0; i < 2; ++i) blocking::submit(&loop, &again, meet, finished);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(again.met == 2);
  CHECK(blocking::threads(&loop) == 3);

  blocking::close_all(&loop);
  uv_run(&loop, UV_RUN_NOWAIT);
  CHECK(uv_loop_close(&loop) == 0);
}
