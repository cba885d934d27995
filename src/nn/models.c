/* models.c: the model registry (arch name -> builder and sizes), configuration
 * checks, and the peers' initialisation of a built model graph. Input NCHW
 * [N, 3, S, S]; output the embedding [N, D]. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lfs/log.h"
#include "lfs/models.h"
#include "nn/layer_internal.h"

enum { family_iresnet = 1, family_mbf = 0 };
enum { default_embedding = 512, default_input = 112, max_embedding = 1 << 16, max_input = 4096 };

typedef struct {
  const char *name;
  int family;
  int widths[4]; /* iresnet stage widths */
  int depths[4]; /* iresnet blocks per stage; mbf residual blocks per stage */
  int scale;     /* mbf width multiplier */
  int any_input; /* 1: any S divisible by 16; 0: 112 only */
} arch_spec;

static const arch_spec archs[] = {
    {"tiny", family_iresnet, {16, 32, 64, 128}, {1, 1, 1, 1}, 0, 1},
    {"r18", family_iresnet, {64, 128, 256, 512}, {2, 2, 2, 2}, 0, 0},
    {"r34", family_iresnet, {64, 128, 256, 512}, {3, 4, 6, 3}, 0, 0},
    {"r50", family_iresnet, {64, 128, 256, 512}, {3, 4, 14, 3}, 0, 0},
    {"r100", family_iresnet, {64, 128, 256, 512}, {3, 13, 30, 3}, 0, 0},
    {"r200", family_iresnet, {64, 128, 256, 512}, {6, 26, 60, 6}, 0, 0},
    {"mbf", family_mbf, {0}, {1, 4, 6, 2}, 2, 0},
    {"mbf_large", family_mbf, {0}, {2, 8, 12, 4}, 4, 0},
};
enum { arch_count = sizeof archs / sizeof archs[0] };

static const arch_spec *find_arch(const char *name) {
  for (int i = 0; name && i < arch_count; i++)
    if (!strcmp(archs[i].name, name)) return &archs[i];
  return NULL;
}

int lfs_model_is_iresnet(const char *arch) {
  const arch_spec *a = find_arch(arch);
  return a ? a->family == family_iresnet : -1;
}

static int input_side(const lfs_model_cfg *cfg) { return cfg->input ? cfg->input : default_input; }

lfs_shape lfs_model_input_shape(const lfs_model_cfg *cfg, int batch) {
  const int s = input_side(cfg);
  return (lfs_shape){batch, 3, s, s};
}

/* Checks everything but the arch; 0 or -1 with a message. */
static int check_cfg(const arch_spec *a, const lfs_model_cfg *cfg, char *err, size_t errlen) {
  const int s = input_side(cfg);
  if (cfg->embedding < 0 || cfg->embedding > max_embedding) {
    snprintf(err, errlen, "model %s: embedding size %d is not in [1, %d]", a->name, cfg->embedding,
             max_embedding);
    return -1;
  }
  if (!(cfg->dropout >= 0.0f && cfg->dropout < 1.0f)) {
    snprintf(err, errlen, "model %s: dropout %g is not in [0, 1)", a->name, cfg->dropout);
    return -1;
  }
  if (a->any_input && (s < 16 || s > max_input || s % 16 != 0)) {
    snprintf(err, errlen, "model %s: input size %d is not a multiple of 16 in [16, %d]", a->name, s,
             max_input);
    return -1;
  }
  if (!a->any_input && s != default_input) {
    snprintf(err, errlen, "model %s: input size %d is not supported (it is built for %dx%d input)",
             a->name, s, default_input, default_input);
    return -1;
  }
  /* an all-zero block list means the arch's own; a given one needs every entry */
  const int given = cfg->mbf_blocks[0] || cfg->mbf_blocks[1] || cfg->mbf_blocks[2] || cfg->mbf_blocks[3];
  for (int i = 0; i < 4 && a->family == family_mbf && given; i++)
    if (cfg->mbf_blocks[i] < 1 || cfg->mbf_blocks[i] > 64) {
      snprintf(err, errlen, "model %s: stage %d block count %d is not in [1, 64]", a->name, i + 1,
               cfg->mbf_blocks[i]);
      return -1;
    }
  if (a->family == family_mbf && (cfg->mbf_scale < 0 || cfg->mbf_scale > 16)) {
    snprintf(err, errlen, "model %s: scale %d is not in [1, 16]", a->name, cfg->mbf_scale);
    return -1;
  }
  return 0;
}

