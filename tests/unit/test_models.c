/* test_models.c: the model builders against the peers' PyTorch definitions
 * (insightface iresnet, arcface_torch mbf): parameter counts, state-dict names and
 * shapes, tensor counts, MACs against a hand computation and PyTorch's conv/linear
 * count, the initialisation's statistics and determinism, configuration errors,
 * and a training-mode forward/backward of `tiny` checked by finite differences.
 *
 * The PyTorch numbers were counted on the peers' module definitions (torch 1.13):
 * sum(p.numel() for p in model.parameters()) is insightface's published count and
 * includes the frozen features.weight (D values); the trainable count is D less.
 * Set LFS_TEST_BIG=1 to also build r200 (about 1.4 GB). */
#include <math.h>
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

enum { frozen_d = 512 };

typedef struct {
  size_t trainable, frozen, buffers;
  int tensors; /* views: parameters and buffers = state-dict entries less num_batches_tracked */
} counts;

static counts count_params(const lfs_graph *g) {
  counts c = {0, 0, 0, g->params.nviews};
  for (int i = 0; i < g->params.nviews; i++) {
    const lfs_param_view *v = &g->params.views[i];
    if (v->kind == LFS_PARAM_TRAINABLE) c.trainable += v->count;
    if (v->kind == LFS_PARAM_FROZEN) c.frozen += v->count;
    if (v->kind == LFS_PARAM_BUFFER) c.buffers += v->count;
  }
  return c;
}

/* Builds the model for `batch` images; fails the test with the message on error. */
static void build(lfs_graph *g, lfs_model_cfg cfg, int batch) {
  char err[512] = "";
  lfs_graph_init(g);
  int out = lfs_model_build(g, &cfg, err, sizeof err);
  if (out < 0) fail_msg("%s: %s", cfg.arch, err);
  assert_int_equal(out, g->count - 1);
  if (lfs_graph_build(g, lfs_backend_cpu(), lfs_model_input_shape(&cfg, batch), 0, err, sizeof err) != 0)
    fail_msg("%s: %s", cfg.arch, err);
}

static const lfs_param_view *view(const lfs_graph *g, const char *name) {
  int h = lfs_params_find(&g->params, name);
  if (h < 0) fail_msg("no parameter %s", name);
  return lfs_params_view(&g->params, h);
}

static void expect_dims(const lfs_graph *g, const char *name, int ndim, int d0, int d1, int d2, int d3) {
  const lfs_param_view *v = view(g, name);
  const int want[4] = {d0, d1, d2, d3};
  assert_int_equal(v->ndim, ndim);
  for (int i = 0; i < ndim; i++)
    if (v->dims[i] != want[i]) fail_msg("%s: dim %d is %d, expected %d", name, i, v->dims[i], want[i]);
}

/* ---- parameter counts ---- */

typedef struct {
  const char *arch;
  size_t params; /* insightface's count: all parameters, frozen features.weight included */
  int tensors;
} iresnet_ref;

static void check_iresnet_count(const iresnet_ref *r) {
  lfs_graph g;
  build(&g, (lfs_model_cfg){.arch = r->arch}, 1);
  counts c = count_params(&g);
  printf("%-5s parameters %zu, trainable %zu, frozen %zu, tensors %d\n", r->arch,
         c.trainable + c.frozen, c.trainable, c.frozen, c.tensors);
  assert_int_equal(c.trainable + c.frozen, r->params);
  assert_int_equal(c.frozen, frozen_d);
  assert_int_equal(c.trainable, r->params - frozen_d);
  assert_int_equal(lfs_params_trainable(&g.params), r->params - frozen_d);
  assert_int_equal(c.tensors, r->tensors);
  assert_int_equal(view(&g, "features.weight")->kind, LFS_PARAM_FROZEN);
  lfs_graph_free(&g);
}

static void test_iresnet_parameter_counts(void **state) {
  (void)state;
  static const iresnet_ref refs[] = {
      {"r18", 24025600, 156},
      {"r34", 34139328, 276},
      {"r50", 43590848, 396},
      {"r100", 65156160, 771},
  };
  for (size_t i = 0; i < sizeof refs / sizeof *refs; i++) check_iresnet_count(&refs[i]);
}

