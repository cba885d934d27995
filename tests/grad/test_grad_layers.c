/* test_grad_layers.c: finite-difference gradient checks of every CPU layer.
 *
 * Each case builds a one- or few-node lfs_graph on the CPU backend with tiny
 * shapes, fills the input, the parameters and an upstream gradient r with
 * random floats, and defines the loss L = sum(r * y). The library (float)
 * gives y, dL/dx and dL/dparams; the double-precision reference forward of
 * refimpl.c, evaluated at the same (float) values, gives y again and the
 * gradients by central differences with respect to every input and every
 * trainable parameter element. Errors are norm-wise relative
 * (max |got - want| / max |want|); a summary table is printed at the end.
 *
 * BN in training mode is checked against a reference that recomputes the batch
 * statistics for every perturbed input, so the statistics' own dependence on x
 * is part of what is verified. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/testutil.h"
#include "lfs/backend.h"
#include "lfs/graph.h"
#include "lfs/layer.h"
#include "lfs/params.h"
#include "lfs/philox.h"
#include "refimpl.h"

/* Float-vs-double agreement. Measured worst cases are ~2e-7 (a few float ulps
 * over sums of a few dozen terms); 1e-5 leaves a 50x margin for other BLAS
 * kernels and thread counts, while a wrong formula (biased vs unbiased
 * variance, a missed padding tap, a dropped path) is off by 1e-2 or more. */
#define FWD_TOL 1e-5
#define GRAD_TOL 1e-5
/* Running statistics are one float blend of float-accumulated moments. */
#define STATS_TOL 1e-5
/* Central-difference step relative to max(1, |v|): in double the truncation
 * error (~h^2) and the rounding error (~1e-16 |L| / h) are both < 1e-9. */
#define FD_STEP 1e-6

#define TEST_STEP 7u

typedef struct grad_case grad_case;
typedef struct ref_ctx ref_ctx;

/* What the reference forward needs besides x: the parameters as doubles. */
struct ref_ctx {
  const lfs_params *lp;       /* names and handles */
  double **val;               /* [nviews] double copies, indexed by handle */
  const unsigned char *keep;  /* dropout mask [ny] (all 0 in other cases) */
  size_t ny;                  /* output elements */
};

typedef void (*build_fn)(const grad_case *c, lfs_graph *g);
typedef void (*ref_fn)(const grad_case *c, const ref_ctx *r, const double *x, double *y);

struct grad_case {
  const char *name;
  lfs_shape in;
  int training;
  build_fn build;
  ref_fn ref;
  lfs_conv_cfg conv;  /* conv cases, the add cases' conv ("conv" or branch "a") */
  lfs_conv_cfg conv2; /* branch "b" of the two-conv add */
  lfs_bn_cfg bn;
  lfs_linear_cfg linear;
  int flatten;        /* linear: put a flatten node in front */
  lfs_dropout_cfg dropout;
  lfs_l2norm_cfg l2norm;
  int tiny_row;       /* l2norm: scale row 0 below eps (the max() branch) */
  int away_from_zero; /* prelu: alternate signs, |x| >= 0.05 (no kink in reach) */
  float x_lo, x_hi;   /* input range; [-1, 1) when both are 0 */
  const char *absent; /* a parameter name that must NOT be declared */
};

/* ---- results table -------------------------------------------------------------- */

typedef struct {
  char name[48];
  double fwd, dx, dparam; /* -1: not applicable */
} result_row;

static result_row g_results[64];
static int g_nresults;

static result_row *result_new(const char *name) {
  assert_true(g_nresults < (int)(sizeof g_results / sizeof g_results[0]));
  result_row *row = &g_results[g_nresults++];
  snprintf(row->name, sizeof row->name, "%s", name);
  row->fwd = row->dx = row->dparam = -1.0;
  return row;
}

static int print_summary(void **state) {
  (void)state;
  printf("\n%-28s %12s %12s %12s   (tol fwd %.0e, grad %.0e)\n", "case", "forward", "d input",
         "d params", FWD_TOL, GRAD_TOL);
  for (int i = 0; i < g_nresults; i++) {
    const result_row *r = &g_results[i];
    printf("%-28s", r->name);
    double v[3] = {r->fwd, r->dx, r->dparam};
    for (int k = 0; k < 3; k++) {
      if (v[k] < 0) printf(" %12s", "-");
      else printf(" %12.3e", v[k]);
    }
    printf("\n");
  }
  return 0;
}

