#!/usr/bin/env bash
# Builds dbmgr and runs dbmgrd in the foreground on its embedded SQLite default:
# databases are files under ./run/data, the socket is ./run/dbmgrd.sock.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh build
[[ -f build/build.ninja ]] || meson setup build -Dtests=false
ninja -C build
mkdir -p run/data
if [[ ! -x build/daemon/dbmgrd ]]; then
  echo "run.sh: build finished; dbmgrd does not exist yet (it arrives with the daemon issue)"
  exit 0
fi
export DATABASE_PATH="${DATABASE_PATH:-$PWD/run/data}"
exec build/daemon/dbmgrd --socket "$PWD/run/dbmgrd.sock" --log-level "${DBMGR_LOG_LEVEL:-info}" "$@"
