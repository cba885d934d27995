/* nccl.c: device collectives of the CUDA backend through NCCL (lfs/devcomm.h).
 *
 * libnccl.so.2 is opened with dlopen on first use and every function is looked
 * up with dlsym, so that the program starts and trains (through the host) on
 * machines without NCCL; nccl.h gives only the types and constants. Plain C on
 * the CUDA runtime API (no kernels).
 *
 * Assumptions: the CUDA backend issues all its work on the legacy default
 * stream of be->device (this file is compiled without per-thread default
 * streams, like the backend's), so NCCL's operations are queued there, after
 * the work that produced their input; each is waited for before returning.
 * NCCL 2.10 or newer (ncclAvg: the mean in one pass, no scaling kernel). */
#include <dlfcn.h>
#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/devcomm_internal.h"
#include "lfs/log.h"

#define LFS_NCCL_LIBRARY "libnccl.so.2"
#define LFS_NCCL_MIN_VERSION 21000 /* 2.10.0: ncclAvg */

/* lfs_devcomm.impl */
typedef struct {
  ncclComm_t comm;
} nccl_group;

/* The library and the functions this file calls. */
static struct {
  int tried, loaded;
  int version;     /* NCCL_VERSION_CODE of the loaded library */
  char error[200]; /* why it is not loaded */
  char describe[240];
  ncclResult_t (*get_version)(int *);
  const char *(*get_error_string)(ncclResult_t);
  const char *(*get_last_error)(ncclComm_t); /* optional (2.13+) */
  ncclResult_t (*get_unique_id)(ncclUniqueId *);
  ncclResult_t (*comm_init_rank)(ncclComm_t *, int, ncclUniqueId, int);
  ncclResult_t (*comm_destroy)(ncclComm_t);
  ncclResult_t (*all_reduce)(const void *, void *, size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t,
                             cudaStream_t);
  ncclResult_t (*broadcast)(const void *, void *, size_t, ncclDataType_t, int, ncclComm_t,
                            cudaStream_t);
} nccl;

/* Codes are X*1000+Y*100+Z up to 2.8 and X*10000+Y*100+Z from 2.9 on. */
static void version_parts(int code, int *major, int *minor, int *patch) {
  const int wide = code >= 10000;
  *major = wide ? code / 10000 : code / 1000;
  *minor = wide ? code / 100 % 100 : code / 100 % 10;
  *patch = code % 100;
}

/* dlsym into *slot; -1 with nccl.error set when the symbol is missing. */
static int resolve(void *lib, const char *name, void *slot) {
  void *f = dlsym(lib, name);
  if (!f) {
    snprintf(nccl.error, sizeof nccl.error, "%s has no %s", LFS_NCCL_LIBRARY, name);
    return -1;
  }
  memcpy(slot, &f, sizeof f); /* object to function pointer, as POSIX dlsym allows */
  return 0;
}

static int resolve_all(void *lib) {
  const struct {
    const char *name;
    void *slot;
  } want[] = {
      {"ncclGetVersion", &nccl.get_version},    {"ncclGetErrorString", &nccl.get_error_string},
      {"ncclGetUniqueId", &nccl.get_unique_id}, {"ncclCommInitRank", &nccl.comm_init_rank},
      {"ncclCommDestroy", &nccl.comm_destroy},  {"ncclAllReduce", &nccl.all_reduce},
      {"ncclBroadcast", &nccl.broadcast}};
  for (size_t i = 0; i < sizeof want / sizeof *want; i++)
    if (resolve(lib, want[i].name, want[i].slot) != 0) return -1;
  return 0;
}

/* Opens the library once per process; the handle stays open until exit. */
static int load(void) {
  if (nccl.tried) return nccl.loaded ? 0 : -1;
  nccl.tried = 1;
  void *lib = dlopen(LFS_NCCL_LIBRARY, RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    const char *e = dlerror();
    snprintf(nccl.error, sizeof nccl.error, "%s", e ? e : LFS_NCCL_LIBRARY ": cannot open");
    return -1;
  }
  if (resolve_all(lib) != 0) {
    dlclose(lib);
    return -1;
  }
  void *last = dlsym(lib, "ncclGetLastError");
  if (last) memcpy(&nccl.get_last_error, &last, sizeof last);
  if (nccl.get_version(&nccl.version) != ncclSuccess) {
    snprintf(nccl.error, sizeof nccl.error, "ncclGetVersion failed");
    dlclose(lib);
    return -1;
  }
  nccl.loaded = 1;
  return 0;
}

const char *lfs_nccl_describe(void) {
  if (load() != 0) {
    snprintf(nccl.describe, sizeof nccl.describe, "NCCL not loaded (%s)", nccl.error);
  } else {
    int major, minor, patch;
    version_parts(nccl.version, &major, &minor, &patch);
    snprintf(nccl.describe, sizeof nccl.describe, "NCCL %d.%d.%d%s", major, minor, patch,
             nccl.version < LFS_NCCL_MIN_VERSION ? " (older than 2.10: not used)" : "");
  }
  return nccl.describe;
}

/* A failed NCCL call is an internal fault: the job stops naming the call. */
static void check_at(const char *file, int line, ncclResult_t rc, const char *call,
                     ncclComm_t comm) {
  if (rc == ncclSuccess) return;
  /* the library's own account of the failure, where it keeps one */
  const char *detail = nccl.get_last_error ? nccl.get_last_error(comm) : NULL;
  lfs_fatal_at(file, line, "NCCL: %s failed: %s%s%s", call, nccl.get_error_string(rc),
               detail && detail[0] ? ": " : "", detail ? detail : "");
}
#define LFS_NCCL_CHECK(call, comm) check_at(__FILE__, __LINE__, (call), #call, (comm))

