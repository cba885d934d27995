/* test_optim.c: the optimiser, the learning-rate schedules and gradient-norm clipping.
 *
 * - SGD against torch.optim.SGD (tests/ref/fixtures/sgd.h5, written by
 *   tests/ref/gen_optim_fixture.py): three steps with momentum 0.9, weight decay 5e-4,
 *   lr from a schedule and clip_grad_norm_ active at the second step; once with decay on
 *   every tensor, once with the one-dimensional tensors excluded (torch param groups).
 *   Parameters and momentum buffers after every step at norm-wise relative error
 *   <= 1e-6, the returned norm and the lr too; the head goes through lfs_sgd_step_raw.
 *   The fixture is shown to be sensitive: the wrong decay rule fails it.
 * - Schedules: multistep boundaries (in epochs and in steps), warm-up start and end,
 *   the polynomial end value 0, and lr(step) being a pure function; constructor errors.
 * - Milestone parsing and its error messages.
 * - Clipping: the norm, exact scaling, off when max_norm is 0, untouched below the
 *   limit, and the same bits for any thread count. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "lfs/backend.h"
#include "lfs/config.h"
#include "lfs/graph.h"
#include "lfs/layer.h"
#include "lfs/models.h"
#include "lfs/optim.h"
#include "lfs/params.h"
#include "testutil.h"

#define FIXTURE "tests/ref/fixtures/sgd.h5"
#define TOL 1e-6
#define STEPS 3

/* ---- the fixture's model ------------------------------------------------------------ */

typedef struct {
  const char *name;
  lfs_param_kind kind;
  int ndim, dims[4];
} view_spec;

/* Trainable tensors as in the generator's MODEL, with BN buffers and a frozen tensor
 * declared in between and after, as a real model has them. */
static const view_spec MODEL[] = {
    {"conv.weight", LFS_PARAM_TRAINABLE, 4, {4, 3, 3, 3}},
    {"bn.weight", LFS_PARAM_TRAINABLE, 1, {4}},
    {"bn.bias", LFS_PARAM_TRAINABLE, 1, {4}},
    {"bn.running_mean", LFS_PARAM_BUFFER, 1, {4}},
    {"bn.running_var", LFS_PARAM_BUFFER, 1, {4}},
    {"prelu.weight", LFS_PARAM_TRAINABLE, 1, {4}},
    {"fc.weight", LFS_PARAM_TRAINABLE, 2, {5, 8}},
    {"fc.bias", LFS_PARAM_TRAINABLE, 1, {5}},
    {"features.weight", LFS_PARAM_FROZEN, 1, {5}},
};
#define NMODEL ((int)(sizeof MODEL / sizeof MODEL[0]))
#define HEAD_NAME "head.weight"
#define HEAD_COUNT 30 /* 6 x 5 */

static void build_model(lfs_params *p) {
  lfs_params_init(p);
  for (int i = 0; i < NMODEL; i++) {
    const view_spec *v = &MODEL[i];
    assert_int_equal(lfs_params_declare(p, v->name, v->kind, v->ndim, v->dims), i);
  }
  lfs_params_finalize(p, lfs_backend_cpu());
  assert_int_equal(p->trainable_count, 108 + 4 + 4 + 4 + 40 + 5);
}

/* Copies the fixture's float32 dataset `key` into dst [n]. */
static void load(tu_fixture *fx, const char *key, float *dst, size_t n) {
  size_t got;
  float *v = tu_fixture_read_f(fx, key, &got);
  assert_int_equal(got, n);
  memcpy(dst, v, n * sizeof *v);
  free(v);
}

/* Element k of the 3-element double dataset `<sc>.<what>`. */
static double scalar_at(tu_fixture *fx, const char *sc, const char *what, int k) {
  char key[128];
  snprintf(key, sizeof key, "%s.%s", sc, what);
  size_t n;
  double *v = tu_fixture_read_d(fx, key, &n);
  assert_int_equal(n, STEPS);
  const double x = v[k];
  free(v);
  return x;
}

