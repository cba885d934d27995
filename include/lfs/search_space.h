/* search_space.h: the loss-function search spaces of DESIGN §1.6. A space maps a
 * parameter vector u in R^d, drawn from the Gaussian policy, to the settings of
 * the cosine head; each space is defined once here with its dimension, initial
 * policy mean, default standard deviation, warm-up point and mapping.
 *
 *   search_softmax  d = 1   a = -|u| e^{s/3} (modulation, §1.4)       mu0 = 0     sigma 0.2
 *   random_softmax  the same space; the policy never updates (the paper's baseline)
 *   amlfs           d = 2N  alpha_j = u_j, beta_j = u_{N+j} (§1.5)    identity    sqrt 0.2
 *                   (4N with tau: tau_alpha_j = u_{2N+j}, tau_beta_j = u_{3N+j})
 *   cosface_m       d = 1   m3 = max(u, 0)                            0.35        0.05
 *   arcface_m       d = 1   m2 = clamp(u, 0, 1)                       0.5         0.05
 *
 * Warm-up epochs train every candidate at one point: u = -1 for the Search-
 * Softmax spaces (a = -e^{s/3}, about CosFace m = 1/3), mu0 for the others. */
#ifndef LFS_SEARCH_SPACE_H
#define LFS_SEARCH_SPACE_H

#include <stddef.h>

#include "lfs/head.h"

/* Same order as the search.space choice list of the configuration schema. */
typedef enum {
  LFS_SPACE_SEARCH_SOFTMAX = 0,
  LFS_SPACE_RANDOM_SOFTMAX,
  LFS_SPACE_AMLFS,
  LFS_SPACE_COSFACE_M,
  LFS_SPACE_ARCFACE_M,
  LFS_SPACE_COUNT
} lfs_space_kind;

#define LFS_SPACE_MAX_DIM (4 * LFS_AMLFS_MAX_INTERVALS)

typedef struct {
  lfs_space_kind kind;
  int dim;
  int intervals, tau; /* amlfs */
} lfs_space;

/* intervals and tau matter for amlfs only. -1 with a message on a bad value. */
int lfs_space_init(lfs_space *sp, lfs_space_kind kind, int intervals, int tau, char *err,
                   size_t errlen);
const char *lfs_space_name(lfs_space_kind kind);
/* Whether the policy learns (every space but random_softmax). */
int lfs_space_learns(const lfs_space *sp);
/* mu0 [dim] */
void lfs_space_initial_mean(const lfs_space *sp, double *mu);
double lfs_space_default_sigma(const lfs_space *sp);
/* The point u [dim] every candidate trains at during warm-up. */
void lfs_space_warmup_point(const lfs_space *sp, double *u);
/* out = base with the loss of point u [dim]: kind and the space's fields set,
 * every other setting (scale s, margin_grad, ...) kept from base. */
void lfs_space_apply(const lfs_space *sp, const double *u, const lfs_head_cfg *base,
                     lfs_head_cfg *out);
/* The Search-Softmax modulation a = -|u| e^{s/3} of a one-dimensional u. */
double lfs_space_modulation(double u, double s);
/* The CosFace margin that a constant modulation a <= 0 equals: ln(1 - a) / s (§1.4). */
double lfs_space_equivalent_margin(double a, double s);

#endif
