// The oracle of dbmgr-torture: after the run, reads every client's log and the database
// directly (never through dbmgrd) and decides whether what is stored matches what every
// client was told.
//
// 1. Each transaction's answers are judged on their own: a deferred-FK violation must fail
//    at commit with category constraint (SQLSTATE 23503), a read-only write must be refused,
//    a duplicate key must be refused, nothing else may fail.
// 2. Each stream's committed transactions are replayed in order (the same apply() the
//    clients use) into the state the database must hold for that stream: its tx_log, kv,
//    parent and child rows, and its share of the counters. A transaction whose commit was
//    in flight when its process was killed may be either way: both are tried and the one
//    that matches is taken. Every other transaction is either in (acknowledged commit) or
//    out (failed, rolled back, killed before its commit was sent).
// 3. The expected rows are compared with the stored ones row by row; every difference is
//    attributed to the transaction that wrote (or should have written) the row.
// 4. The schema worker's comparisons (dbmgrd vs direct) are collected from its log.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>

#include "torture.hpp"

namespace torture {
namespace {

// A write in a read-only session must be refused. dbmgrd will soon answer category
// read_only (SQLSTATE 25006); until then any error is accepted. Tighten here, e.g.
//   if (category != "read_only" || sqlstate != "25006") return "expected read_only/25006";
std::optional<std::string> read_only_refusal_problem(const std::string& category,
                                                     const std::string& sqlstate) {
  // docs/protocol.md: a write in a read-only session gets read_only, SQLSTATE 25006.
  if (category == "read_only" && sqlstate == "25006") return std::nullopt;
  return std::string("a refused read-only write must be read_only/25006");
}

// The error a commit that breaks a deferred foreign key must get (MariaDB: the statement that
// breaks the immediate one; 23000 is also a duplicate key there, so the message must say which).
bool is_fk_error(Backend b, const std::string& category, const std::string& sqlstate,
                 const std::string& message) {
  if (category != "constraint") return false;
  if (b == Backend::kMariadb) {
    return sqlstate == "23000" && message.find("foreign key constraint fails") != std::string::npos;
  }
  if (sqlstate == "23503") return true;
  return b == Backend::kSqlite && message.find("FOREIGN KEY constraint failed") != std::string::npos;
}

struct ErrorInfo {
  std::string category, sqlstate, message;
  std::string text() const { return category + "/" + sqlstate + " \"" + message + "\""; }
};

struct StmtRec {
  int index = 0;
  Op op;
  bool ok = false;
  std::int64_t affected = -1;
  ErrorInfo error;
};

struct TxRec {
  std::string tag;
  std::int64_t stream = 0;
  int incarnation = 0;
  std::string kind, api;
  std::vector<StmtRec> stmts;
  std::optional<Op> one_shot_op;  // from the C line of a one-shot
  bool commit_sent = false;
  std::string outcome;  // empty: no R line
  ErrorInfo error;      // of the R line
  std::vector<std::string> client_violations;  // "class\tdetail"
  std::vector<std::string> other_errors;       // E lines

