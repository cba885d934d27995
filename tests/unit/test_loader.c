/* test_loader.c: the training loader (src/data/loader.c) on small datasets
 * written with the dataset writer. Every pixel is a known function of the
 * image's dataset index, so each returned image can be checked exactly.
 *
 * Checked: an epoch visits every used position once (no index twice, the dropped
 * remainder < B); the order is chunks in permuted order (the partial last chunk
 * included) shuffled within windows; it differs between epochs and seeds and is
 * the same across instances; lfs_loader_index agrees with what next returns;
 * seek equals stepping; prefetch on and off give identical bytes, across seeks;
 * flips are deterministic, keyed by epoch and about half; normalisation is exact;
 * a manifest of two shards reads like one dataset; bad labels, truncated or
 * corrupt files and bad configurations are errors with messages, not crashes. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <hdf5.h>

#include "lfs/dataset.h"
#include "lfs/loader.h"
#include "lfs/philox.h"

/* The test dataset: N images of H x W (not square, to catch swapped axes), in
 * chunks of CHUNK (N is not a multiple of it, so the last chunk is partial). */
enum { N = 94, H = 6, W = 8, CHUNK = 7, CLASSES = 10 };
#define DATA_PATH "test_loader-data.h5"

static uint8_t pixel(int64_t index, int y, int x, int c) {
  return (uint8_t)((index * 31 + y * 17 + x * 5 + c * 80) % 256);
}

static int32_t label_of(int64_t index) { return (int32_t)((index * 3) % CLASSES); }

/* Writes images [first, first + n) of the pixel function as one shard. */
static void write_dataset(const char *path, int64_t first, int64_t n, int chunk) {
  char err[512];
  lfs_dataset_writer *w =
      lfs_dataset_writer_create(path, H, W, chunk, "test_loader", err, sizeof err);
  if (!w) fail_msg("%s", err);
  uint8_t img[H * W * 3];
  for (int64_t i = first; i < first + n; i++) {
    for (int y = 0; y < H; y++)
      for (int x = 0; x < W; x++)
        for (int c = 0; c < 3; c++) img[(y * W + x) * 3 + c] = pixel(i, y, x, c);
    const int32_t label = label_of(i);
    if (lfs_dataset_writer_append(w, img, &label, 1, err, sizeof err) != 0) fail_msg("%s", err);
  }
  if (lfs_dataset_writer_finish(w, CLASSES, err, sizeof err) != 0) fail_msg("%s", err);
}

static int setup_data(void **state) {
  (void)state;
  write_dataset(DATA_PATH, 0, N, CHUNK);
  return 0;
}

/* Also the files of tests that failed before cleaning up after themselves. */
static int teardown_data(void **state) {
  (void)state;
  const char *files[] = {DATA_PATH, "test_loader-known.h5", "test_loader-shard0.h5",
                         "test_loader-shard1.h5", "test_loader-manifest.h5",
                         "test_loader-badlabel.h5", "test_loader-broken.h5"};
  for (size_t k = 0; k < sizeof files / sizeof files[0]; k++) remove(files[k]);
  return 0;
}

static lfs_loader_cfg base_cfg(int batch) {
  return (lfs_loader_cfg){.path = DATA_PATH, .global_batch = batch, .rank = 0, .ranks = 1,
                          .seed = 7, .shuffle = 20, .flip = 1, .prefetch = 0};
}

static lfs_loader *open_ok(const lfs_loader_cfg *cfg) {
  char err[512];
  lfs_loader *l = lfs_loader_open(cfg, err, sizeof err);
  if (!l) fail_msg("lfs_loader_open: %s", err);
  return l;
}

/* One batch as the loader returns it. */
typedef struct {
  float *images;
  int32_t *labels;
  int64_t *indices;
  int64_t epoch, step;
} batch;

