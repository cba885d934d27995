/* optim.h: SGD with momentum and weight decay over the flat parameter buffer,
 * learning-rate schedules as pure functions of the step, and global
 * gradient-norm clipping.
 *
 * Layout: everything acts on the trainable front of an lfs_params
 * (data/grad[0 .. trainable_count)), and the momentum buffer is one flat host
 * array with the same offsets, so "/optim/<name>" of a checkpoint is
 * velocity + view->offset. The cosine head keeps its own buffers: it uses the
 * raw functions (lfs_sgd_step_raw, lfs_clip_grad_norm) on its own triple. All
 * buffers are host memory (the CPU backend). */
#ifndef LFS_OPTIM_H
#define LFS_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "lfs/params.h"

/* ---- SGD ------------------------------------------------------------------------- */

/* A stretch of the trainable front with one weight-decay setting. */
typedef struct {
  size_t offset, count; /* in floats */
  int decay;            /* 1: weight_decay applies; 0: it does not */
} lfs_sgd_run;

typedef struct {
  float lr, momentum, weight_decay; /* the caller may change lr before every step */
  float *velocity;                  /* [count], host; zero at init (PyTorch's first step) */
  size_t count;                     /* = params->trainable_count at init */
  lfs_sgd_run *runs;                /* [nruns], ascending, covering [0, count) */
  int nruns;
} lfs_sgd;

/* Weight decay on every trainable tensor (insightface); see lfs_sgd_set_decay for
 * `[optim] decay_bn = false`. */
void lfs_sgd_init(lfs_sgd *opt, const lfs_params *p, float lr, float momentum, float weight_decay);
void lfs_sgd_free(lfs_sgd *opt);

/* PyTorch's SGD (dampening 0, no Nesterov), per float of the trainable front:
 *   d = g + wd*w (wd = 0 outside decayed runs);  v = momentum*v + d;  w -= lr*v.
 * With v = 0 initially this equals PyTorch's first step, which sets v = d. */
void lfs_sgd_step(lfs_sgd *opt, lfs_params *p);
/* The same step on arrays in a backend's memory: data (p's layout), velocity and
 * grad [opt->count], through be's sgd_step run by run. */
void lfs_sgd_step_on(lfs_sgd *opt, lfs_backend *be, float *data, float *velocity, const float *grad);

/* The same update on any triple, e.g. the head's class weights and their own momentum:
 * w [n] and v [n] are updated in place from g [n]. */
void lfs_sgd_step_raw(float *w, float *v, const float *g, size_t n, float lr, float momentum,
                      float weight_decay);

/* Which tensors get weight decay: returns 1 for a view that is decayed. Only trainable
 * views are ever asked. */
typedef int (*lfs_decay_pred)(const lfs_param_view *view, void *ctx);

/* Every trainable tensor (insightface, arcface_torch). */
int lfs_decay_all(const lfs_param_view *view, void *ctx);

/* Only tensors of two or more dimensions: conv and linear weights. Every one-dimensional
 * tensor is excluded, which in these models is exactly the BN weights and biases
 * ("<bn>.weight", "<bn>.bias"), the PReLU slopes ("<prelu>.weight") and the biases of
 * conv/linear layers ("<layer>.bias"): the rule follows from the shapes, not the names,
 * so it needs no list of layer kinds. This is `[optim] decay_bn = false`. */
int lfs_decay_weights_only(const lfs_param_view *view, void *ctx);

/* Rebuilds opt's runs from the trainable views of p: a view is decayed iff pred says so;
 * adjacent views with the same verdict merge into one run. Returns the number of
 * decayed floats (for the log). p must be the lfs_params opt was initialised with. */
size_t lfs_sgd_set_decay(lfs_sgd *opt, const lfs_params *p, lfs_decay_pred pred, void *ctx);

/* ---- learning-rate schedules ----------------------------------------------------- */

typedef enum { LFS_SCHED_CONSTANT = 0, LFS_SCHED_MULTISTEP = 1, LFS_SCHED_POLY = 2 } lfs_sched_kind;

#define LFS_SCHED_MAX_MILESTONES 64

