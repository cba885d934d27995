/* cuda_conv.cu: 2-D convolution through cuDNN. Each geometry (an lfs_conv_desc)
 * gets a plan on first use: tensor, filter and convolution descriptors, and the
 * forward, backward-data and backward-filter algorithms cuDNN's heuristics rank
 * first among the deterministic ones whose workspace fits (LFS_CUDA_CONV=find:
 * the fastest of them by cuDNN's own timing; LFS_CUDA_CONV=fastest: the fastest
 * of all, deterministic or not, as cudnn.benchmark does), each run with the
 * math type it was ranked with, kept for the life of the process. The
 * workspace is the context's, grown to the largest plan. Backward data adds to
 * dx (beta = 1) or, as dx's only writer (LFS_GRAD_SET), sets it (beta = 0). A
 * geometry for which cuDNN offers no algorithm, or every geometry under
 * LFS_CUDA_CONV=gemm (or lfs_cuda_set_conv_gemm), runs as im2col + cuBLAS
 * (cuda_conv_gemm.cu). Under LFS_CUDA_CONV=graph (or graph-fastest) each pass
 * first tries cuDNN's graph API (cuda_conv_graph.cu), these algorithms being
 * its fallback. */
#include <stdio.h>
#include <string.h>

#include "backend/cuda/cuda_internal.h"

/* A workspace above this is not worth it for one convolution. */
static const size_t max_workspace = (size_t)1 << 30;

struct lfs_cuda_conv_plan {
  /* the key: the geometry and the context's settings the plan was made under
   * (gemm and graph below are what it does, which may differ) */
  lfs_conv_desc d;
  int math_tf32, asked_gemm, asked_graph;
  /* the math type cuDNN ranked each pass's algorithm with (forward, data, filter) */
  cudnnMathType_t math[3];
  int gemm;  /* im2col + cuBLAS instead of cuDNN */
  int graph; /* cuDNN's graph API first (LFS_CUDA_CONV=graph) */
  /* its passes: forward, backward data setting dx (beta 0) and adding to it, backward filter */
  lfs_cuda_graph_pass *graph_pass[4];
  int graph_tried[4];
  cudnnTensorDescriptor_t x, y, bias;
  cudnnFilterDescriptor_t w;
  cudnnConvolutionDescriptor_t conv;
  cudnnConvolutionFwdAlgo_t fwd;
  cudnnConvolutionBwdDataAlgo_t bwd_data;
  cudnnConvolutionBwdFilterAlgo_t bwd_filter;
  size_t ws_fwd, ws_data, ws_filter;
};

static cudnnMathType_t base_math(int tf32) { return tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH; }

/* Whether a ranked algorithm's math type may run: FMA always; tensor-core math
 * (TF32 on float32) only with TF32 on; never one that converts float32 to
 * half. The algorithm then runs with that math type, for which its workspace
 * size was given. */
static int math_usable(int tf32, cudnnMathType_t ranked) {
  return ranked == CUDNN_FMA_MATH ||
         (tf32 && (ranked == CUDNN_DEFAULT_MATH || ranked == CUDNN_TENSOR_OP_MATH));
}

static const char *describe(const lfs_conv_desc *d, char *buf, size_t len) {
  snprintf(buf, len, "%dx%dx%dx%d -> %d channels, %dx%d kernel, stride %d, %d groups", d->n,
           d->in_c, d->in_h, d->in_w, d->out_c, d->kh, d->kw, d->stride, d->groups);
  return buf;
}

