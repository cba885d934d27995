/* devcomm_internal.h: a device communicator is a table of collectives over an
 * implementation's own communicator; devcomm.c (the backend-independent checks,
 * the collective verdict, the dispatch, and MPI's stand-in for tests) takes
 * NCCL's from src/backend/cuda/nccl.c where the build has nccl.h, and from
 * src/backend/devcomm_none.c (never usable) otherwise. */
#ifndef LFS_DEVCOMM_INTERNAL_H
#define LFS_DEVCOMM_INTERNAL_H

#include <mpi.h>
#include <stddef.h>

#include "lfs/devcomm.h"

/* An implementation's collectives on its communicator `impl` (count > 0; the
 * root is a rank of the communicator). */
typedef struct {
  void (*allreduce_mean)(void *impl, float *buf, size_t count);
  void (*broadcast)(void *impl, float *buf, size_t count, int root);
  void (*free)(void *impl);
} lfs_devcomm_ops;

struct lfs_devcomm {
  const lfs_devcomm_ops *ops;
  void *impl;
  int ranks;
};

/* A communicator of `ranks` ranks over impl (devcomm.c). */
lfs_devcomm *lfs_devcomm_make(const lfs_devcomm_ops *ops, void *impl, int ranks);

/* Local (no communication): 0 if this process can use NCCL on the cuda backend
 * be (libnccl.so.2 loaded, version good), else -1 with the reason in why. */
int lfs_nccl_usable(lfs_backend *be, char *why, size_t whylen);
/* Collective over comm, called only once every rank is usable: NULL with the
 * same reason on every rank where two ranks share a GPU, else the communicator. */
lfs_devcomm *lfs_nccl_open(lfs_backend *be, MPI_Comm comm, char *why, size_t whylen);

#endif
