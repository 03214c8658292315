// The session core: what a Session or AsyncSession sends, and how each outcome moves it.
#include "session_core.hpp"

#include <span>
#include <utility>
#include <variant>

namespace dbmgr::detail {

// ---------------------------------------------------------------- Outbox

void Outbox::to_values(const Param* params, std::size_t count, std::vector<proto::Value>& out) {
  if (count > proto::kMaxParams) {
    throw Error::client(ErrorCategory::kInvalidRequest,
                        std::to_string(count) + " parameters; a statement takes at most " +
                            std::to_string(proto::kMaxParams));
  }
  out.clear();
  for (std::size_t i = 0; i < count; ++i) {
    const Param& p = params[i];
    switch (p.type()) {
      case Type::kNull:
        out.push_back(proto::Value::null());
        break;
      case Type::kBool:
        out.push_back(proto::Value::boolean(p.as_bool()));
        break;
      case Type::kInt64:
        out.push_back(proto::Value::int64(p.as_int64()));
        break;
      case Type::kDouble:
        out.push_back(proto::Value::real(p.as_double()));
        break;
      case Type::kText:
        if (!proto::is_valid_utf8(p.bytes())) {
          throw Error::client(ErrorCategory::kData,
                              "parameter " + std::to_string(i + 1) +
                                  " is not valid UTF-8 text; pass binary data as dbmgr::Blob");
        }
        out.push_back(proto::Value::text(p.bytes()));
        break;
      case Type::kBlob:
        out.push_back(proto::Value::blob(p.bytes()));
        break;
    }
  }
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

void SessionCore::encode_head(Outbox& out, const DaemonSession& ds, ExecuteRequests& req,
                              std::size_t mark) const {
  const std::uint32_t flags = open_flags();
  ReplyRouter& router = out.router();
  req.opening = !ds.matches(database_, prefix_, flags);
  req.closing = req.opening && ds.id != 0;
  req.session_id = ds.id;
  if (req.closing) {
    req.close_rid = router.next_request_id();
    out.encoder().empty(proto::MsgType::kClose, req.close_rid, ds.id);
  }
  if (req.opening) {
    req.session_id = out.new_session_id();
    req.open_rid = router.next_request_id();
    std::size_t start = out.output_size();
    proto::Open open;
    open.database = database_;
    open.prefix = prefix_;
    open.flags = flags;
    out.encoder().open(req.open_rid, req.session_id, open);
    out.check_frame_size(mark, start);
  }
}

void SessionCore::register_head(Outbox& out, DaemonSession& ds, ExecuteRequests& req) const {
  ReplyRouter& router = out.router();
  if (req.closing) router.expect(req.close, req.close_rid, Expect::kOk);
  if (req.opening) {
    router.expect(req.open, req.open_rid, Expect::kOk);
    ds.id = req.session_id;
    ds.dead = false;
    ds.database = database_;
    ds.prefix = prefix_;
    ds.flags = open_flags();
  }
}

void SessionCore::send_execute(Outbox& out, DaemonSession& ds, ExecuteRequests& req,
                               std::string_view sql, const Param* params, std::size_t count,
                               Result* result) const {
  const std::vector<proto::Value>& values = out.values(params, count);
  const std::size_t mark = out.output_size();
  // Pipeline: [kClose old] [kOpen new] kExecute, written with one send().
  encode_head(out, ds, req, mark);
  const std::uint32_t exec_rid = out.router().next_request_id();
  std::size_t start = out.output_size();
  out.encoder().execute(exec_rid, req.session_id, sql, values.data(), values.size());
  out.check_frame_size(mark, start);
  // Everything is encoded: register the replies and remember the new daemon session.
  register_head(out, ds, req);
  out.router().expect(req.exec, exec_rid, Expect::kResult, result);
}

void SessionCore::send_pipeline(Outbox& out, DaemonSession& ds, PipelineRequests& req,
                                std::span<const std::uint8_t> frames,
                                std::span<const std::size_t> starts, Result* results,
                                bool commit) const {
  const std::size_t mark = out.output_size();
  encode_head(out, ds, req.head, mark);
  ReplyRouter& router = out.router();
  // The statements were encoded by Pipeline::add() with placeholder ids; each gets its own
  // request id and the session's id here.
  req.execs.assign(starts.size(), Pending());
  for (std::size_t i = 0; i < starts.size(); ++i) {
    const std::size_t begin = starts[i];
    const std::size_t end = i + 1 < starts.size() ? starts[i + 1] : frames.size();
    const std::size_t at = out.output_size();
    out.encoder().out().insert(out.encoder().out().end(), frames.begin() + begin,
                               frames.begin() + end);
    req.execs[i].request_id = router.next_request_id();
    proto::Encoder::set_ids(out.encoder().out().data() + at, req.execs[i].request_id,
                            req.head.session_id);
    out.check_frame_size(mark, at);
  }
  std::uint32_t commit_rid = 0;
  if (commit) {
    commit_rid = router.next_request_id();
    out.encoder().empty(proto::MsgType::kCommit, commit_rid, req.head.session_id);
  }
  register_head(out, ds, req.head);
  for (std::size_t i = 0; i < starts.size(); ++i) {
    router.expect(req.execs[i], req.execs[i].request_id, Expect::kResult, &results[i]);
  }
  req.committing = commit;
  if (commit) router.expect(req.commit, commit_rid, Expect::kOk);
}

std::optional<Error> SessionCore::on_exec_error(const Error& e, DaemonSession& ds,
                                                bool may_retry, bool* retry) {
  if (e.category() == ErrorCategory::kNotFound || e.category() == ErrorCategory::kKilled) {
    // The daemon-side session is gone (killed by an operator, or unknown): the next
    // statement closes it and opens a new one.
    ds.dead = true;
    if (state_ == SessionState::kIdle && may_retry) {
      *retry = true;  // it held no transaction of ours: reopen and run the statement
      return std::nullopt;
    }
  }
  state_ = SessionState::kFailed;
  failure_ = e.what();
  return e;
}

std::optional<Error> SessionCore::on_execute_replies(const ExecuteRequests& req,
                                                     DaemonSession& ds, bool may_retry,
                                                     bool* retry) {
  *retry = false;
  if (req.opening && req.open.error) {
    ds.id = 0;  // not opened; nothing began (a kClose sent before it was answered)
    return req.open.error;
  }
  if (req.exec.error) return on_exec_error(*req.exec.error, ds, may_retry && !req.opening, retry);
  state_ = req.exec.in_transaction ? SessionState::kInTransaction : SessionState::kIdle;
  return std::nullopt;
}

namespace {

// "statement 2 of 5 (UPDATE accounts SET ...)": which statement of a pipeline failed, with
// the start of its SQL.
std::string pipeline_statement(std::span<const std::uint8_t> frames,
                               std::span<const std::size_t> starts, std::size_t i) {
  std::string what = "statement " + std::to_string(i + 1) + " of " + std::to_string(starts.size());
  proto::FrameView f;
  proto::Message m;
  bool ok = proto::parse_header(frames.data() + starts[i], UINT32_MAX, &f.header) ==
            proto::DecodeError::kOk;
  f.header.session_id = 1;  // encoded with a placeholder 0, which decode() refuses
  f.payload = frames.data() + starts[i] + proto::kHeaderSize;
  if (ok && proto::decode(f, &m) == proto::DecodeError::kOk) {
    if (const auto* e = std::get_if<proto::Execute>(&m)) {
      constexpr std::size_t kShown = 80;
      std::string_view sql = e->sql;
      what += " (" + std::string(sql.substr(0, kShown)) + (sql.size() > kShown ? "...)" : ")");
    }
  }
  return what;
}

}  // namespace

std::optional<Error> SessionCore::on_pipeline_replies(PipelineRequests& req, DaemonSession& ds,
                                                      std::span<const std::uint8_t> frames,
                                                      std::span<const std::size_t> starts,
                                                      bool may_retry, bool* retry) {
  *retry = false;
  if (req.head.opening && req.head.open.error) {
    ds.id = 0;
    return req.head.open.error;
  }
  for (std::size_t i = 0; i < req.execs.size(); ++i) {
    if (!req.execs[i].error) continue;
    // The first error is the statement's; the ones after it say "skipped after earlier
    // error in pipeline" (docs/protocol.md section 10).
    req.failed = i;
    const Error& e = *req.execs[i].error;
    if (!on_exec_error(e, ds, i == 0 && may_retry && !req.head.opening, retry)) {
      return std::nullopt;  // a retry
    }
    Error named(e.category(),
                "the pipelined transaction was rolled back: " +
                    pipeline_statement(frames, starts, i) + " failed: " + e.message(),
                e.sqlstate(), e.client_side());
    failure_ = named.what();
    return named;
  }
  req.failed = req.execs.size();
  if (req.committing) return on_commit_reply(req.commit);
  state_ = !req.execs.empty() && req.execs.back().in_transaction ? SessionState::kInTransaction
                                                                 : SessionState::kIdle;
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
