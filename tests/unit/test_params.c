/* test_params.c: the flat parameter buffer and the graph around it: views are
 * ordered trainable / frozen / buffer, carry insightface's names and shapes,
 * tile the buffer without gaps; shape errors name the node; the demo network's
 * softmax cross-entropy gradient matches finite differences; SGD follows
 * PyTorch's update rule. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lfs/graph.h"
#include "lfs/loss.h"
#include "lfs/models.h"
#include "lfs/optim.h"
#include "testutil.h"

static void build_block(lfs_graph *g) {
  lfs_graph_init(g);
  lfs_iresnet_block(g, "layer1.0", LFS_GRAPH_INPUT, 16, 2, 1);
  char err[256];
  assert_int_equal(lfs_graph_build(g, lfs_backend_cpu(), (lfs_shape){2, 8, 8, 8}, 0, err, sizeof err), 0);
}

static void test_block_names_and_layout(void **state) {
  (void)state;
  lfs_graph g;
  build_block(&g);
  const char *expected[] = {"layer1.0.bn1.weight", "layer1.0.bn1.bias", "layer1.0.bn1.running_mean",
                            "layer1.0.bn1.running_var", "layer1.0.conv1.weight", "layer1.0.prelu.weight",
                            "layer1.0.conv2.weight", "layer1.0.downsample.0.weight",
                            "layer1.0.downsample.1.running_var"};
  for (size_t i = 0; i < sizeof expected / sizeof *expected; i++)
    assert_true(lfs_params_find(&g.params, expected[i]) >= 0);
  const lfs_param_view *w = lfs_params_view(&g.params, lfs_params_find(&g.params, "layer1.0.conv2.weight"));
  assert_int_equal(w->ndim, 4);
  assert_int_equal(w->dims[0], 16);
  assert_int_equal(w->dims[1], 16);
  assert_int_equal(w->dims[2], 3);
  /* views tile [0, count) without overlap, trainable ones first */
  char *covered = calloc(g.params.count, 1);
  size_t trainable = 0;
  for (int i = 0; i < g.params.nviews; i++) {
    const lfs_param_view *v = &g.params.views[i];
    for (size_t k = v->offset; k < v->offset + v->count; k++) covered[k]++;
    if (v->kind == LFS_PARAM_TRAINABLE) {
      trainable += v->count;
      assert_true(v->offset + v->count <= g.params.trainable_count);
    } else {
      assert_true(v->offset >= g.params.trainable_count);
    }
  }
  for (size_t k = 0; k < g.params.count; k++) assert_int_equal(covered[k], 1);
  assert_int_equal(trainable, g.params.trainable_count);
  /* bn 8: 2*8, conv1 16*8*9, bn2 2*16, prelu 16, conv2 16*16*9, bn3 2*16, ds conv 16*8, ds bn 2*16 */
  assert_int_equal(trainable, 16 + 1152 + 32 + 16 + 2304 + 32 + 128 + 32);
  free(covered);
  lfs_graph_free(&g);
}

static void test_frozen_gamma_is_not_trainable(void **state) {
  (void)state;
  lfs_graph g;
  lfs_graph_init(&g);
  lfs_graph_add(&g, lfs_batchnorm("features", 1e-5f, 0.1f, 1), LFS_GRAPH_INPUT, -1);
  char err[256];
  assert_int_equal(lfs_graph_build(&g, lfs_backend_cpu(), (lfs_shape){4, 6, 1, 1}, 0, err, sizeof err), 0);
  const lfs_param_view *gamma = lfs_params_view(&g.params, lfs_params_find(&g.params, "features.weight"));
  assert_int_equal(gamma->kind, LFS_PARAM_FROZEN);
  assert_int_equal(g.params.trainable_count, 6);
  assert_true(gamma->offset >= g.params.trainable_count);
  lfs_graph_free(&g);
}

