// Direct engine access for dbmgr-torture: the SQLite file through the sqlite3 C API, the
// PostgreSQL database through libpq, the MariaDB database through unixODBC and the MariaDB
// driver. Never through dbmgrd: this is the other side of every differential comparison and
// what the oracle reads at the end.
//
// Cells are typed as dbmgrd types them (docs/protocol.md: a value tag per cell): SQLite by
// each value's storage class; PostgreSQL by the column's type OID (bool -> bool; int2, int4,
// int8, oid -> int64; float4, float8 -> double; bytea -> blob; everything else -> text, as
// the server prints it); ODBC by the column's SQL type as SQLDescribeCol reports it (BIT ->
// bool; TINYINT, SMALLINT, INTEGER, signed BIGINT -> int64; REAL, FLOAT, DOUBLE -> double;
// BINARY, VARBINARY, LONGVARBINARY -> blob; everything else, an unsigned BIGINT included ->
// text as the driver prints it).
#include <libpq-fe.h>
#include <sql.h>
#include <sqlext.h>
#include <sqlite3.h>

#include <algorithm>
#include <cctype>
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

// ---- MariaDB through ODBC ----

bool odbc_ok(SQLRETURN rc) { return rc == SQL_SUCCESS || rc == SQL_SUCCESS_WITH_INFO; }

std::string odbc_diag(SQLSMALLINT type, SQLHANDLE h) {
  std::string out;
  SQLCHAR state[6] = {0};
  SQLCHAR msg[1024] = {0};
  SQLINTEGER native = 0;
  SQLSMALLINT len = 0;
  for (SQLSMALLINT i = 1; SQLGetDiagRec(type, h, i, state, &native, msg, sizeof msg, &len) == SQL_SUCCESS; ++i) {
    if (!out.empty()) out += "; ";
    out += std::string(reinterpret_cast<char*>(state)) + " " + reinterpret_cast<char*>(msg);
  }
  return out.empty() ? "no diagnostics" : out;
}

dbmgr::Type odbc_type(SQLSMALLINT t, bool is_unsigned) {
  switch (t) {
    case SQL_BIT: return dbmgr::Type::kBool;
    case SQL_TINYINT:
    case SQL_SMALLINT:
    case SQL_INTEGER: return dbmgr::Type::kInt64;
    case SQL_BIGINT: return is_unsigned ? dbmgr::Type::kText : dbmgr::Type::kInt64;
    case SQL_REAL:
    case SQL_FLOAT:
    case SQL_DOUBLE: return dbmgr::Type::kDouble;
    case SQL_BINARY:
    case SQL_VARBINARY:
    case SQL_LONGVARBINARY: return dbmgr::Type::kBlob;
    default: return dbmgr::Type::kText;
  }
}

