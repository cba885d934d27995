/* cuda_conv_graph.cu: one pass of a 2-D convolution (forward, backward data,
 * backward filter) through cuDNN's graph API, the interface PyTorch's
 * convolutions use, where cuDNN offers engines its legacy entry points may not
 * reach. LFS_CUDA_CONV=graph (deterministic engines) or graph-fastest (any).
 * A pass is an operation graph of one convolution node over three NCHW float32
 * tensors: uid 1 shaped like x, uid 2 like w, uid 3 like y (dx, w, dy for
 * backward data; x, dw, dy for backward filter). Its plan is the fastest, timed
 * on the call's own inputs, of the engine configurations cuDNN's heuristics
 * (mode A, then the fallback list) propose that fit the workspace limit and
 * keep float32 semantics: no conversion to half, tensor cores (TF32) only with
 * TF32 on. Where cuDNN offers none, or a tensor breaks the alignment a plan was
 * made for, the caller takes the legacy path (cuda_conv.cu). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_internal.h"

enum { UID_X = 1, UID_W = 2, UID_Y = 3, TENSORS = 3 };
enum { MAX_CANDIDATES = 8 }; /* plans timed per pass, at most */

struct lfs_cuda_graph_pass {
  cudnnBackendDescriptor_t tensor[TENSORS], conv, op, graph, cfg, plan;
  int64_t workspace;
  int64_t alignment[TENSORS]; /* bytes each tensor's address was declared to divide */
};

