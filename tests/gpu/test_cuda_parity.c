/* test_cuda_parity.c: every op of the CUDA backend against the CPU reference
 * backend on the same inputs, then a whole training-mode forward and backward
 * pass of tiny (with dropout) and of r18 built on each backend with the same
 * parameters; convolutions through cuDNN, through im2col + cuBLAS and through
 * cuDNN's graph API; the margin head for every loss (also at 100,003 classes).
 * TF32 is off, so the GPU computes in float32 like the CPU and the tolerance
 * is one of float32 rounding, scaled by each output's magnitude: |gpu - cpu|
 * <= rtol * max(1, max |cpu|); for whole networks also up to ten times what
 * the CPU's own result moves when inputs and parameters change by one ulp (a
 * deep network's gradients are that sensitive to rounding: in PyTorch too,
 * r18's float32 and float64 gradients can differ by 4e-3 of their scale).
 * Dropout masks must match exactly (the same Philox stream). Batch norm's
 * statistics are checked alone and with a stand-in group sum (synchronised
 * BN's host round trip). Exits 77 (SKIP) where CUDA is not built or no GPU is
 * usable. With `--against cpu-staged` the same checks run against the CPU
 * kernels behind device memory, which tests the test (and the staging) on any
 * machine: there every difference must be 0. The kernels of cuda_channel.cu,
 * cuda_norm.cu, cuda_pointwise.cu and cuda_head.cu also run on the CPU, on any
 * machine, in tests/gpu/test_cuda_emulated, through the host emulation of
 * tests/gpu/emu, on this test's cases and tolerances. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lfs/backend.h"
#include "lfs/graph.h"
#include "lfs/models.h"
#include "lfs/params.h"
#include "lfs/philox.h"
#include "lfs/runtime.h"

static lfs_backend *cpu, *gpu;
static int on_cuda; /* 0 when checking the test itself against cpu-staged */
static int failures, checks;

static float *random_floats(size_t n, float lo, float hi, uint32_t stream) {
  float *x = malloc((n ? n : 1) * sizeof *x);
  const lfs_rng r = lfs_rng_make(2024, LFS_RNG_TEST, stream, 0);
  for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * lfs_rng_uniform(&r, i);
  return x;
}

/* Backend copies of a host array. */
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

/* Largest |a - b| over n host values; *at is where (a NaN counts as largest). */
static double max_difference(const float *a, const float *b, size_t n, size_t *at) {
  double worst = 0.0;
  for (size_t i = 0; i < n; i++) {
    const double e = fabs((double)a[i] - b[i]);
    if (!(e <= worst)) worst = e, *at = i;
  }
  return worst;
}

/* How far float32 rounding alone may move a whole network's output: the GPU may
 * differ from the CPU by this many times the CPU's own change under a one-ulp
 * change of the inputs and parameters (it rounds differently in every layer,
 * not only at the inputs). A wrong kernel misses by orders of magnitude more. */
#define SPREAD_FACTOR 10.0

/* Compares the backends' copies of one output: |gpu - cpu| <= max(rtol * scale,
 * SPREAD_FACTOR * spread), spread being the measured float32 sensitivity (0
 * for single ops). */
static void expect_close_spread(const char *what, const float *cpu_p, const float *gpu_p, size_t n,
                                double rtol, double spread) {
  float *a = host_of(cpu, cpu_p, n), *b = host_of(gpu, gpu_p, n);
  double scale = 1.0;
  for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(a[i]));
  size_t at = 0;
  const double worst = max_difference(a, b, n, &at);
  checks++;
  const int ok = on_cuda ? worst <= fmax(rtol * scale, SPREAD_FACTOR * spread) : worst == 0.0;
  printf("%-4s %-44s max |gpu - cpu| %.3g (scale %.3g, %zu values)", ok ? "ok" : "FAIL", what,
         worst, scale, n);
  if (spread > 0.0) printf("; cpu under 1-ulp changes %.3g", spread);
  printf("\n");
  if (!ok) {
    printf("     at %zu: cpu %.9g gpu %.9g\n", at, a[at], b[at]);
    failures++;
  }
  free(a), free(b);
}

