/* test_cuda_emulated.c: the CUDA kernels of cuda_channel.cu, cuda_norm.cu, cuda_pointwise.cu
 * and cuda_head.cu, run on the host through the emulation of tests/gpu/emu (cuda_emu.h says
 * what it emulates and what it cannot), against the CPU reference backend, on any machine:
 * the cases and tolerances of tests/gpu/test_cuda_parity.c without its convolutions and
 * whole networks (cuDNN is not emulated): fill, add, axpy, dropout, SGD, the copy queued
 * behind other work, PReLU (dx and dalpha in one pass, adding and setting a NaN-poisoned
 * dx), linear's bias kernels, L2 normalisation (its backward row by row), batch norm in
 * eval mode, training mode and with a stand-in group (the mean-1e4 case too), its
 * gradient terms, apply and backward (adding and setting), and the margin head of every
 * loss, its rows cut into parts (3,001 classes: 2 parts; 100,003: 97), once with rows near
 * a class, half of them their own (the parity test's accuracy is 0 throughout). Also
 * checks that the per-channel kernels load and store 16 bytes at a time exactly where the
 * plane is a multiple of 4, that every launch is followed by its error check, and that the
 * results keep their bits when the blocks run in reverse order and each block's threads in
 * shuffled order. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emu/emu_backend.h"
#include "lfs/backend.h"
#include "lfs/philox.h"
#include "lfs/runtime.h"

static lfs_backend *cpu, *gpu;
static int failures, checks;

static float *random_floats(size_t n, float lo, float hi, uint32_t stream) {
  float *x = malloc((n ? n : 1) * sizeof *x);
  const lfs_rng r = lfs_rng_make(2024, LFS_RNG_TEST, stream, 0);
  for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * lfs_rng_uniform(&r, i);
  return x;
}

static float *on(lfs_backend *be, const float *host, size_t n) {
  float *p = be->ops->alloc(be, n);
  be->ops->upload(be, p, host, n);
  return p;
}

static float *host_of(lfs_backend *be, const float *p, size_t n) {
  float *h = malloc((n ? n : 1) * sizeof *h);
  be->ops->download(be, h, p, n);
  return h;
}

static void count_check(int ok) {
  checks++;
  failures += !ok;
}

/* |gpu - cpu| <= rtol * max(1, max |cpu|), as test_cuda_parity.c; a NaN fails. */
static void expect_close(const char *what, const float *cpu_p, const float *gpu_p, size_t n,
                         double rtol) {
  float *a = host_of(cpu, cpu_p, n), *b = host_of(gpu, gpu_p, n);
  double scale = 1.0, worst = 0.0;
  size_t at = 0;
  for (size_t i = 0; i < n; i++) {
    scale = fmax(scale, fabs(a[i]));
    const double e = fabs((double)a[i] - b[i]);
    if (!(e <= worst)) worst = e, at = i;
  }
  const int ok = worst <= rtol * scale;
  count_check(ok);
  printf("%-4s %-48s max |gpu - cpu| %.3g (scale %.3g, %zu values)\n", ok ? "ok" : "FAIL", what,
         worst, scale, n);
  if (!ok) printf("     at %zu: cpu %.9g gpu %.9g\n", at, a[at], b[at]);
  free(a), free(b);
}

/* A pair of backend buffers holding the same host data. */
typedef struct {
  float *c, *g;
  size_t n;
} pair;

static pair make_pair(size_t n, float lo, float hi, uint32_t stream) {
  float *h = random_floats(n, lo, hi, stream);
  pair p = {on(cpu, h, n), on(gpu, h, n), n};
  free(h);
  return p;
}

static void free_pair(pair *p) {
  cpu->ops->free(cpu, p->c);
  gpu->ops->free(gpu, p->g);
}

static void check_pair(const char *what, const pair *p, double rtol) {
  expect_close(what, p->c, p->g, p->n, rtol);
}

/* Both copies become NaN: an op that sets its output (LFS_GRAD_SET) must not read it. */
static void poison(pair *p) {
  cpu->ops->fill(cpu, p->c, NAN, p->n);
  gpu->ops->fill(gpu, p->g, NAN, p->n);
}

/* ---- which path the per-channel kernels took ---- */

static lfs_emu_counts path_mark;