/* Norm-wise relative error of got [n] against the fixture's `key`, printed. */
static double compare(tu_fixture *fx, const char *key, const float *got, size_t n, int *failures) {
  size_t nw;
  double *want = tu_fixture_read_d(fx, key, &nw);
  assert_int_equal(nw, n);
  if (!tu_check(key, got, want, n, TOL)) (*failures)++;
  const double e = tu_rel_err(got, want, n);
  free(want);
  return e;
}

typedef struct {
  const char *scenario; /* "all" or "wonly" */
  lfs_decay_pred decay;
  int failures;
  double worst_1d; /* worst error over the one-dimensional tensors */
} torch_run;

/* Replays the fixture's three steps of one scenario with the given schedule. */
static void replay(torch_run *run, const lfs_schedule *sched) {
  tu_fixture *fx = tu_fixture_open(FIXTURE);
  assert_true(fabs(tu_fixture_attr(fx, "momentum") - 0.9) < 1e-12);
  assert_true(fabs(tu_fixture_attr(fx, "weight_decay") - 5e-4) < 1e-12);
  const double max_norm = tu_fixture_attr(fx, "max_norm");
  lfs_params p;
  build_model(&p);
  char key[160];
  /* Non-trainable tensors get values and (never legal, so detectable) gradients that the
   * optimiser and the clip must both ignore. */
  for (size_t i = p.trainable_count; i < p.count; i++) {
    p.data[i] = 0.25f * (float)i;
    p.grad[i] = 1e3f;
  }
  for (int i = 0; i < NMODEL; i++) {
    const lfs_param_view *v = lfs_params_view(&p, i);
    if (v->kind != LFS_PARAM_TRAINABLE) continue;
    snprintf(key, sizeof key, "init.%s", v->name);
    load(fx, key, lfs_params_data(&p, i), v->count);
  }
  float head_w[HEAD_COUNT], head_v[HEAD_COUNT] = {0}, head_g[HEAD_COUNT];
  load(fx, "init." HEAD_NAME, head_w, HEAD_COUNT);

  lfs_sgd opt;
  lfs_sgd_init(&opt, &p, 0.0f, 0.9f, 5e-4f);
  lfs_sgd_set_decay(&opt, &p, run->decay, NULL);
  for (int k = 0; k < STEPS; k++) {
    for (int i = 0; i < NMODEL; i++) {
      const lfs_param_view *v = lfs_params_view(&p, i);
      if (v->kind != LFS_PARAM_TRAINABLE) continue;
      snprintf(key, sizeof key, "grad.%d.%s", k, v->name);
      load(fx, key, lfs_params_grad(&p, i), v->count);
    }
    snprintf(key, sizeof key, "grad.%d." HEAD_NAME, k);
    load(fx, key, head_g, HEAD_COUNT);

    const double norm = lfs_clip_grad_norm_params(&p, max_norm);
    const double want_norm = scalar_at(fx, run->scenario, "norm", k);
    printf("%s step %d: norm %.9g want %.9g\n", run->scenario, k, norm, want_norm);
    assert_true(fabs(norm - want_norm) <= 1e-9 * want_norm);
    const int64_t step = (int64_t)scalar_at(fx, run->scenario, "step", k);
    const double lr = lfs_schedule_lr(sched, step), want_lr = scalar_at(fx, run->scenario, "lr", k);
    assert_true(fabs(lr - want_lr) <= 1e-15);
    opt.lr = (float)lr;
    lfs_sgd_step(&opt, &p);
    lfs_sgd_step_raw(head_w, head_v, head_g, HEAD_COUNT, opt.lr, opt.momentum, opt.weight_decay);

    for (int i = 0; i < NMODEL; i++) {
      const lfs_param_view *v = lfs_params_view(&p, i);
      if (v->kind != LFS_PARAM_TRAINABLE) continue;
      snprintf(key, sizeof key, "%s.%d.param.%s", run->scenario, k, v->name);
      double e = compare(fx, key, lfs_params_data(&p, i), v->count, &run->failures);
      if (v->ndim == 1 && e > run->worst_1d) run->worst_1d = e;
      snprintf(key, sizeof key, "%s.%d.momentum.%s", run->scenario, k, v->name);
      e = compare(fx, key, opt.velocity + v->offset, v->count, &run->failures);
      if (v->ndim == 1 && e > run->worst_1d) run->worst_1d = e;
    }
    snprintf(key, sizeof key, "%s.%d.param." HEAD_NAME, run->scenario, k);
    compare(fx, key, head_w, HEAD_COUNT, &run->failures);
    snprintf(key, sizeof key, "%s.%d.momentum." HEAD_NAME, run->scenario, k);
    compare(fx, key, head_v, HEAD_COUNT, &run->failures);
  }
  for (size_t i = p.trainable_count; i < p.count; i++) assert_true(p.data[i] == 0.25f * (float)i);
  for (size_t i = p.trainable_count; i < p.count; i++) assert_true(p.grad[i] == 1e3f);
  lfs_sgd_free(&opt);
  lfs_params_free(&p);
  tu_fixture_close(fx);
}

