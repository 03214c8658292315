// dbmgr wire protocol v1: frame layout, message types, values, limits and error codes.
//
// This header is the single source of truth for the numbers on the wire; docs/protocol.md
// describes the same format for people. Nothing here does I/O: the daemon and the client
// feed bytes to the decoder (codec.hpp) and write the encoder's output themselves.
//
// Every frame is a 16-byte header followed by `length` payload bytes. All integers are in
// network byte order (big-endian); doubles are IEEE-754 binary64, also big-endian.
//
//   offset size field
//   0      4    length       payload bytes after this header (<= max_frame_bytes)
//   4      1    type         MsgType
//   5      1    flags        0 in v1 (any other value is a protocol error)
//   6      2    reserved     0 in v1
//   8      4    request_id   chosen by the client, echoed in every reply to that request
//   12     4    session_id   0 = no session; otherwise chosen by the client at kOpen
//
// Thread-safety: all types here are plain values; nothing is shared.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace dbmgr::proto {

inline constexpr std::uint16_t kVersion1 = 1;
inline constexpr std::uint16_t kMinVersion = kVersion1;
inline constexpr std::uint16_t kMaxVersion = kVersion1;

inline constexpr std::size_t kHeaderSize = 16;
inline constexpr std::uint32_t kDefaultMaxFrameBytes = 16u * 1024 * 1024;
// The daemon never lets a kRows frame grow past this many payload bytes: it ends the batch
// before a row that would not fit and starts another. The one exception is a single row that
// is larger than this on its own: it travels alone in one kRows frame, bounded only by
// max_frame_bytes (RowBatchEncoder::fits() implements the rule).
inline constexpr std::uint32_t kMaxRowBatchBytes = 256u * 1024;
// Hard caps on counts, independent of max_frame_bytes, so a decoder never loops or
// allocates on a forged count.
inline constexpr std::uint32_t kMaxParams = 65535;
inline constexpr std::uint32_t kMaxColumns = 4096;

// Message types. Requests have the high bit clear, replies have it set.
// `params` below is u16 count followed by that many values (see ValueTag).
enum class MsgType : std::uint8_t {
  // client -> daemon
  kHello = 0x01,     // u16 min_version, u16 max_version, str client_name, u32 pid
  kOpen = 0x02,      // str database, str prefix, u32 open flags          (session_id != 0)
  kExecute = 0x03,   // str sql, params                                   (session_id != 0)
  kOneShot = 0x04,   // str database, str prefix, u32 open flags, str sql, params (session 0)
  kCommit = 0x05,    // empty                                             (session_id != 0)
  kRollback = 0x06,  // empty                                             (session_id != 0)
  kClose = 0x07,     // empty: rolls back an open transaction, frees the session id
  kCancel = 0x08,    // empty: cancels the statement running in session_id
  kPing = 0x09,      // empty
  kInfo = 0x0A,      // str database, str prefix, u32 info flags
  kAdmin = 0x0B,     // u8 AdminCommand, str argument

  // daemon -> client
  kHelloOk = 0x81,      // u16 version, str server_version, u32 max_frame_bytes, u32 server pid
  kOk = 0x82,           // empty: the request succeeded and has no result
  kColumns = 0x83,      // u16 count, then per column: str name, u8 ValueTag (declared, or 0)
  kRows = 0x84,         // u32 row count, u16 column count, then row-major values
  kComplete = 0x85,     // i64 affected_rows, i64 last_insert_id, u8 in_transaction (0/1)
  kError = 0x86,        // u8 ErrorCategory, str sqlstate, str message
  kPong = 0x87,         // empty
  kInfoResult = 0x88,   // str type, str name, str uri, str pk_type, str pk_column_type
  kAdminResult = 0x89,  // str json
};

// Flags of kOpen / kOneShot.
inline constexpr std::uint32_t kOpenReadOnly = 1u << 0;
inline constexpr std::uint32_t kOpenKnownFlags = kOpenReadOnly;
// Flags of kInfo.
inline constexpr std::uint32_t kInfoTestConnection = 1u << 0;  // open and ping a backend now
inline constexpr std::uint32_t kInfoKnownFlags = kInfoTestConnection;

enum class AdminCommand : std::uint8_t {
  kStatus = 1,
  kPools = 2,
  kSessions = 3,
  kClients = 4,
  kEngines = 5,
  kReload = 6,
  kKill = 7,  // argument: session as "<client id>:<session id>" from kSessions
  kDrain = 8,
  kShutdown = 9,
  kServers = 10,  // the backend (server) connections of every pool, with their state
};

// Value tags. A str is u32 length + bytes (UTF-8 required for text). A value is u8 tag +:
enum class ValueTag : std::uint8_t {
  kNull = 0,    // nothing
  kBool = 1,    // u8 0 or 1
  kInt64 = 2,   // i64
  kDouble = 3,  // f64
  kText = 4,    // u32 length + UTF-8 bytes
  kBlob = 5,    // u32 length + bytes
};

enum class ErrorCategory : std::uint8_t {
  kConnection = 1,       // the backend cannot be reached or the connection broke
  kTimeout = 2,          // statement_timeout, idle_in_transaction_timeout, drain
  kPoolExhausted = 3,    // no backend connection within pool_timeout
  kConstraint = 4,       // unique, foreign key, not null, check
  kSyntax = 5,           // SQL the backend could not parse or plan, or wrong for the schema
  kPermission = 6,       // peer credentials do not allow the request
  kProtocol = 7,         // malformed frame or a request out of order
  kInternal = 8,         // a bug or resource failure inside the daemon
  kCancelled = 9,        // the statement was cancelled by kCancel
  kKilled = 10,          // the session was ended by an operator (dbmgrctl kill)
  kNotFound = 11,        // unknown session id or database
  kInvalidRequest = 12,  // well-formed but not allowed now (bad prefix, read-only write...)
  kData = 13,            // a value the backend refused (type mismatch, overflow, encoding)
  kShuttingDown = 14,    // the daemon is draining and takes no new sessions
  kBusy = 15,            // the backend reported a lock it could not get in time
  // 16-21: by SQLSTATE class (docs/protocol.md "SQLSTATE classes and categories").
  kReadOnly = 16,        // a write in a read-only session or on a read-only connection (25006)
  kTransaction = 17,     // invalid transaction state or termination (25, 0B, 2D, 3B)
  kSerialization = 18,   // serialization failure, deadlock, snapshot too old (40, 72): retry
  kResources = 19,       // disk full, out of memory, too many connections, a limit (53, 54)
  kIo = 20,              // system or I/O error, a corrupt or unreadable file (58)
  kUnsupported = 21,     // a feature the backend does not support (0A)
};

std::string_view to_string(MsgType t);
std::string_view to_string(ErrorCategory c);
std::string_view to_string(ValueTag t);
std::string_view to_string(AdminCommand c);
bool is_known(MsgType t);
bool is_known(ErrorCategory c);
bool is_known(AdminCommand c);
bool is_known(ValueTag t);
// True for the requests that must name a session (kOpen, kExecute, kCommit, kRollback,
// kClose, kCancel); false for the ones that must carry session id 0 and for replies.
bool needs_session(MsgType t);
// True for kHello, kOneShot, kInfo, kAdmin, kPing: requests that must carry session id 0.
bool forbids_session(MsgType t);
// Replies have the high bit set.
inline constexpr bool is_reply(MsgType t) { return (static_cast<std::uint8_t>(t) & 0x80) != 0; }

}  // namespace dbmgr::proto
