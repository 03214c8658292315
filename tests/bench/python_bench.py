"""Python clients side by side (issue 15, docs/benchmarks.md "Python clients"): worker
processes, as gunicorn's are, each with its own connection, running `select1` (SELECT 1) and
`point-select` (a primary-key lookup in 100,000 rows) for a fixed time, in one run:

  pg-dbmgr          the dbmgr DB-API driver (one-shots) to a dbmgrd on the PostgreSQL below,
                    pool 20 without overflow, like PgBouncer's; its C binding dbmgr._native
  pg-dbmgr-ctypes   the same on the ctypes binding alone (DBMGR_NATIVE=0), with --ctypes
  pg-psycopg2       psycopg2 straight to PostgreSQL (autocommit)
  pg-pgbouncer      psycopg2 through PgBouncer (transaction pooling, pool 20), when
                    DBMGR_TEST_PGBOUNCER_HOST/PORT name one (scripts/test-servers.sh ... pgbouncer)
  sqlite-dbmgr      the dbmgr driver to a dbmgrd serving an SQLite file
  sqlite-sqlite3    Python's sqlite3 module in each process, on the same file (WAL)

Targets alternate within each point and round. With --cxx-bench (dbmgr-bench), it also runs
the C++ client's select1 at 1 client against the same dbmgrd, so the Python driver's own cost
per statement is the difference of the two means in the same run.

  /usr/bin/python3 tests/bench/python_bench.py --processes 1,16,64 --duration 4 --rounds 2 \\
      --cxx-bench build-test/tests/bench/dbmgr-bench --csv /tmp/py.csv

Needs $DBMGRD, $DBMGR_LIBRARY, PYTHONPATH=client/python and DBMGR_TEST_PG_* (source the
servers.env of scripts/test-servers.sh), python3-psycopg2.
"""

import argparse
import csv
import multiprocessing
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time

ROWS = 100_000


def pg_kw(host_env="DBMGR_TEST_PG_HOST", port_env="DBMGR_TEST_PG_PORT"):
    return dict(host=os.environ[host_env], port=os.environ[port_env],
                user=os.environ["DBMGR_TEST_PG_USER"],
                password=os.environ["DBMGR_TEST_PG_PASSWORD"],
                dbname=os.environ["DBMGR_TEST_PG_DB"])


def connect(target, env):
    """(execute(sql, params), fetchone) for one process's connection."""
    if target in ("pg-psycopg2", "pg-pgbouncer"):
        import psycopg2
        if target == "pg-psycopg2":
            c = psycopg2.connect(**pg_kw())
        else:
            c = psycopg2.connect(**pg_kw("DBMGR_TEST_PGBOUNCER_HOST", "DBMGR_TEST_PGBOUNCER_PORT"))
        c.autocommit = True
        cur = c.cursor()
        return cur, "%s"
    if target == "sqlite-sqlite3":
        c = sqlite3.connect(env["sqlite_file"], isolation_level=None, timeout=30)
        return c.cursor(), "?"
    if target.endswith("-ctypes"):
        os.environ["DBMGR_NATIVE"] = "0"
    import dbmgr
    from dbmgr import _capi
    if (_capi.native is None) != target.endswith("-ctypes"):
        raise RuntimeError("%s: wrong binding (dbmgr._native %s)" % (target, _capi.native))
    if target.startswith("pg-dbmgr"):
        c = dbmgr.connect(socket=env["pg_socket"], autocommit=True)
    else:
        c = dbmgr.connect(socket=env["sqlite_socket"], database="pybench", autocommit=True)
    return c.cursor(), "?"


def worker(target, workload, env, barrier, duration, out):
    cur, ph = connect(target, env)
    if workload == "select1":
        sql, gen = "SELECT 1", lambda: ()
    else:
        sql = "SELECT abalance FROM py_accounts WHERE aid = " + ph
        rnd = random.Random(os.getpid())
        gen = lambda: (rnd.randint(1, ROWS),)  # noqa: E731
    for _ in range(50):
        cur.execute(sql, gen())
        cur.fetchone()
    barrier.wait()
    n = 0
    t0 = time.perf_counter()
    end = t0 + duration
    while True:
        cur.execute(sql, gen())
        cur.fetchone()
        n += 1
        if n % 16 == 0 and time.perf_counter() >= end:
            break
    out.put((n, time.perf_counter() - t0, time.process_time()))


def run_point(target, workload, procs, duration, env):
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(procs)
    out = ctx.Queue()
    ps = [ctx.Process(target=worker, args=(target, workload, env, barrier, duration, out))
          for _ in range(procs)]
    for p in ps:
        p.start()
    results = [out.get(timeout=duration + 120) for _ in ps]
    for p in ps:
        p.join()
        if p.exitcode != 0:
            raise RuntimeError("%s worker exited %d" % (target, p.exitcode))
    txns = sum(r[0] for r in results)
    secs = max(r[1] for r in results)
    cpu = sum(r[2] for r in results)
    return txns / secs, secs * procs / txns * 1e6, cpu / txns * 1e6


