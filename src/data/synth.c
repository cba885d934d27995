/* synth.c: the synthetic-face dataset: option defaults and checks, identity
 * splits, the training order, pair selection, writing train.h5 and the two pair
 * sets, and the preview grid. Rendering one face is synth_face.c's.
 *
 * Files (DESIGN §6): train.h5 is a dataset shard, images uint8 [N*K, S, S, 3] in
 * a Philox-permuted order with labels 0..N-1; val_pairs.h5 and test_pairs.h5 are
 * pair sets named "synth_val" and "synth_test", images [2P, S, S, 3]. All three
 * are first written as DIR/NAME.new and renamed into place only when all three
 * are complete, so a failed run leaves any previous dataset untouched.
 * Rendering is parallel over images (OpenMP); train.h5 is appended by a writer
 * thread while the next batch renders. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/synth_internal.h"
#include "lfs/dataset.h"
#include "lfs/image.h"
#include "lfs/log.h"
#include "lfs/philox.h"
#include "lfs/synth.h"
#include "lfs/timer.h"

/* Images rendered between two appends: enough to keep every thread busy, small
 * enough to bound memory (256 images of 256x256 are 48 MiB). */
enum { batch_images = 256 };
/* A pair set is written in one piece: refuse sets that would not fit in memory comfortably. */
#define LFS_SYNTH_MAX_PAIR_BYTES ((int64_t)4 << 30)

void lfs_synth_defaults(lfs_synth_opts *o) {
  *o = (lfs_synth_opts){.seed = 1,
                        .size = 112,
                        .difficulty = 0.5f,
                        .identities = 1000,
                        .images_per_identity = 20,
                        .val_identities = 500,
                        .test_identities = 500,
                        .val_pairs = 3000,
                        .test_pairs = 3000,
                        .chunk = 64};
}

static int check_pairs(const char *option, int64_t pairs, int size, char *err, size_t errlen) {
  if (pairs < 2 || pairs > LFS_SYNTH_MAX_PAIRS || pairs % 2) {
    snprintf(err, errlen, "%s: %lld is not an even number of pairs in [2, %d]", option,
             (long long)pairs, LFS_SYNTH_MAX_PAIRS);
    return -1;
  }
  const int64_t image_bytes = 3 * (int64_t)size * size;
  if (2 * pairs * image_bytes > LFS_SYNTH_MAX_PAIR_BYTES) {
    snprintf(err, errlen,
             "%s: %lld pairs of %dx%d images need %.1f GiB of memory; at most %lld at this --size",
             option, (long long)pairs, size, size, 2.0 * pairs * image_bytes / (1 << 30),
             (long long)(LFS_SYNTH_MAX_PAIR_BYTES / (2 * image_bytes) / 2 * 2));
    return -1;
  }
  return 0;
}

static int check_identities(const char *option, int64_t n, char *err, size_t errlen) {
  if (n >= 2 && n <= LFS_SYNTH_MAX_IDENTITIES) return 0;
  snprintf(err, errlen, "%s: %lld is not a number of identities in [2, %d]", option, (long long)n,
           LFS_SYNTH_MAX_IDENTITIES);
  return -1;
}

