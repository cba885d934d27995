/* test_policy.c: the search spaces and the Gaussian policy (DESIGN §1.6-1.7).
 * The update against a hand-worked example of three candidates (two steps, Adam
 * bias correction included), the direction of the update, the winner rule,
 * divergence, deterministic samples with the right moments, each space's
 * mapping to head settings, and convergence of the policy mean to the optimum
 * of a known reward (a fake trainer, no network) for search_softmax and
 * cosface_m. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "lfs/head.h"
#include "lfs/policy.h"
#include "lfs/search_space.h"

#define assert_close(a, b, tol)                                               \
  do {                                                                        \
    const double a_ = (a), b_ = (b);                                          \
    if (!(fabs(a_ - b_) <= (tol)))                                            \
      fail_msg("%s = %.17g, want %.17g (tol %g)", #a, a_, b_, (double)(tol)); \
  } while (0)

/* Worked by hand (rewards 0.90, 0.80, 0.95 at u = 0.1, -0.2, 0.3; mu 0, sigma 0.2):
 * mean 0.883333, range 0.150001, r~ = 2 (r - mean) / range = 0.222221, -1.111104, 0.888883;
 * g = (1/3) sum r~ u / 0.04 = 4.259231; Adam's first step is lr * sign(g): mu = 0.05.
 * Second epoch (0.85, 0.85, 0.70 at u = 0, 0.2, -0.1): r~ = 0.666662, 0.666662, -1.333324,
 * g = (1/3)(0.666662 (-0.05) + 0.666662 (0.15) - 1.333324 (-0.15)) / 0.04 = 2.222207;
 * m = 0.5 (0.5 g1) + 0.5 g2, v = 0.999 (0.001 g1^2) + 0.001 g2^2, bias-corrected by
 * 1 - 0.5^2 and 1 - 0.999^2: mu = 0.05 + 0.05 m^ / sqrt(v^) = 0.0927087. */
static void test_hand_worked_update(void **state) {
  (void)state;
  lfs_policy p;
  const double mu0 = 0.0;
  lfs_policy_init(&p, 1, &mu0, 0.2, 0.05, 0);
  const double u1[3] = {0.1, -0.2, 0.3}, r1[3] = {0.90, 0.80, 0.95};
  double rt[3], g;
  assert_int_equal(lfs_policy_normalise(3, r1, rt), 0);
  assert_close(rt[0], 0.22222074075061657, 1e-12);
  assert_close(rt[1], -1.1111037037530873, 1e-12);
  assert_close(rt[2], 0.8888829630024677, 1e-12);
  assert_int_equal(lfs_policy_update(&p, 3, u1, r1, &g), 0);
  assert_close(g, 4.259230864386828, 1e-10);
  assert_close(p.mu[0], 0.04999999988260792, 1e-12);
  assert_close(p.sigma[0], 0.2, 0.0); /* fixed unless learn_sigma */

  const double u2[3] = {0.0, 0.2, -0.1}, r2[3] = {0.85, 0.85, 0.70};
  assert_int_equal(lfs_policy_update(&p, 3, u2, r2, &g), 0);
  assert_close(g, 2.222207407506172, 1e-10);
  assert_close(p.mu[0], 0.09270868718944161, 1e-12);
  assert_int_equal(p.steps, 2);
}

/* The mean moves towards the samples that scored better, in every dimension. */
static void test_update_direction(void **state) {
  (void)state;
  const double mu0[2] = {0.0, 1.0};
  const double u[4 * 2] = {-0.3, 1.2, -0.1, 1.1, 0.1, 0.9, 0.3, 0.8};
  const double rising[4] = {0.1, 0.2, 0.3, 0.4}, falling[4] = {0.4, 0.3, 0.2, 0.1};
  lfs_policy p;
  lfs_policy_init(&p, 2, mu0, 0.2, 0.05, 0);
  lfs_policy_update(&p, 4, u, rising, NULL);
  assert_true(p.mu[0] > 0.0 && p.mu[1] < 1.0);
  lfs_policy_init(&p, 2, mu0, 0.2, 0.05, 0);
  lfs_policy_update(&p, 4, u, falling, NULL);
  assert_true(p.mu[0] < 0.0 && p.mu[1] > 1.0);
  /* learn_sigma: samples far from the mean scored best, so sigma grows */
  const double far[4] = {0.4, 0.1, 0.1, 0.4};
  lfs_policy_init(&p, 2, mu0, 0.2, 0.05, 1);
  lfs_policy_update(&p, 4, u, far, NULL);
  assert_true(p.sigma[0] > 0.2);
}

