/* bench_train.c: `lfsearch bench --train MODEL`: images/s of the whole training
 * step that `lfsearch train` takes (forward, cosine head with the ArcFace margin,
 * backward, gradient all-reduce, SGD with momentum and weight decay) on random
 * NCHW input [B, 3, S, S] and random labels, over all ranks of the world. The
 * same step is timed in PyTorch by bench/torch_step.py; bench/compare_pytorch.sh
 * puts the two side by side. */
#include <mpi.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "lfs/backend.h"
#include "lfs/log.h"
#include "lfs/philox.h"
#include "lfs/runtime.h"
#include "lfs/timer.h"
#include "lfs/trainer.h"
#include "tools/commands.h"

/* One `section.key=value` assignment, printf-style. */
static void set_or_die(lfs_config *cfg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_or_die(lfs_config *cfg, const char *fmt, ...) {
  char assignment[256], err[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(assignment, sizeof assignment, fmt, ap);
  va_end(ap);
  if (lfs_config_set(cfg, assignment, err, sizeof err) != 0) lfs_user_error("bench --train: %s", err);
}

static lfs_config *step_config(const lfs_bench_train_opts *o) {
  lfs_config *cfg = lfs_config_new();
  set_or_die(cfg, "model.arch=%s", o->model);
  set_or_die(cfg, "data.image_size=%d", o->size);
  set_or_die(cfg, "data.batch_size=%d", o->batch);
  set_or_die(cfg, "data.classes=%d", o->classes);
  set_or_die(cfg, "head.loss=arcface");
  set_or_die(cfg, "optim.lr=0.01");
  set_or_die(cfg, "optim.weight_decay=5e-4");
  set_or_die(cfg, "run.backend=%s", o->device ? o->device : "cpu");
  return cfg;
}

/* Best time of o->reps runs of o->steps steps, after two untimed steps. */
static double time_steps(lfs_trainer *t, const lfs_bench_train_opts *o, const float *x,
                         const int32_t *labels) {
  double best = 1e30;
  for (int w = 0; w < 2; w++) lfs_trainer_step(t, x, labels, NULL);
  lfs_backend_profile_reset(); /* LFS_PROFILE: the timed steps only */
  for (int r = 0; r < o->reps; r++) {
    LFS_MPI_CHECK(MPI_Barrier(t->comm));
    const double t0 = lfs_now();
    for (int s = 0; s < o->steps; s++) lfs_trainer_step(t, x, labels, NULL);
    double dt = lfs_now() - t0;
    LFS_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &dt, 1, MPI_DOUBLE, MPI_MAX, t->comm));
    if (dt < best) best = dt;
  }
  return best;
}

static void print_line(const char *line, void *user) {
  (void)user;
  lfs_info("%s", line);
}

static void print_header(const lfs_bench_train_opts *o) {
  lfs_info("train step: %s at %dx%d, global batch %d over %d ranks, %d classes, ArcFace, SGD;\n"
           "best of %d runs of %d steps after 2 untimed steps",
           o->model, o->size, o->size, o->batch, lfs_world_size(), o->classes, o->reps, o->steps);
  lfs_info("  backend %s", o->device ? o->device : "cpu");
  lfs_info("  %-8s %7s %12s %10s %9s", "model", "threads", "images/s", "ms/step", "TFLOP/s");
}

/* Floating-point operations of one global step: forward, input gradient and
 * weight gradient of every convolution and linear layer and of the head's class
 * matrix, 2 per multiply-add each (the usual 3 x forward count; normalisation,
 * activations and the update are left out). */
static double step_flops(const lfs_trainer *t) {
  const double head_macs = (double)t->local_batch * t->D * t->K;
  return 6.0 * (lfs_graph_conv_linear_macs(&t->g) + head_macs) * t->ranks;
}

typedef struct {
  double images_per_s, flops_per_s;
} bench_rate;

/* Images/s at `threads` threads per rank; the first call prints the header once
 * the trainer is built, so that a bad model or size stops before any output. */
static bench_rate bench_one(const lfs_bench_train_opts *o, lfs_config *cfg, int threads,
                            int first) {
  lfs_set_threads(threads);
  set_or_die(cfg, "run.threads=%d", threads);
  lfs_trainer t;
  char err[1024];
  if (lfs_trainer_init(&t, cfg, o->classes, 1000, MPI_COMM_WORLD, err, sizeof err) != 0)
    lfs_user_error("bench --train: %s", err);
  if (first) print_header(o);
  const size_t n = (size_t)t.local_batch * 3 * o->size * o->size;
  float *x = lfs_trainer_input_alloc(&t); /* as train and search: staging memory */
  int32_t *labels = lfs_malloc((size_t)t.local_batch * sizeof *labels);
  const lfs_rng rng = lfs_rng_make(12345, LFS_RNG_TEST, 0x7a1, (uint64_t)t.rank);
  for (size_t i = 0; i < n; i++) x[i] = 2.0f * lfs_rng_uniform(&rng, i) - 1.0f;
  for (int i = 0; i < t.local_batch; i++)
    labels[i] = (int32_t)lfs_rng_below(&rng, n + (uint64_t)i, (uint32_t)o->classes);
  const double best = time_steps(&t, o, x, labels);
  lfs_backend_profile_report((long)o->reps * o->steps, print_line, NULL);
  const bench_rate rate = {(double)o->steps * o->batch / best, step_flops(&t) * o->steps / best};
  lfs_trainer_input_free(&t, x);
  free(labels);
  lfs_trainer_free(&t);
  return rate;
}

int lfs_bench_train(const lfs_bench_train_opts *o) {
  lfs_config *cfg = step_config(o);
  for (int i = 0; i < o->nthreads; i++) {
    const bench_rate rate = bench_one(o, cfg, o->threads[i], i == 0);
    lfs_info("  %-8s %7d %12.1f %10.2f %9.2f", o->model, o->threads[i], rate.images_per_s,
             o->batch / rate.images_per_s * 1e3, rate.flops_per_s * 1e-12);
  }
  lfs_config_free(cfg);
  return 0;
}
