/* test_bn_moments.c: batch norm's training statistics as the CUDA backend forms
 * them from one pass of shifted sums (src/backend/cuda/bn_moments.h), run on
 * the host, against the CPU backend's two passes: mean, invstd and the running
 * averages within the parity test's tolerance (1e-6 of the largest magnitude),
 * on ordinary data, on channels whose mean is 3.5 million standard deviations
 * from 0 (where the variance must be about the mean as rounded to float, as the
 * CPU's is), with the running mean far from the batch's, one value a channel,
 * and over a stand-in group of three ranks. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "backend/cuda/bn_moments.h"
#include "lfs/backend.h"
#include "testutil.h"

static int failures, checks;

static float *random_floats(size_t n, float lo, float hi, uint32_t stream) {
  float *x = malloc((n ? n : 1) * sizeof *x);
  tu_fill_uniform(x, n, lo, hi, 2031, stream);
  return x;
}

static void triple(double *buf, int count, void *ctx) {
  (void)ctx;
  for (int i = 0; i < count; i++) buf[i] *= 3.0;
}

static void expect_close(const char *what, const char *name, const float *cpu, const float *host,
                         int n) {
  double scale = 1.0, worst = 0.0;
  int at = 0;
  for (int i = 0; i < n; i++) {
    scale = fmax(scale, fabs(cpu[i]));
    const double diff = fabs((double)cpu[i] - (double)host[i]);
    if (!(diff <= worst)) worst = diff, at = i;
  }
  const int ok = worst <= 1e-6 * scale;
  checks++;
  failures += !ok;
  printf("%-4s %-40s %-12s max |cuda - cpu| %.3g (scale %.3g)", ok ? "ok" : "FAIL", what, name,
         worst, scale);
  if (!ok) printf(": channel %d, cpu %.9g, cuda formula %.9g", at, cpu[at], host[at]);
  printf("\n");
}

/* x [n, c, spatial] in [lo, hi), running means in [mlo, mhi): the CPU
 * backend's statistics against bn_moments.h's from exact-order shifted sums. */
static void check_case(const char *what, int n, int c, int spatial, float lo, float hi, float mlo,
                       float mhi, int group) {
  const size_t count = (size_t)n * c * spatial;
  float *x = random_floats(count, lo, hi, 1);
  float *run_mean = random_floats((size_t)c, mlo, mhi, 2), *run_var = random_floats((size_t)c, 0.5f, 2, 3);
  float *mean = calloc((size_t)c, sizeof *mean), *invstd = calloc((size_t)c, sizeof *invstd);
  lfs_bn_moments *cuda = calloc((size_t)c, sizeof *cuda);
  const lfs_bn_desc d = {.n = n, .c = c, .spatial = spatial};
  const lfs_bn_stats_cfg cfg = {.training = 1, .eps = 1e-5, .momentum = 0.1,
                                .group_sum = group ? triple : NULL};
  const double ranks = group ? 3.0 : 1.0;
  for (int ch = 0; ch < c; ch++) {
    double sum_d = 0.0, sum_d2 = 0.0;
    for (int s = 0; s < n; s++)
      for (int i = 0; i < spatial; i++) {
        const double v = (double)x[((size_t)s * c + ch) * spatial + i] - (double)run_mean[ch];
        sum_d += v;
        sum_d2 += v * v;
      }
    cuda[ch] = lfs_bn_moments_finish(ranks * sum_d, ranks * sum_d2, ranks * n * spatial,
                                     run_mean[ch], run_var[ch], cfg.eps, cfg.momentum);
  }
  lfs_backend *cpu = lfs_backend_cpu();
  cpu->ops->batchnorm_stats(cpu, &d, &cfg, mean, invstd, run_mean, run_var, x);
  float *got[4];
  for (int k = 0; k < 4; k++) got[k] = malloc((size_t)c * sizeof(float));
  for (int ch = 0; ch < c; ch++) {
    got[0][ch] = cuda[ch].mean, got[1][ch] = cuda[ch].invstd;
    got[2][ch] = cuda[ch].run_mean, got[3][ch] = cuda[ch].run_var;
  }
  expect_close(what, "mean", mean, got[0], c);
  expect_close(what, "invstd", invstd, got[1], c);
  expect_close(what, "running mean", run_mean, got[2], c);
  expect_close(what, "running var", run_var, got[3], c);
  for (int k = 0; k < 4; k++) free(got[k]);
  free(x), free(run_mean), free(run_var), free(mean), free(invstd), free(cuda);
}

int main(void) {
  check_case("5x24x63, x in [-2, 3)", 5, 24, 63, -2, 3, -0.5f, 0.5f, 0);
  check_case("5x24x63, group of 3", 5, 24, 63, -2, 3, -0.5f, 0.5f, 1);
  /* the parity test's case: E[x^2] - E[x]^2 unshifted would cancel 43 bits */
  check_case("4x6x1000, mean 1e4, std 3e-3", 4, 6, 1000, 10000.0f - 0.004f, 10000.0f + 0.006f,
             10000.0f - 0.001f, 10000.0f + 0.001f, 0);
  check_case("4x6x1000, mean 1e4, group of 3", 4, 6, 1000, 10000.0f - 0.004f, 10000.0f + 0.006f,
             10000.0f - 0.001f, 10000.0f + 0.001f, 1);
  /* the first steps: running mean 0, the batch's 100 (17 of 53 bits cancel) */
  check_case("32x8x1000, mean 100, running 0", 32, 8, 1000, 99.5f, 100.5f, 0, 0, 0);
  check_case("BN1d 7x40", 7, 40, 1, -2, 3, -0.5f, 0.5f, 0);
  check_case("1x3x1 (one value a channel)", 1, 3, 1, -2, 3, -0.5f, 0.5f, 0);
  printf("%d of %d checks passed\n", checks - failures, checks);
  return failures ? 1 : 0;
}
