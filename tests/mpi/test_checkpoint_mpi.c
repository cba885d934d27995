/* test_checkpoint_mpi.c: a checkpoint written collectively by R ranks through
 * parallel HDF5 (lfs_ckpt_create_collective), each rank the writer of its own
 * arrays, reads back (on every rank, serially) with every rank's data, the
 * shared attributes and one `created` time; a collective write that is closed
 * without commit leaves neither the checkpoint nor its temporary file; a
 * collective create in a missing directory fails on every rank. With a serial
 * HDF5 build the test checks that the collective create is refused clearly. */
#include <dirent.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lfs/checkpoint.h"
#include "lfs/log.h"

static int failures = 0;

static void expect(int ok, const char *what, int rank) {
  if (!ok) {
    fprintf(stderr, "[rank %d] FAIL: %s\n", rank, what);
    failures++;
  }
}

static float value(int rank, int i) { return (float)(rank * 1000 + i) * 0.25f; }

enum { n = 37 };

/* Every rank creates parts/<r> [n] (float32) and parts/<r>/... attributes; rank r writes its own. */
static int write_parts(lfs_ckpt *h, int size, int rank, char *err, size_t errlen) {
  float mine[n];
  for (int i = 0; i < n; i++) mine[i] = value(rank, i);
  const int64_t dims[1] = {n};
  for (int r = 0; r < size; r++) {
    char name[64];
    snprintf(name, sizeof name, "parts/%d", r);
    lfs_ckpt_set_writer(h, r == rank);
    if (lfs_ckpt_write_array(h, name, LFS_CKPT_F32, 1, dims, mine, err, errlen) ||
        lfs_ckpt_set_int(h, name, "owner", r, err, errlen))
      return -1;
  }
  return lfs_ckpt_set_text(h, "", "note", "written by every rank", err, errlen);
}

static void check_read_back(const char *path, int size, int rank) {
  char err[512];
  lfs_ckpt *h = lfs_ckpt_open(path, err, sizeof err);
  expect(h != NULL, err, rank);
  if (!h) return;
  expect(lfs_ckpt_info(h)->epoch == 2 && lfs_ckpt_info(h)->step == 5 &&
             lfs_ckpt_info(h)->world_size == size && !strcmp(lfs_ckpt_info(h)->config, "[run]\n"),
         "root attributes", rank);
  expect(lfs_ckpt_info(h)->created != NULL, "created is written", rank);
  int bad = 0;
  for (int r = 0; r < size; r++) {
    char name[64];
    float got[n];
    int64_t owner = -1;
    const int64_t dims[1] = {n};
    snprintf(name, sizeof name, "parts/%d", r);
    if (lfs_ckpt_read_array(h, name, LFS_CKPT_F32, 1, dims, got, err, sizeof err) ||
        lfs_ckpt_get_int(h, name, "owner", &owner, err, sizeof err)) {
      expect(0, err, rank);
      continue;
    }
    for (int i = 0; i < n; i++) bad += got[i] != value(r, i);
    bad += owner != r;
  }
  expect(bad == 0, "every rank's part reads back exactly", rank);
  /* every rank sees rank 0's creation time */
  char created[64] = "", mine[64];
  snprintf(created, sizeof created, "%s", lfs_ckpt_info(h)->created ? lfs_ckpt_info(h)->created : "");
  memcpy(mine, created, sizeof mine);
  MPI_Bcast(created, sizeof created, MPI_CHAR, 0, MPI_COMM_WORLD);
  expect(!strcmp(created, mine), "one created time", rank);
  lfs_ckpt_close(h);
}

static int entries(const char *dir) {
  DIR *d = opendir(dir);
  int count = 0;
  for (struct dirent *e; d && (e = readdir(d));) count += e->d_name[0] != '.';
  if (d) closedir(d);
  return count;
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank, size;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  char dir[64] = "ckpt_mpi_XXXXXX", path[128], err[512];
  if (rank == 0 && !mkdtemp(dir)) lfs_fatal("mkdtemp failed");
  MPI_Bcast(dir, sizeof dir, MPI_CHAR, 0, MPI_COMM_WORLD);
  snprintf(path, sizeof path, "%s/ckpt-e0002-s000005.h5", dir);
  const lfs_ckpt_meta meta = {.epoch = 2, .step = 5, .world_size = size, .config = "[run]\n",
                              .write_created = 1};

  if (!lfs_ckpt_collective_available()) {
    lfs_ckpt *h = lfs_ckpt_create_collective(path, &meta, MPI_COMM_WORLD, err, sizeof err);
    expect(!h && strstr(err, "serial"), "a serial build refuses collective writes", rank);
    if (rank == 0) printf("serial HDF5: collective create refused (%s)\n", err);
  } else {
    lfs_ckpt *h = lfs_ckpt_create_collective(path, &meta, MPI_COMM_WORLD, err, sizeof err);
    expect(h != NULL, err, rank);
    if (h) {
      lfs_ckpt_close(h); /* abandoned: nothing may be left */
      MPI_Barrier(MPI_COMM_WORLD);
      expect(entries(dir) == 0, "an abandoned collective write leaves no file", rank);
    }
    h = lfs_ckpt_create_collective(path, &meta, MPI_COMM_WORLD, err, sizeof err);
    int rc = !h || write_parts(h, size, rank, err, sizeof err);
    if (h && !rc) rc = lfs_ckpt_commit(h, err, sizeof err);
    else lfs_ckpt_close(h);
    expect(rc == 0, err, rank);
    MPI_Barrier(MPI_COMM_WORLD);
    expect(entries(dir) == 1, "one file after the commit, no temporary left", rank);
    check_read_back(path, size, rank);

    char missing[160];
    snprintf(missing, sizeof missing, "%s/no-such-dir/ckpt-e0001-s000001.h5", dir);
    h = lfs_ckpt_create_collective(missing, &meta, MPI_COMM_WORLD, err, sizeof err);
    expect(!h && strstr(err, "no-such-dir"), "a collective create in a missing directory fails", rank);
    if (rank == 0) printf("%d ranks wrote one checkpoint collectively; missing directory: %s\n", size, err);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  if (rank == 0) {
    unlink(path);
    rmdir(dir);
  }
  int total = 0;
  MPI_Allreduce(&failures, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  if (rank == 0) printf("%s\n", total ? "FAILED" : "all collective checkpoint checks passed");
  MPI_Finalize();
  return total ? 1 : 0;
}
