#!/bin/bash
# search_table.sh: the paper's claim, measured: Search-Softmax and Random-Softmax
# (M = 4 candidates, 4 MPI ranks) against the best fixed margins, CosFace m = 0.35
# and ArcFace m = 0.5 (`lfsearch train`, 2 ranks), at equal epochs on the
# synthetic faces of jobs/loss_table.sh (tiny iresnet, 32x32, 300 identities,
# global batch 64 per candidate, lr 0.1 stepped at 2/3 and 11/12 of EPOCHS,
# default 12). The final checkpoint of each run is evaluated on the 6000 test
# pairs (`lfsearch eval`); the table gives mean ± sample std over the seeds and
# each method's mean wall time. Long: about 4 training runs' worth per search.
# Usage: bash jobs/search_table.sh [SEEDS (default "1 2 3")] [METHODS]
#   METHODS: any of search_softmax random_softmax cosface arcface (default all)
# Results: runs/search_table/e<EPOCHS>/<method>-s<seed>/ (with wall_seconds) and
# table.txt there; finished runs are not repeated (delete them to redo).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
cd "$LFS_ROOT"
LFS="$LFS_BUILD/lfsearch"
SEEDS=${1:-"1 2 3"}
METHODS=${2:-"search_softmax random_softmax cosface arcface"}
DATA=$LFS_TABLE_DATA
lfs_table_data
epochs=${EPOCHS:-12}
milestones=$(lfs_table_milestones "$epochs")
ROOT=runs/search_table/e$epochs
mkdir -p "$ROOT"
common=(-c jobs/configs/synth_train.ini --resume auto --set run.log_every=1000
  --set data.train=$DATA/train.h5 --set data.val_pairs=$DATA/val_pairs.h5 --set data.test_pairs=
  --set optim.epochs="$epochs" --set optim.milestones="$milestones")

# run_method METHOD SEED OUT: one run; its wall seconds go to OUT/wall_seconds
run_method() {
  local method=$1 seed=$2 out=$3 start
  start=$(date +%s)
  case $method in
    cosface|arcface)
      mpiexec -n 2 "$LFS" train "${common[@]}" --set run.out_dir="$out" --set run.seed="$seed" \
        --set head.loss="$method" ;;
    *)
      mpiexec -n 4 "$LFS" search "${common[@]}" --set run.out_dir="$out" --set run.seed="$seed" \
        --set search.space="$method" --set search.candidates=4 --set search.ranks_per_candidate=1 \
        --set search.warmup_epochs=2 ;;
  esac > "$out.log" 2>&1 || { echo "$method seed $seed failed: see $out.log" >&2; exit 1; }
  echo $(( $(date +%s) - start )) > "$out/wall_seconds"
}

final=$(printf 'checkpoints/ckpt-e%04d-s000000.h5' "$epochs")
printf '%-15s %-36s %s\n' method "test accuracy % (per seed)" "mean wall s" > "$ROOT/table.txt"
for method in $METHODS; do
  accs="" walls=""
  for seed in $SEEDS; do
    out=$ROOT/$method-s$seed
    if [ ! -f "$out/$final" ]; then
      mkdir -p "$out"
      run_method "$method" "$seed" "$out"
      echo "$method seed $seed: $(cat "$out/wall_seconds") s" >&2
    fi
    acc=$(mpiexec -n 2 "$LFS" eval --checkpoint "$out/$final" --pairs $DATA/test_pairs.h5 |
          sed -nE 's/.*accuracy ([0-9.]+) .*/\1/p')
    accs="$accs $acc"
    walls="$walls $(cat "$out/wall_seconds" 2>/dev/null || echo nan)"
  done
  # mean ± sample standard deviation (n - 1) over the seeds; mean wall time
  echo "$accs |$walls" | awk -v m="$method" -F'|' '{
    n = split($1, a, " "); s = 0; for (i = 1; i <= n; i++) s += a[i]; mean = s / n
    q = 0; for (i = 1; i <= n; i++) q += (a[i] - mean) ^ 2; sd = n > 1 ? sqrt(q / (n - 1)) : 0
    k = split($2, w, " "); t = 0; for (i = 1; i <= k; i++) t += w[i]
    printf "%-15s %6.2f ± %.2f   (%s )   %8.0f\n", m, mean, sd, $1, t / k }' >> "$ROOT/table.txt"
done
cat "$ROOT/table.txt"
