// Names and classification of the protocol's enumerations (message types, tags, categories).
#include "dbmgr/protocol/protocol.hpp"

namespace dbmgr::proto {

std::string_view to_string(MsgType t) {
  switch (t) {
    case MsgType::kHello:
      return "hello";
    case MsgType::kOpen:
      return "open";
    case MsgType::kExecute:
      return "execute";
    case MsgType::kOneShot:
      return "one_shot";
    case MsgType::kCommit:
      return "commit";
    case MsgType::kRollback:
      return "rollback";
    case MsgType::kClose:
      return "close";
    case MsgType::kCancel:
      return "cancel";
    case MsgType::kPing:
      return "ping";
    case MsgType::kInfo:
      return "info";
    case MsgType::kAdmin:
      return "admin";
    case MsgType::kHelloOk:
      return "hello_ok";
    case MsgType::kOk:
      return "ok";
    case MsgType::kColumns:
      return "columns";
    case MsgType::kRows:
      return "rows";
    case MsgType::kComplete:
      return "complete";
    case MsgType::kError:
      return "error";
    case MsgType::kPong:
      return "pong";
    case MsgType::kInfoResult:
      return "info_result";
    case MsgType::kAdminResult:
      return "admin_result";
  }
  return "unknown";
}

std::string_view to_string(ErrorCategory c) {
  switch (c) {
    case ErrorCategory::kConnection:
      return "connection";
    case ErrorCategory::kTimeout:
      return "timeout";
    case ErrorCategory::kPoolExhausted:
      return "pool_exhausted";
    case ErrorCategory::kConstraint:
      return "constraint";
    case ErrorCategory::kSyntax:
      return "syntax";
    case ErrorCategory::kPermission:
      return "permission";
    case ErrorCategory::kProtocol:
      return "protocol";
    case ErrorCategory::kInternal:
      return "internal";
    case ErrorCategory::kCancelled:
      return "cancelled";
    case ErrorCategory::kKilled:
      return "killed";
    case ErrorCategory::kNotFound:
      return "not_found";
    case ErrorCategory::kInvalidRequest:
      return "invalid_request";
    case ErrorCategory::kData:
      return "data";
    case ErrorCategory::kShuttingDown:
      return "shutting_down";
    case ErrorCategory::kBusy:
      return "busy";
    case ErrorCategory::kReadOnly:
      return "read_only";
    case ErrorCategory::kTransaction:
      return "transaction";
    case ErrorCategory::kSerialization:
      return "serialization";
    case ErrorCategory::kResources:
      return "resources";
    case ErrorCategory::kIo:
      return "io";
    case ErrorCategory::kUnsupported:
      return "unsupported";
  }
  return "unknown";
}

std::string_view to_string(ValueTag t) {
  switch (t) {
    case ValueTag::kNull:
      return "null";
    case ValueTag::kBool:
      return "bool";
    case ValueTag::kInt64:
      return "int64";
    case ValueTag::kDouble:
      return "double";
    case ValueTag::kText:
      return "text";
    case ValueTag::kBlob:
      return "blob";
  }
  return "unknown";
}

std::string_view to_string(AdminCommand c) {
  switch (c) {
    case AdminCommand::kStatus:
      return "status";
    case AdminCommand::kPools:
      return "pools";
    case AdminCommand::kSessions:
      return "sessions";
    case AdminCommand::kClients:
      return "clients";
    case AdminCommand::kEngines:
      return "engines";
    case AdminCommand::kReload:
      return "reload";
    case AdminCommand::kKill:
      return "kill";
    case AdminCommand::kDrain:
      return "drain";
    case AdminCommand::kShutdown:
      return "shutdown";
  }
  return "unknown";
}

bool is_known(MsgType t) { return to_string(t) != "unknown"; }
bool is_known(ErrorCategory c) { return to_string(c) != "unknown"; }
bool is_known(AdminCommand c) { return to_string(c) != "unknown"; }
bool is_known(ValueTag t) { return to_string(t) != "unknown"; }

bool needs_session(MsgType t) {
  switch (t) {
    case MsgType::kOpen:
    case MsgType::kExecute:
    case MsgType::kCommit:
    case MsgType::kRollback:
    case MsgType::kClose:
    case MsgType::kCancel:
      return true;
    default:
      return false;
  }
}

bool forbids_session(MsgType t) {
  switch (t) {
    case MsgType::kHello:
    case MsgType::kOneShot:
    case MsgType::kInfo:
    case MsgType::kAdmin:
    case MsgType::kPing:
      return true;
    default:
      return false;
  }
}

}  // namespace dbmgr::proto
