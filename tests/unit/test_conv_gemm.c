/* test_conv_gemm.c: the CPU convolution at sizes that exercise its GEMM paths
 * (several register tiles and KC blocks, images stacked into one GEMM, the
 * column matrix packed straight from the images, pointwise shortcuts, groups,
 * the input gradient as a transposed stride-1 conv or through col2im), on 1
 * and 2 threads. The forward pass is checked against the double-precision
 * reference of tests/grad/refimpl.c; the backward pass by the adjoint
 * identities <dy, conv(x, w)> = <dx, x> = <dw, w> (conv is linear in x and in
 * w), which hold for any dy and cost one forward pass. It runs the kernel build
 * the backend picked for this CPU (test_cpu_isa checks the others agree). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "backend/cpu/cpu_internal.h"
#include "../grad/refimpl.h"
#include "lfs/runtime.h"
#include "testutil.h"

typedef struct {
  int n, in_c, hw, out_c, k, stride, pad, groups;
} conv_case;

static const conv_case cases[] = {
    {5, 24, 15, 40, 3, 1, 1, 1},  /* k = 216 crosses a KC block; 5 images stacked */
    {3, 16, 17, 36, 3, 2, 1, 1},  /* stride 2, odd size */
    {4, 8, 9, 20, 1, 2, 0, 1},    /* 1x1 stride-2 shortcut */
    {2, 64, 40, 16, 3, 1, 1, 1},  /* 1600 pixels: one image per GEMM; k = 576 */
    {3, 32, 8, 24, 1, 1, 0, 1},   /* pointwise, stacked images */
    {2, 12, 36, 20, 1, 1, 0, 1},  /* pointwise, the image is its own column matrix */
    {3, 8, 7, 12, 3, 1, 1, 2},    /* groups */
    {3, 6, 9, 10, 3, 1, 0, 1},    /* unpadded: the input gradient conv pads by 2 */
    {2, 4, 11, 6, 5, 1, 2, 1},    /* 5x5 */
};

static double dot(const float *a, const double *b, size_t n, double *mag) {
  double s = 0.0, m = 0.0;
  for (size_t i = 0; i < n; i++) s += a[i] * b[i], m += fabs(a[i] * b[i]);
  *mag += m;
  return s;
}

