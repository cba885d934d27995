/* parity_ops.c: the op-by-op parity cases of tests/gpu/test_cuda_parity.c and
 * tests/gpu/test_cuda_emulated.c (parity_ops.h says what they check). */
#include "parity_ops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lfs/philox.h"

float *parity_random_floats(size_t n, float lo, float hi, uint32_t stream) {
  float *x = malloc((n ? n : 1) * sizeof *x);
  const lfs_rng r = lfs_rng_make(2024, LFS_RNG_TEST, stream, 0);
  for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * lfs_rng_uniform(&r, i);
  return x;
}

float *parity_on(lfs_backend *be, const float *host, size_t n) {
  float *p = be->ops->alloc(be, n);
  be->ops->upload(be, p, host, n);
  return p;
}

float *parity_host_of(lfs_backend *be, const float *p, size_t n) {
  float *h = malloc((n ? n : 1) * sizeof *h);
  be->ops->download(be, h, p, n);
  return h;
}

double parity_max_difference(const float *a, const float *b, size_t n, size_t *at) {
  double worst = 0.0;
  for (size_t i = 0; i < n; i++) {
    const double e = fabs((double)a[i] - b[i]);
    if (!(e <= worst)) worst = e, *at = i;
  }
  return worst;
}

void parity_count(parity_ctx *t, int ok) {
  t->checks++;
  t->failures += !ok;
}

void parity_expect_close_spread(parity_ctx *t, const char *what, const float *cpu_p,
                                const float *gpu_p, size_t n, double rtol, double spread) {
  float *a = parity_host_of(t->cpu, cpu_p, n), *b = parity_host_of(t->gpu, gpu_p, n);
  double scale = 1.0;
  for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(a[i]));
  size_t at = 0;
  const double worst = parity_max_difference(a, b, n, &at);
  const int ok =
      t->exact ? worst == 0.0 : worst <= fmax(rtol * scale, PARITY_SPREAD_FACTOR * spread);
  parity_count(t, ok);
  printf("%-4s %-48s max |gpu - cpu| %.3g (scale %.3g, %zu values)", ok ? "ok" : "FAIL", what,
         worst, scale, n);
  if (spread > 0.0) printf("; cpu under 1-ulp changes %.3g", spread);
  printf("\n");
  if (!ok) printf("     at %zu: cpu %.9g gpu %.9g\n", at, a[at], b[at]);
  free(a), free(b);
}

void parity_expect_close(parity_ctx *t, const char *what, const float *cpu_p, const float *gpu_p,
                         size_t n, double rtol) {
  parity_expect_close_spread(t, what, cpu_p, gpu_p, n, rtol, 0.0);
}

parity_pair parity_make_pair(parity_ctx *t, size_t n, float lo, float hi, uint32_t stream) {
  float *h = parity_random_floats(n, lo, hi, stream);
  parity_pair p = {parity_on(t->cpu, h, n), parity_on(t->gpu, h, n), n};
  free(h);
  return p;
}

void parity_free_pair(parity_ctx *t, parity_pair *p) {
  t->cpu->ops->free(t->cpu, p->c);
  t->gpu->ops->free(t->gpu, p->g);
}

void parity_check_pair(parity_ctx *t, const char *what, const parity_pair *p, double rtol) {
  parity_expect_close(t, what, p->c, p->g, p->n, rtol);
}

void parity_poison(parity_ctx *t, parity_pair *p) {
  t->cpu->ops->fill(t->cpu, p->c, NAN, p->n);
  t->gpu->ops->fill(t->gpu, p->g, NAN, p->n);
}

/* The optional path hooks. */
static void path_begin(const parity_ctx *t) {
  if (t->path_begin) t->path_begin();
}

static void expect_path(const parity_ctx *t, const char *what, int vec4, int stores) {
  if (t->expect_path) t->expect_path(what, vec4, stores);
}

/* ---- element-wise ops ---- */

