/* cuda_channel.cu: CUDA per-channel sums over x viewed as [n, c, spatial]
 * (NCHW; BN1d has spatial 1): batch norm's moments and backward sums, and
 * PReLU's alpha gradient with its input gradient written on the same pass. A
 * reduction streams its tensors once at the memory's rate: each channel is cut
 * over samples into as many blocks as the device holds at once
 * (channel_span.h), each thread keeps several loads in flight (16-byte ones
 * where the plane is a multiple of 4), and the blocks' partial sums, in double,
 * are added in a fixed order, so the result is the same on every run on one
 * device. */
#include "backend/cuda/channel_span.h"
#include "backend/cuda/cuda_internal.h"

/* Groups of values a thread loads before it adds them up. */
enum { UNROLL = 4 };

static int term_outputs(int term) { return term == LFS_CUDA_SUM_PRELU ? 1 : 2; }

/* The group's loads: x, and y and the input gradient to add to where the term
 * reads them (zeros otherwise), all issued before any is used. */
template <int TERM, int VEC>
static __device__ __forceinline__ void load_group(const lfs_cuda_channel_operands &a, uint32_t at,
                                                  lfs_vecf<VEC> &xv, lfs_vecf<VEC> &yv,
                                                  lfs_vecf<VEC> &old) {
  lfs_cuda_load(xv, a.x + at);
  if (TERM != LFS_CUDA_SUM_MOMENTS) lfs_cuda_load(yv, a.y + at);
  if (TERM == LFS_CUDA_SUM_PRELU && a.dx && !a.set_dx) lfs_cuda_load(old, a.dx + at);
}

/* Adds one group (at flat index `at`) to the thread's sums; PReLU's term also
 * writes the group's input gradient, old + its own (old is 0 where it sets). */
template <int TERM, int VEC>
static __device__ __forceinline__ void add_group(const lfs_cuda_channel_operands &a, uint32_t at,
                                                 const lfs_vecf<VEC> &xv, const lfs_vecf<VEC> &yv,
                                                 const lfs_vecf<VEC> &old, float shift,
                                                 float alpha, double &acc0, double &acc1) {
  if (TERM == LFS_CUDA_SUM_MOMENTS) {
#pragma unroll
    for (int l = 0; l < VEC; l++) {
      const double v = (double)xv.v[l] - (double)shift; /* exact in double */
      acc0 += v;
      acc1 += v * v;
    }
  } else if (TERM == LFS_CUDA_SUM_GRAD) {
#pragma unroll
    for (int l = 0; l < VEC; l++) {
      acc0 += (double)xv.v[l];
      acc1 += (double)xv.v[l] * (double)(yv.v[l] - shift);
    }
  } else {
    lfs_vecf<VEC> g;
#pragma unroll
    for (int l = 0; l < VEC; l++) {
      const float in = yv.v[l];
      acc0 += (double)xv.v[l] * (double)(in < 0.0f ? in : 0.0f);
      g.v[l] = xv.v[l] * (in > 0.0f ? 1.0f : alpha);
    }
    if (a.dx) {
#pragma unroll
      for (int l = 0; l < VEC; l++) g.v[l] = old.v[l] + g.v[l]; /* set: 0 + g, the CPU's bits */
      lfs_cuda_store(a.dx + at, g);
    }
  }
}

/* Block (ch, split): output o's partial sum over the block's span into
 * partials[(o c + ch) splits + split]. */
template <int TERM, int VEC>
static __global__ void __launch_bounds__(LFS_CUDA_THREADS)
    channel_partials_kernel(double *partials, lfs_cuda_channel_operands a, uint32_t n,
                            uint32_t c, lfs_fastdiv plane, uint32_t splits) {
  __shared__ double part[LFS_CUDA_THREADS];
  const uint32_t ch = blockIdx.x, split = blockIdx.y, step = blockDim.x;
  const lfs_channel_span s = lfs_channel_span_make(n, c, plane, splits, split, ch);
  const float shift = a.shift ? a.shift[ch] : 0.0f, alpha = a.alpha ? a.alpha[ch] : 0.0f;
  const uint32_t groups = s.count / VEC; /* VEC divides the plane, hence the count */
  double acc0 = 0.0, acc1 = 0.0;
  uint32_t g = threadIdx.x;
  for (; g + (UNROLL - 1) * step < groups; g += UNROLL * step) {
    uint32_t at[UNROLL];
    lfs_vecf<VEC> xv[UNROLL], yv[UNROLL] = {}, old[UNROLL] = {};
#pragma unroll
    for (int u = 0; u < UNROLL; u++) { /* every load first: they are in flight together */
      at[u] = lfs_channel_span_at(&s, (g + u * step) * VEC);
      load_group<TERM, VEC>(a, at[u], xv[u], yv[u], old[u]);
    }
#pragma unroll
    for (int u = 0; u < UNROLL; u++)
      add_group<TERM, VEC>(a, at[u], xv[u], yv[u], old[u], shift, alpha, acc0, acc1);
  }
  for (; g < groups; g += step) {
    const uint32_t at = lfs_channel_span_at(&s, g * VEC);
    lfs_vecf<VEC> xv, yv = {}, old = {};
    load_group<TERM, VEC>(a, at, xv, yv, old);
    add_group<TERM, VEC>(a, at, xv, yv, old, shift, alpha, acc0, acc1);
  }
  const double total0 = lfs_cuda_block_sum(acc0, part);
  if (threadIdx.x == 0) partials[(size_t)ch * splits + split] = total0;
  if (TERM != LFS_CUDA_SUM_PRELU) {
    const double total1 = lfs_cuda_block_sum(acc1, part);
    if (threadIdx.x == 0) partials[((size_t)c + ch) * splits + split] = total1;
  }
}

