/* cpu_backend.c: the CPU reference backend: host memory and the function table.
 * Kernels live in conv.c, batchnorm.c and pointwise.c, built once per
 * instruction set where the compiler can (baseline, and on x86-64 also
 * x86-64-v3 and -v4; Makefile.am); the best one this CPU runs is used. The
 * builds differ in vector width only, with floating-point contraction off, and
 * every reduction has a fixed order, so they compute the same bits. */
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_internal.h"
#include "lfs/log.h"
#include "lfs/optim.h"

#ifdef LFS_HAVE_CPU_ISA_BUILDS
#undef LFS_CPU_SUFFIX
#define LFS_CPU_SUFFIX _v3
#include "backend/cpu/cpu_kernels.h"
#undef LFS_CPU_SUFFIX
#define LFS_CPU_SUFFIX _v4
#include "backend/cpu/cpu_kernels.h"
#endif

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

static float *cpu_host_alloc(lfs_backend *be, size_t count) {
  (void)be;
  return lfs_alloc_floats(count ? count : 1);
}

static double cpu_head_loss(lfs_backend *be, const lfs_head_cfg *cfg, int B, int D, int K,
                            float *dx, float *dw, lfs_head_stats *stats, const float *x,
                            const float *w, const int32_t *labels) {
  (void)be;
  return lfs_head_loss(cfg, B, D, K, dx, dw, stats, x, w, labels);
}

static void cpu_sgd_step(lfs_backend *be, float *w, float *v, const float *g, size_t n, float lr,
                         float momentum, float weight_decay) {
  (void)be;
  lfs_sgd_step_raw(w, v, g, n, lr, momentum, weight_decay);
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

#define LFS_CPU_OPS(sfx)                                                                      \
  {                                                                                        \
    .name = "cpu", .alloc = cpu_alloc, .free = cpu_free, .upload = cpu_copy,               \
    .download = cpu_copy, .fill = cpu_fill, .axpy = cpu_axpy,                              \
    .host_alloc = cpu_host_alloc, .host_free = cpu_free, .upload_async = cpu_copy,         \
    .conv2d_forward = lfs_cpu_conv2d_forward##sfx,                                         \
    .conv2d_backward = lfs_cpu_conv2d_backward##sfx,                                       \
    .batchnorm_stats = lfs_cpu_batchnorm_stats##sfx,                                       \
    .batchnorm_apply = lfs_cpu_batchnorm_apply##sfx,                                       \
    .batchnorm_grad_terms = lfs_cpu_batchnorm_grad_terms##sfx,                             \
    .batchnorm_backward_apply = lfs_cpu_batchnorm_backward_apply##sfx,                     \
    .prelu_forward = lfs_cpu_prelu_forward##sfx, .prelu_backward = lfs_cpu_prelu_backward##sfx, \
    .linear_forward = lfs_cpu_linear_forward##sfx,                                         \
    .linear_backward = lfs_cpu_linear_backward##sfx,                                       \
    .add_forward = lfs_cpu_add_forward##sfx,                                               \
    .dropout_forward = lfs_cpu_dropout_forward##sfx,                                       \
    .dropout_backward = lfs_cpu_dropout_backward##sfx,                                     \
    .l2norm_forward = lfs_cpu_l2norm_forward##sfx,                                         \
    .l2norm_backward = lfs_cpu_l2norm_backward##sfx, .head_loss = cpu_head_loss,            \
    .sgd_step = cpu_sgd_step,                                                              \
  }

typedef struct {
  const char *name;
  int level; /* x86-64 microarchitecture level the CPU must reach; 0: any CPU */
  lfs_backend_ops ops;
} cpu_isa;

/* Best first. */
static const cpu_isa isas[] = {
#ifdef LFS_HAVE_CPU_ISA_BUILDS
    {"x86-64-v4", 4, LFS_CPU_OPS(_v4)},
    {"x86-64-v3", 3, LFS_CPU_OPS(_v3)},
#endif
    {"baseline", 0, LFS_CPU_OPS()},
};
enum { isa_count = sizeof isas / sizeof isas[0] };

static int cpu_runs(const cpu_isa *isa) {
#ifdef LFS_HAVE_CPU_ISA_BUILDS
  if (isa->level == 4) return __builtin_cpu_supports("x86-64-v4") != 0;
  if (isa->level == 3) return __builtin_cpu_supports("x86-64-v3") != 0;
#endif
  return isa->level == 0;
}

static lfs_backend cpu = {.ops = NULL, .ctx = NULL, .device = -1};
static const cpu_isa *cpu_isa_in_use;

int lfs_cpu_isa_select(const char *name) {
  for (int i = 0; i < isa_count; i++)
    if ((!name || !strcmp(name, isas[i].name)) && cpu_runs(&isas[i])) {
      cpu_isa_in_use = &isas[i];
      cpu.ops = &isas[i].ops;
      return 0;
    }
  return -1;
}

const char *lfs_cpu_isa_name(void) {
  if (!cpu_isa_in_use) lfs_cpu_isa_select(NULL);
  return cpu_isa_in_use->name;
}

lfs_backend *lfs_backend_cpu(void) {
  if (!cpu.ops) lfs_cpu_isa_select(NULL);
  return &cpu;
}
