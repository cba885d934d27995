/* margin.c: the margin family's target transform (DESIGN §1.2) on one cosine,
 * in double precision:
 *   phi = m1 theta + m2, k = floor(phi / pi), psi = (-1)^k cos(phi) - 2k - m3,
 * SphereFace's annealed blend (lambda c + psi) / (1 + lambda), and the gradient
 * d psi/dc = (-1)^k m1 sin(phi) / sin(theta) (sin theta floored), or 1 when
 * margin_grad = straight. */
#include <math.h>

#include "loss/loss_internal.h"

double lfs_head_lambda(const lfs_head_cfg *cfg) {
  if (cfg->kind != LFS_LOSS_SPHEREFACE) return 0.0;
  const double decayed =
      cfg->lambda_base * pow(1.0 + cfg->lambda_gamma * (double)cfg->iteration, -cfg->lambda_power);
  return decayed > cfg->lambda_min ? decayed : cfg->lambda_min;
}

/* psi and d psi/dc (exact) of the general form. */
static double psi_general(double m1, double m2, double m3, double c, double *dpsi) {
  /* Without an angular margin psi is c - m3 exactly: no arccos round trip, and no
   * floor distorting the unit gradient at theta ~ 0. */
  if (m1 == 1.0 && m2 == 0.0) {
    *dpsi = 1.0;
    return c - m3;
  }
  const double theta = acos(c);
  const double phi = m1 * theta + m2;
  const double k = floor(phi / M_PI);
  const double sign = fmod(k, 2.0) == 0.0 ? 1.0 : -1.0;
  /* (1 - c)(1 + c) keeps the small sin(theta) near c = +-1 accurate. */
  double sin_theta = sqrt((1.0 - c) * (1.0 + c));
  if (sin_theta < LFS_HEAD_SIN_FLOOR) sin_theta = LFS_HEAD_SIN_FLOOR;
  *dpsi = sign * m1 * sin(phi) / sin_theta;
  return sign * cos(phi) - 2.0 * k - m3;
}

double lfs_margin_target(const lfs_head_cfg *cfg, double c, double *dt_dc) {
  double dpsi;
  double t = psi_general(cfg->m1, cfg->m2, cfg->m3, c, &dpsi);
  if (cfg->kind == LFS_LOSS_SPHEREFACE) {
    const double lambda = lfs_head_lambda(cfg);
    t = (lambda * c + t) / (1.0 + lambda);
    dpsi = (lambda + dpsi) / (1.0 + lambda);
  }
  if (dt_dc) *dt_dc = cfg->margin_grad == LFS_MARGIN_GRAD_STRAIGHT ? 1.0 : dpsi;
  return t;
}
