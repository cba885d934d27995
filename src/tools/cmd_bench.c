/* cmd_bench.c: `lfsearch bench`: times forward and backward (training mode) of
 * single layers and of an insightface iresnet block on the CPU backend, and
 * prints achieved GFLOP/s next to the OpenBLAS SGEMM rate measured in the same
 * run, for each requested thread count. Compute-bound layers report GFLOP/s
 * (backward counted as twice the forward's multiply-adds); memory-bound ones
 * report GB/s of activation traffic.
 * `--loader DATASET` instead times the training loader: images/s of each rank's
 * slice, synchronous (one core) and with the prefetch thread; rank 0 gathers. */
#include <cblas.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_internal.h"
#include "lfs/graph.h"
#include "lfs/loader.h"
#include "lfs/log.h"
#include "lfs/models.h"
#include "lfs/philox.h"
#include "lfs/runtime.h"
#include "lfs/timer.h"
#include "tools/commands.h"

typedef struct {
  int threads[8], nthreads;
  int reps, batch, batch_set, reps_set;
  const char *loader; /* --loader DATASET */
  const char *train;  /* --train MODEL */
  const char *device; /* --device cpu|cuda|cpu-staged (--train) */
  int size, classes;
  int steps, prefetch, shuffle, steps_set;
} bench_opts;

typedef enum { CASE_COMPUTE, CASE_MEMORY } case_kind;

static double best_of(double a, double b) { return a < b ? a : b; }

static void fill_random(float *x, size_t n, uint32_t tag) {
  const lfs_rng rng = lfs_rng_make(12345, LFS_RNG_TEST, tag, 0);
  for (size_t i = 0; i < n; i++) x[i] = 2.0f * lfs_rng_uniform(&rng, i) - 1.0f;
}

/* OpenBLAS's own controls (lfsearch keeps it at one thread, see gemm.c). */
extern void openblas_set_num_threads(int num_threads);

/* Best-of-reps rate of a square 1024 SGEMM in GFLOP/s: lfsearch's own (`own`,
 * the reference the layers are measured against) or OpenBLAS's threaded one. */
