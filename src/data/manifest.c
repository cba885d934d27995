/* manifest.c: a dataset made of several shards (format "lfsearch-manifest").
 *
 * Layout: /shards string [S] (shard paths, relative to the manifest's
 * directory unless absolute; variable- or fixed-length strings), /counts int64
 * [S] images per shard, /label_min and /label_max int32 [S]; root attributes
 * format, format_version, height, width, num_classes, total (sum of counts),
 * source. Opening a manifest opens every shard and checks that it agrees with
 * what the manifest records, so a moved, replaced or truncated shard is caught
 * before training starts rather than in the middle of an epoch. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/data_internal.h"
#include "lfs/log.h"

#define LFS_MAX_SIDE 65536

static char *xstrdup(const char *s) {
  char *d = strdup(s);
  if (!d) lfs_fatal("out of memory");
  return d;
}

/* Directory part of a path ("." when there is none); malloc'd. */
static char *dir_of(const char *path) {
  const char *slash = strrchr(path, '/');
  if (!slash) return xstrdup(".");
  if (slash == path) return xstrdup("/");
  char *d = xstrdup(path);
  d[slash - path] = '\0';
  return d;
}

static char *join(const char *dir, const char *name) {
  size_t len = strlen(dir) + strlen(name) + 2;
  char *p = lfs_malloc(len);
  if (!strcmp(dir, "."))
    snprintf(p, len, "%s", name);
  else
    snprintf(p, len, "%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" : "/", name);
  return p;
}

/* Directory that relative shard paths start from: the manifest's own, or for
 * a symbolic link to a manifest, that of the file it points to (the paths were
 * written relative to the real file). */
static char *base_dir(const char *manifest) {
  struct stat st;
  if (lstat(manifest, &st) == 0 && S_ISLNK(st.st_mode)) {
    char *real = realpath(manifest, NULL);
    if (real) {
      char *d = dir_of(real);
      free(real);
      return d;
    }
  }
  return dir_of(manifest);
}

/* ---- reading ---- */

typedef struct {
  int64_t nshards, total, *counts;
  int32_t *label_min, *label_max;
  char **names;
} manifest_table;

static void table_free(manifest_table *t) {
  lfs_h5_free_strings(t->names, t->nshards);
  free(t->counts);
  free(t->label_min);
  free(t->label_max);
}

static int read_table(hid_t file, const char *path, manifest_table *t, char *err, size_t errlen) {
  memset(t, 0, sizeof *t);
  hsize_t ds, dc, dmin, dmax;
  hid_t shards = -1, counts = -1, mins = -1, maxs = -1;
  int rc = -1;
  if ((shards = lfs_h5_open_checked(file, path, "/shards", LFS_H5_STRING, 1, &ds, err, errlen)) < 0 ||
      (counts = lfs_h5_open_checked(file, path, "/counts", LFS_H5_I64, 1, &dc, err, errlen)) < 0 ||
      (mins = lfs_h5_open_checked(file, path, "/label_min", LFS_H5_I32, 1, &dmin, err, errlen)) < 0 ||
      (maxs = lfs_h5_open_checked(file, path, "/label_max", LFS_H5_I32, 1, &dmax, err, errlen)) < 0)
    goto done;
  if (ds == 0) {
    lfs_h5_fail(err, errlen, path, "dataset /shards is empty");
    goto done;
  }
  if (dc != ds || dmin != ds || dmax != ds) {
    lfs_h5_fail(err, errlen, path,
                "datasets /counts, /label_min, /label_max have %llu, %llu, %llu entries; /shards has %llu",
                (unsigned long long)dc, (unsigned long long)dmin, (unsigned long long)dmax,
                (unsigned long long)ds);
    goto done;
  }
  t->nshards = (int64_t)ds;
  t->counts = lfs_malloc(ds * sizeof *t->counts);
  t->label_min = lfs_malloc(ds * sizeof *t->label_min);
  t->label_max = lfs_malloc(ds * sizeof *t->label_max);
  if (lfs_h5_read_rows(counts, H5T_NATIVE_INT64, 1, 0, t->nshards, t->counts, path, "/counts", err,
                       errlen) != 0 ||
      lfs_h5_read_rows(mins, H5T_NATIVE_INT32, 1, 0, t->nshards, t->label_min, path, "/label_min",
                       err, errlen) != 0 ||
      lfs_h5_read_rows(maxs, H5T_NATIVE_INT32, 1, 0, t->nshards, t->label_max, path, "/label_max",
                       err, errlen) != 0 ||
      !(t->names = lfs_h5_read_strings(shards, path, "/shards", t->nshards, err, errlen)))
    goto done;
  rc = 0;
done:
  lfs_h5_close_id(shards);
  lfs_h5_close_id(counts);
  lfs_h5_close_id(mins);
  lfs_h5_close_id(maxs);
  return rc;
}

