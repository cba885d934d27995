/* fault_helper.c: triggers each kind of failure on purpose for
 * tests/cli/test_cli_faults.sh: `fatal` (an internal fault on the last rank),
 * `user` (a collective user error), `user-local` (a user error on the last rank
 * only) and `mpi` (a failing MPI call). */
#include <mpi.h>
#include <string.h>

#include "lfs/log.h"
#include "lfs/runtime.h"

int main(int argc, char **argv) {
  lfs_runtime_init(&argc, &argv);
  const int last = lfs_world_rank() == lfs_world_size() - 1;
  const char *what = argc > 1 ? argv[1] : "";
  MPI_Barrier(MPI_COMM_WORLD);
  if (!strcmp(what, "fatal") && last) lfs_fatal("broken invariant %d", 42);
  if (!strcmp(what, "user")) lfs_user_error("bad value %s for [run] seed", "x");
  if (!strcmp(what, "user-local") && last) lfs_user_error_local("shard %d is truncated", 7);
  if (!strcmp(what, "mpi")) {
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    LFS_MPI_CHECK(MPI_Send(NULL, 0, MPI_INT, lfs_world_size() + 5, 0, MPI_COMM_WORLD));
  }
  if (!strcmp(what, "ok")) {
    lfs_runtime_finalize();
    return 0;
  }
  /* ranks that did not fail wait here until the job is torn down */
  MPI_Barrier(MPI_COMM_WORLD);
  lfs_runtime_finalize();
  return 0;
}
