/* runlog.c: the run log run.h5 (layout and durability in include/lfs/runlog.h).
 *
 * The rows are kept in memory, column by column (row-major within a column:
 * u is [rows][M][d]); every change writes the whole file to a temporary name and
 * renames it into place with the data layer's helpers (src/data/data_internal.h).
 * A table of columns drives writing and reading alike. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/data_internal.h"
#include "lfs/fileio.h"
#include "lfs/log.h"
#include "lfs/runlog.h"

#define MAX_M 1000000
#define MAX_D 100000

struct lfs_runlog {
  char *path;
  int M, d;
  char *config;
  int nmetrics;
  char **metrics;
  int64_t rows, cap;
  int32_t *epoch, *chosen;                        /* [cap] */
  double *u, *a, *reward, *loss, *mu, *sigma;     /* [cap][width] */
  double *lr, *wall, *ips;                        /* [cap] */
  double *metric;                                 /* [cap][nmetrics] */
};

/* One dataset: per-row shape inner[0..ndim) (rank ndim + 1 in the file). */
typedef struct {
  const char *name;
  int is_int;
  int ndim;
  hsize_t inner[2];
  void **store;
} column;

/* The columns present for this M and d; returns their count. */
static int columns(lfs_runlog *log, column *c) {
  int n = 0;
  const hsize_t M = (hsize_t)log->M, d = (hsize_t)log->d;
  c[n++] = (column){"/epoch", 1, 0, {0, 0}, (void **)&log->epoch};
  if (d > 0) {
    if (d == 1) c[n++] = (column){"/u", 0, 1, {M, 0}, (void **)&log->u};
    else c[n++] = (column){"/u", 0, 2, {M, d}, (void **)&log->u};
    c[n++] = (column){"/a", 0, 1, {M, 0}, (void **)&log->a};
  }
  c[n++] = (column){"/reward", 0, 1, {M, 0}, (void **)&log->reward};
  c[n++] = (column){"/train_loss", 0, 1, {M, 0}, (void **)&log->loss};
  c[n++] = (column){"/chosen", 1, 0, {0, 0}, (void **)&log->chosen};
  if (d > 0) {
    c[n++] = (column){"/mu", 0, 1, {d, 0}, (void **)&log->mu};
    c[n++] = (column){"/sigma", 0, 1, {d, 0}, (void **)&log->sigma};
  }
  c[n++] = (column){"/lr", 0, 0, {0, 0}, (void **)&log->lr};
  c[n++] = (column){"/wall_seconds", 0, 0, {0, 0}, (void **)&log->wall};
  c[n++] = (column){"/images_per_second", 0, 0, {0, 0}, (void **)&log->ips};
  return n;
}

#define MAX_COLUMNS 16

static size_t width_of(const column *c) {
  size_t w = 1;
  for (int i = 0; i < c->ndim; i++) w *= (size_t)c->inner[i];
  return w;
}

static size_t elem_size(const column *c) { return c->is_int ? sizeof(int32_t) : sizeof(double); }

/* Room for `need` rows in every column. */
static void reserve(lfs_runlog *log, int64_t need) {
  if (need <= log->cap) return;
  int64_t cap = log->cap ? log->cap : 16;
  while (cap < need) cap *= 2;
  column c[MAX_COLUMNS];
  int n = columns(log, c);
  for (int i = 0; i < n; i++) {
    size_t bytes = (size_t)cap * width_of(&c[i]) * elem_size(&c[i]);
    void *p = realloc(*c[i].store, bytes ? bytes : 1);
    if (!p) lfs_fatal("out of memory growing the run log to %lld rows", (long long)cap);
    *c[i].store = p;
  }
  size_t mb = (size_t)cap * (size_t)(log->nmetrics ? log->nmetrics : 1) * sizeof(double);
  double *m = realloc(log->metric, mb);
  if (!m) lfs_fatal("out of memory growing the run log to %lld rows", (long long)cap);
  log->metric = m;
  log->cap = cap;
}