/* r200's layer list is checked without allocating it; its count only on request. */
static void test_r200(void **state) {
  (void)state;
  lfs_graph g;
  lfs_graph_init(&g);
  char err[256];
  lfs_model_cfg cfg = {.arch = "r200"};
  assert_true(lfs_model_build(&g, &cfg, err, sizeof err) >= 0);
  int blocks[4] = {0}, conv = 0;
  for (int i = 0; i < g.count; i++) {
    int s, b;
    char leaf[32];
    if (sscanf(g.nodes[i].layer.name, "layer%d.%d.%31s", &s, &b, leaf) == 3 && !strcmp(leaf, "conv1"))
      blocks[s - 1]++;
    conv += !strcmp(g.nodes[i].layer.kind->kind, "conv2d");
  }
  assert_int_equal(blocks[0], 6);
  assert_int_equal(blocks[1], 26);
  assert_int_equal(blocks[2], 60);
  assert_int_equal(blocks[3], 6);
  assert_int_equal(conv, 1 + 2 * 98 + 4);
  lfs_graph_free(&g);
  if (!getenv("LFS_TEST_BIG")) return;
  check_iresnet_count(&(iresnet_ref){"r200", 118833920, 1506});
}

static void test_mbf_parameter_counts(void **state) {
  (void)state;
  /* arcface_torch's MobileFaceNet: every parameter trainable (its BN1d learns gamma) */
  static const struct {
    lfs_model_cfg cfg;
    size_t trainable;
    int tensors;
  } refs[] = {
      {{.arch = "mbf"}, 2059520, 283},
      {{.arch = "mbf", .embedding = 128}, 1862144, 283},
      {{.arch = "mbf_large"}, 6314880, 515},
  };
  for (size_t i = 0; i < sizeof refs / sizeof *refs; i++) {
    lfs_graph g;
    build(&g, refs[i].cfg, 1);
    counts c = count_params(&g);
    printf("%-9s D=%d trainable %zu, frozen %zu, tensors %d\n", refs[i].cfg.arch,
           refs[i].cfg.embedding ? refs[i].cfg.embedding : 512, c.trainable, c.frozen, c.tensors);
    assert_int_equal(c.trainable, refs[i].trainable);
    assert_int_equal(c.frozen, 0);
    assert_int_equal(c.tensors, refs[i].tensors);
    const int d = refs[i].cfg.embedding ? refs[i].cfg.embedding : 512;
    assert_true(lfs_shape_equal(lfs_graph_output_shape(&g), (lfs_shape){1, d, 1, 1}));
    lfs_graph_free(&g);
  }
}

static void test_tiny_parameter_counts(void **state) {
  (void)state;
  /* the fc reads 128 * (S/16)^2 features */
  static const struct { int s; size_t params; } refs[] = {{32, 572272}, {64, 1358704}};
  for (size_t i = 0; i < 2; i++) {
    lfs_graph g;
    build(&g, (lfs_model_cfg){.arch = "tiny", .input = refs[i].s}, 2);
    counts c = count_params(&g);
    assert_int_equal(c.trainable + c.frozen, refs[i].params);
    assert_int_equal(c.tensors, 96);
    expect_dims(&g, "fc.weight", 2, 512, 128 * (refs[i].s / 16) * (refs[i].s / 16), 0, 0);
    lfs_graph_free(&g);
  }
}

/* ---- names and shapes ---- */

