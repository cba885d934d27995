/* testutil.c: helpers shared by the C tests (see testutil.h): Philox-seeded
 * random tensors, norm-wise relative error checks that name the worst element,
 * and reading the HDF5 reference fixtures written by tests/ref/gen_fixtures.py.
 *
 * Fixture errors (missing file, dataset or attribute, wrong type) print the file
 * and the name and exit(1): a test that cannot read its reference must fail
 * loudly rather than compare against garbage. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hdf5.h>

#include "lfs/philox.h"

/* ---- random tensors ------------------------------------------------------------- */

void tu_fill_uniform(float *x, size_t n, float lo, float hi, uint64_t seed, uint32_t tag) {
  lfs_rng r = lfs_rng_make(seed, LFS_RNG_TEST, tag, 0);
  for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * lfs_rng_uniform(&r, i);
}

/* Same stream as tu_fill_uniform, so a double tensor and a float tensor filled
 * with the same (seed, tag) agree to float rounding. */
void tu_fill_uniform_d(double *x, size_t n, double lo, double hi, uint64_t seed, uint32_t tag) {
  lfs_rng r = lfs_rng_make(seed, LFS_RNG_TEST, tag, 0);
  for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * (double)lfs_rng_uniform(&r, i);
}

/* ---- tolerances ------------------------------------------------------------------ */

/* Guards the division when the reference is all zeros: then any non-zero
 * result gives a huge error, which is what we want. */
#define TU_TINY 1e-30

/* Worst absolute difference and its index; a NaN/Inf result counts as infinitely wrong
 * (a plain max would skip NaN, since every comparison with it is false). */
static double worst_abs_diff(const float *got, const double *wantd, const float *wantf, size_t n,
                             size_t *worst, double *wmax) {
  double dmax = 0.0, m = 0.0;
  *worst = 0;
  for (size_t i = 0; i < n; i++) {
    double w = wantd ? wantd[i] : (double)wantf[i];
    double d = fabs((double)got[i] - w);
    if (!isfinite(d)) d = INFINITY;
    if (d > dmax) {
      dmax = d;
      *worst = i;
    }
    if (fabs(w) > m) m = fabs(w);
  }
  *wmax = m;
  return dmax;
}

double tu_rel_err(const float *got, const double *want, size_t n) {
  size_t worst;
  double m;
  double d = worst_abs_diff(got, want, NULL, n, &worst, &m);
  return d / (m > TU_TINY ? m : TU_TINY);
}

double tu_rel_err_f(const float *got, const float *want, size_t n) {
  size_t worst;
  double m;
  double d = worst_abs_diff(got, NULL, want, n, &worst, &m);
  return d / (m > TU_TINY ? m : TU_TINY);
}

int tu_check(const char *what, const float *got, const double *want, size_t n, double tol) {
  if (n == 0) {
    printf("%s: empty\n", what);
    return 1;
  }
  size_t worst;
  double m;
  double d = worst_abs_diff(got, want, NULL, n, &worst, &m);
  double e = d / (m > TU_TINY ? m : TU_TINY);
  int ok = e <= tol;
  printf("%s%s: rel err %.3g (tol %.3g), worst element %zu: got %.9g want %.9g\n",
         ok ? "" : "FAIL ", what, e, tol, worst, (double)got[worst], want[worst]);
  fflush(stdout);
  return ok;
}

/* ---- paths ----------------------------------------------------------------------- */

/* A few rotating buffers so that two tu_srcpath results can be used in one call. */
#define TU_PATH_SLOTS 8
#define TU_PATH_MAX 4096

const char *tu_srcpath(const char *relative) {
  static char buf[TU_PATH_SLOTS][TU_PATH_MAX];
  static int next;
  const char *root = getenv("LFS_SRCDIR");
  char *out = buf[next];
  next = (next + 1) % TU_PATH_SLOTS;
  if (!root || !*root) root = ".";
  int len = snprintf(out, TU_PATH_MAX, "%s/%s", root, relative);
  if (len < 0 || len >= TU_PATH_MAX) {
    fprintf(stderr, "tu_srcpath: path too long: %s/%s\n", root, relative);
    exit(1);
  }
  return out;
}

/* ---- fixtures -------------------------------------------------------------------- */

struct tu_fixture {
  hid_t file;
  char path[TU_PATH_MAX];
};

/* "fixture FILE: 'NAME' WHY", or "fixture FILE: WHY" about the file itself. */
static void fixture_fail(const tu_fixture *f, const char *name, const char *why) {
  if (name)
    fprintf(stderr, "fixture %s: '%s' %s\n", f->path, name, why);
  else
    fprintf(stderr, "fixture %s: %s\n", f->path, why);
  fflush(stderr);
  exit(1);
}