void parity_test_elementwise(parity_ctx *t) {
  lfs_backend *cpu = t->cpu, *gpu = t->gpu;
  const size_t n = 100003;
  parity_pair a = parity_make_pair(t, n, -1, 1, 1), b = parity_make_pair(t, n, -1, 1, 2);
  parity_pair y = parity_make_pair(t, n, 0, 0, 3);
  cpu->ops->add_forward(cpu, y.c, a.c, b.c, n);
  gpu->ops->add_forward(gpu, y.g, a.g, b.g, n);
  parity_check_pair(t, "add", &y, 0);
  cpu->ops->axpy(cpu, y.c, -0.75f, a.c, n);
  gpu->ops->axpy(gpu, y.g, -0.75f, a.g, n);
  parity_check_pair(t, "axpy", &y, 1e-7);
  cpu->ops->fill(cpu, y.c, 2.5f, n);
  gpu->ops->fill(gpu, y.g, 2.5f, n);
  parity_check_pair(t, "fill", &y, 0);
  const lfs_rng rng = lfs_rng_make(11, LFS_RNG_DROPOUT, 3, 4);
  cpu->ops->dropout_forward(cpu, y.c, a.c, n, 0.3f, &rng);
  gpu->ops->dropout_forward(gpu, y.g, a.g, n, 0.3f, &rng);
  parity_check_pair(t, "dropout forward (same Philox mask)", &y, 0);
  cpu->ops->dropout_backward(cpu, y.c, b.c, n, 0.3f, &rng);
  gpu->ops->dropout_backward(gpu, y.g, b.g, n, 0.3f, &rng);
  parity_check_pair(t, "dropout backward (accumulates)", &y, 0);
  /* the copy stream: work issued after the copy sees it */
  float *h = parity_random_floats(n, -1, 1, 39), *staging = gpu->ops->host_alloc(gpu, n);
  memcpy(staging, h, n * sizeof *h);
  cpu->ops->upload(cpu, y.c, h, n);
  cpu->ops->axpy(cpu, y.c, 2.0f, a.c, n);
  gpu->ops->fill(gpu, b.g, 1.0f, n); /* work in flight beside the copy */
  gpu->ops->upload_async(gpu, y.g, staging, n);
  gpu->ops->axpy(gpu, y.g, 2.0f, a.g, n);
  parity_check_pair(t, "upload on the copy stream, then axpy", &y, 1e-7);
  gpu->ops->host_free(gpu, staging);
  free(h);
  parity_pair w = parity_make_pair(t, n, -1, 1, 33), v = parity_make_pair(t, n, -0.1f, 0.1f, 34);
  cpu->ops->sgd_step(cpu, w.c, v.c, a.c, n, 0.1f, 0.9f, 5e-4f);
  gpu->ops->sgd_step(gpu, w.g, v.g, a.g, n, 0.1f, 0.9f, 5e-4f);
  parity_check_pair(t, "sgd step: weights", &w, 1e-6);
  parity_check_pair(t, "sgd step: momentum", &v, 1e-6);
  parity_pair *all[] = {&a, &b, &y, &w, &v};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) parity_free_pair(t, all[i]);
}

/* ---- PReLU ---- */

static void prelu_name(char *what, size_t len, int n, int c, int s, const char *name) {
  snprintf(what, len, "prelu %dx%dx%d %s", n, c, s, name);
}

static void check_prelu(parity_ctx *t, int n, int c, int s, const char *name,
                        const parity_pair *p, double rtol) {
  char what[96];
  prelu_name(what, sizeof what, n, c, s, name);
  parity_check_pair(t, what, p, rtol);
}

static void prelu_backward_both(parity_ctx *t, int n, int c, int s, parity_pair *dx,
                                lfs_grad_write mode, parity_pair *da, const parity_pair *dy,
                                const parity_pair *x, const parity_pair *al, const char *name) {
  t->cpu->ops->prelu_backward(t->cpu, n, c, s, dx->c, mode, da ? da->c : NULL, dy->c, x->c, al->c);
  path_begin(t);
  t->gpu->ops->prelu_backward(t->gpu, n, c, s, dx->g, mode, da ? da->g : NULL, dy->g, x->g, al->g);
  char what[96];
  prelu_name(what, sizeof what, n, c, s, name);
  expect_path(t, what, s % 4 == 0, 1);
}

/* PReLU at one size: forward, then backward adding to dx and to dalpha, setting dx with
 * dalpha (one pass on a GPU), and setting dx alone; dx is NaN before it is set. */