static void expect_close(const char *what, const float *cpu_p, const float *gpu_p, size_t n,
                         double rtol) {
  expect_close_spread(what, cpu_p, gpu_p, n, rtol, 0.0);
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

/* Both copies become NaN: an op that sets its output (LFS_GRAD_SET) must not
 * read it, or NaN shows through. */
static void poison(pair *p) {
  cpu->ops->fill(cpu, p->c, NAN, p->n);
  gpu->ops->fill(gpu, p->g, NAN, p->n);
}

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
  /* the copy stream: work issued after the copy sees it */
  float *h = random_floats(n, -1, 1, 39), *staging = gpu->ops->host_alloc(gpu, n);
  memcpy(staging, h, n * sizeof *h);
  cpu->ops->upload(cpu, y.c, h, n);
  cpu->ops->axpy(cpu, y.c, 2.0f, a.c, n);
  gpu->ops->fill(gpu, b.g, 1.0f, n); /* work in flight beside the copy */
  gpu->ops->upload_async(gpu, y.g, staging, n);
  gpu->ops->axpy(gpu, y.g, 2.0f, a.g, n);
  check_pair("upload on the copy stream, then axpy", &y, 1e-7);
  gpu->ops->host_free(gpu, staging);
  free(h);
  pair w = make_pair(n, -1, 1, 33), v = make_pair(n, -0.1f, 0.1f, 34);
  cpu->ops->sgd_step(cpu, w.c, v.c, a.c, n, 0.1f, 0.9f, 5e-4f);
  gpu->ops->sgd_step(gpu, w.g, v.g, a.g, n, 0.1f, 0.9f, 5e-4f);
  check_pair("sgd step: weights", &w, 1e-6);
  check_pair("sgd step: momentum", &v, 1e-6);
  free_pair(&a), free_pair(&b), free_pair(&y), free_pair(&w), free_pair(&v);
}

static void check_prelu(int n, int c, int s, const char *name, const pair *p, double rtol) {
  char what[96];
  snprintf(what, sizeof what, "prelu %dx%dx%d %s", n, c, s, name);
  check_pair(what, p, rtol);
}

/* PReLU at one size: forward, then backward adding to dx and to dalpha, setting
 * dx with dalpha (one pass on a GPU), and setting dx alone. */
static void test_prelu_at(int n, int c, int s) {
  const size_t count = (size_t)n * c * s;
  pair x = make_pair(count, -1, 1, 4), al = make_pair(c, 0, 0.5f, 5), y = make_pair(count, 0, 0, 6);
  pair dy = make_pair(count, -1, 1, 7), dx = make_pair(count, -1, 1, 8), da = make_pair(c, -1, 1, 9);
  cpu->ops->prelu_forward(cpu, n, c, s, y.c, x.c, al.c);
  gpu->ops->prelu_forward(gpu, n, c, s, y.g, x.g, al.g);
  check_prelu(n, c, s, "forward", &y, 1e-7);
  cpu->ops->prelu_backward(cpu, n, c, s, dx.c, LFS_GRAD_ADD, da.c, dy.c, x.c, al.c);
  gpu->ops->prelu_backward(gpu, n, c, s, dx.g, LFS_GRAD_ADD, da.g, dy.g, x.g, al.g);
  check_prelu(n, c, s, "backward dx (accumulates)", &dx, 1e-7);
  check_prelu(n, c, s, "backward dalpha (accumulates)", &da, 1e-6);
  poison(&dx);
  cpu->ops->prelu_backward(cpu, n, c, s, dx.c, LFS_GRAD_SET, da.c, dy.c, x.c, al.c);
  gpu->ops->prelu_backward(gpu, n, c, s, dx.g, LFS_GRAD_SET, da.g, dy.g, x.g, al.g);
  check_prelu(n, c, s, "backward dx (sets, with dalpha)", &dx, 1e-7);
  check_prelu(n, c, s, "backward dalpha (with dx set)", &da, 1e-6);
  poison(&dx);
  cpu->ops->prelu_backward(cpu, n, c, s, dx.c, LFS_GRAD_SET, NULL, dy.c, x.c, al.c);
  gpu->ops->prelu_backward(gpu, n, c, s, dx.g, LFS_GRAD_SET, NULL, dy.g, x.g, al.g);
  check_prelu(n, c, s, "backward dx (sets)", &dx, 1e-7);
  free_pair(&x), free_pair(&al), free_pair(&y), free_pair(&dy), free_pair(&dx), free_pair(&da);
}

