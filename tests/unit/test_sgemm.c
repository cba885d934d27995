/* test_sgemm.c: the packed SGEMM (src/backend/cpu/sgemm.c) with every
 * micro-kernel this CPU runs, against a double-precision reference: all four
 * transpose combinations, shapes that leave partial register tiles and cross the
 * KC and NC block edges, alpha/beta folding (beta = 0 never reads C, so NaN
 * there does not leak), and the determinism the trainer relies on: a row or
 * column slice, or a different thread count, gives bit-identical numbers. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "backend/cpu/cpu_internal.h"
#include "lfs/log.h"
#include "lfs/philox.h"
#include "lfs/runtime.h"

static const char *const kernels[] = {"portable", "avx2", "avx512"};

static float *random_matrix(size_t count, uint32_t tag) {
  float *x = lfs_alloc_floats(count);
  const lfs_rng rng = lfs_rng_make(99, LFS_RNG_TEST, tag, 0);
  for (size_t i = 0; i < count; i++) x[i] = 2.0f * lfs_rng_uniform(&rng, i) - 1.0f;
  return x;
}

typedef struct {
  int ta, tb, m, n, k;
  float alpha, beta;
} gemm_case;

/* Worst |C - reference| / (|alpha| sum |a||b| + |beta C0|) over all elements. */
static double check_case(const gemm_case *g) {
  const int lda = g->ta ? g->m + 3 : g->k + 3, ldb = g->tb ? g->k + 5 : g->n + 5, ldc = g->n + 7;
  const size_t arows = g->ta ? g->k : g->m, brows = g->tb ? g->n : g->k;
  float *a = random_matrix(arows * lda, 1), *b = random_matrix(brows * ldb, 2);
  float *c = random_matrix((size_t)g->m * ldc, 3);
  float *c0 = malloc(sizeof(float) * g->m * ldc);
  memcpy(c0, c, sizeof(float) * g->m * ldc);
  if (g->beta == 0.0f)
    for (size_t i = 0; i < (size_t)g->m * ldc; i++) c[i] = NAN;
  lfs_cpu_sgemm_serial(g->ta, g->tb, g->m, g->n, g->k, g->alpha, a, lda, b, ldb, g->beta, c, ldc);
  double worst = 0.0;
  for (int i = 0; i < g->m; i++)
    for (int j = 0; j < g->n; j++) {
      double ref = 0.0, mag = 0.0;
      for (int p = 0; p < g->k; p++) {
        const double av = g->ta ? a[(size_t)p * lda + i] : a[(size_t)i * lda + p];
        const double bv = g->tb ? b[(size_t)j * ldb + p] : b[(size_t)p * ldb + j];
        ref += av * bv;
        mag += fabs(av * bv);
      }
      const double cin = g->beta == 0.0f ? 0.0 : c0[(size_t)i * ldc + j];
      ref = g->alpha * ref + g->beta * cin;
      mag = fabs(g->alpha) * mag + fabs(g->beta * cin) + 1e-30;
      const double err = fabs(c[(size_t)i * ldc + j] - ref) / mag;
      worst = err > worst || isnan(err) ? (isnan(err) ? INFINITY : err) : worst;
    }
  /* padding columns of C past n are never written */
  for (int i = 0; i < g->m; i++)
    for (int j = g->n; j < ldc; j++)
      if (g->beta != 0.0f) assert_true(c[(size_t)i * ldc + j] == c0[(size_t)i * ldc + j]);
  free(a), free(b), free(c), free(c0);
  return worst;
}

static void test_against_reference(void **state) {
  (void)state;
  static const int sizes[][3] = {{1, 1, 1},   {5, 7, 3},     {8, 48, 128}, {9, 49, 129},
                                 {97, 50, 600}, {30, 2100, 40}, {200, 19, 1}};
  static const float ab[][2] = {{1.0f, 0.0f}, {1.0f, 1.0f}, {-0.5f, 2.0f}, {2.0f, 0.0f}};
  int ran = 0;
  for (int kernel = 0; kernel < 3; kernel++) {
    if (lfs_cpu_gemm_select(kernels[kernel]) != 0) continue;
    ran++;
    for (int s = 0; s < (int)(sizeof sizes / sizeof sizes[0]); s++)
      for (int t = 0; t < 4; t++)
        for (int f = 0; f < 4; f++) {
          const gemm_case g = {t & 1, t >> 1, sizes[s][0], sizes[s][1], sizes[s][2], ab[f][0], ab[f][1]};
          const double worst = check_case(&g);
          if (!(worst < 1e-6))
            fail_msg("kernel %s ta %d tb %d m %d n %d k %d alpha %g beta %g: relative error %.3g",
                     kernels[kernel], g.ta, g.tb, g.m, g.n, g.k, g.alpha, g.beta, worst);
        }
  }
  assert_true(ran >= 1);
  lfs_cpu_gemm_select(NULL);
}

/* C rows [r0, r0 + rows) and columns [c0, c0 + cols) computed on their own equal
 * those of the whole product, bit for bit, for every kernel. */
static void test_slices_are_bit_identical(void **state) {
  (void)state;
  const int m = 70, n = 300, k = 700;
  float *a = random_matrix((size_t)m * k, 4), *b = random_matrix((size_t)k * n, 5);
  float *whole = lfs_alloc_floats((size_t)m * n), *part = lfs_alloc_floats((size_t)m * n);
  for (int kernel = 0; kernel < 3; kernel++) {
    if (lfs_cpu_gemm_select(kernels[kernel]) != 0) continue;
    lfs_cpu_sgemm_serial(0, 0, m, n, k, 1.0f, a, k, b, n, 0.0f, whole, n);
    memset(part, 0, sizeof(float) * m * n);
    lfs_cpu_sgemm_serial(0, 0, 23, n, k, 1.0f, a, k, b, n, 0.0f, part, n);
    lfs_cpu_sgemm_serial(0, 0, m - 23, 17, k, 1.0f, a + 23 * k, k, b, n, 0.0f, part + 23 * n, n);
    lfs_cpu_sgemm_serial(0, 0, m - 23, n - 17, k, 1.0f, a + 23 * k, k, b + 17, n, 0.0f,
                         part + 23 * n + 17, n);
    assert_memory_equal(whole, part, sizeof(float) * m * n);
    /* the threaded entry point splits C differently for every thread count */
    for (int threads = 1; threads <= 3; threads++) {
      lfs_set_threads(threads);
      memset(part, 0, sizeof(float) * m * n);
      lfs_cpu_sgemm(0, 0, m, n, k, 1.0f, a, k, b, n, 0.0f, part, n);
      assert_memory_equal(whole, part, sizeof(float) * m * n);
    }
  }
  lfs_cpu_gemm_select(NULL);
  free(a), free(b), free(whole), free(part);
}

static void test_unknown_kernel_is_refused(void **state) {
  (void)state;
  assert_int_equal(lfs_cpu_gemm_select("sse1"), -1);
  assert_int_equal(lfs_cpu_gemm_select(NULL), 0);
  assert_non_null(lfs_cpu_sgemm_kernel_name());
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_against_reference),
      cmocka_unit_test(test_slices_are_bit_identical),
      cmocka_unit_test(test_unknown_kernel_is_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
