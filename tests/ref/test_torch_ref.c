/* test_torch_ref.c: every CPU layer, and one insightface IBasicBlock, against
 * PyTorch reference values.
 *
 * The fixtures (HDF5 files in tests/ref/fixtures) were written by tests/ref/gen_fixtures.py
 * with torch; CI has no torch and only reads them. Each case builds an lfs_graph
 * on the CPU backend, loads the fixture's float32 parameters by their insightface
 * names, runs forward and backward of the loss sum(y * dy) and compares, with the
 * norm-wise relative error of tu_rel_err at REF_TOL: the output y, the input
 * gradient, the gradient of every trainable parameter and the running statistics
 * after the pass. A frozen parameter (fixed BN gamma) must keep a zero gradient.
 * Every parameter the graph declares must exist in the fixture with the same
 * shape, which also pins the names and layouts that PyTorch checkpoints rely on. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/testutil.h"
#include "lfs/backend.h"
#include "lfs/graph.h"
#include "lfs/layer.h"
#include "lfs/params.h"

/* The references are float64 results of float32 inputs; float32 rounding in the
 * library stays orders of magnitude below this, a wrong formula is off by O(1). */
#define REF_TOL 1e-4
#define MAX_SUMMARY 32

/* One fixture being checked. */
typedef struct {
  const char *file; /* name under tests/ref/fixtures */
  tu_fixture *fx;
  lfs_backend *be;
  lfs_graph g;
  lfs_pass ps;
  float *x, *dy; /* graph input and upstream gradient, on the backend */
  int failures;
  double worst;  /* largest relative error seen */
} ref_case;

static struct {
  const char *file;
  double worst;
  int failures;
} summary[MAX_SUMMARY];
static int nsummary;

/* ---- memory and comparisons -------------------------------------------------------- */

static float *to_backend(lfs_backend *be, const float *host, size_t n) {
  float *dev = be->ops->alloc(be, n);
  be->ops->upload(be, dev, host, n);
  return dev;
}

static float *to_host(lfs_backend *be, const float *dev, size_t n) {
  float *host = malloc(n * sizeof *host);
  assert_non_null(host);
  be->ops->download(be, host, dev, n);
  return host;
}

/* Compares n floats on the backend with the fixture's reference dataset `ref`. */
static void ref_check(ref_case *rc, const char *what, const float *dev, size_t n, const char *ref) {
  size_t nref = 0;
  double *want = tu_fixture_read_d(rc->fx, ref, &nref);
  char label[192];
  snprintf(label, sizeof label, "%s %s", rc->file, what);
  if (nref != n) {
    printf("FAIL %s: %zu elements, reference '%s' has %zu\n", label, n, ref, nref);
    rc->failures++;
    free(want);
    return;
  }
  float *got = to_host(rc->be, dev, n);
  if (!tu_check(label, got, want, n, REF_TOL)) rc->failures++;
  double e = tu_rel_err(got, want, n); /* infinite, never NaN, for a NaN result */
  if (e > rc->worst) rc->worst = e;
  free(got);
  free(want);
}

/* ---- setup ------------------------------------------------------------------------- */

static void ref_open(ref_case *rc, const char *file) {
  char rel[256];
  memset(rc, 0, sizeof *rc);
  rc->file = file;
  snprintf(rel, sizeof rel, "tests/ref/fixtures/%s", file);
  rc->fx = tu_fixture_open(rel);
  rc->be = lfs_backend_cpu();
  assert_non_null(rc->be);
  lfs_graph_init(&rc->g);
  rc->ps = (lfs_pass){.be = rc->be, .params = &rc->g.params,
                      .training = (int)tu_fixture_attr(rc->fx, "training")};
}

static int attr_i(ref_case *rc, const char *name) { return (int)tu_fixture_attr(rc->fx, name); }
static float attr_f(ref_case *rc, const char *name) { return (float)tu_fixture_attr(rc->fx, name); }

/* The graph input: NCHW as stored, a matrix [N, F] as {N, F, 1, 1}. */
static lfs_shape input_shape(ref_case *rc) {
  int d[4] = {1, 1, 1, 1};
  int nd = tu_fixture_dims(rc->fx, "x", d);
  assert_true(nd == 2 || nd == 4);
  return nd == 4 ? (lfs_shape){d[0], d[1], d[2], d[3]} : (lfs_shape){d[0], d[1], 1, 1};
}