/* A failed call: the reason, for the warning; the pass is then not made. */
#define TRY(call)                                                                    \
  do {                                                                               \
    cudnnStatus_t lfs_rc_ = (call);                                                  \
    if (lfs_rc_ != CUDNN_STATUS_SUCCESS) {                                           \
      snprintf(why, whylen, "%s: %s", #call, cudnnGetErrorString(lfs_rc_));          \
      return -1;                                                                     \
    }                                                                                \
  } while (0)

static void destroy(cudnnBackendDescriptor_t *d) {
  if (*d) cudnnBackendDestroyDescriptor(*d);
  *d = NULL;
}

/* The largest power of two up to 16 that the address divides. */
static int64_t alignment_of(const void *p) {
  const uintptr_t a = (uintptr_t)p;
  int64_t align = 16;
  while (align > 1 && a % (uintptr_t)align) align /= 2;
  return align;
}

static int make_tensor(cudnnBackendDescriptor_t *t, int64_t uid, const int64_t dims[4],
                       int64_t alignment, char *why, size_t whylen) {
  const int64_t strides[4] = {dims[1] * dims[2] * dims[3], dims[2] * dims[3], dims[3], 1};
  const cudnnDataType_t type = CUDNN_DATA_FLOAT;
  TRY(cudnnBackendCreateDescriptor(CUDNN_BACKEND_TENSOR_DESCRIPTOR, t));
  TRY(cudnnBackendSetAttribute(*t, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &type));
  TRY(cudnnBackendSetAttribute(*t, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, dims));
  TRY(cudnnBackendSetAttribute(*t, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, strides));
  TRY(cudnnBackendSetAttribute(*t, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid));
  TRY(cudnnBackendSetAttribute(*t, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1,
                               &alignment));
  TRY(cudnnBackendFinalize(*t));
  return 0;
}

static int make_conv(cudnnBackendDescriptor_t *conv, const lfs_conv_desc *d, char *why,
                     size_t whylen) {
  const cudnnDataType_t compute = CUDNN_DATA_FLOAT;
  const cudnnConvolutionMode_t mode = CUDNN_CROSS_CORRELATION;
  const int64_t dims = 2, dilation[2] = {1, 1}, stride[2] = {d->stride, d->stride};
  const int64_t pad[2] = {d->pad, d->pad};
  TRY(cudnnBackendCreateDescriptor(CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR, conv));
  TRY(cudnnBackendSetAttribute(*conv, CUDNN_ATTR_CONVOLUTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1,
                               &compute));
  TRY(cudnnBackendSetAttribute(*conv, CUDNN_ATTR_CONVOLUTION_CONV_MODE,
                               CUDNN_TYPE_CONVOLUTION_MODE, 1, &mode));
  TRY(cudnnBackendSetAttribute(*conv, CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS, CUDNN_TYPE_INT64, 1,
                               &dims));
  TRY(cudnnBackendSetAttribute(*conv, CUDNN_ATTR_CONVOLUTION_DILATIONS, CUDNN_TYPE_INT64, 2,
                               dilation));
  TRY(cudnnBackendSetAttribute(*conv, CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES, CUDNN_TYPE_INT64, 2,
                               stride));
  TRY(cudnnBackendSetAttribute(*conv, CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS, CUDNN_TYPE_INT64, 2,
                               pad));
  TRY(cudnnBackendSetAttribute(*conv, CUDNN_ATTR_CONVOLUTION_POST_PADDINGS, CUDNN_TYPE_INT64, 2,
                               pad));
  TRY(cudnnBackendFinalize(*conv));
  return 0;
}

/* The convolution node of `pass` (alpha 1, the given beta) over the pass's tensors. */
static int make_operation(lfs_cuda_graph_pass *g, int pass, float beta, char *why,
                          size_t whylen) {
  static const cudnnBackendDescriptorType_t kind[3] = {
      CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR,
      CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_DATA_DESCRIPTOR,
      CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_FILTER_DESCRIPTOR};
  /* attribute names per pass: x-shaped, w-shaped, y-shaped tensor, conv, alpha, beta */
  static const cudnnBackendAttributeName_t names[3][6] = {
      {CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W,
       CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC,
       CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA},
      {CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DX, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_W,
       CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DY,
       CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_CONV_DESC,
       CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_ALPHA, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_BETA},
      {CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_X, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DW,
       CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DY,
       CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_CONV_DESC,
       CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_ALPHA,
       CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_BETA}};
  const float alpha = 1.0f;
  TRY(cudnnBackendCreateDescriptor(kind[pass], &g->op));
  for (int t = 0; t < TENSORS; t++)
    TRY(cudnnBackendSetAttribute(g->op, names[pass][t], CUDNN_TYPE_BACKEND_DESCRIPTOR, 1,
                                 &g->tensor[t]));
  TRY(cudnnBackendSetAttribute(g->op, names[pass][3], CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &g->conv));
  TRY(cudnnBackendSetAttribute(g->op, names[pass][4], CUDNN_TYPE_FLOAT, 1, &alpha));
  TRY(cudnnBackendSetAttribute(g->op, names[pass][5], CUDNN_TYPE_FLOAT, 1, &beta));
  TRY(cudnnBackendFinalize(g->op));
  return 0;
}

static int make_graph(lfs_cuda_ctx *c, lfs_cuda_graph_pass *g, char *why, size_t whylen) {
  TRY(cudnnBackendCreateDescriptor(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR, &g->graph));
  TRY(cudnnBackendSetAttribute(g->graph, CUDNN_ATTR_OPERATIONGRAPH_OPS,
                               CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &g->op));
  TRY(cudnnBackendSetAttribute(g->graph, CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1,
                               &c->dnn));
  TRY(cudnnBackendFinalize(g->graph));
  return 0;
}

/* Whether an engine keeps float32 semantics as configured: never inputs
 * converted down, tensor cores (TF32 for float32) only with TF32 on, and
 * non-deterministic engines only when asked for; runtime-compiled ones only
 * when `compiled` (they need NVRTC and seconds to build). */
static int engine_acceptable(const lfs_cuda_ctx *c, cudnnBackendDescriptor_t cfg, int compiled) {
  cudnnBackendDescriptor_t engine = NULL;
  int ok = 0;
  if (cudnnBackendCreateDescriptor(CUDNN_BACKEND_ENGINE_DESCRIPTOR, &engine) !=
      CUDNN_STATUS_SUCCESS)
    return 0;
  int64_t n = 0;
  cudnnBackendNumericalNote_t notes[CUDNN_NUMERICAL_NOTE_TYPE_COUNT];
  cudnnBackendBehaviorNote_t behaviour[CUDNN_BEHAVIOR_NOTE_TYPE_COUNT];
  int64_t nb = 0;
  if (cudnnBackendGetAttribute(cfg, CUDNN_ATTR_ENGINECFG_ENGINE, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1,
                               &n, &engine) == CUDNN_STATUS_SUCCESS &&
      cudnnBackendGetAttribute(engine, CUDNN_ATTR_ENGINE_NUMERICAL_NOTE,
                               CUDNN_TYPE_NUMERICAL_NOTE, CUDNN_NUMERICAL_NOTE_TYPE_COUNT, &n,
                               notes) == CUDNN_STATUS_SUCCESS &&
      cudnnBackendGetAttribute(engine, CUDNN_ATTR_ENGINE_BEHAVIOR_NOTE, CUDNN_TYPE_BEHAVIOR_NOTE,
                               CUDNN_BEHAVIOR_NOTE_TYPE_COUNT, &nb,
                               behaviour) == CUDNN_STATUS_SUCCESS) {
    ok = 1;
    for (int64_t i = 0; i < n && i < CUDNN_NUMERICAL_NOTE_TYPE_COUNT; i++) {
      const cudnnBackendNumericalNote_t note = notes[i];
      if (note == CUDNN_NUMERICAL_NOTE_DOWN_CONVERT_INPUTS ||
          note == CUDNN_NUMERICAL_NOTE_REDUCED_PRECISION_REDUCTION ||
          (note == CUDNN_NUMERICAL_NOTE_TENSOR_CORE && !c->tf32) ||
          (note == CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC && !c->conv_any))
        ok = 0;
    }
    for (int64_t i = 0; i < nb && i < CUDNN_BEHAVIOR_NOTE_TYPE_COUNT; i++)
      if (behaviour[i] == CUDNN_BEHAVIOR_NOTE_RUNTIME_COMPILATION && !compiled) ok = 0;
  }
  cudnnBackendDestroyDescriptor(engine);
  return ok;
}

/* Appends every engine configuration one heuristics mode proposes to *cfgs
 * (grown; the descriptors are created here). */
static void heuristics(lfs_cuda_graph_pass *g, cudnnBackendHeurMode_t mode,
                       cudnnBackendDescriptor_t **cfgs, int64_t *count) {
  cudnnBackendDescriptor_t heur = NULL;
  int64_t total = 0;
  if (cudnnBackendCreateDescriptor(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR, &heur) ==
          CUDNN_STATUS_SUCCESS &&
      cudnnBackendSetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH,
                               CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &g->graph) ==
          CUDNN_STATUS_SUCCESS &&
      cudnnBackendSetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode) ==
          CUDNN_STATUS_SUCCESS &&
      cudnnBackendFinalize(heur) == CUDNN_STATUS_SUCCESS &&
      cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS,
                               CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &total, NULL) ==
          CUDNN_STATUS_SUCCESS &&
      total > 0) {
    *cfgs = (cudnnBackendDescriptor_t *)realloc(*cfgs, sizeof **cfgs * (size_t)(*count + total));
    if (!*cfgs) lfs_fatal("out of host memory for cuDNN's engine configurations");
    cudnnBackendDescriptor_t *mine = *cfgs + *count;
    int64_t made = 0, got = 0;
    for (; made < total; made++)
      if (cudnnBackendCreateDescriptor(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR, &mine[made]) !=
          CUDNN_STATUS_SUCCESS)
        break;
    if (made && cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                         CUDNN_TYPE_BACKEND_DESCRIPTOR, made, &got, mine) !=
                    CUDNN_STATUS_SUCCESS)
      got = 0;
    if (got > made) got = made; /* only the lesser of the two is written */
    for (int64_t i = got; i < made; i++) destroy(&mine[i]);
    *count += got;
  }
  if (heur) cudnnBackendDestroyDescriptor(heur);
}

