/* test_synth.c: the synthetic-face generator (src/data/synth_face.c, synth.c).
 *
 * Rendering: a pure function of its keys (same keys, same bytes; any key
 * changed, different bytes), identical whether images are rendered serially or
 * by several threads in any order; at the default difficulty two images of one
 * identity are closer (mean absolute pixel difference) than images of two,
 * averaged over many pairs; at difficulty 0 all images of an identity are equal.
 * Splits: the training order is a permutation that mixes identities; pair sets
 * are exactly half genuine (in every run of two pairs), genuine pairs are two
 * different images of one identity, impostor pairs two identities, and the
 * training, validation and test identities are disjoint groups.
 * Files: what lfs_synth_write puts in train.h5 and the pair sets is exactly the
 * rendered images in the documented order, with 1 and 3 threads alike; a failed
 * write leaves the previous files untouched and no staged files behind.
 * Options: every bad value is rejected with a message naming the option.
 * Files are written under the current directory with the prefix "test_synth-". */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "data/synth_internal.h"
#include "lfs/dataset.h"
#include "lfs/image.h"
#include "lfs/runtime.h"
#include "lfs/synth.h"

static uint8_t *render(int size, float difficulty, uint64_t seed, uint32_t identity,
                       uint32_t image) {
  float *work = malloc(lfs_synth_work_floats(size) * sizeof *work);
  uint8_t *rgb = malloc(3 * (size_t)size * size);
  assert_non_null(work);
  assert_non_null(rgb);
  lfs_synth_render(rgb, work, size, difficulty, seed, identity, image);
  free(work);
  return rgb;
}

static double mean_abs_diff(const uint8_t *a, const uint8_t *b, size_t n) {
  double sum = 0;
  for (size_t i = 0; i < n; i++) sum += abs((int)a[i] - (int)b[i]);
  return sum / (double)n;
}

/* ---- rendering ---- */

static void test_render_is_a_function_of_its_keys(void **state) {
  (void)state;
  const int size = 40;
  const size_t n = 3 * (size_t)size * size;
  uint8_t *ref = render(size, 0.5f, 11, 3, 5);
  uint8_t *again = render(size, 0.5f, 11, 3, 5);
  assert_memory_equal(ref, again, n);
  /* the work area's previous contents must not matter */
  float *work = malloc(lfs_synth_work_floats(size) * sizeof *work);
  for (size_t i = 0; i < lfs_synth_work_floats(size); i++) work[i] = 1e6f;
  lfs_synth_render(again, work, size, 0.5f, 11, 3, 5);
  assert_memory_equal(ref, again, n);
  free(work);
  free(again);
  struct {
    uint64_t seed;
    uint32_t identity, image;
    float difficulty;
  } other[] = {{12, 3, 5, 0.5f}, {11, 4, 5, 0.5f}, {11, 3, 6, 0.5f}, {11, 3, 5, 0.6f}};
  for (size_t k = 0; k < sizeof other / sizeof other[0]; k++) {
    uint8_t *o = render(size, other[k].difficulty, other[k].seed, other[k].identity, other[k].image);
    const double d = mean_abs_diff(ref, o, n);
    if (d < 1.0) fail_msg("variant %zu differs from the reference by only %.3f per value", k, d);
    free(o);
  }
  free(ref);
}

/* Pixels are neither constant nor saturated: a real picture at every size. */
static void test_render_sizes(void **state) {
  (void)state;
  const int sizes[] = {16, 17, 31, 64, 112, 256};
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
    const int s = sizes[k];
    uint8_t *img = render(s, 0.5f, 1, 0, 0);
    int lo = 255, hi = 0;
    double mean = 0;
    for (size_t i = 0; i < 3 * (size_t)s * s; i++) {
      lo = img[i] < lo ? img[i] : lo, hi = img[i] > hi ? img[i] : hi;
      mean += img[i];
    }
    mean /= 3.0 * s * s;
    if (hi - lo < 100 || mean < 40 || mean > 215)
      fail_msg("size %d: values span [%d, %d], mean %.1f", s, lo, hi, mean);
    free(img);
  }
}