int lfs_synth_check(const lfs_synth_opts *o, char *err, size_t errlen) {
  if (o->size < LFS_SYNTH_MIN_SIZE || o->size > LFS_SYNTH_MAX_SIZE) {
    snprintf(err, errlen, "--size: %d is not an image side in [%d, %d]", o->size,
             LFS_SYNTH_MIN_SIZE, LFS_SYNTH_MAX_SIZE);
    return -1;
  }
  if (!(o->difficulty >= 0.0f && o->difficulty <= 1.0f)) {
    snprintf(err, errlen, "--difficulty: %g is not in [0, 1]", (double)o->difficulty);
    return -1;
  }
  if (check_identities("--identities", o->identities, err, errlen) ||
      check_identities("--val-identities", o->val_identities, err, errlen) ||
      check_identities("--test-identities", o->test_identities, err, errlen))
    return -1;
  if (o->images_per_identity < 1 || o->images_per_identity > LFS_SYNTH_MAX_PER_IDENTITY) {
    snprintf(err, errlen, "--images-per-identity: %d is not in [1, %d]", o->images_per_identity,
             LFS_SYNTH_MAX_PER_IDENTITY);
    return -1;
  }
  if (o->identities * o->images_per_identity > LFS_SYNTH_MAX_TRAIN_IMAGES) {
    snprintf(err, errlen,
             "--identities x --images-per-identity: %lld x %d = %lld training images, more than %d",
             (long long)o->identities, o->images_per_identity,
             (long long)(o->identities * o->images_per_identity), LFS_SYNTH_MAX_TRAIN_IMAGES);
    return -1;
  }
  if (check_pairs("--val-pairs", o->val_pairs, o->size, err, errlen) ||
      check_pairs("--test-pairs", o->test_pairs, o->size, err, errlen))
    return -1;
  if (o->chunk < 1 || o->chunk > LFS_SYNTH_MAX_CHUNK) {
    snprintf(err, errlen, "--shard-chunk: %d is not a number of images in [1, %d]", o->chunk,
             LFS_SYNTH_MAX_CHUNK);
    return -1;
  }
  return 0;
}

/* ---- splits, order, pairs ---- */

uint32_t lfs_synth_identity(lfs_synth_split split, int64_t i) {
  LFS_ASSERT(i >= 0 && i < LFS_SYNTH_MAX_IDENTITIES);
  const uint32_t base[3] = {0, LFS_SYNTH_VAL_BASE, LFS_SYNTH_TEST_BASE};
  return base[split] + (uint32_t)i;
}

void lfs_synth_train_order(const lfs_synth_opts *o, uint64_t *order) {
  const lfs_rng rng = lfs_rng_make(o->seed, LFS_RNG_SYNTH, LFS_SYNTH_STREAM_ORDER, 0);
  lfs_rng_permutation(&rng, order, (size_t)(o->identities * o->images_per_identity));
}

/* Pair draws: block b of group 0 says which pair of pairs 2b, 2b+1 is genuine;
 * group 1 and 2 blocks p pick pair p's identities. */
int lfs_synth_pair(const lfs_synth_opts *o, lfs_synth_split split, int64_t p,
                   uint32_t identity[2], uint32_t image[2]) {
  LFS_ASSERT(split == LFS_SYNTH_VAL || split == LFS_SYNTH_TEST);
  const lfs_rng rng = lfs_rng_make(o->seed, LFS_RNG_SYNTH, LFS_SYNTH_STREAM_PAIRS, (uint32_t)split);
  const uint64_t group = (uint64_t)1 << 40;
  const uint64_t n = (uint64_t)(split == LFS_SYNTH_VAL ? o->val_identities : o->test_identities);
  const int same = (uint64_t)(p % 2) == lfs_rng_below(&rng, (uint64_t)p / 2, 2);
  const uint64_t first = lfs_rng_below(&rng, group + (uint64_t)p, n);
  uint64_t second = first;
  if (!same) {
    second = lfs_rng_below(&rng, 2 * group + (uint64_t)p, n - 1);
    second += second >= first; /* any other identity, uniformly */
  }
  identity[0] = lfs_synth_identity(split, (int64_t)first);
  identity[1] = lfs_synth_identity(split, (int64_t)second);
  image[0] = (uint32_t)(2 * p);
  image[1] = (uint32_t)(2 * p + 1);
  return same;
}

/* ---- rendering in parallel ---- */

/* images [count, S, S, 3]: image j is image imgs[j] of identity ids[j]. Each
 * image depends only on its own keys, so the schedule cannot change the bytes.
 * Returns the wall time it took. */
static double render_many(uint8_t *images, const lfs_synth_opts *o, int64_t count,
                          const uint32_t *ids, const uint32_t *imgs) {
  const size_t bytes = 3 * (size_t)o->size * o->size;
  const double start = lfs_now();
#pragma omp parallel
  {
    float *work = lfs_alloc_floats(lfs_synth_work_floats(o->size));
#pragma omp for schedule(dynamic, 4)
    for (int64_t j = 0; j < count; j++)
      lfs_synth_render(images + (size_t)j * bytes, work, o->size, o->difficulty, o->seed, ids[j],
                       imgs[j]);
    free(work);
  }
  return lfs_now() - start;
}

