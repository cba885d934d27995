/* cmd_info.c: `lfsearch info`: what this build contains and, with --devices,
 * which GPUs the CUDA runtime sees from every rank's node; `lfsearch info FILE...`
 * describes lfsearch HDF5 files (datasets, manifests, pair sets; run logs and
 * checkpoints through info_run.c);
 * `lfsearch info --model ARCH` prints a model's layer table, parameters and MACs. */
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "lfs/backend.h"
#include "lfs/checkpoint.h"
#include "lfs/dataset.h"
#include "lfs/devcomm.h"
#include "lfs/log.h"
#include "lfs/models.h"
#include "lfs/runlog.h"
#include "lfs/runtime.h"
#include "tools/commands.h"

enum { max_devices = 64 };

static void print_build(void) {
  lfs_info("%s", PACKAGE_STRING);
#ifdef HAVE_CUDA
  lfs_info("  CUDA backend : built (%s)", lfs_devices_runtime());
#else
  lfs_info("  CUDA backend : not built");
#endif
  lfs_info("  NCCL         : %s", lfs_nccl_describe());
  lfs_info("  GEMM         : %s", lfs_cpu_gemm_describe());
  lfs_info("  CPU kernels  : %s", lfs_cpu_isa_name());
  lfs_info("  HDF5         : %s", lfs_h5_library());
  lfs_info("  MPI ranks    : %d", lfs_world_size());
  lfs_info("  threads/rank : %d", lfs_get_threads());
}

/* Each rank lists what its node shows; rank 0 prints them in rank order. */
static void print_devices(void) {
  lfs_device_info devs[max_devices];
  char why[256] = "", line[4096] = "";
  char host[64] = "?";
  gethostname(host, sizeof host - 1);
  int n = lfs_devices_list(devs, max_devices, why, sizeof why);
  size_t off = 0;
  if (n == 0)
    off += snprintf(line, sizeof line, "%s: no GPUs found (%s)\n", host, why);
  for (int i = 0; i < n && off < sizeof line; i++)
    off += snprintf(line + off, sizeof line - off,
                    "%s: GPU %d: %s, compute capability %d.%d, %.1f GiB, %d SMs\n", host,
                    devs[i].ordinal, devs[i].name, devs[i].cc_major, devs[i].cc_minor,
                    devs[i].memory_gib, devs[i].multiprocessors);
  if (n > 0 && off < sizeof line)
    snprintf(line + off, sizeof line - off, "%s: node rank %d of %d: GPU %d\n", host,
             lfs_node_rank(), lfs_node_size(), lfs_node_rank() % n);
  int rank = lfs_world_rank(), size = lfs_world_size();
  if (rank != 0) {
    LFS_MPI_CHECK(MPI_Send(line, (int)sizeof line, MPI_CHAR, 0, 0, MPI_COMM_WORLD));
    return;
  }
  printf("[rank 0] %s", line);
  for (int r = 1; r < size; r++) {
    LFS_MPI_CHECK(MPI_Recv(line, (int)sizeof line, MPI_CHAR, r, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE));
    printf("[rank %d] %s", r, line);
  }
  fflush(stdout);
}

/* Labels are scanned in blocks so that a dataset of millions of images needs little memory. */
enum { label_block = 1 << 20 };

typedef struct {
  int32_t min, max;
} label_range;

/* Reads every label of images [first, first + count): widens *range, marks seen[label]. */
static void scan_labels(lfs_dataset *ds, int64_t first, int64_t count, int32_t *buf,
                        uint8_t *seen, label_range *range) {
  char err[1024];
  for (int64_t at = first; at < first + count; at += label_block) {
    int64_t n = first + count - at < label_block ? first + count - at : label_block;
    if (lfs_dataset_read(ds, at, n, NULL, buf, err, sizeof err) != 0) lfs_user_error("%s", err);
    for (int64_t i = 0; i < n; i++) {
      int32_t y = buf[i];
      seen[y >> 3] |= (uint8_t)(1u << (y & 7));
      if (y < range->min) range->min = y;
      if (y > range->max) range->max = y;
    }
  }
}

static int64_t count_bits(const uint8_t *bits, size_t bytes) {
  int64_t n = 0;
  for (size_t i = 0; i < bytes; i++) n += __builtin_popcount(bits[i]);
  return n;
}