static batch batch_new(const lfs_loader *l) {
  const int b = lfs_loader_local_batch(l);
  return (batch){.images = calloc((size_t)b * 3 * H * W, sizeof(float)),
                 .labels = calloc((size_t)b, sizeof(int32_t)),
                 .indices = calloc((size_t)b, sizeof(int64_t))};
}

static void batch_free(batch *b) { free(b->images), free(b->labels), free(b->indices); }

static void next_ok(lfs_loader *l, batch *b) {
  char err[512];
  if (lfs_loader_next(l, b->images, b->labels, b->indices, &b->epoch, &b->step, err,
                      sizeof err) != 0)
    fail_msg("lfs_loader_next: %s", err);
}

static int batches_equal(const batch *a, const batch *b, int n) {
  return a->epoch == b->epoch && a->step == b->step &&
         !memcmp(a->images, b->images, (size_t)n * 3 * H * W * sizeof(float)) &&
         !memcmp(a->labels, b->labels, (size_t)n * sizeof(int32_t)) &&
         !memcmp(a->indices, b->indices, (size_t)n * sizeof(int64_t));
}

static float normalised(uint8_t v) { return (float)(((double)v - 127.5) / 128.0); }

/* 0: image k of b is dataset image `index` as stored; 1: mirrored; -1: neither. */
static int image_matches(const batch *b, int k, int64_t index) {
  const float *img = b->images + (size_t)k * 3 * H * W;
  int plain = 1, mirrored = 1;
  for (int c = 0; c < 3; c++)
    for (int y = 0; y < H; y++)
      for (int x = 0; x < W; x++) {
        const float got = img[(c * H + y) * W + x];
        plain &= got == normalised(pixel(index, y, x, c));
        mirrored &= got == normalised(pixel(index, y, W - 1 - x, c));
      }
  return plain ? 0 : mirrored ? 1 : -1;
}

/* Runs a whole epoch and returns the indices in order (steps * B of them). */
static int64_t *epoch_indices(lfs_loader *l, int64_t epoch) {
  const int64_t steps = lfs_loader_steps_per_epoch(l);
  const int b = lfs_loader_local_batch(l);
  int64_t *out = calloc((size_t)(steps * b), sizeof *out);
  batch bt = batch_new(l);
  lfs_loader_seek(l, epoch, 0);
  for (int64_t s = 0; s < steps; s++) {
    next_ok(l, &bt);
    assert_int_equal(bt.epoch, epoch);
    assert_int_equal(bt.step, s);
    for (int k = 0; k < b; k++) {
      out[s * b + k] = bt.indices[k];
      assert_int_equal(bt.labels[k], label_of(bt.indices[k]));
      if (image_matches(&bt, k, bt.indices[k]) < 0)
        fail_msg("epoch %lld step %lld image %d (index %lld): pixels are not the dataset's",
                 (long long)epoch, (long long)s, k, (long long)bt.indices[k]);
    }
  }
  batch_free(&bt);
  return out;
}

static void test_epoch_is_a_permutation(void **state) {
  (void)state;
  for (int batch_size = 1; batch_size <= 16; batch_size += 5) {
    lfs_loader_cfg cfg = base_cfg(batch_size);
    lfs_loader *l = open_ok(&cfg);
    const int64_t steps = lfs_loader_steps_per_epoch(l);
    assert_int_equal(steps, N / batch_size);
    assert_true(N - steps * batch_size < batch_size); /* the dropped remainder */
    for (int64_t e = 0; e < 3; e++) {
      int64_t *idx = epoch_indices(l, e);
      int seen[N] = {0};
      for (int64_t p = 0; p < steps * batch_size; p++) {
        assert_true(idx[p] >= 0 && idx[p] < N);
        if (seen[idx[p]]++)
          fail_msg("epoch %lld: index %lld twice", (long long)e, (long long)idx[p]);
        assert_int_equal(lfs_loader_index(l, e, p), idx[p]);
      }
      /* the dropped positions hold exactly the images not seen */
      for (int64_t p = steps * batch_size; p < N; p++) {
        const int64_t i = lfs_loader_index(l, e, p);
        assert_true(i >= 0 && i < N && !seen[i]);
        seen[i] = 1;
      }
      free(idx);
    }
    assert_int_equal(lfs_loader_index(l, 0, N), -1);
    assert_int_equal(lfs_loader_index(l, -1, 0), -1);
    lfs_loader_close(l);
  }
}