  bool is_one_shot() const { return kind.rfind("oneshot", 0) == 0; }
  bool is_read_only() const { return kind == "ro_read" || kind == "ro_write" || kind == "oneshot_ro"; }
  std::string who() const { return tag + " (" + kind + ", " + api + ")"; }
  // The ops that took effect if the transaction committed.
  std::vector<Op> effects() const {
    std::vector<Op> ops;
    if (one_shot_op) {
      ops.push_back(*one_shot_op);
    } else {
      for (const auto& s : stmts) {
        if (s.ok) ops.push_back(s.op);
      }
    }
    return ops;
  }
};

struct StreamRec {
  std::int64_t stream = 0;
  int incarnation = 0;
  std::vector<std::string> tags;  // in execution order
  std::string end;                // Q reason, X message, or empty (killed)
};

struct Logs {
  std::map<std::string, TxRec> txs;
  std::map<std::int64_t, StreamRec> streams;
  std::map<int, pid_t> pids;  // incarnation -> pid from the P line
  std::vector<std::string> bad_lines;
  std::vector<std::string> other_errors;  // E lines outside a transaction
  std::vector<std::string> schema_lines;
  std::size_t resyncs = 0;
};

Op parse_op(const std::vector<std::string>& f, std::size_t at) {
  Op op;
  if (auto k = op_from_name(f.at(at))) op.kind = *k;
  op.k = f.at(at + 1) == "-" ? "" : f.at(at + 1);
  op.a = std::stoll(f.at(at + 2));
  op.b = std::stoll(f.at(at + 3));
  return op;
}

ErrorInfo parse_error(const std::vector<std::string>& f, std::size_t at) {
  ErrorInfo e;
  if (f.size() > at) e.category = f[at];
  if (f.size() > at + 1) e.sqlstate = f[at + 1] == "-" ? "" : f[at + 1];
  if (f.size() > at + 2) e.message = f[at + 2];
  return e;
}

void read_client_log(const std::string& path, int incarnation, Logs& logs) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (in.eof()) break;  // a last line without '\n' was cut by the SIGKILL
    auto f = split_tabs(line);
    try {
      const std::string& t = f.at(0);
      if (t == "P") {
        logs.pids[incarnation] = static_cast<pid_t>(std::stol(f.at(1)));
      } else if (t == "T") {
        TxRec& tx = logs.txs[f.at(1)];
        tx.tag = f[1];
        tx.stream = std::stoll(f.at(2));
        tx.kind = f.at(3);
        tx.api = f.at(4);
        tx.incarnation = incarnation;
        StreamRec& s = logs.streams[tx.stream];
        s.stream = tx.stream;
        s.incarnation = incarnation;
        s.tags.push_back(tx.tag);
      } else if (t == "Q" || t == "X") {
        StreamRec& s = logs.streams[std::stoll(f.at(1))];
        s.stream = std::stoll(f[1]);
        s.incarnation = incarnation;
        s.end = (t == "Q" ? "ended: " : "exception: ") + f.at(2);
      } else if (t == "Y") {
        ++logs.resyncs;
      } else if (t == "E" && logs.txs.count(f.at(1)) == 0) {
        logs.other_errors.push_back(f[1] + " " + f.at(2) + ": " + parse_error(f, 3).text());
      } else {
        auto it = logs.txs.find(f.at(1));
        if (it == logs.txs.end()) throw std::runtime_error("unknown tag");
        TxRec& tx = it->second;
        if (t == "S") {
          StmtRec s;
          s.index = std::stoi(f.at(2));
          s.op = parse_op(f, 3);
          s.ok = f.at(7) == "ok";
          if (s.ok) {
            s.affected = std::stoll(f.at(8));
          } else {
            s.error = parse_error(f, 8);
          }
          tx.stmts.push_back(std::move(s));
        } else if (t == "C") {
          tx.commit_sent = true;
          if (f.size() > 2) tx.one_shot_op = parse_op(f, 2);
        } else if (t == "R") {
          tx.outcome = f.at(2);
          if (tx.outcome != "committed") tx.error = parse_error(f, 3);
        } else if (t == "V") {
          tx.client_violations.push_back(f.at(2) + "\t" + f.at(3));
        } else if (t == "E") {
          tx.other_errors.push_back(f.at(2) + ": " + parse_error(f, 3).text());
        } else {
          throw std::runtime_error("unknown line type");
        }
      }
    } catch (const std::exception& e) {
      logs.bad_lines.push_back(path + ": " + e.what() + ": " + clean(line));
    }
  }
}

// ---- the database, read directly ----

struct DbState {
  std::map<std::int64_t, StreamState> streams;
  std::map<std::int64_t, std::int64_t> counters;
  std::map<std::int64_t, std::int64_t> parent_ids;  // id -> stream (for the orphan check)
  std::size_t rows = 0;
};

std::int64_t as_int(const Cell& c) { return c.i; }
const std::string& as_text(const Cell& c) { return c.bytes; }

DbState load(Direct& db) {
  DbState s;
  for (const auto& r : db.query("SELECT tag, stream, kind FROM tx_log").rows) {
    s.streams[as_int(r[1])].txlog[as_text(r[0])] = as_text(r[2]);
    ++s.rows;
  }
  for (const auto& r : db.query("SELECT k, stream, tag, v FROM kv").rows) {
    s.streams[as_int(r[1])].kv[as_text(r[0])] = KvRow{as_int(r[3]), as_text(r[2])};
    ++s.rows;
  }
  for (const auto& r : db.query("SELECT id, stream, tag FROM parent").rows) {
    s.streams[as_int(r[1])].parents[as_int(r[0])] = as_text(r[2]);
    s.parent_ids[as_int(r[0])] = as_int(r[1]);
    ++s.rows;
  }
  for (const auto& r : db.query("SELECT id, parent_id, stream, tag FROM child").rows) {
    s.streams[as_int(r[2])].children[as_int(r[0])] = ChildRow{as_int(r[1]), as_text(r[3])};
    ++s.rows;
  }
  for (const auto& r : db.query("SELECT id, n FROM counters").rows) {
    s.counters[as_int(r[0])] = as_int(r[1]);
    ++s.rows;
  }
  return s;
}

