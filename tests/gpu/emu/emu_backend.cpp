/* emu_backend.cpp: the emulated CUDA backend of emu_backend.h: cuda_backend.cu's table of
 * ops over the entry points of the kernels compiled for the host (memory through the
 * emulated runtime, no convolutions), its context as cuda_backend.cu sets it up for an
 * H200 (132 multiprocessors), and the host helpers of cuda_backend.cu that the kernels'
 * host code calls, under the names cuda_emu.h gives them. The context layout is
 * cuda_internal.h's, as emulate.sh copied it. */
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "cuda_internal.h"
#include "emu_backend.h"

void lfs_cuda_fail(const char *what, const char *error, const char *file, int line) {
  lfs_fatal_at(file, line, "CUDA: %s failed: %s", what, error);
}

void lfs_cuda_malloc(lfs_cuda_ctx *c, void **p, size_t bytes, const char *what) {
  const cudaError_t rc = cudaMalloc(p, bytes);
  if (rc != cudaSuccess)
    lfs_backend_out_of_memory("emulated GPU", bytes, what, cudaGetErrorString(rc), 0.0, 0.0);
  (void)c;
}

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

/* ---- the ops that are not kernels ---- */

/* Zeroed, as the CUDA backend's (cudaMalloc's NaN shows only in scratch). */
static float *emu_alloc(lfs_backend *be, size_t count) {
  void *p = NULL;
  const size_t bytes = (count ? count : 1) * sizeof(float);
  lfs_cuda_malloc(lfs_cuda_ctx_of(be), &p, bytes, NULL);
  LFS_CUDA_CHECK(cudaMemset(p, 0, bytes));
  return (float *)p;
}

static void emu_free(lfs_backend *be, float *p) {
  (void)be;
  if (p) LFS_CUDA_CHECK(cudaFree(p));
}

static void emu_upload(lfs_backend *be, float *dst, const float *src, size_t count) {
  (void)be;
  if (count) LFS_CUDA_CHECK(cudaMemcpy(dst, src, count * sizeof(float), cudaMemcpyHostToDevice));
}

static void emu_download(lfs_backend *be, float *dst, const float *src, size_t count) {
  (void)be;
  if (count) LFS_CUDA_CHECK(cudaMemcpy(dst, src, count * sizeof(float), cudaMemcpyDeviceToHost));
}

static float *emu_host_alloc(lfs_backend *be, size_t count) {
  (void)be;
  void *p = NULL;
  LFS_CUDA_CHECK(cudaMallocHost(&p, (count ? count : 1) * sizeof(float)));
  return (float *)p;
}

static void emu_host_free(lfs_backend *be, float *p) {
  (void)be;
  if (p) LFS_CUDA_CHECK(cudaFreeHost(p));
}

/* One stream only: the copy queues behind the work before it. */
static void emu_upload_async(lfs_backend *be, float *dst, const float *src, size_t count) {
  (void)be;
  if (count)
    LFS_CUDA_CHECK(cudaMemcpyAsync(dst, src, count * sizeof(float), cudaMemcpyHostToDevice,
                                   cudaStreamLegacy));
}

static void emu_conv2d_forward(lfs_backend *be, const lfs_conv_desc *d, float *y, const float *x,
                               const float *w, const float *b) {
  (void)be, (void)d, (void)y, (void)x, (void)w, (void)b;
  lfs_fatal("emulated CUDA backend: convolutions (cuDNN) are not emulated");
}

static void emu_conv2d_backward(lfs_backend *be, const lfs_conv_desc *d, float *dx,
                                lfs_grad_write dx_write, float *dw, float *db, const float *dy,
                                const float *x, const float *w) {
  (void)be, (void)d, (void)dx, (void)dx_write, (void)dw, (void)db, (void)dy, (void)x, (void)w;
  lfs_fatal("emulated CUDA backend: convolutions (cuDNN) are not emulated");
}

static void emu_synchronize(lfs_backend *be) {
  (void)be;
  LFS_CUDA_CHECK(cudaDeviceSynchronize());
}

static const lfs_backend_ops emu_ops = {
    /* .name */ "cuda (emulated on the host)",
    emu_alloc,
    emu_free,
    emu_upload,
    emu_download,
    lfs_cuda_fill,
    lfs_cuda_axpy,
    emu_host_alloc,
    emu_host_free,
    emu_upload_async,
    emu_conv2d_forward,
    emu_conv2d_backward,
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
    emu_synchronize,
};

static lfs_cuda_ctx emu_ctx;
static lfs_backend emu_be;

extern "C" lfs_backend *lfs_emu_backend(void) {
  if (emu_be.ops) return &emu_be;
  memset(&emu_ctx, 0, sizeof emu_ctx);
  emu_ctx.multiprocessors = 132;
  emu_ctx.blas = (cublasHandle_t)&emu_ctx; /* any non-NULL handle */
  emu_be.ops = &emu_ops;
  emu_be.ctx = &emu_ctx;
  emu_be.device = 0;
  return &emu_be;
}
