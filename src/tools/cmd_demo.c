/* cmd_demo.c: `lfsearch demo`: trains the small residual demo network on
 * synthetic random data, data parallel over all ranks (each rank takes its
 * slice of every global batch; gradients are all-reduced). Images are noisy
 * copies of one random prototype per class, all keyed by Philox, so every run
 * with the same seed sees the same data and the loss must fall. It exercises
 * the configuration, the layers, the all-reduce and the stop signal until the
 * loss search replaces it as the main job. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "lfs/comm.h"
#include "lfs/graph.h"
#include "lfs/log.h"
#include "lfs/loss.h"
#include "lfs/models.h"
#include "lfs/optim.h"
#include "lfs/philox.h"
#include "lfs/runtime.h"
#include "lfs/timer.h"
#include "tools/commands.h"

typedef struct {
  uint64_t seed;
  int steps, log_every, batch, local_batch, size, classes, width, blocks, embedding;
  float lr, momentum, weight_decay;
} demo_opts;

static void read_opts(demo_opts *o, const lfs_config *cfg) {
  o->seed = (uint64_t)lfs_config_int(cfg, "run.seed");
  o->steps = (int)lfs_config_int(cfg, "run.steps");
  if (o->steps == 0) o->steps = 50;
  o->log_every = (int)lfs_config_int(cfg, "run.log_every");
  o->batch = (int)lfs_config_int(cfg, "data.batch_size");
  o->size = (int)lfs_config_int(cfg, "data.image_size");
  o->classes = (int)lfs_config_int(cfg, "data.classes");
  o->width = (int)lfs_config_int(cfg, "model.width");
  o->blocks = (int)lfs_config_int(cfg, "model.blocks");
  o->embedding = (int)lfs_config_int(cfg, "model.embedding_size");
  o->lr = (float)lfs_config_real(cfg, "optim.lr");
  o->momentum = (float)lfs_config_real(cfg, "optim.momentum");
  o->weight_decay = (float)lfs_config_real(cfg, "optim.weight_decay");
  const int ranks = lfs_world_size();
  if (o->batch % ranks)
    lfs_user_error("[data] batch_size = %d (%s) is not divisible by the %d MPI ranks", o->batch,
                   lfs_config_origin(cfg, "data.batch_size"), ranks);
  o->local_batch = o->batch / ranks;
  if (o->size % (1 << o->blocks))
    lfs_user_error("[data] image_size = %d (%s) must be divisible by 2^blocks = %d ([model] blocks = %d)",
                   o->size, lfs_config_origin(cfg, "data.image_size"), 1 << o->blocks, o->blocks);
}

/* The local slice of global batch `step`: images [local_batch, 3, size, size], labels. */
static void make_batch(const demo_opts *o, int step, const float *prototypes, float *x, int32_t *labels) {
  const size_t pixels = 3 * (size_t)o->size * o->size;
  const lfs_rng pick = lfs_rng_make(o->seed, LFS_RNG_SYNTH, 1, 0);
  const int first = lfs_world_rank() * o->local_batch;
  for (int i = 0; i < o->local_batch; i++) {
    const uint64_t sample = (uint64_t)step * o->batch + first + i;
    labels[i] = (int32_t)lfs_rng_below(&pick, sample, (uint64_t)o->classes);
    const lfs_rng noise = lfs_rng_make(o->seed, LFS_RNG_SYNTH, 2, (uint32_t)sample);
    const float *proto = prototypes + labels[i] * pixels;
    for (size_t p = 0; p < pixels; p++)
      x[i * pixels + p] = proto[p] + 0.8f * (2.0f * lfs_rng_uniform(&noise, p) - 1.0f);
  }
}

static float *make_prototypes(const demo_opts *o) {
  const size_t pixels = 3 * (size_t)o->size * o->size;
  float *protos = lfs_alloc_floats(pixels * o->classes);
  const lfs_rng rng = lfs_rng_make(o->seed, LFS_RNG_SYNTH, 0, 0);
  for (size_t i = 0; i < pixels * o->classes; i++) protos[i] = 2.0f * lfs_rng_uniform(&rng, i) - 1.0f;
  return protos;
}

/* Every rank agrees whether any rank received a stop signal. */
static int stop_requested(void) {
  int mine = lfs_signal_pending() != 0, any = 0;
  LFS_MPI_CHECK(MPI_Allreduce(&mine, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD));
  return any;
}

