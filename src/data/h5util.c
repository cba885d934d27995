/* h5util.c: the lock that serialises HDF5 calls between threads (the serial
 * and parallel HDF5 builds are not thread-safe), and the checked HDF5 helpers
 * the data modules share (data_internal.h): messages naming file and field,
 * attribute and dataset checks, row reads, temporary files renamed on commit.
 *
 * While the lock is held HDF5's automatic error printing is off: failures are
 * reported once, by us, with HDF5's innermost explanation appended. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/data_internal.h"
#include "lfs/log.h"

static pthread_mutex_t h5_mutex = PTHREAD_MUTEX_INITIALIZER;
/* The printing handler in force before lfs_h5_lock, restored by lfs_h5_unlock
 * so that code outside the data modules keeps its own settings. */
static H5E_auto2_t saved_func;
static void *saved_data;

void lfs_h5_lock(void) {
  int rc = pthread_mutex_lock(&h5_mutex);
  if (rc != 0) lfs_fatal("pthread_mutex_lock: %s", strerror(rc));
  if (H5Eget_auto2(H5E_DEFAULT, &saved_func, &saved_data) < 0) saved_func = NULL, saved_data = NULL;
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

void lfs_h5_unlock(void) {
  H5Eset_auto2(H5E_DEFAULT, saved_func, saved_data);
  int rc = pthread_mutex_unlock(&h5_mutex);
  if (rc != 0) lfs_fatal("pthread_mutex_unlock: %s", strerror(rc));
}

/* ---- messages ---- */

static int vfail(char *err, size_t errlen, const char *path, const char *fmt, va_list ap) {
  if (!err || errlen == 0) return -1;
  int n = snprintf(err, errlen, "%s: ", path ? path : "(no file)");
  if (n >= 0 && (size_t)n < errlen) vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
  return -1;
}

int lfs_h5_fail(char *err, size_t errlen, const char *path, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vfail(err, errlen, path, fmt, ap);
  va_end(ap);
  return -1;
}

/* H5E_WALK_UPWARD visits the innermost (originating) error first. */
static herr_t first_error(unsigned n, const H5E_error2_t *e, void *data) {
  if (n == 0 && e->desc) snprintf((char *)data, 256, "%s", e->desc);
  return 0;
}

int lfs_h5_fail_lib(char *err, size_t errlen, const char *path, const char *fmt, ...) {
  char cause[256] = "";
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, first_error, cause);
  H5Eclear2(H5E_DEFAULT);
  va_list ap;
  va_start(ap, fmt);
  vfail(err, errlen, path, fmt, ap);
  va_end(ap);
  size_t used = err ? strlen(err) : 0;
  if (err && cause[0] && used < errlen) snprintf(err + used, errlen - used, " (HDF5: %s)", cause);
  return -1;
}

void lfs_h5_close_id(hid_t id) {
  if (id < 0) return;
  switch (H5Iget_type(id)) {
  case H5I_FILE: H5Fclose(id); break;
  case H5I_DATASET: H5Dclose(id); break;
  case H5I_DATASPACE: H5Sclose(id); break;
  case H5I_DATATYPE: H5Tclose(id); break;
  case H5I_ATTR: H5Aclose(id); break;
  case H5I_GROUP: H5Gclose(id); break;
  case H5I_GENPROP_LST: H5Pclose(id); break;
  default: break;
  }
}

/* ---- opening ---- */

static int is_hdf5(const char *path) {
#if H5_VERSION_GE(1, 12, 0)
  return H5Fis_accessible(path, H5P_DEFAULT);
#else
  return H5Fis_hdf5(path);
#endif
}