static void test_best_and_divergence(void **state) {
  (void)state;
  const double tie[4] = {0.5, 0.9, 0.9, 0.1};
  assert_int_equal(lfs_policy_best(4, tie), 1); /* lowest index on ties */
  const double diverged[3] = {-INFINITY, 0.7, NAN};
  assert_int_equal(lfs_policy_best(3, diverged), 1);
  const double all_bad[2] = {-INFINITY, NAN};
  assert_int_equal(lfs_policy_best(2, all_bad), -1);

  /* statistics over the finite rewards; a diverged candidate gets r~ = -1 */
  const double r[3] = {0.6, -INFINITY, 0.8};
  double rt[3];
  assert_int_equal(lfs_policy_normalise(3, r, rt), 0);
  assert_close(rt[0], 2.0 * (0.6 - 0.7) / (0.2 + 1e-6), 1e-12);
  assert_close(rt[1], -1.0, 0.0);
  assert_close(rt[2], 2.0 * (0.8 - 0.7) / (0.2 + 1e-6), 1e-12);

  lfs_policy p;
  const double mu0 = 0.25, u[2] = {0.1, 0.2};
  lfs_policy_init(&p, 1, &mu0, 0.2, 0.05, 0);
  assert_int_equal(lfs_policy_update(&p, 2, u, all_bad, NULL), -1);
  assert_close(p.mu[0], 0.25, 0.0);
  assert_int_equal(p.steps, 0);
}

/* Samples are a function of (seed, epoch, candidate) alone, with mean mu and
 * standard deviation sigma. */
static void test_samples(void **state) {
  (void)state;
  lfs_policy p;
  const double mu0[3] = {0.5, -1.0, 2.0};
  lfs_policy_init(&p, 3, mu0, 0.3, 0.05, 0);
  double a[3], b[3];
  lfs_policy_sample(&p, 7, 4, 2, a);
  lfs_policy_sample(&p, 7, 4, 2, b);
  assert_memory_equal(a, b, sizeof a);
  lfs_policy_sample(&p, 7, 4, 3, b);
  assert_true(a[0] != b[0]);
  lfs_policy_sample(&p, 7, 5, 2, b);
  assert_true(a[0] != b[0]);
  enum { n = 20000 };
  double sum[3] = {0}, sq[3] = {0};
  for (int i = 0; i < n; i++) {
    lfs_policy_sample(&p, 11, i / 64, i % 64, a);
    for (int j = 0; j < 3; j++) sum[j] += a[j], sq[j] += a[j] * a[j];
  }
  for (int j = 0; j < 3; j++) {
    const double mean = sum[j] / n, sd = sqrt(sq[j] / n - mean * mean);
    assert_close(mean, mu0[j], 4 * 0.3 / sqrt(n));
    assert_close(sd, 0.3, 0.01);
  }
}