/* ---- small helpers ------------------------------------------------------------- */

static void *xcalloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size);
  assert_non_null(p);
  return p;
}

static void to_double(double *dst, const float *src, size_t n) {
  for (size_t i = 0; i < n; i++) dst[i] = src[i];
}

static int ends_with(const char *s, const char *suffix) {
  size_t ls = strlen(s), lx = strlen(suffix);
  return ls >= lx && strcmp(s + ls - lx, suffix) == 0;
}

static const double *ref_param(const ref_ctx *r, const char *layer, const char *suffix) {
  char key[96];
  snprintf(key, sizeof key, "%s.%s", layer, suffix);
  int h = lfs_params_find(r->lp, key);
  if (h < 0) fail_msg("parameter %s is not declared", key);
  return r->val[h];
}

/* ---- reference forwards per case kind --------------------------------------------- */

static void ref_conv_named(const ref_ctx *r, const char *layer, const lfs_conv_cfg *cfg,
                           lfs_shape in, const double *x, double *y) {
  ref_conv_geom g = {.n = in.n, .in_c = in.c, .in_h = in.h, .in_w = in.w, .out_c = cfg->out_c,
                     .kh = cfg->k, .kw = cfg->k, .stride = cfg->stride, .pad = cfg->pad,
                     .groups = cfg->groups};
  assert_int_equal(ref_conv_geom_init(&g), 0);
  assert_int_equal((size_t)g.n * g.out_c * g.out_h * g.out_w, r->ny);
  const double *b = cfg->bias ? ref_param(r, layer, "bias") : NULL;
  ref_conv2d(&g, y, x, ref_param(r, layer, "weight"), b);
}

static void ref_conv_case(const grad_case *c, const ref_ctx *r, const double *x, double *y) {
  ref_conv_named(r, "conv", &c->conv, c->in, x, y);
}

static void ref_bn_case(const grad_case *c, const ref_ctx *r, const double *x, double *y) {
  int spatial = c->in.h * c->in.w;
  const double *gamma = ref_param(r, "bn", "weight");
  const double *beta = ref_param(r, "bn", "bias");
  if (c->training) {
    ref_batchnorm_train(c->in.n, c->in.c, spatial, c->bn.eps, y, x, gamma, beta);
  } else {
    ref_batchnorm_eval(c->in.n, c->in.c, spatial, c->bn.eps, y, x, gamma, beta,
                       ref_param(r, "bn", "running_mean"), ref_param(r, "bn", "running_var"));
  }
}

static void ref_prelu_case(const grad_case *c, const ref_ctx *r, const double *x, double *y) {
  ref_prelu(c->in.n, c->in.c, c->in.h * c->in.w, y, x, ref_param(r, "prelu", "weight"));
}

/* A flattened NCHW sample is contiguous, so the same loop serves 4-D inputs. */
static void ref_linear_case(const grad_case *c, const ref_ctx *r, const double *x, double *y) {
  const double *b = c->linear.bias ? ref_param(r, "fc", "bias") : NULL;
  const double *w = ref_param(r, "fc", "weight");
  ref_linear(c->in.n, (int)lfs_shape_sample(c->in), c->linear.out, y, x, w, b);
}

static void ref_add_input_conv(const grad_case *c, const ref_ctx *r, const double *x,
                               double *y) {
  double *t = xcalloc(r->ny, sizeof *t);
  ref_conv_named(r, "conv", &c->conv, c->in, x, t);
  ref_add(r->ny, y, x, t);
  free(t);
}

static void ref_add_two_convs(const grad_case *c, const ref_ctx *r, const double *x,
                              double *y) {
  double *a = xcalloc(2 * r->ny, sizeof *a);
  double *b = a + r->ny;
  ref_conv_named(r, "a", &c->conv, c->in, x, a);
  ref_conv_named(r, "b", &c->conv2, c->in, x, b);
  ref_add(r->ny, y, a, b);
  free(a);
}

static void ref_dropout_case(const grad_case *c, const ref_ctx *r, const double *x,
                             double *y) {
  if (c->training) ref_dropout(r->ny, c->dropout.p, y, x, r->keep);
  else memcpy(y, x, r->ny * sizeof *y); /* eval mode: identity */
}

