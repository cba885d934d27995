/* backend.c: the backend registry and geometry shared by every backend; the
 * CUDA entry points' stand-ins when CUDA is not built in. */
#include "lfs/backend.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "lfs/log.h"

#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

int lfs_conv_desc_init(lfs_conv_desc *d) {
  if (d->n <= 0 || d->in_c <= 0 || d->in_h <= 0 || d->in_w <= 0 || d->out_c <= 0) return -1;
  if (d->kh <= 0 || d->kw <= 0 || d->stride <= 0 || d->pad < 0 || d->groups <= 0) return -1;
  if (d->in_c % d->groups || d->out_c % d->groups) return -1;
  int eff_h = d->in_h + 2 * d->pad - d->kh, eff_w = d->in_w + 2 * d->pad - d->kw;
  if (eff_h < 0 || eff_w < 0) return -1;
  d->out_h = eff_h / d->stride + 1;
  d->out_w = eff_w / d->stride + 1;
  return 0;
}

static char purpose[320];

void lfs_backend_set_purpose(const char *fmt, ...) {
  purpose[0] = '\0';
  if (!fmt) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(purpose, sizeof purpose, fmt, ap);
  va_end(ap);
}

const char *lfs_backend_purpose(void) { return purpose; }

void lfs_backend_out_of_memory(const char *device, size_t bytes, const char *what,
                               const char *reason, double free_mib, double total_mib) {
  if (!what || !what[0]) what = purpose[0] ? purpose : "an allocation";
  lfs_user_error_local("%s: cannot allocate %.1f MiB for %s: %s, %.1f of %.1f MiB free. A smaller "
                       "batch per device ([data] batch_size, or more ranks) needs less memory",
                       device, bytes / 1048576.0, what, reason, free_mib, total_mib);
}

int lfs_conv_desc_same(const lfs_conv_desc *a, const lfs_conv_desc *b) {
  return a->n == b->n && a->in_c == b->in_c && a->in_h == b->in_h && a->in_w == b->in_w &&
         a->out_c == b->out_c && a->out_h == b->out_h && a->out_w == b->out_w && a->kh == b->kh &&
         a->kw == b->kw && a->stride == b->stride && a->pad == b->pad && a->groups == b->groups &&
         a->has_bias == b->has_bias;
}

lfs_backend *lfs_backend_get(const char *name) {
  if (strcmp(name, "cpu") == 0) return lfs_backend_cpu();
  if (strcmp(name, "cuda") == 0) return lfs_backend_cuda(NULL, 0);
  if (strcmp(name, "cpu-staged") == 0) return lfs_backend_cpu_staged();
  return NULL;
}

#ifndef HAVE_CUDA
/* Without CUDA: no GPU backend (src/backend/cuda/ is not compiled). */
lfs_backend *lfs_backend_cuda(char *why, size_t whylen) {
  if (why) snprintf(why, whylen, "this build has no CUDA support (configure --with-cuda)");
  return NULL;
}

void lfs_cuda_set_tf32(lfs_backend *be, int on) {
  (void)be;
  (void)on;
}

int lfs_cuda_tf32(lfs_backend *be) {
  (void)be;
  return 0;
}

void lfs_cuda_set_conv_gemm(lfs_backend *be, int on) {
  (void)be;
  (void)on;
}

void lfs_cuda_set_conv_graph(lfs_backend *be, int on) {
  (void)be;
  (void)on;
}

int lfs_cuda_conv_graph_fallbacks(lfs_backend *be) {
  (void)be;
  return 0;
}
#endif
