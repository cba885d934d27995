/* instrument.c: a backend wrapped op by op, for two jobs that need to see every
 * call. Checking: each buffer an op is handed must lie inside a live
 * allocation of the backend, as on a GPU; a host array passed where device
 * memory belongs stops the program naming the op and the argument, on any
 * machine. "cpu-staged" is the CPU kernels behind a device ordinal with
 * checking on: callers then treat its memory as a GPU's (host mirrors,
 * explicit uploads and downloads), so the staging path of a GPU run is
 * exercised, and compared bit for bit with the CPU, without a GPU; with
 * LFS_STAGED_MEMORY_MIB its memory is that small, so that running out of
 * device memory is exercised too. Profiling (LFS_PROFILE=1): the time of each
 * op kind, measured between synchronisations of the device, with the bandwidth
 * and arithmetic rate it reaches, and the convolutions' time by geometry, which
 * `lfsearch bench --train` prints: a step's cost by op, without a profiler.
 * Layout: as lfs/backend.h. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lfs/backend.h"
#include "lfs/log.h"
#include "lfs/timer.h"

enum { INSTRUMENT_CHECK = 1, INSTRUMENT_PROFILE = 2 };

enum {
  OP_ALLOC, OP_FREE, OP_UPLOAD, OP_UPLOAD_ASYNC, OP_DOWNLOAD, OP_FILL, OP_AXPY, OP_CONV_FWD,
  OP_CONV_BWD, OP_BN_STATS, OP_BN_APPLY, OP_BN_GRAD_TERMS, OP_BN_BWD, OP_PRELU_FWD, OP_PRELU_BWD,
  OP_LINEAR_FWD, OP_LINEAR_BWD, OP_ADD, OP_DROPOUT_FWD, OP_DROPOUT_BWD, OP_L2NORM_FWD,
  OP_L2NORM_BWD, OP_HEAD, OP_SGD, OP_COUNT
};
static const char *const op_names[OP_COUNT] = {
    "alloc", "free", "upload", "upload (copy stream)", "download", "fill", "axpy",
    "conv2d forward", "conv2d backward", "batchnorm stats", "batchnorm apply",
    "batchnorm grad terms", "batchnorm backward", "prelu forward", "prelu backward",
    "linear forward", "linear backward", "add", "dropout forward", "dropout backward",
    "l2norm forward", "l2norm backward", "margin head", "sgd step"};

typedef struct {
  const float *p;
  size_t count;
} allocation;

/* One convolution geometry's share of the profile. */
typedef struct {
  lfs_conv_desc d;
  double seconds[2], flops[2]; /* forward, backward */
  long calls[2];
} conv_time;

/* One wrapped backend; its ops call `inner`'s with `inner`. */
typedef struct {
  lfs_backend be; /* first: the wrapper as callers see it */
  lfs_backend_ops ops;
  lfs_backend *inner;
  int flags;
  allocation *live;
  int nlive, cap_live;
  size_t live_bytes, limit_bytes; /* limit: LFS_STAGED_MEMORY_MIB (0: none) */
  double seconds[OP_COUNT];
  long calls[OP_COUNT];
  /* the bytes each op must read and write once, and its floating-point work */
  double bytes[OP_COUNT], flops[OP_COUNT];
  conv_time *convs;
  int nconvs, cap_convs;
} instrumented;

static instrumented *of(lfs_backend *be) { return (instrumented *)be; }
static lfs_backend *inner_of(lfs_backend *be) { return of(be)->inner; }
static const lfs_backend_ops *inner_ops(lfs_backend *be) { return of(be)->inner->ops; }

static void check(lfs_backend *be, const char *op, const char *arg, const float *p, size_t count) {
  const instrumented *w = of(be);
  if (!(w->flags & INSTRUMENT_CHECK) || !p || !count) return;
  const uintptr_t a = (uintptr_t)p;
  for (int i = 0; i < w->nlive; i++) {
    const uintptr_t lo = (uintptr_t)w->live[i].p, hi = lo + w->live[i].count * sizeof(float);
    if (a >= lo && a < hi) {
      if (a + count * sizeof(float) > hi)
        lfs_fatal("%s: %s: %s runs %zu floats past the end of its allocation", w->ops.name, op,
                  arg, (size_t)((a + count * sizeof(float) - hi) / sizeof(float)));
      return;
    }
  }
  lfs_fatal("%s: %s: %s (%p, %zu floats) is not backend memory (a host array where a device "
            "buffer belongs?)", w->ops.name, op, arg, (const void *)p, count);
}
#define CHECK(p, n) check(be, __func__ + 3, #p, p, n) /* __func__ less "in_" */

