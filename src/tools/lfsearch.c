/* lfsearch.c: the `lfsearch` program: dispatches to subcommands, and holds the
 * option helpers they share. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "lfs/backend.h"
#include "lfs/fileio.h"
#include "lfs/log.h"
#include "lfs/runtime.h"
#include "lfs/timer.h"
#include "tools/commands.h"

typedef struct {
  const char *name;
  int (*run)(int argc, char **argv);
  const char *summary;
} command;

static const command commands[] = {
    {"synth", lfs_cmd_synth, "generate the synthetic-face dataset and its validation/test pair sets"},
    {"pack", lfs_cmd_pack, "convert insightface rec/idx, .bin pair sets or image folders to HDF5"},
    {"train", lfs_cmd_train, "train one fixed margin loss, data parallel over the MPI ranks"},
    {"search", lfs_cmd_search,
     "search the loss function: M candidate groups, a reward-guided Gaussian policy"},
    {"eval", lfs_cmd_eval, "verification accuracy of a checkpoint on pair sets"},
    {"info", lfs_cmd_info,
     "describe a dataset, pair set or this build and its accelerators (--devices)"},
    {"bench", lfs_cmd_bench,
     "time layers (GFLOP/s), whole training steps (--train MODEL) or the loader (--loader)"},
    {"demo", lfs_cmd_demo,
     "train the small residual demo network on synthetic random data (data parallel)"},
};
enum { command_count = sizeof commands / sizeof commands[0] };

static void usage(FILE *out) {
  fprintf(out,
          "usage: lfsearch COMMAND [options]\n"
          "       lfsearch COMMAND --help\n\ncommands:\n");
  for (int i = 0; i < command_count; i++) fprintf(out, "  %-8s %s\n", commands[i].name, commands[i].summary);
  fprintf(out,
          "\ncommon options: -c FILE (INI configuration), --set section.key=value (override)\n"
          "exit codes: 0 success, 1 runtime failure, 2 usage or input error, 3 stopped by signal\n");
}

static int is_help(const char *arg) { return !strcmp(arg, "-h") || !strcmp(arg, "--help"); }

/* LFS_GEMM_KERNEL pins the GEMM micro-kernel, e.g. "avx2" on every node of a
 * cluster whose CPUs differ, so that all of them compute the same bits. */
static void pin_gemm_kernel(void) {
  const char *kernel = getenv("LFS_GEMM_KERNEL");
  if (kernel && *kernel && lfs_cpu_gemm_select(kernel) != 0)
    lfs_user_error("LFS_GEMM_KERNEL=%s: not a GEMM kernel this CPU runs (avx512, avx2, portable)",
                   kernel);
}

/* LFS_CPU_ISA picks the build of the other CPU kernels ("baseline", "x86-64-v3",
 * "x86-64-v4"); all compute the same bits, so this is for measuring them. */
static void pin_cpu_isa(void) {
  const char *isa = getenv("LFS_CPU_ISA");
  if (isa && *isa && lfs_cpu_isa_select(isa) != 0)
    lfs_user_error("LFS_CPU_ISA=%s: not a kernel build this CPU runs (x86-64-v4, x86-64-v3, baseline)",
                   isa);
}

/* LFS_EXIT_FILE: rank 0 writes the command's exit code there when the command
 * returns. A batch script cannot tell a run that finished from ranks that never
 * started (srun can exit 0 after "task launch failed"); this file can. Written
 * to a temporary name and renamed, so a reader never sees half of it. */
static void report_exit_code(int rc) {
  const char *path = getenv("LFS_EXIT_FILE");
  if (!path || !*path || lfs_world_rank() != 0) return;
  char tmp[4096];
  if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) {
    lfs_warn("LFS_EXIT_FILE=%s: path too long, exit code not written", path);
    return;
  }
  FILE *f = fopen(tmp, "w");
  int ok = f && fprintf(f, "%d\n", rc) > 0;
  if (f && fclose(f) != 0) ok = 0;
  if (!ok || rename(tmp, path) != 0) {
    lfs_warn("LFS_EXIT_FILE=%s: could not write the exit code: %s", path, strerror(errno));
    remove(tmp);
    return;
  }
  lfs_sync_dir_of(path);
}

int main(int argc, char **argv) {
  lfs_runtime_init(&argc, &argv);
  lfs_signals_install();
  pin_gemm_kernel();
  pin_cpu_isa();
  if (argc < 2 || is_help(argv[1])) {
    if (lfs_world_rank() == 0) usage(argc < 2 ? stderr : stdout);
    lfs_runtime_finalize();
    return argc < 2 ? LFS_EXIT_USAGE : LFS_EXIT_OK;
  }
  if (!strcmp(argv[1], "--version")) {
    if (lfs_world_rank() == 0) printf("%s\n", PACKAGE_STRING);
    lfs_runtime_finalize();
    return 0;
  }
  for (int i = 0; i < command_count; i++) {
    if (strcmp(argv[1], commands[i].name) != 0) continue;
    int rc = commands[i].run(argc - 1, argv + 1);
    report_exit_code(rc);
    lfs_runtime_finalize();
    return rc;
  }
  lfs_user_error("unknown command \"%s\" (run `lfsearch --help` for the list)", argv[1]);
}

lfs_config *lfs_cli_config(int *argc, char **argv) {
  lfs_config *cfg = lfs_config_new();
  char err[1024];
  int kept = 1;
  const char *file = NULL;
  /* the file is read first, whatever the order on the command line */
  for (int i = 1; i < *argc; i++)
    if (!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) {
      if (i + 1 >= *argc) lfs_user_error("%s needs a file name", argv[i]);
      file = argv[++i];
    }
  if (file && lfs_config_load_file(cfg, file, err, sizeof err) != 0) lfs_user_error("%s", err);
  for (int i = 1; i < *argc; i++) {
    if (!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) {
      i++;
    } else if (!strcmp(argv[i], "--set")) {
      if (i + 1 >= *argc) lfs_user_error("--set needs section.key=value");
      if (lfs_config_set(cfg, argv[++i], err, sizeof err) != 0) lfs_user_error("%s", err);
    } else if (!strncmp(argv[i], "--set=", 6)) {
      if (lfs_config_set(cfg, argv[i] + 6, err, sizeof err) != 0) lfs_user_error("%s", err);
    } else if (!strcmp(argv[i], "--device")) { /* --device X is --set run.backend=X */
      if (i + 1 >= *argc) lfs_user_error("--device needs cpu, cuda or cpu-staged");
      char set[96];
      snprintf(set, sizeof set, "run.backend=%s", argv[++i]);
      if (lfs_config_set(cfg, set, err, sizeof err) != 0) lfs_user_error("--device: %s", err);
    } else {
      argv[kept++] = argv[i];
    }
  }
  *argc = kept;
  return cfg;
}

long lfs_cli_long(const char *option, const char *value, long min, long max) {
  char *end = NULL;
  errno = 0;
  long v = value ? strtol(value, &end, 10) : 0;
  if (!value || !*value || *end || errno || v < min || v > max)
    lfs_user_error("%s: \"%s\" is not a whole number in [%ld, %ld]", option, value ? value : "",
                   min, max);
  return v;
}

void lfs_cli_no_extra(const char *command, int argc, char **argv) {
  if (argc > 1)
    lfs_user_error("%s: unexpected argument \"%s\" (see `lfsearch %s --help`)", command, argv[1],
                   command);
}