// One row that differs between the expected and the stored state of a stream.
struct Diff {
  std::string table, key;
  std::optional<std::string> expected, actual;  // row descriptions; nullopt: no row
  std::string expected_tag, actual_tag;         // who wrote it (or should have)
};

template <typename K, typename V, typename Describe, typename TagOf>
void diff_maps(const std::string& table, const std::map<K, V>& want, const std::map<K, V>& got,
               Describe describe_row, TagOf tag_of, std::vector<Diff>& out) {
  auto key_str = [](const K& k) {
    std::ostringstream o;
    o << k;
    return o.str();
  };
  for (const auto& [k, v] : want) {
    auto it = got.find(k);
    if (it == got.end()) {
      out.push_back({table, key_str(k), describe_row(v), std::nullopt, tag_of(v), ""});
    } else if (!(it->second == v)) {
      out.push_back({table, key_str(k), describe_row(v), describe_row(it->second), tag_of(v),
                     tag_of(it->second)});
    }
  }
  for (const auto& [k, v] : got) {
    if (want.count(k) == 0) {
      out.push_back({table, key_str(k), std::nullopt, describe_row(v), "", tag_of(v)});
    }
  }
}

std::vector<Diff> diff_stream(const StreamState& want, const StreamState& got) {
  std::vector<Diff> d;
  diff_maps("tx_log", want.txlog, got.txlog, [](const std::string& kind) { return "kind=" + kind; },
            [](const std::string&) { return std::string(); }, d);
  for (auto& x : d) {  // a tx_log row's key is its tag
    if (x.expected) x.expected_tag = x.key;
    if (x.actual) x.actual_tag = x.key;
  }
  diff_maps("kv", want.kv, got.kv,
            [](const KvRow& r) { return "v=" + std::to_string(r.v) + " tag=" + r.tag; },
            [](const KvRow& r) { return r.tag; }, d);
  diff_maps("parent", want.parents, got.parents, [](const std::string& tag) { return "tag=" + tag; },
            [](const std::string& tag) { return tag; }, d);
  diff_maps("child", want.children, got.children,
            [](const ChildRow& r) { return "parent=" + std::to_string(r.parent) + " tag=" + r.tag; },
            [](const ChildRow& r) { return r.tag; }, d);
  return d;
}

class Oracle {
 public:
  Oracle(const Config& cfg, const std::vector<ProcessFate>& fates, Violations& v, std::ostream& out)
      : cfg_(cfg), v_(v), out_(out) {
    for (const auto& f : fates) fates_[f.incarnation] = f;
  }

  void run(Direct& db) {
    read_logs();
    judge_answers();
    db_ = load(db);
    check_state();
    check_schema_worker();
    print_stats();
  }

 private:
  bool killed(int incarnation) const {
    auto it = fates_.find(incarnation);
    return it != fates_.end() && (it->second.killed || it->second.stuck);
  }
  const TxRec* tx(const std::string& tag) const {
    auto it = logs_.txs.find(tag);
    return it == logs_.txs.end() ? nullptr : &it->second;
  }

  void read_logs() {
    for (const auto& entry : std::filesystem::directory_iterator(cfg_.log_dir)) {
      std::string name = entry.path().filename().string();
      if (name.rfind("client-", 0) == 0) {
        int inc = std::stoi(name.substr(7));
        read_client_log(entry.path().string(), inc, logs_);
        ++client_logs_;
      } else if (name == "schema.log") {
        std::ifstream in(entry.path());
        std::string line;
        while (std::getline(in, line)) logs_.schema_lines.push_back(line);
      }
    }
    for (const auto& b : logs_.bad_lines) v_.add("TEST_LOG_UNREADABLE", b);
    for (const auto& e : logs_.other_errors) v_.add("UNEXPECTED_ERROR", e);
    for (const auto& [inc, fate] : fates_) {
      if (inc == 0) continue;
      if (logs_.pids.count(inc) == 0 && !fate.killed) {
        v_.add("CLIENT_DIED", "client " + std::to_string(inc) + " (pid " + std::to_string(fate.pid) +
                                  ") wrote no log (status " + std::to_string(fate.status) + ")");
      }
    }
    for (const auto& [id, s] : logs_.streams) {
      if (s.end.rfind("exception: ", 0) == 0) {
        v_.add("CLIENT_EXCEPTION", "stream " + std::to_string(id) + " " + s.end);
      } else if (s.end.empty() && !killed(s.incarnation)) {
        v_.add("CLIENT_DIED", "stream " + std::to_string(id) + " of client " +
                                  std::to_string(s.incarnation) +
                                  " stopped without ending and was not killed by the test");
      } else if (s.end.find("ended: deadline") == std::string::npos && !s.end.empty()) {
        v_.add("CLIENT_GAVE_UP", "stream " + std::to_string(id) + " " + s.end);
      }
    }
  }

