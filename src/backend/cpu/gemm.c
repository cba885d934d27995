/* gemm.c: SGEMM for the CPU backend, row-major, parallel over OpenMP threads.
 *
 * Each OpenMP thread multiplies its own block of C with the single-threaded
 * packed GEMM (sgemm.c), split along the larger of the output dimensions; since
 * that GEMM's sums do not depend on where an element sits, neither does the
 * result on the thread count. OpenBLAS is linked only as the reference that
 * `lfsearch bench` measures against (kept single-threaded by lfs_set_threads). */
#include <stdio.h>
#include <string.h>

#include "backend/cpu/cpu_internal.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* Below this many multiply-adds a split costs more than it saves. */
#define LFS_GEMM_PAR_MIN 262144.0
/* Blocks start on 48-float boundaries: whole register tiles of every kernel. */
#define LFS_GEMM_ALIGN 48

static void split(int total, int parts, int part, int *lo, int *hi) {
  int chunk = (total + parts - 1) / parts;
  chunk = (chunk + LFS_GEMM_ALIGN - 1) / LFS_GEMM_ALIGN * LFS_GEMM_ALIGN;
  *lo = part * chunk < total ? part * chunk : total;
  *hi = *lo + chunk < total ? *lo + chunk : total;
}

void lfs_cpu_sgemm_b(int ta, int m, int n, int k, float alpha, const float *a, int lda,
                     const lfs_gemm_b *b, float beta, float *c, int ldc) {
  int threads = 1;
#ifdef _OPENMP
  if (!omp_in_parallel()) threads = omp_get_max_threads();
#endif
  if (threads == 1 || (double)m * n * k < LFS_GEMM_PAR_MIN) {
    lfs_cpu_sgemm_serial_b(ta, m, n, k, alpha, a, lda, b, beta, c, ldc);
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
      lfs_gemm_b mine = *b;
      mine.j_offset += lo;
      lfs_cpu_sgemm_serial_b(ta, m, hi - lo, k, alpha, a, lda, &mine, beta, c + lo, ldc);
    } else {
      split(m, parts, part, &lo, &hi);
      lfs_cpu_sgemm_serial_b(ta, hi - lo, n, k, alpha, ta ? a + lo : a + (size_t)lo * lda, lda, b,
                             beta, c + (size_t)lo * ldc, ldc);
    }
  }
}

void lfs_cpu_sgemm(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                   const float *b, int ldb, float beta, float *c, int ldc) {
  const lfs_gemm_matrix mb = {tb, ldb, b};
  const lfs_gemm_b src = {lfs_gemm_pack_matrix, &mb, 0};
  lfs_cpu_sgemm_b(ta, m, n, k, alpha, a, lda, &src, beta, c, ldc);
}

extern char *openblas_get_corename(void);
extern char *openblas_get_config(void);

const char *lfs_cpu_gemm_describe(void) {
  static char text[96];
  snprintf(text, sizeof text, "lfsearch packed SGEMM, %s micro-kernel", lfs_cpu_sgemm_kernel_name());
  return text;
}

/* "OpenBLAS 0.3.21 (Prescott kernels)": the version from the build string, and
 * the kernels it picked at run time (the build string names its build target). */
const char *lfs_cpu_blas_describe(void) {
  static char text[160];
  char version[40] = "?";
  sscanf(openblas_get_config(), "OpenBLAS %39s", version);
  snprintf(text, sizeof text, "OpenBLAS %s (%s kernels)", version, openblas_get_corename());
  return text;
}
