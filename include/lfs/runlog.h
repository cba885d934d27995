/* runlog.h: the run log run.h5 (DESIGN §6): one row per epoch of a `train` or
 * `search` run, for the analysis scripts and `lfsearch info`.
 *
 * Layout (format "lfsearch-run", format_version 1). Root attributes format,
 * format_version, M (candidates, >= 1), d (policy dimension, >= 0), config (the
 * resolved INI text). Datasets, all with E rows (E = epochs logged), chunked and
 * extendible along the first axis:
 *   /epoch              int32   [E]        0, 1, ..., E-1
 *   /u                  float64 [E, M]     sampled policy vector of each candidate
 *                               [E, M, d]  (when d > 1)
 *   /a                  float64 [E, M]     the modulation a each candidate trained with
 *   /reward             float64 [E, M]     (-inf for a diverged candidate)
 *   /train_loss         float64 [E, M]     mean training loss over the epoch
 *   /chosen             int32   [E]        candidate whose weights every candidate takes
 *   /mu, /sigma         float64 [E, d]     the policy u was drawn from
 *   /lr                 float64 [E]        learning rate at the epoch's last step
 *   /wall_seconds       float64 [E]        wall time of the epoch
 *   /images_per_second  float64 [E]        training throughput over the epoch
 *   /metrics/<name>     float64 [E]        any further per-epoch numbers named at
 *                                          creation (e.g. "synth_val_acc")
 * With d = 0 (`lfsearch train`: one fixed loss, M = 1, no policy) /u, /a, /mu and
 * /sigma are absent; /reward is then whatever the trainer scores an epoch by
 * (validation accuracy), /chosen is 0.
 *
 * Durability: every append rewrites the whole (small) file under a temporary
 * name, fsyncs it and renames it over run.h5. A crash at any moment, SIGKILL
 * included, leaves the previous or the new complete file, never a damaged one, and
 * no file handle is held between epochs, so readers (h5py, `lfsearch info`) may
 * open run.h5 while the run goes on. The rows live in memory (a few kB per epoch).
 * HDF5 calls take lfs_h5_lock(). Errors: -1 or NULL with "FILE: what: problem". */
#ifndef LFS_RUNLOG_H
#define LFS_RUNLOG_H

#include <stddef.h>
#include <stdint.h>

#define LFS_RUNLOG_FORMAT "lfsearch-run"
#define LFS_RUNLOG_FORMAT_VERSION 1
#define LFS_RUNLOG_MAX_METRICS 64

typedef struct lfs_runlog lfs_runlog;

typedef struct {
  int M, d;
  const char *config;          /* resolved INI text; NULL is "" */
  int nmetrics;                /* <= LFS_RUNLOG_MAX_METRICS */
  const char *const *metrics;  /* [nmetrics] names: non-empty, no '/', distinct */
} lfs_runlog_spec;

/* One epoch. Arrays the layout omits (d = 0) are not read and may be NULL. */
typedef struct {
  int64_t epoch;          /* must equal the number of rows already logged */
  const double *u;        /* [M, d] */
  const double *a;        /* [M] */
  const double *reward;   /* [M] */
  const double *loss;     /* [M] */
  int chosen;             /* in [0, M) */
  const double *mu;       /* [d] */
  const double *sigma;    /* [d] */
  double lr, wall_seconds, images_per_second;
  const double *metrics;  /* [nmetrics], in the order of the spec (reader: of lfs_runlog_metric) */
} lfs_runlog_row;

/* Starts a new run log. It is an error if path exists (a fresh run never
 * overwrites an earlier run's log; remove it or resume). */
lfs_runlog *lfs_runlog_create(const char *path, const lfs_runlog_spec *spec, char *err,
                              size_t errlen);
/* Reopens the run log of a run resumed from a checkpoint at epoch `epochs` (rows
 * 0 .. epochs-1 are logged): rows beyond are dropped (and the file rewritten at
 * once), fewer rows, a missing file, or an M, d or metric set that differs from
 * spec are errors. The config attribute becomes spec->config. */
lfs_runlog *lfs_runlog_resume(const char *path, const lfs_runlog_spec *spec, int64_t epochs,
                              char *err, size_t errlen);
/* Adds one row and writes the file (see Durability). On failure the row is not
 * added and run.h5 holds the previous rows. */
int lfs_runlog_append(lfs_runlog *log, const lfs_runlog_row *row, char *err, size_t errlen);

/* Reads a run log (validating format, version, types and shapes). */
lfs_runlog *lfs_runlog_open(const char *path, char *err, size_t errlen);
int64_t lfs_runlog_epochs(const lfs_runlog *log);
int lfs_runlog_M(const lfs_runlog *log);
int lfs_runlog_d(const lfs_runlog *log);
const char *lfs_runlog_config(const lfs_runlog *log);
int lfs_runlog_nmetrics(const lfs_runlog *log);
const char *lfs_runlog_metric(const lfs_runlog *log, int i);
/* Row e (0 <= e < epochs); the pointers are into the log and valid until the
 * next append or close. */
void lfs_runlog_get(const lfs_runlog *log, int64_t e, lfs_runlog_row *row);

/* Frees the log (the file is already complete on disk). NULL is ignored. */
void lfs_runlog_close(lfs_runlog *log);

#endif
