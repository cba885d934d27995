/* amlfs.c: the AM-LFS space (DESIGN §1.5) on one row.
 *
 * Target: z_y = s (alpha_j c + beta_j) for c in interval j of N equal intervals
 * of [-1, 1] (c = 1 belongs to the last). Probability (optional): tau(p) =
 * tau_alpha_j p + tau_beta_j over N equal intervals of [0, 1], L = -log tau(p_y),
 * dL/dz_k = g (p_k - [k = y]) with g = tau_alpha_j p_y / tau(p_y).
 *
 * log tau is formed without the log of a rounded probability: near p_y = 1 as
 * log(A) + log1p(-alpha q / A) with A = alpha + beta = tau(1) and q = 1 - p_y;
 * with beta = 0 as log(alpha) + log p_y. A sampled tau can be <= 0 at p_y; it is
 * then replaced by LFS_AMLFS_TAU_FLOOR with a zero gradient. */
#include <math.h>

#include "loss/loss_internal.h"

/* Interval of v in N equal parts of [lo, lo + width]; the top end belongs to the last. */
static int interval(double v, double lo, double width, int n) {
  const double pos = floor((v - lo) / width * n);
  if (!(pos >= 0.0)) return 0; /* also NaN */
  return pos >= n ? n - 1 : (int)pos;
}

double lfs_amlfs_target(const lfs_head_cfg *cfg, double c, double *dt_dc) {
  const int j = interval(c, -1.0, 2.0, cfg->amlfs_n);
  if (dt_dc) *dt_dc = cfg->amlfs_alpha[j];
  return cfg->amlfs_alpha[j] * c + cfg->amlfs_beta[j];
}

/* log tau(p_y); returns 0 (and leaves *log_tau) when tau(p_y) <= 0. */
static int log_tau(double alpha, double beta, const lfs_row_prob *p, double *out) {
  if (p->py >= 0.5) {
    const double at_one = alpha + beta; /* tau = at_one - alpha q */
    if (at_one > 0.0) {
      const double rel = -alpha * p->q / at_one;
      if (!(rel > -1.0)) return 0;
      *out = log(at_one) + log1p(rel);
      return 1;
    }
    const double tau = at_one - alpha * p->q;
    if (!(tau > 0.0)) return 0;
    *out = log(tau);
    return 1;
  }
  if (beta == 0.0) {
    if (!(alpha > 0.0)) return 0;
    *out = log(alpha) - p->neg_log_py;
    return 1;
  }
  const double tau = alpha * p->py + beta;
  if (!(tau > 0.0)) return 0;
  *out = log(tau);
  return 1;
}

double lfs_amlfs_tau_term(const lfs_head_cfg *cfg, const lfs_row_prob *p, double *g) {
  const int j = interval(p->py, 0.0, 1.0, cfg->amlfs_n);
  const double alpha = cfg->tau_alpha[j], beta = cfg->tau_beta[j];
  double lt;
  if (!log_tau(alpha, beta, p, &lt)) {
    *g = 0.0;
    return -log(LFS_AMLFS_TAU_FLOOR);
  }
  /* p_y / tau in log space: both may underflow while their ratio does not. */
  *g = alpha * exp(-p->neg_log_py - lt);
  return -lt;
}
