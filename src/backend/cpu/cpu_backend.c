/* cpu_backend.c: the CPU reference backend: host memory and the function table.
 * Kernels live in conv.c, batchnorm.c and pointwise.c. */
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_internal.h"
#include "lfs/log.h"

static float *cpu_alloc(lfs_backend *be, size_t count) {
  (void)be;
  float *p = lfs_alloc_floats(count);
  memset(p, 0, count * sizeof(float));
  return p;
}

static void cpu_free(lfs_backend *be, float *p) {
  (void)be;
  free(p);
}

static void cpu_copy(lfs_backend *be, float *dst, const float *src, size_t count) {
  (void)be;
  if (dst != src && count) memcpy(dst, src, count * sizeof(float));
}

static void cpu_fill(lfs_backend *be, float *x, float value, size_t count) {
  (void)be;
#pragma omp parallel for schedule(static) if (count > LFS_CPU_PAR_MIN)
  for (size_t i = 0; i < count; i++) x[i] = value;
}

static void cpu_axpy(lfs_backend *be, float *y, float alpha, const float *x, size_t count) {
  (void)be;
#pragma omp parallel for schedule(static) if (count > LFS_CPU_PAR_MIN)
  for (size_t i = 0; i < count; i++) y[i] += alpha * x[i];
}

static const lfs_backend_ops cpu_ops = {
    .name = "cpu",
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload = cpu_copy,
    .download = cpu_copy,
    .fill = cpu_fill,
    .axpy = cpu_axpy,
    .conv2d_forward = lfs_cpu_conv2d_forward,
    .conv2d_backward = lfs_cpu_conv2d_backward,
    .batchnorm_sums = lfs_cpu_batchnorm_sums,
    .batchnorm_sqdev = lfs_cpu_batchnorm_sqdev,
    .batchnorm_apply = lfs_cpu_batchnorm_apply,
    .batchnorm_grad_sums = lfs_cpu_batchnorm_grad_sums,
    .batchnorm_backward_apply = lfs_cpu_batchnorm_backward_apply,
    .prelu_forward = lfs_cpu_prelu_forward,
    .prelu_backward = lfs_cpu_prelu_backward,
    .linear_forward = lfs_cpu_linear_forward,
    .linear_backward = lfs_cpu_linear_backward,
    .add_forward = lfs_cpu_add_forward,
    .dropout_forward = lfs_cpu_dropout_forward,
    .dropout_backward = lfs_cpu_dropout_backward,
    .l2norm_forward = lfs_cpu_l2norm_forward,
    .l2norm_backward = lfs_cpu_l2norm_backward,
};

lfs_backend *lfs_backend_cpu(void) {
  static lfs_backend cpu = {.ops = &cpu_ops, .ctx = NULL, .device = -1};
  return &cpu;
}
