#!/usr/bin/env bash
# A private SLURM cluster of FOUR slurmd "nodes" (n1..n4) on this host for the tests (shared/TESTBED.md):
# its own munged (own socket), slurmctld and 4 slurmd on free ports chosen at first start, config and state
# under a private dir, tuned for speed (no scheduler delay, 8 advertised CPUs per node, short KillWait),
# two partitions (debug: default, low priority; urgent: preempts debug), fake GPUs (gres gpu:2 per node).
# Independent of scripts/slurm.sh (the bench's single node). Idempotent.
# Usage: scripts/slurm-cluster.sh [start|stop|status|env]
#   start   install slurm-wlm + munge if missing, start what is not running, wait until all 4 nodes are idle;
#           prints `SLURM_CONF=<file>` on its last line (export it for sbatch/squeue/scancel/sacct)
#   stop    stop the daemons of this cluster (its own munged too)
# Settings: CORRAL_SLURM_CLUSTER_DIR (default /tmp/corral-slurm-cluster), CORRAL_SLURM_CLUSTER_CPUS (8 per node)
set -euo pipefail
D=${CORRAL_SLURM_CLUSTER_DIR:-/tmp/corral-slurm-cluster}
CPUS=${CORRAL_SLURM_CLUSTER_CPUS:-8}
NODES=(n1 n2 n3 n4)
HOST=$(hostname -s)
CONF=$D/etc/slurm.conf
MUNGE_SOCKET=$D/munge/munge.socket

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

install_packages() {
  command -v slurmctld >/dev/null && command -v munged >/dev/null && command -v sacct >/dev/null && return
  [ "$(id -u)" = 0 ] || { echo "slurm-cluster.sh: slurm-wlm and munge are missing and we are not root" >&2; exit 1; }
  echo "slurm-cluster.sh: installing slurm-wlm munge" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm slurm-client munge \
    >/dev/null
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Ports are chosen once and kept with the cluster, so a restart finds the same cluster (and its saved jobs).
ports() {
  if [ ! -s "$D/etc/ports" ]; then
    { echo "CTLD=$(free_port)"; for n in "${NODES[@]}"; do echo "SLURMD_$n=$(free_port)"; done; } \
      > "$D/etc/ports.tmp"
    mv "$D/etc/ports.tmp" "$D/etc/ports"
  fi
  # shellcheck disable=SC1091
  . "$D/etc/ports"
}

write_config() {
  mkdir -p "$D"/{etc,state,spool,run,log}
  ports
  {
    cat <<EOF
ClusterName=corraltest
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET
SlurmctldPort=$CTLD
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
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=64
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
PreemptType=preempt/partition_prio
PreemptMode=CANCEL
MpiDefault=none
MailProg=/bin/true
SwitchType=switch/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$D/log/jobcomp.txt
MinJobAge=300
MaxJobCount=100000
MaxArraySize=100001
KillWait=2
ReturnToService=2
SlurmdParameters=config_overrides
SlurmdTimeout=30
GresTypes=gpu
EOF
    for n in "${NODES[@]}"; do
      port_var=SLURMD_$n
      echo "NodeName=$n NodeHostname=$HOST NodeAddr=127.0.0.1 Port=${!port_var} CPUs=$CPUS RealMemory=8000 Gres=gpu:2 State=UNKNOWN"
    done
    echo "PartitionName=debug Nodes=n[1-4] Default=YES MaxTime=INFINITE State=UP PriorityTier=1"
    echo "PartitionName=urgent Nodes=n[1-4] MaxTime=INFINITE State=UP PriorityTier=10"
  } > "$CONF.tmp"
  # Fake GPUs: /dev/null and /dev/zero stand in for two devices per node (slurm sets CUDA_VISIBLE_DEVICES).
  printf 'AutoDetect=off\nName=gpu File=/dev/null\nName=gpu File=/dev/zero\n' > "$D/etc/gres.conf"
  echo "" > "$D/etc/plugstack.conf"
  mv "$CONF.tmp" "$CONF"
}

munge_ok() { munge -S "$MUNGE_SOCKET" -n 2>/dev/null | unmunge -S "$MUNGE_SOCKET" >/dev/null 2>&1; }

start_munge() {
  munge_ok && return
  install -d -o munge -g munge -m 0755 "$D/munge"
  [ -f /etc/munge/munge.key ] || { echo "slurm-cluster.sh: /etc/munge/munge.key is missing" >&2; exit 1; }
  install -o munge -g munge -m 0400 /etc/munge/munge.key "$D/munge/munge.key"
  runuser -u munge -- /usr/sbin/munged --force --socket="$MUNGE_SOCKET" --key-file="$D/munge/munge.key" \
    --pid-file="$D/munge/munged.pid" --log-file="$D/munge/munged.log" --seed-file="$D/munge/munged.seed"
  for _ in $(seq 50); do munge_ok && return; sleep 0.1; done
  echo "slurm-cluster.sh: munged did not start; see $D/munge/munged.log" >&2; exit 1
}

nodes_ready() {
  local out n
  out=$(SLURM_CONF=$CONF scontrol -o show node 2>/dev/null) || return 1
  for n in "${NODES[@]}"; do
    line=$(grep "^NodeName=$n " <<<"$out") || return 1
    [[ "$line" == *"State=IDLE"* || "$line" == *"State=MIXED"* || "$line" == *"State=ALLOCATED"* ]] || return 1
    [[ "$line" != *"SlurmdStartTime=None"* ]] || return 1
  done
}

all_alive() {
  alive "$D/run/slurmctld.pid" || return 1
  for n in "${NODES[@]}"; do alive "$D/run/slurmd-$n.pid" || return 1; done
}

start() {
  install_packages
  mkdir -p "$D/run"
  if munge_ok && all_alive && nodes_ready; then echo "SLURM_CONF=$CONF"; return; fi
  write_config
  start_munge
  export SLURM_CONF=$CONF
  # Keeps the saved jobs of an earlier run (a restart must not lose pilots); tests name their jobs apart.
  alive "$D/run/slurmctld.pid" || slurmctld -f "$CONF"
  for n in "${NODES[@]}"; do alive "$D/run/slurmd-$n.pid" || slurmd -f "$CONF" -N "$n"; done
  for _ in $(seq 300); do
    if nodes_ready; then echo "SLURM_CONF=$CONF"; return; fi
    # Nodes left down (a node-failure test, a crash) come back; others are left alone.
    down=$(sinfo -h -N -t down,drain -o %N 2>/dev/null | sort -u | paste -sd, -) || true
    [ -z "$down" ] || scontrol update nodename="$down" state=resume >/dev/null 2>&1 || true
    sleep 0.1
  done
  echo "slurm-cluster.sh: nodes not idle after 30 s; see $D/log" >&2
  scontrol -o show node >&2 || true
  exit 1
}

stop_pidfile() {
  local pidfile=$1 pid
  alive "$pidfile" || { rm -f "$pidfile"; return; }
  pid=$(cat "$pidfile"); kill "$pid"
  for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$pidfile"
}

stop() {
  for n in "${NODES[@]}"; do stop_pidfile "$D/run/slurmd-$n.pid"; done
  stop_pidfile "$D/run/slurmctld.pid"
  stop_pidfile "$D/munge/munged.pid"
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  status) if all_alive && nodes_ready; then echo "running"; else echo "stopped"; exit 1; fi ;;
  env) echo "SLURM_CONF=$CONF" ;;
  *) echo "usage: $0 [start|stop|status|env]" >&2; exit 2 ;;
esac
