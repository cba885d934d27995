/* fastdiv.h: division of 32-bit unsigned integers by a divisor fixed at run
 * time, as a high multiply, a subtract, an add and two shifts (the method of
 * Granlund and Montgomery, "Division by invariant integers using
 * multiplication", 1994, section 4). Kernels that need the channel of a flat
 * NCHW index, (i / spatial) % c, pay a few instructions instead of two
 * integer divisions. Usable from host C (for its test) and from CUDA code. */
#ifndef LFS_CUDA_FASTDIV_H
#define LFS_CUDA_FASTDIV_H

#include <stdint.h>

#ifdef __CUDACC__
#define LFS_HOST_DEVICE __host__ __device__
#else
#define LFS_HOST_DEVICE
#endif

typedef struct {
  uint32_t d, m, s1, s2;
} lfs_fastdiv;

/* For d >= 1: with l = ceil(log2 d), m = floor(2^32 (2^l - d) / d) + 1. */
static inline lfs_fastdiv lfs_fastdiv_make(uint32_t d) {
  lfs_fastdiv f = {d, 0, 0, 0};
  if (d <= 1) return f; /* n / 1 = n: t = 0 and no shifts */
  uint32_t l = 0;
  while (l < 32 && ((uint64_t)1 << l) < d) l++;
  f.m = (uint32_t)((((uint64_t)1 << 32) * (((uint64_t)1 << l) - d)) / d + 1);
  f.s1 = 1;
  f.s2 = l - 1;
  return f;
}

static inline LFS_HOST_DEVICE uint32_t lfs_fastdiv_div(uint32_t n, lfs_fastdiv f) {
#ifdef __CUDA_ARCH__
  const uint32_t t = __umulhi(n, f.m);
#else
  const uint32_t t = (uint32_t)(((uint64_t)n * f.m) >> 32);
#endif
  return (t + ((n - t) >> f.s1)) >> f.s2;
}

static inline LFS_HOST_DEVICE uint32_t lfs_fastdiv_mod(uint32_t n, lfs_fastdiv f) {
  return n - lfs_fastdiv_div(n, f) * f.d;
}

#endif
