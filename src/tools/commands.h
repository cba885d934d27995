/* commands.h: the lfsearch subcommands and the option parsing they share. */
#ifndef LFS_COMMANDS_H
#define LFS_COMMANDS_H

#include "lfs/config.h"

/* Each returns the process exit code (DESIGN §7). MPI is initialised. */
int lfs_cmd_info(int argc, char **argv);
int lfs_cmd_bench(int argc, char **argv);
int lfs_cmd_demo(int argc, char **argv);
int lfs_cmd_synth(int argc, char **argv);
int lfs_cmd_pack(int argc, char **argv);
int lfs_cmd_train(int argc, char **argv);
int lfs_cmd_search(int argc, char **argv);
int lfs_cmd_eval(int argc, char **argv);

/* `lfsearch info FILE` of a run log (the per-epoch table) and of a checkpoint
 * (info_run.c). */
void lfs_info_runlog(const char *path);
void lfs_info_checkpoint(const char *path);

/* `lfsearch bench --train MODEL`: images/s of whole training steps. */
typedef struct {
  const char *model;
  int size, batch, classes; /* input side, global batch, head classes */
  int steps, reps;          /* each timed run takes `steps` steps; best of `reps` */
  int threads[8], nthreads; /* one measurement per thread count */
  const char *device;       /* [run] backend: cpu, cuda, cpu-staged */
} lfs_bench_train_opts;
int lfs_bench_train(const lfs_bench_train_opts *o);

/* Builds a configuration from `-c FILE` and `--set section.key=value` options
 * (file first, then overrides in order). Unrecognised options are left in
 * argv (compacted; *argc updated). A bad file or override is a user error. */
lfs_config *lfs_cli_config(int *argc, char **argv);
/* Parses a whole number option value or reports a user error naming the option. */
long lfs_cli_long(const char *option, const char *value, long min, long max);
/* Fails with a usage error if any argument is left over. */
void lfs_cli_no_extra(const char *command, int argc, char **argv);

#endif
