/* channel_span.h: how the CUDA per-channel reductions (cuda_channel.cu) cut x,
 * viewed as [n, c, spatial] (NCHW; BN1d has spatial 1), into blocks. Block
 * (ch, split) of `splits` takes samples [split n / splits, (split + 1) n /
 * splits) of channel ch: `count` values, a run of `plane` contiguous ones per
 * sample, `stride` apart. A thread reads them in groups of `vec` values (4 when
 * the plane is a multiple of 4, so that no group straddles two samples, else 1),
 * several groups at a time. Usable from host C (tests/unit/test_channel_span.c
 * walks every block as the kernels do) and from CUDA code. */
#ifndef LFS_CUDA_CHANNEL_SPAN_H
#define LFS_CUDA_CHANNEL_SPAN_H

#include <stdint.h>

#include "backend/cuda/fastdiv.h"

typedef struct {
  uint32_t base, stride, plane, count;
  lfs_fastdiv per_sample; /* divides by plane */
} lfs_channel_span;

/* Block (ch, split) of x [n, c, plane.d]; n * c * plane.d < 2^32. */
static inline LFS_HOST_DEVICE lfs_channel_span lfs_channel_span_make(uint32_t n, uint32_t c,
                                                                     lfs_fastdiv plane,
                                                                     uint32_t splits,
                                                                     uint32_t split, uint32_t ch) {
  const uint32_t s0 = (uint32_t)((uint64_t)split * n / splits);
  const uint32_t s1 = (uint32_t)((uint64_t)(split + 1) * n / splits);
  lfs_channel_span s;
  s.plane = plane.d;
  s.stride = c * plane.d;
  s.base = s0 * s.stride + ch * plane.d;
  s.count = (s1 - s0) * plane.d;
  s.per_sample = plane;
  return s;
}

/* The flat index in x of the span's k-th value (k < count). */
static inline LFS_HOST_DEVICE uint32_t lfs_channel_span_at(const lfs_channel_span *s, uint32_t k) {
  const uint32_t q = lfs_fastdiv_div(k, s->per_sample);
  return s->base + q * s->stride + (k - q * s->plane);
}

/* Values a block should have at least (one full round of its threads). */
enum { LFS_CHANNEL_MIN_PER_BLOCK = 4096 };

/* Blocks per channel: enough for `blocks` in all (what the device holds at
 * once), but none with fewer than LFS_CHANNEL_MIN_PER_BLOCK values and at most
 * one per sample. */
static inline int lfs_channel_splits(long long blocks, int n, int c, int spatial) {
  long long splits = (blocks + c - 1) / c;
  const long long by_size = (long long)n * spatial / LFS_CHANNEL_MIN_PER_BLOCK;
  if (splits > by_size) splits = by_size;
  if (splits > n) splits = n;
  return splits < 1 ? 1 : (int)splits;
}

#endif