static double sgemm_rate(int reps, int threads, int own) {
  const int n = 1024;
  float *a = lfs_alloc_floats((size_t)n * n), *b = lfs_alloc_floats((size_t)n * n),
        *c = lfs_alloc_floats((size_t)n * n);
  fill_random(a, (size_t)n * n, 1);
  fill_random(b, (size_t)n * n, 2);
  double best = 1e30;
  openblas_set_num_threads(threads);
  for (int r = 0; r <= reps; r++) {
    double t0 = lfs_now();
    if (own)
      lfs_cpu_sgemm(0, 0, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
    else
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
    if (r > 0) best = best_of(best, lfs_now() - t0); /* r = 0 warms up */
  }
  openblas_set_num_threads(1);
  free(a), free(b), free(c);
  return 2.0 * n * n * (double)n / best * 1e-9;
}

typedef struct {
  const char *name;
  case_kind kind;
  lfs_shape input;
  void (*build)(lfs_graph *g);
} bench_case;

static void build_conv3(lfs_graph *g) { lfs_graph_add(g, lfs_conv2d("conv", 64, 3, 1, 1, 1, 0), LFS_GRAPH_INPUT, -1); }
static void build_conv3_s2(lfs_graph *g) { lfs_graph_add(g, lfs_conv2d("conv", 128, 3, 2, 1, 1, 0), LFS_GRAPH_INPUT, -1); }
static void build_conv1_s2(lfs_graph *g) { lfs_graph_add(g, lfs_conv2d("conv", 128, 1, 2, 0, 1, 0), LFS_GRAPH_INPUT, -1); }
static void build_depthwise(lfs_graph *g) { lfs_graph_add(g, lfs_conv2d("conv", 64, 3, 1, 1, 64, 0), LFS_GRAPH_INPUT, -1); }
static void build_bn(lfs_graph *g) { lfs_graph_add(g, lfs_batchnorm("bn", 1e-5f, 0.1f, 0), LFS_GRAPH_INPUT, -1); }
static void build_prelu(lfs_graph *g) { lfs_graph_add(g, lfs_prelu("prelu"), LFS_GRAPH_INPUT, -1); }
static void build_linear(lfs_graph *g) { lfs_graph_add(g, lfs_linear("fc", 512, 1), LFS_GRAPH_INPUT, -1); }
static void build_block(lfs_graph *g) { lfs_iresnet_block(g, "layer2.0", LFS_GRAPH_INPUT, 128, 2, 1); }

static const bench_case cases[] = {
    {"conv3x3 64->64 s1", CASE_COMPUTE, {0, 64, 56, 56}, build_conv3},
    {"conv3x3 64->128 s2", CASE_COMPUTE, {0, 64, 56, 56}, build_conv3_s2},
    {"conv1x1 64->128 s2", CASE_COMPUTE, {0, 64, 56, 56}, build_conv1_s2},
    {"depthwise3x3 64 s1", CASE_COMPUTE, {0, 64, 56, 56}, build_depthwise},
    {"batchnorm2d 64", CASE_MEMORY, {0, 64, 56, 56}, build_bn},
    {"prelu 64", CASE_MEMORY, {0, 64, 56, 56}, build_prelu},
    {"linear 25088->512", CASE_COMPUTE, {0, 512, 7, 7}, build_linear},
    {"iresnet block 64->128 s2", CASE_COMPUTE, {0, 64, 56, 56}, build_block},
};
enum { case_count = sizeof cases / sizeof cases[0] };

static void time_case(const bench_case *c, const bench_opts *o, double gemm_rate) {
  lfs_graph g;
  lfs_graph_init(&g);
  c->build(&g);
  lfs_shape in = c->input;
  in.n = o->batch;
  char err[256];
  if (lfs_graph_build(&g, lfs_backend_cpu(), in, 1, err, sizeof err) != 0) lfs_fatal("%s", err);
  lfs_graph_init_params(&g, 7);
  float *x = lfs_alloc_floats(lfs_shape_count(in));
  const size_t nout = lfs_shape_count(lfs_graph_output_shape(&g));
  float *dy = lfs_alloc_floats(nout);
  fill_random(x, lfs_shape_count(in), 3);
  fill_random(dy, nout, 4);
  lfs_pass ps = {.be = g.be, .params = &g.params, .training = 1, .seed = 1, .step = 0};
  double fwd = 1e30, bwd = 1e30;
  for (int r = 0; r <= o->reps; r++) {
    double t0 = lfs_now();
    lfs_graph_forward(&g, &ps, x);
    double t1 = lfs_now();
    lfs_graph_backward(&g, &ps, x, dy);
    double t2 = lfs_now();
    if (r == 0) continue; /* warm-up: workspace allocation, page faults */
    fwd = best_of(fwd, t1 - t0);
    bwd = best_of(bwd, t2 - t1);
  }
  const double macs = lfs_graph_macs(&g);
  if (c->kind == CASE_COMPUTE) {
    const double fwd_gf = 2 * macs / fwd * 1e-9, all_gf = 6 * macs / (fwd + bwd) * 1e-9;
    lfs_info("  %-26s %9.3f %9.3f %10.1f %10.1f %7.0f%%", c->name, fwd * 1e3, bwd * 1e3, fwd_gf,
             all_gf, 100.0 * all_gf / gemm_rate);
  } else {
    /* forward reads x, writes y; backward reads x, dy and writes dx: 5 tensors */
    const double bytes = 5.0 * lfs_shape_count(in) * sizeof(float);
    lfs_info("  %-26s %9.3f %9.3f %21.1f GB/s", c->name, fwd * 1e3, bwd * 1e3, bytes / (fwd + bwd) * 1e-9);
  }
  free(x), free(dy);
  lfs_graph_free(&g);
}

static void parse_threads(bench_opts *o, const char *list) {
  char buf[128];
  snprintf(buf, sizeof buf, "%s", list);
  o->nthreads = 0;
  for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
    if (o->nthreads == 8) lfs_user_error("bench: at most 8 thread counts in --threads");
    o->threads[o->nthreads++] = (int)lfs_cli_long("--threads", tok, 1, 1024);
  }
}

/* ---- --loader: the training loader -------------------------------------------------- */

/* Images/s of this rank's slice over o->steps batches, after one untimed pass
 * over the same batches (it pages the file in and warms the caches). */
