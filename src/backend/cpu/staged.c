/* staged.c: the "cpu-staged" backend: the CPU kernels behind a device ordinal,
 * so that callers treat its memory as a GPU's (host mirrors, explicit uploads
 * and downloads) and the staging path of a GPU run is exercised, and compared
 * bit for bit with the CPU, on any machine. Like a GPU it accepts only its own
 * memory: every op checks that each buffer it is handed lies inside a live
 * allocation of this backend, and stops naming the op and the argument when
 * not. A host array passed where device memory belongs is thereby caught on a
 * CPU instead of as an illegal address on a GPU. Layout: as lfs/backend.h. */
#include <stdint.h>
#include <stdlib.h>

#include "lfs/backend.h"
#include "lfs/log.h"

typedef struct {
  const float *p;
  size_t count;
} allocation;

static allocation *live;
static int nlive, cap_live;
static const lfs_backend_ops *cpu_ops;

static void check(const char *op, const char *arg, const float *p, size_t count) {
  if (!p || !count) return;
  const uintptr_t a = (uintptr_t)p;
  for (int i = 0; i < nlive; i++) {
    const uintptr_t lo = (uintptr_t)live[i].p, hi = lo + live[i].count * sizeof(float);
    if (a >= lo && a < hi) {
      if (a + count * sizeof(float) > hi)
        lfs_fatal("cpu-staged: %s: %s runs %zu floats past the end of its allocation", op, arg,
                  (size_t)((a + count * sizeof(float) - hi) / sizeof(float)));
      return;
    }
  }
  lfs_fatal("cpu-staged: %s: %s (%p, %zu floats) is not backend memory (a host array where a "
            "device buffer belongs?)", op, arg, (const void *)p, count);
}
#define CHECK(p, n) check(__func__ + 7, #p, p, n) /* __func__ less "staged_" */

static float *staged_alloc(lfs_backend *be, size_t count) {
  float *p = cpu_ops->alloc(be, count);
  live = lfs_grow(live, nlive + 1, &cap_live, sizeof *live);
  live[nlive++] = (allocation){p, count ? count : 1};
  return p;
}

static void staged_free(lfs_backend *be, float *p) {
  if (!p) return;
  for (int i = 0; i < nlive; i++)
    if (live[i].p == p) {
      live[i] = live[--nlive];
      cpu_ops->free(be, p);
      return;
    }
  lfs_fatal("cpu-staged: free of %p, which this backend did not allocate", (void *)p);
}

static void staged_upload(lfs_backend *be, float *dst, const float *src, size_t count) {
  CHECK(dst, count);
  cpu_ops->upload(be, dst, src, count);
}

static void staged_download(lfs_backend *be, float *dst, const float *src, size_t count) {
  CHECK(src, count);
  cpu_ops->download(be, dst, src, count);
}

static void staged_fill(lfs_backend *be, float *x, float value, size_t count) {
  CHECK(x, count);
  cpu_ops->fill(be, x, value, count);
}

static void staged_axpy(lfs_backend *be, float *y, float alpha, const float *x, size_t count) {
  CHECK(y, count), CHECK(x, count);
  cpu_ops->axpy(be, y, alpha, x, count);
}

static size_t conv_in(const lfs_conv_desc *d) { return (size_t)d->n * d->in_c * d->in_h * d->in_w; }
static size_t conv_out(const lfs_conv_desc *d) { return (size_t)d->n * d->out_c * d->out_h * d->out_w; }
static size_t conv_w(const lfs_conv_desc *d) {
  return (size_t)d->out_c * (d->in_c / d->groups) * d->kh * d->kw;
}

static void staged_conv2d_forward(lfs_backend *be, const lfs_conv_desc *d, float *y, const float *x,
                                  const float *w, const float *b) {
  CHECK(y, conv_out(d)), CHECK(x, conv_in(d)), CHECK(w, conv_w(d));
  if (d->has_bias) CHECK(b, (size_t)d->out_c);
  cpu_ops->conv2d_forward(be, d, y, x, w, b);
}

static void staged_conv2d_backward(lfs_backend *be, const lfs_conv_desc *d, float *dx, float *dw,
                                   float *db, const float *dy, const float *x, const float *w) {
  CHECK(dx, conv_in(d)), CHECK(dw, conv_w(d)), CHECK(dy, conv_out(d)), CHECK(x, conv_in(d));
  CHECK(w, conv_w(d));
  if (d->has_bias) CHECK(db, (size_t)d->out_c);
  cpu_ops->conv2d_backward(be, d, dx, dw, db, dy, x, w);
}

