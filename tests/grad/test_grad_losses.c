/* test_grad_losses.c: finite-difference checks of the cosine head and every loss
 * (DESIGN §1.1-1.5), including the hard corners of issue 4.
 *
 * The library (float, SGEMM) gives the mean loss and its gradients with respect
 * to the unnormalised features x [B, D] and class weights w [K, D]. A reference
 * written here from the DESIGN formulas, in double precision and independent of
 * the library's code, is evaluated at the same float inputs; its central
 * differences give the gradients. Errors are norm-wise relative
 * (max |got - want| / max |want|) over all coordinates, or over a sample of them
 * for K = 20,000. `margin_grad = straight` is checked against its documented
 * gradient (d psi/dc = 1: the reference with the target's offset psi(c) - c frozen
 * at the base point), and must differ from the exact one.
 *
 * Every case first checks that its data keep a safe distance from the loss's
 * kinks (MV's indicator, AM-LFS interval edges), so that a finite difference never
 * straddles one: a fragile case fails as such instead of as a wrong gradient. */
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
#include "lfs/head.h"
#include "lfs/philox.h"

/* Float vs double. The logits are s * c with c from a float dot product (a few
 * 1e-8 absolute), so s = 64 moves them by ~1e-6 and the probabilities by ~1e-6
 * relative. Measured worst cases (printed in the summary) are 1.7e-6 forward and
 * 1.9e-6 for the gradients; a wrong formula (a missed normalisation term, a wrong
 * sign of k, a lost 1/B, straight where exact is due) is off by 1e-3 or more. */
#define FWD_TOL 1e-5
#define GRAD_TOL 2e-5
/* Central differences in double: truncation ~h^2 * L''' and rounding ~1e-16 L/h
 * are both far below GRAD_TOL at this step, even at theta = 1e-3 (L''' ~ 1/theta^2). */
#define FD_STEP 1e-6
/* Data closer than this (in cosine or probability) to a kink would be fragile. */
#define KINK_MARGIN 1e-4

/* ---- results table -------------------------------------------------------------- */

typedef struct {
  char name[40];
  double fwd, dx, dw;
} result_row;

static result_row g_rows[96];
static int g_nrows;

static void record(const char *name, double fwd, double dx, double dw) {
  assert_true(g_nrows < (int)(sizeof g_rows / sizeof g_rows[0]));
  result_row *r = &g_rows[g_nrows++];
  snprintf(r->name, sizeof r->name, "%s", name);
  r->fwd = fwd, r->dx = dx, r->dw = dw;
}

static int print_summary(void **state) {
  (void)state;
  double worst[3] = {0, 0, 0};
  printf("\n%-34s %11s %11s %11s   (tol fwd %.0e, grad %.0e)\n", "case", "forward", "dx", "dw",
         FWD_TOL, GRAD_TOL);
  for (int i = 0; i < g_nrows; i++) {
    const result_row *r = &g_rows[i];
    const double v[3] = {r->fwd, r->dx, r->dw};
    printf("%-34s", r->name);
    for (int k = 0; k < 3; k++) {
      if (v[k] < 0) printf(" %11s", "-");
      else printf(" %11.3e", v[k]);
      if (v[k] > worst[k]) worst[k] = v[k];
    }
    printf("\n");
  }
  printf("%-34s %11.3e %11.3e %11.3e\n", "worst", worst[0], worst[1], worst[2]);
  return 0;
}

/* ---- a case: configuration and data -------------------------------------------- */

typedef struct {
  const char *name;
  lfs_head_cfg cfg;
  int B, D, K;
  float *x, *w;
  int32_t *labels;
} loss_case;

static void *xcalloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size);
  assert_non_null(p);
  return p;
}

/* Random x (rows of different norms), w, labels from Philox streams keyed by seed. */
static loss_case case_new(const char *name, lfs_loss_kind kind, int B, int D, int K,
                          uint64_t seed) {
  loss_case c = {.name = name, .B = B, .D = D, .K = K};
  lfs_head_cfg_init(&c.cfg, kind);
  c.x = xcalloc((size_t)B * D, sizeof *c.x);
  c.w = xcalloc((size_t)K * D, sizeof *c.w);
  c.labels = xcalloc((size_t)B, sizeof *c.labels);
  tu_fill_uniform(c.x, (size_t)B * D, -1.0f, 1.0f, seed, 1);
  tu_fill_uniform(c.w, (size_t)K * D, -1.0f, 1.0f, seed, 2);
  static const float scale[4] = {0.3f, 1.0f, 2.5f, 7.0f};
  for (int i = 0; i < B; i++)
    for (int j = 0; j < D; j++) c.x[(size_t)i * D + j] *= scale[i % 4];
  lfs_rng r = lfs_rng_make(seed, LFS_RNG_TEST, 3, 0);
  for (int i = 0; i < B; i++) c.labels[i] = (int32_t)lfs_rng_below(&r, (uint64_t)i, (uint64_t)K);
  return c;
}

static void case_free(loss_case *c) {
  free(c->x);
  free(c->w);
  free(c->labels);
}

static double norm_d(const double *v, int n) {
  double s = 0.0;
  for (int j = 0; j < n; j++) s += v[j] * v[j];
  return sqrt(s);
}

/* Puts row i of x at angle theta from its label's weight, with norm `len`: the
 * component orthogonal to w_y comes from the row's current values. */
static void set_row_angle(loss_case *c, int i, double theta, double len) {
  const int D = c->D;
  double u[64], v[64];
  assert_true(D <= 64);
  const float *wy = c->w + (size_t)c->labels[i] * D;
  for (int j = 0; j < D; j++) u[j] = wy[j], v[j] = c->x[(size_t)i * D + j];
  const double nu = norm_d(u, D);
  for (int j = 0; j < D; j++) u[j] /= nu;
  double dot = 0.0;
  for (int j = 0; j < D; j++) dot += u[j] * v[j];
  for (int j = 0; j < D; j++) v[j] -= dot * u[j];
  const double nv = norm_d(v, D);
  for (int j = 0; j < D; j++)
    c->x[(size_t)i * D + j] = (float)(len * (cos(theta) * u[j] + sin(theta) * v[j] / nv));
}

