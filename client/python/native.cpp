// dbmgr._native: the Python driver's per-statement path in C (docs/python.md, "Binding").
//
// It calls libdbmgr's C interface (<dbmgr/dbmgr.h>) and nothing else: no second protocol
// implementation. ctypes (dbmgr/_capi.py) stays the binding for everything that runs once
// per connection (managers, sessions, errors, info) and the fallback for this module: the
// package works without it, only slower. What moves here is what runs per statement and
// per cell, where ctypes paid about a microsecond per call and per argument conversion:
//   execute   one statement (a session's, or a one-shot on a manager) with its parameters
//             converted from a tuple without a Python-level loop; the GIL is released
//             around the library call, as ctypes does
//   rows/row  cells to Python objects, one list of tuples per call
//   describe  PEP 249's description
//   commit / rollback / free
// Handles travel as Python ints (the addresses ctypes holds). A failed call returns the
// dbmgr_error's address as an int; dbmgr/dbapi.py turns it into the PEP 249 exception.
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "dbmgr/dbmgr.h"

namespace {

// Values of up to this many parameters live on the stack; more take one heap vector.
constexpr Py_ssize_t kInlineParams = 16;

void* as_handle(PyObject* o) {
  void* p = PyLong_AsVoidPtr(o);
  if (p == nullptr && !PyErr_Occurred()) {
    PyErr_SetString(PyExc_ValueError, "dbmgr._native: null handle");
  }
  return p;
}

// The result of a successful execute: (result, columns, rows, affected, last_id).
PyObject* result_tuple(dbmgr_result* r) {
  std::size_t ncols = dbmgr_result_column_count(r);
  std::size_t nrows = ncols ? dbmgr_result_row_count(r) : 0;
  std::int64_t affected = ncols ? static_cast<std::int64_t>(nrows) : dbmgr_result_affected_rows(r);
  std::int64_t last_id = dbmgr_result_last_insert_id(r);
  PyObject* t = Py_BuildValue("(NnnLL)", PyLong_FromVoidPtr(r), static_cast<Py_ssize_t>(ncols),
                              static_cast<Py_ssize_t>(nrows), static_cast<long long>(affected),
                              static_cast<long long>(last_id));
  if (t == nullptr) dbmgr_result_free(r);
  return t;
}

// Sets v from p. Types the driver converts in Python (dates, Decimal, UUID, bytearray,
// integers outside int64, anything unknown) go through adapt(index, value), which returns
// str or bytes or raises; its result is kept alive in `keep` until the call returns.
bool bind_one(PyObject* p, Py_ssize_t k, PyObject* adapt, dbmgr_value& v,
              std::vector<PyObject*>& keep) {
  v = dbmgr_value{DBMGR_NULL, 0, 0.0, nullptr, 0};
  if (p == Py_None) return true;
  if (PyBool_Check(p)) {
    v.type = DBMGR_BOOL;
    v.i = p == Py_True ? 1 : 0;
    return true;
  }
  if (PyLong_Check(p)) {
    int overflow = 0;
    long long x = PyLong_AsLongLongAndOverflow(p, &overflow);
    if (overflow == 0) {
      if (x == -1 && PyErr_Occurred()) return false;
      v.type = DBMGR_INT64;
      v.i = x;
      return true;
    }
  } else if (PyFloat_Check(p)) {
    v.type = DBMGR_DOUBLE;
    v.d = PyFloat_AS_DOUBLE(p);
    return true;
  } else if (PyUnicode_Check(p)) {
    Py_ssize_t n = 0;
    const char* s = PyUnicode_AsUTF8AndSize(p, &n);  // cached in the str, which the tuple holds
    if (s == nullptr) return false;
    v.type = DBMGR_TEXT;
    v.bytes = s;
    v.len = static_cast<std::size_t>(n);
    return true;
  } else if (PyBytes_Check(p)) {
    v.type = DBMGR_BLOB;
    v.bytes = PyBytes_AS_STRING(p);
    v.len = static_cast<std::size_t>(PyBytes_GET_SIZE(p));
    return true;
  }
  keep.push_back(nullptr);  // room first: a failed push_back must not leak the result
  PyObject* a = PyObject_CallFunction(adapt, "nO", k, p);
  if (a == nullptr) return false;
  keep.back() = a;
  if (PyUnicode_Check(a)) {
    Py_ssize_t n = 0;
    const char* s = PyUnicode_AsUTF8AndSize(a, &n);
    if (s == nullptr) return false;
    v.type = DBMGR_TEXT;
    v.bytes = s;
    v.len = static_cast<std::size_t>(n);
    return true;
  }
  if (PyBytes_Check(a)) {
    v.type = DBMGR_BLOB;
    v.bytes = PyBytes_AS_STRING(a);
    v.len = static_cast<std::size_t>(PyBytes_GET_SIZE(a));
    return true;
  }
  PyErr_Format(PyExc_TypeError, "dbmgr: the parameter adapter returned %s, not str or bytes",
               Py_TYPE(a)->tp_name);
  return false;
}

struct Keep {
  std::vector<PyObject*> objs;
  ~Keep() {
    for (PyObject* o : objs) Py_XDECREF(o);
  }
};

// execute(session, manager, access, sql, params, adapt)
//   session != 0: dbmgr_session_execute on it; else a one-shot dbmgr_execute on manager.
PyObject* py_execute(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 6) {
    PyErr_SetString(PyExc_TypeError, "execute(session, manager, access, sql, params, adapt)");
    return nullptr;
  }
  void* session = PyLong_AsVoidPtr(args[0]);
  if (session == nullptr && PyErr_Occurred()) return nullptr;
  void* manager = nullptr;
  if (session == nullptr) {
    manager = as_handle(args[1]);
    if (manager == nullptr) return nullptr;
  }
  int access = PyLong_AsLong(args[2]) != 0 ? DBMGR_READ_ONLY : DBMGR_READ_WRITE;
  if (PyErr_Occurred()) return nullptr;
  if (!PyUnicode_Check(args[3])) {
    PyErr_SetString(PyExc_TypeError, "sql must be a str");
    return nullptr;
  }
  Py_ssize_t sql_len = 0;
  const char* sql = PyUnicode_AsUTF8AndSize(args[3], &sql_len);
  if (sql == nullptr) return nullptr;
  PyObject* params = args[4];
  if (!PyTuple_Check(params)) {
    PyErr_SetString(PyExc_TypeError, "params must be a tuple");
    return nullptr;
  }
  Py_ssize_t n = PyTuple_GET_SIZE(params);
  dbmgr_value inline_values[kInlineParams];
  std::vector<dbmgr_value> heap_values;
  dbmgr_value* values = inline_values;
  Keep keep;
  try {
    if (n > kInlineParams) {
      heap_values.resize(static_cast<std::size_t>(n));
      values = heap_values.data();
    }
    for (Py_ssize_t k = 0; k < n; ++k) {
      if (!bind_one(PyTuple_GET_ITEM(params, k), k, args[5], values[k], keep.objs)) return nullptr;
    }
  } catch (const std::bad_alloc&) {
    return PyErr_NoMemory();
  }
  dbmgr_result* out = nullptr;
  dbmgr_error* err = nullptr;
  int rc;
  Py_BEGIN_ALLOW_THREADS
  if (session != nullptr) {
    rc = dbmgr_session_execute(static_cast<dbmgr_session*>(session), sql,
                               static_cast<std::size_t>(sql_len), n ? values : nullptr,
                               static_cast<std::size_t>(n), &out, &err);
  } else {
    rc = dbmgr_execute(static_cast<dbmgr_manager*>(manager), sql,
                       static_cast<std::size_t>(sql_len), n ? values : nullptr,
                       static_cast<std::size_t>(n), access, &out, &err);
  }
  Py_END_ALLOW_THREADS
  if (rc != 0) {
    if (err == nullptr) return PyErr_NoMemory();  // the library could not allocate the error
    return PyLong_FromVoidPtr(err);
  }
  return result_tuple(out);
}

