// guard_callback(): the boundary every libuv callback of the daemon runs inside.
//
// No exception may cross into libuv (it would unwind through C frames and abort the
// daemon). Each callback runs its body through guard_callback(), which catches everything,
// logs it, and counts it in internal_errors() (shown by `dbmgrctl status` as
// totals.internal_errors). Callbacks that belong to a client (Server::guarded) also close
// that client alone, on a later loop turn; the daemon keeps serving everyone else.
//
// Threading: any thread (the counter is atomic; SQLite's worker callbacks use it too).
#pragma once

#include <atomic>
#include <cstdint>
#include <exception>
#include <string_view>

namespace dbmgr::daemon {

std::atomic<std::uint64_t>& internal_errors();
// Logs "internal error in WHERE: WHAT" and counts it. Never throws.
void report_internal_error(std::string_view where, const char* what) noexcept;

template <typename F>
bool guard_callback(std::string_view where, F&& f) noexcept {
  try {
    f();
    return true;
  } catch (const std::exception& e) {
    report_internal_error(where, e.what());
  } catch (...) {
    report_internal_error(where, "unknown exception");
  }
  return false;
}

}  // namespace dbmgr::daemon
