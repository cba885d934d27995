/* parity_ops.h: the op-by-op parity cases shared by tests/gpu/test_cuda_parity.c (the
 * CUDA backend, or cpu-staged) and tests/gpu/test_cuda_emulated.c (the CUDA kernels
 * through the host emulation of tests/gpu/emu): each op runs on the CPU reference backend
 * and on the backend under test from the same inputs, and every output is compared:
 * |gpu - cpu| <= rtol * max(1, max |cpu|), or exactly where the context says so. The
 * cases: fill, add, axpy, dropout, an upload on the copy stream, SGD; PReLU (dx and
 * dalpha in one pass, adding and setting a NaN-poisoned dx); linear; L2 normalisation
 * (its backward row by row); batch norm in eval mode, training mode and with a stand-in
 * group (the mean-1e4 case too), its gradient terms, apply and backward; the margin
 * head of every loss; and convolutions (forward, backward adding to dx, dw and db, and
 * setting a NaN-poisoned dx) at five geometries. The helpers (random data, backend
 * copies, pairs of buffers, the comparison) serve each program's own cases too. */
#ifndef LFS_TESTS_GPU_PARITY_OPS_H
#define LFS_TESTS_GPU_PARITY_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "lfs/backend.h"

typedef struct {
  lfs_backend *cpu, *gpu; /* the reference, and the backend under test */
  int exact;              /* every difference must be 0 (against cpu-staged) */
  int checks, failures;   /* counted by every check */
  /* Optional (NULL: none): called around the backend's PReLU and batch-norm calls, to
   * check which path the kernels took since path_begin (16-byte loads, and stores where
   * `stores`, where `vec4`; none otherwise). */
  void (*path_begin)(void);
  void (*expect_path)(const char *what, int vec4, int stores);
  int head_rows_near_class; /* the head also with rows near a class (accuracy above 0) */
} parity_ctx;

/* A pair of buffers holding the same data: c on t->cpu, g on t->gpu. */
typedef struct {
  float *c, *g;
  size_t n;
} parity_pair;

/* n values uniform in [lo, hi) from Philox stream `stream` (malloc'd). */
float *parity_random_floats(size_t n, float lo, float hi, uint32_t stream);
/* A backend copy of a host array, and a host copy (malloc'd) of a backend array. */
float *parity_on(lfs_backend *be, const float *host, size_t n);
float *parity_host_of(lfs_backend *be, const float *p, size_t n);
/* Largest |a - b| over n host values; *at is where (a NaN counts as largest). */
double parity_max_difference(const float *a, const float *b, size_t n, size_t *at);

/* Counts one check, a failure unless ok. */
void parity_count(parity_ctx *t, int ok);
/* The backends' copies of one output: |gpu - cpu| <= max(rtol * max(1, max |cpu|),
 * PARITY_SPREAD_FACTOR * spread) (spread: the CPU's own change under one-ulp changes of
 * the inputs, 0 for single ops); exactly equal where t->exact. A NaN fails. */
#define PARITY_SPREAD_FACTOR 10.0
void parity_expect_close_spread(parity_ctx *t, const char *what, const float *cpu_p,
                                const float *gpu_p, size_t n, double rtol, double spread);
void parity_expect_close(parity_ctx *t, const char *what, const float *cpu_p, const float *gpu_p,
                         size_t n, double rtol);

parity_pair parity_make_pair(parity_ctx *t, size_t n, float lo, float hi, uint32_t stream);
void parity_free_pair(parity_ctx *t, parity_pair *p);
void parity_check_pair(parity_ctx *t, const char *what, const parity_pair *p, double rtol);
/* Both copies become NaN: an op that sets its output (LFS_GRAD_SET) must not read it. */
void parity_poison(parity_ctx *t, parity_pair *p);

/* A stand-in for two more ranks of a synchronised-BN group holding this rank's batch. */
void parity_other_ranks(double *buf, int count, void *ctx);
/* B labels below K (malloc'd), rows 0 and 1 of one class. */
int32_t *parity_head_labels(int B, int K);
lfs_head_cfg parity_head_cfg(lfs_loss_kind kind);

void parity_test_elementwise(parity_ctx *t);
void parity_test_prelu(parity_ctx *t);
void parity_test_linear(parity_ctx *t);
void parity_test_l2norm(parity_ctx *t);
void parity_test_batchnorm(parity_ctx *t);
void parity_test_head(parity_ctx *t);
void parity_test_convolutions(parity_ctx *t);

#endif
