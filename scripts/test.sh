#!/usr/bin/env bash
# Installs what is missing, builds dbmgr twice (g++ and clang with ASan/UBSan + libFuzzer)
# and runs every test in both builds. Ends with the line "N passed, N failed, N skipped"
# counted from the real results, and exits non-zero if anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh test || exit 1

status=0
step() { echo; echo "==== $*"; }

# The release-like build: g++, warnings on.
step "build (g++)"
if [[ ! -f build-test/build.ninja ]]; then
  meson setup build-test -Dtests=true || exit 1
fi
ninja -C build-test || exit 1

# The sanitizer build: clang, ASan + UBSan, libFuzzer targets.
step "build (clang, ASan+UBSan, fuzz)"
if [[ ! -f build-asan/build.ninja ]]; then
  CC=clang CXX=clang++ meson setup build-asan -Dtests=true -Dfuzz=true \
    -Db_sanitize=address,undefined -Db_lundef=false || exit 1
fi
ninja -C build-asan || exit 1

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# Private PostgreSQL and MariaDB servers on Unix sockets under a temp folder, for the
# integration tests (scripts/test-servers.sh, docs/testing.md). Their DBMGR_TEST_* variables
# are exported to the test processes; the trap stops them however this script ends.
step "test servers (PostgreSQL, MariaDB)"
servers_dir=$(mktemp -d /tmp/dbmgr-test.XXXXXX) || exit 1
stop_servers() {
  bash scripts/test-servers.sh stop "$servers_dir"
  rm -rf "$servers_dir"
}
trap 'stop_servers >/dev/null 2>&1' EXIT
trap 'exit 130' INT HUP TERM # so that the EXIT trap runs on a signal too
if ! bash scripts/test-servers.sh start "$servers_dir" pg mariadb; then
  echo "test.sh: the test servers did not start" >&2
  exit 1
fi
# shellcheck disable=SC1091
source "$servers_dir/servers.env"

step "tests (g++ build)"
meson test -C build-test --print-errorlogs --num-processes 2 || status=1
step "tests (ASan+UBSan build)"
meson test -C build-asan --print-errorlogs --num-processes 2 || status=1

step "stop test servers"
stop_servers
trap - EXIT INT HUP TERM

step "summary"
python3 scripts/summarize-tests.py build-test/meson-logs/testlog.json \
  build-asan/meson-logs/testlog.json || status=1
exit $status