static void test_spaces(void **state) {
  (void)state;
  char err[256];
  lfs_space sp;
  lfs_head_cfg base, out;
  lfs_head_cfg_init(&base, LFS_LOSS_SOFTMAX);
  double mu[LFS_SPACE_MAX_DIM], u[LFS_SPACE_MAX_DIM];

  assert_int_equal(lfs_space_init(&sp, LFS_SPACE_SEARCH_SOFTMAX, 6, 0, err, sizeof err), 0);
  assert_int_equal(sp.dim, 1);
  lfs_space_initial_mean(&sp, mu);
  assert_close(mu[0], 0.0, 0.0);
  assert_close(lfs_space_default_sigma(&sp), 0.2, 0.0);
  lfs_space_warmup_point(&sp, u);
  assert_close(u[0], -1.0, 0.0);
  lfs_space_apply(&sp, u, &base, &out);
  assert_int_equal(out.kind, LFS_LOSS_SEARCH_SOFTMAX);
  assert_close(out.a, -exp(32.0 / 3.0), 1e-9); /* a = -|u| e^{s/3} */
  assert_int_equal(lfs_head_cfg_check(&out, err, sizeof err), 0);
  /* the warm-up point equals CosFace with m = ln(1 + e^{s/3}) / s, about 1/3 */
  assert_close(lfs_space_equivalent_margin(out.a, 32.0), log1p(exp(32.0 / 3.0)) / 32.0, 1e-15);
  assert_close(lfs_space_equivalent_margin(out.a, 32.0), 1.0 / 3.0, 1e-6);
  u[0] = 0.25;
  lfs_space_apply(&sp, u, &base, &out);
  assert_close(out.a, -0.25 * exp(32.0 / 3.0), 1e-9);
  assert_true(lfs_space_learns(&sp));
  assert_int_equal(lfs_space_init(&sp, LFS_SPACE_RANDOM_SOFTMAX, 6, 0, err, sizeof err), 0);
  assert_false(lfs_space_learns(&sp));

  assert_int_equal(lfs_space_init(&sp, LFS_SPACE_COSFACE_M, 6, 0, err, sizeof err), 0);
  lfs_space_initial_mean(&sp, mu);
  assert_close(mu[0], 0.35, 0.0);
  assert_close(lfs_space_default_sigma(&sp), 0.05, 0.0);
  u[0] = -0.1;
  lfs_space_apply(&sp, u, &base, &out);
  assert_int_equal(out.kind, LFS_LOSS_COSFACE);
  assert_close(out.m3, 0.0, 0.0);
  u[0] = 0.3;
  lfs_space_apply(&sp, u, &base, &out);
  assert_close(out.m3, 0.3, 0.0);
  assert_int_equal(lfs_head_cfg_check(&out, err, sizeof err), 0);

  assert_int_equal(lfs_space_init(&sp, LFS_SPACE_ARCFACE_M, 6, 0, err, sizeof err), 0);
  lfs_space_initial_mean(&sp, mu);
  assert_close(mu[0], 0.5, 0.0);
  u[0] = 1.7;
  lfs_space_apply(&sp, u, &base, &out);
  assert_int_equal(out.kind, LFS_LOSS_ARCFACE);
  assert_close(out.m2, 1.0, 0.0);
  assert_int_equal(lfs_head_cfg_check(&out, err, sizeof err), 0);

  assert_int_equal(lfs_space_init(&sp, LFS_SPACE_AMLFS, 4, 1, err, sizeof err), 0);
  assert_int_equal(sp.dim, 16);
  assert_close(lfs_space_default_sigma(&sp), sqrt(0.2), 0.0);
  lfs_space_initial_mean(&sp, mu);
  lfs_space_apply(&sp, mu, &base, &out);
  assert_int_equal(out.kind, LFS_LOSS_AMLFS);
  assert_int_equal(out.amlfs_n, 4);
  assert_int_equal(out.amlfs_tau, 1);
  for (int j = 0; j < 4; j++) {
    assert_close(out.amlfs_alpha[j], 1.0, 0.0);
    assert_close(out.amlfs_beta[j], 0.0, 0.0);
    assert_close(out.tau_alpha[j], 1.0, 0.0);
    assert_close(out.tau_beta[j], 0.0, 0.0);
  }
  /* at the identity the AM-LFS target is the plain cosine */
  assert_close(lfs_head_target(&out, 0.3, NULL), 0.3, 1e-15);
  assert_int_equal(lfs_head_cfg_check(&out, err, sizeof err), 0);
  assert_int_equal(lfs_space_init(&sp, LFS_SPACE_AMLFS, 65, 0, err, sizeof err), -1);
  assert_non_null(strstr(err, "search.intervals"));
}