static void path_begin(void) {
  gpu->ops->synchronize(gpu);
  path_mark = lfs_emu_counts_now();
}

/* Since path_begin: 16-byte loads (and stores, where `stores`) where `vec4`, none otherwise. */
static void expect_path(const char *what, int vec4, int stores) {
  gpu->ops->synchronize(gpu);
  const lfs_emu_counts now = lfs_emu_counts_now();
  const long loads = now.vec4_loads - path_mark.vec4_loads;
  const long stored = now.vec4_stores - path_mark.vec4_stores;
  const int ok = vec4 ? loads > 0 && (stored > 0) == (stores != 0) : loads == 0 && stored == 0;
  count_check(ok);
  printf("%-4s %-48s %s path: %ld 16-byte loads, %ld stores\n", ok ? "ok" : "FAIL", what,
         vec4 ? "float4" : "scalar", loads, stored);
}

/* ---- element-wise ops ---- */

static void test_elementwise(void) {
  const size_t n = 100003;
  pair a = make_pair(n, -1, 1, 1), b = make_pair(n, -1, 1, 2), y = make_pair(n, 0, 0, 3);
  cpu->ops->add_forward(cpu, y.c, a.c, b.c, n);
  gpu->ops->add_forward(gpu, y.g, a.g, b.g, n);
  check_pair("add", &y, 0);
  cpu->ops->axpy(cpu, y.c, -0.75f, a.c, n);
  gpu->ops->axpy(gpu, y.g, -0.75f, a.g, n);
  check_pair("axpy", &y, 1e-7);
  cpu->ops->fill(cpu, y.c, 2.5f, n);
  gpu->ops->fill(gpu, y.g, 2.5f, n);
  check_pair("fill", &y, 0);
  const lfs_rng rng = lfs_rng_make(11, LFS_RNG_DROPOUT, 3, 4);
  cpu->ops->dropout_forward(cpu, y.c, a.c, n, 0.3f, &rng);
  gpu->ops->dropout_forward(gpu, y.g, a.g, n, 0.3f, &rng);
  check_pair("dropout forward (same Philox mask)", &y, 0);
  cpu->ops->dropout_backward(cpu, y.c, b.c, n, 0.3f, &rng);
  gpu->ops->dropout_backward(gpu, y.g, b.g, n, 0.3f, &rng);
  check_pair("dropout backward (accumulates)", &y, 0);
  /* the copy from page-locked memory runs in stream order, after the work before it */
  float *h = random_floats(n, -1, 1, 39), *staging = gpu->ops->host_alloc(gpu, n);
  memcpy(staging, h, n * sizeof *h);
  cpu->ops->upload(cpu, y.c, h, n);
  cpu->ops->axpy(cpu, y.c, 2.0f, a.c, n);
  gpu->ops->fill(gpu, y.g, 1.0f, n);
  gpu->ops->upload_async(gpu, y.g, staging, n);
  gpu->ops->axpy(gpu, y.g, 2.0f, a.g, n);
  check_pair("queued upload after a fill, then axpy", &y, 1e-7);
  gpu->ops->host_free(gpu, staging);
  free(h);
  pair w = make_pair(n, -1, 1, 33), v = make_pair(n, -0.1f, 0.1f, 34);
  cpu->ops->sgd_step(cpu, w.c, v.c, a.c, n, 0.1f, 0.9f, 5e-4f);
  gpu->ops->sgd_step(gpu, w.g, v.g, a.g, n, 0.1f, 0.9f, 5e-4f);
  check_pair("sgd step: weights", &w, 1e-6);
  check_pair("sgd step: momentum", &v, 1e-6);
  free_pair(&a), free_pair(&b), free_pair(&y), free_pair(&w), free_pair(&v);
}

/* ---- PReLU ---- */

static void prelu_name(char *what, size_t len, int n, int c, int s, const char *name) {
  snprintf(what, len, "prelu %dx%dx%d %s", n, c, s, name);
}

static void check_prelu(int n, int c, int s, const char *name, const pair *p, double rtol) {
  char what[96];
  prelu_name(what, sizeof what, n, c, s, name);
  check_pair(what, p, rtol);
}

