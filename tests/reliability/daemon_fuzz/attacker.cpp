// dbmgr-daemon-fuzz attackers: scripts from the seed, the prediction, and the connection.
#include "attacker.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <deque>
#include <sstream>

#include "dbmgr/protocol/codec.hpp"

namespace dbmgr::fuzz {

namespace {

using proto::MsgType;
using Clock = std::chrono::steady_clock;

// Without a frame or a write for this long while something is owed, the daemon is stuck.
// Generous: every wait the daemon itself may impose here (pool_timeout 1 s, statement and
// idle-in-transaction timeouts 2 s, stream_stall_timeout 3 s) is shorter.
constexpr auto kProgressBound = std::chrono::seconds(15);
// A writer that cannot write for this long (the daemon stopped reading: backpressure, or a
// request queue at its limit) starts reading, as docs/protocol.md section 4 asks.
constexpr auto kStuckWrite = std::chrono::milliseconds(500);

std::uint32_t pick(Rng& rng, std::uint32_t n) {  // 0..n-1
  return static_cast<std::uint32_t>(rng() % n);
}
bool chance(Rng& rng, int percent) { return pick(rng, 100) < static_cast<std::uint32_t>(percent); }

// SQL the attackers run on their own databases. Cheap on purpose: a bit flip may change a
// number, but nothing here can keep a worker thread busy for long.
const char* const kSqliteSql[] = {
    "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT, b BLOB)",
    "INSERT INTO t(v, b) VALUES (?, ?)",
    "INSERT INTO t(id, v) VALUES (1, 'dup')",
    "SELECT * FROM t ORDER BY id DESC LIMIT 20",
    "SELECT count(*) FROM t",
    "DELETE FROM t WHERE id % 3 = 0",
    "UPDATE t SET v = ? WHERE id = ?",
    "SELECT ?, ?, ?",
    "SELECT 1",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "SAVEPOINT a",
    "RELEASE a",
    "ROLLBACK TO nosuch",
    "SELEC 1",
    "",
    ";;",
    "SELECT 1; SELECT 2",
    "SELECT randomblob(300000)",
    "SELECT zeroblob(1100000)",
    ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000) "
     "SELECT x, hex(randomblob(40)) FROM c"),
    "PRAGMA table_info(t)",
    "ATTACH 'x.db' AS x",
    "SELECT load_extension('x')",
    "CREATE TABLE t (a, a)",
    "SELECT CAST(X'C0FF41' AS TEXT)",
    "SELECT abs(-9223372036854775807 - 1)",
    "SELECT * FROM nosuch",
};
const char* const kPgSql[] = {
    "CREATE TEMP TABLE IF NOT EXISTS t (id SERIAL PRIMARY KEY, v TEXT, b BYTEA)",
    "INSERT INTO t(v) VALUES (?)",
    "SELECT * FROM t ORDER BY id DESC LIMIT 20",
    "SELECT count(*) FROM t",
    "SELECT ?::text, ?::bigint",
    "SELECT 1",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "SAVEPOINT a",
    "ROLLBACK TO SAVEPOINT nosuch",
    "SELEC 1",
    "",
    "SELECT 1; SELECT 2",
    "SELECT pg_sleep(0.2)",
    "SELECT repeat('x', 300000)",
    "SELECT repeat('x', 1100000)",
    "SELECT g, md5(g::text) FROM generate_series(1, 3000) g",
    "SET statement_timeout = 1",
    "SELECT 1/0",
    "SELECT * FROM nosuch",
    "LISTEN fz",
};

// Owns the bytes of generated strings while their frames are encoded.
class FrameGen {
 public:
  FrameGen(Rng& rng, const Target& t) : rng_(rng), t_(t) {}

  std::uint32_t rid() {
    // Mostly fresh ids; sometimes a repeat (ids are the client's business, only echoed).
    if (!used_.empty() && chance(rng_, 10)) return used_[pick(rng_, used_.size())];
    std::uint32_t r = next_rid_++;
    used_.push_back(r);
    return r;
  }
  std::uint32_t sid() {
    static const std::uint32_t kSids[] = {1, 2, 3, 7, 0xFFFFFFFFu};
    return kSids[pick(rng_, 5)];
  }
  std::string_view db() {
    if (chance(rng_, 8)) {
      static const char* const kBad[] = {"../x", "a..b", "/etc", "UPPER", "", "sp ace", "nosuch.db"};
      return kBad[pick(rng_, 7)];
    }
    return t_.databases[pick(rng_, static_cast<std::uint32_t>(t_.databases.size()))];
  }
  std::string_view sql() {
    if (t_.backend == "postgresql") return kPgSql[pick(rng_, std::size(kPgSql))];
    return kSqliteSql[pick(rng_, std::size(kSqliteSql))];
  }
  std::vector<proto::Value> params() {
    std::vector<proto::Value> v(pick(rng_, 4));
    for (auto& x : v) {
      switch (pick(rng_, 6)) {
        case 0: x = proto::Value::null(); break;
        case 1: x = proto::Value::boolean(chance(rng_, 50)); break;
        case 2: x = proto::Value::int64(static_cast<std::int64_t>(rng_())); break;
        case 3: x = proto::Value::real(static_cast<double>(rng_() % 100000) / 7.0); break;
        case 4: x = proto::Value::text(keep(random_text())); break;
        default: x = proto::Value::blob(keep(random_blob())); break;
      }
    }
    return v;
  }

