/* cmd_train.c: `lfsearch train`: one fixed loss, data parallel over all ranks.
 * Each epoch: the training steps with a progress line, verification on the
 * configured pair sets, a checkpoint and a run-log row. SIGUSR1/SIGTERM write a
 * mid-epoch checkpoint and exit 3; `--resume auto` continues from the newest
 * complete checkpoint (exactly: the data order is a function of (epoch, step)). */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lfs/checkpoint.h"
#include "lfs/dataset.h"
#include "lfs/loader.h"
#include "lfs/log.h"
#include "lfs/runlog.h"
#include "lfs/runtime.h"
#include "lfs/timer.h"
#include "lfs/trainer.h"
#include "tools/commands.h"
#include "tools/run_common.h"

typedef struct {
  lfs_config *cfg;
  char *config_text;
  const char *resume; /* NULL, "auto" or a path */
  char ckpt_dir[1024], runlog_path[1024];
  const char *pairs[2], *pair_metric[2];
  int npairs;
  int resumed; /* a checkpoint was loaded */
  int64_t epochs, max_steps;
  int log_every, keep;
} train_run;

static void usage(void) {
  lfs_info("usage: lfsearch train -c FILE [--set section.key=value ...] [--device cpu|cuda]\n"
           "       [--resume auto|CHECKPOINT]\n"
           "  trains one fixed loss ([head] loss) on [data] train, data parallel over the ranks;\n"
           "  verifies on [data] val_pairs and test_pairs after each epoch, writes checkpoints to\n"
           "  [run] out_dir/[checkpoint] dir and the run log to [run] out_dir/run.h5.\n"
           "  SIGUSR1/SIGTERM: checkpoint at the next step and exit 3; --resume auto continues.");
}

static void parse(train_run *r, int argc, char **argv) {
  memset(r, 0, sizeof *r);
  r->cfg = lfs_run_parse("train", usage, argc, argv, &r->resume, r->ckpt_dir, r->runlog_path);
  const lfs_config *c = r->cfg;
  const char *keys[2] = {"data.val_pairs", "data.test_pairs"}, *metric[2] = {"val_acc", "test_acc"};
  for (int k = 0; k < 2; k++)
    if (lfs_config_string(c, keys[k])[0]) {
      r->pair_metric[r->npairs] = metric[k];
      r->pairs[r->npairs++] = lfs_config_string(c, keys[k]);
    }
  r->epochs = lfs_config_int(c, "optim.epochs");
  r->max_steps = lfs_config_int(c, "run.steps");
  r->log_every = (int)lfs_config_int(c, "run.log_every");
  r->keep = (int)lfs_config_int(c, "checkpoint.keep");
  r->config_text = lfs_config_dump(c);
}

/* Loads --resume; returns the (epoch, step) to continue from. */
static void resume_from(train_run *r, lfs_trainer *t, int64_t *epoch, int64_t *step) {
  *epoch = 0, *step = 0;
  char err[1024], *path = lfs_run_resume_path(r->resume, r->ckpt_dir);
  if (!path) return;
  lfs_ckpt *h = lfs_ckpt_open(path, err, sizeof err);
  if (!h) lfs_user_error("--resume: %s", err);
  *epoch = lfs_ckpt_info(h)->epoch, *step = lfs_ckpt_info(h)->step;
  lfs_ckpt_close(h);
  if (lfs_run_any_rank(lfs_trainer_load(t, path, err, sizeof err) != 0))
    lfs_user_error("--resume: %s", err);
  lfs_info("resumed from %s at epoch %lld, step %lld", path, (long long)*epoch, (long long)*step);
  r->resumed = 1;
  free(path);
}

static void checkpoint(train_run *r, lfs_trainer *t, int64_t epoch, int64_t step) {
  char err[1024], *path = lfs_ckpt_path(r->ckpt_dir, epoch, step);
  if (lfs_trainer_save(t, path, epoch, step, r->config_text, err, sizeof err) != 0)
    lfs_user_error("checkpoint: %s", err);
  if (t->rank == 0 && lfs_ckpt_prune(r->ckpt_dir, r->keep, err, sizeof err) < 0)
    lfs_warn("pruning checkpoints: %s", err);
  free(path);
}

/* Verification on each pair set: prints a line per set; returns the first set's accuracy. */
static double verify_all(train_run *r, lfs_trainer *t, int64_t epoch, double *metrics) {
  char label[64];
  snprintf(label, sizeof label, "epoch %lld", (long long)epoch);
  for (int k = 0; k < r->npairs; k++) metrics[k] = lfs_run_verify(t, r->pairs[k], label);
  return r->npairs ? metrics[0] : NAN;
}

