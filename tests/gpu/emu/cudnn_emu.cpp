/* cudnn_emu.cpp: the host emulation of cuDNN's legacy entry points (cudnn_emu.h): the
 * descriptors, the made-up algorithms with their costs and numerics, and the convolution
 * routine every pass of both APIs runs through (cudnn_emu_internal.h), queued in stream
 * order (cuda_emu.cpp's queue). Layout: NCHW float32, each tensor addressed through its
 * four strides. */
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <set>
#include <vector>

#include "cudnn_emu_internal.h"
#ifndef _Noreturn
#define _Noreturn [[noreturn]]
#endif
extern "C" {
#include "lfs/log.h"
}

struct lfs_emu_dnn {
  int magic;
};

namespace emu_dnn {

lfs_emu_dnn_counts counts;

namespace {
int unordered_calls; /* flips the summation order of UNORDERED runs */

float round_mantissa(float v, int bits) {
  uint32_t u;
  memcpy(&u, &v, sizeof u);
  const int drop = 23 - bits;
  const uint32_t half = 1u << (drop - 1), mask = (1u << drop) - 1;
  u = (u + half - 1 + ((u >> drop) & 1)) & ~mask; /* to nearest, ties to even */
  memcpy(&v, &u, sizeof v);
  return v;
}

float with_numerics(float v, numerics n) {
  if (n == TF32) return round_mantissa(v, 10);
  if (n == HALF) return (float)(_Float16)v;
  return v;
}

}  // namespace

/* ---- one convolution, any pass ---- */

tensor4 packed(int64_t a, int64_t b, int64_t c, int64_t d) {
  return tensor4{{a, b, c, d}, {b * c * d, c * d, d, 1}};
}

std::string geometry_problem(const conv_geometry &g) {
  char buf[200];
  const tensor4 &x = g.x, &w = g.w, &y = g.y;
  if (g.stride_h < 1 || g.stride_w < 1 || g.pad_h < 0 || g.pad_w < 0) return "stride or padding";
  if (g.groups < 1 || x.dim[1] != w.dim[1] * g.groups || w.dim[0] % g.groups)
    return "channels: input " + std::to_string(x.dim[1]) + ", filter " +
           std::to_string(w.dim[0]) + "x" + std::to_string(w.dim[1]) + ", groups " +
           std::to_string(g.groups);
  const int64_t oh = (x.dim[2] + 2 * g.pad_h - w.dim[2]) / g.stride_h + 1;
  const int64_t ow = (x.dim[3] + 2 * g.pad_w - w.dim[3]) / g.stride_w + 1;
  if (y.dim[0] != x.dim[0] || y.dim[1] != w.dim[0] || y.dim[2] != oh || y.dim[3] != ow) {
    snprintf(buf, sizeof buf, "output %lldx%lldx%lldx%lld, expected %lldx%lldx%lldx%lld",
             (long long)y.dim[0], (long long)y.dim[1], (long long)y.dim[2], (long long)y.dim[3],
             (long long)x.dim[0], (long long)w.dim[0], (long long)oh, (long long)ow);
    return buf;
  }
  return "";
}

namespace {

/* The products of one pass, added into acc (T: double, or float for UNORDERED) laid out
 * as the output's dimensions, packed, each product visited once: images, output channels,
 * output positions, input channels, filter rows, then the taps of a row that fall inside
 * the input. `reversed` runs images and output rows backwards. */
template <int PASS, numerics NUM, class T>
void products(const conv_geometry &g, const float *xp, const float *wp, const float *yp,
              std::vector<T> &acc, bool reversed) {
  const tensor4 &x = g.x, &w = g.w, &y = g.y;
  const int64_t cg = w.dim[1], kg = w.dim[0] / g.groups, kh = w.dim[2], kw = w.dim[3];
  const int64_t ih = x.dim[2], iw = x.dim[3];
  for (int64_t ni = 0; ni < y.dim[0]; ni++) {
    const int64_t n = reversed ? y.dim[0] - 1 - ni : ni;
    for (int64_t k = 0; k < y.dim[1]; k++) {
      const int64_t c0 = (k / kg) * cg;
      for (int64_t oyi = 0; oyi < y.dim[2]; oyi++) {
        const int64_t oy = reversed ? y.dim[2] - 1 - oyi : oyi;
        for (int64_t ox = 0; ox < y.dim[3]; ox++) {
          const int64_t left = ox * g.stride_w - g.pad_w; /* ix of tap 0 */
          const int64_t s0 = left < 0 ? -left : 0, s1 = iw - left < kw ? iw - left : kw;
          const float yv = PASS == PASS_FORWARD ? 0.0f : with_numerics(yp[y.at(n, k, oy, ox)], NUM);
          T sum = 0; /* forward: the output's products */
          for (int64_t c = 0; c < cg; c++)
            for (int64_t r = 0; r < kh; r++) {
              const int64_t iy = oy * g.stride_h - g.pad_h + r;
              if (iy < 0 || iy >= ih) continue;
              const float *xr = xp + x.at(n, c0 + c, iy, left), *wr = wp + w.at(k, c, r, 0);
              for (int64_t s = s0; s < s1; s++) {
                const float xv = with_numerics(xr[s * x.stride[3]], NUM);
                const float wv = with_numerics(wr[s * w.stride[3]], NUM);
                if (PASS == PASS_FORWARD)
                  sum += (T)xv * wv;
                else if (PASS == PASS_DATA)
                  acc[(size_t)(((n * x.dim[1] + c0 + c) * ih + iy) * iw + left + s)] += (T)yv * wv;
                else
                  acc[(size_t)(((k * cg + c) * kh + r) * kw + s)] += (T)xv * yv;
              }
            }
          if (PASS == PASS_FORWARD)
            acc[(size_t)(((n * y.dim[1] + k) * y.dim[2] + oy) * y.dim[3] + ox)] += sum;
        }
      }
    }
  }
}

template <class T>
void all_products(int pass, numerics num, const conv_geometry &g, const float *xp,
                  const float *wp, const float *yp, std::vector<T> &acc, bool reversed) {
#define LFS_EMU_PASS(P)                                                              \
  switch (num) {                                                                     \
  case EXACT: return products<P, EXACT>(g, xp, wp, yp, acc, reversed);            \
  case TF32: return products<P, TF32>(g, xp, wp, yp, acc, reversed);              \
  case HALF: return products<P, HALF>(g, xp, wp, yp, acc, reversed);              \
  case UNORDERED: return products<P, UNORDERED>(g, xp, wp, yp, acc, reversed);    \
  }
  if (pass == PASS_FORWARD) LFS_EMU_PASS(PASS_FORWARD)
  if (pass == PASS_DATA) LFS_EMU_PASS(PASS_DATA)
  if (pass == PASS_FILTER) LFS_EMU_PASS(PASS_FILTER)
#undef LFS_EMU_PASS
}

/* The pass's output (y, dx or dw) = alpha op + beta output: the products added in double,
 * rounded once (UNORDERED: added in float, in an order that alternates between calls). */
void convolve(int pass, const conv_geometry &g, const float *xp, const float *wp,
              const float *yp, float *out, double alpha, double beta, numerics num) {
  const tensor4 &o = pass == PASS_FORWARD ? g.y : pass == PASS_DATA ? g.x : g.w;
  const size_t count = (size_t)(o.dim[0] * o.dim[1] * o.dim[2] * o.dim[3]);
  std::vector<double> acc(num == UNORDERED ? 0 : count, 0.0);
  std::vector<float> accf(num == UNORDERED ? count : 0, 0.0f);
  if (num == UNORDERED)
    all_products(pass, num, g, xp, wp, yp, accf, (unordered_calls++ & 1) != 0);
  else
    all_products(pass, num, g, xp, wp, yp, acc, false);
  size_t i = 0;
  for (int64_t a = 0; a < o.dim[0]; a++)
    for (int64_t b = 0; b < o.dim[1]; b++)
      for (int64_t c = 0; c < o.dim[2]; c++)
        for (int64_t d = 0; d < o.dim[3]; d++, i++) {
          float &dst = out[o.at(a, b, c, d)];
          const double v = num == UNORDERED ? (double)accf[i] : acc[i];
          dst = (float)(alpha * v + (beta == 0.0 ? 0.0 : beta * dst));
        }
}

}  // namespace

void queue_convolution(const char *call, int pass, const conv_geometry &g, const void *x,
                       const void *w, const void *y, double alpha, double beta, numerics num,
                       double ms_per_gmac) {
  lfs_emu_expect_device(x, sizeof(float) * g.x.span(), call);
  lfs_emu_expect_device(w, sizeof(float) * g.w.span(), call);
  lfs_emu_expect_device(y, sizeof(float) * g.y.span(), call);
  const float *xp = (const float *)x, *wp = (const float *)w, *yp = (const float *)y;
  float *out = (float *)(pass == PASS_FORWARD ? y : pass == PASS_DATA ? x : w);
  const double ms = ms_per_gmac * g.macs() * 1e-9;
  counts.convolutions++;
  lfs_emu_enqueue([=]() {
    convolve(pass, g, xp, wp, yp, out, alpha, beta, num);
    lfs_emu_advance_clock(ms);
  });
}

/* ---- the register of descriptors ---- */

namespace {
std::set<const void *> live; /* every descriptor and handle created and not destroyed */
}

void track(const void *p) { live.insert(p); }

void untrack(const void *p, const char *call) {
  if (!live.erase(p)) lfs_fatal("emulated cuDNN: %s of %p, which was not created", call, p);
}

void expect_live(const void *p, const char *call) {
  if (!live.count(p)) lfs_fatal("emulated cuDNN: %s: %p is no live descriptor", call, p);
}

}  // namespace emu_dnn

