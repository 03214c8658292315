"""SQLAlchemy dialects on the dbmgr driver: `sqlite+dbmgr://`, `postgresql+dbmgr://` and
`mysql+dbmgr://` (also `mariadb+dbmgr://`).

Each subclasses SQLAlchemy's own dialect for the database and changes the driver only: the
DB-API module is `dbmgr`, the paramstyle qmark (dbmgrd rewrites `?` to `$n` for PostgreSQL).
The URL names the database and, in its query, the socket and prefix:

    sqlite+dbmgr:///app?prefix=test&socket=/run/dbmgr/dbmgrd.sock
    postgresql+dbmgr:///dbmgr_test?socket=/run/dbmgr/dbmgrd.sock

Host, port, user and password in the URL are ignored: dbmgrd holds the credentials.
Registration: `register()` below (tests), or the entry points of a packaged install.
Works with SQLAlchemy 1.4 (`dbapi()`) and 2.x (`import_dbapi()`).

dbmgr carries dates, times, NUMERIC, UUID and arrays from PostgreSQL as text
(docs/protocol.md); the PostgreSQL dialect turns them into datetime, date, time, Decimal and
lists where the column's SQLAlchemy type says so, as SQLite's own dialect does for SQLite's
text dates. Raw DB-API results stay text (docs/python.md).
"""

import datetime
import decimal

from sqlalchemy import pool
from sqlalchemy import types as sqltypes
from sqlalchemy.dialects.mysql import base as _mysql
from sqlalchemy.dialects.postgresql import ARRAY as PGARRAY
from sqlalchemy.dialects.postgresql.base import PGCompiler, PGDialect
from sqlalchemy.dialects.sqlite.base import SQLiteDialect
from sqlalchemy.sql import elements, operators


def _connect_args(url):
    q = dict(url.query)
    kw = {}
    if url.database:
        kw["database"] = url.database
    for k in ("socket", "prefix", "client_name"):
        if k in q:
            kw[k] = q[k]
    if "read_only" in q:
        kw["read_only"] = q["read_only"].lower() in ("1", "true", "yes", "on")
    return [], kw


class _DbmgrDialect:
    driver = "dbmgr"

    @classmethod
    def load_provisioning(cls):
        # SQLAlchemy's own test suite (tests/sqlalchemy): dbmgr.provision.
        import dbmgr.provision  # noqa: F401

    default_paramstyle = "qmark"
    supports_statement_cache = True
    supports_native_decimal = False

    @classmethod
    def import_dbapi(cls):
        import dbmgr
        return dbmgr

    @classmethod
    def dbapi(cls):  # SQLAlchemy 1.4
        return cls.import_dbapi()

    @classmethod
    def get_pool_class(cls, url):
        # dbmgrd is the pool. A DB-API connection is a dbmgr session, which holds no
        # backend connection between transactions, and connect() shares the process's
        # manager (no new socket): NullPool opens one per checkout and closes it after.
        return pool.NullPool

    def create_connect_args(self, url):
        return _connect_args(url)

    def is_disconnect(self, e, connection, cursor):
        import dbmgr
        return isinstance(e, dbmgr.Error) and e.category in ("connection", "shutting_down")


class _SQLiteDBAPI:
    """The dbmgr module plus the `sqlite_version_info` SQLite's dialect reads before it
    connects: the host's libsqlite3 (dbmgrd runs on this host, with Debian's library);
    the server's own is read at first connect (_get_server_version_info)."""

    def __init__(self, module):
        import sqlite3
        self._module = module
        self.sqlite_version_info = sqlite3.sqlite_version_info

    def __getattr__(self, name):
        return getattr(self._module, name)


class SQLiteDialect_dbmgr(_DbmgrDialect, SQLiteDialect):
    supports_statement_cache = True  # SQLAlchemy reads it from each class's own __dict__
    @classmethod
    def import_dbapi(cls):
        import dbmgr
        return _SQLiteDBAPI(dbmgr)

    def _get_server_version_info(self, connection):
        v = connection.exec_driver_sql("SELECT sqlite_version()").scalar()
        return tuple(int(x) for x in v.split("."))

    def get_isolation_level(self, dbapi_connection):
        # dbmgrd runs SQLite transactions serializable (one writer; BEGIN IMMEDIATE).
        return "SERIALIZABLE"

    def set_isolation_level(self, dbapi_connection, level):
        if level != "SERIALIZABLE":
            raise NotImplementedError("dbmgr: SQLite sessions are SERIALIZABLE")