// A script's statements: split at ';' outside '...', "..." and `...` (backslash escapes in
// strings, as MariaDB reads them by default).
std::vector<std::string> split_script(const std::string& sql) {
  std::vector<std::string> out;
  std::string cur;
  char quote = 0;
  for (std::size_t i = 0; i < sql.size(); ++i) {
    char c = sql[i];
    if (quote != 0) {
      cur += c;
      if (c == '\\' && quote != '`' && i + 1 < sql.size()) {
        cur += sql[++i];
      } else if (c == quote) {
        quote = 0;
      }
    } else if (c == '\'' || c == '"' || c == '`') {
      quote = c;
      cur += c;
    } else if (c == ';') {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  out.push_back(cur);
  std::vector<std::string> stmts;
  for (auto& st : out) {
    if (st.find_first_not_of(" \t\n") != std::string::npos) stmts.push_back(st);
  }
  return stmts;
}

class OdbcDirect : public Direct {
 public:
  explicit OdbcDirect(const std::string& connection_string) {
    if (!odbc_ok(SQLAllocHandle(SQL_HANDLE_ENV, SQL_NULL_HANDLE, &env_))) {
      throw std::runtime_error("cannot make an ODBC environment");
    }
    SQLSetEnvAttr(env_, SQL_ATTR_ODBC_VERSION, reinterpret_cast<SQLPOINTER>(SQL_OV_ODBC3), 0);
    if (!odbc_ok(SQLAllocHandle(SQL_HANDLE_DBC, env_, &dbc_))) {
      SQLFreeHandle(SQL_HANDLE_ENV, env_);
      throw std::runtime_error("cannot make an ODBC connection handle");
    }
    SQLCHAR out[1024];
    SQLSMALLINT out_len = 0;
    std::string cs = connection_string;
    SQLRETURN rc = SQLDriverConnect(dbc_, nullptr, reinterpret_cast<SQLCHAR*>(cs.data()), SQL_NTS, out,
                                    sizeof out, &out_len, SQL_DRIVER_NOPROMPT);
    if (!odbc_ok(rc)) {
      std::string msg = odbc_diag(SQL_HANDLE_DBC, dbc_);
      SQLFreeHandle(SQL_HANDLE_DBC, dbc_);
      SQLFreeHandle(SQL_HANDLE_ENV, env_);
      throw std::runtime_error("cannot connect to MariaDB directly through ODBC: " + clean(msg));
    }
  }
  ~OdbcDirect() override {
    SQLDisconnect(dbc_);
    SQLFreeHandle(SQL_HANDLE_DBC, dbc_);
    SQLFreeHandle(SQL_HANDLE_ENV, env_);
  }

  void exec(const std::string& sql) override {
    for (const std::string& one : split_script(sql)) {
      Stmt st(dbc_);
      std::string text = one;
      SQLRETURN rc = SQLExecDirect(st.h, reinterpret_cast<SQLCHAR*>(text.data()), SQL_NTS);
      if (!odbc_ok(rc) && rc != SQL_NO_DATA) fail(st.h, one);
    }
  }

  void exec(const std::string& sql, const std::vector<dbmgr::Param>& params) override {
    Stmt st(dbc_);
    std::string text = sql;
    if (!odbc_ok(SQLPrepare(st.h, reinterpret_cast<SQLCHAR*>(text.data()), SQL_NTS))) fail(st.h, sql);
    std::vector<SQLLEN> ind(params.size(), 0);
    std::vector<std::int64_t> ints(params.size(), 0);
    std::vector<double> doubles(params.size(), 0);
    std::vector<unsigned char> bits(params.size(), 0);
    for (std::size_t i = 0; i < params.size(); ++i) {
      const dbmgr::Param& p = params[i];
      SQLSMALLINT ctype = SQL_C_CHAR, stype = SQL_VARCHAR;
      SQLULEN size = 1;
      SQLPOINTER ptr = nullptr;
      SQLLEN buflen = 0;
      switch (p.type()) {
        case dbmgr::Type::kNull: ind[i] = SQL_NULL_DATA; break;
        case dbmgr::Type::kBool:
          bits[i] = p.as_bool() ? 1 : 0;
          ctype = SQL_C_BIT, stype = SQL_BIT, ptr = &bits[i];
          break;
        case dbmgr::Type::kInt64:
          ints[i] = p.as_int64();
          ctype = SQL_C_SBIGINT, stype = SQL_BIGINT, size = 19, ptr = &ints[i];
          break;
        case dbmgr::Type::kDouble:
          doubles[i] = p.as_double();
          ctype = SQL_C_DOUBLE, stype = SQL_DOUBLE, size = 15, ptr = &doubles[i];
          break;
        case dbmgr::Type::kText:
        case dbmgr::Type::kBlob: {
          const bool is_text = p.type() == dbmgr::Type::kText;
          ctype = is_text ? SQL_C_CHAR : SQL_C_BINARY;
          stype = is_text ? SQL_VARCHAR : SQL_VARBINARY;
          ptr = const_cast<char*>(p.bytes().data());
          ind[i] = buflen = static_cast<SQLLEN>(p.bytes().size());
          size = std::max<SQLULEN>(1, p.bytes().size());
          break;
        }
      }
      SQLRETURN rc = SQLBindParameter(st.h, static_cast<SQLUSMALLINT>(i + 1), SQL_PARAM_INPUT, ctype, stype, size,
                                      0, ptr, buflen, &ind[i]);
      if (!odbc_ok(rc)) fail(st.h, sql);
    }
    SQLRETURN rc = SQLExecute(st.h);
    if (!odbc_ok(rc) && rc != SQL_NO_DATA) fail(st.h, sql);
  }

  Table query(const std::string& sql) override {
    Stmt st(dbc_);
    std::string text = sql;
    if (!odbc_ok(SQLExecDirect(st.h, reinterpret_cast<SQLCHAR*>(text.data()), SQL_NTS))) fail(st.h, sql);
    SQLSMALLINT ncols = 0;
    if (!odbc_ok(SQLNumResultCols(st.h, &ncols))) fail(st.h, sql);
    Table t;
    for (SQLUSMALLINT c = 1; c <= static_cast<SQLUSMALLINT>(ncols); ++c) {
      SQLCHAR name[256] = {0};
      SQLSMALLINT name_len = 0, type = 0, digits = 0, nullable = 0;
      SQLULEN size = 0;
      if (!odbc_ok(SQLDescribeCol(st.h, c, name, sizeof name, &name_len, &type, &size, &digits, &nullable))) {
        fail(st.h, sql);
      }
      SQLLEN is_unsigned = SQL_FALSE;
      SQLColAttribute(st.h, c, SQL_DESC_UNSIGNED, nullptr, 0, nullptr, &is_unsigned);
      t.columns.push_back(reinterpret_cast<char*>(name));
      t.declared.push_back(odbc_type(type, is_unsigned == SQL_TRUE));
    }
    for (;;) {
      SQLRETURN rc = SQLFetch(st.h);
      if (rc == SQL_NO_DATA) break;
      if (!odbc_ok(rc)) fail(st.h, sql);
      std::vector<Cell> row(t.columns.size());
      for (std::size_t c = 0; c < row.size(); ++c) {
        Cell& cell = row[c];
        const auto col = static_cast<SQLUSMALLINT>(c + 1);
        SQLLEN ind = 0;
        switch (t.declared[c]) {
          case dbmgr::Type::kBool: {
            unsigned char v = 0;
            rc = SQLGetData(st.h, col, SQL_C_BIT, &v, 1, &ind);
            cell.i = v != 0 ? 1 : 0;
            break;
          }
          case dbmgr::Type::kInt64:
            rc = SQLGetData(st.h, col, SQL_C_SBIGINT, &cell.i, sizeof cell.i, &ind);
            break;
          case dbmgr::Type::kDouble:
            rc = SQLGetData(st.h, col, SQL_C_DOUBLE, &cell.d, sizeof cell.d, &ind);
            break;
          default: {
            // In pieces: SQL_C_CHAR pieces end in a terminator, binary ones do not.
            const bool is_text = t.declared[c] != dbmgr::Type::kBlob;
            char buf[8192];
            for (;;) {
              rc = SQLGetData(st.h, col, is_text ? SQL_C_CHAR : SQL_C_BINARY, buf, sizeof buf, &ind);
              if (rc == SQL_NO_DATA) {
                rc = SQL_SUCCESS;
                break;
              }
              if (!odbc_ok(rc) || ind == SQL_NULL_DATA) break;
              const std::size_t room = sizeof buf - (is_text ? 1 : 0);
              const std::size_t got = ind == SQL_NO_TOTAL || static_cast<std::size_t>(ind) > room
                                          ? room
                                          : static_cast<std::size_t>(ind);
              cell.bytes.append(buf, got);
              if (rc == SQL_SUCCESS) break;  // the last piece
            }
            break;
          }
        }
        if (!odbc_ok(rc)) fail(st.h, sql);
        cell.type = ind == SQL_NULL_DATA ? dbmgr::Type::kNull : t.declared[c];
        if (cell.type == dbmgr::Type::kNull) cell = Cell{};
      }
      t.rows.push_back(std::move(row));
    }
    return t;
  }

 private:
  struct Stmt {
    explicit Stmt(SQLHDBC dbc) {
      if (!odbc_ok(SQLAllocHandle(SQL_HANDLE_STMT, dbc, &h))) {
        throw std::runtime_error("ODBC direct: cannot make a statement handle: " + odbc_diag(SQL_HANDLE_DBC, dbc));
      }
    }
    ~Stmt() { SQLFreeHandle(SQL_HANDLE_STMT, h); }
    Stmt(const Stmt&) = delete;
    Stmt& operator=(const Stmt&) = delete;
    SQLHSTMT h = SQL_NULL_HSTMT;
  };

  [[noreturn]] static void fail(SQLHSTMT st, const std::string& sql) {
    throw std::runtime_error("ODBC direct: " + clean(odbc_diag(SQL_HANDLE_STMT, st)) + " (in: " + clean(sql) + ")");
  }

  SQLHENV env_ = SQL_NULL_HENV;
  SQLHDBC dbc_ = SQL_NULL_HDBC;
};

}  // namespace

std::unique_ptr<Direct> open_direct(const Config& cfg) {
  switch (cfg.backend) {
    case Backend::kSqlite: return std::make_unique<SqliteDirect>(cfg.sqlite_path);
    case Backend::kPostgres: return std::make_unique<PgDirect>(cfg.pg);
    case Backend::kMariadb: return std::make_unique<OdbcDirect>(cfg.odbc);
  }
  throw std::logic_error("unknown backend");
}

std::unique_ptr<Direct> open_pg(const PgParams& p) { return std::make_unique<PgDirect>(p); }

std::unique_ptr<Direct> open_odbc(const std::string& connection_string) {
  return std::make_unique<OdbcDirect>(connection_string);
}

std::string odbc_with_database(const std::string& connection_string, const std::string& database) {
  std::string out;
  std::size_t start = 0;
  while (start < connection_string.size()) {
    std::size_t semi = connection_string.find(';', start);
    if (semi == std::string::npos) semi = connection_string.size();
    std::string attr = connection_string.substr(start, semi - start);
    std::string key = attr.substr(0, attr.find('='));
    for (char& c : key) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (!attr.empty() && key != "database" && key != "db") out += attr + ";";
    start = semi + 1;
  }
  return out + "Database={" + database + "};";
}

}  // namespace torture