int lfs_model_build(lfs_graph *g, const lfs_model_cfg *cfg, char *err, size_t errlen) {
  LFS_ASSERT(g->count == 0 && !g->built);
  const arch_spec *a = find_arch(cfg->arch);
  if (!a) {
    snprintf(err, errlen, "unknown model architecture \"%s\" (choices: %s)",
             cfg->arch ? cfg->arch : "", LFS_MODEL_ARCHS);
    return -1;
  }
  if (check_cfg(a, cfg, err, errlen) != 0) return -1;
  const int d = cfg->embedding ? cfg->embedding : default_embedding;
  if (a->family == family_iresnet) return lfs_iresnet(g, a->widths, a->depths, d, cfg->dropout);
  int blocks[4];
  const int given = cfg->mbf_blocks[0] || cfg->mbf_blocks[1] || cfg->mbf_blocks[2] || cfg->mbf_blocks[3];
  for (int i = 0; i < 4; i++) blocks[i] = given ? cfg->mbf_blocks[i] : a->depths[i];
  return lfs_mobilefacenet(g, blocks, cfg->mbf_scale ? cfg->mbf_scale : a->scale, d);
}

/* ---- initialisation ---- */

typedef enum { draw_normal, draw_uniform } draw_kind;

/* normal: N(0, scale^2); uniform: U(-scale, scale). Keyed by the tensor's handle. */
static void fill_random(lfs_params *p, int handle, draw_kind kind, double scale, uint64_t seed) {
  const lfs_param_view *v = lfs_params_view(p, handle);
  const lfs_rng rng = lfs_rng_make(seed, LFS_RNG_INIT, (uint32_t)handle, 1);
  float *host = lfs_alloc_floats(v->count);
  for (size_t i = 0; i < v->count; i++)
    host[i] = kind == draw_normal ? (float)(scale * lfs_rng_normal(&rng, i))
                                  : (float)(scale * (2.0 * lfs_rng_uniform(&rng, i) - 1.0));
  p->be->ops->upload(p->be, lfs_params_data(p, handle), host, v->count);
  free(host);
}

static void fill_constant(lfs_params *p, int handle, float value) {
  if (handle < 0) return;
  p->be->ops->fill(p->be, lfs_params_data(p, handle), value, lfs_params_view(p, handle)->count);
}

/* Receptive field times output channels: PyTorch's fan_out of a conv/linear weight. */
static size_t fan_out(const lfs_param_view *v) {
  size_t n = (size_t)v->dims[0];
  for (int i = 2; i < v->ndim; i++) n *= (size_t)v->dims[i];
  return n;
}

static size_t fan_in(const lfs_param_view *v) { return v->count / (size_t)v->dims[0]; }

/* insightface's IResNet: nn.init.normal_(conv.weight, 0, 0.1); nn.Linear keeps
 * PyTorch's default, kaiming_uniform(a = sqrt 5) = U(+-1/sqrt(fan_in)), and its
 * bias U(+-1/sqrt(fan_in)). */
static void init_iresnet_weights(const lfs_layer *l, lfs_params *p, uint64_t seed) {
  const int w = l->param[LFS_P_WEIGHT], b = l->param[LFS_P_BIAS];
  if (l->kind == &lfs_kind_conv2d) {
    fill_random(p, w, draw_normal, 0.1, seed);
    fill_constant(p, b, 0.0f);
  } else {
    const double bound = 1.0 / sqrt((double)fan_in(lfs_params_view(p, w)));
    fill_random(p, w, draw_uniform, bound, seed);
    if (b >= 0) fill_random(p, b, draw_uniform, bound, seed);
  }
}

/* arcface_torch's MobileFaceNet: kaiming_normal(fan_out, relu) = N(0, 2/fan_out) for
 * conv and linear weights, biases 0. */
static void init_mbf_weights(const lfs_layer *l, lfs_params *p, uint64_t seed) {
  const int w = l->param[LFS_P_WEIGHT];
  fill_random(p, w, draw_normal, sqrt(2.0 / (double)fan_out(lfs_params_view(p, w))), seed);
  fill_constant(p, l->param[LFS_P_BIAS], 0.0f);
}

void lfs_model_init_params(lfs_graph *g, const lfs_model_cfg *cfg, uint64_t seed) {
  LFS_ASSERT(g->built);
  const int iresnet = lfs_model_is_iresnet(cfg->arch);
  LFS_ASSERT(iresnet >= 0);
  for (int i = 0; i < g->count; i++) {
    const lfs_layer *l = &g->nodes[i].layer;
    if (l->kind == &lfs_kind_conv2d || l->kind == &lfs_kind_linear) {
      if (iresnet)
        init_iresnet_weights(l, &g->params, seed);
      else
        init_mbf_weights(l, &g->params, seed);
    } else if (l->kind == &lfs_kind_batchnorm) {
      fill_constant(&g->params, l->param[LFS_P_WEIGHT], 1.0f);
      fill_constant(&g->params, l->param[LFS_P_BIAS], 0.0f);
      fill_constant(&g->params, l->param[LFS_P_RUNNING_MEAN], 0.0f);
      fill_constant(&g->params, l->param[LFS_P_RUNNING_VAR], 1.0f);
    } else if (l->kind == &lfs_kind_prelu) {
      fill_constant(&g->params, l->param[LFS_P_WEIGHT], 0.25f);
    }
  }
}