/* The fixture's "all" schedule: multistep, base 0.1, milestone at step 2, gamma 0.1. */
static void sched_all(lfs_schedule *s) {
  char err[256];
  const int64_t m[] = {2};
  assert_int_equal(lfs_schedule_multistep(s, 0.1, 0.1, m, 1, 1, 0, err, sizeof err), 0);
}

/* The fixture's "wonly" schedule: poly, base 0.1, warm-up 2, total 5, power 2. */
static void sched_wonly(lfs_schedule *s) {
  char err[256];
  assert_int_equal(lfs_schedule_poly(s, 0.1, 2.0, 5, 2, err, sizeof err), 0);
}

static void test_sgd_torch_decay_all(void **state) {
  (void)state;
  lfs_schedule s;
  sched_all(&s);
  torch_run run = {"all", lfs_decay_all, 0, 0};
  replay(&run, &s);
  assert_int_equal(run.failures, 0);
}

static void test_sgd_torch_decay_weights_only(void **state) {
  (void)state;
  lfs_schedule s;
  sched_wonly(&s);
  torch_run run = {"wonly", lfs_decay_weights_only, 0, 0};
  replay(&run, &s);
  assert_int_equal(run.failures, 0);
}

/* Decaying the BN/PReLU/bias tensors where torch did not must show up well above TOL:
 * proves that the comparison can fail and that the decay rule is what is tested. */
static void test_sgd_torch_wrong_rule_detected(void **state) {
  (void)state;
  lfs_schedule s;
  sched_wonly(&s);
  torch_run run = {"wonly", lfs_decay_all, 0, 0};
  printf("expected FAIL lines follow (decay on every tensor against the 'wonly' reference):\n");
  replay(&run, &s);
  printf("wrong decay rule: worst 1-D error %.3g\n", run.worst_1d);
  assert_true(run.failures > 0);
  assert_true(run.worst_1d > 10 * TOL);
}

/* Adjacent views with the same verdict merge; buffers in between do not split a run. */
static void test_decay_runs(void **state) {
  (void)state;
  lfs_params p;
  build_model(&p);
  lfs_sgd opt;
  lfs_sgd_init(&opt, &p, 0.1f, 0.9f, 5e-4f);
  assert_int_equal(opt.nruns, 1);
  assert_int_equal(opt.runs[0].count, p.trainable_count);
  assert_int_equal(opt.runs[0].decay, 1);
  const size_t decayed = lfs_sgd_set_decay(&opt, &p, lfs_decay_weights_only, NULL);
  assert_int_equal(decayed, 108 + 40);
  const lfs_sgd_run want[] = {{0, 108, 1}, {108, 12, 0}, {120, 40, 1}, {160, 5, 0}};
  assert_int_equal(opt.nruns, 4);
  for (int r = 0; r < 4; r++) {
    assert_int_equal(opt.runs[r].offset, want[r].offset);
    assert_int_equal(opt.runs[r].count, want[r].count);
    assert_int_equal(opt.runs[r].decay, want[r].decay);
  }
  lfs_sgd_free(&opt);
  lfs_params_free(&p);
}

