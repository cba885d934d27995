/* test_allreduce.c: under R ranks, the all-reduce of a model's gradient buffer
 * equals the serial sum of every rank's contribution. Each rank can compute
 * every other rank's contribution (they are Philox-keyed by rank), so each
 * checks the whole result on its own. Integer-valued gradients must match
 * exactly; random ones within float rounding of a double-precision sum. Also
 * checks the chunked path and the mean and broadcast helpers. */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

#include "lfs/comm.h"
#include "lfs/graph.h"
#include "lfs/log.h"
#include "lfs/models.h"
#include "lfs/philox.h"

static int failures = 0;

static void expect(int ok, const char *what, int rank) {
  if (!ok) {
    fprintf(stderr, "[rank %d] FAIL: %s\n", rank, what);
    failures++;
  }
}

static float contribution(int rank, size_t i, int integer) {
  const lfs_rng rng = lfs_rng_make(99, LFS_RNG_TEST, (uint32_t)rank, integer);
  if (integer) return (float)((int)lfs_rng_below(&rng, i, 2001) - 1000);
  return 2.0f * lfs_rng_uniform(&rng, i) - 1.0f;
}

/* A real gradient buffer: the parameters of an iresnet block. */
static void build_model(lfs_graph *g) {
  lfs_graph_init(g);
  lfs_iresnet_block(g, "layer1.0", LFS_GRAPH_INPUT, 16, 2, 1);
  char err[256];
  if (lfs_graph_build(g, lfs_backend_cpu(), (lfs_shape){2, 8, 8, 8}, 0, err, sizeof err) != 0)
    lfs_fatal("%s", err);
}

static void check_sum(lfs_params *p, int rank, int size, int integer) {
  const size_t n = p->trainable_count;
  for (size_t i = 0; i < n; i++) p->grad[i] = contribution(rank, i, integer);
  lfs_allreduce_sum(p->grad, n, MPI_COMM_WORLD);
  double worst = 0.0;
  for (size_t i = 0; i < n; i++) {
    double want = 0.0;
    for (int r = 0; r < size; r++) want += contribution(r, i, integer);
    worst = fmax(worst, fabs(p->grad[i] - want));
  }
  char what[128];
  snprintf(what, sizeof what, "%s sum over %d ranks: worst error %g",
           integer ? "integer" : "random", size, worst);
  expect(integer ? worst == 0.0 : worst <= 4e-7 * size, what, rank);
  if (rank == 0) printf("%s (%zu floats)\n", what, n);
}

static void check_mean_and_broadcast(int rank, int size) {
  enum { n = 1000 };
  float buf[n];
  for (int i = 0; i < n; i++) buf[i] = (float)(rank * n + i);
  lfs_allreduce_mean(buf, n, MPI_COMM_WORLD);
  int ok = 1;
  for (int i = 0; i < n; i++) ok &= fabsf(buf[i] - ((float)n * (size - 1) / 2.0f + i)) < 1e-3f;
  expect(ok, "mean", rank);
  for (int i = 0; i < n; i++) buf[i] = rank == size - 1 ? (float)i : -1.0f;
  lfs_broadcast(buf, n, size - 1, MPI_COMM_WORLD);
  ok = 1;
  for (int i = 0; i < n; i++) ok &= buf[i] == (float)i;
  expect(ok, "broadcast from the last rank", rank);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank, size;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (size < 2) {
    if (rank == 0) fprintf(stderr, "test_allreduce needs at least 2 ranks\n");
    MPI_Finalize();
    return 99;
  }
  lfs_graph g;
  build_model(&g);
  check_sum(&g.params, rank, size, 1);
  check_sum(&g.params, rank, size, 0);
  check_mean_and_broadcast(rank, size);
  lfs_graph_free(&g);
  int all = 0;
  MPI_Allreduce(&failures, &all, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  if (rank == 0) printf("%s: %d failures on %d ranks\n", all ? "FAIL" : "PASS", all, size);
  MPI_Finalize();
  return all ? 1 : 0;
}