  void hello(std::vector<std::uint8_t>& out, std::uint32_t rid, std::uint16_t lo = 1,
             std::uint16_t hi = 1) {
    proto::Encoder e(out);
    proto::Hello h;
    h.min_version = lo;
    h.max_version = hi;
    h.client_name = "fuzz-attacker";
    h.pid = static_cast<std::uint32_t>(getpid());
    e.hello(rid, h);
  }
  // One random well-formed request (well-formed as bytes: it may still be out of order).
  void request(std::vector<std::uint8_t>& out) {
    proto::Encoder e(out);
    switch (pick(rng_, 12)) {
      case 0:
      case 1: {
        proto::Open o;
        o.database = db();
        o.prefix = t_.prefix;
        o.flags = chance(rng_, 25) ? proto::kOpenReadOnly : 0;
        e.open(rid(), sid(), o);
        break;
      }
      case 2:
      case 3:
      case 4: {
        auto p = params();
        e.execute(rid(), sid(), sql(), p.data(), p.size());
        break;
      }
      case 5: {
        auto p = params();
        e.one_shot(rid(), db(), t_.prefix, chance(rng_, 30) ? proto::kOpenReadOnly : 0, sql(),
                   p.data(), p.size());
        break;
      }
      case 6: e.empty(MsgType::kCommit, rid(), sid()); break;
      case 7: e.empty(MsgType::kRollback, rid(), sid()); break;
      case 8: e.empty(MsgType::kClose, rid(), sid()); break;
      case 9: e.empty(MsgType::kCancel, rid(), sid()); break;
      case 10: e.empty(MsgType::kPing, rid(), 0); break;
      default: {
        proto::Info i;
        i.database = db();
        i.prefix = t_.prefix;
        i.flags = chance(rng_, 30) ? proto::kInfoTestConnection : 0;
        e.info(rid(), i);
        break;
      }
    }
  }
  void admin(std::vector<std::uint8_t>& out) {
    proto::Encoder e(out);
    proto::Admin a;
    static const char* const kBadKill[] = {"", "x", ":", "1:", ":1", "abc:def", "1;1",
                                           "-1:1", " 1:1", "4000000000:1", "99999999999999999999:1",
                                           "4000000001:4294967296", "1:2:3"};
    switch (pick(rng_, 5)) {
      case 0: {  // a read command, with an argument half of the time (invalid_request)
        static const proto::AdminCommand kRead[] = {
            proto::AdminCommand::kStatus, proto::AdminCommand::kPools, proto::AdminCommand::kSessions,
            proto::AdminCommand::kClients, proto::AdminCommand::kEngines, proto::AdminCommand::kServers};
        a.command = kRead[pick(rng_, 6)];
        if (chance(rng_, 50)) a.argument = keep(random_text());
        break;
      }
      case 1:
        a.command = proto::AdminCommand::kKill;
        a.argument = kBadKill[pick(rng_, std::size(kBadKill))];
        break;
      case 2:  // drain / shutdown / reload with an argument: invalid_request, nothing happens
        a.command = chance(rng_, 50) ? proto::AdminCommand::kDrain
                                     : (chance(rng_, 50) ? proto::AdminCommand::kShutdown
                                                         : proto::AdminCommand::kReload);
        a.argument = keep("now" + std::string(pick(rng_, 3), '!'));
        break;
      case 3: {  // an unknown command byte: kBadEnum, a protocol error
        std::vector<std::uint8_t> tmp;
        proto::Encoder t(tmp);
        a.command = proto::AdminCommand::kStatus;
        t.admin(rid(), a);
        tmp[proto::kHeaderSize] = chance(rng_, 50) ? 0 : static_cast<std::uint8_t>(11 + pick(rng_, 245));
        out.insert(out.end(), tmp.begin(), tmp.end());
        return;
      }
      default:
        a.command = chance(rng_, 80) ? proto::AdminCommand::kSessions : proto::AdminCommand::kReload;
        break;
    }
    e.admin(rid(), a);
  }

