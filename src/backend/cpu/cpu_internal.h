/* cpu_internal.h: the CPU backend's kernels, shared between its files only.
 * Same layouts and accumulate-in-backward contract as lfs_backend_ops. */
#ifndef LFS_CPU_INTERNAL_H
#define LFS_CPU_INTERNAL_H

#include <stdint.h>

#include "lfs/backend.h"

/* Below this many elements an OpenMP region costs more than it saves. */
#define LFS_CPU_PAR_MIN 32768

/* Reductions with 8 double-precision partial sums in a fixed order: the compiler
 * vectorises them, and the result does not depend on threads or alignment. */
#define LFS_LANES 8

/* sum_i x[i] */
static inline double lfs_cpu_sum(const float *x, size_t n) {
  double acc[LFS_LANES] = {0};
  size_t i = 0;
  for (; i + LFS_LANES <= n; i += LFS_LANES)
    for (int l = 0; l < LFS_LANES; l++) acc[l] += x[i + l];
  double total = 0.0;
  for (; i < n; i++) total += x[i];
  for (int l = 0; l < LFS_LANES; l++) total += acc[l];
  return total;
}

/* sum_i (x[i] - shift) * (y[i] - shift_y) */
static inline double lfs_cpu_dot_shifted(const float *x, float shift, const float *y, float shift_y,
                                         size_t n) {
  double acc[LFS_LANES] = {0};
  size_t i = 0;
  for (; i + LFS_LANES <= n; i += LFS_LANES)
    for (int l = 0; l < LFS_LANES; l++)
      acc[l] += (double)(x[i + l] - shift) * (double)(y[i + l] - shift_y);
  double total = 0.0;
  for (; i < n; i++) total += (double)(x[i] - shift) * (double)(y[i] - shift_y);
  for (int l = 0; l < LFS_LANES; l++) total += acc[l];
  return total;
}

/* C [m, n] = alpha op(A) op(B) + beta C, row-major; ta/tb transpose A/B.
 * lfs_cpu_sgemm splits C over the OpenMP threads; lfs_cpu_sgemm_serial is the
 * single-threaded packed GEMM (sgemm.c). */
void lfs_cpu_sgemm(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                   const float *b, int ldb, float beta, float *c, int ldc);
void lfs_cpu_sgemm_serial(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                          const float *b, int ldb, float beta, float *c, int ldc);
/* B of a GEMM given by a packer rather than a matrix (implicit GEMM, e.g. a
 * convolution's column matrix built straight from the image): pack fills
 * dst [ceil(nc/nr) panels][kc][nr] with op(B) rows [p0, p0 + kc) and columns
 * [j0, j0 + nc), zero-padding the last panel to nr columns. The GEMM asks for
 * columns shifted by j_offset (the threaded split sets it). */
typedef struct {
  void (*pack)(const void *ctx, float *dst, int nr, int p0, int kc, int j0, int nc);
  const void *ctx;
  int j_offset;
} lfs_gemm_b;
/* The packer of an explicit op(B) (ctx: lfs_gemm_matrix). */
typedef struct {
  int tb, ldb;
  const float *b;
} lfs_gemm_matrix;
void lfs_gemm_pack_matrix(const void *ctx, float *dst, int nr, int p0, int kc, int j0, int nc);
void lfs_cpu_sgemm_serial_b(int ta, int m, int n, int k, float alpha, const float *a, int lda,
                            const lfs_gemm_b *b, float beta, float *c, int ldc);
/* C [m, n] = alpha op(A) B + beta C with B from a packer, split over the OpenMP
 * threads like lfs_cpu_sgemm. */
void lfs_cpu_sgemm_b(int ta, int m, int n, int k, float alpha, const float *a, int lda,
                     const lfs_gemm_b *b, float beta, float *c, int ldc);
/* dst [kc][nr] = src[off[p] + idx[t]] for columns t < cols, zeros after:
 * packs an implicit B whose elements are scattered (nr <= 64). */
void lfs_cpu_pack_gather(float *dst, int nr, int kc, const float *src, const size_t *off,
                         const int32_t *idx, int cols);
/* The micro-kernel in use ("avx512", "avx2" or "portable"; lfs_cpu_gemm_select
 * in lfs/backend.h pins one). */
const char *lfs_cpu_sgemm_kernel_name(void);

/* The kernels of conv.c, batchnorm.c and pointwise.c are built once per
 * instruction set (Makefile.am): LFS_CPU_SUFFIX names the build (empty for the
 * baseline, _v3 for x86-64-v3, _v4 for x86-64-v4), LFS_CPU_K(name) the symbol. */
#ifndef LFS_CPU_SUFFIX
#define LFS_CPU_SUFFIX
#endif
#define LFS_CPU_PASTE(a, b) a##b
#define LFS_CPU_NAME(a, b) LFS_CPU_PASTE(a, b)
#define LFS_CPU_K(name) LFS_CPU_NAME(lfs_cpu_##name, LFS_CPU_SUFFIX)
#include "backend/cpu/cpu_kernels.h"

#endif
