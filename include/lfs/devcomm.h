/* devcomm.h: collectives on backend (device) memory between the ranks of an MPI
 * communicator, so that gradients and model state need not travel through the
 * host. Only the CUDA backend has them, through NCCL (libnccl.so.2, loaded at run
 * time); everywhere else lfs_devcomm_create says why not and callers keep their
 * host path (download, MPI, upload).
 *
 * Assumptions: the backend runs all its work on one stream (CUDA: the legacy
 * default stream of be->device); each operation is queued there and waited for,
 * so callers see finished results, as with the host path. One GPU per rank:
 * NCCL refuses two ranks on one GPU, so such a group gets no communicator.
 * For tests, LFS_DEVCOMM=mpi gives cpu-staged (host memory behind a device
 * ordinal) communicators whose collectives are MPI's on that memory, so that
 * the callers' device paths run on any machine. */
#ifndef LFS_DEVCOMM_H
#define LFS_DEVCOMM_H

#include <mpi.h>
#include <stddef.h>

#include "lfs/backend.h"

typedef struct lfs_devcomm lfs_devcomm;

/* Collective over comm. NULL, with the reason in why, where device collectives
 * are unavailable: not the cuda backend, a build without NCCL, libnccl.so.2 not
 * loadable or older than 2.10 (no ncclAvg), LFS_NCCL=0, or two ranks of comm on
 * one GPU. Every rank of comm gets the same answer and the same reason. */
lfs_devcomm *lfs_devcomm_create(lfs_backend *be, MPI_Comm comm, char *why, size_t whylen);
/* buf [count] (backend memory) <- the mean over the ranks, in place. */
void lfs_devcomm_allreduce_mean(lfs_devcomm *c, float *buf, size_t count);
/* buf [count] (backend memory) <- root's buf (root: a rank of comm). */
void lfs_devcomm_broadcast(lfs_devcomm *c, float *buf, size_t count, int root);
/* Collective over the communicator's ranks (NCCL's destroy is); NULL is ignored. */
void lfs_devcomm_free(lfs_devcomm *c);
/* The NCCL this process loaded, or why none: "NCCL 2.27.3", "NCCL not loaded
 * (<reason>)", "NCCL not built in". Loads the library on first use. */
const char *lfs_nccl_describe(void);

#endif