hid_t lfs_h5_open_read(const char *path, char *err, size_t errlen) {
  struct stat st;
  if (stat(path, &st) != 0) return lfs_h5_fail(err, errlen, path, "cannot open: %s", strerror(errno));
  if (S_ISDIR(st.st_mode)) return lfs_h5_fail(err, errlen, path, "is a directory, not an HDF5 file");
  if (access(path, R_OK) != 0)
    return lfs_h5_fail(err, errlen, path, "cannot read: %s", strerror(errno));
  int h5 = is_hdf5(path);
  if (h5 == 0) return lfs_h5_fail(err, errlen, path, "not an HDF5 file");
  if (h5 < 0) return lfs_h5_fail_lib(err, errlen, path, "cannot read as an HDF5 file");
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  if (fapl < 0 || H5Pset_fapl_sec2(fapl) < 0) {
    lfs_h5_fail_lib(err, errlen, path, "cannot set up the file access properties");
    lfs_h5_close_id(fapl);
    return -1;
  }
#if H5_VERSION_GE(1, 10, 7)
  /* Lock when the file system can, carry on where it cannot (Lustre, NFS):
   * our writers never modify a file under its final name. */
  if (H5Pset_file_locking(fapl, 1, 1) < 0) {
    lfs_h5_fail_lib(err, errlen, path, "cannot set file locking");
    H5Pclose(fapl);
    return -1;
  }
#endif
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, fapl);
  if (f < 0) lfs_h5_fail_lib(err, errlen, path, "cannot open the HDF5 file: truncated or corrupt?");
  H5Pclose(fapl);
  return f;
}

/* ---- attributes ---- */

int lfs_h5_attr_exists(hid_t obj, const char *name) { return H5Aexists(obj, name) > 0; }

static hid_t open_attr(hid_t obj, const char *path, const char *name, char *err, size_t errlen) {
  htri_t ex = H5Aexists(obj, name);
  if (ex < 0) return lfs_h5_fail_lib(err, errlen, path, "attribute %s: cannot query it", name);
  if (ex == 0) return lfs_h5_fail(err, errlen, path, "attribute %s is missing", name);
  hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
  if (a < 0) return lfs_h5_fail_lib(err, errlen, path, "attribute %s: cannot open it", name);
  return a;
}

static const char *class_name(H5T_class_t c) {
  switch (c) {
  case H5T_INTEGER: return "integer";
  case H5T_FLOAT: return "float";
  case H5T_STRING: return "string";
  case H5T_COMPOUND: return "compound";
  case H5T_ENUM: return "enum";
  case H5T_VLEN: return "variable-length sequence";
  case H5T_ARRAY: return "array";
  case H5T_BITFIELD: return "bitfield";
  case H5T_OPAQUE: return "opaque";
  case H5T_REFERENCE: return "reference";
  case H5T_TIME: return "time";
  default: return "unknown";
  }
}

/* Number of elements of an attribute's dataspace (a scalar counts as 1). */
static hssize_t attr_points(hid_t a) {
  hid_t sp = H5Aget_space(a);
  if (sp < 0) return -1;
  hssize_t n = H5Sget_simple_extent_npoints(sp);
  H5Sclose(sp);
  return n;
}

/* Reads a one-value attribute of class `want` (described as `what` in errors)
 * into out as mem_type. */
static int read_scalar_attr(hid_t obj, const char *path, const char *name, H5T_class_t want,
                            const char *what, hid_t mem_type, void *out, char *err,
                            size_t errlen) {
  hid_t a = open_attr(obj, path, name, err, errlen);
  if (a < 0) return -1;
  int rc = -1;
  hid_t t = H5Aget_type(a);
  H5T_class_t c = t >= 0 ? H5Tget_class(t) : H5T_NO_CLASS;
  hssize_t n = attr_points(a);
  if (t < 0 || n < 0)
    lfs_h5_fail_lib(err, errlen, path, "attribute %s: cannot read its type", name);
  else if (c != want)
    lfs_h5_fail(err, errlen, path, "attribute %s has type %s, expected %s", name, class_name(c),
                what);
  else if (n != 1)
    lfs_h5_fail(err, errlen, path, "attribute %s has %lld values, expected one", name, (long long)n);
  else if (H5Aread(a, mem_type, out) < 0)
    lfs_h5_fail_lib(err, errlen, path, "attribute %s: cannot read it", name);
  else
    rc = 0;
  lfs_h5_close_id(t);
  H5Aclose(a);
  return rc;
}

int lfs_h5_read_int_attr(hid_t obj, const char *path, const char *name, int64_t *value, char *err,
                         size_t errlen) {
  long long v = 0;
  const int rc = read_scalar_attr(obj, path, name, H5T_INTEGER, "an integer", H5T_NATIVE_LLONG, &v,
                                  err, errlen);
  if (rc == 0) *value = v;
  return rc;
}

int lfs_h5_read_int_attr_range(hid_t obj, const char *path, const char *name, int64_t lo,
                               int64_t hi, int64_t *value, char *err, size_t errlen) {
  if (lfs_h5_read_int_attr(obj, path, name, value, err, errlen) != 0) return -1;
  if (*value < lo || *value > hi)
    return lfs_h5_fail(err, errlen, path, "attribute %s = %lld is outside [%lld, %lld]", name,
                       (long long)*value, (long long)lo, (long long)hi);
  return 0;
}