  // ---- 1. each transaction's answers ----

  void judge_answers() {
    for (auto& [tag, t] : logs_.txs) {
      ++by_kind_outcome_[t.kind][t.outcome.empty() ? (t.commit_sent ? "in flight: commit sent"
                                                                    : "in flight: before commit")
                                                   : t.outcome];
      for (const auto& cv : t.client_violations) {
        auto tab = cv.find('\t');
        v_.add(cv.substr(0, tab), t.who() + ": " + cv.substr(tab + 1));
      }
      for (const auto& e : t.other_errors) v_.add("UNEXPECTED_ERROR", t.who() + ": " + e);
      for (const auto& s : t.stmts) judge_statement(t, s);
      judge_outcome(t);
    }
  }

  void judge_statement(const TxRec& t, const StmtRec& s) {
    const bool ro_write = s.op.kind == OpKind::kRoTxLog || s.op.kind == OpKind::kRoKv;
    std::string what = t.who() + " statement " + std::to_string(s.index) + " " +
                       std::string(op_name(s.op.kind)) + (s.op.k.empty() ? "" : " " + s.op.k);
    if (s.op.kind == OpKind::kGetKv || s.op.kind == OpKind::kReadKv ||
        s.op.kind == OpKind::kCountKv || s.op.kind == OpKind::kCountTxLog) {
      if (s.ok) ++read_checks_;
    }
    const bool immediate_fk = cfg_.backend == Backend::kMariadb;
    if (s.ok) {
      if (immediate_fk && s.op.kind == OpKind::kBadChild) {
        v_.add("FK_ACCEPTED", what + ": an INSERT whose parent does not exist returned normally");
      }
      if (ro_write) v_.add("RO_WRITE_ACCEPTED", what + ": a write in a read-only session succeeded");
      if (s.op.kind == OpKind::kDupTxLog) v_.add("DUPLICATE_ACCEPTED", what + ": a duplicate primary key was accepted");
      return;
    }
    if (ro_write) {
      ++refusals_[s.error.category + "/" + s.error.sqlstate];
      if (auto p = read_only_refusal_problem(s.error.category, s.error.sqlstate)) {
        v_.add("RO_WRONG_ERROR", what + ": " + *p + ", got " + s.error.text());
      }
      return;
    }
    if (s.op.kind == OpKind::kDupTxLog) {
      const std::string want = duplicate_key_sqlstate(cfg_.backend);
      if (s.error.category != "constraint" || s.error.sqlstate != want) {
        v_.add("WRONG_ERROR", what + ": a duplicate key must fail with constraint/" + want + ", got " + s.error.text());
      }
      return;
    }
    if (immediate_fk && s.op.kind == OpKind::kBadChild) {
      ++fk_failures_;
      if (!is_fk_error(cfg_.backend, s.error.category, s.error.sqlstate, s.error.message)) {
        v_.add("FK_WRONG_ERROR", what + ": the INSERT broke the foreign key and must fail with constraint/23000 "
               "(a foreign key constraint fails), got " + s.error.text());
      }
      return;
    }
    v_.add("UNEXPECTED_ERROR", what + " failed: " + s.error.text());
  }

