"""The PEP 249 driver against a real dbmgrd on SQLite and on PostgreSQL (issue 15)."""

import datetime
import decimal
import os
import threading
import uuid

import pytest

import dbmgr


def test_module_globals():
    assert dbmgr.apilevel == "2.0"
    assert dbmgr.threadsafety == 1
    assert dbmgr.paramstyle == "qmark"
    for name in ("Warning", "Error", "InterfaceError", "DatabaseError", "DataError",
                 "OperationalError", "IntegrityError", "InternalError", "ProgrammingError",
                 "NotSupportedError"):
        assert issubclass(getattr(dbmgr, name), Exception)
    assert issubclass(dbmgr.IntegrityError, dbmgr.DatabaseError)
    assert issubclass(dbmgr.DatabaseError, dbmgr.Error)
    assert issubclass(dbmgr.InterfaceError, dbmgr.Error)
    assert dbmgr.__version__ == "0.1.0"


def test_info(daemon):
    with daemon.connect() as c:
        info = c.info()
    assert info["type"] == daemon.engine
    if daemon.engine == "sqlite":
        assert info["name"] == "test.pytest"
        assert info["pk_type"] == "String"
    else:
        assert info["name"] == os.environ["DBMGR_TEST_PG_DB"]
        assert info["pk_type"] == "UUID"
        assert os.environ["DBMGR_TEST_PG_PASSWORD"] not in info["uri"]


@pytest.mark.parametrize("own_daemon", ["sqlite"], indirect=True)
def test_prefix(own_daemon):
    # SQLite shows the resolved name as a file: DATABASE_PATH/test.app.db.
    with own_daemon.connect(database="app", prefix="test") as c:
        assert c.info()["name"] == "test.app"
        c.cursor().execute("CREATE TABLE t (x BIGINT)")
    assert os.path.exists(os.path.join(own_daemon.dir, "test.app.db"))
    with own_daemon.connect(database="test.app", prefix="test") as c:
        assert c.info()["name"] == "test.app"  # not prefixed twice


