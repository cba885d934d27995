/* test_cuda_emulated.c: the CUDA backend's own code (src/backend/cuda: memory, kernels,
 * the margin head, and the convolutions' three paths), run on the host through the
 * emulation of tests/gpu/emu (cuda_emu.h and cudnn_emu.h say what it emulates and what it
 * cannot), against the CPU reference backend, on any machine: the cases and tolerances of
 * tests/gpu/test_cuda_parity.c (shared through parity_ops.c and parity_models.c): fill,
 * add, axpy, dropout, SGD, the copy queued behind other work, PReLU (dx and dalpha in one
 * pass, adding and setting a NaN-poisoned dx), linear's bias kernels, L2 normalisation (its
 * backward row by row), batch norm in eval mode, training mode and with a stand-in group
 * (the mean-1e4 case too), its gradient terms, apply and backward (adding and setting), the
 * margin head of every loss, its rows cut into parts (3,001 classes: 2 parts; 100,003: 97),
 * once with rows near a class, half of them their own (the parity test's accuracy is 0
 * throughout), convolutions at five geometries (plain, strided at an odd size, 1x1 with a
 * bias, depthwise, grouped) through each path LFS_CUDA_CONV selects (cuDNN's algorithms by
 * heuristics, by timing, any of them; im2col + cuBLAS; the graph API, which must run every
 * pass), and a training-mode forward and backward pass of the whole of tiny (with dropout)
 * and r18 on the default path. The emulated cuDNN offers forbidden algorithms and engines
 * (non-deterministic, tensor cores with TF32 off, down-converting, runtime-compiled, too
 * much workspace) as the fastest, so a wrong choice fails a comparison; the test also checks
 * that the deterministic paths repeat bit for bit, that "fastest" may not, and that TF32 on
 * reaches the tensor-core algorithms. Also checks that the per-channel kernels load and
 * store 16 bytes at a time exactly where the plane is a multiple of 4, that every launch is
 * followed by its error check, and that the results keep their bits when the blocks run in
 * reverse order and each block's threads in shuffled order. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emu/emu_backend.h"
#include "lfs/backend.h"
#include "lfs/runtime.h"
#include "parity_models.h"
#include "parity_ops.h"

static parity_ctx T; /* the CPU backend against the emulated one, within tolerances */

/* ---- which path the per-channel kernels took (parity_ctx's hooks) ---- */

static lfs_emu_counts path_mark;

static void path_begin(void) {
  T.gpu->ops->synchronize(T.gpu);
  path_mark = lfs_emu_counts_now();
}

/* Since path_begin: 16-byte loads (and stores, where `stores`) where `vec4`, none otherwise. */
static void expect_path(const char *what, int vec4, int stores) {
  T.gpu->ops->synchronize(T.gpu);
  const lfs_emu_counts now = lfs_emu_counts_now();
  const long loads = now.vec4_loads - path_mark.vec4_loads;
  const long stored = now.vec4_stores - path_mark.vec4_stores;
  const int ok = vec4 ? loads > 0 && (stored > 0) == (stores != 0) : loads == 0 && stored == 0;
  parity_count(&T, ok);
  printf("%-4s %-48s %s path: %ld 16-byte loads, %ld stores\n", ok ? "ok" : "FAIL", what,
         vec4 ? "float4" : "scalar", loads, stored);
}

/* The copy from page-locked memory runs in stream order, after the work before it, even
 * into the buffer that work wrote (the emulation's one stream; on a GPU the copy overlaps
 * the work since the previous upload_async, so parity_ops.c's case writes elsewhere). */