static void make_descriptors(lfs_cuda_conv_plan *p, const lfs_conv_desc *d, int tf32) {
  LFS_CUDNN_CHECK(cudnnCreateTensorDescriptor(&p->x));
  LFS_CUDNN_CHECK(cudnnCreateTensorDescriptor(&p->y));
  LFS_CUDNN_CHECK(cudnnCreateTensorDescriptor(&p->bias));
  LFS_CUDNN_CHECK(cudnnCreateFilterDescriptor(&p->w));
  LFS_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&p->conv));
  LFS_CUDNN_CHECK(cudnnSetTensor4dDescriptor(p->x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, d->n, d->in_c,
                                             d->in_h, d->in_w));
  LFS_CUDNN_CHECK(cudnnSetTensor4dDescriptor(p->y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, d->n,
                                             d->out_c, d->out_h, d->out_w));
  LFS_CUDNN_CHECK(cudnnSetTensor4dDescriptor(p->bias, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1,
                                             d->out_c, 1, 1));
  LFS_CUDNN_CHECK(cudnnSetFilter4dDescriptor(p->w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, d->out_c,
                                             d->in_c / d->groups, d->kh, d->kw));
  LFS_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(p->conv, d->pad, d->pad, d->stride, d->stride, 1,
                                                  1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
  LFS_CUDNN_CHECK(cudnnSetConvolutionGroupCount(p->conv, d->groups));
  /* FMA math keeps float32 products; default math lets cuDNN use TF32 on float32
   * (as PyTorch asks for it) */
  LFS_CUDNN_CHECK(cudnnSetConvolutionMathType(p->conv, base_math(tf32)));
  int n = 0, c = 0, h = 0, w = 0;
  LFS_CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(p->conv, p->x, p->w, &n, &c, &h, &w));
  if (n != d->n || c != d->out_c || h != d->out_h || w != d->out_w)
    lfs_fatal("cuDNN: convolution output %dx%dx%dx%d, expected %dx%dx%dx%d", n, c, h, w, d->n,
              d->out_c, d->out_h, d->out_w);
}

/* The best of cuDNN's ranked algorithms that succeeds within max_workspace,
 * preferring deterministic ones (a run then repeats bit for bit on the same GPU
 * and library); ok becomes 0 when there is none. `rank` is a heuristic query
 * (cudnnGet..._v7) or a timed one (cudnnFind...), which sorts by measured time. */
#define PICK_ALGORITHM(rank, perf_t, handle, ...)                                           \
  do {                                                                                      \
    perf_t perf[16];                                                                        \
    int found = 0, chosen = -1;                                                             \
    LFS_CUDNN_CHECK(rank(handle, __VA_ARGS__, 16, &found, perf));                           \
    for (int pass = 0; pass < 2 && chosen < 0; pass++)                                      \
      for (int i = 0; i < found && chosen < 0; i++)                                         \
        if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].memory <= max_workspace &&    \
            math_usable(c->tf32, perf[i].mathType) &&                                       \
            (pass == 1 || c->conv_any || perf[i].determinism == CUDNN_DETERMINISTIC))       \
          chosen = i;                                                                       \
    if (chosen < 0) {                                                                       \
      ok = 0;                                                                               \
    } else {                                                                                \
      algo = perf[chosen].algo;                                                             \
      bytes = perf[chosen].memory;                                                          \
      math = perf[chosen].mathType;                                                         \
    }                                                                                       \
  } while (0)

/* 0 if cuDNN has no algorithm for one of the three passes. */
static int choose_algorithms(lfs_cuda_ctx *c, lfs_cuda_conv_plan *p) {
  int ok = 1;
  {
    cudnnConvolutionFwdAlgo_t algo = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM;
    cudnnMathType_t math = base_math(c->tf32);
    size_t bytes = 0;
    if (c->conv_find)
      PICK_ALGORITHM(cudnnFindConvolutionForwardAlgorithm, cudnnConvolutionFwdAlgoPerf_t, c->dnn,
                     p->x, p->w, p->conv, p->y);
    else
      PICK_ALGORITHM(cudnnGetConvolutionForwardAlgorithm_v7, cudnnConvolutionFwdAlgoPerf_t, c->dnn,
                     p->x, p->w, p->conv, p->y);
    p->fwd = algo, p->ws_fwd = bytes, p->math[0] = math;
  }
  {
    cudnnConvolutionBwdDataAlgo_t algo = CUDNN_CONVOLUTION_BWD_DATA_ALGO_0;
    cudnnMathType_t math = base_math(c->tf32);
    size_t bytes = 0;
    if (c->conv_find)
      PICK_ALGORITHM(cudnnFindConvolutionBackwardDataAlgorithm, cudnnConvolutionBwdDataAlgoPerf_t,
                     c->dnn, p->w, p->y, p->conv, p->x);
    else
      PICK_ALGORITHM(cudnnGetConvolutionBackwardDataAlgorithm_v7, cudnnConvolutionBwdDataAlgoPerf_t,
                     c->dnn, p->w, p->y, p->conv, p->x);
    p->bwd_data = algo, p->ws_data = bytes, p->math[1] = math;
  }
  {
    cudnnConvolutionBwdFilterAlgo_t algo = CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0;
    cudnnMathType_t math = base_math(c->tf32);
    size_t bytes = 0;
    if (c->conv_find)
      PICK_ALGORITHM(cudnnFindConvolutionBackwardFilterAlgorithm,
                     cudnnConvolutionBwdFilterAlgoPerf_t, c->dnn, p->x, p->y, p->conv, p->w);
    else
      PICK_ALGORITHM(cudnnGetConvolutionBackwardFilterAlgorithm_v7,
                     cudnnConvolutionBwdFilterAlgoPerf_t, c->dnn, p->x, p->y, p->conv, p->w);
    p->bwd_filter = algo, p->ws_filter = bytes, p->math[2] = math;
  }
  return ok;
}

