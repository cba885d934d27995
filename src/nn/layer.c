/* layer.c: what every layer kind shares: construction, parameter naming and lookup. */
#include <string.h>

#include "lfs/log.h"
#include "nn/layer_internal.h"

lfs_layer lfs_layer_new(const lfs_layer_kind *kind, const char *name) {
  lfs_layer l;
  memset(&l, 0, sizeof l);
  l.kind = kind;
  if (snprintf(l.name, sizeof l.name, "%s", name ? name : "") >= (int)sizeof l.name)
    lfs_fatal("layer name too long: %s", name);
  for (int i = 0; i < 4; i++) l.param[i] = -1;
  return l;
}

int lfs_layer_declare(lfs_layer *l, lfs_params *p, const char *suffix, lfs_param_kind kind,
                      int ndim, const int *dims) {
  char full[160];
  if (l->name[0])
    snprintf(full, sizeof full, "%s.%s", l->name, suffix);
  else
    snprintf(full, sizeof full, "%s", suffix);
  return lfs_params_declare(p, full, kind, ndim, dims);
}

float *lfs_layer_param(const lfs_layer *l, const lfs_params *p, int slot) {
  return l->param[slot] < 0 ? NULL : lfs_params_data(p, l->param[slot]);
}

float *lfs_layer_grad(const lfs_layer *l, const lfs_params *p, int slot) {
  if (l->param[slot] < 0 || lfs_params_view(p, l->param[slot])->kind != LFS_PARAM_TRAINABLE)
    return NULL;
  return lfs_params_grad(p, l->param[slot]);
}

void lfs_shape_format(lfs_shape s, char *buf, size_t len) {
  if (s.h == 1 && s.w == 1)
    snprintf(buf, len, "%dx%d", s.n, s.c);
  else
    snprintf(buf, len, "%dx%dx%dx%d", s.n, s.c, s.h, s.w);
}

int lfs_layer_is_flatten(const lfs_layer *l) { return l->kind == &lfs_kind_flatten; }