  std::string random_text() {
    std::string s(pick(rng_, 40), 'a');
    for (auto& c : s) c = static_cast<char>('a' + pick(rng_, 26));
    if (chance(rng_, 10)) s += "\xC3\xA9";
    if (chance(rng_, 5)) s += "\xC0\xAF";  // overlong: not UTF-8, the frame is refused
    return s;
  }
  std::string random_blob() {
    std::string s(pick(rng_, 64), '\0');
    for (auto& c : s) c = static_cast<char>(rng_());
    return s;
  }
  std::string_view keep(std::string s) {
    strings_.push_back(std::move(s));
    return strings_.back();
  }

 private:
  Rng& rng_;
  const Target& t_;
  std::uint32_t next_rid_ = 2;
  std::vector<std::uint32_t> used_;
  std::deque<std::string> strings_;  // deque: views stay valid as it grows
};

void put_be32(std::uint8_t* p, std::uint32_t v) {
  p[0] = static_cast<std::uint8_t>(v >> 24);
  p[1] = static_cast<std::uint8_t>(v >> 16);
  p[2] = static_cast<std::uint8_t>(v >> 8);
  p[3] = static_cast<std::uint8_t>(v);
}
std::uint32_t be32(const std::uint8_t* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
         std::uint32_t{p[3]};
}

// Damages one encoded frame so that it still gets past some of the daemon's checks.
void mutate(std::vector<std::uint8_t>& f, Rng& rng, std::uint32_t max_frame) {
  const std::uint32_t len = be32(f.data());
  switch (pick(rng, 11)) {
    case 0:  // bit flips anywhere
    case 1:
      for (std::uint32_t i = 0, n = 1 + pick(rng, 4); i < n; ++i) {
        f[pick(rng, static_cast<std::uint32_t>(f.size()))] ^= static_cast<std::uint8_t>(1u << pick(rng, 8));
      }
      break;
    case 2: {  // bit flips in the payload only (past the header checks)
      if (f.size() <= proto::kHeaderSize) break;
      const auto n = static_cast<std::uint32_t>(f.size() - proto::kHeaderSize);
      f[proto::kHeaderSize + pick(rng, n)] ^= static_cast<std::uint8_t>(1u << pick(rng, 8));
      break;
    }
    case 3: {  // the length lies
      static const int kWays = 5;
      std::uint32_t v = len;
      switch (pick(rng, kWays)) {
        case 0: v = len == 0 ? 1 : len - 1 - pick(rng, len); break;  // low
        case 1: v = len + 1 + pick(rng, 64); break;                   // high
        case 2: v = 0; break;
        case 3: v = max_frame + 1 + pick(rng, 1000); break;
        default: v = 0xFFFFFFFFu - pick(rng, 3); break;
      }
      put_be32(f.data(), v);
      break;
    }
    case 4: {  // another type: a request, a reply, or no type at all
      static const std::uint8_t kTypes[] = {0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
                                            0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x7F, 0x80, 0x81,
                                            0x82, 0x86, 0x89, 0x8A, 0xFF};
      f[4] = kTypes[pick(rng, std::size(kTypes))];
      break;
    }
    case 5:  // flags or reserved
      f[5 + pick(rng, 3)] = static_cast<std::uint8_t>(1 + pick(rng, 255));
      break;
    case 6:  // the session id: 0 where one is needed, or one where none belongs
      put_be32(f.data() + 12, chance(rng, 50) ? 0 : 1 + pick(rng, 9));
      break;
    case 7: {  // truncated: the next frame's bytes become this one's payload
      if (f.size() <= 1) break;
      f.resize(1 + pick(rng, static_cast<std::uint32_t>(f.size() - 1)));
      break;
    }
    case 8: {  // a u32 inside the payload (a string length, a count) replaced
      if (f.size() < proto::kHeaderSize + 4) break;
      const auto at = proto::kHeaderSize +
                      pick(rng, static_cast<std::uint32_t>(f.size() - proto::kHeaderSize - 3));
      put_be32(f.data() + at, chance(rng, 50) ? static_cast<std::uint32_t>(rng()) : pick(rng, 70000));
      break;
    }
    case 9: {  // trailing bytes, with the length telling the truth about them
      const std::uint32_t extra = 1 + pick(rng, 8);
      for (std::uint32_t i = 0; i < extra; ++i) f.push_back(static_cast<std::uint8_t>(rng()));
      put_be32(f.data(), len + extra);
      break;
    }
    default: {  // not UTF-8 where text is required, or a bad value tag
      if (f.size() <= proto::kHeaderSize) break;
      const auto n = static_cast<std::uint32_t>(f.size() - proto::kHeaderSize);
      static const std::uint8_t kBad[] = {0xC0, 0xFF, 0xED, 0x06, 0x80, 0xF5};
      f[proto::kHeaderSize + pick(rng, n)] = kBad[pick(rng, std::size(kBad))];
      break;
    }
  }
}

