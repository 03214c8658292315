// WalCheckpointer: the WAL checkpoints of one SQLite database file, off the writer's path.
//
// SQLite's own automatic checkpoint runs inside the COMMIT that takes the WAL past
// wal_autocheckpoint pages (1000), on the committing connection. dbmgrd has one writer
// connection per database, so that checkpoint (tens of milliseconds on a large file: the
// pages written back and an fsync) stalled every transaction queued behind it: p99 of
// pipelined tpcb-like at 16 clients was 22 ms, and 4 in 10 s of the writer's time went to
// checkpoints. The writer instead turns its automatic checkpoint off (its WAL hook reports
// the WAL's size after each commit), and when the WAL holds kPages or more, a PASSIVE
// checkpoint runs on a worker thread through a connection of its own, while the writer goes
// on committing (WAL mode lets one checkpoint run beside readers and the writer). As with
// SQLite's automatic checkpoint, a PASSIVE checkpoint copies what no reader still needs, and
// the writer restarts the WAL from its start once everything was copied. Under a steady
// stream of writes that never happens (the writer appends while the checkpoint copies), so
// when the WAL reaches kWriterPages the writer copies the rest itself after its commit
// (little: the checkpoints beside it copied the bulk), and the WAL starts over; the WAL
// stays near kWriterPages pages (32 MiB) at most. That last copy stalls the writer for two
// fsyncs (5 to 30 ms here), once per kWriterPages pages instead of once per kPages.
//
// Threading: request(), close() and the job's completion on the loop thread; the job on a
// libuv worker thread. At most one job at a time. Ownership: the writer SqliteConn creates it
// and calls close() when it is deleted; the object then deletes itself once its job is done
// (its connection closed on a worker thread, never on the loop: closing the last connection
// of a WAL database checkpoints it).
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include <sqlite3.h>
#include <uv.h>

namespace dbmgr::daemon {

class WalCheckpointer {
 public:
  static constexpr int kPages = 1000;  // SQLite's default wal_autocheckpoint
  // Past this the writer checkpoints the rest itself (SqliteConn::on_wal_commit).
  static constexpr int kWriterPages = 8 * kPages;

  WalCheckpointer(uv_loop_t* loop, std::string path) : loop_(loop), path_(std::move(path)) {
    req_.data = this;
  }
  WalCheckpointer(const WalCheckpointer&) = delete;
  WalCheckpointer& operator=(const WalCheckpointer&) = delete;

  // The writer's WAL holds `pages` after its last commit: checkpoint if kPages or more were
  // added since the last checkpoint began and none runs.
  void wal_size(int pages);
  // Ends it: deletes itself once its job is done.
  void close();

  std::uint64_t runs() const { return runs_.load(std::memory_order_relaxed); }

 private:
  ~WalCheckpointer() = default;
  void submit();
  static void work_cb(uv_work_t* req);
  static void after_cb(uv_work_t* req, int status);
  void work();  // worker thread

  uv_loop_t* loop_;
  std::string path_;
  uv_work_t req_{};
  bool running_ = false;
  bool closing_ = false;
  bool close_job_ = false;  // the next job closes the connection
  std::atomic<std::uint64_t> runs_{0};
  int last_ = 0;  // the WAL's size when the last checkpoint was started
  sqlite3* db_ = nullptr;  // the job's own; the loop reads it only while no job runs
};

}  // namespace dbmgr::daemon
