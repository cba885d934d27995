/* checkpoint.h: training checkpoints (DESIGN §6, §8), one HDF5 file each.
 *
 * Layout (format "lfsearch-checkpoint", format_version 1):
 *   root attributes  format, format_version, epoch, step (the data cursor: resume
 *                    at step `step` of epoch `epoch`; step 0 is an epoch boundary, so
 *                    an end-of-epoch checkpoint after epoch e has epoch e+1, step 0),
 *                    world_size, config (resolved INI text, lfs_config_dump),
 *                    created (ISO 8601 UTC; optional, the only non-deterministic field)
 *   /model/<name>    every view of the model's lfs_params (trainable, frozen, buffers),
 *                    float32 with the view's shape; <name> is insightface's state-dict
 *                    key ("layer1.0.bn1.running_mean": dots are plain characters in an
 *                    HDF5 link name), so /model loads into PyTorch by name
 *   /head/weight     float32 [classes, D]
 *   /optim/<name>    momentum of each trainable view (velocity + view->offset)
 *   /policy/...      search policy state: arrays (mu, sigma, Adam moments) and
 *                    attributes (Adam step) as the search code chooses
 *   /search/...      search history, likewise
 *   /candidates/<i>/{model,optim,head}/...  mid-epoch state of candidate i
 *                    (lfs_ckpt_candidate_group builds these group names)
 * Everything under a group is generic: named arrays (float32, float64, int32, int64)
 * of 1 to LFS_CKPT_MAX_DIMS dimensions, and scalar attributes on any group.
 *
 * Writing goes to "<path>.tmp-<pid>" and lfs_ckpt_commit closes, fsyncs and renames
 * it, so a file under a checkpoint name is always complete. One rank writes a file
 * (lfs_ckpt_create), or all ranks of a communicator write parts of one through
 * parallel HDF5 (lfs_ckpt_create_collective; rank 0's pid names it). No object carries a
 * timestamp: without `created`, the same contents give byte-identical files.
 *
 * Buffers are host memory: download device tensors first. All calls take
 * lfs_h5_lock(), so they may run while the loader's thread reads datasets.
 * Functions that can fail return -1 (or NULL) with "FILE: what: problem" in err. */
#ifndef LFS_CHECKPOINT_H
#define LFS_CHECKPOINT_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "lfs/params.h"

#define LFS_CKPT_FORMAT "lfsearch-checkpoint"
#define LFS_CKPT_FORMAT_VERSION 1
#define LFS_CKPT_MAX_DIMS 8

typedef struct lfs_ckpt lfs_ckpt;

/* Root attributes. On read, config and created are owned by the handle (created
 * is NULL when the file has none). */
typedef struct {
  int64_t epoch, step;
  int world_size;
  const char *config; /* NULL is written as "" */
  int write_created;  /* write: 1 adds `created` (the current time) */
  const char *created;
} lfs_ckpt_meta;

typedef enum { LFS_CKPT_F32 = 0, LFS_CKPT_F64, LFS_CKPT_I32, LFS_CKPT_I64 } lfs_ckpt_type;

/* Which views of an lfs_params a call covers: a bit per lfs_param_kind. */
#define LFS_CKPT_VIEWS_TRAINABLE (1u << LFS_PARAM_TRAINABLE)
#define LFS_CKPT_VIEWS_ALL \
  ((1u << LFS_PARAM_TRAINABLE) | (1u << LFS_PARAM_FROZEN) | (1u << LFS_PARAM_BUFFER))

/* ---- writing ---- */

/* Starts a checkpoint that will be renamed to path on commit. The directory must exist. */
lfs_ckpt *lfs_ckpt_create(const char *path, const lfs_ckpt_meta *meta, char *err, size_t errlen);
/* 1 when this build's HDF5 is parallel, so lfs_ckpt_create_collective works. */
int lfs_ckpt_collective_available(void);
/* Collective over comm: one checkpoint written by all its ranks through MPI-IO.
 * Every rank then makes every writing call (and commit or close) with the same
 * names, shapes and attribute values; only the ranks lfs_ckpt_set_writer marks
 * write array data, the others' data pointers are not read. `created` is rank
 * 0's time. On failure returns NULL on every rank. */
lfs_ckpt *lfs_ckpt_create_collective(const char *path, const lfs_ckpt_meta *meta, MPI_Comm comm,
                                     char *err, size_t errlen);
/* Whether this rank writes the data of the arrays that follow (collective
 * handles start with every rank writing: mark one writer per array). */
void lfs_ckpt_set_writer(lfs_ckpt *h, int writes);
/* Writes data + view->offset of every view of p whose kind is in `views` as
 * group/<view name>. data is [p->count] for LFS_CKPT_VIEWS_ALL, or any host
 * buffer with p's offsets covering the selected views (the SGD velocity
 * [trainable_count] for LFS_CKPT_VIEWS_TRAINABLE). */