static void ref_l2norm_case(const grad_case *c, const ref_ctx *r, const double *x, double *y) {
  (void)r;
  ref_l2norm(c->in.n, (int)lfs_shape_sample(c->in), c->l2norm.eps, y, x);
}

/* ---- graph builders per case kind --------------------------------------------------- */

static lfs_layer conv_layer(const char *name, const lfs_conv_cfg *k) {
  return lfs_conv2d(name, k->out_c, k->k, k->stride, k->pad, k->groups, k->bias);
}

static void build_conv(const grad_case *c, lfs_graph *g) {
  lfs_graph_add(g, conv_layer("conv", &c->conv), LFS_GRAPH_INPUT, -1);
}

static void build_bn(const grad_case *c, lfs_graph *g) {
  lfs_graph_add(g, lfs_batchnorm("bn", c->bn.eps, c->bn.momentum, c->bn.fixed_gamma),
                LFS_GRAPH_INPUT, -1);
}

static void build_prelu(const grad_case *c, lfs_graph *g) {
  (void)c;
  lfs_graph_add(g, lfs_prelu("prelu"), LFS_GRAPH_INPUT, -1);
}

static void build_linear(const grad_case *c, lfs_graph *g) {
  int src = LFS_GRAPH_INPUT;
  if (c->flatten) src = lfs_graph_add(g, lfs_flatten(), LFS_GRAPH_INPUT, -1);
  lfs_graph_add(g, lfs_linear("fc", c->linear.out, c->linear.bias), src, -1);
}

/* The graph input feeds both operands: its gradient must sum the two paths. */
static void build_add_input_conv(const grad_case *c, lfs_graph *g) {
  int k = lfs_graph_add(g, conv_layer("conv", &c->conv), LFS_GRAPH_INPUT, -1);
  lfs_graph_add(g, lfs_add(), LFS_GRAPH_INPUT, k);
}

static void build_add_two_convs(const grad_case *c, lfs_graph *g) {
  int a = lfs_graph_add(g, conv_layer("a", &c->conv), LFS_GRAPH_INPUT, -1);
  int b = lfs_graph_add(g, conv_layer("b", &c->conv2), LFS_GRAPH_INPUT, -1);
  lfs_graph_add(g, lfs_add(), a, b);
}

static void build_dropout(const grad_case *c, lfs_graph *g) {
  lfs_graph_add(g, lfs_dropout(c->dropout.p, c->dropout.id), LFS_GRAPH_INPUT, -1);
}

static void build_l2norm(const grad_case *c, lfs_graph *g) {
  lfs_graph_add(g, lfs_l2norm(c->l2norm.eps), LFS_GRAPH_INPUT, -1);
}

/* ---- the cases ------------------------------------------------------------------- */

#define CONV(oc, kk, s, p, gr, b) \
  {.out_c = (oc), .k = (kk), .stride = (s), .pad = (p), .groups = (gr), .bias = (b)}
#define SHAPE(n_, c_, h_, w_) {.n = (n_), .c = (c_), .h = (h_), .w = (w_)}
/* eps 1e-2 in some cases: at 1e-5 an eps in the wrong place (outside the sqrt)
 * moves y by less than the tolerance */
#define BN(fixed, eps_) {.eps = (eps_), .momentum = 0.1f, .fixed_gamma = (fixed)}

