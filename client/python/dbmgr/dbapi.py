"""dbmgr's PEP 249 (DB-API 2.0) driver on libdbmgr's C interface (docs/python.md).

A Connection is one dbmgr session, a server-side transaction handle: the first execute
begins the transaction, commit() or rollback() ends it, close() rolls back what is open.
With `autocommit = True` each execute is a one-shot (its own transaction, one round trip).
A Connection (and its cursors) is for one thread at a time; the module may be shared by
threads (threadsafety 1). Results are read whole by the library; a cursor converts rows
to Python lazily, as they are fetched.
"""

import ctypes
import datetime
import decimal
import time as _time
import uuid

from . import _capi

apilevel = "2.0"
threadsafety = 1
paramstyle = "qmark"

_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1


# ---- exceptions (PEP 249) ----

class Warning(Exception):  # noqa: A001 (the name is PEP 249's)
    pass


class Error(Exception):
    """Base of the driver's errors. `category` is dbmgr's category name ("constraint"),
    `category_code` its number, `sqlstate` (also `pgcode`) the backend's SQLSTATE or None,
    `message` the daemon's words; str() is the full line."""

    def __init__(self, message, category=None, sqlstate=None, category_code=None,
                 client_side=False):
        super().__init__(message)
        self.message = message
        self.category = category
        self.category_code = category_code
        self.sqlstate = sqlstate or None
        self.client_side = client_side

    @property
    def pgcode(self):
        return self.sqlstate


class InterfaceError(Error):
    pass


class DatabaseError(Error):
    pass


class DataError(DatabaseError):
    pass


class OperationalError(DatabaseError):
    pass


class IntegrityError(DatabaseError):
    pass


class InternalError(DatabaseError):
    pass


class ProgrammingError(DatabaseError):
    pass


class NotSupportedError(DatabaseError):
    pass


# dbmgr category -> exception class (docs/python.md explains the choices).
_CATEGORY_CLASS = {
    "connection": OperationalError,
    "timeout": OperationalError,
    "pool_exhausted": OperationalError,
    "constraint": IntegrityError,
    "syntax": ProgrammingError,
    "permission": ProgrammingError,
    "protocol": InternalError,
    "internal": InternalError,
    "cancelled": OperationalError,
    "killed": OperationalError,
    "not_found": ProgrammingError,
    "invalid_request": ProgrammingError,
    "data": DataError,
    "shutting_down": OperationalError,
    "busy": OperationalError,
    "read_only": OperationalError,
    "transaction": OperationalError,
    "serialization": OperationalError,
    "resources": OperationalError,
    "io": OperationalError,
    "unsupported": NotSupportedError,
}


def _raise_from(ce):
    cls = _CATEGORY_CLASS.get(ce.category_name, DatabaseError)
    raise cls(str(ce), category=ce.category_name, sqlstate=ce.sqlstate,
              category_code=ce.category, client_side=ce.client_side) from None


# ---- types (PEP 249) ----

class _TypeObject:
    def __init__(self, name, *codes):
        self.name = name
        self.codes = frozenset(codes)

    def __eq__(self, other):
        if isinstance(other, _TypeObject):
            return self is other
        return other in self.codes

    def __ne__(self, other):
        return not self == other

    def __hash__(self):
        return hash(self.name)

    def __repr__(self):
        return "dbmgr.%s" % self.name


# type_code in Cursor.description is the column's dbmgr_type number (0 when the backend
# declares none: SQLite expressions, NULL columns).
STRING = _TypeObject("STRING", _capi.TEXT)
BINARY = _TypeObject("BINARY", _capi.BLOB)
NUMBER = _TypeObject("NUMBER", _capi.INT64, _capi.DOUBLE, _capi.BOOL)
DATETIME = _TypeObject("DATETIME")  # dbmgr carries dates and times as text: STRING
ROWID = _TypeObject("ROWID", _capi.INT64)

Date = datetime.date
Time = datetime.time
Timestamp = datetime.datetime
Binary = bytes


def DateFromTicks(ticks):
    return Date(*_time.localtime(ticks)[:3])


def TimeFromTicks(ticks):
    return Time(*_time.localtime(ticks)[3:6])


def TimestampFromTicks(ticks):
    return Timestamp(*_time.localtime(ticks)[:6])