def _from_text(parse, what):
    """A result processor: a text value parsed by `parse`, anything else as it came."""
    def process(value):
        if not isinstance(value, str):
            return value
        try:
            return parse(value)
        except ValueError:
            import dbmgr
            raise dbmgr.DataError("dbmgr: %r is not a %s Python can hold" % (value, what))
    return process


class _PGDate(sqltypes.Date):
    def result_processor(self, dialect, coltype):
        return _from_text(datetime.date.fromisoformat, "date")


class _PGDateTime(sqltypes.DateTime):
    # PostgreSQL's ISO output ("2012-10-15 12:57:18.000396", "+05:30" for timestamptz) is
    # what datetime.fromisoformat reads (Python 3.11).
    def result_processor(self, dialect, coltype):
        return _from_text(datetime.datetime.fromisoformat, "timestamp")


class _PGTime(sqltypes.Time):
    def result_processor(self, dialect, coltype):
        return _from_text(datetime.time.fromisoformat, "time")


class _PGNumeric(sqltypes.Numeric):
    # Decimal parameters go to the driver as they are (it sends their digits); NUMERIC comes
    # back as text: Decimal, or float where the type asks for floats.
    def bind_processor(self, dialect):
        return None

    def result_processor(self, dialect, coltype):
        if self.asdecimal:
            def process(value):
                if value is None or isinstance(value, decimal.Decimal):
                    return value
                if isinstance(value, float):
                    return decimal.Decimal(repr(value))
                return decimal.Decimal(value)
        else:
            def process(value):
                return None if value is None else float(value)
        return process


class _PGFloat(_PGNumeric, sqltypes.Float):
    pass


def _parse_pg_array(text):
    """PostgreSQL's text form of an array ({1,2}, {"a b",NULL}, {{1,2},{3,4}}, [0:1]={1,2})
    as nested lists of str and None (an unquoted NULL; a quoted "NULL" is the text)."""
    if text.startswith("["):  # explicit bounds
        text = text[text.index("=") + 1:]
    if not text.startswith("{"):
        raise ValueError("not an array: %r" % text[:40])

    def parse(i):
        out = []
        i += 1
        if text[i] == "}":
            return out, i + 1
        while True:
            c = text[i]
            if c == "{":
                v, i = parse(i)
            elif c == '"':
                i += 1
                buf = []
                while text[i] != '"':
                    if text[i] == "\\":
                        i += 1
                    buf.append(text[i])
                    i += 1
                i += 1
                v = "".join(buf)
            else:
                j = i
                while text[j] not in ",}":
                    j += 1
                raw = text[i:j].strip()
                i = j
                v = None if raw.upper() == "NULL" else raw
            out.append(v)
            if text[i] == ",":
                i += 1
            elif text[i] == "}":
                return out, i + 1
            else:
                raise ValueError("bad array text at %d" % i)

    value, end = parse(0)
    if text[end:].strip():
        raise ValueError("text after the array")
    return value


def _has_elements(v):
    return any(_has_elements(x) if isinstance(x, (list, tuple)) else True for x in v)


def _array_literal(value, item):
    """A Python list (nested for more dimensions) as PostgreSQL's array text, every element
    quoted: the server reads it with the column's element type."""
    if value is None:
        return "NULL"
    if isinstance(value, (list, tuple)):
        if all(isinstance(v, (list, tuple)) and not _has_elements(v) for v in value):
            return "{}"  # PostgreSQL has no {{},{}}: an array without elements is {}
        return "{" + ",".join(_array_literal(v, item) for v in value) + "}"
    if item is not None:
        value = item(value)
    if isinstance(value, bool):
        s = "t" if value else "f"
    elif isinstance(value, datetime.datetime):
        s = value.isoformat(sep=" ")
    elif isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError("dbmgr: arrays of bytes are not supported")
    else:
        s = str(value)
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