static const grad_case CASES[] = {
    {.name = "conv3x3_s1_p1_bias", .in = SHAPE(2, 3, 6, 6), .training = 1, .build = build_conv,
     .ref = ref_conv_case, .conv = CONV(4, 3, 1, 1, 1, 1)},
    {.name = "conv3x3_s2_p1", .in = SHAPE(2, 3, 6, 6), .training = 1, .build = build_conv,
     .ref = ref_conv_case, .conv = CONV(4, 3, 2, 1, 1, 0), .absent = "conv.bias"},
    {.name = "conv3x3_s2_p0_odd", .in = SHAPE(2, 3, 7, 7), .training = 1, .build = build_conv,
     .ref = ref_conv_case, .conv = CONV(4, 3, 2, 0, 1, 0)},
    /* (6 - 3) / 2 + 1 = 2: the last row and column are never read (zero gradient) */
    {.name = "conv3x3_s2_p0_even_drop", .in = SHAPE(2, 2, 6, 6), .training = 1,
     .build = build_conv, .ref = ref_conv_case, .conv = CONV(3, 3, 2, 0, 1, 1)},
    {.name = "conv1x1_s2_shortcut", .in = SHAPE(2, 4, 6, 6), .training = 1, .build = build_conv,
     .ref = ref_conv_case, .conv = CONV(6, 1, 2, 0, 1, 0)},
    {.name = "conv3x3_groups2_p0", .in = SHAPE(2, 4, 5, 5), .training = 1, .build = build_conv,
     .ref = ref_conv_case, .conv = CONV(6, 3, 1, 0, 2, 1)},
    {.name = "depthwise3x3_s1_p1", .in = SHAPE(2, 4, 5, 5), .training = 1, .build = build_conv,
     .ref = ref_conv_case, .conv = CONV(4, 3, 1, 1, 4, 0)},
    {.name = "depthwise3x3_s2_p1_bias", .in = SHAPE(2, 4, 7, 7), .training = 1,
     .build = build_conv, .ref = ref_conv_case, .conv = CONV(4, 3, 2, 1, 4, 1)},
    {.name = "bn2d_train", .in = SHAPE(2, 3, 5, 5), .training = 1, .build = build_bn,
     .ref = ref_bn_case, .bn = BN(0, 1e-5f), .x_lo = -0.5f, .x_hi = 1.5f},
    {.name = "bn2d_eval", .in = SHAPE(2, 3, 5, 5), .training = 0, .build = build_bn,
     .ref = ref_bn_case, .bn = BN(0, 1e-2f), .x_lo = -0.5f, .x_hi = 1.5f},
    {.name = "bn1d_train", .in = SHAPE(4, 5, 1, 1), .training = 1, .build = build_bn,
     .ref = ref_bn_case, .bn = BN(0, 1e-2f), .x_lo = -0.5f, .x_hi = 1.5f},
    {.name = "bn1d_fixed_gamma_train", .in = SHAPE(4, 5, 1, 1), .training = 1,
     .build = build_bn, .ref = ref_bn_case, .bn = BN(1, 1e-5f), .x_lo = -0.5f, .x_hi = 1.5f},
    {.name = "prelu_half_negative", .in = SHAPE(2, 3, 4, 4), .training = 1,
     .build = build_prelu, .ref = ref_prelu_case, .away_from_zero = 1},
    {.name = "linear_bias", .in = SHAPE(3, 6, 1, 1), .training = 1, .build = build_linear,
     .ref = ref_linear_case, .linear = {.out = 4, .bias = 1}},
    {.name = "linear_nobias", .in = SHAPE(3, 6, 1, 1), .training = 1, .build = build_linear,
     .ref = ref_linear_case, .linear = {.out = 4, .bias = 0}, .absent = "fc.bias"},
    {.name = "flatten_linear_bias", .in = SHAPE(2, 2, 3, 3), .training = 1,
     .build = build_linear, .ref = ref_linear_case, .linear = {.out = 5, .bias = 1},
     .flatten = 1},
    {.name = "add_input_conv", .in = SHAPE(2, 3, 5, 5), .training = 1,
     .build = build_add_input_conv, .ref = ref_add_input_conv, .conv = CONV(3, 3, 1, 1, 1, 1)},
    {.name = "add_two_convs", .in = SHAPE(2, 3, 5, 5), .training = 1,
     .build = build_add_two_convs, .ref = ref_add_two_convs, .conv = CONV(4, 3, 1, 1, 1, 0),
     .conv2 = CONV(4, 1, 1, 0, 1, 1)},
    {.name = "dropout_train", .in = SHAPE(2, 3, 4, 4), .training = 1, .build = build_dropout,
     .ref = ref_dropout_case, .dropout = {.p = 0.4f, .id = 3}},
    {.name = "dropout_eval", .in = SHAPE(2, 3, 4, 4), .training = 0, .build = build_dropout,
     .ref = ref_dropout_case, .dropout = {.p = 0.4f, .id = 3}},
    {.name = "l2norm", .in = SHAPE(3, 6, 1, 1), .training = 1, .build = build_l2norm,
     .ref = ref_l2norm_case, .l2norm = {.eps = 1e-12f}},
    {.name = "l2norm_row_below_eps", .in = SHAPE(3, 5, 1, 1), .training = 1,
     .build = build_l2norm, .ref = ref_l2norm_case, .l2norm = {.eps = 0.5f}, .tiny_row = 1},
};
#define NCASES ((int)(sizeof CASES / sizeof CASES[0]))

