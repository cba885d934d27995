/* parity_models.c: whole networks on the CPU reference backend and on the backend under
 * test (parity_models.h). */
#include "parity_models.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "lfs/graph.h"
#include "lfs/params.h"
#include "lfs/philox.h"

typedef struct {
  lfs_graph g;
  float *x, *dy;  /* [input], [output] on the graph's backend */
  const float *y; /* the forward's output */
} model_run;

static void build_on(model_run *m, lfs_backend *be, const lfs_model_cfg *cfg, int batch) {
  char err[512] = "";
  lfs_graph_init(&m->g);
  if (lfs_model_build(&m->g, cfg, err, sizeof err) < 0 ||
      lfs_graph_build(&m->g, be, lfs_model_input_shape(cfg, batch), 1, err, sizeof err) != 0) {
    fprintf(stderr, "FAIL: %s: %s\n", cfg->arch, err);
    exit(1);
  }
}

/* Moves each value one ulp up or down (a fixed random sign per element). */
static void nudge(float *v, size_t n, uint32_t stream) {
  const lfs_rng r = lfs_rng_make(2024, LFS_RNG_TEST, stream, 1);
  for (size_t i = 0; i < n; i++)
    v[i] = nextafterf(v[i], lfs_rng_uniform(&r, i) < 0.5f ? -INFINITY : INFINITY);
}

/* One training-mode forward and backward of m from parameters `params` [np] and
 * input x, dy (host); the results stay in m's graph. */
static void run_model(model_run *m, lfs_backend *be, const float *params, size_t np, const float *x,
                      const float *dy, size_t nx, size_t ny) {
  be->ops->upload(be, m->g.params.data, params, np);
  m->x = parity_on(be, x, nx), m->dy = parity_on(be, dy, ny);
  lfs_pass ps = {.be = be, .params = &m->g.params, .training = 1, .seed = 7, .step = 3};
  m->y = lfs_graph_forward(&m->g, &ps, m->x);
  lfs_params_zero_grad(&m->g.params);
  lfs_graph_backward(&m->g, &ps, m->x, m->dy);
}

/* max |a - b| of two CPU buffers. */
static double cpu_spread(const float *a, const float *b, size_t n) {
  size_t at = 0;
  return parity_max_difference(a, b, n, &at);
}

void parity_check_model(parity_ctx *t, lfs_model_cfg cfg, int batch) {
  lfs_backend *cpu = t->cpu, *gpu = t->gpu;
  model_run c, g, p; /* CPU, GPU, and CPU from one-ulp-nudged inputs and parameters */
  build_on(&c, cpu, &cfg, batch);
  build_on(&g, gpu, &cfg, batch);
  build_on(&p, cpu, &cfg, batch);
  lfs_model_init_params(&c.g, &cfg, 5);
  const size_t np = c.g.params.count, nt = c.g.params.trainable_count;
  float *params = parity_host_of(cpu, c.g.params.data, np);
  const lfs_shape in = lfs_model_input_shape(&cfg, batch);
  const size_t nx = lfs_shape_count(in), ny = lfs_shape_count(lfs_graph_output_shape(&c.g));
  float *x = parity_random_floats(nx, -1, 1, 50), *dy = parity_random_floats(ny, -1, 1, 51);
  run_model(&c, cpu, params, np, x, dy, nx, ny);
  run_model(&g, gpu, params, np, x, dy, nx, ny);
  nudge(params, nt, 52), nudge(x, nx, 53);
  run_model(&p, cpu, params, np, x, dy, nx, ny);
  char what[96];
  snprintf(what, sizeof what, "%s forward (training mode)", cfg.arch);
  parity_expect_close_spread(t, what, c.y, g.y, ny, 1e-4, cpu_spread(c.y, p.y, ny));
  snprintf(what, sizeof what, "%s parameter gradients", cfg.arch);
  parity_expect_close_spread(t, what, c.g.params.grad, g.g.params.grad, nt, 1e-4,
                      cpu_spread(c.g.params.grad, p.g.params.grad, nt));
  snprintf(what, sizeof what, "%s BN running statistics", cfg.arch);
  parity_expect_close_spread(t, what, c.g.params.data + nt, g.g.params.data + nt, np - nt, 1e-5,
                      cpu_spread(c.g.params.data + nt, p.g.params.data + nt, np - nt));
  snprintf(what, sizeof what, "%s input gradient", cfg.arch);
  parity_expect_close_spread(t, what, c.g.dx, g.g.dx, nx, 1e-4, cpu_spread(c.g.dx, p.g.dx, nx));
  free(params), free(x), free(dy);
  model_run *runs[3] = {&c, &g, &p};
  for (int i = 0; i < 3; i++) {
    lfs_backend *be = runs[i]->g.be;
    be->ops->free(be, runs[i]->x), be->ops->free(be, runs[i]->dy);
    lfs_graph_free(&runs[i]->g);
  }
}