PyObject* cell(const dbmgr_value& v) {
  switch (v.type) {
    case DBMGR_INT64:
      return PyLong_FromLongLong(v.i);
    case DBMGR_TEXT:
      return PyUnicode_DecodeUTF8(v.bytes, static_cast<Py_ssize_t>(v.len), nullptr);
    case DBMGR_NULL:
      Py_RETURN_NONE;
    case DBMGR_DOUBLE:
      return PyFloat_FromDouble(v.d);
    case DBMGR_BLOB:
      return PyBytes_FromStringAndSize(v.bytes, static_cast<Py_ssize_t>(v.len));
    case DBMGR_BOOL:
      return PyBool_FromLong(v.i != 0);
    default:
      PyErr_Format(PyExc_RuntimeError, "unknown dbmgr value type %d", v.type);
      return nullptr;
  }
}

PyObject* make_row(const dbmgr_result* r, std::size_t row, Py_ssize_t ncols) {
  PyObject* t = PyTuple_New(ncols);
  if (t == nullptr) return nullptr;
  dbmgr_value v;
  for (Py_ssize_t c = 0; c < ncols; ++c) {
    if (dbmgr_result_value(r, row, static_cast<std::size_t>(c), &v) != 0) {
      Py_DECREF(t);
      PyErr_SetString(PyExc_IndexError, "dbmgr: cell out of range");
      return nullptr;
    }
    PyObject* o = cell(v);
    if (o == nullptr) {
      Py_DECREF(t);
      return nullptr;
    }
    PyTuple_SET_ITEM(t, c, o);
  }
  return t;
}

