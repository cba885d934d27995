#!/bin/bash
# The demo learns (data parallel on 2 ranks): training accuracy at the end is far
# above chance and the loss falls; SIGUSR1 stops a run with exit code 3.
source "$(dirname "$0")/common.sh"
DEMO=$LFS_SRCDIR/jobs/configs/smoke.ini

run 0 "$MPIEXEC" -n 2 "$LFSEARCH" demo -c "$DEMO" --set run.steps=40
echo "$out"
expect "2 ranks, global batch 64"
first_loss=$(grep -E '^step' <<<"$out" | head -1 | sed -E 's/.*loss ([0-9.]+).*/\1/')
last_loss=$(grep -E '^step' <<<"$out" | tail -1 | sed -E 's/.*loss ([0-9.]+).*/\1/')
last_acc=$(grep -E '^step' <<<"$out" | tail -1 | sed -E 's/.*train acc +([0-9.]+)%.*/\1/')
awk -v a="$first_loss" -v b="$last_loss" 'BEGIN { exit !(b < 0.5 * a) }' || fail "loss $first_loss -> $last_loss did not halve"
awk -v acc="$last_acc" 'BEGIN { exit !(acc >= 60) }' || fail "final train accuracy $last_acc% (chance is 10%)"
ok "loss $first_loss -> $last_loss, train accuracy $last_acc% on 2 ranks"

"$LFSEARCH" demo -c "$DEMO" --set run.steps=100000 --set run.log_every=1 > stop.out 2>&1 &
pid=$!
for _ in $(seq 1 300); do grep -q '^step' stop.out && break; sleep 0.1; done
kill -USR1 "$pid"
wait "$pid"; rc=$?
[ "$rc" = 3 ] || { cat stop.out; fail "SIGUSR1: exit $rc, expected 3"; }
grep -q "stop signal received" stop.out || fail "no stop message"
ok "SIGUSR1 stops the run with exit code 3"
echo "$checks checks passed"