/* Threads rendering in any order give the serial bytes. */
static void test_render_thread_independent(void **state) {
  (void)state;
  enum { count = 48, size = 32 };
  const size_t n = 3 * size * size;
  uint8_t *serial = malloc(count * n), *parallel = malloc(count * n);
  float *work = malloc(lfs_synth_work_floats(size) * sizeof *work);
  for (int j = 0; j < count; j++)
    lfs_synth_render(serial + j * n, work, size, 0.7f, 5, (uint32_t)(j / 3), (uint32_t)(j % 3));
  free(work);
#pragma omp parallel num_threads(4)
  {
    float *w = malloc(lfs_synth_work_floats(size) * sizeof *w);
#pragma omp for schedule(dynamic, 1)
    for (int j = count - 1; j >= 0; j--)
      lfs_synth_render(parallel + j * n, w, size, 0.7f, 5, (uint32_t)(j / 3), (uint32_t)(j % 3));
    free(w);
  }
  assert_memory_equal(serial, parallel, count * n);
  free(serial);
  free(parallel);
}

/* Averaged over every pair of 160 images (40 identities x 4), images of one
 * identity are clearly closer than images of two. Measured: ratio 0.68. */
static void test_same_identity_is_closer(void **state) {
  (void)state;
  enum { ids = 40, per = 4, size = 32 };
  const size_t n = 3 * size * size;
  uint8_t *img = malloc((size_t)ids * per * n);
  float *work = malloc(lfs_synth_work_floats(size) * sizeof *work);
  for (int i = 0; i < ids; i++)
    for (int j = 0; j < per; j++)
      lfs_synth_render(img + (size_t)(i * per + j) * n, work, size, 0.5f, 3, (uint32_t)i, (uint32_t)j);
  double genuine = 0, impostor = 0;
  int ng = 0, ni = 0;
  for (int a = 0; a < ids * per; a++)
    for (int b = a + 1; b < ids * per; b++) {
      const double d = mean_abs_diff(img + (size_t)a * n, img + (size_t)b * n, n);
      if (a / per == b / per)
        genuine += d, ng++;
      else
        impostor += d, ni++;
    }
  genuine /= ng, impostor /= ni;
  print_message("mean |difference|: same identity %.2f, different identities %.2f\n", genuine,
                impostor);
  if (!(genuine < 0.8 * impostor))
    fail_msg("same identity %.2f is not clearly below different identities %.2f", genuine, impostor);
  free(work);
  free(img);
}

static void test_difficulty_zero_is_constant_per_identity(void **state) {
  (void)state;
  const int size = 24;
  uint8_t *a = render(size, 0.0f, 9, 2, 0), *b = render(size, 0.0f, 9, 2, 17);
  uint8_t *c = render(size, 0.0f, 9, 3, 0);
  assert_memory_equal(a, b, 3 * (size_t)size * size);
  assert_true(mean_abs_diff(a, c, 3 * (size_t)size * size) > 5.0);
  free(a), free(b), free(c);
}

/* ---- splits ---- */

static lfs_synth_opts small_opts(void) {
  lfs_synth_opts o;
  lfs_synth_defaults(&o);
  o.size = 16;
  o.identities = 13;
  o.images_per_identity = 3;
  o.val_identities = 7;
  o.test_identities = 5;
  o.val_pairs = 40;
  o.test_pairs = 30;
  o.chunk = 4;
  o.seed = 21;
  return o;
}

static void test_train_order(void **state) {
  (void)state;
  lfs_synth_opts o = small_opts();
  const int total = 13 * 3;
  uint64_t order[13 * 3];
  int seen[13 * 3] = {0};
  lfs_synth_train_order(&o, order);
  int in_place = 0;
  for (int j = 0; j < total; j++) {
    assert_true(order[j] < (uint64_t)total);
    seen[order[j]]++;
    in_place += order[j] == (uint64_t)j;
  }
  for (int j = 0; j < total; j++) assert_int_equal(seen[j], 1);
  assert_true(in_place < 6); /* shuffled, not the identity order */
  /* the first chunk of 4 already holds 3 or 4 identities, not one */
  int distinct = 0;
  for (int j = 0; j < 4; j++) {
    int fresh = 1;
    for (int i = 0; i < j; i++) fresh &= order[i] / 3 != order[j] / 3;
    distinct += fresh;
  }
  assert_true(distinct >= 3);
  uint64_t again[13 * 3];
  lfs_synth_train_order(&o, again);
  assert_memory_equal(order, again, sizeof order);
  o.seed++;
  lfs_synth_train_order(&o, again);
  assert_memory_not_equal(order, again, sizeof order);
}

