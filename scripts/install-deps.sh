#!/usr/bin/env bash
# Installs the Debian 12 packages dbmgr needs that are not installed yet.
# Usage: scripts/install-deps.sh build   # what building the daemon, client and CLI needs
#        scripts/install-deps.sh test    # the above plus compilers, servers and tools the tests use
set -euo pipefail

build_pkgs=(
  meson ninja-build pkg-config g++ python3 python3-dev
  libuv1-dev libpq-dev libsqlite3-dev unixodbc-dev libyaml-cpp-dev libspdlog-dev libfmt-dev
  doctest-dev libre2-dev libcli11-dev nlohmann-json3-dev libsystemd-dev
)
test_pkgs=(
  clang libclang-rt-14-dev libbenchmark-dev sqlite3 procps
  python3-pytest python3-sqlalchemy python3-greenlet python3-psycopg2 python3-pymysql
  python3-fastapi python3-httpx
  postgresql postgresql-client
  mariadb-server mariadb-client pgbouncer odbc-mariadb odbc-postgresql tdsodbc libsqliteodbc unixodbc
)

want=("${build_pkgs[@]}")
if [[ "${1:-build}" == test ]]; then
  want+=("${test_pkgs[@]}")
fi

missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#want[@]} packages present"
  exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
  echo "install-deps: missing packages: ${missing[*]}; run as root (or install them) first" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
