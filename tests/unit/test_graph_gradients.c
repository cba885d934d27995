/* test_graph_gradients.c: how the graph writes activation gradients
 * (src/nn/graph.c's plan_gradient_writes). Setting a gradient in its only
 * writer and sharing a residual add's gradient with its inputs must give the
 * same bits as zeroing every gradient and adding to it (LFS_GRAD_SET=0), for
 * real models and for a graph where sharing would be wrong. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lfs/graph.h"
#include "lfs/models.h"
#include "testutil.h"

/* arch's gradients (parameters and input) after one training pass, with
 * gradients set by their only writers and shared with residual adds (the
 * default) or all zeroed and added to (LFS_GRAD_SET=0); *set counts the node
 * gradients set outright, *shared those shared. */
static void gradients(const char *arch, int size, const char *grad_set, float **grad, size_t *n,
                      float **dx, size_t *nx, int *set, int *shared) {
  enum { batch = 2 };
  lfs_model_cfg cfg = {.arch = arch, .input = size, .embedding = 64, .dropout = 0.2f};
  lfs_graph g;
  char err[512] = "";
  lfs_graph_init(&g);
  assert_true(lfs_model_build(&g, &cfg, err, sizeof err) >= 0);
  if (grad_set) setenv("LFS_GRAD_SET", grad_set, 1);
  const lfs_shape in = lfs_model_input_shape(&cfg, batch);
  assert_int_equal(lfs_graph_build(&g, lfs_backend_cpu(), in, 1, err, sizeof err), 0);
  unsetenv("LFS_GRAD_SET");
  lfs_model_init_params(&g, &cfg, 5);
  *set = g.dx_set, *shared = 0;
  for (int i = 0; i < g.count; i++) *set += g.nodes[i].dy_set, *shared += g.nodes[i].dy_shared;
  assert_false(g.nodes[g.count - 1].dy_set); /* the output's gradient is seeded by adding */
  float *x = malloc(sizeof(float) * lfs_shape_count(in));
  float r[batch * 64];
  tu_fill_uniform(x, lfs_shape_count(in), -1.0f, 1.0f, 31, 0);
  tu_fill_uniform(r, batch * 64, -1.0f, 1.0f, 32, 0);
  lfs_pass ps = {.be = lfs_backend_cpu(), .params = &g.params, .training = 1, .seed = 3};
  lfs_graph_forward(&g, &ps, x);
  lfs_params_zero_grad(&g.params);
  lfs_graph_backward(&g, &ps, x, r);
  *n = g.params.count, *nx = lfs_shape_count(in);
  *grad = malloc(sizeof(float) * *n), *dx = malloc(sizeof(float) * *nx);
  memcpy(*grad, g.params.grad, sizeof(float) * *n);
  memcpy(*dx, g.dx, sizeof(float) * *nx);
  free(x);
  lfs_graph_free(&g);
}

/* Setting a gradient in its only writer, or sharing a residual add's, instead
 * of zeroing it and adding gives the same bits, for residual blocks (r18),
 * depthwise convolutions and a flatten that aliases its input (mbf), and
 * dropout (tiny). */
static void test_gradients_set_or_added(void **state) {
  (void)state;
  const struct {
    const char *arch;
    int size;
  } models[] = {{"tiny", 16}, {"r18", 112}, {"mbf", 112}};
  for (size_t m = 0; m < sizeof models / sizeof *models; m++) {
    float *g_set, *g_add, *dx_set, *dx_add;
    size_t n, n2, nx, nx2;
    int set = 0, shared = 0, none = 0, none_shared = 0;
    gradients(models[m].arch, models[m].size, NULL, &g_set, &n, &dx_set, &nx, &set, &shared);
    gradients(models[m].arch, models[m].size, "0", &g_add, &n2, &dx_add, &nx2, &none,
              &none_shared);
    printf("%s: %d node gradients set outright, %d shared with a residual add\n",
           models[m].arch, set, shared);
    assert_true(set > 0 && shared > 0);
    assert_int_equal(none + none_shared, 0);
    assert_true(n == n2 && nx == nx2);
    assert_memory_equal(g_set, g_add, sizeof(float) * n);
    assert_memory_equal(dx_set, dx_add, sizeof(float) * nx);
    free(g_set), free(g_add), free(dx_set), free(dx_add);
  }
}

/* A graph where a residual add's input is also read by a node after the add:
 *   0 conv(x)   1 bn(0)   2 add(1, 0)   3 prelu(0)   4 add(2, 3)
 * node 3's gradient reaches node 0 before node 2's sharers have read node 2's,
 * so node 0 must keep its own buffer (node 1, 2 and 3, read by one add each,
 * share). Its gradients (parameters, then input) after one pass. */
static float *late_reader_gradients(const char *grad_set, size_t *n, int shared[5]) {
  enum { batch = 2, c = 3, hw = 6 };
  lfs_graph g;
  char err[256] = "";
  lfs_graph_init(&g);
  lfs_graph_add(&g, lfs_conv2d("conv", c, 3, 1, 1, 1, 0), LFS_GRAPH_INPUT, -1);
  lfs_graph_add(&g, lfs_batchnorm("bn", 1e-5f, 0.1f, 0), 0, -1);
  lfs_graph_add(&g, lfs_add(), 1, 0);
  lfs_graph_add(&g, lfs_prelu("prelu"), 0, -1);
  lfs_graph_add(&g, lfs_add(), 2, 3);
  if (grad_set) setenv("LFS_GRAD_SET", grad_set, 1);
  const lfs_shape in = {.n = batch, .c = c, .h = hw, .w = hw};
  assert_int_equal(lfs_graph_build(&g, lfs_backend_cpu(), in, 1, err, sizeof err), 0);
  unsetenv("LFS_GRAD_SET");
  lfs_graph_init_params(&g, 7);
  for (int i = 0; i < 5; i++) shared[i] = g.nodes[i].dy_shared;
  const size_t count = lfs_shape_count(in);
  float *x = malloc(sizeof(float) * count), *r = malloc(sizeof(float) * count);
  tu_fill_uniform(x, count, -1.0f, 1.0f, 41, 0);
  tu_fill_uniform(r, count, -1.0f, 1.0f, 42, 0);
  lfs_pass ps = {.be = lfs_backend_cpu(), .params = &g.params, .training = 1, .seed = 3};
  lfs_graph_forward(&g, &ps, x);
  lfs_params_zero_grad(&g.params);
  lfs_graph_backward(&g, &ps, x, r);
  *n = g.params.count + count;
  float *out = malloc(sizeof(float) * *n);
  memcpy(out, g.params.grad, sizeof(float) * g.params.count);
  memcpy(out + g.params.count, g.dx, sizeof(float) * count);
  free(x), free(r);
  lfs_graph_free(&g);
  return out;
}

static void test_shared_gradients_respect_order(void **state) {
  (void)state;
  size_t n = 0, n0 = 0;
  int shared[5], none[5];
  float *with = late_reader_gradients(NULL, &n, shared);
  float *without = late_reader_gradients("0", &n0, none);
  assert_int_equal(shared[0], 0); /* read again after the add */
  assert_true(shared[1] && shared[2] && shared[3]);
  assert_int_equal(none[0] + none[1] + none[2] + none[3] + none[4], 0);
  assert_true(n == n0);
  assert_memory_equal(with, without, sizeof(float) * n);
  free(with), free(without);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_gradients_set_or_added),
      cmocka_unit_test(test_shared_gradients_respect_order),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