static void free_log(lfs_runlog *log) {
  if (!log) return;
  column c[MAX_COLUMNS];
  int n = columns(log, c);
  for (int i = 0; i < n; i++) free(*c[i].store);
  free(log->metric);
  for (int i = 0; i < log->nmetrics; i++) free(log->metrics[i]);
  free(log->metrics);
  free(log->config);
  free(log->path);
  free(log);
}

static char *dup_str(const char *s) {
  char *d = strdup(s ? s : "");
  if (!d) lfs_fatal("out of memory");
  return d;
}

static int check_spec(const char *path, const lfs_runlog_spec *s, char *err, size_t errlen) {
  if (s->M < 1 || s->M > MAX_M) return lfs_h5_fail(err, errlen, path, "M = %d is outside [1, %d]", s->M, MAX_M);
  if (s->d < 0 || s->d > MAX_D) return lfs_h5_fail(err, errlen, path, "d = %d is outside [0, %d]", s->d, MAX_D);
  if (s->nmetrics < 0 || s->nmetrics > LFS_RUNLOG_MAX_METRICS)
    return lfs_h5_fail(err, errlen, path, "%d metrics, at most %d", s->nmetrics, LFS_RUNLOG_MAX_METRICS);
  for (int i = 0; i < s->nmetrics; i++) {
    const char *m = s->metrics[i];
    if (!m || !m[0] || strchr(m, '/') || !strcmp(m, ".") || !strcmp(m, "..") || strlen(m) > 200)
      return lfs_h5_fail(err, errlen, path, "bad metric name \"%s\"", m ? m : "(null)");
    for (int k = 0; k < i; k++)
      if (!strcmp(s->metrics[k], m)) return lfs_h5_fail(err, errlen, path, "metric \"%s\" named twice", m);
  }
  return 0;
}

static lfs_runlog *new_log(const char *path, int M, int d, const char *config, int nmetrics) {
  lfs_runlog *log = lfs_calloc(1, sizeof *log);
  log->path = dup_str(path);
  log->M = M;
  log->d = d;
  log->config = dup_str(config);
  log->nmetrics = nmetrics;
  log->metrics = lfs_calloc(nmetrics > 0 ? (size_t)nmetrics : 1, sizeof *log->metrics);
  reserve(log, 1);
  return log;
}

/* ---- writing the file ---- */

static int write_column(hid_t f, const char *path, const char *name, int is_int, int ndim,
                        const hsize_t *inner, int64_t rows, const void *data, char *err,
                        size_t errlen) {
  hsize_t dims[3], maxdims[3], chunk[3];
  size_t width = 1;
  dims[0] = (hsize_t)rows;
  maxdims[0] = H5S_UNLIMITED;
  for (int i = 0; i < ndim; i++) {
    dims[i + 1] = maxdims[i + 1] = chunk[i + 1] = inner[i];
    width *= (size_t)inner[i];
  }
  /* chunks of whole rows, about 4 kB: a chunk is stored whole, and a run has
   * tens to hundreds of rows */
  size_t per_chunk = 4096 / (width * (is_int ? 4 : 8));
  chunk[0] = per_chunk < 1 ? 1 : per_chunk > 64 ? 64 : per_chunk;
  hid_t ft = is_int ? H5T_STD_I32LE : H5T_IEEE_F64LE, mt = is_int ? H5T_NATIVE_INT32 : H5T_NATIVE_DOUBLE;
  hid_t sp = H5Screate_simple(ndim + 1, dims, maxdims), dcpl = lfs_h5_dcpl(), ds = -1;
  int rc = 0;
  if (sp < 0 || dcpl < 0 || H5Pset_chunk(dcpl, ndim + 1, chunk) < 0 ||
      H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER) < 0 ||
      (ds = H5Dcreate2(f, name, ft, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT)) < 0 ||
      (rows > 0 && H5Dwrite(ds, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0))
    rc = lfs_h5_fail_lib(err, errlen, path, "cannot write dataset %s", name);
  lfs_h5_close_id(ds);
  lfs_h5_close_id(dcpl);
  lfs_h5_close_id(sp);
  return rc;
}

