"""SQLAlchemy dialects on the dbmgr driver: `sqlite+dbmgr://` and `postgresql+dbmgr://`.

Each subclasses SQLAlchemy's own dialect for the database and changes the driver only: the
DB-API module is `dbmgr`, the paramstyle qmark (dbmgrd rewrites `?` to `$n` for PostgreSQL).
The URL names the database and, in its query, the socket and prefix:

    sqlite+dbmgr:///app?prefix=test&socket=/run/dbmgr/dbmgrd.sock
    postgresql+dbmgr:///dbmgr_test?socket=/run/dbmgr/dbmgrd.sock

Host, port, user and password in the URL are ignored: dbmgrd holds the credentials.
Registration: `register()` below (tests), or the entry points of a packaged install.
Works with SQLAlchemy 1.4 (`dbapi()`) and 2.x (`import_dbapi()`). First version: values come
back as dbmgr's types (dates, times, NUMERIC and UUID as text; see docs/python.md).
"""

from sqlalchemy import pool
from sqlalchemy.dialects.postgresql.base import PGDialect
from sqlalchemy.dialects.sqlite.base import SQLiteDialect


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


class PGDialect_dbmgr(_DbmgrDialect, PGDialect):
    supports_statement_cache = True


def register():
    """Registers both dialects with SQLAlchemy (for tests and scripts)."""
    from sqlalchemy.dialects import registry
    registry.register("sqlite.dbmgr", "dbmgr.sqlalchemy", "SQLiteDialect_dbmgr")
    registry.register("postgresql.dbmgr", "dbmgr.sqlalchemy", "PGDialect_dbmgr")