static void progress(const demo_opts *o, int step, double loss, double acc, double t_start) {
  const double elapsed = lfs_now() - t_start, per_step = elapsed / step;
  lfs_info("step %4d/%d  loss %.4f  train acc %5.1f%%  %7.1f img/s  ETA %.0fs", step, o->steps, loss,
           100.0 * acc, o->batch * step / elapsed, per_step * (o->steps - step));
}

static int train(const demo_opts *o, lfs_graph *g) {
  const size_t pixels = 3 * (size_t)o->size * o->size;
  float *protos = make_prototypes(o), *x = lfs_alloc_floats(pixels * o->local_batch);
  float *dlogits = lfs_alloc_floats((size_t)o->local_batch * o->classes);
  int32_t *labels = lfs_malloc(sizeof(int32_t) * o->local_batch);
  lfs_sgd opt;
  lfs_sgd_init(&opt, &g->params, o->lr, o->momentum, o->weight_decay);
  lfs_pass ps = {.be = g->be, .params = &g->params, .training = 1, .seed = o->seed};
  const double t0 = lfs_now();
  double sums[2] = {0, 0}; /* loss, correct since the last report */
  int rc = LFS_EXIT_OK;
  for (int step = 1; step <= o->steps; step++) {
    if (stop_requested()) {
      lfs_info("stop signal received: stopping at step %d (the demo keeps no checkpoint)", step);
      rc = LFS_EXIT_SIGNAL;
      break;
    }
    make_batch(o, step, protos, x, labels);
    ps.step = (uint64_t)step;
    const float *logits = lfs_graph_forward(g, &ps, x);
    int correct = 0;
    const double loss = lfs_softmax_xent(o->local_batch, o->classes, dlogits, logits, labels, &correct);
    if (!isfinite(loss)) lfs_user_error_local("loss is %g at step %d: lower [optim] lr", loss, step);
    lfs_params_zero_grad(&g->params);
    lfs_graph_backward(g, &ps, x, dlogits);
    lfs_allreduce_mean(g->params.grad, g->params.trainable_count, MPI_COMM_WORLD);
    lfs_sgd_step(&opt, &g->params);
    sums[0] += loss * o->local_batch, sums[1] += correct;
    if (step % o->log_every == 0 || step == o->steps) {
      LFS_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, sums, 2, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD));
      const int seen = o->batch * (step % o->log_every ? step % o->log_every : o->log_every);
      progress(o, step, sums[0] / seen, sums[1] / seen, t0);
      sums[0] = sums[1] = 0;
    }
  }
  lfs_sgd_free(&opt);
  free(protos), free(x), free(dlogits), free(labels);
  return rc;
}

static void print_line(const char *line, void *user) {
  (void)user;
  lfs_info("  %s", line);
}

int lfs_cmd_demo(int argc, char **argv) {
  for (int i = 1; i < argc; i++)
    if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
      lfs_info("usage: lfsearch demo [-c FILE] [--set section.key=value ...]\n"
               "  trains the small residual demo network on synthetic random data;\n"
               "  keys used: run.seed run.steps run.log_every run.threads data.batch_size\n"
               "  data.image_size data.classes model.width model.blocks model.embedding_size\n"
               "  optim.lr optim.momentum optim.weight_decay");
      return 0;
    }
  lfs_config *cfg = lfs_cli_config(&argc, argv);
  lfs_cli_no_extra("demo", argc, argv);
  demo_opts o;
  read_opts(&o, cfg);
  lfs_set_threads((int)lfs_config_int(cfg, "run.threads"));
  lfs_graph g;
  lfs_graph_init(&g);
  lfs_demo_net(&g, o.width, o.blocks, o.embedding, o.classes);
  char err[512];
  if (lfs_graph_build(&g, lfs_backend_cpu(), (lfs_shape){o.local_batch, 3, o.size, o.size}, 0, err,
                      sizeof err) != 0)
    lfs_user_error("demo network: %s", err);
  lfs_graph_init_params(&g, o.seed);
  lfs_info("lfsearch demo: a smoke run of the build: the residual demo network trained on\n"
           "synthetic random data (the loss search on synthetic faces is jobs/demo.sh) (%d ranks, global batch %d, %dx%d images, %d classes,\n"
           "%zu trainable parameters, %.1f MMAC per image)",
           lfs_world_size(), o.batch, o.size, o.size, o.classes, lfs_params_trainable(&g.params),
           lfs_graph_macs(&g) / o.local_batch * 1e-6);
  lfs_graph_print(&g, print_line, NULL);
  int rc = train(&o, &g);
  lfs_graph_free(&g);
  lfs_config_free(cfg);
  return rc;
}
