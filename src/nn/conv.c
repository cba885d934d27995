/* conv.c: the conv2d layer (square kernel, stride, padding, groups incl.
 * depthwise, optional bias). Weights (out, in/groups, k, k) named
 * "<name>.weight", bias "<name>.bias". Compute is the backend's. */
#include "nn/layer_internal.h"

static int conv_infer(lfs_layer *l, const lfs_shape *in, lfs_shape *out, char *err, size_t len) {
  const lfs_conv_cfg *c = &l->cfg.conv;
  lfs_conv_desc d = {.n = in->n, .in_c = in->c, .in_h = in->h, .in_w = in->w, .out_c = c->out_c,
                     .kh = c->k, .kw = c->k, .stride = c->stride, .pad = c->pad,
                     .groups = c->groups, .has_bias = c->bias};
  if (lfs_conv_desc_init(&d) != 0) {
    snprintf(err, len, "conv %s: %dx%d kernel, stride %d, pad %d, groups %d does not fit input %dx%dx%dx%d",
             l->name, c->k, c->k, c->stride, c->pad, c->groups, in->n, in->c, in->h, in->w);
    return -1;
  }
  l->conv = d;
  *out = (lfs_shape){in->n, c->out_c, d.out_h, d.out_w};
  return 0;
}

static void conv_declare(lfs_layer *l, lfs_params *p) {
  const lfs_conv_cfg *c = &l->cfg.conv;
  int wdims[4] = {c->out_c, l->in[0].c / c->groups, c->k, c->k};
  l->param[LFS_P_WEIGHT] = lfs_layer_declare(l, p, "weight", LFS_PARAM_TRAINABLE, 4, wdims);
  if (c->bias) l->param[LFS_P_BIAS] = lfs_layer_declare(l, p, "bias", LFS_PARAM_TRAINABLE, 1, &c->out_c);
}

static size_t conv_saved(const lfs_layer *l) {
  (void)l;
  return 0;
}

static void conv_forward(lfs_layer *l, const lfs_pass *ps, float *y, const float *const *x) {
  ps->be->ops->conv2d_forward(ps->be, &l->conv, y, x[0], lfs_layer_param(l, ps->params, LFS_P_WEIGHT),
                              lfs_layer_param(l, ps->params, LFS_P_BIAS));
}

static void conv_backward(lfs_layer *l, const lfs_pass *ps, float *const *dx, const float *dy,
                          const float *const *x, const float *y) {
  (void)y;
  ps->be->ops->conv2d_backward(ps->be, &l->conv, dx[0], l->dx_write[0],
                               lfs_layer_grad(l, ps->params, LFS_P_WEIGHT),
                               lfs_layer_grad(l, ps->params, LFS_P_BIAS), dy, x[0],
                               lfs_layer_param(l, ps->params, LFS_P_WEIGHT));
}

static double conv_macs(const lfs_layer *l) {
  const lfs_conv_desc *d = &l->conv;
  return (double)d->n * d->out_c * d->out_h * d->out_w * (d->in_c / d->groups) * d->kh * d->kw;
}

static void conv_describe(const lfs_layer *l, char *buf, size_t len) {
  const lfs_conv_cfg *c = &l->cfg.conv;
  snprintf(buf, len, "conv %dx%d %d->%d stride %d pad %d%s%s", c->k, c->k, l->in[0].c, c->out_c,
           c->stride, c->pad, c->groups > 1 ? (c->groups == l->in[0].c ? " depthwise" : " grouped") : "",
           c->bias ? " +bias" : "");
}

const lfs_layer_kind lfs_kind_conv2d = {"conv2d", 1, conv_infer, conv_declare, conv_saved,
                                        conv_forward, conv_backward, conv_macs, conv_describe,
                                        .can_set_dx = 1};

lfs_layer lfs_conv2d(const char *name, int out_c, int k, int stride, int pad, int groups, int bias) {
  lfs_layer l = lfs_layer_new(&lfs_kind_conv2d, name);
  l.cfg.conv = (lfs_conv_cfg){out_c, k, stride, pad, groups, bias};
  return l;
}