static void test_iresnet_state_dict_names(void **state) {
  (void)state;
  lfs_graph g;
  build(&g, (lfs_model_cfg){.arch = "r18", .embedding = 256}, 1);
  expect_dims(&g, "conv1.weight", 4, 64, 3, 3, 3);
  expect_dims(&g, "bn1.running_var", 1, 64, 0, 0, 0);
  expect_dims(&g, "prelu.weight", 1, 64, 0, 0, 0);
  expect_dims(&g, "layer1.0.bn1.weight", 1, 64, 0, 0, 0);
  expect_dims(&g, "layer1.0.downsample.0.weight", 4, 64, 64, 1, 1);
  expect_dims(&g, "layer2.0.downsample.0.weight", 4, 128, 64, 1, 1);
  expect_dims(&g, "layer2.0.conv1.weight", 4, 128, 64, 3, 3);
  expect_dims(&g, "layer4.1.conv2.weight", 4, 512, 512, 3, 3);
  expect_dims(&g, "layer4.1.bn3.bias", 1, 512, 0, 0, 0);
  expect_dims(&g, "bn2.running_mean", 1, 512, 0, 0, 0);
  expect_dims(&g, "fc.weight", 2, 256, 512 * 7 * 7, 0, 0);
  expect_dims(&g, "fc.bias", 1, 256, 0, 0, 0);
  expect_dims(&g, "features.weight", 1, 256, 0, 0, 0);
  expect_dims(&g, "features.running_var", 1, 256, 0, 0, 0);
  assert_int_equal(view(&g, "layer3.1.bn1.running_var")->kind, LFS_PARAM_BUFFER);
  /* only a stage's first block has a shortcut; r18 has two blocks a stage */
  assert_int_equal(lfs_params_find(&g.params, "layer1.1.downsample.0.weight"), -1);
  assert_int_equal(lfs_params_find(&g.params, "layer4.2.bn1.weight"), -1);
  assert_true(lfs_shape_equal(lfs_graph_output_shape(&g), (lfs_shape){1, 256, 1, 1}));
  lfs_graph_free(&g);
}

static void test_mbf_state_dict_names(void **state) {
  (void)state;
  lfs_graph g;
  build(&g, (lfs_model_cfg){.arch = "mbf"}, 1);
  expect_dims(&g, "layers.0.layers.0.weight", 4, 128, 3, 3, 3);
  expect_dims(&g, "layers.0.layers.2.weight", 1, 128, 0, 0, 0);
  expect_dims(&g, "layers.1.layers.0.weight", 4, 128, 2, 3, 3); /* groups = 64 */
  expect_dims(&g, "layers.2.layers.0.layers.0.weight", 4, 128, 128, 1, 1);
  expect_dims(&g, "layers.2.layers.1.layers.0.weight", 4, 128, 1, 3, 3);
  expect_dims(&g, "layers.2.layers.2.layers.1.running_var", 1, 128, 0, 0, 0);
  expect_dims(&g, "layers.3.layers.3.layers.1.layers.2.weight", 1, 128, 0, 0, 0);
  expect_dims(&g, "layers.4.layers.0.layers.0.weight", 4, 256, 128, 1, 1);
  expect_dims(&g, "layers.5.layers.5.layers.2.layers.0.weight", 4, 256, 256, 1, 1);
  expect_dims(&g, "layers.6.layers.1.layers.0.weight", 4, 512, 1, 3, 3);
  expect_dims(&g, "layers.6.layers.2.layers.0.weight", 4, 256, 512, 1, 1);
  expect_dims(&g, "layers.7.layers.1.layers.0.layers.0.weight", 4, 256, 256, 1, 1);
  expect_dims(&g, "conv_sep.layers.0.weight", 4, 512, 256, 1, 1);
  expect_dims(&g, "conv_sep.layers.2.weight", 1, 512, 0, 0, 0);
  expect_dims(&g, "features.layers.0.layers.0.weight", 4, 512, 1, 7, 7);
  expect_dims(&g, "features.layers.0.layers.1.bias", 1, 512, 0, 0, 0);
  expect_dims(&g, "features.layers.2.weight", 2, 512, 512, 0, 0);
  expect_dims(&g, "features.layers.3.running_mean", 1, 512, 0, 0, 0);
  assert_int_equal(view(&g, "features.layers.3.weight")->kind, LFS_PARAM_TRAINABLE);
  assert_int_equal(lfs_params_find(&g.params, "features.layers.2.bias"), -1);
  assert_int_equal(lfs_params_find(&g.params, "layers.3.layers.4.layers.0.layers.0.weight"), -1);
  assert_int_equal(lfs_params_find(&g.params, "layers.8.layers.0.weight"), -1);
  /* the spatial size halves four times: the GDC sees 7x7 */
  for (int i = 0; i < g.count; i++)
    if (!strcmp(g.nodes[i].layer.name, "features.layers.0.layers.0")) {
      assert_int_equal(g.nodes[i].layer.in[0].h, 7);
      assert_int_equal(g.nodes[i].layer.out.h, 1);
    }
  lfs_graph_free(&g);
}

