/* devcomm.c: lfs_devcomm_create (lfs/devcomm.h): the checks every backend shares
 * and the collective verdict. Each rank first decides alone whether it could use
 * device collectives; the ranks then agree (the lowest failing rank's reason is
 * everyone's), because a rank that entered NCCL's communicator setup alone would
 * wait forever for the others. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/devcomm_internal.h"
#include "lfs/log.h"

enum { LFS_DEVCOMM_WHY = 256 };

/* The profiler's wrapper (instrument.c) keeps the name and the device ordinal. */
static int is_cuda(const lfs_backend *be) {
  return be && be->ops && be->ops->name && !strcmp(be->ops->name, "cuda") && be->device >= 0;
}

/* This rank's own verdict: 0, or -1 with the reason in why. */
static int local_check(lfs_backend *be, char *why, size_t whylen) {
  const char *env = getenv("LFS_NCCL");
  if (!is_cuda(be))
    return lfs_fail(why, whylen, "the %s backend has no device collectives (NCCL needs cuda)",
                    be && be->ops && be->ops->name ? be->ops->name : "(none)");
  if (env && !strcmp(env, "0")) return lfs_fail(why, whylen, "LFS_NCCL=0");
  return lfs_nccl_usable(be, why, whylen);
}

/* 1 if every rank of comm is ok; else 0 on all, why = the lowest failing rank's
 * reason (prefixed with that rank where it is not rank 0). */
static int all_agree(int ok, MPI_Comm comm, char *why, size_t whylen) {
  int rank = 0, size = 1, first = 0;
  LFS_MPI_CHECK(MPI_Comm_rank(comm, &rank));
  LFS_MPI_CHECK(MPI_Comm_size(comm, &size));
  const int mine = ok ? size : rank;
  LFS_MPI_CHECK(MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, comm));
  if (first == size) return 1;
  char reason[LFS_DEVCOMM_WHY] = "";
  if (rank == first) snprintf(reason, sizeof reason, "%s", why ? why : "");
  LFS_MPI_CHECK(MPI_Bcast(reason, (int)sizeof reason, MPI_CHAR, first, comm));
  if (why && whylen) {
    if (first == 0)
      snprintf(why, whylen, "%s", reason);
    else
      snprintf(why, whylen, "rank %d: %s", first, reason);
  }
  return 0;
}

lfs_devcomm *lfs_devcomm_create(lfs_backend *be, MPI_Comm comm, char *why, size_t whylen) {
  char reason[LFS_DEVCOMM_WHY] = "";
  const int ok = local_check(be, reason, sizeof reason) == 0;
  if (!all_agree(ok, comm, reason, sizeof reason)) {
    if (why && whylen) snprintf(why, whylen, "%s", reason);
    return NULL;
  }
  return lfs_nccl_open(be, comm, why, whylen);
}
