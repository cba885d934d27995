/* params.h: every parameter tensor of a model in one flat buffer, with named views.
 *
 * Layout: trainable tensors first, then frozen ones (e.g. a BN with fixed gamma),
 * then buffers (BN running statistics). So `grad[0 .. trainable_count)` is all that
 * an all-reduce, a clipping pass or an optimizer touches, and `data[0 .. count)` is
 * all that a broadcast or a checkpoint touches. Names follow insightface's PyTorch
 * state-dict keys ("layer1.0.conv1.weight", "features.running_mean"). */
#ifndef LFS_PARAMS_H
#define LFS_PARAMS_H

#include <stddef.h>

typedef enum {
  LFS_PARAM_TRAINABLE = 0,
  LFS_PARAM_FROZEN = 1, /* a parameter that does not learn (fixed BN gamma) */
  LFS_PARAM_BUFFER = 2, /* running statistics: state, not a parameter */
} lfs_param_kind;

typedef struct {
  char name[96];
  lfs_param_kind kind;
  int ndim;
  int dims[4];
  size_t offset; /* in floats, into data/grad */
  size_t count;
} lfs_param_view;

typedef struct lfs_backend lfs_backend;

typedef struct {
  lfs_param_view *views;
  int nviews, cap;
  size_t count;           /* floats in data (and grad) */
  size_t trainable_count; /* floats of trainable tensors, at the front */
  float *data;            /* [count] on the backend's device */
  float *grad;            /* [count]; only the trainable front is ever non-zero */
  lfs_backend *be;
  int finalized;
} lfs_params;

void lfs_params_init(lfs_params *p);
/* Declares a tensor before finalize; returns a handle valid after finalize. */
int lfs_params_declare(lfs_params *p, const char *name, lfs_param_kind kind, int ndim,
                       const int *dims);
/* Assigns offsets by kind (trainable, frozen, buffers; declaration order within each),
 * and allocates zeroed data and grad on the backend. Handles are declaration indices. */
void lfs_params_finalize(lfs_params *p, lfs_backend *be);
void lfs_params_free(lfs_params *p);

const lfs_param_view *lfs_params_view(const lfs_params *p, int handle);
float *lfs_params_data(const lfs_params *p, int handle);
float *lfs_params_grad(const lfs_params *p, int handle);
/* Handle of the view with this name, or -1. */
int lfs_params_find(const lfs_params *p, const char *name);
/* Zeroes the gradient buffer. */
void lfs_params_zero_grad(lfs_params *p);
/* Number of trainable scalars. */
size_t lfs_params_trainable(const lfs_params *p);

#endif
