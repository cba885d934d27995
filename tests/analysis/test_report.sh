#!/bin/bash
# analysis/report on run logs made here: two seeds of a short tiny search
# (2 candidates on 2 ranks), a short fixed-loss training, and a search stopped
# by SIGUSR1 inside its second epoch and one inside its first (partial logs: 1
# and 0 of 3 epochs). The
# figures must be valid non-blank PNGs and every number of the Markdown tables
# and of the CSV files must equal run.h5's (tests/analysis/check_report.py reads
# the logs with h5py on its own); seeds group into experiments; a partial log, a fixed-loss run (no policy
# figures) and a bad argument are handled. Skips (77) when numpy, h5py or
# matplotlib are not installed for /usr/bin/python3.
source "$(dirname "$0")/../cli/common.sh"
export OMP_NUM_THREADS=1
PY=/usr/bin/python3
REPORT=$LFS_SRCDIR/analysis/report
CHECK=$LFS_SRCDIR/tests/analysis/check_report.py
if ! "$PY" -c "import numpy, h5py, matplotlib" 2>/dev/null; then
  echo "SKIP: /usr/bin/python3 lacks numpy, h5py or matplotlib (apt-get install python3-numpy python3-h5py python3-matplotlib)"
  exit 77
fi

run 0 "$LFSEARCH" synth --out data --identities 30 --images-per-identity 8 --size 32 --seed 4 \
  --val-pairs 100 --test-pairs 100
cat > s.ini <<'INI'
[run]
log_every = 1
[data]
train = data/train.h5
val_pairs = data/val_pairs.h5
test_pairs = data/test_pairs.h5
batch_size = 32
image_size = 32
[model]
arch = tiny
embedding_size = 32
[optim]
lr = 0.1
epochs = 3
milestones = 3
[search]
candidates = 2
warmup_epochs = 1
INI
for seed in 1 2; do
  run 0 "$MPIEXEC" -n 2 "$LFSEARCH" search -c s.ini --set run.seed=$seed --set run.out_dir=search-s$seed
done
run 0 "$LFSEARCH" train -c s.ini --set run.out_dir=train-arcface --set optim.epochs=2 --set optim.milestones=2
"$MPIEXEC" -n 2 "$LFSEARCH" search -c s.ini --set run.out_dir=stopped --set optim.lr=0.05 > stop.out 2>&1 &
pid=$!
for _ in $(seq 1 1200); do grep -q '^\[candidate 0\] epoch 2/3  step 2/' stop.out && break; sleep 0.05; done
kill -USR1 "$pid"; wait "$pid"
[ "$("$PY" -c "import h5py; print(len(h5py.File('stopped/run.h5')['epoch']))")" = 1 ] || fail "the stopped run did not log exactly 1 epoch"
"$MPIEXEC" -n 2 "$LFSEARCH" search -c s.ini --set run.out_dir=early --set optim.lr=0.05 > early.out 2>&1 &
pid=$!
for _ in $(seq 1 1200); do grep -q '^\[candidate 0\] epoch 1/3  step 2/' early.out && break; sleep 0.05; done
kill -USR1 "$pid"; wait "$pid"
[ "$("$PY" -c "import h5py; print(len(h5py.File('early/run.h5')['epoch']))")" = 0 ] || fail "the early-stopped run logged an epoch"
ok "run logs: 2 searches, 1 training, searches stopped after 1 and after 0 of 3 epochs"

run 0 "$PY" "$REPORT" search-s1 search-s2 train-arcface stopped early --out report --csv
expect "stopped: search_softmax search, M = 2 (1 of 3 epochs logged: the run is still going, or stopped or crashed early)"
expect "train-arcface: arcface training (all 2 epochs logged)"
expect "early: search_softmax search, M = 2 (no epoch logged yet"
for f in search-s1/rewards.png search-s1/policy.png search-s1/samples.png search-s1/training.png \
  train-arcface/rewards.png train-arcface/training.png comparison.png comparison.csv; do
  [ -s "report/$f" ] || fail "report/$f is missing"
done
[ ! -e report/train-arcface/policy.png ] || fail "a fixed-loss run got a policy figure"
[ ! -e report/stopped/samples.png ] || fail "a run with only its warm-up epoch got a samples figure"
run 0 "$PY" "$CHECK" report search-s1 search-s2 train-arcface stopped early
echo "$out"
ok "figures are valid PNGs; every table number and CSV value equals run.h5 ($(echo "$out" | sed -n 's/ table cells.*//p') cells)"

grep -qE '^\| search_softmax search, M = 2, tiny \(optim.lr = 0.1\) \| 2 \| 1, 2 \| 3 / 3 \| [0-9.]+ ± [0-9.]+ \| [0-9.]+ ± [0-9.]+ \|$' report/report.md ||
  { grep '^|' report/report.md | head -20; fail "the two seeds do not form one experiment with mean ± std"; }
grep -qE '^\| search_softmax search, M = 2, tiny \(optim.lr = 0.05\) \| 2 \| 1, 1 \| 1 / 0 \|' report/report.md ||
  { grep '^|' report/report.md | head -20; fail "the stopped runs (lr 0.05) are not their own experiment"; }
ok "comparison: the two seeds form one experiment (mean ± std), runs of another lr another, labelled by the difference"

run 2 "$PY" "$REPORT" data --out r2
expect "data: no run.h5 in this directory"
run 2 "$PY" "$REPORT" data/train.h5 --out r2
expect 'data/train.h5: format is "lfsearch-dataset"'
ok "a directory without a run log, or another lfsearch file: exit 2 naming it"
echo "$checks checks passed"