class _PGArray(PGARRAY):
    # dbmgr carries an array as its text: parsed here, each element converted as the
    # element type says; a list parameter goes as array text (the server casts it).
    def bind_processor(self, dialect):
        item = self.item_type.dialect_impl(dialect).bind_processor(dialect)

        def process(value):
            return None if value is None else _array_literal(list(value), item)
        return process

    def result_processor(self, dialect, coltype):
        impl = self.item_type.dialect_impl(dialect)
        proc = impl.result_processor(dialect, coltype)
        aff = self.item_type._type_affinity
        if aff is not None and issubclass(aff, sqltypes.Boolean):
            base = lambda v: v == "t"  # noqa: E731
        elif aff is not None and issubclass(aff, sqltypes.Integer):
            base = int
        else:
            base = None
        container = tuple if self.as_tuple else list

        def conv(v):
            if base is not None:
                v = base(v)
            return proc(v) if proc is not None else v

        def walk(v):
            if isinstance(v, list):
                return container(walk(x) for x in v)
            return None if v is None else conv(v)

        def process(value):
            if value is None:
                return None
            if isinstance(value, str):
                try:
                    value = _parse_pg_array(value)
                except (ValueError, IndexError):
                    import dbmgr
                    raise dbmgr.DataError("dbmgr: %r is not an array" % value[:80])
            return walk(value)
        return process


class PGCompiler_dbmgr(PGCompiler):
    def visit_binary(self, binary, override_operator=None, **kw):
        # dbmgrd binds parameters on the server: a parameter that is only tested for NULL
        # (`? IS NULL`) has no type the server could infer ("could not determine data type of
        # parameter $1"), where psycopg2 would have inlined it. Such a parameter is cast to
        # its SQLAlchemy type; for a NULL test the cast changes nothing else.
        if (binary.operator in (operators.is_, operators.is_not)
                and isinstance(binary.left, elements.BindParameter)
                and not binary.left.expanding
                and not isinstance(binary.left.type, sqltypes.NullType)):
            binary = binary._clone()
            binary.left = elements.Cast(binary.left, binary.left.type)
        return super().visit_binary(binary, override_operator=override_operator, **kw)


class PGDialect_dbmgr(_DbmgrDialect, PGDialect):
    supports_statement_cache = True
    statement_compiler = PGCompiler_dbmgr
    supports_native_decimal = True
    colspecs = dict(PGDialect.colspecs)
    colspecs.update({
        sqltypes.Date: _PGDate,
        sqltypes.DateTime: _PGDateTime,
        sqltypes.Time: _PGTime,
        sqltypes.Numeric: _PGNumeric,
        sqltypes.Float: _PGFloat,
        sqltypes.ARRAY: _PGArray,
        PGARRAY: _PGArray,
    })


# ---- MySQL / MariaDB: mysql+dbmgr, mariadb+dbmgr ----


class _MyTime(_mysql.TIME):
    # MariaDB TIME comes as text "12:57:18[.ffffff]" (pymysql gives a timedelta).
    def result_processor(self, dialect, coltype):
        return _from_text(datetime.time.fromisoformat, "time of day")


def _mysql_zero_date(parse):
    """A parser that reads MariaDB's zero date ("0000-00-00", allowed by some sql_modes) as
    None, as pymysql does."""
    def p(v):
        return None if v.startswith("0000-00-00") else parse(v)
    return p


class _MyDate(sqltypes.Date):
    def result_processor(self, dialect, coltype):
        return _from_text(_mysql_zero_date(datetime.date.fromisoformat), "date")


class _MyDateTime(sqltypes.DateTime):
    def result_processor(self, dialect, coltype):
        return _from_text(_mysql_zero_date(datetime.datetime.fromisoformat), "datetime")


class _MyNumeric(_mysql.NUMERIC):
    bind_processor = _PGNumeric.bind_processor
    result_processor = _PGNumeric.result_processor


class _MyFloat(_mysql.FLOAT):
    bind_processor = _PGNumeric.bind_processor
    result_processor = _PGNumeric.result_processor


class _MyExecutionContext(_mysql.MySQLExecutionContext):
    def get_lastrowid(self):
        # dbmgrd does not report MariaDB's generated id (its ODBC driver does not expose it);
        # the session's transaction runs on one server connection, so LAST_INSERT_ID() there
        # is this INSERT's. One more round trip, for inserts that need the id only.
        rid = self.cursor.lastrowid
        if rid:
            return rid
        if getattr(self._dbapi_connection, "_autocommit", False):
            # Each statement of an autocommit connection may run on another server
            # connection: LAST_INSERT_ID() there would be another insert's.
            import dbmgr
            raise dbmgr.NotSupportedError(
                "dbmgr: a generated MariaDB id cannot be read back on an autocommit "
                "connection; insert in a transaction (autocommit off, the default)")
        cur = self._dbapi_connection.cursor()
        try:
            cur.execute("SELECT LAST_INSERT_ID()")
            return cur.fetchone()[0]
        finally:
            cur.close()