char *lfs_h5_read_str_attr(hid_t obj, const char *path, const char *name, char *err, size_t errlen) {
  hid_t a = open_attr(obj, path, name, err, errlen);
  if (a < 0) return NULL;
  char *out = NULL;
  hid_t t = H5Aget_type(a), mt = -1;
  H5T_class_t c = t >= 0 ? H5Tget_class(t) : H5T_NO_CLASS;
  hssize_t n = attr_points(a);
  if (t < 0 || n < 0) {
    lfs_h5_fail_lib(err, errlen, path, "attribute %s: cannot read its type", name);
  } else if (c != H5T_STRING) {
    lfs_h5_fail(err, errlen, path, "attribute %s has type %s, expected a string", name,
                class_name(c));
  } else if (n != 1) {
    lfs_h5_fail(err, errlen, path, "attribute %s has %lld values, expected one string", name,
                (long long)n);
  } else if (H5Tis_variable_str(t) > 0) {
    char *s = NULL;
    mt = H5Tcopy(H5T_C_S1);
    if (mt < 0 || H5Tset_size(mt, H5T_VARIABLE) < 0 || H5Tset_cset(mt, H5Tget_cset(t)) < 0 ||
        H5Aread(a, mt, &s) < 0) {
      lfs_h5_fail_lib(err, errlen, path, "attribute %s: cannot read it", name);
    } else {
      out = strdup(s ? s : "");
      H5free_memory(s);
      if (!out) lfs_fatal("out of memory copying attribute %s of %s", name, path);
    }
  } else {
    size_t size = H5Tget_size(t);
    out = lfs_calloc(size + 1, 1);
    mt = H5Tcopy(t);
    /* NULLPAD/SPACEPAD strings need not end in NUL: the extra byte ends them */
    if (mt < 0 || H5Aread(a, mt, out) < 0) {
      lfs_h5_fail_lib(err, errlen, path, "attribute %s: cannot read it", name);
      free(out);
      out = NULL;
    }
  }
  lfs_h5_close_id(mt);
  lfs_h5_close_id(t);
  H5Aclose(a);
  return out;
}

static int write_attr(hid_t obj, const char *path, const char *name, hid_t file_type,
                      hid_t mem_type, const void *buf, char *err, size_t errlen) {
  hid_t sp = H5Screate(H5S_SCALAR);
  hid_t a = sp >= 0 ? H5Acreate2(obj, name, file_type, sp, H5P_DEFAULT, H5P_DEFAULT) : -1;
  int rc = 0;
  if (a < 0 || H5Awrite(a, mem_type, buf) < 0)
    rc = lfs_h5_fail_lib(err, errlen, path, "attribute %s: cannot write it", name);
  lfs_h5_close_id(a);
  lfs_h5_close_id(sp);
  return rc;
}

int lfs_h5_write_int_attr(hid_t obj, const char *path, const char *name, int64_t value, char *err,
                          size_t errlen) {
  if (value < INT32_MIN || value > INT32_MAX)
    return lfs_h5_fail(err, errlen, path, "attribute %s = %lld does not fit in int32", name,
                       (long long)value);
  int32_t v = (int32_t)value;
  return write_attr(obj, path, name, H5T_STD_I32LE, H5T_NATIVE_INT32, &v, err, errlen);
}

int lfs_h5_write_i64_attr(hid_t obj, const char *path, const char *name, int64_t value, char *err,
                          size_t errlen) {
  return write_attr(obj, path, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &value, err, errlen);
}

int lfs_h5_write_f64_attr(hid_t obj, const char *path, const char *name, double value, char *err,
                          size_t errlen) {
  return write_attr(obj, path, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &value, err, errlen);
}

int lfs_h5_read_f64_attr(hid_t obj, const char *path, const char *name, double *value, char *err,
                         size_t errlen) {
  return read_scalar_attr(obj, path, name, H5T_FLOAT, "a float", H5T_NATIVE_DOUBLE, value, err,
                          errlen);
}

