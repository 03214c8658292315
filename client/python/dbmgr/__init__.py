"""dbmgr: Python client of dbmgrd, the database connection-pooling daemon.

`dbmgr` is a PEP 249 (DB-API 2.0) driver over libdbmgr's C interface (ctypes); see
docs/python.md. Quick start:

    import dbmgr
    with dbmgr.connect(database="app", prefix="test") as conn:   # commits on success
        cur = conn.cursor()
        cur.execute("INSERT INTO users (id, name) VALUES (?, ?)", (1, "ann"))

`dbmgr.DatabaseManager` (SQLAlchemy on top) is the seed's manager: dbmgr.manager.
"""

from .dbapi import (  # noqa: F401
    BINARY, DATETIME, NUMBER, ROWID, STRING, Binary, Connection, Cursor, DatabaseError,
    DataError, Date, DateFromTicks, Error, IntegrityError, InterfaceError, InternalError,
    NotSupportedError, OperationalError, ProgrammingError, Time, TimeFromTicks, Timestamp,
    TimestampFromTicks, Warning, apilevel, connect, paramstyle, threadsafety)
from . import _capi

__version__ = _capi.version().decode()
library_path = _capi.library_path


def __getattr__(name):
    # DatabaseManager needs SQLAlchemy; the DB-API driver alone does not.
    if name == "DatabaseManager":
        from .manager import DatabaseManager
        return DatabaseManager
    raise AttributeError("module 'dbmgr' has no attribute %r" % name)
