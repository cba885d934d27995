/* test_cpu_isa.c: the CPU kernels built for each instruction set (baseline,
 * x86-64-v3, x86-64-v4; src/backend/cpu/cpu_backend.c) compute the same bits.
 * A whole training-mode forward and backward pass of tiny (with dropout) and of
 * MobileFaceNet (depthwise convolutions) runs under every build this CPU can
 * run; outputs, parameter gradients, BN statistics and the input gradient must
 * equal the baseline's byte for byte. The GEMM micro-kernel stays the same
 * throughout: only the kernel build changes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lfs/backend.h"
#include "lfs/graph.h"
#include "lfs/models.h"
#include "lfs/runtime.h"
#include "testutil.h"

static const char *const isa_names[] = {"baseline", "x86-64-v3", "x86-64-v4"};
enum { isa_count = sizeof isa_names / sizeof isa_names[0] };

typedef struct {
  float *y, *grad, *data, *dx;
  size_t ny, ngrad, ndata, ndx;
} pass_result;

static float *copy_floats(const float *src, size_t n) {
  float *dst = malloc(n * sizeof *dst);
  memcpy(dst, src, n * sizeof *dst);
  return dst;
}

/* One training-mode forward + backward of a fresh model under the current build. */
static pass_result run_pass(lfs_model_cfg cfg, int batch) {
  char err[512] = "";
  lfs_graph g;
  lfs_graph_init(&g);
  if (lfs_model_build(&g, &cfg, err, sizeof err) < 0) fail_msg("%s: %s", cfg.arch, err);
  const lfs_shape in = lfs_model_input_shape(&cfg, batch);
  if (lfs_graph_build(&g, lfs_backend_cpu(), in, 1, err, sizeof err) != 0)
    fail_msg("%s: %s", cfg.arch, err);
  lfs_model_init_params(&g, &cfg, 5);
  const size_t nx = lfs_shape_count(in), ny = lfs_shape_count(lfs_graph_output_shape(&g));
  float *x = malloc(nx * sizeof *x), *dy = malloc(ny * sizeof *dy);
  tu_fill_uniform(x, nx, -1.0f, 1.0f, 31, 1);
  tu_fill_uniform(dy, ny, -1.0f, 1.0f, 31, 2);
  lfs_pass ps = {.be = lfs_backend_cpu(), .params = &g.params, .training = 1, .seed = 7, .step = 3};
  pass_result r = {.ny = ny, .ngrad = g.params.trainable_count, .ndata = g.params.count, .ndx = nx};
  r.y = copy_floats(lfs_graph_forward(&g, &ps, x), ny);
  lfs_graph_backward(&g, &ps, x, dy);
  r.grad = copy_floats(g.params.grad, r.ngrad);
  r.data = copy_floats(g.params.data, r.ndata); /* BN running statistics moved in forward */
  r.dx = copy_floats(g.dx, nx);
  free(x), free(dy);
  lfs_graph_free(&g);
  return r;
}

static void free_result(pass_result *r) { free(r->y), free(r->grad), free(r->data), free(r->dx); }

static void check_model(lfs_model_cfg cfg, int batch) {
  assert_int_equal(lfs_cpu_isa_select("baseline"), 0);
  pass_result base = run_pass(cfg, batch);
  int compared = 0;
  for (int i = 1; i < isa_count; i++) {
    if (lfs_cpu_isa_select(isa_names[i]) != 0) continue; /* not built, or not this CPU */
    pass_result r = run_pass(cfg, batch);
    assert_memory_equal(r.y, base.y, base.ny * sizeof(float));
    assert_memory_equal(r.grad, base.grad, base.ngrad * sizeof(float));
    assert_memory_equal(r.data, base.data, base.ndata * sizeof(float));
    assert_memory_equal(r.dx, base.dx, base.ndx * sizeof(float));
    free_result(&r);
    compared++;
  }
  free_result(&base);
  lfs_cpu_isa_select(NULL);
  if (!compared) skip(); /* only the baseline runs here: nothing to compare */
}

static void test_tiny_same_bits(void **state) {
  (void)state;
  check_model((lfs_model_cfg){.arch = "tiny", .input = 32, .embedding = 64, .dropout = 0.2f}, 6);
}

static void test_mbf_same_bits(void **state) {
  (void)state;
  check_model((lfs_model_cfg){.arch = "mbf", .embedding = 128}, 2);
}

int main(void) {
  lfs_set_threads(2);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_tiny_same_bits),
      cmocka_unit_test(test_mbf_same_bits),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
