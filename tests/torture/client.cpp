// The client processes of dbmgr-torture: random transactions through libdbmgr, each one
// logged so that the oracle can decide afterwards what the database must hold.
//
// Each process has one DatabaseManager shared by cfg.threads threads; each thread is a
// "stream" with its own rows (every row carries the stream's number and the tag of the
// transaction that wrote it last), so streams never touch each other's rows and the only
// shared rows are the counters. A stream keeps a model of what it has committed, as dbmgrd
// told it, and checks every read against it.
//
// Log lines (tab-separated, one write(2) each; docs/testing.md lists them too):
//   P  pid incarnation threads                 process start
//   T  tag stream kind api                     a transaction starts (before its first statement)
//   S  tag index op k a b ok affected          a statement answered
//   S  tag index op k a b err category sqlstate message
//   C  tag [op k a b]                          BEFORE the commit is sent (one-shots: the op)
//   R  tag outcome [affected | category sqlstate message]   AFTER the answer; outcome is
//      committed, commit_failed, stmt_failed, rolled_back or unknown (the socket to dbmgrd
//      broke during the commit: the outcome cannot be known)
//   E  tag what category sqlstate message      an error outside a transaction's outcome (rollback)
//   V  tag class detail                        a check the client made failed (read, affected rows)
//   Y  stream kv_rows tx_log_rows              the model was re-read after an unexpected answer
//   Q  stream reason                           the stream ended normally
//   X  stream message                          the stream died on an exception (a test bug)
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <iterator>
#include <sstream>
#include <thread>

#include "torture.hpp"

namespace torture {
namespace {

enum class Api { kSession, kRun, kGetDb, kThreadSession };
std::string_view api_name(Api a) {
  switch (a) {
    case Api::kSession: return "get_session";
    case Api::kRun: return "run";
    case Api::kGetDb: return "get_db";
    case Api::kThreadSession: return "thread_session";
  }
  return "?";
}

// Thrown from inside run() to make it roll back.
struct Abort {};

// What a stream has committed, as far as dbmgrd told it (bounded: the oracle has the rest).
struct Model {
  std::map<std::string, KvRow> kv;
  std::vector<std::int64_t> parents;  // the latest few committed parent ids
  std::vector<std::string> tags;      // the latest few committed tx_log tags
  std::int64_t txlog = 0;             // tx_log rows of this stream
};

void apply_model(Model& m, const Op& op, const std::string& tag) {
  switch (op.kind) {
    case OpKind::kTxLog:
      ++m.txlog;
      m.tags.push_back(tag);
      if (m.tags.size() > 16) m.tags.erase(m.tags.begin());
      break;
    case OpKind::kInsKv: m.kv[op.k] = KvRow{op.a, tag}; break;
    case OpKind::kUpdKv: {
      auto it = m.kv.find(op.k);
      if (it != m.kv.end()) it->second = KvRow{it->second.v + op.a, tag};
      break;
    }
    case OpKind::kDelKv: m.kv.erase(op.k); break;
    case OpKind::kParent:
      m.parents.push_back(op.a);
      if (m.parents.size() > 64) m.parents.erase(m.parents.begin());
      break;
    default: break;
  }
}

std::string str(std::int64_t v) { return std::to_string(v); }

class Stream {
 public:
  Stream(const Config& cfg, dbmgr::DatabaseManager& m, EventLog& log, int incarnation, int thread)
      : cfg_(cfg),
        m_(m),
        log_(log),
        stream_(std::int64_t{incarnation} * kStreamsPerIncarnation + thread),
        rng_(mix_seed(cfg.seed, static_cast<std::uint64_t>(stream_))) {}