static void test_prelu_at(parity_ctx *t, int n, int c, int s) {
  const size_t count = (size_t)n * c * s;
  parity_pair x = parity_make_pair(t, count, -1, 1, 4), al = parity_make_pair(t, c, 0, 0.5f, 5);
  parity_pair y = parity_make_pair(t, count, 0, 0, 6), dy = parity_make_pair(t, count, -1, 1, 7);
  parity_pair dx = parity_make_pair(t, count, -1, 1, 8), da = parity_make_pair(t, c, -1, 1, 9);
  char what[96];
  t->cpu->ops->prelu_forward(t->cpu, n, c, s, y.c, x.c, al.c);
  path_begin(t);
  t->gpu->ops->prelu_forward(t->gpu, n, c, s, y.g, x.g, al.g);
  prelu_name(what, sizeof what, n, c, s, "forward");
  expect_path(t, what, s % 4 == 0, 1);
  check_prelu(t, n, c, s, "forward", &y, 1e-7);
  prelu_backward_both(t, n, c, s, &dx, LFS_GRAD_ADD, &da, &dy, &x, &al, "backward, adding");
  check_prelu(t, n, c, s, "backward dx (accumulates)", &dx, 1e-7);
  check_prelu(t, n, c, s, "backward dalpha (accumulates)", &da, 1e-6);
  parity_poison(t, &dx);
  prelu_backward_both(t, n, c, s, &dx, LFS_GRAD_SET, &da, &dy, &x, &al, "backward, setting");
  check_prelu(t, n, c, s, "backward dx (sets, with dalpha)", &dx, 1e-7);
  check_prelu(t, n, c, s, "backward dalpha (with dx set)", &da, 1e-6);
  parity_poison(t, &dx);
  prelu_backward_both(t, n, c, s, &dx, LFS_GRAD_SET, NULL, &dy, &x, &al, "backward dx alone");
  check_prelu(t, n, c, s, "backward dx (sets)", &dx, 1e-7);
  parity_pair *all[] = {&x, &al, &y, &dy, &dx, &da};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) parity_free_pair(t, all[i]);
}

void parity_test_prelu(parity_ctx *t) {
  test_prelu_at(t, 3, 17, 49);
  /* a plane of 4k values: 4 at a time on a GPU, each channel over several blocks */
  test_prelu_at(t, 16, 6, 1024);
}

/* ---- linear: cuBLAS and the bias kernels ---- */

void parity_test_linear(parity_ctx *t) {
  lfs_backend *cpu = t->cpu, *gpu = t->gpu;
  const int n = 37, in = 129, out = 65;
  parity_pair x = parity_make_pair(t, (size_t)n * in, -1, 1, 10);
  parity_pair w = parity_make_pair(t, (size_t)out * in, -0.1f, 0.1f, 11);
  parity_pair b = parity_make_pair(t, out, -1, 1, 12);
  parity_pair y = parity_make_pair(t, (size_t)n * out, 0, 0, 13);
  parity_pair dy = parity_make_pair(t, (size_t)n * out, -1, 1, 14);
  parity_pair dx = parity_make_pair(t, (size_t)n * in, -1, 1, 15);
  parity_pair dw = parity_make_pair(t, (size_t)out * in, -1, 1, 16);
  parity_pair db = parity_make_pair(t, out, -1, 1, 17);
  cpu->ops->linear_forward(cpu, n, in, out, y.c, x.c, w.c, b.c);
  gpu->ops->linear_forward(gpu, n, in, out, y.g, x.g, w.g, b.g);
  parity_check_pair(t, "linear forward (cuBLAS, bias)", &y, 1e-5);
  cpu->ops->linear_backward(cpu, n, in, out, dx.c, dw.c, db.c, dy.c, x.c, w.c);
  gpu->ops->linear_backward(gpu, n, in, out, dx.g, dw.g, db.g, dy.g, x.g, w.g);
  parity_check_pair(t, "linear backward dx (accumulates)", &dx, 1e-5);
  parity_check_pair(t, "linear backward dw (accumulates)", &dw, 1e-5);
  parity_check_pair(t, "linear backward db (accumulates)", &db, 1e-6);
  parity_pair *all[] = {&x, &w, &b, &y, &dy, &dx, &dw, &db};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) parity_free_pair(t, all[i]);
}

/* ---- L2 normalisation ---- */

void parity_test_l2norm(parity_ctx *t) {
  lfs_backend *cpu = t->cpu, *gpu = t->gpu;
  const int rows = 9, cols = 515;
  const size_t n = (size_t)rows * cols;
  float *h = parity_random_floats(n, -1, 1, 18);
  memset(h + 4 * cols, 0, sizeof(float) * cols); /* a zero row: the norm is below eps */
  parity_pair x = {parity_on(cpu, h, n), parity_on(gpu, h, n), n};
  free(h);
  parity_pair y = parity_make_pair(t, n, 0, 0, 19), nrm = parity_make_pair(t, rows, 0, 0, 20);
  parity_pair dy = parity_make_pair(t, n, -1, 1, 21), dx = parity_make_pair(t, n, -1, 1, 22);
  cpu->ops->l2norm_forward(cpu, rows, cols, 1e-5f, y.c, nrm.c, x.c);
  gpu->ops->l2norm_forward(gpu, rows, cols, 1e-5f, y.g, nrm.g, x.g);
  parity_check_pair(t, "l2norm forward", &y, 1e-6);
  parity_check_pair(t, "l2norm norms", &nrm, 1e-6);
  cpu->ops->l2norm_backward(cpu, rows, cols, 1e-5f, dx.c, dy.c, y.c, nrm.c);
  gpu->ops->l2norm_backward(gpu, rows, cols, 1e-5f, dx.g, dy.g, y.g, nrm.g);
  /* row by row: the zero row's gradient (1/eps times dy) would set the scale
   * for all of them and hide an error in the others */
  for (int r = 0; r < rows; r++) {
    char what[64];
    snprintf(what, sizeof what, "l2norm backward row %d%s", r, r == 4 ? " (zero)" : "");
    parity_expect_close(t, what, dx.c + (size_t)r * cols, dx.g + (size_t)r * cols, (size_t)cols,
                        1e-5);
  }
  parity_pair *all[] = {&x, &y, &nrm, &dy, &dx};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) parity_free_pair(t, all[i]);
}