/* shuffle = 1: the stream is the chunks in permuted order, each ascending and
 * whole, the last one (3 images) included. */
static void test_chunk_order(void **state) {
  (void)state;
  lfs_loader_cfg cfg = base_cfg(4);
  cfg.shuffle = 1;
  lfs_loader *l = open_ok(&cfg);
  for (int64_t e = 0; e < 4; e++) {
    int64_t p = 0;
    int chunks_seen[(N + CHUNK - 1) / CHUNK] = {0};
    while (p < N) {
      const int64_t start = lfs_loader_index(l, e, p);
      assert_int_equal(start % CHUNK, 0);
      const int64_t chunk = start / CHUNK, len = start + CHUNK <= N ? CHUNK : N - start;
      assert_int_equal(chunks_seen[chunk]++, 0);
      for (int64_t k = 0; k < len; k++) assert_int_equal(lfs_loader_index(l, e, p + k), start + k);
      p += len;
    }
    assert_int_equal(p, N);
  }
  /* the chunk order is not the identity and changes with the epoch */
  int identity = 1, same = 1;
  for (int64_t p = 0; p < N; p++) {
    identity &= lfs_loader_index(l, 0, p) == p;
    same &= lfs_loader_index(l, 0, p) == lfs_loader_index(l, 1, p);
  }
  assert_false(identity);
  assert_false(same);
  lfs_loader_close(l);
}

/* Windows of 20 positions (the last one holds 14) hold exactly the images of
 * the same positions of the unshuffled chunk stream, and are shuffled. */
static void test_windows_shuffle_the_stream(void **state) {
  (void)state;
  lfs_loader_cfg cfg = base_cfg(4);
  cfg.shuffle = 1;
  lfs_loader *stream = open_ok(&cfg);
  cfg.shuffle = 20;
  lfs_loader *shuffled = open_ok(&cfg);
  for (int64_t e = 0; e < 3; e++) {
    int moved = 0;
    for (int64_t w0 = 0; w0 < N; w0 += 20) {
      const int64_t w1 = w0 + 20 < N ? w0 + 20 : N;
      int in_window[N] = {0};
      for (int64_t p = w0; p < w1; p++) in_window[lfs_loader_index(stream, e, p)] = 1;
      for (int64_t p = w0; p < w1; p++) {
        const int64_t i = lfs_loader_index(shuffled, e, p);
        assert_true(in_window[i]);
        in_window[i] = 0;
        moved += i != lfs_loader_index(stream, e, p);
      }
    }
    assert_true(moved > N / 2);
  }
  lfs_loader_close(stream);
  lfs_loader_close(shuffled);
}

/* The order exactly as loader.h defines it, built the slow way: the stream is
 * the chunks concatenated in the order of the (seed, epoch, 0) permutation,
 * then window w (`window` positions, the last one shorter) is permuted by the
 * (seed, epoch, w + 1) permutation: position w*window + o holds stream element
 * w*window + perm[o]. */