static size_t bn_count(const lfs_bn_desc *d) { return (size_t)d->n * d->c * d->spatial; }

/* The double sums are host arrays by the interface: only the float buffers are checked. */
static void staged_batchnorm_sums(lfs_backend *be, const lfs_bn_desc *d, double *sum, const float *x) {
  CHECK(x, bn_count(d));
  cpu_ops->batchnorm_sums(be, d, sum, x);
}

static void staged_batchnorm_sqdev(lfs_backend *be, const lfs_bn_desc *d, double *sqdev,
                                   const float *x, const float *mean) {
  CHECK(x, bn_count(d)), CHECK(mean, (size_t)d->c);
  cpu_ops->batchnorm_sqdev(be, d, sqdev, x, mean);
}

static void staged_batchnorm_apply(lfs_backend *be, const lfs_bn_desc *d, float *y, const float *x,
                                   const float *mean, const float *invstd, const float *gamma,
                                   const float *beta) {
  const size_t c = (size_t)d->c;
  CHECK(y, bn_count(d)), CHECK(x, bn_count(d)), CHECK(mean, c), CHECK(invstd, c);
  CHECK(gamma, c), CHECK(beta, c);
  cpu_ops->batchnorm_apply(be, d, y, x, mean, invstd, gamma, beta);
}

static void staged_batchnorm_grad_sums(lfs_backend *be, const lfs_bn_desc *d, double *sum_dy,
                                       double *sum_dy_xhat, const float *dy, const float *x,
                                       const float *mean, const float *invstd) {
  CHECK(dy, bn_count(d)), CHECK(x, bn_count(d)), CHECK(mean, (size_t)d->c);
  CHECK(invstd, (size_t)d->c);
  cpu_ops->batchnorm_grad_sums(be, d, sum_dy, sum_dy_xhat, dy, x, mean, invstd);
}

static void staged_batchnorm_backward_apply(lfs_backend *be, const lfs_bn_desc *d, float *dx,
                                            const float *dy, const float *x, const float *gamma,
                                            const float *mean, const float *invstd,
                                            const float *mean_dy, const float *mean_dy_xhat) {
  const size_t c = (size_t)d->c;
  CHECK(dx, bn_count(d)), CHECK(dy, bn_count(d)), CHECK(x, bn_count(d)), CHECK(gamma, c);
  CHECK(mean, c), CHECK(invstd, c), CHECK(mean_dy, c), CHECK(mean_dy_xhat, c);
  cpu_ops->batchnorm_backward_apply(be, d, dx, dy, x, gamma, mean, invstd, mean_dy, mean_dy_xhat);
}

static void staged_prelu_forward(lfs_backend *be, int n, int c, int spatial, float *y,
                                 const float *x, const float *alpha) {
  const size_t count = (size_t)n * c * spatial;
  CHECK(y, count), CHECK(x, count), CHECK(alpha, (size_t)c);
  cpu_ops->prelu_forward(be, n, c, spatial, y, x, alpha);
}

static void staged_prelu_backward(lfs_backend *be, int n, int c, int spatial, float *dx,
                                  float *dalpha, const float *dy, const float *x,
                                  const float *alpha) {
  const size_t count = (size_t)n * c * spatial;
  CHECK(dx, count), CHECK(dalpha, (size_t)c), CHECK(dy, count), CHECK(x, count);
  CHECK(alpha, (size_t)c);
  cpu_ops->prelu_backward(be, n, c, spatial, dx, dalpha, dy, x, alpha);
}

static void staged_linear_forward(lfs_backend *be, int n, int in, int out, float *y, const float *x,
                                  const float *w, const float *b) {
  CHECK(y, (size_t)n * out), CHECK(x, (size_t)n * in), CHECK(w, (size_t)out * in);
  CHECK(b, (size_t)out);
  cpu_ops->linear_forward(be, n, in, out, y, x, w, b);
}

static void staged_linear_backward(lfs_backend *be, int n, int in, int out, float *dx, float *dw,
                                   float *db, const float *dy, const float *x, const float *w) {
  CHECK(dx, (size_t)n * in), CHECK(dw, (size_t)out * in), CHECK(db, (size_t)out);
  CHECK(dy, (size_t)n * out), CHECK(x, (size_t)n * in), CHECK(w, (size_t)out * in);
  cpu_ops->linear_backward(be, n, in, out, dx, dw, db, dy, x, w);
}

