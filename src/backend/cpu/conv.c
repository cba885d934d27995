/* conv.c: CPU 2-D convolution, NCHW activations, weights (out, in/groups, kh, kw).
 *
 * Dense and grouped convolutions are GEMMs over the column matrix
 * col [in_c*kh*kw, out_h*out_w] of each image (im2col), per group: forward
 * Y = W col and weight gradient dW = dY col^T read col straight from the images
 * while packing (implicit GEMM, src/backend/cpu/sgemm.c), so it is never
 * stored; the input gradient goes through a stored dcol = W^T dY and col2im.
 * Stride-1 forward GEMMs run over "wide rows" (each output row extended to the
 * padded input width), so that a packed row is one contiguous copy; the extra
 * columns are computed and dropped. Small feature maps stack several images
 * side by side in one GEMM. A 1x1
 * stride-1 unpadded conv of one image uses the image itself as col. Depthwise
 * convolutions (groups == in_c == out_c) run as direct loops, where a GEMM with
 * one output row would waste the packing. Workspaces are kept between calls
 * (one backend call at a time per process). */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_internal.h"
#include "lfs/log.h"

/* Workspaces kept between calls: 0 the column-matrix gradient, 1 stacked
 * outputs or gradients, 2 the flipped weights of the input-gradient conv,
 * 3 zero-padded images. */
static float *workspace[4];
static size_t workspace_cap[4];

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

