#!/bin/bash
# compare_pytorch.sh: the same training step (model, global batch, input size,
# threads; ArcFace head over 1000 classes, SGD with momentum and weight decay) in
# lfsearch (`lfsearch bench --train`) and in PyTorch (bench/torch_step.py, Debian's
# python3-torch), alternating the two ROUNDS times (default 2) so that both see
# the same machine state, and keeping each side's best. Prints images/s for both
# and the ratio lfsearch / PyTorch.
# Usage: bash bench/compare_pytorch.sh [THREADS (default "1 2")] [CASES]
#   CASES: "model:size:batch ..." (default "tiny:32:64 r18:112:16 mbf:112:32")
#   ROUNDS=3 in the environment for more alternations.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../jobs/setup.sh"
cd "$LFS_ROOT"
THREADS=${1:-"1 2"}
CASES=${2:-"tiny:32:64 r18:112:16 mbf:112:32"}
ROUNDS=${ROUNDS:-2}
PY=/usr/bin/python3
if ! $PY -c "import torch" 2>/dev/null; then
  echo "compare_pytorch: PyTorch is missing: apt-get install python3-torch" >&2
  exit 1
fi

# Big models take seconds per step: fewer steps keep the run short.
steps_for() { case $1 in tiny) echo "5 5" ;; *) echo "2 2" ;; esac; }

printf '%-6s %5s %6s %8s %14s %14s %7s\n' model size batch threads "lfsearch im/s" "PyTorch im/s" ratio
for c in $CASES; do
  IFS=: read -r model size batch <<< "$c"
  read -r steps reps <<< "$(steps_for "$model")"
  for t in $THREADS; do
    ours=0 theirs=0
    for _ in $(seq "$ROUNDS"); do
      o=$(OMP_NUM_THREADS=$t "$LFS_BUILD/lfsearch" bench --train "$model" --size "$size" \
          --batch "$batch" --threads "$t" --steps "$steps" --reps "$reps" |
          awk -v m="$model" '$1 == m { print $3 }')
      p=$($PY bench/torch_step.py --model "$model" --size "$size" --batch "$batch" \
          --threads "$t" --steps "$steps" --repeats "$reps" | awk '{ print $2 }')
      ours=$(awk -v a="$ours" -v b="$o" 'BEGIN { print (b > a ? b : a) }')
      theirs=$(awk -v a="$theirs" -v b="$p" 'BEGIN { print (b > a ? b : a) }')
    done
    awk -v m="$model" -v s="$size" -v b="$batch" -v t="$t" -v o="$ours" -v p="$theirs" \
      'BEGIN { printf "%-6s %5d %6d %8d %14.1f %14.1f %7.2f\n", m, s, b, t, o, p, o / p }'
  done
done
echo "lfsearch: $("$LFS_BUILD/lfsearch" info | sed -n 's/^  GEMM *: //p'), $("$LFS_BUILD/lfsearch" info |
  sed -n 's/^  CPU kernels *: //p') kernels; PyTorch $($PY -c 'import torch; print(torch.__version__)')"
