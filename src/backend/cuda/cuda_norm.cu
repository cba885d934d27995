/* cuda_norm.cu: CUDA batch normalisation over x viewed as [n, c, spatial], the
 * per-channel sums it is built on (also PReLU's), and row-wise L2
 * normalisation. Statistics stay on the device: the per-channel double sums go
 * to the host only for synchronised BN's group sum. Sums accumulate in double;
 * the statistics and element-wise formulas are the CPU backend's, operation for
 * operation (src/backend/cpu/batchnorm.c, pointwise.c), with products kept out
 * of fused multiply-adds where the CPU rounds them. */
#include "backend/cuda/cuda_internal.h"

/* ---- per-channel sums: channels split over blocks, partials combined in order ---- */

/* Output 0 of a term; LFS_CUDA_SUM_GRAD's output 1 is channel_term1. */
template <int TERM>
static __device__ __forceinline__ double channel_term(const float *x, float sx, const float *y,
                                                      float sy, uint32_t i) {
  if (TERM == LFS_CUDA_SUM_X || TERM == LFS_CUDA_SUM_GRAD) return (double)x[i];
  if (TERM == LFS_CUDA_SUM_CROSS) return (double)(x[i] - sx) * (double)(y[i] - sy);
  const float v = y[i];
  return (double)x[i] * (v < 0.0f ? v : 0.0f);
}

static __device__ __forceinline__ double channel_term1(const float *x, const float *y, float sy,
                                                       uint32_t i) {
  return (double)x[i] * (double)(y[i] - sy);
}

/* Block (ch, split): the sum over samples [split n / splits, (split + 1) n / splits)
 * of channel ch into partials[(o * c + ch) * splits + split] for each output o. */
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
  double acc = 0.0, acc1 = 0.0;
  for (uint32_t k = threadIdx.x; k < per; k += blockDim.x) {
    const uint32_t q = lfs_fastdiv_div(k, spatial); /* sample s0 + q, position k - q plane */
    const uint32_t i = base + q * stride + (k - q * plane);
    acc += channel_term<TERM>(x, sx, y, sy, i);
    if (TERM == LFS_CUDA_SUM_GRAD) acc1 += channel_term1(x, y, sy, i);
  }
  const double total = lfs_cuda_block_sum(acc, part);
  if (threadIdx.x == 0) partials[(size_t)ch * splits + split] = total;
  if (TERM == LFS_CUDA_SUM_GRAD) {
    const double total1 = lfs_cuda_block_sum(acc1, part);
    if (threadIdx.x == 0) partials[((size_t)c + ch) * splits + split] = total1;
  }
}

