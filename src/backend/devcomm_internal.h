/* devcomm_internal.h: what devcomm.c (backend-independent checks and the
 * collective verdict) needs from the NCCL side: src/backend/cuda/nccl.c where the
 * build has nccl.h, src/backend/devcomm_none.c otherwise. The public functions
 * of lfs/devcomm.h other than lfs_devcomm_create live on that side too. */
#ifndef LFS_DEVCOMM_INTERNAL_H
#define LFS_DEVCOMM_INTERNAL_H

#include <mpi.h>
#include <stddef.h>

#include "lfs/devcomm.h"

/* Local (no communication): 0 if this process can use NCCL on the cuda backend
 * be (libnccl.so.2 loaded, version good), else -1 with the reason in why. */
int lfs_nccl_usable(lfs_backend *be, char *why, size_t whylen);
/* Collective over comm, called only once every rank is usable: NULL with the
 * same reason on every rank where two ranks share a GPU, else the communicator. */
lfs_devcomm *lfs_nccl_open(lfs_backend *be, MPI_Comm comm, char *why, size_t whylen);

#endif