static double begin(lfs_backend *be) {
  if (!(of(be)->flags & INSTRUMENT_PROFILE)) return 0.0;
  if (inner_ops(be)->synchronize) inner_ops(be)->synchronize(inner_of(be));
  return lfs_now();
}

/* The seconds since t0 (0 when not profiling), counted for op with its work. */
static double end(lfs_backend *be, int op, double t0, double bytes, double flops) {
  instrumented *w = of(be);
  if (!(w->flags & INSTRUMENT_PROFILE)) return 0.0;
  if (inner_ops(be)->synchronize) inner_ops(be)->synchronize(inner_of(be));
  const double seconds = lfs_now() - t0;
  w->seconds[op] += seconds;
  w->calls[op]++;
  w->bytes[op] += bytes;
  w->flops[op] += flops;
  return seconds;
}

/* Runs `call` as op `op`, timed when profiling, with the bytes it must move
 * (floats touched, times 4) and its floating-point operations. */
#define TIMED_WORK(op, floats, flop, call)                                \
  do {                                                                  \
    const double t0_ = begin(be);                                       \
    call;                                                               \
    end(be, op, t0_, 4.0 * (double)(floats), (double)(flop));           \
  } while (0)
#define TIMED(op, call) TIMED_WORK(op, 0, 0, call)

/* A device's memory running out, where checking is on and a limit is set:
 * the out-of-memory path of a GPU run, exercised on any machine. */
static void check_limit(instrumented *w, size_t bytes) {
  if (!w->limit_bytes || w->live_bytes + bytes <= w->limit_bytes) return;
  char device[96];
  snprintf(device, sizeof device, "%s (LFS_STAGED_MEMORY_MIB=%zu)", w->ops.name,
           w->limit_bytes >> 20);
  lfs_backend_out_of_memory(device, bytes, NULL, "out of memory",
                            (double)(w->limit_bytes - w->live_bytes) / 1048576.0,
                            (double)w->limit_bytes / 1048576.0);
}

static float *in_alloc(lfs_backend *be, size_t count) {
  instrumented *w = of(be);
  float *p = NULL;
  if (w->flags & INSTRUMENT_CHECK) check_limit(w, (count ? count : 1) * sizeof(float));
  TIMED(OP_ALLOC, p = inner_ops(be)->alloc(inner_of(be), count));
  if (w->flags & INSTRUMENT_CHECK) {
    w->live = lfs_grow(w->live, w->nlive + 1, &w->cap_live, sizeof *w->live);
    w->live[w->nlive++] = (allocation){p, count ? count : 1};
    w->live_bytes += (count ? count : 1) * sizeof(float);
  }
  return p;
}

/* Forgets p's allocation; 0 if this backend never made it. */
static int forget(instrumented *w, const float *p) {
  for (int i = 0; i < w->nlive; i++)
    if (w->live[i].p == p) {
      w->live_bytes -= w->live[i].count * sizeof(float);
      w->live[i] = w->live[--w->nlive];
      return 1;
    }
  return 0;
}

static void in_free(lfs_backend *be, float *p) {
  instrumented *w = of(be);
  if (!p) return;
  if ((w->flags & INSTRUMENT_CHECK) && !forget(w, p))
    lfs_fatal("%s: free of %p, which this backend did not allocate", w->ops.name, (void *)p);
  TIMED(OP_FREE, inner_ops(be)->free(inner_of(be), p));
}

static void in_upload(lfs_backend *be, float *dst, const float *src, size_t count) {
  CHECK(dst, count);
  TIMED_WORK(OP_UPLOAD, count, 0, inner_ops(be)->upload(inner_of(be), dst, src, count));
}

static void in_upload_async(lfs_backend *be, float *dst, const float *src, size_t count) {
  CHECK(dst, count);
  TIMED_WORK(OP_UPLOAD_ASYNC, count, 0,
             inner_ops(be)->upload_async(inner_of(be), dst, src, count));
}

