#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, so that tests submit real sbatch arrays (CI, as root;
# needs Debian's slurm-wlm and munge). Everything lives in DIR: the generated slurm.conf, a
# private munge socket, state, spool, logs; free ports are chosen, so nothing else is touched.
#   .ci/slurm.sh up DIR     start munged, slurmctld, slurmd; wait for the node; print SLURM_CONF
#   .ci/slurm.sh down DIR   cancel its jobs, then stop the daemons (by their pid files)
set -euo pipefail

usage() { echo "usage: $0 up|down DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
action=$1
dir=$(realpath -m "$2")

free_port() {  # the first port from $1 on that nothing listens to
  local port=$1
  while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
  echo "$port"
}

stop() {  # kill the daemon named in pid file $1, if it runs, and wait for it to go
  [ -f "$1" ] || return 0
  local pid
  pid=$(cat "$1")
  if kill "$pid" 2>/dev/null; then
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$1"
}

case $action in
  down)
    if [ -f "$dir/slurmctld.pid" ]; then  # slurmd's end would leave running jobs behind
      export SLURM_CONF=$dir/slurm.conf
      scancel --user="$(id -un)" || true  # SIGTERM, then SIGKILL after KillWait
      for _ in $(seq 150); do [ -z "$(squeue -h 2>/dev/null)" ] && break; sleep 0.1; done
    fi
    stop "$dir/slurmd.pid"
    stop "$dir/slurmctld.pid"
    stop "$dir/munge/munged.pid"
    ;;
  up)
    for tool in munged slurmctld slurmd sinfo; do
      if ! command -v "$tool" >/dev/null; then
        echo "$tool not found: apt-get install slurm-wlm munge" >&2
        exit 1
      fi
    done
    mkdir -p "$dir/munge" "$dir/state" "$dir/spool"
    chown munge: "$dir/munge"
    chmod 755 "$dir/munge"
    runuser -u munge -- munged --socket="$dir/munge/munge.socket" \
      --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" \
      --seed-file="$dir/munge/munged.seed"
    ctld_port=$(free_port 6817)
    slurmd_port=$(free_port $((ctld_port + 1)))
    # The node as slurmd sees it (CPUs, sockets, cores, memory), under the name localhost.
    node=$(slurmd -C | head -n 1 \
      | sed -e 's/^NodeName=[^ ]*/NodeName=localhost NodeAddr=127.0.0.1/')
    cat > "$dir/slurm.conf" <<EOF
ClusterName=ci
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
AuthType=auth/munge
CredType=cred/munge
# cred_expire: a requeued job waits this long before it may start again (default 120 s).
AuthInfo=socket=$dir/munge/munge.socket,cred_expire=5
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
# Scheduling passes every second (default: 60 s main, 30 s backfill), so that a requeued task
# starts once its begin time passes, not up to a minute later.
SchedulerParameters=sched_interval=1,bf_interval=1
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
ReturnToService=2
KillWait=5
MinJobAge=600
MailProg=/bin/true
$node State=UNKNOWN
PartitionName=ci Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
    export SLURM_CONF=$dir/slurm.conf
    slurmctld
    slurmd -N localhost
    for _ in $(seq 60); do
      if [ "$(sinfo -h -n localhost -o %t 2>/dev/null)" = idle ]; then
        echo "$SLURM_CONF"
        exit 0
      fi
      sleep 1
    done
    echo "Slurm node did not become idle within 60 s; sinfo says: $(sinfo 2>&1)" >&2
    tail -n 20 "$dir"/slurmctld.log "$dir"/slurmd.log >&2 || true
    exit 1
    ;;
  *) usage ;;
esac
