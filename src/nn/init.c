/* init.c: default parameter initialisation, keyed by (seed, layer index) so that
 * every rank and every run with the same seed starts from the same weights.
 * Conv/linear weights: N(0, 2/fan_in) (He); biases 0; BN gamma 1, beta 0,
 * running mean 0, running var 1; PReLU slopes 0.25 (PyTorch's default). */
#include <math.h>
#include <stdlib.h>

#include "lfs/log.h"
#include "nn/layer_internal.h"

static void upload_values(lfs_params *p, int handle, const float *host) {
  const lfs_param_view *v = lfs_params_view(p, handle);
  p->be->ops->upload(p->be, lfs_params_data(p, handle), host, v->count);
}

static void set_constant(lfs_params *p, int handle, float value) {
  if (handle < 0) return;
  p->be->ops->fill(p->be, lfs_params_data(p, handle), value, lfs_params_view(p, handle)->count);
}

static void set_he_normal(lfs_params *p, int handle, uint64_t seed, uint32_t index) {
  const lfs_param_view *v = lfs_params_view(p, handle);
  const size_t fan_in = v->count / (size_t)v->dims[0];
  const double std = sqrt(2.0 / (double)fan_in);
  const lfs_rng rng = lfs_rng_make(seed, LFS_RNG_INIT, index, 0);
  float *host = lfs_alloc_floats(v->count);
  for (size_t i = 0; i < v->count; i++) host[i] = (float)(std * lfs_rng_normal(&rng, i));
  upload_values(p, handle, host);
  free(host);
}

void lfs_layer_init_params(const lfs_layer *l, lfs_params *p, uint64_t seed, uint32_t index) {
  if (l->kind == &lfs_kind_conv2d || l->kind == &lfs_kind_linear) {
    set_he_normal(p, l->param[LFS_P_WEIGHT], seed, index);
    set_constant(p, l->param[LFS_P_BIAS], 0.0f);
  } else if (l->kind == &lfs_kind_batchnorm) {
    set_constant(p, l->param[LFS_P_WEIGHT], 1.0f);
    set_constant(p, l->param[LFS_P_BIAS], 0.0f);
    set_constant(p, l->param[LFS_P_RUNNING_MEAN], 0.0f);
    set_constant(p, l->param[LFS_P_RUNNING_VAR], 1.0f);
  } else if (l->kind == &lfs_kind_prelu) {
    set_constant(p, l->param[LFS_P_WEIGHT], 0.25f);
  }
}