static void spec_order(int64_t *order, uint64_t seed, uint32_t epoch, int64_t n, int chunk,
                       int64_t window) {
  const int64_t nchunks = (n + chunk - 1) / chunk;
  uint64_t *perm = calloc((size_t)(nchunks > window ? nchunks : window), sizeof *perm);
  int64_t *stream = calloc((size_t)n, sizeof *stream), len = 0;
  const lfs_rng chunks = lfs_rng_make(seed, LFS_RNG_DATA_ORDER, epoch, 0);
  lfs_rng_permutation(&chunks, perm, (size_t)nchunks);
  for (int64_t s = 0; s < nchunks; s++)
    for (int64_t i = (int64_t)perm[s] * chunk; i < (int64_t)(perm[s] + 1) * chunk && i < n; i++)
      stream[len++] = i;
  assert_int_equal(len, n);
  for (int64_t w = 0; w * window < n; w++) {
    const int64_t first = w * window, size = n - first < window ? n - first : window;
    const lfs_rng r = lfs_rng_make(seed, LFS_RNG_DATA_ORDER, epoch, (uint32_t)(w + 1));
    lfs_rng_permutation(&r, perm, (size_t)size);
    for (int64_t o = 0; o < size; o++) order[first + o] = stream[first + (int64_t)perm[o]];
  }
  free(perm), free(stream);
}

static void test_order_matches_spec(void **state) {
  (void)state;
  const int windows[] = {1, 5, 20, 93, 0}; /* 0: 16 chunks, more than N */
  for (int k = 0; k < 5; k++)
    for (uint64_t seed = 6; seed < 9; seed++) {
      lfs_loader_cfg cfg = base_cfg(8);
      cfg.seed = seed;
      cfg.shuffle = windows[k];
      lfs_loader *l = open_ok(&cfg);
      for (uint32_t e = 0; e < 3; e++) {
        int64_t want[N];
        spec_order(want, seed, e, N, CHUNK, windows[k] ? windows[k] : N);
        for (int64_t p = 0; p < N; p++)
          if (lfs_loader_index(l, e, p) != want[p])
            fail_msg("window %d seed %llu epoch %u position %lld: index %lld, the spec says %lld",
                     windows[k], (unsigned long long)seed, e, (long long)p,
                     (long long)lfs_loader_index(l, e, p), (long long)want[p]);
      }
      lfs_loader_close(l);
    }
}

static void test_order_depends_on_epoch_and_seed_only(void **state) {
  (void)state;
  lfs_loader_cfg cfg = base_cfg(8);
  lfs_loader *a = open_ok(&cfg), *b = open_ok(&cfg);
  cfg.seed = 8;
  lfs_loader *c = open_ok(&cfg);
  cfg.seed = 7;
  cfg.shuffle = 0; /* 16 chunks: one window over the whole of this dataset */
  lfs_loader *d = open_ok(&cfg);
  int same_epoch = 0, same_seed = 0, same_full = 0;
  for (int64_t p = 0; p < N; p++) {
    const int64_t i = lfs_loader_index(a, 3, p);
    assert_int_equal(lfs_loader_index(b, 3, p), i); /* another instance */
    same_epoch += lfs_loader_index(a, 4, p) == i;
    same_seed += lfs_loader_index(c, 3, p) == i;
    same_full += lfs_loader_index(d, 3, p) == i;
  }
  /* a random permutation of 94 has about one fixed point */
  assert_true(same_epoch < 10);
  assert_true(same_seed < 10);
  assert_true(same_full < 10);
  lfs_loader_close(a), lfs_loader_close(b), lfs_loader_close(c), lfs_loader_close(d);
}

static void test_seek_equals_stepping(void **state) {
  (void)state;
  lfs_loader_cfg cfg = base_cfg(8);
  lfs_loader *run = open_ok(&cfg), *resumed = open_ok(&cfg);
  const int64_t steps = lfs_loader_steps_per_epoch(run);
  batch x = batch_new(run), y = batch_new(run);
  for (int64_t s = 0; s < steps + 5; s++) next_ok(run, &x); /* to (1, 5) */
  lfs_loader_seek(resumed, 1, 5);
  for (int k = 0; k < steps + 3; k++) { /* across the end of epoch 1 */
    next_ok(run, &x);
    next_ok(resumed, &y);
    assert_int_equal(y.epoch, k < steps - 5 ? 1 : 2);
    if (!batches_equal(&x, &y, 8)) fail_msg("batch %d after seek(1, 5) differs", k);
  }
  /* a step past the end carries into the next epoch */
  lfs_loader_seek(resumed, 0, steps + 2);
  next_ok(resumed, &y);
  assert_int_equal(y.epoch, 1);
  assert_int_equal(y.step, 2);
  batch_free(&x), batch_free(&y);
  lfs_loader_close(run), lfs_loader_close(resumed);
}

