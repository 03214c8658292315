// ReadyQueue: FIFO within a drain, cancel, and post_next_turn() waiting for the next drain,
// both without a loop (drain() by hand) and on a real libuv loop, where next-turn work must
// run only after that iteration's I/O.
#include <unistd.h>
#include <uv.h>

#include <functional>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "ready_queue.hpp"

using dbmgr::daemon::Deferred;
using dbmgr::daemon::ReadyQueue;

namespace {
struct Item final : Deferred {
  std::function<void()> fn;
  void run_deferred() override { fn(); }
};
}  // namespace

TEST_CASE("items posted while draining run in the same drain; next-turn items wait") {
  ReadyQueue q;
  std::vector<std::string> log;
  Item a, b, c, later;
  a.fn = [&] {
    log.push_back("a");
    q.post(&b);            // same drain, after c
    q.post_next_turn(&later);  // next drain
  };
  b.fn = [&] { log.push_back("b"); };
  c.fn = [&] { log.push_back("c"); };
  later.fn = [&] { log.push_back("later"); };
  q.post(&a);
  q.post(&c);
  q.drain();
  CHECK(log == std::vector<std::string>{"a", "c", "b"});
  CHECK(!q.empty());
  CHECK(later.queued());
  q.drain();
  CHECK(log == std::vector<std::string>{"a", "c", "b", "later"});
  CHECK(q.empty());
}

TEST_CASE("cancel takes an item out of either list; posting twice runs once") {
  ReadyQueue q;
  int runs = 0;
  Item a, b;
  a.fn = b.fn = [&] { ++runs; };
  q.post(&a);
  q.post(&a);
  q.post_next_turn(&b);
  q.post(&b);  // already queued (for the next turn): stays there
  q.cancel(&b);
  CHECK(!b.queued());
  q.drain();
  CHECK(runs == 1);
  q.post_next_turn(&a);
  q.cancel(&a);
  q.drain();
  CHECK(runs == 1);
  CHECK(q.empty());
}

TEST_CASE("on a loop, next-turn work runs after that iteration's I/O, and poll does not block") {
  uv_loop_t loop;
  uv_loop_init(&loop);
  {
    ReadyQueue q(&loop);
    std::vector<std::string> log;
    // An I/O event that is ready at once: a pipe with a byte in it.
    int fds[2];
    REQUIRE(uv_pipe(fds, 0, 0) == 0);
    uv_poll_t io;
    uv_poll_init(&loop, &io, fds[0]);
    io.data = &log;
    Item first, next;
    first.fn = [&] {
      log.push_back("first");
      q.post_next_turn(&next);
      REQUIRE(write(fds[1], "x", 1) == 1);  // readable from now on
    };
    next.fn = [&] {
      log.push_back("next");
      uv_poll_stop(&io);
      q.close();
      uv_close(reinterpret_cast<uv_handle_t*>(&io), nullptr);
    };
    uv_poll_start(&io, UV_READABLE, [](uv_poll_t* h, int, int) {
      auto* l = static_cast<std::vector<std::string>*>(h->data);
      if (l->empty() || l->back() != "io") l->push_back("io");
    });
    q.post(&first);
    uv_run(&loop, UV_RUN_DEFAULT);  // ends once next closed every handle
    CHECK(log == std::vector<std::string>{"first", "io", "next"});
    close(fds[0]);
    close(fds[1]);
  }
  CHECK(uv_loop_close(&loop) == 0);
}
