/* head.h: the cosine head and every loss built on it (DESIGN §1.1-1.5).
 *
 * One entry point, lfs_head_loss, takes the embeddings x [B, D] and the class
 * weights w [K, D] (row-major host memory, both unnormalised), computes
 * c_ik = <x_i/|x_i|, w_k/|w_k|> clamped to [-1, 1], builds the logits of the
 * configured loss and returns the mean loss over the batch; its backward goes
 * through both normalisations, so dx and dw are gradients with respect to the
 * unnormalised inputs. A norm below LFS_HEAD_NORM_EPS is replaced by it (as
 * torch.nn.functional.normalize does).
 *
 * The loss of row i is assembled from three independent parts:
 *   target transform   z_iy = s * t(c_iy): the margin family psi (§1.2, with
 *                      SphereFace's lambda annealing), or AM-LFS's piecewise-
 *                      linear alpha_j c + beta_j (§1.5);
 *   negative transform z_ik = s * c_ik, or MV-Softmax's (§1.3) for k != y with
 *                      c_ik > t(c_iy);
 *   probability term   -log p_y, plus Search-Softmax's log1p(|a| (1 - p_y)) (§1.4),
 *                      or AM-LFS's -log tau(p_y) (§1.5).
 * Every term is evaluated in log space: log p_y from a max-shifted log-sum-exp,
 * 1 - p_y as the sum of the other probabilities, never the log of a probability. */
#ifndef LFS_HEAD_H
#define LFS_HEAD_H

#include <stddef.h>
#include <stdint.h>

/* Same order as the head.loss choice list of the configuration schema, so
 * lfs_config_choice(cfg, "head.loss") converts directly. */
typedef enum {
  LFS_LOSS_SOFTMAX = 0,   /* NormFace: psi = c */
  LFS_LOSS_SPHEREFACE,    /* m1 (4, or 1.35..1.5), lambda annealing */
  LFS_LOSS_COSFACE,       /* m3 */
  LFS_LOSS_ARCFACE,       /* m2 */
  LFS_LOSS_COMBINED,      /* m1, m2, m3 */
  LFS_LOSS_MV_SOFTMAX,    /* margins (cosface or arcface) + MV negatives */
  LFS_LOSS_SEARCH_SOFTMAX,/* margins (none by default) + modulation with a fixed a <= 0 */
  LFS_LOSS_AMLFS,         /* piecewise-linear target transform, optional tau on p_y */
  LFS_LOSS_COUNT
} lfs_loss_kind;

/* Same order as head.margin_grad ("exact|straight"). */
typedef enum { LFS_MARGIN_GRAD_EXACT = 0, LFS_MARGIN_GRAD_STRAIGHT = 1 } lfs_margin_grad;
/* Same order as head.mv_mode ("adaptive|fixed"). */
typedef enum { LFS_MV_ADAPTIVE = 0, LFS_MV_FIXED = 1 } lfs_mv_mode;

#define LFS_AMLFS_MAX_INTERVALS 64
#define LFS_HEAD_NORM_EPS 1e-12
/* sin(theta) floor in the exact margin gradient (DESIGN §1.2). */
#define LFS_HEAD_SIN_FLOOR 1e-6
/* A non-positive tau(p_y) is replaced by this, with a zero gradient: a sampled
 * AM-LFS tau can be <= 0 somewhere, and the loss must stay finite there. */
#define LFS_AMLFS_TAU_FLOOR 1e-30

typedef struct {
  lfs_loss_kind kind;
  double s;                    /* scale, > 0 */
  double m1, m2, m3;           /* psi = (-1)^k cos(m1 theta + m2) - 2k - m3 */
  lfs_margin_grad margin_grad; /* margin family: exact d psi/dc (DESIGN §1.2), or straight: 1
                                  (AM-LFS's target always uses its slope alpha_j) */
  /* SphereFace: lambda = max(lambda_min, lambda_base (1 + lambda_gamma iter)^-lambda_power),
   * target = (lambda c + psi) / (1 + lambda). */
  double lambda_base, lambda_gamma, lambda_power, lambda_min;
  int64_t iteration;           /* training step, for the annealing */
  /* MV-Softmax */
  lfs_mv_mode mv_mode;
  double mv_t;                 /* adaptive t (default 1.2) or fixed t (default 0.2) */
  /* Search-Softmax */
  double a;                    /* <= 0 */
  /* AM-LFS: N equal intervals of [-1, 1] for the target transform; with tau,
   * N equal intervals of [0, 1] for tau(p) = tau_alpha_j p + tau_beta_j. */
  int amlfs_n;
  double amlfs_alpha[LFS_AMLFS_MAX_INTERVALS], amlfs_beta[LFS_AMLFS_MAX_INTERVALS];
  int amlfs_tau;
  double tau_alpha[LFS_AMLFS_MAX_INTERVALS], tau_beta[LFS_AMLFS_MAX_INTERVALS];
} lfs_head_cfg;

typedef struct {
  double mean_p_y;   /* mean softmax probability of the label (of the loss's own logits) */
  double mean_cos_y; /* mean c_iy */
  double accuracy;   /* fraction of rows whose largest plain cosine c_ik is at k = y_i */
} lfs_head_stats;

/* The DESIGN §1.2 table's values for `kind` (s = 32, margins, lambda schedule
 * 1000/1e-4/2/5, MV adaptive t = 1.2 on CosFace m3 = 0.35, a = 0, AM-LFS N = 6 at
 * the identity, no tau), iteration 0, margin_grad exact. */
void lfs_head_cfg_init(lfs_head_cfg *cfg, lfs_loss_kind kind);

/* Checks the settings; on error returns -1 with a message naming the field and
 * value in err. Margins a kind does not use must keep their neutral values
 * (m1 = 1, m2 = m3 = 0): "cosface with m2 = 0.5" is a mistake, not a combined margin. */
int lfs_head_cfg_check(const lfs_head_cfg *cfg, char *err, size_t errlen);

const char *lfs_loss_kind_name(lfs_loss_kind kind);
/* Returns 0 and sets *kind, or -1 for an unknown name. */
int lfs_loss_kind_parse(const char *name, lfs_loss_kind *kind);

/* SphereFace's lambda at cfg->iteration (0 for the other kinds). */
double lfs_head_lambda(const lfs_head_cfg *cfg);

/* The target transform t(c) that the logit s * t(c) of the label uses, and
 * dt/dc as backward applies it (*dt_dc, optional). c in [-1, 1]. */
double lfs_head_target(const lfs_head_cfg *cfg, double c, double *dt_dc);

/* Mean loss over the batch. dx and dw ACCUMULATE the gradients of that mean
 * (either may be NULL); stats (optional) receives batch means. cfg must pass
 * lfs_head_cfg_check and every label must be in [0, K) (else an internal fault).
 * Work memory: two [B, K] float matrices. */
double lfs_head_loss(const lfs_head_cfg *cfg, int B, int D, int K,
                     float *dx /* [B, D] */, float *dw /* [K, D] */, lfs_head_stats *stats,
                     const float *x /* [B, D] */, const float *w /* [K, D] */,
                     const int32_t *labels /* [B] */);

/* What lfs_head_loss (and a backend's head) checks first: cfg, the shape and
 * the labels (host memory); a failure is an internal fault naming the value. */
void lfs_head_check_call(const lfs_head_cfg *cfg, int B, int D, int K, const int32_t *labels);

#endif
