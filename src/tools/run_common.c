/* run_common.c: helpers shared by `lfsearch train` and `lfsearch search` (see
 * run_common.h). */
#include "tools/run_common.h"

#include <errno.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "lfs/checkpoint.h"
#include "lfs/dataset.h"
#include "lfs/eval.h"
#include "lfs/log.h"
#include "lfs/runtime.h"
#include "lfs/timer.h"
#include "tools/commands.h"

lfs_config *lfs_run_parse(const char *command, void (*usage)(void), int argc, char **argv,
                          const char **resume, char *ckpt_dir, char *runlog_path) {
  for (int i = 1; i < argc; i++)
    if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) usage(), exit(0);
  lfs_config *cfg = lfs_cli_config(&argc, argv);
  int kept = 1;
  *resume = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--resume")) {
      if (i + 1 >= argc) lfs_user_error("--resume needs auto or a checkpoint file");
      *resume = argv[++i];
    } else {
      argv[kept++] = argv[i];
    }
  }
  lfs_cli_no_extra(command, kept, argv);
  const char *out = lfs_config_string(cfg, "run.out_dir");
  lfs_run_join(ckpt_dir, 1024, out, lfs_config_string(cfg, "checkpoint.dir"));
  lfs_run_join(runlog_path, 1024, out, "run.h5");
  return cfg;
}

void lfs_run_make_dir(const char *dir) {
  char path[1024];
  snprintf(path, sizeof path, "%s", dir);
  for (char *p = path + 1; *p; p++)
    if (*p == '/') {
      *p = '\0';
      mkdir(path, 0777);
      *p = '/';
    }
  if (mkdir(path, 0777) != 0 && errno != EEXIST) lfs_user_error_local("cannot create %s: %m", path);
}

void lfs_run_join(char *out, size_t len, const char *dir, const char *name) {
  if (name[0] == '/')
    snprintf(out, len, "%s", name);
  else
    snprintf(out, len, "%s/%s", dir, name);
}

int32_t lfs_run_training_set(const lfs_config *cfg, int *size, int64_t *count) {
  const char *path = lfs_config_string(cfg, "data.train");
  if (!path[0]) lfs_user_error("[data] train is not set: the training dataset (e.g. from `lfsearch synth`)");
  char err[1024];
  lfs_dataset *ds = lfs_dataset_open(path, err, sizeof err);
  if (!ds) lfs_user_error("[data] train: %s", err);
  const int32_t k = lfs_dataset_classes(ds);
  *size = lfs_dataset_height(ds);
  *count = lfs_dataset_count(ds);
  lfs_dataset_close(ds);
  if (*size != lfs_config_int(cfg, "data.image_size"))
    lfs_user_error("[data] train has %dx%d images but [data] image_size = %lld", *size, *size,
                   (long long)lfs_config_int(cfg, "data.image_size"));
  const int64_t batch = lfs_config_int(cfg, "data.batch_size");
  if (*count < batch)
    lfs_user_error("[data] train has %lld images, fewer than [data] batch_size = %lld",
                   (long long)*count, (long long)batch);
  return k;
}

int lfs_run_any_rank(int mine) {
  int any = 0;
  LFS_MPI_CHECK(MPI_Allreduce(&mine, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD));
  return any;
}

char *lfs_run_resume_path(const char *resume, const char *ckpt_dir) {
  if (!resume) return NULL;
  if (strcmp(resume, "auto")) return strdup(resume);
  char err[1024], *path = NULL;
  if (lfs_ckpt_newest(ckpt_dir, &path, err, sizeof err) < 0) lfs_user_error("--resume: %s", err);
  if (!path) lfs_info("--resume auto: no checkpoint in %s, starting from scratch", ckpt_dir);
  return path;
}

static void close_loader(void *l) { lfs_loader_close(l); }

lfs_loader *lfs_run_open_loader(const lfs_config *cfg, int rank, int ranks) {
  char err[1024];
  const lfs_loader_cfg lc = {.path = lfs_config_string(cfg, "data.train"),
                             .global_batch = (int)lfs_config_int(cfg, "data.batch_size"),
                             .rank = rank, .ranks = ranks,
                             .seed = (uint64_t)lfs_config_int(cfg, "run.seed"),
                             .flip = lfs_config_bool(cfg, "data.flip"), .prefetch = 2};
  lfs_loader *l = lfs_loader_open(&lc, err, sizeof err);
  if (lfs_run_any_rank(!l)) lfs_user_error("[data] train: %s", l ? "another rank could not open it" : err);
  lfs_on_user_exit(close_loader, l); /* its prefetch thread must stop before HDF5 goes */
  return l;
}

void lfs_run_close_loader(lfs_loader *l) {
  lfs_on_user_exit_remove(close_loader, l);
  lfs_loader_close(l);
}

double lfs_run_verify(lfs_trainer *t, const char *path, const char *label) {
  char err[1024], name[128], line[LFS_VERIFY_FORMAT_MAX + 128];
  lfs_verify_result res;
  if (lfs_trainer_verify(t, path, &res, name, sizeof name, err, sizeof err) != 0)
    lfs_user_error("verification: %s", err);
  if (label) {
    lfs_verify_format_line(line, sizeof line, name, &res);
    lfs_info("%s  %s", label, line);
  }
  return res.acc_mean;
}

int lfs_run_stop_requested(int64_t epoch, int64_t step) {
  if (!lfs_run_any_rank(lfs_signal_pending() != 0)) return 0;
  lfs_info("stop signal: writing a checkpoint at epoch %lld, step %lld", (long long)epoch,
           (long long)step);
  return 1;
}

lfs_runlog *lfs_run_open_log(const char *path, const lfs_runlog_spec *spec, int resumed,
                             int64_t epochs) {
  char err[1024];
  lfs_runlog *log = resumed ? lfs_runlog_resume(path, spec, epochs, err, sizeof err)
                            : lfs_runlog_create(path, spec, err, sizeof err);
  if (!log) lfs_user_error_local("run log: %s", err);
  return log;
}

void lfs_run_progress(const char *prefix, int64_t epoch, int64_t epochs, int64_t step,
                      int64_t steps, double loss, double lr, int global_batch,
                      const lfs_epoch_meter *m) {
  const double elapsed = lfs_now() - m->start, rate = m->images / (elapsed > 0 ? elapsed : 1e-9);
  const double per_image = 1.0 / (rate > 0 ? rate : 1);
  const double left = ((double)(steps - step) + (double)(epochs - epoch - 1) * steps) *
                      global_batch * per_image;
  lfs_info("%sepoch %lld/%lld  step %lld/%lld  loss %.4f  lr %.4g  %.1f img/s  ETA %.0fs",
           prefix ? prefix : "", (long long)epoch + 1, (long long)epochs, (long long)step,
           (long long)steps, loss, lr, rate, left);
}