/* The graph must declare exactly `names` (NULL-terminated). */
static void expect_names(ref_case *rc, const char *const *names) {
  int n = 0;
  for (; names[n]; n++)
    if (lfs_params_find(&rc->g.params, names[n]) < 0) {
      printf("FAIL %s: the graph declares no parameter '%s'\n", rc->file, names[n]);
      rc->failures++;
    }
  if (rc->g.params.nviews != n) {
    printf("FAIL %s: the graph declares %d tensors, expected %d:", rc->file, rc->g.params.nviews, n);
    for (int i = 0; i < rc->g.params.nviews; i++) printf(" %s", rc->g.params.views[i].name);
    printf("\n");
    rc->failures++;
  }
}

/* Uploads every declared tensor from the fixture dataset of the same name, after
 * checking that the shapes agree (PyTorch's layout is the contract). */
static void load_params(ref_case *rc) {
  const lfs_params *p = &rc->g.params;
  for (int h = 0; h < p->nviews; h++) {
    const lfs_param_view *v = lfs_params_view(p, h);
    int dims[4];
    int nd = tu_fixture_dims(rc->fx, v->name, dims);
    int same = nd == v->ndim;
    for (int k = 0; same && k < nd; k++) same = dims[k] == v->dims[k];
    if (!same) {
      printf("FAIL %s: '%s' has a different shape in the library and in PyTorch\n", rc->file,
             v->name);
      rc->failures++;
      continue;
    }
    size_t n = 0;
    float *host = tu_fixture_read_f(rc->fx, v->name, &n);
    assert_int_equal(n, v->count);
    rc->be->ops->upload(rc->be, lfs_params_data(p, h), host, n);
    free(host);
  }
}

/* Builds the graph the caller has filled with nodes, loads x, dy and parameters. */
static void ref_build(ref_case *rc, const char *const *names) {
  char err[256] = "";
  int rcode = lfs_graph_build(&rc->g, rc->be, input_shape(rc), 1, err, sizeof err);
  if (rcode != 0) printf("FAIL %s: graph build: %s\n", rc->file, err);
  assert_int_equal(rcode, 0);
  expect_names(rc, names);
  load_params(rc);
  size_t nx = 0, ndy = 0;
  float *x = tu_fixture_read_f(rc->fx, "x", &nx);
  float *dy = tu_fixture_read_f(rc->fx, "dy", &ndy);
  assert_int_equal(nx, lfs_shape_count(rc->g.input));
  assert_int_equal(ndy, lfs_shape_count(lfs_graph_output_shape(&rc->g)));
  rc->x = to_backend(rc->be, x, nx);
  rc->dy = to_backend(rc->be, dy, ndy);
  free(x);
  free(dy);
}

/* ---- the comparison ---------------------------------------------------------------- */

/* Gradients of every tensor: trainable ones against grad.<name>, frozen ones must be
 * exactly zero (and PyTorch must have none either). `tag` prefixes the labels. */
static void check_grads(ref_case *rc, const char *tag) {
  const lfs_params *p = &rc->g.params;
  char what[160], ref[128];
  for (int h = 0; h < p->nviews; h++) {
    const lfs_param_view *v = lfs_params_view(p, h);
    snprintf(ref, sizeof ref, "grad.%s", v->name);
    if (v->kind == LFS_PARAM_TRAINABLE) {
      snprintf(what, sizeof what, "%sgrad %s", tag, v->name);
      ref_check(rc, what, lfs_params_grad(p, h), v->count, ref);
    } else if (v->kind == LFS_PARAM_FROZEN) {
      float *g = to_host(rc->be, lfs_params_grad(p, h), v->count);
      size_t nonzero = 0;
      for (size_t i = 0; i < v->count; i++) nonzero += g[i] != 0.0f;
      printf("%s%s %sfrozen %s: %zu non-zero gradient elements\n", nonzero ? "FAIL " : "",
             rc->file, tag, v->name, nonzero);
      rc->failures += nonzero != 0;
      free(g);
      if (tu_fixture_has(rc->fx, ref)) {
        printf("FAIL %s: '%s' is frozen here but trainable in PyTorch\n", rc->file, v->name);
        rc->failures++;
      }
    }
  }
}

/* Running statistics after the pass, against after.<name>. */
static void check_buffers(ref_case *rc) {
  const lfs_params *p = &rc->g.params;
  char ref[128];
  for (int h = 0; h < p->nviews; h++) {
    const lfs_param_view *v = lfs_params_view(p, h);
    if (v->kind != LFS_PARAM_BUFFER) continue;
    snprintf(ref, sizeof ref, "after.%s", v->name);
    ref_check(rc, ref, lfs_params_data(p, h), v->count, ref);
  }
}

/* Forward, backward, and every comparison; then a second backward, which must give
 * the same gradients (the graph rewrites dx and its node gradients each call). */