static void in_download(lfs_backend *be, float *dst, const float *src, size_t count) {
  CHECK(src, count);
  TIMED_WORK(OP_DOWNLOAD, count, 0, inner_ops(be)->download(inner_of(be), dst, src, count));
}

static void in_fill(lfs_backend *be, float *x, float value, size_t count) {
  CHECK(x, count);
  TIMED_WORK(OP_FILL, count, 0, inner_ops(be)->fill(inner_of(be), x, value, count));
}

static void in_axpy(lfs_backend *be, float *y, float alpha, const float *x, size_t count) {
  CHECK(y, count), CHECK(x, count);
  TIMED_WORK(OP_AXPY, 3 * count, 0,
             inner_ops(be)->axpy(inner_of(be), y, alpha, x, count));
}

static size_t conv_in(const lfs_conv_desc *d) { return (size_t)d->n * d->in_c * d->in_h * d->in_w; }
static size_t conv_out(const lfs_conv_desc *d) {
  return (size_t)d->n * d->out_c * d->out_h * d->out_w;
}
static size_t conv_w(const lfs_conv_desc *d) {
  return (size_t)d->out_c * (d->in_c / d->groups) * d->kh * d->kw;
}

/* 2 x the multiply-adds of one pass (forward, backward data or backward filter). */
static double conv_flops(const lfs_conv_desc *d) {
  return 2.0 * (double)conv_out(d) * (d->in_c / d->groups) * d->kh * d->kw;
}

/* Adds a timed pass (0 forward, 1 backward) to its geometry's row. */
static void count_conv(lfs_backend *be, const lfs_conv_desc *d, int pass, double seconds,
                       double flops) {
  instrumented *w = of(be);
  if (!(w->flags & INSTRUMENT_PROFILE)) return;
  int i = 0;
  while (i < w->nconvs && !lfs_conv_desc_same(&w->convs[i].d, d)) i++;
  if (i == w->nconvs) {
    w->convs = lfs_grow(w->convs, w->nconvs, &w->cap_convs, sizeof *w->convs);
    w->convs[w->nconvs++] = (conv_time){.d = *d}; /* a reset keeps the slots */
  }
  w->convs[i].seconds[pass] += seconds;
  w->convs[i].flops[pass] += flops;
  w->convs[i].calls[pass]++;
}

static void in_conv2d_forward(lfs_backend *be, const lfs_conv_desc *d, float *y, const float *x,
                              const float *w, const float *b) {
  CHECK(y, conv_out(d)), CHECK(x, conv_in(d)), CHECK(w, conv_w(d));
  if (d->has_bias) CHECK(b, (size_t)d->out_c);
  const double t0 = begin(be), flops = conv_flops(d);
  inner_ops(be)->conv2d_forward(inner_of(be), d, y, x, w, b);
  const double floats = (double)conv_in(d) + conv_out(d) + conv_w(d);
  count_conv(be, d, 0, end(be, OP_CONV_FWD, t0, 4.0 * floats, flops), flops);
}

static void in_conv2d_backward(lfs_backend *be, const lfs_conv_desc *d, float *dx,
                               lfs_grad_write dx_write, float *dw, float *db, const float *dy,
                               const float *x, const float *w) {
  CHECK(dx, conv_in(d)), CHECK(dw, conv_w(d)), CHECK(dy, conv_out(d)), CHECK(x, conv_in(d));
  CHECK(w, conv_w(d));
  if (d->has_bias) CHECK(db, (size_t)d->out_c);
  const double t0 = begin(be), flops = conv_flops(d) * ((dx != NULL) + (dw != NULL));
  inner_ops(be)->conv2d_backward(inner_of(be), d, dx, dx_write, dw, db, dy, x, w);
  /* dy read; dx written (and read when accumulated) from w; dw accumulated from x */
  const double dx_floats = (dx_write == LFS_GRAD_SET ? 1.0 : 2.0) * conv_in(d) + conv_w(d);
  const double floats = (double)conv_out(d) + (dx ? dx_floats : 0.0) +
                        (dw ? conv_in(d) + 2.0 * conv_w(d) : 0.0);
  count_conv(be, d, 1, end(be, OP_CONV_BWD, t0, 4.0 * floats, flops), flops);
}

static size_t bn_count(const lfs_bn_desc *d) { return (size_t)d->n * d->c * d->spatial; }

