#!/usr/bin/env bash
# Private database servers for dbmgr's integration tests and benchmarks.
#
#   bash scripts/test-servers.sh start DIR [pg] [mariadb] [pgbouncer]   # default: pg
#   bash scripts/test-servers.sh stop DIR                               # stops all started in DIR
#   bash scripts/test-servers.sh restart-pg DIR                         # same cluster, data kept
#   bash scripts/test-servers.sh restart-mariadb DIR                    # same server, data kept
#   bash scripts/test-servers.sh stop-mariadb DIR | start-mariadb DIR   # MariaDB alone, data kept
#   bash scripts/test-servers.sh status DIR
#
# Every server lives under DIR, listens only on a Unix socket there (no TCP at all) and,
# when this script runs as root, runs as the system user dbmgrtest (created if missing).
# `start` writes DIR/servers.env: `export DBMGR_TEST_...=...` lines for the tests to source.
# See docs/testing.md.
set -uo pipefail

SCRIPT=$(readlink -f "${BASH_SOURCE[0]}")
TIMEOUT=${DBMGR_TEST_SERVER_TIMEOUT:-30}  # seconds a server may take to come up or go down

PG_PORT=5433
PG_USER=dbmgr
PG_PASSWORD=dbmgr_test_pw
PG_DB=dbmgr_test
MARIADB_USER=dbmgr
MARIADB_PASSWORD=dbmgr_test_pw
MARIADB_DB=dbmgr_test
PGBOUNCER_PORT=6432

say() { echo "test-servers: $*" >&2; }
STOPPING=0
die() {
  say "ERROR: $*"
  ((STOPPING)) && exit 0 # stop never fails its caller
  exit 1
}
usage() {
  sed -n '2,12p' "$SCRIPT" >&2
  exit 2
}

# Prints the last lines of a log file, framed, to stderr.
log_tail() {
  local f=$1
  if [[ -s $f ]]; then
    echo "---- last lines of $f ----" >&2
    tail -n 40 "$f" >&2
    echo "---- end of $f ----" >&2
  else
    echo "(log $f is empty or missing)" >&2
  fi
}

# ---- the OS user the servers run as --------------------------------------------------------
if [[ $(id -u) -eq 0 ]]; then
  RUN_USER=${DBMGR_TEST_OS_USER:-dbmgrtest}
else
  RUN_USER=$(id -un) # not root: the servers simply run as the caller
fi

ensure_user() {
  [[ $(id -u) -eq 0 ]] || return 0
  id -u "$RUN_USER" >/dev/null 2>&1 && return 0
  say "creating system user $RUN_USER"
  # A concurrent run may create it at the same moment: only fail if it is still missing.
  useradd --system --user-group --no-create-home --home-dir /nonexistent \
    --shell /usr/sbin/nologin "$RUN_USER" 2>/dev/null || true
  id -u "$RUN_USER" >/dev/null 2>&1 || die "could not create user $RUN_USER (useradd)"
}

# Runs a command as RUN_USER (directly when we are not root). setpriv execs the command
# (no PAM session, no root parent process left behind a daemon).
as_user() {
  if [[ $(id -u) -eq 0 ]]; then
    setpriv --reuid="$(id -u "$RUN_USER")" --regid="$(id -g "$RUN_USER")" --init-groups -- "$@"
  else
    "$@"
  fi
}

# mkdir + hand to RUN_USER.
own_dir() {
  mkdir -p "$1" || die "cannot create $1"
  [[ $(id -u) -eq 0 ]] && chown "$RUN_USER:" "$1"
  chmod 0755 "$1"
}

