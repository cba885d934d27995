/* test_nccl.c: device collectives through NCCL (lfs/devcomm.h) with real values,
 * on the CUDA backend over MPI_COMM_WORLD: the mean of rank-dependent data
 * against the mean computed on the host (2^20 + 3 floats and 1 float), and a
 * broadcast from the last rank (bit for bit). With 2 or more ranks also the
 * trainer: a group averaging its gradients through NCCL keeps every rank's
 * state identical, and the winner's broadcast (lfs_trainer_broadcast_state)
 * hands one rank's state to all through device memory.
 *
 * Multi-rank NCCL needs 2+ GPUs, one per rank: on a machine with one GPU this
 * runs with 1 rank (a one-rank communicator: still NCCL's kernels and copies).
 * Exits 77 (SKIP), saying why, without a GPU, without a usable NCCL, or under
 * MPI with more ranks than GPUs (two ranks on one GPU: the distinct-GPU check). */
#include <float.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lfs/backend.h"
#include "lfs/config.h"
#include "lfs/devcomm.h"
#include "lfs/log.h"
#include "lfs/philox.h"
#include "lfs/runtime.h"
#include "lfs/trainer.h"
#include "train_steps.h"

enum { BIG = (1 << 20) + 3, CLASSES = 10, SIDE = 16, LOCAL = 4, STEPS = 4 };

static int rank, size, checks, failures;

/* Counts a check on every rank; prints failures where they happen. */
static void check(int ok, const char *what, double detail) {
  checks++;
  if (!ok) {
    failures++;
    fprintf(stderr, "[rank %d] FAIL: %s (%g)\n", rank, what, detail);
  }
}

/* Rank r's element i: multiples of 1/8 below 2^9, so that sums are exact in float. */
static float value(int r, size_t i) {
  return (float)((int)((i * 2654435761u + (size_t)r * 40503u) % 4096u) - 2048) * 0.125f;
}

static float *to_device(lfs_backend *be, const float *host, size_t n) {
  float *d = be->ops->alloc(be, n);
  be->ops->upload(be, d, host, n);
  return d;
}

/* The mean of every rank's value(r, i), against the double mean on the host:
 * within a few float roundings of the largest term (ncclAvg may scale before
 * or after summing). */
static void test_mean(lfs_backend *be, lfs_devcomm *c, size_t n) {
  float *x = malloc(n * sizeof *x);
  for (size_t i = 0; i < n; i++) x[i] = value(rank, i);
  float *d = to_device(be, x, n);
  lfs_devcomm_allreduce_mean(c, d, n);
  be->ops->download(be, x, d, n);
  double worst = 0.0;
  int bad = 0;
  for (size_t i = 0; i < n; i++) {
    double sum = 0.0, largest = 0.0;
    for (int r = 0; r < size; r++) {
      sum += value(r, i);
      largest = fmax(largest, fabs(value(r, i)));
    }
    const double err = fabs(x[i] - sum / size), tol = 4.0 * size * FLT_EPSILON * largest;
    worst = fmax(worst, err);
    bad += !(err <= tol);
  }
  char what[96];
  snprintf(what, sizeof what, "allreduce_mean of %zu floats: %d elements off, worst error", n, bad);
  check(bad == 0, what, worst);
  be->ops->free(be, d);
  free(x);
}

/* root's data everywhere, bit for bit; the others start from other values. */
static void test_broadcast(lfs_backend *be, lfs_devcomm *c, size_t n, int root) {
  float *x = malloc(n * sizeof *x);
  for (size_t i = 0; i < n; i++) x[i] = rank == root ? value(root, i) : -1.0f - (float)rank;
  float *d = to_device(be, x, n);
  lfs_devcomm_broadcast(c, d, n, root);
  be->ops->download(be, x, d, n);
  size_t bad = 0;
  for (size_t i = 0; i < n; i++) {
    const float want = value(root, i);
    bad += memcmp(&x[i], &want, sizeof want) != 0;
  }
  char what[96];
  snprintf(what, sizeof what, "broadcast of %zu floats from rank %d: elements differ", n, root);
  check(bad == 0, what, (double)bad);
  be->ops->free(be, d);
  free(x);
}

