#!/bin/bash
# run-all.sh: the whole test suite from a fresh machine. Installs what is
# missing (with Slurm and munge for the Slurm test, g++ for the emulated CUDA
# test), builds warning-free (-Werror) with everything configure finds (CUDA
# included when present), runs `make check`, runs the unit tests again in a
# CPU-only AddressSanitizer + UBSan build, and runs `make distcheck`. Ends with
# automake's counts summed over all of it: "N passed, N failed".
set -uo pipefail
LFS_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export LFS_BUILD=${LFS_BUILD:-$LFS_ROOT/_build}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1

passed=0 failed=0 skipped=0

# Packages, autoreconf, configure, a warning-free build (-Werror).
if ! LFS_WITH_TEST_PACKAGES=1 LFS_CFLAGS="-g -O3 -Werror" bash "$LFS_ROOT/jobs/setup.sh"; then
  echo "setup or build failed"
  echo "0 passed, 1 failed"
  exit 1
fi

# Adds the counts of an automake test-suite.log to the totals.
count_log() {
  local log=$1 p f s
  if [ ! -f "$log" ]; then failed=$((failed + 1)); return; fi
  p=$(sed -n 's/^# PASS: *//p; s/^# XFAIL: *//p' "$log" | awk '{s += $1} END {print s + 0}')
  f=$(sed -n 's/^# FAIL: *//p; s/^# XPASS: *//p; s/^# ERROR: *//p' "$log" | awk '{s += $1} END {print s + 0}')
  s=$(sed -n 's/^# SKIP: *//p' "$log" | awk '{s += $1} END {print s + 0}')
  passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
}

# A whole step that is one check (distcheck): 1 passed or 1 failed.
count_step() {
  if [ "$1" = 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
}

section() { printf '\n==== %s ====\n' "$*"; }

# The end of the log of every test automake recorded as FAIL or ERROR.
show_failed_logs() {
  grep -l -E '^:test-result: (FAIL|ERROR)' "$1"/tests/*/*.trs 2>/dev/null | while read -r trs; do
    section "log of ${trs%.trs}.log"; tail -40 "${trs%.trs}.log"; done
}

section "make check ($LFS_BUILD)"
(cd "$LFS_BUILD" && make -j2 check) 2>&1 | grep -E '^(PASS|FAIL|SKIP|XFAIL|XPASS|ERROR|#)'
count_log "$LFS_BUILD/test-suite.log"
show_failed_logs "$LFS_BUILD"

section "unit tests under AddressSanitizer + UBSan (CPU-only build)"
asan=$LFS_ROOT/_build-asan
mkdir -p "$asan"
if (cd "$asan" && { [ -f Makefile ] || "$LFS_ROOT/configure" --enable-sanitizers --without-cuda > configure.out; } &&
    make -j2 > make.out 2>&1); then
  (cd "$asan" && ASAN_OPTIONS=detect_leaks=1 make check-unit) 2>&1 | grep -E '^(PASS|FAIL|SKIP|XFAIL|XPASS|ERROR|#)'
  count_log "$asan/test-suite.log"
  show_failed_logs "$asan"
else
  tail -30 "$asan/make.out" "$asan/configure.out" 2>/dev/null
  failed=$((failed + 1))
fi

section "make distcheck"
(cd "$LFS_BUILD" && make -j2 distcheck > distcheck.out 2>&1)
rc=$?
grep -E 'archives ready|^(FAIL|ERROR):|^# (TOTAL|PASS|FAIL)' "$LFS_BUILD/distcheck.out"
[ "$rc" = 0 ] || tail -40 "$LFS_BUILD/distcheck.out"
count_step "$rc"

section "summary"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ]
