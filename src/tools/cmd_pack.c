/* cmd_pack.c: `lfsearch pack`: converts insightface rec/idx, verification .bin
 * files, image folders and list files to lfsearch HDF5 (the work is in
 * src/data/pack.c; this file parses options, draws progress and prints the
 * summary). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lfs/log.h"
#include "lfs/pack.h"
#include "lfs/runtime.h"
#include "tools/commands.h"
#include "tools/progress.h"

static const char usage_text[] =
    "usage: lfsearch pack --from rec|bin|folder|list INPUT --out OUT.h5 [options]\n"
    "  rec     insightface train.rec (train.idx and `property` beside it are used when present;\n"
    "          record 0 may be insightface's header record)\n"
    "  bin     insightface verification file (lfw.bin, cfp_fp.bin, ...): writes a pair set\n"
    "  folder  one sub-folder per identity (sorted names give labels 0, 1, ...), JPEG or PNG\n"
    "  list    text file of \"path label\" lines (paths relative to the list's folder)\n"
    "Images must be aligned face crops of one size (as insightface distributes them): they are\n"
    "stored as they are, and images of another size are an error unless --size or --skip-bad.\n"
    "options:\n"
    "  --size S         resize every image to S x S (bilinear)\n"
    "  --shard-size N   images per shard (default 100000); more images than that give\n"
    "                   OUT-00000.h5, OUT-00001.h5, ... and OUT.h5 as their manifest\n"
    "  --threads N      decoding threads (default: the cores, at most 16)\n"
    "  --skip-bad       skip and count corrupt or truncated records/images (default: stop)\n"
    "  --seed X         key of the pre-shuffled output order (default 0)\n"
    "  --name NAME      pair-set name for bin input (default: the file name, e.g. lfw)\n"
    "  --quiet          no progress bar\n"
    "A bad record or image is reported with its index and byte offset; without --skip-bad the\n"
    "conversion stops with exit code 2 and leaves no output file behind.";

static void on_progress(void *ctx, int64_t done, int64_t total) {
  lfs_progress *p = ctx;
  if (p->total != (total > 0 ? total : 1)) lfs_progress_start(p, "images", total);
  lfs_progress_update(p, done);
}

static const char *value(int argc, char **argv, int *i) {
  if (*i + 1 >= argc) lfs_user_error("pack: %s needs a value (see `lfsearch pack --help`)", argv[*i]);
  return argv[++*i];
}

static lfs_pack_kind parse_kind(const char *s) {
  static const char *const names[] = {"rec", "bin", "folder", "list"};
  for (int k = 0; k < 4; k++)
    if (!strcmp(s, names[k])) return (lfs_pack_kind)k;
  lfs_user_error("pack: --from \"%s\" is not one of rec, bin, folder, list", s);
}

static int default_threads(void) {
  const long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n < 1 ? 1 : n > 16 ? 16 : (int)n;
}

static void print_summary(const lfs_pack_options *opt, const lfs_pack_summary *s) {
  const double rate = s->seconds > 0 ? s->images / s->seconds : 0;
  if (opt->kind == LFS_PACK_BIN)
    lfs_info("pack: %lld pairs (%lld genuine, %lld impostor), %lld images of %dx%d -> %s; "
             "skipped %lld; %.1f s (%.0f images/s)",
             (long long)s->pairs, (long long)s->genuine, (long long)(s->pairs - s->genuine),
             (long long)s->images, s->width, s->height, opt->out, (long long)s->skipped, s->seconds,
             rate);
  else
    lfs_info("pack: %lld images, %lld identities (num_classes %d), %dx%d, %d shard%s -> %s; "
             "skipped %lld; %.1f s (%.0f images/s)",
             (long long)s->images, (long long)s->identities, (int)s->num_classes, s->width,
             s->height, s->shards, s->shards == 1 ? "" : "s + manifest", opt->out,
             (long long)s->skipped, s->seconds, rate);
  if (s->size_mismatch)
    lfs_warn("pack: %lld of %lld images were not %dx%d and were left out; images must be aligned "
             "crops of one size (pass --size S to resize them instead)",
             (long long)s->size_mismatch, (long long)(s->images + s->skipped), s->width, s->height);
}

int lfs_cmd_pack(int argc, char **argv) {
  lfs_pack_options opt = {.kind = LFS_PACK_REC, .shard_size = 100000, .threads = default_threads()};
  int have_kind = 0, quiet = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      lfs_info("%s", usage_text);
      return 0;
    } else if (!strcmp(a, "--from")) {
      opt.kind = parse_kind(value(argc, argv, &i));
      have_kind = 1;
    } else if (!strcmp(a, "--out")) {
      opt.out = value(argc, argv, &i);
    } else if (!strcmp(a, "--size")) {
      opt.size = (int)lfs_cli_long("--size", value(argc, argv, &i), 1, 4096);
    } else if (!strcmp(a, "--shard-size")) {
      opt.shard_size = lfs_cli_long("--shard-size", value(argc, argv, &i), 1, 1L << 40);
    } else if (!strcmp(a, "--threads")) {
      opt.threads = (int)lfs_cli_long("--threads", value(argc, argv, &i), 1, 256);
    } else if (!strcmp(a, "--seed")) {
      opt.seed = (uint64_t)lfs_cli_long("--seed", value(argc, argv, &i), 0, 0x7fffffffffffffffL);
    } else if (!strcmp(a, "--name")) {
      opt.name = value(argc, argv, &i);
    } else if (!strcmp(a, "--skip-bad")) {
      opt.skip_bad = 1;
    } else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
      quiet = 1;
    } else if (a[0] == '-' && a[1] != '\0') {
      lfs_user_error("pack: unknown option \"%s\" (see `lfsearch pack --help`)", a);
    } else if (!opt.input) {
      opt.input = a;
    } else {
      lfs_user_error("pack: unexpected argument \"%s\" (one INPUT only)", a);
    }
  }
  if (!have_kind || !opt.input || !opt.out)
    lfs_user_error("pack: needs --from KIND, INPUT and --out OUT.h5 (see `lfsearch pack --help`)");
  if (lfs_world_size() > 1) lfs_user_error("pack: runs as one process, not under %d MPI ranks", lfs_world_size());
  lfs_progress progress = {0};
  if (!quiet) {
    opt.progress = on_progress;
    opt.progress_ctx = &progress;
  }
  lfs_pack_summary sum;
  char err[2048];
  if (lfs_pack_run(&opt, &sum, err, sizeof err)) {
    if (progress.what && progress.tty) fputc('\n', stderr);
    lfs_user_error("%s", err);
  }
  if (progress.what) lfs_progress_finish(&progress);
  print_summary(&opt, &sum);
  return 0;
}
