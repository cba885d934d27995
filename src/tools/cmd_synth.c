/* cmd_synth.c: `lfsearch synth`: writes the synthetic-face training set and its
 * validation/test pair sets (src/data/synth.c), and optionally a preview grid.
 * Runs as one process; rendering uses OpenMP threads and the files do not
 * depend on their number. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "lfs/log.h"
#include "lfs/runtime.h"
#include "lfs/synth.h"
#include "tools/commands.h"
#include "tools/progress.h"

typedef struct {
  lfs_synth_opts synth;
  const char *out, *preview;
  int threads;
} synth_cli;

static void print_help(void) {
  lfs_synth_opts d;
  lfs_synth_defaults(&d);
  lfs_info(
      "usage: lfsearch synth --out DIR [options]\n"
      "  writes DIR/train.h5 (N identities x K images, labels 0..N-1, pre-shuffled),\n"
      "  DIR/val_pairs.h5 and DIR/test_pairs.h5 (pair sets \"synth_val\" and \"synth_test\" from\n"
      "  two further, disjoint groups of held-out identities; half genuine, half impostor).\n"
      "  The same options give byte-identical files, whatever the thread count. DIR is created\n"
      "  if missing; existing files are replaced only once all three new ones are complete.\n"
      "options (default):\n"
      "  --out DIR                    output directory (required unless only --preview is wanted)\n"
      "  --identities N               training identities, %d..%d (%lld)\n"
      "  --images-per-identity K      images per training identity, 1..%d (%d); N*K <= %d\n"
      "  --size S                     image side in pixels, %d..%d (%d)\n"
      "  --seed X                     random seed, 0..%ld (%llu)\n"
      "  --difficulty D               per-image variation (pose, light, expression, noise,\n"
      "                               occlusion), 0..1 (%.1f); 0 makes all images of a person equal\n"
      "  --val-identities V           held-out identities of the validation pairs, 2..%d (%lld)\n"
      "  --test-identities T          held-out identities of the test pairs, 2..%d (%lld)\n"
      "                               (fixed defaults, so the pair sets stay the same when N changes)\n"
      "  --val-pairs P                validation pairs, even, 2..%d (%lld)\n"
      "  --test-pairs Q               test pairs, even, 2..%d (%lld)\n"
      "  --shard-chunk C              images per HDF5 chunk of train.h5, 1..%d (%d)\n"
      "  --threads N                  rendering threads, 1..1024 (OMP_NUM_THREADS or all cores)\n"
      "  --preview FILE.png           also write a grid of images 0-7 of training identities 0-7,\n"
      "                               one labelled row per identity",
      2, LFS_SYNTH_MAX_IDENTITIES, (long long)d.identities, LFS_SYNTH_MAX_PER_IDENTITY,
      d.images_per_identity, LFS_SYNTH_MAX_TRAIN_IMAGES, LFS_SYNTH_MIN_SIZE, LFS_SYNTH_MAX_SIZE,
      d.size, 0x7fffffffffffffffL, (unsigned long long)d.seed, (double)d.difficulty,
      LFS_SYNTH_MAX_IDENTITIES, (long long)d.val_identities, LFS_SYNTH_MAX_IDENTITIES,
      (long long)d.test_identities, LFS_SYNTH_MAX_PAIRS, (long long)d.val_pairs,
      LFS_SYNTH_MAX_PAIRS, (long long)d.test_pairs, LFS_SYNTH_MAX_CHUNK, d.chunk);
}

static float parse_fraction(const char *option, const char *value) {
  char *end = NULL;
  errno = 0;
  const double v = value ? strtod(value, &end) : NAN;
  if (!value || !*value || *end || errno || !(v >= 0.0 && v <= 1.0))
    lfs_user_error("%s: \"%s\" is not a number in [0, 1]", option, value ? value : "");
  return (float)v;
}

static void parse(synth_cli *cli, int argc, char **argv) {
  lfs_synth_opts *o = &cli->synth;
  lfs_synth_defaults(o);
  cli->out = cli->preview = NULL;
  cli->threads = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      print_help();
      exit(0);
    }
    if (!strncmp(a, "--", 2) && strcmp(a, "--") && i + 1 < argc) i++; /* every option takes a value */
    if (!strcmp(a, "--out")) {
      if (!v || !*v) lfs_user_error("--out needs a directory name");
      cli->out = v;
    } else if (!strcmp(a, "--preview")) {
      if (!v || !*v) lfs_user_error("--preview needs a file name");
      cli->preview = v;
    } else if (!strcmp(a, "--identities")) {
      o->identities = lfs_cli_long(a, v, 2, LFS_SYNTH_MAX_IDENTITIES);
    } else if (!strcmp(a, "--images-per-identity")) {
      o->images_per_identity = (int)lfs_cli_long(a, v, 1, LFS_SYNTH_MAX_PER_IDENTITY);
    } else if (!strcmp(a, "--size")) {
      o->size = (int)lfs_cli_long(a, v, LFS_SYNTH_MIN_SIZE, LFS_SYNTH_MAX_SIZE);
    } else if (!strcmp(a, "--seed")) {
      o->seed = (uint64_t)lfs_cli_long(a, v, 0, 0x7fffffffffffffffL);
    } else if (!strcmp(a, "--difficulty")) {
      o->difficulty = parse_fraction(a, v);
    } else if (!strcmp(a, "--val-identities")) {
      o->val_identities = lfs_cli_long(a, v, 2, LFS_SYNTH_MAX_IDENTITIES);
    } else if (!strcmp(a, "--test-identities")) {
      o->test_identities = lfs_cli_long(a, v, 2, LFS_SYNTH_MAX_IDENTITIES);
    } else if (!strcmp(a, "--val-pairs")) {
      o->val_pairs = lfs_cli_long(a, v, 2, LFS_SYNTH_MAX_PAIRS);
    } else if (!strcmp(a, "--test-pairs")) {
      o->test_pairs = lfs_cli_long(a, v, 2, LFS_SYNTH_MAX_PAIRS);
    } else if (!strcmp(a, "--shard-chunk")) {
      o->chunk = (int)lfs_cli_long(a, v, 1, LFS_SYNTH_MAX_CHUNK);
    } else if (!strcmp(a, "--threads")) {
      cli->threads = (int)lfs_cli_long(a, v, 1, 1024);
    } else {
      lfs_user_error("synth: unknown option \"%s\" (see `lfsearch synth --help`)", a);
    }
  }
  char err[512];
  if (lfs_synth_check(o, err, sizeof err) != 0) lfs_user_error("%s", err);
  if (!cli->out && !cli->preview) lfs_user_error("synth: --out DIR is required (see `lfsearch synth --help`)");
}

