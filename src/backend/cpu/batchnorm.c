/* batchnorm.c: CPU batch-normalisation kernels over x viewed as [n, c, spatial]
 * (BN2d: spatial = H*W; BN1d: spatial = 1), in the phases of lfs_backend_ops
 * (sums, squared deviations, apply; gradient sums, backward apply) so that
 * synchronised BN can all-reduce between them. Sums accumulate in double in a
 * fixed order: results do not depend on the thread count. */
#include "backend/cpu/cpu_internal.h"

#define PAR_IF(d) if ((size_t)(d)->n * (d)->c * (d)->spatial > LFS_CPU_PAR_MIN)

static const float *plane(const lfs_bn_desc *d, const float *x, int n, int ch) {
  return x + ((size_t)n * d->c + ch) * (size_t)d->spatial;
}

void LFS_CPU_K(batchnorm_sums)(lfs_backend *be, const lfs_bn_desc *d, double *sum, const float *x) {
  (void)be;
#pragma omp parallel for schedule(static) PAR_IF(d)
  for (int ch = 0; ch < d->c; ch++) {
    double s = 0.0;
    for (int n = 0; n < d->n; n++) s += lfs_cpu_sum(plane(d, x, n, ch), (size_t)d->spatial);
    sum[ch] = s;
  }
}

void LFS_CPU_K(batchnorm_sqdev)(lfs_backend *be, const lfs_bn_desc *d, double *sqdev,
                                const float *x, const float *mean) {
  (void)be;
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

void LFS_CPU_K(batchnorm_apply)(lfs_backend *be, const lfs_bn_desc *d, float *y, const float *x,
                                const float *mean, const float *invstd, const float *gamma,
                                const float *beta) {
  (void)be;
#pragma omp parallel for schedule(static) PAR_IF(d)
  for (int ch = 0; ch < d->c; ch++) {
    const float scale = gamma[ch] * invstd[ch], shift = beta[ch] - mean[ch] * scale;
    for (int n = 0; n < d->n; n++) {
      const float *p = plane(d, x, n, ch);
      float *q = y + (p - x);
      for (int i = 0; i < d->spatial; i++) q[i] = p[i] * scale + shift;
    }
  }
}

void LFS_CPU_K(batchnorm_grad_sums)(lfs_backend *be, const lfs_bn_desc *d, double *sum_dy,
                                    double *sum_dy_xhat, const float *dy, const float *x,
                                    const float *mean, const float *invstd) {
  (void)be;
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

void LFS_CPU_K(batchnorm_backward_apply)(lfs_backend *be, const lfs_bn_desc *d, float *dx,
                                         const float *dy, const float *x, const float *gamma,
                                         const float *mean, const float *invstd,
                                         const float *mean_dy, const float *mean_dy_xhat) {
  (void)be;
#pragma omp parallel for schedule(static) PAR_IF(d)
  for (int ch = 0; ch < d->c; ch++) {
    const float k = gamma[ch] * invstd[ch], m = mean[ch], s = invstd[ch];
    const float mdy = mean_dy[ch], mdyx = mean_dy_xhat[ch];
    for (int n = 0; n < d->n; n++) {
      const float *g = plane(d, dy, n, ch), *p = plane(d, x, n, ch);
      float *q = dx + (p - x);
      for (int i = 0; i < d->spatial; i++) q[i] += k * (g[i] - mdy - (p[i] - m) * s * mdyx);
    }
  }
}
