/* cuda_backend.cu: the CUDA backend: one context per process on the GPU of the
 * rank's node-local index, its settings (TF32, the convolution path), and the
 * function table of include/lfs/backend.h. Memory lives in cuda_memory.cu,
 * kernels in cuda_pointwise.cu, cuda_norm.cu and cuda_channel.cu, the margin
 * head in cuda_head.cu, convolutions (cuDNN) in cuda_conv.cu,
 * cuda_conv_graph.cu and cuda_conv_gemm.cu. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_internal.h"

static lfs_cuda_ctx *ctx_of(lfs_backend *be) { return lfs_cuda_ctx_of(be); }

static const lfs_backend_ops cuda_ops = lfs_cuda_ops_named("cuda");

static void apply_math_mode(lfs_cuda_ctx *c) {
  LFS_CUBLAS_CHECK(cublasSetMathMode(c->blas, c->tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
}

/* LFS_CUDA_TF32=0 turns TF32 off (full float32 products) for the whole process. */
static int tf32_default(void) {
  const char *e = getenv("LFS_CUDA_TF32");
  if (e && *e && strcmp(e, "0") && strcmp(e, "1"))
    lfs_warn("LFS_CUDA_TF32=%s is neither 0 nor 1: TF32 stays on", e);
  return !(e && !strcmp(e, "0"));
}

/* LFS_CUDA_CONV: "gemm", "find", "fastest", "graph", "graph-fastest", or unset
 * (a typo is said, not ignored). */
static void conv_choice(lfs_cuda_ctx *c) {
  const char *conv = getenv("LFS_CUDA_CONV");
  if (!conv || !*conv) return;
  c->conv_gemm = !strcmp(conv, "gemm");
  c->conv_graph = !strcmp(conv, "graph") || !strcmp(conv, "graph-fastest");
  c->conv_any = !strcmp(conv, "fastest") || !strcmp(conv, "graph-fastest");
  c->conv_find = !strcmp(conv, "fastest") || !strcmp(conv, "find");
  if (!c->conv_gemm && !c->conv_find && !c->conv_graph)
    lfs_warn("LFS_CUDA_CONV=%s is not gemm, find, fastest, graph or graph-fastest: cuDNN's "
             "heuristics choose", conv);
}

static lfs_backend cuda_backend;
static lfs_cuda_ctx cuda_ctx;
static int cuda_state; /* 0 untried, 1 ready, -1 unusable */
static char cuda_why[256];

static int create(void) {
  int count = 0;
  cudaError_t rc = cudaGetDeviceCount(&count);
  if (rc != cudaSuccess || count == 0) {
    snprintf(cuda_why, sizeof cuda_why, "%s",
             rc != cudaSuccess ? cudaGetErrorString(rc) : "the CUDA runtime reports no devices");
    return -1;
  }
  lfs_cuda_ctx *c = &cuda_ctx;
  memset(c, 0, sizeof *c);
  c->device = lfs_node_rank() % count; /* one GPU per rank on a node */
  rc = cudaSetDevice(c->device);
  if (rc != cudaSuccess) {
    snprintf(cuda_why, sizeof cuda_why, "cannot use GPU %d: %s", c->device, cudaGetErrorString(rc));
    return -1;
  }
  LFS_CUDA_CHECK(cudaDeviceGetAttribute(&c->multiprocessors, cudaDevAttrMultiProcessorCount, c->device));
  LFS_CUDA_CHECK(cudaStreamCreateWithFlags(&c->copy_stream, cudaStreamNonBlocking));
  LFS_CUDA_CHECK(cudaEventCreateWithFlags(&c->copy_done, cudaEventDisableTiming));
  LFS_CUDA_CHECK(cudaEventCreateWithFlags(&c->issued_before, cudaEventDisableTiming));
  LFS_CUBLAS_CHECK(cublasCreate(&c->blas));
  LFS_CUDNN_CHECK(cudnnCreate(&c->dnn));
  c->tf32 = tf32_default();
  /* "gemm": im2col + cuBLAS everywhere; "find": cuDNN's deterministic algorithms
   * by timing; "fastest": any algorithm by timing (runs may then differ in the
   * last bits, as PyTorch's with cudnn.benchmark); "graph", "graph-fastest":
   * the same through cuDNN's graph API (cuda_conv_graph.cu) */
  conv_choice(c);
  apply_math_mode(c);
  cuda_backend.ops = &cuda_ops;
  cuda_backend.ctx = c;
  cuda_backend.device = c->device;
  return 1;
}

extern "C" lfs_backend *lfs_backend_cuda(char *why, size_t whylen) {
  if (cuda_state == 0) cuda_state = create();
  if (cuda_state < 0) {
    if (why) snprintf(why, whylen, "%s", cuda_why);
    return NULL;
  }
  return &cuda_backend;
}

extern "C" void lfs_cuda_set_tf32(lfs_backend *be, int on) {
  lfs_cuda_ctx *c = ctx_of(be);
  c->tf32 = on != 0;
  apply_math_mode(c);
}

extern "C" int lfs_cuda_tf32(lfs_backend *be) { return ctx_of(be)->tf32; }

extern "C" void lfs_cuda_set_conv_gemm(lfs_backend *be, int on) { ctx_of(be)->conv_gemm = on != 0; }

extern "C" void lfs_cuda_set_conv_graph(lfs_backend *be, int on) {
  ctx_of(be)->conv_graph = on != 0;
}

extern "C" int lfs_cuda_conv_graph_fallbacks(lfs_backend *be) {
  return ctx_of(be)->graph_fallbacks;
}
