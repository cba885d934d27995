#!/bin/bash
# loss_table.sh: the "learning, measured" table: every classic margin loss on the
# synthetic faces (tiny iresnet, 32x32, jobs/configs/synth_train.ini with a longer
# schedule: EPOCHS (default 24), lr steps at 2/3 and 11/12 of it), test-pair
# accuracy as mean ± std over seeds. The test set has 6000 pairs (the LFW size),
# so one run's accuracy carries a sampling error of about 0.3 points, below the
# differences being measured. Long: LOSSES x SEEDS trainings of about 3 minutes
# each on 2 cores (an hour for the whole table).
# Usage: bash jobs/loss_table.sh [SEEDS (default "1 2 3")] [LOSSES]
# Training verifies on the 1000 validation pairs each epoch; the test pairs are
# evaluated once, on the final checkpoint (lfsearch eval).
# Results: runs/loss_table/e<EPOCHS>/<loss>-s<seed>/ and the table in
# runs/loss_table/e<EPOCHS>/table.txt (one directory per schedule, so that
# --resume auto never continues a run under another schedule).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
cd "$LFS_ROOT"
LFS="$LFS_BUILD/lfsearch"
SEEDS=${1:-"1 2 3"}
LOSSES=${2:-"softmax sphereface cosface arcface combined mv_softmax"}
RANKS=${LFS_RANKS:-2}
DATA=$LFS_TABLE_DATA
lfs_table_data
epochs=${EPOCHS:-24}
milestones=$(lfs_table_milestones "$epochs")
ROOT=runs/loss_table/e$epochs
mkdir -p $ROOT
printf '%-12s %s\n' loss "test accuracy % (per seed)" > $ROOT/table.txt
for loss in $LOSSES; do
  accs=""
  for seed in $SEEDS; do
    out=$ROOT/$loss-s$seed
    ckpt=$out/checkpoints/$(printf 'ckpt-e%04d-s000000.h5' "$epochs")
    if [ ! -f "$ckpt" ]; then
      start=$(date +%s)
      mpiexec -n "$RANKS" "$LFS" train -c jobs/configs/synth_train.ini --resume auto \
        --set run.out_dir="$out" --set run.seed="$seed" --set head.loss="$loss" --set run.log_every=1000 \
        --set data.train=$DATA/train.h5 --set data.val_pairs=$DATA/val_pairs.h5 \
        --set data.test_pairs= --set optim.epochs="$epochs" \
        --set optim.milestones="$milestones" \
        > "$out.log" 2>&1 || { echo "$loss seed $seed failed: see $out.log" >&2; exit 1; }
      echo "$loss seed $seed: $(( $(date +%s) - start )) s" >&2
    fi
    acc=$(mpiexec -n "$RANKS" "$LFS" eval --checkpoint "$ckpt" --pairs $DATA/test_pairs.h5 |
          sed -nE 's/.*accuracy ([0-9.]+) .*/\1/p')
    accs="$accs $acc"
  done
  # mean ± sample standard deviation (n - 1) over the seeds
  echo "$accs" | awk -v l="$loss" '{ s = 0; for (i = 1; i <= NF; i++) s += $i; m = s / NF; q = 0
    for (i = 1; i <= NF; i++) q += ($i - m) ^ 2; sd = NF > 1 ? sqrt(q / (NF - 1)) : 0
    printf "%-12s %6.2f ± %.2f   (%s )\n", l, m, sd, $0 }' >> $ROOT/table.txt
done
cat $ROOT/table.txt
