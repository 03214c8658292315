// The session core: what a Session or AsyncSession sends, and how each outcome moves it.
#include "session_core.hpp"

#include <utility>

namespace dbmgr::detail {

// ---------------------------------------------------------------- Outbox

const std::vector<proto::Value>& Outbox::values(const Param* params, std::size_t count) {
  if (count > proto::kMaxParams) {
    throw Error::client(ErrorCategory::kInvalidRequest,
                        std::to_string(count) + " parameters; a statement takes at most " +
                            std::to_string(proto::kMaxParams));
  }
  values_.clear();
  for (std::size_t i = 0; i < count; ++i) {
    const Param& p = params[i];
    switch (p.type()) {
      case Type::kNull:
        values_.push_back(proto::Value::null());
        break;
      case Type::kBool:
        values_.push_back(proto::Value::boolean(p.as_bool()));
        break;
      case Type::kInt64:
        values_.push_back(proto::Value::int64(p.as_int64()));
        break;
      case Type::kDouble:
        values_.push_back(proto::Value::real(p.as_double()));
        break;
      case Type::kText:
        if (!proto::is_valid_utf8(p.bytes())) {
          throw Error::client(ErrorCategory::kData,
                              "parameter " + std::to_string(i + 1) +
                                  " is not valid UTF-8 text; pass binary data as dbmgr::Blob");
        }
        values_.push_back(proto::Value::text(p.bytes()));
        break;
      case Type::kBlob:
        values_.push_back(proto::Value::blob(p.bytes()));
        break;
    }
  }
  return values_;
}

void Outbox::check_frame_size(std::size_t mark, std::size_t frame_start) {
  std::size_t payload = out_.size() - frame_start - proto::kHeaderSize;
  if (payload > max_frame_bytes_) {
    out_.resize(mark);
    throw Error::client(ErrorCategory::kInvalidRequest,
                        "request of " + std::to_string(payload) +
                            " bytes exceeds the daemon's max_frame_bytes (" +
                            std::to_string(max_frame_bytes_) + ")");
  }
}

// ---------------------------------------------------------------- SessionCore

std::uint32_t SessionCore::open_flags() const {
  return access_ == Access::kReadOnly ? proto::kOpenReadOnly : 0;
}

Error SessionCore::broken_error() const {
  if (state_ == SessionState::kFailed) {
    return Error::client(ErrorCategory::kInvalidRequest,
                         "the transaction failed and the daemon rolled it back (" + failure_ +
                             "); call rollback() before using the session again");
  }
  return Error::client(ErrorCategory::kConnection,
                       "the transaction was lost (" + failure_ +
                           "); call rollback() before using the session again");
}

void SessionCore::check_usable() const {
  switch (state_) {
    case SessionState::kClosed:
      throw Error::client(ErrorCategory::kInvalidRequest, "the session is closed");
    case SessionState::kFailed:
    case SessionState::kBroken:
      throw broken_error();
    case SessionState::kIdle:
    case SessionState::kInTransaction:
      break;
  }
}

void SessionCore::send_execute(Outbox& out, DaemonSession& ds, ExecuteRequests& req,
                               std::string_view sql, const Param* params, std::size_t count,
                               Result* result) const {
  const std::uint32_t flags = open_flags();
  const std::vector<proto::Value>& values = out.values(params, count);
  ReplyRouter& router = out.router();
  const std::size_t mark = out.output_size();

  // Pipeline: [kClose old] [kOpen new] kExecute, written with one send().
  req.opening = !ds.matches(database_, prefix_, flags);
  req.closing = req.opening && ds.id != 0;
  std::uint32_t close_rid = 0, open_rid = 0;
  std::uint32_t sid = ds.id;
  if (req.closing) {
    close_rid = router.next_request_id();
    out.encoder().empty(proto::MsgType::kClose, close_rid, ds.id);
  }
  if (req.opening) {
    sid = out.new_session_id();
    open_rid = router.next_request_id();
    std::size_t start = out.output_size();
    proto::Open open;
    open.database = database_;
    open.prefix = prefix_;
    open.flags = flags;
    out.encoder().open(open_rid, sid, open);
    out.check_frame_size(mark, start);
  }
  const std::uint32_t exec_rid = router.next_request_id();
  std::size_t start = out.output_size();
  out.encoder().execute(exec_rid, sid, sql, values.data(), values.size());
  out.check_frame_size(mark, start);

  // Everything is encoded: register the replies and remember the new daemon session.
  if (req.closing) router.expect(req.close, close_rid, Expect::kOk);
  if (req.opening) {
    router.expect(req.open, open_rid, Expect::kOk);
    ds.id = sid;
    ds.dead = false;
    ds.database = database_;
    ds.prefix = prefix_;
    ds.flags = flags;
  }
  router.expect(req.exec, exec_rid, Expect::kResult, result);
}

std::optional<Error> SessionCore::on_execute_replies(const ExecuteRequests& req,
                                                     DaemonSession& ds, bool may_retry,
                                                     bool* retry) {
  *retry = false;
  if (req.opening && req.open.error) {
    ds.id = 0;  // not opened; nothing began (a kClose sent before it was answered)
    return req.open.error;
  }
  if (req.exec.error) {
    const Error& e = *req.exec.error;
    if (e.category() == ErrorCategory::kNotFound || e.category() == ErrorCategory::kKilled) {
      // The daemon-side session is gone (killed by an operator, or unknown): the next
      // statement closes it and opens a new one.
      ds.dead = true;
      if (state_ == SessionState::kIdle && !req.opening && may_retry) {
        *retry = true;  // it held no transaction of ours: reopen and run the statement
        return std::nullopt;
      }
    }
    state_ = SessionState::kFailed;
    failure_ = e.what();
    return e;
  }
  state_ = req.exec.in_transaction ? SessionState::kInTransaction : SessionState::kIdle;
  return std::nullopt;
}

void SessionCore::on_execute_lost(const Error& e) {
  if (state_ == SessionState::kInTransaction) {
    state_ = SessionState::kBroken;
    failure_ = e.what();
  }
}

void SessionCore::send_commit(Outbox& out, const DaemonSession& ds, Pending& p) const {
  std::uint32_t rid = out.router().next_request_id();
  out.encoder().empty(proto::MsgType::kCommit, rid, ds.id);
  out.router().expect(p, rid, Expect::kOk);
}

std::optional<Error> SessionCore::on_commit_reply(const Pending& p) {
  if (p.error) {
    state_ = SessionState::kFailed;
    failure_ = p.error->what();
    return p.error;
  }
  state_ = SessionState::kIdle;
  return std::nullopt;
}

Error SessionCore::on_commit_lost(const Error& e) {
  state_ = SessionState::kBroken;
  failure_ = e.what();
  return Error::client(ErrorCategory::kConnection,
                       "the connection broke during COMMIT, so whether the transaction was "
                       "committed is unknown: " +
                           e.message());
}

bool SessionCore::begin_rollback(const DaemonSession* ds) {
  switch (state_) {
    case SessionState::kClosed:
    case SessionState::kIdle:
      return false;
    case SessionState::kBroken:
      // The daemon rolled back when it saw the socket close; nothing to send.
      state_ = SessionState::kIdle;
      failure_.clear();
      return false;
    case SessionState::kInTransaction:
    case SessionState::kFailed:
      break;
  }
  state_ = SessionState::kIdle;
  failure_.clear();
  // No daemon session (or a killed one) holds anything to roll back.
  return ds != nullptr && ds->id != 0 && !ds->dead;
}

void SessionCore::send_rollback(Outbox& out, const DaemonSession& ds, Pending& p) const {
  std::uint32_t rid = out.router().next_request_id();
  out.encoder().empty(proto::MsgType::kRollback, rid, ds.id);
  out.router().expect(p, rid, Expect::kOk);
}

std::optional<Error> SessionCore::on_rollback_reply(const Pending& p, DaemonSession& ds) {
  if (!p.error) return std::nullopt;
  const Error& e = *p.error;
  if (e.category() == ErrorCategory::kNotFound || e.category() == ErrorCategory::kKilled) {
    ds.dead = true;  // nothing left to roll back; reopened by the next statement
    return std::nullopt;
  }
  return e;
}

}  // namespace dbmgr::detail
