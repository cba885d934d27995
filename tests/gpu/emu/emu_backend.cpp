/* emu_backend.cpp: the emulated CUDA backend of emu_backend.h: cuda_backend.cu's table of
 * ops over the entry points of cuda_memory.cu and the kernels, compiled for the host
 * (convolutions through im2col + cuBLAS, cuda_conv_gemm.cu: cuDNN is not emulated), and
 * its context as cuda_backend.cu sets it up for an H200 (132 multiprocessors). The context
 * layout is cuda_internal.h's, as emulate.sh copied it. */
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "cuda_internal.h"
#include "emu_backend.h"

static const lfs_backend_ops emu_ops = lfs_cuda_ops_with(
    "cuda (emulated on the host)", lfs_cuda_conv2d_forward_gemm, lfs_cuda_conv2d_backward_gemm);

static lfs_cuda_ctx emu_ctx;
static lfs_backend emu_be;

extern "C" lfs_backend *lfs_emu_backend(void) {
  if (emu_be.ops) return &emu_be;
  memset(&emu_ctx, 0, sizeof emu_ctx);
  emu_ctx.multiprocessors = 132;
  emu_ctx.blas = (cublasHandle_t)&emu_ctx; /* any non-NULL handle */
  emu_ctx.copy_stream = cudaStreamLegacy;   /* the one stream emulated */
  emu_ctx.copy_done = (cudaEvent_t)&emu_ctx.copy_done;
  emu_ctx.issued_before = (cudaEvent_t)&emu_ctx.issued_before;
  emu_ctx.conv_gemm = 1;
  emu_be.ops = &emu_ops;
  emu_be.ctx = &emu_ctx;
  emu_be.device = 0;
  return &emu_be;
}
