#!/bin/bash
# How failures reach the user under 2 MPI ranks: an internal fault prints
# "[rank r] file:line: message" and a hint and aborts the job (exit 1); a
# collective user error is printed once by rank 0 (exit 2); a user error found
# by one rank names that rank and still exits 2; a failing MPI call names the call.
source "$(dirname "$0")/common.sh"
HELPER=$LFS_BUILDDIR/tests/mpi/fault_helper

run 0 "$MPIEXEC" -n 2 "$HELPER" ok
ok "the helper runs cleanly when asked to"

run 1 "$MPIEXEC" -n 2 "$HELPER" fatal
expect_re '^\[rank 1\] tests/mpi/fault_helper\.c:[0-9]+: broken invariant 42$'
expect "hint: this is an internal fault"
ok "internal fault: rank, file:line, message, hint, exit 1"

run 2 "$MPIEXEC" -n 2 "$HELPER" user
expect_count "lfsearch: error: bad value x for [run] seed" 1
ok "collective user error: printed once, exit 2"

run 2 "$MPIEXEC" -n 2 "$HELPER" user-local
expect "[rank 1] lfsearch: error: shard 7 is truncated"
ok "user error on one rank: names the rank, exit 2"

run 1 "$MPIEXEC" -n 2 "$HELPER" mpi
expect_re 'fault_helper\.c:[0-9]+: MPI_Send\(.*\) failed: '
ok "failing MPI call: the call and MPI's reason"
echo "$checks checks passed"
