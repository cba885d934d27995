#!/bin/bash
# demo.sh: the main job. Sets everything up (packages, build), generates the
# synthetic faces once (data/demo) and runs the loss search on them:
# Search-Softmax with 4 candidates on 4 MPI ranks (jobs/configs/demo.ini),
# printing each epoch's candidates, rewards, winner and policy, then the
# per-epoch table of the run log; writes the analysis report of the run
# (runs/demo/report: figures, Markdown, CSV) and says where everything is
# (about 3 minutes on 2 cores). Extra arguments go to `lfsearch search` (e.g. --set
# search.space=cosface_m); LFS_RANKS must equal the candidates times
# ranks_per_candidate. A finished run is started afresh; an interrupted one
# (Ctrl-C) continues where it stopped.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
cd "$LFS_ROOT"
LFS="$LFS_BUILD/lfsearch"
config=jobs/configs/demo.ini
out=$(sed -n 's/^out_dir *= *//p' "$config")
if [ ! -f data/demo/test_pairs.h5 ]; then
  "$LFS" synth --out data/demo --identities 200 --images-per-identity 16 --size 32 --seed 1 \
    --val-pairs 600 --test-pairs 1000 --preview data/demo/preview.png
fi
epochs=$(sed -n 's/^epochs *= *//p' "$config")
if [ -f "$out/checkpoints/$(printf 'ckpt-e%04d-s000000.h5' "$epochs")" ]; then
  rm -rf "$out" # the last run finished: start a new one
fi
start=$SECONDS
mpiexec -n "${LFS_RANKS:-4}" "$LFS" search -c "$config" --resume auto "$@"
echo
"$LFS" info "$out/run.h5"
/usr/bin/python3 analysis/report "$out" --out "$out/report" --csv > /dev/null
last=$(ls "$out/checkpoints" | tail -1)
cat <<END

The demo's search took $((SECONDS - start)) s. Its outputs, under $LFS_ROOT:
  report       $out/report/report.md  (figures: $out/report/$(basename "$out")/*.png, CSV: epochs.csv)
  run log      $out/run.h5                (the table above: lfsearch info $out/run.h5)
  checkpoints  $out/checkpoints/$last
               (lfsearch eval --checkpoint $out/checkpoints/$last --pairs data/demo/test_pairs.h5)
  data         data/demo/                 (preview.png shows the synthetic faces)
lfsearch is $LFS; analysis/report RUN_DIR... --out DIR reports on any runs.
END
