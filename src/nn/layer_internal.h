/* layer_internal.h: helpers shared by the layer implementations in src/nn. */
#ifndef LFS_LAYER_INTERNAL_H
#define LFS_LAYER_INTERNAL_H

#include <stdio.h>

#include "lfs/layer.h"

enum { LFS_P_WEIGHT = 0, LFS_P_BIAS = 1, LFS_P_RUNNING_MEAN = 2, LFS_P_RUNNING_VAR = 3 };

/* A fresh layer of a kind with every parameter handle unset. */
lfs_layer lfs_layer_new(const lfs_layer_kind *kind, const char *name);
/* Declares "<layer name>.<suffix>" (or just suffix for an unnamed layer). */
int lfs_layer_declare(lfs_layer *l, lfs_params *p, const char *suffix, lfs_param_kind kind,
                      int ndim, const int *dims);
/* Data pointer of parameter slot `slot`, or NULL when unused. */
float *lfs_layer_param(const lfs_layer *l, const lfs_params *p, int slot);
float *lfs_layer_grad(const lfs_layer *l, const lfs_params *p, int slot);
/* Writes "NCHW" of a shape into buf. */
void lfs_shape_format(lfs_shape s, char *buf, size_t len);

extern const lfs_layer_kind lfs_kind_conv2d, lfs_kind_batchnorm, lfs_kind_prelu, lfs_kind_linear,
    lfs_kind_add, lfs_kind_dropout, lfs_kind_flatten, lfs_kind_l2norm;

#endif
