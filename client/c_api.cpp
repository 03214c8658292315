// The C interface (dbmgr/dbmgr.h) over the C++ client: no second protocol implementation.
// Every entry point catches what the C++ code throws and hands it out as a dbmgr_error.
#include "dbmgr/dbmgr.h"

#include <cstring>
#include <exception>
#include <limits>
#include <new>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dbmgr/dbmgr.hpp"

struct dbmgr_error {
  int category;
  bool client_side;
  std::string category_name;
  std::string sqlstate;
  std::string message;
  std::string what;
};

struct dbmgr_manager {
  dbmgr::DatabaseManager m;
  dbmgr::DatabaseInfo info;  // dbmgr_manager_info()'s strings
};

struct dbmgr_session {
  dbmgr::Session s;
};

struct dbmgr_result {
  dbmgr::Result r;
};

namespace {

constexpr std::size_t kNts = std::numeric_limits<std::size_t>::max();

std::string_view text(const char* s, std::size_t len) {
  if (s == nullptr) return {};
  return len == kNts ? std::string_view(s) : std::string_view(s, len);
}

void set_error(dbmgr_error** err, int category, std::string_view name, std::string sqlstate,
               std::string message, std::string what, bool client_side) {
  if (err == nullptr) return;
  *err = nullptr;
  try {
    *err = new dbmgr_error{category, client_side, std::string(name), std::move(sqlstate),
                           std::move(message), std::move(what)};
  } catch (...) {
    *err = nullptr;  // out of memory: the caller still sees -1
  }
}

// The error in flight (called from a catch block) as a dbmgr_error.
int fail(dbmgr_error** err) {
  try {
    throw;
  } catch (const dbmgr::Error& e) {
    set_error(err, static_cast<int>(e.category()), dbmgr::to_string(e.category()), e.sqlstate(),
              e.message(), e.what(), e.client_side());
  } catch (const std::bad_alloc&) {
    set_error(err, DBMGR_E_RESOURCES, "resources", {}, "out of memory",
              "dbmgr resources error: out of memory", true);
  } catch (const std::exception& e) {
    set_error(err, DBMGR_E_INTERNAL, "internal", {}, e.what(),
              std::string("dbmgr internal error: ") + e.what(), true);
  } catch (...) {
    set_error(err, DBMGR_E_INTERNAL, "internal", {}, "unknown exception",
              "dbmgr internal error: unknown exception", true);
  }
  return -1;
}

int invalid(dbmgr_error** err, const char* what) {
  set_error(err, DBMGR_E_INVALID_REQUEST, "invalid_request", {}, what,
            std::string("dbmgr invalid_request error: ") + what, true);
  return -1;
}

// The caller's values as Params that borrow their bytes (no copy of text or blobs).
// The vector is the thread's, reused by every call: no allocation once grown.
const std::vector<dbmgr::Param>& params_of(const dbmgr_value* v, std::size_t n) {
  thread_local std::vector<dbmgr::Param> params;
  params.clear();
  for (std::size_t i = 0; i < n; ++i) {
    const dbmgr_value& x = v[i];
    switch (x.type) {
      case DBMGR_NULL: params.emplace_back(); break;
      case DBMGR_BOOL: params.emplace_back(x.i != 0); break;
      case DBMGR_INT64: params.emplace_back(static_cast<std::int64_t>(x.i)); break;
      case DBMGR_DOUBLE: params.emplace_back(x.d); break;
      case DBMGR_TEXT: params.emplace_back(text(x.bytes, x.len)); break;
      case DBMGR_BLOB:
        params.push_back(dbmgr::Param::blob_view(std::string_view(
            x.bytes == nullptr ? "" : x.bytes, x.bytes == nullptr ? 0 : x.len)));
        break;
      default:
        throw dbmgr::Error::client(dbmgr::ErrorCategory::kInvalidRequest,
                                   "parameter " + std::to_string(i + 1) +
                                       " has an unknown dbmgr_type " +
                                       std::to_string(static_cast<int>(x.type)));
    }
  }
  return params;
}

dbmgr::Access access_of(int access) {
  return access == DBMGR_READ_ONLY ? dbmgr::Access::kReadOnly : dbmgr::Access::kReadWrite;
}

}  // namespace

