/* batchnorm.c: batch normalisation, 2-D (NCHW) or 1-D ([N, F] = {N, F, 1, 1}).
 * Parameters "<name>.weight" (gamma; frozen when fixed_gamma, as insightface's
 * feature BN), "<name>.bias", buffers "<name>.running_mean" and ".running_var".
 * Saved between passes: the mean and 1/sqrt(var + eps) used in forward. */
#include "nn/layer_internal.h"

static lfs_bn_desc bn_desc(const lfs_layer *l) {
  return (lfs_bn_desc){.n = l->in[0].n, .c = l->in[0].c, .spatial = l->in[0].h * l->in[0].w,
                       .eps = l->cfg.bn.eps, .momentum = l->cfg.bn.momentum};
}

static int bn_infer(lfs_layer *l, const lfs_shape *in, lfs_shape *out, char *err, size_t len) {
  (void)err;
  (void)len;
  (void)l;
  *out = *in;
  return 0;
}

static void bn_declare(lfs_layer *l, lfs_params *p) {
  const int c = l->in[0].c;
  l->param[LFS_P_WEIGHT] = lfs_layer_declare(
      l, p, "weight", l->cfg.bn.fixed_gamma ? LFS_PARAM_FROZEN : LFS_PARAM_TRAINABLE, 1, &c);
  l->param[LFS_P_BIAS] = lfs_layer_declare(l, p, "bias", LFS_PARAM_TRAINABLE, 1, &c);
  l->param[LFS_P_RUNNING_MEAN] = lfs_layer_declare(l, p, "running_mean", LFS_PARAM_BUFFER, 1, &c);
  l->param[LFS_P_RUNNING_VAR] = lfs_layer_declare(l, p, "running_var", LFS_PARAM_BUFFER, 1, &c);
}

static size_t bn_saved(const lfs_layer *l) { return 2 * (size_t)l->in[0].c; }

static void bn_forward(lfs_layer *l, const lfs_pass *ps, float *y, const float *const *x) {
  const lfs_bn_desc d = bn_desc(l);
  const lfs_params *p = ps->params;
  ps->be->ops->batchnorm_forward(ps->be, &d, ps->training, y, l->saved, l->saved + d.c,
                                 lfs_layer_param(l, p, LFS_P_RUNNING_MEAN),
                                 lfs_layer_param(l, p, LFS_P_RUNNING_VAR), x[0],
                                 lfs_layer_param(l, p, LFS_P_WEIGHT), lfs_layer_param(l, p, LFS_P_BIAS));
}

static void bn_backward(lfs_layer *l, const lfs_pass *ps, float *const *dx, const float *dy,
                        const float *const *x, const float *y) {
  (void)y;
  const lfs_bn_desc d = bn_desc(l);
  const lfs_params *p = ps->params;
  ps->be->ops->batchnorm_backward(ps->be, &d, ps->training, dx[0], lfs_layer_grad(l, p, LFS_P_WEIGHT),
                                  lfs_layer_grad(l, p, LFS_P_BIAS), dy, x[0],
                                  lfs_layer_param(l, p, LFS_P_WEIGHT), l->saved, l->saved + d.c);
}

static double bn_macs(const lfs_layer *l) { return 2.0 * (double)lfs_shape_count(l->in[0]); }

static void bn_describe(const lfs_layer *l, char *buf, size_t len) {
  snprintf(buf, len, "batchnorm%s %d eps %g%s", l->in[0].h * l->in[0].w > 1 ? "2d" : "1d",
           l->in[0].c, l->cfg.bn.eps, l->cfg.bn.fixed_gamma ? " fixed-gamma" : "");
}

const lfs_layer_kind lfs_kind_batchnorm = {"batchnorm", 1, bn_infer, bn_declare, bn_saved,
                                           bn_forward, bn_backward, bn_macs, bn_describe};

lfs_layer lfs_batchnorm(const char *name, float eps, float momentum, int fixed_gamma) {
  lfs_layer l = lfs_layer_new(&lfs_kind_batchnorm, name);
  l.cfg.bn = (lfs_bn_cfg){eps, momentum, fixed_gamma};
  return l;
}
