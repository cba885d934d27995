/* cudnn_emu_internal.h: what cudnn_emu.cpp (the legacy entry points) and
 * cudnn_emu_graph.cpp (the graph API) share: tensors as dimensions and strides, a
 * convolution's geometry, the numerics of the made-up algorithms and engines, the one
 * routine that runs every pass, and the register of live descriptors. */
#ifndef LFS_TESTS_CUDNN_EMU_INTERNAL_H
#define LFS_TESTS_CUDNN_EMU_INTERNAL_H

#include <string>

#include "cuda_emu.h"
#include "emu_backend.h"

namespace emu_dnn {

enum { PASS_FORWARD, PASS_DATA, PASS_FILTER };

/* What an algorithm or engine does to the numbers. */
enum numerics {
  EXACT,     /* products of the inputs added in double, rounded once */
  TF32,      /* inputs rounded to TF32 (10-bit mantissas) first */
  HALF,      /* inputs rounded to half precision first */
  UNORDERED, /* added in float, in an order that changes from call to call */
};

extern lfs_emu_dnn_counts counts;

/* A 4-D float32 tensor in device memory: dimensions and strides in elements. */
struct tensor4 {
  int64_t dim[4], stride[4];
  size_t span() const { /* elements from the first to one past the last */
    size_t s = 1;
    for (int i = 0; i < 4; i++) s += (size_t)(dim[i] - 1) * stride[i];
    return s;
  }
  size_t at(int64_t a, int64_t b, int64_t c, int64_t d) const {
    return (size_t)(a * stride[0] + b * stride[1] + c * stride[2] + d * stride[3]);
  }
};
tensor4 packed(int64_t a, int64_t b, int64_t c, int64_t d);

struct conv_geometry {
  tensor4 x, w, y; /* shaped like the input, the filter, the output */
  int pad_h, pad_w, stride_h, stride_w, groups;
  double macs() const {
    return (double)y.dim[0] * y.dim[1] * y.dim[2] * y.dim[3] * w.dim[1] * w.dim[2] * w.dim[3];
  }
};
/* "" when the shapes agree (groups from the channel counts), else what does not. */
std::string geometry_problem(const conv_geometry &g);
/* Checks the pointers (x-, w- and y-shaped) and queues the pass: its output (y, dx or dw) =
 * alpha op + beta output; ms_per_gmac is its cost on the emulated clock. */
void queue_convolution(const char *call, int pass, const conv_geometry &g, const void *x,
                       const void *w, const void *y, double alpha, double beta, numerics num,
                       double ms_per_gmac);

/* Descriptors and handles: created, checked and destroyed through the register. */
void track(const void *p);
void untrack(const void *p, const char *call);
void expect_live(const void *p, const char *call);

}  // namespace emu_dnn

#endif
