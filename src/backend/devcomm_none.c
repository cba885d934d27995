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

/* Unreachable: there is no communicator to pass. */
void lfs_devcomm_allreduce_mean(lfs_devcomm *c, float *buf, size_t count) {
  (void)c, (void)buf, (void)count;
  lfs_fatal("lfs_devcomm_allreduce_mean: this build has no NCCL");
}

void lfs_devcomm_broadcast(lfs_devcomm *c, float *buf, size_t count, int root) {
  (void)c, (void)buf, (void)count, (void)root;
  lfs_fatal("lfs_devcomm_broadcast: this build has no NCCL");
}

void lfs_devcomm_free(lfs_devcomm *c) { LFS_ASSERT(c == NULL); }

const char *lfs_nccl_describe(void) { return "NCCL not built in"; }
