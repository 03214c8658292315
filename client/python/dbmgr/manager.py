"""The seed's DatabaseManager in Python, on dbmgrd through the SQLAlchemy dialects
`sqlite+dbmgr` and `postgresql+dbmgr` (docs/python.md, "DatabaseManager").

    from dbmgr import DatabaseManager
    db_manager = DatabaseManager(db_prefix="test", test_connection=True)

    class User(db_manager.Base):
        __tablename__ = "users"
        id = db_manager.pk_column()
        email = Column(String(200), unique=True)

    db_manager.create_all()
    with db_manager.get_db() as db:          # commits on success, rolls back on exception
        db.add(User(email="ann@example.org"))

The database's type, name (with prefix), URI (password masked) and primary-key type come
from dbmgrd, which resolved the engine: client and daemon never disagree. dbmgrd is the pool;
the engine has none of its own (NullPool, see dbmgr.sqlalchemy).
"""

import contextlib
import os
import re
import threading
import urllib.parse
import uuid

import sqlalchemy
from sqlalchemy import Column, String
from sqlalchemy.orm import declarative_base, scoped_session, sessionmaker

from . import dbapi
from . import sqlalchemy as _dialects

_PREFIX_RE = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)*$")

# dbmgrd's type -> the SQLAlchemy dialect that talks to it through dbmgr.
_DIALECTS = {"sqlite": "sqlite+dbmgr", "postgresql": "postgresql+dbmgr",
             "mysql": "mysql+dbmgr", "mariadb": "mysql+dbmgr"}

_registered = []


def _register_dialects():
    if not _registered:
        _dialects.register()
        _registered.append(True)


class _PkColumnType(sqlalchemy.types.UserDefinedType):
    """A text-valued column whose DDL type is the one dbmgrd names (pk_column_type)."""
    cache_ok = True

    def __init__(self, ddl):
        self.ddl = ddl

    def get_col_spec(self, **kw):
        return self.ddl


