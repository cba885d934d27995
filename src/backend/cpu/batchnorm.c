/* batchnorm.c: CPU batch normalisation over x viewed as [n, c, spatial]
 * (BN2d: spatial = H*W; BN1d: spatial = 1). Statistics accumulate in double in
 * a fixed order, so results do not depend on the thread count. Running
 * statistics follow PyTorch: run = (1 - m) * run + m * batch, with the unbiased
 * batch variance. */
#include <math.h>

#include "backend/cpu/cpu_internal.h"

/* Mean and biased variance of channel ch (two passes: no cancellation). */
static void channel_stats(const lfs_bn_desc *d, const float *x, int ch, double *mean, double *var) {
  const size_t sp = (size_t)d->spatial, stride = (size_t)d->c * sp;
  double sum = 0.0;
  for (int n = 0; n < d->n; n++) sum += lfs_cpu_sum(x + n * stride + ch * sp, sp);
  const double count = (double)d->n * (double)sp, mu = sum / count;
  double sq = 0.0;
  for (int n = 0; n < d->n; n++) {
    const float *p = x + n * stride + ch * sp;
    sq += lfs_cpu_dot_shifted(p, (float)mu, p, (float)mu, sp);
  }
  *mean = mu;
  *var = sq / count;
}

static void normalise_channel(const lfs_bn_desc *d, float *y, const float *x, int ch, float mean,
                              float invstd, float gamma, float beta) {
  const size_t sp = (size_t)d->spatial, stride = (size_t)d->c * sp;
  const float scale = gamma * invstd, shift = beta - mean * scale;
  for (int n = 0; n < d->n; n++) {
    const float *p = x + n * stride + ch * sp;
    float *q = y + n * stride + ch * sp;
    for (size_t i = 0; i < sp; i++) q[i] = p[i] * scale + shift;
  }
}

void lfs_cpu_batchnorm_forward(lfs_backend *be, const lfs_bn_desc *d, int training, float *y,
                               float *saved_mean, float *saved_invstd, float *running_mean,
                               float *running_var, const float *x, const float *gamma,
                               const float *beta) {
  (void)be;
  const double count = (double)d->n * (double)d->spatial;
#pragma omp parallel for schedule(static) if (count * d->c > LFS_CPU_PAR_MIN)
  for (int ch = 0; ch < d->c; ch++) {
    double mean, var;
    if (training) {
      channel_stats(d, x, ch, &mean, &var);
      const double unbiased = count > 1 ? var * count / (count - 1) : var;
      running_mean[ch] = (float)((1.0 - d->momentum) * running_mean[ch] + d->momentum * mean);
      running_var[ch] = (float)((1.0 - d->momentum) * running_var[ch] + d->momentum * unbiased);
    } else {
      mean = running_mean[ch];
      var = running_var[ch];
    }
    saved_mean[ch] = (float)mean;
    saved_invstd[ch] = (float)(1.0 / sqrt(var + d->eps));
    normalise_channel(d, y, x, ch, saved_mean[ch], saved_invstd[ch], gamma[ch], beta[ch]);
  }
}

/* Sums of dy and dy * xhat over channel ch. */
static void channel_grad_sums(const lfs_bn_desc *d, const float *dy, const float *x, int ch,
                              float mean, float invstd, double *sum_dy, double *sum_dy_xhat) {
  const size_t sp = (size_t)d->spatial, stride = (size_t)d->c * sp;
  double s = 0.0, sx = 0.0;
  for (int n = 0; n < d->n; n++) {
    const float *g = dy + n * stride + ch * sp, *p = x + n * stride + ch * sp;
    s += lfs_cpu_sum(g, sp);
    sx += lfs_cpu_dot_shifted(g, 0.0f, p, mean, sp);
  }
  *sum_dy = s;
  *sum_dy_xhat = sx * invstd;
}

void lfs_cpu_batchnorm_backward(lfs_backend *be, const lfs_bn_desc *d, int training, float *dx,
                                float *dgamma, float *dbeta, const float *dy, const float *x,
                                const float *gamma, const float *saved_mean,
                                const float *saved_invstd) {
  (void)be;
  const size_t sp = (size_t)d->spatial, stride = (size_t)d->c * sp;
  const double count = (double)d->n * (double)sp;
#pragma omp parallel for schedule(static) if (count * d->c > LFS_CPU_PAR_MIN)
  for (int ch = 0; ch < d->c; ch++) {
    const float mean = saved_mean[ch], invstd = saved_invstd[ch];
    double sum_dy, sum_dy_xhat;
    channel_grad_sums(d, dy, x, ch, mean, invstd, &sum_dy, &sum_dy_xhat);
    if (dgamma) dgamma[ch] += (float)sum_dy_xhat;
    if (dbeta) dbeta[ch] += (float)sum_dy;
    if (!dx) continue;
    /* training: dx = g*invstd/N * (N*dy - sum(dy) - xhat*sum(dy*xhat)); eval: dx = g*invstd*dy */
    const float k = gamma[ch] * invstd;
    const float mean_dy = training ? (float)(sum_dy / count) : 0.0f;
    const float mean_dy_xhat = training ? (float)(sum_dy_xhat / count) : 0.0f;
    for (int n = 0; n < d->n; n++) {
      const float *g = dy + n * stride + ch * sp, *p = x + n * stride + ch * sp;
      float *q = dx + n * stride + ch * sp;
      for (size_t i = 0; i < sp; i++) {
        const float xhat = (p[i] - mean) * invstd;
        q[i] += k * (g[i] - mean_dy - xhat * mean_dy_xhat);
      }
    }
  }
}
