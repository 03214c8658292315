// The schema worker of dbmgr-torture: on its own tables (t and u) it changes the schema
// (ADD COLUMN, DROP TABLE + CREATE TABLE with other columns and types, DROP/RENAME COLUMN,
// PostgreSQL ALTER COLUMN TYPE, MariaDB MODIFY COLUMN, fewer rows) and the rows between runs of the very same
// statement text, `SELECT * FROM t`, and after every change runs that read through dbmgrd
// (one-shot and session, read-write and read-only: different pooled connections, each with
// its own statement cache) AND directly on the engine, and compares the two cell by cell.
//
// The very first change is always the one known to break current main:
//   DROP TABLE t; CREATE TABLE t(a VARCHAR(10), b INTEGER)
// after `SELECT * FROM t` ran on every connection.
//
// Log lines (schema.log): G iteration change via | X iteration table path match |
// X iteration table path mismatch detail | F iteration detail (dbmgrd failed a statement the
// engine accepted directly) | N iteration note (the engine refused a generated statement
// itself: a test limitation, not a daemon bug) | Q (end) | Z message (exception).
#include <algorithm>
#include <cctype>

#include "torture.hpp"

namespace torture {
namespace {

struct Column {
  std::string name;
  std::string type;  // lower case, as the engine's catalog reports it
};

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}
bool has(const std::string& s, std::string_view what) { return s.find(what) != std::string::npos; }

class SchemaWorker {
 public:
  explicit SchemaWorker(const Config& cfg)
      : cfg_(cfg),
        log_(cfg.log_dir + "/schema.log"),
        m_(cfg.options()),
        direct_(open_direct(cfg)),
        rng_(mix_seed(cfg.seed, 0x5c4e3a11)),
        sqlite_(cfg.backend == Backend::kSqlite),
        mariadb_(cfg.backend == Backend::kMariadb) {}

  void run() {
    // The known case first, after the read ran on every connection it can use.
    start_iteration();
    change("t", "DROP TABLE IF EXISTS t; CREATE TABLE t(id INTEGER, name TEXT, score REAL)", "script");
    insert_rows("t", 3);
    change("u", "DROP TABLE IF EXISTS u; CREATE TABLE u(x TEXT, y INTEGER)", "script");
    insert_rows("u", 2);
    compare_all("t", 2);
    compare_all("u", 2);
    start_iteration();
    change("t", "DROP TABLE t; CREATE TABLE t(a VARCHAR(10), b INTEGER)", "session");
    insert_rows("t", 2);
    compare_all("t", 2);
    while (Clock::now() < cfg_.deadline) {
      const std::string table = rng_.chance(0.7) ? "t" : "u";
      start_iteration();
      random_change(table);
      compare_all(table, 1);
    }
    log_.line({"Q"});
  }

 private:
  // ---- the engine's view of a table ----

  std::vector<Column> columns(const std::string& table) {
    std::vector<Column> cols;
    std::string sql = sqlite_    ? "SELECT name, type FROM pragma_table_info('" + table + "')"
                      : mariadb_ ? "SELECT column_name, column_type FROM information_schema.columns WHERE "
                                   "table_schema = DATABASE() AND table_name = '" +
                                       table + "' ORDER BY ordinal_position"
                                 : "SELECT column_name, data_type FROM information_schema.columns WHERE "
                                   "table_schema = current_schema() AND table_name = '" +
                                       table + "' ORDER BY ordinal_position";
    for (const auto& r : direct_->query(sql).rows) cols.push_back({r[0].bytes, lower(r[1].bytes)});
    return cols;
  }

  std::vector<std::string> types() const {
    if (sqlite_) return {"INTEGER", "REAL", "TEXT", "BLOB", "VARCHAR(10)", "BOOLEAN", "NUMERIC", ""};
    if (mariadb_) {
      return {"INTEGER", "BIGINT", "SMALLINT", "DOUBLE", "TEXT", "VARCHAR(10)", "BOOLEAN", "BLOB",
              "DECIMAL(10,2)", "BIT(1)"};
    }
    return {"INTEGER", "BIGINT", "SMALLINT", "DOUBLE PRECISION", "REAL", "TEXT", "VARCHAR(10)",
            "BOOLEAN", "BYTEA", "NUMERIC(10,2)"};
  }