/* The tiny model, LOCAL images per rank of the group (MPI_COMM_WORLD). */
static lfs_config *trainer_config(void) {
  static const char *sets[] = {
      "model.arch=tiny", "model.embedding_size=32",  "data.image_size=16", "head.loss=arcface",
      "optim.lr=0.01",   "optim.schedule=multistep", "optim.milestones=",  "optim.clip_norm=5",
      "run.seed=3",      "run.backend=cuda"};
  lfs_config *cfg = lfs_config_new();
  char err[512], batch[64];
  snprintf(batch, sizeof batch, "data.batch_size=%d", LOCAL * size);
  for (size_t i = 0; i <= sizeof sets / sizeof *sets; i++) {
    const char *set = i < sizeof sets / sizeof *sets ? sets[i] : batch;
    if (lfs_config_set(cfg, set, err, sizeof err) != 0) lfs_fatal("%s", err);
  }
  return cfg;
}

static void train(lfs_trainer *t, uint32_t stream) { tu_train_steps(t, 7, stream, STEPS); }

/* 1 if this rank's packed state equals root's bit for bit (collective). */
static int same_as(const lfs_trainer *t, int root) {
  const size_t n = lfs_trainer_state_floats(t);
  float *mine = malloc(n * sizeof *mine), *theirs = malloc(n * sizeof *theirs);
  lfs_trainer_state_pack(t, mine);
  memcpy(theirs, mine, n * sizeof *mine);
  MPI_Bcast(theirs, (int)(n * sizeof *theirs), MPI_BYTE, root, MPI_COMM_WORLD);
  int64_t step = t->step;
  MPI_Bcast(&step, 1, MPI_INT64_T, root, MPI_COMM_WORLD);
  const int same = !memcmp(mine, theirs, n * sizeof *mine) && step == t->step;
  free(mine), free(theirs);
  return same;
}

/* Several ranks: the group's gradients through NCCL keep the ranks' states equal,
 * and the winner's broadcast copies the last rank's (trained on its own data). */
static void test_trainer(void) {
  lfs_config *cfg = trainer_config();
  char err[1024];
  lfs_trainer group, own;
  if (lfs_trainer_init(&group, cfg, CLASSES, 100, MPI_COMM_WORLD, err, sizeof err) != 0 ||
      lfs_trainer_init(&own, cfg, CLASSES, 100, MPI_COMM_SELF, err, sizeof err) != 0)
    lfs_fatal("%s", err);
  check(group.devcomm != NULL, "the group's trainer has no device collectives", 0);
  train(&group, 1);
  check(same_as(&group, 0), "ranks of one group differ after NCCL-averaged steps", 0);
  train(&own, 2 + (uint32_t)rank); /* every rank its own candidate */
  own.step += rank;
  lfs_trainer_broadcast_state(&own, size - 1, MPI_COMM_WORLD);
  check(own.bcast.dc != NULL, "the state broadcast did not use device collectives", 0);
  check(same_as(&own, size - 1), "state after lfs_trainer_broadcast_state differs from root's", 0);
  lfs_trainer_free(&group);
  lfs_trainer_free(&own);
  lfs_config_free(cfg);
}

/* The same verdict on every rank: 77 with the reason. */
static int skip(const char *what, const char *reason) {
  if (rank == 0) printf("SKIP: %s (%s)\n", what, reason);
  lfs_runtime_finalize();
  return 77;
}

int main(int argc, char **argv) {
  lfs_runtime_init(&argc, &argv);
  setvbuf(stdout, NULL, _IOLBF, 0);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  char why[256] = "";
  lfs_backend *be = lfs_backend_cuda(why, sizeof why);
  int have = be != NULL, all = 0;
  MPI_Allreduce(&have, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  if (!all) return skip("no CUDA backend", be ? "another rank has none" : why);
  lfs_devcomm *c = lfs_devcomm_create(be, MPI_COMM_WORLD, why, sizeof why);
  if (!c) return skip("no device collectives", why);
  if (rank == 0) printf("%d rank(s), %s, %s\n", size, lfs_nccl_describe(), lfs_devices_runtime());
  test_mean(be, c, BIG);
  test_mean(be, c, 1);
  test_broadcast(be, c, BIG, size - 1);
  test_broadcast(be, c, 1, size - 1);
  lfs_devcomm_free(c);
  if (size > 1) test_trainer();
  int total = 0;
  MPI_Allreduce(&failures, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  if (rank == 0)
    printf("%s: %d checks per rank, %d failures\n", total ? "FAIL" : "PASS", checks, total);
  lfs_runtime_finalize();
  return total ? 1 : 0;
}
