/* runtime.h: process-wide start-up and shutdown (MPI, thread counts, signals). */
#ifndef LFS_RUNTIME_H
#define LFS_RUNTIME_H

/* Initialises MPI (thread level FUNNELED) and the logging rank, and finds each
 * rank's place on its node. Inside a Slurm step, an MPI world whose size is not
 * SLURM_NTASKS is a user error (a launch without MPI wiring). */
void lfs_runtime_init(int *argc, char ***argv);
void lfs_runtime_finalize(void);
int lfs_world_rank(void);
int lfs_world_size(void);
/* This rank's index among the ranks on its node, and their count: a rank's GPU is
 * its node rank (modulo the node's GPUs). */
int lfs_node_rank(void);
int lfs_node_size(void);
/* Sets the compute thread count (OpenMP; 0 = leave as OMP_NUM_THREADS says). */
void lfs_set_threads(int threads);
int lfs_get_threads(void);

#endif
