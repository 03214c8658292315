"""SQLAlchemy's own dialect compliance suite (sqlalchemy.testing.suite, as Debian ships it),
run in one go nine times: through dbmgr (`sqlite+dbmgr`, `postgresql+dbmgr`, `mysql+dbmgr` and
their asyncio forms `..._async`, each on a real dbmgrd this script starts) and, as the
reference, through SQLAlchemy's usual drivers on the same kinds of database directly
(`sqlite+pysqlite` on a file, `postgresql+psycopg2` and `mysql+pymysql` on the test servers). Every test that passes on the reference must pass through dbmgr, except those listed
with their reason in expected_differences.txt; a listed one that no longer differs fails too
(remove it). Prints the pass/fail/skip counts of all nine runs (docs/python.md reports them).

Run by meson test sqlalchemy_suite (tests/python/meson.build): $DBMGRD, $DBMGR_LIBRARY,
$PYTHONPATH, DBMGR_TEST_PG_* and DBMGR_TEST_MARIADB_* (scripts/test-servers.sh) as for
python_dbapi. A server that is not set up is left out, and the run says so.
"""

import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))

from testdaemon import Daemon  # noqa: E402

# A database of the run's own on PostgreSQL and MariaDB (two runs at once do not meet there;
# on MariaDB the suite's schemas test_schema and test_schema_2 are databases of fixed names).
SUITE_DB = "dbmgr_sasuite_%d" % os.getpid()
# Each run through dbmgr: the blocking dialects and their asyncio forms (create_async_engine;
# SQLAlchemy's plugin runs each test in a greenlet for them).
DRIVERS = ("dbmgr", "dbmgr_async")


def run_pytest(work, name, dburi):
    """One run of the suite against `dburi`, in its own folder `work` (SQLAlchemy reads
    its [sqla_testing] section from test.cfg there; pysqlite's ATTACHed files land there).
    Returns {test id: (outcome, message)}."""
    os.makedirs(work, exist_ok=True)
    with open(os.path.join(work, "test.cfg"), "w") as f:
        f.write("[sqla_testing]\n"
                "requirement_cls = sqlalchemy.testing.requirements:SuiteRequirements\n"
                "profile_file = %s\n" % os.path.join(work, "profiles.txt"))
    xml = os.path.join(work, "result.xml")
    log = os.path.join(work, "pytest.log")
    cmd = [sys.executable, "-m", "pytest", "-q", "-c", os.path.join(HERE, "pytest.ini"),
           "--rootdir", HERE, "--confcutdir", HERE, os.path.join(HERE, "test_suite.py"),
           "--dburi", dburi, "--junitxml", xml]
    with open(log, "wb") as out:
        rc = subprocess.run(cmd, cwd=work, stdout=out, stderr=subprocess.STDOUT,
                            timeout=240).returncode
    if not os.path.exists(xml) or rc not in (0, 1):  # 1: some tests failed
        with open(log, "rb") as f:
            tail = f.read()[-4000:].decode("utf-8", "replace")
        raise RuntimeError("%s: pytest exited %d without results:\n%s" % (name, rc, tail))
    return load(xml)


def load(xml):
    results = {}
    for tc in ET.parse(xml).getroot().iter("testcase"):
        # Test classes carry the dialect in their names (FooTest_sqlite+dbmgr_3_40_1).
        cls = re.sub(r"_(sqlite|postgresql|mysql|mariadb)\+\w+.*$", "", tc.get("classname").split(".")[-1])
        outcome, message = "passed", ""
        for child in tc:
            if child.tag in ("failure", "error", "skipped"):
                outcome, message = child.tag, (child.get("message") or "").splitlines()
                message = message[0][:200] if message else ""
                break
        results[cls + "::" + tc.get("name")] = (outcome, message)
    return results


def read_expected():
    expected = []
    with open(os.path.join(HERE, "expected_differences.txt")) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                engine, prefix = line.split(None, 1)
                expected.append((engine, prefix.strip()))
    return expected


def counts(results):
    c = collections.Counter(v[0] for v in results.values())
    return "%d passed, %d failed, %d errors, %d skipped" % (
        c["passed"], c["failure"], c["error"], c["skipped"])


def compare(engine, driver, ref, via, expected, problems):
    used = set()
    for test in sorted(ref):
        if ref[test][0] != "passed" or via.get(test, ("absent",))[0] == "passed":
            continue
        match = [e for e in expected if e[0] == engine and
                 (test == e[1] or (e[1].endswith("::") and test.startswith(e[1])))]
        outcome, message = via.get(test, ("absent", ""))
        if match:
            used.update(match)
            print("  expected: %s: %s (%s)" % (test, outcome, message))
        else:
            problems.append("%s+%s: %s passes on the reference, through dbmgr: %s: %s"
                            % (engine, driver, test, outcome, message))
    for e in expected:
        if e[0] == engine and e not in used:
            problems.append("%s+%s: expected_differences.txt lists %s, which no longer "
                            "differs (remove it)" % (engine, driver, e[1]))
    better = [t for t in sorted(via) if via[t][0] == "passed" and ref.get(t, ("",))[0] != "passed"]
    for t in better:
        print("  passes through dbmgr only: %s (reference: %s)" % (t, ref.get(t, ("absent",))[0]))