/* ---- batch norm ---- */

/* Two more ranks that hold this rank's batch, so every sum, and the count, triples. Any
 * correct way of summing the statistics over a group agrees with it: the CPU's (the sums,
 * then the squared deviations from the group's mean) and the GPU's (the sums of values and
 * squares at once). */
void parity_other_ranks(double *buf, int count, void *ctx) {
  (void)ctx;
  for (int i = 0; i < count; i++) buf[i] *= 3.0;
}

/* One of batch norm's outputs, named "<op> <size> <mode>: <name>". */
static void check_bn(parity_ctx *t, const char *op, const char *size, const char *mode,
                     const char *name, const parity_pair *p) {
  char what[96];
  snprintf(what, sizeof what, "%s %s %s: %s", op, size, mode, name);
  parity_check_pair(t, what, p, 1e-6);
}

static void bn_path_name(char *what, size_t len, const char *op, const char *size,
                         const char *mode) {
  snprintf(what, len, "batchnorm %s %s %s", op, size, mode);
}

typedef struct {
  parity_pair x, y, dy, dx, mean, invstd, gamma, beta, rmean, rvar, dgamma, dbeta, mdy, mdyx;
} bn_buffers;

static bn_buffers bn_make(parity_ctx *t, const lfs_bn_desc *d) {
  const size_t count = (size_t)d->n * d->c * d->spatial, c = (size_t)d->c;
  bn_buffers b;
  b.x = parity_make_pair(t, count, -2, 3, 23), b.y = parity_make_pair(t, count, 0, 0, 24);
  b.dy = parity_make_pair(t, count, -1, 1, 25), b.dx = parity_make_pair(t, count, -1, 1, 26);
  b.mean = parity_make_pair(t, c, 0, 0, 27), b.invstd = parity_make_pair(t, c, 0, 0, 28);
  b.gamma = parity_make_pair(t, c, 0.5f, 1.5f, 29), b.beta = parity_make_pair(t, c, -1, 1, 30);
  b.rmean = parity_make_pair(t, c, -0.5f, 0.5f, 31), b.rvar = parity_make_pair(t, c, 0.5f, 2, 32);
  b.dgamma = parity_make_pair(t, c, -1, 1, 35), b.dbeta = parity_make_pair(t, c, -1, 1, 36);
  b.mdy = parity_make_pair(t, c, 0, 0, 37), b.mdyx = parity_make_pair(t, c, 0, 0, 38);
  return b;
}

static void bn_free(parity_ctx *t, bn_buffers *b) {
  parity_pair *all[] = {&b->x,     &b->y,    &b->dy,    &b->dx,   &b->mean,
                        &b->invstd, &b->gamma, &b->beta, &b->rmean, &b->rvar,
                        &b->dgamma, &b->dbeta, &b->mdy,  &b->mdyx};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) parity_free_pair(t, all[i]);
}

/* Statistics and gradient terms in one mode (0 eval, 1 training, 2 group: the host round
 * trip of synchronised BN). */