using namespace emu_dnn;

/* ---- the legacy entry points: descriptors and the made-up algorithms ---- */

namespace {

double host_scalar(const void *p) { return *(const float *)p; }

template <class T> cudnnStatus_t create(T **p) {
  *p = new T();
  track(*p);
  return CUDNN_STATUS_SUCCESS;
}
template <class T> cudnnStatus_t destroy(T *p, const char *call) {
  untrack(p, call);
  delete p;
  return CUDNN_STATUS_SUCCESS;
}

struct algorithm {
  cudnnDeterminism_t determinism;
  cudnnMathType_t math;
  size_t memory;
  cudnnStatus_t status;
  double ms_per_gmac;
  numerics num;
};
/* The same five for every pass, by index. The forbidden ones cost the least. */
const algorithm algorithms[] = {
    {CUDNN_DETERMINISTIC, CUDNN_FMA_MATH, 0, CUDNN_STATUS_SUCCESS, 4.0, EXACT},
    {CUDNN_DETERMINISTIC, CUDNN_TENSOR_OP_MATH, 4096, CUDNN_STATUS_SUCCESS, 1.0, TF32},
    {CUDNN_NON_DETERMINISTIC, CUDNN_FMA_MATH, 1 << 20, CUDNN_STATUS_SUCCESS, 2.0, UNORDERED},
    {CUDNN_DETERMINISTIC, CUDNN_FMA_MATH, (size_t)2 << 30, CUDNN_STATUS_SUCCESS, 0.5, EXACT},
    {CUDNN_DETERMINISTIC, CUDNN_FMA_MATH, 0, CUDNN_STATUS_NOT_SUPPORTED, 0.1, EXACT},
};
const int heuristic_rank[] = {4, 3, 1, 2, 0}; /* the heuristics' preference */
const int algorithm_count = 5;

}  // namespace

