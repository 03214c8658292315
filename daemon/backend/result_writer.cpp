// ResultWriter: columns, row batches and completion of one request.
#include "backend/result_writer.hpp"

#include <fmt/format.h>

namespace dbmgr::daemon {

void ResultWriter::begin(std::uint32_t request_id, std::uint32_t session_id,
                         std::uint32_t max_frame_bytes) {
  request_id_ = request_id;
  session_id_ = session_id;
  max_frame_bytes_ = max_frame_bytes;
  ncols_ = 0;
  columns_sent_ = false;
  batch_.reset();
}

void ResultWriter::start(std::vector<std::uint8_t>& out) {
  batch_.reset();
  out_ = &out;
  out_start_ = out.size();
  enc_.emplace(out);
}

Status ResultWriter::too_many_columns(std::size_t count) {
  // A program limit (class 54): category resources, as PostgreSQL's and SQLite's own
  // "too many columns" (54011) are.
  return Status(proto::ErrorCategory::kResources,
                fmt::format("the result has {} columns; dbmgrd sends at most {}", count,
                            proto::kMaxColumns),
                "54011");
}

Status ResultWriter::row_too_large(std::size_t bytes, std::uint32_t max_frame_bytes) {
  return Status(proto::ErrorCategory::kResources,
                fmt::format("a row of {} bytes is larger than max_frame_bytes ({})", bytes,
                            max_frame_bytes),
                "54000");
}

Status ResultWriter::columns(const proto::ColumnDesc* cols, std::size_t count) {
  if (count > proto::kMaxColumns) return too_many_columns(count);
  ncols_ = count;
  columns_sent_ = true;
  if (count > 0) enc_->columns(request_id_, session_id_, cols, count);
  return Status::ok();
}

Status ResultWriter::room(std::size_t row_bytes, Room* room) {
  if (row_bytes > max_frame_bytes_) return row_too_large(row_bytes, max_frame_bytes_);
  if (batch_ && !batch_->fits(row_bytes)) {  // the batch ends before a row that would pass it
    finish_batch();
    *room = Room::kFull;
    return Status::ok();
  }
  if (!batch_) batch_.emplace(*enc_, request_id_, session_id_, static_cast<std::uint16_t>(ncols_));
  *room = Room::kRow;
  return Status::ok();
}

void ResultWriter::finish_batch() {
  if (batch_) batch_->finish();
  batch_.reset();
}

void ResultWriter::complete(const proto::Complete& done) {
  finish_batch();
  enc_->complete(request_id_, session_id_, done);
}

void ResultWriter::discard() {
  batch_.reset();
  if (out_ != nullptr) out_->resize(out_start_);
  out_ = nullptr;
}

}  // namespace dbmgr::daemon