static void prelu_backward_both(int n, int c, int s, pair *dx, lfs_grad_write mode, pair *da,
                                const pair *dy, const pair *x, const pair *al, const char *name) {
  cpu->ops->prelu_backward(cpu, n, c, s, dx->c, mode, da ? da->c : NULL, dy->c, x->c, al->c);
  path_begin();
  gpu->ops->prelu_backward(gpu, n, c, s, dx->g, mode, da ? da->g : NULL, dy->g, x->g, al->g);
  char what[96];
  prelu_name(what, sizeof what, n, c, s, name);
  expect_path(what, s % 4 == 0, 1);
}

/* Forward, then backward adding to dx and dalpha, setting dx with dalpha (one pass), and
 * setting dx alone; dx is NaN before it is set. */
static void test_prelu_at(int n, int c, int s) {
  const size_t count = (size_t)n * c * s;
  pair x = make_pair(count, -1, 1, 4), al = make_pair(c, 0, 0.5f, 5);
  pair y = make_pair(count, 0, 0, 6), dy = make_pair(count, -1, 1, 7);
  pair dx = make_pair(count, -1, 1, 8), da = make_pair(c, -1, 1, 9);
  char what[96];
  cpu->ops->prelu_forward(cpu, n, c, s, y.c, x.c, al.c);
  path_begin();
  gpu->ops->prelu_forward(gpu, n, c, s, y.g, x.g, al.g);
  prelu_name(what, sizeof what, n, c, s, "forward");
  expect_path(what, s % 4 == 0, 1);
  check_prelu(n, c, s, "forward", &y, 1e-7);
  prelu_backward_both(n, c, s, &dx, LFS_GRAD_ADD, &da, &dy, &x, &al, "backward, adding");
  check_prelu(n, c, s, "backward dx (accumulates)", &dx, 1e-7);
  check_prelu(n, c, s, "backward dalpha (accumulates)", &da, 1e-6);
  poison(&dx);
  prelu_backward_both(n, c, s, &dx, LFS_GRAD_SET, &da, &dy, &x, &al, "backward, setting");
  check_prelu(n, c, s, "backward dx (sets, with dalpha)", &dx, 1e-7);
  check_prelu(n, c, s, "backward dalpha (with dx set)", &da, 1e-6);
  poison(&dx);
  prelu_backward_both(n, c, s, &dx, LFS_GRAD_SET, NULL, &dy, &x, &al, "backward dx alone");
  check_prelu(n, c, s, "backward dx (sets)", &dx, 1e-7);
  free_pair(&x), free_pair(&al), free_pair(&y), free_pair(&dy), free_pair(&dx), free_pair(&da);
}

static void test_prelu(void) {
  test_prelu_at(3, 17, 49);
  /* a plane of 4k values: 4 at a time, each channel over several blocks */
  test_prelu_at(16, 6, 1024);
}

/* ---- linear: cuBLAS (emulated) and the bias kernels ---- */

static void test_linear(void) {
  const int n = 37, in = 129, out = 65;
  pair x = make_pair((size_t)n * in, -1, 1, 10), w = make_pair((size_t)out * in, -0.1f, 0.1f, 11);
  pair b = make_pair(out, -1, 1, 12), y = make_pair((size_t)n * out, 0, 0, 13);
  pair dy = make_pair((size_t)n * out, -1, 1, 14), dx = make_pair((size_t)n * in, -1, 1, 15);
  pair dw = make_pair((size_t)out * in, -1, 1, 16), db = make_pair(out, -1, 1, 17);
  cpu->ops->linear_forward(cpu, n, in, out, y.c, x.c, w.c, b.c);
  gpu->ops->linear_forward(gpu, n, in, out, y.g, x.g, w.g, b.g);
  check_pair("linear forward (bias)", &y, 1e-5);
  cpu->ops->linear_backward(cpu, n, in, out, dx.c, dw.c, db.c, dy.c, x.c, w.c);
  gpu->ops->linear_backward(gpu, n, in, out, dx.g, dw.g, db.g, dy.g, x.g, w.g);
  check_pair("linear backward dx (accumulates)", &dx, 1e-5);
  check_pair("linear backward dw (accumulates)", &dw, 1e-5);
  check_pair("linear backward db (accumulates)", &db, 1e-6);
  pair *all[] = {&x, &w, &b, &y, &dy, &dx, &dw, &db};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free_pair(all[i]);
}