static double in_batchnorm_stats(lfs_backend *be, const lfs_bn_desc *d,
                                 const lfs_bn_stats_cfg *cfg, float *mean, float *invstd,
                                 float *run_mean, float *run_var, const float *x) {
  const size_t c = (size_t)d->c;
  CHECK(mean, c), CHECK(invstd, c), CHECK(run_mean, c), CHECK(run_var, c);
  if (cfg->training) CHECK(x, bn_count(d));
  double count = 0.0;
  TIMED_WORK(OP_BN_STATS, cfg->training ? bn_count(d) : 0, 0,
             count = inner_ops(be)->batchnorm_stats(inner_of(be), d, cfg, mean, invstd, run_mean,
                                                    run_var, x));
  return count;
}

static void in_batchnorm_apply(lfs_backend *be, const lfs_bn_desc *d, float *y, const float *x,
                               const float *mean, const float *invstd, const float *gamma,
                               const float *beta) {
  const size_t c = (size_t)d->c;
  CHECK(y, bn_count(d)), CHECK(x, bn_count(d)), CHECK(mean, c), CHECK(invstd, c);
  CHECK(gamma, c), CHECK(beta, c);
  TIMED_WORK(OP_BN_APPLY, 2 * bn_count(d), 0,
             inner_ops(be)->batchnorm_apply(inner_of(be), d, y, x, mean, invstd, gamma, beta));
}

static void in_batchnorm_grad_terms(lfs_backend *be, const lfs_bn_desc *d,
                                    const lfs_bn_stats_cfg *cfg, double count, float *dgamma,
                                    float *dbeta, float *mean_dy, float *mean_dy_xhat,
                                    const float *dy, const float *x, const float *mean,
                                    const float *invstd) {
  const size_t c = (size_t)d->c;
  CHECK(dgamma, c), CHECK(dbeta, c), CHECK(mean_dy, c), CHECK(mean_dy_xhat, c);
  CHECK(dy, bn_count(d)), CHECK(x, bn_count(d)), CHECK(mean, c), CHECK(invstd, c);
  TIMED_WORK(OP_BN_GRAD_TERMS, 2 * bn_count(d), 0,
             inner_ops(be)->batchnorm_grad_terms(inner_of(be), d, cfg, count, dgamma, dbeta,
                                                 mean_dy, mean_dy_xhat, dy, x, mean, invstd));
}

static void in_batchnorm_backward_apply(lfs_backend *be, const lfs_bn_desc *d, float *dx,
                                        lfs_grad_write dx_write, const float *dy, const float *x,
                                        const float *gamma, const float *mean,
                                        const float *invstd, const float *mean_dy,
                                        const float *mean_dy_xhat) {
  const size_t c = (size_t)d->c;
  CHECK(dx, bn_count(d)), CHECK(dy, bn_count(d)), CHECK(x, bn_count(d)), CHECK(gamma, c);
  CHECK(mean, c), CHECK(invstd, c), CHECK(mean_dy, c), CHECK(mean_dy_xhat, c);
  TIMED_WORK(OP_BN_BWD, (dx_write == LFS_GRAD_SET ? 3 : 4) * bn_count(d), 0,
             inner_ops(be)->batchnorm_backward_apply(inner_of(be), d, dx, dx_write, dy, x, gamma,
                                                     mean, invstd, mean_dy, mean_dy_xhat));
}

static void in_prelu_forward(lfs_backend *be, int n, int c, int spatial, float *y, const float *x,
                             const float *alpha) {
  const size_t count = (size_t)n * c * spatial;
  CHECK(y, count), CHECK(x, count), CHECK(alpha, (size_t)c);
  TIMED_WORK(OP_PRELU_FWD, 2 * count, 0,
             inner_ops(be)->prelu_forward(inner_of(be), n, c, spatial, y, x, alpha));
}

static void in_prelu_backward(lfs_backend *be, int n, int c, int spatial, float *dx,
                              lfs_grad_write dx_write, float *dalpha, const float *dy,
                              const float *x, const float *alpha) {
  const size_t count = (size_t)n * c * spatial;
  CHECK(dx, count), CHECK(dalpha, (size_t)c), CHECK(dy, count), CHECK(x, count);
  CHECK(alpha, (size_t)c);
  TIMED_WORK(OP_PRELU_BWD, (dx ? (dx_write == LFS_GRAD_SET ? 3 : 4) : 2) * count, 0,
             inner_ops(be)->prelu_backward(inner_of(be), n, c, spatial, dx, dx_write, dalpha, dy,
                                           x, alpha));
}

