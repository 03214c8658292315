// WalCheckpointer: PASSIVE WAL checkpoints on a worker thread (wal_checkpointer.hpp).
#include "backend/sqlite/wal_checkpointer.hpp"

#include <cstdlib>

#include <spdlog/spdlog.h>

namespace dbmgr::daemon {

void WalCheckpointer::wal_size(int pages) {
  if (pages < last_) last_ = 0;  // the WAL started over
  if (pages - last_ < kPages || running_ || closing_) return;
  last_ = pages;
  submit();
}

void WalCheckpointer::close() {
  closing_ = true;
  if (running_) return;  // after_cb goes on
  if (db_ == nullptr) {
    delete this;
    return;
  }
  close_job_ = true;
  submit();
}

void WalCheckpointer::submit() {
  running_ = true;
  // uv_queue_work only checks its arguments: with a valid loop and request it cannot fail.
  if (uv_queue_work(loop_, &req_, &WalCheckpointer::work_cb, &WalCheckpointer::after_cb) != 0) {
    std::abort();
  }
}

void WalCheckpointer::work_cb(uv_work_t* req) { static_cast<WalCheckpointer*>(req->data)->work(); }

void WalCheckpointer::after_cb(uv_work_t* req, int /*status*/) {
  auto* self = static_cast<WalCheckpointer*>(req->data);
  self->running_ = false;
  if (!self->closing_) return;
  if (self->db_ == nullptr) {
    delete self;
    return;
  }
  self->close_job_ = true;
  self->submit();
}

void WalCheckpointer::work() {
  if (close_job_) {
    if (db_ != nullptr) sqlite3_close_v2(db_);
    db_ = nullptr;
    return;
  }
  if (db_ == nullptr) {
    // The writer made the file and set WAL mode; this connection only checkpoints.
    int rc = sqlite3_open_v2(path_.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
                             nullptr);
    if (rc != SQLITE_OK) {
      spdlog::warn("SQLite {}: cannot open a connection for WAL checkpoints: {}", path_,
                   db_ != nullptr ? sqlite3_errmsg(db_) : sqlite3_errstr(rc));
      if (db_ != nullptr) sqlite3_close_v2(db_);
      db_ = nullptr;
      return;
    }
    // A connection learns that the file is in WAL mode when it first reads it; until then a
    // checkpoint does nothing (and reports -1 pages).
    sqlite3_busy_timeout(db_, 1000);
    sqlite3_exec(db_, "PRAGMA schema_version", nullptr, nullptr, nullptr);
  }
  int log = 0, done = 0;
  int rc = sqlite3_wal_checkpoint_v2(db_, nullptr, SQLITE_CHECKPOINT_PASSIVE, &log, &done);
  runs_.fetch_add(1, std::memory_order_relaxed);
  if (rc != SQLITE_OK) {
    spdlog::debug("SQLite {}: WAL checkpoint: {}", path_, sqlite3_errmsg(db_));
  } else {
    spdlog::debug("SQLite {}: WAL checkpoint: {} of {} pages copied", path_, done, log);
  }
}

}  // namespace dbmgr::daemon
