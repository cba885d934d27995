/* checkpoint.c: checkpoint files (layout in include/lfs/checkpoint.h, DESIGN §6):
 * generic named arrays and attributes under groups, and parameter views written
 * and validated by name and shape. The directory of checkpoints is
 * checkpoint_dir.c.
 *
 * Built on the data layer's HDF5 helpers (src/data/data_internal.h): every public
 * function holds lfs_h5_lock() for its HDF5 calls; the *_locked functions expect
 * it held. Groups and datasets are created without timestamps. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "data/data_internal.h"
#include "lfs/checkpoint.h"
#include "lfs/fileio.h"
#include "lfs/log.h"

struct lfs_ckpt {
  hid_t file;
  char *path;    /* the final name (messages always name it) */
  char *tmp;     /* while writing: the temporary file; NULL for a read handle */
  MPI_Comm comm; /* a collective write: the writing ranks; else MPI_COMM_NULL */
  int writer;    /* this rank writes array data (always, unless collective) */
  char *deferred_error; /* collective: this rank's failed data write, reported at commit */
  lfs_ckpt_meta meta;
  char *config;  /* read: owned copies behind meta.config / meta.created */
  char *created;
};

/* ---- names ---- */

/* Copies name into buf as an absolute HDF5 path ("head/weight" -> "/head/weight"),
 * rejecting empty components, "." and "..". "" and "/" give "/" when allow_root. */
static int full_name(char *buf, size_t len, const char *path, const char *name, int allow_root,
                     char *err, size_t errlen) {
  const char *s = name ? name : "";
  while (*s == '/') s++;
  if (!*s) {
    if (!allow_root) return lfs_h5_fail(err, errlen, path, "empty name \"%s\"", name ? name : "");
    snprintf(buf, len, "/");
    return 0;
  }
  int n = snprintf(buf, len, "/%s", s);
  if (n < 0 || (size_t)n >= len) return lfs_h5_fail(err, errlen, path, "name too long: %.64s...", s);
  for (const char *c = buf + 1; *c;) {
    const char *e = strchr(c, '/');
    size_t clen = e ? (size_t)(e - c) : strlen(c);
    if (clen == 0 || (clen == 1 && c[0] == '.') || (clen == 2 && c[0] == '.' && c[1] == '.'))
      return lfs_h5_fail(err, errlen, path, "bad name \"%s\": empty, \".\" or \"..\" component",
                         name);
    c += clen + (e ? 1 : 0);
    if (e && !*c)
      return lfs_h5_fail(err, errlen, path, "bad name \"%s\": ends in '/'", name);
  }
  return 0;
}

/* "[16, 8, 3, 3]" */
static void fmt_shape(char *buf, size_t len, int ndim, const hsize_t *dims) {
  size_t used = 0;
  used += (size_t)snprintf(buf, len, "[");
  for (int i = 0; i < ndim && used < len; i++)
    used += (size_t)snprintf(buf + used, len - used, "%s%llu", i ? ", " : "",
                             (unsigned long long)dims[i]);
  if (used < len) snprintf(buf + used, len - used, "]");
}

static const char *type_label(lfs_ckpt_type t) {
  static const char *names[] = {"float32", "float64", "int32", "int64"};
  return (unsigned)t < 4 ? names[t] : "unknown";
}

static hid_t file_type(lfs_ckpt_type t) {
  switch (t) {
  case LFS_CKPT_F32: return H5T_IEEE_F32LE;
  case LFS_CKPT_F64: return H5T_IEEE_F64LE;
  case LFS_CKPT_I32: return H5T_STD_I32LE;
  default: return H5T_STD_I64LE;
  }
}

static hid_t mem_type(lfs_ckpt_type t) {
  switch (t) {
  case LFS_CKPT_F32: return H5T_NATIVE_FLOAT;
  case LFS_CKPT_F64: return H5T_NATIVE_DOUBLE;
  case LFS_CKPT_I32: return H5T_NATIVE_INT32;
  default: return H5T_NATIVE_INT64;
  }
}

/* The lfs_ckpt_type of a stored type, or -1 for anything else. */
static int type_of(hid_t t) {
  H5T_class_t c = H5Tget_class(t);
  size_t size = H5Tget_size(t);
  if (c == H5T_FLOAT) return size == 4 ? LFS_CKPT_F32 : size == 8 ? LFS_CKPT_F64 : -1;
  if (c == H5T_INTEGER && H5Tget_sign(t) == H5T_SGN_2)
    return size == 4 ? LFS_CKPT_I32 : size == 8 ? LFS_CKPT_I64 : -1;
  return -1;
}

