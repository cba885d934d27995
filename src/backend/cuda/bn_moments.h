/* bn_moments.h: batch norm's training statistics of one channel as the CUDA
 * backend forms them (cuda_norm.cu, bn_moments_kernel): from the sums over
 * `count` values of d = x - shift and of d^2 (one pass; shift is the running
 * mean before this update), the mean and invstd that normalise x and the moved
 * running averages, with the CPU backend's roundings (src/backend/cpu/batchnorm.c:
 * the variance about the mean as rounded to float, each product of the running
 * averages rounded on its own). Usable from host C (tests/unit/test_bn_moments.c
 * compares it with the CPU backend) and from CUDA code. */
#ifndef LFS_CUDA_BN_MOMENTS_H
#define LFS_CUDA_BN_MOMENTS_H

#include <math.h>

#include "backend/cuda/fastdiv.h" /* LFS_HOST_DEVICE */

/* Products and sums rounded on their own (no fused multiply-add), as the CPU's
 * baseline build computes them: nvcc would contract them, host C for x86-64
 * without FMA does not. */
#ifdef __CUDA_ARCH__
#define LFS_DMUL_RN(a, b) __dmul_rn((a), (b))
#define LFS_DADD_RN(a, b) __dadd_rn((a), (b))
#else
#define LFS_DMUL_RN(a, b) ((a) * (b))
#define LFS_DADD_RN(a, b) ((a) + (b))
#endif

typedef struct {
  float mean, invstd, run_mean, run_var;
} lfs_bn_moments;

/* The running average as the CPU rounds it. */
static inline LFS_HOST_DEVICE float lfs_bn_running(float old, double m, double now) {
  return (float)LFS_DADD_RN(LFS_DMUL_RN(1.0 - m, (double)old), LFS_DMUL_RN(m, now));
}

/* sum_d, sum_d2: the (group's) sums of d = x - shift and d^2, shift = run_mean.
 * The variance is E[d^2] - E[d]^2 in double, whose cancellation costs
 * log2(E[d]^2 / var) of double's 53 bits: little once the running mean is near
 * the batch's. It is taken about the mean as rounded to float, which x is
 * normalised with, as the CPU's is: E[(x - mean_f)^2] = var + (mu - mean_f)^2
 * exactly; the term matters where the mean is large against the spread (mean
 * 1e4, std 3e-3: up to 2.4e-7 against a variance of 9e-6). */
static inline LFS_HOST_DEVICE lfs_bn_moments lfs_bn_moments_finish(double sum_d, double sum_d2,
                                                                   double count, float run_mean,
                                                                   float run_var, double eps,
                                                                   double momentum) {
  const double offset = sum_d / count;
  const double spread = sum_d2 / count - offset * offset;
  const double mu = (double)run_mean + offset;
  lfs_bn_moments r;
  r.mean = (float)mu;
  const double rounding = mu - (double)r.mean;
  const double var = (spread > 0.0 ? spread : 0.0) + rounding * rounding;
  const double unbiased = count > 1 ? LFS_DMUL_RN(var, count) / (count - 1) : var;
  r.invstd = (float)(1.0 / sqrt(var + eps));
  r.run_mean = lfs_bn_running(run_mean, momentum, (double)r.mean);
  r.run_var = lfs_bn_running(run_var, momentum, unbiased);
  return r;
}

#endif