static void test_prelu(void) {
  test_prelu_at(3, 17, 49);
  /* a plane of 4k values: 4 at a time on a GPU, each channel over several blocks */
  test_prelu_at(16, 6, 1024);
}

static void test_linear(void) {
  const int n = 37, in = 129, out = 65;
  pair x = make_pair((size_t)n * in, -1, 1, 10), w = make_pair((size_t)out * in, -0.1f, 0.1f, 11);
  pair b = make_pair(out, -1, 1, 12), y = make_pair((size_t)n * out, 0, 0, 13);
  pair dy = make_pair((size_t)n * out, -1, 1, 14), dx = make_pair((size_t)n * in, -1, 1, 15);
  pair dw = make_pair((size_t)out * in, -1, 1, 16), db = make_pair(out, -1, 1, 17);
  cpu->ops->linear_forward(cpu, n, in, out, y.c, x.c, w.c, b.c);
  gpu->ops->linear_forward(gpu, n, in, out, y.g, x.g, w.g, b.g);
  check_pair("linear forward (cuBLAS, bias)", &y, 1e-5);
  cpu->ops->linear_backward(cpu, n, in, out, dx.c, dw.c, db.c, dy.c, x.c, w.c);
  gpu->ops->linear_backward(gpu, n, in, out, dx.g, dw.g, db.g, dy.g, x.g, w.g);
  check_pair("linear backward dx (accumulates)", &dx, 1e-5);
  check_pair("linear backward dw (accumulates)", &dw, 1e-5);
  check_pair("linear backward db (accumulates)", &db, 1e-6);
  free_pair(&x), free_pair(&w), free_pair(&b), free_pair(&y), free_pair(&dy), free_pair(&dx);
  free_pair(&dw), free_pair(&db);
}

static void test_l2norm(void) {
  const int rows = 9, cols = 515;
  float *h = random_floats((size_t)rows * cols, -1, 1, 18);
  memset(h + 4 * cols, 0, sizeof(float) * cols); /* a zero row: the norm is below eps */
  pair x = {on(cpu, h, (size_t)rows * cols), on(gpu, h, (size_t)rows * cols), (size_t)rows * cols};
  free(h);
  pair y = make_pair(x.n, 0, 0, 19), nrm = make_pair(rows, 0, 0, 20);
  pair dy = make_pair(x.n, -1, 1, 21), dx = make_pair(x.n, -1, 1, 22);
  cpu->ops->l2norm_forward(cpu, rows, cols, 1e-5f, y.c, nrm.c, x.c);
  gpu->ops->l2norm_forward(gpu, rows, cols, 1e-5f, y.g, nrm.g, x.g);
  check_pair("l2norm forward", &y, 1e-6);
  check_pair("l2norm norms", &nrm, 1e-6);
  cpu->ops->l2norm_backward(cpu, rows, cols, 1e-5f, dx.c, dy.c, y.c, nrm.c);
  gpu->ops->l2norm_backward(gpu, rows, cols, 1e-5f, dx.g, dy.g, y.g, nrm.g);
  /* row by row: the zero row's gradient (1/eps times dy) would set the scale
   * for all of them and hide an error in the others */
  for (int r = 0; r < rows; r++) {
    char what[64];
    snprintf(what, sizeof what, "l2norm backward row %d%s", r, r == 4 ? " (zero)" : "");
    expect_close(what, dx.c + (size_t)r * cols, dx.g + (size_t)r * cols, (size_t)cols, 1e-5);
  }
  free_pair(&x), free_pair(&y), free_pair(&nrm), free_pair(&dy), free_pair(&dx);
}

