/* dataset.c: datasets of face images (DESIGN §6, include/lfs/dataset.h):
 * opening and validating one shard, reading image ranges that may span the
 * shards of a manifest, the shard writer, and lfs_h5_format.
 *
 * Shard layout: /images uint8 [N, H, W, 3] chunked {chunk, H, W, 3} and
 * extendible along N; /labels int32 [N] chunked and extendible; root
 * attributes format, format_version, num_classes, height, width, source.
 * Images are stored without compression: the loader must read thousands of
 * images per second per core, and deflate would cost more than the I/O it saves
 * on page-cached or parallel file systems. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/data_internal.h"
#include "lfs/log.h"

/* Largest side we accept: guards the H*W*3 products below against overflow. */
#define LFS_MAX_SIDE 65536
/* Labels per chunk and per block when scanning all labels. */
#define LFS_LABEL_CHUNK 16384
#define LFS_LABEL_BLOCK (1 << 20)

struct lfs_dataset {
  char *path;
  lfs_shard_set set;
  int64_t count;
  int chunk;
};

/* ---- one shard ---- */

static int check_shard_shape(const char *path, const hsize_t *idims, const hsize_t *ldims, int height,
                             int width, char *err, size_t errlen) {
  if (idims[3] != 3)
    return lfs_h5_fail(err, errlen, path,
                       "dataset /images has %llu channels (last dimension), expected 3 (RGB)",
                       (unsigned long long)idims[3]);
  if (idims[1] != (hsize_t)height || idims[2] != (hsize_t)width)
    return lfs_h5_fail(err, errlen, path,
                       "dataset /images holds %llux%llu images but attributes height, width say %dx%d",
                       (unsigned long long)idims[1], (unsigned long long)idims[2], height, width);
  if (ldims[0] != idims[0])
    return lfs_h5_fail(err, errlen, path, "dataset /labels has %llu entries but /images has %llu images",
                       (unsigned long long)ldims[0], (unsigned long long)idims[0]);
  return 0;
}

/* Attributes of a shard; the caller checked the format. */
static int read_shard_attrs(hid_t f, const char *path, int *height, int *width,
                            int32_t *num_classes, char **source, char *err, size_t errlen) {
  int64_t h, w, k;
  if (lfs_h5_read_int_attr_range(f, path, "num_classes", 1, INT32_MAX, &k, err, errlen) != 0 ||
      lfs_h5_read_int_attr_range(f, path, "height", 1, LFS_MAX_SIDE, &h, err, errlen) != 0 ||
      lfs_h5_read_int_attr_range(f, path, "width", 1, LFS_MAX_SIDE, &w, err, errlen) != 0)
    return -1;
  *source = lfs_h5_read_str_attr(f, path, "source", err, errlen);
  if (!*source) return -1;
  *height = (int)h, *width = (int)w, *num_classes = (int32_t)k;
  return 0;
}

/* Opens (file < 0) or adopts an open file and validates it as a shard. */
static int shard_open_file(lfs_shard *s, const char *path, hid_t file, int *height, int *width,
                           int32_t *num_classes, char **source, char *err, size_t errlen) {
  memset(s, 0, sizeof *s);
  s->file = s->images = s->labels = -1;
  s->path = strdup(path);
  if (!s->path) lfs_fatal("out of memory");
  *source = NULL;
  s->file = file >= 0 ? file : lfs_h5_open_read(path, err, errlen);
  hsize_t idims[4], ldims[1];
  if (s->file < 0 || lfs_h5_check_format(s->file, path, LFS_DATASET_FORMAT, err, errlen) != 0 ||
      read_shard_attrs(s->file, path, height, width, num_classes, source, err, errlen) != 0 ||
      (s->images = lfs_h5_open_checked(s->file, path, "/images", LFS_H5_U8, 4, idims, err, errlen)) < 0 ||
      (s->labels = lfs_h5_open_checked(s->file, path, "/labels", LFS_H5_I32, 1, ldims, err, errlen)) < 0 ||
      check_shard_shape(path, idims, ldims, *height, *width, err, errlen) != 0) {
    free(*source);
    *source = NULL;
    lfs_shard_close(s);
    return -1;
  }
  s->count = (int64_t)idims[0];
  s->chunk = lfs_h5_images_per_chunk(s->images);
  s->label_min = 0;
  s->label_max = *num_classes - 1;
  return 0;
}

int lfs_shard_open(lfs_shard *s, const char *path, int *height, int *width, int32_t *num_classes,
                   char **source, char *err, size_t errlen) {
  return shard_open_file(s, path, -1, height, width, num_classes, source, err, errlen);
}

