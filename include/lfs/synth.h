/* synth.h: the procedural synthetic-face generator behind `lfsearch synth`
 * (DESIGN §6), the embedded default dataset.
 *
 * A face is a pure function of (seed, size, difficulty, identity, image):
 * identity-level parameters (face shape, skin tone, eye/brow/nose/mouth geometry
 * and colour, hair, glasses, beard) are drawn from the Philox stream keyed by
 * (seed, identity); per-image parameters (pose, lighting, expression, background,
 * noise, occasional occlusion) from the stream keyed by (seed, identity, image).
 * Any image can therefore be rendered alone, in any order, on any thread, and
 * the output never depends on the thread count.
 *
 * Identities are numbered globally so that the three splits never share one:
 *   training   identities [0, N)                 (their labels are 0..N-1)
 *   validation identities VAL_BASE + [0, V)
 *   test       identities TEST_BASE + [0, T)
 * The held-out splits do not depend on N, so the validation and test pair sets
 * stay the same when only the training set grows. Image k of a training identity
 * has image number k; pair p of a held-out split uses image numbers 2p and 2p+1. */
#ifndef LFS_SYNTH_H
#define LFS_SYNTH_H

#include <stddef.h>
#include <stdint.h>

#define LFS_SYNTH_VAL_BASE 0x40000000u
#define LFS_SYNTH_TEST_BASE 0x80000000u

/* Ranges accepted by lfs_synth_check (inclusive). */
#define LFS_SYNTH_MIN_SIZE 16
#define LFS_SYNTH_MAX_SIZE 256
#define LFS_SYNTH_MAX_IDENTITIES 10000000   /* per split; at least 2 */
#define LFS_SYNTH_MAX_PER_IDENTITY 100000
#define LFS_SYNTH_MAX_TRAIN_IMAGES 100000000 /* N * K */
#define LFS_SYNTH_MAX_PAIRS 100000          /* per pair set; even, at least 2 */
#define LFS_SYNTH_MAX_CHUNK 4096

typedef struct {
  uint64_t seed;
  int size;                 /* S: images are RGB [S, S, 3] */
  float difficulty;         /* 0..1: scales all per-image variation */
  int64_t identities;       /* N training identities */
  int images_per_identity;  /* K */
  int64_t val_identities;   /* V */
  int64_t test_identities;  /* T */
  int64_t val_pairs;        /* P */
  int64_t test_pairs;       /* Q */
  int chunk;                /* images per HDF5 chunk of train.h5 */
} lfs_synth_opts;

typedef enum { LFS_SYNTH_TRAIN = 0, LFS_SYNTH_VAL = 1, LFS_SYNTH_TEST = 2 } lfs_synth_split;

/* The defaults of `lfsearch synth` (see its --help). */
void lfs_synth_defaults(lfs_synth_opts *o);
/* 0, or -1 with a message naming the offending command-line option and its range. */
int lfs_synth_check(const lfs_synth_opts *o, char *err, size_t errlen);

/* ---- rendering ---- */
/* Floats of scratch memory lfs_synth_render needs for images of side `size`. */
size_t lfs_synth_work_floats(int size);
/* Renders image `image` of global identity `identity`: rgb [size, size, 3].
 * work: lfs_synth_work_floats(size) floats, private to the calling thread. */
void lfs_synth_render(uint8_t *rgb, float *work, int size, float difficulty, uint64_t seed,
                      uint32_t identity, uint32_t image);

/* ---- splits ---- */
/* Global identity number of the i-th identity of a split. */
uint32_t lfs_synth_identity(lfs_synth_split split, int64_t i);
/* The order of train.h5: row j holds image order[j] % K of training identity
 * order[j] / K (a Philox permutation of 0..N*K-1, so sequential reads mix
 * identities). order [N * K]. */
void lfs_synth_train_order(const lfs_synth_opts *o, uint64_t *order);
/* Pair p of the validation or test pair set: the global identity and image
 * number of its two images (rows 2p and 2p+1); returns issame. Pairs come in
 * twos, one genuine and one impostor in random order, so every even-length run
 * of pairs is exactly half genuine. */
int lfs_synth_pair(const lfs_synth_opts *o, lfs_synth_split split, int64_t p,
                   uint32_t identity[2], uint32_t image[2]);

/* ---- writing ---- */
/* Called from the writing thread after each batch of images. */
typedef void (*lfs_synth_progress_fn)(void *ctx, int64_t done, int64_t total);

typedef struct {
  int64_t images;      /* rendered and written, all three files */
  int64_t identities;  /* N + V + T */
  int64_t pairs;       /* P + Q */
  double seconds;      /* wall time of the whole write */
  double render_seconds; /* wall time spent rendering (the rest is HDF5 and the disk) */
} lfs_synth_summary;

/* Writes dir/train.h5, dir/val_pairs.h5 and dir/test_pairs.h5 (dir must exist).
 * Each file is written under a temporary name and renamed when complete, so an
 * existing file is replaced only by a finished one. Renders with OpenMP's
 * current thread count; the files are byte-identical whatever it is. */
int lfs_synth_write(const char *dir, const lfs_synth_opts *o, lfs_synth_progress_fn progress,
                    void *ctx, lfs_synth_summary *summary, char *err, size_t errlen);

/* Writes a PNG grid: row r shows images 0..cols-1 of training identity r
 * (r < rows), each magnified to a readable size, with the identity number drawn
 * at the left of the row. */
int lfs_synth_preview(const char *path, const lfs_synth_opts *o, int rows, int cols, char *err,
                      size_t errlen);

#endif
