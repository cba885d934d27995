/* cuda_norm.cu: CUDA batch normalisation over x viewed as [n, c, spatial] and
 * row-wise L2 normalisation. Statistics stay on the device: the per-channel
 * sums (cuda_channel.cu, in double) go to the host only for synchronised BN's
 * group sum. The mean and variance come from one pass over the data (sums of
 * the values, shifted by the running mean, and of their squares, in double;
 * PyTorch's kernels take one pass too, with Welford's update); the
 * element-wise formulas are the CPU backend's (src/backend/cpu/batchnorm.c),
 * 4 values at a time where the plane allows. */
#include "backend/cuda/bn_moments.h"
#include "backend/cuda/cuda_internal.h"

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

/* sums: the (group's) sums of d = x - run_mean (the running mean before this
 * update, which the ranks of a synchronised group share) and of d^2 over
 * `count` values a channel; bn_moments.h forms the statistics from them. */
static __global__ void bn_moments_kernel(float *mean, float *invstd, float *run_mean,
                                         float *run_var, lfs_cuda_channel_parts sums, int c,
                                         double count, double eps, double m) {
  LFS_CUDA_GRID_STRIDE(ch, (size_t)c) {
    const lfs_bn_moments r =
        lfs_bn_moments_finish(lfs_cuda_parts_total(sums, ch), lfs_cuda_parts_total(sums, c + ch),
                              count, run_mean[ch], run_var[ch], eps, m);
    mean[ch] = r.mean;
    invstd[ch] = r.invstd;
    run_mean[ch] = r.run_mean;
    run_var[ch] = r.run_var;
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
  double count = (double)d->n * d->spatial;
  const lfs_cuda_channel_operands moments = {x, NULL, run_mean, NULL, NULL, 0};
  lfs_cuda_channel_parts sums;
  if (cfg->group_sum) { /* added up, for the trip to the host */
    double *total = lfs_cuda_stats_scratch(ctx, 2 * (size_t)c);
    lfs_cuda_channel_sums(ctx, total, LFS_CUDA_SUM_MOMENTS, &moments, d->n, c, d->spatial);
    group_sum(cfg, total, 2 * c, &count);
    sums.partials = total, sums.splits = 1;
  } else {
    sums = lfs_cuda_channel_reduce(ctx, LFS_CUDA_SUM_MOMENTS, &moments, d->n, c, d->spatial);
  }
  bn_moments_kernel<<<blocks, LFS_CUDA_THREADS>>>(mean, invstd, run_mean, run_var, sums, c, count,
                                                  cfg->eps, cfg->momentum);
  LFS_CUDA_LAUNCHED();
  return count;
}

template <int VEC> struct bn_apply_op {
  static const int vec = VEC;
  float *y;
  const float *x, *mean, *invstd, *gamma, *beta;
  __device__ void operator()(uint32_t i, uint32_t ch) const {
    /* the CPU's formula and roundings: x - mean first, no fused multiply-add */
    const float scale = gamma[ch] * invstd[ch], m = mean[ch], b = beta[ch];
    lfs_vecf<VEC> v;
    lfs_cuda_load(v, x + i);
#pragma unroll
    for (int l = 0; l < VEC; l++) v.v[l] = __fadd_rn(__fmul_rn(v.v[l] - m, scale), b);
    lfs_cuda_store(y + i, v);
  }
};

void lfs_cuda_batchnorm_apply(lfs_backend *be, const lfs_bn_desc *d, float *y, const float *x,
                              const float *mean, const float *invstd, const float *gamma,
                              const float *beta) {
  (void)be;
  if (lfs_cuda_vec4(d->spatial, y, x, NULL, NULL))
    lfs_cuda_channel_map(bn_apply_op<4>{y, x, mean, invstd, gamma, beta}, d->n, d->c, d->spatial);
  else
    lfs_cuda_channel_map(bn_apply_op<1>{y, x, mean, invstd, gamma, beta}, d->n, d->c, d->spatial);
}

enum { BN_GRAD_LOCAL = 1, BN_GRAD_MEANS = 2 };

/* sums [2c]: sum dy, sum dy (x - mean). LOCAL scales the second by invstd and
 * adds both to the parameter gradients, keeping them in `local` [2c] when not
 * NULL (for the group sum); MEANS divides the sums (the group's, already
 * scaled, without LOCAL) by count, or writes zeros in eval mode. */
static __global__ void bn_grad_terms_kernel(float *dgamma, float *dbeta, float *mean_dy,
                                            float *mean_dy_xhat, double *local,
                                            lfs_cuda_channel_parts sums, const float *invstd,
                                            int c, double count, int training, int phases) {
  LFS_CUDA_GRID_STRIDE(ch, (size_t)c) {
    const double s0 = lfs_cuda_parts_total(sums, ch);
    double s1 = lfs_cuda_parts_total(sums, c + ch);
    if (phases & BN_GRAD_LOCAL) {
      s1 *= (double)invstd[ch];
      if (dbeta) dbeta[ch] += (float)s0;
      if (dgamma) dgamma[ch] += (float)s1;
      if (local) local[ch] = s0, local[c + ch] = s1;
    }
    if (phases & BN_GRAD_MEANS) {
      mean_dy[ch] = training ? (float)(s0 / count) : 0.0f;
      mean_dy_xhat[ch] = training ? (float)(s1 / count) : 0.0f;
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
  const lfs_cuda_channel_operands terms = {dy, x, mean, NULL, NULL, 0};
  const lfs_cuda_channel_parts sums =
      lfs_cuda_channel_reduce(ctx, LFS_CUDA_SUM_GRAD, &terms, d->n, c, d->spatial);
  if (cfg->training && cfg->group_sum) { /* the parameter gradients take the local sums */
    double *local = lfs_cuda_stats_scratch(ctx, 2 * (size_t)c);
    bn_grad_terms_kernel<<<blocks, LFS_CUDA_THREADS>>>(dgamma, dbeta, mean_dy, mean_dy_xhat, local,
                                                       sums, invstd, c, count, 1, BN_GRAD_LOCAL);
    LFS_CUDA_LAUNCHED();
    group_sum(cfg, local, 2 * c, NULL);
    const lfs_cuda_channel_parts group = {local, 1};
    bn_grad_terms_kernel<<<blocks, LFS_CUDA_THREADS>>>(dgamma, dbeta, mean_dy, mean_dy_xhat, NULL,
                                                       group, invstd, c, count, 1, BN_GRAD_MEANS);
  } else {
    bn_grad_terms_kernel<<<blocks, LFS_CUDA_THREADS>>>(
        dgamma, dbeta, mean_dy, mean_dy_xhat, NULL, sums, invstd, c, count, cfg->training,
        BN_GRAD_LOCAL | BN_GRAD_MEANS);
  }
  LFS_CUDA_LAUNCHED();
}

/* set: dx = 0 + v without reading dx (its only writer); otherwise dx += v */
template <int VEC> struct bn_backward_op {
  static const int vec = VEC;
  float *dx;
  const float *dy, *x, *gamma, *mean, *invstd, *mean_dy, *mean_dy_xhat;
  int set;
  __device__ void operator()(uint32_t i, uint32_t ch) const {
    const float g = gamma[ch] * invstd[ch], m = mean[ch], s = invstd[ch];
    const float mdy = mean_dy[ch], mdyx = mean_dy_xhat[ch];
    lfs_vecf<VEC> gy, xv, out = {};
    lfs_cuda_load(gy, dy + i);
    lfs_cuda_load(xv, x + i);
    if (!set) lfs_cuda_load(out, dx + i);
#pragma unroll
    for (int l = 0; l < VEC; l++)
      out.v[l] = out.v[l] + g * (gy.v[l] - mdy - (xv.v[l] - m) * s * mdyx);
    lfs_cuda_store(dx + i, out);
  }
};

void lfs_cuda_batchnorm_backward_apply(lfs_backend *be, const lfs_bn_desc *d, float *dx,
                                       lfs_grad_write dx_write, const float *dy, const float *x,
                                       const float *gamma, const float *mean, const float *invstd,
                                       const float *mean_dy, const float *mean_dy_xhat) {
  (void)be;
  const int set = dx_write == LFS_GRAD_SET;
  if (lfs_cuda_vec4(d->spatial, dx, dy, x, NULL))
    lfs_cuda_channel_map(bn_backward_op<4>{dx, dy, x, gamma, mean, invstd, mean_dy, mean_dy_xhat,
                                           set},
                         d->n, d->c, d->spatial);
  else
    lfs_cuda_channel_map(bn_backward_op<1>{dx, dy, x, gamma, mean, invstd, mean_dy, mean_dy_xhat,
                                           set},
                         d->n, d->c, d->spatial);
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
