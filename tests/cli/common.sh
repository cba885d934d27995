# common.sh: helpers for the CLI tests (sourced). Each test runs in its own
# scratch directory under the build tree; any failed expectation exits 1.
set -u
: "${LFS_BUILDDIR:?run through make check}" "${LFS_SRCDIR:?run through make check}"
LFSEARCH=$LFS_BUILDDIR/lfsearch
MPIEXEC=${MPIEXEC:-mpiexec}
WORK=$LFS_BUILDDIR/tests/cli/work-$(basename "$0" .sh)
rm -rf "$WORK"; mkdir -p "$WORK"; cd "$WORK"
checks=0

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { checks=$((checks + 1)); echo "ok $checks - $*"; }

# run EXPECTED_RC CMD...: runs CMD, stores stdout+stderr in $out, checks the exit code.
run() {
  local want=$1; shift
  out=$("$@" 2>&1); rc=$?
  [ "$rc" = "$want" ] || { echo "$out" >&2; fail "'$*' exited $rc, expected $want"; }
}

# expect TEXT: $out must contain TEXT (fixed string).
expect() { grep -qF -- "$1" <<<"$out" || { echo "$out" >&2; fail "output lacks: $1"; }; }
expect_re() { grep -qE -- "$1" <<<"$out" || { echo "$out" >&2; fail "output does not match: $1"; }; }
expect_count() { local n; n=$(grep -cF -- "$1" <<<"$out"); [ "$n" = "$2" ] || { echo "$out" >&2; fail "'$1' appears $n times, expected $2"; }; }

# expect_same_run A B CHECKPOINT: runs A and B (out_dirs) hold the same training
# state and policy in checkpoints/CHECKPOINT and the same per-epoch series in
# run.h5, timings aside (a resumed run against an uninterrupted one).
expect_same_run() {
  local g d
  for g in /model /optim /head /policy; do
    h5diff "$1/checkpoints/$3" "$2/checkpoints/$3" $g $g || fail "$2's final checkpoint: $g differs from $1's"
  done
  for d in /u /a /reward /train_loss /chosen /mu /sigma /lr /metrics/test_acc; do
    h5diff "$1/run.h5" "$2/run.h5" $d $d || fail "$2's run log: $d differs from $1's"
  done
}
