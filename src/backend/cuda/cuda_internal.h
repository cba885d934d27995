/* cuda_internal.h: what the CUDA backend's translation units share (C++, nvcc):
 * the context (device, cuBLAS and cuDNN handles, the convolution plan cache,
 * a grow-only workspace), checked CUDA/cuBLAS/cuDNN calls, launch geometry and
 * the kernels' entry points. Memory is device memory; layouts are those of
 * include/lfs/backend.h. Everything runs on the (legacy) default stream of the
 * device, so calls are ordered and a download waits for the work before it;
 * only upload_async uses a copy stream, which the default stream waits for. */
#ifndef LFS_CUDA_INTERNAL_H
#define LFS_CUDA_INTERNAL_H

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#include <stddef.h>
#include <stdint.h>

/* lfs/log.h is C11: its _Noreturn is C++11's [[noreturn]] */
#ifndef _Noreturn
#define _Noreturn [[noreturn]]
#endif
extern "C" {
#include "backend/cuda/fastdiv.h"
#include "lfs/backend.h"
#include "lfs/log.h"
int lfs_node_rank(void); /* lfs/runtime.h */
}

struct lfs_cuda_conv_plan; /* cuda_conv.cu */

typedef struct {
  int device;
  cublasHandle_t blas;
  cudnnHandle_t dnn;
  int tf32;                 /* TF32 tensor-core math in GEMMs and convolutions */
  int conv_gemm;            /* convolutions as im2col + cuBLAS instead of cuDNN */
  int conv_find;            /* cuDNN algorithms chosen by timing, not heuristics */
  int conv_any;             /* non-deterministic algorithms too (timed choice) */
  int conv_graph;           /* convolutions through cuDNN's graph API (cuda_conv_graph.cu) */
  int graph_fallbacks;      /* graph API passes or calls that took the legacy path instead */
  void *workspace;          /* the convolutions' workspace (cuDNN, im2col), grown on demand */
  size_t workspace_bytes;
  double *reduce;           /* device scratch for per-channel partial sums */
  size_t reduce_count;
  double *stats;            /* device scratch for batch norm's per-channel sums */
  size_t stats_count;
  cudaStream_t copy_stream; /* upload_async's */
  cudaEvent_t copy_done;
  cudaEvent_t issued_before; /* the default stream's work at the previous upload_async */
  int uploaded_async;        /* issued_before has been recorded */
  void *head_scratch;       /* the margin head's per-call scratch, grown on demand */
  size_t head_bytes;
  void *head_host;          /* its page-locked staging: labels in, per-row results out */
  size_t head_host_bytes;
  int multiprocessors;      /* of the device, to size reductions */
  int channel_resident[8];  /* blocks of each per-channel reduction an SM holds, 0: not asked */
  struct lfs_cuda_conv_plan *plans; /* one per convolution geometry seen */
  int nplans, cap_plans;
} lfs_cuda_ctx;