  void judge_outcome(const TxRec& t) {
    const std::string& o = t.outcome;
    if (o.empty()) {
      if (!killed(t.incarnation)) {
        v_.add("CLIENT_DIED", t.who() + ": no outcome logged and its process was not killed by the test");
      }
      return;
    }
    if (o == "unknown") {
      v_.add("CONNECTION_LOST", t.who() + ": the socket to dbmgrd broke during the commit: " + t.error.text());
      return;
    }
    const bool fk_kind = t.kind == "fk_bad" || t.kind == "oneshot_fk";
    if (fk_kind) {
      if (o == "committed") {
        fk_succeeded_.push_back(t.tag);  // reported with what it left, after the state check
      } else if (o == "commit_failed") {
        ++fk_failures_;
        if (!is_fk_error(cfg_.backend, t.error.category, t.error.sqlstate, t.error.message)) {
          v_.add("FK_WRONG_ERROR", t.who() + ": the commit broke a deferred foreign key and must fail with " +
                 (cfg_.backend == Backend::kMariadb ? "constraint/23000 (a foreign key constraint fails)"
                                                   : "constraint/23503") + ", got " + t.error.text());
        }
      }
      return;  // a statement failure was judged with the statement
    }
    if (t.kind == "stmt_fail") {
      bool stmt_error = std::any_of(t.stmts.begin(), t.stmts.end(), [](const StmtRec& s) { return !s.ok; });
      if (o == "committed" && stmt_error) {
        v_.add("COMMIT_AFTER_ERROR_SUCCEEDED", t.who() + ": commit() returned normally after a failed statement");
      }
      return;
    }
    if (t.kind == "oneshot_ro") {
      bool write = t.one_shot_op && op_writes(t.one_shot_op->kind);
      if (write && o == "committed") {
        v_.add("RO_WRITE_ACCEPTED", t.who() + ": a read-only one-shot INSERT succeeded");
      } else if (write) {
        ++refusals_[t.error.category + "/" + t.error.sqlstate];
        if (auto p = read_only_refusal_problem(t.error.category, t.error.sqlstate)) {
          v_.add("RO_WRONG_ERROR", t.who() + ": " + *p + ", got " + t.error.text());
        }
      } else if (o != "committed") {
        v_.add("UNEXPECTED_ERROR", t.who() + ": read-only one-shot read failed: " + t.error.text());
      }
      return;
    }
    if (o == "commit_failed") {
      bool stmt_error = std::any_of(t.stmts.begin(), t.stmts.end(), [](const StmtRec& s) { return !s.ok; });
      if (t.kind == "ro_write" && stmt_error) return;
      v_.add(t.is_one_shot() ? "UNEXPECTED_ERROR" : "VALID_COMMIT_FAILED",
             t.who() + ": " + (t.is_one_shot() ? "one-shot" : "commit") + " of a valid transaction failed: " +
                 t.error.text());
    }
    // stmt_failed: the failing statement was judged already; rolled_back and committed are
    // what these kinds expect.
  }

  // ---- 2 + 3. replay and compare ----
  //
  // Whether a transaction is in the stored state is decided by its witness, not by what
  // its client was told: a transaction that inserted its tx_log row commits or vanishes
  // with that row, so the row's presence says which (2a); what the client was told is then
  // judged against it. One-shots without a tx_log row are taken as told, and those in
  // flight when their process was killed are tried both ways (at most one per stream).
  // The replay of the decided transactions must then give exactly the stored rows (2b):
  // a difference is a partial commit or a wrong value, attributed to the row's writer.

  static bool writes_txlog(const TxRec& t) {
    auto ops = t.effects();
    return std::any_of(ops.begin(), ops.end(), [](const Op& op) { return op.kind == OpKind::kTxLog; });
  }
  static bool fk_kind(const TxRec& t) { return t.kind == "fk_bad" || t.kind == "oneshot_fk"; }
  // One-shot without a tx_log row whose outcome is not known (in flight when killed).
  // A one-shot told "committed" although it broke the deferred FK may be either, too (what it
  // did is reported as FK_COMMIT_SUCCEEDED).
  bool unknown_one_shot(const TxRec& t) const {
    return t.outcome == "unknown" || (t.outcome.empty() && t.commit_sent && killed(t.incarnation)) ||
           (fk_kind(t) && t.outcome == "committed");
  }

  // The stream's expected state; bit i of `mask` puts the i-th of `unknown` in.
  StreamState replay(const StreamRec& s, const StreamState& got, const std::vector<const TxRec*>& unknown,
                     unsigned mask) const {
    StreamState st;
    for (const auto& tag : s.tags) {
      const TxRec& t = logs_.txs.at(tag);
      bool in;
      if (writes_txlog(t)) {
        in = got.txlog.count(t.tag) != 0;
      } else {
        auto pos = std::find(unknown.begin(), unknown.end(), &t) - unknown.begin();
        in = pos < static_cast<std::ptrdiff_t>(unknown.size()) ? (mask >> pos & 1u) != 0
                                                               : t.outcome == "committed" && !fk_kind(t);
      }
      if (!in) continue;
      for (const Op& op : t.effects()) apply(st, op, t.tag, t.kind);
    }
    return st;
  }