/* ---- MACs ---- */

/* Multiply-adds of an iresnet's convolutions and fc for one S x S image, by hand. */
static double iresnet_macs_by_hand(int s, const int widths[4], const int depths[4], int d) {
  double m = (double)s * s * widths[0] * 3 * 9; /* stem */
  int c = widths[0];
  for (int st = 0; st < 4; st++) {
    const int p = widths[st], in = s;
    s /= 2;
    m += (double)in * in * p * c * 9;  /* first block's conv1 at the input size */
    m += (double)s * s * p * p * 9;    /* its conv2, stride 2 */
    m += (double)s * s * p * c;        /* its 1x1 shortcut, stride 2 */
    m += (depths[st] - 1) * 2.0 * s * s * p * p * 9;
    c = p;
  }
  return m + (double)c * s * s * d;
}

static void test_macs(void **state) {
  (void)state;
  const int widths[4] = {64, 128, 256, 512}, r50[4] = {3, 4, 14, 3};
  const double hand = iresnet_macs_by_hand(112, widths, r50, 512);
  assert_true(hand == 6309330944.0); /* also what PyTorch hooks on Conv2d/Linear count */
  lfs_graph g;
  build(&g, (lfs_model_cfg){.arch = "r50"}, 1);
  const double convs = lfs_graph_conv_linear_macs(&g), total = lfs_graph_macs(&g);
  printf("r50: conv+linear MACs %.0f, all layers %.0f\n", convs, total);
  assert_true(convs == hand);
  /* BN (2 per element), PReLU and the residual adds add a third of a percent */
  assert_true(total > convs * 1.002 && total < convs * 1.01);
  lfs_graph_free(&g);

  /* batch scales MACs linearly; other archs against PyTorch's conv/linear count */
  static const struct { const char *arch; int batch; double macs; } refs[] = {
      {"r18", 2, 2609954816.0}, {"mbf", 1, 437520896.0}};
  for (size_t i = 0; i < 2; i++) {
    build(&g, (lfs_model_cfg){.arch = refs[i].arch}, refs[i].batch);
    printf("%s: conv+linear MACs per image %.0f\n", refs[i].arch, lfs_graph_conv_linear_macs(&g) / refs[i].batch);
    assert_true(lfs_graph_conv_linear_macs(&g) == refs[i].macs * refs[i].batch);
    lfs_graph_free(&g);
  }
}

/* ---- initialisation ---- */

typedef struct { double mean, std, absmax; size_t n; } stats;

static stats stats_of(const float *x, size_t n) {
  double s = 0.0, s2 = 0.0, mx = 0.0;
  for (size_t i = 0; i < n; i++) {
    s += x[i];
    s2 += (double)x[i] * x[i];
    mx = fmax(mx, fabs(x[i]));
  }
  const double mean = s / (double)n;
  return (stats){mean, sqrt(s2 / (double)n - mean * mean), mx, n};
}

static const float *data_of(const lfs_graph *g, const char *name) {
  return lfs_params_data(&g->params, lfs_params_find(&g->params, name));
}

static int all_equal(const float *x, size_t n, float v) {
  for (size_t i = 0; i < n; i++)
    if (x[i] != v) return 0;
  return 1;
}