static cudnnBackendDescriptor_t make_plan(lfs_cuda_ctx *c, cudnnBackendDescriptor_t cfg,
                                          int64_t *workspace) {
  cudnnBackendDescriptor_t plan = NULL;
  int64_t n = 0;
  if (cudnnBackendCreateDescriptor(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR, &plan) !=
      CUDNN_STATUS_SUCCESS)
    return NULL;
  if (cudnnBackendSetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1,
                               &c->dnn) != CUDNN_STATUS_SUCCESS ||
      cudnnBackendSetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG,
                               CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &cfg) != CUDNN_STATUS_SUCCESS ||
      cudnnBackendFinalize(plan) != CUDNN_STATUS_SUCCESS ||
      cudnnBackendGetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, CUDNN_TYPE_INT64,
                               1, &n, workspace) != CUDNN_STATUS_SUCCESS) {
    cudnnBackendDestroyDescriptor(plan);
    return NULL;
  }
  return plan;
}

static cudnnStatus_t execute(lfs_cuda_ctx *c, cudnnBackendDescriptor_t plan, void *ws,
                             void *const ptrs[TENSORS]) {
  static const int64_t uids[TENSORS] = {UID_X, UID_W, UID_Y};
  cudnnBackendDescriptor_t pack = NULL;
  cudnnStatus_t rc = cudnnBackendCreateDescriptor(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, &pack);
  if (rc == CUDNN_STATUS_SUCCESS)
    rc = cudnnBackendSetAttribute(pack, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR,
                                  TENSORS, ptrs);
  if (rc == CUDNN_STATUS_SUCCESS)
    rc = cudnnBackendSetAttribute(pack, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64,
                                  TENSORS, uids);
  if (rc == CUDNN_STATUS_SUCCESS)
    rc = cudnnBackendSetAttribute(pack, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1,
                                  &ws);
  if (rc == CUDNN_STATUS_SUCCESS) rc = cudnnBackendFinalize(pack);
  if (rc == CUDNN_STATUS_SUCCESS) rc = cudnnBackendExecute(c->dnn, plan, pack);
  if (pack) cudnnBackendDestroyDescriptor(pack);
  return rc;
}

