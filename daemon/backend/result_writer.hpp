// ResultWriter: the one place a backend turns a statement's result into reply frames.
//
// For one request it writes the kColumns frame (refusing more than proto::kMaxColumns
// columns), then kRows batches that end before a row that would take the batch past
// proto::kMaxRowBatchBytes (a larger row travels alone, up to max_frame_bytes, past which the
// row is refused), then the kComplete frame. A backend asks room() before encoding each row:
// kFull means the batch is complete and the row must wait for the next call (the backend
// keeps it, sets BackendResult::more and resumes with it). Frames go to the byte vector given
// to start(); a stream that spans several operations calls start() again per batch with the
// new vector and keeps the writer (it remembers that the columns went out).
//
// Threading: whichever thread runs the operation (a worker job, or the loop for libpq); one
// writer per connection, used by one thread at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "dbmgr/protocol/codec.hpp"
#include "status.hpp"

namespace dbmgr::daemon {

class ResultWriter {
 public:
  enum class Room : std::uint8_t { kRow, kFull };

  // A new statement's result: nothing sent yet.
  void begin(std::uint32_t request_id, std::uint32_t session_id, std::uint32_t max_frame_bytes);
  // Frames go to `out` from now on (appended); a batch in progress must have been finished.
  void start(std::vector<std::uint8_t>& out);

  // The result's columns (once per result). An error (54011) when there are too many.
  Status columns(const proto::ColumnDesc* cols, std::size_t count);
  // A statement that returns no rows: no kColumns frame (the client sees only kComplete).
  void no_columns() { columns_sent_ = true; }
  bool columns_sent() const { return columns_sent_; }
  std::size_t column_count() const { return ncols_; }

  // Room for a row whose values encode to `row_bytes` (the sum of proto::encoded_size()).
  // kRow: encode it with row() now; kFull: the batch ended, the row goes in the next one.
  // An error (54000) when the row is larger than max_frame_bytes.
  Status room(std::size_t row_bytes, Room* room);
  // The batch the row is encoded into: its values, then end_row().
  proto::RowBatchEncoder& row() { return *batch_; }
  // Ends the batch in progress (before kComplete, or when a stream pauses).
  void finish_batch();
  void complete(const proto::Complete& done);
  // The operation failed: drops what was written to `out` since start().
  void discard();
  // Forgets `out` and any batch in progress without touching the bytes (the owner cleared
  // or handed them over already).
  void abandon() {
    batch_.reset();
    out_ = nullptr;
  }

  std::uint32_t request_id() const { return request_id_; }
  std::uint32_t session_id() const { return session_id_; }

  // Shared error values, so that every backend words them alike.
  static Status too_many_columns(std::size_t count);
  static Status row_too_large(std::size_t bytes, std::uint32_t max_frame_bytes);

 private:
  std::vector<std::uint8_t>* out_ = nullptr;
  std::size_t out_start_ = 0;
  std::optional<proto::Encoder> enc_;
  std::optional<proto::RowBatchEncoder> batch_;
  std::uint32_t request_id_ = 0;
  std::uint32_t session_id_ = 0;
  std::uint32_t max_frame_bytes_ = 16u << 20;
  std::size_t ncols_ = 0;
  bool columns_sent_ = false;
};

}  // namespace dbmgr::daemon