static void test_iresnet_init(void **state) {
  (void)state;
  lfs_graph g;
  lfs_model_cfg cfg = {.arch = "tiny", .input = 32};
  build(&g, cfg, 2);
  lfs_model_init_params(&g, &cfg, 7);
  /* every conv tensor together: N(0, 0.1) */
  float *all = malloc(sizeof(float) * g.params.count);
  size_t n = 0;
  for (int i = 0; i < g.params.nviews; i++) {
    const lfs_param_view *v = &g.params.views[i];
    if (v->ndim != 4) continue;
    memcpy(all + n, g.params.data + v->offset, sizeof(float) * v->count);
    n += v->count;
    stats one = stats_of(g.params.data + v->offset, v->count);
    if (v->count >= 4096 && fabs(one.std - 0.1) > 0.005) fail_msg("%s: std %g", v->name, one.std);
  }
  stats conv = stats_of(all, n);
  printf("tiny conv weights: %zu values, mean %.5f, std %.5f\n", n, conv.mean, conv.std);
  assert_true(n > 300000);
  assert_true(fabs(conv.mean) < 1e-3);
  assert_true(fabs(conv.std - 0.1) < 1e-3);
  /* fc: PyTorch's nn.Linear default, U(-b, b) with b = 1/sqrt(fan_in) for weight and bias */
  const lfs_param_view *fcw = view(&g, "fc.weight");
  const double bound = 1.0 / sqrt(512.0);
  stats w = stats_of(data_of(&g, "fc.weight"), fcw->count), b = stats_of(data_of(&g, "fc.bias"), 512);
  printf("tiny fc weight: std %.6f (uniform bound %.6f: std %.6f), max %.6f\n", w.std, bound,
         bound / sqrt(3.0), w.absmax);
  assert_true(w.absmax <= bound && w.absmax > 0.99 * bound);
  assert_true(fabs(w.std - bound / sqrt(3.0)) < 0.01 * bound);
  assert_true(b.absmax <= bound && b.std > 0.4 * bound);
  /* BN 1/0 with running 0/1, the frozen features gamma 1, PReLU 0.25 */
  assert_true(all_equal(data_of(&g, "bn1.weight"), 16, 1.0f));
  assert_true(all_equal(data_of(&g, "layer2.0.bn3.bias"), 32, 0.0f));
  assert_true(all_equal(data_of(&g, "layer4.0.downsample.1.running_var"), 128, 1.0f));
  assert_true(all_equal(data_of(&g, "bn2.running_mean"), 128, 0.0f));
  assert_true(all_equal(data_of(&g, "features.weight"), 512, 1.0f));
  assert_true(all_equal(data_of(&g, "features.bias"), 512, 0.0f));
  assert_true(all_equal(data_of(&g, "layer3.0.prelu.weight"), 64, 0.25f));

  /* deterministic in the seed, and different for another seed */
  lfs_graph h;
  build(&h, cfg, 1);
  lfs_model_init_params(&h, &cfg, 7);
  assert_int_equal(h.params.count, g.params.count);
  assert_memory_equal(h.params.data, g.params.data, sizeof(float) * g.params.count);
  lfs_model_init_params(&h, &cfg, 8);
  assert_memory_not_equal(h.params.data, g.params.data, sizeof(float) * view(&g, "conv1.weight")->count);
  /* distinct tensors draw distinct streams */
  assert_memory_not_equal(data_of(&g, "layer4.0.conv1.weight"), data_of(&g, "layer4.0.conv2.weight"),
                          sizeof(float) * 64);
  free(all);
  lfs_graph_free(&h);
  lfs_graph_free(&g);
}

static void test_mbf_init(void **state) {
  (void)state;
  lfs_graph g;
  lfs_model_cfg cfg = {.arch = "mbf"};
  build(&g, cfg, 1);
  lfs_model_init_params(&g, &cfg, 3);
  /* kaiming_normal(fan_out): std sqrt(2 / (out * k * k)), groups not divided out */
  static const struct { const char *name; double fan_out; } w[] = {
      {"layers.5.layers.0.layers.0.layers.0.weight", 256.0},
      {"layers.6.layers.2.layers.0.weight", 256.0},
      {"features.layers.0.layers.0.weight", 512.0 * 49},
      {"features.layers.2.weight", 512.0},
  };
  for (size_t i = 0; i < sizeof w / sizeof *w; i++) {
    const lfs_param_view *v = view(&g, w[i].name);
    stats s = stats_of(data_of(&g, w[i].name), v->count);
    const double want = sqrt(2.0 / w[i].fan_out);
    printf("mbf %s: std %.5f, expected %.5f\n", w[i].name, s.std, want);
    assert_true(fabs(s.std - want) < 0.03 * want);
    assert_true(fabs(s.mean) < 0.03 * want);
  }
  assert_true(all_equal(data_of(&g, "features.layers.3.weight"), 512, 1.0f));
  assert_true(all_equal(data_of(&g, "conv_sep.layers.2.weight"), 512, 0.25f));
  lfs_graph_free(&g);
}