static lfs_cuda_conv_plan *plan_for(lfs_cuda_ctx *c, const lfs_conv_desc *d) {
  for (int i = 0; i < c->nplans; i++)
    if (lfs_conv_desc_same(&c->plans[i].d, d) && c->plans[i].math_tf32 == c->tf32 &&
        c->plans[i].asked_gemm == c->conv_gemm && c->plans[i].asked_graph == c->conv_graph)
      return &c->plans[i];
  c->plans = (lfs_cuda_conv_plan *)lfs_grow(c->plans, c->nplans + 1, &c->cap_plans, sizeof *c->plans);
  lfs_cuda_conv_plan *p = &c->plans[c->nplans++];
  memset(p, 0, sizeof *p);
  p->d = *d;
  p->math_tf32 = c->tf32;
  p->asked_gemm = c->conv_gemm;
  p->asked_graph = c->conv_graph;
  make_descriptors(p, d, c->tf32);
  p->gemm = c->conv_gemm;
  p->graph = c->conv_graph && !c->conv_gemm;
  if (!p->gemm && !choose_algorithms(c, p)) {
    char what[128];
    lfs_warn("cuDNN has no algorithm for the convolution %s: using im2col + cuBLAS",
             describe(d, what, sizeof what));
    p->gemm = 1;
  }
  return p;
}

/* Counts and says that pass `slot` of p takes cuDNN's legacy entry points; 0. */
static int graph_fallback(lfs_cuda_ctx *c, const lfs_cuda_conv_plan *p, int slot,
                          const char *why) {
  static const char *const names[4] = {"forward", "backward data (set)", "backward data (add)",
                                       "backward filter"};
  char what[128];
  c->graph_fallbacks++;
  lfs_warn("cuDNN graph API, convolution %s, %s: %s: using cuDNN's legacy entry points",
           describe(&p->d, what, sizeof what), names[slot], why);
  return 0;
}

/* Pass `slot` of p through cuDNN's graph API, its plan made on first use; 0
 * where p is not in graph mode or the graph API cannot run it (the caller then
 * takes the legacy path: for this call where a tensor breaks the plan's
 * alignment, for good where cuDNN has no engine or refuses to run it). */
static int run_graph(lfs_cuda_ctx *c, lfs_cuda_conv_plan *p, int slot, int pass, float beta,
                     const void *xlike, const void *wlike, const void *ylike) {
  if (!p->graph) return 0;
  void *const ptrs[3] = {(void *)xlike, (void *)wlike, (void *)ylike};
  char why[256] = "";
  if (!p->graph_tried[slot]) {
    p->graph_tried[slot] = 1;
    p->graph_pass[slot] =
        lfs_cuda_graph_pass_make(c, &p->d, pass, beta, ptrs, max_workspace, why, sizeof why);
    if (!p->graph_pass[slot]) return graph_fallback(c, p, slot, why);
  }
  if (!p->graph_pass[slot]) return 0;
  const int ran = lfs_cuda_graph_pass_run(c, p->graph_pass[slot], ptrs, why, sizeof why);
  if (ran == 0) c->graph_fallbacks++; /* misaligned this call: counted, not said each time */
  if (ran >= 0) return ran;
  lfs_cuda_graph_pass_free(p->graph_pass[slot]);
  p->graph_pass[slot] = NULL;
  return graph_fallback(c, p, slot, why);
}

