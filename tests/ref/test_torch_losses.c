/* test_torch_losses.c: the cosine head and every loss against PyTorch.
 *
 * The fixtures tests/ref/fixtures/loss_*.h5 were written by tests/ref/gen_loss_fixtures.py
 * (torch autograd in float64 on float32 inputs, each loss written there from the DESIGN
 * formulas; the script also checks how they relate to insightface's arcface_torch).
 * CI has no torch and only reads them. Each case rebuilds the lfs_head_cfg from the
 * fixture's attributes, runs lfs_head_loss on its x, w and labels, and compares the
 * mean loss, its gradients with respect to the unnormalised features and class weights,
 * and the mean p_y, norm-wise (max |got - want| / max |want|) at REF_TOL. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/testutil.h"
#include "lfs/head.h"

/* The float library against float64 references: measured worst cases are printed in
 * the summary (~1e-6: logits s * c from float cosines); a wrong convention (lambda,
 * the k extension, straight vs exact, MV's branch) is off by 1e-2 or more. */
#define REF_TOL 1e-4

static const char *const cases[] = {
    "softmax", "sphereface", "sphereface_m135", "cosface", "arcface", "arcface_straight",
    "combined", "combined_straight", "mv_adaptive_cosface", "mv_fixed_arcface",
    "search_softmax", "search_softmax_py1", "amlfs", "amlfs_tau"};
#define NCASES (sizeof cases / sizeof cases[0])

static double worst[NCASES][4];

/* Reads an [n] float64 dataset into dst (n values exactly). */
static void read_exact(tu_fixture *fx, const char *name, double *dst, size_t n) {
  size_t got = 0;
  double *v = tu_fixture_read_d(fx, name, &got);
  if (got != n) fail_msg("%s: %zu values, expected %zu", name, got, n);
  memcpy(dst, v, n * sizeof *v);
  free(v);
}

static void cfg_from_fixture(tu_fixture *fx, lfs_head_cfg *cfg) {
  const int kind = (int)tu_fixture_attr(fx, "kind");
  assert_true(kind >= 0 && kind < LFS_LOSS_COUNT);
  lfs_head_cfg_init(cfg, (lfs_loss_kind)kind);
  cfg->s = tu_fixture_attr(fx, "s");
  cfg->m1 = tu_fixture_attr(fx, "m1");
  cfg->m2 = tu_fixture_attr(fx, "m2");
  cfg->m3 = tu_fixture_attr(fx, "m3");
  cfg->margin_grad = (lfs_margin_grad)tu_fixture_attr(fx, "margin_grad");
  cfg->lambda_base = tu_fixture_attr(fx, "lambda_base");
  cfg->lambda_gamma = tu_fixture_attr(fx, "lambda_gamma");
  cfg->lambda_power = tu_fixture_attr(fx, "lambda_power");
  cfg->lambda_min = tu_fixture_attr(fx, "lambda_min");
  cfg->iteration = (int64_t)tu_fixture_attr(fx, "iteration");
  cfg->mv_mode = (lfs_mv_mode)tu_fixture_attr(fx, "mv_mode");
  cfg->mv_t = tu_fixture_attr(fx, "mv_t");
  cfg->a = tu_fixture_attr(fx, "a");
  cfg->amlfs_n = (int)tu_fixture_attr(fx, "amlfs_n");
  cfg->amlfs_tau = (int)tu_fixture_attr(fx, "amlfs_tau");
  if (cfg->kind == LFS_LOSS_AMLFS) {
    assert_true(cfg->amlfs_n >= 1 && cfg->amlfs_n <= LFS_AMLFS_MAX_INTERVALS);
    read_exact(fx, "amlfs_alpha", cfg->amlfs_alpha, (size_t)cfg->amlfs_n);
    read_exact(fx, "amlfs_beta", cfg->amlfs_beta, (size_t)cfg->amlfs_n);
    read_exact(fx, "tau_alpha", cfg->tau_alpha, (size_t)cfg->amlfs_n);
    read_exact(fx, "tau_beta", cfg->tau_beta, (size_t)cfg->amlfs_n);
  }
  char err[256];
  if (lfs_head_cfg_check(cfg, err, sizeof err)) fail_msg("fixture configuration: %s", err);
}