/* ---- L2 normalisation ---- */

static void test_l2norm(void) {
  const int rows = 9, cols = 515;
  const size_t n = (size_t)rows * cols;
  float *h = random_floats(n, -1, 1, 18);
  memset(h + 4 * cols, 0, sizeof(float) * cols); /* a zero row: the norm is below eps */
  pair x = {on(cpu, h, n), on(gpu, h, n), n};
  free(h);
  pair y = make_pair(n, 0, 0, 19), nrm = make_pair(rows, 0, 0, 20);
  pair dy = make_pair(n, -1, 1, 21), dx = make_pair(n, -1, 1, 22);
  cpu->ops->l2norm_forward(cpu, rows, cols, 1e-5f, y.c, nrm.c, x.c);
  gpu->ops->l2norm_forward(gpu, rows, cols, 1e-5f, y.g, nrm.g, x.g);
  check_pair("l2norm forward", &y, 1e-6);
  check_pair("l2norm norms", &nrm, 1e-6);
  cpu->ops->l2norm_backward(cpu, rows, cols, 1e-5f, dx.c, dy.c, y.c, nrm.c);
  gpu->ops->l2norm_backward(gpu, rows, cols, 1e-5f, dx.g, dy.g, y.g, nrm.g);
  /* row by row: the zero row's gradient (dy / eps) would set the scale for all */
  for (int r = 0; r < rows; r++) {
    char what[64];
    snprintf(what, sizeof what, "l2norm backward row %d%s", r, r == 4 ? " (zero)" : "");
    expect_close(what, dx.c + (size_t)r * cols, dx.g + (size_t)r * cols, (size_t)cols, 1e-5);
  }
  free_pair(&x), free_pair(&y), free_pair(&nrm), free_pair(&dy), free_pair(&dx);
}

/* ---- batch norm ---- */

/* A stand-in for two more ranks of a synchronised-BN group holding this rank's batch: every
 * sum, and the count, triples (test_cuda_parity.c's). */
static void other_ranks(double *buf, int count, void *ctx) {
  (void)ctx;
  for (int i = 0; i < count; i++) buf[i] *= 3.0;
}

static void check_bn(const char *op, const char *size, const char *mode, const char *name,
                     const pair *p) {
  char what[96];
  snprintf(what, sizeof what, "%s %s %s: %s", op, size, mode, name);
  check_pair(what, p, 1e-6);
}

static void bn_path_name(char *what, size_t len, const char *op, const char *size,
                         const char *mode) {
  snprintf(what, len, "batchnorm %s %s %s", op, size, mode);
}

typedef struct {
  pair x, y, dy, dx, mean, invstd, gamma, beta, rmean, rvar, dgamma, dbeta, mdy, mdyx;
} bn_buffers;

static bn_buffers bn_make(const lfs_bn_desc *d) {
  const size_t count = (size_t)d->n * d->c * d->spatial, c = (size_t)d->c;
  bn_buffers b;
  b.x = make_pair(count, -2, 3, 23), b.y = make_pair(count, 0, 0, 24);
  b.dy = make_pair(count, -1, 1, 25), b.dx = make_pair(count, -1, 1, 26);
  b.mean = make_pair(c, 0, 0, 27), b.invstd = make_pair(c, 0, 0, 28);
  b.gamma = make_pair(c, 0.5f, 1.5f, 29), b.beta = make_pair(c, -1, 1, 30);
  b.rmean = make_pair(c, -0.5f, 0.5f, 31), b.rvar = make_pair(c, 0.5f, 2, 32);
  b.dgamma = make_pair(c, -1, 1, 35), b.dbeta = make_pair(c, -1, 1, 36);
  b.mdy = make_pair(c, 0, 0, 37), b.mdyx = make_pair(c, 0, 0, 38);
  return b;
}

static void bn_free(bn_buffers *b) {
  pair *all[] = {&b->x,    &b->y,     &b->dy,   &b->dx,     &b->mean,  &b->invstd, &b->gamma,
                 &b->beta, &b->rmean, &b->rvar, &b->dgamma, &b->dbeta, &b->mdy,    &b->mdyx};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free_pair(all[i]);
}

