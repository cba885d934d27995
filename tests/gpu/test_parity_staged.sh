#!/bin/sh
# test_parity_staged.sh: the GPU parity test's checks against cpu-staged (the CPU
# kernels behind device memory, which accepts only its own buffers): the test
# and the staging of every op run on any machine, and every result must be
# bit-identical to the CPU's.
exec ./tests/gpu/test_cuda_parity --against cpu-staged