/* dx [in_h, in_w] of channel c += col2im of its kh*kw rows (row stride ld). */
static void col2im_channel(const lfs_conv_desc *d, float *dxc, const float *col_c, size_t ld) {
  const int kk = d->kh * d->kw, s = d->stride;
  for (int r = 0; r < kk; r++) {
    const int i = r / d->kw, j = r % d->kw;
    int lo, hi;
    valid_columns(d, j, &lo, &hi);
    const float *in = col_c + (size_t)r * ld;
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

/* Images per column matrix (see min_gemm_cols) of ohw GEMM columns per image. */
static int chunk_images(const lfs_conv_desc *d, size_t ohw) {
  const size_t rows = (size_t)d->in_c * d->kh * d->kw;
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

/* images [nb][c, rows, row_len] = (or +=, `add`) stacked [c, nb * rows * src_w]:
 * the first row_len of every src_w columns (wide rows drop their extra columns). */
static void unstack_images(float *images, const float *stacked, int nb, int c, int rows,
                           int row_len, int src_w, int add) {
  const size_t img_cols = (size_t)rows * src_w, hw = (size_t)rows * row_len;
  if (src_w == row_len) rows = 1, row_len = src_w = (int)hw; /* one copy per plane */
  const size_t ld = nb * img_cols;
#pragma omp parallel for schedule(static) if ((size_t)nb * c * hw > LFS_CPU_PAR_MIN)
  for (int i = 0; i < c; i++)
    for (int b = 0; b < nb; b++)
      for (int r = 0; r < rows; r++) {
        float *dst = images + ((size_t)b * c + i) * hw + (size_t)r * row_len;
        const float *src = stacked + (size_t)i * ld + (size_t)b * img_cols + (size_t)r * src_w;
        if (add)
          for (int q = 0; q < row_len; q++) dst[q] += src[q];
        else
          memcpy(dst, src, sizeof(float) * row_len);
      }
}

/* The column matrix of nb images, never stored: the GEMM packers read it from a
 * zero-padded copy of the images, xp [nb][in_c][hp][wp], where every tap of
 * every output pixel is in bounds, so that
 *   col(r, j) = xp[row_base(r) + col_offset(j)]
 * with r = (channel, tap row, tap column) + row0 (the group's first row) and
 * j = (image, output row, output column), cols_w columns per output row (out_w,
 * or wp for wide rows). No bounds checks, no zero runs. */
typedef struct {
  const lfs_conv_desc *d;
  const float *xp;
  int hp, wp, row0, cols_w;
} implicit_col;

static size_t row_base(const implicit_col *ic, int r) {
  const lfs_conv_desc *d = ic->d;
  const int kk = d->kh * d->kw, c = r / kk, i = (r / d->kw) % d->kh, tj = r % d->kw;
  return ((size_t)c * ic->hp + i) * ic->wp + tj;
}

/* Offsets of columns j0, j0 + 1, ... (count of them). */
static void col_offsets(const implicit_col *ic, int j0, int count, size_t *off) {
  const lfs_conv_desc *d = ic->d;
  const int ohw = d->out_h * ic->cols_w, s = d->stride;
  const size_t img = (size_t)d->in_c * ic->hp * ic->wp;
  int b = j0 / ohw, oh = (j0 % ohw) / ic->cols_w, ow = j0 % ic->cols_w;
  for (int t = 0; t < count; t++) {
    off[t] = b * img + ((size_t)oh * s) * ic->wp + (size_t)ow * s;
    if (++ow == ic->cols_w) {
      ow = 0;
      if (++oh == d->out_h) oh = 0, b++;
    }
  }
}

/* lfs_gemm_b packer of the column matrix (forward: Y = W col). A panel whose
 * columns are consecutive in xp (wide rows, within one image) is a contiguous
 * copy per row; any other is gathered. */
static void pack_col(const void *ctx, float *dst, int nr, int p0, int kc, int j0, int nc) {
  const implicit_col *ic = ctx;
  size_t off[64], base[256];
  int32_t idx[64];
  if (nr > 64 || kc > 256) lfs_fatal("pack_col: tiles of %d x %d (at most 64 x 256)", nr, kc);
  for (int p = 0; p < kc; p++) base[p] = row_base(ic, ic->row0 + p0 + p);
  for (int jp = 0; jp < nc; jp += nr, dst += (size_t)nr * kc) {
    const int cols = nc - jp < nr ? nc - jp : nr;
    col_offsets(ic, j0 + jp, cols, off);
    if (off[cols - 1] - off[0] == (size_t)cols - 1) {
      for (int p = 0; p < kc; p++) {
        const float *src = ic->xp + base[p] + off[0];
        float *out = dst + (size_t)p * nr;
        for (int t = 0; t < cols; t++) out[t] = src[t];
        for (int t = cols; t < nr; t++) out[t] = 0.0f;
      }
      continue;
    }
    for (int t = 0; t < cols; t++) idx[t] = (int32_t)(off[t] - off[0]);
    for (int p = 0; p < kc; p++) base[p] += off[0];
    lfs_cpu_pack_gather(dst, nr, kc, ic->xp, base, idx, cols);
    for (int p = 0; p < kc; p++) base[p] -= off[0];
  }
}

/* lfs_gemm_b packer of the transposed column matrix (weight gradient: dW = dY col^T). */
static void pack_col_t(const void *ctx, float *dst, int nr, int p0, int kc, int j0, int nc) {
  const implicit_col *ic = ctx;
  size_t off[256];
  int32_t base[64];
  if (nr > 64 || kc > 256) lfs_fatal("pack_col_t: tiles of %d x %d (at most 64 x 256)", nr, kc);
  col_offsets(ic, p0, kc, off);
  for (int jp = 0; jp < nc; jp += nr, dst += (size_t)nr * kc) {
    const int cols = nc - jp < nr ? nc - jp : nr;
    for (int q = 0; q < cols; q++) base[q] = (int32_t)row_base(ic, ic->row0 + j0 + jp + q);
    lfs_cpu_pack_gather(dst, nr, kc, ic->xp, off, base, cols);
  }
}

/* The implicit column matrix of images [n0, n0 + nb), cols_w columns per output
 * row: x itself without padding, else a zero-padded copy in workspace 3. Wide
 * rows read up to kw - 1 floats past the last image, so they always get a copy
 * with that much zeroed slack. */
static implicit_col padded_images(const lfs_conv_desc *d, const float *x, int n0, int nb, int wide) {
  const size_t in_img = (size_t)d->in_c * d->in_h * d->in_w;
  implicit_col ic = {d, x + n0 * in_img, d->in_h + 2 * d->pad, d->in_w + 2 * d->pad, 0, d->out_w};
  if (wide) ic.cols_w = ic.wp;
  if (d->pad == 0 && !wide) return ic;
  const size_t plane = (size_t)ic.hp * ic.wp, slack = wide ? (size_t)d->kw : 0;
  const int planes = nb * d->in_c;
  float *xp = get_workspace(3, (size_t)planes * plane + slack);
  memset(xp + (size_t)planes * plane, 0, sizeof(float) * slack);
#pragma omp parallel for schedule(static) if ((size_t)planes * plane > LFS_CPU_PAR_MIN)
  for (int t = 0; t < planes; t++) {
    float *dst = xp + t * plane;
    const float *src = x + n0 * in_img + (size_t)t * d->in_h * d->in_w;
    memset(dst, 0, sizeof(float) * ic.wp * d->pad);
    for (int h = 0; h < d->in_h; h++) {
      float *row = dst + (size_t)(h + d->pad) * ic.wp;
      for (int w = 0; w < d->pad; w++) row[w] = row[d->pad + d->in_w + w] = 0.0f;
      memcpy(row + d->pad, src + (size_t)h * d->in_w, sizeof(float) * d->in_w);
    }
    memset(dst + (size_t)(d->pad + d->in_h) * ic.wp, 0, sizeof(float) * ic.wp * d->pad);
  }
  ic.xp = xp;
  return ic;
}

/* dx of images [n0, n0 + nb) += col2im(dcol [in_c*kh*kw, nb * ohw]; image b in
 * columns [b*ohw, (b+1)*ohw)), the layout implicit_col describes.
 * Parallel over (image, channel): no two threads write the same dx element. */
static void raise_add(const lfs_conv_desc *d, float *dx, const float *dcol, int n0, int nb) {
  const size_t ohw = (size_t)d->out_h * d->out_w, plane = (size_t)d->in_h * d->in_w;
  const size_t ld = nb * ohw, kk = (size_t)d->kh * d->kw;
#pragma omp parallel for schedule(static) if (d->in_c * kk * ld > LFS_CPU_PAR_MIN)
  for (int t = 0; t < nb * d->in_c; t++) {
    const int b = t / d->in_c, c = t % d->in_c;
    col2im_channel(d, dx + ((size_t)(n0 + b) * d->in_c + c) * plane, dcol + c * kk * ld + b * ohw,
                   ld);
  }
}

/* y = (or +=, `add`) conv(x, w) without bias, through implicit GEMMs; stride 1
 * over wide rows (see the header), whose extra columns unstacking drops. */
static void conv_gemm(const lfs_conv_desc *d, float *y, const float *x, const float *w, int add) {
  const int wide = d->stride == 1 && !is_pointwise(d);
  const int ohw = d->out_h * d->out_w, m = d->out_c / d->groups;
  const int cols_w = wide ? d->in_w + 2 * d->pad : d->out_w, img_cols = d->out_h * cols_w;
  const int k = (d->in_c / d->groups) * d->kh * d->kw;
  const size_t in_img = (size_t)d->in_c * d->in_h * d->in_w, out_img = (size_t)d->out_c * ohw;
  const int chunk = chunk_images(d, img_cols);
  for (int n0 = 0; n0 < d->n; n0 += chunk) {
    const int nb = d->n - n0 < chunk ? d->n - n0 : chunk, ld = nb * img_cols;
    const int in_place = nb == 1 && !wide; /* the GEMM writes y itself */
    float *out = in_place ? y + n0 * out_img : get_workspace(1, (size_t)d->out_c * ld);
    const int direct = nb == 1 && is_pointwise(d); /* a single 1x1 s1 image is its own col */
    implicit_col ic = direct ? (implicit_col){0} : padded_images(d, x, n0, nb, wide);
    for (int g = 0; g < d->groups; g++) {
      const lfs_gemm_matrix plain = {0, ld, x + n0 * in_img + (size_t)g * k * ld};
      ic.row0 = g * k;
      const lfs_gemm_b src = direct ? (lfs_gemm_b){lfs_gemm_pack_matrix, &plain, 0}
                                    : (lfs_gemm_b){pack_col, &ic, 0};
      lfs_cpu_sgemm_b(0, m, ld, k, 1.0f, w + (size_t)g * m * k, k, &src, in_place && add ? 1.0f : 0.0f,
                      out + (size_t)g * m * ld, ld);
    }
    if (!in_place)
      unstack_images(y + n0 * out_img, out, nb, d->out_c, d->out_h, d->out_w, cols_w, add);
  }
}

void LFS_CPU_K(conv2d_forward)(lfs_backend *be, const lfs_conv_desc *d, float *y, const float *x,
                               const float *w, const float *b) {
  (void)be;
  if (is_depthwise(d))
    depthwise_forward(d, y, x, w, d->has_bias ? b : NULL);
  else
    conv_gemm(d, y, x, w, 0);
  if (!is_depthwise(d) && d->has_bias && b) add_bias(d, y, b);
}

/* A stride-1 conv's input gradient is itself a stride-1 conv: of dy, padded by
 * k - 1 - pad, with the weights transposed (in <-> out) and flipped. As a
 * forward conv it runs as one implicit GEMM, with no stored column gradient and
 * no col2im. Square kernels, no groups, pad < k. */
static int input_grad_is_conv(const lfs_conv_desc *d) {
  return d->stride == 1 && d->groups == 1 && d->kh == d->kw && d->pad < d->kh && !is_pointwise(d);
}

static void input_grad_as_conv(const lfs_conv_desc *d, float *dx, const float *dy, const float *w) {
  const int kk = d->kh * d->kw;
  float *flipped = get_workspace(2, (size_t)d->in_c * d->out_c * kk);
  for (int o = 0; o < d->out_c; o++)
    for (int c = 0; c < d->in_c; c++)
      for (int t = 0; t < kk; t++)
        flipped[((size_t)c * d->out_c + o) * kk + (kk - 1 - t)] = w[((size_t)o * d->in_c + c) * kk + t];
  lfs_conv_desc t = {.n = d->n, .in_c = d->out_c, .in_h = d->out_h, .in_w = d->out_w,
                     .out_c = d->in_c, .out_h = d->in_h, .out_w = d->in_w, .kh = d->kh,
                     .kw = d->kw, .stride = 1, .pad = d->kh - 1 - d->pad, .groups = 1};
  conv_gemm(&t, dx, dy, flipped, 1);
}

void LFS_CPU_K(conv2d_backward)(lfs_backend *be, const lfs_conv_desc *d, float *dx,
                                lfs_grad_write dx_write, float *dw, float *db, const float *dy,
                                const float *x, const float *w) {
  (void)be;
  /* every path below accumulates: setting is adding to zeros (the same bits) */
  if (dx && dx_write == LFS_GRAD_SET) {
    const size_t count = (size_t)d->n * d->in_c * d->in_h * d->in_w;
#pragma omp parallel for schedule(static) if (count > LFS_CPU_PAR_MIN)
    for (size_t i = 0; i < count; i++) dx[i] = 0.0f;
  }
  if (d->has_bias && db) bias_backward(d, db, dy);
  if (is_depthwise(d)) {
    depthwise_backward(d, dx, dw, dy, x, w);
    return;
  }
  const int ohw = d->out_h * d->out_w, m = d->out_c / d->groups;
  const int k = (d->in_c / d->groups) * d->kh * d->kw;
  const size_t in_img = (size_t)d->in_c * d->in_h * d->in_w, out_img = (size_t)d->out_c * ohw;
  const int conv_dx = dx && input_grad_is_conv(d);
  const int chunk = chunk_images(d, (size_t)ohw);
  for (int n0 = 0; n0 < d->n; n0 += chunk) {
    const int nb = d->n - n0 < chunk ? d->n - n0 : chunk, ld = nb * ohw;
    const float *grad = dy + n0 * out_img;
    if (nb > 1) {
      float *stacked = get_workspace(1, (size_t)d->out_c * ld);
      stack_images(stacked, grad, nb, d->out_c, ohw);
      grad = stacked;
    }
    implicit_col ic = dw ? padded_images(d, x, n0, nb, 0) : (implicit_col){0};
    for (int g = 0; dw && g < d->groups; g++) {
      ic.row0 = g * k;
      const lfs_gemm_b src = {pack_col_t, &ic, 0};
      lfs_cpu_sgemm_b(0, m, k, ld, 1.0f, grad + (size_t)g * m * ld, ld, &src, 1.0f,
                      dw + (size_t)g * m * k, k);
    }
    if (!dx || conv_dx) continue;
    /* a single pointwise image accumulates into dx straight from the GEMM;
     * otherwise through a stored column-matrix gradient and col2im */
    const int direct = nb == 1 && is_pointwise(d);
    float *dcol = direct ? dx + n0 * in_img : get_workspace(0, (size_t)k * d->groups * ld);
    for (int g = 0; g < d->groups; g++)
      lfs_cpu_sgemm(1, 0, k, ld, m, 1.0f, w + (size_t)g * m * k, k, grad + (size_t)g * m * ld, ld,
                    direct ? 1.0f : 0.0f, dcol + (size_t)g * k * ld, ld);
    if (!direct) raise_add(d, dx, dcol, n0, nb);
  }
  if (conv_dx) input_grad_as_conv(d, dx, dy, w);
}
