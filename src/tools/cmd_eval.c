/* cmd_eval.c: `lfsearch eval --checkpoint FILE --pairs A.h5 [B.h5 ...] [--json]`:
 * the verification protocol of DESIGN §5 on each pair set with the checkpoint's
 * model (rebuilt from the configuration stored in it), one line per pair set. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lfs/checkpoint.h"
#include "lfs/log.h"
#include "lfs/runtime.h"
#include "lfs/trainer.h"
#include "tools/commands.h"

enum { max_pair_sets = 64, eval_batch_per_rank = 32 };

typedef struct {
  const char *checkpoint;
  const char *pairs[max_pair_sets];
  int npairs, json;
} eval_opts;

static void parse(eval_opts *o, int argc, char **argv) {
  memset(o, 0, sizeof *o);
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
      lfs_info("usage: lfsearch eval --checkpoint FILE --pairs A.h5 [B.h5 ...] [--json]\n"
               "  verification accuracy (10 folds, mean ± std), TAR@FAR, AUC and EER of the\n"
               "  checkpoint's model on each pair set; --json prints one JSON object per line");
      exit(0);
    } else if (!strcmp(argv[i], "--checkpoint")) {
      if (i + 1 >= argc) lfs_user_error("--checkpoint needs a file");
      o->checkpoint = argv[++i];
    } else if (!strcmp(argv[i], "--pairs")) {
      while (i + 1 < argc && argv[i + 1][0] != '-') {
        if (o->npairs == max_pair_sets) lfs_user_error("--pairs: at most %d pair sets", max_pair_sets);
        o->pairs[o->npairs++] = argv[++i];
      }
    } else if (!strcmp(argv[i], "--json")) {
      o->json = 1;
    } else {
      lfs_user_error("eval: unknown argument \"%s\" (see `lfsearch eval --help`)", argv[i]);
    }
  }
  if (!o->checkpoint) lfs_user_error("eval: --checkpoint FILE is required");
  if (!o->npairs) lfs_user_error("eval: --pairs needs at least one pair set");
}

/* The run's configuration and class count, as stored in the checkpoint. */
static lfs_config *checkpoint_config(const char *path, int *classes) {
  char err[1024];
  lfs_ckpt *h = lfs_ckpt_open(path, err, sizeof err);
  if (!h) lfs_user_error("--checkpoint: %s", err);
  int ndim = 0;
  int64_t dims[LFS_CKPT_MAX_DIMS];
  if (lfs_ckpt_array_shape(h, "head/weight", &ndim, dims, err, sizeof err) != 0 || ndim != 2)
    lfs_user_error("--checkpoint %s: no head/weight [classes, embedding]", path);
  *classes = (int)dims[0];
  lfs_config *cfg = lfs_config_new();
  if (lfs_config_load_stored(cfg, lfs_ckpt_info(h)->config, path, err, sizeof err) != 0)
    lfs_user_error("--checkpoint: its configuration: %s", err);
  lfs_ckpt_close(h);
  /* evaluation batches: a few images per rank, whatever the training batch was;
   * evaluation runs on the CPU backend whatever the training ran on */
  char set[64];
  snprintf(set, sizeof set, "data.batch_size=%d", eval_batch_per_rank * lfs_world_size());
  if (lfs_config_set(cfg, set, err, sizeof err) != 0 ||
      lfs_config_set(cfg, "run.backend=cpu", err, sizeof err) != 0)
    lfs_fatal("%s", err);
  return cfg;
}

int lfs_cmd_eval(int argc, char **argv) {
  eval_opts o;
  parse(&o, argc, argv);
  int classes = 0;
  lfs_config *cfg = checkpoint_config(o.checkpoint, &classes);
  lfs_set_threads((int)lfs_config_int(cfg, "run.threads"));
  lfs_trainer t;
  char err[1024];
  if (lfs_trainer_init(&t, cfg, classes, 1, MPI_COMM_WORLD, err, sizeof err) != 0)
    lfs_user_error("--checkpoint %s: %s", o.checkpoint, err);
  if (lfs_trainer_load(&t, o.checkpoint, err, sizeof err) != 0) lfs_user_error("%s", err);
  int rc = 0;
  for (int k = 0; k < o.npairs; k++) {
    lfs_verify_result res;
    char name[128], line[LFS_VERIFY_FORMAT_MAX + 6 * 128];
    if (lfs_trainer_verify(&t, o.pairs[k], &res, name, sizeof name, err, sizeof err) != 0)
      lfs_user_error("--pairs %s", err);
    if (o.json)
      lfs_verify_format_json(line, sizeof line, name, &res);
    else
      lfs_verify_format_line(line, sizeof line, name, &res);
    lfs_info("%s", line);
  }
  lfs_trainer_free(&t);
  lfs_config_free(cfg);
  return rc;
}