class DatabaseManager:
    """Owns one database's SQLAlchemy engine and session factory, on dbmgrd.

    `db_prefix`: "test" makes database NAME "test.NAME" (a name that already carries the
    prefix is not prefixed twice; dbmgrd creates prefixed SQLite databases on demand).
    `test_connection`: open and ping a backend connection now; raises if it cannot.
    `socket`: dbmgrd's socket (default $DBMGR_SOCKET, else /run/dbmgr/dbmgrd.sock).
    `database`: the name before prefixing (default: the daemon's DATABASE_NAME).
    `client_name`: shown by `dbmgrctl clients`.
    """

    def __init__(self, db_prefix=None, test_connection=False, *, socket=None, database=None,
                 client_name=None):
        self._socket = socket
        self._database = database
        self._client_name = client_name
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self.engine = None
        self.SessionLocal = None
        self.async_engine = None
        self.AsyncSessionLocal = None
        self._scoped = None
        self._info = None
        self.db_prefix = None
        # This database's own table registry: models of two managers never mix.
        self.Base = declarative_base()
        self.init_engine_config(db_prefix, test_connection)

    # ---- configuration ----

    def init_engine_config(self, db_prefix=None, test_connection=False):
        """Sets the prefix (it replaces the one before: prefixes never nest, "test" twice is
        "test", not "test.test") and builds the engine and session factory for it; the
        engine before is disposed and this thread's session closed. With test_connection,
        runs SELECT 1 through dbmgrd now and raises if it fails."""
        if db_prefix is not None and db_prefix != "" and not _PREFIX_RE.match(db_prefix):
            raise ValueError("db_prefix %r: dot-separated words of [a-z0-9_]" % (db_prefix,))
        prefix = db_prefix or None
        _register_dialects()
        with self._lock:
            old_engine, old_scoped = self.engine, self._scoped
            # The daemon resolves the name (prefix, default database) and says what it is.
            probe = dbapi.connect(socket=self._socket, database=self._database, prefix=prefix,
                                  client_name=self._client_name)
            try:
                info = probe.info()
            finally:
                probe.close()
            dialect = _DIALECTS.get(info["type"])
            if dialect is None:
                raise dbapi.NotSupportedError(
                    "dbmgr: no SQLAlchemy dialect for database type %r yet" % info["type"])
            query = {}
            if self._socket:
                query["socket"] = self._socket
            if prefix:
                query["prefix"] = prefix
            if self._client_name:
                query["client_name"] = self._client_name
            path = ":///" + urllib.parse.quote(self._database or "", safe="")
            if query:
                path += "?" + urllib.parse.urlencode(query)
            engine = sqlalchemy.create_engine(dialect + path, future=True)
            self.engine = engine
            self.SessionLocal = sessionmaker(bind=engine, autoflush=False,
                                             expire_on_commit=False, future=True)
            # The asyncio engine connects on first use only.
            from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
            old_async = self.async_engine
            self.async_engine = create_async_engine(dialect + "_async" + path)
            self.AsyncSessionLocal = sessionmaker(bind=self.async_engine, class_=AsyncSession,
                                                  autoflush=False, expire_on_commit=False)
            self._scoped = scoped_session(self.SessionLocal)
            self._info = info
            self.db_prefix = prefix
        if old_scoped is not None:
            old_scoped.remove()
        if old_engine is not None:
            old_engine.dispose()
            old_async.sync_engine.dispose()
        if test_connection:
            with self.engine.connect() as c:
                c.exec_driver_sql("SELECT 1").scalar()

    def init_worker(self):
        """In a worker process after fork(): forgets the sessions and connections inherited
        from the parent without using them (the parent keeps its own); this process opens
        its own on first use. libdbmgr never writes to a parent's socket either."""
        self._pid = os.getpid()
        if self._scoped is not None:
            self._scoped.registry.clear()  # the parent's thread session: not closed here
        if self.engine is not None:
            self.engine.dispose(close=False)

    # ---- what dbmgrd resolved ----

    @property
    def DATABASE_TYPE(self):
        """"sqlite", "postgresql", "mysql" or "mariadb" (an "mssql" database has no dialect
        here yet: the manager refuses it)."""
        return self._info["type"]

    @property
    def DATABASE_NAME(self):
        """The database's name with its prefix, e.g. "test.app"."""
        return self._info["name"]

    @property
    def DATABASE_URI(self):
        """The database's URI as dbmgrd has it, the password masked as ***."""
        return self._info["uri"]

    @property
    def PK_TYPE(self):
        """"String" (SQLite) or "UUID" (the others)."""
        return self._info["pk_type"]

    def pk_column(self, **kw):
        """A primary-key Column of this database's PK type, new rows getting uuid4(): on
        PostgreSQL a UUID column (uuid.UUID values); on MariaDB/MySQL the column type dbmgrd
        reports (UUID from MariaDB 10.7, else CHAR(36); values as text); on SQLite a
        String(36) holding one."""
        if self.PK_TYPE == "UUID" and self.DATABASE_TYPE == "postgresql":
            from sqlalchemy.dialects.postgresql import UUID
            return Column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4, **kw)
        if self.DATABASE_TYPE in ("mysql", "mariadb"):
            return Column(_PkColumnType(self._info["pk_column_type"]), primary_key=True,
                          default=lambda: str(uuid.uuid4()), **kw)
        return Column(String(36), primary_key=True, default=lambda: str(uuid.uuid4()), **kw)

    def create_all(self):
        """Creates the tables of this manager's Base (each dialect's DDL)."""
        self.Base.metadata.create_all(self.engine)

    def drop_all(self):
        self.Base.metadata.drop_all(self.engine)

    # ---- sessions ----

    @contextlib.contextmanager
    def get_db(self, auto_commit=True):
        """A Session for a `with` block: commits when the block ends (auto_commit), rolls
        back when it raises (and re-raises), closes either way. With auto_commit=False,
        call db.commit() yourself; what is not committed is rolled back at the end. A
        failed commit raises."""
        db = self.SessionLocal()
        try:
            yield db
            if auto_commit:
                db.commit()
        except BaseException:
            db.rollback()
            raise
        finally:
            db.close()

    def get_db_dependency(self):
        """The FastAPI-style dependency: `db: Session = Depends(db_manager.get_db_dependency)`.
        A generator: the request's Session, committed after the endpoint returns, rolled back
        when it raises. It takes no parameters, so no client can set one through the URL."""
        with self.get_db() as db:
            yield db

    @contextlib.asynccontextmanager
    async def get_async_db(self, auto_commit=True):
        """An SQLAlchemy AsyncSession for an `async with` block, with get_db()'s rules:
        committed when the block ends (auto_commit), rolled back when it raises, closed
        either way. Its statements run through postgresql+dbmgr_async or sqlite+dbmgr_async
        (dbmgr.sqlalchemy): the event loop never waits on the daemon."""
        db = self.AsyncSessionLocal()
        try:
            yield db
            if auto_commit:
                await db.commit()
        except BaseException:
            await db.rollback()
            raise
        finally:
            await db.close()

    async def get_async_db_dependency(self):
        """get_async_db() as a FastAPI dependency (an async generator without parameters)."""
        async with self.get_async_db() as db:
            yield db

    def get_session(self):
        """This thread's own Session (the same object on each call in a thread; autocommit
        off, autoflush off, expire_on_commit off). Commit it yourself; cleanup_thread() rolls
        back what is open and closes it."""
        if os.getpid() != self._pid:  # a forked child that did not call init_worker()
            self.init_worker()
        return self._scoped()

    def cleanup_thread(self):
        """Closes this thread's Session (rolling back what is not committed)."""
        self._scoped.remove()

    def dispose(self):
        """Closes this thread's session and disposes the engine."""
        self.cleanup_thread()
        self.engine.dispose()
        self.async_engine.sync_engine.dispose()
