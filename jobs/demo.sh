#!/bin/bash
# demo.sh: the main job. Sets everything up (packages, build), generates the
# synthetic faces once (data/synth32), and trains ArcFace on them on 2 MPI ranks
# with jobs/configs/synth_train.ini, printing progress and the validation/test
# verification accuracy after every epoch (a few minutes on 2 cores). When
# `lfsearch search` lands this becomes the demo loss search. Extra arguments go to
# `lfsearch train` (e.g. --set head.loss=cosface). A finished run is started
# afresh; an interrupted one (Ctrl-C) continues where it stopped.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
cd "$LFS_ROOT"
LFS="$LFS_BUILD/lfsearch"
if [ ! -f data/synth32/test_pairs.h5 ]; then
  "$LFS" synth --out data/synth32 --identities 300 --images-per-identity 20 --size 32 --seed 1 \
    --val-pairs 1000 --test-pairs 1000 --preview data/synth32/preview.png
fi
epochs=$(sed -n 's/^epochs *= *//p' jobs/configs/synth_train.ini)
if [ -f "runs/synth_train/checkpoints/$(printf 'ckpt-e%04d-s000000.h5' "$epochs")" ]; then
  rm -rf runs/synth_train # the last run finished: start a new one
fi
exec mpiexec -n "${LFS_RANKS:-2}" "$LFS" train -c jobs/configs/synth_train.ini --resume auto "$@"
