/* loss_internal.h: the per-row pieces of the cosine head (src/loss), shared by
 * its files only. Everything here works on one row of the B x K cosine matrix
 * in double precision, so that a GPU kernel can mirror it row by row.
 *
 * Row layout: K logits (or probabilities) of one sample, the label y in [0, K). */
#ifndef LFS_LOSS_INTERNAL_H
#define LFS_LOSS_INTERNAL_H

#include "lfs/head.h"

/* ---- target transforms: t(c) and dt/dc of the label's cosine ---------------------- */

/* The margin family (DESIGN §1.2), SphereFace's annealing blended in for that kind,
 * margin_grad applied. */
double lfs_margin_target(const lfs_head_cfg *cfg, double c, double *dt_dc);
/* AM-LFS's alpha_j c + beta_j over N equal intervals of [-1, 1] (DESIGN §1.5). */
double lfs_amlfs_target(const lfs_head_cfg *cfg, double c, double *dt_dc);

/* ---- negative transform --------------------------------------------------------- */

/* MV-Softmax (DESIGN §1.3): the logit / s of a non-label class with cosine c when
 * the label's transformed cosine is `target`; *slope = d(logit / s)/dc. */
double lfs_mv_negative(const lfs_head_cfg *cfg, double c, double target, double *slope);

/* ---- probability terms ----------------------------------------------------------- */

/* One row's softmax, in log space. */
typedef struct {
  double neg_log_py; /* -log p_y >= 0 */
  double py;         /* p_y */
  double q;          /* 1 - p_y, as the sum of the other probabilities */
} lfs_row_prob;

/* z [K]: logits in; on return z[k] = p_k for every k != y (z[y] is left alone).
 * Max-shifted; -log p_y without cancellation when p_y is near 1. */
void lfs_row_softmax(int K, double *z, int y, lfs_row_prob *out);

/* Every probability term has dL/dz_k = g (p_k - [k = y]); these return the row's
 * loss and g. */
/* -log p_y + log1p(|a| q) (a = 0: plain softmax cross-entropy). */
double lfs_modulation_term(double a, const lfs_row_prob *p, double *g);
/* -log tau(p_y), tau piecewise linear over N equal intervals of [0, 1]. */
double lfs_amlfs_tau_term(const lfs_head_cfg *cfg, const lfs_row_prob *p, double *g);

#endif