static int write_metrics(lfs_runlog *log, hid_t f, char *err, size_t errlen) {
  hid_t gcpl = lfs_h5_gcpl(), g = -1;
  if (gcpl < 0 || (g = H5Gcreate2(f, "/metrics", H5P_DEFAULT, gcpl, H5P_DEFAULT)) < 0) {
    lfs_h5_close_id(gcpl);
    return lfs_h5_fail_lib(err, errlen, log->path, "cannot create group /metrics");
  }
  H5Pclose(gcpl);
  H5Gclose(g);
  double *col = lfs_malloc((size_t)(log->rows > 0 ? log->rows : 1) * sizeof *col);
  int rc = 0;
  for (int k = 0; k < log->nmetrics && rc == 0; k++) {
    char name[256];
    snprintf(name, sizeof name, "/metrics/%s", log->metrics[k]);
    for (int64_t r = 0; r < log->rows; r++) col[r] = log->metric[r * log->nmetrics + k];
    rc = write_column(f, log->path, name, 0, 0, NULL, log->rows, col, err, errlen);
  }
  free(col);
  return rc;
}

/* Writes the whole log to a temporary file and renames it over the log. */
static int write_file(lfs_runlog *log, char *err, size_t errlen) {
  const char *p = log->path;
  char *tmp = NULL;
  lfs_h5_lock();
  hid_t f = lfs_h5_create_tmp(p, &tmp, err, errlen);
  int rc = f < 0 ? -1 : 0;
  if (rc == 0 &&
      (lfs_h5_write_str_attr(f, p, "format", LFS_RUNLOG_FORMAT, err, errlen) != 0 ||
       lfs_h5_write_int_attr(f, p, "format_version", LFS_RUNLOG_FORMAT_VERSION, err, errlen) != 0 ||
       lfs_h5_write_int_attr(f, p, "M", log->M, err, errlen) != 0 ||
       lfs_h5_write_int_attr(f, p, "d", log->d, err, errlen) != 0 ||
       lfs_h5_write_str_attr(f, p, "config", log->config, err, errlen) != 0))
    rc = -1;
  column c[MAX_COLUMNS];
  int n = columns(log, c);
  for (int i = 0; rc == 0 && i < n; i++)
    rc = write_column(f, p, c[i].name, c[i].is_int, c[i].ndim, c[i].inner, log->rows, *c[i].store,
                      err, errlen);
  if (rc == 0) rc = write_metrics(log, f, err, errlen);
  if (rc == 0) rc = lfs_h5_commit_tmp(f, tmp, p, err, errlen);
  else if (f >= 0) lfs_h5_discard_tmp(f, tmp);
  lfs_h5_unlock();
  free(tmp);
  if (rc == 0) lfs_sync_dir_of(p);
  return rc;
}

lfs_runlog *lfs_runlog_create(const char *path, const lfs_runlog_spec *spec, char *err,
                              size_t errlen) {
  if (check_spec(path, spec, err, errlen) != 0) return NULL;
  struct stat st;
  if (stat(path, &st) == 0) {
    lfs_h5_fail(err, errlen, path, "a run log is already there: resume the run, or remove it");
    return NULL;
  }
  lfs_runlog *log = new_log(path, spec->M, spec->d, spec->config, spec->nmetrics);
  for (int i = 0; i < spec->nmetrics; i++) log->metrics[i] = dup_str(spec->metrics[i]);
  if (write_file(log, err, errlen) != 0) {
    free_log(log);
    return NULL;
  }
  return log;
}