/* Statistics and gradient terms in one mode (0 eval, 1 training, 2 group). */
static void test_bn_mode(const lfs_bn_desc *d, const char *size, bn_buffers *b, int mode) {
  const char *name = mode == 0 ? "eval" : mode == 1 ? "training" : "group";
  const lfs_bn_stats_cfg cfg = {.training = mode > 0, .eps = 1e-5, .momentum = 0.1,
                                .group_sum = mode == 2 ? other_ranks : NULL};
  const int vec4 = d->spatial % 4 == 0;
  char what[96];
  const double nc = cpu->ops->batchnorm_stats(cpu, d, &cfg, b->mean.c, b->invstd.c, b->rmean.c,
                                              b->rvar.c, b->x.c);
  path_begin();
  const double ng = gpu->ops->batchnorm_stats(gpu, d, &cfg, b->mean.g, b->invstd.g, b->rmean.g,
                                              b->rvar.g, b->x.g);
  bn_path_name(what, sizeof what, "stats", size, name);
  expect_path(what, vec4 && mode > 0, 0); /* eval mode reads no x */
  count_check(nc == ng);
  printf("%-4s batchnorm stats %s %s: count cpu %g gpu %g\n", nc == ng ? "ok" : "FAIL", size,
         name, nc, ng);
  check_bn("batchnorm stats", size, name, "mean", &b->mean);
  check_bn("batchnorm stats", size, name, "invstd", &b->invstd);
  check_bn("batchnorm stats", size, name, "running mean", &b->rmean);
  check_bn("batchnorm stats", size, name, "running var", &b->rvar);
  cpu->ops->batchnorm_grad_terms(cpu, d, &cfg, nc, b->dgamma.c, b->dbeta.c, b->mdy.c, b->mdyx.c,
                                 b->dy.c, b->x.c, b->mean.c, b->invstd.c);
  path_begin();
  gpu->ops->batchnorm_grad_terms(gpu, d, &cfg, ng, b->dgamma.g, b->dbeta.g, b->mdy.g, b->mdyx.g,
                                 b->dy.g, b->x.g, b->mean.g, b->invstd.g);
  bn_path_name(what, sizeof what, "grad terms", size, name);
  expect_path(what, vec4, 0);
  check_bn("batchnorm grad terms", size, name, "dgamma", &b->dgamma);
  check_bn("batchnorm grad terms", size, name, "dbeta", &b->dbeta);
  check_bn("batchnorm grad terms", size, name, "mean dy", &b->mdy);
  check_bn("batchnorm grad terms", size, name, "mean dy xhat", &b->mdyx);
}

/* The element-wise passes: apply, then backward adding to dx and setting a NaN dx. */
static void test_bn_apply(const lfs_bn_desc *d, const char *size, bn_buffers *b) {
  const int vec4 = d->spatial % 4 == 0;
  char what[96];
  cpu->ops->batchnorm_apply(cpu, d, b->y.c, b->x.c, b->mean.c, b->invstd.c, b->gamma.c, b->beta.c);
  path_begin();
  gpu->ops->batchnorm_apply(gpu, d, b->y.g, b->x.g, b->mean.g, b->invstd.g, b->gamma.g, b->beta.g);
  bn_path_name(what, sizeof what, "apply", size, "");
  expect_path(what, vec4, 1);
  check_bn("batchnorm apply", size, "", "y", &b->y);
  for (int set = 0; set < 2; set++) {
    const lfs_grad_write mode = set ? LFS_GRAD_SET : LFS_GRAD_ADD;
    if (set) poison(&b->dx);
    cpu->ops->batchnorm_backward_apply(cpu, d, b->dx.c, mode, b->dy.c, b->x.c, b->gamma.c,
                                       b->mean.c, b->invstd.c, b->mdy.c, b->mdyx.c);
    path_begin();
    gpu->ops->batchnorm_backward_apply(gpu, d, b->dx.g, mode, b->dy.g, b->x.g, b->gamma.g,
                                       b->mean.g, b->invstd.g, b->mdy.g, b->mdyx.g);
    bn_path_name(what, sizeof what, "backward", size, set ? "setting" : "adding");
    expect_path(what, vec4, 1);
    check_bn("batchnorm backward", size, "", set ? "dx (sets)" : "dx (accumulates)", &b->dx);
  }
}

