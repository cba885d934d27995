#!/bin/bash
# device-check.sh: the checks that need a GPU, for a lent GPU machine (CUDA and
# cuDNN present; no Open MPI, HDF5 or OpenBLAS, no package access).
#
# Prepare here (CPU machine), then carry _build-cuda and .device-debs:
#   mkdir -p .device-debs && (cd .device-debs && apt-get download $(bash tests/gpu/device-check.sh --debs))
#   LFS_BUILD=$PWD/_build-cuda LFS_CONFIGURE_FLAGS=--with-cuda bash jobs/setup.sh
#   (cd _build-cuda && make check TESTS=)        # builds the test programs
# On the GPU machine (writes its summary to $OUT/device-check.txt):
#   bash tests/gpu/device-check.sh
set -uo pipefail
DEBS="libopenmpi3 libhdf5-openmpi-103-1 libopenblas0-pthread libopenblas0 libinih1 libcmocka0
  libpmix2 libevent-core-2.1-7 libevent-pthreads-2.1-7 libhwloc15 libfabric1 libpsm2-2
  libucx0 libnl-3-200 libnl-route-3-200 libibverbs1 librdmacm1 libsz2 libaec0 libcurl3-gnutls"
if [ "${1:-}" = --debs ]; then echo $DEBS; exit 0; fi

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${LFS_BUILD:-$ROOT/_build-cuda}
OUT=${OUT:-$ROOT/device-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/device-check.txt") 2>&1

# Runtime libraries from the carried Debian packages.
SYS=/tmp/lfs-sysroot
mkdir -p "$SYS"
for deb in "$ROOT"/.device-debs/*.deb; do [ -f "$deb" ] && dpkg -x "$deb" "$SYS"; done
export LD_LIBRARY_PATH="$SYS/usr/lib/x86_64-linux-gnu:$SYS/usr/lib/x86_64-linux-gnu/hdf5/openmpi:$SYS/usr/lib/x86_64-linux-gnu/openblas-pthread:${LD_LIBRARY_PATH:-}"
export OPAL_PREFIX="$SYS/usr" OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

status=0
step() {
  echo "== $*"
  "$@"; local rc=$?
  echo "== rc=$rc"
  [ "$rc" = 0 ] || status=1
}
nvidia-smi -L
step "$BUILD/lfsearch" info --devices
step "$BUILD/tests/gpu/test_gpu_devices"
# every backend op and a training-mode pass of tiny and r18 against the CPU
step "$BUILD/tests/gpu/test_cuda_parity"
echo "device-check: $([ $status = 0 ] && echo PASS || echo FAIL)"
exit $status