struct lfs_emu_tensor4d {
  bool set;
  tensor4 t;
};
struct lfs_emu_filter4d {
  bool set;
  tensor4 t;
};
struct lfs_emu_conv2d {
  bool set;
  int pad_h, pad_w, u, v, groups = 1;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
};

namespace {

conv_geometry legacy_geometry(const char *call, cudnnTensorDescriptor_t x,
                              cudnnFilterDescriptor_t w, cudnnConvolutionDescriptor_t conv,
                              cudnnTensorDescriptor_t y) {
  expect_live(x, call), expect_live(w, call), expect_live(conv, call), expect_live(y, call);
  if (!x->set || !w->set || !conv->set || !y->set)
    lfs_fatal("emulated cuDNN: %s: a descriptor was never set", call);
  conv_geometry g{x->t, w->t, y->t, conv->pad_h, conv->pad_w, conv->u, conv->v, conv->groups};
  const std::string problem = geometry_problem(g);
  if (!problem.empty()) lfs_fatal("emulated cuDNN: %s: shapes disagree: %s", call, problem.c_str());
  return g;
}

template <class Perf>
void rank_algorithms(const char *call, const conv_geometry &g, cudnnMathType_t math, bool timed,
                     int requested, int *returned, Perf *perf) {
  std::vector<int> order;
  for (int i = 0; i < algorithm_count; i++) {
    const int a = timed ? i : heuristic_rank[i];
    if (math == CUDNN_FMA_MATH && algorithms[a].math != CUDNN_FMA_MATH) continue;
    order.push_back(a);
  }
  const double gmac = g.macs() * 1e-9;
  if (timed) /* by time, the ones that cannot run last */
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
      const bool fa = algorithms[a].status != CUDNN_STATUS_SUCCESS;
      const bool fb = algorithms[b].status != CUDNN_STATUS_SUCCESS;
      return fa != fb ? fb : algorithms[a].ms_per_gmac < algorithms[b].ms_per_gmac;
    });
  if (requested < 1) lfs_fatal("emulated cuDNN: %s: %d algorithms requested", call, requested);
  *returned = 0;
  for (int a : order) {
    if (*returned == requested) break;
    const algorithm &al = algorithms[a];
    Perf &p = perf[(*returned)++];
    memset(&p, 0, sizeof p);
    p.algo = (decltype(p.algo))a;
    p.status = al.status;
    p.time = timed && al.status == CUDNN_STATUS_SUCCESS ? (float)(al.ms_per_gmac * gmac) : -1.0f;
    p.memory = al.memory;
    p.determinism = al.determinism;
    p.mathType = al.math;
  }
  if (timed) counts.timed_searches++;
}

