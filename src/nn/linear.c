/* linear.c: fully connected layer y [N, out] = x [N, in] W^T + b. A 4-D input
 * is read as [N, C*H*W] (PyTorch's flatten order). Weight (out, in) named
 * "<name>.weight", bias "<name>.bias". */
#include "nn/layer_internal.h"

static int linear_infer(lfs_layer *l, const lfs_shape *in, lfs_shape *out, char *err, size_t len) {
  (void)err;
  (void)len;
  *out = (lfs_shape){in->n, l->cfg.linear.out, 1, 1};
  return 0;
}

static void linear_declare(lfs_layer *l, lfs_params *p) {
  int dims[2] = {l->cfg.linear.out, (int)lfs_shape_sample(l->in[0])};
  l->param[LFS_P_WEIGHT] = lfs_layer_declare(l, p, "weight", LFS_PARAM_TRAINABLE, 2, dims);
  if (l->cfg.linear.bias)
    l->param[LFS_P_BIAS] = lfs_layer_declare(l, p, "bias", LFS_PARAM_TRAINABLE, 1, dims);
}

static size_t linear_saved(const lfs_layer *l) {
  (void)l;
  return 0;
}

static void linear_forward(lfs_layer *l, const lfs_pass *ps, float *y, const float *const *x) {
  ps->be->ops->linear_forward(ps->be, l->in[0].n, (int)lfs_shape_sample(l->in[0]), l->cfg.linear.out,
                              y, x[0], lfs_layer_param(l, ps->params, LFS_P_WEIGHT),
                              lfs_layer_param(l, ps->params, LFS_P_BIAS));
}

static void linear_backward(lfs_layer *l, const lfs_pass *ps, float *const *dx, const float *dy,
                            const float *const *x, const float *y) {
  (void)y;
  ps->be->ops->linear_backward(ps->be, l->in[0].n, (int)lfs_shape_sample(l->in[0]),
                               l->cfg.linear.out, dx[0], lfs_layer_grad(l, ps->params, LFS_P_WEIGHT),
                               lfs_layer_grad(l, ps->params, LFS_P_BIAS), dy, x[0],
                               lfs_layer_param(l, ps->params, LFS_P_WEIGHT));
}

static double linear_macs(const lfs_layer *l) {
  return (double)l->in[0].n * (double)lfs_shape_sample(l->in[0]) * l->cfg.linear.out;
}

static void linear_describe(const lfs_layer *l, char *buf, size_t len) {
  snprintf(buf, len, "linear %zu->%d%s", lfs_shape_sample(l->in[0]), l->cfg.linear.out,
           l->cfg.linear.bias ? " +bias" : "");
}

const lfs_layer_kind lfs_kind_linear = {"linear", 1, linear_infer, linear_declare, linear_saved,
                                        linear_forward, linear_backward, linear_macs, linear_describe,
                                        .can_set_dx = 0};

lfs_layer lfs_linear(const char *name, int out, int bias) {
  lfs_layer l = lfs_layer_new(&lfs_kind_linear, name);
  l.cfg.linear = (lfs_linear_cfg){out, bias};
  return l;
}