void random_bytes(std::vector<std::uint8_t>& out, Rng& rng, std::uint32_t n) {
  for (std::uint32_t i = 0; i < n; ++i) out.push_back(static_cast<std::uint8_t>(rng()));
}

}  // namespace

Script make_script(Kind kind, Rng& rng, const Target& t) {
  Script s;
  s.kind = kind;
  FrameGen g(rng, t);
  auto& b = s.bytes;
  switch (kind) {
    case Kind::kRandomBytes:
      random_bytes(b, rng, 1 + pick(rng, chance(rng, 20) ? 16 : 4096));
      break;
    case Kind::kRandomAfterHello:
      g.hello(b, 1);
      random_bytes(b, rng, 1 + pick(rng, 2048));
      break;
    case Kind::kMutatedFrames: {
      if (chance(rng, 90)) {
        g.hello(b, 1);
      } else {  // a damaged or odd hello: versions no one speaks, min > max, a future range
        std::vector<std::uint8_t> h;
        static const std::uint16_t kRanges[][2] = {{2, 2}, {2, 1}, {0, 0}, {1, 2}, {0, 1}, {1, 65535}};
        auto r = kRanges[pick(rng, std::size(kRanges))];
        g.hello(h, 1, r[0], r[1]);
        if (chance(rng, 50)) mutate(h, rng, t.max_frame_bytes);
        b.insert(b.end(), h.begin(), h.end());
      }
      for (std::uint32_t i = 0, n = 1 + pick(rng, 30); i < n; ++i) {
        std::vector<std::uint8_t> f;
        if (chance(rng, 10)) {
          g.hello(f, g.rid());  // a second hello
        } else if (chance(rng, 8)) {
          g.admin(f);
        } else {
          g.request(f);
        }
        if (chance(rng, 25)) mutate(f, rng, t.max_frame_bytes);
        b.insert(b.end(), f.begin(), f.end());
      }
      break;
    }
    case Kind::kSessionChaos: {
      g.hello(b, 1);
      if (chance(rng, 15)) {  // more sessions than max_sessions_per_client
        proto::Encoder e(b);
        for (int i = 0; i < t.max_sessions_per_client + 4; ++i) {
          proto::Open o;
          o.database = t.databases[0];
          o.prefix = t.prefix;
          e.open(g.rid(), 100 + static_cast<std::uint32_t>(i), o);
        }
      }
      for (std::uint32_t i = 0, n = 5 + pick(rng, 60); i < n; ++i) g.request(b);
      break;
    }
    case Kind::kAdminChaos:
      g.hello(b, 1);
      for (std::uint32_t i = 0, n = 1 + pick(rng, 12); i < n; ++i) {
        if (chance(rng, 75)) g.admin(b); else g.request(b);
      }
      break;
    case Kind::kOversized: {
      g.hello(b, 1);
      proto::Encoder e(b);
      if (chance(rng, 50)) {
        // Exactly max_frame_bytes of payload: legal, and answered.
        const std::string_view sql = "SELECT length(?)";
        const std::size_t fixed = 4 + sql.size() + 2 + 1 + 4;  // str sql, count, tag, blob length
        std::string blob(t.max_frame_bytes - fixed - (chance(rng, 50) ? 0 : pick(rng, 100)), 'z');
        proto::Value v = proto::Value::blob(blob);
        e.execute(g.rid(), 1, sql, &v, 1);  // session 1 not open: not_found, still answered
        const std::string_view one = "SELECT length(?)";
        e.one_shot(g.rid(), t.databases[0], t.prefix, 0, one, &v, 1);
        if (chance(rng, 50)) {  // and one byte more: refused from the header alone
          std::vector<std::uint8_t> big;
          proto::Encoder eb(big);
          std::string more(blob.size() + 1 + (t.max_frame_bytes - fixed - blob.size()), 'y');
          proto::Value mv = proto::Value::blob(more);
          eb.one_shot(g.rid(), t.databases[0], t.prefix, 0, one, &mv, 1);
          b.insert(b.end(), big.begin(), big.end());
        }
      } else {
        // A header that announces more than the limit, and some of its "payload".
        std::vector<std::uint8_t> h;
        proto::Encoder eh(h);
        eh.empty(MsgType::kExecute, g.rid(), 1);
        std::uint32_t len = chance(rng, 50) ? t.max_frame_bytes + 1 : 0x80000000u + pick(rng, 1u << 30);
        put_be32(h.data(), len);
        b.insert(b.end(), h.begin(), h.end());
        random_bytes(b, rng, pick(rng, 200000));
      }
      break;
    }
    case Kind::kPipelineFlood: {
      g.hello(b, 1);
      proto::Encoder e(b);
      proto::Open o;
      o.database = t.databases[0];
      o.prefix = t.prefix;
      e.open(g.rid(), 1, o);
      const std::string_view sql = "SELECT 1";
      for (std::uint32_t i = 0, n = 200 + pick(rng, 2000); i < n; ++i) {
        switch (pick(rng, 4)) {
          case 0: e.empty(MsgType::kPing, g.rid(), 0); break;
          case 1: e.execute(g.rid(), 1, sql, nullptr, 0); break;
          case 2: e.one_shot(g.rid(), t.databases[0], t.prefix, proto::kOpenReadOnly, sql, nullptr, 0); break;
          default: e.empty(MsgType::kCommit, g.rid(), 1); break;
        }
      }
      s.read_while_writing = false;
      break;
    }
    case Kind::kHalfClosed:
      g.hello(b, 1);
      for (std::uint32_t i = 0, n = pick(rng, 20); i < n; ++i) g.request(b);
      s.end = Script::End::kHalfClose;
      break;
    case Kind::kSlowWriter: {
      g.hello(b, 1);
      for (std::uint32_t i = 0, n = 1 + pick(rng, 4); i < n; ++i) {
        std::vector<std::uint8_t> f;
        g.request(f);
        if (chance(rng, 20)) mutate(f, rng, t.max_frame_bytes);
        b.insert(b.end(), f.begin(), f.end());
      }
      if (b.size() > 600) b.resize(600);  // bounded: at most about a second of writing
      s.byte_delay_us = 200 + static_cast<int>(pick(rng, chance(rng, 10) ? 5000 : 1500));
      break;
    }
    case Kind::kAbruptClose: {
      g.hello(b, 1);
      proto::Encoder e(b);
      proto::Open o;
      o.database = t.databases[0];
      o.prefix = t.prefix;
      e.open(g.rid(), 1, o);
      const std::string_view slow =
          t.backend == "postgresql"
              ? std::string_view("SELECT pg_sleep(0.3), g FROM generate_series(1, 100) g")
              : std::string_view("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
                                 "WHERE x < 20000) SELECT x, hex(randomblob(64)) FROM c");
      e.execute(g.rid(), 1, "INSERT INTO t(v) VALUES ('held')", nullptr, 0);
      e.execute(g.rid(), 1, slow, nullptr, 0);
      e.one_shot(g.rid(), t.databases[0], t.prefix, 0, slow, nullptr, 0);
      s.end = Script::End::kCloseNow;
      s.read_while_writing = chance(rng, 50);
      break;
    }
    case Kind::kSilent:
    case Kind::kCount:
      break;
  }
  // Write boundaries: all at once, or in random pieces (a header split anywhere).
  if (s.byte_delay_us == 0 && chance(rng, 60) && !b.empty()) {
    std::size_t at = 0;
    while (at < b.size()) {
      at += 1 + pick(rng, chance(rng, 30) ? 16 : 4096);
      if (at < b.size()) s.cuts.push_back(at);
    }
  }
  if (kind != Kind::kPipelineFlood && kind != Kind::kAbruptClose && chance(rng, 10)) {
    s.end = chance(rng, 50) ? Script::End::kHalfClose : Script::End::kCloseNow;
  }
  return s;
}

