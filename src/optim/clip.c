/* clip.c: global gradient-norm clipping as torch.nn.utils.clip_grad_norm_ does it
 * (one L2 norm over all gradients, scaled by max_norm / (norm + 1e-6) when that is
 * below 1), on a flat host gradient buffer or the trainable front of an lfs_params.
 *
 * The norm is accumulated in double over a split of the buffer that depends only
 * on its length, never on the thread count, so every rank and every run computes
 * the same bits from the same (all-reduced) gradients. */
#include "lfs/optim.h"

#include <math.h>

/* Chunks are at least this long, and there are at most LFS_CLIP_CHUNKS of them. */
#define LFS_CLIP_MIN_CHUNK 4096
#define LFS_CLIP_CHUNKS 256

/* Four interleaved accumulators: independent add chains, still a fixed order. */
static double chunk_sumsq(const float *g, size_t n) {
  double acc[4] = {0, 0, 0, 0};
  size_t i = 0;
  for (; i + 4 <= n; i += 4)
    for (int k = 0; k < 4; k++) acc[k] += (double)g[i + k] * (double)g[i + k];
  for (; i < n; i++) acc[0] += (double)g[i] * (double)g[i];
  return (acc[0] + acc[1]) + (acc[2] + acc[3]);
}

double lfs_grad_sumsq(const float *g, size_t n) {
  if (n == 0) return 0.0;
  size_t chunks = (n + LFS_CLIP_MIN_CHUNK - 1) / LFS_CLIP_MIN_CHUNK;
  if (chunks > LFS_CLIP_CHUNKS) chunks = LFS_CLIP_CHUNKS;
  const size_t len = (n + chunks - 1) / chunks;
  double part[LFS_CLIP_CHUNKS];
#pragma omp parallel for schedule(static) if (chunks > 1)
  for (size_t c = 0; c < chunks; c++) {
    const size_t begin = c * len < n ? c * len : n;
    const size_t end = begin + len < n ? begin + len : n;
    part[c] = chunk_sumsq(g + begin, end - begin);
  }
  double total = 0.0;
  for (size_t c = 0; c < chunks; c++) total += part[c];
  return total;
}

double lfs_clip_coef(double norm, double max_norm) {
  if (!(max_norm > 0) || !isfinite(norm)) return 1.0;
  const double coef = max_norm / (norm + 1e-6);
  return coef < 1.0 ? coef : 1.0;
}

void lfs_grad_scale(float *g, size_t n, double coef) {
  if (coef == 1.0) return;
  const float c = (float)coef;
#pragma omp parallel for schedule(static) if (n > 65536)
  for (size_t i = 0; i < n; i++) g[i] *= c;
}

double lfs_clip_grad_norm(float *g, size_t n, double max_norm) {
  const double norm = sqrt(lfs_grad_sumsq(g, n));
  lfs_grad_scale(g, n, lfs_clip_coef(norm, max_norm));
  return norm;
}

double lfs_clip_grad_norm_params(lfs_params *p, double max_norm) {
  return lfs_clip_grad_norm(p->grad, p->trainable_count, max_norm);
}