static void test_batchnorm_at(lfs_bn_desc d, const char *size) {
  bn_buffers b = bn_make(&d);
  for (int mode = 0; mode < 3; mode++) test_bn_mode(&d, size, &b, mode);
  test_bn_apply(&d, size, &b);
  bn_free(&b);
}

/* Channels 10,000 + 0.002 u (u in [-2, 3]) with the running mean near them: the sums
 * shifted by the running mean keep the precision that sums of x and x^2 would lose. */
static void test_batchnorm_offset(void) {
  const lfs_bn_desc d = {.n = 4, .c = 6, .spatial = 1000};
  const size_t count = (size_t)d.n * d.c * d.spatial, c = (size_t)d.c;
  pair x = make_pair(count, 10000.0f - 0.004f, 10000.0f + 0.006f, 43);
  pair mean = make_pair(c, 0, 0, 44), invstd = make_pair(c, 0, 0, 45);
  pair rmean = make_pair(c, 10000.0f - 0.001f, 10000.0f + 0.001f, 46);
  pair rvar = make_pair(c, 0.5f, 2, 47);
  for (int mode = 1; mode < 3; mode++) {
    const char *name = mode == 1 ? "training" : "group";
    const lfs_bn_stats_cfg cfg = {.training = 1, .eps = 1e-5, .momentum = 0.1,
                                  .group_sum = mode == 2 ? other_ranks : NULL};
    cpu->ops->batchnorm_stats(cpu, &d, &cfg, mean.c, invstd.c, rmean.c, rvar.c, x.c);
    gpu->ops->batchnorm_stats(gpu, &d, &cfg, mean.g, invstd.g, rmean.g, rvar.g, x.g);
    check_bn("batchnorm stats", "mean 1e4, std 3e-3", name, "mean", &mean);
    check_bn("batchnorm stats", "mean 1e4, std 3e-3", name, "invstd", &invstd);
    check_bn("batchnorm stats", "mean 1e4, std 3e-3", name, "running var", &rvar);
  }
  /* y to within float's precision of y: x - mean first, as the CPU */
  pair y = make_pair(count, 0, 0, 48), gamma = make_pair(c, 0.5f, 1.5f, 49);
  pair beta = make_pair(c, -1, 1, 50);
  cpu->ops->batchnorm_apply(cpu, &d, y.c, x.c, mean.c, invstd.c, gamma.c, beta.c);
  gpu->ops->batchnorm_apply(gpu, &d, y.g, x.g, mean.g, invstd.g, gamma.g, beta.g);
  check_bn("batchnorm apply", "mean 1e4, std 3e-3", "training", "y", &y);
  free_pair(&y), free_pair(&gamma), free_pair(&beta);
  pair *all[] = {&x, &mean, &invstd, &rmean, &rvar};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free_pair(all[i]);
}

static void test_batchnorm(void) {
  test_batchnorm_offset();
  test_batchnorm_at((lfs_bn_desc){.n = 5, .c = 24, .spatial = 63}, "5x24x63");
  /* 32,000 values a channel: each channel split over several blocks */
  test_batchnorm_at((lfs_bn_desc){.n = 32, .c = 8, .spatial = 1000}, "32x8x1000");
  test_batchnorm_at((lfs_bn_desc){.n = 7, .c = 40, .spatial = 1}, "BN1d 7x40");
}

/* ---- the margin head ---- */

static int32_t *head_labels(int B, int K) {
  int32_t *labels = malloc(sizeof(int32_t) * B);
  const lfs_rng r = lfs_rng_make(5, LFS_RNG_TEST, 64, 0);
  for (int i = 0; i < B; i++) labels[i] = (int32_t)lfs_rng_below(&r, (uint64_t)i, (uint64_t)K);
  labels[1] = labels[0]; /* two rows of one class */
  return labels;
}

/* x [B, D] from random values; where `near`, each row is mostly class weights, so that the
 * head's arg max (accuracy) has something to find: an even row its own class's, an odd row
 * another class's with some of its own, which comes second (a search that misses the first
 * finds the label). */