int lfs_runlog_append(lfs_runlog *log, const lfs_runlog_row *row, char *err, size_t errlen) {
  const int M = log->M, d = log->d;
  if (row->epoch != log->rows)
    return lfs_h5_fail(err, errlen, log->path, "row for epoch %lld, but %lld epochs are logged",
                       (long long)row->epoch, (long long)log->rows);
  if (row->chosen < 0 || row->chosen >= M)
    return lfs_h5_fail(err, errlen, log->path, "chosen candidate %d is outside [0, %d)", row->chosen, M);
  if (!row->reward || !row->loss || (d > 0 && (!row->u || !row->a || !row->mu || !row->sigma)) ||
      (log->nmetrics > 0 && !row->metrics))
    return lfs_h5_fail(err, errlen, log->path, "epoch %lld: a column of the row is missing",
                       (long long)row->epoch);
  reserve(log, log->rows + 1);
  const int64_t r = log->rows;
  log->epoch[r] = (int32_t)r;
  log->chosen[r] = row->chosen;
  if (d > 0) {
    memcpy(log->u + r * M * d, row->u, (size_t)M * (size_t)d * sizeof(double));
    memcpy(log->a + r * M, row->a, (size_t)M * sizeof(double));
    memcpy(log->mu + r * d, row->mu, (size_t)d * sizeof(double));
    memcpy(log->sigma + r * d, row->sigma, (size_t)d * sizeof(double));
  }
  memcpy(log->reward + r * M, row->reward, (size_t)M * sizeof(double));
  memcpy(log->loss + r * M, row->loss, (size_t)M * sizeof(double));
  log->lr[r] = row->lr;
  log->wall[r] = row->wall_seconds;
  log->ips[r] = row->images_per_second;
  if (log->nmetrics > 0)
    memcpy(log->metric + r * log->nmetrics, row->metrics, (size_t)log->nmetrics * sizeof(double));
  log->rows++;
  if (write_file(log, err, errlen) != 0) {
    log->rows--;
    return -1;
  }
  return 0;
}

/* ---- reading ---- */

static int read_column(lfs_runlog *log, hid_t f, const column *c, int64_t *rows, char *err,
                       size_t errlen) {
  hsize_t dims[3];
  hid_t ds = lfs_h5_open_checked(f, log->path, c->name, c->is_int ? LFS_H5_I32 : LFS_H5_F64,
                                 c->ndim + 1, dims, err, errlen);
  if (ds < 0) return -1;
  int rc = 0;
  for (int i = 0; i < c->ndim && rc == 0; i++)
    if (dims[i + 1] != c->inner[i])
      rc = lfs_h5_fail(err, errlen, log->path,
                       "dataset %s has %llu in dimension %d, expected %llu (M = %d, d = %d)", c->name,
                       (unsigned long long)dims[i + 1], i + 1, (unsigned long long)c->inner[i],
                       log->M, log->d);
  if (rc == 0 && *rows < 0) {
    if (dims[0] > INT32_MAX) rc = lfs_h5_fail(err, errlen, log->path, "%s: too many rows", c->name);
    else *rows = (int64_t)dims[0], reserve(log, *rows);
  } else if (rc == 0 && dims[0] != (hsize_t)*rows) {
    rc = lfs_h5_fail(err, errlen, log->path, "dataset %s has %llu rows, /epoch has %lld", c->name,
                     (unsigned long long)dims[0], (long long)*rows);
  }
  if (rc == 0 && *rows > 0 &&
      H5Dread(ds, c->is_int ? H5T_NATIVE_INT32 : H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT,
              *c->store) < 0)
    rc = lfs_h5_fail_lib(err, errlen, log->path, "dataset %s: cannot read it", c->name);
  H5Dclose(ds);
  return rc;
}

static herr_t collect_metric(hid_t g, const char *name, const H5L_info_t *info, void *data) {
  (void)g, (void)info;
  lfs_runlog *log = data;
  if (log->nmetrics >= LFS_RUNLOG_MAX_METRICS) return 1; /* stop: reported by the caller */
  log->metrics[log->nmetrics++] = dup_str(name);
  return 0;
}