/* out[row]: the row's parts added in order. */
static __global__ void channel_finish_kernel(double *out, lfs_cuda_channel_parts parts, int rows) {
  LFS_CUDA_GRID_STRIDE(row, (size_t)rows) out[row] = lfs_cuda_parts_total(parts, row);
}

template <int TERM, int VEC>
static lfs_cuda_channel_parts channel_reduce(lfs_cuda_ctx *ctx, const lfs_cuda_channel_operands *a,
                                             int n, int c, int spatial) {
  static_assert(2 * LFS_CUDA_SUM_TERMS <= sizeof ctx->channel_resident / sizeof(int),
                "one slot per reduction kernel");
  int *resident = &ctx->channel_resident[2 * TERM + (VEC == 4)];
  if (!*resident) {
    LFS_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
        resident, channel_partials_kernel<TERM, VEC>, LFS_CUDA_THREADS, 0));
    if (*resident < 1) *resident = 1;
  }
  const int splits =
      lfs_channel_splits((long long)*resident * ctx->multiprocessors, n, c, spatial);
  const int rows = term_outputs(TERM) * c;
  double *partials = lfs_cuda_reduce_scratch(ctx, (size_t)rows * splits);
  const dim3 grid((unsigned)c, (unsigned)splits);
  channel_partials_kernel<TERM, VEC><<<grid, LFS_CUDA_THREADS>>>(
      partials, *a, (uint32_t)n, (uint32_t)c, lfs_fastdiv_make((uint32_t)spatial),
      (uint32_t)splits);
  LFS_CUDA_LAUNCHED();
  const lfs_cuda_channel_parts parts = {partials, splits};
  return parts;
}

template <int TERM>
static lfs_cuda_channel_parts channel_reduce_of(lfs_cuda_ctx *ctx,
                                                const lfs_cuda_channel_operands *a, int n, int c,
                                                int spatial) {
  if (lfs_cuda_vec4(spatial, a->x, TERM == LFS_CUDA_SUM_MOMENTS ? NULL : a->y, a->dx, NULL))
    return channel_reduce<TERM, 4>(ctx, a, n, c, spatial);
  return channel_reduce<TERM, 1>(ctx, a, n, c, spatial);
}

lfs_cuda_channel_parts lfs_cuda_channel_reduce(lfs_cuda_ctx *ctx, int term,
                                               const lfs_cuda_channel_operands *a, int n, int c,
                                               int spatial) {
  const lfs_cuda_channel_parts none = {NULL, 0};
  if (!c || !n || !spatial) return none;
  lfs_cuda_channels(n, c, spatial); /* the size check */
  switch (term) {
  case LFS_CUDA_SUM_MOMENTS: return channel_reduce_of<LFS_CUDA_SUM_MOMENTS>(ctx, a, n, c, spatial);
  case LFS_CUDA_SUM_GRAD: return channel_reduce_of<LFS_CUDA_SUM_GRAD>(ctx, a, n, c, spatial);
  default: return channel_reduce_of<LFS_CUDA_SUM_PRELU>(ctx, a, n, c, spatial);
  }
}

void lfs_cuda_channel_sums(lfs_cuda_ctx *ctx, double *out, int term,
                           const lfs_cuda_channel_operands *a, int n, int c, int spatial) {
  const lfs_cuda_channel_parts parts = lfs_cuda_channel_reduce(ctx, term, a, n, c, spatial);
  const int rows = term_outputs(term) * c;
  if (!rows) return;
  channel_finish_kernel<<<lfs_cuda_blocks((size_t)rows), LFS_CUDA_THREADS>>>(out, parts, rows);
  LFS_CUDA_LAUNCHED();
}

lfs_cuda_channel_of lfs_cuda_channels(int n, int c, int spatial) {
  const unsigned long long count = (unsigned long long)n * c * spatial;
  if (count > 0x7fffffffull)
    lfs_fatal("CUDA: a tensor of %llu values (%d x %d x %d) is beyond the 2^31 - 1 that the "
              "per-channel kernels index: use a smaller batch per GPU", count, n, c, spatial);
  lfs_cuda_channel_of k = {lfs_fastdiv_make((uint32_t)(spatial > 0 ? spatial : 1)),
                           lfs_fastdiv_make((uint32_t)(c > 0 ? c : 1))};
  return k;
}