def _adapt(k, p):
    """A parameter that is not None, bool, int in int64, float, str or bytes, as the str
    (or bytes) dbmgr sends; raises for what cannot be sent. k counts from 0."""
    if isinstance(p, int):
        raise DataError("parameter %d: integer %d out of the int64 range" % (k + 1, p),
                        category="data", sqlstate="22003", client_side=True)
    if isinstance(p, (bytearray, memoryview)):
        return bytes(p)
    if isinstance(p, datetime.datetime):
        return p.isoformat(sep=" ")
    if isinstance(p, (datetime.date, datetime.time)):
        return p.isoformat()
    if isinstance(p, decimal.Decimal):
        if not p.is_finite():
            raise DataError("parameter %d: %s is not a finite Decimal" % (k + 1, p),
                            category="data", client_side=True)
        return format(p, "f")
    if isinstance(p, uuid.UUID):
        return str(p)
    raise ProgrammingError("parameter %d: cannot send a %s" % (k + 1, type(p).__name__),
                           category="invalid_request", client_side=True)


_native = _capi.native


def _bind(params):
    """Python parameters -> (ctypes array of dbmgr_value, list keeping the bytes alive):
    the ctypes path, without dbmgr._native."""
    n = len(params)
    arr = (_capi.Value * n)()
    keep = []
    for k, p in enumerate(params):
        v = arr[k]
        if p is None:
            v.type = _capi.NULL
            continue
        if isinstance(p, bool):
            v.type = _capi.BOOL
            v.i = 1 if p else 0
            continue
        if isinstance(p, int) and _INT64_MIN <= p <= _INT64_MAX:
            v.type = _capi.INT64
            v.i = p
            continue
        if isinstance(p, float):
            v.type = _capi.DOUBLE
            v.d = p
            continue
        a = p if isinstance(p, (str, bytes)) else _adapt(k, p)
        if isinstance(a, bytes):
            b = a
            v.type = _capi.BLOB
        else:
            b = a.encode("utf-8")
            v.type = _capi.TEXT
        buf = ctypes.create_string_buffer(b, len(b)) if b else None
        keep.append(buf)
        v.bytes = ctypes.addressof(buf) if buf is not None else None
        v.len = len(b)
    return arr, keep


class _Result:
    """Owns a dbmgr_result (its address, an int); converts its cells to Python on demand."""

    __slots__ = ("handle", "ncols", "nrows", "affected", "last_id", "_description")

    def __init__(self, handle, ncols, nrows, affected, last_id):
        self.handle = handle
        self.ncols = ncols
        self.nrows = nrows
        self.affected = affected
        self.last_id = last_id
        self._description = None

    @classmethod
    def from_ctypes(cls, handle):
        # One C call per number this statement's kind needs (ctypes calls are the driver's
        # cost per statement): rows for a result, affected rows for the others.
        r = handle
        ncols = _capi.result_column_count(r)
        if ncols:
            nrows = _capi.result_row_count(r)
            affected = nrows
        else:
            nrows = 0
            affected = _capi.result_affected_rows(r)
        return cls(handle, ncols, nrows, affected, _capi.result_last_insert_id(r))

    def description(self):
        """PEP 249's description, built on first use."""
        if self._description is None and self.ncols and self.handle:
            r = self.handle
            if _native is not None:
                self._description = _native.describe(r, self.ncols)
            else:
                self._description = tuple(
                    ((_capi.result_column_name(r, c) or b"").decode("utf-8", "replace"),
                     _capi.result_column_type(r, c), None, None, None, None, None)
                    for c in range(self.ncols))
        return self._description

    def rows(self, start, stop):
        if _native is not None:
            return _native.rows(self.handle, start, stop, self.ncols)
        r = self.handle
        value = _capi.Value()
        ref = ctypes.byref(value)
        get = _capi.result_value
        at = ctypes.string_at
        out = []
        for row in range(start, stop):
            cells = []
            for c in range(self.ncols):
                get(r, row, c, ref)
                t = value.type
                if t == _capi.INT64:
                    cells.append(value.i)
                elif t == _capi.TEXT:
                    cells.append(at(value.bytes, value.len).decode("utf-8") if value.len else "")
                elif t == _capi.NULL:
                    cells.append(None)
                elif t == _capi.DOUBLE:
                    cells.append(value.d)
                elif t == _capi.BLOB:
                    cells.append(at(value.bytes, value.len) if value.len else b"")
                elif t == _capi.BOOL:
                    cells.append(bool(value.i))
                else:
                    raise InternalError("unknown dbmgr value type %d" % t, category="internal")
            out.append(tuple(cells))
        return out

    def row(self, i):
        if _native is not None:
            return _native.row(self.handle, i, self.ncols)
        return self.rows(i, i + 1)[0]

    def free(self):
        if self.handle:
            if _native is not None:
                _native.free(self.handle)
            else:
                _capi.result_free(self.handle)
            self.handle = None


