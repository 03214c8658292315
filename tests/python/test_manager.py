"""The seed's DatabaseManager in Python (dbmgr.manager) through a real dbmgrd, on SQLite and
on the test PostgreSQL (issue 15): the context manager and the FastAPI dependency beside
failures, a waiter on the same writer, threads and fork; what the daemon resolved."""

import os
import threading
import uuid

import pytest
import sqlalchemy
from sqlalchemy import Column, Integer, String, select, func
from sqlalchemy.orm import Session

import dbmgr
from dbmgr import DatabaseManager

_n = [0]


def _manager(daemon, **kw):
    """A manager on the test daemon: SQLite "test.<unique>", created on demand; PostgreSQL
    the test database (no prefix: a prefixed name would be another database)."""
    if daemon.engine == "sqlite":
        _n[0] += 1
        kw.setdefault("database", "mgr_%d_%d" % (os.getpid(), _n[0]))
        kw.setdefault("db_prefix", "test")
    return DatabaseManager(socket=daemon.socket, **kw)


def _model(m, table):
    class User(m.Base):
        __tablename__ = table
        id = m.pk_column()
        email = Column(String(200), nullable=False, unique=True)
        n = Column(Integer, default=0)
    m.create_all()
    return User


@pytest.fixture
def users(daemon, table):
    """A manager on the test daemon and its User model on a table of its own; afterwards,
    also when the test fails, the table is dropped and the manager disposed."""
    m = _manager(daemon)
    User = _model(m, table)
    yield m, User
    m.drop_all()
    m.dispose()


def _emails(m, User):
    """What the database holds, read through a fresh session (the oracle)."""
    with m.get_db() as db:
        return sorted(u.email for u in db.scalars(select(User)))


def test_seed_quick_start(daemon, table):
    # The quick start's steps on both engines (test_doc_examples_run runs the snippet as
    # written, on SQLite).
    db_manager = _manager(daemon, test_connection=True)

    class User(db_manager.Base):
        __tablename__ = table
        id = db_manager.pk_column()
        email = Column(String(200), unique=True)

    db_manager.create_all()
    with db_manager.get_db() as db:          # commits on success, rolls back on exception
        db.add(User(email="ann@example.org"))
    with db_manager.get_db() as db:
        (u,) = db.scalars(select(User)).all()
        assert u.email == "ann@example.org"
        if db_manager.PK_TYPE == "UUID":
            assert isinstance(u.id, uuid.UUID)
        else:
            assert str(uuid.UUID(u.id)) == u.id
    db_manager.drop_all()
    db_manager.dispose()


def test_what_the_daemon_resolved(daemon):
    m = _manager(daemon)
    info = m.engine.dialect.name
    assert m.DATABASE_TYPE == daemon.engine == info
    if daemon.engine == "sqlite":
        assert m.DATABASE_NAME == "test." + m.engine.url.database
        assert m.PK_TYPE == "String"
        assert m.DATABASE_URI.startswith("sqlite:///")
    else:
        assert m.DATABASE_NAME == os.environ["DBMGR_TEST_PG_DB"]
        assert m.PK_TYPE == "UUID"
        assert os.environ["DBMGR_TEST_PG_PASSWORD"] not in m.DATABASE_URI
        assert "***" in m.DATABASE_URI
    # The session factory's settings: autoflush off, expire_on_commit off.
    s = m.SessionLocal()
    assert s.autoflush is False and s.expire_on_commit is False
    s.close()
    m.dispose()


def test_get_db_commits_rolls_back_and_never_swallows(users):
    m, User = users
    with m.get_db() as db:
        db.add(User(email="a"))
    with pytest.raises(RuntimeError):
        with m.get_db() as db:
            db.add(User(email="b"))
            db.flush()  # sent to the database, inside the transaction
            raise RuntimeError("the block fails")
    with m.get_db(auto_commit=False) as db:
        db.add(User(email="c"))
        db.flush()  # never committed: rolled back at the end
    with m.get_db(auto_commit=False) as db:
        db.add(User(email="d"))
        db.commit()
    # A failed commit raises (here a unique violation, found at the commit's flush) and
    # leaves nothing of its transaction.
    with pytest.raises(sqlalchemy.exc.IntegrityError) as e:
        with m.get_db() as db:
            db.add(User(email="e"))
            db.add(User(email="a"))
    assert isinstance(e.value.orig, dbmgr.IntegrityError)
    assert _emails(m, User) == ["a", "d"]


