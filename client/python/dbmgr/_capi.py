"""Binding of libdbmgr's C interface (<dbmgr/dbmgr.h>, libdbmgr(3)).

Two layers (docs/python.md, "Binding"):
  - ctypes, from the standard library, for everything: it needs no compiler, and it
    releases the GIL around every C call. Its cost is about a microsecond per call and
    per argument, so a statement through it costs several microseconds of Python.
  - `native`, the extension module dbmgr._native (client/python/native.cpp, built and
    installed by meson beside the package), for what runs per statement and per cell:
    execute with its parameters, rows, description, commit, rollback, free. When it is
    missing (or DBMGR_NATIVE=0), `native` is None and the driver runs on ctypes alone.

Where the shared library comes from (first hit wins):
  1. $DBMGR_LIBRARY, a path to libdbmgr.so.0 (the tests set it to the build tree's);
  2. when this package is imported from a source tree (client/python/dbmgr), that
     tree's build/client/libdbmgr.so.0, then build-test/client/libdbmgr.so.0;
  3. the system's: "libdbmgr.so.0" through the dynamic loader (ctypes.util.find_library
     is tried when that fails).
"""

import ctypes
import ctypes.util
import os
import threading

# dbmgr_type
NULL, BOOL, INT64, DOUBLE, TEXT, BLOB = 0, 1, 2, 3, 4, 5

READ_WRITE, READ_ONLY = 0, 1


class Value(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("i", ctypes.c_int64),
        ("d", ctypes.c_double),
        ("bytes", ctypes.c_void_p),
        ("len", ctypes.c_size_t),
    ]


class Options(ctypes.Structure):
    _fields_ = [
        ("socket_path", ctypes.c_char_p),
        ("database", ctypes.c_char_p),
        ("db_prefix", ctypes.c_char_p),
        ("client_name", ctypes.c_char_p),
        ("test_connection", ctypes.c_int),
    ]


class Info(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_char_p),
        ("name", ctypes.c_char_p),
        ("uri", ctypes.c_char_p),
        ("pk_type", ctypes.c_char_p),
        ("pk_column_type", ctypes.c_char_p),
    ]


def _candidates(environ=os.environ, root=None):
    """The names to try, in order, and whether the first was asked for explicitly."""
    env = environ.get("DBMGR_LIBRARY")
    if env:
        return [env], True
    out = []
    if root is None:
        here = os.path.dirname(os.path.abspath(__file__))
        root = os.path.normpath(os.path.join(here, "..", "..", ".."))
    if os.path.isfile(os.path.join(root, "client", "include", "dbmgr", "dbmgr.h")):
        for build in ("build", "build-test"):
            p = os.path.join(root, build, "client", "libdbmgr.so.0")
            if os.path.exists(p):
                out.append(p)
    out.append("libdbmgr.so.0")
    found = ctypes.util.find_library("dbmgr")
    if found:
        out.append(found)
    return out, False


def _load():
    names, explicit = _candidates()
    errors = []
    for name in names:
        try:
            return ctypes.CDLL(name), name
        except OSError as e:
            errors.append("%s: %s" % (name, e))
            if explicit:
                break
    raise ImportError("dbmgr: cannot load libdbmgr.so.0 (set DBMGR_LIBRARY): " + "; ".join(errors))


lib, library_path = _load()


def _load_native():
    """dbmgr._native, or None: the installed one beside this package, else one built next
    to the library that was loaded (a build tree's client/ folder)."""
    if os.environ.get("DBMGR_NATIVE", "1") == "0":
        return None
    try:
        from . import _native
        return _native
    except ImportError:
        pass
    folder = os.path.dirname(library_path)
    if not folder:
        return None
    import glob
    import importlib.machinery
    import importlib.util
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        for path in sorted(glob.glob(os.path.join(glob.escape(folder), "_native" + suffix))):
            spec = importlib.util.spec_from_file_location(__package__ + "._native", path)
            mod = importlib.util.module_from_spec(spec)
            try:
                spec.loader.exec_module(mod)
            except ImportError:  # built for another Python or library: run on ctypes
                return None
            return mod
    return None


native = _load_native()

_P = ctypes.c_void_p
_PP = ctypes.POINTER(ctypes.c_void_p)


def _sig(name, restype, *argtypes):
    f = getattr(lib, name)
    f.restype = restype
    f.argtypes = list(argtypes)
    return f


version = _sig("dbmgr_version", ctypes.c_char_p)
error_category = _sig("dbmgr_error_category", ctypes.c_int, _P)
error_category_name = _sig("dbmgr_error_category_name", ctypes.c_char_p, _P)
error_sqlstate = _sig("dbmgr_error_sqlstate", ctypes.c_char_p, _P)
error_message = _sig("dbmgr_error_message", ctypes.c_char_p, _P)
error_what = _sig("dbmgr_error_what", ctypes.c_char_p, _P)
error_client_side = _sig("dbmgr_error_client_side", ctypes.c_int, _P)
error_free = _sig("dbmgr_error_free", None, _P)