/* Prefetch depths 0, 1, 2 and 5 give the same bytes, also across seeks that
 * land while batches are in flight. */
static void test_prefetch_is_invisible(void **state) {
  (void)state;
  const int depths[] = {0, 1, 2, 5};
  enum { ndepth = 4, nbatch = 40, B = 6 };
  batch got[ndepth][nbatch];
  for (int d = 0; d < ndepth; d++) {
    lfs_loader_cfg cfg = base_cfg(B);
    cfg.prefetch = depths[d];
    lfs_loader *l = open_ok(&cfg);
    for (int k = 0; k < nbatch; k++) {
      if (k == 10) lfs_loader_seek(l, 3, 4);
      if (k == 11) lfs_loader_seek(l, 0, 14); /* the last step of epoch 0 */
      if (k == 25) lfs_loader_seek(l, 1, 0);
      got[d][k] = batch_new(l);
      next_ok(l, &got[d][k]);
    }
    lfs_loader_close(l);
  }
  assert_int_equal(got[0][11].epoch, 0);
  assert_int_equal(got[0][12].epoch, 1);
  for (int d = 1; d < ndepth; d++)
    for (int k = 0; k < nbatch; k++)
      if (!batches_equal(&got[0][k], &got[d][k], B))
        fail_msg("prefetch %d: batch %d differs from the synchronous loader", depths[d], k);
  for (int d = 0; d < ndepth; d++)
    for (int k = 0; k < nbatch; k++) batch_free(&got[d][k]);
}

/* Closing with batches in flight, right after open, and after a seek. */
static void test_close_joins(void **state) {
  (void)state;
  lfs_loader_cfg cfg = base_cfg(8);
  cfg.prefetch = 3;
  for (int k = 0; k < 20; k++) {
    lfs_loader *l = open_ok(&cfg);
    if (k % 2) lfs_loader_seek(l, k, 1);
    if (k % 3 == 0) {
      batch b = batch_new(l);
      next_ok(l, &b);
      batch_free(&b);
    }
    lfs_loader_close(l);
  }
}

static void test_flips(void **state) {
  (void)state;
  lfs_loader_cfg cfg = base_cfg(8);
  lfs_loader *a = open_ok(&cfg);
  cfg.prefetch = 2;
  lfs_loader *b = open_ok(&cfg);
  cfg.flip = 0;
  lfs_loader *none = open_ok(&cfg);
  batch x = batch_new(a), y = batch_new(a), z = batch_new(a);
  const int64_t steps = lfs_loader_steps_per_epoch(a);
  enum { epochs = 10 };
  int flipped = 0, total = 0, changed = 0;
  int first[N];
  for (int i = 0; i < N; i++) first[i] = -1;
  for (int64_t s = 0; s < epochs * steps; s++) {
    next_ok(a, &x), next_ok(b, &y), next_ok(none, &z);
    if (!batches_equal(&x, &y, 8))
      fail_msg("batch %lld: flips differ between instances", (long long)s);
    for (int k = 0; k < 8; k++) {
      const int f = image_matches(&x, k, x.indices[k]);
      assert_true(f >= 0);
      assert_int_equal(image_matches(&z, k, z.indices[k]), 0); /* flip = 0 never flips */
      /* images H x W with W even: a mirrored image never equals the plain one */
      flipped += f, total++;
      const int64_t i = x.indices[k];
      if (first[i] < 0)
        first[i] = f;
      else
        changed += first[i] != f;
    }
  }
  const double frac = (double)flipped / total;
  print_message("flipped %d of %d (%.3f); %d later flips differ from an image's first\n", flipped,
                total, frac, changed);
  assert_true(fabs(frac - 0.5) < 0.06); /* 880 draws: 3.5 standard deviations */
  assert_true(changed > total / 5);     /* keyed by epoch, not fixed per image */
  batch_free(&x), batch_free(&y), batch_free(&z);
  lfs_loader_close(a), lfs_loader_close(b), lfs_loader_close(none);
}

