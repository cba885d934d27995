/* shape.h: the NCHW shape of an activation tensor. A matrix [N, F] is {N, F, 1, 1}. */
#ifndef LFS_SHAPE_H
#define LFS_SHAPE_H

#include <stddef.h>

typedef struct {
  int n, c, h, w;
} lfs_shape;

static inline size_t lfs_shape_count(lfs_shape s) {
  return (size_t)s.n * (size_t)s.c * (size_t)s.h * (size_t)s.w;
}
/* Elements per sample (C*H*W). */
static inline size_t lfs_shape_sample(lfs_shape s) { return (size_t)s.c * (size_t)s.h * (size_t)s.w; }
static inline int lfs_shape_equal(lfs_shape a, lfs_shape b) {
  return a.n == b.n && a.c == b.c && a.h == b.h && a.w == b.w;
}

#endif
