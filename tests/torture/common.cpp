// What the parts of dbmgr-torture share: random numbers, typed cells and their comparison,
// event logs, the statements of each op and how a committed op changes a stream's state.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <sstream>
#include <stdexcept>

#include "torture.hpp"

namespace torture {

std::string_view backend_name(Backend b) {
  switch (b) {
    case Backend::kSqlite: return "sqlite";
    case Backend::kPostgres: return "postgresql";
    case Backend::kMariadb: return "mariadb";
  }
  return "?";
}

std::string duplicate_key_sqlstate(Backend b) { return b == Backend::kMariadb ? "23000" : "23505"; }

dbmgr::Options Config::options() const {
  dbmgr::Options o;
  o.socket_path = socket;
  o.db_prefix = prefix;
  o.database = database;
  o.client_name = "dbmgr-torture";
  return o;
}

std::uint64_t mix_seed(std::uint64_t a, std::uint64_t b) {
  std::uint64_t z = a + 0x9e3779b97f4a7c15ull * (b + 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

std::size_t Rng::weighted(const std::vector<int>& weights) {
  int sum = 0;
  for (int w : weights) sum += w;
  std::int64_t r = uniform(0, sum - 1);
  for (std::size_t i = 0; i < weights.size(); ++i) {
    if (r < weights[i]) return i;
    r -= weights[i];
  }
  return weights.size() - 1;
}

// ---- cells ----

bool same_cell(const Cell& a, const Cell& b) {
  if (a.type != b.type) return false;
  switch (a.type) {
    case dbmgr::Type::kNull: return true;
    case dbmgr::Type::kBool:
    case dbmgr::Type::kInt64: return a.i == b.i;
    case dbmgr::Type::kDouble:
      return a.d == b.d || (std::isnan(a.d) && std::isnan(b.d));
    case dbmgr::Type::kText:
    case dbmgr::Type::kBlob: return a.bytes == b.bytes;
  }
  return false;
}

std::string describe(const Cell& c) {
  std::ostringstream o;
  o << dbmgr::to_string(c.type);
  switch (c.type) {
    case dbmgr::Type::kNull: break;
    case dbmgr::Type::kBool: o << (c.i != 0 ? " true" : " false"); break;
    case dbmgr::Type::kInt64: o << ' ' << c.i; break;
    case dbmgr::Type::kDouble: o << ' ' << c.d; break;
    case dbmgr::Type::kText: o << " '" << clean(c.bytes.substr(0, 40)) << '\''; break;
    case dbmgr::Type::kBlob: {
      o << " x'";
      static const char* hex = "0123456789abcdef";
      for (unsigned char ch : c.bytes.substr(0, 20)) o << hex[ch >> 4] << hex[ch & 15];
      o << '\'';
      break;
    }
  }
  return o.str();
}

Table from_result(const dbmgr::Result& r) {
  Table t;
  t.columns = r.columns();
  for (std::size_t c = 0; c < r.column_count(); ++c) t.declared.push_back(r.declared_type(c));
  for (const dbmgr::Row& row : r) {
    std::vector<Cell> cells(row.size());
    for (std::size_t c = 0; c < row.size(); ++c) {
      Cell& cell = cells[c];
      cell.type = row.type(c);
      switch (cell.type) {
        case dbmgr::Type::kNull: break;
        case dbmgr::Type::kBool: cell.i = row.get<bool>(c) ? 1 : 0; break;
        case dbmgr::Type::kInt64: cell.i = row.get<std::int64_t>(c); break;
        case dbmgr::Type::kDouble: cell.d = row.get<double>(c); break;
        case dbmgr::Type::kText:
        case dbmgr::Type::kBlob: cell.bytes = row.get<std::string>(c); break;
      }
    }
    t.rows.push_back(std::move(cells));
  }
  return t;
}

std::string describe_columns(const Table& t) {
  std::string s = "[";
  for (std::size_t i = 0; i < t.columns.size(); ++i) {
    if (i > 0) s += ", ";
    s += t.columns[i];
    if (i < t.declared.size() && t.declared[i] != dbmgr::Type::kNull) {
      s += ' ';
      s += dbmgr::to_string(t.declared[i]);
    }
  }
  return s + "]";
}

namespace {

std::string row_key(const std::vector<Cell>& row) {
  std::string k;
  for (const Cell& c : row) {
    k += describe(c);
    k += '\x1f';
    k += c.bytes;  // describe() truncates; the key must not
    k += '\x1e';
  }
  return k;
}

bool same_row(const std::vector<Cell>& a, const std::vector<Cell>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (!same_cell(a[i], b[i])) return false;
  }
  return true;
}

}  // namespace

std::optional<std::string> compare_tables(const Table& via, const Table& direct) {
  std::ostringstream o;
  if (via.columns != direct.columns) {
    o << "columns: dbmgrd " << describe_columns(via) << " (" << via.columns.size()
      << ") vs direct " << describe_columns(direct) << " (" << direct.columns.size() << ")";
    if (via.rows.size() != direct.rows.size()) {
      o << "; rows: dbmgrd " << via.rows.size() << " vs direct " << direct.rows.size();
    }
    return o.str();
  }
  if (!via.declared.empty() && !direct.declared.empty()) {
    for (std::size_t c = 0; c < via.columns.size(); ++c) {
      if (via.declared[c] != direct.declared[c]) {
        o << "declared type of column " << via.columns[c] << ": dbmgrd "
          << dbmgr::to_string(via.declared[c]) << " vs direct "
          << dbmgr::to_string(direct.declared[c]);
        return o.str();
      }
    }
  }
  if (via.rows.size() != direct.rows.size()) {
    o << "row count: dbmgrd " << via.rows.size() << " vs direct " << direct.rows.size()
      << " (columns " << describe_columns(direct) << ")";
    return o.str();
  }
  for (std::size_t r = 0; r < via.rows.size(); ++r) {
    const auto& a = via.rows[r];
    const auto& b = direct.rows[r];
    if (a.size() != b.size()) {
      o << "row " << r << ": dbmgrd has " << a.size() << " cells vs direct " << b.size()
        << " (header " << via.columns.size() << ")";
      return o.str();
    }
  }
  bool in_order = true;
  for (std::size_t r = 0; r < via.rows.size() && in_order; ++r) {
    in_order = same_row(via.rows[r], direct.rows[r]);
  }
  if (in_order) return std::nullopt;
  std::vector<std::string> ka, kb;
  for (const auto& row : via.rows) ka.push_back(row_key(row));
  for (const auto& row : direct.rows) kb.push_back(row_key(row));
  std::sort(ka.begin(), ka.end());
  std::sort(kb.begin(), kb.end());
  if (ka == kb) return std::nullopt;  // the same rows in another order
  for (std::size_t r = 0; r < via.rows.size(); ++r) {
    for (std::size_t c = 0; c < via.rows[r].size(); ++c) {
      if (!same_cell(via.rows[r][c], direct.rows[r][c])) {
        o << "row " << r << " column " << via.columns[c] << ": dbmgrd "
          << describe(via.rows[r][c]) << " vs direct " << describe(direct.rows[r][c]);
        return o.str();
      }
    }
  }
  return "rows differ";  // not reached: in_order was false
}

// ---- event logs ----

EventLog::EventLog(const std::string& path) {
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd_ < 0) throw std::runtime_error("cannot open " + path + ": " + std::strerror(errno));
}

EventLog::~EventLog() {
  if (fd_ >= 0) ::close(fd_);
}

void EventLog::line(const std::vector<std::string>& fields) {
  std::string s;
  for (std::size_t i = 0; i < fields.size(); ++i) {
    if (i > 0) s += '\t';
    s += fields[i];
  }
  s += '\n';
  const char* p = s.data();
  std::size_t left = s.size();
  while (left > 0) {
    ssize_t n = ::write(fd_, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw std::runtime_error(std::string("log write failed: ") + std::strerror(errno));
    p += n;
    left -= static_cast<std::size_t>(n);
  }
}

std::string clean(std::string_view s) {
  std::string out(s.substr(0, 300));
  for (char& c : out) {
    if (c == '\t' || c == '\n' || c == '\r') c = ' ';
  }
  return out;
}

std::vector<std::string> split_tabs(const std::string& line) {
  std::vector<std::string> f;
  std::size_t start = 0;
  for (;;) {
    std::size_t tab = line.find('\t', start);
    if (tab == std::string::npos) {
      f.push_back(line.substr(start));
      return f;
    }
    f.push_back(line.substr(start, tab - start));
    start = tab + 1;
  }
}

std::string category_of(const dbmgr::Error& e) { return std::string(dbmgr::to_string(e.category())); }

// ---- ops ----

namespace {
struct OpInfo {
  OpKind kind;
  std::string_view name;
  bool writes;
};
constexpr OpInfo kOps[] = {
    {OpKind::kTxLog, "txlog", true},          {OpKind::kInsKv, "ins_kv", true},
    {OpKind::kUpdKv, "upd_kv", true},         {OpKind::kDelKv, "del_kv", true},
    {OpKind::kCtr, "ctr", true},              {OpKind::kParent, "parent", true},
    {OpKind::kChild, "child", true},          {OpKind::kBadChild, "bad_child", true},
    {OpKind::kGetKv, "get_kv", false},        {OpKind::kDupTxLog, "dup_txlog", true},
    {OpKind::kReadKv, "read_kv", false},      {OpKind::kCountTxLog, "count_txlog", false},
    {OpKind::kCountKv, "count_kv", false},    {OpKind::kRoTxLog, "ro_txlog", true},
    {OpKind::kRoKv, "ro_kv", true},
};
}  // namespace

std::string_view op_name(OpKind k) {
  for (const auto& o : kOps) {
    if (o.kind == k) return o.name;
  }
  return "?";
}

std::optional<OpKind> op_from_name(std::string_view s) {
  for (const auto& o : kOps) {
    if (o.name == s) return o.kind;
  }
  return std::nullopt;
}

bool op_writes(OpKind k) {
  for (const auto& o : kOps) {
    if (o.kind == k) return o.writes;
  }
  return false;
}

Sql sql_for(const Op& op, const std::string& tag, std::int64_t stream, const std::string& kind) {
  Sql s;
  auto p = [&s](dbmgr::Param v) { s.params.push_back(std::move(v)); };
  switch (op.kind) {
    case OpKind::kTxLog:
    case OpKind::kRoTxLog:
      s.text = "INSERT INTO tx_log(tag, stream, kind, nstmts) VALUES (?, ?, ?, ?)";
      p(std::string(tag)), p(stream), p(std::string(kind)), p(op.a);
      break;
    case OpKind::kDupTxLog:
      s.text = "INSERT INTO tx_log(tag, stream, kind, nstmts) VALUES (?, ?, ?, ?)";
      p(std::string(op.k)), p(stream), p(std::string("dup")), p(0);
      break;
    case OpKind::kInsKv:
    case OpKind::kRoKv:
      s.text = "INSERT INTO kv(k, stream, tag, v) VALUES (?, ?, ?, ?)";
      p(std::string(op.k)), p(stream), p(std::string(tag)), p(op.a);
      break;
    case OpKind::kUpdKv:
      s.text = "UPDATE kv SET v = v + ?, tag = ? WHERE k = ?";
      p(op.a), p(std::string(tag)), p(std::string(op.k));
      break;
    case OpKind::kDelKv:
      s.text = "DELETE FROM kv WHERE k = ?";
      p(std::string(op.k));
      break;
    case OpKind::kCtr:
      s.text = "UPDATE counters SET n = n + ? WHERE id = ?";
      p(op.b), p(op.a);
      break;
    case OpKind::kParent:
      s.text = "INSERT INTO parent(id, stream, tag) VALUES (?, ?, ?)";
      p(op.a), p(stream), p(std::string(tag));
      break;
    case OpKind::kChild:
    case OpKind::kBadChild:
      s.text = "INSERT INTO child(id, parent_id, stream, tag) VALUES (?, ?, ?, ?)";
      p(op.a), p(op.b), p(stream), p(std::string(tag));
      break;
    case OpKind::kGetKv:
      s.text = "SELECT v, tag FROM kv WHERE k = ?";
      p(std::string(op.k));
      break;
    case OpKind::kReadKv:
      s.text = "SELECT k, v, tag FROM kv WHERE stream = ?";
      p(stream);
      break;
    case OpKind::kCountTxLog:
      s.text = "SELECT count(*) FROM tx_log WHERE stream = ?";
      p(stream);
      break;
    case OpKind::kCountKv:
      s.text = "SELECT count(*) FROM kv WHERE stream = ?";
      p(stream);
      break;
  }
  return s;
}

void apply(StreamState& s, const Op& op, const std::string& tag, const std::string& kind) {
  switch (op.kind) {
    case OpKind::kTxLog: s.txlog[tag] = kind; break;
    case OpKind::kInsKv: s.kv[op.k] = KvRow{op.a, tag}; break;
    case OpKind::kUpdKv: {
      auto it = s.kv.find(op.k);
      if (it != s.kv.end()) {
        it->second.v += op.a;
        it->second.tag = tag;
      }
      break;
    }
    case OpKind::kDelKv: s.kv.erase(op.k); break;
    case OpKind::kCtr: s.counters[op.a] += op.b; break;
    case OpKind::kParent: s.parents[op.a] = tag; break;
    case OpKind::kChild:
    case OpKind::kBadChild: s.children[op.a] = ChildRow{op.b, tag}; break;
    default: break;  // reads; a duplicate insert and read-only writes must fail
  }
}

std::string make_tag(std::int64_t stream, std::int64_t n) {
  return "s" + std::to_string(stream) + "n" + std::to_string(n);
}

// ---- violations ----

void Violations::add(const std::string& cls, const std::string& detail) {
  Entry& e = by_class_[cls];
  ++e.count;
  if (e.examples.size() < 1000) e.examples.push_back(detail);
}

std::size_t Violations::count(const std::string& cls) const {
  auto it = by_class_.find(cls);
  return it == by_class_.end() ? 0 : it->second.count;
}

std::size_t Violations::total() const {
  std::size_t n = 0;
  for (const auto& [cls, e] : by_class_) n += e.count;
  return n;
}

namespace {
struct ClassInfo {
  std::string_view name;
  int rank;  // most severe first
  std::string_view meaning;
};
constexpr ClassInfo kClasses[] = {
    {"FK_COMMIT_SUCCEEDED", 0, "a commit that broke a deferred foreign key returned normally"},
    {"FK_ACCEPTED", 0, "an INSERT that broke an immediate foreign key (MariaDB) returned normally"},
    {"ACK_COMMIT_LOST", 1, "the commit was acknowledged but the transaction is not stored"},
    {"FAILED_COMMIT_PERSISTED", 2, "the commit reported an error, yet the transaction is stored"},
    {"FAILED_TX_PERSISTED", 2, "a statement failed (so the daemon rolled back), yet the transaction is stored"},
    {"ROLLED_BACK_TX_PERSISTED", 2, "rolled back, yet stored"},
    {"KILLED_TX_PERSISTED", 2, "its client was SIGKILLed before sending commit, yet it is stored"},
    {"PARTIAL_COMMIT", 3, "the transaction's tx_log row is stored but not exactly its other rows"},
    {"STATE_MISMATCH", 3, "a stored row differs from the replay of the committed transactions"},
    {"COUNTER_MISMATCH", 3, "a shared counter differs from the sum of the committed deltas"},
    {"FK_ORPHAN", 3, "a stored child row references a parent that does not exist"},
    {"UNKNOWN_ROW", 3, "a stored row no client ever wrote"},
    {"RO_WRITE_PERSISTED", 4, "a write made in a read-only session is stored"},
    {"RO_WRITE_ACCEPTED", 4, "a write in a read-only session returned normally"},
    {"RO_WRONG_ERROR", 4, "a write in a read-only session failed with the wrong error"},
    {"COMMIT_AFTER_ERROR_SUCCEEDED", 4, "commit() returned normally after a statement of the transaction failed"},
    {"DUPLICATE_ACCEPTED", 4, "an INSERT of an existing primary key succeeded"},
    {"VALID_COMMIT_FAILED", 5, "the commit of a valid transaction reported an error (another session's?)"},
    {"FK_WRONG_ERROR", 5, "a deferred-FK commit failed, but not with constraint/23503"},
    {"WRONG_ERROR", 5, "an expected failure came with the wrong category or SQLSTATE"},
    {"READ_MISMATCH", 6, "a read returned something else than what the client had committed"},
    {"AFFECTED_ROWS", 6, "affected_rows() differs from what the statement changed"},
    {"SCHEMA_READ_MISMATCH", 7, "SELECT * through dbmgrd differs from the same read run directly on the engine"},
    {"SCHEMA_STMT_FAILED", 7, "dbmgrd failed a statement that the engine accepts directly"},
    {"UNEXPECTED_ERROR", 8, "a statement, one-shot, rollback or re-read failed where nothing may fail"},
    {"CONNECTION_LOST", 8, "the socket to dbmgrd broke during a commit"},
    {"CONNECTION_LEAK", 8, "pooled connections still in use after every client exited"},
    {"DAEMON_DIED", 8, "dbmgrd exited during the run"},
    {"DAEMON_EXIT", 8, "dbmgrd did not exit 0 on SIGTERM (a sanitizer report, a leak, a hang)"},
    {"STUCK", 8, "a process did not finish after the deadline"},
};
const ClassInfo* class_info(std::string_view name) {
  for (const auto& c : kClasses) {
    if (c.name == name) return &c;
  }
  return nullptr;
}
}  // namespace

void Violations::print(std::ostream& out, bool all) const {
  std::vector<std::pair<int, std::string>> order;
  for (const auto& [cls, e] : by_class_) {
    const ClassInfo* info = class_info(cls);
    order.emplace_back(info != nullptr ? info->rank : 9, cls);  // 9: the test's own troubles
  }
  std::sort(order.begin(), order.end());
  out << "violations: " << total() << " in " << order.size() << " classes, most severe first:";
  for (const auto& [rank, cls] : order) out << " " << cls << " " << by_class_.at(cls).count;
  out << "\n";
  for (const auto& [rank, cls] : order) {
    const Entry& e = by_class_.at(cls);
    const ClassInfo* info = class_info(cls);
    out << "  [" << cls << "] " << e.count;
    if (info != nullptr) out << ": " << info->meaning;
    out << "\n";
    // Examples of different shapes first (digits ignored), then the rest in order.
    std::vector<std::size_t> pick;
    std::set<std::string> shapes;
    for (std::size_t i = 0; i < e.examples.size(); ++i) {
      std::string shape;
      for (char c : e.examples[i]) {
        if (c < '0' || c > '9') shape += c;
      }
      if (shapes.insert(shape.substr(0, 120)).second) pick.push_back(i);
    }
    for (std::size_t i = 0; i < e.examples.size(); ++i) {
      if (std::find(pick.begin(), pick.end(), i) == pick.end()) pick.push_back(i);
      if (!all && pick.size() >= 5) break;
    }
    std::size_t shown = all ? pick.size() : std::min<std::size_t>(pick.size(), 5);
    for (std::size_t i = 0; i < shown; ++i) out << "    " << e.examples[pick[i]] << "\n";
    if (shown < e.count) out << "    ... " << (e.count - shown) << " more (--verbose shows them)\n";
  }
}

}  // namespace torture