/* ---- objects ---- */

/* 1 if every component of an absolute name exists (H5Lexists needs the parents). */
static int exists_locked(hid_t file, const char *full) {
  if (strcmp(full, "/") == 0) return 1;
  char buf[1024];
  snprintf(buf, sizeof buf, "%s", full);
  for (char *c = strchr(buf + 1, '/');; c = strchr(c + 1, '/')) {
    if (c) *c = '\0';
    htri_t ex = H5Lexists(file, buf, H5P_DEFAULT);
    if (c) *c = '/';
    if (ex <= 0) {
      H5Eclear2(H5E_DEFAULT);
      return 0;
    }
    if (!c) return 1;
  }
}

/* H5I_GROUP, H5I_DATASET, ... of an existing object, or H5I_BADID. */
static H5I_type_t object_type(hid_t file, const char *full) {
  hid_t o = H5Oopen(file, full, H5P_DEFAULT);
  if (o < 0) return H5I_BADID;
  H5I_type_t t = H5Iget_type(o);
  H5Oclose(o);
  return t;
}

/* Creates the missing groups along full (all of it when include_last, else its
 * parents), without timestamps. */
static int make_groups(lfs_ckpt *h, const char *full, int include_last, char *err, size_t errlen) {
  char buf[1024];
  snprintf(buf, sizeof buf, "%s", full);
  hid_t gcpl = lfs_h5_gcpl();
  if (gcpl < 0) return lfs_h5_fail_lib(err, errlen, h->path, "cannot make group properties");
  int rc = 0;
  for (char *c = strchr(buf + 1, '/'); rc == 0; c = strchr(c + 1, '/')) {
    if (!c && !include_last) break;
    if (c) *c = '\0';
    htri_t ex = H5Lexists(h->file, buf, H5P_DEFAULT);
    if (ex < 0) {
      rc = lfs_h5_fail_lib(err, errlen, h->path, "%s: cannot query it", buf);
    } else if (ex == 0) {
      hid_t g = H5Gcreate2(h->file, buf, H5P_DEFAULT, gcpl, H5P_DEFAULT);
      if (g < 0) rc = lfs_h5_fail_lib(err, errlen, h->path, "%s: cannot create the group", buf);
      lfs_h5_close_id(g);
    } else if (c && object_type(h->file, buf) != H5I_GROUP) {
      rc = lfs_h5_fail(err, errlen, h->path, "%s exists and is not a group", buf);
    }
    if (!c) break;
    *c = '/';
  }
  H5Pclose(gcpl);
  return rc;
}

/* Opens an array and describes it: *type (-1 when not one of ours), *ndim, dims. */
static hid_t open_array(lfs_ckpt *h, const char *full, int *type, int *ndim, hsize_t *dims,
                        char *err, size_t errlen) {
  if (!exists_locked(h->file, full)) return lfs_h5_fail(err, errlen, h->path, "%s is missing", full);
  if (object_type(h->file, full) != H5I_DATASET)
    return lfs_h5_fail(err, errlen, h->path, "%s is not an array", full);
  hid_t d = H5Dopen2(h->file, full, H5P_DEFAULT);
  if (d < 0) return lfs_h5_fail_lib(err, errlen, h->path, "%s: cannot open it", full);
  hid_t t = H5Dget_type(d), sp = H5Dget_space(d);
  int ok = 0;
  if (t < 0 || sp < 0) {
    lfs_h5_fail_lib(err, errlen, h->path, "%s: cannot read its type and shape", full);
  } else if (H5Sget_simple_extent_type(sp) == H5S_SCALAR) {
    *ndim = 0;
    ok = 1;
  } else {
    int nd = H5Sget_simple_extent_ndims(sp);
    if (nd < 0 || nd > LFS_CKPT_MAX_DIMS)
      lfs_h5_fail(err, errlen, h->path, "%s has %d dimensions, at most %d are supported", full, nd,
                  LFS_CKPT_MAX_DIMS);
    else if (H5Sget_simple_extent_dims(sp, dims, NULL) < 0)
      lfs_h5_fail_lib(err, errlen, h->path, "%s: cannot read its shape", full);
    else
      *ndim = nd, ok = 1;
  }
  if (ok) *type = type_of(t);
  lfs_h5_close_id(t);
  lfs_h5_close_id(sp);
  if (!ok) {
    H5Dclose(d);
    return -1;
  }
  return d;
}