extern "C" {

const char* dbmgr_version(void) { return DBMGR_VERSION_STRING; }

int dbmgr_error_category(const dbmgr_error* e) { return e != nullptr ? e->category : 0; }
const char* dbmgr_error_category_name(const dbmgr_error* e) {
  return e != nullptr ? e->category_name.c_str() : "";
}
const char* dbmgr_error_sqlstate(const dbmgr_error* e) {
  return e != nullptr ? e->sqlstate.c_str() : "";
}
const char* dbmgr_error_message(const dbmgr_error* e) {
  return e != nullptr ? e->message.c_str() : "";
}
const char* dbmgr_error_what(const dbmgr_error* e) { return e != nullptr ? e->what.c_str() : ""; }
int dbmgr_error_client_side(const dbmgr_error* e) { return e != nullptr && e->client_side; }
void dbmgr_error_free(dbmgr_error* e) { delete e; }

int dbmgr_manager_new(const dbmgr_options* o, dbmgr_manager** out, dbmgr_error** err) {
  if (out == nullptr) return invalid(err, "dbmgr_manager_new: out is NULL");
  *out = nullptr;
  try {
    dbmgr::Options opt;
    if (o != nullptr) {
      if (o->socket_path != nullptr) opt.socket_path = o->socket_path;
      if (o->database != nullptr) opt.database = o->database;
      if (o->db_prefix != nullptr) opt.db_prefix = o->db_prefix;
      if (o->client_name != nullptr) opt.client_name = o->client_name;
      opt.test_connection = o->test_connection != 0;
    }
    *out = new dbmgr_manager{dbmgr::DatabaseManager(std::move(opt)), {}};
    return 0;
  } catch (...) {
    return fail(err);
  }
}

void dbmgr_manager_free(dbmgr_manager* m) { delete m; }

int dbmgr_manager_init_worker(dbmgr_manager* m, dbmgr_error** err) {
  if (m == nullptr) return invalid(err, "dbmgr_manager_init_worker: manager is NULL");
  try {
    m->m.init_worker();
    return 0;
  } catch (...) {
    return fail(err);
  }
}

int dbmgr_manager_ping(dbmgr_manager* m, dbmgr_error** err) {
  if (m == nullptr) return invalid(err, "dbmgr_manager_ping: manager is NULL");
  try {
    m->m.ping();
    return 0;
  } catch (...) {
    return fail(err);
  }
}

int dbmgr_manager_info(dbmgr_manager* m, dbmgr_info* out, dbmgr_error** err) {
  if (m == nullptr || out == nullptr) return invalid(err, "dbmgr_manager_info: NULL argument");
  try {
    m->info = m->m.info();
    out->type = m->info.type.c_str();
    out->name = m->info.name.c_str();
    out->uri = m->info.uri.c_str();
    out->pk_type = m->info.pk_type.c_str();
    out->pk_column_type = m->info.pk_column_type.c_str();
    return 0;
  } catch (...) {
    return fail(err);
  }
}

int dbmgr_execute(dbmgr_manager* m, const char* sql, std::size_t sql_len,
                  const dbmgr_value* params, std::size_t param_count, int access,
                  dbmgr_result** out, dbmgr_error** err) {
  if (out != nullptr) *out = nullptr;
  if (m == nullptr || sql == nullptr) return invalid(err, "dbmgr_execute: NULL argument");
  if (param_count > 0 && params == nullptr) return invalid(err, "dbmgr_execute: params is NULL");
  try {
    dbmgr::Result r = m->m.execute(text(sql, sql_len), params_of(params, param_count),
                                   access_of(access));
    if (out != nullptr) *out = new dbmgr_result{std::move(r)};
    return 0;
  } catch (...) {
    return fail(err);
  }
}

int dbmgr_session_open(dbmgr_manager* m, int access, dbmgr_session** out, dbmgr_error** err) {
  if (out == nullptr) return invalid(err, "dbmgr_session_open: out is NULL");
  *out = nullptr;
  if (m == nullptr) return invalid(err, "dbmgr_session_open: manager is NULL");
  try {
    *out = new dbmgr_session{m->m.get_session(access_of(access))};
    return 0;
  } catch (...) {
    return fail(err);
  }
}

int dbmgr_session_execute(dbmgr_session* s, const char* sql, std::size_t sql_len,
                          const dbmgr_value* params, std::size_t param_count,
                          dbmgr_result** out, dbmgr_error** err) {
  if (out != nullptr) *out = nullptr;
  if (s == nullptr || sql == nullptr) return invalid(err, "dbmgr_session_execute: NULL argument");
  if (param_count > 0 && params == nullptr) {
    return invalid(err, "dbmgr_session_execute: params is NULL");
  }
  try {
    const auto& p = params_of(params, param_count);
    dbmgr::Result r = s->s.execute(text(sql, sql_len), p.data(), p.size());
    if (out != nullptr) *out = new dbmgr_result{std::move(r)};
    return 0;
  } catch (...) {
    return fail(err);
  }
}

int dbmgr_session_commit(dbmgr_session* s, dbmgr_error** err) {
  if (s == nullptr) return invalid(err, "dbmgr_session_commit: session is NULL");
  try {
    s->s.commit();
    return 0;
  } catch (...) {
    return fail(err);
  }
}

int dbmgr_session_rollback(dbmgr_session* s, dbmgr_error** err) {
  if (s == nullptr) return invalid(err, "dbmgr_session_rollback: session is NULL");
  try {
    s->s.rollback();
    return 0;
  } catch (...) {
    return fail(err);
  }
}

int dbmgr_session_in_transaction(const dbmgr_session* s) {
  return s != nullptr && s->s.in_transaction();
}
int dbmgr_session_failed(const dbmgr_session* s) { return s != nullptr && s->s.failed(); }

void dbmgr_session_close(dbmgr_session* s) {
  if (s == nullptr) return;
  s->s.close();
  delete s;
}

std::size_t dbmgr_result_column_count(const dbmgr_result* r) {
  return r != nullptr ? r->r.column_count() : 0;
}
const char* dbmgr_result_column_name(const dbmgr_result* r, std::size_t column) {
  if (r == nullptr || column >= r->r.column_count()) return nullptr;
  return r->r.columns()[column].c_str();
}
dbmgr_type dbmgr_result_column_type(const dbmgr_result* r, std::size_t column) {
  if (r == nullptr || column >= r->r.column_count()) return DBMGR_NULL;
  return static_cast<dbmgr_type>(r->r.declared_type(column));
}
std::size_t dbmgr_result_row_count(const dbmgr_result* r) { return r != nullptr ? r->r.size() : 0; }
std::int64_t dbmgr_result_affected_rows(const dbmgr_result* r) {
  return r != nullptr ? r->r.affected_rows() : -1;
}
std::int64_t dbmgr_result_last_insert_id(const dbmgr_result* r) {
  return r != nullptr ? r->r.last_insert_id() : 0;
}

int dbmgr_result_value(const dbmgr_result* r, std::size_t row, std::size_t column,
                       dbmgr_value* out) {
  if (out == nullptr) return -1;
  *out = dbmgr_value{DBMGR_NULL, 0, 0, nullptr, 0};
  if (r == nullptr || row >= r->r.size() || column >= r->r.column_count()) return -1;
  const dbmgr::Row x = r->r[row];
  switch (x.type(column)) {
    case dbmgr::Type::kNull: break;
    case dbmgr::Type::kBool:
      out->type = DBMGR_BOOL;
      out->i = x.get<bool>(column) ? 1 : 0;
      break;
    case dbmgr::Type::kInt64:
      out->type = DBMGR_INT64;
      out->i = x.get<std::int64_t>(column);
      break;
    case dbmgr::Type::kDouble:
      out->type = DBMGR_DOUBLE;
      out->d = x.get<double>(column);
      break;
    case dbmgr::Type::kText:
    case dbmgr::Type::kBlob: {
      const bool is_text = x.type(column) == dbmgr::Type::kText;
      const std::string_view b = x.get<std::string_view>(column);  // text or blob, not copied
      out->type = is_text ? DBMGR_TEXT : DBMGR_BLOB;
      out->bytes = b.data();
      out->len = b.size();
      break;
    }
  }
  return 0;
}

void dbmgr_result_free(dbmgr_result* r) { delete r; }

}  // extern "C"