typedef struct {
  lfs_synth_progress_fn fn;
  void *ctx;
  int64_t done, total;
  double render_seconds;
} progress;

static void advance(progress *p, int64_t images) {
  p->done += images;
  if (p->fn) p->fn(p->ctx, p->done, p->total);
}

/* train.h5 is written by a second thread while the renderers fill the next
 * batch: two batch buffers, each either being filled (main thread) or full and
 * waiting for, or in, lfs_dataset_writer_append (writer thread). */
typedef struct {
  pthread_mutex_t mu;
  pthread_cond_t changed;
  lfs_dataset_writer *w;
  progress *prog;
  uint8_t *images[2];
  int32_t labels[2][batch_images];
  int64_t count[2];
  int full[2], stop, failed;
  char err[1024];
} train_pipe;

static void *train_writer(void *arg) {
  train_pipe *p = arg;
  for (int next = 0;; next ^= 1) {
    pthread_mutex_lock(&p->mu);
    while (!p->full[next] && !p->stop) pthread_cond_wait(&p->changed, &p->mu);
    const int have = p->full[next];
    pthread_mutex_unlock(&p->mu);
    if (!have) return NULL; /* stopped and drained */
    const int rc = lfs_dataset_writer_append(p->w, p->images[next], p->labels[next],
                                             p->count[next], p->err, sizeof p->err);
    if (rc == 0) advance(p->prog, p->count[next]);
    pthread_mutex_lock(&p->mu);
    p->full[next] = 0;
    p->failed |= rc != 0;
    pthread_cond_broadcast(&p->changed);
    pthread_mutex_unlock(&p->mu);
    if (rc != 0) return NULL;
  }
}

/* Renders the whole training set in the permuted order, handing each batch to
 * the writer thread. */
static void produce_train(train_pipe *p, const lfs_synth_opts *o) {
  const int64_t total = o->identities * o->images_per_identity;
  const uint64_t k = (uint64_t)o->images_per_identity;
  uint64_t *order = lfs_malloc((size_t)total * sizeof *order);
  uint32_t ids[batch_images], imgs[batch_images];
  lfs_synth_train_order(o, order);
  int slot = 0;
  for (int64_t first = 0; first < total; first += batch_images, slot ^= 1) {
    const int64_t count = total - first < batch_images ? total - first : batch_images;
    pthread_mutex_lock(&p->mu);
    while (p->full[slot] && !p->failed) pthread_cond_wait(&p->changed, &p->mu);
    const int failed = p->failed;
    pthread_mutex_unlock(&p->mu);
    if (failed) break;
    for (int64_t j = 0; j < count; j++) {
      p->labels[slot][j] = (int32_t)(order[first + j] / k);
      ids[j] = lfs_synth_identity(LFS_SYNTH_TRAIN, p->labels[slot][j]);
      imgs[j] = (uint32_t)(order[first + j] % k);
    }
    p->prog->render_seconds += render_many(p->images[slot], o, count, ids, imgs);
    pthread_mutex_lock(&p->mu);
    p->count[slot] = count;
    p->full[slot] = 1;
    pthread_cond_broadcast(&p->changed);
    pthread_mutex_unlock(&p->mu);
  }
  free(order);
}

