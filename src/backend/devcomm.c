/* devcomm.c: lfs/devcomm.h's entry points: the checks every backend shares, the
 * collective verdict, and the dispatch to an implementation (NCCL, or MPI's
 * stand-in on cpu-staged for tests). Each rank first decides alone whether it
 * could use device collectives; the ranks then agree (the lowest failing rank's
 * reason is everyone's), because a rank that entered NCCL's communicator setup
 * alone would wait forever for the others. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/devcomm_internal.h"
#include "lfs/comm.h"
#include "lfs/log.h"

enum { LFS_DEVCOMM_WHY = 256 };

/* The profiler's wrapper (instrument.c) keeps the name and the device ordinal. */
static int is_cuda(const lfs_backend *be) {
  return be && be->ops && be->ops->name && !strcmp(be->ops->name, "cuda") && be->device >= 0;
}

/* LFS_DEVCOMM=mpi on cpu-staged: its memory is the host's, so MPI's collectives
 * on it stand in for NCCL's on a GPU, and the trainer's device-collective paths
 * run (bit for bit like the host path) on any machine. */
static int stand_in(const lfs_backend *be) {
  const char *env = getenv("LFS_DEVCOMM");
  return be && be->ops && be->ops->name && !strcmp(be->ops->name, "cpu-staged") && env &&
         !strcmp(env, "mpi");
}

static void mpi_allreduce_mean(void *impl, float *buf, size_t count) {
  lfs_allreduce_mean(buf, count, *(MPI_Comm *)impl);
}

static void mpi_broadcast(void *impl, float *buf, size_t count, int root) {
  lfs_broadcast(buf, count, root, *(MPI_Comm *)impl);
}

static void mpi_free(void *impl) {
  LFS_MPI_CHECK(MPI_Comm_free((MPI_Comm *)impl));
  free(impl);
}

static const lfs_devcomm_ops mpi_ops = {mpi_allreduce_mean, mpi_broadcast, mpi_free};

static lfs_devcomm *stand_in_open(MPI_Comm comm) {
  MPI_Comm *own = lfs_malloc(sizeof *own);
  int size = 1;
  LFS_MPI_CHECK(MPI_Comm_dup(comm, own));
  LFS_MPI_CHECK(MPI_Comm_size(comm, &size));
  return lfs_devcomm_make(&mpi_ops, own, size);
}

/* This rank's own verdict: 0, or -1 with the reason in why. */
static int local_check(lfs_backend *be, char *why, size_t whylen) {
  const char *env = getenv("LFS_NCCL");
  if (stand_in(be)) return 0;
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
  return stand_in(be) ? stand_in_open(comm) : lfs_nccl_open(be, comm, why, whylen);
}

lfs_devcomm *lfs_devcomm_make(const lfs_devcomm_ops *ops, void *impl, int ranks) {
  lfs_devcomm *c = lfs_calloc(1, sizeof *c);
  *c = (lfs_devcomm){ops, impl, ranks};
  return c;
}

void lfs_devcomm_allreduce_mean(lfs_devcomm *c, float *buf, size_t count) {
  if (count) c->ops->allreduce_mean(c->impl, buf, count);
}

void lfs_devcomm_broadcast(lfs_devcomm *c, float *buf, size_t count, int root) {
  LFS_ASSERT(root >= 0 && root < c->ranks);
  if (count) c->ops->broadcast(c->impl, buf, count, root);
}

void lfs_devcomm_free(lfs_devcomm *c) {
  if (!c) return;
  c->ops->free(c->impl);
  free(c);
}
