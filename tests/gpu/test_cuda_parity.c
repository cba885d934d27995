/* test_cuda_parity.c: every op of the CUDA backend against the CPU reference
 * backend on the same inputs, then a whole training-mode forward and backward
 * pass of tiny (with dropout) and of r18 built on each backend with the same
 * parameters; convolutions through cuDNN, through im2col + cuBLAS and through
 * cuDNN's graph API; the margin head for every loss (also at 100,003 classes).
 * TF32 is off, so the GPU computes in float32 like the CPU and the tolerance
 * is one of float32 rounding, scaled by each output's magnitude: |gpu - cpu|
 * <= rtol * max(1, max |cpu|); for whole networks also up to ten times what
 * the CPU's own result moves when inputs and parameters change by one ulp (a
 * deep network's gradients are that sensitive to rounding: in PyTorch too,
 * r18's float32 and float64 gradients can differ by 4e-3 of their scale).
 * Dropout masks must match exactly (the same Philox stream). Batch norm's
 * statistics are checked alone and with a stand-in group sum (synchronised
 * BN's host round trip). Exits 77 (SKIP) where CUDA is not built or no GPU is
 * usable. With `--against cpu-staged` the same checks run against the CPU
 * kernels behind device memory, which tests the test (and the staging) on any
 * machine: there every difference must be 0. The kernels of cuda_channel.cu,
 * cuda_norm.cu, cuda_pointwise.cu and cuda_head.cu also run on the CPU, on any
 * machine, in tests/gpu/test_cuda_emulated, through the host emulation of
 * tests/gpu/emu, on this test's cases and tolerances: the op cases both run are
 * tests/gpu/parity_ops.c's. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lfs/backend.h"
#include "lfs/graph.h"
#include "lfs/models.h"
#include "lfs/params.h"
#include "lfs/philox.h"
#include "lfs/runtime.h"
#include "parity_ops.h"

static lfs_backend *cpu, *gpu;
static int on_cuda; /* 0 when checking the test itself against cpu-staged */
/* The shared op cases (parity_ops.c): exact (every difference 0) where !on_cuda. */
static parity_ctx T;

static void test_conv(lfs_conv_desc d, const char *what) {
  if (lfs_conv_desc_init(&d) != 0) {
    printf("FAIL bad geometry for %s\n", what);
    parity_count(&T, 0);
    return;
  }
  const size_t nx = (size_t)d.n * d.in_c * d.in_h * d.in_w, ny = (size_t)d.n * d.out_c * d.out_h * d.out_w;
  const size_t nw = (size_t)d.out_c * (d.in_c / d.groups) * d.kh * d.kw;
  parity_pair x = parity_make_pair(&T, nx, -1, 1, 40), w = parity_make_pair(&T, nw, -0.2f, 0.2f, 41);
  parity_pair b = parity_make_pair(&T, d.out_c, -1, 1, 42), y = parity_make_pair(&T, ny, 0, 0, 43);
  parity_pair dy = parity_make_pair(&T, ny, -1, 1, 44), dx = parity_make_pair(&T, nx, -1, 1, 45);
  parity_pair dw = parity_make_pair(&T, nw, -1, 1, 46), db = parity_make_pair(&T, d.out_c, -1, 1, 47);
  char name[128];
  cpu->ops->conv2d_forward(cpu, &d, y.c, x.c, w.c, d.has_bias ? b.c : NULL);
  gpu->ops->conv2d_forward(gpu, &d, y.g, x.g, w.g, d.has_bias ? b.g : NULL);
  snprintf(name, sizeof name, "conv %s forward", what);
  parity_check_pair(&T, name, &y, 2e-5);
  cpu->ops->conv2d_backward(cpu, &d, dx.c, LFS_GRAD_ADD, dw.c, d.has_bias ? db.c : NULL, dy.c, x.c,
                            w.c);
  gpu->ops->conv2d_backward(gpu, &d, dx.g, LFS_GRAD_ADD, dw.g, d.has_bias ? db.g : NULL, dy.g, x.g,
                            w.g);
  snprintf(name, sizeof name, "conv %s backward dx", what);
  parity_check_pair(&T, name, &dx, 2e-5);
  parity_poison(&T, &dx); /* dx alone, set */
  cpu->ops->conv2d_backward(cpu, &d, dx.c, LFS_GRAD_SET, NULL, NULL, dy.c, x.c, w.c);
  gpu->ops->conv2d_backward(gpu, &d, dx.g, LFS_GRAD_SET, NULL, NULL, dy.g, x.g, w.g);
  snprintf(name, sizeof name, "conv %s backward dx (sets)", what);
  parity_check_pair(&T, name, &dx, 2e-5);
  snprintf(name, sizeof name, "conv %s backward dw", what);
  parity_check_pair(&T, name, &dw, 2e-5);
  if (d.has_bias) {
    snprintf(name, sizeof name, "conv %s backward db", what);
    parity_check_pair(&T, name, &db, 1e-5);
  }
  parity_pair *all[] = {&x, &w, &b, &y, &dy, &dx, &dw, &db};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) parity_free_pair(&T, all[i]);
}

static void test_convolution_geometries(void);

/* cuDNN, im2col + cuBLAS, then cuDNN's graph API, each against the CPU; the
 * graph API must have run every pass itself (no legacy fallback). */
