// Direct engine access for dbmgr-torture: the SQLite file through the sqlite3 C API, the
// PostgreSQL database through libpq. Never through dbmgrd: this is the other side of every
// differential comparison and what the oracle reads at the end.
//
// Cells are typed as dbmgrd types them (docs/protocol.md: a value tag per cell): SQLite by
// each value's storage class; PostgreSQL by the column's type OID (bool -> bool; int2, int4,
// int8, oid -> int64; float4, float8 -> double; bytea -> blob; everything else -> text, as
// the server prints it).
#include <libpq-fe.h>
#include <sqlite3.h>

#include <cstdio>
#include <cstring>
#include <stdexcept>

#include "torture.hpp"

namespace torture {
namespace {

// ---- SQLite ----

class SqliteDirect : public Direct {
 public:
  explicit SqliteDirect(const std::string& path) {
    int rc = sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE, nullptr);
    if (rc != SQLITE_OK) {
      std::string msg = db_ != nullptr ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
      sqlite3_close(db_);
      db_ = nullptr;
      throw std::runtime_error("cannot open " + path + " directly: " + msg);
    }
    sqlite3_extended_result_codes(db_, 1);
    sqlite3_busy_timeout(db_, 30000);
  }
  ~SqliteDirect() override { sqlite3_close(db_); }

  void exec(const std::string& sql) override {
    char* err = nullptr;
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
      std::string msg = err != nullptr ? err : sqlite3_errmsg(db_);
      sqlite3_free(err);
      throw std::runtime_error("sqlite3 direct: " + msg);
    }
  }

  void exec(const std::string& sql, const std::vector<dbmgr::Param>& params) override {
    sqlite3_stmt* st = prepare(sql);
    for (std::size_t i = 0; i < params.size(); ++i) {
      const dbmgr::Param& p = params[i];
      int n = static_cast<int>(i) + 1;
      switch (p.type()) {
        case dbmgr::Type::kNull: sqlite3_bind_null(st, n); break;
        case dbmgr::Type::kBool: sqlite3_bind_int(st, n, p.as_bool() ? 1 : 0); break;
        case dbmgr::Type::kInt64: sqlite3_bind_int64(st, n, p.as_int64()); break;
        case dbmgr::Type::kDouble: sqlite3_bind_double(st, n, p.as_double()); break;
        case dbmgr::Type::kText:
          sqlite3_bind_text(st, n, p.bytes().data(), static_cast<int>(p.bytes().size()),
                            SQLITE_TRANSIENT);
          break;
        case dbmgr::Type::kBlob:
          sqlite3_bind_blob(st, n, p.bytes().data(), static_cast<int>(p.bytes().size()),
                            SQLITE_TRANSIENT);
          break;
      }
    }
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    }
    std::string msg = sqlite3_errmsg(db_);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) throw std::runtime_error("sqlite3 direct: " + msg);
  }

  Table query(const std::string& sql) override {
    sqlite3_stmt* st = prepare(sql);
    Table t;
    // The columns only after the first step: when another connection changed the schema,
    // sqlite3_step() prepares the statement again, and what sqlite3_column_count() said
    // before it describes the old table (the very mistake this test looks for in dbmgrd).
    int rc = sqlite3_step(st);
    int n = sqlite3_column_count(st);
    for (int c = 0; c < n; ++c) {
      const char* name = sqlite3_column_name(st, c);
      t.columns.push_back(name != nullptr ? name : "");
    }
    for (; rc == SQLITE_ROW; rc = sqlite3_step(st)) {
      std::vector<Cell> row(static_cast<std::size_t>(n));
      for (int c = 0; c < n; ++c) {
        Cell& cell = row[static_cast<std::size_t>(c)];
        switch (sqlite3_column_type(st, c)) {
          case SQLITE_INTEGER:
            cell.type = dbmgr::Type::kInt64;
            cell.i = sqlite3_column_int64(st, c);
            break;
          case SQLITE_FLOAT:
            cell.type = dbmgr::Type::kDouble;
            cell.d = sqlite3_column_double(st, c);
            break;
          case SQLITE_TEXT:
            cell.type = dbmgr::Type::kText;
            cell.bytes.assign(reinterpret_cast<const char*>(sqlite3_column_text(st, c)),
                              static_cast<std::size_t>(sqlite3_column_bytes(st, c)));
            break;
          case SQLITE_BLOB: {
            cell.type = dbmgr::Type::kBlob;
            const void* b = sqlite3_column_blob(st, c);
            int len = sqlite3_column_bytes(st, c);
            if (b != nullptr) cell.bytes.assign(static_cast<const char*>(b), static_cast<std::size_t>(len));
            break;
          }
          default: break;
        }
      }
      t.rows.push_back(std::move(row));
    }
    std::string msg = sqlite3_errmsg(db_);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) throw std::runtime_error("sqlite3 direct: " + msg);
    return t;
  }

 private:
  sqlite3_stmt* prepare(const std::string& sql) {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db_, sql.c_str(), static_cast<int>(sql.size()), &st, nullptr) != SQLITE_OK) {
      throw std::runtime_error("sqlite3 direct: " + std::string(sqlite3_errmsg(db_)));
    }
    if (st == nullptr) throw std::runtime_error("sqlite3 direct: empty statement");
    return st;
  }

  sqlite3* db_ = nullptr;
};

// ---- PostgreSQL ----

constexpr Oid kBool = 16, kBytea = 17, kInt8 = 20, kInt2 = 21, kInt4 = 23, kOid = 26,
              kFloat4 = 700, kFloat8 = 701;

