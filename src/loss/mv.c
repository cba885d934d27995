/* mv.c: MV-Softmax's negative transform (DESIGN §1.3) on one cosine of a
 * non-label class. A "mis-classified vector" is a class whose cosine exceeds the
 * label's transformed cosine; its logit is raised, adaptive: t c + t - 1, or
 * fixed: c + t (both times s, applied by the caller). The indicator itself is
 * piecewise constant, so the gradient is the slope of the branch taken. */
#include "loss/loss_internal.h"

double lfs_mv_negative(const lfs_head_cfg *cfg, double c, double target, double *slope) {
  if (cfg->kind != LFS_LOSS_MV_SOFTMAX || !(c > target)) {
    *slope = 1.0;
    return c;
  }
  if (cfg->mv_mode == LFS_MV_FIXED) {
    *slope = 1.0;
    return c + cfg->mv_t;
  }
  *slope = cfg->mv_t;
  return cfg->mv_t * c + cfg->mv_t - 1.0;
}