// rows(result, start, stop, ncols) -> [tuple, ...]
PyObject* py_rows(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 4) {
    PyErr_SetString(PyExc_TypeError, "rows(result, start, stop, ncols)");
    return nullptr;
  }
  auto* r = static_cast<const dbmgr_result*>(as_handle(args[0]));
  if (r == nullptr) return nullptr;
  Py_ssize_t start = PyLong_AsSsize_t(args[1]);
  Py_ssize_t stop = PyLong_AsSsize_t(args[2]);
  Py_ssize_t ncols = PyLong_AsSsize_t(args[3]);
  if (PyErr_Occurred()) return nullptr;
  if (start < 0 || stop < start || ncols < 0 ||
      static_cast<std::size_t>(stop) > dbmgr_result_row_count(r) ||
      static_cast<std::size_t>(ncols) != dbmgr_result_column_count(r)) {
    PyErr_SetString(PyExc_ValueError, "dbmgr: bad row range");
    return nullptr;
  }
  PyObject* list = PyList_New(stop - start);
  if (list == nullptr) return nullptr;
  for (Py_ssize_t i = start; i < stop; ++i) {
    PyObject* t = make_row(r, static_cast<std::size_t>(i), ncols);
    if (t == nullptr) {
      Py_DECREF(list);
      return nullptr;
    }
    PyList_SET_ITEM(list, i - start, t);
  }
  return list;
}

// row(result, index, ncols) -> tuple
PyObject* py_row(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 3) {
    PyErr_SetString(PyExc_TypeError, "row(result, index, ncols)");
    return nullptr;
  }
  auto* r = static_cast<const dbmgr_result*>(as_handle(args[0]));
  if (r == nullptr) return nullptr;
  Py_ssize_t i = PyLong_AsSsize_t(args[1]);
  Py_ssize_t ncols = PyLong_AsSsize_t(args[2]);
  if (PyErr_Occurred()) return nullptr;
  if (i < 0 || ncols < 0 || static_cast<std::size_t>(i) >= dbmgr_result_row_count(r) ||
      static_cast<std::size_t>(ncols) != dbmgr_result_column_count(r)) {
    PyErr_SetString(PyExc_ValueError, "dbmgr: bad row index");
    return nullptr;
  }
  return make_row(r, static_cast<std::size_t>(i), ncols);
}