static void test_bn_mode(parity_ctx *t, const lfs_bn_desc *d, const char *size, bn_buffers *b,
                         int mode) {
  lfs_backend *cpu = t->cpu, *gpu = t->gpu;
  const char *name = mode == 0 ? "eval" : mode == 1 ? "training" : "group";
  const lfs_bn_stats_cfg cfg = {.training = mode > 0, .eps = 1e-5, .momentum = 0.1,
                                .group_sum = mode == 2 ? parity_other_ranks : NULL};
  const int vec4 = d->spatial % 4 == 0;
  char what[96];
  const double nc = cpu->ops->batchnorm_stats(cpu, d, &cfg, b->mean.c, b->invstd.c, b->rmean.c,
                                              b->rvar.c, b->x.c);
  path_begin(t);
  const double ng = gpu->ops->batchnorm_stats(gpu, d, &cfg, b->mean.g, b->invstd.g, b->rmean.g,
                                              b->rvar.g, b->x.g);
  bn_path_name(what, sizeof what, "stats", size, name);
  expect_path(t, what, vec4 && mode > 0, 0); /* eval mode reads no x */
  parity_count(t, nc == ng);
  printf("%-4s batchnorm stats %s %s: count cpu %g gpu %g\n", nc == ng ? "ok" : "FAIL", size,
         name, nc, ng);
  check_bn(t, "batchnorm stats", size, name, "mean", &b->mean);
  check_bn(t, "batchnorm stats", size, name, "invstd", &b->invstd);
  check_bn(t, "batchnorm stats", size, name, "running mean", &b->rmean);
  check_bn(t, "batchnorm stats", size, name, "running var", &b->rvar);
  cpu->ops->batchnorm_grad_terms(cpu, d, &cfg, nc, b->dgamma.c, b->dbeta.c, b->mdy.c, b->mdyx.c,
                                 b->dy.c, b->x.c, b->mean.c, b->invstd.c);
  path_begin(t);
  gpu->ops->batchnorm_grad_terms(gpu, d, &cfg, ng, b->dgamma.g, b->dbeta.g, b->mdy.g, b->mdyx.g,
                                 b->dy.g, b->x.g, b->mean.g, b->invstd.g);
  bn_path_name(what, sizeof what, "grad terms", size, name);
  expect_path(t, what, vec4, 0);
  check_bn(t, "batchnorm grad terms", size, name, "dgamma", &b->dgamma);
  check_bn(t, "batchnorm grad terms", size, name, "dbeta", &b->dbeta);
  check_bn(t, "batchnorm grad terms", size, name, "mean dy", &b->mdy);
  check_bn(t, "batchnorm grad terms", size, name, "mean dy xhat", &b->mdyx);
}

/* The element-wise passes: apply, then backward adding to dx and setting a NaN dx. */
static void test_bn_apply(parity_ctx *t, const lfs_bn_desc *d, const char *size, bn_buffers *b) {
  lfs_backend *cpu = t->cpu, *gpu = t->gpu;
  const int vec4 = d->spatial % 4 == 0;
  char what[96];
  cpu->ops->batchnorm_apply(cpu, d, b->y.c, b->x.c, b->mean.c, b->invstd.c, b->gamma.c, b->beta.c);
  path_begin(t);
  gpu->ops->batchnorm_apply(gpu, d, b->y.g, b->x.g, b->mean.g, b->invstd.g, b->gamma.g, b->beta.g);
  bn_path_name(what, sizeof what, "apply", size, "");
  expect_path(t, what, vec4, 1);
  check_bn(t, "batchnorm apply", size, "", "y", &b->y);
  for (int set = 0; set < 2; set++) {
    const lfs_grad_write mode = set ? LFS_GRAD_SET : LFS_GRAD_ADD;
    if (set) parity_poison(t, &b->dx);
    cpu->ops->batchnorm_backward_apply(cpu, d, b->dx.c, mode, b->dy.c, b->x.c, b->gamma.c,
                                       b->mean.c, b->invstd.c, b->mdy.c, b->mdyx.c);
    path_begin(t);
    gpu->ops->batchnorm_backward_apply(gpu, d, b->dx.g, mode, b->dy.g, b->x.g, b->gamma.g,
                                       b->mean.g, b->invstd.g, b->mdy.g, b->mdyx.g);
    bn_path_name(what, sizeof what, "backward", size, set ? "setting" : "adding");
    expect_path(t, what, vec4, 1);
    check_bn(t, "batchnorm backward", size, "", set ? "dx (sets)" : "dx (accumulates)", &b->dx);
  }
}

/* Batch norm's statistics, gradient terms and element-wise passes at one size. */
static void test_batchnorm_at(parity_ctx *t, lfs_bn_desc d, const char *size) {
  bn_buffers b = bn_make(t, &d);
  for (int mode = 0; mode < 3; mode++) test_bn_mode(t, &d, size, &b, mode);
  test_bn_apply(t, &d, size, &b);
  bn_free(t, &b);
}

/* Statistics of channels whose mean is 3.5 million standard deviations from 0
 * (values 10,000 + 0.002 u, u in [-2, 3]) and whose running mean is near it:
 * sums of x and x^2 would lose all of float's precision there (43 of double's
 * 53 bits cancel), sums shifted by the running mean lose none. */
