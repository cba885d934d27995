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
LFS="$BUILD/lfsearch"
nvidia-smi -L
step "$LFS" info --devices
step "$BUILD/tests/gpu/test_gpu_devices"
# every backend op and a training-mode pass of tiny and r18 against the CPU
step "$BUILD/tests/gpu/test_cuda_parity"

# A short search on synthetic faces on the GPU (one rank, no mpiexec needed),
# and the same on the CPU: the rewards must be alike.
WORK=$(mktemp -d /tmp/lfs-device.XXXXXX)
step "$LFS" synth --out "$WORK/data" --identities 60 --images-per-identity 12 --size 32 --seed 2 \
  --val-pairs 300 --test-pairs 300 --quiet
for dev in cuda cpu; do
  step "$LFS" search -c "$ROOT/jobs/configs/demo.ini" --device $dev --set run.out_dir="$WORK/search-$dev" \
    --set data.train="$WORK/data/train.h5" --set data.val_pairs="$WORK/data/val_pairs.h5" \
    --set data.test_pairs="$WORK/data/test_pairs.h5" --set search.candidates=1 \
    --set optim.epochs=3 --set optim.milestones=2 --set run.threads=8
  "$LFS" info "$WORK/search-$dev/run.h5" | tail -4
done

# Whole training steps at batch 128, 112x112 on the GPU (TF32), beside PyTorch
# on the same GPU when it is installed.
for model in r50 r100 mbf; do
  step "$LFS" bench --train $model --batch 128 --classes 1000 --steps 5 --reps 2 --threads 8 --device cuda
  if python3 -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then
    echo "PyTorch $model: $(python3 "$ROOT/bench/torch_step.py" --model $model --size 112 --batch 128 \
      --steps 5 --repeats 2 --device cuda)"
  fi
done
rm -rf "$WORK"
echo "device-check: $([ $status = 0 ] && echo PASS || echo FAIL)"
exit $status
