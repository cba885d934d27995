/* layer.h: one interface for every layer kind (forward, backward, parameter
 * shapes, describe) and the constructors of the CPU layer library.
 *
 * A layer is configured, then `infer` fixes its input/output shapes for a batch,
 * `declare` names its tensors in a lfs_params, and forward/backward run on a
 * backend. Backward accumulates into dx and into the parameter gradients, except
 * that a kind with can_set_dx writes dx[i] outright where the graph says it is
 * dx[i]'s only writer (lfs_layer.dx_write), so the graph need not zero it. */
#ifndef LFS_LAYER_H
#define LFS_LAYER_H

#include <stddef.h>
#include <stdint.h>

#include "lfs/backend.h"
#include "lfs/params.h"
#include "lfs/shape.h"

typedef struct lfs_layer lfs_layer;

/* Sums buf [count] over the ranks of a data-parallel group, in place. */
typedef void (*lfs_group_sum_fn)(double *buf, int count, void *ctx);

/* What a forward/backward pass needs besides tensors. */
typedef struct {
  lfs_backend *be;
  lfs_params *params;
  int training;      /* 1: batch statistics, dropout active; 0: eval mode */
  uint64_t seed;     /* run seed (dropout masks) */
  uint64_t step;     /* global step (dropout masks) */
  /* Synchronised batch norm: when set, training-mode BN statistics and their
   * gradient terms are summed over the group (NULL: each rank's own batch). */
  lfs_group_sum_fn sync_bn;
  void *sync_ctx;
} lfs_pass;

typedef struct {
  const char *kind;
  int inputs; /* 1, or 2 for add */
  /* Output shape from input shapes; -1 with a message if they do not fit. */
  int (*infer)(lfs_layer *l, const lfs_shape *in, lfs_shape *out, char *err, size_t errlen);
  void (*declare)(lfs_layer *l, lfs_params *p);
  /* Floats of per-batch state kept between forward and backward (BN statistics...). */
  size_t (*saved)(const lfs_layer *l);
  /* y [out] from x[i] [in[i]] */
  void (*forward)(lfs_layer *l, const lfs_pass *ps, float *y, const float *const *x);
  /* dx[i] += d loss / d x[i] (dx[i] may be NULL); parameter gradients accumulate too. */
  void (*backward)(lfs_layer *l, const lfs_pass *ps, float *const *dx, const float *dy,
                   const float *const *x, const float *y);
  /* Forward multiply-adds for one batch. */
  double (*macs)(const lfs_layer *l);
  void (*describe)(const lfs_layer *l, char *buf, size_t len);
  int can_set_dx; /* backward honours dx_write (LFS_GRAD_SET) */
  /* d out / d in[k] is the identity (a residual add): the graph may give an
   * input whose only reader this is the layer's own dy as its gradient
   * (lfs_layer.dx_shared), and backward then leaves that input alone */
  int passes_dy;
} lfs_layer_kind;

typedef struct { int out_c, k, stride, pad, groups, bias; } lfs_conv_cfg;
typedef struct {
  float eps, momentum; /* momentum as PyTorch: run = (1-m)*run + m*batch (unbiased var) */
  int fixed_gamma;
  double batch_count; /* elements per channel in the last training forward (group-wide) */
} lfs_bn_cfg;
typedef struct { int out, bias; } lfs_linear_cfg;
typedef struct { float p; uint32_t id; } lfs_dropout_cfg;
typedef struct { float eps; } lfs_l2norm_cfg;

struct lfs_layer {
  const lfs_layer_kind *kind;
  char name[64]; /* parameter-name prefix, e.g. "layer1.0.conv1" */
  lfs_shape in[2];
  lfs_shape out;
  union {
    lfs_conv_cfg conv;
    lfs_bn_cfg bn;
    lfs_linear_cfg linear;
    lfs_dropout_cfg dropout;
    lfs_l2norm_cfg l2norm;
  } cfg;
  lfs_conv_desc conv; /* conv geometry once the input shape is known */
  int param[4];       /* handles: weight, bias, running_mean, running_var (-1 unused) */
  float *saved;       /* [kind->saved(l)] on the backend */
  lfs_grad_write dx_write[2]; /* per input, set by the graph (LFS_GRAD_ADD by default) */
  int dx_shared[2];           /* per input: its gradient is this layer's dy (passes_dy) */
};

/* Layer constructors. `name` is the parameter prefix ("" for parameter-free layers). */
lfs_layer lfs_conv2d(const char *name, int out_c, int k, int stride, int pad, int groups, int bias);
lfs_layer lfs_batchnorm(const char *name, float eps, float momentum, int fixed_gamma); /* 2-D or 1-D by input */
lfs_layer lfs_prelu(const char *name);
lfs_layer lfs_linear(const char *name, int out, int bias);
lfs_layer lfs_add(void);
lfs_layer lfs_dropout(float p, uint32_t id);
lfs_layer lfs_flatten(void);
lfs_layer lfs_l2norm(float eps);

int lfs_layer_is_flatten(const lfs_layer *l);

/* Default initialisation of the layer's parameters (host values uploaded to the
 * backend): conv/linear weights N(0, 2/fan_in), biases 0, BN gamma 1, beta 0,
 * running mean 0, var 1, PReLU 0.25. Keyed by (seed, layer index). */
void lfs_layer_init_params(const lfs_layer *l, lfs_params *p, uint64_t seed, uint32_t index);

#endif