def pg_admin(sql_list):
    import psycopg2
    c = psycopg2.connect(host=os.environ["DBMGR_TEST_PG_HOST"],
                         port=os.environ["DBMGR_TEST_PG_PORT"],
                         user=os.environ["DBMGR_TEST_PG_USER"],
                         password=os.environ["DBMGR_TEST_PG_PASSWORD"],
                         dbname=sql_list[0])
    c.autocommit = True
    with c.cursor() as cur:
        for sql in sql_list[1:]:
            cur.execute(sql)
    c.close()


def mariadb_admin(sql_list):
    import pymysql
    c = pymysql.connect(unix_socket=os.environ["DBMGR_TEST_MARIADB_SOCKET"],
                        user=os.environ["DBMGR_TEST_MARIADB_USER"],
                        password=os.environ["DBMGR_TEST_MARIADB_PASSWORD"], autocommit=True)
    with c.cursor() as cur:
        for sql in sql_list:
            cur.execute(sql)
    c.close()


def run_engine(top, engine, ref_name, ref_uri, daemon_kw, dbmgr_uri, expected, problems):
    """The reference run, then one run per dbmgr driver, each on a dbmgrd of its own."""
    ref = run_pytest(os.path.join(top, engine + "-ref"), ref_name, ref_uri)
    print("%-33s %s" % (ref_name + " (reference):", counts(ref)))
    for driver in DRIVERS:
        d = Daemon(**daemon_kw)
        try:
            via = run_pytest(os.path.join(top, engine + "-" + driver), engine + "+" + driver,
                             dbmgr_uri % (engine + "+" + driver, d.socket))
        finally:
            d.stop()
        print("%-33s %s" % (engine + "+" + driver + ":", counts(via)))
        compare(engine, driver, ref, via, expected, problems)


def main():
    expected = read_expected()
    problems = []
    top = tempfile.mkdtemp(prefix="dbmgr-sasuite.")
    try:
        # SQLite: a file of the reference's own, and one dbmgrd creates under prefix test.
        run_engine(top, "sqlite", "sqlite+pysqlite",
                   "sqlite:///" + os.path.join(top, "sqlite-ref", "ref.db"),
                   dict(engine="sqlite"), "%s:///sasuite?prefix=test&socket=%s",
                   expected, problems)

        # A database of its own on each server: the suite lists every table of its schema,
        # and other tests use the test database at the same time. The suite expects the
        # schemas test_schema and test_schema_2 to exist (on MariaDB: databases).
        if os.environ.get("DBMGR_TEST_PG_HOST"):
            admin_db = os.environ["DBMGR_TEST_PG_DB"]
            pg_admin([admin_db, "DROP DATABASE IF EXISTS %s WITH (FORCE)" % SUITE_DB,
                      "CREATE DATABASE %s" % SUITE_DB])
            try:
                pg_admin([SUITE_DB, "CREATE SCHEMA test_schema", "CREATE SCHEMA test_schema_2"])
                run_engine(top, "postgresql", "postgresql+psycopg2",
                           "postgresql+psycopg2://%s:%s@/%s?host=%s&port=%s" % (
                               os.environ["DBMGR_TEST_PG_USER"],
                               os.environ["DBMGR_TEST_PG_PASSWORD"], SUITE_DB,
                               os.environ["DBMGR_TEST_PG_HOST"], os.environ["DBMGR_TEST_PG_PORT"]),
                           dict(engine="postgresql", pg_database=SUITE_DB),
                           "%s:///" + SUITE_DB + "?socket=%s", expected, problems)
            finally:
                pg_admin([admin_db, "DROP DATABASE IF EXISTS %s WITH (FORCE)" % SUITE_DB])
        else:
            print("PostgreSQL not run: no test server (scripts/test-servers.sh start DIR pg)")
            expected = [e for e in expected if e[0] != "postgresql"]

        if os.environ.get("DBMGR_TEST_MARIADB_SOCKET"):
            dbs = (SUITE_DB, "test_schema", "test_schema_2")
            mariadb_admin(["DROP DATABASE IF EXISTS %s" % d for d in dbs] +
                          ["CREATE DATABASE %s" % d for d in dbs])
            try:
                run_engine(top, "mysql", "mysql+pymysql",
                           "mysql+pymysql://%s:%s@/%s?unix_socket=%s&charset=utf8mb4" % (
                               os.environ["DBMGR_TEST_MARIADB_USER"],
                               os.environ["DBMGR_TEST_MARIADB_PASSWORD"], SUITE_DB,
                               os.environ["DBMGR_TEST_MARIADB_SOCKET"]),
                           dict(engine="mariadb", mariadb_database=SUITE_DB),
                           "%s:///" + SUITE_DB + "?socket=%s", expected, problems)
            finally:
                mariadb_admin(["DROP DATABASE IF EXISTS %s" % d for d in dbs])
        else:
            print("MariaDB not run: no test server (scripts/test-servers.sh start DIR mariadb)")
            expected = [e for e in expected if e[0] != "mysql"]
    finally:
        shutil.rmtree(top, ignore_errors=True)
    for p in problems:
        print("FAIL " + p)
    print("sqlalchemy_suite: %s" % ("FAILED" if problems else "ok"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