/* One epoch from `step`; returns 0, or LFS_EXIT_SIGNAL after a stop checkpoint. */
static int run_epoch(train_run *r, lfs_trainer *t, lfs_loader *l, int64_t epoch, int64_t step,
                     int64_t *total_steps, lfs_epoch_meter *m) {
  const int64_t steps = lfs_loader_steps_per_epoch(l);
  float *x = lfs_trainer_input_alloc(t);
  int32_t *labels = lfs_malloc(sizeof(int32_t) * t->local_batch);
  char err[1024];
  int rc = 0;
  lfs_loader_seek(l, epoch, step);
  for (; step < steps; step++) {
    if (lfs_run_stop_requested(epoch, step)) {
      checkpoint(r, t, epoch, step);
      rc = LFS_EXIT_SIGNAL;
      break;
    }
    if (r->max_steps && *total_steps >= r->max_steps) break;
    if (lfs_run_any_rank(lfs_loader_next(l, x, labels, NULL, NULL, NULL, err, sizeof err) != 0))
      lfs_user_error_local("[data] train: %s", err);
    const double loss = lfs_trainer_step(t, x, labels, NULL);
    if (!isfinite(loss))
      lfs_user_error("the loss diverged (%g) at epoch %lld, step %lld: lower [optim] lr or check the data",
                     loss, (long long)epoch, (long long)step);
    m->loss_sum += loss, m->steps++, m->images += t->global_batch, (*total_steps)++;
    if ((step + 1) % r->log_every == 0 || step + 1 == steps)
      lfs_run_progress(NULL, epoch, r->epochs, step + 1, steps, loss, t->lr, t->global_batch, m);
  }
  lfs_trainer_input_free(t, x);
  free(labels);
  return rc;
}

static lfs_runlog *open_runlog(train_run *r, int64_t epoch) {
  const lfs_runlog_spec spec = {.M = 1, .d = 0, .config = r->config_text, .nmetrics = r->npairs,
                                .metrics = r->pair_metric};
  return lfs_run_open_log(r->runlog_path, &spec, r->resumed, epoch);
}

static void log_epoch(train_run *r, lfs_runlog *log, const lfs_trainer *t, int64_t epoch,
                      const lfs_epoch_meter *m, double reward, const double *metrics) {
  const double loss = m->steps ? m->loss_sum / m->steps : NAN, chosen_reward = reward;
  const double wall = lfs_now() - m->start;
  const lfs_runlog_row row = {.epoch = epoch, .reward = &chosen_reward, .loss = &loss, .chosen = 0,
                              .lr = t->lr, .wall_seconds = wall,
                              .images_per_second = m->images / (wall > 0 ? wall : 1e-9),
                              .metrics = metrics};
  char err[1024];
  if (lfs_runlog_append(log, &row, err, sizeof err) != 0) lfs_user_error_local("run log: %s", err);
  (void)r;
}

int lfs_cmd_train(int argc, char **argv) {
  train_run r;
  parse(&r, argc, argv);
  lfs_set_threads((int)lfs_config_int(r.cfg, "run.threads"));
  int size = 0;
  int64_t images = 0;
  const int32_t classes = lfs_run_training_set(r.cfg, &size, &images);
  char err[1024];
  const int global_batch = (int)lfs_config_int(r.cfg, "data.batch_size");
  /* the loader drops each epoch's last partial batch */
  lfs_trainer t;
  if (lfs_run_any_rank(lfs_trainer_init(&t, r.cfg, classes, images / global_batch, MPI_COMM_WORLD,
                                        err, sizeof err) != 0))
    lfs_user_error("%s", err);
  lfs_loader *l = lfs_run_open_loader(r.cfg, lfs_world_rank(), lfs_world_size());
  if (lfs_world_rank() == 0) lfs_run_make_dir(r.ckpt_dir);
  MPI_Barrier(MPI_COMM_WORLD);
  int64_t epoch, step, total = 0;
  resume_from(&r, &t, &epoch, &step);
  lfs_info("lfsearch train: %s, loss %s, %d classes, %dx%d, global batch %d on %d ranks, "
           "%lld steps/epoch, %zu + %lld parameters",
           t.arch, lfs_config_string(r.cfg, "head.loss"), t.K, size, size, t.global_batch, t.ranks,
           (long long)lfs_loader_steps_per_epoch(l), lfs_params_trainable(&t.g.params),
           (long long)t.K * t.D);
  lfs_trainer_announce(&t);
  lfs_runlog *log = lfs_world_rank() == 0 ? open_runlog(&r, epoch) : NULL;
  int rc = 0;
  for (; epoch < r.epochs && rc == 0; epoch++, step = 0) {
    lfs_epoch_meter m = {.start = lfs_now()};
    rc = run_epoch(&r, &t, l, epoch, step, &total, &m);
    if (rc) break;
    double metrics[2] = {NAN, NAN};
    const double reward = verify_all(&r, &t, epoch + 1, metrics);
    checkpoint(&r, &t, epoch + 1, 0);
    if (log) log_epoch(&r, log, &t, epoch, &m, reward, metrics);
    if (r.max_steps && total >= r.max_steps) {
      epoch++;
      break;
    }
  }
  if (log) lfs_runlog_close(log);
  lfs_run_close_loader(l);
  lfs_trainer_free(&t);
  free(r.config_text);
  lfs_config_free(r.cfg);
  return rc;
}