/* Pixel values 0, 127, 128 and 255 become -0.99609375, -0.00390625, 0.00390625
 * and 0.99609375 exactly; channels land in the NCHW planes R, G, B. */
static void test_normalisation_exact(void **state) {
  (void)state;
  const char *path = "test_loader-known.h5";
  char err[512];
  lfs_dataset_writer *w = lfs_dataset_writer_create(path, 1, 2, 1, "known", err, sizeof err);
  if (!w) fail_msg("%s", err);
  const uint8_t img[2][6] = {{0, 127, 128, 255, 1, 254}, {255, 255, 0, 64, 32, 16}};
  const int32_t labels[2] = {1, 0};
  assert_int_equal(lfs_dataset_writer_append(w, img[0], labels, 2, err, sizeof err), 0);
  assert_int_equal(lfs_dataset_writer_finish(w, 2, err, sizeof err), 0);
  lfs_loader_cfg cfg = {.path = path, .global_batch = 2, .ranks = 1, .seed = 1, .prefetch = 1};
  lfs_loader *l = open_ok(&cfg);
  float out[2][3][1][2];
  int32_t lab[2];
  int64_t idx[2];
  assert_int_equal(lfs_loader_next(l, &out[0][0][0][0], lab, idx, NULL, NULL, err, sizeof err), 0);
  const int k = idx[0] == 0 ? 0 : 1; /* where image 0 went */
  assert_int_equal(idx[1 - k], 1);
  assert_int_equal(lab[k], 1);
  assert_int_equal(lab[1 - k], 0);
  assert_true(out[k][0][0][0] == -0.99609375f); /* R of pixel 0 */
  assert_true(out[k][1][0][0] == -0.00390625f); /* G */
  assert_true(out[k][2][0][0] == 0.00390625f);  /* B */
  assert_true(out[k][0][0][1] == 0.99609375f);  /* R of pixel 1 */
  assert_true(out[k][1][0][1] == -0.98828125f);
  assert_true(out[k][2][0][1] == 0.98828125f);
  assert_true(out[1 - k][0][0][0] == 0.99609375f);
  assert_true(out[1 - k][2][0][1] == -0.87109375f); /* (16 - 127.5) / 128 */
  lfs_loader_close(l);
  remove(path);
}

/* A manifest over two shards of 50 and 44 images: chunks straddle the shard
 * boundary and the order is still a permutation of the right images. */
static void test_manifest(void **state) {
  (void)state;
  char err[512];
  write_dataset("test_loader-shard0.h5", 0, 50, CHUNK);
  write_dataset("test_loader-shard1.h5", 50, 44, CHUNK);
  const char *shards[2] = {"test_loader-shard0.h5", "test_loader-shard1.h5"};
  if (lfs_manifest_write("test_loader-manifest.h5", shards, 2, err, sizeof err) != 0)
    fail_msg("%s", err);
  lfs_loader_cfg cfg = base_cfg(8);
  cfg.path = "test_loader-manifest.h5";
  cfg.prefetch = 2;
  lfs_loader *l = open_ok(&cfg);
  assert_int_equal(lfs_loader_steps_per_epoch(l), N / 8);
  int64_t *idx = epoch_indices(l, 1); /* checks every pixel and label */
  int seen[N] = {0};
  for (int p = 0; p < N / 8 * 8; p++) assert_int_equal(seen[idx[p]]++, 0);
  free(idx);
  lfs_loader_close(l);
  remove("test_loader-manifest.h5");
  remove("test_loader-shard0.h5");
  remove("test_loader-shard1.h5");
}

