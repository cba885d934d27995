/* cuda_backend.cu: the CUDA backend: one context per process on the GPU of the
 * rank's node-local index, device memory, checked calls with useful messages,
 * and the function table of include/lfs/backend.h. Kernels live in
 * cuda_pointwise.cu, cuda_norm.cu and cuda_channel.cu, the margin head in
 * cuda_head.cu, convolutions (cuDNN) in cuda_conv.cu, cuda_conv_graph.cu and
 * cuda_conv_gemm.cu. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_internal.h"

void lfs_cuda_fail(const char *what, const char *error, const char *file, int line) {
  lfs_fatal_at(file, line, "CUDA: %s failed: %s", what, error);
}

static lfs_cuda_ctx *ctx_of(lfs_backend *be) { return lfs_cuda_ctx_of(be); }

void lfs_cuda_malloc(lfs_cuda_ctx *c, void **p, size_t bytes, const char *what) {
  const cudaError_t rc = cudaMalloc(p, bytes);
  if (rc == cudaSuccess) return;
  /* anything else is an earlier fault surfacing here (a kernel's bad address,
   * say), not a lack of memory: the user must not be told to shrink the batch */
  if (rc != cudaErrorMemoryAllocation)
    lfs_cuda_fail("cudaMalloc", cudaGetErrorString(rc), __FILE__, __LINE__);
  (void)cudaGetLastError(); /* the failure is reported here, not by the next check */
  size_t free_b = 0, total_b = 0;
  cudaMemGetInfo(&free_b, &total_b);
  char device[64];
  snprintf(device, sizeof device, "GPU %d", c->device);
  lfs_backend_out_of_memory(device, bytes, what, cudaGetErrorString(rc), free_b / 1048576.0,
                            total_b / 1048576.0);
}

static float *cuda_alloc(lfs_backend *be, size_t count) {
  void *p = NULL;
  const size_t bytes = (count ? count : 1) * sizeof(float);
  lfs_cuda_malloc(ctx_of(be), &p, bytes, NULL);
  LFS_CUDA_CHECK(cudaMemset(p, 0, bytes));
  return (float *)p;
}

static void cuda_free(lfs_backend *be, float *p) {
  (void)be;
  if (p) LFS_CUDA_CHECK(cudaFree(p));
}

static void cuda_upload(lfs_backend *be, float *dst, const float *src, size_t count) {
  (void)be;
  if (count) LFS_CUDA_CHECK(cudaMemcpy(dst, src, count * sizeof(float), cudaMemcpyHostToDevice));
}

static void cuda_download(lfs_backend *be, float *dst, const float *src, size_t count) {
  (void)be;
  if (count) LFS_CUDA_CHECK(cudaMemcpy(dst, src, count * sizeof(float), cudaMemcpyDeviceToHost));
}

/* The copy stream runs beside the default stream, so the copy overlaps the
 * work issued since the previous call, but not the work before it, which may
 * still read this dst (double buffering); the default stream waits for the
 * copy through an event, not the host. The first call waits for all the work
 * before it (dst's zeroing among it). */
static void cuda_upload_async(lfs_backend *be, float *dst, const float *src, size_t count) {
  lfs_cuda_ctx *c = ctx_of(be);
  if (!count) return;
  if (!c->uploaded_async) LFS_CUDA_CHECK(cudaEventRecord(c->issued_before, cudaStreamLegacy));
  c->uploaded_async = 1;
  LFS_CUDA_CHECK(cudaStreamWaitEvent(c->copy_stream, c->issued_before, 0));
  LFS_CUDA_CHECK(cudaEventRecord(c->issued_before, cudaStreamLegacy));
  LFS_CUDA_CHECK(cudaMemcpyAsync(dst, src, count * sizeof(float), cudaMemcpyHostToDevice,
                                 c->copy_stream));
  LFS_CUDA_CHECK(cudaEventRecord(c->copy_done, c->copy_stream));
  LFS_CUDA_CHECK(cudaStreamWaitEvent(cudaStreamLegacy, c->copy_done, 0));
}

static float *cuda_host_alloc(lfs_backend *be, size_t count) {
  void *p = NULL;
  const size_t bytes = (count ? count : 1) * sizeof(float);
  cudaError_t rc = cudaMallocHost(&p, bytes);
  if (rc != cudaSuccess)
    lfs_fatal("CUDA: cannot allocate %.1f MiB of page-locked host memory for GPU %d (%s)",
              bytes / 1048576.0, ctx_of(be)->device, cudaGetErrorString(rc));
  return (float *)p;
}

static void cuda_host_free(lfs_backend *be, float *p) {
  (void)be;
  if (p) LFS_CUDA_CHECK(cudaFreeHost(p));
}

void *lfs_cuda_workspace(lfs_cuda_ctx *c, size_t bytes) {
  if (bytes <= c->workspace_bytes) return c->workspace;
  if (c->workspace) LFS_CUDA_CHECK(cudaFree(c->workspace));
  c->workspace = NULL;
  c->workspace_bytes = 0;
  lfs_cuda_malloc(c, &c->workspace, bytes, "the cuDNN workspace");
  c->workspace_bytes = bytes;
  return c->workspace;
}

/* *buf grown to `count` doubles (cudaFree waits for the work that may still use it). */
static double *grow_doubles(lfs_cuda_ctx *c, double **buf, size_t *have, size_t count,
                            const char *what) {
  if (count <= *have) return *buf;
  if (*buf) LFS_CUDA_CHECK(cudaFree(*buf));
  *buf = NULL;
  *have = 0;
  lfs_cuda_malloc(c, (void **)buf, count * sizeof(double), what);
  *have = count;
  return *buf;
}

double *lfs_cuda_reduce_scratch(lfs_cuda_ctx *c, size_t count) {
  return grow_doubles(c, &c->reduce, &c->reduce_count, count, "reduction scratch");
}

double *lfs_cuda_stats_scratch(lfs_cuda_ctx *c, size_t count) {
  return grow_doubles(c, &c->stats, &c->stats_count, count, "batch-norm statistics scratch");
}

static void cuda_synchronize(lfs_backend *be) {
  (void)be;
  LFS_CUDA_CHECK(cudaDeviceSynchronize());
}

static const lfs_backend_ops cuda_ops = {
    /* .name */ "cuda",
    cuda_alloc,
    cuda_free,
    cuda_upload,
    cuda_download,
    lfs_cuda_fill,
    lfs_cuda_axpy,
    cuda_host_alloc,
    cuda_host_free,
    cuda_upload_async,
    lfs_cuda_conv2d_forward,
    lfs_cuda_conv2d_backward,
    lfs_cuda_batchnorm_stats,
    lfs_cuda_batchnorm_apply,
    lfs_cuda_batchnorm_grad_terms,
    lfs_cuda_batchnorm_backward_apply,
    lfs_cuda_prelu_forward,
    lfs_cuda_prelu_backward,
    lfs_cuda_linear_forward,
    lfs_cuda_linear_backward,
    lfs_cuda_add_forward,
    lfs_cuda_dropout_forward,
    lfs_cuda_dropout_backward,
    lfs_cuda_l2norm_forward,
    lfs_cuda_l2norm_backward,
    lfs_cuda_head_loss,
    lfs_cuda_sgd_step,
    cuda_synchronize,
};

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
