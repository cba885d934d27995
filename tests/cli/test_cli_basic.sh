#!/bin/bash
# The program's surface: help, version, unknown commands and options, `info`
# (build description and GPU query on every rank) and a short `bench`.
source "$(dirname "$0")/common.sh"

run 0 "$LFSEARCH" --help
expect "usage: lfsearch COMMAND"; expect "demo"; expect "bench"; ok "--help lists the commands"
run 2 "$LFSEARCH"
expect "usage:"; ok "no command is a usage error (exit 2)"
run 2 "$LFSEARCH" frobnicate
expect 'unknown command "frobnicate"'; ok "unknown command named, exit 2"
run 0 "$LFSEARCH" --version
expect_re '^lfsearch [0-9]+\.[0-9]+'; ok "--version"

run 0 "$LFSEARCH" info
expect "CUDA backend :"; expect "MPI ranks    : 1"
expect_re '^  GEMM +: lfsearch packed SGEMM, (avx512|avx2|portable) micro-kernel$'
expect_re '^  CPU kernels +: (x86-64-v4|x86-64-v3|baseline)$'
ok "info describes the build"
run 0 env LFS_GEMM_KERNEL=portable "$LFSEARCH" info
expect "GEMM         : lfsearch packed SGEMM, portable micro-kernel"; ok "LFS_GEMM_KERNEL pins the kernel"
run 2 env LFS_GEMM_KERNEL=sse9 "$LFSEARCH" info
expect "LFS_GEMM_KERNEL=sse9: not a GEMM kernel this CPU runs (avx512, avx2, portable)"
ok "LFS_GEMM_KERNEL names a bad kernel: exit 2"
run 0 env LFS_CPU_ISA=baseline "$LFSEARCH" info
expect "CPU kernels  : baseline"; ok "LFS_CPU_ISA picks the kernel build"
run 2 env LFS_CPU_ISA=avx9 "$LFSEARCH" info
expect "LFS_CPU_ISA=avx9: not a kernel build this CPU runs"; ok "LFS_CPU_ISA names a bad build: exit 2"
run 2 "$LFSEARCH" info --gpus
expect 'unknown option "--gpus"'; ok "info rejects an unknown option"
run 0 "$LFSEARCH" info --devices
expect_re '^\[rank 0\] [^:]+: (GPU [0-9]+: .*compute capability [0-9]+\.[0-9]+|no GPUs found \(.+\))$'
ok "info --devices lists GPUs or says why none were found"
run 0 "$MPIEXEC" -n 2 "$LFSEARCH" info --devices
expect_re '^\[rank 0\] '; expect_re '^\[rank 1\] '; expect "MPI ranks    : 2"
ok "info --devices reports every rank"

run 0 "$LFSEARCH" bench --threads 1 --reps 1 --batch 1
expect_re 'SGEMM 1024\^3: lfsearch \((avx512|avx2|portable) kernel\) [0-9.]+ GFLOP/s'
expect_re '^  OpenBLAS [0-9.]+ \([A-Za-z0-9]+ kernels\) [0-9.]+ GFLOP/s'
for c in "conv3x3 64->64 s1" "depthwise3x3 64 s1" "batchnorm2d 64" "linear 25088->512" "iresnet block 64->128 s2"; do
  expect_re "^  $c +[0-9.]+ +[0-9.]+ +[0-9.]+"
done
ok "bench times every case and the SGEMM rate"
run 0 "$LFSEARCH" bench --train tiny --size 16 --batch 4 --classes 10 --steps 1 --reps 1 --threads 1,2
expect "train step: tiny at 16x16, global batch 4 over 1 ranks, 10 classes"
expect_re '^  tiny +1 +[0-9.]+ +[0-9.]+ +[0-9.]+$'; expect_re '^  tiny +2 +[0-9.]+ +[0-9.]+ +[0-9.]+$'
ok "bench --train times whole training steps (images/s, ms/step, TFLOP/s)"
LFS_PROFILE=1 run 0 "$LFSEARCH" bench --train tiny --size 16 --batch 4 --classes 10 --steps 2 --reps 1 --threads 1
expect_re '^  op \(LFS_PROFILE\) +calls/step +ms/step +share +GB/s +TFLOP/s$'
expect_re '^  conv2d forward +[0-9]+\.0 +[0-9.]+ +[0-9.]+% +[0-9.]+ +[0-9.]+$'
expect_re '^  margin head +1\.0 +[0-9.]+ +[0-9.]+% +[0-9.]+ +[0-9.]+$'
expect_re '^  sgd step +[0-9.]+ +[0-9.]+ +[0-9.]+% +[0-9.]+$'; expect_re '^  all ops +[0-9.]+$'
# the convolutions by geometry: tiny's first layer, 3 -> 16 channels at 16x16
expect_re '^  convolution \(input -> output\) +fwd ms +TFLOP/s +bwd ms +TFLOP/s$'
expect_re '^  4x3x16x16 -> 16, 3x3/1 +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+$'
ok "LFS_PROFILE=1: bench --train prints the step's time by backend op (GB/s, TFLOP/s) and by convolution"
run 2 "$LFSEARCH" bench --train r7
expect 'model.arch'; expect '"r7"'; ok "bench --train names a bad model"
run 2 "$LFSEARCH" bench --threads 0
expect '--threads: "0" is not a whole number in [1, 1024]'; ok "bench rejects a bad thread count"
run 2 "$LFSEARCH" bench --reps
expect '--reps: "" is not a whole number'; ok "bench rejects a missing value"

# inside a Slurm step, MPI must see every task: a world of 1 where Slurm started 4
# is a launch without MPI wiring (srun without --mpi=pmix)
SLURM_STEP_ID=0 SLURM_NTASKS=4 run 2 "$LFSEARCH" info
expect "Slurm started 4 tasks (SLURM_NTASKS) but MPI sees 1 rank: launch with \`srun --mpi=pmix\`"
SLURM_STEP_ID=0 SLURM_NTASKS=1 run 0 "$LFSEARCH" info
ok "a Slurm step whose MPI world is not SLURM_NTASKS ranks is refused (exit 2)"
echo "$checks checks passed"