int lfs_h5_write_str_attr(hid_t obj, const char *path, const char *name, const char *value,
                          char *err, size_t errlen) {
  hid_t t = H5Tcopy(H5T_C_S1);
  if (t < 0 || H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0) {
    lfs_h5_close_id(t);
    return lfs_h5_fail_lib(err, errlen, path, "attribute %s: cannot make a string type", name);
  }
  int rc = write_attr(obj, path, name, t, t, &value, err, errlen);
  H5Tclose(t);
  return rc;
}

int lfs_h5_check_format(hid_t file, const char *path, const char *format, char *err, size_t errlen) {
  return lfs_h5_check_format_version(file, path, format, LFS_DATA_FORMAT_VERSION, err, errlen);
}

int lfs_h5_check_format_version(hid_t file, const char *path, const char *format, int version,
                                char *err, size_t errlen) {
  char *f = lfs_h5_read_str_attr(file, path, "format", err, errlen);
  if (!f) return -1;
  int bad = strcmp(f, format) != 0;
  if (bad) lfs_h5_fail(err, errlen, path, "attribute format is \"%s\", expected \"%s\"", f, format);
  free(f);
  if (bad) return -1;
  int64_t v;
  if (lfs_h5_read_int_attr(file, path, "format_version", &v, err, errlen) != 0) return -1;
  if (v != version)
    return lfs_h5_fail(err, errlen, path,
                       "attribute format_version is %lld; this build reads version %d", (long long)v,
                       version);
  return 0;
}

/* ---- datasets ---- */

static const char *kind_name(lfs_h5_kind k) {
  switch (k) {
  case LFS_H5_U8: return "uint8";
  case LFS_H5_I32: return "int32";
  case LFS_H5_I64: return "int64";
  case LFS_H5_F32: return "float32";
  case LFS_H5_F64: return "float64";
  default: return "string";
  }
}

/* "int64", "float32", "uint16", ... for messages about a wrong type. */
static void type_name(hid_t t, char *buf, size_t len) {
  H5T_class_t c = H5Tget_class(t);
  size_t bits = H5Tget_size(t) * 8;
  if (c == H5T_INTEGER)
    snprintf(buf, len, "%s%zu", H5Tget_sign(t) == H5T_SGN_NONE ? "uint" : "int", bits);
  else if (c == H5T_FLOAT)
    snprintf(buf, len, "float%zu", bits);
  else
    snprintf(buf, len, "%s", class_name(c));
}

static int kind_matches(hid_t t, lfs_h5_kind kind) {
  H5T_class_t c = H5Tget_class(t);
  if (kind == LFS_H5_STRING) return c == H5T_STRING;
  if (kind == LFS_H5_F32 || kind == LFS_H5_F64)
    return c == H5T_FLOAT && H5Tget_size(t) == (kind == LFS_H5_F32 ? 4u : 8u);
  if (c != H5T_INTEGER) return 0;
  size_t size = H5Tget_size(t);
  int is_unsigned = H5Tget_sign(t) == H5T_SGN_NONE;
  switch (kind) {
  case LFS_H5_U8: return size == 1 && is_unsigned;
  case LFS_H5_I32: return size == 4 && !is_unsigned;
  case LFS_H5_I64: return size == 8 && !is_unsigned;
  default: return 0;
  }
}

/* Readers go through each chunk once per epoch, so HDF5's chunk cache would
 * only add a copy (and, for chunks smaller than the cache, read whole chunks to
 * return a few rows: 5x slower for single 32x32 images). Without it every read
 * goes straight from the file into the caller's buffer. */
static hid_t open_uncached(hid_t file, const char *name) {
  hid_t dapl = H5Pcreate(H5P_DATASET_ACCESS);
  if (dapl < 0) return -1;
  hid_t d = -1;
  if (H5Pset_chunk_cache(dapl, 0, 0, 1.0) >= 0) d = H5Dopen2(file, name, dapl);
  H5Pclose(dapl);
  return d;
}