dbmgr::Type pg_type(Oid t) {
  switch (t) {
    case kBool: return dbmgr::Type::kBool;
    case kInt2:
    case kInt4:
    case kInt8:
    case kOid: return dbmgr::Type::kInt64;
    case kFloat4:
    case kFloat8: return dbmgr::Type::kDouble;
    case kBytea: return dbmgr::Type::kBlob;
    default: return dbmgr::Type::kText;
  }
}

class PgDirect : public Direct {
 public:
  explicit PgDirect(const PgParams& p) {
    const char* keys[] = {"host", "port", "user", "password", "dbname", "application_name", nullptr};
    const char* vals[] = {p.host.c_str(), p.port.c_str(), p.user.c_str(), p.password.c_str(),
                          p.dbname.c_str(), "dbmgr-torture-direct", nullptr};
    conn_ = PQconnectdbParams(keys, vals, 0);
    if (PQstatus(conn_) != CONNECTION_OK) {
      std::string msg = PQerrorMessage(conn_);
      PQfinish(conn_);
      conn_ = nullptr;
      throw std::runtime_error("cannot connect to PostgreSQL database " + p.dbname +
                               " directly: " + clean(msg));
    }
    PQclear(PQexec(conn_, "SET client_min_messages = warning"));
  }
  ~PgDirect() override { PQfinish(conn_); }

  void exec(const std::string& sql) override { check(PQexec(conn_, sql.c_str()), sql); }

  void exec(const std::string& sql, const std::vector<dbmgr::Param>& params) override {
    std::string text;  // ? -> $n (the SQL the torture test generates has no ? elsewhere)
    int n = 0;
    for (char c : sql) {
      if (c == '?') {
        text += "$" + std::to_string(++n);
      } else {
        text += c;
      }
    }
    std::vector<Oid> types(params.size(), 0);
    std::vector<std::string> storage(params.size());
    std::vector<const char*> values(params.size(), nullptr);
    std::vector<int> lengths(params.size(), 0), formats(params.size(), 0);
    for (std::size_t i = 0; i < params.size(); ++i) {
      const dbmgr::Param& p = params[i];
      char buf[64];
      switch (p.type()) {
        case dbmgr::Type::kNull: continue;
        case dbmgr::Type::kBool: types[i] = kBool; storage[i] = p.as_bool() ? "t" : "f"; break;
        case dbmgr::Type::kInt64: types[i] = kInt8; storage[i] = std::to_string(p.as_int64()); break;
        case dbmgr::Type::kDouble:
          types[i] = kFloat8;
          std::snprintf(buf, sizeof buf, "%.17g", p.as_double());
          storage[i] = buf;
          break;
        case dbmgr::Type::kText: storage[i] = std::string(p.bytes()); break;
        case dbmgr::Type::kBlob:
          types[i] = kBytea;
          storage[i] = std::string(p.bytes());
          formats[i] = 1;
          lengths[i] = static_cast<int>(storage[i].size());
          break;
      }
      values[i] = storage[i].c_str();
    }
    check(PQexecParams(conn_, text.c_str(), static_cast<int>(params.size()), types.data(),
                       values.data(), lengths.data(), formats.data(), 0),
          sql);
  }

  Table query(const std::string& sql) override {
    PGresult* r = check(PQexec(conn_, sql.c_str()), sql, /*keep=*/true);
    Table t;
    int nf = PQnfields(r);
    for (int c = 0; c < nf; ++c) {
      t.columns.push_back(PQfname(r, c));
      t.declared.push_back(pg_type(PQftype(r, c)));
    }
    for (int row = 0; row < PQntuples(r); ++row) {
      std::vector<Cell> cells(static_cast<std::size_t>(nf));
      for (int c = 0; c < nf; ++c) {
        if (PQgetisnull(r, row, c) != 0) continue;
        Cell& cell = cells[static_cast<std::size_t>(c)];
        const char* v = PQgetvalue(r, row, c);
        cell.type = pg_type(PQftype(r, c));
        switch (cell.type) {
          case dbmgr::Type::kBool: cell.i = v[0] == 't' ? 1 : 0; break;
          case dbmgr::Type::kInt64: cell.i = std::strtoll(v, nullptr, 10); break;
          case dbmgr::Type::kDouble: cell.d = std::strtod(v, nullptr); break;
          case dbmgr::Type::kBlob: {
            std::size_t len = 0;
            unsigned char* b = PQunescapeBytea(reinterpret_cast<const unsigned char*>(v), &len);
            if (b == nullptr) throw std::runtime_error("PQunescapeBytea failed");
            cell.bytes.assign(reinterpret_cast<const char*>(b), len);
            PQfreemem(b);
            break;
          }
          default:
            cell.bytes.assign(v, static_cast<std::size_t>(PQgetlength(r, row, c)));
            break;
        }
      }
      t.rows.push_back(std::move(cells));
    }
    PQclear(r);
    return t;
  }

 private:
  PGresult* check(PGresult* r, const std::string& sql, bool keep = false) {
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
      const char* state = r != nullptr ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
      std::string msg = r != nullptr ? PQresultErrorMessage(r) : PQerrorMessage(conn_);
      PQclear(r);
      throw std::runtime_error("libpq direct: " + std::string(state != nullptr ? state : "") + " " +
                               clean(msg) + " (in: " + clean(sql) + ")");
    }
    if (!keep) {
      PQclear(r);
      return nullptr;
    }
    return r;
  }

  PGconn* conn_ = nullptr;
};

}  // namespace

std::unique_ptr<Direct> open_direct(const Config& cfg) {
  if (cfg.backend == Backend::kSqlite) return std::make_unique<SqliteDirect>(cfg.sqlite_path);
  return std::make_unique<PgDirect>(cfg.pg);
}

std::unique_ptr<Direct> open_pg(const PgParams& p) { return std::make_unique<PgDirect>(p); }

}  // namespace torture
