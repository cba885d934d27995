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
#include <math.h>
#include <stdlib.h>

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

/* Sums buf [count] over the group when BN is synchronised. */
static void group_sum(const lfs_pass *ps, double *buf, int count) {
  if (ps->sync_bn) ps->sync_bn(buf, count, ps->sync_ctx);
}

/* Batch statistics into the saved mean/invstd, and the running averages. */
static void batch_statistics(lfs_layer *l, const lfs_pass *ps, const lfs_bn_desc *d, const float *x) {
  lfs_backend *be = ps->be;
  const int c = d->c;
  double *sums = lfs_malloc(sizeof(double) * (2 * (size_t)c + 1));
  float *host = lfs_alloc_floats(4 * (size_t)c);
  float *mean = host, *invstd = host + c, *run_mean = host + 2 * c, *run_var = host + 3 * c;
  be->ops->batchnorm_sums(be, d, sums, x);
  sums[c] = (double)d->n * d->spatial;
  group_sum(ps, sums, c + 1);
  const double count = sums[c];
  for (int ch = 0; ch < c; ch++) mean[ch] = (float)(sums[ch] / count);
  be->ops->upload(be, saved(l, SAVED_MEAN), mean, (size_t)c);
  be->ops->batchnorm_sqdev(be, d, sums, x, saved(l, SAVED_MEAN));
  group_sum(ps, sums, c);
  be->ops->download(be, run_mean, lfs_layer_param(l, ps->params, LFS_P_RUNNING_MEAN), (size_t)c);
  be->ops->download(be, run_var, lfs_layer_param(l, ps->params, LFS_P_RUNNING_VAR), (size_t)c);
  const double m = l->cfg.bn.momentum;
  for (int ch = 0; ch < c; ch++) {
    const double var = sums[ch] / count, unbiased = count > 1 ? var * count / (count - 1) : var;
    invstd[ch] = (float)(1.0 / sqrt(var + l->cfg.bn.eps));
    run_mean[ch] = (float)((1.0 - m) * run_mean[ch] + m * mean[ch]);
    run_var[ch] = (float)((1.0 - m) * run_var[ch] + m * unbiased);
  }
  be->ops->upload(be, saved(l, SAVED_INVSTD), invstd, (size_t)c);
  be->ops->upload(be, lfs_layer_param(l, ps->params, LFS_P_RUNNING_MEAN), run_mean, (size_t)c);
  be->ops->upload(be, lfs_layer_param(l, ps->params, LFS_P_RUNNING_VAR), run_var, (size_t)c);
  l->cfg.bn.batch_count = count;
  free(sums);
  free(host);
}

/* Eval mode: the running statistics become the saved mean/invstd. */
static void running_statistics(lfs_layer *l, const lfs_pass *ps, int c) {
  lfs_backend *be = ps->be;
  float *host = lfs_alloc_floats(2 * (size_t)c);
  be->ops->download(be, host, lfs_layer_param(l, ps->params, LFS_P_RUNNING_VAR), (size_t)c);
  for (int ch = 0; ch < c; ch++) host[ch] = (float)(1.0 / sqrt((double)host[ch] + l->cfg.bn.eps));
  be->ops->upload(be, saved(l, SAVED_INVSTD), host, (size_t)c);
  be->ops->download(be, host, lfs_layer_param(l, ps->params, LFS_P_RUNNING_MEAN), (size_t)c);
  be->ops->upload(be, saved(l, SAVED_MEAN), host, (size_t)c);
  free(host);
}

static void bn_forward(lfs_layer *l, const lfs_pass *ps, float *y, const float *const *x) {
  const lfs_bn_desc d = bn_desc(l);
  const lfs_params *p = ps->params;
  if (ps->training)
    batch_statistics(l, ps, &d, x[0]);
  else
    running_statistics(l, ps, d.c);
  ps->be->ops->batchnorm_apply(ps->be, &d, y, x[0], saved(l, SAVED_MEAN), saved(l, SAVED_INVSTD),
                               lfs_layer_param(l, p, LFS_P_WEIGHT), lfs_layer_param(l, p, LFS_P_BIAS));
}

/* Accumulates the parameter gradients (local sums) and writes the per-channel
 * terms of dx (group-wide means in training mode, zero in eval mode). */
static void gradient_terms(lfs_layer *l, const lfs_pass *ps, const lfs_bn_desc *d, const float *dy,
                           const float *x) {
  lfs_backend *be = ps->be;
  const int c = d->c;
  double *sums = lfs_malloc(sizeof(double) * 2 * (size_t)c);
  float *host = lfs_alloc_floats(2 * (size_t)c);
  be->ops->batchnorm_grad_sums(be, d, sums, sums + c, dy, x, saved(l, SAVED_MEAN),
                               saved(l, SAVED_INVSTD));
  /* the local sums are the parameter gradients; they pass through the saved
   * slots because backend ops read backend memory only */
  for (int ch = 0; ch < 2 * c; ch++) host[ch] = (float)sums[ch];
  be->ops->upload(be, saved(l, SAVED_MEAN_DY), host, 2 * (size_t)c);
  float *dbeta = lfs_layer_grad(l, ps->params, LFS_P_BIAS);
  float *dgamma = lfs_layer_grad(l, ps->params, LFS_P_WEIGHT);
  if (dbeta) be->ops->axpy(be, dbeta, 1.0f, saved(l, SAVED_MEAN_DY), (size_t)c);
  if (dgamma) be->ops->axpy(be, dgamma, 1.0f, saved(l, SAVED_MEAN_DY_XHAT), (size_t)c);
  if (ps->training) {
    group_sum(ps, sums, 2 * c);
    const double count = l->cfg.bn.batch_count;
    for (int ch = 0; ch < 2 * c; ch++) host[ch] = (float)(sums[ch] / count);
  } else {
    for (int ch = 0; ch < 2 * c; ch++) host[ch] = 0.0f;
  }
  be->ops->upload(be, saved(l, SAVED_MEAN_DY), host, 2 * (size_t)c);
  free(sums);
  free(host);
}

static void bn_backward(lfs_layer *l, const lfs_pass *ps, float *const *dx, const float *dy,
                        const float *const *x, const float *y) {
  (void)y;
  const lfs_bn_desc d = bn_desc(l);
  gradient_terms(l, ps, &d, dy, x[0]);
  if (!dx[0]) return;
  ps->be->ops->batchnorm_backward_apply(ps->be, &d, dx[0], dy, x[0],
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
                                           bn_forward, bn_backward, bn_macs, bn_describe};

lfs_layer lfs_batchnorm(const char *name, float eps, float momentum, int fixed_gamma) {
  lfs_layer l = lfs_layer_new(&lfs_kind_batchnorm, name);
  l.cfg.bn = (lfs_bn_cfg){eps, momentum, fixed_gamma, 0.0};
  return l;
}