static void in_linear_forward(lfs_backend *be, int n, int in, int out, float *y, const float *x,
                              const float *w, const float *b) {
  CHECK(y, (size_t)n * out), CHECK(x, (size_t)n * in), CHECK(w, (size_t)out * in);
  CHECK(b, (size_t)out);
  TIMED_WORK(OP_LINEAR_FWD, (size_t)n * (in + out) + (size_t)out * in, 2.0 * n * in * out,
             inner_ops(be)->linear_forward(inner_of(be), n, in, out, y, x, w, b));
}

static void in_linear_backward(lfs_backend *be, int n, int in, int out, float *dx, float *dw,
                               float *db, const float *dy, const float *x, const float *w) {
  CHECK(dx, (size_t)n * in), CHECK(dw, (size_t)out * in), CHECK(db, (size_t)out);
  CHECK(dy, (size_t)n * out), CHECK(x, (size_t)n * in), CHECK(w, (size_t)out * in);
  TIMED_WORK(OP_LINEAR_BWD, 2 * ((size_t)n * (in + out) + (size_t)out * in),
             2.0 * n * in * out * ((dx != NULL) + (dw != NULL)),
             inner_ops(be)->linear_backward(inner_of(be), n, in, out, dx, dw, db, dy, x, w));
}

static void in_add_forward(lfs_backend *be, float *y, const float *a, const float *b,
                           size_t count) {
  CHECK(y, count), CHECK(a, count), CHECK(b, count);
  TIMED_WORK(OP_ADD, 3 * count, 0, inner_ops(be)->add_forward(inner_of(be), y, a, b, count));
}

static void in_dropout_forward(lfs_backend *be, float *y, const float *x, size_t count, float p,
                               const lfs_rng *rng) {
  CHECK(y, count), CHECK(x, count);
  TIMED_WORK(OP_DROPOUT_FWD, 2 * count, 0,
             inner_ops(be)->dropout_forward(inner_of(be), y, x, count, p, rng));
}

static void in_dropout_backward(lfs_backend *be, float *dx, const float *dy, size_t count, float p,
                                const lfs_rng *rng) {
  CHECK(dx, count), CHECK(dy, count);
  TIMED_WORK(OP_DROPOUT_BWD, 3 * count, 0,
             inner_ops(be)->dropout_backward(inner_of(be), dx, dy, count, p, rng));
}

static void in_l2norm_forward(lfs_backend *be, int rows, int cols, float eps, float *y,
                              float *norms, const float *x) {
  const size_t count = (size_t)rows * cols;
  CHECK(y, count), CHECK(norms, (size_t)rows), CHECK(x, count);
  TIMED_WORK(OP_L2NORM_FWD, 2 * count, 0,
             inner_ops(be)->l2norm_forward(inner_of(be), rows, cols, eps, y, norms, x));
}

static void in_l2norm_backward(lfs_backend *be, int rows, int cols, float eps, float *dx,
                               const float *dy, const float *y, const float *norms) {
  const size_t count = (size_t)rows * cols;
  CHECK(dx, count), CHECK(dy, count), CHECK(y, count), CHECK(norms, (size_t)rows);
  TIMED_WORK(OP_L2NORM_BWD, 4 * count, 0,
             inner_ops(be)->l2norm_backward(inner_of(be), rows, cols, eps, dx, dy, y, norms));
}

static double in_head_loss(lfs_backend *be, const lfs_head_cfg *cfg, int B, int D, int K, float *dx,
                           float *dw, lfs_head_stats *stats, const float *x, const float *w,
                           const int32_t *labels) {
  CHECK(dx, (size_t)B * D), CHECK(dw, (size_t)K * D), CHECK(x, (size_t)B * D);
  CHECK(w, (size_t)K * D);
  double loss = 0.0;
  /* the class matrix read and its gradient written; three B x D x K products */
  TIMED_WORK(OP_HEAD, 3 * (size_t)K * D, 6.0 * B * D * K,
             loss = inner_ops(be)->head_loss(inner_of(be), cfg, B, D, K, dx, dw, stats, x, w,
                                             labels));
  return loss;
}