  void run() {
    const std::vector<std::string>& kinds = all_kinds();
    std::vector<int> weights = {28, 5, 12, 9, 5, 8, 8, 15, 4, 6};
    for (std::size_t i = 0; i < kinds.size(); ++i) {
      if (!cfg_.kinds.empty() && cfg_.kinds.count(kinds[i]) == 0) weights[i] = 0;
    }
    std::string reason = "deadline";
    while (Clock::now() < cfg_.deadline) {
      if (lost_) {
        reason = "the model could not be re-read after an unexpected answer";
        break;
      }
      if (consecutive_errors_ >= 20) {
        reason = "20 errors in a row";
        break;
      }
      const std::string& kind = kinds[rng_.weighted(weights)];
      outcome_.clear();
      if (kind == "ro_read" || kind == "ro_write") {
        read_only_tx(kind);
      } else if (kind.rfind("oneshot", 0) == 0) {
        one_shot(kind);
      } else {
        write_tx(kind);
      }
      // After an answer the contract does not allow, this stream's model may be wrong (a
      // commit reported as failed may have happened, one reported as done may not have):
      // read what is stored, so that one defect is reported once, not again by every later
      // transaction that trusted the model. The oracle judges from the logs, not the model.
      if (resync_needed_ || !as_expected(kind)) resync();
    }
    log_.line({"Q", str(stream_), reason});
  }

