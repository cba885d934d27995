/* test_loader_mpi.c: under R ranks, the loader's per-rank slices of every
 * global batch are disjoint and together are exactly the batch a 1-rank loader
 * returns, step by step for two epochs (and into a third); a loader that
 * seeks to (epoch 1, step k) returns the same batches as one that never stopped.
 *
 * Rank 0 writes the dataset (every pixel a known function of the image index)
 * in the working directory, under a name holding its process id; after a
 * barrier every rank opens it. Each rank runs its R-rank loader (prefetching)
 * beside a 1-rank loader (synchronous), checks that its slice is its part of
 * the 1-rank batch, byte for byte, and the indices of all slices are
 * all-gathered to check disjointness and the union. Failures are all-reduced;
 * exit 0 or 1. */
#define _POSIX_C_SOURCE 200809L
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lfs/dataset.h"
#include "lfs/loader.h"

/* 203 images in chunks of 5 (the last holds 3); global batch 24: 8 steps, 11 dropped. */
enum { N = 203, H = 4, W = 6, CHUNK = 5, CLASSES = 13, B = 24, RESUME_STEP = 3 };
/* "test_loader_mpi-<pid of rank 0>.h5": runs under 2 and 4 ranks may share a directory */
static char data_path[64];
enum { IMAGE = 3 * H * W };

static int failures = 0;

static void expect(int ok, const char *what, int rank) {
  if (!ok) {
    fprintf(stderr, "[rank %d] FAIL: %s\n", rank, what);
    failures++;
  }
}

static uint8_t pixel(int64_t index, int k) { return (uint8_t)((index * 37 + k * 11) % 251); }
static int32_t label_of(int64_t index) { return (int32_t)(index % CLASSES); }

static int write_dataset(void) {
  char err[512];
  lfs_dataset_writer *w =
      lfs_dataset_writer_create(data_path, H, W, CHUNK, "test_loader_mpi", err, sizeof err);
  if (!w) {
    fprintf(stderr, "%s\n", err);
    return -1;
  }
  uint8_t img[IMAGE];
  for (int64_t i = 0; i < N; i++) {
    for (int k = 0; k < IMAGE; k++) img[k] = pixel(i, k);
    const int32_t label = label_of(i);
    if (lfs_dataset_writer_append(w, img, &label, 1, err, sizeof err) != 0) {
      fprintf(stderr, "%s\n", err);
      lfs_dataset_writer_abort(w);
      return -1;
    }
  }
  if (lfs_dataset_writer_finish(w, CLASSES, err, sizeof err) != 0) {
    fprintf(stderr, "%s\n", err);
    return -1;
  }
  return 0;
}

typedef struct {
  float images[B * IMAGE]; /* [n, 3, H, W]; n = B or B/R */
  int32_t labels[B];
  int64_t indices[B];
  int64_t epoch, step;
} batch;

static lfs_loader *open_loader(int rank, int ranks, int prefetch) {
  char err[512];
  const lfs_loader_cfg cfg = {.path = data_path, .global_batch = B, .rank = rank, .ranks = ranks,
                              .seed = 2024, .shuffle = 17, .flip = 1, .prefetch = prefetch};
  lfs_loader *l = lfs_loader_open(&cfg, err, sizeof err);
  if (!l) fprintf(stderr, "[rank %d] %s\n", rank, err);
  return l;
}

static int next(lfs_loader *l, batch *b, int rank) {
  char err[512];
  if (lfs_loader_next(l, b->images, b->labels, b->indices, &b->epoch, &b->step, err,
                      sizeof err) == 0)
    return 0;
  fprintf(stderr, "[rank %d] lfs_loader_next: %s\n", rank, err);
  failures++;
  return -1;
}

static float normalised(int64_t index, int y, int x, int c) {
  return ((float)pixel(index, (y * W + x) * 3 + c) - 127.5f) / 128.0f;
}

/* Labels are the dataset's; the first image is the dataset's pixels, as they are or mirrored. */
static int plausible(const batch *b) {
  int plain = 1, mirrored = 1;
  for (int c = 0; c < 3; c++)
    for (int y = 0; y < H; y++)
      for (int x = 0; x < W; x++) {
        const float got = b->images[(c * H + y) * W + x];
        plain &= got == normalised(b->indices[0], y, x, c);
        mirrored &= got == normalised(b->indices[0], y, W - 1 - x, c);
      }
  return (plain || mirrored) && b->labels[0] == label_of(b->indices[0]);
}

/* This rank's slice is part `rank` of the 1-rank batch, and the gathered
 * slices are the whole batch with no index twice. */