namespace {

bool is_final(MsgType t) { return t != MsgType::kColumns && t != MsgType::kRows; }

// Would this valid request touch the checker? (Never sent; see Protected.)
bool dangerous(const proto::Message& m, const Protected& p) {
  auto names_checker = [&](std::string_view db, std::string_view prefix) {
    return !p.checker_database.empty() &&
           (db.find(p.checker_database) != std::string_view::npos ||
            prefix.find(p.checker_database) != std::string_view::npos);
  };
  if (auto* o = std::get_if<proto::Open>(&m)) return names_checker(o->database, o->prefix);
  if (auto* o = std::get_if<proto::OneShot>(&m)) return names_checker(o->database, o->prefix);
  if (auto* i = std::get_if<proto::Info>(&m)) return names_checker(i->database, i->prefix);
  if (auto* a = std::get_if<proto::Admin>(&m)) {
    using C = proto::AdminCommand;
    if ((a->command == C::kDrain || a->command == C::kShutdown) && a->argument.empty()) return true;
    if (a->command == C::kKill) {
      // Parsed as daemon/admin.cpp does; a kill of anyone but the checker is fair game.
      std::string_view arg = a->argument;
      auto colon = arg.find(':');
      std::uint64_t cid = 0;
      if (colon == std::string_view::npos) return false;
      if (std::from_chars(arg.data(), arg.data() + colon, cid).ec != std::errc()) return false;
      return p.client_ids.count(cid) != 0;
    }
  }
  return false;
}

}  // namespace

