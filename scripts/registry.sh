#!/usr/bin/env bash
# A private OCI registry (Debian `docker-registry`) on a free loopback port, filesystem storage, no auth.
# Usage: scripts/registry.sh start DIR   -> prints host:port (reuses a registry already running for DIR)
#        scripts/registry.sh stop DIR
set -euo pipefail
CMD=${1:-}; DIR=${2:-}
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
    nohup "$BIN" serve "$DIR/config.yml" >"$DIR/log" 2>&1 </dev/null &
    echo $! >"$DIR/pid"
    for _ in $(seq 1 200); do
      if python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$PORT/v2/', timeout=1)" 2>/dev/null; then
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
