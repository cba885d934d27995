/* test_train_mpi.c: data-parallel training is the same computation whatever
 * the rank count. The tiny model with synchronised BN and the same global batch
 * of 8 trains for 20 steps on R ranks (each with 8/R samples) and, inside each
 * rank, on one process holding the whole batch (MPI_COMM_SELF); the parameters,
 * BN statistics, momentum and class weights must agree to 1e-5 (norm-wise
 * relative) after every step. */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lfs/config.h"
#include "lfs/log.h"
#include "lfs/philox.h"
#include "lfs/trainer.h"

enum { GLOBAL = 8, SIDE = 16, CLASSES = 10, STEPS = 20 };

static lfs_config *make_config(void) {
  static const char *sets[] = {"model.arch=tiny",      "model.embedding_size=32",
                               "model.sync_bn=true",   "data.batch_size=8",
                               "data.image_size=16",   "head.loss=arcface",
                               "optim.lr=0.01",        "optim.schedule=multistep",
                               "optim.milestones=",    "optim.clip_norm=5",
                               "run.seed=3"};
  lfs_config *cfg = lfs_config_new();
  char err[512];
  for (size_t i = 0; i < sizeof sets / sizeof *sets; i++)
    if (lfs_config_set(cfg, sets[i], err, sizeof err) != 0) lfs_fatal("%s", err);
  return cfg;
}

static double rel_diff(const float *a, const float *b, size_t n) {
  double worst = 0.0, scale = 1e-30;
  for (size_t i = 0; i < n; i++) {
    worst = fmax(worst, fabs((double)a[i] - b[i]));
    scale = fmax(scale, fabs((double)b[i]));
  }
  return worst / scale;
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank, size;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  lfs_config *cfg = make_config();
  char err[1024];
  lfs_trainer ref, mine;
  if (lfs_trainer_init(&ref, cfg, CLASSES, 100, MPI_COMM_SELF, err, sizeof err) != 0 ||
      lfs_trainer_init(&mine, cfg, CLASSES, 100, MPI_COMM_WORLD, err, sizeof err) != 0)
    lfs_fatal("%s", err);
  const size_t image = 3 * SIDE * SIDE;
  const int local = GLOBAL / size;
  float *x = malloc(sizeof(float) * GLOBAL * image);
  int32_t labels[GLOBAL];
  double worst = 0.0;
  int failures = 0;
  for (int step = 0; step < STEPS; step++) {
    const lfs_rng rng = lfs_rng_make(7, LFS_RNG_TEST, (uint32_t)step, 0);
    for (size_t i = 0; i < GLOBAL * image; i++) x[i] = 2.0f * lfs_rng_uniform(&rng, i) - 1.0f;
    for (int i = 0; i < GLOBAL; i++) labels[i] = (int32_t)lfs_rng_below(&rng, 1000000 + i, CLASSES);
    const double l_ref = lfs_trainer_step(&ref, x, labels, NULL);
    const double l_mine = lfs_trainer_step(&mine, x + rank * local * image, labels + rank * local, NULL);
    const double d[4] = {
        rel_diff(mine.g.params.data, ref.g.params.data, ref.g.params.count),
        rel_diff(mine.opt.velocity, ref.opt.velocity, ref.g.params.trainable_count),
        rel_diff(mine.w, ref.w, (size_t)CLASSES * ref.D),
        fabs(l_mine - l_ref) / fmax(fabs(l_ref), 1e-30)};
    for (int k = 0; k < 4; k++) {
      worst = fmax(worst, d[k]);
      if (!(d[k] <= 1e-5)) {
        fprintf(stderr, "[rank %d] FAIL step %d: %s differ by %g\n", rank, step,
                k == 0 ? "parameters" : k == 1 ? "momentum" : k == 2 ? "class weights" : "losses", d[k]);
        failures++;
      }
    }
  }
  lfs_trainer_free(&ref);
  lfs_trainer_free(&mine);
  lfs_config_free(cfg);
  free(x);
  int all = 0;
  MPI_Allreduce(&failures, &all, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  MPI_Allreduce(MPI_IN_PLACE, &worst, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  if (rank == 0)
    printf("%s: %d ranks vs 1 after %d steps, worst relative difference %.3g\n",
           all ? "FAIL" : "PASS", size, STEPS, worst);
  MPI_Finalize();
  return all ? 1 : 0;
}
