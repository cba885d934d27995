/* pointwise.c: the parameter-light layers: PReLU (one slope per channel,
 * "<name>.weight"), residual add, dropout (Philox mask keyed by run seed,
 * step and the layer's id), flatten (a view: the graph aliases its buffers)
 * and row-wise L2 normalisation (saved: the row norms). */
#include <string.h>

#include "nn/layer_internal.h"

static int same_shape(lfs_layer *l, const lfs_shape *in, lfs_shape *out, char *err, size_t len) {
  (void)err;
  (void)len;
  (void)l;
  *out = in[0];
  return 0;
}

static size_t no_saved(const lfs_layer *l) {
  (void)l;
  return 0;
}

static void no_params(lfs_layer *l, lfs_params *p) {
  (void)l;
  (void)p;
}

static double elementwise_macs(const lfs_layer *l) { return (double)lfs_shape_count(l->out); }

/* ---- PReLU ---- */
static void prelu_declare(lfs_layer *l, lfs_params *p) {
  l->param[LFS_P_WEIGHT] = lfs_layer_declare(l, p, "weight", LFS_PARAM_TRAINABLE, 1, &l->in[0].c);
}

static void prelu_forward(lfs_layer *l, const lfs_pass *ps, float *y, const float *const *x) {
  const lfs_shape s = l->in[0];
  ps->be->ops->prelu_forward(ps->be, s.n, s.c, s.h * s.w, y, x[0],
                             lfs_layer_param(l, ps->params, LFS_P_WEIGHT));
}

static void prelu_backward(lfs_layer *l, const lfs_pass *ps, float *const *dx, const float *dy,
                           const float *const *x, const float *y) {
  (void)y;
  const lfs_shape s = l->in[0];
  ps->be->ops->prelu_backward(ps->be, s.n, s.c, s.h * s.w, dx[0], l->dx_write[0],
                              lfs_layer_grad(l, ps->params, LFS_P_WEIGHT), dy, x[0],
                              lfs_layer_param(l, ps->params, LFS_P_WEIGHT));
}

static void prelu_describe(const lfs_layer *l, char *buf, size_t len) {
  snprintf(buf, len, "prelu %d", l->in[0].c);
}

const lfs_layer_kind lfs_kind_prelu = {"prelu", 1, same_shape, prelu_declare, no_saved,
                                       prelu_forward, prelu_backward, elementwise_macs,
                                       prelu_describe, .can_set_dx = 1};

lfs_layer lfs_prelu(const char *name) { return lfs_layer_new(&lfs_kind_prelu, name); }

/* ---- residual add ---- */
static int add_infer(lfs_layer *l, const lfs_shape *in, lfs_shape *out, char *err, size_t len) {
  (void)l;
  if (!lfs_shape_equal(in[0], in[1])) {
    char a[48], b[48];
    lfs_shape_format(in[0], a, sizeof a);
    lfs_shape_format(in[1], b, sizeof b);
    snprintf(err, len, "add: input shapes differ (%s and %s)", a, b);
    return -1;
  }
  *out = in[0];
  return 0;
}

static void add_forward(lfs_layer *l, const lfs_pass *ps, float *y, const float *const *x) {
  ps->be->ops->add_forward(ps->be, y, x[0], x[1], lfs_shape_count(l->out));
}

static void add_backward(lfs_layer *l, const lfs_pass *ps, float *const *dx, const float *dy,
                         const float *const *x, const float *y) {
  (void)x;
  (void)y;
  for (int i = 0; i < 2; i++) /* a shared input's gradient is dy already */
    if (dx[i] && !l->dx_shared[i])
      ps->be->ops->axpy(ps->be, dx[i], 1.0f, dy, lfs_shape_count(l->out));
}

static void add_describe(const lfs_layer *l, char *buf, size_t len) {
  (void)l;
  snprintf(buf, len, "add");
}

const lfs_layer_kind lfs_kind_add = {"add", 2, add_infer, no_params, no_saved,
                                     add_forward, add_backward, elementwise_macs, add_describe,
                                     .can_set_dx = 0, .passes_dy = 1};

lfs_layer lfs_add(void) { return lfs_layer_new(&lfs_kind_add, ""); }

/* ---- dropout ---- */
static int dropout_active(const lfs_layer *l, const lfs_pass *ps) {
  return ps->training && l->cfg.dropout.p > 0.0f;
}

static lfs_rng dropout_rng(const lfs_layer *l, const lfs_pass *ps) {
  return lfs_rng_make(ps->seed, LFS_RNG_DROPOUT, (uint32_t)ps->step, l->cfg.dropout.id);
}

