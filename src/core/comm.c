/* comm.c: chunked MPI collectives on host float buffers. MPI counts are int, so
 * buffers larger than LFS_COMM_CHUNK floats go in pieces. */
#include "lfs/comm.h"

#include "lfs/log.h"

enum { LFS_COMM_CHUNK = 1 << 28 };

void lfs_allreduce_sum(float *buf, size_t count, MPI_Comm comm) {
  for (size_t off = 0; off < count; off += LFS_COMM_CHUNK) {
    size_t n = count - off < LFS_COMM_CHUNK ? count - off : LFS_COMM_CHUNK;
    LFS_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, buf + off, (int)n, MPI_FLOAT, MPI_SUM, comm));
  }
}

void lfs_allreduce_mean(float *buf, size_t count, MPI_Comm comm) {
  int size = 1;
  LFS_MPI_CHECK(MPI_Comm_size(comm, &size));
  lfs_allreduce_sum(buf, count, comm);
  if (size == 1) return;
  const float inv = 1.0f / (float)size;
  for (size_t i = 0; i < count; i++) buf[i] *= inv;
}

void lfs_broadcast(float *buf, size_t count, int root, MPI_Comm comm) {
  for (size_t off = 0; off < count; off += LFS_COMM_CHUNK) {
    size_t n = count - off < LFS_COMM_CHUNK ? count - off : LFS_COMM_CHUNK;
    LFS_MPI_CHECK(MPI_Bcast(buf + off, (int)n, MPI_FLOAT, root, comm));
  }
}

void lfs_group_sum_doubles(double *buf, int count, void *ctx) {
  LFS_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, buf, count, MPI_DOUBLE, MPI_SUM, *(MPI_Comm *)ctx));
}
