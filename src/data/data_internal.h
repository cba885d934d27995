/* data_internal.h: helpers shared by the HDF5 file modules (dataset.c,
 * pairset.c, manifest.c; src/io/checkpoint.c and runlog.c): error messages
 * that name the file and the field,
 * checked reads of attributes and of dataset types and shapes, string
 * datasets, and the temporary-name-then-rename protocol of the writers.
 *
 * Every helper here expects the caller to hold lfs_h5_lock(). Errors go to
 * err as "FILE: FIELD: problem"; HDF5's own explanation of a failed library
 * call, when it has one, is appended in parentheses. */
#ifndef LFS_DATA_INTERNAL_H
#define LFS_DATA_INTERNAL_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

#include "lfs/dataset.h"

/* Formats err as "path: message". Always returns -1 (so callers can `return lfs_h5_fail(...)`). */
int lfs_h5_fail(char *err, size_t errlen, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Like lfs_h5_fail, then appends HDF5's innermost error description (the
 * cause of the failed call, e.g. "No space left on device"). */
int lfs_h5_fail_lib(char *err, size_t errlen, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Opens an existing file read-only with the serial (sec2) driver; each MPI rank
 * opens independently. Checks existence and the HDF5 signature first so the
 * message says which it was. Returns the file id or -1. */
hid_t lfs_h5_open_read(const char *path, char *err, size_t errlen);

/* Root attributes. Integers may be stored with any integer type; strings as
 * fixed- or variable-length. `what` is the attribute name used in messages. */
int lfs_h5_attr_exists(hid_t obj, const char *name);
int lfs_h5_read_int_attr(hid_t obj, const char *path, const char *name, int64_t *value, char *err,
                         size_t errlen);
/* Reads an int attribute and checks it lies in [lo, hi]. */
int lfs_h5_read_int_attr_range(hid_t obj, const char *path, const char *name, int64_t lo,
                               int64_t hi, int64_t *value, char *err, size_t errlen);
/* Returns a malloc'd copy of a string attribute, or NULL with a message. */
char *lfs_h5_read_str_attr(hid_t obj, const char *path, const char *name, char *err, size_t errlen);
/* int32 (an error if value does not fit) and int64 scalars. */
int lfs_h5_write_int_attr(hid_t obj, const char *path, const char *name, int64_t value, char *err,
                          size_t errlen);
int lfs_h5_write_i64_attr(hid_t obj, const char *path, const char *name, int64_t value, char *err,
                          size_t errlen);
/* Variable-length UTF-8 string, scalar (what h5py reads back as str). */
int lfs_h5_write_str_attr(hid_t obj, const char *path, const char *name, const char *value,
                          char *err, size_t errlen);

/* Checks format and format_version against `format`. */
int lfs_h5_check_format(hid_t file, const char *path, const char *format, char *err, size_t errlen);
/* The same for a format with its own version number (checkpoints, run logs). */
int lfs_h5_check_format_version(hid_t file, const char *path, const char *format, int version,
                                char *err, size_t errlen);
/* float64 scalar attributes; the reader accepts any floating-point type. */
int lfs_h5_write_f64_attr(hid_t obj, const char *path, const char *name, double value, char *err,
                          size_t errlen);
int lfs_h5_read_f64_attr(hid_t obj, const char *path, const char *name, double *value, char *err,
                         size_t errlen);

/* Element kinds a dataset may be required to hold. */
typedef enum { LFS_H5_U8, LFS_H5_I32, LFS_H5_I64, LFS_H5_STRING, LFS_H5_F32, LFS_H5_F64 } lfs_h5_kind;

/* Opens dataset `name` (e.g. "/images"), checks its element type and rank and
 * returns its dims (dims[rank]). Returns the dataset id or -1 with a message. */
hid_t lfs_h5_open_checked(hid_t file, const char *path, const char *name, lfs_h5_kind kind,
                          int rank, hsize_t *dims, char *err, size_t errlen);
/* Images per chunk of an [N, H, W, 3] dataset (1 when it is not chunked). */
int lfs_h5_images_per_chunk(hid_t dset);

/* Reads rows [first, first + count) of a dataset whose rows are `row_elems`
 * elements of `mem_type`, in one hyperslab read. */
int lfs_h5_read_rows(hid_t dset, hid_t mem_type, int rank, int64_t first, int64_t count,
                     void *buf, const char *path, const char *name, char *err, size_t errlen);

/* A whole rank-1 string dataset (fixed- or variable-length): returns n
 * malloc'd strings in a malloc'd array (free with lfs_h5_free_strings). */
char **lfs_h5_read_strings(hid_t dset, const char *path, const char *name, int64_t n, char *err,
                           size_t errlen);
void lfs_h5_free_strings(char **s, int64_t n);

/* ---- writers: temporary file then rename ---- */
/* Creates (truncating) the temporary file "<path>.tmp-<pid>"; *tmp receives a
 * malloc'd copy of its name. */
/* A dataset-creation property list that stores no modification times, so that
 * the same data always gives byte-identical files. Close with H5Pclose. */
hid_t lfs_h5_dcpl(void);
/* The same for groups (group creation property list). */
hid_t lfs_h5_gcpl(void);
/* Creates dataset `name` [dims] of file_type (chunked by `chunk` when non-NULL, no
 * fill values, no timestamps) and writes all of buf (mem_type) into it. buf NULL
 * only creates it: in a file open on several ranks (lfs_h5_create_tmp_collective)
 * every rank creates each dataset, and one of them writes its data. */
int lfs_h5_write_whole(hid_t file, const char *path, const char *name, hid_t file_type,
                       hid_t mem_type, int rank, const hsize_t *dims, const hsize_t *chunk,
                       const void *buf, char *err, size_t errlen);
hid_t lfs_h5_create_tmp(const char *path, char **tmp, char *err, size_t errlen);
/* Closes the file (its objects must be closed), flushes it to disk and renames
 * it to path. On failure removes the temporary file. */
int lfs_h5_commit_tmp(hid_t file, const char *tmp, const char *path, char *err, size_t errlen);
/* The flush and rename of lfs_h5_commit_tmp, for a temporary file already closed. */
int lfs_h5_commit_closed_tmp(const char *tmp, const char *path, char *err, size_t errlen);
/* Closes the file (if >= 0) and removes the temporary file. */
void lfs_h5_discard_tmp(hid_t file, const char *tmp);

#ifdef H5_HAVE_PARALLEL
/* The same protocol for one file written by every rank of comm through MPI-IO
 * (parallel HDF5): collective calls, rank 0's temporary name, rank 0 renames.
 * Metadata operations (groups, datasets, attributes) must then be made by every
 * rank with the same arguments; raw data may be written by one rank alone. */
hid_t lfs_h5_create_tmp_collective(const char *path, MPI_Comm comm, char **tmp, char *err,
                                   size_t errlen);
int lfs_h5_commit_tmp_collective(hid_t file, const char *tmp, const char *path, MPI_Comm comm,
                                 char *err, size_t errlen);
void lfs_h5_discard_tmp_collective(hid_t file, const char *tmp, MPI_Comm comm);
#endif

/* Closes an id if it is valid (>= 0). */
void lfs_h5_close_id(hid_t id);

/* ---- datasets: one shard and how a dataset maps onto shards ---- */
typedef struct {
  char *path;              /* as opened (resolved against the manifest's directory) */
  hid_t file, images, labels;
  int64_t first, count;    /* global index of its first image; its images */
  int chunk;               /* images per HDF5 chunk */
  int32_t label_min, label_max; /* from the manifest; [0, num_classes) for a lone shard */
  int has_range;           /* label_min/max come from a manifest */
} lfs_shard;

/* Opens and validates one shard file (format lfsearch-dataset). Fills
 * height, width, num_classes and a malloc'd source. */
int lfs_shard_open(lfs_shard *s, const char *path, int *height, int *width, int32_t *num_classes,
                   char **source, char *err, size_t errlen);
void lfs_shard_close(lfs_shard *s);
/* Smallest and largest label of a whole shard (reads /labels in blocks). */
int lfs_shard_label_range(lfs_shard *s, int32_t num_classes, int32_t *lo, int32_t *hi, char *err,
                          size_t errlen);

/* manifest.c: opens a manifest file and its shards into the dataset's fields. */
typedef struct {
  lfs_shard *shards;
  int nshards;
  int height, width;
  int32_t num_classes;
  char *source;
} lfs_shard_set;
int lfs_manifest_open(hid_t file, const char *path, lfs_shard_set *set, char *err, size_t errlen);

#endif
