/* runtime.c: MPI start-up/shutdown and thread counts. Compute threads are
 * OpenMP's; OpenBLAS is kept at one thread and called from OpenMP threads. */
#include "lfs/runtime.h"

#include <mpi.h>

#include "lfs/log.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* OpenBLAS's own thread control (declared in its cblas.h, not in every CBLAS). */
extern void openblas_set_num_threads(int num_threads);

static int lfs_threads = 0;

void lfs_runtime_init(int *argc, char ***argv) {
  int provided = 0;
  LFS_MPI_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided));
  /* OpenBLAS stays single-threaded: the CPU backend parallelises with OpenMP (gemm.c) */
  openblas_set_num_threads(1);
  if (provided < MPI_THREAD_FUNNELED)
    lfs_warn("MPI provides thread level %d only; the prefetch thread will not call MPI", provided);
}

void lfs_runtime_finalize(void) {
  int fin = 0;
  MPI_Finalized(&fin);
  if (!fin) MPI_Finalize();
}

int lfs_world_rank(void) { return lfs_log_rank(); }

int lfs_world_size(void) {
  int init = 0, size = 1;
  MPI_Initialized(&init);
  if (init) MPI_Comm_size(MPI_COMM_WORLD, &size);
  return size;
}

void lfs_set_threads(int threads) {
  if (threads <= 0) return;
  lfs_threads = threads;
#ifdef _OPENMP
  omp_set_num_threads(threads);
#endif
}

int lfs_get_threads(void) {
  if (lfs_threads > 0) return lfs_threads;
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}
