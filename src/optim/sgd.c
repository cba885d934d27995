/* sgd.c: SGD with momentum (PyTorch's formulation, dampening 0) and L2 weight
 * decay, on the trainable front of a host parameter buffer. */
#include "lfs/optim.h"

#include <stdlib.h>
#include <string.h>

#include "lfs/log.h"

void lfs_sgd_init(lfs_sgd *opt, const lfs_params *p, float lr, float momentum, float weight_decay) {
  opt->lr = lr;
  opt->momentum = momentum;
  opt->weight_decay = weight_decay;
  opt->velocity = lfs_alloc_floats(p->trainable_count);
  memset(opt->velocity, 0, p->trainable_count * sizeof(float));
}

void lfs_sgd_free(lfs_sgd *opt) {
  free(opt->velocity);
  opt->velocity = NULL;
}

void lfs_sgd_step(lfs_sgd *opt, lfs_params *p) {
  float *w = p->data, *v = opt->velocity;
  const float *g = p->grad;
  const size_t n = p->trainable_count;
#pragma omp parallel for schedule(static) if (n > 65536)
  for (size_t i = 0; i < n; i++) {
    v[i] = opt->momentum * v[i] + g[i] + opt->weight_decay * w[i];
    w[i] -= opt->lr * v[i];
  }
}
