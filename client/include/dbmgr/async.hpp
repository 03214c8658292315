// dbmgr::AsyncSession, dbmgr::Async<T> and dbmgr::Task<T>: the asynchronous client.
//
// DatabaseManager::get_async_db() returns an AsyncSession. Its execute(), commit(),
// rollback() and close() return at once with an Async<T> (T = Result or void): an operation
// in flight that is both a C++20 awaitable (`co_await s.execute(...)`) and a std::future
// (`.future()`, or convert: `std::future<Result> f = s.execute(...)`). Every AsyncSession of
// a manager travels over one daemon socket (the multiplexed transport, client/multiplexer.hpp):
// each has its own daemon session id, requests are written as they are made (pipelined),
// and replies are matched by request id, so one application thread can keep thousands of
// sessions in flight. The library's own I/O thread does all socket work (or the application's
// loop does, through DatabaseManager::async_socket() and process_events(), with
// Options::async_io_thread = false); no call here blocks the caller (the first
// get_async_db() connects and handshakes, once).
//
// Where code continues: a coroutine suspended on an Async<T> is resumed on the library's I/O
// thread (without it: inside process_events()), and a future is made ready there. Do not
// block inside such a coroutine (no future.get(), no Session calls that wait on the daemon):
// that would stall every session.
//
// Errors arrive as dbmgr::Error through the awaitable (thrown by co_await) or the future,
// never from the call itself. A broken socket fails every operation in flight on it with a
// connection error; the next get_async_db() connects afresh.
//
// Cancellation: cancel(), or destroying an Async<T> that is still pending and that nobody
// awaits or took the future of, sends kCancel for the session and then kRollback: a running
// statement stops on the server and the transaction rolls back whatever the race with its
// completion. The operation then ends with a `cancelled` error (or its result if it had
// finished). One-shots (execute_async) cannot be cancelled (the protocol cancels sessions).
//
// Task<T> is a small eager coroutine type: it starts running when called, can be awaited by
// another coroutine or waited for with get() (from a thread that is not the I/O thread), and
// a Task destroyed before it finished detaches (the coroutine runs to its end).
//
// Thread-safety: an AsyncSession may be used from any thread, one call at a time (its
// operations may be in flight together; the daemon runs them in the order they were made).
// An Async<T> or Task<T> belongs to whoever holds it.
#pragma once

#include <coroutine>
#include <cstddef>
#include <exception>
#include <future>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <optional>
#include <array>
#include <condition_variable>
#include <string_view>
#include <utility>
#include <vector>

#include "dbmgr/error.hpp"
#include "dbmgr/result.hpp"
#include "dbmgr/session.hpp"
#include "dbmgr/value.hpp"

namespace dbmgr {

class AsyncSession;
class DatabaseManager;

// Statement parameters as a value: `co_await s.execute(sql, dbmgr::params(id, email))`.
template <typename... A>
std::array<Param, sizeof...(A)> params(A&&... args) {
  return {Param(std::forward<A>(args))...};
}

namespace detail {
class AsyncOp;  // one operation in flight (client/async.cpp)
struct AsyncSessionState;
void release(AsyncOp* op) noexcept;
bool op_ready(AsyncOp* op) noexcept;
bool op_suspend(AsyncOp* op, std::coroutine_handle<> h) noexcept;  // false: already done
Result op_take_result(AsyncOp* op);                                 // throws the error
std::future<Result> op_future_result(AsyncOp* op);
std::future<void> op_future_void(AsyncOp* op);
void op_cancel(AsyncOp* op) noexcept;
void op_abandon(AsyncOp* op) noexcept;  // the handle goes away: cancels a pending, untaken op
}  // namespace detail

// An operation in flight. T is Result (execute) or void (commit, rollback, close).
template <typename T>
class [[nodiscard]] Async {
  static_assert(std::is_same_v<T, Result> || std::is_void_v<T>);

 public:
  Async(Async&& other) noexcept : op_(std::exchange(other.op_, nullptr)) {}
  Async& operator=(Async&& other) noexcept {
    if (this != &other) {
      reset();
      op_ = std::exchange(other.op_, nullptr);
    }
    return *this;
  }
  Async(const Async&) = delete;
  Async& operator=(const Async&) = delete;
  // Pending, not awaited, no future taken: cancels (see the top of this file).
  ~Async() { reset(); }

  // The reply is there (or the operation failed before anything was sent).
  bool ready() const noexcept { return op_ != nullptr && detail::op_ready(op_); }

  // Awaitable: co_await returns the Result (or nothing) or throws dbmgr::Error.
  bool await_ready() const noexcept { return ready(); }
  bool await_suspend(std::coroutine_handle<> h) noexcept { return detail::op_suspend(op_, h); }
  T await_resume() {
    if constexpr (std::is_void_v<T>) {
      detail::op_take_result(op_);
    } else {
      return detail::op_take_result(op_);
    }
  }

  // The future of this operation (once). After this the Async may be dropped freely.
  std::future<T> future() {
    if constexpr (std::is_void_v<T>) {
      return detail::op_future_void(op_);
    } else {
      return detail::op_future_result(op_);
    }
  }
  operator std::future<T>() && { return future(); }
  // Waits for the outcome: future().get(). Never call it on the library's I/O thread.
  T get() { return future().get(); }

  // Sends kCancel (and kRollback) for the session unless the reply is already there.
  void cancel() noexcept {
    if (op_ != nullptr) detail::op_cancel(op_);
  }

  // For the library: takes over one reference to `op`.
  explicit Async(detail::AsyncOp* op) : op_(op) {}