def test_fastapi_dependency(users):
    import fastapi  # python3-fastapi and python3-httpx (TestClient), scripts/install-deps.sh
    from fastapi.testclient import TestClient
    m, User = users
    app = fastapi.FastAPI()

    @app.post("/users/{email}")
    def create(email: str, db: Session = fastapi.Depends(m.get_db_dependency)):
        db.add(User(email=email))
        db.flush()
        if email.startswith("bad"):
            raise fastapi.HTTPException(status_code=409, detail="refused")
        return {"ok": True}

    @app.post("/strict/{email}")
    def create_strict(email: str, db: Session = fastapi.Depends(m.get_db_dependency)):
        db.add(User(email=email))
        db.commit()  # as the quick start does: a failed commit fails the request
        return {"ok": True}

    @app.post("/late/{email}")
    def create_late(email: str, db: Session = fastapi.Depends(m.get_db_dependency)):
        db.add(User(email=email))  # not flushed: the dependency's commit sends it
        return {"ok": True}

    client = TestClient(app, raise_server_exceptions=False)
    assert client.post("/users/ann").status_code == 200
    assert client.post("/users/bad1").status_code == 409
    # The dependency has no parameters: nothing a client sends can change how it commits.
    assert client.post("/users/bob?auto_commit=false").status_code == 200
    assert client.post("/strict/cid").status_code == 200
    assert client.post("/strict/cid").status_code == 500  # unique violation at the commit
    assert client.post("/late/dan").status_code == 200
    # A duplicate through the dependency's own commit: it fails after the response (FastAPI
    # 0.92 sends the response first; what the client is told depends on the version) and
    # leaves nothing.
    client.post("/late/dan")
    assert _emails(m, User) == ["ann", "bob", "cid", "dan"]


def test_a_waiter_beside_the_writer(users):
    # Eight threads write at once through get_db(): on SQLite they queue for the one
    # writer; every acknowledged commit is there, nothing else.
    m, User = users
    done, errors = [], []

    def work(i):
        try:
            for k in range(10):
                with m.get_db() as db:
                    db.add(User(email="t%d-%d" % (i, k)))
                done.append((i, k))
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert errors == []
    assert _emails(m, User) == sorted("t%d-%d" % d for d in done)
    assert len(done) == 80


def test_thread_sessions(users):
    m, User = users
    s = m.get_session()
    assert m.get_session() is s
    other = []
    t = threading.Thread(target=lambda: other.append(m.get_session()))
    t.start()
    t.join()
    assert other[0] is not s
    s.add(User(email="kept"))
    s.commit()
    s.add(User(email="dropped"))
    s.flush()
    m.cleanup_thread()  # rolls back what is open
    assert m.get_session() is not s
    assert _emails(m, User) == ["kept"]
    m.cleanup_thread()


def test_init_worker_after_fork(daemon, users):
    m, User = users
    parent_session = m.get_session()
    assert parent_session.scalar(select(func.count()).select_from(User)) == 0
    if daemon.engine == "sqlite":
        # A read-write transaction on SQLite holds the one writer, which the child needs.
        parent_session.commit()
    # (On PostgreSQL the parent's transaction stays open across the fork.)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            m.init_worker()
            assert m.get_session() is not parent_session
            with m.get_db() as db:
                db.add(User(email="child"))
            code = 0
        except BaseException:
            import traceback
            traceback.print_exc()  # pytest shows the child's stderr on failure
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    parent_session.add(User(email="parent"))  # the child did not touch the parent's session
    parent_session.commit()
    m.cleanup_thread()
    assert _emails(m, User) == ["child", "parent"]