static void check_pairs(const lfs_synth_opts *o, lfs_synth_split split, int64_t pairs,
                        uint32_t base, int64_t group) {
  int64_t genuine = 0;
  for (int64_t p = 0; p < pairs; p++) {
    uint32_t id[2], img[2];
    const int same = lfs_synth_pair(o, split, p, id, img);
    assert_true(same == 0 || same == 1);
    for (int s = 0; s < 2; s++) {
      if (id[s] < base || id[s] >= base + (uint32_t)group)
        fail_msg("split %d pair %lld: identity %u outside [%u, %u)", split, (long long)p, id[s],
                 base, base + (uint32_t)group);
      assert_int_equal(img[s], 2 * p + s);
    }
    if (same != (id[0] == id[1]))
      fail_msg("split %d pair %lld: issame %d but identities %u, %u", split, (long long)p, same,
               id[0], id[1]);
    genuine += same;
    if (p % 2) assert_int_equal(genuine, (p + 1) / 2); /* every two pairs: one genuine */
  }
  assert_int_equal(2 * genuine, pairs);
}

static void test_pairs_half_genuine_disjoint_groups(void **state) {
  (void)state;
  lfs_synth_opts o = small_opts();
  o.val_pairs = 1000, o.test_pairs = 600;
  check_pairs(&o, LFS_SYNTH_VAL, o.val_pairs, LFS_SYNTH_VAL_BASE, o.val_identities);
  check_pairs(&o, LFS_SYNTH_TEST, o.test_pairs, LFS_SYNTH_TEST_BASE, o.test_identities);
  /* the three groups cannot meet, whatever their sizes */
  assert_true(lfs_synth_identity(LFS_SYNTH_TRAIN, LFS_SYNTH_MAX_IDENTITIES - 1) < LFS_SYNTH_VAL_BASE);
  assert_true(lfs_synth_identity(LFS_SYNTH_VAL, LFS_SYNTH_MAX_IDENTITIES - 1) < LFS_SYNTH_TEST_BASE);
  assert_true(lfs_synth_identity(LFS_SYNTH_TEST, LFS_SYNTH_MAX_IDENTITIES - 1) <
              LFS_SYNTH_STREAM_ORDER);
  /* genuine pairs use every identity of the group eventually; the order is random */
  int used[7] = {0}, first_genuine[2] = {0};
  for (int64_t p = 0; p < o.val_pairs; p++) {
    uint32_t id[2], img[2];
    const int same = lfs_synth_pair(&o, LFS_SYNTH_VAL, p, id, img);
    used[id[0] - LFS_SYNTH_VAL_BASE] = used[id[1] - LFS_SYNTH_VAL_BASE] = 1;
    if (same) first_genuine[p % 2]++;
  }
  for (int i = 0; i < 7; i++) assert_true(used[i]);
  assert_true(first_genuine[0] > 200 && first_genuine[1] > 200); /* of 500 */
  /* held-out pair sets do not depend on the training set's size */
  lfs_synth_opts bigger = o;
  bigger.identities = 500, bigger.images_per_identity = 7;
  for (int64_t p = 0; p < 50; p++) {
    uint32_t a[2], ai[2], b[2], bi[2];
    assert_int_equal(lfs_synth_pair(&o, LFS_SYNTH_TEST, p, a, ai),
                     lfs_synth_pair(&bigger, LFS_SYNTH_TEST, p, b, bi));
    assert_memory_equal(a, b, sizeof a);
  }
}

/* ---- files ---- */

/* Removes a directory written by lfs_synth_write (after a passing check). */
static void remove_dataset(const char *dir) {
  const char *names[] = {"train.h5", "val_pairs.h5", "test_pairs.h5"};
  char path[512];
  for (int i = 0; i < 3; i++) {
    snprintf(path, sizeof path, "%s/%s", dir, names[i]);
    remove(path);
  }
  rmdir(dir);
}

