#!/usr/bin/env bash
# SSH hosts for tests: a private sshd on loopback, and N hosts in network namespaces on a bridge
# (198.51.100.0/24 exists only inside the namespaces), reached through a gateway namespace whose sshd runs
# per connection (`sshd -i`, as a ProxyCommand), i.e. a jump host. The host's own network is never touched.
# Usage: scripts/sshd.sh start DIR [N]    writes DIR/testbed.json (keys, known_hosts, hosts)
#        scripts/sshd.sh stop DIR
#        scripts/sshd.sh cut DIR NAME      take host NAME (h1, h2, …) off the network
#        scripts/sshd.sh restore DIR NAME
set -euo pipefail
cmd=${1:?usage: $0 start|stop|cut|restore DIR}; DIR=${2:?DIR}
SSHD=/usr/sbin/sshd
need() { command -v "$1" >/dev/null 2>&1 || [ -x "$1" ] || { echo "sshd.sh: $1 missing (scripts/setup.sh --test installs openssh-server iproute2)" >&2; exit 1; }; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

case "$cmd" in
start)
  N=${3:-2}
  need "$SSHD"; need ssh-keygen; need ip; need unshare
  mkdir -p "$DIR"; DIR=$(cd "$DIR" && pwd)
  install -d -m 755 /run/sshd
  P="cr$(printf %04x $(( $$ % 65536 )))"   # namespace prefix, short enough for interface names
  echo "$P" > "$DIR/prefix"
  ssh-keygen -q -t ed25519 -N '' -f "$DIR/host_key" <<<y >/dev/null
  ssh-keygen -q -t ed25519 -N '' -f "$DIR/client_key" <<<y >/dev/null
  cp "$DIR/client_key.pub" "$DIR/authorized_keys"
  cat > "$DIR/sshd_config" <<CFG
HostKey $DIR/host_key
AuthorizedKeysFile $DIR/authorized_keys .ssh/authorized_keys
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
Subsystem sftp internal-sftp
MaxSessions 200
MaxStartups 200
SetEnv SHLVL=1
AllowTcpForwarding yes
ClientAliveInterval 2
ClientAliveCountMax 3
LogLevel ERROR
CFG
  HOSTKEY=$(cut -d' ' -f1-2 "$DIR/host_key.pub")
  LPORT=$(free_port)
  "$SSHD" -f "$DIR/sshd_config" -o ListenAddress=127.0.0.1 -o Port="$LPORT" -o PidFile="$DIR/sshd-loopback.pid" -E "$DIR/sshd-loopback.log"
  echo "[127.0.0.1]:$LPORT $HOSTKEY" > "$DIR/known_hosts"
  echo "gw $HOSTKEY" >> "$DIR/known_hosts"
  ip netns add "$P-sw"
  ip -n "$P-sw" link set lo up
  ip -n "$P-sw" link add br0 type bridge
  ip -n "$P-sw" link set br0 up
  attach() {  # namespace $1 gets eth0 with address $2, its peer on the bridge
    ip netns add "$1"
    ip -n "$1" link set lo up
    ip -n "$1" link add eth0 type veth peer name "v-${1#$P-}" netns "$P-sw"
    ip -n "$1" addr add "$2/24" dev eth0
    ip -n "$1" link set eth0 up
    ip -n "$P-sw" link set "v-${1#$P-}" master br0 up
  }
  attach "$P-gw" 198.51.100.1
  hosts=""
  for i in $(seq 1 "$N"); do
    addr="198.51.100.$((10 + i))"
    attach "$P-h$i" "$addr"
    ip netns exec "$P-h$i" unshare --uts sh -c "hostname h$i; exec $SSHD -f '$DIR/sshd_config' -o ListenAddress=$addr -o Port=22 -o PidFile='$DIR/sshd-h$i.pid' -E '$DIR/sshd-h$i.log'"
    echo "$addr $HOSTKEY" >> "$DIR/known_hosts"
    hosts="$hosts${hosts:+,}{\"name\":\"h$i\",\"address\":\"$addr\",\"port\":22,\"namespace\":\"$P-h$i\"}"
  done
  for i in $(seq 1 50); do  # wait until every sshd wrote its pid file
    ok=1; for f in "$DIR"/sshd-*.pid; do [ -s "$f" ] || ok=0; done
    [ "$(ls "$DIR"/sshd-*.pid 2>/dev/null | wc -l)" -eq $((N + 1)) ] || ok=0
    [ $ok = 1 ] && break; sleep 0.1
  done
  cat > "$DIR/testbed.json" <<JSON
{"key": "$DIR/client_key", "known_hosts": "$DIR/known_hosts", "user": "$(id -un)", "prefix": "$P",
 "loopback": {"address": "127.0.0.1", "port": $LPORT},
 "jump": {"address": "gw", "proxy_command": "ip netns exec $P-gw $SSHD -i -f $DIR/sshd_config -E $DIR/sshd-gw.log"},
 "hosts": [$hosts]}
JSON
  echo "$DIR/testbed.json" ;;
stop)
  [ -f "$DIR/prefix" ] || exit 0
  P=$(cat "$DIR/prefix")
  for f in "$DIR"/sshd-*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true; done
  for ns in $(ip netns list | awk '{print $1}' | grep "^$P-" || true); do
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    [ -n "$pids" ] && kill -9 $pids 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -f "$DIR/prefix" ;;
cut|restore)
  P=$(cat "$DIR/prefix"); NAME=${3:?host name}
  state=down; [ "$cmd" = restore ] && state=up
  ip -n "$P-$NAME" link set eth0 "$state" ;;
*) echo "usage: $0 start|stop|cut|restore DIR" >&2; exit 2 ;;
esac
