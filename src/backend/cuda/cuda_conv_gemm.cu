/* cuda_conv_gemm.cu: 2-D convolution as im2col + cuBLAS GEMM, image by image
 * and group by group: the fallback where cuDNN offers no algorithm for a
 * geometry, and a second opinion against cuDNN (LFS_CUDA_CONV=gemm, or
 * lfs_cuda_set_conv_gemm). Layout per image and group: the column matrix
 * col [K = cin_g * kh * kw, P = out_h * out_w] row-major; with cuBLAS's column
 * major, col is [P, K], y_g is [P, cout_g] and w_g is [K, cout_g], so
 * y_g = col * w_g, dw_g += col^T * dy_g and dcol = dy_g * w_g^T. col2im gathers
 * (no atomics), so dx accumulates deterministically. */
#include "backend/cuda/cuda_internal.h"

/* col[k, p] for one image's group: k = (ci * kh + ky) * kw + kx, p = oy * out_w + ox. */
static __global__ void im2col_kernel(float *col, const float *x, int cin_g, int in_h, int in_w,
                                     int kh, int kw, int stride, int pad, int out_h, int out_w) {
  const size_t P = (size_t)out_h * out_w, count = (size_t)cin_g * kh * kw * P;
  LFS_CUDA_GRID_STRIDE(i, count) {
    const size_t k = i / P, p = i % P;
    const int kx = (int)(k % kw), ky = (int)((k / kw) % kh), ci = (int)(k / ((size_t)kw * kh));
    const int ox = (int)(p % out_w), oy = (int)(p / out_w);
    const int ix = ox * stride - pad + kx, iy = oy * stride - pad + ky;
    col[i] = (ix >= 0 && ix < in_w && iy >= 0 && iy < in_h) ? x[((size_t)ci * in_h + iy) * in_w + ix] : 0.0f;
  }
}

/* dx[ci, iy, ix] += the col entries that read it. */
static __global__ void col2im_kernel(float *dx, const float *col, int cin_g, int in_h, int in_w,
                                     int kh, int kw, int stride, int pad, int out_h, int out_w) {
  const size_t P = (size_t)out_h * out_w, count = (size_t)cin_g * in_h * in_w;
  LFS_CUDA_GRID_STRIDE(i, count) {
    const int ix = (int)(i % in_w), iy = (int)((i / in_w) % in_h), ci = (int)(i / ((size_t)in_w * in_h));
    float acc = 0.0f;
    for (int ky = 0; ky < kh; ky++) {
      const int ty = iy + pad - ky;
      if (ty < 0 || ty % stride) continue;
      const int oy = ty / stride;
      if (oy >= out_h) continue;
      for (int kx = 0; kx < kw; kx++) {
        const int tx = ix + pad - kx;
        if (tx < 0 || tx % stride) continue;
        const int ox = tx / stride;
        if (ox >= out_w) continue;
        acc += col[(((size_t)ci * kh + ky) * kw + kx) * P + (size_t)oy * out_w + ox];
      }
    }
    dx[i] += acc;
  }
}

static __global__ void add_channel_bias_kernel(float *y, const float *b, int c, size_t spatial,
                                               size_t count) {
  LFS_CUDA_GRID_STRIDE(i, count) y[i] += b[(i / spatial) % c];
}

/* One block per channel: db[ch] += sum of dy over images and positions, in double. */
static __global__ void channel_bias_grad_kernel(float *db, const float *dy, int n, int c,
                                                size_t spatial) {
  __shared__ double part[LFS_CUDA_THREADS];
  const int ch = blockIdx.x;
  double acc = 0.0;
  for (size_t k = threadIdx.x; k < (size_t)n * spatial; k += blockDim.x)
    acc += dy[((k / spatial) * c + ch) * spatial + k % spatial];
  const double total = lfs_cuda_block_sum(acc, part);
  if (threadIdx.x == 0) db[ch] += (float)total;
}

typedef struct {
  int cin_g, cout_g, K;
  size_t P, x_image, x_group, y_image, w_group;
} gemm_geometry;

static gemm_geometry geometry_of(const lfs_conv_desc *d) {
  gemm_geometry g;
  g.cin_g = d->in_c / d->groups;
  g.cout_g = d->out_c / d->groups;
  g.K = g.cin_g * d->kh * d->kw;
  g.P = (size_t)d->out_h * d->out_w;
  g.x_image = (size_t)d->in_c * d->in_h * d->in_w;
  g.x_group = (size_t)g.cin_g * d->in_h * d->in_w;
  g.y_image = (size_t)d->out_c * g.P;
  g.w_group = (size_t)g.cout_g * g.K;
  return g;
}