/* Stops the program with the failed call, its error and where it was. */
void lfs_cuda_fail(const char *what, const char *error, const char *file, int line);
#define LFS_CUDA_CHECK(call)                                                 \
  do {                                                                       \
    cudaError_t lfs_rc_ = (call);                                            \
    if (lfs_rc_ != cudaSuccess)                                              \
      lfs_cuda_fail(#call, cudaGetErrorString(lfs_rc_), __FILE__, __LINE__); \
  } while (0)
#define LFS_CUBLAS_CHECK(call)                                                            \
  do {                                                                                    \
    cublasStatus_t lfs_rc_ = (call);                                                      \
    if (lfs_rc_ != CUBLAS_STATUS_SUCCESS)                                                 \
      lfs_cuda_fail(#call, cublasGetStatusString(lfs_rc_), __FILE__, __LINE__);           \
  } while (0)
#define LFS_CUDNN_CHECK(call)                                                             \
  do {                                                                                    \
    cudnnStatus_t lfs_rc_ = (call);                                                       \
    if (lfs_rc_ != CUDNN_STATUS_SUCCESS)                                                  \
      lfs_cuda_fail(#call, cudnnGetErrorString(lfs_rc_), __FILE__, __LINE__);             \
  } while (0)
/* A kernel launch's own error (bad configuration) at once; faults inside it
 * surface at the next synchronising call. */
#define LFS_CUDA_LAUNCHED() LFS_CUDA_CHECK(cudaGetLastError())

static inline lfs_cuda_ctx *lfs_cuda_ctx_of(lfs_backend *be) { return (lfs_cuda_ctx *)be->ctx; }

enum { LFS_CUDA_THREADS = 256 };
/* Blocks for a grid-stride loop over count elements. */
static inline unsigned lfs_cuda_blocks(size_t count) {
  size_t b = (count + LFS_CUDA_THREADS - 1) / LFS_CUDA_THREADS;
  if (b < 1) b = 1;
  return (unsigned)(b > 65535 * 8 ? 65535 * 8 : b);
}

/* The sum of v over the block (blockDim.x == LFS_CUDA_THREADS), in double, on
 * every thread; part is LFS_CUDA_THREADS doubles of shared memory. */
static __device__ __forceinline__ double lfs_cuda_block_sum(double v, double *part) {
  part[threadIdx.x] = v;
  __syncthreads();
  for (int s = LFS_CUDA_THREADS / 2; s > 0; s >>= 1) {
    if ((int)threadIdx.x < s) part[threadIdx.x] += part[threadIdx.x + s];
    __syncthreads();
  }
  const double total = part[0];
  __syncthreads(); /* part may be reused at once */
  return total;
}

#define LFS_CUDA_GRID_STRIDE(i, count)                                                     \
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (count);             \
       i += (size_t)blockDim.x * gridDim.x)

/* ---- per-channel work on x viewed as [n, c, spatial] (NCHW, BN1d with spatial 1) ---- */

/* 32-bit indices: kernels over one tensor index it with uint32_t. */
#define LFS_CUDA_GRID_STRIDE32(i, count)                                                   \
  for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < (count); i += blockDim.x * gridDim.x)

/* (i / spatial) % c without integer division (fastdiv.h). */
typedef struct {
  lfs_fastdiv spatial, c;
} lfs_cuda_channel_of;
/* For a tensor of n * c * spatial values; stops the program, naming the size,
 * beyond the 2^31 - 1 values 32-bit indexing allows. */
lfs_cuda_channel_of lfs_cuda_channels(int n, int c, int spatial);
static __device__ __forceinline__ uint32_t lfs_cuda_channel(uint32_t i, lfs_cuda_channel_of k) {
  return lfs_fastdiv_mod(lfs_fastdiv_div(i, k.spatial), k.c);
}

/* ---- groups of 1 or 4 floats: 16-byte loads and stores where the data allows ---- */

template <int VEC> struct lfs_vecf {
  float v[VEC];
};
static __device__ __forceinline__ void lfs_cuda_load(lfs_vecf<1> &r, const float *p) {
  r.v[0] = *p;
}
static __device__ __forceinline__ void lfs_cuda_load(lfs_vecf<4> &r, const float *p) {
  const float4 q = *reinterpret_cast<const float4 *>(p);
  r.v[0] = q.x, r.v[1] = q.y, r.v[2] = q.z, r.v[3] = q.w;
}
static __device__ __forceinline__ void lfs_cuda_store(float *p, const lfs_vecf<1> &r) {
  *p = r.v[0];
}
static __device__ __forceinline__ void lfs_cuda_store(float *p, const lfs_vecf<4> &r) {
  *reinterpret_cast<float4 *>(p) = make_float4(r.v[0], r.v[1], r.v[2], r.v[3]);
}
/* Whether a per-channel kernel over [n, c, spatial] may take 4 values at a
 * time: the plane is a multiple of 4 (no group straddles two channels) and
 * every tensor it touches (NULL: none) starts on 16 bytes. */
static inline int lfs_cuda_vec4(int spatial, const void *a, const void *b, const void *c,
                                const void *d) {
  const uintptr_t any = (uintptr_t)a | (uintptr_t)b | (uintptr_t)c | (uintptr_t)d;
  return spatial % 4 == 0 && (any & 15) == 0;
}

/* Element-wise work on [n, c, spatial] in groups of Op::vec values of one
 * channel: op(i, ch) for the group starting at flat index i. */
template <class Op>
static __global__ void lfs_cuda_channel_map_kernel(Op op, lfs_cuda_channel_of k, uint32_t groups) {
  LFS_CUDA_GRID_STRIDE32(g, groups) {
    const uint32_t i = g * Op::vec;
    op(i, lfs_cuda_channel(i, k));
  }
}
template <class Op> static void lfs_cuda_channel_map(const Op &op, int n, int c, int spatial) {
  const size_t count = (size_t)n * c * spatial;
  if (!count) return;
  const lfs_cuda_channel_of k = lfs_cuda_channels(n, c, spatial);
  const size_t groups = count / Op::vec;
  lfs_cuda_channel_map_kernel<Op><<<lfs_cuda_blocks(groups), LFS_CUDA_THREADS>>>(op, k,
                                                                               (uint32_t)groups);
  LFS_CUDA_LAUNCHED();
}

/* ---- per-channel sums (cuda_channel.cu) ---- */

/* What lfs_cuda_channel_sums adds up over each channel, in double. */
enum {
  LFS_CUDA_SUM_MOMENTS, /* two outputs: x - shift[ch], and its square (batch norm's statistics) */
  LFS_CUDA_SUM_GRAD,    /* two outputs: x, and x (y - shift[ch]) (batch norm's backward; x = dy) */
  LFS_CUDA_SUM_PRELU,   /* x min(y, 0): PReLU's alpha gradient, x = dy, y = input; with dx set,
                           also writes PReLU's input gradient on the same pass */
  LFS_CUDA_SUM_TERMS
};
typedef struct {
  const float *x, *y;  /* [n, c, spatial]; y is not read by LFS_CUDA_SUM_MOMENTS */
  const float *shift;  /* [c] or NULL (0): LFS_CUDA_SUM_MOMENTS, LFS_CUDA_SUM_GRAD */
  float *dx;           /* [n, c, spatial], LFS_CUDA_SUM_PRELU: x alpha-or-1, or NULL */
  const float *alpha;  /* [c], LFS_CUDA_SUM_PRELU with dx */
  int set_dx;          /* dx = 0 + g (dx's only writer) rather than dx += g */
} lfs_cuda_channel_operands;
/* A reduction's per-block sums (device): output o of channel ch is row
 * r = o c + ch, the sum of partials[r splits + s] over s < splits, in that
 * order (lfs_cuda_parts_total), so the result is the same on every run on one
 * device. splits 0: every sum is 0. */
typedef struct {
  const double *partials;
  int splits;
} lfs_cuda_channel_parts;
static __device__ __forceinline__ double lfs_cuda_parts_total(lfs_cuda_channel_parts p, size_t r) {
  double total = 0.0;
  for (int s = 0; s < p.splits; s++) total += p.partials[r * p.splits + s];
  return total;
}
/* The per-channel sums in double, each channel split over several blocks so
 * that the whole device works (channel_span.h), left as the blocks' parts in
 * the context's reduction scratch (valid until the next reduction): the
 * kernel that uses them adds them up, saving a launch. */
lfs_cuda_channel_parts lfs_cuda_channel_reduce(lfs_cuda_ctx *ctx, int term,
                                               const lfs_cuda_channel_operands *a, int n, int c,
                                               int spatial);
/* The same, added up into out [outputs * c] (device): output o of channel ch
 * at out[o * c + ch] (for synchronised BN's trip to the host). */
void lfs_cuda_channel_sums(lfs_cuda_ctx *ctx, double *out, int term,
                           const lfs_cuda_channel_operands *a, int n, int c, int spatial);

/* ---- memory (cuda_memory.cu) ---- */

/* cudaMalloc; out of memory stops the rank naming `what` (NULL: the purpose
 * set by lfs_backend_set_purpose), the size and the memory left. */
void lfs_cuda_malloc(lfs_cuda_ctx *c, void **p, size_t bytes, const char *what);
/* The backend's memory ops (include/lfs/backend.h). */
float *lfs_cuda_alloc(lfs_backend *be, size_t count);
void lfs_cuda_free(lfs_backend *be, float *p);
void lfs_cuda_upload(lfs_backend *be, float *dst, const float *src, size_t count);
void lfs_cuda_download(lfs_backend *be, float *dst, const float *src, size_t count);
void lfs_cuda_upload_async(lfs_backend *be, float *dst, const float *src, size_t count);
float *lfs_cuda_host_alloc(lfs_backend *be, size_t count);
void lfs_cuda_host_free(lfs_backend *be, float *p);
void lfs_cuda_synchronize(lfs_backend *be);
/* Device memory of at least `bytes` for cuDNN and im2col, owned by the context. */
void *lfs_cuda_workspace(lfs_cuda_ctx *c, size_t bytes);
/* Device scratch of `count` doubles: the partial sums of lfs_cuda_channel_sums,
 * and batch norm's per-channel sums. Each grows on demand. */
double *lfs_cuda_reduce_scratch(lfs_cuda_ctx *c, size_t count);
double *lfs_cuda_stats_scratch(lfs_cuda_ctx *c, size_t count);

/* cuda_conv.cu */
void lfs_cuda_conv2d_forward(lfs_backend *be, const lfs_conv_desc *d, float *y, const float *x,
                             const float *w, const float *b);
void lfs_cuda_conv2d_backward(lfs_backend *be, const lfs_conv_desc *d, float *dx,
                              lfs_grad_write dx_write, float *dw, float *db, const float *dy,
                              const float *x, const float *w);
void lfs_cuda_conv_plans_free(lfs_cuda_ctx *c);
/* cuda_conv_graph.cu: one pass of a convolution through cuDNN's graph API. Its
 * three tensors are shaped like x, w and y: forward (x, w, y), backward data
 * (dx, w, dy), backward filter (x, dw, dy); the pass writes the one of them
 * that is its output (output = alpha op + beta output, alpha 1). */
enum { LFS_CUDA_PASS_FORWARD, LFS_CUDA_PASS_DATA, LFS_CUDA_PASS_FILTER };
typedef struct lfs_cuda_graph_pass lfs_cuda_graph_pass;
/* The pass's plan, chosen by timing cuDNN's engines on ptrs (the output is
 * timed into scratch, never into ptrs'); NULL, with the reason in why, where
 * the graph API has no engine for it. */
lfs_cuda_graph_pass *lfs_cuda_graph_pass_make(lfs_cuda_ctx *c, const lfs_conv_desc *d, int pass,
                                              float beta, void *const ptrs[3],
                                              size_t max_workspace, char *why, size_t whylen);
/* Runs it on ptrs: 1; 0 (nothing done) when a pointer breaks the alignment
 * the plan was made for; -1, with why, when cuDNN refuses to run it. */
int lfs_cuda_graph_pass_run(lfs_cuda_ctx *c, lfs_cuda_graph_pass *g, void *const ptrs[3],
                            char *why, size_t whylen);
void lfs_cuda_graph_pass_free(lfs_cuda_graph_pass *g);
/* cuda_conv_gemm.cu: the same through im2col + cuBLAS */
void lfs_cuda_conv2d_forward_gemm(lfs_backend *be, const lfs_conv_desc *d, float *y, const float *x,
                                  const float *w, const float *b);
void lfs_cuda_conv2d_backward_gemm(lfs_backend *be, const lfs_conv_desc *d, float *dx,
                                   lfs_grad_write dx_write, float *dw, float *db, const float *dy,
                                   const float *x, const float *w);

/* cuda_norm.cu: batch norm and L2 normalisation */
double lfs_cuda_batchnorm_stats(lfs_backend *be, const lfs_bn_desc *d, const lfs_bn_stats_cfg *cfg,
                                float *mean, float *invstd, float *run_mean, float *run_var,
                                const float *x);
void lfs_cuda_batchnorm_apply(lfs_backend *be, const lfs_bn_desc *d, float *y, const float *x,
                              const float *mean, const float *invstd, const float *gamma,
                              const float *beta);
void lfs_cuda_batchnorm_grad_terms(lfs_backend *be, const lfs_bn_desc *d,
                                   const lfs_bn_stats_cfg *cfg, double count, float *dgamma,
                                   float *dbeta, float *mean_dy, float *mean_dy_xhat,
                                   const float *dy, const float *x, const float *mean,
                                   const float *invstd);
void lfs_cuda_batchnorm_backward_apply(lfs_backend *be, const lfs_bn_desc *d, float *dx,
                                       lfs_grad_write dx_write, const float *dy, const float *x,
                                       const float *gamma, const float *mean, const float *invstd,
                                       const float *mean_dy, const float *mean_dy_xhat);
void lfs_cuda_l2norm_forward(lfs_backend *be, int rows, int cols, float eps, float *y, float *norms,
                             const float *x);
void lfs_cuda_l2norm_backward(lfs_backend *be, int rows, int cols, float eps, float *dx,
                              const float *dy, const float *y, const float *norms);

/* cuda_head.cu: the cosine head (lfs_head_loss) */
double lfs_cuda_head_loss(lfs_backend *be, const lfs_head_cfg *cfg, int B, int D, int K, float *dx,
                          float *dw, lfs_head_stats *stats, const float *x, const float *w,
                          const int32_t *labels);

/* cuda_pointwise.cu: PReLU, linear (cuBLAS), add, dropout, fill, axpy */
void lfs_cuda_prelu_forward(lfs_backend *be, int n, int c, int spatial, float *y, const float *x,
                            const float *alpha);
void lfs_cuda_prelu_backward(lfs_backend *be, int n, int c, int spatial, float *dx,
                             lfs_grad_write dx_write, float *dalpha, const float *dy,
                             const float *x, const float *alpha);
void lfs_cuda_linear_forward(lfs_backend *be, int n, int in, int out, float *y, const float *x,
                             const float *w, const float *b);
void lfs_cuda_linear_backward(lfs_backend *be, int n, int in, int out, float *dx, float *dw,
                              float *db, const float *dy, const float *x, const float *w);
void lfs_cuda_add_forward(lfs_backend *be, float *y, const float *a, const float *b, size_t count);
void lfs_cuda_dropout_forward(lfs_backend *be, float *y, const float *x, size_t count, float p,
                              const lfs_rng *rng);
void lfs_cuda_dropout_backward(lfs_backend *be, float *dx, const float *dy, size_t count, float p,
                               const lfs_rng *rng);
void lfs_cuda_fill(lfs_backend *be, float *x, float value, size_t count);
void lfs_cuda_axpy(lfs_backend *be, float *y, float alpha, const float *x, size_t count);
void lfs_cuda_sgd_step(lfs_backend *be, float *w, float *v, const float *g, size_t n, float lr,
                       float momentum, float weight_decay);

/* The backend's table of ops (include/lfs/backend.h) under `name`: cuda_backend.cu's, and
 * the host emulation's (tests/gpu/emu). */
static inline lfs_backend_ops lfs_cuda_ops_named(const char *name) {
  const lfs_backend_ops ops = {
      name,
      lfs_cuda_alloc,
      lfs_cuda_free,
      lfs_cuda_upload,
      lfs_cuda_download,
      lfs_cuda_fill,
      lfs_cuda_axpy,
      lfs_cuda_host_alloc,
      lfs_cuda_host_free,
      lfs_cuda_upload_async,
      lfs_cuda_conv2d_forward,
      lfs_cuda_conv2d_backward,
      lfs_cuda_batchnorm_stats,
      lfs_cuda_batchnorm_apply,
      lfs_cuda_batchnorm_grad_terms,
      lfs_cuda_batchnorm_backward_apply,
      lfs_cuda_prelu_forward,
      lfs_cuda_prelu_backward,
      lfs_cuda_linear_forward,
      lfs_cuda_linear_backward,
      lfs_cuda_add_forward,
      lfs_cuda_dropout_forward,
      lfs_cuda_dropout_backward,
      lfs_cuda_l2norm_forward,
      lfs_cuda_l2norm_backward,
      lfs_cuda_head_loss,
      lfs_cuda_sgd_step,
      lfs_cuda_synchronize,
  };
  return ops;
}

#endif