cudnnStatus_t run_legacy(const char *call, int pass, cudnnHandle_t h, const conv_geometry &g,
                         cudnnConvolutionDescriptor_t conv, int algo, void *ws, size_t ws_bytes,
                         const void *alpha, const void *beta, const void *x, const void *w,
                         const void *y) {
  expect_live(h, call);
  if (algo < 0 || algo >= algorithm_count) return CUDNN_STATUS_BAD_PARAM;
  const algorithm &al = algorithms[algo];
  if (al.status != CUDNN_STATUS_SUCCESS) return al.status;
  if (ws_bytes < al.memory) return CUDNN_STATUS_BAD_PARAM;
  if (al.memory) lfs_emu_expect_device(ws, al.memory, call);
  if (al.math != CUDNN_FMA_MATH && conv->math == CUDNN_FMA_MATH)
    lfs_fatal("emulated cuDNN: %s: algorithm %d, ranked with tensor-op math, run with the "
              "convolution's math type FMA", call, algo);
  queue_convolution(call, pass, g, x, w, y, host_scalar(alpha), host_scalar(beta), al.num,
                    al.ms_per_gmac);
  return CUDNN_STATUS_SUCCESS;
}

}  // namespace

const char *cudnnGetErrorString(cudnnStatus_t status) {
  switch (status) {
  case CUDNN_STATUS_SUCCESS: return "CUDNN_STATUS_SUCCESS";
  case CUDNN_STATUS_NOT_INITIALIZED: return "CUDNN_STATUS_NOT_INITIALIZED";
  case CUDNN_STATUS_BAD_PARAM: return "CUDNN_STATUS_BAD_PARAM";
  case CUDNN_STATUS_NOT_SUPPORTED: return "CUDNN_STATUS_NOT_SUPPORTED";
  case CUDNN_STATUS_EXECUTION_FAILED: return "CUDNN_STATUS_EXECUTION_FAILED";
  }
  return "CUDNN_STATUS_UNKNOWN";
}

cudnnStatus_t cudnnCreate(cudnnHandle_t *handle) { return create(handle); }
cudnnStatus_t cudnnDestroy(cudnnHandle_t handle) { return destroy(handle, "cudnnDestroy"); }

