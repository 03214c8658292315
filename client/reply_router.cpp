// The reply router: request id -> pending request, and the per-reply state machine.
#include "reply_router.hpp"

#include <utility>
#include <variant>

namespace dbmgr::detail {
namespace {

Error daemon_error(const proto::ErrorMsg& m) {
  return Error(static_cast<ErrorCategory>(m.category), std::string(m.message),
               std::string(m.sqlstate));
}

Type to_type(proto::ValueTag t) { return static_cast<Type>(t); }

}  // namespace

// ---------------------------------------------------------------- ResultBuilder

void ResultBuilder::begin(Result& r) { r = Result(); }

bool ResultBuilder::columns(Result& r, const proto::ColumnList& cols) {
  if (!r.columns_.empty() || r.row_count_ != 0) return false;
  r.columns_.reserve(cols.size());
  r.declared_types_.reserve(cols.size());
  cols.for_each([&](const proto::ColumnDesc& c) {
    r.columns_.emplace_back(c.name);
    r.declared_types_.push_back(to_type(c.type));
  });
  return !r.columns_.empty();
}

bool ResultBuilder::rows(Result& r, const proto::Rows& rows) {
  if (r.columns_.empty() || rows.column_count != r.columns_.size()) return false;
  std::size_t add_bytes = 0;
  r.cells_.reserve(r.cells_.size() + std::size_t{rows.row_count} * rows.column_count);
  for (proto::Value v : rows.values) {
    if (v.tag == proto::ValueTag::kText || v.tag == proto::ValueTag::kBlob) {
      add_bytes += v.bytes.size();
    }
  }
  r.bytes_.reserve(r.bytes_.size() + add_bytes);
  for (proto::Value v : rows.values) add_cell(r, v);
  r.row_count_ += rows.row_count;
  return true;
}

void ResultBuilder::complete(Result& r, const proto::Complete& c) {
  r.affected_rows_ = c.affected_rows;
  r.last_insert_id_ = c.last_insert_id;
}

void ResultBuilder::add_cell(Result& r, const proto::Value& v) {
  Result::Cell cell;
  cell.type = to_type(v.tag);
  switch (v.tag) {
    case proto::ValueTag::kNull:
      break;
    case proto::ValueTag::kBool:
      cell.i = v.b ? 1 : 0;
      break;
    case proto::ValueTag::kInt64:
      cell.i = v.i;
      break;
    case proto::ValueTag::kDouble:
      cell.d = v.d;
      break;
    case proto::ValueTag::kText:
    case proto::ValueTag::kBlob:
      cell.offset = r.bytes_.size();
      cell.length = v.bytes.size();
      r.bytes_.append(v.bytes);
      break;
  }
  r.cells_.push_back(cell);
}

void ResultBuilder::set_columns(Result& r, std::vector<std::string> names) {
  r.declared_types_.assign(names.size(), Type::kNull);
  r.columns_ = std::move(names);
}

// ---------------------------------------------------------------- PendingTable

void PendingTable::grow() {
  std::vector<Slot> old;
  old.swap(slots_);
  slots_.resize(old.empty() ? 16 : old.size() * 2);
  size_ = 0;
  for (const Slot& s : old) {
    if (s.key != 0) insert(s.key, s.value);
  }
}

bool PendingTable::insert(std::uint32_t key, Pending* value) {
  if ((size_ + 1) * 2 > slots_.size()) grow();  // load factor <= 1/2
  const std::size_t mask = slots_.size() - 1;
  for (std::size_t i = home(key);; i = (i + 1) & mask) {
    if (slots_[i].key == key) return false;
    if (slots_[i].key == 0) {
      slots_[i] = {key, value};
      ++size_;
      return true;
    }
  }
}

Pending* PendingTable::find(std::uint32_t key) const {
  if (key == 0 || slots_.empty()) return nullptr;
  const std::size_t mask = slots_.size() - 1;
  for (std::size_t i = home(key);; i = (i + 1) & mask) {
    if (slots_[i].key == key) return slots_[i].value;
    if (slots_[i].key == 0) return nullptr;
  }
}

void PendingTable::erase(std::uint32_t key) {
  if (key == 0 || slots_.empty()) return;
  const std::size_t mask = slots_.size() - 1;
  std::size_t i = home(key);
  while (slots_[i].key != key) {
    if (slots_[i].key == 0) return;
    i = (i + 1) & mask;
  }
  // Backward-shift deletion: move later entries of the probe run into the hole when their
  // home position is not between the hole and where they sit (so lookups still find them).
  for (std::size_t j = (i + 1) & mask; slots_[j].key != 0; j = (j + 1) & mask) {
    const std::size_t k = home(slots_[j].key);
    const bool between = i <= j ? (i < k && k <= j) : (i < k || k <= j);
    if (!between) {
      slots_[i] = slots_[j];
      i = j;
    }
  }
  slots_[i] = Slot();
  --size_;
}

// ---------------------------------------------------------------- ReplyRouter

void ReplyRouter::expect(Pending& p, std::uint32_t request_id, Expect what, Result* result,
                         DatabaseInfo* info, std::string* text) {
  ReplySink* sink = p.sink;
  p = Pending();
  p.sink = sink;
  p.request_id = request_id;
  p.expect = what;
  p.result = result;
  p.info = info;
  p.text = text;
  if (result != nullptr) ResultBuilder::begin(*result);
  table_.insert(request_id, &p);
}

void ReplyRouter::finish(Pending& p) {
  table_.erase(p.request_id);
  p.done = true;
  if (p.sink != nullptr) p.sink->on_reply(p);
}

void ReplyRouter::fail_all(const Error& e) {
  table_.drain([&](Pending* p) {
    p->error = e;
    p->done = true;
    if (p->sink != nullptr) p->sink->on_reply(*p);
  });
}

bool ReplyRouter::protocol_error(std::string what) {
  stream_error_ =
      Error::client(ErrorCategory::kProtocol, "dbmgrd at '" + label_ + "' sent " + std::move(what));
  return false;
}

bool ReplyRouter::on_frame(const proto::FrameView& frame) {
  proto::Message msg;
  proto::DecodeError err = proto::decode(frame, &msg);
  if (err != proto::DecodeError::kOk) {
    return protocol_error("a malformed " + std::string(proto::to_string(frame.header.type)) +
                          " frame: " + std::string(proto::to_string(err)));
  }
  // Replies of different sessions may interleave: find the request this frame answers.
  Pending* found = table_.find(frame.header.request_id);
  // An error that names no pending request ends the connection: the daemon sends one with
  // request id 0 before closing (protocol error, shutdown).
  if (found == nullptr) {
    if (const auto* e = std::get_if<proto::ErrorMsg>(&msg)) {
      Error de = daemon_error(*e);
      stream_error_ =
          Error(de.category(), "dbmgrd at '" + label_ + "' closed the connection: " + de.message(),
                de.sqlstate());
      return false;
    }
    return protocol_error("an unexpected " + std::string(proto::to_string(frame.header.type)) +
                          " frame (request id " + std::to_string(frame.header.request_id) + ")");
  }
  Pending& p = *found;
  if (const auto* e = std::get_if<proto::ErrorMsg>(&msg)) {
    p.error = daemon_error(*e);
    // Only protocol errors close the connection; the daemon does so right after this one.
    if (e->category == proto::ErrorCategory::kProtocol) closing_ = true;
    finish(p);
    return true;
  }
  auto unexpected = [&]() {
    return protocol_error("a " + std::string(proto::to_string(frame.header.type)) +
                          " frame where it was not expected (request id " +
                          std::to_string(p.request_id) + ")");
  };
  switch (p.expect) {
    case Expect::kHelloOk: {
      const auto* h = std::get_if<proto::HelloOk>(&msg);
      if (h == nullptr) return unexpected();
      if (h->version < proto::kMinVersion || h->version > proto::kMaxVersion) {
        return protocol_error("protocol version " + std::to_string(h->version) +
                              ", which this client does not speak");
      }
      if (p.text != nullptr) p.text->assign(h->server_version);
      p.max_frame_bytes = h->max_frame_bytes;
      break;
    }
    case Expect::kOk:
      if (!std::holds_alternative<proto::Ok>(msg)) return unexpected();
      break;
    case Expect::kPong:
      if (!std::holds_alternative<proto::Pong>(msg)) return unexpected();
      break;
    case Expect::kAdmin: {
      const auto* r = std::get_if<proto::AdminResult>(&msg);
      if (r == nullptr) return unexpected();
      if (p.text != nullptr) p.text->assign(r->json);
      break;
    }
    case Expect::kInfo: {
      const auto* r = std::get_if<proto::InfoResult>(&msg);
      if (r == nullptr) return unexpected();
      if (p.info != nullptr) {
        p.info->type.assign(r->type);
        p.info->name.assign(r->name);
        p.info->uri.assign(r->uri);
        p.info->pk_type.assign(r->pk_type);
        p.info->pk_column_type.assign(r->pk_column_type);
      }
      break;
    }
    case Expect::kResult: {
      if (const auto* c = std::get_if<proto::Columns>(&msg)) {
        if (p.saw_columns || !ResultBuilder::columns(*p.result, c->columns)) return unexpected();
        p.saw_columns = true;
        return true;
      }
      if (const auto* r = std::get_if<proto::Rows>(&msg)) {
        if (!ResultBuilder::rows(*p.result, *r)) {
          return protocol_error("a row batch that does not match its column list");
        }
        return true;
      }
      const auto* done = std::get_if<proto::Complete>(&msg);
      if (done == nullptr) return unexpected();
      ResultBuilder::complete(*p.result, *done);
      p.in_transaction = done->in_transaction;
      break;
    }
  }
  finish(p);
  return true;
}

}  // namespace dbmgr::detail
