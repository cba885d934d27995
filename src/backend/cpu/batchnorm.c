/* batchnorm.c: CPU batch-normalisation kernels over x viewed as [n, c, spatial]
 * (BN2d: spatial = H*W; BN1d: spatial = 1): statistics (sums, squared
 * deviations, with synchronised BN's group sum between the passes), apply,
 * backward terms and backward apply. Sums accumulate in double in a fixed
 * order: results do not depend on the thread count. The statistics' formulas
 * are the reference for the CUDA backend's (src/backend/cuda/cuda_norm.cu). */
#include <math.h>
#include <stdlib.h>

#include "backend/cpu/cpu_internal.h"
#include "lfs/log.h"

#define PAR_IF(d) if ((size_t)(d)->n * (d)->c * (d)->spatial > LFS_CPU_PAR_MIN)

static const float *plane(const lfs_bn_desc *d, const float *x, int n, int ch) {
  return x + ((size_t)n * d->c + ch) * (size_t)d->spatial;
}

static void channel_sums(const lfs_bn_desc *d, double *sum, const float *x) {
#pragma omp parallel for schedule(static) PAR_IF(d)
  for (int ch = 0; ch < d->c; ch++) {
    double s = 0.0;
    for (int n = 0; n < d->n; n++) s += lfs_cpu_sum(plane(d, x, n, ch), (size_t)d->spatial);
    sum[ch] = s;
  }
}

static void channel_sqdev(const lfs_bn_desc *d, double *sqdev, const float *x,
                          const float *mean) {
#pragma omp parallel for schedule(static) PAR_IF(d)
  for (int ch = 0; ch < d->c; ch++) {
    double s = 0.0;
    for (int n = 0; n < d->n; n++) {
      const float *p = plane(d, x, n, ch);
      s += lfs_cpu_dot_shifted(p, mean[ch], p, mean[ch], (size_t)d->spatial);
    }
    sqdev[ch] = s;
  }
}

static void channel_grad_sums(const lfs_bn_desc *d, double *sum_dy, double *sum_dy_xhat,
                              const float *dy, const float *x, const float *mean,
                              const float *invstd) {
#pragma omp parallel for schedule(static) PAR_IF(d)
  for (int ch = 0; ch < d->c; ch++) {
    double s = 0.0, sx = 0.0;
    for (int n = 0; n < d->n; n++) {
      const float *g = plane(d, dy, n, ch), *p = plane(d, x, n, ch);
      s += lfs_cpu_sum(g, (size_t)d->spatial);
      sx += lfs_cpu_dot_shifted(g, 0.0f, p, mean[ch], (size_t)d->spatial);
    }
    sum_dy[ch] = s;
    sum_dy_xhat[ch] = sx * invstd[ch];
  }
}

static void group_sum(const lfs_bn_stats_cfg *cfg, double *buf, int count) {
  if (cfg->group_sum) cfg->group_sum(buf, count, cfg->group_ctx);
}

static void eval_stats(const lfs_bn_desc *d, const lfs_bn_stats_cfg *cfg, float *mean,
                       float *invstd, const float *run_mean, const float *run_var) {
  for (int ch = 0; ch < d->c; ch++) {
    mean[ch] = run_mean[ch];
    invstd[ch] = (float)(1.0 / sqrt((double)run_var[ch] + cfg->eps));
  }
}