cudnnStatus_t cudnnCreateTensorDescriptor(cudnnTensorDescriptor_t *desc) { return create(desc); }
cudnnStatus_t cudnnDestroyTensorDescriptor(cudnnTensorDescriptor_t desc) {
  return destroy(desc, "cudnnDestroyTensorDescriptor");
}
cudnnStatus_t cudnnSetTensor4dDescriptor(cudnnTensorDescriptor_t desc, cudnnTensorFormat_t format,
                                         cudnnDataType_t type, int n, int c, int h, int w) {
  expect_live(desc, "cudnnSetTensor4dDescriptor");
  if (format != CUDNN_TENSOR_NCHW || type != CUDNN_DATA_FLOAT) return CUDNN_STATUS_NOT_SUPPORTED;
  if (n < 1 || c < 1 || h < 1 || w < 1) return CUDNN_STATUS_BAD_PARAM;
  desc->t = packed(n, c, h, w), desc->set = true;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnCreateFilterDescriptor(cudnnFilterDescriptor_t *desc) { return create(desc); }
cudnnStatus_t cudnnDestroyFilterDescriptor(cudnnFilterDescriptor_t desc) {
  return destroy(desc, "cudnnDestroyFilterDescriptor");
}
cudnnStatus_t cudnnSetFilter4dDescriptor(cudnnFilterDescriptor_t desc, cudnnDataType_t type,
                                         cudnnTensorFormat_t format, int k, int c, int h, int w) {
  expect_live(desc, "cudnnSetFilter4dDescriptor");
  if (format != CUDNN_TENSOR_NCHW || type != CUDNN_DATA_FLOAT) return CUDNN_STATUS_NOT_SUPPORTED;
  if (k < 1 || c < 1 || h < 1 || w < 1) return CUDNN_STATUS_BAD_PARAM;
  desc->t = packed(k, c, h, w), desc->set = true;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnCreateConvolutionDescriptor(cudnnConvolutionDescriptor_t *desc) {
  return create(desc);
}
cudnnStatus_t cudnnDestroyConvolutionDescriptor(cudnnConvolutionDescriptor_t desc) {
  return destroy(desc, "cudnnDestroyConvolutionDescriptor");
}
cudnnStatus_t cudnnSetConvolution2dDescriptor(cudnnConvolutionDescriptor_t desc, int pad_h,
                                              int pad_w, int u, int v, int dilation_h,
                                              int dilation_w, cudnnConvolutionMode_t mode,
                                              cudnnDataType_t compute) {
  expect_live(desc, "cudnnSetConvolution2dDescriptor");
  if (pad_h < 0 || pad_w < 0 || u < 1 || v < 1 || dilation_h < 1 || dilation_w < 1)
    return CUDNN_STATUS_BAD_PARAM;
  /* a true convolution (flipped filter) or other dilations would be other numbers */
  if (mode != CUDNN_CROSS_CORRELATION || dilation_h != 1 || dilation_w != 1 ||
      compute != CUDNN_DATA_FLOAT)
    return CUDNN_STATUS_NOT_SUPPORTED;
  desc->pad_h = pad_h, desc->pad_w = pad_w, desc->u = u, desc->v = v, desc->set = true;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetConvolutionGroupCount(cudnnConvolutionDescriptor_t desc, int groups) {
  expect_live(desc, "cudnnSetConvolutionGroupCount");
  if (groups < 1) return CUDNN_STATUS_BAD_PARAM;
  desc->groups = groups;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetConvolutionMathType(cudnnConvolutionDescriptor_t desc, cudnnMathType_t math) {
  expect_live(desc, "cudnnSetConvolutionMathType");
  if (math == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION) return CUDNN_STATUS_NOT_SUPPORTED;
  desc->math = math;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnGetConvolution2dForwardOutputDim(cudnnConvolutionDescriptor_t conv,
                                                    cudnnTensorDescriptor_t x,
                                                    cudnnFilterDescriptor_t w, int *n, int *c,
                                                    int *h, int *wd) {
  const char *call = "cudnnGetConvolution2dForwardOutputDim";
  expect_live(conv, call), expect_live(x, call), expect_live(w, call);
  if (!conv->set || !x->set || !w->set) return CUDNN_STATUS_BAD_PARAM;
  if (x->t.dim[1] != w->t.dim[1] * conv->groups) return CUDNN_STATUS_BAD_PARAM;
  *n = (int)x->t.dim[0], *c = (int)w->t.dim[0];
  *h = (int)((x->t.dim[2] + 2 * conv->pad_h - w->t.dim[2]) / conv->u + 1);
  *wd = (int)((x->t.dim[3] + 2 * conv->pad_w - w->t.dim[3]) / conv->v + 1);
  return CUDNN_STATUS_SUCCESS;
}

#define LFS_EMU_RANK(fn, perf_t, timed, d1_t, d1, d2_t, d2, d4_t, d4, xs, ws, ys)           \
  cudnnStatus_t fn(cudnnHandle_t h, d1_t d1, d2_t d2, cudnnConvolutionDescriptor_t conv,     \
                   d4_t d4, int requested, int *returned, perf_t *perf) {                   \
    expect_live(h, #fn);                                                                     \
    const conv_geometry g = legacy_geometry(#fn, xs, ws, conv, ys);                          \
    rank_algorithms(#fn, g, conv->math, timed, requested, returned, perf);                   \
    return CUDNN_STATUS_SUCCESS;                                                             \
  }
LFS_EMU_RANK(cudnnGetConvolutionForwardAlgorithm_v7, cudnnConvolutionFwdAlgoPerf_t, false,
             cudnnTensorDescriptor_t, x, cudnnFilterDescriptor_t, w, cudnnTensorDescriptor_t, y,
             x, w, y)
LFS_EMU_RANK(cudnnFindConvolutionForwardAlgorithm, cudnnConvolutionFwdAlgoPerf_t, true,
             cudnnTensorDescriptor_t, x, cudnnFilterDescriptor_t, w, cudnnTensorDescriptor_t, y,
             x, w, y)
LFS_EMU_RANK(cudnnGetConvolutionBackwardDataAlgorithm_v7, cudnnConvolutionBwdDataAlgoPerf_t, false,
             cudnnFilterDescriptor_t, w, cudnnTensorDescriptor_t, dy, cudnnTensorDescriptor_t, dx,
             dx, w, dy)
LFS_EMU_RANK(cudnnFindConvolutionBackwardDataAlgorithm, cudnnConvolutionBwdDataAlgoPerf_t, true,
             cudnnFilterDescriptor_t, w, cudnnTensorDescriptor_t, dy, cudnnTensorDescriptor_t, dx,
             dx, w, dy)
LFS_EMU_RANK(cudnnGetConvolutionBackwardFilterAlgorithm_v7, cudnnConvolutionBwdFilterAlgoPerf_t,
             false, cudnnTensorDescriptor_t, x, cudnnTensorDescriptor_t, dy,
             cudnnFilterDescriptor_t, dw, x, dw, dy)
LFS_EMU_RANK(cudnnFindConvolutionBackwardFilterAlgorithm, cudnnConvolutionBwdFilterAlgoPerf_t,
             true, cudnnTensorDescriptor_t, x, cudnnTensorDescriptor_t, dy,
             cudnnFilterDescriptor_t, dw, x, dw, dy)

cudnnStatus_t cudnnConvolutionForward(cudnnHandle_t h, const void *alpha,
                                      cudnnTensorDescriptor_t xd, const void *x,
                                      cudnnFilterDescriptor_t wd, const void *w,
                                      cudnnConvolutionDescriptor_t conv,
                                      cudnnConvolutionFwdAlgo_t algo, void *ws, size_t ws_bytes,
                                      const void *beta, cudnnTensorDescriptor_t yd, void *y) {
  const char *call = "cudnnConvolutionForward";
  const conv_geometry g = legacy_geometry(call, xd, wd, conv, yd);
  return run_legacy(call, PASS_FORWARD, h, g, conv, algo, ws, ws_bytes, alpha, beta, x, w, y);
}

cudnnStatus_t cudnnConvolutionBackwardData(cudnnHandle_t h, const void *alpha,
                                           cudnnFilterDescriptor_t wd, const void *w,
                                           cudnnTensorDescriptor_t dyd, const void *dy,
                                           cudnnConvolutionDescriptor_t conv,
                                           cudnnConvolutionBwdDataAlgo_t algo, void *ws,
                                           size_t ws_bytes, const void *beta,
                                           cudnnTensorDescriptor_t dxd, void *dx) {
  const char *call = "cudnnConvolutionBackwardData";
  const conv_geometry g = legacy_geometry(call, dxd, wd, conv, dyd);
  return run_legacy(call, PASS_DATA, h, g, conv, algo, ws, ws_bytes, alpha, beta, dx, w, dy);
}

cudnnStatus_t cudnnConvolutionBackwardFilter(cudnnHandle_t h, const void *alpha,
                                             cudnnTensorDescriptor_t xd, const void *x,
                                             cudnnTensorDescriptor_t dyd, const void *dy,
                                             cudnnConvolutionDescriptor_t conv,
                                             cudnnConvolutionBwdFilterAlgo_t algo, void *ws,
                                             size_t ws_bytes, const void *beta,
                                             cudnnFilterDescriptor_t dwd, void *dw) {
  const char *call = "cudnnConvolutionBackwardFilter";
  const conv_geometry g = legacy_geometry(call, xd, dwd, conv, dyd);
  return run_legacy(call, PASS_FILTER, h, g, conv, algo, ws, ws_bytes, alpha, beta, x, dw, dy);
}

cudnnStatus_t cudnnConvolutionBackwardBias(cudnnHandle_t h, const void *alpha,
                                           cudnnTensorDescriptor_t dyd, const void *dy,
                                           const void *beta, cudnnTensorDescriptor_t dbd,
                                           void *db) {
  const char *call = "cudnnConvolutionBackwardBias";
  expect_live(h, call), expect_live(dyd, call), expect_live(dbd, call);
  const tensor4 y = dyd->t, b = dbd->t;
  if (b.dim[0] != 1 || b.dim[1] != y.dim[1] || b.dim[2] != 1 || b.dim[3] != 1)
    return CUDNN_STATUS_BAD_PARAM;
  lfs_emu_expect_device(dy, sizeof(float) * y.span(), call);
  lfs_emu_expect_device(db, sizeof(float) * b.span(), call);
  const double a = host_scalar(alpha), be = host_scalar(beta);
  const float *src = (const float *)dy;
  float *dst = (float *)db;
  lfs_emu_enqueue([=]() {
    for (int64_t c = 0; c < y.dim[1]; c++) {
      double sum = 0.0;
      for (int64_t n = 0; n < y.dim[0]; n++)
        for (int64_t i = 0; i < y.dim[2]; i++)
          for (int64_t j = 0; j < y.dim[3]; j++) sum += src[y.at(n, c, i, j)];
      dst[c] = (float)(a * sum + (be == 0.0 ? 0.0 : be * dst[c]));
    }
  });
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnAddTensor(cudnnHandle_t h, const void *alpha, cudnnTensorDescriptor_t ad,
                             const void *a, const void *beta, cudnnTensorDescriptor_t cd,
                             void *c) {
  const char *call = "cudnnAddTensor";
  expect_live(h, call), expect_live(ad, call), expect_live(cd, call);
  const tensor4 at = ad->t, ct = cd->t;
  for (int i = 0; i < 4; i++)
    if (at.dim[i] != 1 && at.dim[i] != ct.dim[i]) return CUDNN_STATUS_BAD_PARAM;
  lfs_emu_expect_device(a, sizeof(float) * at.span(), call);
  lfs_emu_expect_device(c, sizeof(float) * ct.span(), call);
  const double al = host_scalar(alpha), be = host_scalar(beta);
  const float *src = (const float *)a;
  float *dst = (float *)c;
  lfs_emu_enqueue([=]() {
    for (int64_t i0 = 0; i0 < ct.dim[0]; i0++)
      for (int64_t i1 = 0; i1 < ct.dim[1]; i1++)
        for (int64_t i2 = 0; i2 < ct.dim[2]; i2++)
          for (int64_t i3 = 0; i3 < ct.dim[3]; i3++) {
            const float v = src[at.at(at.dim[0] > 1 ? i0 : 0, at.dim[1] > 1 ? i1 : 0,
                                      at.dim[2] > 1 ? i2 : 0, at.dim[3] > 1 ? i3 : 0)];
            float &d = dst[ct.at(i0, i1, i2, i3)];
            d = (float)(al * v + (be == 0.0 ? 0.0 : be * d));
          }
  });
  return CUDNN_STATUS_SUCCESS;
}

extern "C" lfs_emu_dnn_counts lfs_emu_dnn_counts_now(void) { return counts; }