/* Row i := (class k's weight) * len + noise * (row's current values). */
static void set_row_near_class(loss_case *c, int i, int k, double len, double noise) {
  for (int j = 0; j < c->D; j++) {
    float *xi = c->x + (size_t)i * c->D;
    xi[j] = (float)(len * c->w[(size_t)k * c->D + j] + noise * xi[j]);
  }
}

/* ---- the double reference, from the DESIGN formulas ------------------------------ */

typedef struct {
  double loss;
  double mean_py, mean_cy, accuracy;
  double kink;  /* smallest distance of the data to a kink */
  int mv_hits;  /* negatives that MV raised */
  int floored;  /* rows whose tau was floored */
} ref_out;

static double ref_lambda(const lfs_head_cfg *cfg) {
  if (cfg->kind != LFS_LOSS_SPHEREFACE) return 0.0;
  double l = cfg->lambda_base * pow(1.0 + cfg->lambda_gamma * (double)cfg->iteration,
                                    -cfg->lambda_power);
  return fmax(l, cfg->lambda_min);
}

/* t(c) of DESIGN §1.2 / §1.5; *kink gets the distance of c to an AM-LFS edge. */
static double ref_target(const lfs_head_cfg *cfg, double c, double *kink) {
  if (cfg->kind == LFS_LOSS_AMLFS) {
    const double width = 2.0 / cfg->amlfs_n;
    int j = (int)floor((c + 1.0) / width);
    if (j > cfg->amlfs_n - 1) j = cfg->amlfs_n - 1;
    if (j < 0) j = 0;
    for (int e = 1; e < cfg->amlfs_n; e++) *kink = fmin(*kink, fabs(c - (-1.0 + e * width)));
    return cfg->amlfs_alpha[j] * c + cfg->amlfs_beta[j];
  }
  const double theta = acos(c);
  const double phi = cfg->m1 * theta + cfg->m2;
  const double k = floor(phi / M_PI);
  const double psi = pow(-1.0, k) * cos(phi) - 2.0 * k - cfg->m3;
  const double lambda = ref_lambda(cfg);
  return (lambda * c + psi) / (1.0 + lambda);
}

static double ref_tau_loss(const lfs_head_cfg *cfg, double neg_log_py, double q, double *kink,
                           int *floored) {
  const double p = exp(-neg_log_py);
  const int n = cfg->amlfs_n;
  int j = (int)floor(p * n);
  if (j > n - 1) j = n - 1;
  for (int e = 1; e < n; e++) *kink = fmin(*kink, fabs(p - (double)e / n));
  const double alpha = cfg->tau_alpha[j], beta = cfg->tau_beta[j];
  /* tau near p = 1 from q (p itself has lost the digits of q there) */
  const double tau = p > 0.5 ? alpha + beta - alpha * q : alpha * p + beta;
  if (!(tau > 0.0)) {
    ++*floored;
    return -log(LFS_AMLFS_TAU_FLOOR);
  }
  if (beta == 0.0 && p <= 0.5) return -log(alpha) + neg_log_py;
  return -log(tau);
}

/* Mean loss at double inputs. offset (straight-through reference): t = c + offset[i]
 * instead of t(c) for the margin family. */
static void ref_loss(const loss_case *lc, const double *x, const double *w, const double *offset,
                     ref_out *out) {
  const lfs_head_cfg *cfg = &lc->cfg;
  const int B = lc->B, D = lc->D, K = lc->K;
  double *c = xcalloc((size_t)K, sizeof *c), *z = xcalloc((size_t)K, sizeof *z);
  double *wn = xcalloc((size_t)K, sizeof *wn);
  for (int k = 0; k < K; k++) wn[k] = fmax(norm_d(w + (size_t)k * D, D), 1e-12);
  memset(out, 0, sizeof *out);
  out->kink = INFINITY;
  for (int i = 0; i < B; i++) {
    const double *xi = x + (size_t)i * D;
    const double xn = fmax(norm_d(xi, D), 1e-12);
    const int y = lc->labels[i];
    int best = 0;
    for (int k = 0; k < K; k++) {
      double dot = 0.0;
      for (int j = 0; j < D; j++) dot += xi[j] * w[(size_t)k * D + j];
      c[k] = fmin(1.0, fmax(-1.0, dot / (xn * wn[k])));
      if (c[k] > c[best]) best = k;
    }
    double t;
    if (cfg->kind == LFS_LOSS_SOFTMAX) t = c[y];
    else if (offset && cfg->kind != LFS_LOSS_AMLFS) t = c[y] + offset[i];
    else t = ref_target(cfg, c[y], &out->kink);
    for (int k = 0; k < K; k++) {
      z[k] = cfg->s * c[k];
      if (k == y || cfg->kind != LFS_LOSS_MV_SOFTMAX) continue;
      out->kink = fmin(out->kink, fabs(c[k] - t));
      if (c[k] <= t) continue;
      out->mv_hits++;
      z[k] = cfg->mv_mode == LFS_MV_FIXED ? cfg->s * (c[k] + cfg->mv_t)
                                          : cfg->s * (cfg->mv_t * c[k] + cfg->mv_t - 1.0);
    }
    z[y] = cfg->s * t;
    /* -log p_y and q = sum_{k != y} p_k, both relative to z_y first */
    double top = z[0];
    for (int k = 1; k < K; k++) top = fmax(top, z[k]);
    double rel = 0.0, sum = 0.0; /* sum_{k != y} e^{z_k - z_y}, sum_k e^{z_k - top} */
    for (int k = 0; k < K; k++) {
      sum += exp(z[k] - top);
      if (k != y && top == z[y]) rel += exp(z[k] - z[y]);
    }
    const double lse = top + log(sum);
    const double nlp = top == z[y] ? log1p(rel) : lse - z[y];
    double q = 0.0;
    for (int k = 0; k < K; k++)
      if (k != y) q += exp(z[k] - lse);
    double li;
    if (cfg->kind == LFS_LOSS_SEARCH_SOFTMAX) li = nlp + log1p(fabs(cfg->a) * q);
    else if (cfg->kind == LFS_LOSS_AMLFS && cfg->amlfs_tau)
      li = ref_tau_loss(cfg, nlp, q, &out->kink, &out->floored);
    else li = nlp;
    out->loss += li / B;
    out->mean_py += exp(-nlp) / B;
    out->mean_cy += c[y] / B;
    out->accuracy += (double)(best == y) / B;
  }
  free(c);
  free(z);
  free(wn);
}

