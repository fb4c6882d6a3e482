#!/usr/bin/env bash
# Start (or reuse) a private PostgreSQL cluster for tests on loopback; prints its DSN.
# Usage: scripts/postgres.sh [start|stop|dsn]   (dir: $CORRAL_PG_DIR, default /tmp/corral-pg; port $CORRAL_PG_PORT, default 55432)
set -euo pipefail
DIR=${CORRAL_PG_DIR:-/tmp/corral-pg}
PORT=${CORRAL_PG_PORT:-55432}
BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
[ -n "$BIN" ] || { echo "postgres.sh: PostgreSQL server binaries not found (apt-get install postgresql)" >&2; exit 1; }
DSN="postgresql://postgres@127.0.0.1:$PORT/postgres"
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
case "${1:-start}" in
  start)
    if [ ! -f "$DIR/data/PG_VERSION" ]; then
      install -d -o postgres -g postgres "$DIR" 2>/dev/null || mkdir -p "$DIR"
      as_pg "$BIN/initdb" -D "$DIR/data" -U postgres --auth=trust -E UTF8 >/dev/null
    fi
    if ! as_pg "$BIN/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1; then
      as_pg "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/log" -w -o \
        "-p $PORT -k $DIR -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
        start >/dev/null
    fi
    echo "$DSN" ;;
  stop) as_pg "$BIN/pg_ctl" -D "$DIR/data" -m fast stop >/dev/null || true ;;
  dsn) echo "$DSN" ;;
  *) echo "usage: $0 [start|stop|dsn]" >&2; exit 2 ;;
esac