/* What the manifest records must be consistent in itself. */
static int check_table(const char *path, const manifest_table *t, int32_t num_classes, char *err,
                       size_t errlen) {
  int64_t sum = 0;
  for (int64_t i = 0; i < t->nshards; i++) {
    if (t->names[i][0] == '\0') return lfs_h5_fail(err, errlen, path, "/shards[%lld] is empty", (long long)i);
    if (t->counts[i] < 1 || t->counts[i] > INT64_MAX - sum)
      return lfs_h5_fail(err, errlen, path, "/counts[%lld] = %lld, expected a positive count",
                         (long long)i, (long long)t->counts[i]);
    sum += t->counts[i];
    if (t->label_min[i] < 0 || t->label_min[i] > t->label_max[i])
      return lfs_h5_fail(err, errlen, path, "/label_min[%lld] = %d, /label_max[%lld] = %d is not a valid range",
                         (long long)i, t->label_min[i], (long long)i, t->label_max[i]);
    if (t->label_max[i] >= num_classes)
      return lfs_h5_fail(err, errlen, path, "/label_max[%lld] = %d is not below num_classes = %d",
                         (long long)i, t->label_max[i], num_classes);
  }
  if (sum != t->total)
    return lfs_h5_fail(err, errlen, path, "attribute total = %lld but /counts add up to %lld",
                       (long long)t->total, (long long)sum);
  return 0;
}

/* Opens shard i and checks it against the manifest. */
static int open_shard(const char *path, const char *dir, const manifest_table *t, int64_t i,
                      lfs_shard_set *set, char *err, size_t errlen) {
  lfs_shard *s = &set->shards[i];
  char *file = t->names[i][0] == '/' ? xstrdup(t->names[i]) : join(dir, t->names[i]);
  char inner[1024];
  int h, w;
  int32_t k;
  char *source = NULL;
  int rc = lfs_shard_open(s, file, &h, &w, &k, &source, inner, sizeof inner);
  if (rc != 0) {
    lfs_h5_fail(err, errlen, path, "shard %lld: %s", (long long)i, inner);
  } else if (s->count != t->counts[i]) {
    rc = lfs_h5_fail(err, errlen, path, "/counts[%lld] = %lld but shard %s has %lld images", (long long)i,
                     (long long)t->counts[i], file, (long long)s->count);
  } else if (h != set->height || w != set->width) {
    rc = lfs_h5_fail(err, errlen, path, "shard %s holds %dx%d images but attributes height, width say %dx%d",
                     file, h, w, set->height, set->width);
  } else if (k != set->num_classes) {
    rc = lfs_h5_fail(err, errlen, path, "shard %s has num_classes = %d but the manifest's num_classes = %d",
                     file, k, set->num_classes);
  }
  if (rc == 0) {
    s->label_min = t->label_min[i];
    s->label_max = t->label_max[i];
    s->has_range = 1;
    if (i == 0 && !set->source) set->source = source, source = NULL;
  } else if (s->path) {
    lfs_shard_close(s);
  }
  free(source);
  free(file);
  return rc;
}

int lfs_manifest_open(hid_t file, const char *path, lfs_shard_set *set, char *err, size_t errlen) {
  memset(set, 0, sizeof *set);
  int64_t h, w, k, total;
  if (lfs_h5_check_format(file, path, LFS_MANIFEST_FORMAT, err, errlen) != 0 ||
      lfs_h5_read_int_attr_range(file, path, "num_classes", 1, INT32_MAX, &k, err, errlen) != 0 ||
      lfs_h5_read_int_attr_range(file, path, "height", 1, LFS_MAX_SIDE, &h, err, errlen) != 0 ||
      lfs_h5_read_int_attr_range(file, path, "width", 1, LFS_MAX_SIDE, &w, err, errlen) != 0 ||
      lfs_h5_read_int_attr_range(file, path, "total", 0, INT64_MAX, &total, err, errlen) != 0)
    return -1;
  manifest_table t;
  if (read_table(file, path, &t, err, errlen) != 0) {
    table_free(&t);
    return -1;
  }
  t.total = total;
  set->height = (int)h, set->width = (int)w, set->num_classes = (int32_t)k;
  if (t.nshards > INT32_MAX) {
    table_free(&t);
    return lfs_h5_fail(err, errlen, path, "dataset /shards lists %lld shards, too many", (long long)t.nshards);
  }
  if (lfs_h5_attr_exists(file, "source") &&
      !(set->source = lfs_h5_read_str_attr(file, path, "source", err, errlen))) {
    table_free(&t);
    return -1;
  }
  int rc = check_table(path, &t, set->num_classes, err, errlen);
  char *dir = base_dir(path);
  set->shards = lfs_calloc((size_t)t.nshards, sizeof *set->shards);
  for (int64_t i = 0; i < t.nshards && rc == 0; i++) {
    rc = open_shard(path, dir, &t, i, set, err, errlen);
    if (rc == 0) set->nshards++;
  }
  free(dir);
  table_free(&t);
  if (rc != 0) {
    for (int i = 0; i < set->nshards; i++) lfs_shard_close(&set->shards[i]);
    free(set->shards);
    free(set->source);
    memset(set, 0, sizeof *set);
  }
  return rc;
}