/* Offsets t(c0) - c0 at the base point, for the straight-through reference. */
static double *ref_straight_offsets(const loss_case *lc, const double *x, const double *w) {
  double *off = xcalloc((size_t)lc->B, sizeof *off);
  for (int i = 0; i < lc->B; i++) {
    const int y = lc->labels[i], D = lc->D;
    const double *xi = x + (size_t)i * D, *wy = w + (size_t)y * D;
    double dot = 0.0;
    for (int j = 0; j < D; j++) dot += xi[j] * wy[j];
    const double c = fmin(1.0, fmax(-1.0, dot / (fmax(norm_d(xi, D), 1e-12) *
                                                 fmax(norm_d(wy, D), 1e-12))));
    double kink = INFINITY;
    off[i] = ref_target(&lc->cfg, c, &kink) - c;
  }
  return off;
}

/* Central difference of the reference loss along coordinate idx of v (x or w). */
static double ref_fd(const loss_case *lc, double *x, double *w, double *v, size_t idx,
                     const double *offset) {
  const double saved = v[idx], h = FD_STEP * fmax(1.0, fabs(saved));
  ref_out plus, minus;
  v[idx] = saved + h;
  ref_loss(lc, x, w, offset, &plus);
  v[idx] = saved - h;
  ref_loss(lc, x, w, offset, &minus);
  v[idx] = saved;
  return (plus.loss - minus.loss) / (2.0 * h);
}

/* ---- running a case --------------------------------------------------------------- */

typedef struct {
  int straight_ref;  /* compare with the straight-through reference */
  int sample;        /* dw: 0: every coordinate; n: n random ones + the labels' rows */
  int expect_hits;   /* MV: require mis-classified vectors in the data */
  int expect_floor;  /* AM-LFS tau: require floored rows */
} run_opts;

typedef struct {
  size_t *idx;
  size_t n;
} coords;

static coords all_coords(size_t n) {
  coords c = {xcalloc(n, sizeof(size_t)), n};
  for (size_t i = 0; i < n; i++) c.idx[i] = i;
  return c;
}

/* n random coordinates of a [rows, D] array, plus every coordinate of the rows
 * listed in `rows` (nrows of them). */
static coords sample_coords(size_t rows, int D, size_t n, const int32_t *must, int nmust,
                            uint64_t seed) {
  coords c = {xcalloc(n + (size_t)nmust * D, sizeof(size_t)), 0};
  lfs_rng r = lfs_rng_make(seed, LFS_RNG_TEST, 9, 0);
  for (size_t i = 0; i < n; i++) c.idx[c.n++] = (size_t)lfs_rng_below(&r, i, rows * (size_t)D);
  for (int m = 0; m < nmust; m++)
    for (int j = 0; j < D; j++) c.idx[c.n++] = (size_t)must[m] * D + j;
  return c;
}

/* Runs the library and the reference on one case; returns the three errors. */
static void run_case(loss_case *lc, const run_opts *o, double err[3]) {
  const int B = lc->B, D = lc->D, K = lc->K;
  const size_t nx = (size_t)B * D, nw = (size_t)K * D;
  char err_msg[256];
  assert_int_equal(lfs_head_cfg_check(&lc->cfg, err_msg, sizeof err_msg), 0);

  float *dx = xcalloc(nx, sizeof *dx), *dw = xcalloc(nw, sizeof *dw);
  lfs_head_stats st;
  const double loss = lfs_head_loss(&lc->cfg, B, D, K, dx, dw, &st, lc->x, lc->w, lc->labels);

  double *x = xcalloc(nx, sizeof *x), *w = xcalloc(nw, sizeof *w);
  for (size_t i = 0; i < nx; i++) x[i] = lc->x[i];
  for (size_t i = 0; i < nw; i++) w[i] = lc->w[i];
  double *offset = o->straight_ref ? ref_straight_offsets(lc, x, w) : NULL;
  ref_out ref;
  ref_loss(lc, x, w, offset, &ref);
  if (ref.kink < KINK_MARGIN)
    fail_msg("%s: test data within %.2g of a kink (MV indicator or AM-LFS edge)", lc->name,
             ref.kink);
  if (o->expect_hits && ref.mv_hits == 0) fail_msg("%s: no MV hits in the data", lc->name);
  if (o->expect_floor && (ref.floored == 0 || ref.floored == B))
    fail_msg("%s: %d of %d rows have a floored tau (some, not all, wanted)", lc->name,
             ref.floored, B);

  char what[96];
  snprintf(what, sizeof what, "%s loss", lc->name);
  const float lossf = (float)loss;
  const int fwd_ok = tu_check(what, &lossf, &ref.loss, 1, FWD_TOL);
  err[0] = tu_rel_err(&lossf, &ref.loss, 1);
  assert_true(isfinite(loss));
  assert_true(fwd_ok);
  assert_true(fabs(st.mean_p_y - ref.mean_py) <= 1e-4 * fmax(ref.mean_py, 1e-300) + 1e-12);
  assert_true(fabs(st.mean_cos_y - ref.mean_cy) <= 1e-6);
  assert_true(fabs(st.accuracy - ref.accuracy) <= 1e-12);

  coords cx = all_coords(nx); /* B x D is always small */
  coords cw = o->sample ? sample_coords((size_t)K, D, (size_t)o->sample, lc->labels, B, 12)
                        : all_coords(nw);
  float *gx = xcalloc(cx.n, sizeof *gx), *gw = xcalloc(cw.n, sizeof *gw);
  double *fx = xcalloc(cx.n, sizeof *fx), *fw = xcalloc(cw.n, sizeof *fw);
  for (size_t i = 0; i < cx.n; i++) {
    gx[i] = dx[cx.idx[i]];
    fx[i] = ref_fd(lc, x, w, x, cx.idx[i], offset);
  }
  for (size_t i = 0; i < cw.n; i++) {
    gw[i] = dw[cw.idx[i]];
    fw[i] = ref_fd(lc, x, w, w, cw.idx[i], offset);
  }
  for (size_t i = 0; i < nx; i++) assert_true(isfinite(dx[i]));
  for (size_t i = 0; i < nw; i++) assert_true(isfinite(dw[i]));
  snprintf(what, sizeof what, "%s dx", lc->name);
  const int okx = tu_check(what, gx, fx, cx.n, GRAD_TOL);
  snprintf(what, sizeof what, "%s dw", lc->name);
  const int okw = tu_check(what, gw, fw, cw.n, GRAD_TOL);
  err[1] = tu_rel_err(gx, fx, cx.n);
  err[2] = tu_rel_err(gw, fw, cw.n);
  record(lc->name, err[0], err[1], err[2]);
  assert_true(okx);
  assert_true(okw);

  free(gx), free(gw), free(fx), free(fw), free(cx.idx), free(cw.idx);
  free(offset), free(x), free(w), free(dx), free(dw);
}