static int read_metrics(lfs_runlog *log, hid_t f, char *err, size_t errlen) {
  htri_t ex = H5Lexists(f, "/metrics", H5P_DEFAULT);
  if (ex <= 0) return 0; /* none */
  free(log->metrics);
  log->metrics = lfs_calloc(LFS_RUNLOG_MAX_METRICS, sizeof *log->metrics);
  hid_t g = H5Gopen2(f, "/metrics", H5P_DEFAULT);
  hsize_t idx = 0;
  herr_t it = g >= 0 ? H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, &idx, collect_metric, log) : -1;
  lfs_h5_close_id(g);
  if (it < 0) return lfs_h5_fail_lib(err, errlen, log->path, "/metrics: cannot list it");
  if (it > 0) return lfs_h5_fail(err, errlen, log->path, "/metrics has more than %d columns", LFS_RUNLOG_MAX_METRICS);
  log->cap = 0; /* reserve again, now with room for the metrics */
  reserve(log, log->rows > 0 ? log->rows : 1);
  double *col = lfs_malloc((size_t)(log->rows > 0 ? log->rows : 1) * sizeof *col);
  int rc = 0;
  for (int k = 0; k < log->nmetrics && rc == 0; k++) {
    char name[256];
    snprintf(name, sizeof name, "/metrics/%s", log->metrics[k]);
    column mc = {name, 0, 0, {0, 0}, (void **)&col};
    int64_t rows = log->rows;
    rc = read_column(log, f, &mc, &rows, err, errlen);
    for (int64_t r = 0; rc == 0 && r < log->rows; r++) log->metric[r * log->nmetrics + k] = col[r];
  }
  free(col);
  return rc;
}

/* Rows must number epochs 0, 1, ... and name a candidate that exists. */
static int check_rows(lfs_runlog *log, char *err, size_t errlen) {
  for (int64_t r = 0; r < log->rows; r++) {
    if (log->epoch[r] != r)
      return lfs_h5_fail(err, errlen, log->path, "/epoch[%lld] is %d, expected %lld", (long long)r,
                         log->epoch[r], (long long)r);
    if (log->chosen[r] < 0 || log->chosen[r] >= log->M)
      return lfs_h5_fail(err, errlen, log->path, "/chosen[%lld] = %d is outside [0, %d)",
                         (long long)r, log->chosen[r], log->M);
  }
  return 0;
}

static lfs_runlog *read_file(const char *path, char *err, size_t errlen) {
  lfs_h5_lock();
  lfs_runlog *log = NULL;
  hid_t f = lfs_h5_open_read(path, err, errlen);
  int64_t M, d;
  char *config = NULL;
  int rc = f < 0 ? -1 : 0;
  if (rc == 0 &&
      (lfs_h5_check_format_version(f, path, LFS_RUNLOG_FORMAT, LFS_RUNLOG_FORMAT_VERSION, err, errlen) != 0 ||
       lfs_h5_read_int_attr_range(f, path, "M", 1, MAX_M, &M, err, errlen) != 0 ||
       lfs_h5_read_int_attr_range(f, path, "d", 0, MAX_D, &d, err, errlen) != 0 ||
       !(config = lfs_h5_read_str_attr(f, path, "config", err, errlen))))
    rc = -1;
  if (rc == 0) {
    log = new_log(path, (int)M, (int)d, config, 0);
    log->cap = 0; /* the first column sizes the storage */
    column c[MAX_COLUMNS];
    int n = columns(log, c);
    int64_t rows = -1;
    for (int i = 0; rc == 0 && i < n; i++) rc = read_column(log, f, &c[i], &rows, err, errlen);
    if (rc == 0) log->rows = rows;
    if (rc == 0) rc = read_metrics(log, f, err, errlen);
    if (rc == 0) rc = check_rows(log, err, errlen);
  }
  lfs_h5_close_id(f);
  lfs_h5_unlock();
  free(config);
  if (rc != 0) {
    free_log(log);
    return NULL;
  }
  return log;
}

lfs_runlog *lfs_runlog_open(const char *path, char *err, size_t errlen) {
  return read_file(path, err, errlen);
}

