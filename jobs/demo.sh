#!/bin/bash
# demo.sh: the main job. Sets everything up (packages, build) and runs the demo
# on 2 MPI ranks with jobs/configs/demo.ini. Until `lfsearch search` exists this
# trains the small residual demo network on synthetic random data; extra
# arguments are passed on (e.g. --set run.steps=200).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
exec mpiexec -n "${LFS_RANKS:-2}" "$LFS_BUILD/lfsearch" demo -c "$LFS_ROOT/jobs/configs/demo.ini" "$@"
