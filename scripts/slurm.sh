#!/usr/bin/env bash
# A private single-node SLURM for benchmarks: the tuned setup of shared/TESTBED.md (no scheduler delay,
# 64 advertised CPUs), config and state under a private dir, daemons started by hand (no systemd). Idempotent.
# Usage: scripts/slurm.sh [start|stop|status|env]
#   start   install slurm-wlm + munge if missing, start munged/slurmctld/slurmd, wait until the node is idle;
#           prints `SLURM_CONF=<file>` (export it for sbatch/squeue/scontrol)
#   stop    stop the daemons this script started (munged only if it started it)
# Settings: CORRAL_SLURM_DIR (default /tmp/corral-bench-slurm), CORRAL_SLURM_CPUS (64),
#           CORRAL_SLURM_PORT (6917; slurmd uses the next port) — apart from the test suite's SLURM.
set -euo pipefail
D=${CORRAL_SLURM_DIR:-/tmp/corral-bench-slurm}
CPUS=${CORRAL_SLURM_CPUS:-64}
PORT=${CORRAL_SLURM_PORT:-6917}
HOST=$(hostname -s)
CONF=$D/etc/slurm.conf

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

install_packages() {
  command -v slurmctld >/dev/null && command -v munged >/dev/null && return
  [ "$(id -u)" = 0 ] || { echo "slurm.sh: slurm-wlm and munge are missing and we are not root" >&2; exit 1; }
  echo "slurm.sh: installing slurm-wlm munge" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
}

write_config() {
  mkdir -p "$D"/{etc,state,spool,run,log}
  cat > "$CONF.tmp" <<EOF
ClusterName=corralbench
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool/%n
SlurmctldPidFile=$D/run/slurmctld.pid
SlurmdPidFile=$D/run/slurmd-%n.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
MpiDefault=none
MailProg=/bin/true
SwitchType=switch/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$D/log/jobcomp.txt
MinJobAge=300
MaxJobCount=100000
MaxArraySize=100001
ReturnToService=2
SlurmdParameters=config_overrides
SlurmdTimeout=30
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=64000 State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
  echo "" > "$D/etc/plugstack.conf"
  mv "$CONF.tmp" "$CONF"
}

start_munge() {
  [ -S /run/munge/munge.socket.2 ] && munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return
  install -d -o munge -g munge -m 0755 /run/munge
  runuser -u munge -- /usr/sbin/munged --force
  touch "$D/run/munged.ours"
  for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return; sleep 0.1; done
  echo "slurm.sh: munged did not start" >&2; exit 1
}

node_ready() {
  local line
  line=$(SLURM_CONF=$CONF scontrol -o show node "$HOST" 2>/dev/null) || return 1
  [[ "$line" == *"State=IDLE"* ]] && [[ "$line" != *"SlurmdStartTime=None"* ]]
}

start() {
  install_packages
  mkdir -p "$D/run"
  if alive "$D/run/slurmctld.pid" && alive "$D/run/slurmd-$HOST.pid" && node_ready; then
    echo "SLURM_CONF=$CONF"; return
  fi
  write_config
  start_munge
  # -c: start without the saved jobs of an earlier run (a benchmark wants an empty queue).
  alive "$D/run/slurmctld.pid" || SLURM_CONF=$CONF slurmctld -c -f "$CONF"
  alive "$D/run/slurmd-$HOST.pid" || SLURM_CONF=$CONF slurmd -f "$CONF"
  for _ in $(seq 300); do
    if node_ready; then echo "SLURM_CONF=$CONF"; return; fi
    SLURM_CONF=$CONF scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true
    sleep 0.1
  done
  echo "slurm.sh: node $HOST not idle after 30 s; see $D/log" >&2; exit 1
}

stop() {
  for pidfile in "$D/run/slurmd-$HOST.pid" "$D/run/slurmctld.pid"; do
    if alive "$pidfile"; then
      pid=$(cat "$pidfile"); kill "$pid"
      for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
  done
  if [ -f "$D/run/munged.ours" ]; then
    [ -f /run/munge/munged.pid ] && kill "$(cat /run/munge/munged.pid)" 2>/dev/null || true
    rm -f "$D/run/munged.ours"
  fi
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  status) if alive "$D/run/slurmctld.pid" && node_ready; then echo "running"; else echo "stopped"; exit 1; fi ;;
  env) echo "SLURM_CONF=$CONF" ;;
  *) echo "usage: $0 [start|stop|status|env]" >&2; exit 2 ;;
esac
