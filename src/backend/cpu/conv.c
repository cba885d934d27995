/* conv.c: CPU 2-D convolution, NCHW activations, weights (out, in/groups, kh, kw).
 *
 * Dense and grouped convolutions lower each image to a column matrix
 * col [in_c*kh*kw, out_h*out_w] (im2col) and call OpenBLAS SGEMM per group;
 * a 1x1 stride-1 unpadded conv uses the image itself as the column matrix.
 * Depthwise convolutions (groups == in_c == out_c) run as direct loops, where
 * a GEMM with one output row would waste the BLAS. The column workspace is
 * kept between calls (one backend call at a time per process). */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_internal.h"
#include "lfs/log.h"

/* Workspaces kept between calls: 0 the column matrix, 1 the gathered outputs. */
static float *workspace[2];
static size_t workspace_cap[2];

static float *get_workspace(int which, size_t count) {
  if (count > workspace_cap[which]) {
    free(workspace[which]);
    workspace[which] = lfs_alloc_floats(count);
    workspace_cap[which] = count;
  }
  return workspace[which];
}

/* A GEMM wants at least this many output columns to fill its register tiles and
 * repay the packing; small feature maps therefore stack several images side by
 * side in one column matrix, within a workspace budget (floats). */
enum { min_gemm_cols = 1024, max_chunk_floats = 4 << 20 };

static int is_depthwise(const lfs_conv_desc *d) {
  return d->groups > 1 && d->groups == d->in_c && d->out_c == d->in_c;
}

static int is_pointwise(const lfs_conv_desc *d) {
  return d->kh == 1 && d->kw == 1 && d->stride == 1 && d->pad == 0;
}

/* Output columns [lo, hi) whose input column ow*stride - pad + j lies inside the row. */
static void valid_columns(const lfs_conv_desc *d, int j, int *lo, int *hi) {
  const int first = d->pad - j; /* ow*stride >= pad - j */
  *lo = first <= 0 ? 0 : (first + d->stride - 1) / d->stride;
  const int last = d->in_w - 1 + d->pad - j; /* ow*stride <= in_w - 1 + pad - j */
  *hi = last < 0 ? 0 : last / d->stride + 1;
  if (*hi > d->out_w) *hi = d->out_w;
  if (*lo > *hi) *lo = *hi;
}

/* col [in_c*kh*kw, out_h*out_w] (row stride ld) <- x [in_c, in_h, in_w]. Each
 * row copies the valid stretch of every output row and zero-fills the padding,
 * with no per-element bounds checks. */
static void im2col(const lfs_conv_desc *d, float *col, size_t ld, const float *x) {
  const int ohw = d->out_h * d->out_w, rows = d->in_c * d->kh * d->kw, s = d->stride;
#pragma omp parallel for schedule(static) if ((size_t)rows * ohw > LFS_CPU_PAR_MIN)
  for (int r = 0; r < rows; r++) {
    const int c = r / (d->kh * d->kw), i = (r / d->kw) % d->kh, j = r % d->kw;
    const float *xc = x + (size_t)c * d->in_h * d->in_w;
    int lo, hi;
    valid_columns(d, j, &lo, &hi);
    for (int oh = 0; oh < d->out_h; oh++) {
      float *row = col + (size_t)r * ld + (size_t)oh * d->out_w;
      const int ih = oh * s - d->pad + i;
      if (ih < 0 || ih >= d->in_h) {
        memset(row, 0, sizeof(float) * d->out_w);
        continue;
      }
      const float *src = xc + (ptrdiff_t)ih * d->in_w - d->pad + j; /* + ow*s is inside */
      /* plain loops: rows are short, where memcpy's call costs more than the copy */
      for (int ow = 0; ow < lo; ow++) row[ow] = 0.0f;
      if (s == 1)
        for (int ow = lo; ow < hi; ow++) row[ow] = src[ow];
      else
        for (int ow = lo; ow < hi; ow++) row[ow] = src[(ptrdiff_t)ow * s];
      for (int ow = hi; ow < d->out_w; ow++) row[ow] = 0.0f;
    }
  }
}

