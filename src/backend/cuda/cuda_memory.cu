/* cuda_memory.cu: the CUDA backend's memory: device buffers (zeroed), copies
 * both ways, page-locked host buffers and the loader's copy stream, the
 * context's grow-only scratch (the cuDNN / im2col workspace, reduction and
 * batch-norm sums), and the checked-call failure. Everything but
 * lfs_cuda_upload_async runs on the legacy default stream. The same source runs
 * on the host in tests/gpu/test_cuda_emulated (tests/gpu/emu). */
#include <stdio.h>

#include "backend/cuda/cuda_internal.h"

void lfs_cuda_fail(const char *what, const char *error, const char *file, int line) {
  lfs_fatal_at(file, line, "CUDA: %s failed: %s", what, error);
}

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

float *lfs_cuda_alloc(lfs_backend *be, size_t count) {
  void *p = NULL;
  const size_t bytes = (count ? count : 1) * sizeof(float);
  lfs_cuda_malloc(lfs_cuda_ctx_of(be), &p, bytes, NULL);
  LFS_CUDA_CHECK(cudaMemset(p, 0, bytes));
  return (float *)p;
}

void lfs_cuda_free(lfs_backend *be, float *p) {
  (void)be;
  if (p) LFS_CUDA_CHECK(cudaFree(p));
}

void lfs_cuda_upload(lfs_backend *be, float *dst, const float *src, size_t count) {
  (void)be;
  if (count) LFS_CUDA_CHECK(cudaMemcpy(dst, src, count * sizeof(float), cudaMemcpyHostToDevice));
}

void lfs_cuda_download(lfs_backend *be, float *dst, const float *src, size_t count) {
  (void)be;
  if (count) LFS_CUDA_CHECK(cudaMemcpy(dst, src, count * sizeof(float), cudaMemcpyDeviceToHost));
}

/* The copy stream runs beside the default stream, so the copy overlaps the
 * work issued since the previous call, but not the work before it, which may
 * still read this dst (double buffering); the default stream waits for the
 * copy through an event, not the host. The first call waits for all the work
 * before it (dst's zeroing among it). */
void lfs_cuda_upload_async(lfs_backend *be, float *dst, const float *src, size_t count) {
  lfs_cuda_ctx *c = lfs_cuda_ctx_of(be);
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

float *lfs_cuda_host_alloc(lfs_backend *be, size_t count) {
  void *p = NULL;
  const size_t bytes = (count ? count : 1) * sizeof(float);
  cudaError_t rc = cudaMallocHost(&p, bytes);
  if (rc != cudaSuccess)
    lfs_fatal("CUDA: cannot allocate %.1f MiB of page-locked host memory for GPU %d (%s)",
              bytes / 1048576.0, lfs_cuda_ctx_of(be)->device, cudaGetErrorString(rc));
  return (float *)p;
}

void lfs_cuda_host_free(lfs_backend *be, float *p) {
  (void)be;
  if (p) LFS_CUDA_CHECK(cudaFreeHost(p));
}

void lfs_cuda_synchronize(lfs_backend *be) {
  (void)be;
  LFS_CUDA_CHECK(cudaDeviceSynchronize());
}

void *lfs_cuda_workspace(lfs_cuda_ctx *c, size_t bytes) {
  if (bytes <= c->workspace_bytes) return c->workspace;
  if (c->workspace) LFS_CUDA_CHECK(cudaFree(c->workspace));
  c->workspace = NULL;
  c->workspace_bytes = 0;
  lfs_cuda_malloc(c, &c->workspace, bytes, "the convolution workspace");
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
