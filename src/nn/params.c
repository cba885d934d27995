/* params.c: the flat parameter/gradient buffers and their named views
 * (trainable, then frozen, then buffers: see params.h). */
#include "lfs/params.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lfs/backend.h"
#include "lfs/log.h"

void lfs_params_init(lfs_params *p) { memset(p, 0, sizeof *p); }

int lfs_params_declare(lfs_params *p, const char *name, lfs_param_kind kind, int ndim,
                       const int *dims) {
  LFS_ASSERT(!p->finalized && ndim >= 1 && ndim <= 4);
  if (lfs_params_find(p, name) >= 0) lfs_fatal("parameter %s declared twice", name);
  p->views = lfs_grow(p->views, p->nviews, &p->cap, sizeof *p->views);
  lfs_param_view *v = &p->views[p->nviews];
  if (snprintf(v->name, sizeof v->name, "%s", name) >= (int)sizeof v->name)
    lfs_fatal("parameter name too long: %s", name);
  v->kind = kind;
  v->ndim = ndim;
  v->count = 1;
  for (int i = 0; i < ndim; i++) {
    LFS_ASSERT(dims[i] > 0);
    v->dims[i] = dims[i];
    v->count *= (size_t)dims[i];
  }
  return p->nviews++;
}

void lfs_params_finalize(lfs_params *p, lfs_backend *be) {
  LFS_ASSERT(!p->finalized);
  size_t offset = 0;
  for (int kind = LFS_PARAM_TRAINABLE; kind <= LFS_PARAM_BUFFER; kind++) {
    for (int i = 0; i < p->nviews; i++) {
      if ((int)p->views[i].kind != kind) continue;
      p->views[i].offset = offset;
      offset += p->views[i].count;
    }
    if (kind == LFS_PARAM_TRAINABLE) p->trainable_count = offset;
  }
  p->count = offset;
  p->be = be;
  lfs_backend_set_purpose("the parameters and their gradients (%zu floats each)", p->count);
  p->data = be->ops->alloc(be, p->count);
  p->grad = be->ops->alloc(be, p->count);
  lfs_backend_set_purpose(NULL);
  p->finalized = 1;
}

void lfs_params_free(lfs_params *p) {
  if (p->finalized) {
    p->be->ops->free(p->be, p->data);
    p->be->ops->free(p->be, p->grad);
  }
  free(p->views);
  lfs_params_init(p);
}

const lfs_param_view *lfs_params_view(const lfs_params *p, int handle) {
  LFS_ASSERT(handle >= 0 && handle < p->nviews);
  return &p->views[handle];
}

float *lfs_params_data(const lfs_params *p, int handle) {
  LFS_ASSERT(p->finalized);
  return p->data + lfs_params_view(p, handle)->offset;
}

float *lfs_params_grad(const lfs_params *p, int handle) {
  LFS_ASSERT(p->finalized);
  return p->grad + lfs_params_view(p, handle)->offset;
}

int lfs_params_find(const lfs_params *p, const char *name) {
  for (int i = 0; i < p->nviews; i++)
    if (strcmp(p->views[i].name, name) == 0) return i;
  return -1;
}

void lfs_params_zero_grad(lfs_params *p) { p->be->ops->fill(p->be, p->grad, 0.0f, p->count); }

size_t lfs_params_trainable(const lfs_params *p) { return p->trainable_count; }