/* Milliseconds of the best of 3 runs (after one more) with workspace ws, or -1
 * if it fails (*status then says why). */
static float time_plan(lfs_cuda_ctx *c, cudnnBackendDescriptor_t plan, void *ws,
                       void *const ptrs[TENSORS], cudnnStatus_t *status) {
  cudaEvent_t start, stop;
  LFS_CUDA_CHECK(cudaEventCreate(&start));
  LFS_CUDA_CHECK(cudaEventCreate(&stop));
  float best = -1.0f;
  *status = execute(c, plan, ws, ptrs);
  if (*status == CUDNN_STATUS_SUCCESS)
    for (int r = 0; r < 3; r++) {
      LFS_CUDA_CHECK(cudaEventRecord(start, cudaStreamLegacy));
      *status = execute(c, plan, ws, ptrs);
      if (*status != CUDNN_STATUS_SUCCESS) {
        best = -1.0f;
        break;
      }
      LFS_CUDA_CHECK(cudaEventRecord(stop, cudaStreamLegacy));
      LFS_CUDA_CHECK(cudaEventSynchronize(stop));
      float ms = 0.0f;
      LFS_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
      if (best < 0.0f || ms < best) best = ms;
    }
  (void)cudaGetLastError(); /* a failed engine's launch error is not the next call's */
  LFS_CUDA_CHECK(cudaEventDestroy(start));
  LFS_CUDA_CHECK(cudaEventDestroy(stop));
  return best;
}

