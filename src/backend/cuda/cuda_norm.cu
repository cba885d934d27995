/* cuda_norm.cu: CUDA batch normalisation over x viewed as [n, c, spatial], in
 * the phases of lfs_backend_ops (the per-channel double sums go to host arrays,
 * so that synchronised BN can all-reduce them between phases), and row-wise L2
 * normalisation. Per-channel and per-row sums use one block each and
 * accumulate in double; the element-wise formulas are the CPU backend's,
 * operation for operation (src/backend/cpu/batchnorm.c, pointwise.c). */
#include "backend/cuda/cuda_internal.h"

/* Element k of channel ch's n * spatial values. */
static __device__ __forceinline__ size_t channel_index(size_t k, int ch, int c, int spatial) {
  return ((k / spatial) * c + ch) * (size_t)spatial + k % spatial;
}

/* out[ch] = sum (x - shift_x[ch]) * (y - shift_y[ch]) over channel ch, or the
 * plain sum of x when y is NULL. One block per channel. */
static __global__ void channel_sums_kernel(double *out, const float *x, const float *shift_x,
                                           const float *y, const float *shift_y, int n, int c,
                                           int spatial) {
  __shared__ double part[LFS_CUDA_THREADS];
  const int ch = blockIdx.x;
  const size_t per = (size_t)n * spatial;
  const float sx = shift_x ? shift_x[ch] : 0.0f, sy = shift_y ? shift_y[ch] : 0.0f;
  double acc = 0.0;
  for (size_t k = threadIdx.x; k < per; k += blockDim.x) {
    const size_t i = channel_index(k, ch, c, spatial);
    acc += y ? (double)(x[i] - sx) * (double)(y[i] - sy) : (double)x[i];
  }
  const double total = lfs_cuda_block_sum(acc, part);
  if (threadIdx.x == 0) out[ch] = total;
}

/* The per-channel sums into the host array host[c]. */
static void channel_sums(lfs_backend *be, const lfs_bn_desc *d, double *host, const float *x,
                         const float *shift_x, const float *y, const float *shift_y) {
  if (d->c == 0) return;
  double *dev = lfs_cuda_reduce_scratch(lfs_cuda_ctx_of(be), (size_t)d->c);
  channel_sums_kernel<<<d->c, LFS_CUDA_THREADS>>>(dev, x, shift_x, y, shift_y, d->n, d->c, d->spatial);
  LFS_CUDA_LAUNCHED();
  LFS_CUDA_CHECK(cudaMemcpy(host, dev, sizeof(double) * d->c, cudaMemcpyDeviceToHost));
}

void lfs_cuda_batchnorm_sums(lfs_backend *be, const lfs_bn_desc *d, double *sum, const float *x) {
  channel_sums(be, d, sum, x, NULL, NULL, NULL);
}

void lfs_cuda_batchnorm_sqdev(lfs_backend *be, const lfs_bn_desc *d, double *sqdev, const float *x,
                              const float *mean) {
  channel_sums(be, d, sqdev, x, mean, x, mean);
}

static __global__ void bn_apply_kernel(float *y, const float *x, const float *mean,
                                       const float *invstd, const float *gamma, const float *beta,
                                       int c, int spatial, size_t count) {
  LFS_CUDA_GRID_STRIDE(i, count) {
    const int ch = (int)((i / spatial) % c);
    const float scale = gamma[ch] * invstd[ch], shift = beta[ch] - mean[ch] * scale;
    y[i] = x[i] * scale + shift;
  }
}

void lfs_cuda_batchnorm_apply(lfs_backend *be, const lfs_bn_desc *d, float *y, const float *x,
                              const float *mean, const float *invstd, const float *gamma,
                              const float *beta) {
  (void)be;
  const size_t count = (size_t)d->n * d->c * d->spatial;
  if (!count) return;
  bn_apply_kernel<<<lfs_cuda_blocks(count), LFS_CUDA_THREADS>>>(y, x, mean, invstd, gamma, beta,
                                                                d->c, d->spatial, count);
  LFS_CUDA_LAUNCHED();
}