def connect(socket=None, database=None, prefix=None, read_only=False, autocommit=False,
            client_name=None):
    """Opens a Connection to dbmgrd: `socket` (default $DBMGR_SOCKET, else
    /run/dbmgr/dbmgrd.sock), `database` (default: the daemon's), `prefix` ("test" makes
    "test.NAME"), `read_only` (every statement runs read-only), `autocommit` (each
    execute is a one-shot), `client_name` (shown by dbmgrctl)."""
    return Connection(socket, database, prefix, read_only, autocommit, client_name)


class Connection:
    Warning = Warning
    Error = Error
    InterfaceError = InterfaceError
    DatabaseError = DatabaseError
    DataError = DataError
    OperationalError = OperationalError
    IntegrityError = IntegrityError
    InternalError = InternalError
    ProgrammingError = ProgrammingError
    NotSupportedError = NotSupportedError

    def __init__(self, socket, database, prefix, read_only, autocommit, client_name):
        try:
            self._manager = _capi.manager(socket, database, prefix, client_name)
        except _capi.CError as ce:
            _raise_from(ce)
        self._access = _capi.READ_ONLY if read_only else _capi.READ_WRITE
        self.read_only = bool(read_only)
        self._autocommit = bool(autocommit)
        self._session = None
        self._closed = False
        # A ping reaches the daemon (one round trip): no daemon is an OperationalError
        # here, not at the first execute.
        err = ctypes.c_void_p()
        if _capi.manager_ping(self._manager, ctypes.byref(err)) != 0:
            _raise_from(_capi.take_error(err))
        self._open_session()

    def _open_session(self):
        out = ctypes.c_void_p()
        err = ctypes.c_void_p()
        if _capi.session_open(self._manager, self._access, ctypes.byref(out),
                              ctypes.byref(err)) != 0:
            _raise_from(_capi.take_error(err))
        self._session = out

    def _check(self):
        if self._closed:
            raise InterfaceError("connection is closed", client_side=True)

    @property
    def closed(self):
        return self._closed

    @property
    def autocommit(self):
        return self._autocommit

    @autocommit.setter
    def autocommit(self, on):
        self._check()
        on = bool(on)
        if on and self.in_transaction:
            raise ProgrammingError("autocommit: a transaction is open; commit or rollback first",
                                   category="transaction", client_side=True)
        self._autocommit = on

    @property
    def in_transaction(self):
        return (not self._closed and self._session is not None
                and bool(_capi.session_in_transaction(self._session)))

    def info(self):
        """The database as dbmgrd resolved it: a dict with type, name (with prefix),
        uri (password masked), pk_type and pk_column_type."""
        self._check()
        info = _capi.Info()
        err = ctypes.c_void_p()
        if _capi.manager_info(self._manager, ctypes.byref(info), ctypes.byref(err)) != 0:
            _raise_from(_capi.take_error(err))
        return {f: (getattr(info, f) or b"").decode("utf-8") for f, _ in _capi.Info._fields_}

    def _run(self, sql, params):
        if _native is not None:
            if not isinstance(sql, str):
                raise ProgrammingError("sql must be a str", client_side=True)
            r = _native.execute(0 if self._autocommit else self._session.value,
                                self._manager.value, self._access, sql, params, _adapt)
            if type(r) is int:
                _raise_from(_capi.take_error(ctypes.c_void_p(r)))
            return _Result(*r)
        if isinstance(sql, str):
            sql_b = sql.encode("utf-8")
        else:
            raise ProgrammingError("sql must be a str", client_side=True)
        if params:
            arr, keep = _bind(params)
        else:
            arr, keep = None, None
        out = ctypes.c_void_p()
        err = ctypes.c_void_p()
        if self._autocommit:
            rc = _capi.execute(self._manager, sql_b, len(sql_b), arr, len(params), self._access,
                               ctypes.byref(out), ctypes.byref(err))
        else:
            rc = _capi.session_execute(self._session, sql_b, len(sql_b), arr, len(params),
                                       ctypes.byref(out), ctypes.byref(err))
        del keep
        if rc != 0:
            _raise_from(_capi.take_error(err))
        return _Result.from_ctypes(out.value)

    def commit(self):
        self._check()
        if _native is not None:
            e = _native.commit(self._session.value)
            if e:
                _raise_from(_capi.take_error(ctypes.c_void_p(e)))
            return
        err = ctypes.c_void_p()
        if _capi.session_commit(self._session, ctypes.byref(err)) != 0:
            _raise_from(_capi.take_error(err))

    def rollback(self):
        self._check()
        if _native is not None:
            e = _native.rollback(self._session.value)
            if e:
                _raise_from(_capi.take_error(ctypes.c_void_p(e)))
            return
        err = ctypes.c_void_p()
        if _capi.session_rollback(self._session, ctypes.byref(err)) != 0:
            _raise_from(_capi.take_error(err))

    def close(self):
        """Rolls back what is open and ends the session; closing twice is harmless."""
        if self._closed:
            return
        self._closed = True
        if self._session is not None:
            _capi.session_close(self._session)
            self._session = None

    def cursor(self):
        self._check()
        return Cursor(self)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        # As sqlite3 and psycopg: commit on success, rollback on an exception; then close.
        try:
            if not self._closed:
                if exc_type is None:
                    self.commit()
                else:
                    self.rollback()
        finally:
            self.close()
        return False

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass


class Cursor:
    def __init__(self, connection):
        self.connection = connection
        self.arraysize = 1
        self._result = None
        self._pos = 0
        self._closed = False
        self._described = None  # the result whose description this cursor reports
        self.rowcount = -1
        self.lastrowid = None

    @property
    def description(self):
        d = self._described
        return None if d is None else d.description()

    def _check(self):
        if self._closed:
            raise InterfaceError("cursor is closed", client_side=True)
        self.connection._check()

    def _drop(self):
        if self._result is not None:
            self._result.free()
            self._result = None
            self._described = None

    def execute(self, operation, parameters=()):
        self._check()
        self._drop()
        self._described = None
        self.rowcount = -1
        self.lastrowid = None
        if parameters is None:
            parameters = ()
        elif isinstance(parameters, (str, bytes, dict)):
            raise ProgrammingError("parameters must be a sequence (paramstyle qmark)",
                                   client_side=True)
        res = self.connection._run(operation, tuple(parameters))
        self._pos = 0
        if res.ncols:
            self._result = res
            self._described = res  # its description is built when asked for
            self.rowcount = res.nrows
        else:
            self.rowcount = res.affected
            res.free()
        self.lastrowid = res.last_id if res.last_id > 0 else None
        return self

    def executemany(self, operation, seq_of_parameters):
        """Runs operation once per parameter sequence; rowcount is the sum of the
        affected rows (-1 if the backend did not tell for one of them)."""
        self._check()
        total = 0
        unknown = False
        for params in seq_of_parameters:
            self.execute(operation, params)
            if self.rowcount < 0:
                unknown = True
            else:
                total += self.rowcount
        self._drop()
        self._described = None
        self.rowcount = -1 if unknown else total
        return self

    def _need_result(self):
        self._check()
        if self._result is None:
            raise ProgrammingError("no result to fetch (the last statement returned no rows)",
                                   client_side=True)

    def fetchone(self):
        self._need_result()
        r = self._result
        if self._pos >= r.nrows:
            return None
        row = r.row(self._pos)
        self._pos += 1
        return row

    def fetchmany(self, size=None):
        self._need_result()
        if size is None:
            size = self.arraysize
        r = self._result
        stop = min(r.nrows, self._pos + max(0, size))
        rows = r.rows(self._pos, stop)
        self._pos = stop
        return rows

    def fetchall(self):
        self._need_result()
        r = self._result
        rows = r.rows(self._pos, r.nrows)
        self._pos = r.nrows
        return rows

    def __iter__(self):
        return self

    def __next__(self):
        row = self.fetchone()
        if row is None:
            raise StopIteration
        return row

    def setinputsizes(self, sizes):
        pass

    def setoutputsize(self, size, column=None):
        pass

    def close(self):
        self._drop()
        self._closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __del__(self):
        try:
            self._drop()
        except Exception:
            pass
