#!/bin/bash
# `lfsearch train` and `lfsearch eval` on a tiny synthetic dataset: the model
# learns (validation accuracy far above the 50% of chance), eval of the final
# checkpoint reproduces the training-time verification exactly, a run stopped
# by SIGUSR1 mid-epoch exits 3 and `--resume auto` ends bit-identical to an
# uninterrupted run, the run log has a row per epoch, and bad input is exit 2.
source "$(dirname "$0")/common.sh"

run 0 "$LFSEARCH" synth --out data --identities 50 --images-per-identity 12 --size 32 --seed 2 \
  --val-pairs 300 --test-pairs 300
cat > t.ini <<'INI'
[run]
seed = 1
log_every = 5
[data]
train = data/train.h5
val_pairs = data/val_pairs.h5
batch_size = 40
image_size = 32
[model]
arch = tiny
embedding_size = 64
[head]
loss = cosface
[optim]
lr = 0.1
epochs = 4
milestones =
INI

acc_of() { sed -nE "s/^epoch $1  synth_val: accuracy ([0-9.]+) .*/\1/p" <<<"$2"; }

run 0 "$LFSEARCH" train -c t.ini --set run.out_dir=a
full=$out
expect "lfsearch train: tiny, loss cosface, 50 classes, 32x32, global batch 40"
expect_re '^epoch 4/4  step 15/15  loss [0-9.]+  lr 0.1  [0-9.]+ img/s'
last=$(acc_of 4 "$full")
awk -v a="$last" 'BEGIN { exit !(a >= 75) }' || fail "final validation accuracy $last% (chance is 50%)"
! grep -q "warning" <<<"$full" || { echo "$full" >&2; fail "unexpected warning"; }
ok "training learns: validation accuracy $(acc_of 1 "$full")% after epoch 1, $last% after epoch 4"

line4=$(grep -E '^epoch 4  synth_val' <<<"$full" | sed 's/^epoch 4  //')
run 0 "$LFSEARCH" eval --checkpoint a/checkpoints/ckpt-e0004-s000000.h5 --pairs data/val_pairs.h5
[ "$out" = "$line4" ] || fail "eval gave '$out', training printed '$line4'"
ok "eval of the final checkpoint reproduces the training-time verification"
run 0 "$LFSEARCH" eval --checkpoint a/checkpoints/ckpt-e0004-s000000.h5 --pairs data/val_pairs.h5 --json
expect '"name": "synth_val"'
json_acc=$(sed -nE 's/.*"name": "synth_val", [^{}]*"accuracy": ([0-9.e-]+),.*/\1/p' <<<"$out")
# the text says the percentage to 2 decimals, JSON the fraction in full
awk -v j="$json_acc" -v t="$last" 'BEGIN { d = 100 * j - t; exit !(j != "" && d <= 0.005 && d >= -0.005) }' ||
  fail "eval --json: accuracy '$json_acc', the text said $last%"
ok "eval --json (accuracy $json_acc)"

h5ls a/run.h5 > runlog.txt || fail "run.h5 is not readable"
grep -qE '^reward +Dataset \{4/Inf, 1\}' runlog.txt || { cat runlog.txt; fail "run.h5 lacks 4 epochs"; }
ls a/checkpoints > ckpts.txt
[ "$(wc -l < ckpts.txt)" = 3 ] || { cat ckpts.txt; fail "checkpoint.keep = 3 not applied"; }
run 0 "$LFSEARCH" info a/checkpoints/ckpt-e0004-s000000.h5
expect "position     : after epoch 4"; expect "run          : model tiny, loss cosface, seed 1, 4 epochs"
expect "head         : 50 classes x 64"; expect "optimizer    : 60 steps"
ok "run log has 4 epochs; the last 3 checkpoints are kept; info describes a checkpoint"

"$LFSEARCH" train -c t.ini --set run.out_dir=b --set run.log_every=1 > stop.out 2>&1 &
pid=$!
for _ in $(seq 1 600); do grep -q '^epoch 2/4  step 3/' stop.out && break; sleep 0.05; done
kill -USR1 "$pid"
wait "$pid"; rc=$?
[ "$rc" = 3 ] || { cat stop.out; fail "SIGUSR1: exit $rc, expected 3"; }
mid=$(ls b/checkpoints | grep -v 's000000' | head -1)
[ -n "$mid" ] || { ls b/checkpoints; fail "no mid-epoch checkpoint"; }
run 0 "$LFSEARCH" train -c t.ini --set run.out_dir=b --resume auto
expect "resumed from b/checkpoints/$mid"
[ "$(acc_of 4 "$out")" = "$last" ] || fail "resumed run ends at $(acc_of 4 "$out")%, uninterrupted at $last%"
h5diff a/checkpoints/ckpt-e0004-s000000.h5 b/checkpoints/ckpt-e0004-s000000.h5 /model /model ||
  fail "resumed model differs from the uninterrupted one"