static void write_or_fail(const char *dir, const lfs_synth_opts *o) {
  char err[1024] = "";
  mkdir(dir, 0777);
  lfs_synth_summary sum;
  if (lfs_synth_write(dir, o, NULL, NULL, &sum, err, sizeof err) != 0) fail_msg("%s", err);
  assert_int_equal(sum.images, o->identities * o->images_per_identity + 2 * (o->val_pairs + o->test_pairs));
  assert_int_equal(sum.pairs, o->val_pairs + o->test_pairs);
}

static uint8_t *read_train(const char *dir, int64_t *count, int32_t **labels, int32_t *classes) {
  char path[512], err[1024];
  snprintf(path, sizeof path, "%s/train.h5", dir);
  lfs_dataset *ds = lfs_dataset_open(path, err, sizeof err);
  if (!ds) fail_msg("%s", err);
  *count = lfs_dataset_count(ds);
  *classes = lfs_dataset_classes(ds);
  const int h = lfs_dataset_height(ds), w = lfs_dataset_width(ds);
  uint8_t *img = malloc((size_t)*count * h * w * 3);
  *labels = malloc((size_t)*count * sizeof **labels);
  if (lfs_dataset_read(ds, 0, *count, img, *labels, err, sizeof err) != 0) fail_msg("%s", err);
  lfs_dataset_close(ds);
  return img;
}

static uint8_t *read_pairs(const char *dir, const char *file, const char *name, int64_t pairs,
                           int size, uint8_t *issame) {
  char path[512], err[1024];
  snprintf(path, sizeof path, "%s/%s", dir, file);
  lfs_pairset *ps = lfs_pairset_open(path, err, sizeof err);
  if (!ps) fail_msg("%s", err);
  assert_int_equal(lfs_pairset_count(ps), pairs);
  assert_int_equal(lfs_pairset_height(ps), size);
  assert_string_equal(lfs_pairset_name(ps), name);
  uint8_t *img = malloc((size_t)pairs * 2 * size * size * 3);
  if (lfs_pairset_read(ps, 0, pairs, img, err, sizeof err) != 0 ||
      lfs_pairset_issame(ps, 0, pairs, issame, err, sizeof err) != 0)
    fail_msg("%s", err);
  lfs_pairset_close(ps);
  return img;
}

static void test_files_hold_the_rendered_images(void **state) {
  (void)state;
  const lfs_synth_opts o = small_opts();
  const size_t n = 3 * (size_t)o.size * o.size;
  lfs_set_threads(1);
  write_or_fail("test_synth-one", &o);
  lfs_set_threads(3);
  write_or_fail("test_synth-three", &o);
  lfs_set_threads(1);

  int64_t count;
  int32_t *labels, *labels3, classes, classes3;
  uint8_t *train = read_train("test_synth-one", &count, &labels, &classes);
  uint8_t *train3 = read_train("test_synth-three", &count, &labels3, &classes3);
  assert_int_equal(count, 13 * 3);
  assert_int_equal(classes, 13);
  assert_memory_equal(train, train3, (size_t)count * n);
  assert_memory_equal(labels, labels3, (size_t)count * sizeof *labels);
  uint64_t order[13 * 3];
  lfs_synth_train_order(&o, order);
  for (int64_t j = 0; j < count; j++) {
    assert_int_equal(labels[j], order[j] / 3);
    uint8_t *want = render(o.size, o.difficulty, o.seed, (uint32_t)(order[j] / 3), (uint32_t)(order[j] % 3));
    if (memcmp(want, train + j * n, n) != 0) fail_msg("train.h5 row %lld is not its image", (long long)j);
    free(want);
  }

  const char *files[2] = {"val_pairs.h5", "test_pairs.h5"}, *names[2] = {"synth_val", "synth_test"};
  const int64_t pairs[2] = {o.val_pairs, o.test_pairs};
  for (int s = 0; s < 2; s++) {
    uint8_t issame[64], issame3[64];
    uint8_t *img = read_pairs("test_synth-one", files[s], names[s], pairs[s], o.size, issame);
    uint8_t *img3 = read_pairs("test_synth-three", files[s], names[s], pairs[s], o.size, issame3);
    assert_memory_equal(img, img3, (size_t)pairs[s] * 2 * n);
    assert_memory_equal(issame, issame3, (size_t)pairs[s]);
    int genuine = 0;
    for (int64_t p = 0; p < pairs[s]; p++) {
      uint32_t id[2], im[2];
      assert_int_equal(issame[p], lfs_synth_pair(&o, (lfs_synth_split)(s + 1), p, id, im));
      genuine += issame[p];
      for (int k = 0; k < 2; k++) {
        uint8_t *want = render(o.size, o.difficulty, o.seed, id[k], im[k]);
        if (memcmp(want, img + (2 * p + k) * n, n) != 0)
          fail_msg("%s row %lld is not its image", files[s], (long long)(2 * p + k));
        free(want);
      }
    }
    assert_int_equal(2 * genuine, pairs[s]);
    free(img), free(img3);
  }
  /* nothing staged is left behind */
  assert_int_not_equal(access("test_synth-one/train.h5.new", F_OK), 0);
  assert_int_not_equal(access("test_synth-one/val_pairs.h5.new", F_OK), 0);
  free(train), free(train3), free(labels), free(labels3);
  remove_dataset("test_synth-one");
  remove_dataset("test_synth-three");
}

