#!/bin/bash
# slurm_common.sh: what jobs/*.sbatch share: finding the prebuilt binary and the
# configuration, the environment of the ranks, a banner per (re)start, and the
# exit protocol (3 = stopped by a signal after a checkpoint: requeue; 0 only when
# lfsearch itself reported finishing, through LFS_EXIT_FILE).
# Sourced by the batch scripts, which Slurm runs from a copy in its spool
# directory: paths are relative to the submit directory.

# lfs_job_start WHAT FILE: checks the binary and FILE (the configuration, or the
# checkpoint of an eval), sets LFS_CONFIG=FILE and LFSEARCH, prints the banner.
lfs_job_start() {
  local what=$1
  LFS_CONFIG=${2:-}
  if [ -z "$LFS_CONFIG" ]; then
    echo "usage: sbatch jobs/$what.sbatch CONFIG [lfsearch options]" >&2
    exit 2
  fi
  [ -f "$LFS_CONFIG" ] || { echo "$what: no such file: $LFS_CONFIG (relative to $PWD)" >&2; exit 2; }
  LFSEARCH=${LFSEARCH:-$SLURM_SUBMIT_DIR/_build/lfsearch}
  if [ ! -x "$LFSEARCH" ]; then
    echo "$what: no lfsearch binary at $LFSEARCH: build it first (bash jobs/setup.sh, see jobs/README.md) or set LFSEARCH" >&2
    exit 2
  fi
  # one thread per allocated core of each rank (OpenMP); OpenBLAS stays at one
  export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1} OPENBLAS_NUM_THREADS=1
  # rank 0 writes its exit code here: srun can exit 0 when the tasks never
  # started ("task launch failed"), which must not count as a finished run
  export LFS_EXIT_FILE=$SLURM_SUBMIT_DIR/.lfsearch-exit-${SLURM_JOB_ID:-$$}
  rm -f "$LFS_EXIT_FILE"
  echo "== $(date -u +%Y-%m-%dT%H:%M:%SZ) job ${SLURM_JOB_ID:-?}${SLURM_ARRAY_TASK_ID:+ array task $SLURM_ARRAY_TASK_ID}," \
    "start $(( ${SLURM_RESTART_COUNT:-0} + 1 )): $what -c $LFS_CONFIG on ${SLURM_NTASKS:-?} ranks" \
    "(${SLURM_JOB_NODELIST:-?}), $LFSEARCH"
}

# lfs_job_finish RC: RC is srun's exit code; 0 stands only when rank 0 wrote 0 to
# LFS_EXIT_FILE. Exit 3 (a checkpoint after SIGUSR1/SIGTERM) requeues the job;
# anything else ends it with that code.
lfs_job_finish() {
  local rc=$1 reported=
  [ -f "${LFS_EXIT_FILE:-}" ] && reported=$(cat "$LFS_EXIT_FILE")
  rm -f "${LFS_EXIT_FILE:-}"
  if [ "$rc" = 0 ] && [ "$reported" != 0 ]; then
    echo "== srun exited 0 but lfsearch did not report finishing (${LFS_EXIT_FILE:-LFS_EXIT_FILE}:" \
      "${reported:-missing}): did a task fail to launch? See the messages above" >&2
    rc=1
  fi
  if [ "$rc" = 3 ]; then
    echo "== $(date -u +%Y-%m-%dT%H:%M:%SZ) stopped by a signal after a checkpoint: requeueing job $SLURM_JOB_ID"
    scontrol requeue "$SLURM_JOB_ID" && exit 0
    echo "== scontrol requeue failed: resubmit with the same command to continue" >&2
    exit 3
  fi
  echo "== $(date -u +%Y-%m-%dT%H:%M:%SZ) finished with exit code $rc"
  exit "$rc"
}
