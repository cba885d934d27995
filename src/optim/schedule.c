/* schedule.c: learning-rate schedules (constant, multistep, polynomial decay, each
 * with an optional linear warm-up from 0) as a pure function lr(step) of a plain
 * struct, and the parser of milestone lists such as "8,14,18". Steps count
 * optimizer steps from 0; formulas in optim.h. lfs_schedule_from_config reads the
 * [optim] section (milestones and warm-up there are in epochs). */
#include "lfs/optim.h"

#include "lfs/log.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lfs/config.h"


static int check_common(double base_lr, int64_t warmup_steps, char *err, size_t errlen) {
  if (!isfinite(base_lr) || base_lr < 0)
    return lfs_fail(err, errlen, "learning rate %g must be a finite number >= 0", base_lr);
  if (warmup_steps < 0)
    return lfs_fail(err, errlen, "warm-up steps %lld must be >= 0", (long long)warmup_steps);
  return 0;
}

int lfs_schedule_constant(lfs_schedule *s, double base_lr, int64_t warmup_steps, char *err,
                          size_t errlen) {
  memset(s, 0, sizeof *s);
  if (check_common(base_lr, warmup_steps, err, errlen)) return -1;
  s->kind = LFS_SCHED_CONSTANT;
  s->base_lr = base_lr;
  s->warmup_steps = warmup_steps;
  return 0;
}

int lfs_schedule_multistep(lfs_schedule *s, double base_lr, double gamma, const int64_t *milestones,
                           int nmilestones, int64_t steps_per_unit, int64_t warmup_steps,
                           char *err, size_t errlen) {
  if (lfs_schedule_constant(s, base_lr, warmup_steps, err, errlen)) return -1;
  s->kind = LFS_SCHED_MULTISTEP;
  if (!isfinite(gamma) || gamma < 0 || gamma > 1)
    return lfs_fail(err, errlen, "gamma %g must be in [0, 1]", gamma);
  if (steps_per_unit < 1)
    return lfs_fail(err, errlen, "steps per milestone unit %lld must be >= 1",
                (long long)steps_per_unit);
  if (nmilestones < 0 || nmilestones > LFS_SCHED_MAX_MILESTONES)
    return lfs_fail(err, errlen, "%d milestones: at most %d are allowed", nmilestones,
                LFS_SCHED_MAX_MILESTONES);
  s->gamma = gamma;
  for (int i = 0; i < nmilestones; i++) {
    const int64_t m = milestones[i];
    if (m <= 0) return lfs_fail(err, errlen, "milestone %lld must be positive", (long long)m);
    if (i > 0 && m <= milestones[i - 1])
      return lfs_fail(err, errlen, "milestone %lld must be greater than the one before it (%lld)",
                  (long long)m, (long long)milestones[i - 1]);
    if (m > INT64_MAX / steps_per_unit)
      return lfs_fail(err, errlen, "milestone %lld times %lld steps overflows", (long long)m,
                  (long long)steps_per_unit);
    s->milestones[i] = m * steps_per_unit;
  }
  s->nmilestones = nmilestones;
  return 0;
}

int lfs_schedule_poly(lfs_schedule *s, double base_lr, double power, int64_t total_steps,
                      int64_t warmup_steps, char *err, size_t errlen) {
  if (lfs_schedule_constant(s, base_lr, warmup_steps, err, errlen)) return -1;
  s->kind = LFS_SCHED_POLY;
  if (!isfinite(power) || power < 0) return lfs_fail(err, errlen, "power %g must be >= 0", power);
  if (total_steps <= warmup_steps)
    return lfs_fail(err, errlen, "total steps %lld must exceed the warm-up steps %lld",
                (long long)total_steps, (long long)warmup_steps);
  s->power = power;
  s->total_steps = total_steps;
  return 0;
}

static double multistep_factor(const lfs_schedule *s, int64_t step) {
  int passed = 0;
  while (passed < s->nmilestones && s->milestones[passed] <= step) passed++;
  return pow(s->gamma, passed);
}

static double poly_factor(const lfs_schedule *s, int64_t step) {
  if (step < s->warmup_steps) return 1.0;
  const int64_t t = step < s->total_steps ? step : s->total_steps;
  const double span = (double)(s->total_steps - s->warmup_steps);
  const double left = 1.0 - (double)(t - s->warmup_steps) / span;
  return pow(left, s->power);
}

double lfs_schedule_lr(const lfs_schedule *s, int64_t step) {
  if (step < 0) step = 0;
  double lr = s->base_lr;
  if (step < s->warmup_steps) lr *= (double)step / (double)s->warmup_steps;
  switch (s->kind) {
  case LFS_SCHED_MULTISTEP: return lr * multistep_factor(s, step);
  case LFS_SCHED_POLY: return lr * poly_factor(s, step);
  case LFS_SCHED_CONSTANT: break;
  }
  return lr;
}

/* ---- "8,14,18" ------------------------------------------------------------------ */

static const char *skip_spaces(const char *p) {
  while (*p && isspace((unsigned char)*p)) p++;
  return p;
}

/* Copies item [begin, end) for a message, trimmed and shortened. */
static const char *item_text(const char *begin, const char *end, char *buf, size_t len) {
  while (begin < end && isspace((unsigned char)*begin)) begin++;
  while (end > begin && isspace((unsigned char)end[-1])) end--;
  size_t n = (size_t)(end - begin);
  if (n >= len) n = len - 1;
  memcpy(buf, begin, n);
  buf[n] = '\0';
  return buf;
}