Prediction predict(const Script& s, const Target& t, const Protected& p) {
  Prediction r;
  const auto& b = s.bytes;
  std::size_t pos = 0;
  auto violate = [&](std::uint32_t rid, std::uint32_t sid, std::string why) {
    r.violation = true;
    r.violation_rid = rid;
    r.violation_sid = sid;
    r.violation_why = std::move(why);
  };
  while (b.size() - pos >= proto::kHeaderSize) {
    proto::Header h;
    auto err = proto::parse_header(b.data() + pos, t.max_frame_bytes, &h);
    if (err != proto::DecodeError::kOk) {  // refused from the header alone: ids 0
      violate(0, 0, "header: " + std::string(proto::to_string(err)));
      return r;
    }
    if (b.size() - pos - proto::kHeaderSize < h.length) {
      r.partial_tail = true;
      return r;
    }
    proto::FrameView f{h, b.data() + pos + proto::kHeaderSize};
    pos += proto::kHeaderSize + h.length;
    proto::Message m;
    err = proto::decode(f, &m);
    if (err != proto::DecodeError::kOk) {
      violate(h.request_id, h.session_id, "payload: " + std::string(proto::to_string(err)));
      return r;
    }
    if (!r.hello) {
      auto* hello = std::get_if<proto::Hello>(&m);
      if (hello == nullptr) {
        violate(h.request_id, h.session_id, "first frame is not hello");
        return r;
      }
      if (!proto::negotiate_version(hello->min_version, hello->max_version)) {
        violate(h.request_id, h.session_id, "no common version");
        return r;
      }
      r.hello = true;
    } else if (h.type == MsgType::kHello) {
      violate(h.request_id, h.session_id, "second hello");
      return r;
    } else if (proto::is_reply(h.type)) {
      violate(h.request_id, h.session_id, "a reply type sent by a client");
      return r;
    }
    if (dangerous(m, p)) r.dangerous = true;
    ++r.frames;
    ++r.finals[{h.request_id, h.session_id}];
  }
  r.partial_tail = pos < b.size();
  return r;
}

namespace {

class Conn {
 public:
  explicit Conn(const std::string& path) {
    fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    if (fd_ >= 0 && connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      connect_errno_ = errno;
      ::close(fd_);
      fd_ = -1;
    }
    if (fd_ >= 0) fcntl(fd_, F_SETFL, fcntl(fd_, F_GETFL) | O_NONBLOCK);
  }
  ~Conn() {
    if (fd_ >= 0) ::close(fd_);
  }
  int fd() const { return fd_; }
  int connect_errno() const { return connect_errno_; }

 private:
  int fd_ = -1;
  int connect_errno_ = 0;
};

}  // namespace

bool waive_protocol_error_session_0 = false;

