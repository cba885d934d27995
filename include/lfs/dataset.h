/* dataset.h: lfsearch's HDF5 files of face images (DESIGN §6).
 *
 * Dataset shard (format "lfsearch-dataset"): /images uint8 [N, H, W, 3] RGB,
 * chunked by whole images; /labels int32 [N]; root attributes format,
 * format_version, num_classes, height, width, source.
 * Manifest (format "lfsearch-manifest"): a dataset made of several shards,
 * listed with their image counts and label ranges; shard paths are relative to
 * the manifest's directory. Readers accept a shard or a manifest alike.
 * Pair set (format "lfsearch-pairs"): /images uint8 [2N, H, W, 3] (pair i is rows
 * 2i and 2i+1), /issame uint8 [N], attribute name.
 *
 * Every function that can fail on user input returns -1 with a message in err
 * naming the file and the field; nothing exits. Writers write to a temporary
 * name in the same directory and rename it into place on finish, so a failed
 * or aborted write never leaves a partial file under the final name.
 * HDF5 is not thread-safe here: every call goes through lfs_h5_lock(). */
#ifndef LFS_DATASET_H
#define LFS_DATASET_H

#include <stddef.h>
#include <stdint.h>

#define LFS_DATASET_FORMAT "lfsearch-dataset"
#define LFS_MANIFEST_FORMAT "lfsearch-manifest"
#define LFS_PAIRS_FORMAT "lfsearch-pairs"
#define LFS_DATA_FORMAT_VERSION 1

/* Serialises HDF5 calls between threads (the loader's prefetch thread, the main thread). */
void lfs_h5_lock(void);
void lfs_h5_unlock(void);
/* "1.10.8, parallel" (or "..., serial"): the HDF5 library this build links. */
const char *lfs_h5_library(void);

/* ---- reading a dataset (one shard or a manifest) ---- */
typedef struct lfs_dataset lfs_dataset;

lfs_dataset *lfs_dataset_open(const char *path, char *err, size_t errlen);
void lfs_dataset_close(lfs_dataset *ds);
int64_t lfs_dataset_count(const lfs_dataset *ds);
int lfs_dataset_height(const lfs_dataset *ds);
int lfs_dataset_width(const lfs_dataset *ds);
int32_t lfs_dataset_classes(const lfs_dataset *ds);
const char *lfs_dataset_source(const lfs_dataset *ds);
int lfs_dataset_shards(const lfs_dataset *ds);
/* Images per HDF5 chunk (the unit the loader shuffles); the smallest over shards. */
int lfs_dataset_chunk(const lfs_dataset *ds);
/* Shard i (0 <= i < lfs_dataset_shards): its file (resolved against the
 * manifest's directory) and image count; shards hold consecutive index ranges. */
const char *lfs_dataset_shard_path(const lfs_dataset *ds, int i);
int64_t lfs_dataset_shard_count(const lfs_dataset *ds, int i);
/* Reads images [first, first + count) (they may span shards):
 * images [count, H, W, 3] uint8, labels [count] (either may be NULL). Checks
 * every label against num_classes. */
int lfs_dataset_read(lfs_dataset *ds, int64_t first, int64_t count, uint8_t *images,
                     int32_t *labels, char *err, size_t errlen);

/* ---- writing one shard ---- */
typedef struct lfs_dataset_writer lfs_dataset_writer;

/* chunk: images per HDF5 chunk (>= 1); source: free text ("synth seed=1", "rec:/path"). */
lfs_dataset_writer *lfs_dataset_writer_create(const char *path, int height, int width, int chunk,
                                              const char *source, char *err, size_t errlen);
/* images [count, H, W, 3], labels [count] */
int lfs_dataset_writer_append(lfs_dataset_writer *w, const uint8_t *images, const int32_t *labels,
                              int64_t count, char *err, size_t errlen);
/* Writes num_classes (every label must be below it), closes, renames into place.
 * finish and abort both free the writer, whatever the outcome; a failed finish
 * removes the temporary file and leaves any existing file at path untouched. */
int lfs_dataset_writer_finish(lfs_dataset_writer *w, int32_t num_classes, char *err, size_t errlen);
/* Discards the temporary file. */
void lfs_dataset_writer_abort(lfs_dataset_writer *w);

/* Writes a manifest at path listing the given shard files (paths as given on
 * disk; stored relative to the manifest's directory). Validates that the shards
 * agree on height, width and num_classes. */
int lfs_manifest_write(const char *path, const char *const *shards, int nshards, char *err,
                       size_t errlen);

/* ---- pair sets ---- */
typedef struct lfs_pairset lfs_pairset;

lfs_pairset *lfs_pairset_open(const char *path, char *err, size_t errlen);
void lfs_pairset_close(lfs_pairset *ps);
int64_t lfs_pairset_count(const lfs_pairset *ps); /* pairs */
int lfs_pairset_height(const lfs_pairset *ps);
int lfs_pairset_width(const lfs_pairset *ps);
const char *lfs_pairset_name(const lfs_pairset *ps);
/* issame [count] of pairs [first, first + count) */
int lfs_pairset_issame(lfs_pairset *ps, int64_t first, int64_t count, uint8_t *issame, char *err,
                       size_t errlen);
/* images [2*count, H, W, 3] of pairs [first, first + count) */
int lfs_pairset_read(lfs_pairset *ps, int64_t first, int64_t count, uint8_t *images, char *err,
                     size_t errlen);

/* Writes a whole pair set at once (small enough for memory): images [2n, H, W, 3], issame [n]. */
int lfs_pairset_write(const char *path, const char *name, int height, int width, int64_t pairs,
                      const uint8_t *images, const uint8_t *issame, char *err, size_t errlen);

/* What kind of lfsearch file this is ("lfsearch-dataset", ...), read from its
 * format attribute; -1 with a message if it is not an lfsearch HDF5 file. */
int lfs_h5_format(const char *path, char *format, size_t len, char *err, size_t errlen);

#endif