void lfs_shard_close(lfs_shard *s) {
  lfs_h5_close_id(s->images);
  lfs_h5_close_id(s->labels);
  lfs_h5_close_id(s->file);
  s->images = s->labels = s->file = -1;
  free(s->path);
  s->path = NULL;
}

/* Every label of rows [row0, row0 + n) must lie in [0, num_classes) and, for a
 * shard listed in a manifest, in the range the manifest records. */
static int check_labels(const lfs_shard *s, const int32_t *labels, int64_t row0, int64_t n,
                        int32_t num_classes, char *err, size_t errlen) {
  for (int64_t i = 0; i < n; i++) {
    int32_t y = labels[i];
    if (y < 0 || y >= num_classes)
      return lfs_h5_fail(err, errlen, s->path, "/labels[%lld] = %d is outside [0, num_classes = %d)",
                         (long long)(row0 + i), y, num_classes);
    if (s->has_range && (y < s->label_min || y > s->label_max))
      return lfs_h5_fail(err, errlen, s->path,
                         "/labels[%lld] = %d is outside the range [%d, %d] its manifest records",
                         (long long)(row0 + i), y, s->label_min, s->label_max);
  }
  return 0;
}

int lfs_shard_label_range(lfs_shard *s, int32_t num_classes, int32_t *lo, int32_t *hi, char *err,
                          size_t errlen) {
  int32_t *buf = lfs_malloc(sizeof(int32_t) * LFS_LABEL_BLOCK);
  int32_t mn = INT32_MAX, mx = -1;
  int rc = 0;
  for (int64_t row = 0; row < s->count && rc == 0; row += LFS_LABEL_BLOCK) {
    int64_t n = s->count - row < LFS_LABEL_BLOCK ? s->count - row : LFS_LABEL_BLOCK;
    rc = lfs_h5_read_rows(s->labels, H5T_NATIVE_INT32, 1, row, n, buf, s->path, "/labels", err, errlen);
    if (rc == 0) rc = check_labels(s, buf, row, n, num_classes, err, errlen);
    for (int64_t i = 0; i < n && rc == 0; i++) {
      if (buf[i] < mn) mn = buf[i];
      if (buf[i] > mx) mx = buf[i];
    }
  }
  free(buf);
  if (s->count == 0) mn = 0;
  *lo = mn, *hi = mx;
  return rc;
}

/* ---- reading ---- */

static void shard_set_free(lfs_shard_set *set) {
  for (int i = 0; i < set->nshards; i++) lfs_shard_close(&set->shards[i]);
  free(set->shards);
  free(set->source);
  memset(set, 0, sizeof *set);
}

static int open_single(hid_t file, const char *path, lfs_shard_set *set, char *err, size_t errlen) {
  set->shards = lfs_calloc(1, sizeof *set->shards);
  if (shard_open_file(&set->shards[0], path, file, &set->height, &set->width, &set->num_classes,
                      &set->source, err, errlen) != 0) {
    free(set->shards);
    set->shards = NULL;
    return -1;
  }
  set->nshards = 1;
  return 0;
}

static lfs_dataset *open_locked(const char *path, char *err, size_t errlen) {
  hid_t f = lfs_h5_open_read(path, err, errlen);
  if (f < 0) return NULL;
  char *format = lfs_h5_read_str_attr(f, path, "format", err, errlen);
  if (!format) {
    H5Fclose(f);
    return NULL;
  }
  lfs_dataset *ds = lfs_calloc(1, sizeof *ds);
  int rc;
  if (!strcmp(format, LFS_DATASET_FORMAT)) {
    rc = open_single(f, path, &ds->set, err, errlen); /* adopts f */
  } else if (!strcmp(format, LFS_MANIFEST_FORMAT)) {
    rc = lfs_manifest_open(f, path, &ds->set, err, errlen);
    H5Fclose(f); /* the manifest is read whole at open */
  } else {
    rc = lfs_h5_fail(err, errlen, path, "attribute format is \"%s\", expected \"%s\" or \"%s\"", format,
                     LFS_DATASET_FORMAT, LFS_MANIFEST_FORMAT);
    H5Fclose(f);
  }
  free(format);
  if (rc != 0) {
    free(ds);
    return NULL;
  }
  ds->path = strdup(path);
  if (!ds->path) lfs_fatal("out of memory");
  ds->chunk = INT32_MAX;
  for (int i = 0; i < ds->set.nshards; i++) {
    ds->set.shards[i].first = ds->count;
    ds->count += ds->set.shards[i].count;
    if (ds->set.shards[i].chunk < ds->chunk) ds->chunk = ds->set.shards[i].chunk;
  }
  return ds;
}