static void test_batchnorm_offset(parity_ctx *t) {
  lfs_backend *cpu = t->cpu, *gpu = t->gpu;
  const lfs_bn_desc d = {.n = 4, .c = 6, .spatial = 1000};
  const size_t count = (size_t)d.n * d.c * d.spatial, c = (size_t)d.c;
  const char *size = "mean 1e4, std 3e-3";
  parity_pair x = parity_make_pair(t, count, 10000.0f - 0.004f, 10000.0f + 0.006f, 43);
  parity_pair mean = parity_make_pair(t, c, 0, 0, 44), invstd = parity_make_pair(t, c, 0, 0, 45);
  parity_pair rmean = parity_make_pair(t, c, 10000.0f - 0.001f, 10000.0f + 0.001f, 46);
  parity_pair rvar = parity_make_pair(t, c, 0.5f, 2, 47);
  for (int mode = 1; mode < 3; mode++) {
    const char *name = mode == 1 ? "training" : "group";
    const lfs_bn_stats_cfg cfg = {.training = 1, .eps = 1e-5, .momentum = 0.1,
                                  .group_sum = mode == 2 ? parity_other_ranks : NULL};
    cpu->ops->batchnorm_stats(cpu, &d, &cfg, mean.c, invstd.c, rmean.c, rvar.c, x.c);
    gpu->ops->batchnorm_stats(gpu, &d, &cfg, mean.g, invstd.g, rmean.g, rvar.g, x.g);
    check_bn(t, "batchnorm stats", size, name, "mean", &mean);
    check_bn(t, "batchnorm stats", size, name, "invstd", &invstd);
    check_bn(t, "batchnorm stats", size, name, "running var", &rvar);
  }
  /* y to within float's precision of y itself: x - mean first (a shift of
   * beta - mean * scale would cost ulp(1e4 * 236), more than y's spread) */
  parity_pair y = parity_make_pair(t, count, 0, 0, 48);
  parity_pair gamma = parity_make_pair(t, c, 0.5f, 1.5f, 49);
  parity_pair beta = parity_make_pair(t, c, -1, 1, 50);
  cpu->ops->batchnorm_apply(cpu, &d, y.c, x.c, mean.c, invstd.c, gamma.c, beta.c);
  gpu->ops->batchnorm_apply(gpu, &d, y.g, x.g, mean.g, invstd.g, gamma.g, beta.g);
  check_bn(t, "batchnorm apply", size, "training", "y", &y);
  parity_pair *all[] = {&y, &gamma, &beta, &x, &mean, &invstd, &rmean, &rvar};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) parity_free_pair(t, all[i]);
}

void parity_test_batchnorm(parity_ctx *t) {
  test_batchnorm_offset(t);
  test_batchnorm_at(t, (lfs_bn_desc){.n = 5, .c = 24, .spatial = 63}, "5x24x63");
  /* 32,000 values a channel: on a GPU each channel is split over several blocks */
  test_batchnorm_at(t, (lfs_bn_desc){.n = 32, .c = 8, .spatial = 1000}, "32x8x1000");
  test_batchnorm_at(t, (lfs_bn_desc){.n = 7, .c = 40, .spatial = 1}, "BN1d 7x40");
}

/* ---- the margin head ---- */

int32_t *parity_head_labels(int B, int K) {
  int32_t *labels = malloc(sizeof(int32_t) * B);
  const lfs_rng r = lfs_rng_make(5, LFS_RNG_TEST, 64, 0);
  for (int i = 0; i < B; i++) labels[i] = (int32_t)lfs_rng_below(&r, (uint64_t)i, (uint64_t)K);
  labels[1] = labels[0]; /* two rows of one class */
  return labels;
}

lfs_head_cfg parity_head_cfg(lfs_loss_kind kind) {
  lfs_head_cfg cfg;
  lfs_head_cfg_init(&cfg, kind);
  return cfg;
}

/* x [B, D] from random values; where `near`, each row is mostly class weights, so that the
 * head's arg max (accuracy) has something to find: an even row its own class's, an odd row
 * another class's with some of its own, which comes second (a search that misses the first
 * finds the label). */
static float *head_inputs(parity_ctx *t, const parity_pair *w, const int32_t *labels, int B,
                          int D, int K, int near) {
  float *x = parity_random_floats((size_t)B * D, -1, 1, 60);
  if (!near) return x;
  float *wh = parity_host_of(t->cpu, w->c, w->n);
  for (int i = 0; i < B; i++) {
    const float *own = wh + (size_t)labels[i] * D;
    const float *other = wh + (size_t)((labels[i] + 1 + i) % K) * D;
    float *row = x + (size_t)i * D;
    for (int j = 0; j < D; j++)
      row[j] = i % 2 ? 20.0f * other[j] + 12.0f * own[j] + 0.05f * row[j]
                     : 20.0f * own[j] + 0.05f * row[j];
  }
  free(wh);
  return x;
}

