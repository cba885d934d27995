# cluster.sh: a private single-node Slurm for tests (sourced): munged, slurmctld
# and slurmd with their key, state, spool, logs, sockets and PID files under one
# temporary directory, on ports of their own, stopped by PID.
#
#   slurm_cluster_up DIR CPUS   starts it; exports SLURM_CONF (every client needs it)
#   slurm_cluster_down          stops the daemons it started (safe to call twice)
#   slurm_packages_missing      prints the missing commands (nothing when all are there)
# Needs root (slurmd launches jobs as their user; munged runs as user munge).

slurm_packages_missing() {
  local c missing=()
  for c in munged mungekey slurmctld slurmd sbatch srun squeue scontrol scancel; do
    command -v "$c" >/dev/null 2>&1 || missing+=("$c")
  done
  echo "${missing[*]}"
}

# slurm_wait_file FILE SECONDS: waits for FILE to exist and be non-empty.
slurm_wait_file() {
  local i
  for ((i = 0; i < $2 * 10; i++)); do [ -s "$1" ] && return 0; sleep 0.1; done
  return 1
}

slurm_cluster_up() {
  SLURM_BASE=$1
  local cpus=$2 port=$((20000 + RANDOM % 20000))
  mkdir -p "$SLURM_BASE"/{etc,state,spool,log,munge}
  # munged insists on a key and a socket directory it owns, and an executable path
  chown munge:munge "$SLURM_BASE/munge" && chmod 0755 "$SLURM_BASE/munge" || return 1
  runuser -u munge -- mungekey -c -k "$SLURM_BASE/munge/munge.key" || return 1
  runuser -u munge -- munged --socket="$SLURM_BASE/munge/munge.socket.2" \
    --pid-file="$SLURM_BASE/munge/munged.pid" --log-file="$SLURM_BASE/munge/munged.log" \
    --seed-file="$SLURM_BASE/munge/munged.seed" --key-file="$SLURM_BASE/munge/munge.key" || return 1
  cat > "$SLURM_BASE/etc/slurm.conf" <<CONF
ClusterName=lfstest
SlurmctldHost=localhost
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SLURM_BASE/munge/munge.socket.2
StateSaveLocation=$SLURM_BASE/state
SlurmdSpoolDir=$SLURM_BASE/spool
SlurmctldPidFile=$SLURM_BASE/slurmctld.pid
SlurmdPidFile=$SLURM_BASE/slurmd.pid
SlurmctldLogFile=$SLURM_BASE/log/slurmctld.log
SlurmdLogFile=$SLURM_BASE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
MpiDefault=pmix
MailProg=/bin/true
EnforcePartLimits=ALL
ReturnToService=2
KillWait=5
MinJobAge=600
NodeName=localhost CPUs=$cpus RealMemory=4000 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
  export SLURM_CONF=$SLURM_BASE/etc/slurm.conf
  slurmctld -f "$SLURM_CONF" && slurm_wait_file "$SLURM_BASE/slurmctld.pid" 10 || return 1
  slurmd -f "$SLURM_CONF" -N localhost && slurm_wait_file "$SLURM_BASE/slurmd.pid" 10 || return 1
  local i
  for ((i = 0; i < 100; i++)); do
    sinfo -h -o %t 2>/dev/null | grep -q idle && return 0
    sleep 0.1
  done
  return 1
}

slurm_cluster_down() {
  [ -n "${SLURM_BASE:-}" ] || return 0
  local f p i
  for f in "$SLURM_BASE/slurmd.pid" "$SLURM_BASE/slurmctld.pid" "$SLURM_BASE/munge/munged.pid"; do
    [ -s "$f" ] || continue
    p=$(cat "$f")
    kill -TERM "$p" 2>/dev/null || continue
    for ((i = 0; i < 100; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null
  done
  SLURM_BASE=
}