  std::string new_name(const std::vector<Column>& cols) {
    static const std::vector<std::string> names = {"a", "b", "c", "d", "e", "id", "name", "score",
                                                   "flag", "data", "note", "qty", "price", "x", "y", "z"};
    for (;;) {
      const std::string& n = rng_.pick(names);
      if (std::none_of(cols.begin(), cols.end(), [&](const Column& c) { return c.name == n; })) return n;
    }
  }

  std::string text_value(std::size_t max_chars) {
    static const std::vector<std::string> pieces = {"a", "b", "z", "0", "7", " ", "-", "é", "'", "x"};
    std::string s;
    std::size_t n = static_cast<std::size_t>(rng_.uniform(0, static_cast<std::int64_t>(max_chars)));
    for (std::size_t i = 0; i < n; ++i) s += rng_.pick(pieces);
    return s;
  }

  // A value that fits a column of `type` (on SQLite sometimes one that does not: dynamic typing).
  dbmgr::Param value(const std::string& type) {
    if (rng_.chance(0.2)) return nullptr;
    std::string t = type;
    if (sqlite_ && rng_.chance(0.1)) t = lower(rng_.pick(types()));
    if (has(t, "bool") || has(t, "tinyint") || has(t, "bit")) return rng_.chance(0.5);  // MariaDB: tinyint(1), bit(1)
    if (has(t, "smallint")) return rng_.uniform(-32768, 32767);
    if (has(t, "bigint")) return rng_.uniform(-4'000'000'000'000, 4'000'000'000'000);
    if (has(t, "int")) return rng_.uniform(-2'000'000'000, 2'000'000'000);
    if (has(t, "double") || has(t, "real") || has(t, "float")) return static_cast<double>(rng_.uniform(-4'000'000, 4'000'000)) / 4;
    if (has(t, "numeric") || has(t, "decimal")) {
      if (sqlite_ && rng_.chance(0.5)) return rng_.uniform(-1000, 1000);
      return static_cast<double>(rng_.uniform(-400'000, 400'000)) / 4;
    }
    if (has(t, "blob") || has(t, "bytea")) {
      std::string b;
      for (std::int64_t i = rng_.uniform(0, 8); i > 0; --i) b += static_cast<char>(rng_.uniform(0, 255));
      return dbmgr::Blob::from_string(b);
    }
    return text_value(has(t, "char") ? 5 : 12);  // "é" is 1 character, 2 bytes
  }

  // A constant default for ADD COLUMN, or empty.
  std::string default_for(const std::string& type) {
    std::string t = lower(type);
    if (!rng_.chance(0.5)) return "";
    if (has(t, "bool")) return sqlite_ ? " DEFAULT 1" : " DEFAULT true";
    if (has(t, "bit")) return " DEFAULT b'1'";
    if (has(t, "int")) return " DEFAULT 7";
    if (has(t, "double") || has(t, "real") || has(t, "numeric") || has(t, "decimal")) return " DEFAULT 2.5";
    if (has(t, "blob") || has(t, "bytea")) return "";
    return " DEFAULT 'dflt'";
  }

  // ---- running changes ----

  // Runs `sql` through dbmgrd (`via`: "oneshot", "session", "script") or directly ("direct").
  // A statement dbmgrd fails is retried directly: if the engine accepts it there, dbmgrd failed
  // a valid statement (F); if the engine refuses it too, the test made a bad statement (N).
  void change(const std::string& table, const std::string& sql, const std::string& via,
              const std::vector<dbmgr::Param>& params = {}) {
    log_.line({"G", std::to_string(iter_), table + ": " + clean(sql), via});
    if (sql.rfind("INSERT", 0) == 0) {
      ++inserts_;
    } else {
      last_change_ += (last_change_.empty() ? "" : "; ") + sql + " [" + via + "]";
    }
    if (via == "direct") {
      try {
        params.empty() ? direct_->exec(sql) : direct_->exec(sql, params);
      } catch (const std::exception& e) {
        log_.line({"N", std::to_string(iter_), "refused directly: " + clean(e.what()) + " in: " + clean(sql)});
      }
      return;
    }
    try {
      // A one-shot is one statement (docs/protocol.md, kOneShot), and the MariaDB engine runs
      // one statement per request: there a script goes through a session, a statement each.
      const bool script = sql.find(';') != std::string::npos;
      if (via == "session" || (mariadb_ && script)) {
        m_.run([&](dbmgr::Session& s) {
          // A script becomes its statements, one execute() each.
          std::size_t start = 0;
          while (start < sql.size()) {
            std::size_t semi = sql.find(';', start);
            std::string one = sql.substr(start, semi == std::string::npos ? std::string::npos : semi - start);
            if (one.find_first_not_of(' ') != std::string::npos) s.execute(one, params);
            if (semi == std::string::npos) break;
            start = semi + 1;
          }
        });
      } else {
        m_.execute(sql, params);
      }
    } catch (const dbmgr::Error& e) {
      std::string err = category_of(e) + "/" + e.sqlstate() + " " + clean(e.message());
      try {
        params.empty() ? direct_->exec(sql) : direct_->exec(sql, params);
        log_.line({"F", std::to_string(iter_),
                   "through dbmgrd (" + via + ") \"" + clean(sql) + "\" failed with " + err +
                       ", but the engine accepted it directly"});
      } catch (const std::exception& d) {
        log_.line({"N", std::to_string(iter_), "refused by dbmgrd (" + err + ") and directly (" +
                                                   clean(d.what()) + "): " + clean(sql)});
      }
    }
  }