hid_t lfs_h5_open_checked(hid_t file, const char *path, const char *name, lfs_h5_kind kind,
                          int rank, hsize_t *dims, char *err, size_t errlen) {
  htri_t ex = H5Lexists(file, name, H5P_DEFAULT);
  if (ex < 0) return lfs_h5_fail_lib(err, errlen, path, "%s: cannot query it", name);
  if (ex == 0) return lfs_h5_fail(err, errlen, path, "dataset %s is missing", name);
  hid_t d = open_uncached(file, name);
  if (d < 0) {
    /* a group (or named type) of that name gets its own message */
    hid_t o = H5Oopen(file, name, H5P_DEFAULT);
    int other = o >= 0 && H5Iget_type(o) != H5I_DATASET;
    lfs_h5_close_id(o);
    if (other) return lfs_h5_fail(err, errlen, path, "%s is not a dataset", name);
    return lfs_h5_fail_lib(err, errlen, path, "dataset %s: cannot open it", name);
  }
  hid_t t = H5Dget_type(d), sp = H5Dget_space(d);
  int ok = 0;
  if (t < 0 || sp < 0) {
    lfs_h5_fail_lib(err, errlen, path, "dataset %s: cannot read its type and shape", name);
  } else if (!kind_matches(t, kind)) {
    char got[32];
    type_name(t, got, sizeof got);
    lfs_h5_fail(err, errlen, path, "dataset %s has type %s, expected %s", name, got,
                kind_name(kind));
  } else if (H5Sget_simple_extent_type(sp) != H5S_SIMPLE ||
             H5Sget_simple_extent_ndims(sp) != rank) {
    int nd = H5Sget_simple_extent_type(sp) == H5S_SIMPLE ? H5Sget_simple_extent_ndims(sp) : 0;
    lfs_h5_fail(err, errlen, path, "dataset %s has rank %d, expected %d", name, nd, rank);
  } else if (H5Sget_simple_extent_dims(sp, dims, NULL) < 0) {
    lfs_h5_fail_lib(err, errlen, path, "dataset %s: cannot read its shape", name);
  } else {
    ok = 1;
  }
  lfs_h5_close_id(t);
  lfs_h5_close_id(sp);
  if (!ok) {
    H5Dclose(d);
    return -1;
  }
  return d;
}

int lfs_h5_images_per_chunk(hid_t dset) {
  hid_t dcpl = H5Dget_create_plist(dset);
  int chunk = 1;
  hsize_t cd[4];
  if (dcpl >= 0 && H5Pget_layout(dcpl) == H5D_CHUNKED && H5Pget_chunk(dcpl, 4, cd) == 4 && cd[0] > 0)
    chunk = cd[0] > INT32_MAX ? INT32_MAX : (int)cd[0];
  lfs_h5_close_id(dcpl);
  return chunk;
}

int lfs_h5_read_rows(hid_t dset, hid_t mem_type, int rank, int64_t first, int64_t count,
                     void *buf, const char *path, const char *name, char *err, size_t errlen) {
  if (count == 0) return 0;
  hsize_t dims[4], start[4] = {0}, cnt[4];
  hid_t fs = H5Dget_space(dset);
  if (fs < 0 || H5Sget_simple_extent_dims(fs, dims, NULL) != rank) {
    lfs_h5_close_id(fs);
    return lfs_h5_fail_lib(err, errlen, path, "dataset %s: cannot read its shape", name);
  }
  start[0] = (hsize_t)first;
  cnt[0] = (hsize_t)count;
  for (int i = 1; i < rank; i++) cnt[i] = dims[i];
  hid_t ms = H5Screate_simple(rank, cnt, NULL);
  int rc = 0;
  if (ms < 0 || H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, cnt, NULL) < 0 ||
      H5Dread(dset, mem_type, ms, fs, H5P_DEFAULT, buf) < 0)
    rc = lfs_h5_fail_lib(err, errlen, path, "dataset %s: cannot read rows [%lld, %lld)", name,
                         (long long)first, (long long)(first + count));
  lfs_h5_close_id(ms);
  H5Sclose(fs);
  return rc;
}

