#!/bin/bash
# The Slurm story of jobs/search.sbatch on a private single-node Slurm
# (tests/slurm/cluster.sh): the demo configuration, shrunk to 2 candidates on 2
# CPU tasks, is submitted twice. One job runs through; the other gets SIGUSR1
# mid-run (as --signal or a preemption would send it), checkpoints, exits 3, is
# requeued by the script, resumes and completes. Its final run log and checkpoint
# must equal the uninterrupted job's. Skips (77) only when Slurm's packages are
# missing or the test is not root.
source "$(dirname "$0")/../cli/common.sh"
source "$LFS_SRCDIR/tests/slurm/cluster.sh"

missing=$(slurm_packages_missing)
if [ -n "$missing" ]; then
  echo "SKIP: Slurm is not installed (missing $missing; apt-get install slurmctld slurmd slurm-client munge)"
  exit 77
fi
[ "$(id -u)" = 0 ] || { echo "SKIP: starting slurmd and munged needs root"; exit 77; }

# unix socket paths must stay short: the cluster lives under /tmp
base=$(mktemp -d /tmp/lfs-slurm.XXXXXX)
chmod 0755 "$base"
cleanup() { slurm_cluster_down; rm -rf "$base"; }
trap cleanup EXIT
slurm_cluster_up "$base/c" 4 || { tail -20 "$base"/c/log/*.log "$base"/c/munge/*.log 2>/dev/null; fail "the Slurm cluster did not start"; }
ok "single-node Slurm up: $(sinfo -h -o '%P %a %D %t %c CPUs')"

run 0 "$LFSEARCH" synth --out data --identities 40 --images-per-identity 10 --size 32 --seed 3 \
  --val-pairs 200 --test-pairs 200

# The demo configuration on the small data: 2 candidates, 3 epochs, a progress
# line every step. mpiexec is not used: srun --mpi=pmix starts the ranks.
small=(--set data.train=data/train.h5 --set data.val_pairs=data/val_pairs.h5
  --set data.test_pairs=data/test_pairs.h5 --set search.candidates=2 --set optim.epochs=3
  --set optim.milestones=2 --set run.log_every=1)
export LFSEARCH LFS_JOBS_DIR=$LFS_SRCDIR/jobs
# the batch script's GPU and core requests, resized for this CPU-only node
resize=(--ntasks-per-node=2 --cpus-per-task=1 --gpus-per-node=0)
submit() { sbatch --parsable "${resize[@]}" --job-name="$1" "$LFS_SRCDIR/jobs/search.sbatch" \
  "$LFS_SRCDIR/jobs/configs/demo.ini" "${small[@]}" --set run.out_dir="$1"; }
whole=$(submit whole) || fail "sbatch refused the uninterrupted job"
stopped=$(submit stopped) || fail "sbatch refused the job to interrupt"
ok "submitted jobs/search.sbatch twice (jobs $whole and $stopped)"

# slurm_logs: the daemons' logs, for a failure's message
slurm_logs() { tail -n 25 "$base"/c/log/slurmctld.log "$base"/c/log/slurmd.log >&2; }
# job_state ID: Slurm's state of the job (PENDING, RUNNING, COMPLETED, ...).
job_state() { scontrol show job "$1" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p'; }
log_of() { cat "stopped-$stopped.out" 2>/dev/null; }

for _ in $(seq 1 1200); do grep -q '^\[candidate 0\] epoch 2/3  step 3/' "stopped-$stopped.out" 2>/dev/null && break; sleep 0.1; done
grep -q '^\[candidate 0\] epoch 2/3' "stopped-$stopped.out" || { log_of; fail "job $stopped never reached epoch 2"; }
scancel --signal=USR1 "$stopped" || fail "scancel --signal=USR1 failed"
# Slurm holds a requeued job for about two minutes (BeginTime). Once the script
# has requeued it and the old instance's step daemons are gone (a new instance
# reuses their step ids), and 2 s later (slurmd refuses to launch a job within
# about a second of killing it: "already killed"), let it start.
for _ in $(seq 1 600); do
  grep -q 'requeueing job' "stopped-$stopped.out" && [ "$(job_state "$stopped")" = PENDING ] &&
    ! pgrep -f "slurmstepd: \[$stopped\." >/dev/null && break
  sleep 0.1
done
grep -q 'requeueing job' "stopped-$stopped.out" || { log_of; fail "job $stopped was not requeued after SIGUSR1"; }
sleep 2
scontrol update jobid="$stopped" StartTime=now || fail "could not release the requeued job"
ok "SIGUSR1 mid-epoch 2: the ranks checkpointed and exited 3, the script requeued the job"

for id in "$whole" "$stopped"; do
  for _ in $(seq 1 1800); do case $(job_state "$id") in COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY) break ;; esac; sleep 0.1; done
done
out=$(log_of)
[ "$(job_state "$stopped")" = COMPLETED ] || { echo "$out"; slurm_logs; fail "job $stopped ended $(job_state "$stopped")"; }
[ "$(job_state "$whole")" = COMPLETED ] || { cat "whole-$whole.out"; fail "job $whole ended $(job_state "$whole")"; }
expect "start 1: search -c $LFS_SRCDIR/jobs/configs/demo.ini on 2 ranks"
expect "stop signal: writing a checkpoint at epoch 1, step"
expect "start 2: search -c $LFS_SRCDIR/jobs/configs/demo.ini on 2 ranks"
expect_re "resumed from stopped/checkpoints/ckpt-e0001-s0000[0-9]{2}\.h5 at epoch 1, step [0-9]+"
expect "finished with exit code 0"
scontrol show job "$stopped" | grep -q 'Restarts=1' || fail "job $stopped: Slurm counts no restart"
ok "the requeued job resumed from its mid-epoch checkpoint and completed (Restarts=1)"

expect_same_run whole stopped ckpt-e0003-s000000.h5
ok "final run log and checkpoint equal the uninterrupted job's (timings aside)"

# The rest of the chain: one fixed-loss baseline of jobs/baselines.sbatch (array
# task 3, arcface, on the small data), then jobs/eval.sbatch once it has finished.
tiny=(--set data.train=data/train.h5 --set data.val_pairs=data/val_pairs.h5 --set data.test_pairs=
  --set model.arch=tiny --set model.embedding_size=64 --set data.image_size=32 --set data.batch_size=32
  --set run.backend=cpu --set optim.epochs=1 --set optim.milestones=1 --set run.out_dir=base)
base=$(sbatch --parsable --array=3 --cpus-per-task=1 --gpus-per-node=0 "$LFS_SRCDIR/jobs/baselines.sbatch" \
  casia-r50 "${tiny[@]}") || fail "sbatch refused jobs/baselines.sbatch"
eval_job=$(sbatch --parsable --dependency=afterok:"$base" --cpus-per-task=1 --gpus-per-node=0 \
  "$LFS_SRCDIR/jobs/eval.sbatch" base data/test_pairs.h5) || fail "sbatch refused jobs/eval.sbatch"
for _ in $(seq 1 1200); do [ "$(job_state "$eval_job")" = COMPLETED ] && break; sleep 0.1; done
out=$(cat lfsearch-baseline-"$base"_3.out lfsearch-eval-"$eval_job".out 2>&1)
[ "$(job_state "$eval_job")" = COMPLETED ] || { echo "$out"; fail "the eval job ended $(job_state "$eval_job")"; }
expect "baselines -c $LFS_SRCDIR/jobs/configs/casia-r50-arcface.ini on 1 ranks"
expect "lfsearch train: tiny, loss arcface"
grep -q '"name": "synth_test", "pairs": 200' base/checkpoints/ckpt-e0001-s000000.h5.eval.jsonl ||
  { echo "$out"; fail "eval.sbatch wrote no result for the baseline's checkpoint"; }
ok "baselines.sbatch (array task 3: arcface) then eval.sbatch after it (afterok): result beside the checkpoint"
