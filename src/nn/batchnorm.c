/* batchnorm.c: batch normalisation, 2-D (NCHW) or 1-D ([N, F] = {N, F, 1, 1}).
 * Parameters "<name>.weight" (gamma; frozen when fixed_gamma, as insightface's
 * feature BN), "<name>.bias", buffers "<name>.running_mean" and ".running_var".
 * Saved between passes (backend memory): the mean and 1/sqrt(var + eps) used in
 * forward, and room for backward's two per-channel terms.
 *
 * Synchronised BN (lfs_pass.sync_bn): the per-channel sums of forward and of
 * backward are summed over the group before use, so every rank normalises with
 * the statistics of the whole global batch. Parameter gradients stay local
 * contributions: the gradient all-reduce adds them up like every other one. */
#include "lfs/log.h"
#include "nn/layer_internal.h"

static lfs_bn_desc bn_desc(const lfs_layer *l) {
  return (lfs_bn_desc){.n = l->in[0].n, .c = l->in[0].c, .spatial = l->in[0].h * l->in[0].w};
}

enum { SAVED_MEAN = 0, SAVED_INVSTD = 1, SAVED_MEAN_DY = 2, SAVED_MEAN_DY_XHAT = 3 };

static float *saved(const lfs_layer *l, int which) { return l->saved + (size_t)which * l->in[0].c; }

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

static size_t bn_saved(const lfs_layer *l) { return 4 * (size_t)l->in[0].c; }

/* How this pass forms statistics: the group's sums under synchronised BN. */
static lfs_bn_stats_cfg stats_cfg(const lfs_layer *l, const lfs_pass *ps) {
  return (lfs_bn_stats_cfg){.training = ps->training, .eps = l->cfg.bn.eps,
                            .momentum = l->cfg.bn.momentum,
                            .group_sum = ps->training ? ps->sync_bn : NULL,
                            .group_ctx = ps->sync_ctx};
}

static void bn_forward(lfs_layer *l, const lfs_pass *ps, float *y, const float *const *x) {
  const lfs_bn_desc d = bn_desc(l);
  const lfs_params *p = ps->params;
  const lfs_bn_stats_cfg cfg = stats_cfg(l, ps);
  lfs_backend *be = ps->be;
  const double count = be->ops->batchnorm_stats(
      be, &d, &cfg, saved(l, SAVED_MEAN), saved(l, SAVED_INVSTD),
      lfs_layer_param(l, p, LFS_P_RUNNING_MEAN), lfs_layer_param(l, p, LFS_P_RUNNING_VAR), x[0]);
  if (ps->training) l->cfg.bn.batch_count = count;
  be->ops->batchnorm_apply(be, &d, y, x[0], saved(l, SAVED_MEAN), saved(l, SAVED_INVSTD),
                           lfs_layer_param(l, p, LFS_P_WEIGHT), lfs_layer_param(l, p, LFS_P_BIAS));
}

/* Accumulates the parameter gradients (local sums: the gradient all-reduce adds
 * them up) and writes the per-channel terms of dx into the saved slots. */
static void bn_backward(lfs_layer *l, const lfs_pass *ps, float *const *dx, const float *dy,
                        const float *const *x, const float *y) {
  (void)y;
  const lfs_bn_desc d = bn_desc(l);
  const lfs_bn_stats_cfg cfg = stats_cfg(l, ps);
  lfs_backend *be = ps->be;
  be->ops->batchnorm_grad_terms(be, &d, &cfg, l->cfg.bn.batch_count,
                                lfs_layer_grad(l, ps->params, LFS_P_WEIGHT),
                                lfs_layer_grad(l, ps->params, LFS_P_BIAS),
                                saved(l, SAVED_MEAN_DY), saved(l, SAVED_MEAN_DY_XHAT), dy, x[0],
                                saved(l, SAVED_MEAN), saved(l, SAVED_INVSTD));
  if (!dx[0]) return;
  be->ops->batchnorm_backward_apply(be, &d, dx[0], l->dx_write[0], dy, x[0],
                                    lfs_layer_param(l, ps->params, LFS_P_WEIGHT),
                                    saved(l, SAVED_MEAN), saved(l, SAVED_INVSTD),
                                    saved(l, SAVED_MEAN_DY), saved(l, SAVED_MEAN_DY_XHAT));
}

static double bn_macs(const lfs_layer *l) { return 2.0 * (double)lfs_shape_count(l->in[0]); }

static void bn_describe(const lfs_layer *l, char *buf, size_t len) {
  snprintf(buf, len, "batchnorm%s %d eps %g%s", l->in[0].h * l->in[0].w > 1 ? "2d" : "1d",
           l->in[0].c, l->cfg.bn.eps, l->cfg.bn.fixed_gamma ? " fixed-gamma" : "");
}

const lfs_layer_kind lfs_kind_batchnorm = {"batchnorm", 1, bn_infer, bn_declare, bn_saved,
                                           bn_forward, bn_backward, bn_macs, bn_describe,
                                           .can_set_dx = 1};

lfs_layer lfs_batchnorm(const char *name, float eps, float momentum, int fixed_gamma) {
  lfs_layer l = lfs_layer_new(&lfs_kind_batchnorm, name);
  l.cfg.bn = (lfs_bn_cfg){eps, momentum, fixed_gamma, 0.0};
  return l;
}