double LFS_CPU_K(batchnorm_stats)(lfs_backend *be, const lfs_bn_desc *d,
                                  const lfs_bn_stats_cfg *cfg, float *mean, float *invstd,
                                  float *run_mean, float *run_var, const float *x) {
  (void)be;
  if (!cfg->training) {
    eval_stats(d, cfg, mean, invstd, run_mean, run_var);
    return 0.0;
  }
  const int c = d->c;
  double *sums = lfs_malloc(sizeof(double) * ((size_t)c + 1));
  channel_sums(d, sums, x);
  sums[c] = (double)d->n * d->spatial;
  group_sum(cfg, sums, c + 1);
  const double count = sums[c], m = cfg->momentum;
  for (int ch = 0; ch < c; ch++) mean[ch] = (float)(sums[ch] / count);
  channel_sqdev(d, sums, x, mean);
  group_sum(cfg, sums, c);
  for (int ch = 0; ch < c; ch++) {
    const double var = sums[ch] / count, unbiased = count > 1 ? var * count / (count - 1) : var;
    invstd[ch] = (float)(1.0 / sqrt(var + cfg->eps));
    run_mean[ch] = (float)((1.0 - m) * run_mean[ch] + m * mean[ch]);
    run_var[ch] = (float)((1.0 - m) * run_var[ch] + m * unbiased);
  }
  free(sums);
  return count;
}

void LFS_CPU_K(batchnorm_grad_terms)(lfs_backend *be, const lfs_bn_desc *d,
                                     const lfs_bn_stats_cfg *cfg, double count, float *dgamma,
                                     float *dbeta, float *mean_dy, float *mean_dy_xhat,
                                     const float *dy, const float *x, const float *mean,
                                     const float *invstd) {
  (void)be;
  const int c = d->c;
  double *sums = lfs_malloc(sizeof(double) * (2 * (size_t)c + 1));
  channel_grad_sums(d, sums, sums + c, dy, x, mean, invstd);
  for (int ch = 0; ch < c; ch++) {
    if (dbeta) dbeta[ch] += (float)sums[ch];
    if (dgamma) dgamma[ch] += (float)sums[c + ch];
  }
  if (cfg->training) group_sum(cfg, sums, 2 * c);
  for (int ch = 0; ch < c; ch++) {
    mean_dy[ch] = cfg->training ? (float)(sums[ch] / count) : 0.0f;
    mean_dy_xhat[ch] = cfg->training ? (float)(sums[c + ch] / count) : 0.0f;
  }
  free(sums);
}

void LFS_CPU_K(batchnorm_apply)(lfs_backend *be, const lfs_bn_desc *d, float *y, const float *x,
                                const float *mean, const float *invstd, const float *gamma,
                                const float *beta) {
  (void)be;
#pragma omp parallel for schedule(static) PAR_IF(d)
  for (int ch = 0; ch < d->c; ch++) {
    /* x - mean first (exact near the mean): folding the mean into a shift,
     * x * scale + (beta - mean * scale), costs ulp(mean * scale), all of y's
     * precision where the mean is large against the spread */
    const float scale = gamma[ch] * invstd[ch], m = mean[ch], b = beta[ch];
    for (int n = 0; n < d->n; n++) {
      const float *p = plane(d, x, n, ch);
      float *q = y + (p - x);
      for (int i = 0; i < d->spatial; i++) q[i] = (p[i] - m) * scale + b;
    }
  }
}

void LFS_CPU_K(batchnorm_backward_apply)(lfs_backend *be, const lfs_bn_desc *d, float *dx,
                                         lfs_grad_write dx_write, const float *dy, const float *x,
                                         const float *gamma, const float *mean,
                                         const float *invstd, const float *mean_dy,
                                         const float *mean_dy_xhat) {
  (void)be;
  const int set = dx_write == LFS_GRAD_SET;
#pragma omp parallel for schedule(static) PAR_IF(d)
  for (int ch = 0; ch < d->c; ch++) {
    const float k = gamma[ch] * invstd[ch], m = mean[ch], s = invstd[ch];
    const float mdy = mean_dy[ch], mdyx = mean_dy_xhat[ch];
    for (int n = 0; n < d->n; n++) {
      const float *g = plane(d, dy, n, ch), *p = plane(d, x, n, ch);
      float *q = dx + (p - x);
      if (set) /* 0 + v: the bits of adding to a zeroed dx */
        for (int i = 0; i < d->spatial; i++) q[i] = 0.0f + k * (g[i] - mdy - (p[i] - m) * s * mdyx);
      else
        for (int i = 0; i < d->spatial; i++) q[i] += k * (g[i] - mdy - (p[i] - m) * s * mdyx);
    }
  }
}
