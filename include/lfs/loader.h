/* loader.h: the training data loader. Each rank reads its slice of every global
 * batch from a dataset (shard or manifest), in an epoch order that depends only
 * on (seed, epoch): every candidate of a search sees the same order.
 *
 * Order (the definition; tests/unit/test_loader.c rebuilds it independently).
 * N images, C = lfs_dataset_chunk() images per chunk, K = ceil(N / C) chunks;
 * chunk k is images [kC, min((k + 1)C, N)), so only the last may be shorter.
 *  1. The stream of epoch e is the chunks, each in ascending order, laid end to
 *     end in the order of lfs_rng_permutation(lfs_rng_make(seed,
 *     LFS_RNG_DATA_ORDER, e, 0), K); the short chunk goes wherever it falls.
 *  2. The stream is cut into windows of S = `shuffle` images (0: 16 chunks; S is
 *     capped at N), the last window shorter when S does not divide N. Window w
 *     is shuffled by pi_w = lfs_rng_permutation(lfs_rng_make(seed,
 *     LFS_RNG_DATA_ORDER, e, w + 1), its size): position wS + o of the epoch
 *     holds stream element wS + pi_w[o].
 * Position p of an epoch therefore maps to an image by a pure function
 * (lfs_loader_index), so (epoch, step) is all it takes to resume. Epochs are
 * below 2^32 (a 32-bit counter word).
 * Global batch b is positions [b*B, (b+1)*B); rank r of R takes the r-th of R
 * equal parts, positions [b*B + r*B/R, b*B + (r+1)*B/R). An epoch has floor(N/B)
 * steps; the last N mod B positions (fewer than B images) are dropped.
 * Augmentation: image i of epoch e is mirrored left-right when flip is on and
 * the top bit of lfs_rng_u32(lfs_rng_make(seed, LFS_RNG_FLIP, e, 0), i) is set.
 * Output: float NCHW RGB, (x - 127.5) / 128 (exact in float).
 * A background thread prefetches the next `prefetch` batches (double buffering
 * at 2); it reads through dataset.h (which takes lfs_h5_lock) and never calls
 * MPI. Reads are chunk-friendly: a slice's indices are sorted and neighbours
 * read together. lfs_loader_index may be called from any thread; the other
 * functions of one loader from one thread at a time. */
#ifndef LFS_LOADER_H
#define LFS_LOADER_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
  const char *path;   /* dataset shard or manifest */
  int global_batch;   /* B, divisible by ranks */
  int rank, ranks;    /* this rank's part of each global batch */
  uint64_t seed;
  int shuffle;        /* window in images (0: 16 chunks) */
  int flip;           /* random horizontal flip */
  int prefetch;       /* batches prefetched (0: synchronous, for tests) */
} lfs_loader_cfg;

typedef struct lfs_loader lfs_loader;

lfs_loader *lfs_loader_open(const lfs_loader_cfg *cfg, char *err, size_t errlen);
void lfs_loader_close(lfs_loader *l);
int64_t lfs_loader_steps_per_epoch(const lfs_loader *l);
int lfs_loader_local_batch(const lfs_loader *l);
int lfs_loader_height(const lfs_loader *l);
int lfs_loader_width(const lfs_loader *l);
/* The next batch goes from (epoch, step); the loader starts at (0, 0). Prefetched
 * batches are discarded. A step past the end of the epoch carries into the next. */
void lfs_loader_seek(lfs_loader *l, int64_t epoch, int64_t step);
/* Fills images [local_batch, 3, H, W] and labels [local_batch] with batch (epoch, step)
 * and advances (to the next epoch after the last step). Optionally reports which
 * dataset indices it returned (indices [local_batch]) and the batch's epoch and
 * step; any of labels, indices, epoch, step may be NULL. -1 with a message
 * naming the file on a read error (e.g. a label >= num_classes); the loader
 * stays at that batch, so the next call retries it. */
int lfs_loader_next(lfs_loader *l, float *images, int32_t *labels, int64_t *indices,
                    int64_t *epoch, int64_t *step, char *err, size_t errlen);
/* Dataset index at position p of epoch e (the order above); -1 when p is not
 * in [0, N) or e not in [0, 2^32). */
int64_t lfs_loader_index(const lfs_loader *l, int64_t epoch, int64_t position);

/* The network input of one image, as the loader makes it: dst [3, h, w] float,
 * (v - 127.5) / 128, from src [h, w, 3] RGB uint8, mirrored left-right if flip. */
void lfs_image_to_input(float *dst, const uint8_t *src, int h, int w, int flip);

#endif