static int write_train(const char *path, const lfs_synth_opts *o, progress *prog, char *err,
                       size_t errlen) {
  char source[256];
  snprintf(source, sizeof source,
           "lfsearch synth seed=%llu size=%d difficulty=%g identities=%lld images_per_identity=%d",
           (unsigned long long)o->seed, o->size, (double)o->difficulty, (long long)o->identities,
           o->images_per_identity);
  lfs_dataset_writer *w =
      lfs_dataset_writer_create(path, o->size, o->size, o->chunk, source, err, errlen);
  if (!w) return -1;
  train_pipe *p = lfs_calloc(1, sizeof *p);
  p->w = w, p->prog = prog;
  for (int i = 0; i < 2; i++) p->images[i] = lfs_malloc((size_t)batch_images * 3 * o->size * o->size);
  pthread_t writer;
  if (pthread_mutex_init(&p->mu, NULL) != 0 || pthread_cond_init(&p->changed, NULL) != 0 ||
      pthread_create(&writer, NULL, train_writer, p) != 0)
    lfs_fatal("cannot start the writer thread of %s", path);
  produce_train(p, o);
  pthread_mutex_lock(&p->mu);
  p->stop = 1;
  pthread_cond_broadcast(&p->changed);
  pthread_mutex_unlock(&p->mu);
  if (pthread_join(writer, NULL) != 0) lfs_fatal("cannot join the writer thread of %s", path);
  const int failed = p->failed;
  if (failed) snprintf(err, errlen, "%s", p->err);
  pthread_cond_destroy(&p->changed);
  pthread_mutex_destroy(&p->mu);
  free(p->images[0]), free(p->images[1]);
  free(p);
  if (failed) {
    lfs_dataset_writer_abort(w);
    return -1;
  }
  return lfs_dataset_writer_finish(w, (int32_t)o->identities, err, errlen);
}

static int write_pairs(const char *path, const char *name, lfs_synth_split split,
                       const lfs_synth_opts *o, progress *prog, char *err, size_t errlen) {
  const int64_t pairs = split == LFS_SYNTH_VAL ? o->val_pairs : o->test_pairs;
  const size_t bytes = 3 * (size_t)o->size * o->size;
  uint8_t *images = lfs_malloc((size_t)(2 * pairs) * bytes);
  uint8_t *issame = lfs_malloc((size_t)pairs);
  uint32_t *ids = lfs_malloc((size_t)(2 * pairs) * sizeof *ids);
  uint32_t *imgs = lfs_malloc((size_t)(2 * pairs) * sizeof *imgs);
  for (int64_t p = 0; p < pairs; p++)
    issame[p] = (uint8_t)lfs_synth_pair(o, split, p, ids + 2 * p, imgs + 2 * p);
  for (int64_t first = 0; first < 2 * pairs; first += batch_images) {
    const int64_t count = 2 * pairs - first < batch_images ? 2 * pairs - first : batch_images;
    prog->render_seconds += render_many(images + (size_t)first * bytes, o, count, ids + first, imgs + first);
    advance(prog, count);
  }
  const int rc = lfs_pairset_write(path, name, o->size, o->size, pairs, images, issame, err, errlen);
  free(imgs);
  free(ids);
  free(issame);
  free(images);
  return rc;
}

/* ---- the three files ---- */

enum { file_count = 3 };
static const char *const file_names[file_count] = {"train.h5", "val_pairs.h5", "test_pairs.h5"};

static int join(char *out, size_t len, const char *dir, const char *name, const char *suffix,
                char *err, size_t errlen) {
  if ((size_t)snprintf(out, len, "%s/%s%s", dir, name, suffix) < len) return 0;
  snprintf(err, errlen, "%s: directory name too long", dir);
  return -1;
}

int lfs_synth_write(const char *dir, const lfs_synth_opts *o, lfs_synth_progress_fn fn, void *ctx,
                    lfs_synth_summary *summary, char *err, size_t errlen) {
  if (lfs_synth_check(o, err, errlen) != 0) return -1;
  char staged[file_count][4096], final[file_count][4096];
  for (int i = 0; i < file_count; i++)
    if (join(staged[i], sizeof staged[i], dir, file_names[i], ".new", err, errlen) ||
        join(final[i], sizeof final[i], dir, file_names[i], "", err, errlen))
      return -1;
  const double start = lfs_now();
  progress prog = {fn, ctx, 0,
                   o->identities * o->images_per_identity + 2 * (o->val_pairs + o->test_pairs), 0};
  int done = 0, rc = write_train(staged[0], o, &prog, err, errlen);
  if (rc == 0) done = 1, rc = write_pairs(staged[1], "synth_val", LFS_SYNTH_VAL, o, &prog, err, errlen);
  if (rc == 0) done = 2, rc = write_pairs(staged[2], "synth_test", LFS_SYNTH_TEST, o, &prog, err, errlen);
  if (rc == 0) done = 3;
  for (int i = 0; rc == 0 && i < file_count; i++)
    if (rename(staged[i], final[i]) != 0) {
      snprintf(err, errlen, "%s: cannot rename to %s: %s", staged[i], final[i], strerror(errno));
      rc = -1;
    }
  if (rc != 0) {
    for (int i = 0; i < done; i++) remove(staged[i]); /* already renamed ones are gone */
    return -1;
  }
  if (summary) {
    summary->images = prog.total;
    summary->identities = o->identities + o->val_identities + o->test_identities;
    summary->pairs = o->val_pairs + o->test_pairs;
    summary->seconds = lfs_now() - start;
    summary->render_seconds = prog.render_seconds;
  }
  return 0;
}

