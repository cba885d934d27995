/* cuda_pointwise.cu: CUDA element-wise and GEMM layers: fill, axpy, SGD, residual
 * add, PReLU (per channel of [n, c, spatial]), linear through cuBLAS (row-major
 * operands passed as their column-major transposes), and inverted dropout with
 * the CPU's Philox4x32-10 masks recomputed on the device (the same bits). */
#include "backend/cuda/cuda_internal.h"

#define GRID_STRIDE LFS_CUDA_GRID_STRIDE

static __global__ void fill_kernel(float *x, float v, size_t count) {
  GRID_STRIDE(i, count) x[i] = v;
}

static __global__ void axpy_kernel(float *y, float alpha, const float *x, size_t count) {
  GRID_STRIDE(i, count) y[i] += alpha * x[i];
}

static __global__ void add_kernel(float *y, const float *a, const float *b, size_t count) {
  GRID_STRIDE(i, count) y[i] = a[i] + b[i];
}

void lfs_cuda_fill(lfs_backend *be, float *x, float value, size_t count) {
  (void)be;
  if (!count) return;
  fill_kernel<<<lfs_cuda_blocks(count), LFS_CUDA_THREADS>>>(x, value, count);
  LFS_CUDA_LAUNCHED();
}

void lfs_cuda_axpy(lfs_backend *be, float *y, float alpha, const float *x, size_t count) {
  (void)be;
  if (!count) return;
  axpy_kernel<<<lfs_cuda_blocks(count), LFS_CUDA_THREADS>>>(y, alpha, x, count);
  LFS_CUDA_LAUNCHED();
}

void lfs_cuda_add_forward(lfs_backend *be, float *y, const float *a, const float *b, size_t count) {
  (void)be;
  if (!count) return;
  add_kernel<<<lfs_cuda_blocks(count), LFS_CUDA_THREADS>>>(y, a, b, count);
  LFS_CUDA_LAUNCHED();
}

/* ---- SGD (src/optim/sgd.c's lfs_sgd_step_raw) ---- */

static __global__ void sgd_kernel(float *w, float *v, const float *g, size_t n, float lr,
                                  float momentum, float weight_decay) {
  GRID_STRIDE(i, n) {
    const float d = g[i] + weight_decay * w[i];
    v[i] = momentum * v[i] + d;
    w[i] -= lr * v[i];
  }
}

void lfs_cuda_sgd_step(lfs_backend *be, float *w, float *v, const float *g, size_t n, float lr,
                       float momentum, float weight_decay) {
  (void)be;
  if (!n) return;
  sgd_kernel<<<lfs_cuda_blocks(n), LFS_CUDA_THREADS>>>(w, v, g, n, lr, momentum, weight_decay);
  LFS_CUDA_LAUNCHED();
}

/* ---- PReLU ---- */

template <int VEC> struct prelu_forward_op {
  static const int vec = VEC;
  float *y;
  const float *x, *alpha;
  __device__ void operator()(uint32_t i, uint32_t ch) const {
    const float a = alpha[ch];
    lfs_vecf<VEC> v;
    lfs_cuda_load(v, x + i);
#pragma unroll
    for (int l = 0; l < VEC; l++) v.v[l] = v.v[l] * (v.v[l] > 0.0f ? 1.0f : a);
    lfs_cuda_store(y + i, v);
  }
};

/* set: dx = 0 + g without reading dx (its only writer); otherwise dx += g */
template <int VEC> struct prelu_dx_op {
  static const int vec = VEC;
  float *dx;
  const float *dy, *x, *alpha;
  int set;
  __device__ void operator()(uint32_t i, uint32_t ch) const {
    const float a = alpha[ch];
    lfs_vecf<VEC> g, xv, out = {};
    lfs_cuda_load(g, dy + i);
    lfs_cuda_load(xv, x + i);
    if (!set) lfs_cuda_load(out, dx + i);
#pragma unroll
    for (int l = 0; l < VEC; l++) out.v[l] = out.v[l] + g.v[l] * (xv.v[l] > 0.0f ? 1.0f : a);
    lfs_cuda_store(dx + i, out);
  }
};