static void dropout_forward(lfs_layer *l, const lfs_pass *ps, float *y, const float *const *x) {
  const size_t n = lfs_shape_count(l->out);
  if (!dropout_active(l, ps)) {
    ps->be->ops->fill(ps->be, y, 0.0f, n);
    ps->be->ops->axpy(ps->be, y, 1.0f, x[0], n);
    return;
  }
  const lfs_rng rng = dropout_rng(l, ps);
  ps->be->ops->dropout_forward(ps->be, y, x[0], n, l->cfg.dropout.p, &rng);
}

static void dropout_backward(lfs_layer *l, const lfs_pass *ps, float *const *dx, const float *dy,
                             const float *const *x, const float *y) {
  (void)x;
  (void)y;
  if (!dx[0]) return;
  const size_t n = lfs_shape_count(l->out);
  if (!dropout_active(l, ps)) {
    ps->be->ops->axpy(ps->be, dx[0], 1.0f, dy, n);
    return;
  }
  const lfs_rng rng = dropout_rng(l, ps);
  ps->be->ops->dropout_backward(ps->be, dx[0], dy, n, l->cfg.dropout.p, &rng);
}

static void dropout_describe(const lfs_layer *l, char *buf, size_t len) {
  snprintf(buf, len, "dropout p=%g", l->cfg.dropout.p);
}

const lfs_layer_kind lfs_kind_dropout = {"dropout", 1, same_shape, no_params, no_saved,
                                         dropout_forward, dropout_backward, elementwise_macs,
                                         dropout_describe, .can_set_dx = 0};

lfs_layer lfs_dropout(float p, uint32_t id) {
  lfs_layer l = lfs_layer_new(&lfs_kind_dropout, "");
  l.cfg.dropout = (lfs_dropout_cfg){p, id};
  return l;
}

/* ---- flatten: shape only; the graph makes its buffers aliases of its input's ---- */
static int flatten_infer(lfs_layer *l, const lfs_shape *in, lfs_shape *out, char *err, size_t len) {
  (void)l;
  (void)err;
  (void)len;
  *out = (lfs_shape){in->n, (int)lfs_shape_sample(*in), 1, 1};
  return 0;
}

static void flatten_forward(lfs_layer *l, const lfs_pass *ps, float *y, const float *const *x) {
  (void)l, (void)ps, (void)y, (void)x;
}

static void flatten_backward(lfs_layer *l, const lfs_pass *ps, float *const *dx, const float *dy,
                             const float *const *x, const float *y) {
  (void)l, (void)ps, (void)dx, (void)dy, (void)x, (void)y;
}

static double no_macs(const lfs_layer *l) {
  (void)l;
  return 0.0;
}

static void flatten_describe(const lfs_layer *l, char *buf, size_t len) {
  (void)l;
  snprintf(buf, len, "flatten");
}

const lfs_layer_kind lfs_kind_flatten = {"flatten", 1, flatten_infer, no_params, no_saved,
                                         flatten_forward, flatten_backward, no_macs,
                                         flatten_describe, .can_set_dx = 0};

lfs_layer lfs_flatten(void) { return lfs_layer_new(&lfs_kind_flatten, ""); }

/* ---- row-wise L2 normalisation of [N, F] (a 4-D input is read as [N, C*H*W]) ---- */
static size_t l2norm_saved(const lfs_layer *l) { return (size_t)l->in[0].n; }

static void l2norm_forward(lfs_layer *l, const lfs_pass *ps, float *y, const float *const *x) {
  ps->be->ops->l2norm_forward(ps->be, l->in[0].n, (int)lfs_shape_sample(l->in[0]),
                              l->cfg.l2norm.eps, y, l->saved, x[0]);
}

static void l2norm_backward(lfs_layer *l, const lfs_pass *ps, float *const *dx, const float *dy,
                            const float *const *x, const float *y) {
  (void)x;
  if (!dx[0]) return;
  ps->be->ops->l2norm_backward(ps->be, l->in[0].n, (int)lfs_shape_sample(l->in[0]),
                               l->cfg.l2norm.eps, dx[0], dy, y, l->saved);
}

static void l2norm_describe(const lfs_layer *l, char *buf, size_t len) {
  snprintf(buf, len, "l2norm eps %g", l->cfg.l2norm.eps);
}

const lfs_layer_kind lfs_kind_l2norm = {"l2norm", 1, same_shape, no_params, l2norm_saved,
                                        l2norm_forward, l2norm_backward, elementwise_macs,
                                        l2norm_describe, .can_set_dx = 0};

lfs_layer lfs_l2norm(float eps) {
  lfs_layer l = lfs_layer_new(&lfs_kind_l2norm, "");
  l.cfg.l2norm = (lfs_l2norm_cfg){eps};
  return l;
}