/* A stand-in for the other ranks of a synchronised-BN group: two ranks that
 * hold this rank's batch, so every sum, and the count, triples. Any correct
 * way of summing the statistics over a group agrees with it: the CPU's (the
 * sums, then the squared deviations from the group's mean) and the GPU's (the
 * sums of values and squares at once). */
static void other_ranks(double *buf, int count, void *ctx) {
  (void)ctx;
  for (int i = 0; i < count; i++) buf[i] *= 3.0;
}

/* One of batch norm's per-channel outputs, named "<op> <size> <mode>: <name>". */
static void check_bn(const char *op, const char *size, const char *mode, const char *name,
                     const pair *p) {
  char what[96];
  snprintf(what, sizeof what, "%s %s %s: %s", op, size, mode, name);
  check_pair(what, p, 1e-6);
}

/* Batch norm's statistics, gradient terms and element-wise passes at one size,
 * in eval mode, training mode, and training with a stand-in group (the host
 * round trip of synchronised BN). */
static void test_batchnorm_at(lfs_bn_desc d, const char *size) {
  const size_t count = (size_t)d.n * d.c * d.spatial, c = (size_t)d.c;
  pair x = make_pair(count, -2, 3, 23), y = make_pair(count, 0, 0, 24);
  pair dy = make_pair(count, -1, 1, 25), dx = make_pair(count, -1, 1, 26);
  pair mean = make_pair(c, 0, 0, 27), invstd = make_pair(c, 0, 0, 28);
  pair gamma = make_pair(c, 0.5f, 1.5f, 29), beta = make_pair(c, -1, 1, 30);
  pair rmean = make_pair(c, -0.5f, 0.5f, 31), rvar = make_pair(c, 0.5f, 2, 32);
  pair dgamma = make_pair(c, -1, 1, 35), dbeta = make_pair(c, -1, 1, 36);
  pair mdy = make_pair(c, 0, 0, 37), mdyx = make_pair(c, 0, 0, 38);
  for (int mode = 0; mode < 3; mode++) {
    const char *name = mode == 0 ? "eval" : mode == 1 ? "training" : "group";
    const lfs_bn_stats_cfg cfg = {.training = mode > 0, .eps = 1e-5, .momentum = 0.1,
                                  .group_sum = mode == 2 ? other_ranks : NULL};
    const double nc =
        cpu->ops->batchnorm_stats(cpu, &d, &cfg, mean.c, invstd.c, rmean.c, rvar.c, x.c);
    const double ng =
        gpu->ops->batchnorm_stats(gpu, &d, &cfg, mean.g, invstd.g, rmean.g, rvar.g, x.g);
    checks++;
    if (nc != ng) printf("FAIL batchnorm stats %s %s: count %g, cpu %g\n", size, name, ng, nc);
    failures += nc != ng;
    check_bn("batchnorm stats", size, name, "mean", &mean);
    check_bn("batchnorm stats", size, name, "invstd", &invstd);
    check_bn("batchnorm stats", size, name, "running mean", &rmean);
    check_bn("batchnorm stats", size, name, "running var", &rvar);
    cpu->ops->batchnorm_grad_terms(cpu, &d, &cfg, nc, dgamma.c, dbeta.c, mdy.c, mdyx.c, dy.c, x.c,
                                   mean.c, invstd.c);
    gpu->ops->batchnorm_grad_terms(gpu, &d, &cfg, ng, dgamma.g, dbeta.g, mdy.g, mdyx.g, dy.g, x.g,
                                   mean.g, invstd.g);
    check_bn("batchnorm grad terms", size, name, "dgamma", &dgamma);
    check_bn("batchnorm grad terms", size, name, "dbeta", &dbeta);
    check_bn("batchnorm grad terms", size, name, "mean dy", &mdy);
    check_bn("batchnorm grad terms", size, name, "mean dy xhat", &mdyx);
  }
  cpu->ops->batchnorm_apply(cpu, &d, y.c, x.c, mean.c, invstd.c, gamma.c, beta.c);
  gpu->ops->batchnorm_apply(gpu, &d, y.g, x.g, mean.g, invstd.g, gamma.g, beta.g);
  check_bn("batchnorm apply", size, "", "y", &y);
  for (int set = 0; set < 2; set++) {
    const lfs_grad_write mode = set ? LFS_GRAD_SET : LFS_GRAD_ADD;
    if (set) poison(&dx);
    cpu->ops->batchnorm_backward_apply(cpu, &d, dx.c, mode, dy.c, x.c, gamma.c, mean.c, invstd.c,
                                       mdy.c, mdyx.c);
    gpu->ops->batchnorm_backward_apply(gpu, &d, dx.g, mode, dy.g, x.g, gamma.g, mean.g, invstd.g,
                                       mdy.g, mdyx.g);
    check_bn("batchnorm backward", size, "", set ? "dx (sets)" : "dx (accumulates)", &dx);
  }
  pair *all[] = {&x, &y, &dy, &dx, &mean, &invstd, &gamma, &beta, &rmean, &rvar,
                 &dgamma, &dbeta, &mdy, &mdyx};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free_pair(all[i]);
}