/* ---- errors ---- */

static void expect_error(lfs_model_cfg cfg, const char *a, const char *b) {
  lfs_graph g;
  lfs_graph_init(&g);
  char err[512] = "";
  assert_int_equal(lfs_model_build(&g, &cfg, err, sizeof err), -1);
  if (!strstr(err, a) || (b && !strstr(err, b)))
    fail_msg("message \"%s\" lacks \"%s\" or \"%s\"", err, a, b ? b : "");
  assert_int_equal(g.count, 0);
  lfs_graph_free(&g);
}

static void test_bad_configurations(void **state) {
  (void)state;
  expect_error((lfs_model_cfg){.arch = "r99"}, "\"r99\"", "tiny, r18, r34, r50, r100, r200, mbf");
  expect_error((lfs_model_cfg){.arch = NULL}, "unknown model architecture", NULL);
  expect_error((lfs_model_cfg){.arch = "r50", .input = 96}, "r50", "input size 96");
  expect_error((lfs_model_cfg){.arch = "mbf", .input = 128}, "mbf", "input size 128");
  expect_error((lfs_model_cfg){.arch = "tiny", .input = 40}, "tiny", "input size 40");
  expect_error((lfs_model_cfg){.arch = "tiny", .input = -16}, "tiny", "input size -16");
  expect_error((lfs_model_cfg){.arch = "r18", .embedding = -1}, "embedding size -1", NULL);
  expect_error((lfs_model_cfg){.arch = "r18", .dropout = 1.0f}, "dropout 1", NULL);
  expect_error((lfs_model_cfg){.arch = "r18", .dropout = NAN}, "dropout", NULL);
  expect_error((lfs_model_cfg){.arch = "mbf", .mbf_blocks = {1, 0, 6, 2}}, "stage 2 block count 0",
               NULL);
  assert_int_equal(lfs_model_is_iresnet("tiny"), 1);
  assert_int_equal(lfs_model_is_iresnet("mbf"), 0);
  assert_int_equal(lfs_model_is_iresnet("vgg"), -1);
}

/* ---- tiny: forward, backward ---- */

static int dropout_nodes(const lfs_graph *g) {
  int n = 0;
  for (int i = 0; i < g->count; i++) n += !strcmp(g->nodes[i].layer.kind->kind, "dropout");
  return n;
}

static void test_dropout_option(void **state) {
  (void)state;
  lfs_graph g;
  build(&g, (lfs_model_cfg){.arch = "tiny", .input = 16}, 1);
  assert_int_equal(dropout_nodes(&g), 0);
  lfs_graph_free(&g);
  build(&g, (lfs_model_cfg){.arch = "tiny", .input = 16, .dropout = 0.4f}, 1);
  assert_int_equal(dropout_nodes(&g), 1);
  /* between the flatten and the fc, as in insightface */
  for (int i = 0; i < g.count; i++)
    if (!strcmp(g.nodes[i].layer.kind->kind, "dropout")) {
      assert_string_equal(g.nodes[i - 1].layer.kind->kind, "flatten");
      assert_string_equal(g.nodes[i + 1].layer.name, "fc");
    }
  lfs_graph_free(&g);
}

/* sum(r * f(x)) for the current parameters, training mode, in double */
static double weighted_output(lfs_graph *g, const lfs_pass *ps, const float *x, const float *r,
                              size_t n) {
  const float *y = lfs_graph_forward(g, ps, x);
  double s = 0.0;
  for (size_t i = 0; i < n; i++) s += (double)r[i] * y[i];
  return s;
}