static void ref_run(ref_case *rc) {
  const float *y = lfs_graph_forward(&rc->g, &rc->ps, rc->x);
  ref_check(rc, "y", y, lfs_shape_count(lfs_graph_output_shape(&rc->g)), "y");
  for (int pass = 0; pass < 2; pass++) {
    const char *tag = pass ? "again: " : "";
    char what[64];
    lfs_params_zero_grad(&rc->g.params);
    lfs_graph_backward(&rc->g, &rc->ps, rc->x, rc->dy);
    snprintf(what, sizeof what, "%sdx", tag);
    ref_check(rc, what, rc->g.dx, lfs_shape_count(rc->g.input), "dx");
    check_grads(rc, tag);
  }
  check_buffers(rc);
}

static void ref_close(ref_case *rc) {
  if (nsummary < MAX_SUMMARY) {
    summary[nsummary].file = rc->file;
    summary[nsummary].worst = rc->worst;
    summary[nsummary].failures = rc->failures;
    nsummary++;
  }
  rc->be->ops->free(rc->be, rc->x);
  rc->be->ops->free(rc->be, rc->dy);
  lfs_graph_free(&rc->g);
  tu_fixture_close(rc->fx);
  assert_int_equal(rc->failures, 0);
}

/* ---- single layers ----------------------------------------------------------------- */

static void conv_case(const char *file) {
  ref_case rc;
  ref_open(&rc, file);
  int bias = attr_i(&rc, "bias");
  lfs_graph_add(&rc.g, lfs_conv2d("", attr_i(&rc, "out_c"), attr_i(&rc, "k"), attr_i(&rc, "stride"),
                                  attr_i(&rc, "pad"), attr_i(&rc, "groups"), bias),
                LFS_GRAPH_INPUT, 0);
  static const char *const with_bias[] = {"weight", "bias", NULL};
  static const char *const without_bias[] = {"weight", NULL};
  ref_build(&rc, bias ? with_bias : without_bias);
  ref_run(&rc);
  ref_close(&rc);
}

static const char *const bn_names[] = {"weight", "bias", "running_mean", "running_var", NULL};

static void bn_case(const char *file) {
  ref_case rc;
  ref_open(&rc, file);
  int fixed_gamma = attr_i(&rc, "fixed_gamma");
  lfs_graph_add(&rc.g, lfs_batchnorm("", attr_f(&rc, "eps"), attr_f(&rc, "momentum"), fixed_gamma),
                LFS_GRAPH_INPUT, 0);
  ref_build(&rc, bn_names);
  if (fixed_gamma) {
    /* insightface's feature BN: gamma is a frozen parameter, outside the trainable front */
    int h = lfs_params_find(&rc.g.params, "weight");
    assert_true(h >= 0);
    assert_int_equal(lfs_params_view(&rc.g.params, h)->kind, LFS_PARAM_FROZEN);
    int bias = lfs_params_find(&rc.g.params, "bias");
    assert_true(bias >= 0);
    assert_int_equal(lfs_params_trainable(&rc.g.params), lfs_params_view(&rc.g.params, bias)->count);
  }
  ref_run(&rc);
  ref_close(&rc);
}

static void test_conv(void **state) { (void)state; conv_case("conv.h5"); }
static void test_conv_s2(void **state) { (void)state; conv_case("conv_s2.h5"); }
static void test_conv_groups(void **state) { (void)state; conv_case("conv_groups.h5"); }
static void test_conv_depthwise(void **state) { (void)state; conv_case("conv_depthwise.h5"); }
static void test_bn2d_train(void **state) { (void)state; bn_case("bn2d_train.h5"); }
static void test_bn2d_eval(void **state) { (void)state; bn_case("bn2d_eval.h5"); }
static void test_bn1d_train(void **state) { (void)state; bn_case("bn1d_train.h5"); }
static void test_bn1d_fixed_gamma(void **state) { (void)state; bn_case("bn1d_fixed_gamma.h5"); }

static void test_prelu(void **state) {
  (void)state;
  ref_case rc;
  ref_open(&rc, "prelu.h5");
  lfs_graph_add(&rc.g, lfs_prelu(""), LFS_GRAPH_INPUT, 0);
  static const char *const names[] = {"weight", NULL};
  ref_build(&rc, names);
  ref_run(&rc);
  ref_close(&rc);
}

static void test_linear(void **state) {
  (void)state;
  ref_case rc;
  ref_open(&rc, "linear.h5");
  lfs_graph_add(&rc.g, lfs_linear("", attr_i(&rc, "out_features"), attr_i(&rc, "bias")),
                LFS_GRAPH_INPUT, 0);
  static const char *const names[] = {"weight", "bias", NULL};
  ref_build(&rc, names);
  ref_run(&rc);
  ref_close(&rc);
}

