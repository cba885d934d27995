/* policy.h: the diagonal Gaussian policy of the loss search and its
 * reward-guided update (REINFORCE, DESIGN §1.7).
 *
 * Candidate i samples u_i ~ N(mu, sigma^2), element j drawn from the Philox
 * stream (seed, LFS_RNG_POLICY, epoch, candidate), so a sample needs no
 * generator state and every rank draws the same numbers. After an epoch the
 * rewards r_i are normalised, r~_i = 2 (r_i - mean r) / (max r - min r + 1e-6),
 * the score-function gradient of the expected reward is
 *   g_mu = (1/M) sum_i r~_i (u_i - mu) / sigma^2
 *   g_sigma = (1/M) sum_i r~_i ((u_i - mu)^2 - sigma^2) / sigma^3   (learn_sigma only)
 * and mu (and sigma) take one Adam ascent step (lr, beta = (0.5, 0.999), eps
 * 1e-8). The update is deterministic arithmetic, so ranks that apply it to the
 * same rewards hold the same policy.
 *
 * A diverged candidate has reward -inf: it never wins, the statistics are taken
 * over the finite rewards, and its r~ is -1 (the bottom of the normalised range). */
#ifndef LFS_POLICY_H
#define LFS_POLICY_H

#include <stdint.h>

#include "lfs/search_space.h"

#define LFS_POLICY_BETA1 0.5
#define LFS_POLICY_BETA2 0.999
#define LFS_POLICY_EPS 1e-8
/* A learned sigma never goes below this (a zero sigma would end exploration
 * and divide by zero). */
#define LFS_POLICY_SIGMA_MIN 1e-4
/* search.candidates allows at most this many. */
#define LFS_POLICY_MAX_CANDIDATES 4096

typedef struct {
  int dim;
  double lr;
  int learn_sigma;
  double mu[LFS_SPACE_MAX_DIM], sigma[LFS_SPACE_MAX_DIM];
  /* Adam moments of mu and sigma, and the number of steps taken */
  double m_mu[LFS_SPACE_MAX_DIM], v_mu[LFS_SPACE_MAX_DIM];
  double m_sigma[LFS_SPACE_MAX_DIM], v_sigma[LFS_SPACE_MAX_DIM];
  int64_t steps;
} lfs_policy;

/* mu = mu0 [dim], sigma = sigma0 in every dimension, Adam state zero. */
void lfs_policy_init(lfs_policy *p, int dim, const double *mu0, double sigma0, double lr,
                     int learn_sigma);

/* u [dim] of candidate `candidate` in epoch `epoch`: draw 0 of lfs_policy_draw. */
void lfs_policy_sample(const lfs_policy *p, uint64_t seed, int64_t epoch, int candidate, double *u);
/* Draw `draw` of that stream (random_softmax draws a fresh u every step). */
void lfs_policy_draw(const lfs_policy *p, uint64_t seed, int64_t epoch, int candidate,
                     int64_t draw, double *u);

/* The winner: the largest reward, the lowest index on ties; -1 if every reward
 * is -inf or NaN. */
int lfs_policy_best(int m, const double *reward);

/* r~ [m] from reward [m] (see the header); -1 if no reward is finite. */
int lfs_policy_normalise(int m, const double *reward, double *normalised);

/* One update from the m candidates' samples u [m, dim] and rewards [m].
 * grad_mu [dim] (optional) receives g_mu. Returns -1, leaving the policy as it
 * was, if no reward is finite. */
int lfs_policy_update(lfs_policy *p, int m, const double *u, const double *reward, double *grad_mu);

#endif
