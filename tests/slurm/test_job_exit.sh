#!/bin/bash
# The batch scripts' exit protocol without a Slurm: `srun` is a stand-in on
# PATH. srun exiting 0 counts as a finished run only when lfsearch's rank 0
# wrote 0 to LFS_EXIT_FILE; a launch failure that srun reports as 0 (seen with
# "task launch failed") must end the job with 1, so that afterok chains stop.
source "$(dirname "$0")/../cli/common.sh"

# lfsearch writes its exit code when asked, and only then
run 0 env LFS_EXIT_FILE="$PWD/exit-code" "$LFSEARCH" info
[ "$(cat exit-code)" = 0 ] || fail "LFS_EXIT_FILE holds '$(cat exit-code)', expected 0"
[ ! -e exit-code.tmp ] || fail "the temporary exit file was left behind"
ok "LFS_EXIT_FILE: lfsearch info wrote 0"
run 0 env LFS_EXIT_FILE="$PWD/no-such-dir/exit-code" "$LFSEARCH" info
expect "LFS_EXIT_FILE=$PWD/no-such-dir/exit-code: could not write the exit code"
ok "an unwritable LFS_EXIT_FILE is a warning that names it (the exit code stays the command's)"
rm -f exit-code
run 0 "$LFSEARCH" info
[ ! -e exit-code ] || fail "lfsearch wrote an exit file without LFS_EXIT_FILE"

# a job environment, with stand-ins for srun and scontrol
mkdir -p bin submit
printf 'x = 1\n' > submit/job.ini
export SLURM_SUBMIT_DIR=$PWD/submit SLURM_JOB_ID=41 SLURM_NTASKS=1 LFS_JOBS_DIR=$LFS_SRCDIR/jobs
cat > bin/srun <<'SH'
#!/bin/bash
# srun stand-in: FAKE_SRUN=launch-failure prints Slurm's message and exits 0;
# otherwise drops srun's options and runs the command
if [ "${FAKE_SRUN:-}" = launch-failure ]; then echo "srun: error: task 0 launch failed" >&2; exit 0; fi
while [ "${1:0:1}" = - ]; do shift; done
exec "$@"
SH
cat > bin/lfsearch-info <<SH
#!/bin/bash
# runs \`lfsearch info\` whatever the job asks (a finished run, quickly)
exec "$LFSEARCH" info
SH
cat > bin/lfsearch-exit3 <<'SH'
#!/bin/bash
exit 3
SH
chmod +x bin/*
export PATH=$PWD/bin:$PATH

FAKE_SRUN=launch-failure LFSEARCH=$PWD/bin/lfsearch-info run 1 bash "$LFS_SRCDIR/jobs/search.sbatch" submit/job.ini
expect "srun: error: task 0 launch failed"
expect "srun exited 0 but lfsearch did not report finishing ($SLURM_SUBMIT_DIR/.lfsearch-exit-41: missing)"
expect "finished with exit code 1"
ok "search.sbatch: srun exiting 0 after a launch failure ends the job with 1"

touch "$SLURM_SUBMIT_DIR/.lfsearch-exit-41"  # a stale file from an earlier start must not count
FAKE_SRUN=launch-failure LFSEARCH=$PWD/bin/lfsearch-info run 1 bash "$LFS_SRCDIR/jobs/baselines.sbatch" casia-r50
expect "finished with exit code 1"
ok "baselines.sbatch: the same, and a stale exit file from an earlier start does not count"
[ ! -e "$SLURM_SUBMIT_DIR/.lfsearch-exit-41" ] || fail "the job left its exit file behind"

LFSEARCH=$PWD/bin/lfsearch-info run 0 bash "$LFS_SRCDIR/jobs/search.sbatch" submit/job.ini
expect "finished with exit code 0"
[ ! -e "$SLURM_SUBMIT_DIR/.lfsearch-exit-41" ] || fail "the job left its exit file behind"
ok "search.sbatch: a run that reports 0 ends the job with 0, and the exit file is removed"

cat > bin/scontrol <<'SH'
#!/bin/bash
echo "scontrol $*"
SH
chmod +x bin/scontrol
LFSEARCH=$PWD/bin/lfsearch-exit3 run 0 bash "$LFS_SRCDIR/jobs/search.sbatch" submit/job.ini
expect "requeueing job 41"
expect "scontrol requeue 41"
ok "search.sbatch: exit 3 (checkpoint after a signal) still requeues"