static void describe_dataset(const char *path, const char *format) {
  char err[1024];
  lfs_dataset *ds = lfs_dataset_open(path, err, sizeof err);
  if (!ds) lfs_user_error("%s", err);
  int32_t k = lfs_dataset_classes(ds);
  size_t bytes = ((size_t)k + 7) / 8;
  uint8_t *seen = lfs_calloc(bytes, 1);
  int32_t *buf = lfs_malloc(sizeof(int32_t) * label_block);
  int nshards = lfs_dataset_shards(ds);
  label_range all = {INT32_MAX, -1}, *per = lfs_calloc((size_t)nshards, sizeof *per);
  int64_t first = 0;
  for (int i = 0; i < nshards; i++) {
    per[i] = (label_range){INT32_MAX, -1};
    scan_labels(ds, first, lfs_dataset_shard_count(ds, i), buf, seen, &per[i]);
    first += lfs_dataset_shard_count(ds, i);
    if (per[i].min < all.min) all.min = per[i].min;
    if (per[i].max > all.max) all.max = per[i].max;
  }
  lfs_info("%s", path);
  lfs_info("  format       : %s, version %d", format, LFS_DATA_FORMAT_VERSION);
  lfs_info("  images       : %lld", (long long)lfs_dataset_count(ds));
  lfs_info("  identities   : %d (num_classes), %lld with images", k, (long long)count_bits(seen, bytes));
  lfs_info("  image size   : %dx%d RGB uint8", lfs_dataset_height(ds), lfs_dataset_width(ds));
  if (all.max >= 0)
    lfs_info("  labels       : %d..%d", all.min, all.max);
  else
    lfs_info("  labels       : none");
  lfs_info("  chunk        : %d images", lfs_dataset_chunk(ds));
  lfs_info("  source       : %s", lfs_dataset_source(ds));
  lfs_info("  shards       : %d", nshards);
  if (!strcmp(format, LFS_MANIFEST_FORMAT))
    for (int i = 0; i < nshards; i++)
      lfs_info("    shard %d: %s: %lld images, labels %d..%d", i, lfs_dataset_shard_path(ds, i),
               (long long)lfs_dataset_shard_count(ds, i), per[i].min, per[i].max);
  free(per);
  free(buf);
  free(seen);
  lfs_dataset_close(ds);
}

static void describe_pairs(const char *path, const char *format) {
  char err[1024];
  lfs_pairset *ps = lfs_pairset_open(path, err, sizeof err);
  if (!ps) lfs_user_error("%s", err);
  int64_t n = lfs_pairset_count(ps), genuine = 0;
  uint8_t *same = lfs_malloc((size_t)n);
  if (lfs_pairset_issame(ps, 0, n, same, err, sizeof err) != 0) lfs_user_error("%s", err);
  for (int64_t i = 0; i < n; i++) genuine += same[i];
  lfs_info("%s", path);
  lfs_info("  format       : %s, version %d", format, LFS_DATA_FORMAT_VERSION);
  lfs_info("  name         : %s", lfs_pairset_name(ps));
  lfs_info("  pairs        : %lld (%lld genuine, %lld impostor)", (long long)n, (long long)genuine,
           (long long)(n - genuine));
  lfs_info("  images       : %lld", (long long)(2 * n));
  lfs_info("  image size   : %dx%d RGB uint8", lfs_pairset_height(ps), lfs_pairset_width(ps));
  free(same);
  lfs_pairset_close(ps);
}

static void describe_file(const char *path) {
  char format[128], err[1024];
  if (lfs_h5_format(path, format, sizeof format, err, sizeof err) != 0) lfs_user_error("%s", err);
  if (!strcmp(format, LFS_DATASET_FORMAT) || !strcmp(format, LFS_MANIFEST_FORMAT))
    describe_dataset(path, format);
  else if (!strcmp(format, LFS_PAIRS_FORMAT))
    describe_pairs(path, format);
  else if (!strcmp(format, LFS_RUNLOG_FORMAT))
    lfs_info_runlog(path);
  else if (!strcmp(format, LFS_CKPT_FORMAT))
    lfs_info_checkpoint(path);
  else
    lfs_user_error("%s: format \"%s\" is not one `lfsearch info` can describe (%s, %s, %s, %s, %s)",
                   path, format, LFS_DATASET_FORMAT, LFS_MANIFEST_FORMAT, LFS_PAIRS_FORMAT,
                   LFS_RUNLOG_FORMAT, LFS_CKPT_FORMAT);
}

/* ---- --model ---- */