/* ---- one run of a case: library side and reference side ------------------------------ */

typedef struct {
  const grad_case *c;
  lfs_backend *be;
  lfs_graph g;
  lfs_pass pass;
  size_t nx, ny;
  float *xf, *rf;       /* host input and upstream gradient */
  float *xb, *rb;       /* the same on the backend */
  double *x, *r, *y;    /* double copies; y is scratch for the reference */
  double **val;         /* double copies of every parameter view */
  unsigned char *keep;  /* dropout mask */
  ref_ctx rc;
} grad_run;

static float *be_upload(lfs_backend *be, const float *host, size_t n) {
  float *p = be->ops->alloc(be, n);
  assert_non_null(p);
  be->ops->upload(be, p, host, n);
  return p;
}

static float *be_download(lfs_backend *be, const float *dev, size_t n) {
  float *h = xcalloc(n, sizeof *h);
  be->ops->download(be, h, dev, n);
  return h;
}

/* Values by role: gamma-like and weights anywhere in [-1, 1), running variances
 * positive, a frozen (fixed) gamma at its conventional 1. */
static void fill_view(const lfs_param_view *v, float *host, uint64_t seed, uint32_t tag) {
  if (v->kind == LFS_PARAM_FROZEN) {
    for (size_t i = 0; i < v->count; i++) host[i] = 1.0f;
  } else if (ends_with(v->name, ".running_var")) {
    tu_fill_uniform(host, v->count, 0.5f, 1.5f, seed, tag);
  } else if (ends_with(v->name, ".running_mean")) {
    tu_fill_uniform(host, v->count, -0.5f, 0.5f, seed, tag);
  } else {
    tu_fill_uniform(host, v->count, -1.0f, 1.0f, seed, tag);
  }
}

static void setup_params(grad_run *run, uint64_t seed) {
  lfs_params *p = &run->g.params;
  run->val = xcalloc((size_t)p->nviews, sizeof *run->val);
  for (int h = 0; h < p->nviews; h++) {
    const lfs_param_view *v = lfs_params_view(p, h);
    float *host = xcalloc(v->count, sizeof *host);
    fill_view(v, host, seed, 100u + (uint32_t)h);
    run->be->ops->upload(run->be, lfs_params_data(p, h), host, v->count);
    run->val[h] = xcalloc(v->count, sizeof **run->val);
    to_double(run->val[h], host, v->count);
    free(host);
  }
}

/* PReLU: exactly half of each channel negative and no value within 0.05 of the
 * kink, so that no finite-difference step crosses it. */
static void push_from_zero(float *x, size_t n) {
  for (size_t i = 0; i < n; i++) {
    float mag = 0.05f + 0.95f * fabsf(x[i]);
    x[i] = (i % 2) ? -mag : mag;
  }
}

/* L2 norm: row 0 scaled to 40% of eps, so y = x / eps there. */
static void shrink_row0(float *x, int cols, float eps) {
  double ss = 0.0;
  for (int j = 0; j < cols; j++) ss += (double)x[j] * x[j];
  float s = (float)(0.4 * eps / sqrt(ss));
  for (int j = 0; j < cols; j++) x[j] *= s;
}

static void setup_input(grad_run *run, uint64_t seed) {
  const grad_case *c = run->c;
  float lo = c->x_lo, hi = c->x_hi;
  if (lo == 0.0f && hi == 0.0f) {
    lo = -1.0f;
    hi = 1.0f;
  }
  run->xf = xcalloc(run->nx, sizeof *run->xf);
  tu_fill_uniform(run->xf, run->nx, lo, hi, seed, 1);
  if (c->away_from_zero) push_from_zero(run->xf, run->nx);
  if (c->tiny_row) shrink_row0(run->xf, (int)lfs_shape_sample(c->in), c->l2norm.eps);
  run->x = xcalloc(run->nx, sizeof *run->x);
  to_double(run->x, run->xf, run->nx);
  run->xb = be_upload(run->be, run->xf, run->nx);
}

