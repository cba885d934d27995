/* pairset.c: verification pair sets (format "lfsearch-pairs", DESIGN §6).
 *
 * Layout: /images uint8 [2N, H, W, 3] (pair i is rows 2i and 2i+1), chunked
 * by whole images; /issame uint8 [N], each 0 or 1; root attributes format,
 * format_version, name. Pair sets are small (tens of thousands of pairs), so
 * /issame is read and checked whole at open and images are read on demand. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/data_internal.h"
#include "lfs/log.h"

#define LFS_MAX_SIDE 65536
#define LFS_PAIR_CHUNK 64

struct lfs_pairset {
  char *path, *name;
  hid_t file, images;
  int64_t pairs;
  int height, width;
  uint8_t *issame; /* [pairs] */
};

static void pairset_free(lfs_pairset *ps) {
  lfs_h5_close_id(ps->images);
  lfs_h5_close_id(ps->file);
  free(ps->issame);
  free(ps->name);
  free(ps->path);
  free(ps);
}

static int check_shape(const lfs_pairset *ps, const hsize_t *idims, hsize_t pairs, char *err,
                       size_t errlen) {
  if (pairs == 0) return lfs_h5_fail(err, errlen, ps->path, "dataset /issame is empty (no pairs)");
  if (idims[0] != 2 * pairs)
    return lfs_h5_fail(err, errlen, ps->path,
                       "dataset /images has %llu images, expected 2 x %llu pairs (/issame) = %llu",
                       (unsigned long long)idims[0], (unsigned long long)pairs,
                       (unsigned long long)(2 * pairs));
  if (idims[3] != 3)
    return lfs_h5_fail(err, errlen, ps->path,
                       "dataset /images has %llu channels (last dimension), expected 3 (RGB)",
                       (unsigned long long)idims[3]);
  if (idims[1] < 1 || idims[1] > LFS_MAX_SIDE || idims[2] < 1 || idims[2] > LFS_MAX_SIDE)
    return lfs_h5_fail(err, errlen, ps->path, "dataset /images holds %llux%llu images, outside [1, %d]",
                       (unsigned long long)idims[1], (unsigned long long)idims[2], LFS_MAX_SIDE);
  return 0;
}

static int read_issame(lfs_pairset *ps, hid_t d, char *err, size_t errlen) {
  ps->issame = lfs_malloc((size_t)ps->pairs);
  if (lfs_h5_read_rows(d, H5T_NATIVE_UINT8, 1, 0, ps->pairs, ps->issame, ps->path, "/issame", err,
                       errlen) != 0)
    return -1;
  for (int64_t i = 0; i < ps->pairs; i++)
    if (ps->issame[i] > 1)
      return lfs_h5_fail(err, errlen, ps->path, "/issame[%lld] = %u, expected 0 or 1", (long long)i,
                         ps->issame[i]);
  return 0;
}

static lfs_pairset *open_locked(const char *path, char *err, size_t errlen) {
  lfs_pairset *ps = lfs_calloc(1, sizeof *ps);
  ps->file = ps->images = -1;
  ps->path = strdup(path);
  if (!ps->path) lfs_fatal("out of memory");
  hsize_t idims[4], sdims[1];
  hid_t issame = -1;
  int ok = (ps->file = lfs_h5_open_read(path, err, errlen)) >= 0 &&
           lfs_h5_check_format(ps->file, path, LFS_PAIRS_FORMAT, err, errlen) == 0 &&
           (ps->name = lfs_h5_read_str_attr(ps->file, path, "name", err, errlen)) != NULL &&
           (ps->images = lfs_h5_open_checked(ps->file, path, "/images", LFS_H5_U8, 4, idims, err,
                                             errlen)) >= 0 &&
           (issame = lfs_h5_open_checked(ps->file, path, "/issame", LFS_H5_U8, 1, sdims, err,
                                         errlen)) >= 0 &&
           check_shape(ps, idims, sdims[0], err, errlen) == 0;
  if (ok) {
    ps->pairs = (int64_t)sdims[0];
    ps->height = (int)idims[1];
    ps->width = (int)idims[2];
    ok = read_issame(ps, issame, err, errlen) == 0;
  }
  lfs_h5_close_id(issame);
  if (!ok) {
    pairset_free(ps);
    return NULL;
  }
  return ps;
}

lfs_pairset *lfs_pairset_open(const char *path, char *err, size_t errlen) {
  lfs_h5_lock();
  lfs_pairset *ps = open_locked(path, err, errlen);
  lfs_h5_unlock();
  return ps;
}

void lfs_pairset_close(lfs_pairset *ps) {
  if (!ps) return;
  lfs_h5_lock();
  pairset_free(ps);
  lfs_h5_unlock();
}