/* Statistics of channels whose mean is 3.5 million standard deviations from 0
 * (values 10,000 + 0.002 u, u in [-2, 3]) and whose running mean is near it:
 * sums of x and x^2 would lose all of float's precision there (43 of double's
 * 53 bits cancel), sums shifted by the running mean lose none. */
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
  /* y to within float's precision of y itself: x - mean first (a shift of
   * beta - mean * scale would cost ulp(1e4 * 236), more than y's spread) */
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
  /* 32,000 values a channel: on a GPU each channel is split over several blocks */
  test_batchnorm_at((lfs_bn_desc){.n = 32, .c = 8, .spatial = 1000}, "32x8x1000");
  test_batchnorm_at((lfs_bn_desc){.n = 7, .c = 40, .spatial = 1}, "BN1d 7x40");
}

static void test_conv(lfs_conv_desc d, const char *what) {
  if (lfs_conv_desc_init(&d) != 0) {
    printf("FAIL bad geometry for %s\n", what);
    failures++;
    return;
  }
  const size_t nx = (size_t)d.n * d.in_c * d.in_h * d.in_w, ny = (size_t)d.n * d.out_c * d.out_h * d.out_w;
  const size_t nw = (size_t)d.out_c * (d.in_c / d.groups) * d.kh * d.kw;
  pair x = make_pair(nx, -1, 1, 40), w = make_pair(nw, -0.2f, 0.2f, 41), b = make_pair(d.out_c, -1, 1, 42);
  pair y = make_pair(ny, 0, 0, 43), dy = make_pair(ny, -1, 1, 44), dx = make_pair(nx, -1, 1, 45);
  pair dw = make_pair(nw, -1, 1, 46), db = make_pair(d.out_c, -1, 1, 47);
  char name[128];
  cpu->ops->conv2d_forward(cpu, &d, y.c, x.c, w.c, d.has_bias ? b.c : NULL);
  gpu->ops->conv2d_forward(gpu, &d, y.g, x.g, w.g, d.has_bias ? b.g : NULL);
  snprintf(name, sizeof name, "conv %s forward", what);
  check_pair(name, &y, 2e-5);
  cpu->ops->conv2d_backward(cpu, &d, dx.c, LFS_GRAD_ADD, dw.c, d.has_bias ? db.c : NULL, dy.c, x.c,
                            w.c);
  gpu->ops->conv2d_backward(gpu, &d, dx.g, LFS_GRAD_ADD, dw.g, d.has_bias ? db.g : NULL, dy.g, x.g,
                            w.g);
  snprintf(name, sizeof name, "conv %s backward dx", what);
  check_pair(name, &dx, 2e-5);
  poison(&dx); /* dx alone, set */
  cpu->ops->conv2d_backward(cpu, &d, dx.c, LFS_GRAD_SET, NULL, NULL, dy.c, x.c, w.c);
  gpu->ops->conv2d_backward(gpu, &d, dx.g, LFS_GRAD_SET, NULL, NULL, dy.g, x.g, w.g);
  snprintf(name, sizeof name, "conv %s backward dx (sets)", what);
  check_pair(name, &dx, 2e-5);
  snprintf(name, sizeof name, "conv %s backward dw", what);
  check_pair(name, &dw, 2e-5);
  if (d.has_bias) {
    snprintf(name, sizeof name, "conv %s backward db", what);
    check_pair(name, &db, 1e-5);
  }
  pair *all[] = {&x, &w, &b, &y, &dy, &dx, &dw, &db};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free_pair(all[i]);
}