lfs_dataset *lfs_dataset_open(const char *path, char *err, size_t errlen) {
  lfs_h5_lock();
  lfs_dataset *ds = open_locked(path, err, errlen);
  lfs_h5_unlock();
  return ds;
}

void lfs_dataset_close(lfs_dataset *ds) {
  if (!ds) return;
  lfs_h5_lock();
  shard_set_free(&ds->set);
  lfs_h5_unlock();
  free(ds->path);
  free(ds);
}

int64_t lfs_dataset_count(const lfs_dataset *ds) { return ds->count; }
int lfs_dataset_height(const lfs_dataset *ds) { return ds->set.height; }
int lfs_dataset_width(const lfs_dataset *ds) { return ds->set.width; }
int32_t lfs_dataset_classes(const lfs_dataset *ds) { return ds->set.num_classes; }
const char *lfs_dataset_source(const lfs_dataset *ds) { return ds->set.source; }
int lfs_dataset_shards(const lfs_dataset *ds) { return ds->set.nshards; }
int lfs_dataset_chunk(const lfs_dataset *ds) { return ds->chunk; }
const char *lfs_dataset_shard_path(const lfs_dataset *ds, int i) { return ds->set.shards[i].path; }
int64_t lfs_dataset_shard_count(const lfs_dataset *ds, int i) { return ds->set.shards[i].count; }

