#!/usr/bin/env bash
# A single-node SLURM with accounting, started by hand (no systemd), as root:
#   bash .ci/slurm.sh start   # installs (apt) if needed, writes the configs,
#                             # starts munged, mariadb, slurmdbd, slurmctld,
#                             # slurmd; waits for the node to be idle
#   bash .ci/slurm.sh stop    # stops them by the pids in their pid files
# State and logs in $SLURM_CI_DIR (default /tmp/slurm-ci). The settings are
# the measured ones of ../shared/SLURM-FACTS.md (cred_expire=10, DefMemPerCPU,
# JobRequeue=1, no cgroups, accounting for sacct, which submitit polls).
set -euo pipefail
DIR=${SLURM_CI_DIR:-/tmp/slurm-ci}
PIDS=(slurmd slurmctld slurmdbd mariadb munged)

install() {
  if command -v slurmctld >/dev/null && command -v slurmdbd >/dev/null \
      && command -v mariadbd >/dev/null && command -v munged >/dev/null; then
    return
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq slurm-wlm slurmdbd munge mariadb-server >/dev/null
}

write_configs() {
  mkdir -p "$DIR"/{spool,state,log,mysql} /etc/slurm /run/munge
  chown munge:munge /run/munge
  local host node cpus
  host=$(hostname -s)
  node=$(slurmd -C | head -1)
  cpus=$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$node")
  local memory=$(( $(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo) * 8 / 10 ))
  local hardware=${node#NodeName=$host }
  hardware=$(sed 's/RealMemory=[0-9]*/RealMemory='"$memory"'/' <<<"$hardware")
  cat >/etc/slurm/slurm.conf <<EOF
ClusterName=ci
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
AuthInfo=cred_expire=10
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$(( memory / cpus / 2 ))
JobRequeue=1
MailProg=/bin/true
ReturnToService=2
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmdSpoolDir=$DIR/spool
StateSaveLocation=$DIR/state
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=$host
JobAcctGatherType=jobacct_gather/linux
JobCompType=jobcomp/none
NodeName=$host $hardware State=UNKNOWN
PartitionName=ci Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  cat >/etc/slurm/slurmdbd.conf <<EOF
AuthType=auth/munge
DbdHost=$host
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=root
StorageLoc=slurm_acct_db
PidFile=$DIR/slurmdbd.pid
LogFile=$DIR/log/slurmdbd.log
EOF
  chmod 600 /etc/slurm/slurmdbd.conf
}

start_mariadb() {
  if [ ! -d "$DIR/mysql/mysql" ]; then
    mariadb-install-db --user=root --datadir="$DIR/mysql" \
      --auth-root-authentication-method=normal >"$DIR/log/mariadb-install.log"
  fi
  mariadbd --user=root --datadir="$DIR/mysql" --socket=/run/mysqld/mysqld.sock \
    --pid-file="$DIR/mariadb.pid" --skip-networking=0 --bind-address=127.0.0.1 \
    >"$DIR/log/mariadb.log" 2>&1 &
  mkdir -p /run/mysqld
  for _ in $(seq 60); do
    mariadb -uroot -e 'select 1' >/dev/null 2>&1 && return
    sleep 0.5
  done
  echo "slurm.sh: mariadb did not start (see $DIR/log/mariadb.log)" >&2
  exit 1
}

wait_for() {  # wait_for DESCRIPTION COMMAND...: up to 30 s.
  local what=$1; shift
  for _ in $(seq 60); do
    "$@" >/dev/null 2>&1 && return
    sleep 0.5
  done
  echo "slurm.sh: $what did not come up (logs in $DIR/log)" >&2
  exit 1
}

start() {
  install
  if [ -f "$DIR/slurmctld.pid" ] && kill -0 "$(cat "$DIR/slurmctld.pid")" 2>/dev/null; then
    echo "slurm.sh: already running (pids in $DIR)"; return
  fi
  write_configs
  mkdir -p /run/mysqld
  rm -f /run/munge/munged.pid
  runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
  wait_for munged test -s /run/munge/munged.pid
  cp /run/munge/munged.pid "$DIR/munged.pid"
  start_mariadb
  slurmdbd
  wait_for slurmdbd sacctmgr -n list cluster
  sacctmgr -i add cluster ci >/dev/null 2>&1 || true
  slurmctld
  slurmd
  wait_for "the node" bash -c "sinfo -h -o %t | grep -qx idle"
  echo "slurm.sh: started ($(sinfo -h -o '%P %D %c %m %t'); pids in $DIR)"
}

stop() {
  local name pid
  for name in "${PIDS[@]}"; do
    [ -f "$DIR/$name.pid" ] || continue
    pid=$(cat "$DIR/$name.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 40); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.25
    done
    rm -f "$DIR/$name.pid"
  done
  echo "slurm.sh: stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
