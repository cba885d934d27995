/* emu_backend.cpp: the emulated CUDA backend of emu_backend.h: cuda_backend.cu's table of
 * ops over the entry points of cuda_memory.cu, the kernels and the convolutions, compiled
 * for the host (cuDNN is cudnn_emu.h's), its context as cuda_backend.cu sets it up for an
 * H200 (132 multiprocessors), and its settings. The context layout is cuda_internal.h's,
 * as emulate.sh copied it. */
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "cuda_internal.h"
#include "emu_backend.h"

static const lfs_backend_ops emu_ops = lfs_cuda_ops_named("cuda (emulated on the host)");

static lfs_cuda_ctx emu_ctx;
static lfs_backend emu_be;

extern "C" lfs_backend *lfs_emu_backend(void) {
  if (emu_be.ops) return &emu_be;
  memset(&emu_ctx, 0, sizeof emu_ctx);
  emu_ctx.multiprocessors = 132;
  emu_ctx.blas = (cublasHandle_t)&emu_ctx; /* any non-NULL handle */
  LFS_CUDNN_CHECK(cudnnCreate(&emu_ctx.dnn));
  emu_ctx.copy_stream = cudaStreamLegacy; /* the one stream emulated */
  LFS_CUDA_CHECK(cudaEventCreateWithFlags(&emu_ctx.copy_done, cudaEventDisableTiming));
  LFS_CUDA_CHECK(cudaEventCreateWithFlags(&emu_ctx.issued_before, cudaEventDisableTiming));
  emu_be.ops = &emu_ops;
  emu_be.ctx = &emu_ctx;
  emu_be.device = 0;
  return &emu_be;
}

extern "C" void lfs_emu_set_conv(int gemm, int find, int any, int graph) {
  lfs_cuda_ctx *c = &emu_ctx;
  lfs_cuda_conv_plans_free(c); /* a plan's key does not hold find and any */
  c->conv_gemm = gemm != 0, c->conv_find = find != 0, c->conv_any = any != 0;
  c->conv_graph = graph != 0;
}

extern "C" void lfs_emu_set_tf32(int on) { emu_ctx.tf32 = on != 0; }

extern "C" int lfs_emu_graph_fallbacks(void) { return emu_ctx.graph_fallbacks; }