static double time_loader(const bench_opts *o, int global_batch, int prefetch) {
  char err[1024];
  const lfs_loader_cfg cfg = {.path = o->loader, .global_batch = global_batch,
                              .rank = lfs_world_rank(), .ranks = lfs_world_size(), .seed = 1,
                              .shuffle = o->shuffle, .flip = 1, .prefetch = prefetch};
  lfs_loader *l = lfs_loader_open(&cfg, err, sizeof err);
  if (!l) lfs_user_error("bench: %s", err);
  const int local = lfs_loader_local_batch(l);
  float *images = lfs_alloc_floats((size_t)local * 3 * lfs_loader_height(l) * lfs_loader_width(l));
  int32_t *labels = lfs_malloc((size_t)local * sizeof *labels);
  double t0 = 0.0;
  for (int pass = 0; pass < 2; pass++) {
    lfs_loader_seek(l, 0, 0);
    LFS_MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
    t0 = lfs_now();
    for (int s = 0; s < o->steps; s++)
      if (lfs_loader_next(l, images, labels, NULL, NULL, NULL, err, sizeof err) != 0)
        lfs_user_error_local("bench: %s", err);
  }
  const double rate = (double)o->steps * local / (lfs_now() - t0);
  free(images), free(labels);
  lfs_loader_close(l);
  return rate;
}

static void describe_loader(const bench_opts *o, int global_batch) {
  char err[1024];
  const lfs_loader_cfg cfg = {.path = o->loader, .global_batch = global_batch,
                              .rank = lfs_world_rank(), .ranks = lfs_world_size(), .seed = 1,
                              .shuffle = o->shuffle};
  lfs_loader *l = lfs_loader_open(&cfg, err, sizeof err);
  if (!l) lfs_user_error("bench: %s", err);
  char window[32];
  if (o->shuffle)
    snprintf(window, sizeof window, "%d images", o->shuffle);
  else
    snprintf(window, sizeof window, "16 chunks");
  lfs_info("loader %s: %dx%d images, global batch %d over %d ranks (local %d), %lld steps/epoch;\n"
           "timing %d batches per rank after an untimed pass over them; shuffle window %s, flip on",
           o->loader, lfs_loader_height(l), lfs_loader_width(l), global_batch, lfs_world_size(),
           lfs_loader_local_batch(l), (long long)lfs_loader_steps_per_epoch(l), o->steps, window);
  lfs_loader_close(l);
}

static int bench_loader(const bench_opts *o) {
  const int ranks = lfs_world_size(), rank = lfs_world_rank();
  const int global_batch = o->batch_set ? o->batch : 128 * ranks;
  if (global_batch % ranks != 0)
    lfs_user_error("bench: --batch %d (the global batch) is not a multiple of %d ranks",
                   global_batch, ranks);
  lfs_set_threads(o->threads[0]);
  describe_loader(o, global_batch);
  lfs_info("  %-22s %5s %12s %10s", "mode", "rank", "images/s", "ms/batch");
  const int depths[2] = {0, o->prefetch};
  for (int m = 0; m < 2; m++) {
    const double rate = time_loader(o, global_batch, depths[m]);
    double *rates = rank == 0 ? lfs_malloc((size_t)ranks * sizeof *rates) : NULL;
    LFS_MPI_CHECK(MPI_Gather(&rate, 1, MPI_DOUBLE, rates, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD));
    char mode[32];
    if (m == 0)
      snprintf(mode, sizeof mode, "synchronous");
    else
      snprintf(mode, sizeof mode, "prefetch %d", depths[m]);
    for (int r = 0; rank == 0 && r < ranks; r++)
      lfs_info("  %-22s %5d %12.1f %10.3f", mode, r, rates[r],
               global_batch / ranks / rates[r] * 1e3);
    free(rates);
  }
  return 0;
}

/* ---- options --------------------------------------------------------------------------- */

