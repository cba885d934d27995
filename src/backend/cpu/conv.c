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

static float *workspace;
static size_t workspace_cap;

static float *get_workspace(size_t count) {
  if (count > workspace_cap) {
    free(workspace);
    workspace = lfs_alloc_floats(count);
    workspace_cap = count;
  }
  return workspace;
}

static int is_depthwise(const lfs_conv_desc *d) {
  return d->groups > 1 && d->groups == d->in_c && d->out_c == d->in_c;
}

static int is_pointwise(const lfs_conv_desc *d) {
  return d->kh == 1 && d->kw == 1 && d->stride == 1 && d->pad == 0;
}

/* col [in_c*kh*kw, out_h*out_w] <- x [in_c, in_h, in_w] */
static void im2col(const lfs_conv_desc *d, float *col, const float *x) {
  const int ohw = d->out_h * d->out_w, rows = d->in_c * d->kh * d->kw;
#pragma omp parallel for schedule(static) if ((size_t)rows * ohw > LFS_CPU_PAR_MIN)
  for (int r = 0; r < rows; r++) {
    const int c = r / (d->kh * d->kw), i = (r / d->kw) % d->kh, j = r % d->kw;
    const float *xc = x + (size_t)c * d->in_h * d->in_w;
    float *out = col + (size_t)r * ohw;
    for (int oh = 0; oh < d->out_h; oh++) {
      const int ih = oh * d->stride - d->pad + i;
      float *row = out + (size_t)oh * d->out_w;
      if (ih < 0 || ih >= d->in_h) {
        memset(row, 0, sizeof(float) * d->out_w);
        continue;
      }
      const float *xrow = xc + (size_t)ih * d->in_w;
      for (int ow = 0; ow < d->out_w; ow++) {
        const int iw = ow * d->stride - d->pad + j;
        row[ow] = (iw >= 0 && iw < d->in_w) ? xrow[iw] : 0.0f;
      }
    }
  }
}

/* dx [in_c, in_h, in_w] += col2im(col [in_c*kh*kw, out_h*out_w]). Parallel over
 * input channels so that no two threads write the same dx element. */
static void col2im_add(const lfs_conv_desc *d, float *dx, const float *col) {
  const int ohw = d->out_h * d->out_w, kk = d->kh * d->kw;
#pragma omp parallel for schedule(static) if ((size_t)d->in_c * kk * ohw > LFS_CPU_PAR_MIN)
  for (int c = 0; c < d->in_c; c++) {
    float *dxc = dx + (size_t)c * d->in_h * d->in_w;
    for (int r = 0; r < kk; r++) {
      const int i = r / d->kw, j = r % d->kw;
      const float *in = col + ((size_t)c * kk + r) * ohw;
      for (int oh = 0; oh < d->out_h; oh++) {
        const int ih = oh * d->stride - d->pad + i;
        if (ih < 0 || ih >= d->in_h) continue;
        float *dxrow = dxc + (size_t)ih * d->in_w;
        const float *row = in + (size_t)oh * d->out_w;
        for (int ow = 0; ow < d->out_w; ow++) {
          const int iw = ow * d->stride - d->pad + j;
          if (iw >= 0 && iw < d->in_w) dxrow[iw] += row[ow];
        }
      }
    }
  }
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

void lfs_cpu_conv2d_forward(lfs_backend *be, const lfs_conv_desc *d, float *y, const float *x,
                            const float *w, const float *b) {
  (void)be;
  if (is_depthwise(d)) {
    depthwise_forward(d, y, x, w, d->has_bias ? b : NULL);
    return;
  }
  const int ohw = d->out_h * d->out_w, m = d->out_c / d->groups;
  const int k = (d->in_c / d->groups) * d->kh * d->kw;
  const size_t in_img = (size_t)d->in_c * d->in_h * d->in_w, out_img = (size_t)d->out_c * ohw;
  float *col = is_pointwise(d) ? NULL : get_workspace((size_t)k * d->groups * ohw);
  for (int n = 0; n < d->n; n++) {
    const float *cols = x + n * in_img;
    if (col) {
      im2col(d, col, cols);
      cols = col;
    }
    for (int g = 0; g < d->groups; g++)
      lfs_cpu_sgemm(0, 0, m, ohw, k, 1.0f, w + (size_t)g * m * k,
                  k, cols + (size_t)g * k * ohw, ohw, 0.0f, y + n * out_img + (size_t)g * m * ohw,
                  ohw);
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
  const int pointwise = is_pointwise(d);
  float *col = pointwise ? NULL : get_workspace((size_t)k * d->groups * ohw);
  for (int n = 0; n < d->n; n++) {
    const float *dyn = dy + n * out_img;
    if (dw) {
      const float *cols = x + n * in_img;
      if (!pointwise) {
        im2col(d, col, cols);
        cols = col;
      }
      for (int g = 0; g < d->groups; g++)
        lfs_cpu_sgemm(0, 1, m, k, ohw, 1.0f,
                    dyn + (size_t)g * m * ohw, ohw, cols + (size_t)g * k * ohw, ohw, 1.0f,
                    dw + (size_t)g * m * k, k);
    }
    if (!dx) continue;
    /* pointwise: dx accumulates straight from the GEMM; otherwise via the column matrix */
    float *dcol = pointwise ? dx + n * in_img : col;
    for (int g = 0; g < d->groups; g++)
      lfs_cpu_sgemm(1, 0, k, ohw, m, 1.0f, w + (size_t)g * m * k,
                  k, dyn + (size_t)g * m * ohw, ohw, pointwise ? 1.0f : 0.0f,
                  dcol + (size_t)g * k * ohw, ohw);
    if (!pointwise) col2im_add(d, dx + n * in_img, col);
  }
}