static void setup_upstream(grad_run *run, uint64_t seed) {
  run->rf = xcalloc(run->ny, sizeof *run->rf);
  tu_fill_uniform(run->rf, run->ny, -1.0f, 1.0f, seed, 2);
  run->r = xcalloc(run->ny, sizeof *run->r);
  to_double(run->r, run->rf, run->ny);
  run->rb = be_upload(run->be, run->rf, run->ny);
  run->y = xcalloc(run->ny, sizeof *run->y);
}

/* The mask the library must use: element i kept iff uniform(rng, i) >= p, with
 * rng keyed by (seed, DROPOUT, step, layer id). Both outcomes must occur. */
static void setup_dropout_mask(grad_run *run) {
  const grad_case *c = run->c;
  run->keep = xcalloc(run->ny, 1);
  if (c->build != build_dropout) return;
  lfs_rng rng = lfs_rng_make(run->pass.seed, LFS_RNG_DROPOUT, (uint32_t)run->pass.step,
                             c->dropout.id);
  size_t kept = 0;
  for (size_t i = 0; i < run->ny; i++) {
    run->keep[i] = lfs_rng_uniform(&rng, i) >= c->dropout.p;
    kept += run->keep[i];
  }
  assert_true(kept > 0 && kept < run->ny);
}

/* A fixed gamma is declared but must not be trainable (else it would be
 * checked against finite differences like any weight, and pass). */
static void assert_frozen(const lfs_params *p, const char *name) {
  int h = lfs_params_find(p, name);
  if (h < 0) fail_msg("parameter %s is not declared", name);
  assert_int_equal(lfs_params_view(p, h)->kind, LFS_PARAM_FROZEN);
}

static void run_setup(grad_run *run, const grad_case *c, uint64_t seed) {
  memset(run, 0, sizeof *run);
  run->c = c;
  run->be = lfs_backend_cpu();
  assert_non_null(run->be);
  lfs_graph_init(&run->g);
  c->build(c, &run->g);
  char err[256] = "";
  if (lfs_graph_build(&run->g, run->be, c->in, 1, err, sizeof err) != 0)
    fail_msg("%s: graph build failed: %s", c->name, err);
  if (c->absent) assert_int_equal(lfs_params_find(&run->g.params, c->absent), -1);
  if (c->build == build_bn && c->bn.fixed_gamma) assert_frozen(&run->g.params, "bn.weight");
  lfs_graph_init_params(&run->g, seed);
  setup_params(run, seed);
  run->nx = lfs_shape_count(c->in);
  run->ny = lfs_shape_count(lfs_graph_output_shape(&run->g));
  setup_input(run, seed);
  setup_upstream(run, seed);
  run->pass = (lfs_pass){.be = run->be, .params = &run->g.params, .training = c->training,
                         .seed = seed, .step = TEST_STEP};
  setup_dropout_mask(run);
  run->rc = (ref_ctx){&run->g.params, run->val, run->keep, run->ny};
}

static void run_teardown(grad_run *run) {
  for (int h = 0; h < run->g.params.nviews; h++) free(run->val[h]);
  free(run->val);
  run->be->ops->free(run->be, run->xb);
  run->be->ops->free(run->be, run->rb);
  lfs_graph_free(&run->g);
  free(run->xf), free(run->rf), free(run->x), free(run->r), free(run->y), free(run->keep);
}

/* ---- finite differences on the double reference ------------------------------------- */

static double ref_loss(grad_run *run) {
  run->c->ref(run->c, &run->rc, run->x, run->y);
  return ref_dot(run->ny, run->r, run->y);
}

/* Central differences of the reference loss with respect to each v[i]; v is
 * one of run's double arrays (the input or a parameter copy). */
static void fd_gradient(grad_run *run, double *v, size_t n, double *grad) {
  for (size_t i = 0; i < n; i++) {
    double save = v[i];
    double h = FD_STEP * fmax(1.0, fabs(save));
    double up = save + h, down = save - h;
    v[i] = up;
    double lp = ref_loss(run);
    v[i] = down;
    double lm = ref_loss(run);
    v[i] = save;
    grad[i] = (lp - lm) / (up - down); /* the steps actually taken, not 2h */
  }
}