static void test_convolution_geometries(void);

/* cuDNN, im2col + cuBLAS, then cuDNN's graph API, each against the CPU; the
 * graph API must have run every pass itself (no legacy fallback). */
static void test_convolutions(void) {
  printf(on_cuda ? "-- convolutions through cuDNN\n" : "-- convolutions\n");
  test_convolution_geometries();
  if (!on_cuda) return;
  lfs_cuda_set_conv_gemm(gpu, 1);
  printf("-- convolutions through im2col + cuBLAS\n");
  test_convolution_geometries();
  lfs_cuda_set_conv_gemm(gpu, 0);
  lfs_cuda_set_conv_graph(gpu, 1);
  printf("-- convolutions through cuDNN's graph API\n");
  const int fallbacks = lfs_cuda_conv_graph_fallbacks(gpu);
  test_convolution_geometries();
  lfs_cuda_set_conv_graph(gpu, 0);
  const int missed = lfs_cuda_conv_graph_fallbacks(gpu) - fallbacks;
  checks++;
  if (missed) {
    failures++;
    printf("FAIL graph API: %d passes fell back to the legacy path (warnings above)\n", missed);
  } else {
    printf("ok   graph API ran every pass of every geometry\n");
  }
}

static void test_convolution_geometries(void) {
  test_conv((lfs_conv_desc){.n = 4, .in_c = 16, .in_h = 14, .in_w = 14, .out_c = 32, .kh = 3, .kw = 3,
                            .stride = 1, .pad = 1, .groups = 1},
            "3x3 s1 p1");
  test_conv((lfs_conv_desc){.n = 4, .in_c = 16, .in_h = 15, .in_w = 15, .out_c = 24, .kh = 3, .kw = 3,
                            .stride = 2, .pad = 1, .groups = 1},
            "3x3 s2 p1 (odd size)");
  test_conv((lfs_conv_desc){.n = 2, .in_c = 32, .in_h = 7, .in_w = 7, .out_c = 64, .kh = 1, .kw = 1,
                            .stride = 2, .pad = 0, .groups = 1, .has_bias = 1},
            "1x1 s2 + bias");
  test_conv((lfs_conv_desc){.n = 3, .in_c = 24, .in_h = 12, .in_w = 12, .out_c = 24, .kh = 3, .kw = 3,
                            .stride = 1, .pad = 1, .groups = 24},
            "3x3 depthwise");
  test_conv((lfs_conv_desc){.n = 2, .in_c = 16, .in_h = 9, .in_w = 9, .out_c = 32, .kh = 3, .kw = 3,
                            .stride = 1, .pad = 0, .groups = 4},
            "3x3 4 groups p0");
}

/* ---- the margin head ---- */

