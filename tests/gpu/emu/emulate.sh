#!/bin/sh
# emulate.sh SOURCE OUTPUT: a file of the CUDA backend (a .cu, or cuda_internal.h) as host
# C++ for the emulation of tests/gpu/emu/cuda_emu.h, which the compiler force-includes as
# nvcc does cuda_runtime.h. The CUDA library headers are dropped (cuda_emu.h stands in for
# them), cuda_internal.h is taken from beside the output (the emulatable copy of it), and
# every launch k<<<config>>>(args) becomes
#   LFS_EMU_LAUNCH("k", (&k), lfs_emu_config(config), args).
# Lines keep their numbers, and #line names SOURCE, so the compiler's messages point into
# it. Fails, writing nothing, when the launches rewritten are not as many as the `<<<` in
# SOURCE.
set -eu
src=$1 out=$2
launches=$(grep -o '<<<' "$src" | wc -l)
{
  printf '#line 1 "%s"\n' "$src"
  perl -pe '
    s{^#include <(cuda_runtime|cublas_v2|cudnn)\.h>$}{};
    s{^#include "backend/cuda/cuda_internal\.h"$}{#include "cuda_internal.h"};
    s{\b(\w+(?:<[^<>;]*>)?)<<<([^;]*?)>>>\(}{LFS_EMU_LAUNCH("$1", (&$1), lfs_emu_config($2), }g;
  ' "$src"
} > "$out.tmp"
rewritten=$(grep -o 'LFS_EMU_LAUNCH(' "$out.tmp" | wc -l)
if [ "$rewritten" -ne "$launches" ] || grep -q '<<<' "$out.tmp"; then
  echo "emulate.sh: $src: $rewritten of its $launches kernel launches (<<<) rewritten" >&2
  rm -f "$out.tmp"
  exit 1
fi
mv "$out.tmp" "$out"
