"""A dbmgrd process for the Python tests (tests/python, tests/sqlalchemy): $DBMGRD on SQLite
files in a temp folder, or on the test suite's PostgreSQL (DBMGR_TEST_PG_* from
scripts/test-servers.sh). No pytest in here: tests/sqlalchemy/run_suite.py uses it too."""

import os
import shutil
import signal
import socket as socketlib
import subprocess
import tempfile
import time

import dbmgr


class Daemon:
    """A dbmgrd process on its own socket and folder."""

    def __init__(self, engine, pg_database=None, mariadb_database=None):
        self.engine = engine
        self.dir = tempfile.mkdtemp(prefix="dbmgr-py.")
        self.socket = os.path.join(self.dir, "dbmgrd.sock")
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("DATABASE_")
               and k not in ("DBMGR_CONFIG", "DBMGR_SOCKET", "LD_PRELOAD")}
        # LD_PRELOAD (the ASan runtime for python in the sanitizer build) is for this
        # interpreter alone: dbmgrd carries its own, statically linked.
        env["DATABASE_PATH"] = self.dir
        if "DBMGR_TEST_DAEMON_ASAN_OPTIONS" in os.environ:  # the sanitizer build's daemon
            env["ASAN_OPTIONS"] = os.environ["DBMGR_TEST_DAEMON_ASAN_OPTIONS"]
        if engine == "postgresql":
            env.update(DATABASE_TYPE="postgresql", DATABASE_HOST=os.environ["DBMGR_TEST_PG_HOST"],
                       DATABASE_PORT=os.environ["DBMGR_TEST_PG_PORT"],
                       DATABASE_USER=os.environ["DBMGR_TEST_PG_USER"],
                       DATABASE_PASSWORD=os.environ["DBMGR_TEST_PG_PASSWORD"],
                       DATABASE_NAME=pg_database or os.environ["DBMGR_TEST_PG_DB"])
        elif engine == "mariadb":
            env.update(DATABASE_TYPE="mariadb",
                       DATABASE_HOST=os.environ["DBMGR_TEST_MARIADB_SOCKET"],
                       DATABASE_USER=os.environ["DBMGR_TEST_MARIADB_USER"],
                       DATABASE_PASSWORD=os.environ["DBMGR_TEST_MARIADB_PASSWORD"],
                       DATABASE_NAME=mariadb_database or os.environ["DBMGR_TEST_MARIADB_DB"])
        self.log = open(os.path.join(self.dir, "dbmgrd.log"), "wb")
        self.proc = subprocess.Popen(
            [os.environ["DBMGRD"], "--socket", self.socket, "--log-level", "warn"],
            cwd=self.dir, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        # Await the daemon accepting connections (the socket file exists from bind(), a
        # moment before listen()), bounded.
        while not self._accepts():
            if self.proc.poll() is not None:
                raise RuntimeError("dbmgrd exited: " + self.read_log())
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("dbmgrd did not listen in 10 s: " + self.read_log())
            time.sleep(0.01)

    def _accepts(self):
        s = socketlib.socket(socketlib.AF_UNIX, socketlib.SOCK_STREAM)
        try:
            s.connect(self.socket)
            return True
        except OSError:
            return False
        finally:
            s.close()

    def read_log(self):
        with open(os.path.join(self.dir, "dbmgrd.log"), "rb") as f:
            return f.read().decode("utf-8", "replace")

    # The database a test uses: a file for SQLite, the test database for PostgreSQL.
    # SQLite creates it on demand under the prefix "test" ("test.pytest").
    @property
    def database(self):
        return "pytest" if self.engine == "sqlite" else None

    def connect(self, **kw):
        kw.setdefault("database", self.database)
        if self.engine == "sqlite":
            kw.setdefault("prefix", "test")
        return dbmgr.connect(socket=self.socket, **kw)

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                rc = self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                raise
            assert rc == 0, "dbmgrd did not exit cleanly: " + self.read_log()
        self.close()

    def close(self):
        """Removes the daemon's folder (its socket, log and SQLite files)."""
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