def start_dbmgrd(work, name, env_extra, yaml=None):
    sock = os.path.join(work, name + ".sock")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("DATABASE_") and k not in ("DBMGR_CONFIG", "DBMGR_SOCKET")}
    env.update(env_extra)
    args = [os.environ["DBMGRD"], "--socket", sock, "--log-level", "warn"]
    if yaml:
        path = os.path.join(work, name + ".yaml")
        with open(path, "w") as f:
            f.write(yaml)
        args += ["--config", path]
    log = open(os.path.join(work, name + ".log"), "wb")
    p = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=work)
    deadline = time.monotonic() + 15
    while True:
        try:
            # A throwaway process: the parent never holds a dbmgr connection across fork.
            r = subprocess.run([sys.executable, "-c", "import dbmgr,sys; dbmgr.connect(socket=sys.argv[1]).close()",
                                sock], capture_output=True, timeout=10)
            if r.returncode == 0:
                break
        except subprocess.TimeoutExpired:
            pass
        if time.monotonic() > deadline or p.poll() is not None:
            raise RuntimeError("dbmgrd %s did not start" % name)
        time.sleep(0.1)
    return p, sock


def setup_data(env):
    import psycopg2
    c = psycopg2.connect(**pg_kw())
    c.autocommit = True
    cur = c.cursor()
    cur.execute("DROP TABLE IF EXISTS py_accounts")
    cur.execute("CREATE TABLE py_accounts (aid integer PRIMARY KEY, abalance integer NOT NULL)")
    cur.execute("INSERT INTO py_accounts SELECT g, g %% 1000 FROM generate_series(1, %s) g", (ROWS,))
    cur.execute("VACUUM ANALYZE py_accounts")
    c.close()
    s = sqlite3.connect(env["sqlite_file"], isolation_level=None)
    s.execute("PRAGMA journal_mode=WAL")
    s.execute("DROP TABLE IF EXISTS py_accounts")
    s.execute("CREATE TABLE py_accounts (aid INTEGER PRIMARY KEY, abalance INTEGER NOT NULL)")
    s.execute("BEGIN")
    s.executemany("INSERT INTO py_accounts VALUES (?, ?)", ((i, i % 1000) for i in range(1, ROWS + 1)))
    s.execute("COMMIT")
    s.close()