/* Sets /labels[at] of a dataset file to value, behind the writer's back. */
static void poke_label(const char *path, hsize_t at, int32_t value) {
  hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
  assert_true(f >= 0);
  hid_t d = H5Dopen2(f, "/labels", H5P_DEFAULT);
  assert_true(d >= 0);
  hid_t fs = H5Dget_space(d);
  hsize_t one = 1;
  assert_true(H5Sselect_hyperslab(fs, H5S_SELECT_SET, &at, NULL, &one, NULL) >= 0);
  hid_t ms = H5Screate_simple(1, &one, NULL);
  assert_true(H5Dwrite(d, H5T_NATIVE_INT32, ms, fs, H5P_DEFAULT, &value) >= 0);
  H5Sclose(ms), H5Sclose(fs), H5Dclose(d);
  assert_true(H5Fclose(f) >= 0);
}

/* Either open fails or some batch of the first epochs does; the message must
 * mention `needle`. Prefetching loaders must report it too, and again on retry. */
static void expect_failure(const char *path, int prefetch, const char *needle) {
  char err[512] = "";
  lfs_loader_cfg cfg = base_cfg(8);
  cfg.path = path;
  cfg.prefetch = prefetch;
  lfs_loader *l = lfs_loader_open(&cfg, err, sizeof err);
  if (l) {
    batch b = batch_new(l);
    int failed = 0;
    for (int s = 0; s < 2 * N / 8 && !failed; s++)
      failed = lfs_loader_next(l, b.images, b.labels, b.indices, &b.epoch, &b.step, err,
                               sizeof err) != 0;
    assert_true(failed);
    const int64_t epoch = b.epoch, step = b.step;
    err[0] = 0;
    assert_int_not_equal(lfs_loader_next(l, b.images, b.labels, NULL, &b.epoch, &b.step, err,
                                         sizeof err), 0); /* the same batch, again */
    assert_int_equal(b.epoch, epoch);
    assert_int_equal(b.step, step);
    batch_free(&b);
    lfs_loader_close(l);
  }
  print_message("%s (prefetch %d): %s\n", path, prefetch, err);
  if (!strstr(err, needle)) fail_msg("message \"%s\" does not mention \"%s\"", err, needle);
}

static void test_bad_label(void **state) {
  (void)state;
  const char *path = "test_loader-badlabel.h5";
  write_dataset(path, 0, N, CHUNK);
  poke_label(path, 40, CLASSES + 3);
  expect_failure(path, 0, path);
  expect_failure(path, 2, path);
  expect_failure(path, 2, "13"); /* the label's value */
  poke_label(path, 40, -1);
  expect_failure(path, 1, path);
  remove(path);
}

static void copy_prefix(const char *from, const char *to, long bytes, long garbage_at) {
  FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
  assert_non_null(in);
  assert_non_null(out);
  int c;
  for (long k = 0; (bytes < 0 || k < bytes) && (c = fgetc(in)) != EOF; k++)
    fputc(garbage_at >= 0 && k >= garbage_at && k < garbage_at + 64 ? 0x5a : c, out);
  fclose(in);
  assert_int_equal(fclose(out), 0);
}

static long file_size(const char *path) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  fseek(f, 0, SEEK_END);
  const long n = ftell(f);
  fclose(f);
  return n;
}

/* Copies from to `to` with the n-th occurrence of `tag` overwritten: a chunk
 * index B-tree node ("TREE") is only read when images are, so this fails late.
 * Returns 0 if there is no n-th occurrence. */
