/* devcomm_none.c: the NCCL side of lfs/devcomm.h in a build without it (no CUDA,
 * or CUDA without nccl.h): never usable, so lfs_devcomm_create always returns
 * NULL with the reason and no communicator ever exists. */
#include "backend/devcomm_internal.h"
#include "lfs/log.h"

int lfs_nccl_usable(lfs_backend *be, char *why, size_t whylen) {
  (void)be;
  return lfs_fail(why, whylen, "this build has no NCCL (configure --with-cuda with nccl.h)");
}

lfs_devcomm *lfs_nccl_open(lfs_backend *be, MPI_Comm comm, char *why, size_t whylen) {
  (void)comm;
  lfs_nccl_usable(be, why, whylen);
  return NULL;
}

const char *lfs_nccl_describe(void) { return "NCCL not built in"; }