static void staged_add_forward(lfs_backend *be, float *y, const float *a, const float *b,
                               size_t count) {
  CHECK(y, count), CHECK(a, count), CHECK(b, count);
  cpu_ops->add_forward(be, y, a, b, count);
}

static void staged_dropout_forward(lfs_backend *be, float *y, const float *x, size_t count, float p,
                                   const lfs_rng *rng) {
  CHECK(y, count), CHECK(x, count);
  cpu_ops->dropout_forward(be, y, x, count, p, rng);
}

static void staged_dropout_backward(lfs_backend *be, float *dx, const float *dy, size_t count,
                                    float p, const lfs_rng *rng) {
  CHECK(dx, count), CHECK(dy, count);
  cpu_ops->dropout_backward(be, dx, dy, count, p, rng);
}

static void staged_l2norm_forward(lfs_backend *be, int rows, int cols, float eps, float *y,
                                  float *norms, const float *x) {
  const size_t count = (size_t)rows * cols;
  CHECK(y, count), CHECK(norms, (size_t)rows), CHECK(x, count);
  cpu_ops->l2norm_forward(be, rows, cols, eps, y, norms, x);
}

static void staged_l2norm_backward(lfs_backend *be, int rows, int cols, float eps, float *dx,
                                   const float *dy, const float *y, const float *norms) {
  const size_t count = (size_t)rows * cols;
  CHECK(dx, count), CHECK(dy, count), CHECK(y, count), CHECK(norms, (size_t)rows);
  cpu_ops->l2norm_backward(be, rows, cols, eps, dx, dy, y, norms);
}

static double staged_head_loss(lfs_backend *be, const lfs_head_cfg *cfg, int B, int D, int K,
                               float *dx, float *dw, lfs_head_stats *stats, const float *x,
                               const float *w, const int32_t *labels) {
  CHECK(dx, (size_t)B * D), CHECK(dw, (size_t)K * D), CHECK(x, (size_t)B * D);
  CHECK(w, (size_t)K * D);
  return cpu_ops->head_loss(be, cfg, B, D, K, dx, dw, stats, x, w, labels);
}

static void staged_sgd_step(lfs_backend *be, float *w, float *v, const float *g, size_t n, float lr,
                            float momentum, float weight_decay) {
  CHECK(w, n), CHECK(v, n), CHECK(g, n);
  cpu_ops->sgd_step(be, w, v, g, n, lr, momentum, weight_decay);
}

static lfs_backend_ops staged_ops;
static lfs_backend cpu_staged = {.ops = NULL, .ctx = NULL, .device = 0};

lfs_backend *lfs_backend_cpu_staged(void) {
  if (cpu_staged.ops) return &cpu_staged;
  cpu_ops = lfs_backend_cpu()->ops;
  staged_ops = *cpu_ops; /* host_alloc and host_free stay the CPU's */
  staged_ops.name = "cpu-staged";
  staged_ops.alloc = staged_alloc, staged_ops.free = staged_free;
  staged_ops.upload = staged_upload, staged_ops.download = staged_download;
  staged_ops.fill = staged_fill, staged_ops.axpy = staged_axpy;
  staged_ops.conv2d_forward = staged_conv2d_forward;
  staged_ops.conv2d_backward = staged_conv2d_backward;
  staged_ops.batchnorm_sums = staged_batchnorm_sums;
  staged_ops.batchnorm_sqdev = staged_batchnorm_sqdev;
  staged_ops.batchnorm_apply = staged_batchnorm_apply;
  staged_ops.batchnorm_grad_sums = staged_batchnorm_grad_sums;
  staged_ops.batchnorm_backward_apply = staged_batchnorm_backward_apply;
  staged_ops.prelu_forward = staged_prelu_forward, staged_ops.prelu_backward = staged_prelu_backward;
  staged_ops.linear_forward = staged_linear_forward;
  staged_ops.linear_backward = staged_linear_backward;
  staged_ops.add_forward = staged_add_forward;
  staged_ops.dropout_forward = staged_dropout_forward;
  staged_ops.dropout_backward = staged_dropout_backward;
  staged_ops.l2norm_forward = staged_l2norm_forward;
  staged_ops.l2norm_backward = staged_l2norm_backward;
  staged_ops.head_loss = staged_head_loss, staged_ops.sgd_step = staged_sgd_step;
  cpu_staged.ops = &staged_ops;
  return &cpu_staged;
}