static int copy_spoiling(const char *from, const char *to, const char *tag, int n) {
  FILE *in = fopen(from, "rb");
  assert_non_null(in);
  static unsigned char buf[1 << 20];
  const size_t len = fread(buf, 1, sizeof buf, in);
  fclose(in);
  assert_true(len < sizeof buf);
  const size_t tl = strlen(tag);
  int found = 0;
  for (size_t k = 0; k + tl <= len && !found; k++)
    if (!memcmp(buf + k, tag, tl) && n-- == 0) memset(buf + k, 'X', tl), found = 1;
  FILE *out = fopen(to, "wb");
  assert_non_null(out);
  assert_int_equal(fwrite(buf, 1, len, out), len);
  assert_int_equal(fclose(out), 0);
  return found;
}

static void test_broken_files(void **state) {
  (void)state;
  const char *path = "test_loader-broken.h5";
  const long size = file_size(DATA_PATH);
  /* truncated in the image data, just after the metadata, and near the start */
  const long cuts[] = {size * 3 / 4, size / 2, 2048, 100};
  for (int k = 0; k < 4; k++) {
    copy_prefix(DATA_PATH, path, cuts[k], -1);
    expect_failure(path, k % 2 ? 2 : 0, path);
  }
  copy_prefix(DATA_PATH, path, -1, 0); /* no HDF5 signature */
  expect_failure(path, 0, path);
  /* every B-tree node spoilt in turn (the group's, then the chunk indices) */
  int spoilt = 0;
  for (int n = 0; copy_spoiling(DATA_PATH, path, "TREE", n); n++, spoilt++)
    expect_failure(path, n % 2 ? 0 : 3, path);
  assert_true(spoilt >= 2);
  expect_failure("test_loader-missing.h5", 1, "test_loader-missing.h5");
  remove(path);
}

static void expect_cfg_error(lfs_loader_cfg cfg, const char *needle) {
  char err[512] = "";
  lfs_loader *l = lfs_loader_open(&cfg, err, sizeof err);
  assert_null(l);
  if (!strstr(err, needle)) fail_msg("message \"%s\" does not mention \"%s\"", err, needle);
}

static void test_bad_config(void **state) {
  (void)state;
  lfs_loader_cfg cfg = base_cfg(8);
  cfg.ranks = 3;
  expect_cfg_error(cfg, "multiple of 3 ranks");
  cfg = base_cfg(N + 1);
  expect_cfg_error(cfg, "fewer than one global batch");
  cfg = base_cfg(8);
  cfg.rank = 1;
  expect_cfg_error(cfg, "rank 1 of 1");
  cfg = base_cfg(8);
  cfg.shuffle = -1;
  expect_cfg_error(cfg, "shuffle");
  cfg = base_cfg(0);
  expect_cfg_error(cfg, "global batch 0");
  cfg = base_cfg(8);
  cfg.path = NULL;
  expect_cfg_error(cfg, "path");
  /* the whole dataset as one batch works */
  cfg = base_cfg(N);
  lfs_loader *l = open_ok(&cfg);
  assert_int_equal(lfs_loader_steps_per_epoch(l), 1);
  assert_int_equal(lfs_loader_height(l), H);
  assert_int_equal(lfs_loader_width(l), W);
  lfs_loader_close(l);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_epoch_is_a_permutation),
      cmocka_unit_test(test_chunk_order),
      cmocka_unit_test(test_windows_shuffle_the_stream),
      cmocka_unit_test(test_order_matches_spec),
      cmocka_unit_test(test_order_depends_on_epoch_and_seed_only),
      cmocka_unit_test(test_seek_equals_stepping),
      cmocka_unit_test(test_prefetch_is_invisible),
      cmocka_unit_test(test_close_joins),
      cmocka_unit_test(test_flips),
      cmocka_unit_test(test_normalisation_exact),
      cmocka_unit_test(test_manifest),
      cmocka_unit_test(test_bad_label),
      cmocka_unit_test(test_broken_files),
      cmocka_unit_test(test_bad_config),
  };
  return cmocka_run_group_tests(tests, setup_data, teardown_data);
}