/* out[o * c + ch]: the partials of each output and channel added in order. */
static __global__ void channel_finish_kernel(double *out, const double *partials, int rows,
                                             int splits) {
  LFS_CUDA_GRID_STRIDE(row, (size_t)rows) {
    double total = 0.0;
    for (int s = 0; s < splits; s++) total += partials[row * splits + s];
    out[row] = total;
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

static int term_outputs(int term) { return term == LFS_CUDA_SUM_GRAD ? 2 : 1; }

void lfs_cuda_channel_sums(lfs_cuda_ctx *ctx, double *out, int term, const float *x,
                           const float *shift_x, const float *y, const float *shift_y, int n,
                           int c, int spatial) {
  const int rows = term_outputs(term) * c;
  if (!c) return;
  if (!n || !spatial) {
    LFS_CUDA_CHECK(cudaMemsetAsync(out, 0, sizeof(double) * rows, cudaStreamLegacy));
    return;
  }
  lfs_cuda_channels(n, c, spatial); /* the size check */
  const int splits = channel_splits(ctx, n, c, spatial);
  double *partials = lfs_cuda_reduce_scratch(ctx, (size_t)rows * splits);
  const dim3 grid((unsigned)c, (unsigned)splits);
  const lfs_fastdiv plane = lfs_fastdiv_make((uint32_t)spatial);
#define LFS_PARTIALS(T) \
  channel_partials_kernel<T><<<grid, LFS_CUDA_THREADS>>>(partials, x, shift_x, y, shift_y, n, c, \
                                                         plane, splits)
  switch (term) {
  case LFS_CUDA_SUM_X: LFS_PARTIALS(LFS_CUDA_SUM_X); break;
  case LFS_CUDA_SUM_CROSS: LFS_PARTIALS(LFS_CUDA_SUM_CROSS); break;
  case LFS_CUDA_SUM_GRAD: LFS_PARTIALS(LFS_CUDA_SUM_GRAD); break;
  default: LFS_PARTIALS(LFS_CUDA_SUM_PRELU); break;
  }
#undef LFS_PARTIALS
  LFS_CUDA_LAUNCHED();
  channel_finish_kernel<<<lfs_cuda_blocks((size_t)rows), LFS_CUDA_THREADS>>>(out, partials, rows,
                                                                           splits);
  LFS_CUDA_LAUNCHED();
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

/* Synchronised BN: sums [count] (device) over the group, through the host; extra
 * (a host value, NULL for none) is summed along. */
static void group_sum(const lfs_bn_stats_cfg *cfg, double *sums, int count, double *extra) {
  if (!cfg->group_sum) return;
  const int total = count + (extra != NULL);
  double *host = (double *)lfs_malloc(sizeof(double) * (size_t)(total ? total : 1));
  LFS_CUDA_CHECK(cudaMemcpy(host, sums, sizeof(double) * count, cudaMemcpyDeviceToHost));
  if (extra) host[count] = *extra;
  cfg->group_sum(host, total, cfg->group_ctx);
  LFS_CUDA_CHECK(cudaMemcpy(sums, host, sizeof(double) * count, cudaMemcpyHostToDevice));
  if (extra) *extra = host[count];
  free(host);
}

static __global__ void bn_eval_stats_kernel(float *mean, float *invstd, const float *run_mean,
                                            const float *run_var, int c, double eps) {
  LFS_CUDA_GRID_STRIDE(ch, (size_t)c) {
    mean[ch] = run_mean[ch];
    invstd[ch] = (float)(1.0 / sqrt((double)run_var[ch] + eps));
  }
}

static __global__ void bn_mean_kernel(float *mean, const double *sums, int c, double count) {
  LFS_CUDA_GRID_STRIDE(ch, (size_t)c) mean[ch] = (float)(sums[ch] / count);
}

/* The running averages as the CPU rounds them: each product on its own. */
static __device__ __forceinline__ float running(float old, double m, double now) {
  return (float)__dadd_rn(__dmul_rn(1.0 - m, (double)old), __dmul_rn(m, now));
}

static __global__ void bn_var_kernel(float *invstd, float *run_mean, float *run_var,
                                     const double *sqdev, const float *mean, int c, double count,
                                     double eps, double m) {
  LFS_CUDA_GRID_STRIDE(ch, (size_t)c) {
    const double var = sqdev[ch] / count;
    const double unbiased = count > 1 ? __dmul_rn(var, count) / (count - 1) : var;
    invstd[ch] = (float)(1.0 / sqrt(var + eps));
    run_mean[ch] = running(run_mean[ch], m, (double)mean[ch]);
    run_var[ch] = running(run_var[ch], m, unbiased);
  }
}

double lfs_cuda_batchnorm_stats(lfs_backend *be, const lfs_bn_desc *d, const lfs_bn_stats_cfg *cfg,
                                float *mean, float *invstd, float *run_mean, float *run_var,
                                const float *x) {
  const int c = d->c;
  const unsigned blocks = lfs_cuda_blocks((size_t)c);
  if (!c) return 0.0;
  if (!cfg->training) {
    bn_eval_stats_kernel<<<blocks, LFS_CUDA_THREADS>>>(mean, invstd, run_mean, run_var, c,
                                                       cfg->eps);
    LFS_CUDA_LAUNCHED();
    return 0.0;
  }
  lfs_cuda_ctx *ctx = lfs_cuda_ctx_of(be);
  double *sums = lfs_cuda_stats_scratch(ctx, (size_t)c);
  double count = (double)d->n * d->spatial;
  lfs_cuda_channel_sums(ctx, sums, LFS_CUDA_SUM_X, x, NULL, NULL, NULL, d->n, c, d->spatial);
  group_sum(cfg, sums, c, &count);
  bn_mean_kernel<<<blocks, LFS_CUDA_THREADS>>>(mean, sums, c, count);
  LFS_CUDA_LAUNCHED();
  /* the squared deviations reuse sums: the mean kernel is ahead of them in the stream */
  lfs_cuda_channel_sums(ctx, sums, LFS_CUDA_SUM_CROSS, x, mean, x, mean, d->n, c, d->spatial);
  group_sum(cfg, sums, c, NULL);
  bn_var_kernel<<<blocks, LFS_CUDA_THREADS>>>(invstd, run_mean, run_var, sums, mean, c, count,
                                              cfg->eps, cfg->momentum);
  LFS_CUDA_LAUNCHED();
  return count;
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

enum { BN_GRAD_LOCAL = 1, BN_GRAD_MEANS = 2 };

/* sums [2c]: sum dy, sum dy (x - mean). LOCAL scales the second by invstd (in
 * place) and adds both to the parameter gradients; MEANS divides the (group's)
 * sums by count, or writes zeros in eval mode. */
static __global__ void bn_grad_terms_kernel(float *dgamma, float *dbeta, float *mean_dy,
                                            float *mean_dy_xhat, double *sums,
                                            const float *invstd, int c, double count, int training,
                                            int phases) {
  LFS_CUDA_GRID_STRIDE(ch, (size_t)c) {
    if (phases & BN_GRAD_LOCAL) {
      sums[c + ch] *= (double)invstd[ch];
      if (dbeta) dbeta[ch] += (float)sums[ch];
      if (dgamma) dgamma[ch] += (float)sums[c + ch];
    }
    if (phases & BN_GRAD_MEANS) {
      mean_dy[ch] = training ? (float)(sums[ch] / count) : 0.0f;
      mean_dy_xhat[ch] = training ? (float)(sums[c + ch] / count) : 0.0f;
    }
  }
}

void lfs_cuda_batchnorm_grad_terms(lfs_backend *be, const lfs_bn_desc *d,
                                   const lfs_bn_stats_cfg *cfg, double count, float *dgamma,
                                   float *dbeta, float *mean_dy, float *mean_dy_xhat,
                                   const float *dy, const float *x, const float *mean,
                                   const float *invstd) {
  const int c = d->c;
  if (!c) return;
  lfs_cuda_ctx *ctx = lfs_cuda_ctx_of(be);
  const unsigned blocks = lfs_cuda_blocks((size_t)c);
  double *sums = lfs_cuda_stats_scratch(ctx, 2 * (size_t)c);
  lfs_cuda_channel_sums(ctx, sums, LFS_CUDA_SUM_GRAD, dy, NULL, x, mean, d->n, c, d->spatial);
  if (cfg->training && cfg->group_sum) { /* the parameter gradients take the local sums */
    bn_grad_terms_kernel<<<blocks, LFS_CUDA_THREADS>>>(dgamma, dbeta, mean_dy, mean_dy_xhat, sums,
                                                       invstd, c, count, 1, BN_GRAD_LOCAL);
    LFS_CUDA_LAUNCHED();
    group_sum(cfg, sums, 2 * c, NULL);
    bn_grad_terms_kernel<<<blocks, LFS_CUDA_THREADS>>>(dgamma, dbeta, mean_dy, mean_dy_xhat, sums,
                                                       invstd, c, count, 1, BN_GRAD_MEANS);
  } else {
    bn_grad_terms_kernel<<<blocks, LFS_CUDA_THREADS>>>(
        dgamma, dbeta, mean_dy, mean_dy_xhat, sums, invstd, c, count, cfg->training,
        BN_GRAD_LOCAL | BN_GRAD_MEANS);
  }
  LFS_CUDA_LAUNCHED();
}

/* set: dx = 0 + v without reading dx (its only writer); otherwise dx += v */
static __global__ void bn_backward_kernel(float *dx, const float *dy, const float *x,
                                          const float *gamma, const float *mean,
                                          const float *invstd, const float *mean_dy,
                                          const float *mean_dy_xhat, lfs_cuda_channel_of k,
                                          uint32_t count, int set) {
  LFS_CUDA_GRID_STRIDE32(i, count) {
    const uint32_t ch = lfs_cuda_channel(i, k);
    const float g = gamma[ch] * invstd[ch], m = mean[ch], s = invstd[ch];
    const float v = g * (dy[i] - mean_dy[ch] - (x[i] - m) * s * mean_dy_xhat[ch]);
    dx[i] = (set ? 0.0f : dx[i]) + v;
  }
}

void lfs_cuda_batchnorm_backward_apply(lfs_backend *be, const lfs_bn_desc *d, float *dx,
                                       lfs_grad_write dx_write, const float *dy, const float *x,
                                       const float *gamma, const float *mean, const float *invstd,
                                       const float *mean_dy, const float *mean_dy_xhat) {
  (void)be;
  const size_t count = (size_t)d->n * d->c * d->spatial;
  if (!count) return;
  const lfs_cuda_channel_of k = lfs_cuda_channels(d->n, d->c, d->spatial);
  bn_backward_kernel<<<lfs_cuda_blocks(count), LFS_CUDA_THREADS>>>(
      dx, dy, x, gamma, mean, invstd, mean_dy, mean_dy_xhat, k, (uint32_t)count,
      dx_write == LFS_GRAD_SET);
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