static void run_default(loss_case *lc) {
  run_opts o = {0};
  double e[3];
  run_case(lc, &o, e);
  case_free(lc);
}

/* ---- the margin family -------------------------------------------------------------- */

static void test_softmax(void **state) {
  (void)state;
  loss_case c = case_new("softmax", LFS_LOSS_SOFTMAX, 5, 8, 11, 101);
  run_default(&c);
}

static void test_sphereface_pure(void **state) {
  (void)state;
  /* lambda = 0: psi itself, with m1 = 4 reaching k = 0..3 over the rows */
  loss_case c = case_new("sphereface m1=4 lambda=0", LFS_LOSS_SPHEREFACE, 6, 8, 9, 102);
  c.cfg.lambda_base = c.cfg.lambda_min = 0.0;
  c.cfg.s = 16.0;
  const double thetas[6] = {0.3, 1.0, 1.7, 2.5, 3.0, 0.05};
  for (int i = 0; i < 6; i++) set_row_angle(&c, i, thetas[i], 1.0 + i);
  run_default(&c);
}

static void test_sphereface_annealed(void **state) {
  (void)state;
  loss_case c = case_new("sphereface m1=4 lambda(20000)", LFS_LOSS_SPHEREFACE, 5, 8, 9, 103);
  c.cfg.iteration = 20000; /* lambda = 1000 / 9 */
  assert_true(fabs(lfs_head_lambda(&c.cfg) - 1000.0 / 9.0) < 1e-9);
  run_default(&c);
  loss_case d = case_new("sphereface m1=4 lambda_min", LFS_LOSS_SPHEREFACE, 5, 8, 9, 104);
  d.cfg.iteration = 2000000; /* 1000 / 201^2 < 5 */
  assert_true(lfs_head_lambda(&d.cfg) == 5.0);
  run_default(&d);
}

static void test_sphereface_fractional(void **state) {
  (void)state;
  loss_case c = case_new("sphereface m1=1.35", LFS_LOSS_SPHEREFACE, 5, 8, 9, 105);
  c.cfg.m1 = 1.35;
  c.cfg.lambda_base = c.cfg.lambda_min = 0.0;
  set_row_angle(&c, 0, 2.9, 1.0); /* 1.35 * 2.9 > pi: k = 1 */
  run_default(&c);
}

static void test_cosface(void **state) {
  (void)state;
  loss_case c = case_new("cosface", LFS_LOSS_COSFACE, 5, 8, 11, 106);
  c.cfg.s = 64.0;
  run_default(&c);
}

static void test_arcface(void **state) {
  (void)state;
  loss_case c = case_new("arcface", LFS_LOSS_ARCFACE, 5, 8, 11, 107);
  c.cfg.s = 64.0;
  run_default(&c);
}

static void test_arcface_theta_near_zero(void **state) {
  (void)state;
  loss_case c = case_new("arcface theta 1e-3, 3e-2", LFS_LOSS_ARCFACE, 4, 8, 7, 108);
  set_row_angle(&c, 0, 1e-3, 1.0);
  set_row_angle(&c, 1, 3e-2, 3.0);
  set_row_angle(&c, 2, 1e-3, 0.5);
  run_default(&c);
}

static void test_arcface_obtuse(void **state) {
  (void)state;
  /* theta + m2 > pi: the monotone extension, k = 1 */
  loss_case c = case_new("arcface theta+m2 > pi", LFS_LOSS_ARCFACE, 4, 8, 7, 109);
  set_row_angle(&c, 0, 2.8, 1.0);
  set_row_angle(&c, 1, 3.05, 2.0);
  set_row_angle(&c, 2, 2.7, 0.7);
  run_default(&c);
}

static void test_combined(void **state) {
  (void)state;
  loss_case c = case_new("combined", LFS_LOSS_COMBINED, 5, 8, 11, 110);
  set_row_angle(&c, 0, 3.0, 1.0); /* 3.0 + 0.3 > pi */
  set_row_angle(&c, 1, 0.01, 1.0);
  run_default(&c);
  loss_case d = case_new("combined m1=1.2", LFS_LOSS_COMBINED, 5, 8, 11, 111);
  d.cfg.m1 = 1.2;
  run_default(&d);
}

