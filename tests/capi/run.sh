#!/usr/bin/env bash
# The C interface test (meson test c_api): builds tests/capi/c_api_test.c with a C compiler
# and `pkg-config dbmgr` (the build tree's uninstalled dbmgr.pc), as a user would, then runs
# it against a real dbmgrd on SQLite and one on the test suite's PostgreSQL
# (DBMGR_TEST_PG_* from scripts/test-servers.sh).
# Usage: run.sh BUILD_DIR SOURCE_DIR DBMGRD CC [SANITIZE]   (SANITIZE: b_sanitize's value)
set -euo pipefail
build=$1 src=$2 dbmgrd=$3 cc=$4 sanitize=${5:-none}
tmp=$(mktemp -d /tmp/dbmgr-capi.XXXXXX)
pid=
cleanup() {
  if [[ -n $pid ]]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

flags=(-std=c11 -Wall -Wextra -Werror -pedantic)
link=("$cc")
if [[ $sanitize != none && -n $sanitize ]]; then
  # The library was built by clang++ with these sanitizers (b_lundef=false): the program
  # brings their runtimes, the C++ parts of UBSan's included, so clang++ links it.
  flags+=("-fsanitize=$sanitize")
  link=(clang++ "-fsanitize=$sanitize")
fi
export PKG_CONFIG_PATH=$build/meson-uninstalled
# shellcheck disable=SC2046
"$cc" "${flags[@]}" -c "$src/tests/capi/c_api_test.c" -o "$tmp/c_api_test.o" \
  $(pkg-config --cflags dbmgr)
# shellcheck disable=SC2046
"${link[@]}" "$tmp/c_api_test.o" -o "$tmp/c_api_test" $(pkg-config --libs dbmgr) \
  -Wl,-rpath,"$build/client"
# The program needs the shared library and the C header only.
if ldd "$tmp/c_api_test" | grep -q 'libdbmgr.so.0 => not found'; then
  echo "run.sh: libdbmgr.so.0 not found for the test program" >&2
  exit 1
fi

start() {  # ENGINE: a dbmgrd on $tmp/ENGINE.sock, the environment naming its default database
  local engine=$1
  mkdir -p "$tmp/$engine"
  (cd "$tmp/$engine" && exec env -u DBMGR_CONFIG -u DBMGR_SOCKET DATABASE_PATH="$tmp/$engine" \
    "$dbmgrd" --socket "$tmp/$engine.sock" --log-level warn >"$tmp/$engine.log" 2>&1) &
  pid=$!
  for _ in $(seq 1 1000); do
    [[ -S $tmp/$engine.sock ]] && return 0
    kill -0 "$pid" 2>/dev/null || { cat "$tmp/$engine.log" >&2; exit 1; }
    sleep 0.01
  done
  echo "run.sh: dbmgrd ($engine) did not listen in 10 s" >&2
  cat "$tmp/$engine.log" >&2
  exit 1
}
stop() {
  kill "$pid"
  wait "$pid" || { echo "run.sh: dbmgrd did not exit cleanly" >&2; cat "$tmp"/*.log >&2; exit 1; }
  pid=
}

unset DATABASE_TYPE DATABASE_NAME DATABASE_HOST DATABASE_PORT DATABASE_USER DATABASE_PASSWORD
start sqlite
DBMGR_SOCKET=$tmp/sqlite.sock "$tmp/c_api_test" sqlite capi test
stop

if [[ -z ${DBMGR_TEST_PG_HOST:-} ]]; then
  # docs/testing.md: a test whose server is not set up skips (meson: 77), after what it could do.
  echo "run.sh: the SQLite part passed; PostgreSQL skipped: no DBMGR_TEST_PG_* (scripts/test-servers.sh start DIR pg)"
  exit 77
fi
export DATABASE_TYPE=postgresql DATABASE_HOST=$DBMGR_TEST_PG_HOST DATABASE_PORT=$DBMGR_TEST_PG_PORT \
  DATABASE_USER=$DBMGR_TEST_PG_USER DATABASE_PASSWORD=$DBMGR_TEST_PG_PASSWORD \
  DATABASE_NAME=$DBMGR_TEST_PG_DB
start postgresql
DBMGR_SOCKET=$tmp/postgresql.sock "$tmp/c_api_test" postgresql
stop