static void check_head_rows(parity_ctx *t, lfs_head_cfg cfg, const char *what, int B, int D,
                            int K, int near) {
  parity_pair w = parity_make_pair(t, (size_t)K * D, -0.05f, 0.05f, 61);
  parity_pair dx = parity_make_pair(t, (size_t)B * D, -1, 1, 62);
  parity_pair dw = parity_make_pair(t, (size_t)K * D, -1, 1, 63);
  int32_t *labels = parity_head_labels(B, K);
  float *xh = head_inputs(t, &w, labels, B, D, K, near);
  parity_pair x = {parity_on(t->cpu, xh, (size_t)B * D), parity_on(t->gpu, xh, (size_t)B * D),
                   (size_t)B * D};
  free(xh);
  lfs_head_stats sc, sg;
  const double lc =
      t->cpu->ops->head_loss(t->cpu, &cfg, B, D, K, dx.c, dw.c, &sc, x.c, w.c, labels);
  const double lg =
      t->gpu->ops->head_loss(t->gpu, &cfg, B, D, K, dx.g, dw.g, &sg, x.g, w.g, labels);
  const int ok = fabs(lc - lg) <= 1e-5 * fmax(1.0, fabs(lc)) &&
                 fabs(sc.mean_p_y - sg.mean_p_y) <= 1e-6 &&
                 fabs(sc.mean_cos_y - sg.mean_cos_y) <= 1e-6 && sc.accuracy == sg.accuracy;
  parity_count(t, ok);
  printf("%-4s head %-43s loss cpu %.9g gpu %.9g; p_y %.6g/%.6g; accuracy %.3g/%.3g\n",
         ok ? "ok" : "FAIL", what, lc, lg, sc.mean_p_y, sg.mean_p_y, sc.accuracy, sg.accuracy);
  char name[128];
  snprintf(name, sizeof name, "head %s dx (accumulates)", what);
  parity_check_pair(t, name, &dx, 1e-5);
  snprintf(name, sizeof name, "head %s dw (accumulates)", what);
  parity_check_pair(t, name, &dw, 1e-5);
  free(labels);
  parity_pair *all[] = {&x, &w, &dx, &dw};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) parity_free_pair(t, all[i]);
}

static void check_head(parity_ctx *t, lfs_head_cfg cfg, const char *what, int B, int D, int K) {
  check_head_rows(t, cfg, what, B, D, K, 0);
}

void parity_test_head(parity_ctx *t) {
  const int B = 24, D = 64, K = 3001;
  check_head(t, parity_head_cfg(LFS_LOSS_SOFTMAX), "softmax", B, D, K);
  check_head(t, parity_head_cfg(LFS_LOSS_COSFACE), "cosface", B, D, K);
  check_head(t, parity_head_cfg(LFS_LOSS_ARCFACE), "arcface", B, D, K);
  lfs_head_cfg sphere = parity_head_cfg(LFS_LOSS_SPHEREFACE);
  sphere.iteration = 20000;
  check_head(t, sphere, "sphereface (lambda annealed)", B, D, K);
  check_head(t, parity_head_cfg(LFS_LOSS_COMBINED), "combined", B, D, K);
  check_head(t, parity_head_cfg(LFS_LOSS_MV_SOFTMAX), "mv_softmax adaptive", B, D, K);
  lfs_head_cfg mvf = parity_head_cfg(LFS_LOSS_MV_SOFTMAX);
  mvf.mv_mode = LFS_MV_FIXED, mvf.mv_t = 0.2;
  check_head(t, mvf, "mv_softmax fixed", B, D, K);
  lfs_head_cfg search = parity_head_cfg(LFS_LOSS_SEARCH_SOFTMAX);
  search.a = -3000.0;
  check_head(t, search, "search_softmax a = -3000", B, D, K);
  lfs_head_cfg am = parity_head_cfg(LFS_LOSS_AMLFS);
  am.amlfs_tau = 1;
  for (int j = 0; j < am.amlfs_n; j++) {
    am.amlfs_alpha[j] = 1.0 + 0.05 * j, am.amlfs_beta[j] = -0.02 * j;
    am.tau_alpha[j] = 1.0 - 0.03 * j, am.tau_beta[j] = 0.01 * j;
  }
  check_head(t, am, "amlfs with tau", B, D, K);
  if (t->head_rows_near_class)
    check_head_rows(t, parity_head_cfg(LFS_LOSS_COSFACE), "cosface, rows near a class", B, D, K,
                    1);
  check_head(t, parity_head_cfg(LFS_LOSS_ARCFACE), "arcface, 100,003 classes", 8, 128, 100003);
}