/* A schedule is plain data and lr(step) a pure function of it, so a resumed run needs
 * only its step. `step` counts optimizer steps from 0 (the first step is step 0).
 *
 *   lr(s) = base_lr * warm(s) * decay(s)
 *   warm(s)  = s / warmup_steps while s < warmup_steps (linear from 0), else 1
 *   multistep: decay(s) = gamma ^ (number of milestones m with m <= s)
 *   poly:      decay(s) = (1 - (min(s, T) - W) / (T - W)) ^ power for s >= W, else 1,
 *              with W = warmup_steps and T = total_steps: lr(T) = 0 and stays 0.
 * poly is arcface_torch's PolyScheduler (power 2 there). Milestones count steps; in
 * epochs they are converted with the steps per epoch, so "8" means "after 8 complete
 * epochs", as torch's MultiStepLR stepped once per epoch. */
typedef struct {
  lfs_sched_kind kind;
  double base_lr;
  int64_t warmup_steps;
  int64_t total_steps; /* poly */
  double power;        /* poly */
  double gamma;        /* multistep */
  int nmilestones;
  int64_t milestones[LFS_SCHED_MAX_MILESTONES]; /* in steps, strictly ascending, > 0 */
} lfs_schedule;

/* Constructors: 0 on success, -1 with a message in err (naming the bad value) otherwise.
 * Milestones are given in units of `steps_per_unit` steps (1: steps; steps per epoch:
 * epochs). Warm-up steps must be >= 0; poly needs total_steps > warmup_steps. */
int lfs_schedule_constant(lfs_schedule *s, double base_lr, int64_t warmup_steps, char *err,
                          size_t errlen);
int lfs_schedule_multistep(lfs_schedule *s, double base_lr, double gamma, const int64_t *milestones,
                           int nmilestones, int64_t steps_per_unit, int64_t warmup_steps,
                           char *err, size_t errlen);
int lfs_schedule_poly(lfs_schedule *s, double base_lr, double power, int64_t total_steps,
                      int64_t warmup_steps, char *err, size_t errlen);

/* The schedule of an [optim] section: lr, schedule (multistep | poly), milestones (in
 * epochs), lr_gamma, poly_power, warmup_epochs, epochs, with steps_per_epoch optimizer
 * steps per epoch (poly decays to 0 at epochs * steps_per_epoch). Returns 0, or -1 with
 * a message naming the key and its value ("[optim] milestones = \"8,x\": ..."). */
struct lfs_config;
int lfs_schedule_from_config(lfs_schedule *s, const struct lfs_config *cfg, int64_t steps_per_epoch,
                             char *err, size_t errlen);

/* The learning rate of optimizer step `step` (>= 0). */
double lfs_schedule_lr(const lfs_schedule *s, int64_t step);

/* Parses "8,14,18" (spaces around items allowed; "" or only spaces = no milestones) into
 * out[0 .. *count). Items must be positive whole numbers, strictly ascending, at most
 * `max` of them. Returns 0, or -1 with a message naming the offending item in err. */
int lfs_parse_milestones(const char *text, int64_t *out, int max, int *count, char *err,
                         size_t errlen);

/* ---- gradient-norm clipping ------------------------------------------------------ */

/* Sum of squares of g [n] in double, blocked in a fixed order: the same bits for any
 * thread count. Sums of several buffers add up to a global norm. */
double lfs_grad_sumsq(const float *g, size_t n);

/* torch.nn.utils.clip_grad_norm_'s factor: max_norm / (norm + 1e-6) when that is below 1,
 * else 1; 1 also when max_norm <= 0 (clipping off) or norm is not finite (left for the
 * caller's divergence check). */
double lfs_clip_coef(double norm, double max_norm);

/* g [n] *= coef (in float); a no-op for coef == 1. For clipping several buffers (model
 * and head) with one norm: sum their lfs_grad_sumsq, take lfs_clip_coef, scale each. */
void lfs_grad_scale(float *g, size_t n, double coef);

/* Scales g [n] by lfs_clip_coef of its own L2 norm; returns the norm before clipping. */
double lfs_clip_grad_norm(float *g, size_t n, double max_norm);

/* The same over the trainable front of p's gradients. */
double lfs_clip_grad_norm_params(lfs_params *p, double max_norm);

#endif