  std::string pick_via(bool ddl) {
    if (ddl) return rng_.pick(std::vector<std::string>{"oneshot", "oneshot", "session", "session", "direct"});
    return rng_.pick(std::vector<std::string>{"oneshot", "session", "session", "direct"});
  }

  void insert_rows(const std::string& table, int n) {
    std::vector<Column> cols = columns(table);
    if (cols.empty()) return;
    for (int r = 0; r < n; ++r) {
      std::string names, marks;
      std::vector<dbmgr::Param> params;
      for (const Column& c : cols) {
        if (rng_.chance(0.15)) continue;  // left to its default (or NULL)
        names += (names.empty() ? "" : ", ") + c.name;
        marks += marks.empty() ? "?" : ", ?";
        params.push_back(value(c.type));
      }
      if (params.empty()) {
        change(table, "INSERT INTO " + table + (mariadb_ ? " () VALUES ()" : " DEFAULT VALUES"), pick_via(false));
      } else {
        change(table, "INSERT INTO " + table + "(" + names + ") VALUES (" + marks + ")", pick_via(false), params);
      }
    }
  }

  std::string create_sql(const std::string& table) {
    std::vector<Column> cols;
    std::string sql = "CREATE TABLE " + table + "(";
    int n = static_cast<int>(rng_.uniform(1, 4));
    for (int i = 0; i < n; ++i) {
      Column c{new_name(cols), rng_.pick(types())};
      sql += (i ? ", " : "") + c.name + (c.type.empty() ? "" : " " + c.type);
      cols.push_back(c);
    }
    return sql + ")";
  }

  void start_iteration() {
    ++iter_;
    last_change_.clear();
    inserts_ = 0;
  }

  void random_change(const std::string& table) {
    std::vector<Column> cols = columns(table);
    if (cols.empty()) {
      change(table, create_sql(table), "oneshot");
      return;
    }
    const std::string rowid = sqlite_ ? "rowid" : "ctid";
    enum { kAdd, kRecreate, kDrop, kRename, kAlterType, kDeleteSome, kDeleteAll, kInsert, kUpdate };
    std::vector<int> w = {14, 14, cols.size() >= 2 ? 8 : 0, 6, sqlite_ ? 0 : 8, 8, 3, 18, 10};
    const Column& c = rng_.pick(cols);
    switch (rng_.weighted(w)) {
      case kAdd: {
        std::string type = rng_.pick(types());
        change(table, "ALTER TABLE " + table + " ADD COLUMN " + new_name(cols) + (type.empty() ? "" : " " + type) +
                          default_for(type),
               pick_via(true));
        break;
      }
      case kRecreate: {
        std::string create = create_sql(table);
        if (rng_.chance(0.5)) {
          change(table, "DROP TABLE " + table + "; " + create, rng_.chance(0.5) ? "script" : pick_via(true));
        } else {
          change(table, "DROP TABLE " + table, pick_via(true));
          change(table, create, pick_via(true));
        }
        insert_rows(table, static_cast<int>(rng_.uniform(0, 5)));
        break;
      }
      case kDrop:
        change(table, "ALTER TABLE " + table + " DROP COLUMN " + c.name, pick_via(true));
        break;
      case kRename:
        change(table, "ALTER TABLE " + table + " RENAME COLUMN " + c.name + " TO " + new_name(cols),
               pick_via(true));
        break;
      case kAlterType:
        if (mariadb_) {
          const bool small = has(c.type, "int") && !has(c.type, "bigint") && !has(c.type, "tinyint");
          change(table, "ALTER TABLE " + table + " MODIFY COLUMN " + c.name + (small ? " BIGINT" : " TEXT"),
                 pick_via(true));
        } else if (has(c.type, "smallint") || c.type == "integer") {
          change(table, "ALTER TABLE " + table + " ALTER COLUMN " + c.name + " TYPE BIGINT", pick_via(true));
        } else {
          change(table, "ALTER TABLE " + table + " ALTER COLUMN " + c.name + " TYPE TEXT USING " + c.name + "::text",
                 pick_via(true));
        }
        break;
      case kDeleteSome:
        if (mariadb_) {
          change(table, "DELETE FROM " + table + " LIMIT " + std::to_string(rng_.uniform(1, 2)), pick_via(false));
          break;
        }
        change(table, "DELETE FROM " + table + " WHERE " + rowid + " IN (SELECT " + rowid + " FROM " + table +
                          " LIMIT " + std::to_string(rng_.uniform(1, 2)) + ")",
               pick_via(false));
        break;
      case kDeleteAll:
        change(table, "DELETE FROM " + table, pick_via(false));
        break;
      case kInsert:
        insert_rows(table, static_cast<int>(rng_.uniform(1, 3)));
        break;
      default:
        change(table, "UPDATE " + table + " SET " + c.name + " = ?", pick_via(false), {value(c.type)});
        break;
    }
  }

