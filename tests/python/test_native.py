"""dbmgr._native, the C path of the driver, against the ctypes path (docs/python.md, "Binding").

The same statements run through both bindings on the same daemon: in this interpreter with
whichever binding it loaded, and in a child interpreter with DBMGR_NATIVE=0 (ctypes alone).
Rows, descriptions, row counts, ids and errors must be the same, cell by cell and type by
type. Beside that: what a careless caller hands the C path (many parameters, odd types, an
adapter that fails, text that is not UTF-8), and that it lets other threads run while a
statement waits on the server."""

import datetime
import decimal
import enum
import json
import os
import subprocess
import sys
import threading
import time
import uuid

import pytest

import dbmgr
from dbmgr import _capi


def test_native_loaded_when_built():
    # meson sets DBMGR_EXPECT_NATIVE=1 when it built the extension, so that a module that
    # failed to load (and a silent fall back to ctypes) fails here instead of passing slowly.
    if os.environ.get("DBMGR_NATIVE") == "0":
        assert _capi.native is None
        return
    if os.environ.get("DBMGR_EXPECT_NATIVE") == "1":
        assert _capi.native is not None
    if _capi.native is not None:
        assert _capi.native.version() == _capi.version().decode()


# The work both bindings run: (sql, params) per step; each step's outcome is recorded as
# JSON-able data with the Python type name of every cell.
def _steps(engine, table):
    blob = "BLOB" if engine == "sqlite" else "BYTEA"
    real = "REAL" if engine == "sqlite" else "DOUBLE PRECISION"
    steps = [
        ("CREATE TABLE %s (id BIGINT PRIMARY KEY, t TEXT, r %s, b %s, n BIGINT)" % (table, real, blob), ()),
        ("INSERT INTO %s VALUES (?, ?, ?, ?, ?)" % table, (1, "h\u00e9llo \U0001F600", 1.5, b"\x00\xff", None)),
        ("INSERT INTO %s VALUES (?, ?, ?, ?, ?)" % table, (2, "", -0.0, b"", 2**63 - 1)),
        ("INSERT INTO %s VALUES (?, ?, ?, ?, ?)" % table, (3, "x" * 100000, 1e300, bytes(range(256)) * 40, -2**63)),
        ("INSERT INTO %s (id, t) VALUES (?, ?)" % table, (4, decimal.Decimal("12.50"))),
        ("INSERT INTO %s (id, t) VALUES (?, ?)" % table, (5, datetime.datetime(2026, 12, 7, 1, 2, 3, 4))),
        ("INSERT INTO %s (id, t) VALUES (?, ?)" % table, (6, uuid.UUID(int=7))),
        ("INSERT INTO %s (id, b) VALUES (?, ?)" % table, (7, bytearray(b"ba"))),
        ("SELECT * FROM %s ORDER BY id" % table, ()),
        ("SELECT id, length(t) FROM %s WHERE id > ? ORDER BY id" % table, (2,)),
        ("UPDATE %s SET n = ? WHERE id >= ?" % table, (0, 4)),
        ("SELECT count(*), sum(n) FROM %s" % table, ()),
        ("SELECT ? AS a, ? AS b, ? AS c", (True, False, None)),
        ("SELECT " + ", ".join("?" for _ in range(40)), tuple(range(40))),
        ("SELECT " + ", ".join("?" for _ in range(20)), tuple("s%d" % i for i in range(20))),
        ("INSERT INTO %s (id) VALUES (?)" % table, (1,)),  # duplicate key
        ("SELEC 1", ()),  # syntax
        ("SELECT * FROM %s_missing" % table, ()),
        ("DELETE FROM %s WHERE id = ?" % table, (3,)),
        ("SELECT id FROM %s WHERE id = ?" % table, (3,)),
        ("DROP TABLE %s" % table, ()),
    ]
    if engine == "sqlite":
        steps.append(("SELECT 1.0 / 3, x'00ff', NULL, 'a' || ?", ("b",)))
    else:
        steps.append(("SELECT 1.0::float8 / 3, '\\x00ff'::bytea, NULL, 'a' || ?", ("b",)))
    return steps