/* val_pairs.h5.new is a non-empty directory, so the second file cannot be
 * staged: the old train.h5 must survive and the staged train.h5.new must go. */
static void test_failed_write_keeps_old_files(void **state) {
  (void)state;
  lfs_synth_opts o = small_opts();
  const char *dir = "test_synth-fail";
  remove("test_synth-fail/val_pairs.h5.new/blocker"); /* left by an interrupted run */
  rmdir("test_synth-fail/val_pairs.h5.new");
  write_or_fail(dir, &o);
  mkdir("test_synth-fail/val_pairs.h5.new", 0777);
  FILE *f = fopen("test_synth-fail/val_pairs.h5.new/blocker", "w");
  assert_non_null(f);
  fclose(f);
  lfs_synth_opts other = o;
  other.identities = 17;
  char err[1024] = "";
  assert_int_not_equal(lfs_synth_write(dir, &other, NULL, NULL, NULL, err, sizeof err), 0);
  print_message("expected failure: %s\n", err);
  assert_non_null(strstr(err, "val_pairs.h5"));
  int64_t count;
  int32_t *labels, classes;
  uint8_t *img = read_train(dir, &count, &labels, &classes);
  assert_int_equal(count, 13 * 3); /* the old one */
  assert_int_equal(classes, 13);
  assert_int_not_equal(access("test_synth-fail/train.h5.new", F_OK), 0);
  free(img), free(labels);
  remove("test_synth-fail/val_pairs.h5.new/blocker");
  rmdir("test_synth-fail/val_pairs.h5.new");
  remove_dataset(dir);
}

static void test_preview(void **state) {
  (void)state;
  lfs_synth_opts o = small_opts();
  o.size = 24;
  char err[1024];
  const char *path = "test_synth-preview.png";
  remove(path);
  if (lfs_synth_preview(path, &o, 3, 5, err, sizeof err) != 0) fail_msg("%s", err);
  uint8_t *rgb;
  int h, w;
  if (lfs_image_load(path, &rgb, &h, &w, err, sizeof err) != 0) fail_msg("%s", err);
  /* tiles of 24 pixels are magnified 4x to 96; 3 rows, 5 columns, 4-pixel gaps */
  assert_int_equal(h, 3 * (96 + 4) + 4);
  assert_true(w > 5 * (96 + 4));
  /* the tile of row 1, column 2 is image 2 of identity 1, magnified */
  const int label = w - 5 * (96 + 4) - 4;
  uint8_t *face = render(24, o.difficulty, o.seed, 1, 2);
  const int y0 = 4 + 100, x0 = label + 4 + 2 * 100;
  for (int y = 0; y < 96; y += 7)
    for (int x = 0; x < 96; x += 5)
      assert_memory_equal(rgb + 3 * ((size_t)(y0 + y) * w + x0 + x), face + 3 * ((y / 4) * 24 + x / 4), 3);
  /* the label column carries light digit pixels on the dark background */
  int bright = 0;
  for (int y = 0; y < h; y++)
    for (int x = 0; x < label; x++) bright += rgb[3 * ((size_t)y * w + x)] > 200;
  assert_true(bright > 3 * 16 * 5); /* each digit has at least 5 of 15 cells lit, 4x4 pixels each */
  free(face);
  free(rgb);
  remove(path);
}