/* dalpha[ch] += its channel sum of dy * min(x, 0) */
static __global__ void add_sums_kernel(float *dalpha, lfs_cuda_channel_parts sums, int c) {
  GRID_STRIDE(ch, (size_t)c) dalpha[ch] += (float)lfs_cuda_parts_total(sums, ch);
}

void lfs_cuda_prelu_forward(lfs_backend *be, int n, int c, int spatial, float *y, const float *x,
                            const float *alpha) {
  (void)be;
  if (lfs_cuda_vec4(spatial, y, x, NULL, NULL))
    lfs_cuda_channel_map(prelu_forward_op<4>{y, x, alpha}, n, c, spatial);
  else
    lfs_cuda_channel_map(prelu_forward_op<1>{y, x, alpha}, n, c, spatial);
}

/* With dalpha, one pass over dy and x yields both gradients (cuda_channel.cu). */
void lfs_cuda_prelu_backward(lfs_backend *be, int n, int c, int spatial, float *dx,
                             lfs_grad_write dx_write, float *dalpha, const float *dy,
                             const float *x, const float *alpha) {
  const int set = dx_write == LFS_GRAD_SET;
  if ((size_t)n * c * spatial == 0) return;
  if (dalpha) {
    const lfs_cuda_channel_operands both = {dy, x, NULL, dx, alpha, set};
    const lfs_cuda_channel_parts sums =
        lfs_cuda_channel_reduce(lfs_cuda_ctx_of(be), LFS_CUDA_SUM_PRELU, &both, n, c, spatial);
    add_sums_kernel<<<lfs_cuda_blocks((size_t)c), LFS_CUDA_THREADS>>>(dalpha, sums, c);
    LFS_CUDA_LAUNCHED();
  } else if (dx) {
    if (lfs_cuda_vec4(spatial, dx, dy, x, NULL))
      lfs_cuda_channel_map(prelu_dx_op<4>{dx, dy, x, alpha, set}, n, c, spatial);
    else
      lfs_cuda_channel_map(prelu_dx_op<1>{dx, dy, x, alpha, set}, n, c, spatial);
  }
}

/* ---- linear (cuBLAS, column-major: a row-major [r, k] matrix is a column-major [k, r]) ---- */

static __global__ void add_bias_rows_kernel(float *y, const float *b, int out, size_t count) {
  GRID_STRIDE(i, count) y[i] += b[i % out];
}

/* One block per output column: db[o] += sum over rows of dy[i, o], in double. */
static __global__ void bias_grad_kernel(float *db, const float *dy, int n, int out) {
  __shared__ double part[LFS_CUDA_THREADS];
  const int o = blockIdx.x;
  double acc = 0.0;
  for (int i = threadIdx.x; i < n; i += blockDim.x) acc += dy[(size_t)i * out + o];
  const double total = lfs_cuda_block_sum(acc, part);
  if (threadIdx.x == 0) db[o] += (float)total;
}

void lfs_cuda_linear_forward(lfs_backend *be, int n, int in, int out, float *y, const float *x,
                             const float *w, const float *b) {
  lfs_cuda_ctx *c = lfs_cuda_ctx_of(be);
  const float one = 1.0f, zero = 0.0f;
  /* y^T [out, n] = w [out, in] x^T [in, n]: w is column-major [in, out], transposed */
  LFS_CUBLAS_CHECK(cublasSgemm(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, out, n, in, &one, w, in, x, in,
                               &zero, y, out));
  if (b) {
    const size_t count = (size_t)n * out;
    add_bias_rows_kernel<<<lfs_cuda_blocks(count), LFS_CUDA_THREADS>>>(y, b, out, count);
    LFS_CUDA_LAUNCHED();
  }
}