/* A candidate's workspace while it is timed: the context's where that is large
 * enough, else its own (*owned, for the caller to free), or NULL where the
 * device has no room for it: a candidate that would not be chosen must neither
 * grow the context's workspace for good nor stop the run for lack of memory. */
static void *candidate_workspace(lfs_cuda_ctx *c, int64_t bytes, void **owned) {
  *owned = NULL;
  if ((size_t)bytes <= c->workspace_bytes) return bytes ? c->workspace : NULL;
  if (cudaMalloc(owned, (size_t)bytes) != cudaSuccess) {
    (void)cudaGetLastError();
    *owned = NULL;
  }
  return *owned;
}

/* Times the first MAX_CANDIDATES acceptable configurations that build (of
 * mode A's, then the fallback list's; runtime-compiled ones, MAX_CANDIDATES
 * more, only if no other runs) on ptrs and keeps the fastest in g; the others
 * are destroyed. */
static int choose_plan(lfs_cuda_ctx *c, lfs_cuda_graph_pass *g, void *const ptrs[TENSORS],
                       size_t max_workspace, char *why, size_t whylen) {
  cudnnBackendDescriptor_t *cfgs = NULL;
  int64_t count = 0;
  heuristics(g, CUDNN_HEUR_MODE_A, &cfgs, &count);
  heuristics(g, CUDNN_HEUR_MODE_FALLBACK, &cfgs, &count);
  float best_ms = -1.0f;
  int timed = 0, no_room = 0;
  cudnnStatus_t failed = CUDNN_STATUS_SUCCESS;
  for (int compiled = 0; compiled < 2 && !g->plan; compiled++)
    for (int64_t i = 0, round = 0; i < count && round < MAX_CANDIDATES; i++) {
      if (!cfgs[i] || !engine_acceptable(c, cfgs[i], compiled) ||
          (compiled && engine_acceptable(c, cfgs[i], 0)))
        continue; /* the second round takes the runtime-compiled engines alone */
      int64_t workspace = 0;
      cudnnBackendDescriptor_t plan = make_plan(c, cfgs[i], &workspace);
      if (!plan) continue;
      float ms = -1.0f;
      void *owned = NULL, *ws = NULL;
      if (workspace > (int64_t)max_workspace ||
          (!(ws = candidate_workspace(c, workspace, &owned)) && workspace > 0)) {
        no_room++;
      } else {
        cudnnStatus_t status;
        ms = time_plan(c, plan, ws, ptrs, &status);
        if (ms < 0.0f) failed = status;
        timed++, round++;
      }
      if (owned) LFS_CUDA_CHECK(cudaFree(owned));
      if (ms >= 0.0f && (best_ms < 0.0f || ms < best_ms)) {
        destroy(&g->plan);
        destroy(&g->cfg);
        g->plan = plan, g->cfg = cfgs[i], g->workspace = workspace, best_ms = ms;
        cfgs[i] = NULL;
      } else {
        cudnnBackendDestroyDescriptor(plan);
      }
    }
  for (int64_t i = 0; i < count; i++) destroy(&cfgs[i]);
  free(cfgs);
  if (!g->plan) {
    int at = snprintf(why, whylen, "of cuDNN's %lld engine configurations, none runs it in "
                      "float32: %d ran and failed", (long long)count, timed);
    if (timed && at >= 0 && (size_t)at < whylen)
      at += snprintf(why + at, whylen - (size_t)at, " (the last: %s)", cudnnGetErrorString(failed));
    if (no_room && at >= 0 && (size_t)at < whylen)
      snprintf(why + at, whylen - (size_t)at, ", %d found no room for their workspace (at most "
               "%zu MiB)", no_room, max_workspace >> 20);
    return -1;
  }
  lfs_cuda_workspace(c, (size_t)g->workspace); /* the chosen plan's, grown now, not mid-step */
  return 0;
}