static float *head_inputs(const pair *w, const int32_t *labels, int B, int D, int K, int near) {
  float *x = random_floats((size_t)B * D, -1, 1, 60);
  if (!near) return x;
  float *wh = host_of(cpu, w->c, w->n);
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

static void check_head_rows(lfs_head_cfg cfg, const char *what, int B, int D, int K, int near) {
  pair w = make_pair((size_t)K * D, -0.05f, 0.05f, 61);
  pair dx = make_pair((size_t)B * D, -1, 1, 62), dw = make_pair((size_t)K * D, -1, 1, 63);
  int32_t *labels = head_labels(B, K);
  float *xh = head_inputs(&w, labels, B, D, K, near);
  pair x = {on(cpu, xh, (size_t)B * D), on(gpu, xh, (size_t)B * D), (size_t)B * D};
  free(xh);
  lfs_head_stats sc, sg;
  const double lc = cpu->ops->head_loss(cpu, &cfg, B, D, K, dx.c, dw.c, &sc, x.c, w.c, labels);
  const double lg = gpu->ops->head_loss(gpu, &cfg, B, D, K, dx.g, dw.g, &sg, x.g, w.g, labels);
  const int ok = fabs(lc - lg) <= 1e-5 * fmax(1.0, fabs(lc)) &&
                 fabs(sc.mean_p_y - sg.mean_p_y) <= 1e-6 &&
                 fabs(sc.mean_cos_y - sg.mean_cos_y) <= 1e-6 && sc.accuracy == sg.accuracy;
  count_check(ok);
  printf("%-4s head %-43s loss cpu %.9g gpu %.9g; p_y %.6g/%.6g; accuracy %.3g/%.3g\n",
         ok ? "ok" : "FAIL", what, lc, lg, sc.mean_p_y, sg.mean_p_y, sc.accuracy, sg.accuracy);
  char name[128];
  snprintf(name, sizeof name, "head %s dx (accumulates)", what);
  check_pair(name, &dx, 1e-5);
  snprintf(name, sizeof name, "head %s dw (accumulates)", what);
  check_pair(name, &dw, 1e-5);
  free(labels);
  free_pair(&x), free_pair(&w), free_pair(&dx), free_pair(&dw);
}

static void check_head(lfs_head_cfg cfg, const char *what, int B, int D, int K) {
  check_head_rows(cfg, what, B, D, K, 0);
}

static lfs_head_cfg head_cfg(lfs_loss_kind kind) {
  lfs_head_cfg cfg;
  lfs_head_cfg_init(&cfg, kind);
  return cfg;
}

static void test_head(void) {
  const int B = 24, D = 64, K = 3001;
  check_head(head_cfg(LFS_LOSS_SOFTMAX), "softmax", B, D, K);
  check_head(head_cfg(LFS_LOSS_COSFACE), "cosface", B, D, K);
  check_head(head_cfg(LFS_LOSS_ARCFACE), "arcface", B, D, K);
  lfs_head_cfg sphere = head_cfg(LFS_LOSS_SPHEREFACE);
  sphere.iteration = 20000;
  check_head(sphere, "sphereface (lambda annealed)", B, D, K);
  check_head(head_cfg(LFS_LOSS_COMBINED), "combined", B, D, K);
  check_head(head_cfg(LFS_LOSS_MV_SOFTMAX), "mv_softmax adaptive", B, D, K);
  lfs_head_cfg mvf = head_cfg(LFS_LOSS_MV_SOFTMAX);
  mvf.mv_mode = LFS_MV_FIXED, mvf.mv_t = 0.2;
  check_head(mvf, "mv_softmax fixed", B, D, K);
  lfs_head_cfg search = head_cfg(LFS_LOSS_SEARCH_SOFTMAX);
  search.a = -3000.0;
  check_head(search, "search_softmax a = -3000", B, D, K);
  lfs_head_cfg am = head_cfg(LFS_LOSS_AMLFS);
  am.amlfs_tau = 1;
  for (int j = 0; j < am.amlfs_n; j++) {
    am.amlfs_alpha[j] = 1.0 + 0.05 * j, am.amlfs_beta[j] = -0.02 * j;
    am.tau_alpha[j] = 1.0 - 0.03 * j, am.tau_beta[j] = 0.01 * j;
  }
  check_head(am, "amlfs with tau", B, D, K);
  check_head_rows(head_cfg(LFS_LOSS_COSFACE), "cosface, rows near a class", B, D, K, 1);
  check_head(head_cfg(LFS_LOSS_ARCFACE), "arcface, 100,003 classes", 8, 128, 100003);
}

/* ---- the emulation's own checks ---- */

static float *device_random(size_t n, float lo, float hi, uint32_t stream) {
  float *h = random_floats(n, lo, hi, stream), *p = on(gpu, h, n);
  free(h);
  return p;
}

/* PReLU's gradients, batch norm's statistics and a head step's gradients from fixed
 * inputs, as the emulation is scheduled now: their host copy, *count values. */
static float *schedule_run(size_t *count) {
  enum { N = 32, C = 8, S = 1000, B = 12, D = 64, K = 3001 };
  const size_t nx = (size_t)N * C * S, nw = (size_t)K * D, nh = (size_t)B * D;
  *count = nx + 5 * C + nw + nh;
  float *x = device_random(nx, -2, 3, 70), *dy = device_random(nx, -1, 1, 71);
  float *alpha = device_random(C, 0, 0.5f, 72), *hx = device_random(nh, -1, 1, 73);
  float *w = device_random(nw, -0.05f, 0.05f, 74), *out = gpu->ops->alloc(gpu, *count);
  /* out: dx, then dalpha, mean, invstd, running mean and variance [C], then dw, head dx */
  float *dx = out, *per_channel = out + nx, *dw = per_channel + 5 * C, *hdx = dw + nw;
  gpu->ops->prelu_backward(gpu, N, C, S, dx, LFS_GRAD_SET, per_channel, dy, x, alpha);
  const lfs_bn_desc d = {.n = N, .c = C, .spatial = S};
  const lfs_bn_stats_cfg cfg = {.training = 1, .eps = 1e-5, .momentum = 0.1};
  gpu->ops->fill(gpu, per_channel + 4 * C, 1.0f, C);
  gpu->ops->batchnorm_stats(gpu, &d, &cfg, per_channel + C, per_channel + 2 * C,
                            per_channel + 3 * C, per_channel + 4 * C, x);
  int32_t *labels = head_labels(B, K);
  const lfs_head_cfg head = head_cfg(LFS_LOSS_ARCFACE);
  gpu->ops->head_loss(gpu, &head, B, D, K, hdx, dw, NULL, hx, w, labels);
  float *result = host_of(gpu, out, *count);
  free(labels);
  float *all[] = {x, dy, alpha, hx, w, out};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) gpu->ops->free(gpu, all[i]);
  return result;
}