static double check_one(const char *case_name, const char *what, const float *got,
                        const double *want, size_t n, double tol) {
  char label[160];
  snprintf(label, sizeof label, "%s: %s", case_name, what);
  double e = tu_rel_err(got, want, n);
  if (!tu_check(label, got, want, n, tol)) fail_msg("%s: rel err %.3e > tol %.0e", label, e, tol);
  return e;
}

static void check_forward(grad_run *run, const float *y_lib, result_row *row) {
  ref_loss(run); /* fills run->y at the unperturbed point */
  row->fwd = check_one(run->c->name, "forward", y_lib, run->y, run->ny, FWD_TOL);
}

static void check_input_grad(grad_run *run, result_row *row) {
  float *dx = be_download(run->be, run->g.dx, run->nx);
  double *num = xcalloc(run->nx, sizeof *num);
  fd_gradient(run, run->x, run->nx, num);
  row->dx = check_one(run->c->name, "d input", dx, num, run->nx, GRAD_TOL);
  free(num);
  free(dx);
}

/* A parameter that does not learn (fixed gamma) or a buffer (running stats)
 * must end a backward with an all-zero gradient. */
static void check_zero_grad(grad_run *run, int h) {
  const lfs_param_view *v = lfs_params_view(&run->g.params, h);
  float *g = be_download(run->be, lfs_params_grad(&run->g.params, h), v->count);
  for (size_t i = 0; i < v->count; i++)
    if (g[i] != 0.0f) fail_msg("%s: %s grad[%zu] = %g, want 0", run->c->name, v->name, i, g[i]);
  printf("%s: %s grad stays 0 (%s)\n", run->c->name, v->name,
         v->kind == LFS_PARAM_FROZEN ? "frozen" : "buffer");
  free(g);
}

static void check_param_grads(grad_run *run, result_row *row) {
  const lfs_params *p = &run->g.params;
  for (int h = 0; h < p->nviews; h++) {
    const lfs_param_view *v = lfs_params_view(p, h);
    if (v->kind != LFS_PARAM_TRAINABLE) {
      check_zero_grad(run, h);
      continue;
    }
    float *got = be_download(run->be, lfs_params_grad(p, h), v->count);
    double *num = xcalloc(v->count, sizeof *num);
    fd_gradient(run, run->val[h], v->count, num);
    char what[128];
    snprintf(what, sizeof what, "d %s", v->name);
    double e = check_one(run->c->name, what, got, num, v->count, GRAD_TOL);
    row->dparam = fmax(row->dparam, e);
    free(num);
    free(got);
  }
}

/* ---- tests ---------------------------------------------------------------------- */

static void test_grad_case(void **state) {
  const grad_case *c = *state;
  grad_run run;
  run_setup(&run, c, 1000u + (uint64_t)(c - CASES));
  result_row *row = result_new(c->name);

  const float *yb = lfs_graph_forward(&run.g, &run.pass, run.xb);
  float *y = be_download(run.be, yb, run.ny);
  check_forward(&run, y, row);
  free(y);

  lfs_params_zero_grad(&run.g.params);
  lfs_graph_backward(&run.g, &run.pass, run.xb, run.rb);
  check_input_grad(&run, row);
  check_param_grads(&run, row);
  run_teardown(&run);
}

/* One training forward blends the batch statistics into the running ones
 * (momentum 0.1, unbiased variance); an eval forward leaves them alone. */