/* ---- writing ---- */

/* Path of `to` relative to directory `from`; both absolute and free of "."/".."
 * and symbolic links (as realpath returns them). */
static char *relative_path(const char *from, const char *to) {
  size_t common = 0, i = 0;
  /* longest common prefix ending at a component boundary */
  for (;; i++) {
    char a = from[i], b = to[i];
    if ((a == '/' || a == '\0') && (b == '/' || b == '\0')) common = i;
    if (a == '\0' || b == '\0' || a != b) break;
  }
  if (!strcmp(from, "/")) common = 0;
  size_t ups = 0;
  for (const char *p = from + common; *p; p++)
    if (*p == '/' && p[1] != '\0') ups++;
  const char *rest = to + common;
  while (*rest == '/') rest++;
  char *out = lfs_malloc(ups * 3 + strlen(rest) + 1), *o = out;
  for (size_t u = 0; u < ups; u++) memcpy(o, "../", 3), o += 3;
  strcpy(o, rest);
  return out;
}

typedef struct {
  char **rel;      /* paths stored in the manifest */
  int64_t *counts;
  int32_t *mins, *maxs;
  int height, width;
  int32_t num_classes;
  char *source;
} manifest_plan;

static void plan_free(manifest_plan *p, int n) {
  if (p->rel)
    for (int i = 0; i < n; i++) free(p->rel[i]);
  free(p->rel);
  free(p->counts);
  free(p->mins);
  free(p->maxs);
  free(p->source);
}

/* Validates shard i and records what the manifest will say about it. */
static int plan_shard(const char *path, const char *mdir, char **reals, const char *const *shards,
                      int i, manifest_plan *p, char *err, size_t errlen) {
  reals[i] = realpath(shards[i], NULL);
  if (!reals[i]) return lfs_h5_fail(err, errlen, path, "shard %s: %s", shards[i], strerror(errno));
  for (int j = 0; j < i; j++)
    if (!strcmp(reals[i], reals[j]))
      return lfs_h5_fail(err, errlen, path, "shard %s is listed twice (as %s and %s)", reals[i],
                         shards[j], shards[i]);
  lfs_shard s;
  int h, w;
  int32_t k;
  char *source = NULL, inner[1024];
  if (lfs_shard_open(&s, shards[i], &h, &w, &k, &source, inner, sizeof inner) != 0)
    return lfs_h5_fail(err, errlen, path, "shard %d: %s", i, inner);
  int rc = 0;
  if (i == 0) {
    p->height = h, p->width = w, p->num_classes = k;
    p->source = source, source = NULL;
  } else if (h != p->height || w != p->width) {
    rc = lfs_h5_fail(err, errlen, path, "shard %s holds %dx%d images but shard %s holds %dx%d",
                     shards[i], h, w, shards[0], p->height, p->width);
  } else if (k != p->num_classes) {
    rc = lfs_h5_fail(err, errlen, path, "shard %s has num_classes = %d but shard %s has %d", shards[i],
                     k, shards[0], p->num_classes);
  } else if (strcmp(source, p->source) != 0 && strncmp(p->source, "mixed", 5) != 0) {
    size_t len = strlen(p->source) + 64;
    char *mixed = lfs_malloc(len);
    snprintf(mixed, len, "mixed; first shard: %s", p->source);
    free(p->source);
    p->source = mixed;
  }
  if (rc == 0 && s.count < 1) rc = lfs_h5_fail(err, errlen, path, "shard %s has no images", shards[i]);
  if (rc == 0 && lfs_shard_label_range(&s, k, &p->mins[i], &p->maxs[i], inner, sizeof inner) != 0)
    rc = lfs_h5_fail(err, errlen, path, "shard %d: %s", i, inner);
  p->counts[i] = s.count;
  lfs_shard_close(&s);
  free(source);
  if (rc == 0) p->rel[i] = relative_path(mdir, reals[i]);
  return rc;
}