/* Last shard whose first image is <= index (shards are in index order). */
static int shard_of(const lfs_dataset *ds, int64_t index) {
  int lo = 0, hi = ds->set.nshards - 1;
  while (lo < hi) {
    int mid = (lo + hi + 1) / 2;
    if (ds->set.shards[mid].first <= index)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

/* One hyperslab read per shard the range touches. */
static int read_locked(lfs_dataset *ds, int64_t first, int64_t count, uint8_t *images,
                       int32_t *labels, char *err, size_t errlen) {
  size_t image_bytes = (size_t)ds->set.height * (size_t)ds->set.width * 3;
  int64_t pos = first, end = first + count;
  for (int s = shard_of(ds, first); pos < end; s++) {
    lfs_shard *sh = &ds->set.shards[s];
    int64_t stop = sh->first + sh->count < end ? sh->first + sh->count : end;
    int64_t n = stop - pos, row = pos - sh->first, out = pos - first;
    if (n <= 0) continue; /* an empty shard */
    if (images && lfs_h5_read_rows(sh->images, H5T_NATIVE_UINT8, 4, row, n,
                                   images + (size_t)out * image_bytes, sh->path, "/images", err,
                                   errlen) != 0)
      return -1;
    if (labels && (lfs_h5_read_rows(sh->labels, H5T_NATIVE_INT32, 1, row, n, labels + out, sh->path,
                                    "/labels", err, errlen) != 0 ||
                   check_labels(sh, labels + out, row, n, ds->set.num_classes, err, errlen) != 0))
      return -1;
    pos = stop;
  }
  return 0;
}

int lfs_dataset_read(lfs_dataset *ds, int64_t first, int64_t count, uint8_t *images,
                     int32_t *labels, char *err, size_t errlen) {
  if (first < 0 || count < 0 || first > ds->count - count)
    return lfs_h5_fail(err, errlen, ds->path, "images [%lld, %lld) are outside the dataset's [0, %lld)",
                       (long long)first, (long long)first + (long long)count, (long long)ds->count);
  if (count == 0) return 0;
  lfs_h5_lock();
  int rc = read_locked(ds, first, count, images, labels, err, errlen);
  lfs_h5_unlock();
  return rc;
}

/* ---- writing one shard ---- */

struct lfs_dataset_writer {
  char *path, *tmp;
  hid_t file, images, labels;
  int height, width;
  int64_t count;
  int32_t max_label;
  int failed; /* an HDF5 write failed: finish must not publish the file */
};

static hid_t create_extendible(hid_t file, const char *path, const char *name, hid_t type, int rank,
                               const hsize_t *row_dims, hsize_t chunk_rows, char *err,
                               size_t errlen) {
  hsize_t dims[4], maxdims[4], chunk[4];
  for (int i = 0; i < rank; i++) dims[i] = maxdims[i] = chunk[i] = row_dims[i];
  dims[0] = 0;
  maxdims[0] = H5S_UNLIMITED;
  chunk[0] = chunk_rows;
  hid_t sp = H5Screate_simple(rank, dims, maxdims);
  hid_t dcpl = lfs_h5_dcpl();
  hid_t d = -1;
  /* every row is written before the file is published: fill values would only cost time */
  if (sp < 0 || dcpl < 0 || H5Pset_chunk(dcpl, rank, chunk) < 0 ||
      H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER) < 0 ||
      (d = H5Dcreate2(file, name, type, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT)) < 0)
    lfs_h5_fail_lib(err, errlen, path, "cannot create dataset %s", name);
  lfs_h5_close_id(dcpl);
  lfs_h5_close_id(sp);
  return d;
}

static void writer_free(lfs_dataset_writer *w) {
  lfs_h5_close_id(w->images);
  lfs_h5_close_id(w->labels);
  lfs_h5_discard_tmp(w->file, w->tmp);
  free(w->tmp);
  free(w->path);
  free(w);
}

static lfs_dataset_writer *writer_create_locked(const char *path, int height, int width, int chunk,
                                                const char *source, char *err, size_t errlen) {
  lfs_dataset_writer *w = lfs_calloc(1, sizeof *w);
  w->images = w->labels = -1;
  w->max_label = -1;
  w->height = height, w->width = width;
  w->path = strdup(path);
  if (!w->path) lfs_fatal("out of memory");
  w->file = lfs_h5_create_tmp(path, &w->tmp, err, errlen);
  hsize_t image_dims[4] = {0, (hsize_t)height, (hsize_t)width, 3}, label_dims[1] = {0};
  hsize_t label_chunk = chunk > LFS_LABEL_CHUNK ? (hsize_t)chunk : LFS_LABEL_CHUNK;
  if (w->file < 0 ||
      lfs_h5_write_str_attr(w->file, path, "format", LFS_DATASET_FORMAT, err, errlen) != 0 ||
      lfs_h5_write_int_attr(w->file, path, "format_version", LFS_DATA_FORMAT_VERSION, err, errlen) != 0 ||
      lfs_h5_write_int_attr(w->file, path, "height", height, err, errlen) != 0 ||
      lfs_h5_write_int_attr(w->file, path, "width", width, err, errlen) != 0 ||
      lfs_h5_write_str_attr(w->file, path, "source", source ? source : "", err, errlen) != 0 ||
      (w->images = create_extendible(w->file, path, "/images", H5T_STD_U8LE, 4, image_dims,
                                     (hsize_t)chunk, err, errlen)) < 0 ||
      (w->labels = create_extendible(w->file, path, "/labels", H5T_STD_I32LE, 1, label_dims,
                                     label_chunk, err, errlen)) < 0) {
    writer_free(w);
    return NULL;
  }
  return w;
}

lfs_dataset_writer *lfs_dataset_writer_create(const char *path, int height, int width, int chunk,
                                              const char *source, char *err, size_t errlen) {
  if (height < 1 || height > LFS_MAX_SIDE || width < 1 || width > LFS_MAX_SIDE) {
    lfs_h5_fail(err, errlen, path, "image size %dx%d is outside [1, %d]", height, width, LFS_MAX_SIDE);
    return NULL;
  }
  /* HDF5 chunks are limited to 4 GiB */
  uint64_t image_bytes = (uint64_t)height * (uint64_t)width * 3;
  if (chunk < 1 || (uint64_t)chunk * image_bytes >= UINT64_C(0xffffffff)) {
    lfs_h5_fail(err, errlen, path, "chunk of %d images is outside [1, %llu] for %dx%d images", chunk,
                (unsigned long long)(UINT64_C(0xfffffffe) / image_bytes), height, width);
    return NULL;
  }
  lfs_h5_lock();
  lfs_dataset_writer *w = writer_create_locked(path, height, width, chunk, source, err, errlen);
  lfs_h5_unlock();
  return w;
}

/* Grows a dataset by n rows and writes them. */
static int append_rows(hid_t d, hid_t mem_type, int rank, int64_t old, int64_t n, const void *buf,
                       const char *path, const char *name, char *err, size_t errlen) {
  hsize_t dims[4], start[4] = {0}, cnt[4];
  hid_t fs = H5Dget_space(d);
  if (fs < 0 || H5Sget_simple_extent_dims(fs, dims, NULL) != rank) {
    lfs_h5_close_id(fs);
    return lfs_h5_fail_lib(err, errlen, path, "dataset %s: cannot read its shape", name);
  }
  H5Sclose(fs);
  for (int i = 0; i < rank; i++) cnt[i] = dims[i];
  start[0] = (hsize_t)old;
  cnt[0] = (hsize_t)n;
  dims[0] = (hsize_t)(old + n);
  int rc = 0;
  hid_t ms = -1;
  fs = -1;
  if (H5Dset_extent(d, dims) < 0 || (fs = H5Dget_space(d)) < 0 ||
      (ms = H5Screate_simple(rank, cnt, NULL)) < 0 ||
      H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, cnt, NULL) < 0 ||
      H5Dwrite(d, mem_type, ms, fs, H5P_DEFAULT, buf) < 0)
    rc = lfs_h5_fail_lib(err, errlen, path, "dataset %s: cannot append rows [%lld, %lld)", name,
                         (long long)old, (long long)(old + n));
  lfs_h5_close_id(ms);
  lfs_h5_close_id(fs);
  return rc;
}