static void test_queued_upload(void) {
  lfs_backend *cpu = T.cpu, *gpu = T.gpu;
  const size_t n = 100003;
  parity_pair a = parity_make_pair(&T, n, -1, 1, 1), y = parity_make_pair(&T, n, 0, 0, 3);
  float *h = parity_random_floats(n, -1, 1, 39), *staging = gpu->ops->host_alloc(gpu, n);
  memcpy(staging, h, n * sizeof *h);
  cpu->ops->upload(cpu, y.c, h, n);
  cpu->ops->axpy(cpu, y.c, 2.0f, a.c, n);
  gpu->ops->fill(gpu, y.g, 1.0f, n);
  gpu->ops->upload_async(gpu, y.g, staging, n);
  gpu->ops->axpy(gpu, y.g, 2.0f, a.g, n);
  parity_check_pair(&T, "queued upload after a fill, then axpy", &y, 1e-7);
  gpu->ops->host_free(gpu, staging);
  free(h);
  parity_free_pair(&T, &a), parity_free_pair(&T, &y);
}

static float *device_random(size_t n, float lo, float hi, uint32_t stream) {
  float *h = parity_random_floats(n, lo, hi, stream), *p = parity_on(T.gpu, h, n);
  free(h);
  return p;
}

/* ---- convolutions: each path of cuda_conv.cu over the emulated cuDNN ---- */

/* One 3x3 convolution's forward, backward data (adding) and backward filter on the emulated
 * backend, from fixed inputs: the three outputs' host copy (*count values). */
static float *conv_run(size_t *count) {
  lfs_backend *gpu = T.gpu;
  lfs_conv_desc d = {.n = 4, .in_c = 16, .in_h = 14, .in_w = 14, .out_c = 32, .kh = 3, .kw = 3,
                     .stride = 1, .pad = 1, .groups = 1};
  lfs_conv_desc_init(&d);
  const size_t nx = (size_t)d.n * d.in_c * d.in_h * d.in_w;
  const size_t ny = (size_t)d.n * d.out_c * d.out_h * d.out_w, nw = (size_t)d.out_c * d.in_c * 9;
  *count = ny + nx + nw;
  float *x = device_random(nx, -1, 1, 80), *w = device_random(nw, -0.2f, 0.2f, 81);
  float *dy = device_random(ny, -1, 1, 82), *out = gpu->ops->alloc(gpu, *count);
  gpu->ops->conv2d_forward(gpu, &d, out, x, w, NULL);
  gpu->ops->conv2d_backward(gpu, &d, out + ny, LFS_GRAD_ADD, out + ny + nx, NULL, dy, x, w);
  float *result = parity_host_of(gpu, out, *count);
  float *all[] = {x, w, dy, out};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) gpu->ops->free(gpu, all[i]);
  return result;
}

/* Two runs of conv_run: the same bits where `deterministic`, else allowed to differ (and
 * expected to, the emulated non-deterministic algorithms adding in another order). */
static void expect_repeatable(const char *what, int deterministic) {
  size_t n = 0;
  float *a = conv_run(&n), *b = conv_run(&n);
  const int same = memcmp(a, b, n * sizeof(float)) == 0;
  parity_count(&T, same == deterministic);
  printf("%-4s %s: two runs %s\n", same == deterministic ? "ok" : "FAIL", what,
         same ? "give the same bits" : "differ in their bits");
  free(a), free(b);
}

/* With TF32 on, a convolution on tensor cores: off the CPU's float32 result by TF32's
 * rounding (1e-5 to 2e-3 of its scale), where the float32 paths stay within 2e-5. */