/* mkdir -p: creates dir and any missing parents. */
static void make_dirs(const char *dir) {
  char path[4096];
  if ((size_t)snprintf(path, sizeof path, "%s", dir) >= sizeof path)
    lfs_user_error("--out: directory name too long");
  for (char *p = path + 1;; p++) {
    const char saved = *p;
    if (saved != '/' && saved != '\0') continue;
    *p = '\0';
    if (mkdir(path, 0777) != 0 && errno != EEXIST)
      lfs_user_error("--out: cannot create directory %s: %s", path, strerror(errno));
    *p = saved;
    if (!saved) break;
  }
  struct stat st;
  if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
    lfs_user_error("--out: %s exists and is not a directory", dir);
}

static void on_progress(void *ctx, int64_t done, int64_t total) {
  (void)total;
  lfs_progress_update(ctx, done);
}

int lfs_cmd_synth(int argc, char **argv) {
  synth_cli cli;
  parse(&cli, argc, argv);
  if (lfs_world_size() > 1)
    lfs_user_error("synth runs as a single process: start it without mpiexec (or with -n 1)");
  lfs_set_threads(cli.threads);
  const lfs_synth_opts *o = &cli.synth;
  char err[1024];
  if (cli.out) make_dirs(cli.out); /* first: the preview may go inside it */
  if (cli.preview && lfs_synth_preview(cli.preview, o, 8, 8, err, sizeof err) != 0)
    lfs_user_error("--preview: %s", err);
  if (!cli.out) {
    lfs_info("synth: wrote the preview %s", cli.preview);
    return LFS_EXIT_OK;
  }
  lfs_progress prog;
  lfs_synth_summary sum;
  lfs_progress_start(&prog, "images",
                     o->identities * o->images_per_identity + 2 * (o->val_pairs + o->test_pairs));
  if (lfs_synth_write(cli.out, o, on_progress, &prog, &sum, err, sizeof err) != 0) {
    fprintf(stderr, "\nlfsearch: error: %s\n", err);
    return LFS_EXIT_RUNTIME;
  }
  lfs_progress_finish(&prog);
  lfs_info("synth: %lld images (train %lld x %d, pairs %lld + %lld) of %lld identities, "
           "%lld pairs, %dx%d, in %.2f s: %.0f images/s on %d thread%s (rendering alone %.0f "
           "images/s) -> %s",
           (long long)sum.images, (long long)o->identities, o->images_per_identity,
           (long long)o->val_pairs, (long long)o->test_pairs, (long long)sum.identities,
           (long long)sum.pairs, o->size, o->size, sum.seconds,
           sum.seconds > 0 ? (double)sum.images / sum.seconds : 0.0, lfs_get_threads(),
           lfs_get_threads() == 1 ? "" : "s",
           sum.render_seconds > 0 ? (double)sum.images / sum.render_seconds : 0.0, cli.out);
  return LFS_EXIT_OK;
}
