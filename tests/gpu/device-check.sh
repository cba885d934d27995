#!/bin/bash
# device-check.sh: the checks that need a GPU, in one run that fits a short lease
# (about 5 minutes on an H100/H200): the device query, the parity of every CUDA op
# and of whole training passes with the CPU backend, NCCL's device collectives
# (tests/gpu/test_nccl, one rank), a short search on synthetic
# faces on the GPU and on the CPU, and `lfsearch bench --train` for r50, r100 and
# mbf at batch 128, 112x112, TF32, beside PyTorch's step (bench/torch_step.py)
# when PyTorch with CUDA is installed. The summary goes to SUMMARY_DIR/device-check.txt.
#
#   bash tests/gpu/device-check.sh [SUMMARY_DIR]        (default $OUT, else ./device-out)
#
# It builds with --with-cuda into $LFS_BUILD (default _build-cuda) unless
# LFS_PREBUILT=1 says the programs there are already built. GPU machines often
# lack Open MPI, HDF5 and OpenBLAS and cannot install packages: the Debian
# packages the programs need, downloaded beforehand into .device-debs/, are then
# unpacked into a private root and used by lfsearch's programs only. Prepared
# on a machine with the packages (the CUDA toolkit need not run there):
#   LFS_BUILD=$PWD/_build-cuda LFS_CONFIGURE_FLAGS=--with-cuda bash jobs/setup.sh
#   (cd _build-cuda && make check TESTS=)              # the test programs
#   mkdir -p .device-debs && (cd .device-debs && apt-get download $(bash tests/gpu/device-check.sh --debs))
#   bash tests/gpu/device-check.sh --slim .device-bin  # the four programs alone
# then on the GPU machine: LFS_BUILD=.device-bin LFS_PREBUILT=1 bash tests/gpu/device-check.sh
# (LFS_DEVICE_ONLY=parity stops after the parity test, for a lease with little time left;
# LFS_DEVICE_TORCH="r50" runs the PyTorch baseline for r50 alone).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${LFS_BUILD:-$ROOT/_build-cuda}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
PROGRAMS="lfsearch tests/gpu/test_gpu_devices tests/gpu/test_cuda_parity tests/gpu/test_nccl"