  std::string outcome_words(const TxRec* t) const {
    if (t == nullptr) return "no such transaction in any log";
    std::string o = t->outcome;
    if (o.empty()) o = t->commit_sent ? "commit in flight when killed" : "killed before its commit was sent";
    if (!t->error.category.empty()) o += " " + t->error.text();
    return t->who() + " " + o;
  }

  // The class of a transaction that left rows although it must have left nothing.
  std::string persisted_class(const TxRec* t) const {
    if (t == nullptr) return "UNKNOWN_ROW";
    if (t->is_read_only()) return "RO_WRITE_PERSISTED";
    const std::string& o = t->outcome;
    if (o == "rolled_back") return "ROLLED_BACK_TX_PERSISTED";
    if (o == "commit_failed") return "FAILED_COMMIT_PERSISTED";
    if (o == "stmt_failed") return "FAILED_TX_PERSISTED";
    if (o.empty() && !t->commit_sent) return "KILLED_TX_PERSISTED";
    return "STATE_MISMATCH";
  }

  std::string effects_words(const TxRec& t) const {
    std::string s;
    int n = 0;
    for (const Op& op : t.effects()) {
      if (!op_writes(op.kind)) continue;
      if (n++ == 6) {
        s += ", ...";
        break;
      }
      s += (s.empty() ? "" : ", ") + std::string(op_name(op.kind)) + (op.k.empty() ? " " + std::to_string(op.a) : " " + op.k);
    }
    return "[" + s + "]";
  }

  // 2a: what each transaction with a tx_log row was told, against whether the row is there.
  void judge_witnesses(const StreamRec& s, const StreamState& got) {
    for (const auto& tag : s.tags) {
      const TxRec& t = logs_.txs.at(tag);
      if (!writes_txlog(t)) continue;
      const bool present = got.txlog.count(tag) != 0;
      const std::string& o = t.outcome;
      if (fk_kind(t)) fk_persisted_[tag] = present;
      if (o == "unknown" || (o.empty() && t.commit_sent)) {
        if (!fk_kind(t)) ++in_flight_[present ? "commit in flight or unknown, found committed"
                                              : "commit in flight or unknown, found not committed"];
        continue;  // either is allowed (an orphan would be reported by the FK check)
      }
      if (o == "committed") {
        if (!present && !fk_kind(t)) {
          v_.add("ACK_COMMIT_LOST", t.who() + ": commit acknowledged, but nothing of it is stored " +
                                        effects_words(t));
        }
        continue;
      }
      if (present) {
        v_.add(persisted_class(&t), "stream " + std::to_string(s.stream) + ", " + outcome_words(&t) +
                                        ": but it is stored " + effects_words(t));
      }
    }
  }

  // 2b: the rows that differ from the replay, one violation per (class, transaction).
  void report(const std::int64_t stream, const std::vector<Diff>& diffs, const StreamState& got) {
    std::map<std::pair<std::string, std::string>, std::vector<std::string>> grouped;
    for (const Diff& d : diffs) {
      std::string cls, tag;
      if (!d.actual) {  // missing
        tag = d.expected_tag;
        const TxRec* t = tx(tag);
        cls = t == nullptr ? "STATE_MISMATCH"
              : writes_txlog(*t) ? "PARTIAL_COMMIT"
              : t->outcome == "committed" ? "ACK_COMMIT_LOST" : "STATE_MISMATCH";
      } else if (!d.expected) {  // extra
        tag = d.actual_tag;
        const TxRec* t = tx(tag);
        cls = t != nullptr && writes_txlog(*t) ? (t->is_read_only() ? "RO_WRITE_PERSISTED" : "PARTIAL_COMMIT")
                                               : persisted_class(t);
      } else {
        tag = d.expected_tag;
        cls = "STATE_MISMATCH";
      }
      std::string row = d.table + " " + d.key + ": expected " + d.expected.value_or("no row") +
                        ", stored " + d.actual.value_or("no row");
      if (!d.actual_tag.empty() && d.actual_tag != tag) {
        row += " (stored row written by " + outcome_words(tx(d.actual_tag)) + ")";
      }
      grouped[{cls, tag}].push_back(row);
    }
    for (const auto& [key, rows] : grouped) {
      const TxRec* t = tx(key.second);
      std::string detail = "stream " + std::to_string(stream) + ", " + outcome_words(t);
      if (t != nullptr && writes_txlog(*t)) {
        detail += got.txlog.count(t->tag) != 0 ? ", its tx_log row is stored" : ", its tx_log row is NOT stored";
      }
      detail += ": ";
      for (std::size_t i = 0; i < rows.size() && i < 4; ++i) detail += (i ? "; " : "") + rows[i];
      if (rows.size() > 4) detail += "; and " + std::to_string(rows.size() - 4) + " more rows";
      v_.add(key.first, detail);
    }
  }