 private:
  std::string next_tag() { return make_tag(stream_, ++n_); }
  std::int64_t next_id() { return stream_ * 1'000'000'000 + ++ids_; }
  std::int64_t delta() {
    std::int64_t d = rng_.uniform(1, 99);
    return rng_.chance(0.5) ? d : -d;
  }

  // MariaDB has no deferred constraints: a foreign key is checked by each statement.
  bool immediate_fk() const { return cfg_.backend == Backend::kMariadb; }

  // ---- plans ----

  // The keys a transaction may update or delete: not the rows a read-only session wrote
  // (they must not exist; if they do, they stay as they are, for the oracle to report them
  // as read-only writes and nothing else).
  static std::vector<std::string> writable_keys(const Model& m) {
    std::vector<std::string> keys;
    for (const auto& [k, row] : m.kv) {
      if (k.size() < 3 || k.compare(k.size() - 3, 3, ".ro") != 0) keys.push_back(k);
    }
    return keys;
  }

  // A random op that can run now, applied to `sim` (the transaction's view so far).
  Op random_op(Model& sim, const std::string& tag, int j) {
    Op op;
    const std::vector<std::string> keys = writable_keys(sim);
    std::size_t n = keys.size();
    int ins = n < 20 ? 4 : n > 40 ? 1 : 2;
    int del = n == 0 ? 0 : n > 40 ? 4 : 1;
    int upd = n == 0 ? 0 : 2;
    int get = n == 0 ? 0 : 1;
    int child = sim.parents.empty() ? 0 : 1;
    switch (rng_.weighted({ins, upd, del, get, 2, 1, child})) {
      case 0:
        op.kind = OpKind::kInsKv;
        op.k = tag + "." + std::to_string(j);
        op.a = rng_.uniform(-1000, 1000);
        break;
      case 1:
      case 2:
      case 3: {
        op.k = rng_.pick(keys);
        op.kind = rng_.pick(std::vector<OpKind>{OpKind::kUpdKv, OpKind::kDelKv, OpKind::kGetKv});
        if (op.kind == OpKind::kUpdKv) op.a = delta();
        break;
      }
      case 4:
        op.kind = OpKind::kCtr;
        op.a = rng_.uniform(1, kCounters);
        op.b = delta();
        break;
      case 5:
        op.kind = OpKind::kParent;
        op.a = next_id();
        break;
      default:
        op.kind = OpKind::kChild;
        op.a = next_id();
        op.b = rng_.pick(sim.parents);
        break;
    }
    apply_model(sim, op, tag);
    return op;
  }

  std::vector<Op> plan(const std::string& kind, const std::string& tag) {
    Model sim = model_;
    std::vector<Op> ops;
    int total = static_cast<int>(rng_.uniform(1, 5));
    Op txlog{OpKind::kTxLog, tag, 0, 0};
    if (kind == "commit" || kind == "rollback") {
      int at = static_cast<int>(rng_.uniform(0, total - 1));
      for (int j = 0; j < total; ++j) ops.push_back(j == at ? txlog : random_op(sim, tag, j));
    } else if (kind == "fk_fix") {
      // The child comes first and its parent later: the deferred check at commit passes.
      // MariaDB checks at each statement: there the parent comes first, in the same
      // transaction (the child's check must see the uncommitted parent).
      std::int64_t parent = next_id();
      ops.push_back(txlog);
      Op child{OpKind::kChild, {}, next_id(), parent};
      if (immediate_fk()) ops.push_back(Op{OpKind::kParent, {}, parent, 0});
      if (!immediate_fk()) ops.push_back(child);
      if (rng_.chance(0.5)) ops.push_back(random_op(sim, tag, 2));
      if (immediate_fk()) ops.push_back(child);
      if (!immediate_fk()) ops.push_back(Op{OpKind::kParent, {}, parent, 0});
    } else if (kind == "fk_bad") {
      // A child whose parent never exists: the statement passes (deferred), the commit fails.
      // MariaDB: the statement itself fails.
      total = std::max(total, 2);
      int at_log = static_cast<int>(rng_.uniform(0, total - 1));
      int at_bad = static_cast<int>(rng_.uniform(0, total - 2));
      if (at_bad >= at_log) ++at_bad;
      for (int j = 0; j < total; ++j) {
        if (j == at_log) {
          ops.push_back(txlog);
        } else if (j == at_bad) {
          std::int64_t id = next_id();
          ops.push_back(Op{OpKind::kBadChild, {}, id, -id});
        } else {
          ops.push_back(random_op(sim, tag, j));
        }
      }
    } else {  // stmt_fail: a duplicate tx_log key after some work; then a commit that must fail
      ops.push_back(txlog);
      for (int j = 1; j < std::min(total, 3); ++j) ops.push_back(random_op(sim, tag, j));
      std::string dup = tag;
      if (!model_.tags.empty() && rng_.chance(0.5)) dup = rng_.pick(model_.tags);
      ops.push_back(Op{OpKind::kDupTxLog, dup, 0, 0});
    }
    // Counter rows are shared by every stream: update them in id order, so that two
    // transactions never wait for each other's counters the other way round (no deadlock).
    std::vector<std::int64_t> ids;
    for (const Op& op : ops) {
      if (op.kind == OpKind::kCtr) ids.push_back(op.a);
    }
    std::sort(ids.begin(), ids.end());
    std::size_t next = 0;
    for (Op& op : ops) {
      if (op.kind == OpKind::kCtr) op.a = ids[next++];
      if (op.kind == OpKind::kTxLog) op.a = static_cast<std::int64_t>(ops.size());
    }
    return ops;
  }

  // ---- logging ----

  std::vector<std::string> op_fields(const std::string& letter, const std::string& tag, const Op& op) {
    return {letter, tag, std::string(op_name(op.kind)), op.k.empty() ? "-" : op.k, str(op.a), str(op.b)};
  }
  void log_error(std::vector<std::string> f, const dbmgr::Error& e) {
    f.push_back(category_of(e));
    f.push_back(e.sqlstate().empty() ? "-" : e.sqlstate());
    f.push_back(clean(e.message()));
    log_.line(f);
  }
  void violation(const std::string& tag, const std::string& cls, const std::string& detail) {
    log_.line({"V", tag, cls, clean(detail)});
    resync_needed_ = true;
  }
  void outcome(const std::string& tag, const std::string& what) {
    log_.line({"R", tag, what});
    outcome_ = what;
    consecutive_errors_ = 0;
  }
  void outcome(const std::string& tag, const std::string& what, const dbmgr::Error& e) {
    log_error({"R", tag, what}, e);
    outcome_ = what;
    // Only a dead daemon makes errors come in a row (the workload's own failures are planned).
    if (e.category() == dbmgr::ErrorCategory::kConnection) {
      ++consecutive_errors_;
    } else {
      consecutive_errors_ = 0;
    }
  }
  // Whether the last transaction ended as the contract says a transaction of `kind` must.
  bool as_expected(const std::string& kind) const {
    const std::string& o = outcome_;
    if (kind == "fk_bad") return o == (immediate_fk() ? "stmt_failed" : "commit_failed");
    if (kind == "oneshot_fk") return o == "commit_failed";
    if (kind == "stmt_fail") return o == "commit_failed" || o == "stmt_failed";  // run(): the statement's error
    if (kind == "rollback") return o == "rolled_back";
    if (kind == "ro_write") return o == "stmt_failed";
    if (kind == "oneshot_ro") return o == (ro_one_shot_write_ ? "commit_failed" : "committed");
    return o == "committed";
  }

  // Replaces the model with what a read-only session reads now (see run()); tries three
  // times, then ends the stream.
  void resync() {
    resync_needed_ = false;
    for (int attempt = 1;; ++attempt) {
      try {
        read_model();
        return;
      } catch (const dbmgr::Error& e) {
        log_error({"E", "s" + str(stream_), "resync"}, e);
        if (attempt == 3) {
          lost_ = true;  // the model cannot be trusted any more
          return;
        }
      }
    }
  }

  void read_model() {
    {
      Model fresh;
      dbmgr::Session s = m_.get_session(dbmgr::Access::kReadOnly);
      for (const dbmgr::Row& r : s.execute("SELECT k, v, tag FROM kv WHERE stream = ?", {stream_})) {
        fresh.kv[r.get<std::string>(0)] = KvRow{r.get<std::int64_t>(1), r.get<std::string>(2)};
      }
      fresh.txlog = s.execute("SELECT count(*) FROM tx_log WHERE stream = ?", {stream_}).scalar<std::int64_t>();
      for (const dbmgr::Row& r : s.execute("SELECT tag FROM tx_log WHERE stream = ? LIMIT 16", {stream_})) {
        fresh.tags.push_back(r.get<std::string>(0));
      }
      for (const dbmgr::Row& r : s.execute("SELECT id FROM parent WHERE stream = ? LIMIT 64", {stream_})) {
        fresh.parents.push_back(r.get<std::int64_t>(0));
      }
      s.commit();
      log_.line({"Y", str(stream_), str(static_cast<std::int64_t>(fresh.kv.size())), str(fresh.txlog)});
      model_ = std::move(fresh);
    }
  }
  // A commit error that is a broken socket to dbmgrd: the commit may or may not have happened.
  static bool unknown_outcome(const dbmgr::Error& e) {
    return e.client_side() && e.category() == dbmgr::ErrorCategory::kConnection;
  }

  // ---- statements ----

  // Runs `op` and logs its answer; checks it against `view` (the transaction's view so far)
  // and applies it there. Throws dbmgr::Error (already logged) when the statement fails.
  void run_op(dbmgr::Session& s, const std::string& tag, const std::string& kind, int idx,
              const Op& op, Model& view) {
    Sql q = sql_for(op, tag, stream_, kind);
    dbmgr::Result r;
    auto f = op_fields("S", tag, op);
    f.insert(f.begin() + 2, str(idx));
    try {
      r = s.execute(q.text, q.params);
    } catch (const dbmgr::Error& e) {
      f.push_back("err");
      log_error(f, e);
      throw;
    }
    f.push_back("ok");
    f.push_back(str(r.affected_rows()));
    log_.line(f);
    check(tag, op, r, view);
    apply_model(view, op, tag);
  }

  // What dbmgrd answered for `op` must be what `view` predicts.
  void check(const std::string& tag, const Op& op, const dbmgr::Result& r, const Model& view) {
    std::ostringstream why;
    auto expect_affected = [&](std::int64_t n) {
      if (r.affected_rows() != n) {
        why << op_name(op.kind) << " " << (op.k.empty() ? std::to_string(op.a) : op.k)
            << ": affected_rows " << r.affected_rows() << ", expected " << n;
        violation(tag, "AFFECTED_ROWS", why.str());
      }
    };
    switch (op.kind) {
      case OpKind::kTxLog:
      case OpKind::kInsKv:
      case OpKind::kCtr:
      case OpKind::kParent:
      case OpKind::kChild:
      case OpKind::kBadChild: expect_affected(1); break;
      case OpKind::kUpdKv:
      case OpKind::kDelKv: expect_affected(view.kv.count(op.k) != 0 ? 1 : 0); break;
      case OpKind::kGetKv: {
        auto it = view.kv.find(op.k);
        std::string want = it == view.kv.end() ? "no row" : "v=" + str(it->second.v) + " tag=" + it->second.tag;
        std::string got = "no row";
        if (r.size() > 1) got = std::to_string(r.size()) + " rows";
        if (r.size() == 1) {
          got = "v=" + str(r[0].get<std::int64_t>(0)) + " tag=" + r[0].get<std::string>(1);
        }
        if (want != got) violation(tag, "READ_MISMATCH", "get_kv " + op.k + ": read " + got + ", expected " + want);
        break;
      }
      case OpKind::kReadKv: {
        std::map<std::string, KvRow> got;
        for (const dbmgr::Row& row : r) {
          got[row.get<std::string>(0)] = KvRow{row.get<std::int64_t>(1), row.get<std::string>(2)};
        }
        if (got != view.kv) {
          why << "read_kv of stream " << stream_ << ": " << got.size() << " rows, expected "
              << view.kv.size();
          for (const auto& [k, row] : view.kv) {
            auto it = got.find(k);
            if (it == got.end()) {
              why << "; missing " << k;
              break;
            }
            if (!(it->second == row)) {
              why << "; " << k << " v=" << it->second.v << " tag=" << it->second.tag
                  << ", expected v=" << row.v << " tag=" << row.tag;
              break;
            }
          }
          for (const auto& [k, row] : got) {
            if (view.kv.count(k) == 0) {
              why << "; unexpected " << k << " (tag " << row.tag << ")";
              break;
            }
          }
          violation(tag, "READ_MISMATCH", why.str());
        }
        break;
      }
      case OpKind::kCountTxLog:
      case OpKind::kCountKv: {
        std::int64_t want = op.kind == OpKind::kCountTxLog ? view.txlog
                                                            : static_cast<std::int64_t>(view.kv.size());
        std::int64_t got = r.scalar<std::int64_t>();
        if (got != want) {
          why << op_name(op.kind) << " of stream " << stream_ << ": " << got << ", expected " << want;
          violation(tag, "READ_MISMATCH", why.str());
        }
        break;
      }
      default: break;
    }
  }

  Api pick_api(bool thread_session_ok) {
    std::vector<Api> apis = {Api::kSession, Api::kRun, Api::kGetDb};
    if (thread_session_ok) apis.push_back(Api::kThreadSession);
    return rng_.pick(apis);
  }

  void rollback(dbmgr::Session& s, const std::string& tag, Api api) {
    try {
      s.rollback();
    } catch (const dbmgr::Error& e) {
      log_error({"E", tag, "rollback"}, e);
      if (api == Api::kThreadSession) m_.cleanup_thread();
    }
  }

  // ---- read-write transactions: commit, fk_fix, fk_bad, rollback, stmt_fail ----

  void write_tx(const std::string& kind) {
    const std::string tag = next_tag();
    std::vector<Op> ops = plan(kind, tag);
    const bool roll_back = kind == "rollback";
    const bool expect_stmt_error = kind == "stmt_fail";
    Api api = pick_api(true);
    log_.line({"T", tag, str(stream_), kind, std::string(api_name(api))});
    Model view = model_;
    bool committed = false;

    if (api == Api::kRun) {
      // run() commits when the function returns and rolls back when it throws.
      bool commit_sent = false;
      try {
        m_.run([&](dbmgr::Session& s) {
          for (std::size_t i = 0; i < ops.size(); ++i) run_op(s, tag, kind, static_cast<int>(i), ops[i], view);
          if (roll_back) throw Abort{};
          log_.line({"C", tag});
          commit_sent = true;
        });
        committed = true;
        outcome(tag, "committed");
      } catch (const Abort&) {
        outcome(tag, "rolled_back");
      } catch (const dbmgr::Error& e) {
        if (!commit_sent) {
          outcome(tag, "stmt_failed", e);
        } else {
          outcome(tag, unknown_outcome(e) ? "unknown" : "commit_failed", e);
        }
      }
    } else {
      std::optional<dbmgr::Session> own;
      std::optional<dbmgr::ScopedSession> scoped;
      dbmgr::Session* s = nullptr;
      if (api == Api::kSession) s = &own.emplace(m_.get_session());
      if (api == Api::kGetDb) s = &scoped.emplace(m_.get_db(/*auto_commit=*/false));
      if (api == Api::kThreadSession) s = &m_.thread_session();
      bool stmt_failed = false;
      try {
        for (std::size_t i = 0; i < ops.size(); ++i) run_op(*s, tag, kind, static_cast<int>(i), ops[i], view);
      } catch (const dbmgr::Error& e) {
        stmt_failed = true;
        if (!expect_stmt_error) {  // stmt_fail: the commit below must fail too
          outcome(tag, "stmt_failed", e);
          rollback(*s, tag, api);
          return;
        }
      }
      if (roll_back) {
        if (api == Api::kGetDb && rng_.chance(0.5)) {
          scoped.reset();  // leaves its scope without commit: rolled back
        } else {
          rollback(*s, tag, api);
        }
        outcome(tag, "rolled_back");
        return;
      }
      if (expect_stmt_error && !stmt_failed) {
        // The duplicate key was accepted (the oracle reports it from the S line).
        rollback(*s, tag, api);
        outcome(tag, "rolled_back");
        return;
      }
      log_.line({"C", tag});
      try {
        s->commit();
        committed = true;
        outcome(tag, "committed");
      } catch (const dbmgr::Error& e) {
        outcome(tag, unknown_outcome(e) ? "unknown" : "commit_failed", e);
        rollback(*s, tag, api);
      }
    }
    // A commit that broke the deferred FK and still "succeeded" is not trusted: run() resyncs.
    if (committed && kind != "fk_bad") model_ = std::move(view);
  }

  // ---- read-only sessions: reads checked against the model; sometimes a write that must fail ----

  void read_only_tx(const std::string& kind) {
    const std::string tag = next_tag();
    const bool try_write = kind == "ro_write";
    std::vector<Op> ops;
    int reads = static_cast<int>(rng_.uniform(1, 3));
    for (int j = 0; j < reads; ++j) {
      Op op;
      op.kind = rng_.pick(std::vector<OpKind>{OpKind::kReadKv, OpKind::kGetKv, OpKind::kCountTxLog,
                                              OpKind::kCountKv});
      if (op.kind == OpKind::kGetKv) {
        if (model_.kv.empty() || rng_.chance(0.2)) {
          op.k = tag + ".none";
        } else {
          auto it = model_.kv.begin();
          std::advance(it, rng_.uniform(0, static_cast<std::int64_t>(model_.kv.size()) - 1));
          op.k = it->first;
        }
      }
      ops.push_back(op);
    }
    if (try_write) {
      Op w;
      w.kind = rng_.chance(0.5) ? OpKind::kRoTxLog : OpKind::kRoKv;
      w.k = w.kind == OpKind::kRoKv ? tag + ".ro" : tag;
      w.a = rng_.uniform(1, 1000);
      ops.push_back(w);  // last: a read after an accepted write would only repeat the finding
    }
    Api api = pick_api(false);
    log_.line({"T", tag, str(stream_), kind, std::string(api_name(api))});
    Model view = model_;
    auto body = [&](dbmgr::Session& s) {
      for (std::size_t i = 0; i < ops.size(); ++i) run_op(s, tag, kind, static_cast<int>(i), ops[i], view);
      log_.line({"C", tag});
    };
    bool commit_sent = false;
    try {
      if (api == Api::kRun) {
        m_.run(
            [&](dbmgr::Session& s) {
              body(s);
              commit_sent = true;
            },
            dbmgr::Access::kReadOnly);
      } else {
        dbmgr::Session own;
        std::optional<dbmgr::ScopedSession> scoped;
        dbmgr::Session* s = &own;
        if (api == Api::kSession) own = m_.get_session(dbmgr::Access::kReadOnly);
        if (api == Api::kGetDb) s = &scoped.emplace(m_.get_db(false, dbmgr::Access::kReadOnly));
        try {
          body(*s);
        } catch (const dbmgr::Error&) {
          rollback(*s, tag, api);
          throw;
        }
        commit_sent = true;
        try {
          s->commit();
        } catch (const dbmgr::Error&) {
          rollback(*s, tag, api);
          throw;
        }
      }
      outcome(tag, "committed");
    } catch (const dbmgr::Error& e) {
      outcome(tag, commit_sent ? (unknown_outcome(e) ? "unknown" : "commit_failed") : "stmt_failed", e);
    }
  }

  // ---- one-shots: DatabaseManager::execute, one statement in its own transaction ----

  void one_shot(const std::string& kind) {
    const std::string tag = next_tag();
    Op op;
    dbmgr::Access access = dbmgr::Access::kReadWrite;
    if (kind == "oneshot") {
      const std::vector<std::string> keys = writable_keys(model_);
      std::vector<int> w = {3, 2, keys.empty() ? 0 : 3};
      switch (rng_.weighted(w)) {
        case 0: op = Op{OpKind::kInsKv, tag + ".0", rng_.uniform(-1000, 1000), 0}; break;
        case 1: op = Op{OpKind::kTxLog, tag, 1, 0}; break;
        default: {
          op.k = rng_.pick(keys);
          op.kind = keys.size() > 30 || rng_.chance(0.3) ? OpKind::kDelKv : OpKind::kUpdKv;
          if (op.kind == OpKind::kUpdKv) op.a = delta();
          break;
        }
      }
    } else if (kind == "oneshot_fk") {
      std::int64_t id = next_id();
      op = Op{OpKind::kBadChild, {}, id, -id};
    } else {  // oneshot_ro
      access = dbmgr::Access::kReadOnly;
      ro_one_shot_write_ = rng_.chance(0.5);
      if (!ro_one_shot_write_) {
        op = Op{rng_.chance(0.5) ? OpKind::kCountKv : OpKind::kCountTxLog, {}, 0, 0};
      } else {
        op = Op{OpKind::kRoKv, tag + ".ro", rng_.uniform(1, 1000), 0};
      }
    }
    log_.line({"T", tag, str(stream_), kind, "execute"});
    Sql q = sql_for(op, tag, stream_, kind);
    log_.line(op_fields("C", tag, op));
    try {
      dbmgr::Result r = m_.execute(q.text, q.params, access);
      log_.line({"R", tag, "committed", str(r.affected_rows())});
      outcome_ = "committed";
      consecutive_errors_ = 0;
      check(tag, op, r, model_);
      if (kind == "oneshot") apply_model(model_, op, tag);
    } catch (const dbmgr::Error& e) {
      outcome(tag, unknown_outcome(e) ? "unknown" : "commit_failed", e);
    }
  }

  const Config& cfg_;
  dbmgr::DatabaseManager& m_;
  EventLog& log_;
  const std::int64_t stream_;
  Rng rng_;
  std::int64_t n_ = 0;    // transactions started
  std::int64_t ids_ = 0;  // parent and child ids handed out
  Model model_;
  bool lost_ = false;
  int consecutive_errors_ = 0;
  std::string outcome_;            // of the last transaction
  bool resync_needed_ = false;     // a check failed during the last transaction
  bool ro_one_shot_write_ = false; // the last oneshot_ro tried a write
};

}  // namespace

const std::vector<std::string>& all_kinds() {
  static const std::vector<std::string> kinds = {"commit",  "fk_fix",   "fk_bad",  "rollback",   "stmt_fail",
                                                 "ro_read", "ro_write", "oneshot", "oneshot_fk", "oneshot_ro"};
  return kinds;
}

int run_client(const Config& cfg, int incarnation) {
  EventLog log(cfg.log_dir + "/client-" + std::to_string(incarnation) + ".log");
  log.line({"P", std::to_string(getpid()), std::to_string(incarnation), std::to_string(cfg.threads)});
  dbmgr::DatabaseManager m(cfg.options());
  std::atomic<int> failed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < cfg.threads; ++t) {
    threads.emplace_back([&, t] {
      std::int64_t stream = std::int64_t{incarnation} * kStreamsPerIncarnation + t;
      try {
        Stream s(cfg, m, log, incarnation, t);
        s.run();
      } catch (const std::exception& e) {
        log.line({"X", std::to_string(stream), clean(e.what())});
        failed.fetch_add(1);
      }
      m.cleanup_thread();
    });
  }
  for (auto& t : threads) t.join();
  return failed.load() == 0 ? 0 : 1;
}

}  // namespace torture