manager_new = _sig("dbmgr_manager_new", ctypes.c_int, ctypes.POINTER(Options), _PP, _PP)
manager_free = _sig("dbmgr_manager_free", None, _P)
manager_init_worker = _sig("dbmgr_manager_init_worker", ctypes.c_int, _P, _PP)
manager_ping = _sig("dbmgr_manager_ping", ctypes.c_int, _P, _PP)
manager_info = _sig("dbmgr_manager_info", ctypes.c_int, _P, ctypes.POINTER(Info), _PP)
execute = _sig("dbmgr_execute", ctypes.c_int, _P, ctypes.c_char_p, ctypes.c_size_t,
               ctypes.POINTER(Value), ctypes.c_size_t, ctypes.c_int, _PP, _PP)

session_open = _sig("dbmgr_session_open", ctypes.c_int, _P, ctypes.c_int, _PP, _PP)
session_execute = _sig("dbmgr_session_execute", ctypes.c_int, _P, ctypes.c_char_p, ctypes.c_size_t,
                       ctypes.POINTER(Value), ctypes.c_size_t, _PP, _PP)
session_commit = _sig("dbmgr_session_commit", ctypes.c_int, _P, _PP)
session_rollback = _sig("dbmgr_session_rollback", ctypes.c_int, _P, _PP)
session_in_transaction = _sig("dbmgr_session_in_transaction", ctypes.c_int, _P)
session_failed = _sig("dbmgr_session_failed", ctypes.c_int, _P)
session_close = _sig("dbmgr_session_close", None, _P)

result_column_count = _sig("dbmgr_result_column_count", ctypes.c_size_t, _P)
result_column_name = _sig("dbmgr_result_column_name", ctypes.c_char_p, _P, ctypes.c_size_t)
result_column_type = _sig("dbmgr_result_column_type", ctypes.c_int, _P, ctypes.c_size_t)
result_row_count = _sig("dbmgr_result_row_count", ctypes.c_size_t, _P)
result_affected_rows = _sig("dbmgr_result_affected_rows", ctypes.c_int64, _P)
result_last_insert_id = _sig("dbmgr_result_last_insert_id", ctypes.c_int64, _P)
result_value = _sig("dbmgr_result_value", ctypes.c_int, _P, ctypes.c_size_t, ctypes.c_size_t,
                    ctypes.POINTER(Value))
result_free = _sig("dbmgr_result_free", None, _P)


class CError(Exception):
    """A dbmgr_error copied out of C (the handle is freed at once)."""

    def __init__(self, category, category_name, sqlstate, message, what, client_side):
        super().__init__(what)
        self.category = category
        self.category_name = category_name
        self.sqlstate = sqlstate
        self.message = message
        self.client_side = client_side


def take_error(err):
    """Copies and frees *err (a c_void_p); returns a CError."""
    e = err.value
    try:
        def s(f):
            v = f(e)
            return v.decode("utf-8", "replace") if v else ""
        return CError(error_category(e), s(error_category_name), s(error_sqlstate),
                      s(error_message), s(error_what), bool(error_client_side(e)))
    finally:
        error_free(e)


# Managers are shared per (socket, database, prefix, client name) within a process: a
# manager is thread-safe and owns the daemon connections, so connect() costs no new
# handshake each time. After fork() every manager forgets its parent's connections.
_managers = {}
_managers_lock = threading.Lock()


def manager(socket_path, database, prefix, client_name):
    # The library reads $DBMGR_SOCKET when no socket is given: so does the key, so that a
    # changed environment does not reuse a manager of another daemon.
    key = (socket_path or os.environ.get("DBMGR_SOCKET") or None, database, prefix, client_name)
    with _managers_lock:
        m = _managers.get(key)
        if m is not None:
            return m
        enc = lambda s: s.encode("utf-8") if s else None  # noqa: E731
        opt = Options(enc(socket_path), enc(database), enc(prefix), enc(client_name), 0)
        out = ctypes.c_void_p()
        err = ctypes.c_void_p()
        if manager_new(ctypes.byref(opt), ctypes.byref(out), ctypes.byref(err)) != 0:
            raise take_error(err)
        _managers[key] = out
        return out


def _after_fork_in_child():
    for m in _managers.values():
        err = ctypes.c_void_p()
        if manager_init_worker(m, ctypes.byref(err)) != 0:
            error_free(err.value)


os.register_at_fork(after_in_child=_after_fork_in_child)