@pytest.mark.parametrize("own_daemon", ["sqlite"], indirect=True)
def test_prefixes_never_nest(own_daemon):
    # SQLite: prefixed databases are created on demand (a file each).
    daemon = own_daemon
    m = _manager(daemon)
    name = m.DATABASE_NAME
    m.init_engine_config("test")
    assert m.DATABASE_NAME == name  # not test.test.<name>
    carried = DatabaseManager(db_prefix="test", socket=daemon.socket, database=name)
    assert carried.DATABASE_NAME == name  # "test.x" under prefix "test" stays "test.x"
    with pytest.raises(ValueError):
        m.init_engine_config("../etc")
    with pytest.raises(ValueError):
        m.init_engine_config("Test")
    assert m.DATABASE_NAME == name  # a refused prefix changes nothing
    m.init_engine_config("test.payment")
    assert m.DATABASE_NAME == "test.payment." + m.engine.url.database
    carried.dispose()
    m.dispose()


def test_separate_bases_per_manager(daemon):
    a, b = _manager(daemon), _manager(daemon)
    assert a.Base is not b.Base and a.Base.metadata is not b.Base.metadata
    a.dispose()
    b.dispose()


def test_test_connection_fails_clearly(tmp_path):
    with pytest.raises(dbmgr.OperationalError):
        DatabaseManager(socket=str(tmp_path / "no-daemon.sock"), test_connection=True)


@pytest.mark.parametrize("own_daemon", ["sqlite"], indirect=True)
def test_unknown_database_fails_clearly(own_daemon):
    # SQLite: a name outside the create-on-demand prefixes.
    with pytest.raises(dbmgr.ProgrammingError) as e:
        DatabaseManager(socket=own_daemon.socket, database="no_such_db_%d" % os.getpid())
    assert e.value.category == "not_found"


@pytest.mark.parametrize("own_daemon", ["sqlite", "postgresql"], indirect=True)
def test_a_killed_daemon_mid_transaction(own_daemon):
    m = _manager(own_daemon)
    User = _model(m, "py_mgr_killed_%d" % os.getpid())
    with pytest.raises(sqlalchemy.exc.DBAPIError) as e:
        with m.get_db() as db:
            db.add(User(email="lost"))
            db.flush()
            own_daemon.kill()
            db.execute(select(func.count()).select_from(User))
    assert isinstance(e.value.orig, dbmgr.Error)
    assert e.value.orig.category == "connection"
    m.engine.dispose()
    if own_daemon.engine == "postgresql":  # the table outlives the daemon: drop it
        from testdaemon import Daemon
        d = Daemon("postgresql")
        try:
            with d.connect(autocommit=True) as c:
                c.cursor().execute("DROP TABLE IF EXISTS py_mgr_killed_%d" % os.getpid())
        finally:
            d.stop()


def test_get_async_db(users):
    import asyncio
    m, User = users

    async def add(email, fail=False):
        async with m.get_async_db() as db:
            db.add(User(email=email))
            await db.flush()
            if fail:
                raise RuntimeError("this coroutine fails")

    async def main():
        await add("one")
        with pytest.raises(RuntimeError):
            await add("never", fail=True)
        # Fifty sessions at once from one thread: on SQLite they queue for the one writer.
        results = await asyncio.gather(*(add("c%02d" % i, fail=(i % 10 == 3))
                                         for i in range(50)), return_exceptions=True)
        assert sum(isinstance(r, RuntimeError) for r in results) == 5
        assert all(r is None or isinstance(r, RuntimeError) for r in results)
        async with m.get_async_db() as db:
            return (await db.execute(select(func.count()).select_from(User))).scalar()

    assert asyncio.run(main()) == 46
    want = ["c%02d" % i for i in range(50) if i % 10 != 3] + ["one"]
    assert _emails(m, User) == sorted(want)


def test_get_async_db_does_not_block_the_loop(daemon):
    # While one session waits for a slow statement, the event loop keeps running others.
    import asyncio
    m = _manager(daemon)
    slow = ("SELECT pg_sleep(0.5)" if daemon.engine == "postgresql" else
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000000) "
            "SELECT count(*) FROM c")

    async def main():
        ticks = 0
        done = asyncio.Event()

        async def ticker():
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0.01)

        async def query():
            async with m.get_async_db() as db:
                await db.execute(sqlalchemy.text(slow))
            done.set()

        await asyncio.gather(ticker(), query())
        return ticks

    assert asyncio.run(main()) >= 10
    m.dispose()


