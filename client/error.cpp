// dbmgr::Error: formatting of the library's one exception type.
#include "dbmgr/error.hpp"
#include "dbmgr/protocol/protocol.hpp"

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

// The mirror enum must keep the protocol's numbers, first to last.
static_assert(static_cast<int>(ErrorCategory::kConnection) ==
              static_cast<int>(proto::ErrorCategory::kConnection));
static_assert(static_cast<int>(ErrorCategory::kUnsupported) ==
              static_cast<int>(proto::ErrorCategory::kUnsupported));

std::string_view to_string(ErrorCategory c) {
  // The numbers are the protocol's (a client test checks it); so are the names.
  return proto::to_string(static_cast<proto::ErrorCategory>(c));
}

Error::Error(ErrorCategory category, std::string message, std::string sqlstate, bool client_side)
    : std::runtime_error(format(category, message, sqlstate)),
      category_(category),
      sqlstate_(std::move(sqlstate)),
      message_(std::move(message)),
      client_side_(client_side) {}

}  // namespace dbmgr