 private:
  void reset() noexcept {
    if (op_ != nullptr) {
      detail::op_abandon(op_);
      detail::release(op_);
      op_ = nullptr;
    }
  }
  detail::AsyncOp* op_ = nullptr;
};

// A transaction handle like Session, whose calls return at once (see the top of this file).
// Its first execute() opens its daemon session (kOpen travels with the statement); close()
// ends it (rolling back what is open). Destroying an open AsyncSession sends kClose without
// waiting: the daemon rolls its transaction back.
class AsyncSession {
 public:
  AsyncSession() noexcept;  // closed; every operation fails with invalid_request
  AsyncSession(AsyncSession&&) noexcept;
  AsyncSession& operator=(AsyncSession&&) noexcept;
  AsyncSession(const AsyncSession&) = delete;
  AsyncSession& operator=(const AsyncSession&) = delete;
  ~AsyncSession();

  // Parameters are encoded during the call: they need not outlive it. Inside a co_await
  // expression write them as dbmgr::params(a, b) (GCC 12 miscompiles a braced list there:
  // "array used as initializer"); `execute(sql, {a, b})` is fine outside one.
  Async<Result> execute(std::string_view sql, std::initializer_list<Param> params = {});
  template <std::size_t N>
  Async<Result> execute(std::string_view sql, const std::array<Param, N>& params) {
    return execute(sql, params.data(), N);
  }
  Async<Result> execute(std::string_view sql, const std::vector<Param>& params);
  Async<Result> execute(std::string_view sql, const Param* params, std::size_t count);
  // Commits the open transaction (at once, without a round trip, when none is open and
  // nothing is in flight). A failed commit always fails the operation.
  Async<void> commit();
  // Rolls back, or acknowledges a failed transaction; a broken socket needs none.
  Async<void> rollback();
  // Ends the daemon session (rolling back what is open). Idempotent.
  Async<void> close();

  // As of the replies received so far.
  bool in_transaction() const;
  bool failed() const;
  bool is_open() const;

 private:
  friend class DatabaseManager;
  explicit AsyncSession(std::shared_ptr<detail::AsyncSessionState> state);
  std::shared_ptr<detail::AsyncSessionState> state_;
};

namespace detail {

// What every Task's promise holds besides its value.
struct TaskStateBase {
  std::mutex mu;
  bool done = false;      // guarded by mu: the coroutine reached its final suspend point
  bool detached = false;  // guarded by mu: the Task was destroyed first; the frame frees itself
  std::coroutine_handle<> waiter;  // guarded by mu: a coroutine awaiting it
  std::condition_variable finished;  // a thread in get() waits on it
  std::exception_ptr error;

  std::suspend_never initial_suspend() noexcept { return {}; }
  void unhandled_exception() noexcept { error = std::current_exception(); }

  struct FinalAwaiter {
    bool await_ready() noexcept { return false; }
    template <typename P>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<P> h) noexcept {
      TaskStateBase& st = h.promise();
      std::coroutine_handle<> next = std::noop_coroutine();
      bool destroy = false;
      {
        std::lock_guard lock(st.mu);
        st.done = true;
        destroy = st.detached;
        if (st.waiter) next = st.waiter;
        st.finished.notify_all();  // under the lock: get() cannot return before we let go
      }
      // Only locals from here on: the Task's owner may destroy this frame at once.
      if (destroy) {
        h.destroy();
        return std::noop_coroutine();
      }
      return next;
    }
    void await_resume() noexcept {}
  };
  FinalAwaiter final_suspend() noexcept { return {}; }
};

template <typename T>
struct TaskState : TaskStateBase {
  std::optional<T> value;
  template <typename U>
  void return_value(U&& v) {
    value.emplace(std::forward<U>(v));
  }
  T take() {
    if (error) std::rethrow_exception(error);
    return std::move(*value);
  }
};

template <>
struct TaskState<void> : TaskStateBase {
  void return_void() noexcept {}
  void take() {
    if (error) std::rethrow_exception(error);
  }
};

}  // namespace detail

template <typename T = void>
class [[nodiscard]] Task {
 public:
  struct promise_type : detail::TaskState<T> {
    Task get_return_object() {
      return Task(std::coroutine_handle<promise_type>::from_promise(*this));
    }
  };

  Task(Task&& other) noexcept : h_(std::exchange(other.h_, nullptr)) {}
  Task& operator=(Task&& other) noexcept {
    if (this != &other) {
      reset();
      h_ = std::exchange(other.h_, nullptr);
    }
    return *this;
  }
  Task(const Task&) = delete;
  Task& operator=(const Task&) = delete;
  ~Task() { reset(); }

  bool done() const {
    std::lock_guard lock(h_.promise().mu);
    return h_.promise().done;
  }

  bool await_ready() const { return done(); }
  bool await_suspend(std::coroutine_handle<> waiter) {
    std::lock_guard lock(h_.promise().mu);
    if (h_.promise().done) return false;
    h_.promise().waiter = waiter;
    return true;
  }
  T await_resume() { return h_.promise().take(); }

  // Blocks until the coroutine finished; returns its value or throws its exception.
  T get() {
    {
      std::unique_lock lock(h_.promise().mu);
      h_.promise().finished.wait(lock, [&] { return h_.promise().done; });
    }
    return h_.promise().take();
  }

 private:
  explicit Task(std::coroutine_handle<promise_type> h) : h_(h) {}
  void reset() noexcept {
    if (!h_) return;
    bool destroy;
    {
      std::lock_guard lock(h_.promise().mu);
      destroy = h_.promise().done;
      if (!destroy) h_.promise().detached = true;
    }
    if (destroy) h_.destroy();
    h_ = nullptr;
  }
  std::coroutine_handle<promise_type> h_;
};

}  // namespace dbmgr
