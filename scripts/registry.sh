#!/usr/bin/env bash
# A private OCI registry (Debian `docker-registry`) on a free loopback port, filesystem storage.
# Usage: scripts/registry.sh start DIR [USER PASSWORD]  -> prints host:port (reuses one running for DIR)
#        scripts/registry.sh stop DIR
# With USER and PASSWORD the registry asks for them (htpasswd, bcrypt at the lowest cost: tests verify
# the password on every request).
set -euo pipefail
CMD=${1:-}; DIR=${2:-}; USER_NAME=${3:-}; PASSWORD=${4:-}
[ -n "$CMD" ] && [ -n "$DIR" ] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }
BIN=$(command -v docker-registry || true)
case "$CMD" in
  start)
    [ -n "$BIN" ] || { echo "registry.sh: docker-registry not installed (apt-get install docker-registry)" >&2; exit 1; }
    mkdir -p "$DIR/storage"
    if [ -f "$DIR/pid" ] && kill -0 "$(cat "$DIR/pid")" 2>/dev/null && [ -f "$DIR/addr" ]; then
      cat "$DIR/addr"; exit 0
    fi
    PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    cat > "$DIR/config.yml" <<CONF
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: $DIR/storage
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$PORT
CONF
    if [ -n "$USER_NAME" ]; then
      HASH=$(PW="$PASSWORD" python3 -W ignore -c 'import crypt, os; print(crypt.crypt(os.environ["PW"], crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)))')
      echo "$USER_NAME:$HASH" > "$DIR/htpasswd"
      printf 'auth:\n  htpasswd:\n    realm: corral-test\n    path: %s\n' "$DIR/htpasswd" >> "$DIR/config.yml"
    fi
    nohup "$BIN" serve "$DIR/config.yml" >"$DIR/log" 2>&1 </dev/null &
    echo $! >"$DIR/pid"
    for _ in $(seq 1 200); do
      if python3 -c "
import urllib.error, urllib.request
try: urllib.request.urlopen('http://127.0.0.1:$PORT/v2/', timeout=1)
except urllib.error.HTTPError: pass  # 401: up, and asking for credentials" 2>/dev/null; then
        echo "127.0.0.1:$PORT" | tee "$DIR/addr"; exit 0
      fi
      kill -0 "$(cat "$DIR/pid")" 2>/dev/null || { echo "registry.sh: docker-registry exited:" >&2; cat "$DIR/log" >&2; exit 1; }
      sleep 0.05
    done
    echo "registry.sh: docker-registry did not answer on 127.0.0.1:$PORT" >&2; exit 1 ;;
  stop)
    if [ -f "$DIR/pid" ]; then kill "$(cat "$DIR/pid")" 2>/dev/null || true; rm -f "$DIR/pid" "$DIR/addr"; fi ;;
  *) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