def cxx_select1(cxx, sock, duration, rounds, work):
    """The C++ client's select1 at 1 client through the same dbmgrd, read-write one-shots as
    the Python driver's with autocommit: (mean us per statement, client CPU us per statement)."""
    path = os.path.join(work, "cxx.csv")
    args = [cxx, "--targets", "pg-dbmgrd", "--workloads", "select1", "--clients", "1",
            "--dbmgr-reads", "read-write",
            "--duration", str(duration), "--rounds", str(rounds), "--scale", "0.01",
            "--pg-host", os.environ["DBMGR_TEST_PG_HOST"], "--pg-port", os.environ["DBMGR_TEST_PG_PORT"],
            "--pg-user", os.environ["DBMGR_TEST_PG_USER"],
            "--pg-password", os.environ["DBMGR_TEST_PG_PASSWORD"],
            "--pg-db", os.environ["DBMGR_TEST_PG_DB"], "--dbmgr-socket", sock, "--csv", path]
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, timeout=600)
    with open(path) as f:
        for row in csv.DictReader(f):
            if row["kind"] == "point" and row["round"] == "all":
                return 1e6 / float(row["tps"]), float(row["client_cpu_ms_per_1k"])
    raise RuntimeError("no result from dbmgr-bench")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--processes", default="1,16,64")
    ap.add_argument("--workloads", default="select1,point-select")
    ap.add_argument("--duration", type=float, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--cxx-bench")
    ap.add_argument("--csv")
    ap.add_argument("--ctypes", action="store_true",
                    help="also run pg-dbmgr-ctypes (the driver without dbmgr._native)")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="dbmgr-pybench.")
    env = {"sqlite_file": os.path.join(work, "pybench.db")}
    daemons = []
    try:
        setup_data(env)
        p, env["pg_socket"] = start_dbmgrd(work, "pg", {
            "DATABASE_TYPE": "postgresql", "DATABASE_HOST": os.environ["DBMGR_TEST_PG_HOST"],
            "DATABASE_PORT": os.environ["DBMGR_TEST_PG_PORT"],
            "DATABASE_USER": os.environ["DBMGR_TEST_PG_USER"],
            "DATABASE_PASSWORD": os.environ["DBMGR_TEST_PG_PASSWORD"],
            "DATABASE_NAME": os.environ["DBMGR_TEST_PG_DB"]},
            "pool:\n  pool_size: 20\n  max_overflow: 0\n")
        daemons.append(p)
        p, env["sqlite_socket"] = start_dbmgrd(work, "sqlite", {"DATABASE_PATH": work,
                                                               "DATABASE_NAME": "pybench"})
        daemons.append(p)
        targets = ["pg-dbmgr"] + (["pg-dbmgr-ctypes"] if a.ctypes else []) + ["pg-psycopg2"]
        if os.environ.get("DBMGR_TEST_PGBOUNCER_HOST"):
            targets.append("pg-pgbouncer")
        else:
            print("pg-pgbouncer not run: no DBMGR_TEST_PGBOUNCER_HOST")
        targets += ["sqlite-dbmgr", "sqlite-sqlite3"]
        rows = []
        print("%-13s %5s %-15s %10s %10s %12s" % ("workload", "procs", "target", "tps",
                                                  "us/stmt", "cli cpu us"))
        for wl in a.workloads.split(","):
            for n in [int(x) for x in a.processes.split(",")]:
                acc = {t: [] for t in targets}
                for _ in range(a.rounds):
                    for t in targets:
                        acc[t].append(run_point(t, wl, n, a.duration, env))
                for t in targets:
                    tps = sum(r[0] for r in acc[t]) / len(acc[t])
                    lat = sum(r[1] for r in acc[t]) / len(acc[t])
                    cpu = sum(r[2] for r in acc[t]) / len(acc[t])
                    rows.append(dict(workload=wl, processes=n, target=t, tps=round(tps),
                                     us_per_stmt=round(lat, 1), client_cpu_us=round(cpu, 1),
                                     rounds=" ".join(str(round(r[0])) for r in acc[t])))
                    print("%-13s %5d %-15s %10.0f %10.1f %12.1f" % (wl, n, t, tps, lat, cpu))
                by = {r["target"]: r["tps"] for r in rows if r["workload"] == wl and r["processes"] == n}
                ratios = ["dbmgr/psycopg2 %.2f" % (by["pg-dbmgr"] / by["pg-psycopg2"])]
                if "pg-pgbouncer" in by:
                    ratios.append("dbmgr/pgbouncer %.2f" % (by["pg-dbmgr"] / by["pg-pgbouncer"]))
                ratios.append("sqlite dbmgr/sqlite3 %.2f" % (by["sqlite-dbmgr"] / by["sqlite-sqlite3"]))
                print("    ratios: " + ", ".join(ratios))
        if a.cxx_bench:
            # The driver's own cost is what its process spends per statement (CPU, user and
            # system) beyond what the C++ client's spends for the same one-shot: a difference
            # of CPU, which moves far less between runs than one of two ~100 us latencies.
            cxx, cxx_cpu = cxx_select1(a.cxx_bench, env["pg_socket"], a.duration, a.rounds, work)
            for t in ["pg-dbmgr"] + (["pg-dbmgr-ctypes"] if a.ctypes else []):
                runs = [run_point(t, "select1", 1, a.duration, env) for _ in range(a.rounds)]
                py = sum(r[1] for r in runs) / len(runs)
                py_cpu = sum(r[2] for r in runs) / len(runs)
                print("select1, 1 client through the same dbmgrd: C++ client %.1f us (CPU %.1f us), "
                      "%s %.1f us (CPU %.1f us) per statement: the driver's own cost %.1f us of CPU"
                      % (cxx, cxx_cpu, t, py, py_cpu, py_cpu - cxx_cpu))
                name = "cxx-vs-python" if t == "pg-dbmgr" else "cxx-vs-python-ctypes"
                rows.append(dict(workload="select1", processes=1, target=name,
                                 tps="", us_per_stmt=round(py - cxx, 1),
                                 client_cpu_us=round(py_cpu - cxx_cpu, 1),
                                 rounds="cxx %.1f us cpu %.1f; python %.1f us cpu %.1f"
                                        % (cxx, cxx_cpu, py, py_cpu)))
        if a.csv:
            with open(a.csv, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=list(rows[0]))
                w.writeheader()
                w.writerows(rows)
    finally:
        for p in daemons:
            p.terminate()
            p.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)  # the SQLite file with it
        drop_pg_data()


def drop_pg_data():
    import psycopg2
    c = psycopg2.connect(**pg_kw())
    c.autocommit = True
    c.cursor().execute("DROP TABLE IF EXISTS py_accounts")
    c.close()


if __name__ == "__main__":
    main()