static void parse_bench(bench_opts *o, int argc, char **argv) {
  *o = (bench_opts){.threads = {1, 2}, .nthreads = 2, .reps = 5, .batch = 8, .steps = 100,
                    .prefetch = 2};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      lfs_info("usage: lfsearch bench [--threads 1,2] [--reps 5] [--batch 8]\n"
               "  times forward+backward of single layers and an iresnet block (CPU backend)\n"
               "  and prints GFLOP/s beside the SGEMM rate measured in the same run\n"
               "usage: lfsearch bench --loader DATASET [--batch B] [--steps 100] [--prefetch 2]\n"
               "                      [--shuffle IMAGES]\n"
               "  times the training loader: images/s of each rank's slice of global batches\n"
               "  of B (default 128 per rank), read synchronously on the calling thread (one\n"
               "  core) and through the prefetch thread; run under mpiexec for several ranks\n"
               "usage: lfsearch bench --train MODEL [--size S] [--batch B] [--classes 1000]\n"
               "                      [--threads 1,2] [--steps 5] [--reps 3] [--device cpu|cuda]\n"
               "  images/s of whole training steps (forward, ArcFace head, backward, all-reduce,\n"
               "  SGD) on random input; B is the global batch (default 64), S the input side\n"
               "  (default 112, 32 for tiny); bench/compare_pytorch.sh runs PyTorch beside it");
      exit(0);
    } else if (!strcmp(a, "--threads")) {
      parse_threads(o, v ? v : ""), i++;
    } else if (!strcmp(a, "--reps")) {
      o->reps = (int)lfs_cli_long(a, v, 1, 1000), o->reps_set = 1, i++;
    } else if (!strcmp(a, "--batch")) {
      o->batch = (int)lfs_cli_long(a, v, 1, 1 << 20), o->batch_set = 1, i++;
    } else if (!strcmp(a, "--loader")) {
      if (!v || !*v) lfs_user_error("bench: --loader needs a dataset file");
      o->loader = v, i++;
    } else if (!strcmp(a, "--train")) {
      if (!v || !*v) lfs_user_error("bench: --train needs a model name (tiny, r18, mbf, ...)");
      o->train = v, i++;
    } else if (!strcmp(a, "--size")) {
      o->size = (int)lfs_cli_long(a, v, 8, 1024), i++;
    } else if (!strcmp(a, "--classes")) {
      o->classes = (int)lfs_cli_long(a, v, 1, 100000000), i++;
    } else if (!strcmp(a, "--steps")) {
      o->steps = (int)lfs_cli_long(a, v, 1, 1000000), o->steps_set = 1, i++;
    } else if (!strcmp(a, "--prefetch")) {
      o->prefetch = (int)lfs_cli_long(a, v, 1, 64), i++;
    } else if (!strcmp(a, "--device")) {
      if (!v || !*v) lfs_user_error("bench: --device needs cpu, cuda or cpu-staged");
      o->device = v, i++;
    } else if (!strcmp(a, "--shuffle")) {
      o->shuffle = (int)lfs_cli_long(a, v, 1, 1 << 30), i++;
    } else {
      lfs_user_error("bench: unknown option \"%s\" (see `lfsearch bench --help`)", a);
    }
  }
}

static int bench_train(const bench_opts *o) {
  lfs_bench_train_opts t = {.model = o->train, .batch = o->batch_set ? o->batch : 64,
                            .classes = o->classes ? o->classes : 1000,
                            .size = o->size ? o->size : (strcmp(o->train, "tiny") ? 112 : 32),
                            .steps = o->steps_set ? o->steps : 5, .reps = o->reps_set ? o->reps : 3,
                            .nthreads = o->nthreads, .device = o->device};
  memcpy(t.threads, o->threads, sizeof t.threads);
  return lfs_bench_train(&t);
}

int lfs_cmd_bench(int argc, char **argv) {
  bench_opts o;
  parse_bench(&o, argc, argv);
  if (o.loader) return bench_loader(&o);
  if (o.train) return bench_train(&o);
  if (o.batch > 4096)
    lfs_user_error("bench: --batch %d is above 4096 for the layer benchmark", o.batch);
  for (int t = 0; t < o.nthreads; t++) {
    lfs_set_threads(o.threads[t]);
    const double gemm = sgemm_rate(o.reps, o.threads[t], 1);
    const double blas = sgemm_rate(o.reps, o.threads[t], 0);
    lfs_info("threads %d, batch %d, best of %d; SGEMM 1024^3: lfsearch (%s kernel) %.1f GFLOP/s,\n"
             "  %s %.1f GFLOP/s",
             o.threads[t], o.batch, o.reps, lfs_cpu_sgemm_kernel_name(), gemm,
             lfs_cpu_blas_describe(), blas);
    lfs_info("  %-26s %9s %9s %10s %10s %8s", "case", "fwd ms", "bwd ms", "fwd GF/s", "f+b GF/s",
             "of SGEMM");
    for (int c = 0; c < case_count; c++) time_case(&cases[c], &o, gemm);
  }
  return 0;
}