/* On the real layer library (an insightface block with its shortcut, then flatten, an
 * fc with bias and a BN1d with fixed gamma, as the iresnet head), the shape rule picks
 * exactly what the layer-kind rule would: conv and linear weights decayed; BN, PReLU and
 * every bias not. */
static void test_decay_rule_matches_layer_kinds(void **state) {
  (void)state;
  lfs_graph g;
  lfs_graph_init(&g);
  int x = lfs_iresnet_block(&g, "layer1.0", LFS_GRAPH_INPUT, 16, 2, 1);
  x = lfs_graph_add(&g, lfs_flatten(), x, -1);
  x = lfs_graph_add(&g, lfs_linear("fc", 8, 1), x, -1);
  lfs_graph_add(&g, lfs_batchnorm("features", 1e-5f, 0.1f, 1), x, -1);
  char err[256];
  const lfs_shape in = {2, 8, 8, 8};
  assert_int_equal(lfs_graph_build(&g, lfs_backend_cpu(), in, 0, err, sizeof err), 0);
  int seen[3] = {0, 0, 0}; /* bn/prelu tensors, biases, weights */
  for (int i = 0; i < g.count; i++) {
    const lfs_layer *l = &g.nodes[i].layer;
    for (int slot = 0; slot < 2; slot++) {
      if (l->param[slot] < 0) continue;
      const lfs_param_view *v = lfs_params_view(&g.params, l->param[slot]);
      if (v->kind != LFS_PARAM_TRAINABLE) continue;
      const char *kind = l->kind->kind;
      const int norm_or_act = !strcmp(kind, "batchnorm") || !strcmp(kind, "prelu");
      const int want = !norm_or_act && slot == 0; /* slot 0: weight, 1: bias */
      if (lfs_decay_weights_only(v, NULL) != want) fail_msg("%s: decay rule disagrees", v->name);
      assert_int_equal(lfs_decay_all(v, NULL), 1);
      seen[norm_or_act ? 0 : slot == 1 ? 1 : 2]++;
    }
  }
  /* 4 BN weights + 5 BN biases (features has a frozen gamma) + 1 PReLU; fc.bias;
   * conv1, conv2, downsample conv, fc.weight. */
  assert_int_equal(seen[0], 10);
  assert_int_equal(seen[1], 1);
  assert_int_equal(seen[2], 4);
  lfs_graph_free(&g);
}

/* The flat step and the raw step are the same arithmetic: identical bits. */
static void test_step_raw_matches_step(void **state) {
  (void)state;
  lfs_params p;
  build_model(&p);
  const size_t n = p.trainable_count;
  tu_fill_uniform(p.data, n, -1, 1, 7, 1);
  float *w = malloc(n * sizeof *w), *v = calloc(n, sizeof *v), *g = malloc(n * sizeof *g);
  assert_non_null(w), assert_non_null(v), assert_non_null(g);
  memcpy(w, p.data, n * sizeof *w);
  lfs_sgd opt;
  lfs_sgd_init(&opt, &p, 0.05f, 0.9f, 1e-3f);
  for (int k = 0; k < 3; k++) {
    tu_fill_uniform(p.grad, n, -1, 1, 7, 10 + k);
    memcpy(g, p.grad, n * sizeof *g);
    lfs_sgd_step(&opt, &p);
    lfs_sgd_step_raw(w, v, g, n, 0.05f, 0.9f, 1e-3f);
  }
  assert_memory_equal(w, p.data, n * sizeof *w);
  assert_memory_equal(v, opt.velocity, n * sizeof *v);
  free(w), free(v), free(g);
  lfs_sgd_free(&opt);
  lfs_params_free(&p);
}

/* ---- schedules ----------------------------------------------------------------------- */