static const char *const no_names[] = {NULL};

static void test_l2norm(void **state) {
  (void)state;
  ref_case rc;
  ref_open(&rc, "l2norm.h5");
  lfs_graph_add(&rc.g, lfs_l2norm(attr_f(&rc, "eps")), LFS_GRAPH_INPUT, 0);
  ref_build(&rc, no_names);
  ref_run(&rc);
  ref_close(&rc);
}

/* The mask is lfsearch's Philox stream (seed, DROPOUT, step, id), which the generator
 * re-implements; in eval mode the layer must be the identity. */
static void test_dropout(void **state) {
  (void)state;
  ref_case rc;
  ref_open(&rc, "dropout.h5");
  rc.ps.seed = (uint64_t)tu_fixture_attr(rc.fx, "seed");
  rc.ps.step = (uint64_t)tu_fixture_attr(rc.fx, "step");
  lfs_graph_add(&rc.g, lfs_dropout(attr_f(&rc, "p"), (uint32_t)attr_i(&rc, "id")), LFS_GRAPH_INPUT, 0);
  ref_build(&rc, no_names);
  ref_run(&rc);
  rc.ps.training = 0;
  const float *y = lfs_graph_forward(&rc.g, &rc.ps, rc.x);
  ref_check(&rc, "eval-mode y (= x)", y, lfs_shape_count(rc.g.input), "x");
  ref_close(&rc);
}

/* ---- insightface IBasicBlock with a downsample shortcut ---------------------------- */

static void test_iresnet_block(void **state) {
  (void)state;
  ref_case rc;
  ref_open(&rc, "iresnet_block.h5");
  const int planes = attr_i(&rc, "planes"), stride = attr_i(&rc, "stride");
  const float eps = attr_f(&rc, "eps"), mom = attr_f(&rc, "momentum");
  lfs_graph *g = &rc.g;
  int bn1 = lfs_graph_add(g, lfs_batchnorm("bn1", eps, mom, 0), LFS_GRAPH_INPUT, 0);
  int conv1 = lfs_graph_add(g, lfs_conv2d("conv1", planes, 3, 1, 1, 1, 0), bn1, 0);
  int bn2 = lfs_graph_add(g, lfs_batchnorm("bn2", eps, mom, 0), conv1, 0);
  int prelu = lfs_graph_add(g, lfs_prelu("prelu"), bn2, 0);
  int conv2 = lfs_graph_add(g, lfs_conv2d("conv2", planes, 3, stride, 1, 1, 0), prelu, 0);
  int bn3 = lfs_graph_add(g, lfs_batchnorm("bn3", eps, mom, 0), conv2, 0);
  int ds0 = lfs_graph_add(g, lfs_conv2d("downsample.0", planes, 1, stride, 0, 1, 0), LFS_GRAPH_INPUT, 0);
  int ds1 = lfs_graph_add(g, lfs_batchnorm("downsample.1", eps, mom, 0), ds0, 0);
  lfs_graph_add(g, lfs_add(), bn3, ds1); /* no activation after the add */
  static const char *const names[] = {
      "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var",
      "conv1.weight",
      "bn2.weight", "bn2.bias", "bn2.running_mean", "bn2.running_var",
      "prelu.weight",
      "conv2.weight",
      "bn3.weight", "bn3.bias", "bn3.running_mean", "bn3.running_var",
      "downsample.0.weight",
      "downsample.1.weight", "downsample.1.bias", "downsample.1.running_mean",
      "downsample.1.running_var", NULL};
  ref_build(&rc, names);
  ref_run(&rc);
  ref_close(&rc);
}

/* ---- main -------------------------------------------------------------------------- */

static int print_summary(void **state) {
  (void)state;
  printf("\n%-24s %14s  %s\n", "fixture", "max rel err", "result");
  for (int i = 0; i < nsummary; i++)
    printf("%-24s %14.3g  %s\n", summary[i].file, summary[i].worst,
           summary[i].failures ? "FAIL" : "ok");
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_conv),           cmocka_unit_test(test_conv_s2),
      cmocka_unit_test(test_conv_groups),    cmocka_unit_test(test_conv_depthwise),
      cmocka_unit_test(test_bn2d_train),     cmocka_unit_test(test_bn2d_eval),
      cmocka_unit_test(test_bn1d_train),     cmocka_unit_test(test_bn1d_fixed_gamma),
      cmocka_unit_test(test_prelu),          cmocka_unit_test(test_linear),
      cmocka_unit_test(test_l2norm),         cmocka_unit_test(test_dropout),
      cmocka_unit_test(test_iresnet_block),
  };
  return cmocka_run_group_tests(tests, NULL, print_summary);
}