static void check_step(const batch *mine, const batch *whole, int rank, int ranks) {
  const int local = B / ranks, off = rank * local;
  char what[160];
  snprintf(what, sizeof what, "epoch %lld step %lld", (long long)whole->epoch,
           (long long)whole->step);
  expect(mine->epoch == whole->epoch && mine->step == whole->step, what, rank);
  expect(!memcmp(mine->indices, whole->indices + off, (size_t)local * sizeof(int64_t)) &&
             !memcmp(mine->labels, whole->labels + off, (size_t)local * sizeof(int32_t)) &&
             !memcmp(mine->images, whole->images + (size_t)off * IMAGE,
                     (size_t)local * IMAGE * sizeof(float)),
         what, rank);
  expect(plausible(whole), "the 1-rank batch holds the dataset's pixels and labels", rank);
  int64_t all[B];
  MPI_Allgather(mine->indices, local, MPI_INT64_T, all, local, MPI_INT64_T, MPI_COMM_WORLD);
  int union_ok = !memcmp(all, whole->indices, sizeof all), disjoint = 1;
  for (int i = 0; i < B; i++)
    for (int j = 0; j < i; j++) disjoint &= all[i] != all[j];
  snprintf(what, sizeof what, "epoch %lld step %lld: union of %d slices", (long long)whole->epoch,
           (long long)whole->step, ranks);
  expect(union_ok, what, rank);
  expect(disjoint, "slices overlap", rank);
}

static void run(int rank, int ranks) {
  lfs_loader *mine = open_loader(rank, ranks, 2), *whole = open_loader(0, 1, 0),
             *resumed = open_loader(rank, ranks, 3);
  if (!mine || !whole || !resumed) {
    failures++;
    lfs_loader_close(mine), lfs_loader_close(whole), lfs_loader_close(resumed);
    return;
  }
  const int64_t steps = lfs_loader_steps_per_epoch(mine);
  expect(steps == N / B && lfs_loader_steps_per_epoch(whole) == steps, "steps per epoch", rank);
  expect(lfs_loader_local_batch(mine) == B / ranks, "local batch", rank);
  /* epochs 0 and 1 and two steps of 2; the slices of epoch 1 from RESUME_STEP on are kept */
  const int64_t total = 2 * steps + 2, kept_from = steps + RESUME_STEP;
  batch *kept = calloc((size_t)(total - kept_from), sizeof *kept);
  batch *m = calloc(1, sizeof *m), *w = calloc(1, sizeof *w);
  for (int64_t s = 0; s < total; s++) {
    if (next(mine, m, rank) || next(whole, w, rank)) break;
    check_step(m, w, rank, ranks);
    if (s >= kept_from) kept[s - kept_from] = *m;
  }
  lfs_loader_seek(resumed, 1, RESUME_STEP);
  for (int64_t s = kept_from; s < total; s++) {
    if (next(resumed, m, rank)) break;
    char what[128];
    snprintf(what, sizeof what, "resumed at (1, %d): batch (%lld, %lld) differs", RESUME_STEP,
             (long long)m->epoch, (long long)m->step);
    expect(!memcmp(m, &kept[s - kept_from], sizeof *m), what, rank);
  }
  if (rank == 0)
    printf("%d ranks: %lld steps checked, resume at (1, %d) checked for %lld steps\n", ranks,
           (long long)total, RESUME_STEP, (long long)(total - kept_from));
  free(kept), free(m), free(w);
  lfs_loader_close(mine), lfs_loader_close(whole), lfs_loader_close(resumed);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank, size;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (size < 2 || B % size != 0) {
    if (rank == 0) fprintf(stderr, "test_loader_mpi needs 2, 3, 4, 6, ... ranks dividing %d\n", B);
    MPI_Finalize();
    return 99;
  }
  snprintf(data_path, sizeof data_path, "test_loader_mpi-%ld.h5", (long)getpid());
  MPI_Bcast(data_path, sizeof data_path, MPI_CHAR, 0, MPI_COMM_WORLD);
  int written = rank == 0 ? write_dataset() == 0 : 1;
  MPI_Bcast(&written, 1, MPI_INT, 0, MPI_COMM_WORLD); /* also the barrier before reading */
  if (written)
    run(rank, size);
  else
    failures++;
  int all = 0;
  MPI_Allreduce(&failures, &all, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  if (rank == 0) {
    remove(data_path);
    printf("%s: %d failures on %d ranks\n", all ? "FAIL" : "PASS", all, size);
  }
  MPI_Finalize();
  return all ? 1 : 0;
}