int lfs_ckpt_write_params(lfs_ckpt *h, const char *group, const lfs_params *p, const float *data,
                          unsigned views, char *err, size_t errlen);
/* Writes one array, e.g. "head/weight" [ndim dims]; missing groups are created. */
int lfs_ckpt_write_array(lfs_ckpt *h, const char *name, lfs_ckpt_type type, int ndim,
                         const int64_t *dims, const void *data, char *err, size_t errlen);
/* Scalar attributes of the group (or array) `object` ("" or "/" is the root);
 * a missing group is created. */
int lfs_ckpt_set_int(lfs_ckpt *h, const char *object, const char *name, int64_t value, char *err,
                     size_t errlen);
int lfs_ckpt_set_real(lfs_ckpt *h, const char *object, const char *name, double value, char *err,
                      size_t errlen);
int lfs_ckpt_set_text(lfs_ckpt *h, const char *object, const char *name, const char *value,
                      char *err, size_t errlen);
/* Closes, fsyncs and renames the file into place (and fsyncs the directory).
 * Frees h whether it succeeds or not; on failure nothing is left behind. */
int lfs_ckpt_commit(lfs_ckpt *h, char *err, size_t errlen);

/* ---- reading ---- */

/* Opens and validates a checkpoint (format, version, root attributes). */
lfs_ckpt *lfs_ckpt_open(const char *path, char *err, size_t errlen);
const lfs_ckpt_meta *lfs_ckpt_info(const lfs_ckpt *h);
const char *lfs_ckpt_file(const lfs_ckpt *h);
/* Reads group/<view name> into data + view->offset for every view whose kind is
 * in `views`. The group must hold exactly those tensors, each float32 with the
 * view's shape: a missing tensor, one the model does not have, or a shape or type
 * mismatch is an error naming the file and the tensor. Validates everything before
 * touching data; after a failed read, data is unspecified. */
int lfs_ckpt_read_params(lfs_ckpt *h, const char *group, const lfs_params *p, float *data,
                         unsigned views, char *err, size_t errlen);
/* Reads an array that must have exactly this type and shape. */
int lfs_ckpt_read_array(lfs_ckpt *h, const char *name, lfs_ckpt_type type, int ndim,
                        const int64_t *dims, void *data, char *err, size_t errlen);
/* The shape of an array (*ndim, dims[LFS_CKPT_MAX_DIMS]), to size a buffer before
 * reading; -1 if it is missing or not an array. */
int lfs_ckpt_array_shape(lfs_ckpt *h, const char *name, int *ndim, int64_t *dims, char *err,
                         size_t errlen);
/* 1 if the group or array exists, else 0. */
int lfs_ckpt_has(lfs_ckpt *h, const char *name);
/* Names directly under a group, sorted (malloc'd array of malloc'd strings; free
 * with lfs_ckpt_free_names). */
int lfs_ckpt_list(lfs_ckpt *h, const char *group, char ***names, int *count, char *err,
                  size_t errlen);
void lfs_ckpt_free_names(char **names, int count);
int lfs_ckpt_get_int(lfs_ckpt *h, const char *object, const char *name, int64_t *value, char *err,
                     size_t errlen);
int lfs_ckpt_get_real(lfs_ckpt *h, const char *object, const char *name, double *value, char *err,
                      size_t errlen);
/* Returns a malloc'd string or NULL. */
char *lfs_ckpt_get_text(lfs_ckpt *h, const char *object, const char *name, char *err,
                        size_t errlen);

/* Closes a handle. An uncommitted written checkpoint is discarded (its temporary
 * file removed). NULL is ignored. */
void lfs_ckpt_close(lfs_ckpt *h);

/* ---- names and directories ---- */

/* "candidates/<i>/<part>" (part e.g. "model"; NULL or "" gives "candidates/<i>"). */
void lfs_ckpt_candidate_group(char *buf, size_t len, int candidate, const char *part);
/* malloc'd "DIR/ckpt-eEEEE-sSSSSSS.h5" (wider when the numbers need it). */
char *lfs_ckpt_path(const char *dir, int64_t epoch, int64_t step);
/* 1 and *epoch, *step if `basename` is a checkpoint's final name (not a temporary one). */
int lfs_ckpt_parse_name(const char *basename, int64_t *epoch, int64_t *step);
/* The newest complete checkpoint in dir, by (epoch, step): files that do not open
 * as a valid checkpoint whose attributes match their name are skipped with a
 * warning, temporary files are ignored. Returns 1 with *path (malloc'd), 0 when
 * there is none (also when dir does not exist), -1 on an error reading dir. */
int lfs_ckpt_newest(const char *dir, char **path, char *err, size_t errlen);
/* Keeps the `keep` (>= 1) newest complete checkpoints of dir and removes older
 * ones, older invalid ones, and temporary files of names older than the oldest
 * kept (stale leftovers of crashed writers; newer ones may be in progress).
 * Returns the number of files removed, or -1. */
int lfs_ckpt_prune(const char *dir, int keep, char *err, size_t errlen);

#endif