void lfs_cuda_linear_backward(lfs_backend *be, int n, int in, int out, float *dx, float *dw,
                              float *db, const float *dy, const float *x, const float *w) {
  lfs_cuda_ctx *c = lfs_cuda_ctx_of(be);
  const float one = 1.0f;
  /* dx^T [in, n] += w^T [in, out] dy^T [out, n] */
  if (dx)
    LFS_CUBLAS_CHECK(cublasSgemm(c->blas, CUBLAS_OP_N, CUBLAS_OP_N, in, n, out, &one, w, in, dy, out,
                                 &one, dx, in));
  /* dw^T [in, out] += x^T [in, n] dy [n, out] */
  if (dw)
    LFS_CUBLAS_CHECK(cublasSgemm(c->blas, CUBLAS_OP_N, CUBLAS_OP_T, in, out, n, &one, x, in, dy, out,
                                 &one, dw, in));
  if (db) {
    bias_grad_kernel<<<out, LFS_CUDA_THREADS>>>(db, dy, n, out);
    LFS_CUDA_LAUNCHED();
  }
}

/* ---- dropout: Philox4x32-10 as src/core/philox.c, keyed by the same lfs_rng ---- */

static __device__ void philox4x32_10(uint32_t c[4], uint32_t k0, uint32_t k1) {
  for (int r = 0; r < 10; r++) {
    if (r > 0) {
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    const uint32_t lo0 = 0xD2511F53u * c[0], hi0 = __umulhi(0xD2511F53u, c[0]);
    const uint32_t lo1 = 0xCD9E8D57u * c[2], hi1 = __umulhi(0xCD9E8D57u, c[2]);
    const uint32_t c1 = c[1], c3 = c[3];
    c[0] = hi1 ^ c1 ^ k0;
    c[1] = lo1;
    c[2] = hi0 ^ c3 ^ k1;
    c[3] = lo0;
  }
}

/* lfs_rng_uniform(rng, i): word i % 4 of block i / 4, ((u >> 9) + 0.5) * 2^-23. */
static __device__ float rng_uniform(lfs_rng r, size_t i) {
  const uint64_t block = i / 4;
  uint32_t c[4] = {(uint32_t)block, (uint32_t)(block >> 32) | (r.purpose << 24), r.a, r.b};
  philox4x32_10(c, r.key[0], r.key[1]);
  return ((float)(c[i % 4] >> 9) + 0.5f) * 0x1p-23f;
}

static __global__ void dropout_forward_kernel(float *y, const float *x, size_t count, float p,
                                              float scale, lfs_rng rng) {
  GRID_STRIDE(i, count) y[i] = rng_uniform(rng, i) >= p ? x[i] * scale : 0.0f;
}

static __global__ void dropout_backward_kernel(float *dx, const float *dy, size_t count, float p,
                                               float scale, lfs_rng rng) {
  /* no fused multiply-add: the CPU rounds the product first */
  GRID_STRIDE(i, count) {
    if (rng_uniform(rng, i) >= p) dx[i] = __fadd_rn(dx[i], __fmul_rn(dy[i], scale));
  }
}

void lfs_cuda_dropout_forward(lfs_backend *be, float *y, const float *x, size_t count, float p,
                              const lfs_rng *rng) {
  (void)be;
  if (!count) return;
  dropout_forward_kernel<<<lfs_cuda_blocks(count), LFS_CUDA_THREADS>>>(y, x, count, p,
                                                                       1.0f / (1.0f - p), *rng);
  LFS_CUDA_LAUNCHED();
}

void lfs_cuda_dropout_backward(lfs_backend *be, float *dx, const float *dy, size_t count, float p,
                               const lfs_rng *rng) {
  (void)be;
  if (!count) return;
  dropout_backward_kernel<<<lfs_cuda_blocks(count), LFS_CUDA_THREADS>>>(dx, dy, count, p,
                                                                        1.0f / (1.0f - p), *rng);
  LFS_CUDA_LAUNCHED();
}