static int write_column(hid_t f, const char *path, const char *name, hid_t file_type, hid_t mem_type,
                        hsize_t n, const void *buf, char *err, size_t errlen) {
  return lfs_h5_write_whole(f, path, name, file_type, mem_type, 1, &n, NULL, buf, err, errlen);
}

static int write_manifest_file(const char *path, const manifest_plan *p, int n, char *err,
                               size_t errlen) {
  char *tmp = NULL;
  hid_t f = lfs_h5_create_tmp(path, &tmp, err, errlen);
  if (f < 0) return -1;
  int64_t total = 0;
  for (int i = 0; i < n; i++) total += p->counts[i];
  hid_t st = H5Tcopy(H5T_C_S1);
  int rc = -1;
  if (st < 0 || H5Tset_size(st, H5T_VARIABLE) < 0 || H5Tset_cset(st, H5T_CSET_UTF8) < 0) {
    lfs_h5_fail_lib(err, errlen, path, "cannot make a string type");
  } else if (lfs_h5_write_str_attr(f, path, "format", LFS_MANIFEST_FORMAT, err, errlen) == 0 &&
             lfs_h5_write_int_attr(f, path, "format_version", LFS_DATA_FORMAT_VERSION, err, errlen) == 0 &&
             lfs_h5_write_int_attr(f, path, "height", p->height, err, errlen) == 0 &&
             lfs_h5_write_int_attr(f, path, "width", p->width, err, errlen) == 0 &&
             lfs_h5_write_int_attr(f, path, "num_classes", p->num_classes, err, errlen) == 0 &&
             lfs_h5_write_i64_attr(f, path, "total", total, err, errlen) == 0 &&
             lfs_h5_write_str_attr(f, path, "source", p->source, err, errlen) == 0 &&
             write_column(f, path, "/shards", st, st, (hsize_t)n, p->rel, err, errlen) == 0 &&
             write_column(f, path, "/counts", H5T_STD_I64LE, H5T_NATIVE_INT64, (hsize_t)n, p->counts,
                          err, errlen) == 0 &&
             write_column(f, path, "/label_min", H5T_STD_I32LE, H5T_NATIVE_INT32, (hsize_t)n, p->mins,
                          err, errlen) == 0 &&
             write_column(f, path, "/label_max", H5T_STD_I32LE, H5T_NATIVE_INT32, (hsize_t)n, p->maxs,
                          err, errlen) == 0) {
    rc = 0;
  }
  lfs_h5_close_id(st);
  if (rc == 0)
    rc = lfs_h5_commit_tmp(f, tmp, path, err, errlen);
  else
    lfs_h5_discard_tmp(f, tmp);
  free(tmp);
  return rc;
}

static int manifest_write_locked(const char *path, const char *const *shards, int nshards, char *err,
                                 size_t errlen) {
  char *dir = dir_of(path), *mdir = realpath(dir, NULL);
  if (!mdir) {
    int rc = lfs_h5_fail(err, errlen, path, "directory %s: %s", dir, strerror(errno));
    free(dir);
    return rc;
  }
  free(dir);
  /* the manifest must not replace one of its own shards */
  const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
  char *self = join(mdir, base);
  manifest_plan p = {0};
  p.rel = lfs_calloc((size_t)nshards, sizeof *p.rel);
  p.counts = lfs_calloc((size_t)nshards, sizeof *p.counts);
  p.mins = lfs_calloc((size_t)nshards, sizeof *p.mins);
  p.maxs = lfs_calloc((size_t)nshards, sizeof *p.maxs);
  char **reals = lfs_calloc((size_t)nshards, sizeof *reals);
  int rc = 0;
  for (int i = 0; i < nshards && rc == 0; i++) {
    rc = plan_shard(path, mdir, reals, shards, i, &p, err, errlen);
    if (rc == 0 && !strcmp(reals[i], self))
      rc = lfs_h5_fail(err, errlen, path, "the manifest would replace its own shard %s", shards[i]);
  }
  if (rc == 0) rc = write_manifest_file(path, &p, nshards, err, errlen);
  for (int i = 0; i < nshards; i++) free(reals[i]);
  free(reals);
  plan_free(&p, nshards);
  free(self);
  free(mdir);
  return rc;
}

int lfs_manifest_write(const char *path, const char *const *shards, int nshards, char *err,
                       size_t errlen) {
  if (nshards < 1) return lfs_h5_fail(err, errlen, path, "a manifest needs at least one shard");
  lfs_h5_lock();
  int rc = manifest_write_locked(path, shards, nshards, err, errlen);
  lfs_h5_unlock();
  return rc;
}