/* straight: the documented gradient, and not the exact one */
static void check_straight(loss_case *c) {
  run_opts o = {.straight_ref = 1};
  double e[3];
  run_case(c, &o, e);
  /* the exact reference must disagree clearly */
  float *dx = xcalloc((size_t)c->B * c->D, sizeof *dx);
  lfs_head_loss(&c->cfg, c->B, c->D, c->K, dx, NULL, NULL, c->x, c->w, c->labels);
  double *x = xcalloc((size_t)c->B * c->D, sizeof *x), *w = xcalloc((size_t)c->K * c->D, sizeof *w);
  for (size_t i = 0; i < (size_t)c->B * c->D; i++) x[i] = c->x[i];
  for (size_t i = 0; i < (size_t)c->K * c->D; i++) w[i] = c->w[i];
  double *fx = xcalloc((size_t)c->B * c->D, sizeof *fx);
  for (size_t i = 0; i < (size_t)c->B * c->D; i++) fx[i] = ref_fd(c, x, w, x, i, NULL);
  const double diff = tu_rel_err(dx, fx, (size_t)c->B * c->D);
  printf("%s: straight vs exact gradient differ by %.3g (must be > 1e-2)\n", c->name, diff);
  assert_true(diff > 1e-2);
  free(dx), free(x), free(w), free(fx);
  case_free(c);
}

static void test_arcface_straight(void **state) {
  (void)state;
  loss_case c = case_new("arcface straight", LFS_LOSS_ARCFACE, 5, 8, 11, 112);
  c.cfg.margin_grad = LFS_MARGIN_GRAD_STRAIGHT;
  c.cfg.s = 64.0;
  set_row_angle(&c, 0, 2.9, 1.0);
  check_straight(&c);
}

static void test_combined_straight(void **state) {
  (void)state;
  loss_case c = case_new("combined straight", LFS_LOSS_COMBINED, 5, 8, 11, 113);
  c.cfg.margin_grad = LFS_MARGIN_GRAD_STRAIGHT;
  check_straight(&c);
}

static void test_sphereface_straight(void **state) {
  (void)state;
  loss_case c = case_new("sphereface straight lambda(20000)", LFS_LOSS_SPHEREFACE, 5, 8, 9, 114);
  c.cfg.margin_grad = LFS_MARGIN_GRAD_STRAIGHT;
  c.cfg.iteration = 20000;
  check_straight(&c);
}

/* ---- MV-Softmax ------------------------------------------------------------------------ */

static void run_mv(const char *name, lfs_mv_mode mode, double t, int arc, uint64_t seed) {
  loss_case c = case_new(name, LFS_LOSS_MV_SOFTMAX, 6, 8, 13, seed);
  c.cfg.mv_mode = mode;
  c.cfg.mv_t = t;
  if (arc) c.cfg.m3 = 0.0, c.cfg.m2 = 0.5;
  run_opts o = {.expect_hits = 1};
  double e[3];
  run_case(&c, &o, e);
  case_free(&c);
}

static void test_mv(void **state) {
  (void)state;
  run_mv("mv adaptive cosface", LFS_MV_ADAPTIVE, 1.2, 0, 115);
  run_mv("mv fixed cosface", LFS_MV_FIXED, 0.2, 0, 116);
  run_mv("mv adaptive arcface", LFS_MV_ADAPTIVE, 1.2, 1, 117);
  run_mv("mv fixed arcface", LFS_MV_FIXED, 0.2, 1, 118);
}

/* ---- Search-Softmax modulation --------------------------------------------------------- */

static void run_search(const char *name, double a, double s, loss_case *c) {
  c->name = name;
  c->cfg.a = a;
  c->cfg.s = s;
  run_default(c);
}

static void test_search_softmax(void **state) {
  (void)state;
  loss_case c = case_new("", LFS_LOSS_SEARCH_SOFTMAX, 5, 8, 11, 119);
  run_search("search a=-1", -1.0, 32.0, &c);
  c = case_new("", LFS_LOSS_SEARCH_SOFTMAX, 5, 8, 11, 120);
  run_search("search a=-100", -100.0, 32.0, &c);
  c = case_new("", LFS_LOSS_SEARCH_SOFTMAX, 5, 8, 11, 121);
  c.cfg.m2 = 0.3; /* on top of a margin */
  run_search("search a=-10 arcface m2=0.3", -10.0, 32.0, &c);
}

/* p_y near 1: every row next to its own class; 1 - p_y ~ 1e-10 (s = 32) and ~1e-25
 * (s = 64), far below float and double resolution of 1 - p_y by subtraction. */
static void test_search_py_near_one(void **state) {
  (void)state;
  const double s[2] = {24.0, 64.0};
  const char *names[2] = {"search |a|=1e5 p_y~1-1e-10", "search |a|=1e5 p_y~1-1e-25"};
  for (int v = 0; v < 3; v++) {
    loss_case c = case_new(v < 2 ? names[v] : "softmax p_y~1-1e-25",
                           v < 2 ? LFS_LOSS_SEARCH_SOFTMAX : LFS_LOSS_SOFTMAX, 4, 16, 9, 122 + v);
    /* nearly orthogonal classes, every row 0.1 rad from its own */
    for (int k = 0; k < c.K; k++)
      for (int j = 0; j < c.D; j++) {
        float *wkj = c.w + (size_t)k * c.D + j;
        *wkj = (float)(j == k) + 0.1f * *wkj;
      }
    for (int i = 0; i < c.B; i++) set_row_angle(&c, i, 0.1, 1.0 + i);
    c.cfg.a = v < 2 ? -1e5 : 0.0;
    c.cfg.s = v < 2 ? s[v] : 64.0;
    ref_out r;
    double *x = xcalloc((size_t)c.B * c.D, sizeof *x), *w = xcalloc((size_t)c.K * c.D, sizeof *w);
    for (size_t i = 0; i < (size_t)c.B * c.D; i++) x[i] = c.x[i];
    for (size_t i = 0; i < (size_t)c.K * c.D; i++) w[i] = c.w[i];
    ref_loss(&c, x, w, NULL, &r);
    printf("%s: reference loss %.3g, mean 1 - p_y ~ %.3g\n", c.name, r.loss,
           v == 1 || v == 2 ? r.loss : 1.0 - r.mean_py);
    assert_true((float)r.mean_py == 1.0f); /* 1 - p_y is below float resolution */
    free(x), free(w);
    run_default(&c);
  }
}