void lfs_cuda_batchnorm_grad_sums(lfs_backend *be, const lfs_bn_desc *d, double *sum_dy,
                                  double *sum_dy_xhat, const float *dy, const float *x,
                                  const float *mean, const float *invstd) {
  channel_sums(be, d, sum_dy, dy, NULL, NULL, NULL);
  channel_sums(be, d, sum_dy_xhat, dy, NULL, x, mean);
  /* invstd [c] is device memory: scale on the host */
  float *s = (float *)lfs_malloc(sizeof(float) * (size_t)(d->c ? d->c : 1));
  if (d->c) LFS_CUDA_CHECK(cudaMemcpy(s, invstd, sizeof(float) * d->c, cudaMemcpyDeviceToHost));
  for (int ch = 0; ch < d->c; ch++) sum_dy_xhat[ch] *= s[ch];
  free(s);
}

static __global__ void bn_backward_kernel(float *dx, const float *dy, const float *x,
                                          const float *gamma, const float *mean,
                                          const float *invstd, const float *mean_dy,
                                          const float *mean_dy_xhat, int c, int spatial,
                                          size_t count) {
  LFS_CUDA_GRID_STRIDE(i, count) {
    const int ch = (int)((i / spatial) % c);
    const float k = gamma[ch] * invstd[ch], m = mean[ch], s = invstd[ch];
    dx[i] += k * (dy[i] - mean_dy[ch] - (x[i] - m) * s * mean_dy_xhat[ch]);
  }
}

void lfs_cuda_batchnorm_backward_apply(lfs_backend *be, const lfs_bn_desc *d, float *dx,
                                       const float *dy, const float *x, const float *gamma,
                                       const float *mean, const float *invstd, const float *mean_dy,
                                       const float *mean_dy_xhat) {
  (void)be;
  const size_t count = (size_t)d->n * d->c * d->spatial;
  if (!count) return;
  bn_backward_kernel<<<lfs_cuda_blocks(count), LFS_CUDA_THREADS>>>(
      dx, dy, x, gamma, mean, invstd, mean_dy, mean_dy_xhat, d->c, d->spatial, count);
  LFS_CUDA_LAUNCHED();
}

/* ---- row-wise L2 normalisation, one block per row ---- */

static __global__ void l2norm_forward_kernel(float *y, float *norms, const float *x, int cols,
                                             float eps) {
  __shared__ double part[LFS_CUDA_THREADS];
  const size_t row = blockIdx.x;
  const float *xr = x + row * cols;
  double sq = 0.0;
  for (int j = threadIdx.x; j < cols; j += blockDim.x) sq += (double)xr[j] * xr[j];
  const double total = lfs_cuda_block_sum(sq, part);
  const float norm = (float)sqrt(total), denom = norm > eps ? norm : eps;
  if (threadIdx.x == 0) norms[row] = norm;
  for (int j = threadIdx.x; j < cols; j += blockDim.x) y[row * cols + j] = xr[j] / denom;
}

/* For |x| > eps: dx += (dy - y <y, dy>) / |x|; below eps the map is x / eps. */
static __global__ void l2norm_backward_kernel(float *dx, const float *dy, const float *y,
                                              const float *norms, int cols, float eps) {
  __shared__ double part[LFS_CUDA_THREADS];
  const size_t row = blockIdx.x;
  const float *g = dy + row * cols, *yr = y + row * cols;
  float *q = dx + row * cols;
  if (norms[row] <= eps) {
    for (int j = threadIdx.x; j < cols; j += blockDim.x) q[j] += g[j] / eps;
    return;
  }
  double dot = 0.0;
  for (int j = threadIdx.x; j < cols; j += blockDim.x) dot += (double)yr[j] * g[j];
  const float proj = (float)lfs_cuda_block_sum(dot, part), inv = 1.0f / norms[row];
  for (int j = threadIdx.x; j < cols; j += blockDim.x) q[j] += (g[j] - yr[j] * proj) * inv;
}

void lfs_cuda_l2norm_forward(lfs_backend *be, int rows, int cols, float eps, float *y, float *norms,
                             const float *x) {
  (void)be;
  if (rows <= 0) return;
  l2norm_forward_kernel<<<rows, LFS_CUDA_THREADS>>>(y, norms, x, cols, eps);
  LFS_CUDA_LAUNCHED();
}

void lfs_cuda_l2norm_backward(lfs_backend *be, int rows, int cols, float eps, float *dx,
                              const float *dy, const float *y, const float *norms) {
  (void)be;
  if (rows <= 0) return;
  l2norm_backward_kernel<<<rows, LFS_CUDA_THREADS>>>(dx, dy, y, norms, cols, eps);
  LFS_CUDA_LAUNCHED();
}