char **lfs_h5_read_strings(hid_t dset, const char *path, const char *name, int64_t n, char *err,
                           size_t errlen) {
  char **out = lfs_calloc(n > 0 ? (size_t)n : 1, sizeof *out);
  hid_t t = H5Dget_type(dset), mt = -1;
  int ok = 0;
  if (t < 0) {
    lfs_h5_fail_lib(err, errlen, path, "dataset %s: cannot read its type", name);
  } else if (H5Tis_variable_str(t) > 0) {
    mt = H5Tcopy(H5T_C_S1);
    if (mt >= 0 && H5Tset_size(mt, H5T_VARIABLE) >= 0 && H5Tset_cset(mt, H5Tget_cset(t)) >= 0 &&
        H5Dread(dset, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) >= 0) {
      /* HDF5 allocated each string: move them to our allocator */
      for (int64_t i = 0; i < n; i++) {
        char *s = out[i];
        out[i] = strdup(s ? s : "");
        if (!out[i]) lfs_fatal("out of memory copying a string of %s", path);
        H5free_memory(s);
      }
      ok = 1;
    } else {
      memset(out, 0, (n > 0 ? (size_t)n : 1) * sizeof *out);
      lfs_h5_fail_lib(err, errlen, path, "dataset %s: cannot read its strings", name);
    }
  } else {
    size_t size = H5Tget_size(t);
    char *raw = lfs_calloc(n > 0 ? (size_t)n * size : 1, 1);
    mt = H5Tcopy(t);
    if (mt >= 0 && (n == 0 || H5Dread(dset, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw) >= 0)) {
      for (int64_t i = 0; i < n; i++) {
        out[i] = lfs_calloc(size + 1, 1);
        memcpy(out[i], raw + (size_t)i * size, size);
      }
      ok = 1;
    } else {
      lfs_h5_fail_lib(err, errlen, path, "dataset %s: cannot read its strings", name);
    }
    free(raw);
  }
  lfs_h5_close_id(mt);
  lfs_h5_close_id(t);
  if (!ok) {
    lfs_h5_free_strings(out, n);
    return NULL;
  }
  return out;
}

void lfs_h5_free_strings(char **s, int64_t n) {
  if (!s) return;
  for (int64_t i = 0; i < n; i++) free(s[i]);
  free(s);
}

const char *lfs_h5_library(void) {
  static char buf[64];
  unsigned major = 0, minor = 0, release = 0;
  H5get_libversion(&major, &minor, &release);
#ifdef H5_HAVE_PARALLEL
  const char *kind = "parallel";
#else
  const char *kind = "serial";
#endif
  snprintf(buf, sizeof buf, "%u.%u.%u, %s", major, minor, release, kind);
  return buf;
}

/* ---- temporary files ---- */

hid_t lfs_h5_dcpl(void) {
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  if (dcpl >= 0 && H5Pset_obj_track_times(dcpl, 0) < 0) {
    H5Pclose(dcpl);
    return -1;
  }
  return dcpl;
}

hid_t lfs_h5_gcpl(void) {
  hid_t gcpl = H5Pcreate(H5P_GROUP_CREATE);
  if (gcpl >= 0 && H5Pset_obj_track_times(gcpl, 0) < 0) {
    H5Pclose(gcpl);
    return -1;
  }
  return gcpl;
}

int lfs_h5_write_whole(hid_t file, const char *path, const char *name, hid_t file_type,
                       hid_t mem_type, int rank, const hsize_t *dims, const hsize_t *chunk,
                       const void *buf, char *err, size_t errlen) {
  hid_t sp = H5Screate_simple(rank, dims, NULL), dcpl = lfs_h5_dcpl(), d = -1;
  int rc = 0;
  /* the whole dataset is written at once: fill values would only cost time (HDF5
   * requires them for variable-length strings, though) */
  const int fill = H5Tis_variable_str(file_type) > 0;
  if (sp < 0 || dcpl < 0 || (chunk && H5Pset_chunk(dcpl, rank, chunk) < 0) ||
      (!fill && H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER) < 0) ||
      (d = H5Dcreate2(file, name, file_type, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT)) < 0 ||
      (buf && H5Dwrite(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0))
    rc = lfs_h5_fail_lib(err, errlen, path, "cannot write dataset %s", name);
  lfs_h5_close_id(d);
  lfs_h5_close_id(dcpl);
  lfs_h5_close_id(sp);
  return rc;
}

static char *tmp_name(const char *path) {
  size_t len = strlen(path) + 32;
  char *tmp = lfs_malloc(len);
  snprintf(tmp, len, "%s.tmp-%ld", path, (long)getpid());
  return tmp;
}

/* Creates *tmp with the file access properties fapl (closed here). */
static hid_t create_with(const char *path, char *tmp, hid_t fapl, char *err, size_t errlen) {
  hid_t f = -1;
  if (fapl < 0)
    lfs_h5_fail_lib(err, errlen, path, "cannot set up the file access properties");
  else if ((f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl)) < 0)
    lfs_h5_fail_lib(err, errlen, path, "cannot create the temporary file %s", tmp);
  lfs_h5_close_id(fapl);
  return f;
}