void lfs_cuda_conv2d_forward(lfs_backend *be, const lfs_conv_desc *d, float *y, const float *x,
                             const float *w, const float *b) {
  lfs_cuda_ctx *c = lfs_cuda_ctx_of(be);
  lfs_cuda_conv_plan *p = plan_for(c, d);
  if (p->gemm) {
    lfs_cuda_conv2d_forward_gemm(be, d, y, x, w, b);
    return;
  }
  const float one = 1.0f, zero = 0.0f;
  if (run_graph(c, p, 0, LFS_CUDA_PASS_FORWARD, 0.0f, x, w, y)) {
    if (b && d->has_bias) LFS_CUDNN_CHECK(cudnnAddTensor(c->dnn, &one, p->bias, b, &one, p->y, y));
    return;
  }
  void *ws = lfs_cuda_workspace(c, p->ws_fwd);
  LFS_CUDNN_CHECK(cudnnSetConvolutionMathType(p->conv, p->math[0]));
  LFS_CUDNN_CHECK(cudnnConvolutionForward(c->dnn, &one, p->x, x, p->w, w, p->conv, p->fwd, ws,
                                          p->ws_fwd, &zero, p->y, y));
  if (b && d->has_bias) LFS_CUDNN_CHECK(cudnnAddTensor(c->dnn, &one, p->bias, b, &one, p->y, y));
}

void lfs_cuda_conv2d_backward(lfs_backend *be, const lfs_conv_desc *d, float *dx,
                              lfs_grad_write dx_write, float *dw, float *db, const float *dy,
                              const float *x, const float *w) {
  lfs_cuda_ctx *c = lfs_cuda_ctx_of(be);
  lfs_cuda_conv_plan *p = plan_for(c, d);
  if (p->gemm) {
    lfs_cuda_conv2d_backward_gemm(be, d, dx, dx_write, dw, db, dy, x, w);
    return;
  }
  const float one = 1.0f, zero = 0.0f;
  const int set = dx_write == LFS_GRAD_SET;
  if (dx && !run_graph(c, p, set ? 1 : 2, LFS_CUDA_PASS_DATA, set ? 0.0f : 1.0f, dx, w, dy)) {
    /* beta 0: dx's only writer sets it (cuDNN then does not read it) */
    void *ws = lfs_cuda_workspace(c, p->ws_data);
    const float *beta = set ? &zero : &one;
    LFS_CUDNN_CHECK(cudnnSetConvolutionMathType(p->conv, p->math[1]));
    LFS_CUDNN_CHECK(cudnnConvolutionBackwardData(c->dnn, &one, p->w, w, p->y, dy, p->conv,
                                                 p->bwd_data, ws, p->ws_data, beta, p->x, dx));
  }
  if (dw && !run_graph(c, p, 3, LFS_CUDA_PASS_FILTER, 1.0f, x, dw, dy)) {
    void *ws = lfs_cuda_workspace(c, p->ws_filter);
    LFS_CUDNN_CHECK(cudnnSetConvolutionMathType(p->conv, p->math[2]));
    LFS_CUDNN_CHECK(cudnnConvolutionBackwardFilter(c->dnn, &one, p->x, x, p->y, dy, p->conv,
                                                   p->bwd_filter, ws, p->ws_filter, &one, p->w, dw));
  }
  if (db && d->has_bias)
    LFS_CUDNN_CHECK(cudnnConvolutionBackwardBias(c->dnn, &one, p->y, dy, &one, p->bias, db));
}

void lfs_cuda_conv_plans_free(lfs_cuda_ctx *c) {
  for (int i = 0; i < c->nplans; i++) {
    lfs_cuda_conv_plan *p = &c->plans[i];
    cudnnDestroyTensorDescriptor(p->x);
    cudnnDestroyTensorDescriptor(p->y);
    cudnnDestroyTensorDescriptor(p->bias);
    cudnnDestroyFilterDescriptor(p->w);
    cudnnDestroyConvolutionDescriptor(p->conv);
    for (int k = 0; k < 4; k++) lfs_cuda_graph_pass_free(p->graph_pass[k]);
  }
  free(c->plans);
  c->plans = NULL;
  c->nplans = c->cap_plans = 0;
}