static void check_tiny_runs(int size) {
  enum { batch = 4, d = 64 };
  lfs_graph g;
  lfs_model_cfg cfg = {.arch = "tiny", .input = size, .embedding = d};
  build(&g, cfg, batch);
  lfs_model_init_params(&g, &cfg, 11);
  const lfs_shape in = lfs_model_input_shape(&cfg, batch);
  assert_true(lfs_shape_equal(in, (lfs_shape){batch, 3, size, size}));
  float *x = malloc(sizeof(float) * lfs_shape_count(in)), r[batch * d];
  tu_fill_uniform(x, lfs_shape_count(in), -1.0f, 1.0f, 21, (uint32_t)size);
  tu_fill_uniform(r, batch * d, -1.0f, 1.0f, 22, (uint32_t)size);
  lfs_pass ps = {.be = lfs_backend_cpu(), .params = &g.params, .training = 1, .seed = 1};

  /* training-mode features BN: every feature has batch mean 0 and variance 1 */
  const float *y = lfs_graph_forward(&g, &ps, x);
  assert_true(lfs_shape_equal(lfs_graph_output_shape(&g), (lfs_shape){batch, d, 1, 1}));
  for (int j = 0; j < d; j++) {
    double m = 0.0, v = 0.0;
    for (int i = 0; i < batch; i++) m += y[i * d + j] / (double)batch;
    for (int i = 0; i < batch; i++) v += (y[i * d + j] - m) * (y[i * d + j] - m) / batch;
    assert_true(fabs(m) < 1e-4);
    assert_true(fabs(v - 1.0) < 1e-2);
  }

  /* backward of sum(r * y) against a central difference along a random direction */
  lfs_params_zero_grad(&g.params);
  lfs_graph_backward(&g, &ps, x, r);
  const size_t n = g.params.trainable_count;
  float *dir = malloc(sizeof(float) * n), *keep = malloc(sizeof(float) * n);
  tu_fill_uniform(dir, n, -1.0f, 1.0f, 23, (uint32_t)size);
  memcpy(keep, g.params.data, sizeof(float) * n);
  double analytic = 0.0;
  for (size_t i = 0; i < n; i++) analytic += (double)g.params.grad[i] * dir[i];
  /* h small, as PReLU kinks and the 4-image BN make the error first order in h;
   * float rounding then limits agreement to about 1% (2% seen over 12 seeds) */
  const double h = 1e-5;
  double f[2];
  for (int k = 0; k < 2; k++) {
    for (size_t i = 0; i < n; i++) g.params.data[i] = keep[i] + (float)((k ? -h : h) * dir[i]);
    f[k] = weighted_output(&g, &ps, x, r, (size_t)batch * d);
  }
  memcpy(g.params.data, keep, sizeof(float) * n);
  const double numeric = (f[0] - f[1]) / (2 * h);
  printf("tiny %dx%d: directional derivative analytic %.5f, numeric %.5f\n", size, size, analytic,
         numeric);
  assert_true(fabs(analytic) > 1.0);
  assert_true(fabs(analytic - numeric) < 0.05 * fabs(analytic));
  /* the frozen gamma never receives a gradient */
  const lfs_param_view *fw = view(&g, "features.weight");
  assert_true(all_equal(g.params.grad + fw->offset, fw->count, 0.0f));
  free(dir);
  free(keep);
  free(x);
  lfs_graph_free(&g);
}

static void test_tiny_forward_backward(void **state) {
  (void)state;
  check_tiny_runs(32);
  check_tiny_runs(64);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_iresnet_parameter_counts),
      cmocka_unit_test(test_r200),
      cmocka_unit_test(test_mbf_parameter_counts),
      cmocka_unit_test(test_tiny_parameter_counts),
      cmocka_unit_test(test_iresnet_state_dict_names),
      cmocka_unit_test(test_mbf_state_dict_names),
      cmocka_unit_test(test_macs),
      cmocka_unit_test(test_iresnet_init),
      cmocka_unit_test(test_mbf_init),
      cmocka_unit_test(test_bad_configurations),
      cmocka_unit_test(test_dropout_option),
      cmocka_unit_test(test_tiny_forward_backward),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