static void in_sgd_step(lfs_backend *be, float *w, float *v, const float *g, size_t n, float lr,
                        float momentum, float weight_decay) {
  CHECK(w, n), CHECK(v, n), CHECK(g, n);
  TIMED_WORK(OP_SGD, 5 * n, 0,
             inner_ops(be)->sgd_step(inner_of(be), w, v, g, n, lr, momentum, weight_decay));
}

/* Fills w as the wrapper of `inner`, named `name`, with device ordinal `device`. */
static lfs_backend *instrument(instrumented *w, lfs_backend *inner, const char *name, int device,
                               int flags) {
  memset(w, 0, sizeof *w);
  w->inner = inner;
  w->flags = flags;
  w->ops = *inner->ops; /* host_alloc, host_free and synchronize pass through */
  w->ops.name = name;
  w->ops.alloc = in_alloc, w->ops.free = in_free;
  w->ops.upload = in_upload, w->ops.upload_async = in_upload_async;
  w->ops.download = in_download;
  w->ops.fill = in_fill, w->ops.axpy = in_axpy;
  w->ops.conv2d_forward = in_conv2d_forward, w->ops.conv2d_backward = in_conv2d_backward;
  w->ops.batchnorm_stats = in_batchnorm_stats, w->ops.batchnorm_apply = in_batchnorm_apply;
  w->ops.batchnorm_grad_terms = in_batchnorm_grad_terms;
  w->ops.batchnorm_backward_apply = in_batchnorm_backward_apply;
  w->ops.prelu_forward = in_prelu_forward, w->ops.prelu_backward = in_prelu_backward;
  w->ops.linear_forward = in_linear_forward, w->ops.linear_backward = in_linear_backward;
  w->ops.add_forward = in_add_forward;
  w->ops.dropout_forward = in_dropout_forward, w->ops.dropout_backward = in_dropout_backward;
  w->ops.l2norm_forward = in_l2norm_forward, w->ops.l2norm_backward = in_l2norm_backward;
  w->ops.head_loss = in_head_loss, w->ops.sgd_step = in_sgd_step;
  w->be.ops = &w->ops;
  w->be.ctx = inner->ctx; /* backend-specific calls (lfs_cuda_set_tf32, ...) reach the inner one */
  w->be.device = device;
  return &w->be;
}

static int profiling(void) {
  const char *e = getenv("LFS_PROFILE");
  return e && *e && strcmp(e, "0") != 0;
}

static instrumented staged, profiled;

/* LFS_STAGED_MEMORY_MIB: cpu-staged's "device memory", unlimited when unset. */
static size_t staged_limit(void) {
  const char *e = getenv("LFS_STAGED_MEMORY_MIB");
  char *end = NULL;
  const unsigned long long mib = e && *e ? strtoull(e, &end, 10) : 0;
  if (e && *e && (*end || mib == 0 || mib > (SIZE_MAX >> 20)))
    lfs_user_error("LFS_STAGED_MEMORY_MIB=%s: expected a positive number of MiB", e);
  return (size_t)mib << 20;
}

lfs_backend *lfs_backend_cpu_staged(void) {
  if (!staged.inner) {
    instrument(&staged, lfs_backend_cpu(), "cpu-staged", 0,
               INSTRUMENT_CHECK | (profiling() ? INSTRUMENT_PROFILE : 0));
    staged.limit_bytes = staged_limit();
  }
  return &staged.be;
}

lfs_backend *lfs_backend_profiled(lfs_backend *be) {
  if (!be || !profiling() || be == &staged.be) return be; /* cpu-staged times itself */
  if (!profiled.inner) instrument(&profiled, be, be->ops->name, be->device, INSTRUMENT_PROFILE);
  if (profiled.inner != be) {
    lfs_warn("LFS_PROFILE: already profiling backend %s; %s is not profiled", profiled.ops.name,
             be->ops->name);
    return be;
  }
  return &profiled.be;
}

/* The profiled backend in use, if any. */
static instrumented *profiled_one(void) {
  if (staged.inner && (staged.flags & INSTRUMENT_PROFILE)) return &staged;
  return profiled.inner ? &profiled : NULL;
}

void lfs_backend_profile_reset(void) {
  instrumented *w = profiled_one();
  if (!w) return;
  memset(w->seconds, 0, sizeof w->seconds);
  memset(w->calls, 0, sizeof w->calls);
  memset(w->bytes, 0, sizeof w->bytes);
  memset(w->flops, 0, sizeof w->flops);
  w->nconvs = 0;
}