/* p_y near 0: every row next to another class's weight. */
static void test_search_py_near_zero(void **state) {
  (void)state;
  loss_case c = case_new("search |a|=1e5 p_y~0", LFS_LOSS_SEARCH_SOFTMAX, 4, 16, 9, 125);
  for (int i = 0; i < c.B; i++) set_row_near_class(&c, i, (c.labels[i] + 1) % c.K, 1.0, 0.05);
  c.cfg.a = -1e5;
  c.cfg.s = 64.0;
  run_default(&c);
  loss_case d = case_new("arcface p_y~0", LFS_LOSS_ARCFACE, 4, 16, 9, 126);
  for (int i = 0; i < d.B; i++) set_row_near_class(&d, i, (d.labels[i] + 2) % d.K, 1.0, 0.05);
  d.cfg.s = 64.0;
  run_default(&d);
}

/* DESIGN §1.4: a constant a = 1 - e^{s m} is CosFace with margin m, loss and gradient. */
static void test_search_equals_cosface(void **state) {
  (void)state;
  loss_case c = case_new("", LFS_LOSS_COSFACE, 6, 8, 11, 127);
  const int B = c.B, D = c.D, K = c.K;
  float *dx1 = xcalloc((size_t)B * D, sizeof(float)), *dw1 = xcalloc((size_t)K * D, sizeof(float));
  float *dx2 = xcalloc((size_t)B * D, sizeof(float)), *dw2 = xcalloc((size_t)K * D, sizeof(float));
  const double l1 = lfs_head_loss(&c.cfg, B, D, K, dx1, dw1, NULL, c.x, c.w, c.labels);
  lfs_head_cfg s;
  lfs_head_cfg_init(&s, LFS_LOSS_SEARCH_SOFTMAX);
  s.a = 1.0 - exp(c.cfg.s * c.cfg.m3);
  const double l2 = lfs_head_loss(&s, B, D, K, dx2, dw2, NULL, c.x, c.w, c.labels);
  printf("cosface m=0.35 loss %.9g, search a=%.6g loss %.9g\n", l1, s.a, l2);
  assert_true(fabs(l1 - l2) <= 1e-6 * fabs(l1));
  double *ref = xcalloc((size_t)K * D, sizeof *ref);
  for (size_t i = 0; i < (size_t)B * D; i++) ref[i] = dx1[i];
  assert_true(tu_check("search(a) vs cosface dx", dx2, ref, (size_t)B * D, 1e-5));
  for (size_t i = 0; i < (size_t)K * D; i++) ref[i] = dw1[i];
  assert_true(tu_check("search(a) vs cosface dw", dw2, ref, (size_t)K * D, 1e-5));
  free(dx1), free(dw1), free(dx2), free(dw2), free(ref);
  case_free(&c);
}

/* ---- AM-LFS ---------------------------------------------------------------------------- */

static void random_amlfs(lfs_head_cfg *cfg, int n, int tau, uint64_t seed) {
  cfg->amlfs_n = n;
  cfg->amlfs_tau = tau;
  double v[4 * LFS_AMLFS_MAX_INTERVALS];
  tu_fill_uniform_d(v, (size_t)4 * n, 0.0, 1.0, seed, 5);
  for (int j = 0; j < n; j++) {
    cfg->amlfs_alpha[j] = 0.5 + v[j];
    cfg->amlfs_beta[j] = -0.3 + 0.4 * v[n + j];
    cfg->tau_alpha[j] = 0.5 + v[2 * n + j];
    cfg->tau_beta[j] = 0.2 * v[3 * n + j];
  }
}

static void test_amlfs(void **state) {
  (void)state;
  loss_case c = case_new("amlfs N=6", LFS_LOSS_AMLFS, 6, 8, 11, 128);
  random_amlfs(&c.cfg, 6, 0, 1);
  run_default(&c);
  loss_case d = case_new("amlfs N=6 tau", LFS_LOSS_AMLFS, 6, 8, 11, 129);
  random_amlfs(&d.cfg, 6, 1, 2);
  d.cfg.s = 8.0; /* p_y spread over several tau intervals */
  run_default(&d);
  loss_case e = case_new("amlfs N=4 tau beta'=0", LFS_LOSS_AMLFS, 6, 8, 11, 130);
  random_amlfs(&e.cfg, 4, 1, 3);
  for (int j = 0; j < 4; j++) e.cfg.tau_beta[j] = 0.0;
  e.cfg.s = 64.0; /* p_y from ~0 to ~1 */
  set_row_angle(&e, 0, 0.1, 1.0);
  set_row_near_class(&e, 1, (e.labels[1] + 1) % e.K, 1.0, 0.05);
  run_default(&e);
}

/* tau <= 0 for some rows: a finite loss there and no gradient from those rows */
static void test_amlfs_tau_floor(void **state) {
  (void)state;
  loss_case c = case_new("amlfs tau floored", LFS_LOSS_AMLFS, 6, 8, 11, 131);
  random_amlfs(&c.cfg, 2, 1, 4);
  c.cfg.tau_beta[0] = -0.6; /* tau(p) < 0 for p < 0.5 / alpha */
  c.cfg.tau_alpha[0] = 1.0;
  for (int j = 0; j < 2; j++) c.cfg.amlfs_alpha[j] = 1.0, c.cfg.amlfs_beta[j] = 0.0;
  c.cfg.s = 8.0;
  for (int i = 0; i < 3; i++) set_row_angle(&c, i, 0.1, 1.0); /* p_y > 0.5: not floored */
  run_opts o = {.expect_floor = 1};
  double e[3];
  run_case(&c, &o, e);
  case_free(&c);
}

