/* optim.h: SGD with momentum and weight decay over the flat parameter buffer. */
#ifndef LFS_OPTIM_H
#define LFS_OPTIM_H

#include "lfs/params.h"

typedef struct {
  float lr, momentum, weight_decay;
  float *velocity; /* [params->trainable_count], host */
} lfs_sgd;

void lfs_sgd_init(lfs_sgd *opt, const lfs_params *p, float lr, float momentum, float weight_decay);
void lfs_sgd_free(lfs_sgd *opt);
/* PyTorch's SGD: v = m*v + (g + wd*w); w -= lr*v, over the trainable front. */
void lfs_sgd_step(lfs_sgd *opt, lfs_params *p);

#endif