/* ---- preview ---- */

static void fill_rect(uint8_t *img, int width, int x0, int y0, int w, int h, uint8_t value) {
  for (int y = y0; y < y0 + h; y++) memset(img + 3 * ((size_t)y * width + x0), value, 3 * (size_t)w);
}

/* Draws the decimal number at (x0, y0), `scale` pixels per font pixel. */
static void draw_number(uint8_t *img, int width, int x0, int y0, int scale, unsigned number) {
  char text[16];
  const int len = snprintf(text, sizeof text, "%u", number);
  for (int i = 0; i < len; i++)
    for (int r = 0; r < 5; r++)
      for (int c = 0; c < 3; c++)
        if (lfs_synth_digits[text[i] - '0'][r] >> (2 - c) & 1)
          fill_rect(img, width, x0 + (4 * i + c) * scale, y0 + r * scale, scale, scale, 235);
}

int lfs_synth_preview(const char *path, const lfs_synth_opts *o, int rows, int cols, char *err,
                      size_t errlen) {
  if (lfs_synth_check(o, err, errlen) != 0) return -1;
  if (rows > o->identities) rows = (int)o->identities;
  const int s = o->size, mag = (96 + s - 1) / s; /* tiles at least 96 pixels wide */
  const int tile = s * mag, gap = 4, font = 4;
  char widest[16];
  const int digits = snprintf(widest, sizeof widest, "%d", rows - 1);
  const int label = (4 * digits + 1) * font + gap;
  const int width = label + cols * (tile + gap) + gap, height = rows * (tile + gap) + gap;
  uint8_t *img = lfs_malloc(3 * (size_t)width * height);
  memset(img, 40, 3 * (size_t)width * height);
  const size_t bytes = 3 * (size_t)s * s;
  uint8_t *faces = lfs_malloc((size_t)rows * cols * bytes);
  uint32_t *ids = lfs_malloc((size_t)rows * cols * sizeof *ids);
  uint32_t *imgs = lfs_malloc((size_t)rows * cols * sizeof *imgs);
  for (int r = 0; r < rows; r++)
    for (int c = 0; c < cols; c++)
      ids[r * cols + c] = lfs_synth_identity(LFS_SYNTH_TRAIN, r), imgs[r * cols + c] = (uint32_t)c;
  render_many(faces, o, (int64_t)rows * cols, ids, imgs);
  for (int r = 0; r < rows; r++) {
    const int y0 = gap + r * (tile + gap);
    draw_number(img, width, gap, y0 + (tile - 5 * font) / 2, font, (unsigned)r);
    for (int c = 0; c < cols; c++) {
      const uint8_t *face = faces + (size_t)(r * cols + c) * bytes;
      const int x0 = label + gap + c * (tile + gap);
      for (int y = 0; y < tile; y++)
        for (int x = 0; x < tile; x++)
          memcpy(img + 3 * ((size_t)(y0 + y) * width + x0 + x),
                 face + 3 * ((size_t)(y / mag) * s + x / mag), 3);
    }
  }
  const int rc = lfs_image_write_png(path, img, height, width, err, errlen);
  free(imgs);
  free(ids);
  free(faces);
  free(img);
  return rc;
}
