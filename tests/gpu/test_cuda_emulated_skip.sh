#!/bin/sh
# test_cuda_emulated_skip.sh: stands in for tests/gpu/test_cuda_emulated where configure did
# not build it, which runs the CUDA kernels on the host: no C++17 compiler, no perl, or a
# build with sanitizers (configure's summary says which, on its "CUDA on the host" line).
echo "SKIP: tests/gpu/test_cuda_emulated is not built: no C++17 compiler (apt-get install" \
  "g++), no perl, or a build with sanitizers (see configure's summary)"
exit 77