// describe(result, ncols) -> ((name, type_code, None, None, None, None, None), ...)
PyObject* py_describe(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 2) {
    PyErr_SetString(PyExc_TypeError, "describe(result, ncols)");
    return nullptr;
  }
  auto* r = static_cast<const dbmgr_result*>(as_handle(args[0]));
  if (r == nullptr) return nullptr;
  Py_ssize_t ncols = PyLong_AsSsize_t(args[1]);
  if (PyErr_Occurred()) return nullptr;
  if (ncols < 0) ncols = 0;
  PyObject* out = PyTuple_New(ncols);
  if (out == nullptr) return nullptr;
  for (Py_ssize_t c = 0; c < ncols; ++c) {
    const char* name = dbmgr_result_column_name(r, static_cast<std::size_t>(c));
    PyObject* n = PyUnicode_DecodeUTF8(name ? name : "", name ? static_cast<Py_ssize_t>(std::strlen(name)) : 0,
                                       "replace");
    if (n == nullptr) {
      Py_DECREF(out);
      return nullptr;
    }
    PyObject* d = Py_BuildValue("(NiOOOOO)", n,
                                static_cast<int>(dbmgr_result_column_type(r, static_cast<std::size_t>(c))),
                                Py_None, Py_None, Py_None, Py_None, Py_None);
    if (d == nullptr) {
      Py_DECREF(out);
      return nullptr;
    }
    PyTuple_SET_ITEM(out, c, d);
  }
  return out;
}

PyObject* py_free(PyObject*, PyObject* arg) {
  void* p = PyLong_AsVoidPtr(arg);
  if (p == nullptr && PyErr_Occurred()) return nullptr;
  dbmgr_result_free(static_cast<dbmgr_result*>(p));
  Py_RETURN_NONE;
}

// commit(session) / rollback(session) -> 0, or the dbmgr_error's address
PyObject* end(PyObject* arg, bool commit) {
  auto* s = static_cast<dbmgr_session*>(as_handle(arg));
  if (s == nullptr) return nullptr;
  dbmgr_error* err = nullptr;
  int rc;
  Py_BEGIN_ALLOW_THREADS
  rc = commit ? dbmgr_session_commit(s, &err) : dbmgr_session_rollback(s, &err);
  Py_END_ALLOW_THREADS
  if (rc == 0) return PyLong_FromLong(0);
  if (err == nullptr) return PyErr_NoMemory();
  return PyLong_FromVoidPtr(err);
}

PyObject* py_commit(PyObject*, PyObject* arg) { return end(arg, true); }
PyObject* py_rollback(PyObject*, PyObject* arg) { return end(arg, false); }

PyObject* py_version(PyObject*, PyObject*) { return PyUnicode_FromString(dbmgr_version()); }

PyMethodDef methods[] = {
    {"execute", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(py_execute)),
     METH_FASTCALL, "execute(session, manager, access, sql, params, adapt)"},
    {"rows", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(py_rows)), METH_FASTCALL,
     "rows(result, start, stop, ncols) -> list of tuples"},
    {"row", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(py_row)), METH_FASTCALL,
     "row(result, index, ncols) -> tuple"},
    {"describe", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(py_describe)),
     METH_FASTCALL, "describe(result, ncols) -> PEP 249 description"},
    {"free", py_free, METH_O, "free(result)"},
    {"commit", py_commit, METH_O, "commit(session) -> 0 or an error handle"},
    {"rollback", py_rollback, METH_O, "rollback(session) -> 0 or an error handle"},
    {"version", py_version, METH_NOARGS, "the linked libdbmgr's version"},
    {nullptr, nullptr, 0, nullptr},
};

PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    "dbmgr._native",
    "The dbmgr driver's per-statement path over libdbmgr's C interface.",
    -1,
    methods,
    nullptr,
    nullptr,
    nullptr,
    nullptr,
};

}  // namespace

PyMODINIT_FUNC PyInit__native(void) { return PyModule_Create(&module); }