void run_script(const std::string& socket_path, const Script& s, const Prediction& p,
                KindStats& st, Findings& findings, const std::string& tag, bool verbose) {
  auto outcome = [&](const std::string& what) { ++st.outcomes[what]; };
  auto finding = [&](const std::string& what) {
    outcome("FINDING");
    findings.add(tag + " (" + std::string(to_string(s.kind)) + "): " + what);
  };
  ++st.connections;
  st.frames += p.frames + (p.violation ? 1 : 0);
  Conn c(socket_path);
  if (c.fd() < 0) {
    // The listen backlog can be full for a moment under a flood of connects; the checker
    // (which connected first and stays connected) is what proves the daemon serves.
    outcome(std::string("connect failed: ") + std::strerror(c.connect_errno()));
    return;
  }
  auto finals = p.finals;  // still owed
  int owed = 0;
  for (auto& [k, n] : finals) owed += n;
  std::vector<std::uint8_t> in;
  std::size_t written = 0;
  std::size_t next_cut = 0;
  bool write_shut = false;
  bool eof = false;
  bool got_hello_ok = false;
  bool closing_error = false;  // an error that precedes a close (protocol, handshake, limit)
  bool reading = s.read_while_writing;
  auto last_progress = Clock::now();
  auto last_write = Clock::now();

  auto handle_frame = [&](const std::uint8_t* data) {
    proto::Header h;
    auto err = proto::parse_header(data, proto::kDefaultMaxFrameBytes, &h);
    proto::Message m;
    if (err == proto::DecodeError::kOk) err = proto::decode({h, data + proto::kHeaderSize}, &m);
    if (err != proto::DecodeError::kOk) {
      finding("the daemon sent a malformed frame: " + std::string(proto::to_string(err)));
      return false;
    }
    if (!proto::is_reply(h.type)) {
      finding("the daemon sent a request type " + std::string(proto::to_string(h.type)));
      return false;
    }
    if (closing_error) {
      finding("a frame (" + std::string(proto::to_string(h.type)) +
              ") came after the error that announces the close");
      return false;
    }
    const auto key = std::make_pair(h.request_id, h.session_id);
    auto* e = std::get_if<proto::ErrorMsg>(&m);
    const std::string type_name(proto::to_string(h.type));
    outcome(e != nullptr ? "error " + std::string(proto::to_string(e->category))
                         : "reply " + type_name);
    if (h.type == MsgType::kHelloOk) got_hello_ok = true;
    if (e != nullptr) {
      std::string msg(e->message);
      bool limit = msg.rfind("input limit:", 0) == 0;
      bool handshake = e->category == proto::ErrorCategory::kTimeout &&
                       msg.find("handshake_timeout") != std::string::npos && h.request_id == 0;
      bool clients = e->category == proto::ErrorCategory::kResources &&
                     msg.find("max_clients") != std::string::npos && h.request_id == 0;
      if (e->category == proto::ErrorCategory::kProtocol || handshake || clients) {
        closing_error = true;
        if (handshake && got_hello_ok) finding("handshake_timeout after a completed hello: " + msg);
        if (e->category == proto::ErrorCategory::kProtocol && !limit) {
          if (!p.violation) {
            finding("protocol error for a stream without a violation: " + msg);
          } else if (h.request_id != p.violation_rid) {
            finding("protocol error carries request id " + std::to_string(h.request_id) +
                    ", the refused frame had " + std::to_string(p.violation_rid) + " (" +
                    p.violation_why + "): " + msg);
          } else if (h.session_id != p.violation_sid &&
                     !(h.session_id == 0 && waive_protocol_error_session_0)) {
            // docs/protocol.md section 12: the error carries the refused frame's request id
            // and session id when its header could be parsed (0 and 0 when it could not).
            finding("protocol error carries session id " + std::to_string(h.session_id) +
                    ", the refused frame had " + std::to_string(p.violation_sid) + ": " + msg);
          }
        }
        return true;
      }
    }
    auto it = finals.find(key);
    if (it == finals.end()) {
      finding("a " + type_name + " for request " + std::to_string(h.request_id) + " session " +
              std::to_string(h.session_id) + ", which was never sent");
      return false;
    }
    if (is_final(h.type)) {
      if (it->second == 0) {
        finding("one final reply too many (" + type_name + ") for request " +
                std::to_string(h.request_id) + " session " + std::to_string(h.session_id));
        return false;
      }
      --it->second;
      --owed;
    }
    return true;
  };

  auto read_some = [&]() {
    char buf[65536];
    for (;;) {
      ssize_t n = recv(c.fd(), buf, sizeof(buf), 0);
      if (n > 0) {
        in.insert(in.end(), buf, buf + n);
        last_progress = Clock::now();
        continue;
      }
      if (n == 0) {
        eof = true;
      } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        eof = true;  // ECONNRESET: closed as well
        outcome("reset by daemon");
      }
      break;
    }
    std::size_t at = 0;
    while (in.size() - at >= proto::kHeaderSize) {
      std::uint32_t len = be32(in.data() + at);
      if (len > proto::kDefaultMaxFrameBytes) {
        finding("the daemon sent a frame header of " + std::to_string(len) + " bytes");
        eof = true;
        break;
      }
      if (in.size() - at - proto::kHeaderSize < len) break;
      if (!handle_frame(in.data() + at)) {
        eof = true;  // stop at the first wrong frame; it is reported
        at = in.size();
        break;
      }
      at += proto::kHeaderSize + len;
    }
    in.erase(in.begin(), in.begin() + static_cast<std::ptrdiff_t>(at));
  };

  bool done = false;
  while (!done) {
    const bool all_written = written == s.bytes.size();
    if (all_written && !write_shut) {
      if (s.end == Script::End::kCloseNow) {
        if (reading) read_some();
        outcome("closed by us");
        return;
      }
      if (s.end == Script::End::kHalfClose) shutdown(c.fd(), SHUT_WR);
      write_shut = true;
      reading = true;
      last_progress = Clock::now();
    }
    if (eof) break;
    if (write_shut && s.end == Script::End::kReadToEnd && !p.violation && p.hello && owed == 0) {
      // Everything answered; a partial tail the daemon still waits for is ours to abandon.
      outcome("all answered");
      return;
    }
    short events = 0;
    if (reading) events |= POLLIN;
    if (!all_written) events |= POLLOUT;
    int timeout_ms = 100;
    if (s.byte_delay_us > 0 && !all_written) {
      timeout_ms = std::max(1, s.byte_delay_us / 1000);
      auto since = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - last_write);
      if (since.count() < s.byte_delay_us) events &= ~POLLOUT;
    }
    pollfd pf{c.fd(), events, 0};
    int r = poll(&pf, 1, timeout_ms);
    if (r < 0 && errno != EINTR) break;
    if ((pf.revents & (POLLIN | POLLHUP | POLLERR)) != 0 && reading) read_some();
    if ((pf.revents & (POLLERR | POLLHUP)) != 0 && !reading) {
      read_some();  // the daemon closed while we were not reading: see what it said
      reading = true;
    }
    if ((pf.revents & POLLOUT) != 0 && !all_written && !eof) {
      std::size_t end = s.bytes.size();
      if (s.byte_delay_us > 0) {
        end = written + 1;
      } else if (next_cut < s.cuts.size()) {
        end = s.cuts[next_cut];
      }
      ssize_t w = send(c.fd(), s.bytes.data() + written, end - written, MSG_NOSIGNAL);
      if (w > 0) {
        written += static_cast<std::size_t>(w);
        st.bytes += static_cast<std::uint64_t>(w);
        if (next_cut < s.cuts.size() && written >= s.cuts[next_cut]) ++next_cut;
        last_write = last_progress = Clock::now();
      } else if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        // EPIPE/ECONNRESET: the daemon closed; read what it said before that.
        outcome("write refused (closed)");
        read_some();
        reading = true;
        written = s.bytes.size();
        write_shut = true;
        if (!eof) {
          // Let the reads below find the close.
        }
      }
    }
    const auto now = Clock::now();
    if (!all_written && !reading && now - last_write > kStuckWrite) {
      outcome("backpressure (started reading)");
      reading = true;
    }
    if (now - last_progress > kProgressBound) {
      std::ostringstream why;
      why << "no progress for " << std::chrono::duration_cast<std::chrono::seconds>(kProgressBound).count()
          << " s: written " << written << "/" << s.bytes.size() << ", " << owed
          << " replies owed, violation " << (p.violation ? p.violation_why : "none")
          << (p.partial_tail ? ", partial tail" : "");
      finding(why.str());
      return;
    }
  }
  // The daemon closed the connection.
  outcome("closed by daemon");
  if (verbose && owed > 0) outcome("closed with replies owed");
  if (!write_shut && written < s.bytes.size() && !closing_error) outcome("closed before all was written");
  if (s.end == Script::End::kReadToEnd && written == s.bytes.size() && !closing_error) {
    // A correct daemon closes a client that did nothing wrong only after an error frame
    // (docs/protocol.md section 12); a violation it must have answered.
    if (p.violation) {
      finding("closed without the protocol error for the refused frame (" + p.violation_why + ")");
    } else if (p.hello) {
      finding("closed a well-behaved connection with " + std::to_string(owed) +
              " replies owed and no error frame");
    }
  }
  if (s.end == Script::End::kReadToEnd && p.violation && !closing_error && written < s.bytes.size()) {
    outcome("closed mid-write");
  }
}

std::string dump_frames(const Script& s, std::uint32_t max_frame_bytes) {
  std::ostringstream out;
  const auto& b = s.bytes;
  std::size_t pos = 0;
  auto hex = [&](std::size_t from, std::size_t n) {
    static const char* d = "0123456789abcdef";
    for (std::size_t i = 0; i < n && i < 256; ++i) {
      out << d[b[from + i] >> 4] << d[b[from + i] & 15];
      if (i == 15) out << "  ";
    }
    if (n > 256) out << "... (" << n << " bytes)";
  };
  while (pos < b.size()) {
    std::size_t n = b.size() - pos;
    proto::Header h;
    if (n >= proto::kHeaderSize &&
        proto::parse_header(b.data() + pos, max_frame_bytes, &h) == proto::DecodeError::kOk &&
        n - proto::kHeaderSize >= h.length) {
      n = proto::kHeaderSize + h.length;
      out << proto::to_string(h.type) << " rid " << h.request_id << " sid " << h.session_id << ": ";
    } else {
      out << "rest: ";
    }
    hex(pos, n);
    out << "\n";
    pos += n;
  }
  return out.str();
}

}  // namespace dbmgr::fuzz