/* dx [in_c, in_h, in_w] += col2im(col [in_c*kh*kw, out_h*out_w], row stride ld).
 * Parallel over input channels so that no two threads write the same dx element. */
static void col2im_add(const lfs_conv_desc *d, float *dx, const float *col, size_t ld) {
  const int ohw = d->out_h * d->out_w, kk = d->kh * d->kw, s = d->stride;
#pragma omp parallel for schedule(static) if ((size_t)d->in_c * kk * ohw > LFS_CPU_PAR_MIN)
  for (int c = 0; c < d->in_c; c++) {
    float *dxc = dx + (size_t)c * d->in_h * d->in_w;
    for (int r = 0; r < kk; r++) {
      const int i = r / d->kw, j = r % d->kw;
      int lo, hi;
      valid_columns(d, j, &lo, &hi);
      const float *in = col + ((size_t)c * kk + r) * ld;
      for (int oh = 0; oh < d->out_h; oh++) {
        const int ih = oh * s - d->pad + i;
        if (ih < 0 || ih >= d->in_h) continue;
        float *dst = dxc + (ptrdiff_t)ih * d->in_w - d->pad + j;
        const float *row = in + (size_t)oh * d->out_w;
        if (s == 1)
          for (int ow = lo; ow < hi; ow++) dst[ow] += row[ow];
        else
          for (int ow = lo; ow < hi; ow++) dst[(ptrdiff_t)ow * s] += row[ow];
      }
    }
  }
}

/* One plane of a depthwise conv: y [out_h, out_w] from x [in_h, in_w], w [kh, kw].
 * Loops tap by tap over the valid columns only, so the inner loop has no
 * bounds checks (and is unit-stride, hence vectorised, at stride 1). */
static void depthwise_plane(const lfs_conv_desc *d, float *y, const float *x, const float *w,
                            float bias) {
  const int s = d->stride;
  for (size_t o = 0; o < (size_t)d->out_h * d->out_w; o++) y[o] = bias;
  for (int i = 0; i < d->kh; i++)
    for (int j = 0; j < d->kw; j++) {
      int lo, hi;
      valid_columns(d, j, &lo, &hi);
      const float wij = w[i * d->kw + j];
      for (int oh = 0; oh < d->out_h; oh++) {
        const int ih = oh * s - d->pad + i;
        if (ih < 0 || ih >= d->in_h) continue;
        const ptrdiff_t row = (ptrdiff_t)ih * d->in_w - d->pad + j; /* + ow*s is inside */
        float *yr = y + (size_t)oh * d->out_w;
        for (int ow = lo; ow < hi; ow++) yr[ow] += wij * x[row + (ptrdiff_t)ow * s];
      }
    }
}

static void depthwise_plane_backward(const lfs_conv_desc *d, float *dx, float *dw,
                                     const float *dy, const float *x, const float *w) {
  const int s = d->stride;
  for (int i = 0; i < d->kh; i++)
    for (int j = 0; j < d->kw; j++) {
      int lo, hi;
      valid_columns(d, j, &lo, &hi);
      const float wij = w[i * d->kw + j];
      double acc = 0.0;
      for (int oh = 0; oh < d->out_h; oh++) {
        const int ih = oh * s - d->pad + i;
        if (ih < 0 || ih >= d->in_h) continue;
        const float *g = dy + (size_t)oh * d->out_w;
        const ptrdiff_t row = (ptrdiff_t)ih * d->in_w - d->pad + j;
        if (dw && s == 1 && hi > lo)
          acc += lfs_cpu_dot_shifted(g + lo, 0.0f, x + row + lo, 0.0f, (size_t)(hi - lo));
        else if (dw)
          for (int ow = lo; ow < hi; ow++) acc += g[ow] * x[row + (ptrdiff_t)ow * s];
        if (dx)
          for (int ow = lo; ow < hi; ow++) dx[row + (ptrdiff_t)ow * s] += wij * g[ow];
      }
      if (dw) dw[i * d->kw + j] += (float)acc;
    }
}