h5diff a/checkpoints/ckpt-e0004-s000000.h5 b/checkpoints/ckpt-e0004-s000000.h5 /head /head ||
  fail "resumed head differs"
ok "stopped at $mid by SIGUSR1 (exit 3), resumed: bit-identical final model and head"

run 0 "$MPIEXEC" -n 2 "$LFSEARCH" train -c t.ini --set run.out_dir=c --set optim.epochs=1 \
  --set model.sync_bn=true
expect "on 2 ranks"; expect_re '^epoch 1  synth_val: accuracy'
ok "training on 2 ranks with sync_bn"

# The staging path of a GPU run (parameters mirrored on the host, input, embeddings
# and gradients copied each step) on the CPU kernels: bit for bit the CPU run,
# with dropout and per-rank BN statistics broadcast.
run 0 "$MPIEXEC" -n 2 "$LFSEARCH" train -c t.ini --set run.out_dir=staged --set optim.epochs=1 \
  --set model.sync_bn=true --device cpu-staged
for g in /model /optim /head; do
  h5diff c/checkpoints/ckpt-e0001-s000000.h5 staged/checkpoints/ckpt-e0001-s000000.h5 $g $g ||
    fail "--device cpu-staged: $g differs from the CPU run"
done
# one rank: the state never leaves the "device" during a step
run 0 "$LFSEARCH" train -c t.ini --set run.out_dir=one --set optim.epochs=1 --set model.dropout=0.2
run 0 "$LFSEARCH" train -c t.ini --set run.out_dir=one-staged --set optim.epochs=1 \
  --set model.dropout=0.2 --device cpu-staged
for g in /model /optim /head; do
  h5diff one/checkpoints/ckpt-e0001-s000000.h5 one-staged/checkpoints/ckpt-e0001-s000000.h5 $g $g ||
    fail "--device cpu-staged on 1 rank: $g differs from the CPU run"
done
ok "--device cpu-staged (the GPU's staging path on CPU kernels) equals the CPU run bit for bit, on 2 ranks and on 1"
# A device too small for the batch (cpu-staged with 8 MiB of "device memory"),
# resuming a finished run: exit 2 naming the allocation, the size and what is
# free, and the run's files as they were.
sum_before=$(cat one-staged/run.h5 one-staged/checkpoints/*.h5 | md5sum)
LFS_STAGED_MEMORY_MIB=8 run 2 "$LFSEARCH" train -c t.ini --set run.out_dir=one-staged \
  --set optim.epochs=2 --set model.dropout=0.2 --device cpu-staged --resume auto
expect_re 'cpu-staged \(LFS_STAGED_MEMORY_MIB=8\): cannot allocate [0-9.]+ MiB for the output and its gradient of node [0-9]+ \(.*, output 40x'
expect_re 'MiB free\. A smaller batch per device'
[ "$(cat one-staged/run.h5 one-staged/checkpoints/*.h5 | md5sum)" = "$sum_before" ] ||
  fail "out of device memory: the run's files changed"
ok "out of device memory: exit 2 naming what was allocated and what is free; the run untouched"
if ! "$LFSEARCH" info --devices 2>&1 | grep -q ': GPU [0-9]'; then
  run 2 "$LFSEARCH" train -c t.ini --set run.out_dir=gpu --device cuda
  expect "[run] backend = cuda: "; ok "--device cuda without a usable GPU: exit 2 with the reason"
fi

run 2 "$LFSEARCH" train -c t.ini --set data.train=missing.h5
expect "missing.h5"; ok "missing training set: exit 2, named"
run 2 "$LFSEARCH" train -c t.ini --set data.image_size=48
expect "image_size = 48"; ok "image size mismatch: exit 2, named"
run 2 "$LFSEARCH" train -c t.ini --set head.loss=cosface --set head.m2=0.3
expect "[head]"; ok "margins a loss does not use: exit 2"
run 2 "$LFSEARCH" eval --checkpoint nothere.h5 --pairs data/val_pairs.h5
expect "nothere.h5"; ok "eval of a missing checkpoint: exit 2, named"
echo "$checks checks passed"
