// dbmgr-daemon-fuzz attackers: one hostile connection at a time, generated from the seed.
//
// A connection is a Script (the bytes, how they are written, whether replies are read, how
// the socket ends) made by make_script() from its own generator, so the same (seed, attacker,
// connection number) always gives the same bytes. predict() cuts those bytes into frames the
// way the daemon's decoder does and works out what a correct daemon must answer: which
// requests get exactly one final reply, and which frame (if any) is a protocol violation that
// must be answered by one kError `protocol` carrying its request id, then a close.
// run_script() sends it and checks every frame that comes back against that prediction.
//
// Threading: all of this runs on one attacker thread; Findings is the only shared state.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "fuzz.hpp"

namespace dbmgr::fuzz {

// Where the attackers play: databases that are not the checker's.
struct Target {
  std::string backend;               // "sqlite" or "postgresql"
  std::vector<std::string> databases;  // names to open (with `prefix`)
  std::string prefix;                  // "test" on SQLite (created on demand), "" on PostgreSQL
  std::uint32_t max_frame_bytes = 0;   // as configured in the daemon
  int max_sessions_per_client = 0;
};

struct Script {
  Kind kind = Kind::kRandomBytes;
  std::vector<std::uint8_t> bytes;
  std::vector<std::size_t> cuts;  // write boundaries (ascending offsets into bytes)
  int byte_delay_us = 0;          // > 0: written one byte at a time with this pause
  bool read_while_writing = true;
  enum class End : std::uint8_t {
    kReadToEnd,  // read until every request is answered, or until the daemon closes
    kHalfClose,  // shutdown(SHUT_WR), then read until the daemon closes
    kCloseNow,   // close as soon as the bytes are written
  } end = End::kReadToEnd;
};

// What a correct daemon does with Script::bytes (docs/protocol.md sections 2, 3, 12).
struct Prediction {
  std::size_t frames = 0;  // whole frames before any violation
  bool hello = false;      // a valid kHello opened the conversation
  bool violation = false;  // a frame the daemon must refuse
  std::uint32_t violation_rid = 0;
  std::uint32_t violation_sid = 0;  // what the error's session id must be
  std::string violation_why;
  bool partial_tail = false;  // bytes after the last whole frame (the daemon waits for more)
  bool dangerous = false;     // would touch the checker (see Protected); never sent
  // (request id, session id) -> how many final replies a correct daemon sends.
  std::map<std::pair<std::uint32_t, std::uint32_t>, int> finals;
};

Prediction predict(const Script& s, const Target& t, const Protected& p);
Script make_script(Kind kind, Rng& rng, const Target& t);

// Connects to `socket`, plays the script, counts outcomes into `stats`, and adds a finding
// (naming `tag`, which says how to replay it) for anything a correct daemon would not do.
void run_script(const std::string& socket, const Script& s, const Prediction& p,
                KindStats& stats, Findings& findings, const std::string& tag, bool verbose);

// The daemon answers a frame whose payload it refused with session id 0, where
// docs/protocol.md section 12 says the frame's session id (daemon/client_conn.cpp,
// ClientConn::protocol_error). Until one of them changes, --waive-protocol-error-session-0
// sets this to accept 0 there; every other check stays.
extern bool waive_protocol_error_session_0;

// A hex dump of the frames of a script, one frame a line (for --replay).
std::string dump_frames(const Script& s, std::uint32_t max_frame_bytes);

}  // namespace dbmgr::fuzz
