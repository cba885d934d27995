/* pointwise.c: CPU element-wise and row-wise layers: PReLU (per channel of
 * [n, c, spatial]), linear (OpenBLAS SGEMM), residual add, inverted dropout
 * with Philox masks recomputed in backward, and row-wise L2 normalisation. */
#include <math.h>

#include "backend/cpu/cpu_internal.h"

void LFS_CPU_K(prelu_forward)(lfs_backend *be, int n, int c, int spatial, float *y, const float *x,
                              const float *alpha) {
  (void)be;
  const int planes = n * c;
#pragma omp parallel for schedule(static) if ((size_t)planes * spatial > LFS_CPU_PAR_MIN)
  for (int p = 0; p < planes; p++) {
    const float a = alpha[p % c];
    const float *xp = x + (size_t)p * spatial;
    float *yp = y + (size_t)p * spatial;
    /* a select of the slope, then one multiply: this vectorises (with
     * -fno-trapping-math), while a branch on random signs mispredicts */
    for (int i = 0; i < spatial; i++) yp[i] = xp[i] * (xp[i] > 0.0f ? 1.0f : a);
  }
}

/* min(v, 0) as a select: libm's fminf would be a call that blocks vectorisation. */
static inline float negative_part(float v) { return v < 0.0f ? v : 0.0f; }

/* Parallel over channels: each thread owns dalpha[ch]. Selects, not branches, as in forward. */
void LFS_CPU_K(prelu_backward)(lfs_backend *be, int n, int c, int spatial, float *dx,
                               lfs_grad_write dx_write, float *dalpha, const float *dy,
                               const float *x, const float *alpha) {
  (void)be;
  const int set = dx_write == LFS_GRAD_SET;
#pragma omp parallel for schedule(static) if ((size_t)n * c * spatial > LFS_CPU_PAR_MIN)
  for (int ch = 0; ch < c; ch++) {
    double da = 0.0;
    const float a = alpha[ch];
    for (int s = 0; s < n; s++) {
      const size_t off = ((size_t)s * c + ch) * spatial;
      const float *xp = x + off, *g = dy + off;
      if (dalpha) {
        double acc[LFS_LANES] = {0};
        int i = 0;
        for (; i + LFS_LANES <= spatial; i += LFS_LANES)
          for (int l = 0; l < LFS_LANES; l++) acc[l] += g[i + l] * negative_part(xp[i + l]);
        for (; i < spatial; i++) da += g[i] * negative_part(xp[i]);
        for (int l = 0; l < LFS_LANES; l++) da += acc[l];
      }
      if (!dx) continue;
      float *q = dx + off;
      if (set) /* 0 + v: the bits of adding to a zeroed dx */
        for (int i = 0; i < spatial; i++) q[i] = 0.0f + g[i] * (xp[i] > 0.0f ? 1.0f : a);
      else
        for (int i = 0; i < spatial; i++) q[i] += g[i] * (xp[i] > 0.0f ? 1.0f : a);
    }
    if (dalpha) dalpha[ch] += (float)da;
  }
}

void LFS_CPU_K(linear_forward)(lfs_backend *be, int n, int in, int out, float *y, const float *x,
                               const float *w, const float *b) {
  (void)be;
  lfs_cpu_sgemm(0, 1, n, out, in, 1.0f, x, in, w, in, 0.0f, y, out);
  if (!b) return;
  for (int i = 0; i < n; i++)
    for (int o = 0; o < out; o++) y[(size_t)i * out + o] += b[o];
}

void LFS_CPU_K(linear_backward)(lfs_backend *be, int n, int in, int out, float *dx, float *dw,
                                float *db, const float *dy, const float *x, const float *w) {
  (void)be;
  if (dx) lfs_cpu_sgemm(0, 0, n, in, out, 1.0f, dy, out, w, in, 1.0f, dx, in);
  if (dw)
    lfs_cpu_sgemm(1, 0, out, in, n, 1.0f, dy, out, x, in, 1.0f,
                dw, in);
  if (!db) return;
  for (int o = 0; o < out; o++) {
    double acc = 0.0;
    for (int i = 0; i < n; i++) acc += dy[(size_t)i * out + o];
    db[o] += (float)acc;
  }
}

void LFS_CPU_K(add_forward)(lfs_backend *be, float *y, const float *a, const float *b,
                            size_t count) {
  (void)be;
#pragma omp parallel for schedule(static) if (count > LFS_CPU_PAR_MIN)
  for (size_t i = 0; i < count; i++) y[i] = a[i] + b[i];
}

void LFS_CPU_K(dropout_forward)(lfs_backend *be, float *y, const float *x, size_t count, float p,
                                const lfs_rng *rng) {
  (void)be;
  const float scale = 1.0f / (1.0f - p);
#pragma omp parallel for schedule(static) if (count > LFS_CPU_PAR_MIN)
  for (size_t i = 0; i < count; i++) y[i] = lfs_rng_uniform(rng, i) >= p ? x[i] * scale : 0.0f;
}

void LFS_CPU_K(dropout_backward)(lfs_backend *be, float *dx, const float *dy, size_t count, float p,
                                 const lfs_rng *rng) {
  (void)be;
  const float scale = 1.0f / (1.0f - p);
#pragma omp parallel for schedule(static) if (count > LFS_CPU_PAR_MIN)
  for (size_t i = 0; i < count; i++)
    if (lfs_rng_uniform(rng, i) >= p) dx[i] += dy[i] * scale;
}

void LFS_CPU_K(l2norm_forward)(lfs_backend *be, int rows, int cols, float eps, float *y,
                               float *norms, const float *x) {
  (void)be;
  for (int r = 0; r < rows; r++) {
    const float *xr = x + (size_t)r * cols;
    double sq = 0.0;
    for (int j = 0; j < cols; j++) sq += (double)xr[j] * xr[j];
    const float norm = (float)sqrt(sq), denom = norm > eps ? norm : eps;
    norms[r] = norm;
    for (int j = 0; j < cols; j++) y[(size_t)r * cols + j] = xr[j] / denom;
  }
}

/* For |x| > eps: dx = (dy - y * <y, dy>) / |x|; below eps the map is x / eps. */
void LFS_CPU_K(l2norm_backward)(lfs_backend *be, int rows, int cols, float eps, float *dx,
                                const float *dy, const float *y, const float *norms) {
  (void)be;
  for (int r = 0; r < rows; r++) {
    const float *g = dy + (size_t)r * cols, *yr = y + (size_t)r * cols;
    float *q = dx + (size_t)r * cols;
    if (norms[r] <= eps) {
      for (int j = 0; j < cols; j++) q[j] += g[j] / eps;
      continue;
    }
    double dot = 0.0;
    for (int j = 0; j < cols; j++) dot += (double)yr[j] * g[j];
    const float inv = 1.0f / norms[r], proj = (float)dot;
    for (int j = 0; j < cols; j++) q[j] += (g[j] - yr[j] * proj) * inv;
  }
}