static void test_schedule_independence(void) {
  size_t n = 0;
  lfs_emu_set_schedule(0, 0);
  float *in_order = schedule_run(&n);
  lfs_emu_set_schedule(1, 1);
  float *shuffled = schedule_run(&n);
  const int ok = memcmp(in_order, shuffled, n * sizeof(float)) == 0;
  count_check(ok);
  printf("%-4s same bits with blocks reversed and threads shuffled (%zu values)\n",
         ok ? "ok" : "FAIL", n);
  free(in_order), free(shuffled);
}

static void test_launches_checked(void) {
  gpu->ops->synchronize(gpu);
  const lfs_emu_counts c = lfs_emu_counts_now();
  const int ok = c.unchecked_launches == 0 && c.kernels == c.launches;
  count_check(ok);
  printf("%-4s %ld launches, all checked (LFS_CUDA_LAUNCHED) and run: %ld unchecked, %ld run, "
         "%ld blocks\n", ok ? "ok" : "FAIL", c.launches, c.unchecked_launches, c.kernels,
         c.blocks);
}

int main(int argc, char **argv) {
  lfs_runtime_init(&argc, &argv);
  setvbuf(stdout, NULL, _IOLBF, 0); /* every line out before a fault can stop the program */
  cpu = lfs_backend_cpu();
  gpu = lfs_emu_backend();
  printf("the CUDA kernels on the host (tests/gpu/emu) against the CPU backend\n");
  test_elementwise();
  test_prelu();
  test_linear();
  test_l2norm();
  test_batchnorm();
  test_head();
  test_launches_checked();
  test_schedule_independence();
  printf("%d of %d checks passed\n", checks - failures, checks);
  lfs_runtime_finalize();
  return failures ? 1 : 0;
}