int lfs_dataset_writer_append(lfs_dataset_writer *w, const uint8_t *images, const int32_t *labels,
                              int64_t count, char *err, size_t errlen) {
  if (w->failed) return lfs_h5_fail(err, errlen, w->path, "an earlier write to this file failed");
  if (count < 0) return lfs_h5_fail(err, errlen, w->path, "cannot append %lld images", (long long)count);
  if (count == 0) return 0;
  if (!images || !labels) return lfs_h5_fail(err, errlen, w->path, "append without images or labels");
  int32_t mx = w->max_label;
  for (int64_t i = 0; i < count; i++) {
    if (labels[i] < 0)
      return lfs_h5_fail(err, errlen, w->path, "label of image %lld is %d, labels must be >= 0",
                         (long long)(w->count + i), labels[i]);
    if (labels[i] > mx) mx = labels[i];
  }
  lfs_h5_lock();
  int rc = append_rows(w->images, H5T_NATIVE_UINT8, 4, w->count, count, images, w->path, "/images",
                       err, errlen);
  if (rc == 0)
    rc = append_rows(w->labels, H5T_NATIVE_INT32, 1, w->count, count, labels, w->path, "/labels",
                     err, errlen);
  lfs_h5_unlock();
  if (rc != 0) {
    w->failed = 1;
    return -1;
  }
  w->count += count;
  w->max_label = mx;
  return 0;
}

int lfs_dataset_writer_finish(lfs_dataset_writer *w, int32_t num_classes, char *err, size_t errlen) {
  int rc = 0;
  if (w->failed)
    rc = lfs_h5_fail(err, errlen, w->path, "not written: an earlier write to it failed");
  else if (num_classes < 1)
    rc = lfs_h5_fail(err, errlen, w->path, "num_classes = %d, must be >= 1", num_classes);
  else if (w->max_label >= num_classes)
    rc = lfs_h5_fail(err, errlen, w->path, "label %d is not below num_classes = %d", w->max_label,
                     num_classes);
  lfs_h5_lock();
  if (rc == 0)
    rc = lfs_h5_write_int_attr(w->file, w->path, "num_classes", num_classes, err, errlen);
  if (rc == 0) {
    herr_t a = H5Dclose(w->images), b = H5Dclose(w->labels);
    if (a < 0 || b < 0) rc = lfs_h5_fail_lib(err, errlen, w->path, "cannot finish writing %s", w->tmp);
    w->images = w->labels = -1;
  }
  if (rc == 0) {
    rc = lfs_h5_commit_tmp(w->file, w->tmp, w->path, err, errlen);
    w->file = -1;
    free(w->tmp);
    w->tmp = NULL; /* committed or already removed */
  }
  writer_free(w);
  lfs_h5_unlock();
  return rc;
}

void lfs_dataset_writer_abort(lfs_dataset_writer *w) {
  if (!w) return;
  lfs_h5_lock();
  writer_free(w);
  lfs_h5_unlock();
}

/* ---- what kind of file ---- */

int lfs_h5_format(const char *path, char *format, size_t len, char *err, size_t errlen) {
  lfs_h5_lock();
  int rc = -1;
  hid_t f = lfs_h5_open_read(path, err, errlen);
  if (f >= 0) {
    if (!lfs_h5_attr_exists(f, "format")) {
      lfs_h5_fail(err, errlen, path, "not an lfsearch file (no root attribute format)");
    } else {
      char *s = lfs_h5_read_str_attr(f, path, "format", err, errlen);
      if (s) {
        snprintf(format, len, "%s", s);
        free(s);
        rc = 0;
      }
    }
    H5Fclose(f);
  }
  lfs_h5_unlock();
  return rc;
}