static void assert_lr(const lfs_schedule *s, int64_t step, double want) {
  const double got = lfs_schedule_lr(s, step);
  if (!(fabs(got - want) <= 1e-14 * (fabs(want) > 1e-300 ? fabs(want) : 1.0)))
    fail_msg("lr(%lld) = %.17g, want %.17g", (long long)step, got, want);
}

/* Milestones in epochs of 10 steps: the rate drops exactly at the first step of
 * epochs 2 and 4 (after 2 and 4 complete epochs), never before. */
static void test_multistep_boundaries(void **state) {
  (void)state;
  lfs_schedule s;
  char err[256];
  const int64_t m[] = {2, 4};
  assert_int_equal(lfs_schedule_multistep(&s, 0.1, 0.1, m, 2, 10, 0, err, sizeof err), 0);
  assert_lr(&s, 0, 0.1);
  assert_lr(&s, 19, 0.1);
  assert_lr(&s, 20, 0.1 * 0.1);
  assert_lr(&s, 39, 0.1 * 0.1);
  assert_lr(&s, 40, 0.1 * 0.1 * 0.1);
  assert_lr(&s, 1000000, 0.1 * 0.1 * 0.1);
  /* The same in steps. */
  const int64_t ms[] = {20, 40};
  lfs_schedule t;
  assert_int_equal(lfs_schedule_multistep(&t, 0.1, 0.1, ms, 2, 1, 0, err, sizeof err), 0);
  for (int64_t k = 0; k < 60; k++) assert_true(lfs_schedule_lr(&s, k) == lfs_schedule_lr(&t, k));
  /* No milestones: constant. */
  assert_int_equal(lfs_schedule_multistep(&t, 0.3, 0.1, NULL, 0, 10, 0, err, sizeof err), 0);
  assert_lr(&t, 0, 0.3);
  assert_lr(&t, 123456, 0.3);
}

/* Linear from 0 over the warm-up, then the schedule's own value. */
static void test_warmup(void **state) {
  (void)state;
  lfs_schedule s;
  char err[256];
  const int64_t m[] = {3};
  assert_int_equal(lfs_schedule_multistep(&s, 0.2, 0.5, m, 1, 10, 5, err, sizeof err), 0);
  assert_lr(&s, 0, 0.0);
  assert_lr(&s, 1, 0.2 * 1 / 5);
  assert_lr(&s, 4, 0.2 * 4 / 5);
  assert_lr(&s, 5, 0.2);
  assert_lr(&s, 29, 0.2);
  assert_lr(&s, 30, 0.1);
  assert_int_equal(lfs_schedule_constant(&s, 0.2, 4, err, sizeof err), 0);
  assert_lr(&s, 2, 0.1);
  assert_lr(&s, 4, 0.2);
  assert_lr(&s, 400, 0.2);
}

/* arcface_torch's PolyScheduler: warm-up to base at W, then (1 - (s-W)/(T-W))^p to 0 at T. */
static void test_poly(void **state) {
  (void)state;
  lfs_schedule s;
  char err[256];
  assert_int_equal(lfs_schedule_poly(&s, 0.1, 2.0, 110, 10, err, sizeof err), 0);
  assert_lr(&s, 0, 0.0);
  assert_lr(&s, 5, 0.05);
  assert_lr(&s, 9, 0.09);
  assert_lr(&s, 10, 0.1);
  assert_lr(&s, 60, 0.1 * 0.25);
  assert_lr(&s, 85, 0.1 * 0.25 * 0.25);
  assert_lr(&s, 109, 0.1 * 1e-4);
  assert_lr(&s, 110, 0.0);
  assert_lr(&s, 5000, 0.0);
  /* No warm-up: full rate at step 0, power 1 is linear. */
  assert_int_equal(lfs_schedule_poly(&s, 1.0, 1.0, 4, 0, err, sizeof err), 0);
  assert_lr(&s, 0, 1.0);
  assert_lr(&s, 1, 0.75);
  assert_lr(&s, 3, 0.25);
  assert_lr(&s, 4, 0.0);
}