static void run_fixture(size_t which) {
  char path[160], what[160];
  snprintf(path, sizeof path, "tests/ref/fixtures/loss_%s.h5", cases[which]);
  tu_fixture *fx = tu_fixture_open(path);
  lfs_head_cfg cfg;
  cfg_from_fixture(fx, &cfg);
  int dx_dims[4], dw_dims[4];
  assert_int_equal(tu_fixture_dims(fx, "x", dx_dims), 2);
  assert_int_equal(tu_fixture_dims(fx, "w", dw_dims), 2);
  const int B = dx_dims[0], D = dx_dims[1], K = dw_dims[0];
  assert_int_equal(dw_dims[1], D);
  size_t n;
  float *x = tu_fixture_read_f(fx, "x", &n);
  float *w = tu_fixture_read_f(fx, "w", &n);
  double *labels_d = tu_fixture_read_d(fx, "labels", &n);
  assert_int_equal(n, (size_t)B);
  int32_t *labels = calloc((size_t)B, sizeof *labels);
  assert_non_null(labels);
  for (int i = 0; i < B; i++) labels[i] = (int32_t)labels_d[i];

  float *dx = calloc((size_t)B * D, sizeof *dx), *dw = calloc((size_t)K * D, sizeof *dw);
  assert_non_null(dx);
  assert_non_null(dw);
  lfs_head_stats st;
  const float loss = (float)lfs_head_loss(&cfg, B, D, K, dx, dw, &st, x, w, labels);
  const float mean_py = (float)st.mean_p_y;

  double *want_loss = tu_fixture_read_d(fx, "loss", &n);
  double *want_py = tu_fixture_read_d(fx, "mean_p_y", &n);
  double *want_dx = tu_fixture_read_d(fx, "dx", &n);
  assert_int_equal(n, (size_t)B * D);
  double *want_dw = tu_fixture_read_d(fx, "dw", &n);
  assert_int_equal(n, (size_t)K * D);
  int ok = 1;
  snprintf(what, sizeof what, "%s loss", cases[which]);
  ok &= tu_check(what, &loss, want_loss, 1, REF_TOL);
  snprintf(what, sizeof what, "%s dx", cases[which]);
  ok &= tu_check(what, dx, want_dx, (size_t)B * D, REF_TOL);
  snprintf(what, sizeof what, "%s dw", cases[which]);
  ok &= tu_check(what, dw, want_dw, (size_t)K * D, REF_TOL);
  snprintf(what, sizeof what, "%s mean p_y", cases[which]);
  ok &= tu_check(what, &mean_py, want_py, 1, REF_TOL);
  worst[which][0] = tu_rel_err(&loss, want_loss, 1);
  worst[which][1] = tu_rel_err(dx, want_dx, (size_t)B * D);
  worst[which][2] = tu_rel_err(dw, want_dw, (size_t)K * D);
  worst[which][3] = tu_rel_err(&mean_py, want_py, 1);

  free(want_loss), free(want_py), free(want_dx), free(want_dw);
  free(x), free(w), free(labels_d), free(labels), free(dx), free(dw);
  tu_fixture_close(fx);
  assert_true(ok);
}

static void test_fixture(void **state) { run_fixture((size_t)(uintptr_t)*state); }

static int print_summary(void **state) {
  (void)state;
  printf("\n%-22s %11s %11s %11s %11s   (tol %.0e)\n", "fixture", "loss", "dx", "dw",
         "mean p_y", REF_TOL);
  for (size_t i = 0; i < NCASES; i++)
    printf("%-22s %11.3e %11.3e %11.3e %11.3e\n", cases[i], worst[i][0], worst[i][1],
           worst[i][2], worst[i][3]);
  return 0;
}

int main(void) {
  struct CMUnitTest tests[NCASES];
  for (size_t i = 0; i < NCASES; i++)
    tests[i] = (struct CMUnitTest){.name = cases[i], .test_func = test_fixture,
                                   .initial_state = (void *)(uintptr_t)i};
  return cmocka_run_group_tests(tests, NULL, print_summary);
}