# Each engine's column types and what comes back, cell by cell: (column type, value sent,
# value expected back).
def _cases(engine):
    dt = datetime.datetime(2026, 12, 3, 7, 8, 9, 123456)
    common = [
        ("BIGINT", 0, 0),
        ("BIGINT", 2**63 - 1, 2**63 - 1),
        ("BIGINT", -2**63, -2**63),
        ("TEXT", "", ""),
        ("TEXT", "h\u00e9llo \u2603 \U0001F600", "h\u00e9llo \u2603 \U0001F600"),
        ("TEXT", "nul\x00inside", "nul\x00inside") if engine == "sqlite" else
        ("TEXT", "tab\tnewline\n", "tab\tnewline\n"),
    ]
    if engine == "sqlite":
        return common + [
            ("REAL", 1.5, 1.5),
            ("REAL", -1e300, -1e300),
            ("BLOB", b"", b""),
            ("BLOB", b"\x00\x01\xff", b"\x00\x01\xff"),
            ("BLOB", bytearray(b"ab"), b"ab"),
            ("BLOB", memoryview(b"cd"), b"cd"),
            ("INTEGER", True, 1),
            ("INTEGER", False, 0),
            ("TEXT", dt, "2026-12-03 07:08:09.123456"),
            ("TEXT", datetime.date(2026, 12, 3), "2026-12-03"),
            ("TEXT", datetime.time(7, 8, 9), "07:08:09"),
            ("TEXT", decimal.Decimal("12.50"), "12.50"),
            ("TEXT", uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
        ]
    return common + [
        ("DOUBLE PRECISION", 1.5, 1.5),
        ("DOUBLE PRECISION", -1e300, -1e300),
        ("BYTEA", b"", b""),
        ("BYTEA", b"\x00\x01\xff", b"\x00\x01\xff"),
        ("BYTEA", bytearray(b"ab"), b"ab"),
        ("BYTEA", memoryview(b"cd"), b"cd"),
        ("BOOLEAN", True, True),
        ("BOOLEAN", False, False),
        ("TIMESTAMP", dt, "2026-12-03 07:08:09.123456"),
        ("TIMESTAMPTZ", datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc),
         None),  # checked below: the server answers in its own TimeZone
        ("DATE", datetime.date(2026, 12, 3), "2026-12-03"),
        ("TIME", datetime.time(7, 8, 9), "07:08:09"),
        ("NUMERIC", decimal.Decimal("12.50"), "12.50"),
        ("NUMERIC", decimal.Decimal("-1E+3"), "-1000"),
        ("UUID", uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
    ]


def test_types_round_trip(daemon, table):
    cases = _cases(daemon.engine)
    cols = ", ".join("c%d %s" % (k, t) for k, (t, _, _) in enumerate(cases))
    with daemon.connect() as c:
        cur = c.cursor()
        cur.execute("CREATE TABLE %s (%s)" % (table, cols))
        marks = ", ".join("?" for _ in cases)
        cur.execute("INSERT INTO %s VALUES (%s)" % (table, marks), [v for _, v, _ in cases])
        assert cur.rowcount == 1
        cur.execute("INSERT INTO %s VALUES (%s)" % (table, marks), [None] * len(cases))
        c.commit()
    with daemon.connect() as c:
        cur = c.cursor()
        cur.execute("SELECT * FROM %s" % table)
        rows = cur.fetchall()
    assert len(rows) == 2
    values, nulls = rows if rows[0][0] is not None else rows[::-1]
    for k, (t, sent, want) in enumerate(cases):
        got = values[k]
        if t == "TIMESTAMPTZ":
            assert isinstance(got, str)
            assert datetime.datetime.fromisoformat(got) == sent, (k, t, got)
            continue
        assert got == want and type(got) is type(want), (k, t, sent, got)
    assert nulls == (None,) * len(cases)


def test_int_out_of_range(daemon):
    with daemon.connect() as c:
        cur = c.cursor()
        with pytest.raises(dbmgr.DataError) as e:
            cur.execute("SELECT ?", (2**63,))
        assert e.value.sqlstate == "22003"
        with pytest.raises(dbmgr.DataError):
            cur.execute("SELECT ?", (-2**63 - 1,))
        with pytest.raises(dbmgr.ProgrammingError):
            cur.execute("SELECT ?", (object(),))
        with pytest.raises(dbmgr.DataError):
            cur.execute("SELECT ?", (decimal.Decimal("NaN"),))
        with pytest.raises(dbmgr.DataError):
            cur.execute("SELECT ?", (decimal.Decimal("-Infinity"),))
        with pytest.raises(dbmgr.ProgrammingError):
            cur.execute("SELECT ?", {"a": 1})
        with pytest.raises(dbmgr.ProgrammingError):
            cur.execute("SELECT ?", "a")
        cur.execute("SELECT ?", (-2**63,))
        assert cur.fetchone() == (-2**63,)


def test_description_and_fetch_sizes(daemon, table):
    with daemon.connect() as c:
        cur = c.cursor()
        assert cur.rowcount == -1 and cur.description is None and cur.lastrowid is None
        cur.setinputsizes([None])
        cur.setoutputsize(10)
        cur.execute("CREATE TABLE %s (id BIGINT PRIMARY KEY, name TEXT, score %s)"
                    % (table, "REAL" if daemon.engine == "sqlite" else "DOUBLE PRECISION"))
        assert cur.description is None
        cur.executemany("INSERT INTO %s VALUES (?, ?, ?)" % table,
                        [(i, "n%d" % i, i / 2) for i in range(10)])
        assert cur.rowcount == 10
        cur.execute("SELECT id, name, score FROM %s ORDER BY id" % table)
        d = cur.description
        assert [col[0] for col in d] == ["id", "name", "score"]
        assert all(len(col) == 7 for col in d)
        assert d[0][1] == dbmgr.NUMBER and d[1][1] == dbmgr.STRING and d[2][1] == dbmgr.NUMBER
        assert d[1][1] != dbmgr.NUMBER and d[0][1] != dbmgr.BINARY
        assert cur.rowcount == 10
        assert cur.arraysize == 1
        assert cur.fetchmany() == [(0, "n0", 0.0)]
        cur.arraysize = 3
        assert [r[0] for r in cur.fetchmany()] == [1, 2, 3]
        assert [r[0] for r in cur.fetchmany(4)] == [4, 5, 6, 7]
        assert cur.fetchone() == (8, "n8", 4.0)
        assert [r[0] for r in cur.fetchmany(5)] == [9]
        assert cur.fetchmany(5) == []
        assert cur.fetchone() is None
        cur.execute("SELECT id FROM %s WHERE id < ? ORDER BY id" % table, (3,))
        assert [r for r in cur] == [(0,), (1,), (2,)]
        cur.execute("SELECT id FROM %s WHERE id < 0" % table)
        assert cur.fetchall() == [] and cur.rowcount == 0
        assert [col[0] for col in cur.description] == ["id"]
        cur.execute("UPDATE %s SET name = ? WHERE id >= ?" % table, ("x", 7))
        assert cur.rowcount == 3 and cur.description is None
        with pytest.raises(dbmgr.ProgrammingError):
            cur.fetchone()
        cur.executemany("DELETE FROM %s WHERE id = ?" % table, [(0,), (1,), (100,)])
        assert cur.rowcount == 2
        cur.close()
        with pytest.raises(dbmgr.InterfaceError):
            cur.execute("SELECT 1")


def test_lastrowid(daemon, table):
    with daemon.connect() as c:
        cur = c.cursor()
        if daemon.engine == "sqlite":
            cur.execute("CREATE TABLE %s (id INTEGER PRIMARY KEY, v TEXT)" % table)
            cur.execute("INSERT INTO %s (v) VALUES (?)" % table, ("a",))
            assert cur.lastrowid == 1
            cur.execute("INSERT INTO %s (id, v) VALUES (?, ?)" % table, (41, "b"))
            assert cur.lastrowid == 41
        else:
            # PostgreSQL has no last insert id: lastrowid is None; RETURNING gives the id.
            cur.execute("CREATE TABLE %s (id BIGSERIAL PRIMARY KEY, v TEXT)" % table)
            cur.execute("INSERT INTO %s (v) VALUES (?) RETURNING id" % table, ("a",))
            assert cur.lastrowid is None
            assert cur.fetchall() == [(1,)] and cur.rowcount == 1
        cur.execute("SELECT 1")
        assert cur.lastrowid is None


def test_commit_and_rollback_seen_from_another_connection(daemon, table):
    with daemon.connect() as c:
        c.cursor().execute("CREATE TABLE %s (id BIGINT PRIMARY KEY)" % table)
    a = daemon.connect()
    b = daemon.connect()
    try:
        ca, cb = a.cursor(), b.cursor()
        ca.execute("INSERT INTO %s VALUES (?)" % table, (1,))
        assert a.in_transaction
        if daemon.engine == "postgresql":  # SQLite's writer would make b wait; PG shows isolation
            cb.execute("SELECT count(*) FROM %s" % table)
            assert cb.fetchone() == (0,)
            b.rollback()
        a.commit()
        assert not a.in_transaction
        cb.execute("SELECT id FROM %s" % table)
        assert cb.fetchall() == [(1,)]
        b.rollback()
        ca.execute("INSERT INTO %s VALUES (?)" % table, (2,))
        a.rollback()
        cb.execute("SELECT id FROM %s ORDER BY id" % table)
        assert cb.fetchall() == [(1,)]
        b.rollback()
    finally:
        a.close()
        b.close()


def test_close_rolls_back_and_context_manager(daemon, table):
    with daemon.connect() as c:
        c.cursor().execute("CREATE TABLE %s (id BIGINT)" % table)
    c = daemon.connect()
    c.cursor().execute("INSERT INTO %s VALUES (1)" % table)
    c.close()
    c.close()
    assert c.closed
    with pytest.raises(dbmgr.InterfaceError):
        c.cursor()
    with pytest.raises(ZeroDivisionError):
        with daemon.connect() as c:
            c.cursor().execute("INSERT INTO %s VALUES (2)" % table)
            1 / 0
    with daemon.connect() as c:
        c.cursor().execute("INSERT INTO %s VALUES (3)" % table)
    with daemon.connect() as c:
        cur = c.cursor()
        cur.execute("SELECT id FROM %s" % table)
        assert cur.fetchall() == [(3,)]


def test_integrity_error_then_usable(daemon, table):
    with daemon.connect() as c:
        cur = c.cursor()
        cur.execute("CREATE TABLE %s (id BIGINT PRIMARY KEY)" % table)
        c.commit()
        cur.execute("INSERT INTO %s VALUES (1)" % table)
        with pytest.raises(dbmgr.IntegrityError) as e:
            cur.execute("INSERT INTO %s VALUES (1)" % table)
        err = e.value
        assert err.category == "constraint"
        assert isinstance(err, c.IntegrityError) and c.IntegrityError is dbmgr.IntegrityError
        assert err.sqlstate is not None and err.sqlstate.startswith("23"), err.sqlstate
        if daemon.engine == "postgresql":
            assert err.sqlstate == "23505" and err.pgcode == "23505"
        assert "constraint" in str(err)
        c.rollback()
        cur.execute("INSERT INTO %s VALUES (2)" % table)
        c.commit()
        cur.execute("SELECT id FROM %s" % table)
        assert cur.fetchall() == [(2,)]


def test_syntax_error(daemon):
    with daemon.connect() as c:
        cur = c.cursor()
        with pytest.raises(dbmgr.ProgrammingError) as e:
            cur.execute("SELEC 1")
        assert e.value.category == "syntax"
        assert e.value.sqlstate == "42601"
        c.rollback()
        with pytest.raises(dbmgr.ProgrammingError) as e:
            cur.execute("SELECT * FROM no_such_table_py")
        assert e.value.category in ("not_found", "syntax")
        c.rollback()


def test_read_only_refuses_write(daemon, table):
    with daemon.connect() as c:
        c.cursor().execute("CREATE TABLE %s (id BIGINT)" % table)
    with daemon.connect(read_only=True) as c:
        cur = c.cursor()
        cur.execute("SELECT count(*) FROM %s" % table)
        assert cur.fetchone() == (0,)
        with pytest.raises(dbmgr.OperationalError) as e:
            cur.execute("INSERT INTO %s VALUES (1)" % table)
        assert e.value.category == "read_only"
        assert e.value.sqlstate == "25006"
        c.rollback()
    with daemon.connect(read_only=True, autocommit=True) as c:
        with pytest.raises(dbmgr.OperationalError) as e:
            c.cursor().execute("INSERT INTO %s VALUES (1)" % table)
        assert e.value.category == "read_only"
    with daemon.connect() as c:
        cur = c.cursor()
        cur.execute("SELECT count(*) FROM %s" % table)
        assert cur.fetchone() == (0,)


def test_autocommit_is_one_shot(daemon, table):
    with daemon.connect() as c:
        c.cursor().execute("CREATE TABLE %s (id BIGINT)" % table)
    a = daemon.connect(autocommit=True)
    try:
        a.cursor().execute("INSERT INTO %s VALUES (1)" % table)
        assert not a.in_transaction
        a.rollback()  # nothing to roll back: the one-shot is committed
        with daemon.connect() as b:
            cur = b.cursor()
            cur.execute("SELECT id FROM %s" % table)
            assert cur.fetchall() == [(1,)]
        a.autocommit = False
        a.cursor().execute("INSERT INTO %s VALUES (2)" % table)
        with pytest.raises(dbmgr.ProgrammingError):
            a.autocommit = True
        a.rollback()
        a.autocommit = True
        assert a.autocommit
    finally:
        a.close()


def test_connections_share_a_manager(daemon):
    from dbmgr import _capi
    with daemon.connect():
        before = len(_capi._managers)
    with daemon.connect() as a, daemon.connect() as b:
        assert a._manager.value == b._manager.value
    assert len(_capi._managers) == before


def test_no_daemon_is_operational_error(tmp_path):
    with pytest.raises(dbmgr.OperationalError) as e:
        dbmgr.connect(socket=str(tmp_path / "nobody.sock"), database="x")
    assert e.value.category == "connection"
    assert e.value.client_side


@pytest.mark.parametrize("own_daemon", ["sqlite", "postgresql"], indirect=True)
def test_killed_daemon_mid_transaction(own_daemon):
    c = own_daemon.connect()
    cur = c.cursor()
    cur.execute("CREATE TABLE IF NOT EXISTS py_killed_%d (id BIGINT)" % os.getpid())
    cur.execute("INSERT INTO py_killed_%d VALUES (1)" % os.getpid())
    assert c.in_transaction
    own_daemon.kill()
    outcome = []

    def run():
        try:
            cur.execute("SELECT 1")
            outcome.append("no error")
        except Exception as e:  # noqa: BLE001 (the test checks the type)
            outcome.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(60)  # a deadline, not a synchronization: the call must end by itself
    assert not t.is_alive(), "execute hung after dbmgrd was killed"
    assert isinstance(outcome[0], dbmgr.OperationalError), outcome
    assert outcome[0].category == "connection"
    with pytest.raises(dbmgr.OperationalError):
        c.commit()
    c.close()


def test_two_connections_two_threads(daemon, table):
    with daemon.connect() as c:
        c.cursor().execute("CREATE TABLE %s (t BIGINT, i BIGINT)" % table)
    errors = []
    barrier = threading.Barrier(2)

    def work(tid):
        try:
            with daemon.connect() as c:
                cur = c.cursor()
                barrier.wait(30)
                for i in range(50):
                    cur.execute("INSERT INTO %s VALUES (?, ?)" % table, (tid, i))
                    if i % 10 == 9:
                        c.commit()
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    with daemon.connect() as c:
        cur = c.cursor()
        cur.execute("SELECT t, count(*), CAST(sum(i) AS BIGINT) FROM %s GROUP BY t ORDER BY t" % table)
        assert cur.fetchall() == [(0, 50, 1225), (1, 50, 1225)]


def test_fork_child_uses_its_own_daemon_connection(daemon, table):
    # The package's managers are shared per process and inherited by a child; the child
    # calls dbmgr_manager_init_worker (os.register_at_fork) and the library itself also
    # tells an inherited daemon connection: parent and child both keep working. (This
    # test passes without the package's hook too.) The parent reads before the fork: a
    # read-write SQLite session would hold the writer.
    with daemon.connect() as c:
        c.cursor().execute("CREATE TABLE %s (who TEXT)" % table)
    parent = daemon.connect(read_only=True)
    try:
        _fork_and_check(daemon, table, parent)
    finally:
        parent.close()


def _fork_and_check(daemon, table, parent):
    cur = parent.cursor()
    cur.execute("SELECT count(*) FROM %s" % table)
    assert cur.fetchone() == (0,)
    parent.rollback()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            with daemon.connect() as c:
                c.cursor().execute("INSERT INTO %s VALUES (?)" % table, ("child",))
            code = 0
        except BaseException as e:  # noqa: BLE001 (reported by the parent's assert)
            os.write(2, ("child: %r\n" % e).encode())
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    with daemon.connect() as c:
        c.cursor().execute("INSERT INTO %s VALUES (?)" % table, ("parent",))
    cur.execute("SELECT who FROM %s ORDER BY who" % table)
    assert cur.fetchall() == [("child",), ("parent",)]


def test_library_lookup_order(tmp_path):
    from dbmgr import _capi
    assert _capi._candidates({"DBMGR_LIBRARY": "/x/libdbmgr.so.0"}, str(tmp_path)) == \
        (["/x/libdbmgr.so.0"], True)
    # Not a source tree: the system's library only.
    names, explicit = _capi._candidates({}, str(tmp_path))
    assert not explicit and names[0] == "libdbmgr.so.0"
    # A source tree with both builds: build/ first, then build-test/, then the system's.
    (tmp_path / "client" / "include" / "dbmgr").mkdir(parents=True)
    (tmp_path / "client" / "include" / "dbmgr" / "dbmgr.h").write_text("")
    for b in ("build", "build-test", "build-asan"):
        (tmp_path / b / "client").mkdir(parents=True)
        (tmp_path / b / "client" / "libdbmgr.so.0").write_text("")
    names, _ = _capi._candidates({}, str(tmp_path))
    assert names[:3] == [str(tmp_path / "build" / "client" / "libdbmgr.so.0"),
                         str(tmp_path / "build-test" / "client" / "libdbmgr.so.0"),
                         "libdbmgr.so.0"]
    # The tests themselves load the library they were given.
    assert _capi.library_path == os.environ["DBMGR_LIBRARY"]


def _python_blocks(path):
    text = open(os.path.join(os.path.dirname(__file__), "..", "..", path)).read()
    blocks = []
    while "```python\n" in text:
        text = text.split("```python\n", 1)[1]
        block, text = text.split("```", 1)
        blocks.append(block)
    return blocks


@pytest.mark.parametrize("own_daemon", ["sqlite"], indirect=True)
def test_doc_examples_run(own_daemon, monkeypatch, capsys):
    # README's and docs/python.md's Python snippets, as written, against a real dbmgrd
    # named by DBMGR_SOCKET (the snippets give no socket).
    from fastapi.testclient import TestClient
    monkeypatch.setenv("DBMGR_SOCKET", own_daemon.socket)
    doc = _python_blocks("docs/python.md")
    readme = _python_blocks("README.md")
    assert len(doc) == 2 and len(readme) == 1
    assert readme[0] == doc[0]  # the DatabaseManager quick start, the same in both
    ns = {}
    exec(compile(doc[0], "docs/python.md", "exec"), ns)
    assert capsys.readouterr().out == "['ann@example.org']\n"
    # Its FastAPI endpoint commits what it adds.
    assert TestClient(ns["app"]).post("/users/bob@example.org").status_code == 200
    with own_daemon.connect(database="app", prefix="test") as c:
        cur = c.cursor()
        cur.execute("SELECT email FROM people ORDER BY email")
        assert cur.fetchall() == [("ann@example.org",), ("bob@example.org",)]
        cur.execute("DROP TABLE people")
    ns["db_manager"].dispose()
    exec(compile(doc[1], "docs/python.md", "exec"), {})
    assert capsys.readouterr().out == "id (1, 'ann')\n"
