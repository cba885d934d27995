/* sgd.c: SGD with momentum (PyTorch's formulation, dampening 0, no Nesterov) and L2
 * weight decay, on the trainable front of a host parameter buffer, with one flat
 * momentum array at the same offsets (see optim.h). Which floats are decayed is a
 * list of runs over that front, built from the parameter views. */
#include "lfs/optim.h"

#include <stdlib.h>
#include <string.h>

#include "lfs/backend.h"
#include "lfs/log.h"

void lfs_sgd_init(lfs_sgd *opt, const lfs_params *p, float lr, float momentum, float weight_decay) {
  LFS_ASSERT(p->finalized);
  memset(opt, 0, sizeof *opt);
  opt->lr = lr;
  opt->momentum = momentum;
  opt->weight_decay = weight_decay;
  opt->count = p->trainable_count;
  opt->velocity = lfs_alloc_floats(opt->count);
  memset(opt->velocity, 0, opt->count * sizeof(float));
  lfs_sgd_set_decay(opt, p, lfs_decay_all, NULL);
}

void lfs_sgd_free(lfs_sgd *opt) {
  free(opt->velocity);
  free(opt->runs);
  memset(opt, 0, sizeof *opt);
}

/* Element-wise, so the result does not depend on how OpenMP splits the loop. */
void lfs_sgd_step_raw(float *w, float *v, const float *g, size_t n, float lr, float momentum,
                      float weight_decay) {
#pragma omp parallel for schedule(static) if (n > 65536)
  for (size_t i = 0; i < n; i++) {
    const float d = g[i] + weight_decay * w[i];
    v[i] = momentum * v[i] + d;
    w[i] -= lr * v[i];
  }
}

void lfs_sgd_step(lfs_sgd *opt, lfs_params *p) {
  LFS_ASSERT(p->trainable_count == opt->count);
  for (int r = 0; r < opt->nruns; r++) {
    const lfs_sgd_run *run = &opt->runs[r];
    lfs_sgd_step_raw(p->data + run->offset, opt->velocity + run->offset, p->grad + run->offset,
                     run->count, opt->lr, opt->momentum, run->decay ? opt->weight_decay : 0.0f);
  }
}

void lfs_sgd_step_on(lfs_sgd *opt, lfs_backend *be, float *data, float *velocity, const float *grad) {
  for (int r = 0; r < opt->nruns; r++) {
    const lfs_sgd_run *run = &opt->runs[r];
    be->ops->sgd_step(be, data + run->offset, velocity + run->offset, grad + run->offset, run->count,
                      opt->lr, opt->momentum, run->decay ? opt->weight_decay : 0.0f);
  }
}

int lfs_decay_all(const lfs_param_view *view, void *ctx) {
  (void)view, (void)ctx;
  return 1;
}

int lfs_decay_weights_only(const lfs_param_view *view, void *ctx) {
  (void)ctx;
  return view->ndim >= 2;
}

/* Appends [offset, offset+count) with this verdict, merging with the previous run. */
static void add_run(lfs_sgd *opt, int *cap, size_t offset, size_t count, int decay) {
  if (opt->nruns > 0) {
    lfs_sgd_run *last = &opt->runs[opt->nruns - 1];
    if (last->decay == decay && last->offset + last->count == offset) {
      last->count += count;
      return;
    }
  }
  opt->runs = lfs_grow(opt->runs, opt->nruns, cap, sizeof *opt->runs);
  opt->runs[opt->nruns++] = (lfs_sgd_run){offset, count, decay};
}

size_t lfs_sgd_set_decay(lfs_sgd *opt, const lfs_params *p, lfs_decay_pred pred, void *ctx) {
  LFS_ASSERT(p->finalized && p->trainable_count == opt->count);
  free(opt->runs);
  opt->runs = NULL;
  opt->nruns = 0;
  int cap = 0;
  size_t next = 0, decayed = 0;
  /* Trainable views take offsets in declaration order (params.c), so walking the views
   * in order visits the front from 0 upwards without gaps; the assert guards that. */
  for (int i = 0; i < p->nviews; i++) {
    const lfs_param_view *v = &p->views[i];
    if (v->kind != LFS_PARAM_TRAINABLE) continue;
    LFS_ASSERT(v->offset == next);
    const int decay = pred(v, ctx) != 0;
    add_run(opt, &cap, v->offset, v->count, decay);
    next += v->count;
    if (decay) decayed += v->count;
  }
  LFS_ASSERT(next == opt->count);
  return decayed;
}
