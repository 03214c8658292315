"""Fixtures of the DB-API tests: a real dbmgrd ($DBMGRD) on SQLite files in a temp folder
and one on the test suite's PostgreSQL (DBMGR_TEST_PG_* from scripts/test-servers.sh),
started by the tests themselves. Run by meson test python_dbapi (tests/python/meson.build)."""

import os

import pytest

from testdaemon import Daemon


def _engines():
    return ["sqlite", "postgresql"]


def _start(engine):
    if engine == "postgresql" and not os.environ.get("DBMGR_TEST_PG_HOST"):
        pytest.skip("PostgreSQL test server not set up (scripts/test-servers.sh start DIR pg)")
    if engine == "mariadb" and not os.environ.get("DBMGR_TEST_MARIADB_SOCKET"):
        pytest.skip("MariaDB test server not set up (scripts/test-servers.sh start DIR mariadb)")
    return Daemon(engine)


@pytest.fixture(scope="session", params=_engines())
def daemon(request):
    d = _start(request.param)
    yield d
    d.stop()


@pytest.fixture
def own_daemon(request):
    """A daemon for one test (which may kill it); the engine is the test's parameter."""
    d = _start(request.param)
    yield d
    if d.proc.poll() is None:
        d.stop()
    else:
        d.close()


_counter = [0]


@pytest.fixture
def table(daemon):
    """A unique table name; the table is dropped afterwards."""
    _counter[0] += 1
    name = "py_%d_%d" % (os.getpid(), _counter[0])
    yield name
    with daemon.connect(autocommit=True) as c:
        c.cursor().execute("DROP TABLE IF EXISTS " + name)