tu_fixture *tu_fixture_open(const char *relative_path) {
  tu_fixture *f = calloc(1, sizeof *f);
  if (!f) {
    fprintf(stderr, "tu_fixture_open: out of memory\n");
    exit(1);
  }
  snprintf(f->path, sizeof f->path, "%s", tu_srcpath(relative_path));
  /* Check first so that a missing file gives one clear line, not an HDF5 error stack. */
  FILE *probe = fopen(f->path, "rb");
  if (!probe)
    fixture_fail(f, NULL, "cannot be opened (missing? LFS_SRCDIR must name the source tree)");
  fclose(probe);
  f->file = H5Fopen(f->path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f->file < 0) fixture_fail(f, NULL, "is not a readable HDF5 file");
  return f;
}

void tu_fixture_close(tu_fixture *f) {
  if (!f) return;
  H5Fclose(f->file);
  free(f);
}

int tu_fixture_has(tu_fixture *f, const char *name) {
  /* H5Lexists on the root group: fixture datasets live there, and their names
   * contain dots, never slashes. */
  return H5Lexists(f->file, name, H5P_DEFAULT) > 0;
}

static hid_t open_dataset(tu_fixture *f, const char *name) {
  if (!tu_fixture_has(f, name)) fixture_fail(f, name, "is missing");
  hid_t ds = H5Dopen2(f->file, name, H5P_DEFAULT);
  if (ds < 0) fixture_fail(f, name, "cannot be opened as a dataset");
  return ds;
}

/* Rank and dimensions of an open dataset; at most 4 dimensions. */
static int dataset_dims(tu_fixture *f, const char *name, hid_t ds, hsize_t dims[4]) {
  hid_t sp = H5Dget_space(ds);
  int nd = H5Sget_simple_extent_ndims(sp);
  if (nd < 0 || nd > 4) {
    H5Sclose(sp);
    fixture_fail(f, name, "has an unsupported rank (0 to 4 expected)");
  }
  H5Sget_simple_extent_dims(sp, dims, NULL);
  H5Sclose(sp);
  return nd;
}

int tu_fixture_dims(tu_fixture *f, const char *name, int dims[4]) {
  hid_t ds = open_dataset(f, name);
  hsize_t d[4];
  int nd = dataset_dims(f, name, ds, d);
  for (int i = 0; i < nd; i++) dims[i] = (int)d[i];
  H5Dclose(ds);
  return nd;
}

/* Reads the whole dataset converted to mem_type (HDF5 converts float32/float64). */
static void *read_dataset(tu_fixture *f, const char *name, hid_t mem_type, size_t elem,
                          size_t *n) {
  hid_t ds = open_dataset(f, name);
  hsize_t d[4];
  int nd = dataset_dims(f, name, ds, d);
  size_t count = 1;
  for (int i = 0; i < nd; i++) count *= (size_t)d[i];
  void *buf = malloc(count ? count * elem : elem);
  if (!buf) fixture_fail(f, name, "does not fit in memory");
  if (count && H5Dread(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
    fixture_fail(f, name, "cannot be read as floating point");
  H5Dclose(ds);
  if (n) *n = count;
  return buf;
}

float *tu_fixture_read_f(tu_fixture *f, const char *name, size_t *n) {
  return read_dataset(f, name, H5T_NATIVE_FLOAT, sizeof(float), n);
}

double *tu_fixture_read_d(tu_fixture *f, const char *name, size_t *n) {
  return read_dataset(f, name, H5T_NATIVE_DOUBLE, sizeof(double), n);
}

double tu_fixture_attr(tu_fixture *f, const char *name) {
  if (H5Aexists(f->file, name) <= 0) fixture_fail(f, name, "(root attribute) is missing");
  hid_t a = H5Aopen(f->file, name, H5P_DEFAULT);
  hid_t sp = H5Aget_space(a);
  hssize_t npoints = H5Sget_simple_extent_npoints(sp);
  H5Sclose(sp);
  if (npoints != 1) {
    H5Aclose(a);
    fixture_fail(f, name, "(root attribute) is not a scalar");
  }
  double v = 0.0;
  herr_t rc = H5Aread(a, H5T_NATIVE_DOUBLE, &v);
  H5Aclose(a);
  if (rc < 0) fixture_fail(f, name, "(root attribute) is not numeric");
  return v;
}