static void check_running_stats(const grad_case *c) {
  grad_run run;
  run_setup(&run, c, 77u);
  const lfs_params *p = &run.g.params;
  int hm = lfs_params_find(p, "bn.running_mean"), hv = lfs_params_find(p, "bn.running_var");
  assert_true(hm >= 0 && hv >= 0);
  assert_int_equal(lfs_params_view(p, hm)->kind, LFS_PARAM_BUFFER);
  assert_int_equal(lfs_params_view(p, hv)->kind, LFS_PARAM_BUFFER);
  int ch = c->in.c, spatial = c->in.h * c->in.w;
  double *mean = xcalloc(4 * (size_t)ch, sizeof *mean);
  double *var = mean + ch, *want_m = var + ch, *want_v = want_m + ch;
  ref_channel_stats(c->in.n, ch, spatial, 1, mean, var, run.x);
  double m = c->bn.momentum;
  for (int i = 0; i < ch; i++) {
    want_m[i] = (1.0 - m) * run.val[hm][i] + m * mean[i];
    want_v[i] = (1.0 - m) * run.val[hv][i] + m * var[i];
  }
  lfs_graph_forward(&run.g, &run.pass, run.xb);
  float *rm = be_download(run.be, lfs_params_data(p, hm), ch);
  float *rv = be_download(run.be, lfs_params_data(p, hv), ch);
  result_row *row = result_new(c->name);
  row->fwd = check_one(c->name, "running_mean", rm, want_m, ch, STATS_TOL);
  row->fwd = fmax(row->fwd, check_one(c->name, "running_var", rv, want_v, ch, STATS_TOL));

  run.pass.training = 0;
  lfs_graph_forward(&run.g, &run.pass, run.xb);
  float *rm2 = be_download(run.be, lfs_params_data(p, hm), ch);
  float *rv2 = be_download(run.be, lfs_params_data(p, hv), ch);
  assert_memory_equal(rm, rm2, ch * sizeof *rm);
  assert_memory_equal(rv, rv2, ch * sizeof *rv);
  free(rm), free(rv), free(rm2), free(rv2), free(mean);
  run_teardown(&run);
}

static void test_bn2d_running_stats(void **state) {
  (void)state;
  const grad_case c = {.name = "bn2d_running_stats", .in = SHAPE(3, 4, 3, 3), .training = 1,
                       .build = build_bn, .ref = ref_bn_case, .bn = BN(0, 1e-5f), .x_lo = -0.5f,
                       .x_hi = 1.5f};
  check_running_stats(&c);
}

static void test_bn1d_running_stats(void **state) {
  (void)state;
  const grad_case c = {.name = "bn1d_running_stats", .in = SHAPE(5, 3, 1, 1), .training = 1,
                       .build = build_bn, .ref = ref_bn_case, .bn = BN(0, 1e-5f), .x_lo = -0.5f,
                       .x_hi = 1.5f};
  check_running_stats(&c);
}

/* Parameter gradients accumulate across backward calls (the caller zeroes them
 * once per step); the graph's input gradient is rewritten, not accumulated. */
static void test_backward_accumulates(void **state) {
  (void)state;
  const grad_case *c = &CASES[0]; /* conv with bias */
  grad_run run;
  run_setup(&run, c, 55u);
  lfs_params *p = &run.g.params;
  lfs_graph_forward(&run.g, &run.pass, run.xb);
  lfs_params_zero_grad(p);
  lfs_graph_backward(&run.g, &run.pass, run.xb, run.rb);
  float *g1 = be_download(run.be, p->grad, p->count);
  float *dx1 = be_download(run.be, run.g.dx, run.nx);
  lfs_graph_backward(&run.g, &run.pass, run.xb, run.rb);
  float *g2 = be_download(run.be, p->grad, p->count);
  float *dx2 = be_download(run.be, run.g.dx, run.nx);
  for (size_t i = 0; i < p->count; i++)
    if (fabsf(g2[i] - 2.0f * g1[i]) > 1e-5f * (1.0f + fabsf(g1[i])))
      fail_msg("grad[%zu] after two backwards = %g, want 2 * %g", i, g2[i], g1[i]);
  assert_memory_equal(dx1, dx2, run.nx * sizeof *dx1);
  free(g1), free(g2), free(dx1), free(dx2);
  run_teardown(&run);
}

int main(void) {
  struct CMUnitTest tests[NCASES + 3];
  for (int i = 0; i < NCASES; i++)
    tests[i] = (struct CMUnitTest){CASES[i].name, test_grad_case, NULL, NULL, (void *)&CASES[i]};
  tests[NCASES] = (struct CMUnitTest)cmocka_unit_test(test_bn2d_running_stats);
  tests[NCASES + 1] = (struct CMUnitTest)cmocka_unit_test(test_bn1d_running_stats);
  tests[NCASES + 2] = (struct CMUnitTest)cmocka_unit_test(test_backward_accumulates);
  return cmocka_run_group_tests(tests, NULL, print_summary);
}