def _cell(v):
    if isinstance(v, bytes):
        return ["bytes", v.hex()]
    if isinstance(v, float):
        return ["float", repr(v)]
    return [type(v).__name__, v]


def _run_steps(socket, database, prefix, steps):
    out = []
    with dbmgr.connect(socket=socket, database=database, prefix=prefix, autocommit=True) as c:
        cur = c.cursor()
        for sql, params in steps:
            try:
                cur.execute(sql, params)
            except dbmgr.Error as e:
                out.append({"error": type(e).__name__, "sqlstate": e.sqlstate,
                            "category": e.category})
                continue
            rec = {"rowcount": cur.rowcount, "lastrowid": cur.lastrowid}
            if cur.description is not None:
                rec["description"] = [list(d) for d in cur.description]
                first = cur.fetchone()
                rest = cur.fetchmany(2)
                rows = ([first] if first is not None else []) + rest + cur.fetchall()
                rec["rows"] = [[_cell(v) for v in row] for row in rows]
                rec["after"] = cur.fetchone()
            out.append(rec)
    return out


_CHILD = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import test_native
from dbmgr import _capi
assert _capi.native is None, "DBMGR_NATIVE=0 still loaded the extension"
engine, socket, database, prefix, table = sys.argv[2:7]
steps = test_native._steps(engine, table)
print(json.dumps(test_native._run_steps(socket, database or None, prefix or None, steps)))
"""


def test_same_results_as_ctypes(daemon):
    if _capi.native is None:
        pytest.skip("dbmgr._native is not built (python3-dev missing): nothing to compare")
    base = "pynat_%d" % os.getpid()
    prefix = "test" if daemon.engine == "sqlite" else None
    got = _run_steps(daemon.socket, daemon.database, prefix, _steps(daemon.engine, base + "_n"))
    env = dict(os.environ, DBMGR_NATIVE="0")
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, os.path.dirname(os.path.abspath(__file__)), daemon.engine,
         daemon.socket, daemon.database or "", prefix or "", base + "_c"],
        env=env, capture_output=True, text=True, timeout=120)
    assert child.returncode == 0, child.stderr
    want = json.loads(child.stdout)
    got = json.loads(json.dumps(got))  # the same JSON round trip as the child's output
    # The table names differ (_n, _c); nothing else may.
    assert len(got) == len(want)
    for k, (g, w) in enumerate(zip(got, want)):
        assert g == w, "step %d: %r" % (k, _steps(daemon.engine, base)[k][0])
    # and the steps did something: errors of three kinds, rows of every type
    errors = [r["error"] for r in got if "error" in r]
    assert errors == ["IntegrityError", "ProgrammingError", "ProgrammingError"]
    types = {c[0] for r in got for row in r.get("rows", []) for c in row}
    assert {"int", "str", "float", "bytes", "NoneType"} <= types


class Color(enum.IntEnum):
    RED = 7


class Text(str):
    pass


def test_odd_parameters(daemon):
    with daemon.connect(autocommit=True) as c:
        cur = c.cursor()
        # subclasses of int and str are sent as what they are
        cur.execute("SELECT ?, ?", (Color.RED, Text("sub")))
        assert cur.fetchall() == [(7, "sub")]
        # integers outside int64: DataError 22003, before anything is sent
        with pytest.raises(dbmgr.DataError) as e:
            cur.execute("SELECT ?", (2**63,))
        assert e.value.sqlstate == "22003"
        with pytest.raises(dbmgr.DataError):
            cur.execute("SELECT ?", (-2**63 - 1,))
        # a type the driver cannot send
        with pytest.raises(dbmgr.ProgrammingError, match="cannot send a object"):
            cur.execute("SELECT ?", (object(),))
        with pytest.raises(dbmgr.DataError, match="finite"):
            cur.execute("SELECT ?", (decimal.Decimal("NaN"),))
        # text that is not valid UTF-8 (a lone surrogate) fails in Python, not in C
        with pytest.raises(UnicodeEncodeError):
            cur.execute("SELECT ?", ("\udc80",))
        with pytest.raises((UnicodeEncodeError, dbmgr.ProgrammingError)):
            cur.execute("SELECT '\udc80'")
        # the SQL must be text
        with pytest.raises(dbmgr.ProgrammingError):
            cur.execute(b"SELECT 1")
        # many parameters: more than the C path keeps on its stack
        n = 300
        cur.execute("SELECT " + ", ".join("?" for _ in range(n)),
                    tuple(("v%d" % i) if i % 2 else i for i in range(n)))
        row = cur.fetchone()
        assert list(row) == [("v%d" % i) if i % 2 else i for i in range(n)]
        # after all that the connection still works
        cur.execute("SELECT 1")
        assert cur.fetchall() == [(1,)]


def test_adapter_failures_leak_nothing(daemon):
    # A failing parameter late in a long list: the earlier adapted values are released
    # (refcounts back where they were) and nothing reaches the daemon.
    if _capi.native is None:
        pytest.skip("dbmgr._native is not built")
    d = decimal.Decimal("1.25")
    before = sys.getrefcount(d)
    with daemon.connect(autocommit=True) as c:
        cur = c.cursor()
        for _ in range(100):
            with pytest.raises(dbmgr.ProgrammingError):
                cur.execute("SELECT ?, ?, ?", (d, datetime.date(2026, 1, 1), object()))
        assert sys.getrefcount(d) == before
        with pytest.raises(TypeError, match="not str or bytes"):
            _capi.native.execute(0, c._manager.value, 0, "SELECT ?", (d,), lambda k, p: 42)
        with pytest.raises(ZeroDivisionError):
            _capi.native.execute(0, c._manager.value, 0, "SELECT ?", (d,), lambda k, p: 1 / 0)
        with pytest.raises(TypeError):
            _capi.native.execute(0, c._manager.value, 0, "SELECT 1", [1], None)
        with pytest.raises(ValueError):
            _capi.native.execute(0, 0, 0, "SELECT 1", (), None)  # no manager
        cur.execute("SELECT ?", (d,))
        assert cur.fetchall() in ([("1.25",)], [(decimal.Decimal("1.25"),)], [(1.25,)])


def test_statement_releases_the_gil(daemon):
    # Two threads, two connections, each statement waits on the server for 0.5 s: together
    # they take well under the 1 s they would take one after the other.
    if daemon.engine != "postgresql":
        pytest.skip("needs a server-side sleep (PostgreSQL pg_sleep)")
    ticks = []
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(time.monotonic())
            time.sleep(0.01)

    def sleeper():
        with daemon.connect(autocommit=True) as c:
            c.cursor().execute("SELECT pg_sleep(0.5)")

    t0 = time.monotonic()
    workers = [threading.Thread(target=sleeper) for _ in range(2)]
    tick = threading.Thread(target=ticker)
    tick.start()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.monotonic() - t0
    stop.set()
    tick.join()
    assert elapsed < 0.9, elapsed
    # and a Python thread kept running while both waited
    assert len([t for t in ticks if t0 + 0.1 < t < t0 + 0.45]) >= 10


def test_session_commit_and_rollback(daemon, table):
    # A session's statements, commit and rollback on the C path; a failed statement's error
    # and the rollback after it.
    with daemon.connect() as c:
        cur = c.cursor()
        cur.execute("CREATE TABLE %s (x BIGINT PRIMARY KEY)" % table)
        c.commit()
        cur.execute("INSERT INTO %s VALUES (?)" % table, (1,))
        assert c.in_transaction
        c.rollback()
        assert not c.in_transaction
        cur.execute("INSERT INTO %s VALUES (?)" % table, (2,))
        c.commit()
        cur.execute("INSERT INTO %s VALUES (?)" % table, (3,))
        with pytest.raises(dbmgr.IntegrityError):
            cur.execute("INSERT INTO %s VALUES (?)" % table, (2,))
        c.rollback()
    with daemon.connect(autocommit=True) as c:
        cur = c.cursor()
        cur.execute("SELECT x FROM %s ORDER BY x" % table)
        assert cur.fetchall() == [(2,)]