static void test_shape_errors_name_the_node(void **state) {
  (void)state;
  lfs_graph g;
  lfs_graph_init(&g);
  int a = lfs_graph_add(&g, lfs_conv2d("conv_a", 4, 3, 1, 1, 1, 0), LFS_GRAPH_INPUT, -1);
  int b = lfs_graph_add(&g, lfs_conv2d("conv_b", 4, 3, 2, 1, 1, 0), LFS_GRAPH_INPUT, -1);
  lfs_graph_add(&g, lfs_add(), a, b);
  char err[256] = "";
  assert_int_equal(lfs_graph_build(&g, lfs_backend_cpu(), (lfs_shape){1, 2, 8, 8}, 0, err, sizeof err), -1);
  assert_non_null(strstr(err, "node 2"));
  assert_non_null(strstr(err, "1x4x8x8"));
  assert_non_null(strstr(err, "1x4x4x4"));
  lfs_graph_free(&g);

  lfs_graph_init(&g);
  lfs_graph_add(&g, lfs_conv2d("too_big", 4, 7, 1, 0, 1, 0), LFS_GRAPH_INPUT, -1);
  assert_int_equal(lfs_graph_build(&g, lfs_backend_cpu(), (lfs_shape){1, 2, 5, 5}, 0, err, sizeof err), -1);
  assert_non_null(strstr(err, "too_big"));
  lfs_graph_free(&g);
}

static double xent_double(int n, int k, const double *z, const int32_t *labels) {
  double total = 0.0;
  for (int i = 0; i < n; i++) {
    double m = z[i * k], s = 0.0;
    for (int j = 1; j < k; j++) m = fmax(m, z[i * k + j]);
    for (int j = 0; j < k; j++) s += exp(z[i * k + j] - m);
    total += m + log(s) - z[i * k + labels[i]];
  }
  return total / n;
}

static void test_softmax_xent_gradient(void **state) {
  (void)state;
  enum { n = 3, k = 5 };
  float z[n * k], dz[n * k];
  double zd[n * k], num[n * k];
  const int32_t labels[n] = {0, 4, 2};
  tu_fill_uniform(z, n * k, -30.0f, 30.0f, 5, 1); /* large logits: the max shift matters */
  for (int i = 0; i < n * k; i++) zd[i] = z[i];
  const double loss = lfs_softmax_xent(n, k, dz, z, labels, NULL);
  assert_true(fabs(loss - xent_double(n, k, zd, labels)) < 1e-4 * fmax(1.0, loss));
  for (int i = 0; i < n * k; i++) {
    const double h = 1e-5, keep = zd[i];
    zd[i] = keep + h;
    const double up = xent_double(n, k, zd, labels);
    zd[i] = keep - h;
    num[i] = (up - xent_double(n, k, zd, labels)) / (2 * h);
    zd[i] = keep;
  }
  assert_true(tu_check("softmax xent dlogits", dz, num, n * k, 1e-4));
}

static void test_sgd_matches_torch_rule(void **state) {
  (void)state;
  lfs_graph g;
  lfs_graph_init(&g);
  lfs_graph_add(&g, lfs_linear("fc", 3, 1), LFS_GRAPH_INPUT, -1);
  char err[256];
  assert_int_equal(lfs_graph_build(&g, lfs_backend_cpu(), (lfs_shape){1, 2, 1, 1}, 0, err, sizeof err), 0);
  const size_t n = g.params.trainable_count;
  double w[9], v[9] = {0};
  for (size_t i = 0; i < n; i++) w[i] = g.params.data[i] = 0.1f * (float)i - 0.3f;
  lfs_sgd opt;
  lfs_sgd_init(&opt, &g.params, 0.1f, 0.9f, 0.01f);
  for (int step = 0; step < 3; step++) {
    for (size_t i = 0; i < n; i++) g.params.grad[i] = (float)(step + 1) * 0.05f * (float)(i % 4);
    lfs_sgd_step(&opt, &g.params);
    for (size_t i = 0; i < n; i++) {
      v[i] = 0.9 * v[i] + (step + 1) * 0.05 * (double)(i % 4) + 0.01 * w[i];
      w[i] -= 0.1 * v[i];
    }
  }
  for (size_t i = 0; i < n; i++) assert_true(fabs(g.params.data[i] - w[i]) < 1e-6);
  lfs_sgd_free(&opt);
  lfs_graph_free(&g);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_block_names_and_layout),
      cmocka_unit_test(test_frozen_gamma_is_not_trainable),
      cmocka_unit_test(test_shape_errors_name_the_node),
      cmocka_unit_test(test_softmax_xent_gradient),
      cmocka_unit_test(test_sgd_matches_torch_rule),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