  void check_state() {
    std::map<std::int64_t, std::int64_t> counters;
    std::set<std::int64_t> seen;
    for (const auto& [id, s] : logs_.streams) {
      seen.insert(id);
      const StreamState empty;
      auto it = db_.streams.find(id);
      const StreamState& got = it != db_.streams.end() ? it->second : empty;
      judge_witnesses(s, got);
      std::vector<const TxRec*> unknown;
      for (const auto& tag : s.tags) {
        const TxRec& t = logs_.txs.at(tag);
        if (!writes_txlog(t) && unknown_one_shot(t)) unknown.push_back(&t);
      }
      if (unknown.size() > 6) {
        v_.add("TEST_AMBIGUOUS", "stream " + std::to_string(id) + " has " + std::to_string(unknown.size()) +
                                     " one-shots of unknown outcome; only the first 6 are tried both ways");
        unknown.resize(6);
      }
      unsigned best = 0;
      std::vector<Diff> best_diffs;
      StreamState best_state;
      for (unsigned mask = 0; mask < (1u << unknown.size()); ++mask) {
        StreamState want = replay(s, got, unknown, mask);
        auto d = diff_stream(want, got);
        if (mask == 0 || d.size() < best_diffs.size()) {
          best = mask;
          best_diffs = std::move(d);
          best_state = std::move(want);
        }
        if (best_diffs.empty()) break;
      }
      for (std::size_t i = 0; i < unknown.size(); ++i) {
        if (fk_kind(*unknown[i])) continue;
        ++in_flight_[(best >> i & 1u) != 0 ? "one-shot in flight or unknown, found committed"
                                           : "one-shot in flight or unknown, found not committed"];
      }
      rows_compared_ += best_state.txlog.size() + best_state.kv.size() + best_state.parents.size() +
                        best_state.children.size();
      report(id, best_diffs, got);
      for (const auto& [cid, delta] : best_state.counters) counters[cid] += delta;
    }
    // Rows of streams no log knows of.
    for (const auto& [id, st] : db_.streams) {
      if (seen.count(id) == 0) report(id, diff_stream(StreamState{}, st), st);
    }
    // Counters: the deltas of every transaction found committed, summed over the streams.
    for (int cid = 1; cid <= kCounters; ++cid) {
      std::int64_t want = counters[cid];
      auto it = db_.counters.find(cid);
      if (it == db_.counters.end()) {
        v_.add("COUNTER_MISMATCH", "counter " + std::to_string(cid) + " row is missing");
      } else if (it->second != want) {
        v_.add("COUNTER_MISMATCH", "counter " + std::to_string(cid) + ": stored " + std::to_string(it->second) +
                                       ", the committed transactions' deltas sum to " + std::to_string(want) +
                                       " (difference " + std::to_string(it->second - want) + ")");
      }
    }
    // The foreign key itself must hold in what is stored.
    for (const auto& [sid, st] : db_.streams) {
      for (const auto& [cid, row] : st.children) {
        if (db_.parent_ids.count(row.parent) == 0) {
          v_.add("FK_ORPHAN", "child " + std::to_string(cid) + " references missing parent " +
                                  std::to_string(row.parent) + "; written by " + outcome_words(tx(row.tag)));
        }
      }
    }
    // Commits that broke the deferred FK and were told "committed".
    for (const auto& tag : fk_succeeded_) {
      const TxRec* t = tx(tag);
      auto p = fk_persisted_.find(tag);
      bool in = p != fk_persisted_.end() ? p->second : false;
      if (p == fk_persisted_.end()) {  // a one-shot: its child row says
        for (const auto& [sid, st] : db_.streams) {
          for (const auto& [cid, row] : st.children) in = in || row.tag == tag;
        }
      }
      std::string left = in ? "and the orphan child was COMMITTED (the deferred FK was not enforced)"
                            : "but the transaction left NOTHING: a failed commit reported as success (the "
                              "worst kind of bug: the client believes its data is stored)";
      v_.add("FK_COMMIT_SUCCEEDED", t->who() + ": " + (t->is_one_shot() ? "the one-shot" : "commit()") +
                                        " returned normally although a deferred foreign key was broken, " + left);
    }
  }