/* ---- convolutions ---- */

static void test_conv(parity_ctx *t, lfs_conv_desc d, const char *what) {
  lfs_backend *cpu = t->cpu, *gpu = t->gpu;
  if (lfs_conv_desc_init(&d) != 0) {
    printf("FAIL bad geometry for %s\n", what);
    parity_count(t, 0);
    return;
  }
  const size_t nx = (size_t)d.n * d.in_c * d.in_h * d.in_w;
  const size_t ny = (size_t)d.n * d.out_c * d.out_h * d.out_w;
  const size_t nw = (size_t)d.out_c * (d.in_c / d.groups) * d.kh * d.kw;
  parity_pair x = parity_make_pair(t, nx, -1, 1, 40), w = parity_make_pair(t, nw, -0.2f, 0.2f, 41);
  parity_pair b = parity_make_pair(t, d.out_c, -1, 1, 42), y = parity_make_pair(t, ny, 0, 0, 43);
  parity_pair dy = parity_make_pair(t, ny, -1, 1, 44), dx = parity_make_pair(t, nx, -1, 1, 45);
  parity_pair dw = parity_make_pair(t, nw, -1, 1, 46);
  parity_pair db = parity_make_pair(t, d.out_c, -1, 1, 47);
  char name[128];
  cpu->ops->conv2d_forward(cpu, &d, y.c, x.c, w.c, d.has_bias ? b.c : NULL);
  gpu->ops->conv2d_forward(gpu, &d, y.g, x.g, w.g, d.has_bias ? b.g : NULL);
  snprintf(name, sizeof name, "conv %s forward", what);
  parity_check_pair(t, name, &y, 2e-5);
  cpu->ops->conv2d_backward(cpu, &d, dx.c, LFS_GRAD_ADD, dw.c, d.has_bias ? db.c : NULL, dy.c,
                            x.c, w.c);
  gpu->ops->conv2d_backward(gpu, &d, dx.g, LFS_GRAD_ADD, dw.g, d.has_bias ? db.g : NULL, dy.g,
                            x.g, w.g);
  snprintf(name, sizeof name, "conv %s backward dx", what);
  parity_check_pair(t, name, &dx, 2e-5);
  parity_poison(t, &dx); /* dx alone, set */
  cpu->ops->conv2d_backward(cpu, &d, dx.c, LFS_GRAD_SET, NULL, NULL, dy.c, x.c, w.c);
  gpu->ops->conv2d_backward(gpu, &d, dx.g, LFS_GRAD_SET, NULL, NULL, dy.g, x.g, w.g);
  snprintf(name, sizeof name, "conv %s backward dx (sets)", what);
  parity_check_pair(t, name, &dx, 2e-5);
  snprintf(name, sizeof name, "conv %s backward dw", what);
  parity_check_pair(t, name, &dw, 2e-5);
  if (d.has_bias) {
    snprintf(name, sizeof name, "conv %s backward db", what);
    parity_check_pair(t, name, &db, 1e-5);
  }
  parity_pair *all[] = {&x, &w, &b, &y, &dy, &dx, &dw, &db};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) parity_free_pair(t, all[i]);
}

/* Plain, strided at an odd size, 1x1 with a bias, depthwise, and grouped without padding. */
void parity_test_convolutions(parity_ctx *t) {
  static const struct {
    lfs_conv_desc d;
    const char *what;
  } cases[] = {
      {{.n = 4, .in_c = 16, .in_h = 14, .in_w = 14, .out_c = 32, .kh = 3, .kw = 3, .stride = 1,
        .pad = 1, .groups = 1}, "3x3 s1 p1"},
      {{.n = 4, .in_c = 16, .in_h = 15, .in_w = 15, .out_c = 24, .kh = 3, .kw = 3, .stride = 2,
        .pad = 1, .groups = 1}, "3x3 s2 p1 (odd size)"},
      {{.n = 2, .in_c = 32, .in_h = 7, .in_w = 7, .out_c = 64, .kh = 1, .kw = 1, .stride = 2,
        .pad = 0, .groups = 1, .has_bias = 1}, "1x1 s2 + bias"},
      {{.n = 3, .in_c = 24, .in_h = 12, .in_w = 12, .out_c = 24, .kh = 3, .kw = 3, .stride = 1,
        .pad = 1, .groups = 24}, "3x3 depthwise"},
      {{.n = 2, .in_c = 16, .in_h = 9, .in_w = 9, .out_c = 32, .kh = 3, .kw = 3, .stride = 1,
        .pad = 0, .groups = 4}, "3x3 4 groups p0"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    test_conv(t, cases[i].d, cases[i].what);
}