static void check_head(lfs_head_cfg cfg, const char *what, int B, int D, int K) {
  pair x = make_pair((size_t)B * D, -1, 1, 60), w = make_pair((size_t)K * D, -0.05f, 0.05f, 61);
  pair dx = make_pair((size_t)B * D, -1, 1, 62), dw = make_pair((size_t)K * D, -1, 1, 63);
  int32_t *labels = malloc(sizeof(int32_t) * B);
  const lfs_rng r = lfs_rng_make(5, LFS_RNG_TEST, 64, 0);
  for (int i = 0; i < B; i++) labels[i] = (int32_t)lfs_rng_below(&r, (uint64_t)i, (uint64_t)K);
  labels[1] = labels[0]; /* two rows of one class */
  lfs_head_stats sc, sg;
  const double lc = cpu->ops->head_loss(cpu, &cfg, B, D, K, dx.c, dw.c, &sc, x.c, w.c, labels);
  const double lg = gpu->ops->head_loss(gpu, &cfg, B, D, K, dx.g, dw.g, &sg, x.g, w.g, labels);
  char name[128];
  checks++;
  const int ok = fabs(lc - lg) <= 1e-5 * fmax(1.0, fabs(lc)) && fabs(sc.mean_p_y - sg.mean_p_y) <= 1e-6 &&
                 fabs(sc.mean_cos_y - sg.mean_cos_y) <= 1e-6 && sc.accuracy == sg.accuracy;
  printf("%-4s head %-39s loss cpu %.9g gpu %.9g; p_y %.6g/%.6g; accuracy %.3g/%.3g\n",
         ok ? "ok" : "FAIL", what, lc, lg, sc.mean_p_y, sg.mean_p_y, sc.accuracy, sg.accuracy);
  failures += !ok;
  snprintf(name, sizeof name, "head %s dx (accumulates)", what);
  check_pair(name, &dx, 1e-5);
  snprintf(name, sizeof name, "head %s dw (accumulates)", what);
  check_pair(name, &dw, 1e-5);
  free(labels);
  free_pair(&x), free_pair(&w), free_pair(&dx), free_pair(&dw);
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
  check_head(head_cfg(LFS_LOSS_ARCFACE), "arcface, 100,003 classes", 8, 128, 100003);
}

/* ---- whole models ---- */

typedef struct {
  lfs_graph g;
  float *x, *dy;  /* [input], [output] on the graph's backend */
  const float *y; /* the forward's output */
} model_run;

static void build_on(model_run *m, lfs_backend *be, const lfs_model_cfg *cfg, int batch) {
  char err[512] = "";
  lfs_graph_init(&m->g);
  if (lfs_model_build(&m->g, cfg, err, sizeof err) < 0 ||
      lfs_graph_build(&m->g, be, lfs_model_input_shape(cfg, batch), 1, err, sizeof err) != 0) {
    fprintf(stderr, "FAIL: %s: %s\n", cfg->arch, err);
    exit(1);
  }
}

/* Moves each value one ulp up or down (a fixed random sign per element). */
static void nudge(float *v, size_t n, uint32_t stream) {
  const lfs_rng r = lfs_rng_make(2024, LFS_RNG_TEST, stream, 1);
  for (size_t i = 0; i < n; i++)
    v[i] = nextafterf(v[i], lfs_rng_uniform(&r, i) < 0.5f ? -INFINITY : INFINITY);
}

/* One training-mode forward and backward of m from parameters `params` [np] and
 * input x, dy (host); the results stay in m's graph. */
static void run_model(model_run *m, lfs_backend *be, const float *params, size_t np, const float *x,
                      const float *dy, size_t nx, size_t ny) {
  be->ops->upload(be, m->g.params.data, params, np);
  m->x = on(be, x, nx), m->dy = on(be, dy, ny);
  lfs_pass ps = {.be = be, .params = &m->g.params, .training = 1, .seed = 7, .step = 3};
  m->y = lfs_graph_forward(&m->g, &ps, m->x);
  lfs_params_zero_grad(&m->g.params);
  lfs_graph_backward(&m->g, &ps, m->x, m->dy);
}

/* max |a - b| of two CPU buffers. */
static double cpu_spread(const float *a, const float *b, size_t n) {
  size_t at = 0;
  return max_difference(a, b, n, &at);
}

