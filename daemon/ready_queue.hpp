// ReadyQueue: work that must run on a later loop turn, never inside the call that made it.
//
// This is how the daemon keeps libuv's rule: a call never runs its caller's callback inside
// itself. When a pool grants a returned connection to the next waiter, or a component has a
// result for its owner while still inside the owner's call, it posts a Deferred here instead
// of calling back; the loop drains the queue after the current callback has returned (in the
// check phase of the same loop iteration, so the cost is a list push and no system call).
// While the queue is not empty an idle handle keeps the loop from blocking in poll.
//
// A Deferred is an intrusive node (no allocation per post). Posting one that is already
// queued does nothing; cancel() takes it out again. Items posted while the queue drains run
// in the same drain, after the ones before them (FIFO). post_next_turn() is for work that
// must let the rest of the loop go first (a client that asked for many large admin documents
// gets one per turn): it runs in the check phase after the next poll for I/O.
//
// Threading: loop thread only. Ownership: the Server owns the queue; a Deferred must cancel()
// itself (or be run) before it is destroyed.
#pragma once

#include <uv.h>

namespace dbmgr::daemon {

class ReadyQueue;

class Deferred {
 public:
  // Runs once per post, from ReadyQueue::drain().
  virtual void run_deferred() = 0;
  bool queued() const { return queued_; }

 protected:
  virtual ~Deferred() = default;

 private:
  friend class ReadyQueue;
  Deferred* next_ = nullptr;
  bool queued_ = false;
};

class ReadyQueue {
 public:
  // Without a loop the queue only runs when drain() is called (unit tests).
  explicit ReadyQueue(uv_loop_t* loop = nullptr);
  ~ReadyQueue();
  ReadyQueue(const ReadyQueue&) = delete;
  ReadyQueue& operator=(const ReadyQueue&) = delete;

  void post(Deferred* d);
  // Runs d in the check phase of the next loop iteration, after that iteration's I/O.
  void post_next_turn(Deferred* d);
  void cancel(Deferred* d);
  // Runs every queued item (those posted for this turn too), and those they post, until the
  // queue is empty; what they post for the next turn waits for the next drain().
  void drain();
  bool empty() const { return head_ == nullptr && later_head_ == nullptr; }
  // True while drain() runs an item (assertions of the completion contract use it).
  bool draining() const { return draining_; }
  // Closes the libuv handles (before the loop closes).
  void close();

 private:
  static void on_check(uv_check_t* h);
  static void on_idle(uv_idle_t* h);

  uv_check_t check_{};
  uv_idle_t idle_{};
  bool has_handles_ = false;
  bool idle_active_ = false;
  bool draining_ = false;
  Deferred* head_ = nullptr;
  Deferred* tail_ = nullptr;
  Deferred* later_head_ = nullptr;  // post_next_turn(): moved to the queue by the next check
  Deferred* later_tail_ = nullptr;
  void drain_queue();
};

}  // namespace dbmgr::daemon