/* ---- options ---- */

static void expect_rejected(lfs_synth_opts o, const char *option) {
  char err[512] = "";
  if (lfs_synth_check(&o, err, sizeof err) == 0) fail_msg("%s: bad value accepted", option);
  if (!strstr(err, option)) fail_msg("message \"%s\" does not name %s", err, option);
}

static void test_bad_options(void **state) {
  (void)state;
  lfs_synth_opts good;
  lfs_synth_defaults(&good);
  char err[512];
  assert_int_equal(lfs_synth_check(&good, err, sizeof err), 0);
  lfs_synth_opts o;
  o = good, o.size = 15, expect_rejected(o, "--size");
  o = good, o.size = 257, expect_rejected(o, "--size");
  o = good, o.difficulty = -0.01f, expect_rejected(o, "--difficulty");
  o = good, o.difficulty = 1.5f, expect_rejected(o, "--difficulty");
  o = good, o.identities = 1, expect_rejected(o, "--identities");
  o = good, o.identities = LFS_SYNTH_MAX_IDENTITIES + 1, expect_rejected(o, "--identities");
  o = good, o.images_per_identity = 0, expect_rejected(o, "--images-per-identity");
  o = good, o.identities = 2000000, o.images_per_identity = 100, expect_rejected(o, "--images-per-identity");
  o = good, o.val_identities = 1, expect_rejected(o, "--val-identities");
  o = good, o.test_identities = 0, expect_rejected(o, "--test-identities");
  o = good, o.val_pairs = 3001, expect_rejected(o, "--val-pairs");
  o = good, o.val_pairs = 0, expect_rejected(o, "--val-pairs");
  o = good, o.test_pairs = LFS_SYNTH_MAX_PAIRS + 2, expect_rejected(o, "--test-pairs");
  o = good, o.size = 256, o.test_pairs = 60000, expect_rejected(o, "--test-pairs");
  o = good, o.chunk = 0, expect_rejected(o, "--shard-chunk");
  o = good, o.chunk = LFS_SYNTH_MAX_CHUNK + 1, expect_rejected(o, "--shard-chunk");
  /* nothing is written for bad options */
  o = good, o.size = 8;
  assert_int_not_equal(lfs_synth_write("test_synth-bad", &o, NULL, NULL, NULL, err, sizeof err), 0);
  assert_non_null(strstr(err, "--size"));
  assert_int_not_equal(lfs_synth_preview("test_synth-bad.png", &o, 2, 2, err, sizeof err), 0);
  assert_int_not_equal(access("test_synth-bad.png", F_OK), 0);
}

static void test_digit_font(void **state) {
  (void)state;
  /* every digit is distinct and lights at least 5 of its 15 cells */
  for (int d = 0; d < 10; d++) {
    int lit = 0;
    for (int r = 0; r < 5; r++) lit += __builtin_popcount(lfs_synth_digits[d][r] & 7);
    assert_true(lit >= 5);
    for (int e = 0; e < d; e++) assert_memory_not_equal(lfs_synth_digits[d], lfs_synth_digits[e], 5);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_render_is_a_function_of_its_keys),
      cmocka_unit_test(test_render_sizes),
      cmocka_unit_test(test_render_thread_independent),
      cmocka_unit_test(test_same_identity_is_closer),
      cmocka_unit_test(test_difficulty_zero_is_constant_per_identity),
      cmocka_unit_test(test_train_order),
      cmocka_unit_test(test_pairs_half_genuine_disjoint_groups),
      cmocka_unit_test(test_files_hold_the_rendered_images),
      cmocka_unit_test(test_failed_write_keeps_old_files),
      cmocka_unit_test(test_preview),
      cmocka_unit_test(test_bad_options),
      cmocka_unit_test(test_digit_font),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