static void expect_tf32(const char *what) {
  lfs_backend *cpu = T.cpu, *gpu = T.gpu;
  lfs_conv_desc d = {.n = 2, .in_c = 32, .in_h = 9, .in_w = 9, .out_c = 16, .kh = 3, .kw = 3,
                     .stride = 1, .pad = 1, .groups = 1};
  lfs_conv_desc_init(&d);
  const size_t nx = (size_t)d.n * d.in_c * 81, ny = (size_t)d.n * d.out_c * 81;
  parity_pair x = parity_make_pair(&T, nx, -1, 1, 83);
  parity_pair w = parity_make_pair(&T, (size_t)d.out_c * d.in_c * 9, -0.2f, 0.2f, 84);
  parity_pair y = parity_make_pair(&T, ny, 0, 0, 85);
  lfs_emu_set_tf32(1);
  cpu->ops->conv2d_forward(cpu, &d, y.c, x.c, w.c, NULL);
  gpu->ops->conv2d_forward(gpu, &d, y.g, x.g, w.g, NULL);
  lfs_emu_set_tf32(0);
  float *c = parity_host_of(cpu, y.c, ny), *g = parity_host_of(gpu, y.g, ny);
  size_t at = 0;
  double scale = 1.0;
  for (size_t i = 0; i < ny; i++) scale = fmax(scale, fabs(c[i]));
  const double off = parity_max_difference(c, g, ny, &at) / scale;
  const int ok = off > 1e-5 && off < 2e-3;
  parity_count(&T, ok);
  printf("%-4s %s, TF32 on: %.2e of the scale off the float32 result\n", ok ? "ok" : "FAIL",
         what, off);
  free(c), free(g);
  parity_pair *all[] = {&x, &w, &y};
  for (size_t i = 0; i < 3; i++) parity_free_pair(&T, all[i]);
}

static void test_convolution_paths(void) {
  const lfs_emu_dnn_counts before = lfs_emu_dnn_counts_now();
  printf("-- convolutions through cuDNN's algorithms (heuristics)\n");
  lfs_emu_set_conv(0, 0, 0, 0);
  parity_test_convolutions(&T);
  expect_repeatable("heuristics' deterministic algorithms", 1);
  expect_tf32("heuristics' algorithms");
  printf("-- convolutions through cuDNN's algorithms (timed: LFS_CUDA_CONV=find)\n");
  lfs_emu_set_conv(0, 1, 0, 0);
  parity_test_convolutions(&T);
  expect_repeatable("timed deterministic algorithms", 1);
  printf("-- convolutions through any of cuDNN's algorithms (LFS_CUDA_CONV=fastest)\n");
  lfs_emu_set_conv(0, 1, 1, 0);
  parity_test_convolutions(&T);
  expect_repeatable("the fastest algorithms, non-deterministic ones among them", 0);
  printf("-- convolutions through im2col + cuBLAS (LFS_CUDA_CONV=gemm)\n");
  lfs_emu_set_conv(1, 0, 0, 0);
  parity_test_convolutions(&T);
  printf("-- convolutions through cuDNN's graph API (LFS_CUDA_CONV=graph)\n");
  lfs_emu_set_conv(0, 0, 0, 1);
  const int fallbacks = lfs_emu_graph_fallbacks();
  parity_test_convolutions(&T);
  expect_repeatable("graph API's deterministic engines", 1);
  expect_tf32("graph API's engines");
  const int missed = lfs_emu_graph_fallbacks() - fallbacks;
  const lfs_emu_dnn_counts now = lfs_emu_dnn_counts_now();
  const int ok = !missed && now.graph_plans > before.graph_plans &&
                 now.compiled_runs == before.compiled_runs &&
                 now.timed_searches > before.timed_searches;
  parity_count(&T, ok);
  printf("%-4s graph API ran every pass (%d fell back), %ld plans made, %ld runs of a "
         "runtime-compiled engine; %ld timed algorithm searches\n", ok ? "ok" : "FAIL", missed,
         now.graph_plans - before.graph_plans, now.compiled_runs - before.compiled_runs,
         now.timed_searches - before.timed_searches);
  lfs_emu_set_conv(0, 0, 0, 0);
}

/* ---- the emulation's own checks ---- */

/* PReLU's gradients, batch norm's statistics and a head step's gradients from fixed
 * inputs, as the emulation is scheduled now: their host copy, *count values. */
