// dbmgr::Error: formatting of the library's one exception type.
#include "dbmgr/error.hpp"

#include <string>
#include <utility>

namespace dbmgr {
namespace {

std::string format(ErrorCategory category, const std::string& message,
                   const std::string& sqlstate) {
  std::string s = "dbmgr ";
  s += to_string(category);
  s += " error";
  if (!sqlstate.empty()) {
    s += " [";
    s += sqlstate;
    s += "]";
  }
  s += ": ";
  s += message;
  return s;
}

}  // namespace

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
  }
  return "unknown";
}

Error::Error(ErrorCategory category, std::string message, std::string sqlstate, bool client_side)
    : std::runtime_error(format(category, message, sqlstate)),
      category_(category),
      sqlstate_(std::move(sqlstate)),
      message_(std::move(message)),
      client_side_(client_side) {}

}  // namespace dbmgr
