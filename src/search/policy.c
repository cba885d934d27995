/* policy.c: the Gaussian search policy, its samples and its REINFORCE + Adam
 * update (see lfs/policy.h for the formulas). Plain double arithmetic in a fixed
 * order: every rank that applies an update to the same rewards gets the same bits. */
#include <math.h>
#include <string.h>

#include "lfs/philox.h"
#include "lfs/policy.h"

void lfs_policy_init(lfs_policy *p, int dim, const double *mu0, double sigma0, double lr,
                     int learn_sigma) {
  memset(p, 0, sizeof *p);
  p->dim = dim;
  p->lr = lr;
  p->learn_sigma = learn_sigma != 0;
  for (int j = 0; j < dim; j++) p->mu[j] = mu0[j], p->sigma[j] = sigma0;
}

void lfs_policy_draw(const lfs_policy *p, uint64_t seed, int64_t epoch, int candidate,
                     int64_t draw, double *u) {
  const lfs_rng r = lfs_rng_make(seed, LFS_RNG_POLICY, (uint32_t)epoch, (uint32_t)candidate);
  for (int j = 0; j < p->dim; j++)
    u[j] = p->mu[j] + p->sigma[j] * lfs_rng_normal(&r, (uint64_t)draw * p->dim + j);
}

void lfs_policy_sample(const lfs_policy *p, uint64_t seed, int64_t epoch, int candidate,
                       double *u) {
  lfs_policy_draw(p, seed, epoch, candidate, 0, u);
}

int lfs_policy_best(int m, const double *reward) {
  int best = -1;
  for (int i = 0; i < m; i++)
    if (isfinite(reward[i]) && (best < 0 || reward[i] > reward[best])) best = i;
  return best;
}

int lfs_policy_normalise(int m, const double *reward, double *normalised) {
  double sum = 0.0, lo = INFINITY, hi = -INFINITY;
  int finite = 0;
  for (int i = 0; i < m; i++) {
    if (!isfinite(reward[i])) continue;
    sum += reward[i], finite++;
    lo = fmin(lo, reward[i]), hi = fmax(hi, reward[i]);
  }
  if (!finite) return -1;
  const double mean = sum / finite, range = hi - lo + 1e-6;
  for (int i = 0; i < m; i++)
    normalised[i] = isfinite(reward[i]) ? 2.0 * (reward[i] - mean) / range : -1.0;
  return 0;
}

/* One Adam ascent step of x with gradient g (moments m, v; t >= 1 steps so far). */
static double adam_ascent(double x, double g, double *m, double *v, int64_t t, double lr) {
  *m = LFS_POLICY_BETA1 * *m + (1.0 - LFS_POLICY_BETA1) * g;
  *v = LFS_POLICY_BETA2 * *v + (1.0 - LFS_POLICY_BETA2) * g * g;
  const double m_hat = *m / (1.0 - pow(LFS_POLICY_BETA1, (double)t));
  const double v_hat = *v / (1.0 - pow(LFS_POLICY_BETA2, (double)t));
  return x + lr * m_hat / (sqrt(v_hat) + LFS_POLICY_EPS);
}

int lfs_policy_update(lfs_policy *p, int m, const double *u, const double *reward,
                      double *grad_mu) {
  double r[LFS_POLICY_MAX_CANDIDATES];
  if (m < 1 || m > LFS_POLICY_MAX_CANDIDATES || lfs_policy_normalise(m, reward, r) != 0) return -1;
  p->steps++;
  for (int j = 0; j < p->dim; j++) {
    const double mu = p->mu[j], sigma = p->sigma[j];
    double g_mu = 0.0, g_sigma = 0.0;
    for (int i = 0; i < m; i++) {
      const double d = u[(size_t)i * p->dim + j] - mu;
      g_mu += r[i] * d / (sigma * sigma);
      g_sigma += r[i] * (d * d - sigma * sigma) / (sigma * sigma * sigma);
    }
    g_mu /= m, g_sigma /= m;
    if (grad_mu) grad_mu[j] = g_mu;
    p->mu[j] = adam_ascent(mu, g_mu, &p->m_mu[j], &p->v_mu[j], p->steps, p->lr);
    if (p->learn_sigma) {
      const double s = adam_ascent(sigma, g_sigma, &p->m_sigma[j], &p->v_sigma[j], p->steps, p->lr);
      p->sigma[j] = s > LFS_POLICY_SIGMA_MIN ? s : LFS_POLICY_SIGMA_MIN;
    }
  }
  return 0;
}
