/* cpu_internal.h: the CPU backend's kernels, shared between its files only.
 * Same layouts and accumulate-in-backward contract as lfs_backend_ops. */
#ifndef LFS_CPU_INTERNAL_H
#define LFS_CPU_INTERNAL_H

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
/* The micro-kernel in use ("avx512", "avx2" or "portable"; lfs_cpu_gemm_select
 * in lfs/backend.h pins one). */
const char *lfs_cpu_sgemm_kernel_name(void);

void lfs_cpu_conv2d_forward(lfs_backend *be, const lfs_conv_desc *d, float *y, const float *x,
                            const float *w, const float *b);
void lfs_cpu_conv2d_backward(lfs_backend *be, const lfs_conv_desc *d, float *dx, float *dw,
                             float *db, const float *dy, const float *x, const float *w);

void lfs_cpu_batchnorm_sums(lfs_backend *be, const lfs_bn_desc *d, double *sum, const float *x);
void lfs_cpu_batchnorm_sqdev(lfs_backend *be, const lfs_bn_desc *d, double *sqdev, const float *x,
                             const float *mean);
void lfs_cpu_batchnorm_apply(lfs_backend *be, const lfs_bn_desc *d, float *y, const float *x,
                             const float *mean, const float *invstd, const float *gamma,
                             const float *beta);
void lfs_cpu_batchnorm_grad_sums(lfs_backend *be, const lfs_bn_desc *d, double *sum_dy,
                                 double *sum_dy_xhat, const float *dy, const float *x,
                                 const float *mean, const float *invstd);
void lfs_cpu_batchnorm_backward_apply(lfs_backend *be, const lfs_bn_desc *d, float *dx,
                                      const float *dy, const float *x, const float *gamma,
                                      const float *mean, const float *invstd, const float *mean_dy,
                                      const float *mean_dy_xhat);

void lfs_cpu_prelu_forward(lfs_backend *be, int n, int c, int spatial, float *y, const float *x,
                           const float *alpha);
void lfs_cpu_prelu_backward(lfs_backend *be, int n, int c, int spatial, float *dx, float *dalpha,
                            const float *dy, const float *x, const float *alpha);
void lfs_cpu_linear_forward(lfs_backend *be, int n, int in, int out, float *y, const float *x,
                            const float *w, const float *b);
void lfs_cpu_linear_backward(lfs_backend *be, int n, int in, int out, float *dx, float *dw,
                             float *db, const float *dy, const float *x, const float *w);
void lfs_cpu_add_forward(lfs_backend *be, float *y, const float *a, const float *b, size_t count);
void lfs_cpu_dropout_forward(lfs_backend *be, float *y, const float *x, size_t count, float p,
                             const lfs_rng *rng);
void lfs_cpu_dropout_backward(lfs_backend *be, float *dx, const float *dy, size_t count, float p,
                              const lfs_rng *rng);
void lfs_cpu_l2norm_forward(lfs_backend *be, int rows, int cols, float eps, float *y,
                            float *norms, const float *x);
void lfs_cpu_l2norm_backward(lfs_backend *be, int rows, int cols, float eps, float *dx,
                             const float *dy, const float *y, const float *norms);

#endif
