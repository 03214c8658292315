// dbmgr-daemon-fuzz: the pieces the attackers, the checker and main() share
// (docs/reliability.md, "Whole-daemon fuzzer").
//
// Attackers (attacker.cpp) open raw connections to a real dbmgrd and send what no client
// should: random bytes, mutated frames, requests out of order, floods, half-closed and slow
// sockets. Each connection's bytes are a pure function of (seed, attacker, connection
// number), so one connection can be replayed alone (--replay). The checker (checker.cpp) is
// a well-behaved dbmgr::DatabaseManager client that must keep getting right answers in time.
//
// Threading: every attacker thread owns its Stats (merged by main() after the threads are
// joined); Findings is shared and locked.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace dbmgr::fuzz {

// What one attacker connection does; chosen per connection from the seed.
enum class Kind : std::uint8_t {
  kRandomBytes,       // random bytes from the first byte on, no hello
  kRandomAfterHello,  // a valid hello, then random bytes
  kMutatedFrames,     // valid frames, some with bit flips, lying lengths, wrong types...
  kSessionChaos,      // well-formed frames in a bad order: unknown sessions, duplicate ids,
                      // commit/rollback/close/cancel out of order, too many sessions
  kAdminChaos,        // admin commands with bad arguments, unknown command bytes
  kOversized,         // frames larger than max_frame_bytes, and exactly as large
  kPipelineFlood,     // hundreds of requests written without reading a reply
  kHalfClosed,        // requests, then shutdown(SHUT_WR), then read what comes
  kSlowWriter,        // a script written one byte at a time
  kAbruptClose,       // statements started, then the socket closed at once
  kSilent,            // connects and says nothing (handshake_timeout)
  kCount,
};
std::string_view to_string(Kind k);

struct Options {
  std::uint64_t seed = 0;
  double seconds = 20;
  std::string backend = "sqlite";  // or "postgresql"
  int attackers = 6;
  int reply_bound_ms = 5000;  // the checker's bound for any one reply
  bool verbose = false;
  // --replay T:N: run only connection N of attacker T (against a fresh daemon) and dump it.
  int replay_thread = -1;
  std::uint64_t replay_conn = 0;
  std::set<Kind> kinds;  // empty: all
};

// Counters of one attacker kind: what was sent and how the daemon answered.
struct KindStats {
  std::uint64_t connections = 0;
  std::uint64_t frames = 0;  // whole frames in the bytes sent (as the daemon would cut them)
  std::uint64_t bytes = 0;
  std::map<std::string, std::uint64_t> outcomes;  // "reply ok", "error protocol", "closed"...
};

struct Stats {
  KindStats kinds[static_cast<int>(Kind::kCount)];
  std::uint64_t rejected_scripts = 0;  // generated, but would have hit the checker (see attacker.cpp)
  void merge(const Stats& o);
};

// What went wrong, with enough to replay it. Thread-safe.
class Findings {
 public:
  void add(std::string what);
  std::vector<std::string> all() const;
  std::size_t size() const;

 private:
  mutable std::mutex mu_;
  std::vector<std::string> items_;  // guarded by mu_
  std::size_t dropped_ = 0;         // guarded by mu_: beyond the first 50
};

// A deterministic 64-bit generator; each connection gets its own from the seed.
using Rng = std::mt19937_64;
std::uint64_t mix(std::uint64_t a, std::uint64_t b);

// What the attackers must not touch: the checker's database and its client ids (an attacker
// holds admin rights, so a well-formed kill of a checker session would be a legitimate
// `killed` error for the checker, not a daemon defect).
struct Protected {
  std::string checker_database;      // resolved name, e.g. "checker"
  std::set<std::uint64_t> client_ids;  // the checker's connections, from admin clients
};

}  // namespace dbmgr::fuzz