static void depthwise_forward(const lfs_conv_desc *d, float *y, const float *x, const float *w,
                              const float *b) {
  const size_t in_plane = (size_t)d->in_h * d->in_w, out_plane = (size_t)d->out_h * d->out_w;
  const int planes = d->n * d->in_c, kk = d->kh * d->kw;
#pragma omp parallel for schedule(static)
  for (int p = 0; p < planes; p++) {
    const int c = p % d->in_c;
    depthwise_plane(d, y + p * out_plane, x + p * in_plane, w + (size_t)c * kk, b ? b[c] : 0.0f);
  }
}

/* Parallel over channels: each thread owns dw[c] and the dx planes of channel c. */
static void depthwise_backward(const lfs_conv_desc *d, float *dx, float *dw, const float *dy,
                               const float *x, const float *w) {
  const size_t in_plane = (size_t)d->in_h * d->in_w, out_plane = (size_t)d->out_h * d->out_w;
  const int kk = d->kh * d->kw;
#pragma omp parallel for schedule(static)
  for (int c = 0; c < d->in_c; c++)
    for (int n = 0; n < d->n; n++) {
      const size_t p = (size_t)n * d->in_c + c;
      depthwise_plane_backward(d, dx ? dx + p * in_plane : NULL, dw ? dw + (size_t)c * kk : NULL,
                               dy + p * out_plane, x + p * in_plane, w + (size_t)c * kk);
    }
}

static void add_bias(const lfs_conv_desc *d, float *y, const float *b) {
  const size_t plane = (size_t)d->out_h * d->out_w;
  for (int n = 0; n < d->n; n++)
    for (int c = 0; c < d->out_c; c++) {
      float *yp = y + ((size_t)n * d->out_c + c) * plane;
      for (size_t i = 0; i < plane; i++) yp[i] += b[c];
    }
}

static void bias_backward(const lfs_conv_desc *d, float *db, const float *dy) {
  const size_t plane = (size_t)d->out_h * d->out_w;
  for (int c = 0; c < d->out_c; c++) {
    double acc = 0.0;
    for (int n = 0; n < d->n; n++) {
      const float *g = dy + ((size_t)n * d->out_c + c) * plane;
      for (size_t i = 0; i < plane; i++) acc += g[i];
    }
    db[c] += (float)acc;
  }
}

/* Images per column matrix (see min_gemm_cols). */
static int chunk_images(const lfs_conv_desc *d) {
  const size_t ohw = (size_t)d->out_h * d->out_w, rows = (size_t)d->in_c * d->kh * d->kw;
  size_t nb = (min_gemm_cols + ohw - 1) / ohw;
  if (nb > (size_t)d->n) nb = (size_t)d->n;
  const size_t widest = rows > (size_t)d->out_c ? rows : (size_t)d->out_c;
  while (nb > 1 && widest * nb * ohw > max_chunk_floats) nb--;
  return (int)nb;
}

/* stacked [c, nb * hw] <-> images [nb][c, hw]: the output side of a stacked GEMM. */
static void stack_images(float *stacked, const float *images, int nb, int c, size_t hw) {
  const size_t ld = (size_t)nb * hw;
#pragma omp parallel for schedule(static) if ((size_t)nb * c * hw > LFS_CPU_PAR_MIN)
  for (int i = 0; i < c; i++)
    for (int b = 0; b < nb; b++)
      memcpy(stacked + (size_t)i * ld + (size_t)b * hw, images + ((size_t)b * c + i) * hw,
             sizeof(float) * hw);
}

static void unstack_images(float *images, const float *stacked, int nb, int c, size_t hw) {
  const size_t ld = (size_t)nb * hw;
#pragma omp parallel for schedule(static) if ((size_t)nb * c * hw > LFS_CPU_PAR_MIN)
  for (int i = 0; i < c; i++)
    for (int b = 0; b < nb; b++)
      memcpy(images + ((size_t)b * c + i) * hw, stacked + (size_t)i * ld + (size_t)b * hw,
             sizeof(float) * hw);
}

/* The column matrix of images [n0, n0 + nb) with row stride nb * ohw; x itself
 * when a single image needs no lowering (1x1, stride 1, no padding). */
