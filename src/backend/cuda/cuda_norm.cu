/* cuda_norm.cu: CUDA batch normalisation over x viewed as [n, c, spatial], in
 * the phases of lfs_backend_ops (the per-channel double sums go to host arrays,
 * so that synchronised BN can all-reduce them between phases), the per-channel
 * sums themselves (also PReLU's), and row-wise L2 normalisation. Sums
 * accumulate in double; the element-wise formulas are the CPU backend's,
 * operation for operation (src/backend/cpu/batchnorm.c, pointwise.c). */
#include "backend/cuda/cuda_internal.h"

/* ---- per-channel sums: channels split over blocks, partials combined in order ---- */

template <int TERM>
static __device__ __forceinline__ double channel_term(const float *x, float sx, const float *y,
                                                      float sy, uint32_t i) {
  if (TERM == LFS_CUDA_SUM_X) return (double)x[i];
  if (TERM == LFS_CUDA_SUM_CROSS) return (double)(x[i] - sx) * (double)(y[i] - sy);
  const float v = y[i];
  return (double)x[i] * (v < 0.0f ? v : 0.0f);
}

/* Block (ch, split): the sum over samples [split n / splits, (split + 1) n / splits)
 * of channel ch into partials[ch * splits + split]. */
template <int TERM>
static __global__ void channel_partials_kernel(double *partials, const float *x,
                                               const float *shift_x, const float *y,
                                               const float *shift_y, int n, int c,
                                               lfs_fastdiv spatial, int splits) {
  __shared__ double part[LFS_CUDA_THREADS];
  const int ch = blockIdx.x, split = blockIdx.y;
  const uint32_t s0 = (uint32_t)((long long)split * n / splits);
  const uint32_t s1 = (uint32_t)((long long)(split + 1) * n / splits);
  const uint32_t plane = spatial.d, per = (s1 - s0) * plane, stride = (uint32_t)c * plane;
  const uint32_t base = s0 * stride + (uint32_t)ch * plane;
  const float sx = shift_x ? shift_x[ch] : 0.0f, sy = shift_y ? shift_y[ch] : 0.0f;
  double acc = 0.0;
  for (uint32_t k = threadIdx.x; k < per; k += blockDim.x) {
    const uint32_t q = lfs_fastdiv_div(k, spatial); /* sample s0 + q, position k - q plane */
    acc += channel_term<TERM>(x, sx, y, sy, base + q * stride + (k - q * plane));
  }
  const double total = lfs_cuda_block_sum(acc, part);
  if (threadIdx.x == 0) partials[(size_t)ch * splits + split] = total;
}

static __global__ void channel_finish_kernel(double *out, const double *partials, int c,
                                             int splits) {
  LFS_CUDA_GRID_STRIDE(ch, (size_t)c) {
    double total = 0.0;
    for (int s = 0; s < splits; s++) total += partials[ch * splits + s];
    out[ch] = total;
  }
}

/* Enough blocks to fill the device twice over, but no split under 4096 values. */
static int channel_splits(const lfs_cuda_ctx *ctx, int n, int c, int spatial) {
  int splits = (2 * ctx->multiprocessors + c - 1) / c;
  const long long max_by_size = (long long)n * spatial / 4096;
  if (splits > max_by_size) splits = (int)max_by_size;
  if (splits > n) splits = n;
  return splits < 1 ? 1 : splits;
}

const double *lfs_cuda_channel_sums(lfs_cuda_ctx *ctx, int term, const float *x,
                                    const float *shift_x, const float *y, const float *shift_y,
                                    int n, int c, int spatial) {
  lfs_cuda_channels(n, c, spatial); /* the size check */
  const int splits = channel_splits(ctx, n, c, spatial);
  double *partials = lfs_cuda_reduce_scratch(ctx, (size_t)c * (splits + 1));
  double *out = partials + (size_t)c * splits;
  const dim3 grid((unsigned)c, (unsigned)splits);
  const lfs_fastdiv plane = lfs_fastdiv_make((uint32_t)spatial);
  if (term == LFS_CUDA_SUM_X)
    channel_partials_kernel<LFS_CUDA_SUM_X>
        <<<grid, LFS_CUDA_THREADS>>>(partials, x, shift_x, y, shift_y, n, c, plane, splits);
  else if (term == LFS_CUDA_SUM_CROSS)
    channel_partials_kernel<LFS_CUDA_SUM_CROSS><<<grid, LFS_CUDA_THREADS>>>(
        partials, x, shift_x, y, shift_y, n, c, plane, splits);
  else
    channel_partials_kernel<LFS_CUDA_SUM_PRELU><<<grid, LFS_CUDA_THREADS>>>(
        partials, x, shift_x, y, shift_y, n, c, plane, splits);
  LFS_CUDA_LAUNCHED();
  channel_finish_kernel<<<lfs_cuda_blocks((size_t)c), LFS_CUDA_THREADS>>>(out, partials, c, splits);
  LFS_CUDA_LAUNCHED();
  return out;
}