static float *schedule_run(size_t *count) {
  lfs_backend *gpu = T.gpu;
  enum { N = 32, C = 8, S = 1000, B = 12, D = 64, K = 3001 };
  const size_t nx = (size_t)N * C * S, nw = (size_t)K * D, nh = (size_t)B * D;
  *count = nx + 5 * C + nw + nh;
  float *x = device_random(nx, -2, 3, 70), *dy = device_random(nx, -1, 1, 71);
  float *alpha = device_random(C, 0, 0.5f, 72), *hx = device_random(nh, -1, 1, 73);
  float *w = device_random(nw, -0.05f, 0.05f, 74), *out = gpu->ops->alloc(gpu, *count);
  /* out: dx, then dalpha, mean, invstd, running mean and variance [C], then dw, head dx */
  float *dx = out, *per_channel = out + nx, *dw = per_channel + 5 * C, *hdx = dw + nw;
  gpu->ops->prelu_backward(gpu, N, C, S, dx, LFS_GRAD_SET, per_channel, dy, x, alpha);
  const lfs_bn_desc d = {.n = N, .c = C, .spatial = S};
  const lfs_bn_stats_cfg cfg = {.training = 1, .eps = 1e-5, .momentum = 0.1};
  gpu->ops->fill(gpu, per_channel + 4 * C, 1.0f, C);
  gpu->ops->batchnorm_stats(gpu, &d, &cfg, per_channel + C, per_channel + 2 * C,
                            per_channel + 3 * C, per_channel + 4 * C, x);
  int32_t *labels = parity_head_labels(B, K);
  const lfs_head_cfg head = parity_head_cfg(LFS_LOSS_ARCFACE);
  gpu->ops->head_loss(gpu, &head, B, D, K, hdx, dw, NULL, hx, w, labels);
  float *result = parity_host_of(gpu, out, *count);
  free(labels);
  float *all[] = {x, dy, alpha, hx, w, out};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) gpu->ops->free(gpu, all[i]);
  return result;
}

static void test_schedule_independence(void) {
  size_t n = 0;
  lfs_emu_set_schedule(0, 0);
  float *in_order = schedule_run(&n);
  lfs_emu_set_schedule(1, 1);
  float *shuffled = schedule_run(&n);
  const int ok = memcmp(in_order, shuffled, n * sizeof(float)) == 0;
  parity_count(&T, ok);
  printf("%-4s same bits with blocks reversed and threads shuffled (%zu values)\n",
         ok ? "ok" : "FAIL", n);
  free(in_order), free(shuffled);
}

static void test_launches_checked(void) {
  T.gpu->ops->synchronize(T.gpu);
  const lfs_emu_counts c = lfs_emu_counts_now();
  const int ok = c.unchecked_launches == 0 && c.kernels == c.launches;
  parity_count(&T, ok);
  printf("%-4s %ld launches, all checked (LFS_CUDA_LAUNCHED) and run: %ld unchecked, %ld run, "
         "%ld blocks\n", ok ? "ok" : "FAIL", c.launches, c.unchecked_launches, c.kernels,
         c.blocks);
}

int main(int argc, char **argv) {
  lfs_runtime_init(&argc, &argv);
  setvbuf(stdout, NULL, _IOLBF, 0); /* every line out before a fault can stop the program */
  T.cpu = lfs_backend_cpu();
  T.gpu = lfs_emu_backend();
  T.path_begin = path_begin, T.expect_path = expect_path;
  T.head_rows_near_class = 1;
  printf("the CUDA kernels on the host (tests/gpu/emu) against the CPU backend\n");
  parity_test_elementwise(&T);
  test_queued_upload();
  parity_test_prelu(&T);
  parity_test_linear(&T);
  parity_test_l2norm(&T);
  parity_test_batchnorm(&T);
  parity_test_head(&T);
  test_convolution_paths();
  lfs_model_cfg tiny = {.arch = "tiny", .embedding = 64, .input = 32, .dropout = 0.2f};
  parity_check_model(&T, tiny, 8);
  lfs_model_cfg r18 = {.arch = "r18", .embedding = 512, .input = 112};
  parity_check_model(&T, r18, 4);
  test_launches_checked();
  test_schedule_independence();
  printf("%d of %d checks passed\n", T.checks - T.failures, T.checks);
  lfs_runtime_finalize();
  return T.failures ? 1 : 0;
}