static void test_convolutions(void) {
  printf(on_cuda ? "-- convolutions through cuDNN\n" : "-- convolutions\n");
  test_convolution_geometries();
  if (!on_cuda) return;
  lfs_cuda_set_conv_gemm(gpu, 1);
  printf("-- convolutions through im2col + cuBLAS\n");
  test_convolution_geometries();
  lfs_cuda_set_conv_gemm(gpu, 0);
  lfs_cuda_set_conv_graph(gpu, 1);
  printf("-- convolutions through cuDNN's graph API\n");
  const int fallbacks = lfs_cuda_conv_graph_fallbacks(gpu);
  test_convolution_geometries();
  lfs_cuda_set_conv_graph(gpu, 0);
  const int missed = lfs_cuda_conv_graph_fallbacks(gpu) - fallbacks;
  parity_count(&T, !missed);
  if (missed) {
    printf("FAIL graph API: %d passes fell back to the legacy path (warnings above)\n", missed);
  } else {
    printf("ok   graph API ran every pass of every geometry\n");
  }
}

static void test_convolution_geometries(void) {
  test_conv((lfs_conv_desc){.n = 4, .in_c = 16, .in_h = 14, .in_w = 14, .out_c = 32, .kh = 3, .kw = 3,
                            .stride = 1, .pad = 1, .groups = 1},
            "3x3 s1 p1");
  test_conv((lfs_conv_desc){.n = 4, .in_c = 16, .in_h = 15, .in_w = 15, .out_c = 24, .kh = 3, .kw = 3,
                            .stride = 2, .pad = 1, .groups = 1},
            "3x3 s2 p1 (odd size)");
  test_conv((lfs_conv_desc){.n = 2, .in_c = 32, .in_h = 7, .in_w = 7, .out_c = 64, .kh = 1, .kw = 1,
                            .stride = 2, .pad = 0, .groups = 1, .has_bias = 1},
            "1x1 s2 + bias");
  test_conv((lfs_conv_desc){.n = 3, .in_c = 24, .in_h = 12, .in_w = 12, .out_c = 24, .kh = 3, .kw = 3,
                            .stride = 1, .pad = 1, .groups = 24},
            "3x3 depthwise");
  test_conv((lfs_conv_desc){.n = 2, .in_c = 16, .in_h = 9, .in_w = 9, .out_c = 32, .kh = 3, .kw = 3,
                            .stride = 1, .pad = 0, .groups = 4},
            "3x3 4 groups p0");
}

/* ---- whole models ---- */

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

static void check_model(lfs_model_cfg cfg, int batch) {
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
  parity_expect_close_spread(&T, what, c.y, g.y, ny, 1e-4, cpu_spread(c.y, p.y, ny));
  snprintf(what, sizeof what, "%s parameter gradients", cfg.arch);
  parity_expect_close_spread(&T, what, c.g.params.grad, g.g.params.grad, nt, 1e-4,
                      cpu_spread(c.g.params.grad, p.g.params.grad, nt));
  snprintf(what, sizeof what, "%s BN running statistics", cfg.arch);
  parity_expect_close_spread(&T, what, c.g.params.data + nt, g.g.params.data + nt, np - nt, 1e-5,
                      cpu_spread(c.g.params.data + nt, p.g.params.data + nt, np - nt));
  snprintf(what, sizeof what, "%s input gradient", cfg.arch);
  parity_expect_close_spread(&T, what, c.g.dx, g.g.dx, nx, 1e-4, cpu_spread(c.g.dx, p.g.dx, nx));
  free(params), free(x), free(dy);
  model_run *runs[3] = {&c, &g, &p};
  for (int i = 0; i < 3; i++) {
    lfs_backend *be = runs[i]->g.be;
    be->ops->free(be, runs[i]->x), be->ops->free(be, runs[i]->dy);
    lfs_graph_free(&runs[i]->g);
  }
}

int main(int argc, char **argv) {
  lfs_runtime_init(&argc, &argv);
  setvbuf(stdout, NULL, _IOLBF, 0); /* every line out before a fault can stop the program */
  char why[256] = "";
  cpu = lfs_backend_cpu();
  if (argc > 2 && !strcmp(argv[1], "--against") && !strcmp(argv[2], "cpu-staged")) {
    /* the test's own machinery on any machine: every check must hold exactly */
    gpu = lfs_backend_cpu_staged();
    printf("checking against cpu-staged (the CPU kernels behind device memory)\n");
  } else {
    gpu = lfs_backend_cuda(why, sizeof why);
    if (!gpu) {
      printf("SKIP: no CUDA backend (%s)\n", why);
      lfs_runtime_finalize();
      return 77;
    }
    on_cuda = 1;
    lfs_cuda_set_tf32(gpu, 0);
    printf("CUDA backend on GPU %d, TF32 off; %s\n", gpu->device, lfs_devices_runtime());
  }
  T.cpu = cpu, T.gpu = gpu, T.exact = !on_cuda;
  parity_test_elementwise(&T);
  parity_test_prelu(&T);
  parity_test_linear(&T);
  parity_test_l2norm(&T);
  parity_test_batchnorm(&T);
  test_convolutions();
  parity_test_head(&T);
  lfs_model_cfg tiny = {.arch = "tiny", .embedding = 64, .input = 32, .dropout = 0.2f};
  check_model(tiny, 8);
  lfs_model_cfg r18 = {.arch = "r18", .embedding = 512, .input = 112};
  check_model(r18, 4);
  printf("%d of %d checks passed\n", T.checks - T.failures, T.checks);
  lfs_runtime_finalize();
  return T.failures ? 1 : 0;
}