/* A fake trainer: the reward of a loss is a known function of its settings, so
 * the search runs for many epochs in microseconds. With a constant Adam step
 * the mean does not stop at the optimum but moves about it by about the step
 * size, so convergence is: the first epoch whose mean is within reach_tol of
 * u_star (returned), and the mean of the policy mean over the second half of
 * the run (*late_mean). Search-Softmax's a depends on |u|, so its mean may
 * settle at either sign: distances are taken on |mu| there. */
typedef double (*reward_fn)(const lfs_head_cfg *loss);

static int search_epochs(lfs_space_kind kind, reward_fn reward, double u_star, double reach_tol,
                         uint64_t seed, int epochs, int m, double *late_mean) {
  char err[128];
  lfs_space sp;
  lfs_space_init(&sp, kind, 6, 0, err, sizeof err);
  double mu0[1], u[64], r[64];
  lfs_space_initial_mean(&sp, mu0);
  lfs_policy p;
  lfs_policy_init(&p, 1, mu0, lfs_space_default_sigma(&sp), 0.05, 0);
  lfs_head_cfg base, loss;
  lfs_head_cfg_init(&base, LFS_LOSS_SOFTMAX);
  int reached = -1;
  double late = 0.0;
  for (int e = 0; e < epochs; e++) {
    for (int i = 0; i < m; i++) {
      lfs_policy_sample(&p, seed, e, i, &u[i]);
      lfs_space_apply(&sp, &u[i], &base, &loss);
      r[i] = reward(&loss);
    }
    lfs_policy_update(&p, m, u, r, NULL);
    const double mu = kind == LFS_SPACE_SEARCH_SOFTMAX ? fabs(p.mu[0]) : p.mu[0];
    if (reached < 0 && fabs(mu - u_star) <= reach_tol) reached = e + 1;
    if (e >= epochs / 2) late += mu / (epochs - epochs / 2);
  }
  *late_mean = late;
  return reached;
}

/* Best at the CosFace-equivalent margin of u = 0.6 (a = -0.6 e^{32/3}), measured
 * in margin units: the reward of a verification accuracy is smooth in the margin. */
static double margin_reward(const lfs_head_cfg *loss) {
  const double m_star = lfs_space_equivalent_margin(lfs_space_modulation(0.6, 32.0), 32.0);
  const double m = lfs_space_equivalent_margin(loss->a, loss->s);
  return 0.99 - 4.0 * (m - m_star) * (m - m_star);
}

static double cosface_reward(const lfs_head_cfg *loss) {
  return 0.99 - (loss->m3 - 0.2) * (loss->m3 - 0.2);
}

/* Five seeds, M = 4 candidates, 100 epochs, the default policy of the space. */
static void check_convergence(lfs_space_kind kind, reward_fn reward, double u_star,
                              double reach_tol, int within, double late_tol) {
  for (uint64_t seed = 1; seed <= 5; seed++) {
    double late;
    const int reached = search_epochs(kind, reward, u_star, reach_tol, seed, 100, 4, &late);
    if (reached < 0 || reached > within || !(fabs(late - u_star) <= late_tol))
      fail_msg(
          "%s, seed %d: within %.2f of %.3f at epoch %d (want <= %d); mean of the last 50"
          " epochs %.4f (want within %.3f)",
          lfs_space_name(kind), (int)seed, reach_tol, u_star, reached, within, late, late_tol);
  }
}

/* From mu = 0 to |mu| = 0.6 (sigma 0.2, Adam step 0.05): at least 12 steps. */
static void test_converges_search_softmax(void **state) {
  (void)state;
  check_convergence(LFS_SPACE_SEARCH_SOFTMAX, margin_reward, 0.6, 0.1, 25, 0.08);
}

/* From m = 0.35 to 0.2 (sigma 0.05): at least 2 steps. */
static void test_converges_cosface_m(void **state) {
  (void)state;
  check_convergence(LFS_SPACE_COSFACE_M, cosface_reward, 0.2, 0.05, 20, 0.02);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_hand_worked_update),
      cmocka_unit_test(test_update_direction),
      cmocka_unit_test(test_best_and_divergence),
      cmocka_unit_test(test_samples),
      cmocka_unit_test(test_spaces),
      cmocka_unit_test(test_converges_search_softmax),
      cmocka_unit_test(test_converges_cosface_m),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