static void cuda_check_at(const char *file, int line, cudaError_t rc, const char *call) {
  if (rc != cudaSuccess)
    lfs_fatal_at(file, line, "CUDA: %s failed: %s", call, cudaGetErrorString(rc));
}
#define LFS_NCCL_CUDA_CHECK(call) cuda_check_at(__FILE__, __LINE__, (call), #call)

int lfs_nccl_usable(lfs_backend *be, char *why, size_t whylen) {
  (void)be;
  if (load() != 0) return lfs_fail(why, whylen, "NCCL not loaded (%s)", nccl.error);
  if (nccl.version < LFS_NCCL_MIN_VERSION)
    return lfs_fail(why, whylen, "%s: NCCL 2.10 or newer is needed", lfs_nccl_describe());
  return 0;
}

/* One rank's GPU, as NCCL tells GPUs apart: the host and the PCI bus id. */
typedef struct {
  char host[MPI_MAX_PROCESSOR_NAME];
  char bus[32];
  char error[160]; /* why the bus id is unknown; "" when known */
} gpu_id;

static void my_gpu(lfs_backend *be, gpu_id *id) {
  memset(id, 0, sizeof *id);
  int len = 0;
  if (MPI_Get_processor_name(id->host, &len) != MPI_SUCCESS)
    gethostname(id->host, sizeof id->host - 1);
  const cudaError_t rc = cudaDeviceGetPCIBusId(id->bus, (int)sizeof id->bus, be->device);
  if (rc != cudaSuccess)
    snprintf(id->error, sizeof id->error, "cudaDeviceGetPCIBusId of GPU %d: %s", be->device,
             cudaGetErrorString(rc));
}

/* 0 when the ranks' GPUs are known and distinct; else -1 with why. Every rank
 * sees the same gathered table, so every rank reaches the same verdict. */
static int distinct_gpus(lfs_backend *be, MPI_Comm comm, int size, char *why, size_t whylen) {
  gpu_id mine, *all = lfs_calloc((size_t)size, sizeof *all);
  my_gpu(be, &mine);
  LFS_MPI_CHECK(
      MPI_Allgather(&mine, (int)sizeof mine, MPI_BYTE, all, (int)sizeof mine, MPI_BYTE, comm));
  int rc = 0;
  for (int i = 0; i < size && !rc; i++) {
    if (all[i].error[0]) rc = lfs_fail(why, whylen, "rank %d: %s", i, all[i].error);
    for (int j = 0; j < i && !rc; j++)
      if (!strcmp(all[i].host, all[j].host) && !strcmp(all[i].bus, all[j].bus))
        rc = lfs_fail(why, whylen,
                      "ranks %d and %d share the GPU at PCI %s on %s (NCCL needs one GPU per rank)",
                      j, i, all[i].bus, all[i].host);
  }
  free(all);
  return rc;
}

static void nccl_allreduce_mean(void *impl, float *buf, size_t count) {
  const nccl_group *g = impl;
  LFS_NCCL_CHECK(nccl.all_reduce(buf, buf, count, ncclFloat32, ncclAvg, g->comm, 0), g->comm);
  LFS_NCCL_CUDA_CHECK(cudaStreamSynchronize(0));
}

static void nccl_broadcast(void *impl, float *buf, size_t count, int root) {
  const nccl_group *g = impl;
  LFS_NCCL_CHECK(nccl.broadcast(buf, buf, count, ncclFloat32, root, g->comm, 0), g->comm);
  LFS_NCCL_CUDA_CHECK(cudaStreamSynchronize(0));
}

static void nccl_free(void *impl) {
  nccl_group *g = impl;
  LFS_NCCL_CHECK(nccl.comm_destroy(g->comm), NULL);
  free(g);
}

static const lfs_devcomm_ops nccl_ops = {nccl_allreduce_mean, nccl_broadcast, nccl_free};

lfs_devcomm *lfs_nccl_open(lfs_backend *be, MPI_Comm comm, char *why, size_t whylen) {
  int rank = 0, size = 1, current = -1;
  LFS_MPI_CHECK(MPI_Comm_rank(comm, &rank));
  LFS_MPI_CHECK(MPI_Comm_size(comm, &size));
  if (distinct_gpus(be, comm, size, why, whylen) != 0) return NULL;
  /* NCCL binds the communicator to the current device: the backend's */
  LFS_NCCL_CUDA_CHECK(cudaGetDevice(&current));
  if (current != be->device) LFS_NCCL_CUDA_CHECK(cudaSetDevice(be->device));
  ncclUniqueId uid;
  memset(&uid, 0, sizeof uid);
  if (rank == 0) LFS_NCCL_CHECK(nccl.get_unique_id(&uid), NULL);
  LFS_MPI_CHECK(MPI_Bcast(&uid, (int)sizeof uid, MPI_BYTE, 0, comm));
  nccl_group *g = lfs_calloc(1, sizeof *g);
  LFS_NCCL_CHECK(nccl.comm_init_rank(&g->comm, size, uid, rank), NULL);
  return lfs_devcomm_make(&nccl_ops, g, size);
}