  // ---- the comparison ----

  // What this iteration changed, for the report.
  std::string after() const {
    std::string s = " (after: " + (last_change_.empty() ? std::string("no schema change") : last_change_);
    if (inserts_ > 0) s += "; " + std::to_string(inserts_) + " INSERTs";
    s += ")";
    for (char& c : s) {
      if (c == '\t' || c == '\n') c = ' ';
    }
    return s;
  }

  // `SELECT * FROM table` through every path, `rounds` times each, against a direct read.
  void compare_all(const std::string& table, int rounds) {
    const std::string sql = "SELECT * FROM " + table;
    std::vector<std::string> paths = {"oneshot", "oneshot_ro", "session", "session_ro"};
    struct Got {
      std::string path;
      std::optional<Table> table;
      std::string error;
    };
    std::vector<Got> got;
    for (int r = 0; r < rounds; ++r) {
      std::shuffle(paths.begin(), paths.end(), std::mt19937_64(rng_.uniform(0, 1 << 30)));
      for (const auto& p : paths) {
        Got g{p, std::nullopt, {}};
        dbmgr::Access access = p.find("_ro") != std::string::npos ? dbmgr::Access::kReadOnly
                                                                   : dbmgr::Access::kReadWrite;
        try {
          if (p.rfind("oneshot", 0) == 0) {
            g.table = from_result(m_.execute(sql, {}, access));
          } else {
            dbmgr::Session s = m_.get_session(access);
            g.table = from_result(s.execute(sql));
            s.commit();
          }
        } catch (const dbmgr::Error& e) {
          g.error = category_of(e) + "/" + e.sqlstate() + " \"" + clean(e.message()) + "\"";
        }
        got.push_back(std::move(g));
      }
    }
    Table direct;
    try {
      direct = direct_->query(sql);
    } catch (const std::exception& e) {
      log_.line({"N", std::to_string(iter_), "direct read failed: " + clean(e.what())});
      return;
    }
    for (const Got& g : got) {
      std::vector<std::string> f = {"X", std::to_string(iter_), table, g.path};
      if (!g.table) {
        f.push_back("mismatch");
        f.push_back("dbmgrd failed with " + g.error + " where the engine returned " +
                    std::to_string(direct.rows.size()) + " rows of " + describe_columns(direct) +
                    after());
      } else if (auto d = compare_tables(*g.table, direct)) {
        f.push_back("mismatch");
        f.push_back(*d + after());
      } else {
        f.push_back("match");
      }
      log_.line(f);
    }
  }

  const Config& cfg_;
  EventLog log_;
  dbmgr::DatabaseManager m_;
  std::unique_ptr<Direct> direct_;
  Rng rng_;
  const bool sqlite_;
  const bool mariadb_;
  int iter_ = 0;
  std::string last_change_;  // this iteration's changes but INSERTs
  int inserts_ = 0;
};

}  // namespace

int run_schema_worker(const Config& cfg) {
  try {
    SchemaWorker w(cfg);
    w.run();
    return 0;
  } catch (const std::exception& e) {
    try {
      EventLog log(cfg.log_dir + "/schema.log");
      log.line({"Z", clean(e.what())});
    } catch (...) {
    }
    return 1;
  }
}

}  // namespace torture
