/* testutil.h: helpers shared by the C tests: deterministic random tensors,
 * tolerance checks that report the worst element, and reading reference
 * fixtures (HDF5 files written by tests/ref/gen_fixtures.py). */
#ifndef LFS_TESTUTIL_H
#define LFS_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

/* Fills x[0..n) with uniform values in [lo, hi) from Philox stream (seed, tag). */
void tu_fill_uniform(float *x, size_t n, float lo, float hi, uint64_t seed, uint32_t tag);
void tu_fill_uniform_d(double *x, size_t n, double lo, double hi, uint64_t seed, uint32_t tag);

/* Norm-wise relative error: max_i |got_i - want_i| / max(max_i |want_i|, tiny). */
double tu_rel_err(const float *got, const double *want, size_t n);
double tu_rel_err_f(const float *got, const float *want, size_t n);

/* Prints "what: rel err E (tol T), worst element i: got G want W" and returns
 * 1 if E <= tol, else 0. */
int tu_check(const char *what, const float *got, const double *want, size_t n, double tol);

/* Path of a file under the source tree ($LFS_SRCDIR, or "." when unset). */
const char *tu_srcpath(const char *relative);

/* Reading fixtures. tu_fixture_open returns a handle or aborts the test with a
 * message naming the file. tu_fixture_read_* allocate (malloc) and convert the
 * named dataset; *n receives its element count; dims (up to 4) when non-NULL. */
typedef struct tu_fixture tu_fixture;
tu_fixture *tu_fixture_open(const char *relative_path);
void tu_fixture_close(tu_fixture *f);
int tu_fixture_has(tu_fixture *f, const char *name);
float *tu_fixture_read_f(tu_fixture *f, const char *name, size_t *n);
double *tu_fixture_read_d(tu_fixture *f, const char *name, size_t *n);
/* Dimensions of a dataset: returns ndim and fills dims[0..ndim). */
int tu_fixture_dims(tu_fixture *f, const char *name, int dims[4]);
/* A scalar attribute of the root group, as double. */
double tu_fixture_attr(tu_fixture *f, const char *name);

#endif
