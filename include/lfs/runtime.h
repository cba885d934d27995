/* runtime.h: process-wide start-up and shutdown (MPI, thread counts, signals). */
#ifndef LFS_RUNTIME_H
#define LFS_RUNTIME_H

/* Initialises MPI (thread level FUNNELED) and the logging rank. */
void lfs_runtime_init(int *argc, char ***argv);
void lfs_runtime_finalize(void);
int lfs_world_rank(void);
int lfs_world_size(void);
/* Sets the compute thread count (OpenMP; 0 = leave as OMP_NUM_THREADS says). */
void lfs_set_threads(int threads);
int lfs_get_threads(void);

#endif