static void im2col(const lfs_conv_desc *d, const gemm_geometry *g, float *col, const float *x) {
  im2col_kernel<<<lfs_cuda_blocks((size_t)g->K * g->P), LFS_CUDA_THREADS>>>(
      col, x, g->cin_g, d->in_h, d->in_w, d->kh, d->kw, d->stride, d->pad, d->out_h, d->out_w);
  LFS_CUDA_LAUNCHED();
}

void lfs_cuda_conv2d_forward_gemm(lfs_backend *be, const lfs_conv_desc *d, float *y, const float *x,
                                  const float *w, const float *b) {
  lfs_cuda_ctx *c = lfs_cuda_ctx_of(be);
  const gemm_geometry g = geometry_of(d);
  float *col = (float *)lfs_cuda_workspace(c, sizeof(float) * g.K * g.P);
  const float one = 1.0f, zero = 0.0f;
  for (int n = 0; n < d->n; n++)
    for (int grp = 0; grp < d->groups; grp++) {
      im2col(d, &g, col, x + n * g.x_image + grp * g.x_group);
      LFS_CUBLAS_CHECK(cublasSgemm(c->blas, CUBLAS_OP_N, CUBLAS_OP_N, (int)g.P, g.cout_g, g.K, &one,
                                   col, (int)g.P, w + grp * g.w_group, g.K, &zero,
                                   y + n * g.y_image + grp * g.cout_g * g.P, (int)g.P));
    }
  if (b && d->has_bias) {
    const size_t count = (size_t)d->n * g.y_image;
    add_channel_bias_kernel<<<lfs_cuda_blocks(count), LFS_CUDA_THREADS>>>(y, b, d->out_c, g.P, count);
    LFS_CUDA_LAUNCHED();
  }
}

void lfs_cuda_conv2d_backward_gemm(lfs_backend *be, const lfs_conv_desc *d, float *dx,
                                   lfs_grad_write dx_write, float *dw, float *db, const float *dy,
                                   const float *x, const float *w) {
  lfs_cuda_ctx *c = lfs_cuda_ctx_of(be);
  if (dx && dx_write == LFS_GRAD_SET) /* col2im accumulates: set is adding to zeros */
    LFS_CUDA_CHECK(cudaMemsetAsync(dx, 0, sizeof(float) * d->n * d->in_c * d->in_h * d->in_w,
                                   cudaStreamLegacy));
  const gemm_geometry g = geometry_of(d);
  float *col = (float *)lfs_cuda_workspace(c, sizeof(float) * g.K * g.P);
  const float one = 1.0f, zero = 0.0f;
  for (int n = 0; n < d->n; n++)
    for (int grp = 0; grp < d->groups; grp++) {
      const float *dyg = dy + n * g.y_image + grp * g.cout_g * g.P;
      const size_t x_off = n * g.x_image + grp * g.x_group;
      if (dw) {
        im2col(d, &g, col, x + x_off);
        LFS_CUBLAS_CHECK(cublasSgemm(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, g.K, g.cout_g, (int)g.P, &one,
                                     col, (int)g.P, dyg, (int)g.P, &one, dw + grp * g.w_group, g.K));
      }
      if (dx) {
        LFS_CUBLAS_CHECK(cublasSgemm(c->blas, CUBLAS_OP_N, CUBLAS_OP_T, (int)g.P, g.K, g.cout_g, &one,
                                     dyg, (int)g.P, w + grp * g.w_group, g.K, &zero, col, (int)g.P));
        col2im_kernel<<<lfs_cuda_blocks(g.x_group), LFS_CUDA_THREADS>>>(
            dx + x_off, col, g.cin_g, d->in_h, d->in_w, d->kh, d->kw, d->stride, d->pad, d->out_h,
            d->out_w);
        LFS_CUDA_LAUNCHED();
      }
    }
  if (db && d->has_bias) {
    channel_bias_grad_kernel<<<d->out_c, LFS_CUDA_THREADS>>>(db, dy, d->n, d->out_c, g.P);
    LFS_CUDA_LAUNCHED();
  }
}