/* Puts the metric columns in the spec's order; -1 unless they are the same set. */
static int match_metrics(lfs_runlog *log, const lfs_runlog_spec *spec, char *err, size_t errlen) {
  if (log->nmetrics != spec->nmetrics)
    return lfs_h5_fail(err, errlen, log->path, "the run log has %d metric columns, this run has %d",
                       log->nmetrics, spec->nmetrics);
  int n = log->nmetrics;
  int *from = lfs_calloc(n > 0 ? (size_t)n : 1, sizeof *from);
  for (int k = 0; k < n; k++) {
    from[k] = -1;
    for (int j = 0; j < n; j++)
      if (!strcmp(log->metrics[j], spec->metrics[k])) from[k] = j;
    if (from[k] < 0) {
      free(from);
      return lfs_h5_fail(err, errlen, log->path, "the run log has no metric column \"%s\"",
                         spec->metrics[k]);
    }
  }
  double *row = lfs_calloc(n > 0 ? (size_t)n : 1, sizeof *row);
  for (int64_t r = 0; r < log->rows; r++) {
    for (int k = 0; k < n; k++) row[k] = log->metric[r * n + from[k]];
    memcpy(log->metric + r * n, row, (size_t)n * sizeof *row);
  }
  for (int k = 0; k < n; k++) {
    free(log->metrics[k]);
    log->metrics[k] = dup_str(spec->metrics[k]);
  }
  free(row);
  free(from);
  return 0;
}

lfs_runlog *lfs_runlog_resume(const char *path, const lfs_runlog_spec *spec, int64_t epochs,
                              char *err, size_t errlen) {
  if (check_spec(path, spec, err, errlen) != 0) return NULL;
  if (epochs < 0) {
    lfs_h5_fail(err, errlen, path, "cannot resume at epoch %lld", (long long)epochs);
    return NULL;
  }
  char why[1024];
  lfs_runlog *log = read_file(path, why, sizeof why);
  if (!log) {
    snprintf(err, errlen, "cannot resume the run log: %s", why);
    return NULL;
  }
  int rc = 0;
  if (log->M != spec->M || log->d != spec->d)
    rc = lfs_h5_fail(err, errlen, path, "the run log has M = %d, d = %d; this run has M = %d, d = %d",
                     log->M, log->d, spec->M, spec->d);
  else if (match_metrics(log, spec, err, errlen) != 0)
    rc = -1;
  else if (log->rows < epochs)
    rc = lfs_h5_fail(err, errlen, path,
                     "the run log has %lld epochs, but the checkpoint resumes after %lld: "
                     "rows are missing", (long long)log->rows, (long long)epochs);
  if (rc == 0) {
    free(log->config);
    log->config = dup_str(spec->config);
    log->rows = epochs; /* drop the rows of epochs the resumed run will redo */
    rc = write_file(log, err, errlen);
  }
  if (rc != 0) {
    free_log(log);
    return NULL;
  }
  return log;
}

int64_t lfs_runlog_epochs(const lfs_runlog *log) { return log->rows; }
int lfs_runlog_M(const lfs_runlog *log) { return log->M; }
int lfs_runlog_d(const lfs_runlog *log) { return log->d; }
const char *lfs_runlog_config(const lfs_runlog *log) { return log->config; }
int lfs_runlog_nmetrics(const lfs_runlog *log) { return log->nmetrics; }
const char *lfs_runlog_metric(const lfs_runlog *log, int i) { return log->metrics[i]; }

void lfs_runlog_get(const lfs_runlog *log, int64_t e, lfs_runlog_row *row) {
  LFS_ASSERT(e >= 0 && e < log->rows);
  const int M = log->M, d = log->d;
  memset(row, 0, sizeof *row);
  row->epoch = log->epoch[e];
  row->chosen = log->chosen[e];
  if (d > 0) {
    row->u = log->u + e * M * d;
    row->a = log->a + e * M;
    row->mu = log->mu + e * d;
    row->sigma = log->sigma + e * d;
  }
  row->reward = log->reward + e * M;
  row->loss = log->loss + e * M;
  row->lr = log->lr[e];
  row->wall_seconds = log->wall[e];
  row->images_per_second = log->ips[e];
  row->metrics = log->nmetrics > 0 ? log->metric + e * log->nmetrics : NULL;
}

void lfs_runlog_close(lfs_runlog *log) { free_log(log); }