/* lr(step) depends on the struct and the step only: any order, any copy, same values;
 * and the struct is never written (resume needs no state). */
static void test_schedule_pure(void **state) {
  (void)state;
  lfs_schedule s;
  char err[256];
  assert_int_equal(lfs_schedule_poly(&s, 0.1, 2.0, 1000, 100, err, sizeof err), 0);
  double forward[1001];
  for (int k = 0; k <= 1000; k++) forward[k] = lfs_schedule_lr(&s, k);
  lfs_schedule copy;
  memcpy(&copy, &s, sizeof s);
  for (int k = 1000; k >= 0; k -= 7) assert_true(lfs_schedule_lr(&copy, k) == forward[k]);
  for (int k = 3; k <= 1000; k += 13) assert_true(lfs_schedule_lr(&s, k) == forward[k]);
  assert_memory_equal(&copy, &s, sizeof s);
  for (int k = 1; k <= 1000; k++) assert_true(forward[k] >= 0);
  assert_true(forward[1000] == 0.0);
  assert_true(forward[100] == 0.1);
}

static void expect_error(int rc, const char *err, const char *needle) {
  assert_int_equal(rc, -1);
  if (!strstr(err, needle)) fail_msg("error \"%s\" lacks \"%s\"", err, needle);
  printf("  error: %s\n", err);
}

static void test_schedule_errors(void **state) {
  (void)state;
  lfs_schedule s;
  char err[256];
  const int64_t down[] = {5, 3}, zero[] = {0}, big[] = {INT64_MAX / 2};
  expect_error(lfs_schedule_poly(&s, 0.1, 2, 10, 10, err, sizeof err), err, "total steps 10");
  expect_error(lfs_schedule_poly(&s, 0.1, -1, 10, 0, err, sizeof err), err, "power -1");
  expect_error(lfs_schedule_poly(&s, NAN, 2, 10, 0, err, sizeof err), err, "learning rate");
  expect_error(lfs_schedule_constant(&s, 0.1, -3, err, sizeof err), err, "warm-up steps -3");
  expect_error(lfs_schedule_multistep(&s, 0.1, 1.5, NULL, 0, 1, 0, err, sizeof err), err,
               "gamma 1.5");
  expect_error(lfs_schedule_multistep(&s, 0.1, 0.1, down, 2, 1, 0, err, sizeof err), err,
               "milestone 3 must be greater");
  expect_error(lfs_schedule_multistep(&s, 0.1, 0.1, zero, 1, 1, 0, err, sizeof err), err,
               "milestone 0 must be positive");
  expect_error(lfs_schedule_multistep(&s, 0.1, 0.1, big, 1, 4, 0, err, sizeof err), err,
               "overflows");
  expect_error(lfs_schedule_multistep(&s, 0.1, 0.1, down, 1, 0, 0, err, sizeof err), err,
               "steps per milestone unit 0");
}