hid_t lfs_h5_create_tmp(const char *path, char **tmp, char *err, size_t errlen) {
  *tmp = tmp_name(path);
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  if (fapl >= 0 && H5Pset_fapl_sec2(fapl) < 0) {
    H5Pclose(fapl);
    fapl = -1;
  }
  hid_t f = create_with(path, *tmp, fapl, err, errlen);
  if (f < 0) {
    unlink(*tmp);
    free(*tmp);
    *tmp = NULL;
  }
  return f;
}

#ifdef H5_HAVE_PARALLEL
/* Every rank of comm gets rank 0's temporary name, so they open one file. */
static char *shared_tmp_name(const char *path, MPI_Comm comm) {
  int rank, len = 0;
  MPI_Comm_rank(comm, &rank);
  char *tmp = rank == 0 ? tmp_name(path) : NULL;
  if (rank == 0) len = (int)strlen(tmp) + 1;
  MPI_Bcast(&len, 1, MPI_INT, 0, comm);
  if (rank != 0) tmp = lfs_malloc((size_t)len);
  MPI_Bcast(tmp, len, MPI_CHAR, 0, comm);
  return tmp;
}

hid_t lfs_h5_create_tmp_collective(const char *path, MPI_Comm comm, char **tmp, char *err,
                                   size_t errlen) {
  *tmp = shared_tmp_name(path, comm);
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  if (fapl >= 0 && H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL) < 0) {
    H5Pclose(fapl);
    fapl = -1;
  }
  /* H5Fcreate is collective: MPI-IO opens the file on every rank or on none */
  hid_t f = create_with(path, *tmp, fapl, err, errlen);
  int rank;
  MPI_Comm_rank(comm, &rank);
  if (f < 0) {
    if (rank == 0) unlink(*tmp);
    free(*tmp);
    *tmp = NULL;
  }
  return f;
}

int lfs_h5_commit_tmp_collective(hid_t file, const char *tmp, const char *path, MPI_Comm comm,
                                 char *err, size_t errlen) {
  int rank, rc = H5Fclose(file) < 0 ? -1 : 0, all = 0;
  MPI_Comm_rank(comm, &rank);
  MPI_Allreduce(&rc, &all, 1, MPI_INT, MPI_MIN, comm);
  if (all < 0) {
    if (rank == 0) unlink(tmp);
    return lfs_h5_fail_lib(err, errlen, path, "cannot finish writing %s", tmp);
  }
  /* every rank has closed (flushed) its part; rank 0 syncs and renames */
  if (rank == 0) rc = lfs_h5_commit_closed_tmp(tmp, path, err, errlen);
  MPI_Bcast(&rc, 1, MPI_INT, 0, comm);
  if (rc && rank != 0) lfs_h5_fail(err, errlen, path, "rank 0 could not put %s into place", tmp);
  return rc;
}

void lfs_h5_discard_tmp_collective(hid_t file, const char *tmp, MPI_Comm comm) {
  int rank;
  MPI_Comm_rank(comm, &rank);
  if (file >= 0) H5Fclose(file);
  if (rank == 0 && tmp) unlink(tmp);
}
#endif

/* HDF5 leaves durability to the OS; sync before the rename so that a crash
 * cannot leave a renamed but incomplete file. */
static int sync_file(const char *name) {
  int fd = open(name, O_RDONLY);
  if (fd < 0) return -1;
  int rc = fsync(fd);
  if (close(fd) != 0) rc = -1;
  return rc;
}

int lfs_h5_commit_closed_tmp(const char *tmp, const char *path, char *err, size_t errlen) {
  if (sync_file(tmp) != 0 && errno != EINVAL && errno != EROFS) {
    lfs_h5_fail(err, errlen, path, "cannot flush %s to disk: %s", tmp, strerror(errno));
    unlink(tmp);
    return -1;
  }
  if (rename(tmp, path) != 0) {
    lfs_h5_fail(err, errlen, path, "cannot rename %s into place: %s", tmp, strerror(errno));
    unlink(tmp);
    return -1;
  }
  return 0;
}

int lfs_h5_commit_tmp(hid_t file, const char *tmp, const char *path, char *err, size_t errlen) {
  if (H5Fclose(file) < 0) {
    lfs_h5_fail_lib(err, errlen, path, "cannot finish writing %s", tmp);
    unlink(tmp);
    return -1;
  }
  return lfs_h5_commit_closed_tmp(tmp, path, err, errlen);
}

void lfs_h5_discard_tmp(hid_t file, const char *tmp) {
  if (file >= 0) H5Fclose(file);
  if (tmp) unlink(tmp);
}