/* 43590848 -> "43,590,848" */
static const char *with_commas(double value, char *buf, size_t len) {
  char digits[32];
  snprintf(digits, sizeof digits, "%.0f", value);
  size_t n = strlen(digits), at = 0;
  for (size_t i = 0; i < n && at + 2 < len; i++) {
    if (i > 0 && (n - i) % 3 == 0) buf[at++] = ',';
    buf[at++] = digits[i];
  }
  buf[at] = '\0';
  return buf;
}

static void print_line(const char *line, void *user) {
  (void)user;
  lfs_info("%s", line);
}

/* Builds the model for one image and prints its table and totals. */
static void describe_model(const lfs_model_cfg *cfg) {
  char err[512], a[32], b[32], c[32];
  lfs_graph g;
  lfs_graph_init(&g);
  if (lfs_model_build(&g, cfg, err, sizeof err) < 0) lfs_user_error("info --model: %s", err);
  const lfs_shape in = lfs_model_input_shape(cfg, 1);
  if (lfs_graph_build(&g, lfs_backend_cpu(), in, 0, err, sizeof err) != 0)
    lfs_user_error("info --model %s: %s", cfg->arch, err);
  const lfs_shape out = lfs_graph_output_shape(&g);
  lfs_info("model %s: input %dx%dx%d, embedding %d", cfg->arch, in.c, in.h, in.w, out.c);
  lfs_graph_print(&g, print_line, NULL);
  size_t frozen = 0, buffers = 0;
  for (int i = 0; i < g.params.nviews; i++) {
    if (g.params.views[i].kind == LFS_PARAM_FROZEN) frozen += g.params.views[i].count;
    if (g.params.views[i].kind == LFS_PARAM_BUFFER) buffers += g.params.views[i].count;
  }
  const size_t trainable = lfs_params_trainable(&g.params);
  /* insightface's published counts are all parameters, the frozen features gamma included */
  lfs_info("  parameters   : %s (%s trainable, %s frozen)",
           with_commas((double)(trainable + frozen), a, sizeof a),
           with_commas((double)trainable, b, sizeof b), with_commas((double)frozen, c, sizeof c));
  lfs_info("  buffers      : %s (batch-norm running statistics)",
           with_commas((double)buffers, a, sizeof a));
  const double macs = lfs_graph_macs(&g);
  lfs_info("  MACs/image   : %s forward multiply-adds (%.2f G; conv and linear %s)",
           with_commas(macs, a, sizeof a), macs * 1e-9,
           with_commas(lfs_graph_conv_linear_macs(&g), b, sizeof b));
  lfs_graph_free(&g);
}

static int takes_value(const char *arg) {
  return !strcmp(arg, "--model") || !strcmp(arg, "--embedding") || !strcmp(arg, "--input");
}

int lfs_cmd_info(int argc, char **argv) {
  int devices = 0, nfiles = 0;
  lfs_model_cfg model = {0};
  const char *sized = NULL; /* an option that needs --model */
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--devices")) {
      devices = 1;
    } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
      lfs_info("usage: lfsearch info [--devices] [FILE...]\n"
               "       lfsearch info --model ARCH [--embedding D] [--input S]\n"
               "  prints the build configuration; --devices lists the GPUs each rank can see;\n"
               "  FILE...: describes lfsearch datasets, manifests and pair sets;\n"
               "  --model: the layer table, parameter count and MACs per image of a model\n"
               "    (ARCH: %s; D default 512; S default 112, tiny: any multiple of 16)",
               LFS_MODEL_ARCHS);
      return 0;
    } else if (takes_value(argv[i])) {
      if (i + 1 >= argc) lfs_user_error("info: %s needs a value", argv[i]);
      const char *opt = argv[i], *value = argv[++i];
      if (!strcmp(opt, "--model")) {
        model.arch = value;
      } else {
        sized = opt;
        if (!strcmp(opt, "--embedding"))
          model.embedding = (int)lfs_cli_long(opt, value, 1, 65536);
        else
          model.input = (int)lfs_cli_long(opt, value, 16, 4096);
      }
    } else if (argv[i][0] == '-') {
      lfs_user_error("info: unknown option \"%s\" (usage: lfsearch info [--devices] [FILE...] "
                     "[--model ARCH])", argv[i]);
    } else {
      nfiles++;
    }
  }
  if (sized && !model.arch) lfs_user_error("info: %s needs --model ARCH", sized);
  if (nfiles == 0 && !model.arch) print_build();
  for (int i = 1; i < argc; i++) {
    if (takes_value(argv[i]))
      i++;
    else if (argv[i][0] != '-')
      describe_file(argv[i]);
  }
  if (model.arch) describe_model(&model);
  if (devices) print_devices();
  return 0;
}
