/* run_common.h: what `lfsearch train` and `lfsearch search` share: output
 * directories, the training set's shape, rank agreement, --resume, the data
 * loader, verification lines and the progress line. */
#ifndef LFS_RUN_COMMON_H
#define LFS_RUN_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "lfs/config.h"
#include "lfs/loader.h"
#include "lfs/runlog.h"
#include "lfs/trainer.h"

/* The command line of a run: -h/--help prints usage() and exits 0; -c FILE and
 * --set build the configuration; --resume auto|CHECKPOINT sets *resume (NULL if
 * absent); anything else is a usage error naming `command`. The run's paths
 * follow from [run] out_dir: ckpt_dir ([checkpoint] dir under it) and
 * runlog_path (run.h5), each of 1024 bytes. */
lfs_config *lfs_run_parse(const char *command, void (*usage)(void), int argc, char **argv,
                          const char **resume, char *ckpt_dir, char *runlog_path);
/* Creates dir and its parents (a user error if that fails). */
void lfs_run_make_dir(const char *dir);
/* out = name if it is absolute, else dir/name. */
void lfs_run_join(char *out, size_t len, const char *dir, const char *name);
/* Classes, image side and image count of the training set ([data] train); checks
 * them against [data] image_size and batch_size (user errors naming the key). */
int32_t lfs_run_training_set(const lfs_config *cfg, int *size, int64_t *count);
/* 1 on every rank of MPI_COMM_WORLD if `mine` is non-zero on any. */
int lfs_run_any_rank(int mine);
/* The checkpoint --resume names: NULL for a fresh start (no option, or "auto"
 * with no checkpoint in ckpt_dir), else a malloc'd path. User errors otherwise. */
char *lfs_run_resume_path(const char *resume, const char *ckpt_dir);
/* The training set's loader for `ranks` ranks of which this is `rank`; closed on
 * a user-error exit too. */
lfs_loader *lfs_run_open_loader(const lfs_config *cfg, int rank, int ranks);
void lfs_run_close_loader(lfs_loader *l);
/* Verifies t on the pair set at path (collective over t's ranks) and, with a
 * label, prints "<label>  <result line>" on world rank 0; returns the mean
 * accuracy (a user error if the set cannot be read). */
double lfs_run_verify(lfs_trainer *t, const char *path, const char *label);

/* Whether any rank got SIGUSR1/SIGTERM (collective over MPI_COMM_WORLD); if so,
 * says on rank 0 that a checkpoint at (epoch, step) follows. */
int lfs_run_stop_requested(int64_t epoch, int64_t step);
/* The run log at path: a fresh one, or the one of a run resumed at `epochs`
 * (rows beyond dropped). A user error on rank 0's failure. */
lfs_runlog *lfs_run_open_log(const char *path, const lfs_runlog_spec *spec, int resumed,
                             int64_t epochs);

/* Throughput of an epoch so far. */
typedef struct {
  double loss_sum, start, images;
  int64_t steps;
} lfs_epoch_meter;
/* "epoch E/EPOCHS  step S/STEPS  loss L  lr R  N img/s  ETA Ts" (prefix, if any, first). */
void lfs_run_progress(const char *prefix, int64_t epoch, int64_t epochs, int64_t step,
                      int64_t steps, double loss, double lr, int global_batch,
                      const lfs_epoch_meter *m);

#endif