/* Opens a group or array for attributes; creates a missing group when `create`. */
static hid_t open_object(lfs_ckpt *h, const char *object, int create, char *err, size_t errlen) {
  char full[1024];
  if (full_name(full, sizeof full, h->path, object, 1, err, errlen) != 0) return -1;
  if (!exists_locked(h->file, full)) {
    if (!create) return lfs_h5_fail(err, errlen, h->path, "%s is missing", full);
    if (make_groups(h, full, 1, err, errlen) != 0) return -1;
  }
  hid_t o = H5Oopen(h->file, full, H5P_DEFAULT);
  if (o < 0) lfs_h5_fail_lib(err, errlen, h->path, "%s: cannot open it", full);
  return o;
}

/* ---- writing ---- */

/* A collective handle's raw-data write, which only the writer makes: its failure
 * must not make this rank skip the collective calls that follow, so it is kept
 * for lfs_ckpt_commit, which then fails on every rank. */
static void write_data_deferred(lfs_ckpt *h, const char *full, lfs_ckpt_type type, const void *data) {
  if (h->deferred_error) return;
  hid_t d = H5Dopen2(h->file, full, H5P_DEFAULT);
  if (d < 0 || H5Dwrite(d, mem_type(type), H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) {
    char msg[512];
    lfs_h5_fail_lib(msg, sizeof msg, h->path, "cannot write dataset %s", full);
    h->deferred_error = strdup(msg);
    if (!h->deferred_error) lfs_fatal("out of memory");
  }
  lfs_h5_close_id(d);
}

static int write_array_locked(lfs_ckpt *h, const char *full, lfs_ckpt_type type, int ndim,
                              const int64_t *dims, const void *data, char *err, size_t errlen) {
  if (!h->tmp) return lfs_h5_fail(err, errlen, h->path, "%s: the checkpoint is open for reading", full);
  if ((unsigned)type > LFS_CKPT_I64)
    return lfs_h5_fail(err, errlen, h->path, "%s: unknown element type %d", full, (int)type);
  if (ndim < 1 || ndim > LFS_CKPT_MAX_DIMS)
    return lfs_h5_fail(err, errlen, h->path, "%s: %d dimensions, expected 1 to %d", full, ndim,
                       LFS_CKPT_MAX_DIMS);
  hsize_t hd[LFS_CKPT_MAX_DIMS];
  for (int i = 0; i < ndim; i++) {
    if (dims[i] < 0)
      return lfs_h5_fail(err, errlen, h->path, "%s: negative dimension %lld", full,
                         (long long)dims[i]);
    hd[i] = (hsize_t)dims[i];
  }
  if (exists_locked(h->file, full))
    return lfs_h5_fail(err, errlen, h->path, "%s is written twice", full);
  if (make_groups(h, full, 0, err, errlen) != 0) return -1;
  if (h->comm == MPI_COMM_NULL)
    return lfs_h5_write_whole(h->file, h->path, full, file_type(type), mem_type(type), ndim, hd,
                              NULL, data, err, errlen);
  /* collective: every rank creates, the writer writes */
  if (lfs_h5_write_whole(h->file, h->path, full, file_type(type), mem_type(type), ndim, hd, NULL,
                         NULL, err, errlen) != 0)
    return -1;
  if (h->writer) write_data_deferred(h, full, type, data);
  return 0;
}

static void iso_time_now(char *buf, size_t len) {
  time_t now = time(NULL);
  struct tm tm;
  if (now == (time_t)-1 || !gmtime_r(&now, &tm) || strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
    snprintf(buf, len, "unknown");
}

/* `created` is the time `now`, or absent when now is NULL. */
static int write_meta_locked(lfs_ckpt *h, const lfs_ckpt_meta *m, const char *now, char *err,
                             size_t errlen) {
  if (m->epoch < 0 || m->step < 0 || m->world_size < 1)
    return lfs_h5_fail(err, errlen, h->path, "bad checkpoint cursor: epoch %lld, step %lld, world size %d",
                       (long long)m->epoch, (long long)m->step, m->world_size);
  const char *p = h->path;
  hid_t f = h->file;
  if (lfs_h5_write_str_attr(f, p, "format", LFS_CKPT_FORMAT, err, errlen) != 0 ||
      lfs_h5_write_int_attr(f, p, "format_version", LFS_CKPT_FORMAT_VERSION, err, errlen) != 0 ||
      lfs_h5_write_i64_attr(f, p, "epoch", m->epoch, err, errlen) != 0 ||
      lfs_h5_write_i64_attr(f, p, "step", m->step, err, errlen) != 0 ||
      lfs_h5_write_int_attr(f, p, "world_size", m->world_size, err, errlen) != 0 ||
      lfs_h5_write_str_attr(f, p, "config", m->config ? m->config : "", err, errlen) != 0)
    return -1;
  return now ? lfs_h5_write_str_attr(f, p, "created", now, err, errlen) : 0;
}

static void free_handle(lfs_ckpt *h) {
  free(h->path);
  free(h->tmp);
  free(h->deferred_error);
  free(h->config);
  free(h->created);
  free(h);
}

static lfs_ckpt *new_write_handle(const char *path, const lfs_ckpt_meta *meta, MPI_Comm comm) {
  lfs_ckpt *h = lfs_calloc(1, sizeof *h);
  h->path = strdup(path);
  if (!h->path) lfs_fatal("out of memory");
  h->comm = comm;
  h->writer = 1;
  h->meta = *meta;
  h->meta.config = h->meta.created = NULL;
  return h;
}

lfs_ckpt *lfs_ckpt_create(const char *path, const lfs_ckpt_meta *meta, char *err, size_t errlen) {
  lfs_ckpt *h = new_write_handle(path, meta, MPI_COMM_NULL);
  char now[64];
  if (meta->write_created) iso_time_now(now, sizeof now);
  lfs_h5_lock();
  h->file = lfs_h5_create_tmp(path, &h->tmp, err, errlen);
  int rc = h->file < 0 ? -1 : write_meta_locked(h, meta, meta->write_created ? now : NULL, err, errlen);
  if (rc != 0) lfs_h5_discard_tmp(h->file, h->tmp);
  lfs_h5_unlock();
  if (rc != 0) {
    free_handle(h);
    return NULL;
  }
  return h;
}

int lfs_ckpt_collective_available(void) {
#ifdef H5_HAVE_PARALLEL
  return 1;
#else
  return 0;
#endif
}

lfs_ckpt *lfs_ckpt_create_collective(const char *path, const lfs_ckpt_meta *meta, MPI_Comm comm,
                                     char *err, size_t errlen) {
#ifdef H5_HAVE_PARALLEL
  lfs_ckpt *h = new_write_handle(path, meta, comm);
  char now[64] = "";
  if (meta->write_created) iso_time_now(now, sizeof now);
  MPI_Bcast(now, sizeof now, MPI_CHAR, 0, comm); /* attributes must agree on every rank */
  lfs_h5_lock();
  h->file = lfs_h5_create_tmp_collective(path, comm, &h->tmp, err, errlen);
  int rc = h->file < 0 ? -1 : write_meta_locked(h, meta, meta->write_created ? now : NULL, err, errlen);
  if (h->file >= 0) {
    int all;
    MPI_Allreduce(&rc, &all, 1, MPI_INT, MPI_MIN, comm);
    if (all != 0 && rc == 0) rc = lfs_h5_fail(err, errlen, path, "another rank could not start it");
    if (rc != 0) lfs_h5_discard_tmp_collective(h->file, h->tmp, comm);
  }
  lfs_h5_unlock();
  if (rc != 0) {
    free_handle(h);
    return NULL;
  }
  return h;
#else
  (void)meta, (void)comm;
  lfs_h5_fail(err, errlen, path, "this build's HDF5 is serial: no collective writes");
  return NULL;
#endif
}

void lfs_ckpt_set_writer(lfs_ckpt *h, int writes) {
  if (h->comm != MPI_COMM_NULL) h->writer = writes != 0;
}

int lfs_ckpt_write_array(lfs_ckpt *h, const char *name, lfs_ckpt_type type, int ndim,
                         const int64_t *dims, const void *data, char *err, size_t errlen) {
  char full[1024];
  if (full_name(full, sizeof full, h->path, name, 0, err, errlen) != 0) return -1;
  lfs_h5_lock();
  int rc = write_array_locked(h, full, type, ndim, dims, data, err, errlen);
  lfs_h5_unlock();
  return rc;
}

static int view_selected(const lfs_param_view *v, unsigned views) {
  return (views >> v->kind) & 1u;
}

/* group/<view name>, checking that the view name is one HDF5 link name. */
static int view_name(char *buf, size_t len, const char *path, const char *group,
                     const lfs_param_view *v, char *err, size_t errlen) {
  if (!v->name[0] || strchr(v->name, '/') || !strcmp(v->name, ".") || !strcmp(v->name, ".."))
    return lfs_h5_fail(err, errlen, path, "parameter name \"%s\" cannot be stored", v->name);
  char g[512];
  if (full_name(g, sizeof g, path, group, 1, err, errlen) != 0) return -1;
  int n = snprintf(buf, len, "%s/%s", strcmp(g, "/") ? g : "", v->name);
  if (n < 0 || (size_t)n >= len) return lfs_h5_fail(err, errlen, path, "name too long: %s", v->name);
  return 0;
}

int lfs_ckpt_write_params(lfs_ckpt *h, const char *group, const lfs_params *p, const float *data,
                          unsigned views, char *err, size_t errlen) {
  if (!h->tmp) return lfs_h5_fail(err, errlen, h->path, "%s: the checkpoint is open for reading", group);
  int rc = 0;
  lfs_h5_lock();
  char full[1024];
  if (full_name(full, sizeof full, h->path, group, 0, err, errlen) != 0 ||
      (!exists_locked(h->file, full) && make_groups(h, full, 1, err, errlen) != 0))
    rc = -1;
  for (int i = 0; rc == 0 && i < p->nviews; i++) {
    const lfs_param_view *v = &p->views[i];
    if (!view_selected(v, views)) continue;
    int64_t dims[4];
    for (int k = 0; k < v->ndim; k++) dims[k] = v->dims[k];
    rc = view_name(full, sizeof full, h->path, group, v, err, errlen);
    if (rc == 0)
      rc = write_array_locked(h, full, LFS_CKPT_F32, v->ndim, dims, data + v->offset, err, errlen);
  }
  lfs_h5_unlock();
  return rc;
}

/* Removes an attribute of that name first, so that a value can be replaced. */
static int set_attr(lfs_ckpt *h, const char *object, const char *name, int kind, int64_t i,
                    double r, const char *s, char *err, size_t errlen) {
  if (!h->tmp) return lfs_h5_fail(err, errlen, h->path, "attribute %s: the checkpoint is open for reading", name);
  lfs_h5_lock();
  hid_t o = open_object(h, object, 1, err, errlen);
  int rc = o < 0 ? -1 : 0;
  if (rc == 0 && H5Aexists(o, name) > 0 && H5Adelete(o, name) < 0)
    rc = lfs_h5_fail_lib(err, errlen, h->path, "attribute %s: cannot replace it", name);
  if (rc == 0) {
    if (kind == 0) rc = lfs_h5_write_i64_attr(o, h->path, name, i, err, errlen);
    else if (kind == 1) rc = lfs_h5_write_f64_attr(o, h->path, name, r, err, errlen);
    else rc = lfs_h5_write_str_attr(o, h->path, name, s ? s : "", err, errlen);
  }
  if (o >= 0) H5Oclose(o);
  lfs_h5_unlock();
  return rc;
}

int lfs_ckpt_set_int(lfs_ckpt *h, const char *object, const char *name, int64_t value, char *err,
                     size_t errlen) {
  return set_attr(h, object, name, 0, value, 0, NULL, err, errlen);
}

int lfs_ckpt_set_real(lfs_ckpt *h, const char *object, const char *name, double value, char *err,
                      size_t errlen) {
  return set_attr(h, object, name, 1, 0, value, NULL, err, errlen);
}

int lfs_ckpt_set_text(lfs_ckpt *h, const char *object, const char *name, const char *value,
                      char *err, size_t errlen) {
  return set_attr(h, object, name, 2, 0, 0, value, err, errlen);
}

int lfs_ckpt_commit(lfs_ckpt *h, char *err, size_t errlen) {
  if (!h->tmp) {
    lfs_h5_fail(err, errlen, h->path, "cannot commit a checkpoint opened for reading");
    lfs_ckpt_close(h);
    return -1;
  }
  int rc, rank0 = 1;
  lfs_h5_lock();
#ifdef H5_HAVE_PARALLEL
  if (h->comm != MPI_COMM_NULL) {
    int rank, mine = h->deferred_error != NULL, any;
    MPI_Comm_rank(h->comm, &rank);
    rank0 = rank == 0;
    MPI_Allreduce(&mine, &any, 1, MPI_INT, MPI_MAX, h->comm);
    if (any) {
      lfs_h5_discard_tmp_collective(h->file, h->tmp, h->comm);
      if (mine) snprintf(err, errlen, "%s", h->deferred_error);
      else lfs_h5_fail(err, errlen, h->path, "another rank could not write its part");
      rc = -1;
    } else {
      rc = lfs_h5_commit_tmp_collective(h->file, h->tmp, h->path, h->comm, err, errlen);
    }
  } else
#endif
    rc = lfs_h5_commit_tmp(h->file, h->tmp, h->path, err, errlen);
  lfs_h5_unlock();
  if (rc == 0 && rank0) lfs_sync_dir_of(h->path);
  free_handle(h);
  return rc;
}

/* ---- reading ---- */

static int read_meta_locked(lfs_ckpt *h, char *err, size_t errlen) {
  const char *p = h->path;
  int64_t epoch, step, world;
  if (lfs_h5_check_format_version(h->file, p, LFS_CKPT_FORMAT, LFS_CKPT_FORMAT_VERSION, err, errlen) != 0 ||
      lfs_h5_read_int_attr_range(h->file, p, "epoch", 0, INT64_MAX, &epoch, err, errlen) != 0 ||
      lfs_h5_read_int_attr_range(h->file, p, "step", 0, INT64_MAX, &step, err, errlen) != 0 ||
      lfs_h5_read_int_attr_range(h->file, p, "world_size", 1, INT32_MAX, &world, err, errlen) != 0 ||
      !(h->config = lfs_h5_read_str_attr(h->file, p, "config", err, errlen)))
    return -1;
  if (lfs_h5_attr_exists(h->file, "created") &&
      !(h->created = lfs_h5_read_str_attr(h->file, p, "created", err, errlen)))
    return -1;
  h->meta.epoch = epoch;
  h->meta.step = step;
  h->meta.world_size = (int)world;
  h->meta.config = h->config;
  h->meta.created = h->created;
  return 0;
}

static lfs_ckpt *open_locked(const char *path, char *err, size_t errlen) {
  lfs_ckpt *h = lfs_calloc(1, sizeof *h);
  h->path = strdup(path);
  if (!h->path) lfs_fatal("out of memory");
  h->file = lfs_h5_open_read(path, err, errlen);
  if (h->file < 0 || read_meta_locked(h, err, errlen) != 0) {
    lfs_h5_close_id(h->file);
    free_handle(h);
    return NULL;
  }
  return h;
}

lfs_ckpt *lfs_ckpt_open(const char *path, char *err, size_t errlen) {
  lfs_h5_lock();
  lfs_ckpt *h = open_locked(path, err, errlen);
  lfs_h5_unlock();
  return h;
}

const lfs_ckpt_meta *lfs_ckpt_info(const lfs_ckpt *h) { return &h->meta; }
const char *lfs_ckpt_file(const lfs_ckpt *h) { return h->path; }

/* Opens full and checks it is an array of exactly this type and shape. */
static hid_t open_expected(lfs_ckpt *h, const char *full, lfs_ckpt_type type, int ndim,
                           const hsize_t *want, const char *what, char *err, size_t errlen) {
  int got_type = -1, nd = 0;
  hsize_t dims[LFS_CKPT_MAX_DIMS];
  hid_t d = open_array(h, full, &got_type, &nd, dims, err, errlen);
  if (d < 0) return -1;
  int same = nd == ndim;
  for (int i = 0; same && i < nd; i++) same = dims[i] == want[i];
  if (!same) {
    char a[128], b[128];
    fmt_shape(a, sizeof a, nd, dims);
    fmt_shape(b, sizeof b, ndim, want);
    lfs_h5_fail(err, errlen, h->path, "%s has shape %s, %s %s", full, a, what, b);
  } else if (got_type != (int)type) {
    lfs_h5_fail(err, errlen, h->path, "%s has type %s, expected %s", full,
                got_type < 0 ? "(not a number type lfsearch writes)" : type_label(got_type),
                type_label(type));
  } else {
    return d;
  }
  H5Dclose(d);
  return -1;
}

static int read_all(lfs_ckpt *h, hid_t d, const char *full, lfs_ckpt_type type, void *data,
                    char *err, size_t errlen) {
  if (H5Dread(d, mem_type(type), H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
    return lfs_h5_fail_lib(err, errlen, h->path, "%s: cannot read it", full);
  return 0;
}

int lfs_ckpt_read_array(lfs_ckpt *h, const char *name, lfs_ckpt_type type, int ndim,
                        const int64_t *dims, void *data, char *err, size_t errlen) {
  char full[1024];
  if (full_name(full, sizeof full, h->path, name, 0, err, errlen) != 0) return -1;
  if (ndim < 0 || ndim > LFS_CKPT_MAX_DIMS)
    return lfs_h5_fail(err, errlen, h->path, "%s: %d dimensions requested", full, ndim);
  hsize_t want[LFS_CKPT_MAX_DIMS];
  for (int i = 0; i < ndim; i++) want[i] = dims[i] < 0 ? (hsize_t)-1 : (hsize_t)dims[i];
  lfs_h5_lock();
  hid_t d = open_expected(h, full, type, ndim, want, "expected", err, errlen);
  int rc = d < 0 ? -1 : read_all(h, d, full, type, data, err, errlen);
  lfs_h5_close_id(d);
  lfs_h5_unlock();
  return rc;
}

int lfs_ckpt_array_shape(lfs_ckpt *h, const char *name, int *ndim, int64_t *dims, char *err,
                         size_t errlen) {
  char full[1024];
  if (full_name(full, sizeof full, h->path, name, 0, err, errlen) != 0) return -1;
  hsize_t hd[LFS_CKPT_MAX_DIMS];
  int type;
  lfs_h5_lock();
  hid_t d = open_array(h, full, &type, ndim, hd, err, errlen);
  lfs_h5_close_id(d);
  lfs_h5_unlock();
  if (d < 0) return -1;
  for (int i = 0; i < *ndim; i++) dims[i] = (int64_t)hd[i];
  return 0;
}

int lfs_ckpt_has(lfs_ckpt *h, const char *name) {
  char full[1024];
  if (full_name(full, sizeof full, h->path, name, 1, NULL, 0) != 0) return 0;
  lfs_h5_lock();
  int ex = exists_locked(h->file, full);
  lfs_h5_unlock();
  return ex;
}

typedef struct {
  char **names;
  int count, cap;
} name_list;

static herr_t collect_name(hid_t g, const char *name, const H5L_info_t *info, void *data) {
  (void)g, (void)info;
  name_list *l = data;
  l->names = lfs_grow(l->names, l->count, &l->cap, sizeof *l->names);
  l->names[l->count] = strdup(name);
  if (!l->names[l->count]) lfs_fatal("out of memory");
  l->count++;
  return 0;
}

static int list_locked(lfs_ckpt *h, const char *full, name_list *l, char *err, size_t errlen) {
  if (!exists_locked(h->file, full)) return lfs_h5_fail(err, errlen, h->path, "%s is missing", full);
  if (object_type(h->file, full) != H5I_GROUP)
    return lfs_h5_fail(err, errlen, h->path, "%s is not a group", full);
  hid_t g = H5Gopen2(h->file, full, H5P_DEFAULT);
  hsize_t idx = 0;
  int rc = 0;
  if (g < 0 || H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, &idx, collect_name, l) < 0)
    rc = lfs_h5_fail_lib(err, errlen, h->path, "%s: cannot list it", full);
  lfs_h5_close_id(g);
  return rc;
}

void lfs_ckpt_free_names(char **names, int count) {
  for (int i = 0; i < count; i++) free(names[i]);
  free(names);
}

int lfs_ckpt_list(lfs_ckpt *h, const char *group, char ***names, int *count, char *err,
                  size_t errlen) {
  char full[1024];
  if (full_name(full, sizeof full, h->path, group, 1, err, errlen) != 0) return -1;
  name_list l = {0};
  lfs_h5_lock();
  int rc = list_locked(h, full, &l, err, errlen);
  lfs_h5_unlock();
  if (rc != 0) {
    lfs_ckpt_free_names(l.names, l.count);
    return -1;
  }
  *names = l.names;
  *count = l.count;
  return 0;
}

/* Every stored name must be a selected view of p. */
static int check_no_extra(lfs_ckpt *h, const char *gfull, const lfs_params *p, unsigned views,
                          char *err, size_t errlen) {
  name_list l = {0};
  int rc = list_locked(h, gfull, &l, err, errlen);
  for (int i = 0; rc == 0 && i < l.count; i++) {
    int k = lfs_params_find(p, l.names[i]);
    if (k < 0)
      rc = lfs_h5_fail(err, errlen, h->path, "%s/%s: tensor is not in the model", gfull, l.names[i]);
    else if (!view_selected(lfs_params_view(p, k), views))
      rc = lfs_h5_fail(err, errlen, h->path, "%s/%s: the model has this tensor, but not as one stored here",
                       gfull, l.names[i]);
  }
  lfs_ckpt_free_names(l.names, l.count);
  return rc;
}

int lfs_ckpt_read_params(lfs_ckpt *h, const char *group, const lfs_params *p, float *data,
                         unsigned views, char *err, size_t errlen) {
  char gfull[512], full[1024];
  if (full_name(gfull, sizeof gfull, h->path, group, 0, err, errlen) != 0) return -1;
  lfs_h5_lock();
  int rc = 0;
  /* pass 0 validates every tensor and the absence of others; pass 1 reads */
  for (int pass = 0; rc == 0 && pass < 2; pass++) {
    for (int i = 0; rc == 0 && i < p->nviews; i++) {
      const lfs_param_view *v = &p->views[i];
      if (!view_selected(v, views)) continue;
      hsize_t want[4];
      for (int k = 0; k < v->ndim; k++) want[k] = (hsize_t)v->dims[k];
      if (view_name(full, sizeof full, h->path, group, v, err, errlen) != 0) {
        rc = -1;
        break;
      }
      if (pass == 0 && !exists_locked(h->file, full)) {
        char s[128];
        fmt_shape(s, sizeof s, v->ndim, want);
        rc = lfs_h5_fail(err, errlen, h->path, "%s: tensor is missing (the model has it, shape %s)",
                         full, s);
        break;
      }
      hid_t d = open_expected(h, full, LFS_CKPT_F32, v->ndim, want, "the model has", err, errlen);
      if (d < 0) rc = -1;
      else if (pass == 1) rc = read_all(h, d, full, LFS_CKPT_F32, data + v->offset, err, errlen);
      lfs_h5_close_id(d);
    }
    if (rc == 0 && pass == 0) rc = check_no_extra(h, gfull, p, views, err, errlen);
  }
  lfs_h5_unlock();
  return rc;
}

static int get_attr(lfs_ckpt *h, const char *object, const char *name, int kind, int64_t *i,
                    double *r, char **s, char *err, size_t errlen) {
  lfs_h5_lock();
  hid_t o = open_object(h, object, 0, err, errlen);
  int rc = o < 0 ? -1 : 0;
  if (rc == 0) {
    if (kind == 0) rc = lfs_h5_read_int_attr(o, h->path, name, i, err, errlen);
    else if (kind == 1) rc = lfs_h5_read_f64_attr(o, h->path, name, r, err, errlen);
    else rc = (*s = lfs_h5_read_str_attr(o, h->path, name, err, errlen)) ? 0 : -1;
  }
  if (o >= 0) H5Oclose(o);
  lfs_h5_unlock();
  return rc;
}

int lfs_ckpt_get_int(lfs_ckpt *h, const char *object, const char *name, int64_t *value, char *err,
                     size_t errlen) {
  return get_attr(h, object, name, 0, value, NULL, NULL, err, errlen);
}

int lfs_ckpt_get_real(lfs_ckpt *h, const char *object, const char *name, double *value, char *err,
                      size_t errlen) {
  return get_attr(h, object, name, 1, NULL, value, NULL, err, errlen);
}

char *lfs_ckpt_get_text(lfs_ckpt *h, const char *object, const char *name, char *err,
                        size_t errlen) {
  char *s = NULL;
  return get_attr(h, object, name, 2, NULL, NULL, &s, err, errlen) == 0 ? s : NULL;
}

void lfs_ckpt_close(lfs_ckpt *h) {
  if (!h) return;
  lfs_h5_lock();
#ifdef H5_HAVE_PARALLEL
  if (h->tmp && h->comm != MPI_COMM_NULL) lfs_h5_discard_tmp_collective(h->file, h->tmp, h->comm);
  else
#endif
  if (h->tmp) lfs_h5_discard_tmp(h->file, h->tmp);
  else lfs_h5_close_id(h->file);
  lfs_h5_unlock();
  free_handle(h);
}
