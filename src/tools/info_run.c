/* info_run.c: `lfsearch info` of what runs write: the run log's per-epoch table
 * and a checkpoint's position, model, optimizer and search state. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lfs/checkpoint.h"
#include "lfs/config.h"
#include "lfs/log.h"
#include "lfs/runlog.h"
#include "tools/commands.h"

/* Metrics named *_acc are accuracies (fractions), shown in percent. */
static int is_accuracy(const char *name) {
  const size_t n = strlen(name);
  return n >= 4 && !strcmp(name + n - 4, "_acc");
}

/* The per-epoch table of a run log: the winner's numbers (the only candidate's
 * for `train`), the policy it was drawn from, and the logged metrics. */
void lfs_info_runlog(const char *path) {
  char err[1024];
  lfs_runlog *log = lfs_runlog_open(path, err, sizeof err);
  if (!log) lfs_user_error("%s", err);
  const int M = lfs_runlog_M(log), d = lfs_runlog_d(log), nm = lfs_runlog_nmetrics(log);
  const int64_t E = lfs_runlog_epochs(log);
  lfs_info("%s", path);
  lfs_info("  format       : %s, version %d", LFS_RUNLOG_FORMAT, LFS_RUNLOG_FORMAT_VERSION);
  lfs_info("  run          : %s, %d candidate%s, policy dimension %d, %lld epoch%s logged",
           d ? "search" : "train", M, M == 1 ? "" : "s", d, (long long)E, E == 1 ? "" : "s");
  char head[512];
  int at = snprintf(head, sizeof head, "  %5s  %6s  %8s  %10s", "epoch", "chosen", "reward %",
                    "train loss");
  if (d) at += snprintf(head + at, sizeof head - at, "  %11s  %9s  %9s", "a", "mu[0]", "sigma[0]");
  at += snprintf(head + at, sizeof head - at, "  %9s  %8s  %9s", "lr", "wall s", "img/s");
  for (int k = 0; k < nm && at < (int)sizeof head - 20; k++)
    at += snprintf(head + at, sizeof head - at, "  %10s%s", lfs_runlog_metric(log, k),
                   is_accuracy(lfs_runlog_metric(log, k)) ? " %" : "  ");
  lfs_info("%s", head);
  for (int64_t e = 0; e < E; e++) {
    lfs_runlog_row row;
    lfs_runlog_get(log, e, &row);
    const int c = row.chosen;
    char line[512];
    int n = snprintf(line, sizeof line, "  %5lld  %6d  %8.2f  %10.4f", (long long)e + 1, c,
                     100 * row.reward[c], row.loss[c]);
    if (d) n += snprintf(line + n, sizeof line - n, "  %11.4g  %9.4f  %9.4f", row.a[c], row.mu[0],
                         row.sigma[0]);
    n += snprintf(line + n, sizeof line - n, "  %9.4g  %8.1f  %9.1f", row.lr, row.wall_seconds,
                  row.images_per_second);
    for (int k = 0; k < nm && n < (int)sizeof line - 20; k++)
      n += is_accuracy(lfs_runlog_metric(log, k))
               ? snprintf(line + n, sizeof line - n, "  %12.2f", 100 * row.metrics[k])
               : snprintf(line + n, sizeof line - n, "  %12.4g", row.metrics[k]);
    lfs_info("%s", line);
  }
  lfs_runlog_close(log);
}

/* Number of entries directly under group (0 if it is missing). */
static int count_entries(lfs_ckpt *h, const char *group) {
  char **names = NULL, err[256];
  int n = 0;
  if (!lfs_ckpt_has(h, group) || lfs_ckpt_list(h, group, &names, &n, err, sizeof err) != 0)
    return 0;
  lfs_ckpt_free_names(names, n);
  return n;
}

static void describe_search(lfs_ckpt *h) {
  char err[1024], *space = lfs_ckpt_get_text(h, "search", "space", err, sizeof err);
  int64_t m = 0, d = 0, steps = 0;
  if (!space || lfs_ckpt_get_int(h, "search", "candidates", &m, err, sizeof err) ||
      lfs_ckpt_get_int(h, "search", "dim", &d, err, sizeof err) ||
      lfs_ckpt_get_int(h, "policy", "adam_steps", &steps, err, sizeof err))
    lfs_user_error("%s", err);
  double *mu = lfs_malloc(sizeof(double) * (size_t)d);
  double *sigma = lfs_malloc(sizeof(double) * (size_t)d);
  if (lfs_ckpt_read_array(h, "policy/mu", LFS_CKPT_F64, 1, &d, mu, err, sizeof err) ||
      lfs_ckpt_read_array(h, "policy/sigma", LFS_CKPT_F64, 1, &d, sigma, err, sizeof err))
    lfs_user_error("%s", err);
  lfs_info("  search       : %s, %lld candidates; policy mu[0] %.4f, sigma[0] %.4f (d = %lld, "
           "%lld updates)",
           space, (long long)m, mu[0], sigma[0], (long long)d, (long long)steps);
  const int stored = count_entries(h, "candidates");
  if (stored) lfs_info("  candidates   : %d states of the interrupted epoch (candidates/<i>)", stored);
  free(space), free(mu), free(sigma);
}

void lfs_info_checkpoint(const char *path) {
  char err[1024];
  lfs_ckpt *h = lfs_ckpt_open(path, err, sizeof err);
  if (!h) lfs_user_error("%s", err);
  const lfs_ckpt_meta *m = lfs_ckpt_info(h);
  lfs_info("%s", path);
  lfs_info("  format       : %s, version %d", LFS_CKPT_FORMAT, LFS_CKPT_FORMAT_VERSION);
  if (m->step)
    lfs_info("  position     : epoch %lld, step %lld (stopped inside the epoch)",
             (long long)m->epoch + 1, (long long)m->step);
  else
    lfs_info("  position     : after epoch %lld", (long long)m->epoch);
  lfs_info("  written      : %s by %d rank%s", m->created ? m->created : "(no time recorded)",
           m->world_size, m->world_size == 1 ? "" : "s");
  lfs_config *cfg = lfs_config_new();
  if (lfs_config_load_stored(cfg, m->config, path, err, sizeof err) == 0)
    lfs_info("  run          : model %s, loss %s, seed %lld, %lld epochs",
             lfs_config_string(cfg, "model.arch"),
             lfs_ckpt_has(h, "search") ? "searched" : lfs_config_string(cfg, "head.loss"),
             (long long)lfs_config_int(cfg, "run.seed"), (long long)lfs_config_int(cfg, "optim.epochs"));
  lfs_config_free(cfg);
  int ndim = 0;
  int64_t dims[LFS_CKPT_MAX_DIMS], steps = 0;
  if (lfs_ckpt_has(h, "model")) {
    lfs_info("  model        : %d tensors (parameters and BN statistics), momentum for %d",
             count_entries(h, "model"), count_entries(h, "optim"));
    if (lfs_ckpt_array_shape(h, "head/weight", &ndim, dims, err, sizeof err) == 0 && ndim == 2)
      lfs_info("  head         : %lld classes x %lld", (long long)dims[0], (long long)dims[1]);
    if (lfs_ckpt_get_int(h, "", "optimizer_steps", &steps, err, sizeof err) == 0)
      lfs_info("  optimizer    : %lld steps", (long long)steps);
  }
  if (lfs_ckpt_has(h, "search")) describe_search(h);
  lfs_ckpt_close(h);
}
