/* space.c: the search spaces of DESIGN §1.6 (see lfs/search_space.h): parameter
 * vectors u to head settings, initial policies and warm-up points. */
#include <math.h>
#include <stdio.h>

#include "lfs/search_space.h"

static const char *const names[LFS_SPACE_COUNT] = {"search_softmax", "random_softmax", "amlfs",
                                                   "cosface_m", "arcface_m"};

const char *lfs_space_name(lfs_space_kind kind) {
  return kind >= 0 && kind < LFS_SPACE_COUNT ? names[kind] : "?";
}

int lfs_space_init(lfs_space *sp, lfs_space_kind kind, int intervals, int tau, char *err,
                   size_t errlen) {
  *sp = (lfs_space){.kind = kind, .dim = 1, .intervals = 0, .tau = 0};
  if (kind < 0 || kind >= LFS_SPACE_COUNT) {
    snprintf(err, errlen, "search.space: unknown space %d", (int)kind);
    return -1;
  }
  if (kind != LFS_SPACE_AMLFS) return 0;
  if (intervals < 1 || intervals > LFS_AMLFS_MAX_INTERVALS) {
    snprintf(err, errlen, "search.intervals = %d: amlfs needs 1 to %d intervals", intervals,
             LFS_AMLFS_MAX_INTERVALS);
    return -1;
  }
  sp->intervals = intervals;
  sp->tau = tau != 0;
  sp->dim = (sp->tau ? 4 : 2) * intervals;
  return 0;
}

int lfs_space_learns(const lfs_space *sp) { return sp->kind != LFS_SPACE_RANDOM_SOFTMAX; }

void lfs_space_initial_mean(const lfs_space *sp, double *mu) {
  const int n = sp->intervals;
  switch (sp->kind) {
  case LFS_SPACE_AMLFS: /* the identity: alpha = 1, beta = 0 (and tau(p) = p) */
    for (int j = 0; j < sp->dim; j++) mu[j] = (j / n) % 2 == 0 ? 1.0 : 0.0;
    break;
  case LFS_SPACE_COSFACE_M: mu[0] = 0.35; break;
  case LFS_SPACE_ARCFACE_M: mu[0] = 0.5; break;
  default: mu[0] = 0.0; break;
  }
}

double lfs_space_default_sigma(const lfs_space *sp) {
  switch (sp->kind) {
  case LFS_SPACE_AMLFS: return sqrt(0.2);
  case LFS_SPACE_COSFACE_M:
  case LFS_SPACE_ARCFACE_M: return 0.05;
  default: return 0.2;
  }
}

void lfs_space_warmup_point(const lfs_space *sp, double *u) {
  if (sp->kind == LFS_SPACE_SEARCH_SOFTMAX || sp->kind == LFS_SPACE_RANDOM_SOFTMAX)
    u[0] = -1.0;
  else
    lfs_space_initial_mean(sp, u);
}

double lfs_space_modulation(double u, double s) { return -fabs(u) * exp(s / 3.0); }

double lfs_space_equivalent_margin(double a, double s) { return log1p(-a) / s; }

/* base's settings with the margins of `kind` set to their neutral values. */
static void start_from(lfs_head_cfg *out, const lfs_head_cfg *base, lfs_loss_kind kind) {
  *out = *base;
  out->kind = kind;
  out->m1 = 1.0, out->m2 = 0.0, out->m3 = 0.0;
  out->a = 0.0;
}

void lfs_space_apply(const lfs_space *sp, const double *u, const lfs_head_cfg *base,
                     lfs_head_cfg *out) {
  const int n = sp->intervals;
  switch (sp->kind) {
  case LFS_SPACE_SEARCH_SOFTMAX:
  case LFS_SPACE_RANDOM_SOFTMAX:
    start_from(out, base, LFS_LOSS_SEARCH_SOFTMAX);
    out->a = lfs_space_modulation(u[0], base->s);
    break;
  case LFS_SPACE_AMLFS:
    start_from(out, base, LFS_LOSS_AMLFS);
    out->amlfs_n = n;
    out->amlfs_tau = sp->tau;
    for (int j = 0; j < n; j++) {
      out->amlfs_alpha[j] = u[j], out->amlfs_beta[j] = u[n + j];
      if (sp->tau) out->tau_alpha[j] = u[2 * n + j], out->tau_beta[j] = u[3 * n + j];
    }
    break;
  case LFS_SPACE_COSFACE_M:
    start_from(out, base, LFS_LOSS_COSFACE);
    out->m3 = u[0] > 0.0 ? u[0] : 0.0;
    break;
  case LFS_SPACE_ARCFACE_M:
    start_from(out, base, LFS_LOSS_ARCFACE);
    out->m2 = u[0] < 0.0 ? 0.0 : u[0] > 1.0 ? 1.0 : u[0];
    break;
  default: *out = *base; break;
  }
}
