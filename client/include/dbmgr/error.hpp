// dbmgr::Error: the one exception type libdbmgr throws.
//
// Every failure the library reports, whether the daemon answered with an error frame
// (constraint violation, syntax error, pool exhausted...) or the Unix socket to the daemon
// broke, is a dbmgr::Error carrying a category, the backend's SQLSTATE where there is one,
// and a message a person can act on. what() combines all three in one line.
//
// Categories mirror the daemon's wire categories one to one (same numeric values), so code
// can switch on them without knowing the protocol. kConnection covers both a backend the
// daemon could not reach and the daemon's own socket failing; client_side() tells the two
// apart (true: the socket to dbmgrd failed, was never opened, or the library refused a call).
//
// Ownership and thread-safety: a plain value; copies are independent.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace dbmgr {

enum class ErrorCategory : std::uint8_t {
  kConnection = 1,       // the daemon's socket or the database backend cannot be reached
  kTimeout = 2,          // statement_timeout, idle_in_transaction_timeout, drain
  kPoolExhausted = 3,    // no backend connection became free within pool_timeout
  kConstraint = 4,       // unique, foreign key, not null, check
  kSyntax = 5,           // SQL the backend could not parse or plan, or wrong for the schema
  kPermission = 6,       // the daemon refused the request for these credentials
  kProtocol = 7,         // a malformed frame or a request out of order
  kInternal = 8,         // a bug or resource failure inside the daemon
  kCancelled = 9,        // the statement was cancelled
  kKilled = 10,          // an operator ended the session (dbmgrctl kill)
  kNotFound = 11,        // unknown session or database, or no such column
  kInvalidRequest = 12,  // well-formed but not allowed now (bad prefix, session failed...)
  kData = 13,            // a value of the wrong type, out of range, or NULL where none fits
  kShuttingDown = 14,    // the daemon is draining and takes no new sessions
  kBusy = 15,            // the backend reported a lock it could not get in time
  kReadOnly = 16,        // a write in a read-only session or on a read-only connection
  kTransaction = 17,     // invalid transaction state (BEGIN inside BEGIN, COMMIT without one)
  kSerialization = 18,   // serialization failure or deadlock: the transaction may succeed if retried
  kResources = 19,       // disk full, out of memory, too many connections, a program limit
  kIo = 20,              // an I/O error, a corrupt or unreadable database file
  kUnsupported = 21,     // a feature the backend does not support
};

// "connection", "pool_exhausted", ... (the names docs/protocol.md uses).
std::string_view to_string(ErrorCategory c);

class Error : public std::runtime_error {
 public:
  Error(ErrorCategory category, std::string message, std::string sqlstate = {},
        bool client_side = false);

  ErrorCategory category() const noexcept { return category_; }
  // Five-character SQLSTATE from the backend, or empty.
  const std::string& sqlstate() const noexcept { return sqlstate_; }
  // The message alone, without category or SQLSTATE.
  const std::string& message() const noexcept { return message_; }
  // True when the library itself raised the error (socket failure, misuse, type mismatch)
  // rather than relaying an error frame from the daemon.
  bool client_side() const noexcept { return client_side_; }

  // A client-side error (client_side() == true).
  static Error client(ErrorCategory category, std::string message) {
    return Error(category, std::move(message), {}, true);
  }

 private:
  ErrorCategory category_;
  std::string sqlstate_;
  std::string message_;
  bool client_side_;
};

}  // namespace dbmgr
