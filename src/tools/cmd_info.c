/* cmd_info.c: `lfsearch info`: what this build contains and, with --devices,
 * which GPUs the CUDA runtime sees from every rank's node. */
#include <mpi.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "lfs/backend.h"
#include "lfs/log.h"
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
  lfs_info("  BLAS         : %s", lfs_cpu_blas_describe());
  if (lfs_cpu_blas_hint()) lfs_info("  BLAS hint    : %s", lfs_cpu_blas_hint());
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

int lfs_cmd_info(int argc, char **argv) {
  int devices = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--devices")) {
      devices = 1;
    } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
      lfs_info("usage: lfsearch info [--devices]\n"
               "  prints the build configuration; --devices lists the GPUs each rank can see");
      return 0;
    } else {
      lfs_user_error("info: unknown option \"%s\" (usage: lfsearch info [--devices])", argv[i]);
    }
  }
  print_build();
  if (devices) print_devices();
  return 0;
}