# --debs: the Debian packages holding every shared library the programs, Open
# MPI's components and PMIx's plugins load, except the C library, the C++
# runtime and CUDA's own (present wherever CUDA is); plus Open MPI's tools and
# help texts.
if [ "${1:-}" = --debs ]; then
  libs=$( (for p in $PROGRAMS; do ldd "$BUILD/$p"; done
           for f in /usr/bin/orted /usr/lib/x86_64-linux-gnu/openmpi/lib/openmpi3/*.so \
                    /usr/lib/x86_64-linux-gnu/pmix2/lib/pmix/*.so; do ldd "$f"; done) 2>/dev/null |
    awk '/=> \//{print $3}' | sort -u |
    grep -v -E '/(libc|libm|libdl|librt|libpthread|libresolv|ld-linux-x86-64|libstdc\+\+|libgcc_s)\.so|/cuda')
  { for l in $libs; do dpkg -S "*/$(basename "$(readlink -f "$l")")" 2>/dev/null | cut -d: -f1; done
    echo openmpi-bin openmpi-common; } | tr ', ' '\n\n' | grep . | sort -u | tr '\n' ' '
  echo
  exit 0
fi
# --slim DIR: copies the built programs alone (what a GPU machine needs to run
# them) into DIR, to carry less than the whole build tree.
if [ "${1:-}" = --slim ]; then
  for p in $PROGRAMS; do install -D "$BUILD/$p" "$2/$p" || exit 1; done
  git -C "$ROOT" describe --always --dirty > "$2/REVISION" # the device's copy may lack .git
  exit 0
fi

SUMMARY_DIR=${1:-${OUT:-$ROOT/device-out}}
mkdir -p "$SUMMARY_DIR"
SUMMARY=$SUMMARY_DIR/device-check.txt
exec > >(tee "$SUMMARY") 2>&1
START=$SECONDS
REVISION=$(cat "$BUILD/REVISION" 2>/dev/null || git -C "$ROOT" describe --always --dirty 2>/dev/null)
echo "device-check of lfsearch $REVISION, $(date -u +%FT%TZ)"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader || true

status=0
STEP_LOG=$(mktemp /tmp/lfs-step.XXXXXX)
# step NAME TIMEOUT_S COMMAND...: runs, prints its exit code and time, counts failures
# (exit 77, a test's SKIP, counts as one unless SKIP_OK=1).
step() {
  local name=$1 limit=$2 t0=$SECONDS
  shift 2
  local cmd="$*"
  echo "== $name: ${cmd#"${LFS_ENV[*]} "}"
  timeout --kill-after=5 "$limit" "$@" 2>&1 | tee "$STEP_LOG"
  local rc=${PIPESTATUS[0]}
  echo "== $name: rc=$rc, $((SECONDS - t0)) s"
  [ $rc = 77 ] && [ "${SKIP_OK:-0}" = 1 ] && { echo "== $name: skipped"; return 0; }
  if [ $rc != 0 ]; then
    status=1
    FAILED="${FAILED:-} $name"
  fi
  return $rc
}

if [ "${LFS_PREBUILT:-0}" != 1 ]; then
  step build 900 env LFS_BUILD="$BUILD" LFS_CONFIGURE_FLAGS=--with-cuda bash "$ROOT/jobs/setup.sh" &&
    step build-tests 600 make -C "$BUILD" -j"$(nproc)" check TESTS= >/dev/null || exit 1
fi

# The carried packages go into a private root used by lfsearch's programs only
# (the environment LFS_ENV), so that the machine's own Python and PyTorch are
# left alone.
SYS=/tmp/lfs-sysroot
LIBPATH=
if ls "$ROOT"/.device-debs/*.deb >/dev/null 2>&1; then
  mkdir -p "$SYS"
  for deb in "$ROOT"/.device-debs/*.deb; do dpkg -x "$deb" "$SYS"; done
  L=$SYS/usr/lib/x86_64-linux-gnu
  LIBPATH=$L:$L/hdf5/openmpi:$L/openblas-pthread:$L/openmpi/lib:$SYS/lib/x86_64-linux-gnu
fi
# CUDA's libraries where the loader does not find them (cuDNN often lives in a
# Python wheel; cuDNN loads NVRTC and nvJitLink for some of its engines; NCCL,
# which lfsearch opens itself at run time, comes with PyTorch's wheel as
# nvidia/nccl/lib/libnccl.so.2).
WHEELS=$(python3 -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null)
for lib in $(LD_LIBRARY_PATH=$LIBPATH ldd "$BUILD/lfsearch" | awk '/not found/{print $1}') \
           libnvrtc.so.13 libnvJitLink.so.13 libnccl.so.2; do
  ldconfig -p | grep -q "^\s*$lib " && continue
  hit=$(find /usr/local /usr/lib /opt $WHEELS -name "$lib" -print -quit 2>/dev/null)
  [ -n "$hit" ] && LIBPATH=$LIBPATH:$(dirname "$hit") && echo "using $hit"
done
LFS_ENV=(env LD_LIBRARY_PATH="$LIBPATH${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  ${LIBPATH:+OPAL_PREFIX=$SYS/usr PMIX_INSTALL_PREFIX=$SYS/usr}
  OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_ess_singleton_isolated=1
  OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader OMPI_MCA_mca_base_component_show_load_errors=0
  OMP_NUM_THREADS=${LFS_THREADS:-8})
LFS="$BUILD/lfsearch"
missing=$("${LFS_ENV[@]}" ldd "$LFS" | grep 'not found')
[ -z "$missing" ] || echo "libraries still missing: $missing"

step devices 60 "${LFS_ENV[@]}" "$LFS" info --devices
step gpu-devices 60 "${LFS_ENV[@]}" "$BUILD/tests/gpu/test_gpu_devices"
# every backend op, whole training-mode passes of tiny and r18, the head at
# 100,003 classes, against the CPU
step parity 240 "${LFS_ENV[@]}" "$BUILD/tests/gpu/test_cuda_parity"
if ! grep -q 'checks passed' "$STEP_LOG"; then
  echo "(it stopped: again with synchronous launches, then under compute-sanitizer)"
  timeout 120 "${LFS_ENV[@]}" CUDA_LAUNCH_BLOCKING=1 "$BUILD/tests/gpu/test_cuda_parity" 2>&1 |
    grep -v '^ok' | tail -20
  command -v compute-sanitizer >/dev/null &&
    timeout 120 "${LFS_ENV[@]}" compute-sanitizer --print-limit 5 "$BUILD/tests/gpu/test_cuda_parity" 2>&1 |
    grep -v '^ok' | tail -40
fi

# NCCL's mean and broadcast on device memory against the host's values. One
# rank: the machine has one GPU, and multi-rank NCCL needs 2+ GPUs (one per
# rank; with more ranks than GPUs the test skips). It skips, saying why, where
# no libnccl.so.2 was found.
SKIP_OK=1 step nccl 60 "${LFS_ENV[@]}" "$BUILD/tests/gpu/test_nccl"

if [ "${LFS_DEVICE_ONLY:-}" = parity ]; then # a short lease: the correctness part alone
  echo "device-check (parity only): $([ $status = 0 ] && echo PASS || echo "FAIL:${FAILED:-}") in $((SECONDS - START)) s"
  exit $status
fi

# Whole training steps at batch 128, 112x112, TF32, 85,742 classes (MS1M's
# count): r50 also with cuDNN's fastest algorithms (deterministic or not),
# through cuDNN's graph API, without set gradients, profiled by op (and
# PyTorch's kernels profiled), and with 100 classes (the head's share of the
# step is the difference), each beside PyTorch.
BENCH="--batch 128 --size 112 --steps 10 --reps 3"
torch_ok=0
python3 -c "import torch; assert torch.cuda.is_available()" 2>/dev/null && torch_ok=1
bench_pair() { # MODEL CLASSES [ENV...]
  local model=$1 classes=$2
  shift 2
  step "bench-$model-$classes${1:+-$1}" 120 "${LFS_ENV[@]}" "$@" "$LFS" bench --train "$model" $BENCH \
    --classes "$classes" --threads 8 --device cuda
}
bench_torch() { # MODEL CLASSES [OPTION...]; LFS_DEVICE_TORCH="r50" limits the baselines (about 20 s each)
  [ $torch_ok = 1 ] || { echo "(no PyTorch with CUDA here: no baseline)"; return; }
  case " ${LFS_DEVICE_TORCH:-r50 r100 mbf} " in *" $1 "*) ;; *) echo "(PyTorch $1: skipped)"; return ;; esac
  local model=$1 classes=$2
  shift 2
  step "torch-$model-$classes${1:+-${1#--}}" 180 env PYTHONUNBUFFERED=1 python3 "$ROOT/bench/torch_step.py" \
    --model "$model" --size 112 --batch 128 --classes "$classes" --steps 10 --repeats 3 --device cuda "$@"
}
bench_pair r50 85742
bench_torch r50 85742
bench_pair r50 85742 LFS_CUDA_CONV=fastest # what determinism costs
bench_pair r50 85742 LFS_CUDA_CONV=graph # cuDNN's graph API (PyTorch's way in), deterministic
bench_pair r50 85742 LFS_CUDA_CONV=graph-fastest # ... and any engine, as cudnn.benchmark
bench_pair r50 85742 LFS_GRAD_SET=0 # every gradient zeroed and added to: what setting saves
bench_pair r50 85742 LFS_PROFILE=1 # the step's time by op (each op between synchronisations)
bench_torch r50 85742 --profile --repeats 1 # PyTorch's kernels by time, convolutions' share
bench_pair r50 100
bench_torch r50 100

# A short search on synthetic faces on the GPU and on the CPU (one rank each):
# the rewards must be alike.
WORK=$(mktemp -d /tmp/lfs-device.XXXXXX)
step synth 60 "${LFS_ENV[@]}" "$LFS" synth --out "$WORK/data" --identities 60 --images-per-identity 12 \
  --size 32 --seed 2 --val-pairs 300 --test-pairs 300 \
  --val-identities 60 --test-identities 60
for dev in cuda cpu; do
  step "search-$dev" 120 "${LFS_ENV[@]}" "$LFS" search -c "$ROOT/jobs/configs/demo.ini" --device $dev \
    --set run.out_dir="$WORK/search-$dev" --set data.train="$WORK/data/train.h5" \
    --set data.val_pairs="$WORK/data/val_pairs.h5" --set data.test_pairs="$WORK/data/test_pairs.h5" \
    --set search.candidates=1 --set optim.epochs=3 --set optim.milestones=2 --set run.threads=8
  "${LFS_ENV[@]}" "$LFS" info "$WORK/search-$dev/run.h5" | tail -4
done

for model in r100 mbf; do
  bench_pair $model 85742
  bench_torch $model 85742
done
rm -rf "$WORK"
echo "device-check: $([ $status = 0 ] && echo PASS || echo "FAIL:${FAILED:-}") in $((SECONDS - START)) s"
exit $status