int64_t lfs_pairset_count(const lfs_pairset *ps) { return ps->pairs; }
int lfs_pairset_height(const lfs_pairset *ps) { return ps->height; }
int lfs_pairset_width(const lfs_pairset *ps) { return ps->width; }
const char *lfs_pairset_name(const lfs_pairset *ps) { return ps->name; }

static int check_range(const lfs_pairset *ps, int64_t first, int64_t count, char *err, size_t errlen) {
  if (first < 0 || count < 0 || first > ps->pairs - count)
    return lfs_h5_fail(err, errlen, ps->path, "pairs [%lld, %lld) are outside the pair set's [0, %lld)",
                       (long long)first, (long long)first + (long long)count, (long long)ps->pairs);
  return 0;
}

int lfs_pairset_issame(lfs_pairset *ps, int64_t first, int64_t count, uint8_t *issame, char *err,
                       size_t errlen) {
  if (check_range(ps, first, count, err, errlen) != 0) return -1;
  if (count > 0) memcpy(issame, ps->issame + first, (size_t)count);
  return 0;
}

int lfs_pairset_read(lfs_pairset *ps, int64_t first, int64_t count, uint8_t *images, char *err,
                     size_t errlen) {
  if (check_range(ps, first, count, err, errlen) != 0) return -1;
  lfs_h5_lock();
  int rc = lfs_h5_read_rows(ps->images, H5T_NATIVE_UINT8, 4, 2 * first, 2 * count, images, ps->path,
                            "/images", err, errlen);
  lfs_h5_unlock();
  return rc;
}

/* ---- writing ---- */

static int write_images(hid_t f, const char *path, int height, int width, int64_t pairs,
                        const uint8_t *images, char *err, size_t errlen) {
  hsize_t dims[4] = {(hsize_t)(2 * pairs), (hsize_t)height, (hsize_t)width, 3};
  hsize_t chunk[4] = {dims[0] < LFS_PAIR_CHUNK ? dims[0] : LFS_PAIR_CHUNK, dims[1], dims[2], 3};
  return lfs_h5_write_whole(f, path, "/images", H5T_STD_U8LE, H5T_NATIVE_UINT8, 4, dims, chunk,
                            images, err, errlen);
}

static int write_issame(hid_t f, const char *path, int64_t pairs, const uint8_t *issame, char *err,
                        size_t errlen) {
  hsize_t n = (hsize_t)pairs;
  return lfs_h5_write_whole(f, path, "/issame", H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, &n, NULL, issame,
                            err, errlen);
}

static int write_locked(const char *path, const char *name, int height, int width, int64_t pairs,
                        const uint8_t *images, const uint8_t *issame, char *err, size_t errlen) {
  char *tmp = NULL;
  hid_t f = lfs_h5_create_tmp(path, &tmp, err, errlen);
  if (f < 0) return -1;
  int rc = lfs_h5_write_str_attr(f, path, "format", LFS_PAIRS_FORMAT, err, errlen) == 0 &&
                   lfs_h5_write_int_attr(f, path, "format_version", LFS_DATA_FORMAT_VERSION, err,
                                         errlen) == 0 &&
                   lfs_h5_write_str_attr(f, path, "name", name, err, errlen) == 0 &&
                   write_images(f, path, height, width, pairs, images, err, errlen) == 0 &&
                   write_issame(f, path, pairs, issame, err, errlen) == 0
               ? 0
               : -1;
  if (rc == 0)
    rc = lfs_h5_commit_tmp(f, tmp, path, err, errlen);
  else
    lfs_h5_discard_tmp(f, tmp);
  free(tmp);
  return rc;
}

int lfs_pairset_write(const char *path, const char *name, int height, int width, int64_t pairs,
                      const uint8_t *images, const uint8_t *issame, char *err, size_t errlen) {
  if (!name) return lfs_h5_fail(err, errlen, path, "attribute name: no name given");
  if (height < 1 || height > LFS_MAX_SIDE || width < 1 || width > LFS_MAX_SIDE)
    return lfs_h5_fail(err, errlen, path, "image size %dx%d is outside [1, %d]", height, width,
                       LFS_MAX_SIDE);
  if (pairs < 1) return lfs_h5_fail(err, errlen, path, "a pair set needs at least one pair (got %lld)",
                                    (long long)pairs);
  for (int64_t i = 0; i < pairs; i++)
    if (issame[i] > 1)
      return lfs_h5_fail(err, errlen, path, "issame[%lld] = %u, expected 0 or 1", (long long)i,
                         issame[i]);
  lfs_h5_lock();
  int rc = write_locked(path, name, height, width, pairs, images, issame, err, errlen);
  lfs_h5_unlock();
  return rc;
}