static void test_amlfs_identity(void **state) {
  (void)state;
  /* identity transforms give exactly the softmax loss */
  loss_case c = case_new("", LFS_LOSS_AMLFS, 6, 8, 11, 132);
  c.cfg.amlfs_tau = 1;
  lfs_head_cfg soft;
  lfs_head_cfg_init(&soft, LFS_LOSS_SOFTMAX);
  const double a = lfs_head_loss(&c.cfg, c.B, c.D, c.K, NULL, NULL, NULL, c.x, c.w, c.labels);
  const double b = lfs_head_loss(&soft, c.B, c.D, c.K, NULL, NULL, NULL, c.x, c.w, c.labels);
  assert_true(fabs(a - b) <= 1e-12 * fabs(b));
  case_free(&c);
}

/* ---- K = 1 and K = 20,000 ----------------------------------------------------------- */

static void test_single_class(void **state) {
  (void)state;
  const lfs_loss_kind kinds[4] = {LFS_LOSS_SOFTMAX, LFS_LOSS_ARCFACE, LFS_LOSS_SEARCH_SOFTMAX,
                                  LFS_LOSS_AMLFS};
  const char *names[4] = {"softmax K=1", "arcface K=1", "search |a|=1e5 K=1", "amlfs tau K=1"};
  for (int v = 0; v < 4; v++) {
    loss_case c = case_new(names[v], kinds[v], 3, 8, 1, 133 + v);
    c.cfg.a = kinds[v] == LFS_LOSS_SEARCH_SOFTMAX ? -1e5 : 0.0;
    if (kinds[v] == LFS_LOSS_AMLFS) random_amlfs(&c.cfg, 3, 1, 6);
    run_default(&c);
  }
}

static void run_big(const char *name, lfs_loss_kind kind, double a, uint64_t seed) {
  loss_case c = case_new(name, kind, 3, 16, 20000, seed);
  c.cfg.a = a;
  c.cfg.s = 64.0;
  set_row_angle(&c, 0, 0.2, 1.0); /* one confident row: p_y near 1 even among 20,000 */
  if (kind == LFS_LOSS_MV_SOFTMAX) {
    /* Rows with t(c_y) ~ 0.6, where few of 20,000 random cosines lie: a handful of
     * mis-classified vectors, none close to the indicator's edge. */
    set_row_angle(&c, 1, 0.3, 2.0);
    set_row_angle(&c, 2, 0.25, 0.5);
  }
  run_opts o = {.sample = 64, .expect_hits = kind == LFS_LOSS_MV_SOFTMAX};
  double e[3];
  run_case(&c, &o, e);
  case_free(&c);
}

static void test_many_classes(void **state) {
  (void)state;
  run_big("arcface K=20000 (sampled)", LFS_LOSS_ARCFACE, 0.0, 140);
  run_big("search a=-1e3 K=20000 (sampled)", LFS_LOSS_SEARCH_SOFTMAX, -1e3, 141);
  run_big("mv adaptive K=20000 (sampled)", LFS_LOSS_MV_SOFTMAX, 0.0, 142);
}

/* ---- robustness, semantics, configuration -------------------------------------------- */

static void test_norm_extremes(void **state) {
  (void)state;
  /* rows of norm 1e-3 and 1e3 and a class of norm 1e-3: the normalisation's backward */
  loss_case c = case_new("arcface norms 1e-3..1e3", LFS_LOSS_ARCFACE, 4, 8, 7, 150);
  for (int j = 0; j < c.D; j++) {
    c.x[j] *= 1e-3f;
    c.x[(size_t)c.D + j] *= 1e3f;
    c.w[(size_t)3 * c.D + j] *= 1e-3f;
  }
  run_default(&c);
}

/* Degenerate but finite inputs: no NaN or Inf anywhere, for every loss. */
static void test_no_nan(void **state) {
  (void)state;
  for (int kind = 0; kind < LFS_LOSS_COUNT; kind++) {
    loss_case c = case_new("", (lfs_loss_kind)kind, 6, 8, 5, 160);
    if (kind == LFS_LOSS_SEARCH_SOFTMAX) c.cfg.a = -1e5;
    if (kind == LFS_LOSS_AMLFS) random_amlfs(&c.cfg, 6, 1, 7);
    c.cfg.s = 1024.0;
    const int D = c.D;
    for (int j = 0; j < D; j++) {
      const float wy0 = c.w[(size_t)c.labels[0] * D + j], wy1 = c.w[(size_t)c.labels[1] * D + j];
      c.x[j] = wy0;                  /* theta = 0 exactly (c may round above 1) */
      c.x[(size_t)D + j] = -wy1;     /* theta = pi */
      c.x[(size_t)2 * D + j] = 0.0f; /* zero feature */
      c.x[(size_t)3 * D + j] = 1e30f;
      c.x[(size_t)4 * D + j] = 1e-30f;
      c.w[(size_t)((c.labels[5] + 1) % c.K) * D + j] = 0.0f; /* zero class */
    }
    float *dx = xcalloc((size_t)c.B * D, sizeof *dx), *dw = xcalloc((size_t)c.K * D, sizeof *dw);
    lfs_head_stats st;
    const double loss = lfs_head_loss(&c.cfg, c.B, D, c.K, dx, dw, &st, c.x, c.w, c.labels);
    printf("%s degenerate inputs: loss %.6g\n", lfs_loss_kind_name((lfs_loss_kind)kind), loss);
    assert_true(isfinite(loss));
    assert_true(isfinite(st.mean_p_y) && isfinite(st.mean_cos_y));
    for (size_t i = 0; i < (size_t)c.B * D; i++) assert_true(isfinite(dx[i]));
    for (size_t i = 0; i < (size_t)c.K * D; i++) assert_true(isfinite(dw[i]));
    free(dx), free(dw);
    case_free(&c);
  }
}