lfs_cuda_channel_of lfs_cuda_channels(int n, int c, int spatial) {
  const unsigned long long count = (unsigned long long)n * c * spatial;
  if (count > 0x7fffffffull)
    lfs_fatal("CUDA: a tensor of %llu values (%d x %d x %d) is beyond the 2^31 - 1 that the "
              "per-channel kernels index: use a smaller batch per GPU", count, n, c, spatial);
  lfs_cuda_channel_of k = {lfs_fastdiv_make((uint32_t)(spatial > 0 ? spatial : 1)),
                           lfs_fastdiv_make((uint32_t)(c > 0 ? c : 1))};
  return k;
}

/* ---- batch normalisation ---- */

/* The per-channel sums into the host array host[c]. */
static void channel_sums(lfs_backend *be, const lfs_bn_desc *d, double *host, int term,
                         const float *x, const float *shift_x, const float *y,
                         const float *shift_y) {
  if (d->c == 0 || d->n == 0) {
    for (int ch = 0; ch < d->c; ch++) host[ch] = 0.0;
    return;
  }
  const double *dev = lfs_cuda_channel_sums(lfs_cuda_ctx_of(be), term, x, shift_x, y, shift_y,
                                            d->n, d->c, d->spatial);
  LFS_CUDA_CHECK(cudaMemcpy(host, dev, sizeof(double) * d->c, cudaMemcpyDeviceToHost));
}

void lfs_cuda_batchnorm_sums(lfs_backend *be, const lfs_bn_desc *d, double *sum, const float *x) {
  channel_sums(be, d, sum, LFS_CUDA_SUM_X, x, NULL, NULL, NULL);
}

void lfs_cuda_batchnorm_sqdev(lfs_backend *be, const lfs_bn_desc *d, double *sqdev, const float *x,
                              const float *mean) {
  channel_sums(be, d, sqdev, LFS_CUDA_SUM_CROSS, x, mean, x, mean);
}

static __global__ void bn_apply_kernel(float *y, const float *x, const float *mean,
                                       const float *invstd, const float *gamma, const float *beta,
                                       lfs_cuda_channel_of k, uint32_t count) {
  LFS_CUDA_GRID_STRIDE32(i, count) {
    const uint32_t ch = lfs_cuda_channel(i, k);
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
  const lfs_cuda_channel_of k = lfs_cuda_channels(d->n, d->c, d->spatial);
  bn_apply_kernel<<<lfs_cuda_blocks(count), LFS_CUDA_THREADS>>>(y, x, mean, invstd, gamma, beta, k,
                                                                (uint32_t)count);
  LFS_CUDA_LAUNCHED();
}

void lfs_cuda_batchnorm_grad_sums(lfs_backend *be, const lfs_bn_desc *d, double *sum_dy,
                                  double *sum_dy_xhat, const float *dy, const float *x,
                                  const float *mean, const float *invstd) {
  channel_sums(be, d, sum_dy, LFS_CUDA_SUM_X, dy, NULL, NULL, NULL);
  channel_sums(be, d, sum_dy_xhat, LFS_CUDA_SUM_CROSS, dy, NULL, x, mean);
  /* invstd [c] is device memory: scale on the host */
  float *s = (float *)lfs_malloc(sizeof(float) * (size_t)(d->c ? d->c : 1));
  if (d->c) LFS_CUDA_CHECK(cudaMemcpy(s, invstd, sizeof(float) * d->c, cudaMemcpyDeviceToHost));
  for (int ch = 0; ch < d->c; ch++) sum_dy_xhat[ch] *= s[ch];
  free(s);
}

static __global__ void bn_backward_kernel(float *dx, const float *dy, const float *x,
                                          const float *gamma, const float *mean,
                                          const float *invstd, const float *mean_dy,
                                          const float *mean_dy_xhat, lfs_cuda_channel_of k,
                                          uint32_t count) {
  LFS_CUDA_GRID_STRIDE32(i, count) {
    const uint32_t ch = lfs_cuda_channel(i, k);
    const float g = gamma[ch] * invstd[ch], m = mean[ch], s = invstd[ch];
    dx[i] += g * (dy[i] - mean_dy[ch] - (x[i] - m) * s * mean_dy_xhat[ch]);
  }
}

void lfs_cuda_batchnorm_backward_apply(lfs_backend *be, const lfs_bn_desc *d, float *dx,
                                       const float *dy, const float *x, const float *gamma,
                                       const float *mean, const float *invstd, const float *mean_dy,
                                       const float *mean_dy_xhat) {
  (void)be;
  const size_t count = (size_t)d->n * d->c * d->spatial;
  if (!count) return;
  const lfs_cuda_channel_of k = lfs_cuda_channels(d->n, d->c, d->spatial);
  bn_backward_kernel<<<lfs_cuda_blocks(count), LFS_CUDA_THREADS>>>(
      dx, dy, x, gamma, mean, invstd, mean_dy, mean_dy_xhat, k, (uint32_t)count);
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