static void run_case(const conv_case *c, int threads) {
  lfs_set_threads(threads);
  lfs_conv_desc d = {.n = c->n, .in_c = c->in_c, .in_h = c->hw, .in_w = c->hw, .out_c = c->out_c,
                     .kh = c->k, .kw = c->k, .stride = c->stride, .pad = c->pad,
                     .groups = c->groups};
  assert_int_equal(lfs_conv_desc_init(&d), 0);
  const size_t nx = (size_t)c->n * c->in_c * c->hw * c->hw;
  const size_t nw = (size_t)c->out_c * (c->in_c / c->groups) * c->k * c->k;
  const size_t ny = (size_t)c->n * c->out_c * d.out_h * d.out_w;
  float *x = malloc(nx * sizeof *x), *w = malloc(nw * sizeof *w), *y = malloc(ny * sizeof *y);
  float *dy = malloc(ny * sizeof *dy), *dx = calloc(nx, sizeof *dx), *dw = calloc(nw, sizeof *dw);
  double *xd = malloc(nx * sizeof *xd), *wd = malloc(nw * sizeof *wd), *yd = malloc(ny * sizeof *yd);
  double *dyd = malloc(ny * sizeof *dyd);
  tu_fill_uniform(x, nx, -1.0f, 1.0f, 5, 1);
  tu_fill_uniform(w, nw, -1.0f, 1.0f, 5, 2);
  tu_fill_uniform(dy, ny, -1.0f, 1.0f, 5, 3);
  for (size_t i = 0; i < nx; i++) xd[i] = x[i];
  for (size_t i = 0; i < nw; i++) wd[i] = w[i];
  for (size_t i = 0; i < ny; i++) dyd[i] = dy[i];
  ref_conv_geom g = {.n = c->n, .in_c = c->in_c, .in_h = c->hw, .in_w = c->hw, .out_c = c->out_c,
                     .kh = c->k, .kw = c->k, .stride = c->stride, .pad = c->pad, .groups = c->groups};
  assert_int_equal(ref_conv_geom_init(&g), 0);
  ref_conv2d(&g, yd, xd, wd, NULL);

  lfs_backend_cpu()->ops->conv2d_forward(lfs_backend_cpu(), &d, y, x, w, NULL);
  const double yerr = tu_rel_err(y, yd, ny);
  lfs_backend_cpu()->ops->conv2d_backward(lfs_backend_cpu(), &d, dx, LFS_GRAD_ADD, dw, NULL, dy, x,
                                          w);
  double mag = 0.0, mag_x = 0.0, mag_w = 0.0;
  double want = 0.0;
  for (size_t i = 0; i < ny; i++) want += dyd[i] * yd[i], mag += fabs(dyd[i] * yd[i]);
  const double via_x = dot(dx, xd, nx, &mag_x), via_w = dot(dw, wd, nw, &mag_w);
  if (!(yerr < 1e-5) || !(fabs(via_x - want) < 1e-5 * (mag + mag_x)) ||
      !(fabs(via_w - want) < 1e-5 * (mag + mag_w)))
    fail_msg("n %d in_c %d %dx%d out_c %d k %d s %d p %d groups %d, %d threads: forward error %.3g,"
             " <dy,y> %.9g, <dx,x> %.9g, <dw,w> %.9g",
             c->n, c->in_c, c->hw, c->hw, c->out_c, c->k, c->stride, c->pad, c->groups, threads,
             yerr, want, via_x, via_w);
  free(x), free(w), free(y), free(dy), free(dx), free(dw), free(xd), free(wd), free(yd), free(dyd);
}

static void test_conv_paths(void **state) {
  (void)state;
  for (int threads = 1; threads <= 2; threads++)
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&cases[i], threads);
}

/* The thread count must not change a single bit (sums are fixed by k alone). */
static void test_threads_are_bit_identical(void **state) {
  (void)state;
  lfs_conv_desc d = {.n = 3, .in_c = 16, .in_h = 17, .in_w = 17, .out_c = 36, .kh = 3, .kw = 3,
                     .stride = 1, .pad = 1, .groups = 1};
  assert_int_equal(lfs_conv_desc_init(&d), 0);
  const size_t nx = 3 * 16 * 17 * 17, nw = 36 * 16 * 9, ny = 3 * 36 * 17 * 17;
  float *x = malloc(nx * 4), *w = malloc(nw * 4), *dy = malloc(ny * 4);
  float *y[2], *dx[2], *dw[2];
  tu_fill_uniform(x, nx, -1.0f, 1.0f, 6, 1);
  tu_fill_uniform(w, nw, -1.0f, 1.0f, 6, 2);
  tu_fill_uniform(dy, ny, -1.0f, 1.0f, 6, 3);
  for (int t = 0; t < 2; t++) {
    lfs_set_threads(t + 1);
    y[t] = malloc(ny * 4), dx[t] = calloc(nx, 4), dw[t] = calloc(nw, 4);
    lfs_backend_cpu()->ops->conv2d_forward(lfs_backend_cpu(), &d, y[t], x, w, NULL);
    lfs_backend_cpu()->ops->conv2d_backward(lfs_backend_cpu(), &d, dx[t], LFS_GRAD_ADD, dw[t], NULL,
                                            dy, x, w);
  }
  assert_memory_equal(y[0], y[1], ny * 4);
  assert_memory_equal(dx[0], dx[1], nx * 4);
  assert_memory_equal(dw[0], dw[1], nw * 4);
  for (int t = 0; t < 2; t++) free(y[t]), free(dx[t]), free(dw[t]);
  free(x), free(w), free(dy);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_conv_paths),
      cmocka_unit_test(test_threads_are_bit_identical),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