static void test_backward_accumulates(void **state) {
  (void)state;
  loss_case c = case_new("", LFS_LOSS_ARCFACE, 4, 8, 7, 170);
  const size_t nx = (size_t)c.B * c.D, nw = (size_t)c.K * c.D;
  float *dx = xcalloc(nx, sizeof *dx), *dw = xcalloc(nw, sizeof *dw);
  float *dx2 = xcalloc(nx, sizeof *dx2), *dw2 = xcalloc(nw, sizeof *dw2);
  lfs_head_loss(&c.cfg, c.B, c.D, c.K, dx, dw, NULL, c.x, c.w, c.labels);
  for (size_t i = 0; i < nx; i++) dx2[i] = 1.5f;
  for (size_t i = 0; i < nw; i++) dw2[i] = -2.0f;
  lfs_head_loss(&c.cfg, c.B, c.D, c.K, dx2, dw2, NULL, c.x, c.w, c.labels);
  for (size_t i = 0; i < nx; i++) assert_true(fabsf(dx2[i] - 1.5f - dx[i]) <= 1e-6f);
  for (size_t i = 0; i < nw; i++) assert_true(fabsf(dw2[i] + 2.0f - dw[i]) <= 1e-6f);
  /* dw alone and dx alone give the same values */
  float *only = xcalloc(nw, sizeof *only);
  lfs_head_loss(&c.cfg, c.B, c.D, c.K, NULL, only, NULL, c.x, c.w, c.labels);
  assert_memory_equal(only, dw, nw * sizeof *only);
  free(dx), free(dw), free(dx2), free(dw2), free(only);
  case_free(&c);
}

static void expect_bad(const lfs_head_cfg *cfg, const char *needle) {
  char err[256] = "";
  assert_int_equal(lfs_head_cfg_check(cfg, err, sizeof err), -1);
  printf("rejected: %s\n", err);
  if (!strstr(err, needle)) fail_msg("message '%s' lacks '%s'", err, needle);
}

static void test_config(void **state) {
  (void)state;
  lfs_head_cfg c;
  char err[256];
  for (int k = 0; k < LFS_LOSS_COUNT; k++) {
    lfs_head_cfg_init(&c, (lfs_loss_kind)k);
    assert_int_equal(lfs_head_cfg_check(&c, err, sizeof err), 0);
    lfs_loss_kind back;
    assert_int_equal(lfs_loss_kind_parse(lfs_loss_kind_name((lfs_loss_kind)k), &back), 0);
    assert_int_equal(back, k);
  }
  lfs_loss_kind dummy;
  assert_int_equal(lfs_loss_kind_parse("arcfase", &dummy), -1);
  /* the DESIGN §1.2 table */
  lfs_head_cfg_init(&c, LFS_LOSS_COMBINED);
  assert_true(c.m1 == 1.0 && c.m2 == 0.3 && c.m3 == 0.2 && c.s == 32.0);
  lfs_head_cfg_init(&c, LFS_LOSS_SPHEREFACE);
  assert_true(c.m1 == 4.0 && lfs_head_lambda(&c) == 1000.0);
  lfs_head_cfg_init(&c, LFS_LOSS_COSFACE);
  c.m2 = 0.5;
  expect_bad(&c, "head.m2 = 0.5");
  lfs_head_cfg_init(&c, LFS_LOSS_ARCFACE);
  c.m3 = 0.1;
  expect_bad(&c, "combined");
  lfs_head_cfg_init(&c, LFS_LOSS_SEARCH_SOFTMAX);
  c.a = 0.5;
  expect_bad(&c, "a = 0.5");
  lfs_head_cfg_init(&c, LFS_LOSS_ARCFACE);
  c.s = 0.0;
  expect_bad(&c, "head.scale");
  lfs_head_cfg_init(&c, LFS_LOSS_AMLFS);
  c.amlfs_n = 0;
  expect_bad(&c, "intervals");
  lfs_head_cfg_init(&c, LFS_LOSS_AMLFS);
  c.amlfs_beta[2] = NAN;
  expect_bad(&c, "beta[2]");
  lfs_head_cfg_init(&c, LFS_LOSS_MV_SOFTMAX);
  c.mv_t = -1.0;
  expect_bad(&c, "head.mv_t");
  /* psi itself at a few points: arcface cos(theta + m2), its extension and slopes */
  lfs_head_cfg_init(&c, LFS_LOSS_ARCFACE);
  double d;
  assert_true(fabs(lfs_head_target(&c, cos(1.0), &d) - cos(1.5)) < 1e-13);
  assert_true(fabs(d - sin(1.5) / sin(1.0)) < 1e-12);
  assert_true(fabs(lfs_head_target(&c, cos(3.0), &d) - (-cos(3.5) - 2.0)) < 1e-13);
  assert_true(fabs(d + sin(3.5) / sin(3.0)) < 1e-12);
  assert_true(lfs_head_target(&c, 1.0, &d) == cos(0.5) && d == sin(0.5) / LFS_HEAD_SIN_FLOOR);
  c.margin_grad = LFS_MARGIN_GRAD_STRAIGHT;
  lfs_head_target(&c, cos(1.0), &d);
  assert_true(d == 1.0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_softmax),
      cmocka_unit_test(test_sphereface_pure),
      cmocka_unit_test(test_sphereface_annealed),
      cmocka_unit_test(test_sphereface_fractional),
      cmocka_unit_test(test_cosface),
      cmocka_unit_test(test_arcface),
      cmocka_unit_test(test_arcface_theta_near_zero),
      cmocka_unit_test(test_arcface_obtuse),
      cmocka_unit_test(test_combined),
      cmocka_unit_test(test_arcface_straight),
      cmocka_unit_test(test_combined_straight),
      cmocka_unit_test(test_sphereface_straight),
      cmocka_unit_test(test_mv),
      cmocka_unit_test(test_search_softmax),
      cmocka_unit_test(test_search_py_near_one),
      cmocka_unit_test(test_search_py_near_zero),
      cmocka_unit_test(test_search_equals_cosface),
      cmocka_unit_test(test_amlfs),
      cmocka_unit_test(test_amlfs_tau_floor),
      cmocka_unit_test(test_amlfs_identity),
      cmocka_unit_test(test_single_class),
      cmocka_unit_test(test_many_classes),
      cmocka_unit_test(test_norm_extremes),
      cmocka_unit_test(test_no_nan),
      cmocka_unit_test(test_backward_accumulates),
      cmocka_unit_test(test_config),
  };
  return cmocka_run_group_tests(tests, NULL, print_summary);
}