/* Parses one item [begin, end) as a positive integer. */
static int parse_item(const char *text, int index, const char *begin, const char *end, int64_t *out,
                      char *err, size_t errlen) {
  char shown[48];
  item_text(begin, end, shown, sizeof shown);
  if (!shown[0])
    return lfs_fail(err, errlen, "milestones \"%s\": item %d is empty", text, index + 1);
  const char *p = skip_spaces(begin);
  char *stop = NULL;
  errno = 0;
  const int sign = (*p == '-' || *p == '+') ? 1 : 0;
  const long long v = isdigit((unsigned char)p[sign]) ? strtoll(p, &stop, 10) : 0;
  if (!stop || skip_spaces(stop) != end)
    return lfs_fail(err, errlen, "milestones \"%s\": item %d ('%s') is not a whole number", text,
                index + 1, shown);
  if (errno == ERANGE)
    return lfs_fail(err, errlen, "milestones \"%s\": item %d ('%s') is too large", text, index + 1,
                shown);
  if (v <= 0)
    return lfs_fail(err, errlen, "milestones \"%s\": item %d ('%s') must be positive", text,
                index + 1, shown);
  *out = (int64_t)v;
  return 0;
}

int lfs_parse_milestones(const char *text, int64_t *out, int max, int *count, char *err,
                         size_t errlen) {
  *count = 0;
  if (!text) return lfs_fail(err, errlen, "milestones: no value");
  if (!*skip_spaces(text)) return 0;
  const char *begin = text;
  /* *count is set only on success, so a caller never sees a half-parsed list. */
  for (int i = 0;; i++) {
    const char *end = strchr(begin, ',');
    if (!end) end = begin + strlen(begin);
    if (i >= max)
      return lfs_fail(err, errlen, "milestones \"%s\": more than %d items", text, max);
    if (parse_item(text, i, begin, end, &out[i], err, errlen)) return -1;
    if (i > 0 && out[i] <= out[i - 1])
      return lfs_fail(err, errlen,
                  "milestones \"%s\": item %d (%lld) must be greater than the one before it (%lld)",
                  text, i + 1, (long long)out[i], (long long)out[i - 1]);
    if (!*end) {
      *count = i + 1;
      return 0;
    }
    begin = end + 1;
  }
}

/* ---- [optim] ------------------------------------------------------------------------ */

/* Epochs to steps, refusing products that do not fit. */
static int epochs_to_steps(const char *key, int64_t epochs, int64_t steps_per_epoch, int64_t *out,
                           char *err, size_t errlen) {
  if (epochs > INT64_MAX / steps_per_epoch)
    return lfs_fail(err, errlen, "[optim] %s = %lld: times %lld steps per epoch is too many steps", key,
                (long long)epochs, (long long)steps_per_epoch);
  *out = epochs * steps_per_epoch;
  return 0;
}

int lfs_schedule_from_config(lfs_schedule *s, const struct lfs_config *cfg, int64_t steps_per_epoch,
                             char *err, size_t errlen) {
  if (steps_per_epoch < 1)
    return lfs_fail(err, errlen, "%lld steps per epoch: an epoch must have at least one step",
                (long long)steps_per_epoch);
  const char *kind = lfs_config_string(cfg, "optim.schedule");
  const double lr = lfs_config_real(cfg, "optim.lr");
  const int64_t epochs = lfs_config_int(cfg, "optim.epochs");
  const int64_t warmup_epochs = lfs_config_int(cfg, "optim.warmup_epochs");
  int64_t warmup = 0, total = 0;
  if (epochs_to_steps("warmup_epochs", warmup_epochs, steps_per_epoch, &warmup, err, errlen) ||
      epochs_to_steps("epochs", epochs, steps_per_epoch, &total, err, errlen))
    return -1;
  char why[256];
  if (strcmp(kind, "poly") == 0) {
    if (warmup_epochs >= epochs)
      return lfs_fail(err, errlen, "[optim] warmup_epochs = %lld (set at %s) must be less than "
                  "epochs = %lld with schedule = poly", (long long)warmup_epochs,
                  lfs_config_origin(cfg, "optim.warmup_epochs"), (long long)epochs);
    if (lfs_schedule_poly(s, lr, lfs_config_real(cfg, "optim.poly_power"), total, warmup, why,
                          sizeof why))
      return lfs_fail(err, errlen, "[optim] schedule = poly: %s", why);
    return 0;
  }
  if (strcmp(kind, "multistep") != 0)
    return lfs_fail(err, errlen, "[optim] schedule = %s: expected multistep or poly", kind);
  const char *text = lfs_config_string(cfg, "optim.milestones");
  int64_t m[LFS_SCHED_MAX_MILESTONES];
  int n = 0;
  const char *from = lfs_config_origin(cfg, "optim.milestones");
  if (lfs_parse_milestones(text, m, LFS_SCHED_MAX_MILESTONES, &n, why, sizeof why))
    return lfs_fail(err, errlen, "[optim] %s (set at %s)", why, from);
  if (lfs_schedule_multistep(s, lr, lfs_config_real(cfg, "optim.lr_gamma"), m, n, steps_per_epoch,
                             warmup, why, sizeof why))
    return lfs_fail(err, errlen, "[optim] milestones = \"%s\" (set at %s): %s", text, from, why);
  return 0;
}