  // ---- 4. the schema worker ----

  void check_schema_worker() {
    bool ended = false;
    for (const auto& line : logs_.schema_lines) {
      auto f = split_tabs(line);
      if (f.empty()) continue;
      if (f[0] == "X") {
        ++schema_checks_;
        if (f.size() > 4 && f[4] != "match") {
          v_.add("SCHEMA_READ_MISMATCH", "iteration " + f[1] + ", " + f[2] + " via " + f[3] + ": " +
                                             (f.size() > 5 ? f[5] : f[4]));
        }
      } else if (f[0] == "F") {
        v_.add("SCHEMA_STMT_FAILED", "iteration " + f.at(1) + ": " + (f.size() > 2 ? f[2] : ""));
      } else if (f[0] == "N") {
        if (schema_notes_++ < 3) notes_.push_back("iteration " + f.at(1) + ": " + (f.size() > 2 ? f[2] : ""));
      } else if (f[0] == "G") {
        ++schema_changes_;
      } else if (f[0] == "Q") {
        ended = true;
      } else if (f[0] == "Z") {
        v_.add("SCHEMA_WORKER_EXCEPTION", f.size() > 1 ? f[1] : line);
        ended = true;
      }
    }
    if (!ended && cfg_.schema_worker) v_.add("SCHEMA_WORKER_DIED", "the schema worker's log has no end line");
  }

  void print_stats() {
    std::size_t total = 0;
    for (const auto& [k, m] : by_kind_outcome_) {
      for (const auto& [o, n] : m) total += n;
    }
    out_ << "transactions: " << total << " in " << logs_.streams.size() << " streams of " << client_logs_
         << " client processes\n";
    for (const auto& [k, m] : by_kind_outcome_) {
      out_ << "  " << k << ":";
      for (const auto& [o, n] : m) out_ << "  " << o << " " << n;
      out_ << "\n";
    }
    for (const auto& [what, n] : in_flight_) out_ << "  " << what << " " << n << "\n";
    out_ << "  client models re-read after an unexpected answer: " << logs_.resyncs << "\n";
    out_ << (cfg_.backend == Backend::kMariadb ? "  FK-breaking inserts refused: " : "  deferred-FK commits refused: ")
         << fk_failures_ << ", reported as committed: "
         << fk_succeeded_.size() << "\n";
    out_ << "  read-only write refusals by category/sqlstate:";
    if (refusals_.empty()) out_ << " none";
    for (const auto& [c, n] : refusals_) out_ << "  " << c << " x" << n;
    out_ << "\n";
    out_ << "checks: " << rows_compared_ << " expected rows compared with " << db_.rows
         << " stored rows, " << read_checks_ << " client reads checked against the model, "
         << schema_checks_ << " schema-worker reads compared (dbmgrd vs direct) after " << schema_changes_
         << " schema changes";
    out_ << "\n";
    if (schema_notes_ > 0) {
      out_ << "schema worker notes (statements the engine refused directly too: test limits, not daemon "
              "defects): " << schema_notes_ << "\n";
      for (const auto& n : notes_) out_ << "  " << n << "\n";
    }
  }

  const Config& cfg_;
  Violations& v_;
  std::ostream& out_;
  std::map<int, ProcessFate> fates_;
  Logs logs_;
  DbState db_;
  int client_logs_ = 0;
  std::map<std::string, std::map<std::string, std::size_t>> by_kind_outcome_;
  std::map<std::string, std::size_t> in_flight_;
  std::map<std::string, std::size_t> refusals_;
  std::vector<std::string> fk_succeeded_;
  std::map<std::string, bool> fk_persisted_;
  std::size_t fk_failures_ = 0;
  std::size_t read_checks_ = 0;
  std::size_t rows_compared_ = 0;
  std::size_t schema_checks_ = 0;
  std::size_t schema_changes_ = 0;
  std::size_t schema_notes_ = 0;
  std::vector<std::string> notes_;
};

}  // namespace

void run_oracle(const Config& cfg, const std::vector<ProcessFate>& fates, Direct& db, Violations& v,
                std::ostream& out) {
  Oracle o(cfg, fates, v, out);
  o.run(db);
}

}  // namespace torture