static const float *lower(const lfs_conv_desc *d, const float *x, int n0, int nb) {
  const size_t ohw = (size_t)d->out_h * d->out_w, in_img = (size_t)d->in_c * d->in_h * d->in_w;
  if (nb == 1 && is_pointwise(d)) return x + n0 * in_img;
  float *col = get_workspace(0, (size_t)d->in_c * d->kh * d->kw * nb * ohw);
  for (int b = 0; b < nb; b++) im2col(d, col + b * ohw, nb * ohw, x + (n0 + b) * in_img);
  return col;
}

void lfs_cpu_conv2d_forward(lfs_backend *be, const lfs_conv_desc *d, float *y, const float *x,
                            const float *w, const float *b) {
  (void)be;
  if (is_depthwise(d)) {
    depthwise_forward(d, y, x, w, d->has_bias ? b : NULL);
    return;
  }
  const int ohw = d->out_h * d->out_w, m = d->out_c / d->groups;
  const int k = (d->in_c / d->groups) * d->kh * d->kw;
  const size_t out_img = (size_t)d->out_c * ohw;
  const int chunk = chunk_images(d);
  for (int n0 = 0; n0 < d->n; n0 += chunk) {
    const int nb = d->n - n0 < chunk ? d->n - n0 : chunk, ld = nb * ohw;
    const float *col = lower(d, x, n0, nb);
    float *out = nb == 1 ? y + n0 * out_img : get_workspace(1, (size_t)d->out_c * ld);
    for (int g = 0; g < d->groups; g++)
      lfs_cpu_sgemm(0, 0, m, ld, k, 1.0f, w + (size_t)g * m * k, k, col + (size_t)g * k * ld, ld,
                    0.0f, out + (size_t)g * m * ld, ld);
    if (nb > 1) unstack_images(y + n0 * out_img, out, nb, d->out_c, ohw);
  }
  if (d->has_bias && b) add_bias(d, y, b);
}

void lfs_cpu_conv2d_backward(lfs_backend *be, const lfs_conv_desc *d, float *dx, float *dw,
                             float *db, const float *dy, const float *x, const float *w) {
  (void)be;
  if (d->has_bias && db) bias_backward(d, db, dy);
  if (is_depthwise(d)) {
    depthwise_backward(d, dx, dw, dy, x, w);
    return;
  }
  const int ohw = d->out_h * d->out_w, m = d->out_c / d->groups;
  const int k = (d->in_c / d->groups) * d->kh * d->kw;
  const size_t in_img = (size_t)d->in_c * d->in_h * d->in_w, out_img = (size_t)d->out_c * ohw;
  const int chunk = chunk_images(d);
  for (int n0 = 0; n0 < d->n; n0 += chunk) {
    const int nb = d->n - n0 < chunk ? d->n - n0 : chunk, ld = nb * ohw;
    const float *grad = dy + n0 * out_img;
    if (nb > 1) {
      float *stacked = get_workspace(1, (size_t)d->out_c * ld);
      stack_images(stacked, grad, nb, d->out_c, ohw);
      grad = stacked;
    }
    if (dw) {
      const float *col = lower(d, x, n0, nb);
      for (int g = 0; g < d->groups; g++)
        lfs_cpu_sgemm(0, 1, m, k, ld, 1.0f, grad + (size_t)g * m * ld, ld, col + (size_t)g * k * ld,
                      ld, 1.0f, dw + (size_t)g * m * k, k);
    }
    if (!dx) continue;
    /* a single pointwise image accumulates into dx straight from the GEMM;
     * otherwise through the column matrix (whose lowered x is no longer needed) */
    const int direct = nb == 1 && is_pointwise(d);
    float *dcol = direct ? dx + n0 * in_img : get_workspace(0, (size_t)k * d->groups * ld);
    for (int g = 0; g < d->groups; g++)
      lfs_cpu_sgemm(1, 0, k, ld, m, 1.0f, w + (size_t)g * m * k, k, grad + (size_t)g * m * ld, ld,
                    direct ? 1.0f : 0.0f, dcol + (size_t)g * k * ld, ld);
    if (!direct)
      for (int b = 0; b < nb; b++) col2im_add(d, dx + (n0 + b) * in_img, dcol + b * ohw, ld);
  }
}