static void check_model(lfs_model_cfg cfg, int batch) {
  model_run c, g, p; /* CPU, GPU, and CPU from one-ulp-nudged inputs and parameters */
  build_on(&c, cpu, &cfg, batch);
  build_on(&g, gpu, &cfg, batch);
  build_on(&p, cpu, &cfg, batch);
  lfs_model_init_params(&c.g, &cfg, 5);
  const size_t np = c.g.params.count, nt = c.g.params.trainable_count;
  float *params = host_of(cpu, c.g.params.data, np);
  const lfs_shape in = lfs_model_input_shape(&cfg, batch);
  const size_t nx = lfs_shape_count(in), ny = lfs_shape_count(lfs_graph_output_shape(&c.g));
  float *x = random_floats(nx, -1, 1, 50), *dy = random_floats(ny, -1, 1, 51);
  run_model(&c, cpu, params, np, x, dy, nx, ny);
  run_model(&g, gpu, params, np, x, dy, nx, ny);
  nudge(params, nt, 52), nudge(x, nx, 53);
  run_model(&p, cpu, params, np, x, dy, nx, ny);
  char what[96];
  snprintf(what, sizeof what, "%s forward (training mode)", cfg.arch);
  expect_close_spread(what, c.y, g.y, ny, 1e-4, cpu_spread(c.y, p.y, ny));
  snprintf(what, sizeof what, "%s parameter gradients", cfg.arch);
  expect_close_spread(what, c.g.params.grad, g.g.params.grad, nt, 1e-4,
                      cpu_spread(c.g.params.grad, p.g.params.grad, nt));
  snprintf(what, sizeof what, "%s BN running statistics", cfg.arch);
  expect_close_spread(what, c.g.params.data + nt, g.g.params.data + nt, np - nt, 1e-5,
                      cpu_spread(c.g.params.data + nt, p.g.params.data + nt, np - nt));
  snprintf(what, sizeof what, "%s input gradient", cfg.arch);
  expect_close_spread(what, c.g.dx, g.g.dx, nx, 1e-4, cpu_spread(c.g.dx, p.g.dx, nx));
  free(params), free(x), free(dy);
  model_run *runs[3] = {&c, &g, &p};
  for (int i = 0; i < 3; i++) {
    lfs_backend *be = runs[i]->g.be;
    be->ops->free(be, runs[i]->x), be->ops->free(be, runs[i]->dy);
    lfs_graph_free(&runs[i]->g);
  }
}

int main(int argc, char **argv) {
  lfs_runtime_init(&argc, &argv);
  setvbuf(stdout, NULL, _IOLBF, 0); /* every line out before a fault can stop the program */
  char why[256] = "";
  cpu = lfs_backend_cpu();
  if (argc > 2 && !strcmp(argv[1], "--against") && !strcmp(argv[2], "cpu-staged")) {
    /* the test's own machinery on any machine: every check must hold exactly */
    gpu = lfs_backend_cpu_staged();
    printf("checking against cpu-staged (the CPU kernels behind device memory)\n");
  } else {
    gpu = lfs_backend_cuda(why, sizeof why);
    if (!gpu) {
      printf("SKIP: no CUDA backend (%s)\n", why);
      lfs_runtime_finalize();
      return 77;
    }
    on_cuda = 1;
    lfs_cuda_set_tf32(gpu, 0);
    printf("CUDA backend on GPU %d, TF32 off; %s\n", gpu->device, lfs_devices_runtime());
  }
  test_elementwise();
  test_prelu();
  test_linear();
  test_l2norm();
  test_batchnorm();
  test_convolutions();
  test_head();
  lfs_model_cfg tiny = {.arch = "tiny", .embedding = 64, .input = 32, .dropout = 0.2f};
  check_model(tiny, 8);
  lfs_model_cfg r18 = {.arch = "r18", .embedding = 512, .input = 112};
  check_model(r18, 4);
  printf("%d of %d checks passed\n", checks - failures, checks);
  lfs_runtime_finalize();
  return failures ? 1 : 0;
}
