/* comm.h: collective operations on flat float buffers (gradients, parameters).
 * Counts may exceed INT_MAX: the buffer is sent in chunks. */
#ifndef LFS_COMM_H
#define LFS_COMM_H

#include <mpi.h>
#include <stddef.h>

/* buf [count] <- sum over the ranks of comm, in place. */
void lfs_allreduce_sum(float *buf, size_t count, MPI_Comm comm);
/* buf [count] <- mean over the ranks of comm, in place. */
void lfs_allreduce_mean(float *buf, size_t count, MPI_Comm comm);
/* buf [count] <- root's buf. */
void lfs_broadcast(float *buf, size_t count, int root, MPI_Comm comm);

/* lfs_group_sum_fn (layer.h) over the communicator *(MPI_Comm *)ctx: sums
 * buf [count] in place. For synchronised batch norm. */
void lfs_group_sum_doubles(double *buf, int count, void *ctx);

#endif