class MySQLDialect_dbmgr(_DbmgrDialect, _mysql.MySQLDialect):
    """MySQL and MariaDB through a dbmgrd whose DATABASE_TYPE is mysql or mariadb (the
    MariaDB ODBC driver behind it). SQLAlchemy's MySQL dialect with the dbmgr driver;
    values come as docs/protocol.md says (DECIMAL, dates and times as text)."""
    supports_statement_cache = True
    supports_native_decimal = True
    supports_server_side_cursors = False
    supports_sane_multi_rowcount = True  # executemany's rowcount is the sum of its rows
    execution_ctx_cls = _MyExecutionContext
    colspecs = dict(_mysql.MySQLDialect.colspecs)
    colspecs.update({
        sqltypes.Date: _MyDate,
        sqltypes.DateTime: _MyDateTime,
        sqltypes.Time: _MyTime,
        sqltypes.Numeric: _MyNumeric,
        sqltypes.Float: _MyFloat,
    })

    # SQLSTATE -> the server's error number, for the few SQLAlchemy's MySQL dialect
    # reads (1146: no such table, in reflection). dbmgr's errors carry SQLSTATE, not the
    # number; a disconnect is told by category (_DbmgrDialect.is_disconnect).
    _CODES = {"42S02": 1146}

    def _extract_error_code(self, exception):
        return self._CODES.get(getattr(exception, "sqlstate", None))

    def _detect_charset(self, connection):
        return "utf8mb4"  # dbmgr's text is UTF-8 (the daemon's Unicode ODBC driver)

    # get_isolation_level: MySQLDialect's own (it asks the server; dbmgrd sets none).

    def set_isolation_level(self, dbapi_connection, level):
        # A session's isolation would outlive its transaction on the pooled server connection.
        raise NotImplementedError("dbmgr: the isolation level is the MariaDB server's")


# ---- asyncio: sqlite+dbmgr_async, postgresql+dbmgr_async, mysql+dbmgr_async ----
#
# SQLAlchemy's asyncio layer runs a dialect's blocking DB-API calls inside greenlets and needs
# each call that waits to be awaitable (sqlalchemy.util.concurrency.await_only). These adapters
# run each dbmgr call that talks to the daemon (connect, execute, commit, rollback, close) on
# the connection's own worker thread, as aiosqlite does for sqlite3, so the event loop never
# blocks; fetches read rows the call already received and stay on the loop's thread. A thread
# per connection, not a shared pool: on SQLite a session waiting for the one writer blocks its
# thread, and the session holding the writer must still get a thread to commit (a bounded pool
# of them all waiting would starve it). The C interface has no asynchronous calls yet; when it
# does, one thread for all (docs/python.md).


def _run_in_thread(executor, fn, *args):
    import asyncio
    return asyncio.get_running_loop().run_in_executor(executor, fn, *args)


class _AsyncCursor:
    server_side = False

    def __init__(self, adapt):
        self._adapt = adapt
        self._cursor = adapt._connection.cursor()
        self.await_ = adapt.await_

    description = property(lambda self: self._cursor.description)
    rowcount = property(lambda self: self._cursor.rowcount)
    lastrowid = property(lambda self: self._cursor.lastrowid)

    @property
    def arraysize(self):
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value):
        self._cursor.arraysize = value

    def execute(self, operation, parameters=None):
        args = (operation,) if parameters is None else (operation, parameters)
        return self.await_(_run_in_thread(self._adapt._thread, self._cursor.execute, *args))

    def executemany(self, operation, seq_of_parameters):
        return self.await_(_run_in_thread(self._adapt._thread, self._cursor.executemany,
                                          operation, list(seq_of_parameters)))

    def setinputsizes(self, *inputsizes):
        pass

    def __iter__(self):
        return iter(self._cursor)

    def fetchone(self):
        return self._cursor.fetchone()

    def fetchmany(self, size=None):
        return self._cursor.fetchmany() if size is None else self._cursor.fetchmany(size)

    def fetchall(self):
        return self._cursor.fetchall()

    def close(self):
        self._cursor.close()


def _adapted_connection_base():
    from sqlalchemy.engine import AdaptedConnection
    return AdaptedConnection


