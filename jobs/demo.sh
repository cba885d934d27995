#!/bin/bash
# demo.sh: the main job. Sets everything up (packages, build), generates the
# synthetic faces once (data/synth32), and runs the loss search on them:
# Search-Softmax with 4 candidates on 4 MPI ranks (jobs/configs/synth_search.ini),
# printing each epoch's candidates, rewards, winner and policy (a few minutes on
# 2 cores). Extra arguments go to `lfsearch search` (e.g. --set
# search.space=cosface_m); LFS_RANKS must equal the candidates times
# ranks_per_candidate. A finished run is started afresh; an interrupted one
# (Ctrl-C) continues where it stopped. `lfsearch info runs/synth_search/run.h5`
# prints the per-epoch table afterwards.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
cd "$LFS_ROOT"
LFS="$LFS_BUILD/lfsearch"
if [ ! -f data/synth32/test_pairs.h5 ]; then
  "$LFS" synth --out data/synth32 --identities 300 --images-per-identity 20 --size 32 --seed 1 \
    --val-pairs 1000 --test-pairs 1000 --preview data/synth32/preview.png
fi
epochs=$(sed -n 's/^epochs *= *//p' jobs/configs/synth_search.ini)
if [ -f "runs/synth_search/checkpoints/$(printf 'ckpt-e%04d-s000000.h5' "$epochs")" ]; then
  rm -rf runs/synth_search # the last run finished: start a new one
fi
exec mpiexec -n "${LFS_RANKS:-4}" "$LFS" search -c jobs/configs/synth_search.ini --resume auto "$@"