void lfs_cuda_graph_pass_free(lfs_cuda_graph_pass *g) {
  if (!g) return;
  destroy(&g->plan);
  destroy(&g->cfg);
  destroy(&g->graph);
  destroy(&g->op);
  destroy(&g->conv);
  for (int t = 0; t < TENSORS; t++) destroy(&g->tensor[t]);
  free(g);
}

/* Scratch for the pass's output while timing: the real one may be accumulated into. */
static void *timing_output(const lfs_conv_desc *d, int pass) {
  const size_t count = pass == LFS_CUDA_PASS_FORWARD
                           ? (size_t)d->n * d->out_c * d->out_h * d->out_w
                       : pass == LFS_CUDA_PASS_DATA
                           ? (size_t)d->n * d->in_c * d->in_h * d->in_w
                           : (size_t)d->out_c * (d->in_c / d->groups) * d->kh * d->kw;
  void *p = NULL;
  if (cudaMalloc(&p, count * sizeof(float)) != cudaSuccess) {
    (void)cudaGetLastError();
    return NULL;
  }
  return p;
}

lfs_cuda_graph_pass *lfs_cuda_graph_pass_make(lfs_cuda_ctx *c, const lfs_conv_desc *d, int pass,
                                              float beta, void *const ptrs[3],
                                              size_t max_workspace, char *why, size_t whylen) {
  lfs_cuda_graph_pass *g = (lfs_cuda_graph_pass *)lfs_calloc(1, sizeof *g);
  const int64_t dims[TENSORS][4] = {{d->n, d->in_c, d->in_h, d->in_w},
                                    {d->out_c, d->in_c / d->groups, d->kh, d->kw},
                                    {d->n, d->out_c, d->out_h, d->out_w}};
  /* the pass's output is timed into scratch, so that accumulating passes do not add to it */
  const int out = pass == LFS_CUDA_PASS_FORWARD ? 2 : pass == LFS_CUDA_PASS_DATA ? 0 : 1;
  void *timed[TENSORS] = {ptrs[0], ptrs[1], ptrs[2]}, *scratch = NULL;
  int rc = 0;
  for (int t = 0; t < TENSORS && !rc; t++) {
    g->alignment[t] = alignment_of(ptrs[t]);
    rc = make_tensor(&g->tensor[t], t + 1, dims[t], g->alignment[t], why, whylen);
  }
  if (!rc) rc = make_conv(&g->conv, d, why, whylen);
  if (!rc) rc = make_operation(g, pass, beta, why, whylen);
  if (!rc) rc = make_graph(c, g, why, whylen);
  if (!rc && !(scratch = timing_output(d, pass))) {
    snprintf(why, whylen, "no device memory to time its engines in");
    rc = -1;
  }
  if (!rc) {
    timed[out] = scratch;
    rc = choose_plan(c, g, timed, max_workspace, why, whylen);
  }
  if (scratch) LFS_CUDA_CHECK(cudaFree(scratch));
  if (rc) {
    lfs_cuda_graph_pass_free(g);
    return NULL;
  }
  return g;
}

int lfs_cuda_graph_pass_run(lfs_cuda_ctx *c, lfs_cuda_graph_pass *g, void *const ptrs[3],
                            char *why, size_t whylen) {
  for (int t = 0; t < TENSORS; t++)
    if ((uintptr_t)ptrs[t] % (uintptr_t)g->alignment[t]) return 0;
  const cudnnStatus_t rc = execute(c, g->plan, lfs_cuda_workspace(c, (size_t)g->workspace), ptrs);
  if (rc == CUDNN_STATUS_SUCCESS) return 1;
  snprintf(why, whylen, "cudnnBackendExecute: %s", cudnnGetErrorString(rc));
  return -1;
}