def _await_only(awaitable):
    from sqlalchemy.util.concurrency import await_only
    return await_only(awaitable)


def _await_fallback(awaitable):
    from sqlalchemy.util.concurrency import await_fallback
    return await_fallback(awaitable)


class _AsyncConnection(_adapted_connection_base()):
    await_ = staticmethod(_await_only)

    def __init__(self, dbapi, connection, thread):
        self.dbapi = dbapi
        self._connection = connection
        self._thread = thread  # a ThreadPoolExecutor of one worker: this connection's

    def cursor(self, server_side=False):
        return _AsyncCursor(self)

    def commit(self):
        self.await_(_run_in_thread(self._thread, self._connection.commit))

    def rollback(self):
        self.await_(_run_in_thread(self._thread, self._connection.rollback))

    def close(self):
        try:
            self.await_(_run_in_thread(self._thread, self._connection.close))
        finally:
            self._thread.shutdown(wait=False)

    def info(self):
        return self.await_(_run_in_thread(self._thread, self._connection.info))


class _AsyncFallbackConnection(_AsyncConnection):
    await_ = staticmethod(_await_fallback)


class _AsyncDBAPI:
    """The dbmgr module for SQLAlchemy's asyncio layer: its names, with connect() awaited."""

    def __init__(self, module):
        self._module = module

    def __getattr__(self, name):
        return getattr(self._module, name)

    def connect(self, *args, **kw):
        from sqlalchemy import util
        fallback = util.asbool(kw.pop("async_fallback", False))
        cls = _AsyncFallbackConnection if fallback else _AsyncConnection
        import concurrent.futures
        thread = concurrent.futures.ThreadPoolExecutor(max_workers=1,
                                                       thread_name_prefix="dbmgr-async")
        try:
            conn = cls.await_(_run_in_thread(thread, lambda: self._module.connect(*args, **kw)))
        except BaseException:
            thread.shutdown(wait=False)
            raise
        return cls(self, conn, thread)


class _DbmgrAsyncDialect:
    driver = "dbmgr_async"
    is_async = True
    supports_statement_cache = True
    # No terminate(): SQLAlchemy 1.4 would first try an awaited rollback outside any event
    # loop and log its failure. A connection dropped unclosed is closed by the driver itself
    # when collected (its session rolls back), and SQLAlchemy warns about it.

    def get_driver_connection(self, connection):
        return connection._connection


class SQLiteDialect_dbmgr_async(_DbmgrAsyncDialect, SQLiteDialect_dbmgr):
    supports_statement_cache = True

    @classmethod
    def import_dbapi(cls):
        import dbmgr
        return _AsyncDBAPI(_SQLiteDBAPI(dbmgr))


class PGDialect_dbmgr_async(_DbmgrAsyncDialect, PGDialect_dbmgr):
    supports_statement_cache = True

    @classmethod
    def import_dbapi(cls):
        import dbmgr
        return _AsyncDBAPI(dbmgr)


class MySQLDialect_dbmgr_async(_DbmgrAsyncDialect, MySQLDialect_dbmgr):
    supports_statement_cache = True

    @classmethod
    def import_dbapi(cls):
        import dbmgr
        return _AsyncDBAPI(dbmgr)


def register():
    """Registers the dialects with SQLAlchemy (for tests and scripts; an installed package
    registers them through its entry points)."""
    from sqlalchemy.dialects import registry
    registry.register("sqlite.dbmgr", "dbmgr.sqlalchemy", "SQLiteDialect_dbmgr")
    registry.register("postgresql.dbmgr", "dbmgr.sqlalchemy", "PGDialect_dbmgr")
    registry.register("mysql.dbmgr", "dbmgr.sqlalchemy", "MySQLDialect_dbmgr")
    registry.register("mariadb.dbmgr", "dbmgr.sqlalchemy", "MySQLDialect_dbmgr")
    registry.register("sqlite.dbmgr_async", "dbmgr.sqlalchemy", "SQLiteDialect_dbmgr_async")
    registry.register("postgresql.dbmgr_async", "dbmgr.sqlalchemy", "PGDialect_dbmgr_async")
    registry.register("mysql.dbmgr_async", "dbmgr.sqlalchemy", "MySQLDialect_dbmgr_async")
    registry.register("mariadb.dbmgr_async", "dbmgr.sqlalchemy", "MySQLDialect_dbmgr_async")
