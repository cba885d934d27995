/* gemm.c: SGEMM for the CPU backend, row-major, parallel over OpenMP threads.
 *
 * OpenBLAS runs single-threaded inside lfsearch (lfs_set_threads) and each
 * OpenMP thread multiplies its own block of C, split along the larger of the
 * output dimensions. One threading runtime for every kernel means no spinning
 * OpenBLAS pool fighting the OpenMP team for the same cores, and the result
 * depends only on the thread count. */
#include <cblas.h>
#include <stdio.h>
#include <string.h>

#include "backend/cpu/cpu_internal.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* Below this many multiply-adds a split costs more than it saves. */
#define LFS_GEMM_PAR_MIN 262144.0
/* Blocks start on 16-float boundaries (one 64-byte line). */
#define LFS_GEMM_ALIGN 16

static void gemm_block(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                       const float *b, int ldb, float beta, float *c, int ldc) {
  if (m <= 0 || n <= 0) return;
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n,
              k, alpha, a, lda, b, ldb, beta, c, ldc);
}

static void split(int total, int parts, int part, int *lo, int *hi) {
  int chunk = (total + parts - 1) / parts;
  chunk = (chunk + LFS_GEMM_ALIGN - 1) / LFS_GEMM_ALIGN * LFS_GEMM_ALIGN;
  *lo = part * chunk < total ? part * chunk : total;
  *hi = *lo + chunk < total ? *lo + chunk : total;
}

void lfs_cpu_sgemm(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                   const float *b, int ldb, float beta, float *c, int ldc) {
  int threads = 1;
#ifdef _OPENMP
  if (!omp_in_parallel()) threads = omp_get_max_threads();
#endif
  if (threads == 1 || (double)m * n * k < LFS_GEMM_PAR_MIN) {
    gemm_block(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  const int along_n = n >= m;
#pragma omp parallel num_threads(threads)
  {
    int part = 0, parts = 1, lo, hi;
#ifdef _OPENMP
    part = omp_get_thread_num();
    parts = omp_get_num_threads();
#endif
    if (along_n) {
      split(n, parts, part, &lo, &hi);
      gemm_block(ta, tb, m, hi - lo, k, alpha, a, lda, tb ? b + (size_t)lo * ldb : b + lo, ldb, beta,
                 c + lo, ldc);
    } else {
      split(m, parts, part, &lo, &hi);
      gemm_block(ta, tb, hi - lo, n, k, alpha, ta ? a + lo : a + (size_t)lo * lda, lda, b, ldb, beta,
                 c + (size_t)lo * ldc, ldc);
    }
  }
}

extern char *openblas_get_corename(void);
extern char *openblas_get_config(void);

/* Debian's OpenBLAS 0.3.21 does not know some newer CPUs and falls back to SSE3
 * kernels at a fraction of the speed; the user can override that. */
const char *lfs_cpu_blas_hint(void) {
  const char *core = openblas_get_corename();
  const int sse_only = !strcmp(core, "Prescott") || !strcmp(core, "Nehalem") ||
                       !strcmp(core, "Core2") || !strcmp(core, "Penryn") || !strcmp(core, "Dunnington");
#if defined(__x86_64__) || defined(__i386__)
  /* Haswell's kernels, not SkylakeX's: with 0.3.21's SkylakeX kernels the
   * multi-rank training test (tests/mpi/test_train_mpi) drifts by 6e-3 here */
  if (sse_only && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    return "OpenBLAS picked SSE kernels on an AVX2 CPU: OPENBLAS_CORETYPE=Haswell gives "
           "several times faster GEMM";
#endif
  (void)sse_only;
  return NULL;
}

const char *lfs_cpu_blas_describe(void) {
  static char text[160];
  snprintf(text, sizeof text, "%s", openblas_get_config());
  return text;
}
