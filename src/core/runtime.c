/* runtime.c: MPI start-up/shutdown and thread counts. Compute threads are
 * OpenMP's; OpenBLAS is kept at one thread and called from OpenMP threads. */
#include "lfs/runtime.h"

#include <mpi.h>
#include <stdlib.h>

#include "lfs/log.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* OpenBLAS's own thread control (declared in its cblas.h, not in every CBLAS). */
extern void openblas_set_num_threads(int num_threads);

static int lfs_threads = 0;
static int node_rank = 0, node_size = 1;

static void find_node_rank(void) {
  MPI_Comm node;
  LFS_MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node));
  MPI_Comm_rank(node, &node_rank);
  MPI_Comm_size(node, &node_size);
  MPI_Comm_free(&node);
}

/* Inside a Slurm job step (srun) every task must be a rank of one MPI world of
 * SLURM_NTASKS ranks. A launch without the MPI wiring (srun without --mpi=pmix on
 * a cluster whose MPI accepts that) gives SLURM_NTASKS worlds of one rank each,
 * which would train copies that overwrite each other's files. Open MPI's mpirun,
 * which may itself run inside a step, sets OMPI_COMM_WORLD_SIZE and is trusted. */
static void check_slurm_launch(int launched_by_mpirun) {
  const char *ntasks = getenv("SLURM_NTASKS"), *step = getenv("SLURM_STEP_ID");
  if (launched_by_mpirun || !ntasks || !step) return;
  char *end;
  const long n = strtol(ntasks, &end, 10);
  if (*end || n <= 0 || n == lfs_world_size()) return;
  lfs_user_error("Slurm started %ld tasks (SLURM_NTASKS) but MPI sees %d rank%s: launch with "
                 "`srun --mpi=pmix` (see jobs/README.md) or with mpirun",
                 n, lfs_world_size(), lfs_world_size() == 1 ? "" : "s");
}

void lfs_runtime_init(int *argc, char ***argv) {
  int provided = 0;
  const int by_mpirun = getenv("OMPI_COMM_WORLD_SIZE") != NULL;
  LFS_MPI_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided));
  find_node_rank();
  check_slurm_launch(by_mpirun);
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
int lfs_node_rank(void) { return node_rank; }
int lfs_node_size(void) { return node_size; }

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