/* The [optim] section: milestones and warm-up in epochs of 10 steps. */
static void test_schedule_from_config(void **state) {
  (void)state;
  char err[512];
  lfs_config *cfg = lfs_config_new();
  assert_non_null(cfg);
  const char *ini = "[optim]\nlr = 0.2\nschedule = multistep\nmilestones = 2,4\nlr_gamma = 0.5\n"
                    "warmup_epochs = 1\nepochs = 6\n";
  assert_int_equal(lfs_config_load_string(cfg, ini, "test", err, sizeof err), 0);
  lfs_schedule s;
  assert_int_equal(lfs_schedule_from_config(&s, cfg, 10, err, sizeof err), 0);
  assert_int_equal(s.kind, LFS_SCHED_MULTISTEP);
  assert_lr(&s, 0, 0.0);
  assert_lr(&s, 5, 0.1);
  assert_lr(&s, 10, 0.2);
  assert_lr(&s, 19, 0.2);
  assert_lr(&s, 20, 0.1);
  assert_lr(&s, 39, 0.1);
  assert_lr(&s, 40, 0.05);

  assert_int_equal(lfs_config_set(cfg, "optim.schedule=poly", err, sizeof err), 0);
  assert_int_equal(lfs_config_set(cfg, "optim.epochs=3", err, sizeof err), 0);
  assert_int_equal(lfs_schedule_from_config(&s, cfg, 10, err, sizeof err), 0);
  assert_int_equal(s.kind, LFS_SCHED_POLY);
  assert_lr(&s, 5, 0.1);
  assert_lr(&s, 10, 0.2);
  assert_lr(&s, 20, 0.2 * 0.25); /* default poly_power 2 */
  assert_lr(&s, 30, 0.0);

  assert_int_equal(lfs_config_set(cfg, "optim.warmup_epochs=3", err, sizeof err), 0);
  expect_error(lfs_schedule_from_config(&s, cfg, 10, err, sizeof err), err,
               "[optim] warmup_epochs = 3 (set at --set) must be less than epochs = 3");
  assert_int_equal(lfs_config_set(cfg, "optim.schedule=multistep", err, sizeof err), 0);
  assert_int_equal(lfs_config_set(cfg, "optim.milestones=2,x", err, sizeof err), 0);
  expect_error(lfs_schedule_from_config(&s, cfg, 10, err, sizeof err), err,
               "[optim] milestones \"2,x\": item 2 ('x') is not a whole number (set at --set)");
  expect_error(lfs_schedule_from_config(&s, cfg, 0, err, sizeof err), err, "0 steps per epoch");
  lfs_config_free(cfg);
}

/* ---- milestones ---------------------------------------------------------------------- */

static void test_parse_milestones(void **state) {
  (void)state;
  int64_t m[8];
  int n = -1;
  char err[256] = "";
  assert_int_equal(lfs_parse_milestones("8,14,18", m, 8, &n, err, sizeof err), 0);
  assert_int_equal(n, 3);
  assert_true(m[0] == 8 && m[1] == 14 && m[2] == 18);
  assert_int_equal(lfs_parse_milestones(" 2 , 40\t", m, 8, &n, err, sizeof err), 0);
  assert_int_equal(n, 2);
  assert_true(m[0] == 2 && m[1] == 40);
  assert_int_equal(lfs_parse_milestones("", m, 8, &n, err, sizeof err), 0);
  assert_int_equal(n, 0);
  assert_int_equal(lfs_parse_milestones("   ", m, 8, &n, err, sizeof err), 0);
  assert_int_equal(n, 0);
  assert_int_equal(lfs_parse_milestones("7", m, 8, &n, err, sizeof err), 0);
  assert_int_equal(n, 1);
  assert_true(m[0] == 7);
}

static void parse_fails(const char *text, int max, const char *needle) {
  int64_t m[8];
  int n = -1;
  char err[256] = "";
  expect_error(lfs_parse_milestones(text, m, max, &n, err, sizeof err), err, needle);
  assert_int_equal(n, 0); /* never a half-parsed list */
  if (!strstr(err, text)) fail_msg("error \"%s\" does not quote \"%s\"", err, text);
}

static void test_parse_milestones_errors(void **state) {
  (void)state;
  parse_fails("8,,14", 8, "item 2 is empty");
  parse_fails("8,", 8, "item 2 is empty");
  parse_fails(",8", 8, "item 1 is empty");
  parse_fails("8,x", 8, "item 2 ('x') is not a whole number");
  parse_fails("8,1.5", 8, "item 2 ('1.5') is not a whole number");
  parse_fails("8 14", 8, "item 1 ('8 14') is not a whole number");
  parse_fails("8,14,10", 8, "item 3 (10) must be greater than the one before it (14)");
  parse_fails("8,8", 8, "item 2 (8) must be greater");
  parse_fails("0,4", 8, "item 1 ('0') must be positive");
  parse_fails("-3", 8, "item 1 ('-3') must be positive");
  parse_fails("1,99999999999999999999999", 8, "item 2 ('99999999999999999999999') is too large");
  parse_fails("1,2,3,4", 3, "more than 3 items");
}