# ---- DIR -----------------------------------------------------------------------------------
setup_dir() {
  [[ -n ${1:-} ]] || usage
  mkdir -p "$1" || die "cannot create $1"
  DIR=$(readlink -f "$1")
  cd / || exit 1 # the servers' users may not be allowed into the caller's cwd
  # mktemp -d makes 0700 folders: the servers' user must be able to traverse DIR.
  chmod 0755 "$DIR" || die "cannot chmod $DIR"
  if ! as_user test -x "$DIR"; then
    die "$DIR is not reachable by user $RUN_USER (a parent folder is not traversable); use a folder under /tmp"
  fi
  # Unix socket paths are limited to 107 bytes (sun_path).
  local longest="$DIR/mariadb/mysqld.sock"
  ((${#longest} <= 100)) || die "$DIR is too long for Unix socket paths; use a shorter folder (e.g. mktemp -d /tmp/dbmgr.XXXXXX)"
  PG_DIR=$DIR/pg
  PG_DATA=$PG_DIR/data
  MARIADB_DIR=$DIR/mariadb
  MARIADB_SOCKET=$MARIADB_DIR/mysqld.sock
  MARIADB_PID=$MARIADB_DIR/mariadbd.pid
  PGBOUNCER_DIR=$DIR/pgbouncer
  PGBOUNCER_PID=$PGBOUNCER_DIR/pgbouncer.pid
}

# Waits until a pid is gone; returns 1 if it is still there after $2 seconds.
wait_gone() {
  local pid=$1 secs=$2 i
  for ((i = 0; i < secs * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  return 1
}

# Stops the process named in a pid file if it is still the expected program. Never fails.
kill_pidfile() {
  local pidfile=$1 comm=$2 pid
  [[ -s $pidfile ]] || return 0
  pid=$(head -n 1 "$pidfile" 2>/dev/null | tr -dc 0-9)
  [[ -n $pid ]] || return 0
  if ! kill -0 "$pid" 2>/dev/null || [[ $(cat "/proc/$pid/comm" 2>/dev/null) != "$comm"* ]]; then
    rm -f "$pidfile" # stale
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null
  if ! wait_gone "$pid" "$TIMEOUT"; then
    say "$comm ($pid) ignored SIGTERM for ${TIMEOUT}s; killing it"
    kill -KILL "$pid" 2>/dev/null
    wait_gone "$pid" 5
  fi
  rm -f "$pidfile"
}

# ---- PostgreSQL ----------------------------------------------------------------------------
find_pg_bin() {
  if [[ -n ${DBMGR_TEST_PG_BINDIR:-} ]]; then
    PG_BIN=$DBMGR_TEST_PG_BINDIR
  else
    # Debian's layout: /usr/lib/postgresql/<major>/bin; take the newest installed.
    PG_BIN=$(printf '%s\n' /usr/lib/postgresql/*/bin | grep -v '\*' | sort -V | tail -n 1)
    if [[ -z $PG_BIN ]] && command -v pg_ctl >/dev/null; then
      PG_BIN=$(dirname "$(readlink -f "$(command -v pg_ctl)")")
    fi
  fi
  [[ -x $PG_BIN/pg_ctl && -x $PG_BIN/initdb ]] ||
    die "PostgreSQL server binaries not found (install the postgresql package: bash scripts/install-deps.sh test)"
}

pg_running() {
  [[ -f $PG_DATA/PG_VERSION ]] && as_user "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1
}

# psql as the superuser over the private socket; extra args follow.
pg_sql() {
  PGPASSWORD=$PG_PASSWORD PGCONNECT_TIMEOUT=5 "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 \
    -h "$PG_DIR" -p "$PG_PORT" -U "$PG_USER" "$@"
}

pg_init() {
  say "initdb $PG_DATA"
  local pwfile=$PG_DIR/pwfile
  (umask 077 && printf '%s\n' "$PG_PASSWORD" >"$pwfile")
  [[ $(id -u) -eq 0 ]] && chown "$RUN_USER:" "$pwfile"
  # scram-sha-256 everywhere: the daemon's password handling is exercised by every test.
  if ! as_user "$PG_BIN/initdb" -D "$PG_DATA" -U "$PG_USER" --pwfile="$pwfile" \
    --auth-local=scram-sha-256 --auth-host=scram-sha-256 -E UTF8 --no-locale --no-sync \
    >"$PG_DIR/initdb.log" 2>&1; then
    rm -f "$pwfile"
    log_tail "$PG_DIR/initdb.log"
    die "initdb failed"
  fi
  rm -f "$pwfile"
  cat >>"$PG_DATA/postgresql.conf" <<EOF

# ---- dbmgr test server (scripts/test-servers.sh) ----
listen_addresses = ''
port = $PG_PORT
unix_socket_directories = '$PG_DIR'
unix_socket_permissions = 0777
max_connections = 300
shared_buffers = 32MB
fsync = off
synchronous_commit = off
full_page_writes = off
password_encryption = scram-sha-256
log_min_messages = warning
log_connections = off
EOF
  # Unix sockets only. The OS user $RUN_USER may also log in as the role of the same name
  # (peer); everyone else, including $PG_USER, authenticates with a SCRAM password.
  cat >"$PG_DATA/pg_hba.conf" <<EOF
# TYPE  DATABASE  USER  METHOD
local   all       $RUN_USER  peer
local   all       all        scram-sha-256
EOF
}

pg_start_server() {
  : >>"$PG_DIR/log"
  [[ $(id -u) -eq 0 ]] && chown "$RUN_USER:" "$PG_DIR/log"
  if ! as_user "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_DIR/log" -w -t "$TIMEOUT" start >"$PG_DIR/pg_ctl.out" 2>&1; then
    cat "$PG_DIR/pg_ctl.out" >&2
    log_tail "$PG_DIR/log"
    # Do not leave a half-started postmaster behind.
    as_user "$PG_BIN/pg_ctl" -D "$PG_DATA" -m immediate -w -t 10 stop >/dev/null 2>&1
    die "PostgreSQL did not start (time limit ${TIMEOUT}s); its log is above"
  fi
}

pg_stop_server() {
  [[ -f $PG_DATA/PG_VERSION ]] || return 0
  local pid
  pid=$(head -n 1 "$PG_DATA/postmaster.pid" 2>/dev/null | tr -dc 0-9)
  pg_running || return 0
  if ! as_user "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t "$TIMEOUT" stop >/dev/null 2>&1; then
    say "pg_ctl stop -m fast failed; trying immediate"
    as_user "$PG_BIN/pg_ctl" -D "$PG_DATA" -m immediate -w -t 10 stop >/dev/null 2>&1 ||
      { [[ -n $pid ]] && kill -KILL "$pid" 2>/dev/null; }
  fi
  [[ -n $pid ]] && wait_gone "$pid" 10
  return 0
}

start_pg() {
  find_pg_bin
  own_dir "$PG_DIR"
  [[ -f $PG_DATA/PG_VERSION ]] || pg_init
  if pg_running; then
    say "PostgreSQL already running in $PG_DATA"
  else
    pg_start_server
  fi
  # The role for peer logins, then the test database (both idempotent).
  pg_sql -d postgres -c "DO \$\$BEGIN
      IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$RUN_USER') THEN
        CREATE ROLE \"$RUN_USER\" SUPERUSER LOGIN;
      END IF; END\$\$;" >/dev/null ||
    { log_tail "$PG_DIR/log"; die "cannot log in to PostgreSQL as $PG_USER over $PG_DIR"; }
  if [[ $(pg_sql -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'") != 1 ]]; then
    pg_sql -d postgres -c "CREATE DATABASE $PG_DB" >/dev/null || die "CREATE DATABASE $PG_DB failed"
  fi
  {
    echo "export DBMGR_TEST_PG_HOST=$(printf %q "$PG_DIR")"
    echo "export DBMGR_TEST_PG_PORT=$PG_PORT"
    echo "export DBMGR_TEST_PG_USER=$PG_USER"
    echo "export DBMGR_TEST_PG_PASSWORD=$PG_PASSWORD"
    echo "export DBMGR_TEST_PG_DB=$PG_DB"
    echo "export DBMGR_TEST_PG_DATA=$(printf %q "$PG_DATA")"
    echo "export DBMGR_TEST_PG_BINDIR=$(printf %q "$PG_BIN")"
    echo "export DBMGR_TEST_PG_CTL=$(printf %q "bash $SCRIPT restart-pg $DIR")"
  } >"$PG_DIR/env"
  say "PostgreSQL $(cat "$PG_DATA/PG_VERSION") ready: socket $PG_DIR port $PG_PORT, user $PG_USER, db $PG_DB"
}

restart_pg() {
  find_pg_bin
  [[ -f $PG_DATA/PG_VERSION ]] || die "no PostgreSQL cluster in $PG_DATA (run start first)"
  pg_stop_server
  pg_start_server
  say "PostgreSQL restarted ($PG_DATA)"
}

# ---- MariaDB -------------------------------------------------------------------------------
mariadb_alive() {
  mariadb-admin --no-defaults --socket="$MARIADB_SOCKET" --connect-timeout=2 \
    -u "$MARIADB_USER" -p"$MARIADB_PASSWORD" ping >/dev/null 2>&1
}

mariadb_running() {
  [[ -s $MARIADB_PID ]] && kill -0 "$(cat "$MARIADB_PID")" 2>/dev/null
}

# Starts mariadbd on the existing data folder and waits until it answers.
mariadb_start_server() {
  local log=$MARIADB_DIR/log
  : >>"$log"
  [[ $(id -u) -eq 0 ]] && chown "$RUN_USER:" "$log"
  # Detached from the caller: own session, no inherited descriptors.
  # A simple command run with & is exec'd by bash: no shell of ours lingers as its parent
  # holding the caller's stdout.
  local as_user_cmd=()
  [[ $(id -u) -eq 0 ]] && as_user_cmd=(setpriv --reuid="$(id -u "$RUN_USER")" --regid="$(id -g "$RUN_USER")" --init-groups --)
  "${as_user_cmd[@]}" setsid mariadbd --no-defaults \
    --datadir="$MARIADB_DIR/data" --socket="$MARIADB_SOCKET" --pid-file="$MARIADB_PID" \
    --skip-networking --log-error="$log" --tmpdir="$MARIADB_DIR/tmp" \
    --init-file="$MARIADB_DIR/init.sql" --skip-name-resolve --skip-log-bin \
    --max-connections=300 --character-set-server=utf8mb4 \
    --innodb-buffer-pool-size=64M --innodb-flush-log-at-trx-commit=0 --innodb-doublewrite=0 \
    </dev/null >>"$log" 2>&1 &
  local launcher=$! i up=0
  for ((i = 0; i < TIMEOUT * 5; i++)); do
    if [[ -S $MARIADB_SOCKET ]] && mariadb_alive; then
      up=1
      break
    fi
    # Gave up early: the launcher (mariadbd itself, via setsid's exec) is gone.
    if ! kill -0 "$launcher" 2>/dev/null && ! { [[ -s $MARIADB_PID ]] && kill -0 "$(cat "$MARIADB_PID")" 2>/dev/null; }; then
      break
    fi
    sleep 0.2
  done
  if ((!up)); then
    log_tail "$log"
    kill_pidfile "$MARIADB_PID" mariadbd
    kill -KILL "$launcher" 2>/dev/null
    die "MariaDB did not start (time limit ${TIMEOUT}s); its log is above"
  fi
}

start_mariadb() {
  command -v mariadbd >/dev/null || PATH=$PATH:/usr/sbin
  local prog
  for prog in mariadbd mariadb-install-db mariadb mariadb-admin; do
    command -v "$prog" >/dev/null ||
      die "$prog not found (install mariadb-server and mariadb-client: bash scripts/install-deps.sh test)"
  done
  own_dir "$MARIADB_DIR"
  own_dir "$MARIADB_DIR/tmp"
  local log=$MARIADB_DIR/log
  if [[ ! -d $MARIADB_DIR/data/mysql ]]; then
    say "mariadb-install-db $MARIADB_DIR/data"
    if ! as_user mariadb-install-db --no-defaults --datadir="$MARIADB_DIR/data" \
      --auth-root-authentication-method=socket --skip-test-db --skip-name-resolve \
      >"$MARIADB_DIR/install.log" 2>&1; then
      log_tail "$MARIADB_DIR/install.log"
      die "mariadb-install-db failed"
    fi
  fi
  # Run at every server start, before it accepts connections: the test account and database.
  cat >"$MARIADB_DIR/init.sql" <<EOF
CREATE DATABASE IF NOT EXISTS $MARIADB_DB;
CREATE USER IF NOT EXISTS '$MARIADB_USER'@'localhost' IDENTIFIED BY '$MARIADB_PASSWORD';
ALTER USER '$MARIADB_USER'@'localhost' IDENTIFIED BY '$MARIADB_PASSWORD';
GRANT ALL PRIVILEGES ON *.* TO '$MARIADB_USER'@'localhost' WITH GRANT OPTION;
EOF
  chmod 0644 "$MARIADB_DIR/init.sql"
  if mariadb_running && mariadb_alive; then
    say "MariaDB already running in $MARIADB_DIR"
  else
    mariadb_start_server
  fi
  mariadb --no-defaults --socket="$MARIADB_SOCKET" -u "$MARIADB_USER" -p"$MARIADB_PASSWORD" \
    -e 'SELECT 1' "$MARIADB_DB" >/dev/null || { log_tail "$log"; die "cannot log in to MariaDB as $MARIADB_USER"; }
  {
    echo "export DBMGR_TEST_MARIADB_SOCKET=$(printf %q "$MARIADB_SOCKET")"
    echo "export DBMGR_TEST_MARIADB_USER=$MARIADB_USER"
    echo "export DBMGR_TEST_MARIADB_PASSWORD=$MARIADB_PASSWORD"
    echo "export DBMGR_TEST_MARIADB_DB=$MARIADB_DB"
    echo "export DBMGR_TEST_MARIADB_DATA=$(printf %q "$MARIADB_DIR/data")"
    # Command lines (run them with sh -c / system()) that restart MariaDB keeping its data,
    # or only stop it / only start it again (a test that needs it away for a while).
    echo "export DBMGR_TEST_MARIADB_CTL=$(printf %q "bash $SCRIPT restart-mariadb $DIR")"
    echo "export DBMGR_TEST_MARIADB_STOP=$(printf %q "bash $SCRIPT stop-mariadb $DIR")"
    echo "export DBMGR_TEST_MARIADB_START=$(printf %q "bash $SCRIPT start-mariadb $DIR")"
    # An ODBC connection string for the same server, when the MariaDB ODBC driver is
    # registered (package odbc-mariadb: driver "MariaDB Unicode" in /etc/odbcinst.ini).
    local driver
    driver=$(odbcinst -q -d 2>/dev/null | tr -d '[]' | grep -i -m 1 mariadb)
    if [[ -n $driver ]]; then
      echo "export DBMGR_TEST_MARIADB_ODBC=$(printf %q "Driver={$driver};Socket=$MARIADB_SOCKET;Uid=$MARIADB_USER;Pwd=$MARIADB_PASSWORD;Database=$MARIADB_DB")"
    fi
  } >"$MARIADB_DIR/env"
  say "MariaDB ready: socket $MARIADB_SOCKET, user $MARIADB_USER, db $MARIADB_DB"
}

stop_mariadb() {
  kill_pidfile "$MARIADB_PID" mariadbd
}

# restart-mariadb / stop-mariadb / start-mariadb: the server of an existing DIR, data kept,
# servers.env unchanged (start has written it).
mariadb_ctl() {
  command -v mariadbd >/dev/null || PATH=$PATH:/usr/sbin
  [[ -d $MARIADB_DIR/data/mysql && -f $MARIADB_DIR/init.sql ]] ||
    die "no MariaDB server in $MARIADB_DIR (run start DIR mariadb first)"
  case $1 in
  stop | restart)
    stop_mariadb
    # The socket file stays when the server is gone: wait until nothing accepts on it.
    local i
    for ((i = 0; i < TIMEOUT * 10; i++)); do
      mariadb_alive || break
      sleep 0.1
    done
    mariadb_alive && die "MariaDB in $MARIADB_DIR still answers after it was stopped"
    ;;
  esac
  case $1 in
  start | restart)
    if mariadb_running && mariadb_alive; then
      say "MariaDB already running in $MARIADB_DIR"
    else
      mariadb_start_server
    fi
    ;;
  esac
  say "MariaDB: $1 done ($MARIADB_DIR)"
}

# ---- PgBouncer -----------------------------------------------------------------------------
start_pgbouncer() {
  local pgb
  pgb=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
  [[ -x $pgb ]] || die "pgbouncer not found (install pgbouncer: bash scripts/install-deps.sh test)"
  own_dir "$PGBOUNCER_DIR"
  local log=$PGBOUNCER_DIR/log
  (umask 077 && printf '"%s" "%s"\n' "$PG_USER" "$PG_PASSWORD" >"$PGBOUNCER_DIR/userlist.txt")
  [[ $(id -u) -eq 0 ]] && chown "$RUN_USER:" "$PGBOUNCER_DIR/userlist.txt"
  cat >"$PGBOUNCER_DIR/pgbouncer.ini" <<EOF
[databases]
$PG_DB = host=$PG_DIR port=$PG_PORT dbname=$PG_DB
* = host=$PG_DIR port=$PG_PORT

[pgbouncer]
listen_addr =
listen_port = $PGBOUNCER_PORT
unix_socket_dir = $PGBOUNCER_DIR
unix_socket_mode = 0777
auth_type = scram-sha-256
auth_file = $PGBOUNCER_DIR/userlist.txt
admin_users = $PG_USER
stats_users = $PG_USER
pool_mode = transaction
default_pool_size = 20
max_client_conn = 1000
server_login_retry = 1
ignore_startup_parameters = extra_float_digits
logfile = $log
pidfile = $PGBOUNCER_PID
EOF
  chmod 0644 "$PGBOUNCER_DIR/pgbouncer.ini"
  if [[ -s $PGBOUNCER_PID ]] && kill -0 "$(cat "$PGBOUNCER_PID")" 2>/dev/null; then
    say "PgBouncer already running in $PGBOUNCER_DIR; reloading its configuration"
    kill -HUP "$(cat "$PGBOUNCER_PID")"
  else
    : >>"$log"
    [[ $(id -u) -eq 0 ]] && chown "$RUN_USER:" "$log"
    if ! as_user "$pgb" -q -d "$PGBOUNCER_DIR/pgbouncer.ini" </dev/null >>"$log" 2>&1; then
      log_tail "$log"
      die "pgbouncer failed to start"
    fi
  fi
  local i up=0
  for ((i = 0; i < TIMEOUT * 5; i++)); do
    if PGPASSWORD=$PG_PASSWORD PGCONNECT_TIMEOUT=2 "$PG_BIN/psql" -X -q -tA -h "$PGBOUNCER_DIR" \
      -p "$PGBOUNCER_PORT" -U "$PG_USER" -d "$PG_DB" -c 'SELECT 1' >/dev/null 2>&1; then
      up=1
      break
    fi
    sleep 0.2
  done
  if ((!up)); then
    log_tail "$log"
    kill_pidfile "$PGBOUNCER_PID" pgbouncer
    die "PgBouncer did not answer (time limit ${TIMEOUT}s); its log is above"
  fi
  {
    echo "export DBMGR_TEST_PGBOUNCER_HOST=$(printf %q "$PGBOUNCER_DIR")"
    echo "export DBMGR_TEST_PGBOUNCER_PORT=$PGBOUNCER_PORT"
  } >"$PGBOUNCER_DIR/env"
  say "PgBouncer ready: socket $PGBOUNCER_DIR port $PGBOUNCER_PORT (transaction pooling, pool 20) -> $PG_DIR"
}

stop_pgbouncer() {
  kill_pidfile "$PGBOUNCER_PID" pgbouncer
}

# DIR/servers.env: the fragments of the servers started in DIR.
write_env() {
  {
    echo "# Written by scripts/test-servers.sh; source it. Servers under $DIR"
    echo "export DBMGR_TEST_SERVERS_DIR=$(printf %q "$DIR")"
    local f
    for f in "$PG_DIR/env" "$MARIADB_DIR/env" "$PGBOUNCER_DIR/env"; do
      if [[ -f $f ]]; then cat "$f"; fi
    done
  } >"$DIR/servers.env.tmp" && mv -f "$DIR/servers.env.tmp" "$DIR/servers.env"
}

# ---- main ----------------------------------------------------------------------------------
cmd=${1:-}
shift || true
case $cmd in
start)
  ensure_user
  setup_dir "${1:-}"
  shift
  want_pg=0 want_mariadb=0 want_pgbouncer=0
  (($# == 0)) && want_pg=1
  for s in "$@"; do
    case $s in
    pg | postgres | postgresql) want_pg=1 ;;
    mariadb | mysql) want_mariadb=1 ;;
    pgbouncer) want_pg=1 want_pgbouncer=1 ;; # it needs the PostgreSQL behind it
    *) die "unknown server '$s' (pg, mariadb, pgbouncer)" ;;
    esac
  done
  t0=$(date +%s%N)
  # On any failure, stop what this call brought up so nothing is left running.
  trap 'rc=$?; if ((rc != 0)); then say "start failed; stopping the servers in $DIR"; "$BASH" "$SCRIPT" stop "$DIR" >/dev/null 2>&1; fi' EXIT
  # PostgreSQL and MariaDB are independent: bring them up side by side (initdb and
  # mariadb-install-db take a few seconds each).
  pids=()
  if ((want_pg)); then start_pg & pids+=($!); fi
  if ((want_mariadb)); then start_mariadb & pids+=($!); fi
  failed=0
  for p in "${pids[@]}"; do wait "$p" || failed=1; done
  ((failed)) && exit 1
  if ((want_pgbouncer)); then
    find_pg_bin
    start_pgbouncer
  fi
  write_env
  trap - EXIT
  ms=$((($(date +%s%N) - t0) / 1000000))
  say "started in $((ms / 1000)).$(printf %03d $((ms % 1000)))s; variables in $DIR/servers.env"
  ;;
stop)
  [[ -n ${1:-} ]] || usage
  [[ -d $1 ]] || exit 0 # nothing was started there
  STOPPING=1
  setup_dir "$1"
  # MariaDB side by side with PgBouncer then PostgreSQL (PgBouncer first: it talks to it).
  stop_mariadb &
  stop_pgbouncer
  if [[ -f $PG_DATA/PG_VERSION ]]; then
    find_pg_bin
    pg_stop_server
  fi
  wait
  rm -f "$PG_DIR/env" "$MARIADB_DIR/env" "$PGBOUNCER_DIR/env" "$DIR/servers.env"
  say "stopped the servers in $DIR"
  exit 0
  ;;
restart-pg)
  ensure_user
  setup_dir "${1:-}"
  restart_pg
  ;;
restart-mariadb | stop-mariadb | start-mariadb)
  ensure_user
  setup_dir "${1:-}"
  mariadb_ctl "${cmd%-mariadb}"
  ;;
status)
  setup_dir "${1:-}"
  rc=0
  if [[ -f $PG_DATA/PG_VERSION ]]; then
    find_pg_bin
    if pg_running; then echo "pg: running ($PG_DIR)"; else echo "pg: stopped"; rc=1; fi
  fi
  for pair in "mariadb:$MARIADB_PID" "pgbouncer:$PGBOUNCER_PID"; do
    name=${pair%%:*} pidfile=${pair#*:}
    [[ -d $DIR/$name ]] || continue
    if [[ -s $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      echo "$name: running (pid $(cat "$pidfile"))"
    else
      echo "$name: stopped"
      rc=1
    fi
  done
  exit $rc
  ;;
*) usage ;;
esac
