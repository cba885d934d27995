/* test_sync_bn.c: synchronised batch norm. Under R ranks, each holding 8/R
 * samples of a global batch of 8, a network with BN 2-D and BN 1-D trained
 * with sync_bn must give what one process gives on the whole batch: the same
 * outputs and input gradients for each rank's rows, the same running
 * statistics, and parameter gradients whose sum over the ranks equals the
 * one-process gradients. Each rank computes the one-process reference itself. */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lfs/comm.h"
#include "lfs/graph.h"
#include "lfs/log.h"
#include "lfs/philox.h"

enum { GLOBAL = 8, CH = 3, SIDE = 6, OUT = 5 };

static int failures = 0;

static void build(lfs_graph *g, int batch) {
  lfs_graph_init(g);
  int x = lfs_graph_add(g, lfs_conv2d("conv", 4, 3, 1, 1, 1, 0), LFS_GRAPH_INPUT, -1);
  x = lfs_graph_add(g, lfs_batchnorm("bn", 1e-5f, 0.1f, 0), x, -1);
  x = lfs_graph_add(g, lfs_prelu("prelu"), x, -1);
  x = lfs_graph_add(g, lfs_flatten(), x, -1);
  x = lfs_graph_add(g, lfs_linear("fc", OUT, 1), x, -1);
  lfs_graph_add(g, lfs_batchnorm("features", 1e-5f, 0.1f, 0), x, -1);
  char err[256];
  if (lfs_graph_build(g, lfs_backend_cpu(), (lfs_shape){batch, CH, SIDE, SIDE}, 1, err, sizeof err))
    lfs_fatal("%s", err);
  lfs_graph_init_params(g, 11);
}

static void fill(float *x, size_t n, uint32_t tag) {
  const lfs_rng r = lfs_rng_make(5, LFS_RNG_TEST, tag, 0);
  for (size_t i = 0; i < n; i++) x[i] = 2.0f * lfs_rng_uniform(&r, i) - 1.0f;
}

static void expect_close(const char *what, const float *got, const float *want, size_t n, int rank) {
  double worst = 0.0, scale = 1e-12;
  for (size_t i = 0; i < n; i++) {
    worst = fmax(worst, fabs((double)got[i] - want[i]));
    scale = fmax(scale, fabs((double)want[i]));
  }
  if (worst / scale > 1e-5) {
    fprintf(stderr, "[rank %d] FAIL %s: rel err %g\n", rank, what, worst / scale);
    failures++;
  } else if (rank == 0) {
    printf("%s: rel err %.2g\n", what, worst / scale);
  }
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm comm = MPI_COMM_WORLD;
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  if (GLOBAL % size) {
    if (rank == 0) fprintf(stderr, "test_sync_bn needs a rank count dividing %d\n", GLOBAL);
    MPI_Finalize();
    return 99;
  }
  const int local = GLOBAL / size;
  const size_t in_row = CH * SIDE * SIDE;
  float *x = malloc(sizeof(float) * GLOBAL * in_row), *dy = malloc(sizeof(float) * GLOBAL * OUT);
  fill(x, GLOBAL * in_row, 1);
  fill(dy, GLOBAL * OUT, 2);

  lfs_graph ref, mine;
  build(&ref, GLOBAL);
  build(&mine, local);
  lfs_pass ref_pass = {.be = ref.be, .params = &ref.params, .training = 1, .seed = 1};
  lfs_pass my_pass = {.be = mine.be, .params = &mine.params, .training = 1, .seed = 1,
                      .sync_bn = lfs_group_sum_doubles, .sync_ctx = &comm};
  /* two steps, so that the second forward starts from updated running statistics */
  for (int step = 0; step < 2; step++) {
    const float *y_ref = lfs_graph_forward(&ref, &ref_pass, x);
    const float *y = lfs_graph_forward(&mine, &my_pass, x + rank * local * in_row);
    expect_close("output rows", y, y_ref + rank * local * OUT, (size_t)local * OUT, rank);
    lfs_params_zero_grad(&ref.params);
    lfs_params_zero_grad(&mine.params);
    lfs_graph_backward(&ref, &ref_pass, x, dy);
    lfs_graph_backward(&mine, &my_pass, x + rank * local * in_row, dy + rank * local * OUT);
    expect_close("input gradient rows", mine.dx, ref.dx + rank * local * in_row, local * in_row, rank);
    lfs_allreduce_sum(mine.params.grad, mine.params.trainable_count, comm);
    expect_close("summed parameter gradients", mine.params.grad, ref.params.grad,
                 ref.params.trainable_count, rank);
    expect_close("all parameters and running statistics", mine.params.data, ref.params.data,
                 ref.params.count, rank);
  }
  lfs_graph_free(&ref);
  lfs_graph_free(&mine);
  free(x);
  free(dy);
  int all = 0;
  MPI_Allreduce(&failures, &all, 1, MPI_INT, MPI_SUM, comm);
  if (rank == 0) printf("%s: %d failures on %d ranks\n", all ? "FAIL" : "PASS", all, size);
  MPI_Finalize();
  return all ? 1 : 0;
}