/* ---- clipping ------------------------------------------------------------------------ */

static void test_clip_small(void **state) {
  (void)state;
  float g[2] = {3, 4};
  /* Off: the norm is still reported, nothing changes. */
  assert_true(lfs_clip_grad_norm(g, 2, 0.0) == 5.0);
  assert_true(g[0] == 3 && g[1] == 4);
  /* Below the limit: untouched bits. */
  assert_true(lfs_clip_grad_norm(g, 2, 6.0) == 5.0);
  assert_true(g[0] == 3 && g[1] == 4);
  /* Above: scaled by exactly max_norm / (norm + 1e-6), in float. */
  const float c = (float)(1.0 / (5.0 + 1e-6));
  assert_true(lfs_clip_grad_norm(g, 2, 1.0) == 5.0);
  assert_true(g[0] == 3 * c && g[1] == 4 * c);
  assert_true(fabs(sqrt((double)g[0] * g[0] + (double)g[1] * g[1]) - 1.0) < 1e-6);
  /* The factor itself. */
  assert_true(lfs_clip_coef(5.0, 0.0) == 1.0);
  assert_true(lfs_clip_coef(5.0, -1.0) == 1.0);
  assert_true(lfs_clip_coef(5.0, 10.0) == 1.0);
  assert_true(lfs_clip_coef(5.0, 2.5) == 2.5 / (5.0 + 1e-6));
  assert_true(lfs_clip_coef(INFINITY, 1.0) == 1.0);
  assert_true(lfs_clip_coef(NAN, 1.0) == 1.0);
  assert_true(lfs_grad_sumsq(g, 0) == 0.0);
}

/* A long buffer: the norm agrees with a long-double sum, the clipped norm is max_norm,
 * and the bits do not depend on the number of threads. */
static void test_clip_large_deterministic(void **state) {
  (void)state;
  const size_t n = 1000003;
  float *g = malloc(n * sizeof *g), *h = malloc(n * sizeof *h);
  assert_non_null(g), assert_non_null(h);
  tu_fill_uniform(g, n, -1, 1, 11, 3);
  memcpy(h, g, n * sizeof *g);
  long double ref = 0;
  for (size_t i = 0; i < n; i++) ref += (long double)g[i] * g[i];
  const double want = sqrt((double)ref);
#ifdef _OPENMP
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
#endif
  const double n1 = lfs_clip_grad_norm(g, n, 10.0);
#ifdef _OPENMP
  omp_set_num_threads(threads > 1 ? threads : 2);
#endif
  const double n2 = lfs_clip_grad_norm(h, n, 10.0);
#ifdef _OPENMP
  omp_set_num_threads(threads);
#endif
  printf("norm %.17g (long double %.17g)\n", n1, want);
  assert_true(fabs(n1 - want) <= 1e-12 * want);
  assert_true(n1 == n2);
  assert_memory_equal(g, h, n * sizeof *g);
  const double after = sqrt(lfs_grad_sumsq(g, n));
  assert_true(fabs(after - 10.0) < 1e-5);
  free(g), free(h);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sgd_torch_decay_all),
      cmocka_unit_test(test_sgd_torch_decay_weights_only),
      cmocka_unit_test(test_sgd_torch_wrong_rule_detected),
      cmocka_unit_test(test_decay_runs),
      cmocka_unit_test(test_decay_rule_matches_layer_kinds),
      cmocka_unit_test(test_step_raw_matches_step),
      cmocka_unit_test(test_multistep_boundaries),
      cmocka_unit_test(test_warmup),
      cmocka_unit_test(test_poly),
      cmocka_unit_test(test_schedule_pure),
      cmocka_unit_test(test_schedule_errors),
      cmocka_unit_test(test_schedule_from_config),
      cmocka_unit_test(test_parse_milestones),
      cmocka_unit_test(test_parse_milestones_errors),
      cmocka_unit_test(test_clip_small),
      cmocka_unit_test(test_clip_large_deterministic),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