/* A report line without the blanks an empty last column leaves. */
static void emit(char *line, void (*out)(const char *line, void *user), void *user) {
  size_t n = strlen(line);
  while (n > 0 && line[n - 1] == ' ') line[--n] = '\0';
  out(line, user);
}

/* "  12.3" when there is work to divide, else blanks of the same width. */
static const char *rate(char *buf, size_t len, double work, double seconds, double unit) {
  if (work > 0.0 && seconds > 0.0)
    snprintf(buf, len, "%8.1f", work / seconds / unit);
  else
    snprintf(buf, len, "%8s", "");
  return buf;
}

static double conv_seconds(const conv_time *c) { return c->seconds[0] + c->seconds[1]; }

static int slower_first(const void *a, const void *b) {
  const double x = conv_seconds(a), y = conv_seconds(b);
  return (x < y) - (x > y);
}

/* The convolutions' time by geometry, slowest first (at most `rows`), with the
 * TFLOP/s each pass reaches: where convolutions stand against the device's peak. */
static void report_convs(const instrumented *w, long steps, int rows,
                         void (*out)(const char *line, void *user), void *user) {
  if (!w->nconvs) return;
  conv_time *sorted = lfs_malloc(sizeof *sorted * (size_t)w->nconvs);
  memcpy(sorted, w->convs, sizeof *sorted * (size_t)w->nconvs);
  qsort(sorted, (size_t)w->nconvs, sizeof *sorted, slower_first);
  char line[200], geometry[96], f[16], b[16];
  snprintf(line, sizeof line, "  %-38s %10s %8s %10s %8s", "convolution (input -> output)",
           "fwd ms", "TFLOP/s", "bwd ms", "TFLOP/s");
  emit(line, out, user);
  for (int i = 0; i < w->nconvs && i < rows; i++) {
    const conv_time *c = &sorted[i];
    snprintf(geometry, sizeof geometry, "%dx%dx%dx%d -> %d, %dx%d/%d%s", c->d.n, c->d.in_c,
             c->d.in_h, c->d.in_w, c->d.out_c, c->d.kh, c->d.kw, c->d.stride,
             c->d.groups > 1 ? " grouped" : "");
    snprintf(line, sizeof line, "  %-38s %10.3f %s %10.3f %s", geometry,
             c->seconds[0] * 1e3 / steps, rate(f, sizeof f, c->flops[0], c->seconds[0], 1e12),
             c->seconds[1] * 1e3 / steps, rate(b, sizeof b, c->flops[1], c->seconds[1], 1e12));
    emit(line, out, user);
  }
  if (w->nconvs > rows) {
    snprintf(line, sizeof line, "  (%d more geometr%s)", w->nconvs - rows,
             w->nconvs - rows == 1 ? "y" : "ies");
    emit(line, out, user);
  }
  free(sorted);
}

int lfs_backend_profile_report(long steps, void (*out)(const char *line, void *user), void *user) {
  const instrumented *w = profiled_one();
  if (!w || steps <= 0) return 0;
  double total = 0.0;
  for (int op = 0; op < OP_COUNT; op++) total += w->seconds[op];
  char line[200], gbs[16], tfs[16];
  snprintf(line, sizeof line, "  %-22s %9s %11s %7s %8s %8s", "op (LFS_PROFILE)", "calls/step",
           "ms/step", "share", "GB/s", "TFLOP/s");
  emit(line, out, user);
  for (int op = 0; op < OP_COUNT; op++) {
    if (!w->calls[op]) continue;
    snprintf(line, sizeof line, "  %-22s %10.1f %11.3f %6.1f%% %s %s", op_names[op],
             (double)w->calls[op] / steps, w->seconds[op] * 1e3 / steps,
             total > 0.0 ? 100.0 * w->seconds[op] / total : 0.0,
             rate(gbs, sizeof gbs, w->bytes[op], w->seconds[op], 1e9),
             rate(tfs, sizeof tfs, w->flops[op], w->seconds[op], 1e12));
    emit(line, out, user);
  }
  snprintf(line, sizeof line, "  %-22s %10s %11.3f", "all ops", "", total * 1e3 / steps);
  emit(line, out, user);
  out("  (GB/s: the bytes each op must read and write once, over its time)", user);
  report_convs(w, steps, 12, out, user);
  return 1;
}