@pytest.mark.parametrize("own_daemon", ["mariadb"], indirect=True)
def test_mariadb(own_daemon):
    # mysql+dbmgr under the manager: what the daemon resolved, the PK column type it names,
    # an autoincrement id read back after the INSERT (LAST_INSERT_ID on the session's own
    # connection), commit and rollback with the table read back.
    m = DatabaseManager(socket=own_daemon.socket)
    assert m.DATABASE_TYPE == "mariadb" and m.engine.dialect.name == "mysql"
    assert m.PK_TYPE == "UUID"
    assert os.environ["DBMGR_TEST_MARIADB_PASSWORD"] not in m.DATABASE_URI
    t = "py_mgr_maria_%d" % os.getpid()

    class Item(m.Base):
        __tablename__ = t
        id = m.pk_column()
        serial = Column(Integer, nullable=False)
        email = Column(String(200), unique=True)

    class Counter(m.Base):
        __tablename__ = t + "_n"
        n = Column(Integer, primary_key=True, autoincrement=True)
        label = Column(String(20))

    m.drop_all()
    m.create_all()
    try:
        with m.engine.connect() as c:
            ddl = c.exec_driver_sql("SHOW CREATE TABLE %s" % t).fetchone()[1]
        assert ("`id` %s" % m._info["pk_column_type"].lower()) in ddl.lower()
        with m.get_db() as db:
            db.add(Item(serial=1, email="a"))
            c1, c2 = Counter(label="x"), Counter(label="y")
            db.add_all([c1, c2])
            db.flush()
            assert (c1.n, c2.n) != (None, None) and c2.n == c1.n + 1
        with pytest.raises(RuntimeError):
            with m.get_db() as db:
                db.add(Item(serial=2, email="b"))
                db.flush()
                raise RuntimeError("rolled back")
        with m.get_db() as db:
            assert [(i.serial, i.email) for i in db.scalars(select(Item))] == [(1, "a")]
            assert str(uuid.UUID(db.scalars(select(Item.id)).one()))
            assert db.scalar(select(func.count()).select_from(Counter)) == 2
    finally:
        m.drop_all()
        m.dispose()


def test_async_session_dropped_unclosed_is_terminated(daemon, users):
    # An AsyncSession that is never closed, its connection garbage-collected: its open
    # transaction is rolled back and its dbmgr session freed (SQLAlchemy calls the dialect's
    # do_terminate; the driver's connection also closes itself when collected), so on SQLite
    # the writer is free again for the next writer.
    import asyncio
    import gc
    import warnings
    m, User = users

    async def leak():
        db = m.AsyncSessionLocal()
        db.add(User(email="leaked"))
        await db.flush()  # holds a connection (and SQLite's writer) in an open transaction

    async def write():
        async with m.get_async_db() as db:
            db.add(User(email="after"))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SQLAlchemy warns about the connection it collects
        asyncio.run(leak())
        gc.collect()
    asyncio.run(asyncio.wait_for(write(), 20))
    assert _emails(m, User) == ["after"]


@pytest.mark.parametrize("own_daemon", ["mariadb"], indirect=True)
def test_mariadb_generated_id_refused_in_autocommit(own_daemon):
    # An autocommit connection's statements may run on different server connections: the
    # dialect refuses to read LAST_INSERT_ID() there instead of returning another insert's.
    e = sqlalchemy.create_engine("mysql+dbmgr:///?socket=" + own_daemon.socket,
                                 connect_args={"autocommit": True}, future=True)
    md = sqlalchemy.MetaData()
    t = sqlalchemy.Table("py_ac_%d" % os.getpid(), md,
                         Column("n", Integer, primary_key=True, autoincrement=True))
    md.create_all(e)
    try:
        with e.connect() as c:
            with pytest.raises(sqlalchemy.exc.DBAPIError) as err:
                c.execute(t.insert().values())
            assert isinstance(err.value.orig, dbmgr.NotSupportedError)
    finally:
        md.drop_all(e)
        e.dispose()
