#!/bin/bash
# loss_table.sh: the "learning, measured" table: every classic margin loss on the
# synthetic faces (tiny iresnet, 32x32, the schedule of jobs/configs/synth_train.ini),
# test-pair accuracy as mean ± std over seeds. Long: about LOSSES x SEEDS short
# trainings. Usage: bash jobs/loss_table.sh [SEEDS (default "1 2 3")] [LOSSES]
# Results: runs/loss_table/<loss>-s<seed>/ and the table on stdout.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
cd "$LFS_ROOT"
LFS="$LFS_BUILD/lfsearch"
SEEDS=${1:-"1 2 3"}
LOSSES=${2:-"softmax sphereface cosface arcface combined mv_softmax"}
RANKS=${LFS_RANKS:-2}
DATA=data/synth32
[ -f $DATA/test_pairs.h5 ] || "$LFS" synth --out $DATA --identities 300 --images-per-identity 20 \
  --size 32 --seed 1 --val-pairs 1000 --test-pairs 1000
epochs=$(sed -n 's/^epochs *= *//p' jobs/configs/synth_train.ini)
mkdir -p runs/loss_table
printf '%-12s %s\n' loss "test accuracy % (per seed)" > runs/loss_table/table.txt
for loss in $LOSSES; do
  accs=""
  for seed in $SEEDS; do
    out=runs/loss_table/$loss-s$seed
    ckpt=$out/checkpoints/$(printf 'ckpt-e%04d-s000000.h5' "$epochs")
    if [ ! -f "$ckpt" ]; then
      start=$(date +%s)
      mpiexec -n "$RANKS" "$LFS" train -c jobs/configs/synth_train.ini --resume auto \
        --set run.out_dir="$out" --set run.seed="$seed" --set head.loss="$loss" --set run.log_every=1000 \
        > "$out.log" 2>&1 || { echo "$loss seed $seed failed: see $out.log" >&2; exit 1; }
      echo "$loss seed $seed: $(( $(date +%s) - start )) s" >&2
    fi
    acc=$(mpiexec -n "$RANKS" "$LFS" eval --checkpoint "$ckpt" --pairs $DATA/test_pairs.h5 |
          sed -nE 's/.*accuracy ([0-9.]+) .*/\1/p')
    accs="$accs $acc"
  done
  echo "$accs" | awk -v l="$loss" '{ s = 0; q = 0; for (i = 1; i <= NF; i++) { s += $i; q += $i * $i }
    m = s / NF; sd = sqrt(q / NF - m * m); printf "%-12s %6.2f ± %.2f   (%s )\n", l, m, sd, $0 }' >> runs/loss_table/table.txt
done
cat runs/loss_table/table.txt
