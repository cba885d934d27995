/* test_dataset.c: the HDF5 dataset, manifest and pair-set files
 * (src/data/dataset.c, manifest.c, pairset.c, h5util.c).
 *
 * Round trips: a shard written in several appends and read back across append
 * and chunk boundaries; manifests read across shard boundaries (also from
 * another directory, also with fixed-length path strings); pair sets.
 * Validation: files crafted with the HDF5 C API, each with one defect (format,
 * version, missing or mistyped dataset, shape, num_classes, labels, issame,
 * pair count, manifest disagreeing with its shards); every message must name
 * the file and the field, and HDF5 itself must print nothing.
 * Writers: an abort leaves neither the file nor its temporary; a failed finish
 * leaves an existing file untouched; four threads may read at once; no HDF5
 * object stays open after the tests, error paths included.
 * Files are written to the current directory (the build directory under
 * `make check`) with the prefix "test_dataset-" and removed when all tests pass. */
#define _POSIX_C_SOURCE 200809L
#include <fcntl.h>
#include <pthread.h>
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
#include <dirent.h>
#include <hdf5.h>

#include "lfs/dataset.h"

#define P(name) "test_dataset-" name
#define DIR_SHARDS P("shards")
#define DIR_MANIFEST P("manifests")

enum { H = 5, W = 7, IMG = H * W * 3 };

static uint8_t pixel(int64_t index, int y, int x, int c) {
  return (uint8_t)(index * 37 + y * 11 + x * 5 + c * 3 + 1);
}

static void fill_images(uint8_t *img, int64_t first, int64_t n, int h, int w) {
  for (int64_t i = 0; i < n; i++)
    for (int y = 0; y < h; y++)
      for (int x = 0; x < w; x++)
        for (int c = 0; c < 3; c++)
          img[((i * h + y) * w + x) * 3 + c] = pixel(first + i, y, x, c);
}

/* Asserts images [first, first + n) hold the pixel function of indices index0 + (0..n). */
static void check_images(const uint8_t *img, int64_t index0, int64_t n, int h, int w) {
  for (int64_t i = 0; i < n; i++)
    for (int y = 0; y < h; y++)
      for (int x = 0; x < w; x++)
        for (int c = 0; c < 3; c++)
          if (img[((i * h + y) * w + x) * 3 + c] != pixel(index0 + i, y, x, c))
            fail_msg("image %lld pixel (%d,%d,%d) = %u, expected %u", (long long)(index0 + i), y, x,
                     c, img[((i * h + y) * w + x) * 3 + c], pixel(index0 + i, y, x, c));
}

static int file_exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

static void tmp_name(char *buf, size_t len, const char *path) {
  snprintf(buf, len, "%s.tmp-%ld", path, (long)getpid());
}

/* Asserts msg contains every one of the given substrings (NULL-terminated list). */
static void expect_msg(const char *msg, ...) {
  va_list ap;
  va_start(ap, msg);
  for (const char *want = va_arg(ap, const char *); want; want = va_arg(ap, const char *))
    if (!strstr(msg, want)) fail_msg("message \"%s\" lacks \"%s\"", msg, want);
  va_end(ap);
}

/* Writes a shard of images [first, first + sum(appends)) in the given appends;
 * labels are label0 + (index % span). */
static void write_shard(const char *path, int h, int w, int chunk, int64_t first, const int *appends,
                        int nappends, int32_t label0, int32_t span, int32_t num_classes) {
  char err[1024];
  lfs_dataset_writer *wr = lfs_dataset_writer_create(path, h, w, chunk, "unit test", err, sizeof err);
  if (!wr) fail_msg("%s", err);
  int64_t at = first;
  for (int a = 0; a < nappends; a++) {
    uint8_t *img = malloc((size_t)appends[a] * (size_t)(h * w * 3) + 1);
    int32_t *lab = malloc((size_t)appends[a] * sizeof *lab + 1);
    fill_images(img, at, appends[a], h, w);
    for (int i = 0; i < appends[a]; i++) lab[i] = label0 + (int32_t)((at + i) % span);
    if (lfs_dataset_writer_append(wr, img, lab, appends[a], err, sizeof err) != 0) fail_msg("%s", err);
    at += appends[a];
    free(img);
    free(lab);
  }
  if (lfs_dataset_writer_finish(wr, num_classes, err, sizeof err) != 0) fail_msg("%s", err);
}

/* ---- round trips ---- */

static void test_dataset_round_trip(void **state) {
  (void)state;
  const char *path = P("rt.h5");
  const int appends[] = {3, 6, 1, 7}; /* 17 images, chunks of 4: boundaries differ */
  write_shard(path, H, W, 4, 0, appends, 4, 0, 5, 5);
  char err[1024], tmp[512];
  tmp_name(tmp, sizeof tmp, path);
  assert_false(file_exists(tmp));
  lfs_dataset *ds = lfs_dataset_open(path, err, sizeof err);
  if (!ds) fail_msg("%s", err);
  assert_int_equal(lfs_dataset_count(ds), 17);
  assert_int_equal(lfs_dataset_height(ds), H);
  assert_int_equal(lfs_dataset_width(ds), W);
  assert_int_equal(lfs_dataset_classes(ds), 5);
  assert_int_equal(lfs_dataset_shards(ds), 1);
  assert_int_equal(lfs_dataset_chunk(ds), 4);
  assert_string_equal(lfs_dataset_source(ds), "unit test");
  assert_string_equal(lfs_dataset_shard_path(ds, 0), path);
  assert_int_equal(lfs_dataset_shard_count(ds, 0), 17);
  uint8_t img[17 * IMG];
  int32_t lab[17];
  /* whole, then ranges crossing append (3, 9, 10) and chunk (4, 8, 12, 16) boundaries */
  const int64_t ranges[][2] = {{0, 17}, {2, 2}, {3, 7}, {7, 6}, {9, 1}, {10, 7}, {16, 1}, {5, 0}};
  for (size_t r = 0; r < sizeof ranges / sizeof ranges[0]; r++) {
    memset(img, 0, sizeof img);
    memset(lab, 0xff, sizeof lab);
    assert_int_equal(lfs_dataset_read(ds, ranges[r][0], ranges[r][1], img, lab, err, sizeof err), 0);
    check_images(img, ranges[r][0], ranges[r][1], H, W);
    for (int64_t i = 0; i < ranges[r][1]; i++) assert_int_equal(lab[i], (ranges[r][0] + i) % 5);
  }
  /* images only, labels only */
  assert_int_equal(lfs_dataset_read(ds, 11, 3, img, NULL, err, sizeof err), 0);
  check_images(img, 11, 3, H, W);
  memset(img, 0, sizeof img);
  assert_int_equal(lfs_dataset_read(ds, 12, 4, NULL, lab, err, sizeof err), 0);
  for (int i = 0; i < 4; i++) assert_int_equal(lab[i], (12 + i) % 5);
  /* out of range */
  assert_int_equal(lfs_dataset_read(ds, 15, 3, img, lab, err, sizeof err), -1);
  expect_msg(err, path, "[15, 18)", "[0, 17)", NULL);
  assert_int_equal(lfs_dataset_read(ds, -1, 1, img, lab, err, sizeof err), -1);
  expect_msg(err, path, NULL);
  lfs_dataset_close(ds);
  char format[64];
  assert_int_equal(lfs_h5_format(path, format, sizeof format, err, sizeof err), 0);
  assert_string_equal(format, LFS_DATASET_FORMAT);
}

/* The on-disk layout other tools (h5py) rely on: types, chunking, attribute types. */
static void test_dataset_layout(void **state) {
  (void)state;
  const char *path = P("layout.h5");
  const int appends[] = {5};
  write_shard(path, H, W, 3, 0, appends, 1, 0, 5, 6);
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  assert_true(f >= 0);
  hid_t d = H5Dopen2(f, "/images", H5P_DEFAULT);
  hid_t t = H5Dget_type(d), dcpl = H5Dget_create_plist(d), sp = H5Dget_space(d);
  assert_true(H5Tequal(t, H5T_STD_U8LE) > 0);
  hsize_t chunk[4], dims[4], maxdims[4];
  assert_int_equal(H5Pget_layout(dcpl), H5D_CHUNKED);
  assert_int_equal(H5Pget_chunk(dcpl, 4, chunk), 4);
  assert_int_equal(chunk[0], 3);
  assert_int_equal(chunk[1], H);
  assert_int_equal(chunk[2], W);
  assert_int_equal(chunk[3], 3);
  assert_int_equal(H5Pget_nfilters(dcpl), 0); /* no deflate: read speed */
  H5Sget_simple_extent_dims(sp, dims, maxdims);
  assert_int_equal(dims[0], 5);
  assert_true(maxdims[0] == H5S_UNLIMITED);
  H5Sclose(sp), H5Pclose(dcpl), H5Tclose(t), H5Dclose(d);
  d = H5Dopen2(f, "/labels", H5P_DEFAULT);
  t = H5Dget_type(d);
  assert_true(H5Tequal(t, H5T_STD_I32LE) > 0);
  H5Tclose(t), H5Dclose(d);
  const char *ints[] = {"format_version", "num_classes", "height", "width"};
  const int want[] = {1, 6, H, W};
  for (int i = 0; i < 4; i++) {
    hid_t a = H5Aopen(f, ints[i], H5P_DEFAULT);
    int32_t v = -1;
    t = H5Aget_type(a);
    assert_true(H5Tequal(t, H5T_STD_I32LE) > 0);
    assert_true(H5Aread(a, H5T_NATIVE_INT32, &v) >= 0);
    assert_int_equal(v, want[i]);
    H5Tclose(t), H5Aclose(a);
  }
  H5Fclose(f);
}

static void write_manifest_shards(void) {
  mkdir(DIR_SHARDS, 0755);
  mkdir(DIR_MANIFEST, 0755);
  const int a0[] = {4, 2}, a1[] = {5}, a2[] = {1, 2, 3};
  write_shard(DIR_SHARDS "/s0.h5", H, W, 2, 0, a0, 2, 0, 4, 8);   /* images 0..5, labels 0..3 */
  write_shard(DIR_SHARDS "/s1.h5", H, W, 3, 6, a1, 1, 4, 4, 8);   /* images 6..10, labels 4..7 */
  write_shard(DIR_SHARDS "/s2.h5", H, W, 4, 11, a2, 3, 0, 8, 8);  /* images 11..16, labels 0..7 */
}

static const char *const shard_paths[] = {DIR_SHARDS "/s0.h5", DIR_SHARDS "/s1.h5", DIR_SHARDS "/s2.h5"};

static int32_t manifest_label(int64_t i) {
  if (i < 6) return (int32_t)(i % 4);
  if (i < 11) return (int32_t)(4 + i % 4);
  return (int32_t)(i % 8);
}

static void check_manifest_reads(const char *path) {
  char err[1024];
  lfs_dataset *ds = lfs_dataset_open(path, err, sizeof err);
  if (!ds) fail_msg("%s", err);
  assert_int_equal(lfs_dataset_count(ds), 17);
  assert_int_equal(lfs_dataset_shards(ds), 3);
  assert_int_equal(lfs_dataset_chunk(ds), 2);
  assert_int_equal(lfs_dataset_classes(ds), 8);
  assert_string_equal(lfs_dataset_source(ds), "unit test");
  assert_int_equal(lfs_dataset_shard_count(ds, 1), 5);
  assert_non_null(strstr(lfs_dataset_shard_path(ds, 2), "s2.h5"));
  uint8_t img[17 * IMG];
  int32_t lab[17];
  const int64_t ranges[][2] = {{0, 17}, {5, 2}, {4, 8}, {10, 1}, {10, 2}, {11, 6}, {3, 14}};
  for (size_t r = 0; r < sizeof ranges / sizeof ranges[0]; r++) {
    memset(img, 0, sizeof img);
    assert_int_equal(lfs_dataset_read(ds, ranges[r][0], ranges[r][1], img, lab, err, sizeof err), 0);
    check_images(img, ranges[r][0], ranges[r][1], H, W);
    for (int64_t i = 0; i < ranges[r][1]; i++) assert_int_equal(lab[i], manifest_label(ranges[r][0] + i));
  }
  lfs_dataset_close(ds);
}

static void test_manifest_round_trip(void **state) {
  (void)state;
  write_manifest_shards();
  char err[1024];
  const char *path = P("manifest.h5");
  if (lfs_manifest_write(path, shard_paths, 3, err, sizeof err) != 0) fail_msg("%s", err);
  check_manifest_reads(path);
  char format[64];
  assert_int_equal(lfs_h5_format(path, format, sizeof format, err, sizeof err), 0);
  assert_string_equal(format, LFS_MANIFEST_FORMAT);
  /* stored paths are relative to the manifest's directory */
  const char *nested = DIR_MANIFEST "/m.h5";
  if (lfs_manifest_write(nested, shard_paths, 3, err, sizeof err) != 0) fail_msg("%s", err);
  hid_t f = H5Fopen(nested, H5F_ACC_RDONLY, H5P_DEFAULT);
  hid_t d = H5Dopen2(f, "/shards", H5P_DEFAULT);
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, H5T_VARIABLE);
  char *names[3];
  assert_true(H5Dread(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, names) >= 0);
  assert_string_equal(names[0], "../" DIR_SHARDS "/s0.h5");
  assert_string_equal(names[2], "../" DIR_SHARDS "/s2.h5");
  for (int i = 0; i < 3; i++) H5free_memory(names[i]);
  int64_t counts[3];
  int32_t lo[3], hi[3];
  H5Tclose(t), H5Dclose(d);
  d = H5Dopen2(f, "/counts", H5P_DEFAULT);
  assert_true(H5Dread(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, counts) >= 0);
  H5Dclose(d);
  d = H5Dopen2(f, "/label_min", H5P_DEFAULT);
  assert_true(H5Dread(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, lo) >= 0);
  H5Dclose(d);
  d = H5Dopen2(f, "/label_max", H5P_DEFAULT);
  assert_true(H5Dread(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, hi) >= 0);
  H5Dclose(d);
  H5Fclose(f);
  assert_int_equal(counts[0], 6), assert_int_equal(counts[1], 5), assert_int_equal(counts[2], 6);
  assert_int_equal(lo[0], 0), assert_int_equal(hi[0], 3);
  assert_int_equal(lo[1], 4), assert_int_equal(hi[1], 7);
  assert_int_equal(lo[2], 0), assert_int_equal(hi[2], 7);
  check_manifest_reads(nested);
}

/* ---- crafting files with the HDF5 C API ---- */

static void put_str_attr(hid_t f, const char *name, const char *value, int fixed) {
  hid_t t = H5Tcopy(H5T_C_S1), sp = H5Screate(H5S_SCALAR);
  if (fixed) {
    H5Tset_size(t, strlen(value) + 1);
  } else {
    H5Tset_size(t, H5T_VARIABLE);
  }
  hid_t a = H5Acreate2(f, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
  assert_true(a >= 0);
  assert_true(H5Awrite(a, t, fixed ? (const void *)value : (const void *)&value) >= 0);
  H5Aclose(a), H5Sclose(sp), H5Tclose(t);
}

static void put_int_attr(hid_t f, const char *name, hid_t type, int64_t value) {
  hid_t sp = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(f, name, type, sp, H5P_DEFAULT, H5P_DEFAULT);
  assert_true(a >= 0);
  assert_true(H5Awrite(a, H5T_NATIVE_INT64, &value) >= 0);
  H5Aclose(a), H5Sclose(sp);
}

/* A dataset of any type and shape; data (may be NULL: zeros) is given as int64. */
static void put_dataset(hid_t f, const char *name, hid_t type, int rank, const hsize_t *dims,
                        const int64_t *data) {
  hid_t sp = H5Screate_simple(rank, dims, NULL);
  hid_t d = H5Dcreate2(f, name, type, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  assert_true(d >= 0);
  hssize_t n = H5Sget_simple_extent_npoints(sp);
  int64_t *buf = calloc((size_t)n + 1, sizeof *buf);
  if (data) memcpy(buf, data, (size_t)n * sizeof *buf);
  assert_true(H5Dwrite(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0);
  free(buf);
  H5Dclose(d), H5Sclose(sp);
}

/* What a crafted shard holds; the defaults (spec_ok) make a valid shard of 4 images. */
typedef struct {
  const char *format;  /* NULL: attribute left out */
  int version_as_string;
  int64_t version, num_classes, height, width;
  int omit_num_classes, omit_images, omit_labels, images_as_group;
  hid_t image_type, label_type;
  int image_rank;
  hsize_t image_dims[4], label_dims[1];
  int64_t labels[4];
} shard_spec;

static shard_spec spec_ok(void) {
  shard_spec s = {LFS_DATASET_FORMAT, 0, 1, 5, H, W, 0, 0, 0, 0, H5T_STD_U8LE, H5T_STD_I32LE, 4,
                  {4, H, W, 3}, {4}, {0, 1, 2, 3}};
  return s;
}

static void craft_shard(const char *path, const shard_spec *s) {
  hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  assert_true(f >= 0);
  if (s->format) put_str_attr(f, "format", s->format, 0);
  if (s->version_as_string)
    put_str_attr(f, "format_version", "1", 1);
  else
    put_int_attr(f, "format_version", H5T_STD_I64LE, s->version);
  if (!s->omit_num_classes) put_int_attr(f, "num_classes", H5T_STD_I32LE, s->num_classes);
  put_int_attr(f, "height", H5T_STD_I32LE, s->height);
  put_int_attr(f, "width", H5T_STD_U16LE, s->width); /* any integer type is accepted */
  put_str_attr(f, "source", "crafted", 1);
  if (s->images_as_group)
    H5Gclose(H5Gcreate2(f, "/images", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
  else if (!s->omit_images)
    put_dataset(f, "/images", s->image_type, s->image_rank, s->image_dims, NULL);
  if (!s->omit_labels) put_dataset(f, "/labels", s->label_type, 1, s->label_dims, s->labels);
  H5Fclose(f);
}

/* Opening the crafted shard must fail with a message containing path and `want`. */
static void expect_open_error(const shard_spec *s, const char *want) {
  const char *path = P("bad.h5");
  craft_shard(path, s);
  char err[1024] = "";
  lfs_dataset *ds = lfs_dataset_open(path, err, sizeof err);
  if (ds) fail_msg("opened a shard that should fail with \"%s\"", want);
  expect_msg(err, path, want, NULL);
}

static void test_crafted_valid_shard(void **state) {
  (void)state;
  shard_spec s = spec_ok();
  craft_shard(P("crafted.h5"), &s);
  char err[1024];
  lfs_dataset *ds = lfs_dataset_open(P("crafted.h5"), err, sizeof err);
  if (!ds) fail_msg("%s", err);
  assert_int_equal(lfs_dataset_count(ds), 4);
  assert_int_equal(lfs_dataset_chunk(ds), 1); /* contiguous layout: image by image */
  assert_string_equal(lfs_dataset_source(ds), "crafted");
  int32_t lab[4];
  assert_int_equal(lfs_dataset_read(ds, 0, 4, NULL, lab, err, sizeof err), 0);
  assert_int_equal(lab[3], 3);
  lfs_dataset_close(ds);
}

static void test_shard_validation(void **state) {
  (void)state;
  shard_spec s;
  s = spec_ok(), s.format = NULL;
  expect_open_error(&s, "attribute format is missing");
  s = spec_ok(), s.format = "lfsearch-pairs";
  expect_open_error(&s, "attribute format is \"lfsearch-pairs\"");
  s = spec_ok(), s.version = 2;
  expect_open_error(&s, "format_version is 2");
  s = spec_ok(), s.version_as_string = 1;
  expect_open_error(&s, "attribute format_version has type string, expected an integer");
  s = spec_ok(), s.omit_num_classes = 1;
  expect_open_error(&s, "attribute num_classes is missing");
  s = spec_ok(), s.num_classes = 0;
  expect_open_error(&s, "attribute num_classes = 0 is outside [1, ");
  s = spec_ok(), s.num_classes = -3;
  expect_open_error(&s, "attribute num_classes = -3");
  s = spec_ok(), s.height = 0;
  expect_open_error(&s, "attribute height = 0");
  s = spec_ok(), s.omit_images = 1;
  expect_open_error(&s, "dataset /images is missing");
  s = spec_ok(), s.omit_labels = 1;
  expect_open_error(&s, "dataset /labels is missing");
  s = spec_ok(), s.images_as_group = 1;
  expect_open_error(&s, "/images is not a dataset");
  s = spec_ok(), s.image_type = H5T_IEEE_F32LE;
  expect_open_error(&s, "dataset /images has type float32, expected uint8");
  s = spec_ok(), s.image_type = H5T_STD_I8LE;
  expect_open_error(&s, "dataset /images has type int8, expected uint8");
  s = spec_ok(), s.label_type = H5T_STD_I64LE;
  expect_open_error(&s, "dataset /labels has type int64, expected int32");
  s = spec_ok(), s.label_type = H5T_IEEE_F64LE;
  expect_open_error(&s, "dataset /labels has type float64, expected int32");
  s = spec_ok(), s.image_rank = 3;
  expect_open_error(&s, "dataset /images has rank 3, expected 4");
  s = spec_ok(), s.image_dims[3] = 4;
  expect_open_error(&s, "dataset /images has 4 channels");
  s = spec_ok(), s.image_dims[1] = H + 1;
  expect_open_error(&s, "dataset /images holds 6x7 images but attributes height, width say 5x7");
  s = spec_ok(), s.width = W - 1;
  expect_open_error(&s, "attributes height, width say 5x6");
  s = spec_ok(), s.label_dims[0] = 3;
  expect_open_error(&s, "dataset /labels has 3 entries but /images has 4 images");
}

/* A label out of [0, num_classes) is found when its row is read. */
static void test_label_range_on_read(void **state) {
  (void)state;
  const char *path = P("badlabel.h5");
  shard_spec s = spec_ok();
  s.labels[2] = 5; /* num_classes = 5 */
  craft_shard(path, &s);
  char err[1024];
  lfs_dataset *ds = lfs_dataset_open(path, err, sizeof err);
  if (!ds) fail_msg("%s", err);
  int32_t lab[4];
  uint8_t img[4 * IMG];
  assert_int_equal(lfs_dataset_read(ds, 0, 2, img, lab, err, sizeof err), 0); /* rows 0, 1 are fine */
  assert_int_equal(lfs_dataset_read(ds, 1, 3, img, lab, err, sizeof err), -1);
  expect_msg(err, path, "/labels[2] = 5", "num_classes = 5", NULL);
  lfs_dataset_close(ds);
  s = spec_ok();
  s.labels[3] = -1;
  craft_shard(path, &s);
  ds = lfs_dataset_open(path, err, sizeof err);
  if (!ds) fail_msg("%s", err);
  assert_int_equal(lfs_dataset_read(ds, 0, 4, NULL, lab, err, sizeof err), -1);
  expect_msg(err, path, "/labels[3] = -1", NULL);
  lfs_dataset_close(ds);
}

/* Runs fn with stderr redirected to a file and returns how many bytes were printed there. */
static long stderr_bytes(void (*fn)(void)) {
  const char *cap = P("stderr.txt");
  fflush(stderr);
  int saved = dup(2);
  int fd = open(cap, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  assert_true(saved >= 0 && fd >= 0);
  dup2(fd, 2);
  close(fd);
  fn();
  fflush(stderr);
  dup2(saved, 2);
  close(saved);
  struct stat st;
  assert_int_equal(stat(cap, &st), 0);
  unlink(cap);
  return (long)st.st_size;
}

static char not_hdf5_msg[1024], missing_msg[1024], garbage_msg[1024], truncated_msg[1024];

static void open_bad_files(void) {
  FILE *fp = fopen(P("text.h5"), "w");
  fputs("this is not HDF5\n", fp);
  fclose(fp);
  assert_null(lfs_dataset_open(P("text.h5"), not_hdf5_msg, sizeof not_hdf5_msg));
  assert_null(lfs_dataset_open(P("missing.h5"), missing_msg, sizeof missing_msg));
  /* an HDF5 signature followed by garbage: HDF5 itself fails deep inside */
  fp = fopen(P("garbage.h5"), "wb");
  fwrite("\211HDF\r\n\032\n", 1, 8, fp);
  for (int i = 0; i < 600; i++) fputc((i * 7919) & 0xff, fp);
  fclose(fp);
  assert_null(lfs_pairset_open(P("garbage.h5"), garbage_msg, sizeof garbage_msg));
  /* a shard cut in half (a copy interrupted, a full disk) */
  const int appends[] = {40};
  write_shard(P("truncated.h5"), H, W, 4, 0, appends, 1, 0, 5, 5);
  struct stat st;
  assert_int_equal(stat(P("truncated.h5"), &st), 0);
  assert_int_equal(truncate(P("truncated.h5"), st.st_size / 2), 0);
  assert_null(lfs_dataset_open(P("truncated.h5"), truncated_msg, sizeof truncated_msg));
}

static void test_not_hdf5_and_missing(void **state) {
  (void)state;
  assert_int_equal(stderr_bytes(open_bad_files), 0); /* HDF5 printed no diagnostics */
  expect_msg(not_hdf5_msg, P("text.h5"), "not an HDF5 file", NULL);
  expect_msg(missing_msg, P("missing.h5"), "No such file", NULL);
  expect_msg(garbage_msg, P("garbage.h5"), "truncated or corrupt", NULL);
  expect_msg(truncated_msg, P("truncated.h5"), "truncated or corrupt", NULL);
  char format[64], err[1024];
  assert_int_equal(lfs_h5_format(P("text.h5"), format, sizeof format, err, sizeof err), -1);
  expect_msg(err, P("text.h5"), "not an HDF5 file", NULL);
  hid_t f = H5Fcreate(P("plain.h5"), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  H5Fclose(f);
  assert_int_equal(lfs_h5_format(P("plain.h5"), format, sizeof format, err, sizeof err), -1);
  expect_msg(err, P("plain.h5"), "no root attribute format", NULL);
}

/* ---- pair sets ---- */

static void test_pairset_round_trip(void **state) {
  (void)state;
  enum { PAIRS = 5, PH = 4, PW = 6 };
  uint8_t img[2 * PAIRS * PH * PW * 3], same[PAIRS] = {1, 0, 0, 1, 1};
  fill_images(img, 0, 2 * PAIRS, PH, PW);
  char err[1024];
  const char *path = P("pairs.h5");
  assert_int_equal(lfs_pairset_write(path, "unit_pairs", PH, PW, PAIRS, img, same, err, sizeof err), 0);
  lfs_pairset *ps = lfs_pairset_open(path, err, sizeof err);
  if (!ps) fail_msg("%s", err);
  assert_int_equal(lfs_pairset_count(ps), PAIRS);
  assert_int_equal(lfs_pairset_height(ps), PH);
  assert_int_equal(lfs_pairset_width(ps), PW);
  assert_string_equal(lfs_pairset_name(ps), "unit_pairs");
  uint8_t got_same[PAIRS], got[2 * PAIRS * PH * PW * 3];
  assert_int_equal(lfs_pairset_issame(ps, 1, 4, got_same, err, sizeof err), 0);
  assert_memory_equal(got_same, same + 1, 4);
  memset(got, 0, sizeof got);
  assert_int_equal(lfs_pairset_read(ps, 1, 3, got, err, sizeof err), 0);
  check_images(got, 2, 6, PH, PW); /* pair 1 is rows 2 and 3 */
  assert_int_equal(lfs_pairset_read(ps, 3, 3, got, err, sizeof err), -1);
  expect_msg(err, path, "pairs [3, 6)", NULL);
  assert_int_equal(lfs_pairset_issame(ps, -1, 2, got_same, err, sizeof err), -1);
  expect_msg(err, path, NULL);
  lfs_pairset_close(ps);
  char format[64];
  assert_int_equal(lfs_h5_format(path, format, sizeof format, err, sizeof err), 0);
  assert_string_equal(format, LFS_PAIRS_FORMAT);
  /* a pair set is not a dataset, and the other way round */
  assert_null(lfs_dataset_open(path, err, sizeof err));
  expect_msg(err, path, "attribute format is \"lfsearch-pairs\"", NULL);
  assert_null(lfs_pairset_open(P("rt.h5"), err, sizeof err));
  expect_msg(err, P("rt.h5"), "attribute format is \"lfsearch-dataset\", expected \"lfsearch-pairs\"", NULL);
  /* writer arguments */
  same[2] = 3;
  assert_int_equal(lfs_pairset_write(P("pairs2.h5"), "x", PH, PW, PAIRS, img, same, err, sizeof err), -1);
  expect_msg(err, P("pairs2.h5"), "issame[2] = 3", NULL);
  assert_false(file_exists(P("pairs2.h5")));
}

typedef struct {
  int64_t pairs, image_rows;
  hid_t issame_type;
  int64_t issame[4];
  int omit_name;
} pair_spec;

static void craft_pairs(const char *path, const pair_spec *s) {
  hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  put_str_attr(f, "format", LFS_PAIRS_FORMAT, 1);
  put_int_attr(f, "format_version", H5T_STD_I32LE, 1);
  if (!s->omit_name) put_str_attr(f, "name", "crafted", 0);
  hsize_t idims[4] = {(hsize_t)s->image_rows, 3, 2, 3}, sdims[1] = {(hsize_t)s->pairs};
  put_dataset(f, "/images", H5T_STD_U8LE, 4, idims, NULL);
  put_dataset(f, "/issame", s->issame_type, 1, sdims, s->issame);
  H5Fclose(f);
}

static void test_pairset_validation(void **state) {
  (void)state;
  const char *path = P("badpairs.h5");
  char err[1024];
  struct {
    pair_spec spec;
    const char *want;
  } cases[] = {
      {{3, 6, H5T_STD_U8LE, {1, 0, 1}, 0}, NULL},
      {{3, 6, H5T_STD_U8LE, {1, 2, 1}, 0}, "/issame[1] = 2, expected 0 or 1"},
      {{3, 5, H5T_STD_U8LE, {1, 0, 1}, 0}, "dataset /images has 5 images, expected 2 x 3 pairs (/issame) = 6"},
      {{3, 6, H5T_STD_I32LE, {1, 0, 1}, 0}, "dataset /issame has type int32, expected uint8"},
      {{3, 6, H5T_STD_U8LE, {1, 0, 1}, 1}, "attribute name is missing"},
      {{0, 0, H5T_STD_U8LE, {0}, 0}, "dataset /issame is empty"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    craft_pairs(path, &cases[i].spec);
    lfs_pairset *ps = lfs_pairset_open(path, err, sizeof err);
    if (!cases[i].want) {
      if (!ps) fail_msg("%s", err);
      assert_int_equal(lfs_pairset_count(ps), 3);
      assert_string_equal(lfs_pairset_name(ps), "crafted");
      lfs_pairset_close(ps);
      continue;
    }
    if (ps) fail_msg("opened a pair set that should fail with \"%s\"", cases[i].want);
    expect_msg(err, path, cases[i].want, NULL);
  }
}

/* ---- manifests that disagree with their shards ---- */

static void expect_manifest_error(const char *manifest, const char *want1, const char *want2) {
  char err[1024] = "";
  lfs_dataset *ds = lfs_dataset_open(manifest, err, sizeof err);
  if (ds) fail_msg("opened a manifest that should fail with \"%s\"", want1);
  expect_msg(err, manifest, want1, want2, NULL);
}

static void test_manifest_validation(void **state) {
  (void)state;
  write_manifest_shards();
  char err[1024];
  const char *m = P("manifest-bad.h5");
  const char *moved = DIR_SHARDS "/s1-moved.h5";
  if (lfs_manifest_write(m, shard_paths, 3, err, sizeof err) != 0) fail_msg("%s", err);
  /* a missing shard */
  assert_int_equal(rename(shard_paths[1], moved), 0);
  expect_manifest_error(m, "shard 1: " DIR_SHARDS "/s1.h5", "No such file");
  assert_int_equal(rename(moved, shard_paths[1]), 0);
  /* a shard replaced by one with another count, size or num_classes */
  const int four[] = {4}, five[] = {5};
  write_shard(shard_paths[1], H, W, 3, 6, four, 1, 4, 4, 8);
  expect_manifest_error(m, "/counts[1] = 5 but shard " DIR_SHARDS "/s1.h5 has 4 images", NULL);
  write_shard(shard_paths[1], H + 1, W, 3, 6, five, 1, 4, 4, 8);
  expect_manifest_error(m, "shard " DIR_SHARDS "/s1.h5 holds 6x7 images", "height, width say 5x7");
  write_shard(shard_paths[1], H, W, 3, 6, five, 1, 4, 4, 9);
  expect_manifest_error(m, "shard " DIR_SHARDS "/s1.h5 has num_classes = 9", "num_classes = 8");
  /* a shard whose labels leave the range the manifest records: found on read */
  write_shard(shard_paths[1], H, W, 3, 6, five, 1, 0, 4, 8); /* labels 2, 3, 0, 1, 2 */
  lfs_dataset *ds = lfs_dataset_open(m, err, sizeof err);
  if (!ds) fail_msg("%s", err);
  int32_t lab[17];
  assert_int_equal(lfs_dataset_read(ds, 0, 6, NULL, lab, err, sizeof err), 0); /* shard 0 is fine */
  assert_int_equal(lfs_dataset_read(ds, 0, 17, NULL, lab, err, sizeof err), -1);
  expect_msg(err, DIR_SHARDS "/s1.h5", "/labels[0] = 2", "range [4, 7] its manifest records", NULL);
  lfs_dataset_close(ds);
  /* a shard that is not a shard */
  shard_spec bad = spec_ok();
  bad.label_type = H5T_STD_I64LE;
  craft_shard(shard_paths[1], &bad);
  expect_manifest_error(m, DIR_SHARDS "/s1.h5: dataset /labels has type int64", NULL);
  write_manifest_shards();
}

/* A manifest written by hand: fixed-length path strings, any stored ranges. */
static void craft_manifest(const char *path, int32_t num_classes, int64_t total, int32_t max1,
                           int64_t count0) {
  hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  put_str_attr(f, "format", LFS_MANIFEST_FORMAT, 1);
  put_int_attr(f, "format_version", H5T_STD_I32LE, 1);
  put_int_attr(f, "height", H5T_STD_I32LE, H);
  put_int_attr(f, "width", H5T_STD_I32LE, W);
  put_int_attr(f, "num_classes", H5T_STD_I32LE, num_classes);
  put_int_attr(f, "total", H5T_STD_I64LE, total);
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, 32);
  H5Tset_strpad(t, H5T_STR_NULLPAD);
  hsize_t n = 2;
  hid_t sp = H5Screate_simple(1, &n, NULL);
  hid_t d = H5Dcreate2(f, "/shards", t, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  char names[2][32] = {{0}};
  snprintf(names[0], 32, "%s", DIR_SHARDS "/s0.h5");
  snprintf(names[1], 32, "%s", DIR_SHARDS "/s1.h5");
  assert_true(H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, names) >= 0);
  H5Dclose(d), H5Sclose(sp), H5Tclose(t);
  const int64_t counts[2] = {count0, 5}, lo[2] = {0, 4}, hi[2] = {3, max1};
  put_dataset(f, "/counts", H5T_STD_I64LE, 1, &n, counts);
  put_dataset(f, "/label_min", H5T_STD_I32LE, 1, &n, lo);
  put_dataset(f, "/label_max", H5T_STD_I32LE, 1, &n, hi);
  H5Fclose(f);
}

static void test_manifest_crafted(void **state) {
  (void)state;
  write_manifest_shards();
  const char *m = P("manifest-crafted.h5");
  char err[1024];
  craft_manifest(m, 8, 11, 7, 6);
  lfs_dataset *ds = lfs_dataset_open(m, err, sizeof err);
  if (!ds) fail_msg("%s", err);
  assert_int_equal(lfs_dataset_count(ds), 11);
  assert_string_equal(lfs_dataset_source(ds), "unit test"); /* no source attribute: the first shard's */
  uint8_t img[11 * IMG];
  int32_t lab[11];
  assert_int_equal(lfs_dataset_read(ds, 0, 11, img, lab, err, sizeof err), 0);
  check_images(img, 0, 11, H, W);
  lfs_dataset_close(ds);
  craft_manifest(m, 7, 11, 7, 6);
  expect_manifest_error(m, "/label_max[1] = 7 is not below num_classes = 7", NULL);
  craft_manifest(m, 8, 12, 7, 6);
  expect_manifest_error(m, "attribute total = 12 but /counts add up to 11", NULL);
  craft_manifest(m, 8, 5, 7, 0);
  expect_manifest_error(m, "/counts[0] = 0", NULL);
}

static void test_manifest_write_errors(void **state) {
  (void)state;
  write_manifest_shards();
  char err[1024];
  const char *m = P("manifest-w.h5");
  const int five[] = {5};
  write_shard(P("other-size.h5"), H + 1, W, 3, 0, five, 1, 0, 4, 8);
  write_shard(P("other-classes.h5"), H, W, 3, 0, five, 1, 0, 4, 9);
  const char *size[] = {shard_paths[0], P("other-size.h5")};
  assert_int_equal(lfs_manifest_write(m, size, 2, err, sizeof err), -1);
  expect_msg(err, m, P("other-size.h5"), "6x7", NULL);
  const char *classes[] = {shard_paths[0], P("other-classes.h5")};
  assert_int_equal(lfs_manifest_write(m, classes, 2, err, sizeof err), -1);
  expect_msg(err, m, "num_classes = 9", NULL);
  const char *twice[] = {shard_paths[0], DIR_SHARDS "/../" DIR_SHARDS "/s0.h5"};
  assert_int_equal(lfs_manifest_write(m, twice, 2, err, sizeof err), -1);
  expect_msg(err, m, "listed twice", NULL);
  const char *missing[] = {shard_paths[0], P("nope.h5")};
  assert_int_equal(lfs_manifest_write(m, missing, 2, err, sizeof err), -1);
  expect_msg(err, m, P("nope.h5"), "No such file", NULL);
  const char *self[] = {shard_paths[0], shard_paths[1]};
  assert_int_equal(lfs_manifest_write(shard_paths[1], self, 2, err, sizeof err), -1);
  expect_msg(err, "its own shard", NULL);
  assert_false(file_exists(m));
  char tmp[512];
  tmp_name(tmp, sizeof tmp, m);
  assert_false(file_exists(tmp));
}

/* ---- writers ---- */

static void test_writer_abort(void **state) {
  (void)state;
  const char *path = P("aborted.h5");
  char err[1024], tmp[512];
  tmp_name(tmp, sizeof tmp, path);
  unlink(path);
  lfs_dataset_writer *w = lfs_dataset_writer_create(path, H, W, 2, "abort", err, sizeof err);
  if (!w) fail_msg("%s", err);
  uint8_t img[3 * IMG];
  int32_t lab[3] = {0, 1, 2};
  fill_images(img, 0, 3, H, W);
  assert_int_equal(lfs_dataset_writer_append(w, img, lab, 3, err, sizeof err), 0);
  assert_true(file_exists(tmp)); /* written under the temporary name... */
  assert_false(file_exists(path)); /* ...never under the final one */
  lfs_dataset_writer_abort(w);
  assert_false(file_exists(tmp));
  assert_false(file_exists(path));
  /* bad arguments and a negative label are refused */
  assert_null(lfs_dataset_writer_create(path, H, W, 0, "x", err, sizeof err));
  expect_msg(err, path, "chunk", NULL);
  assert_null(lfs_dataset_writer_create(path, 0, W, 2, "x", err, sizeof err));
  expect_msg(err, path, "0x7", NULL);
  assert_null(lfs_dataset_writer_create(P("no-such-dir/x.h5"), H, W, 2, "x", err, sizeof err));
  expect_msg(err, P("no-such-dir/x.h5"), "cannot create", NULL);
  w = lfs_dataset_writer_create(path, H, W, 2, "abort", err, sizeof err);
  lab[1] = -4;
  assert_int_equal(lfs_dataset_writer_append(w, img, lab, 3, err, sizeof err), -1);
  expect_msg(err, path, "label of image 1 is -4", NULL);
  lfs_dataset_writer_abort(w);
  assert_false(file_exists(tmp));
  assert_false(file_exists(path));
}

static void test_failed_finish_keeps_old_file(void **state) {
  (void)state;
  const char *path = P("keep.h5");
  const int six[] = {6};
  write_shard(path, H, W, 2, 0, six, 1, 0, 3, 3); /* the existing file: 6 images, 3 classes */
  char err[1024], tmp[512];
  tmp_name(tmp, sizeof tmp, path);
  lfs_dataset_writer *w = lfs_dataset_writer_create(path, H, W, 2, "replacement", err, sizeof err);
  if (!w) fail_msg("%s", err);
  uint8_t img[2 * IMG];
  int32_t lab[2] = {1, 3}; /* 3 == num_classes: one too many */
  fill_images(img, 100, 2, H, W);
  assert_int_equal(lfs_dataset_writer_append(w, img, lab, 2, err, sizeof err), 0);
  /* the old file is still whole while the new one is written */
  lfs_dataset *ds = lfs_dataset_open(path, err, sizeof err);
  if (!ds) fail_msg("%s", err);
  assert_int_equal(lfs_dataset_count(ds), 6);
  lfs_dataset_close(ds);
  assert_int_equal(lfs_dataset_writer_finish(w, 3, err, sizeof err), -1);
  expect_msg(err, path, "label 3 is not below num_classes = 3", NULL);
  assert_false(file_exists(tmp));
  ds = lfs_dataset_open(path, err, sizeof err);
  if (!ds) fail_msg("%s", err);
  assert_int_equal(lfs_dataset_count(ds), 6);
  assert_string_equal(lfs_dataset_source(ds), "unit test");
  uint8_t old[6 * IMG];
  assert_int_equal(lfs_dataset_read(ds, 0, 6, old, NULL, err, sizeof err), 0);
  check_images(old, 0, 6, H, W);
  lfs_dataset_close(ds);
  /* num_classes < 1 fails too; a successful finish replaces the file */
  w = lfs_dataset_writer_create(path, H, W, 2, "replacement", err, sizeof err);
  assert_int_equal(lfs_dataset_writer_append(w, img, lab, 2, err, sizeof err), 0);
  assert_int_equal(lfs_dataset_writer_finish(w, 0, err, sizeof err), -1);
  expect_msg(err, path, "num_classes = 0", NULL);
  w = lfs_dataset_writer_create(path, H, W, 2, "replacement", err, sizeof err);
  assert_int_equal(lfs_dataset_writer_append(w, img, lab, 2, err, sizeof err), 0);
  assert_int_equal(lfs_dataset_writer_finish(w, 4, err, sizeof err), 0);
  ds = lfs_dataset_open(path, err, sizeof err);
  if (!ds) fail_msg("%s", err);
  assert_int_equal(lfs_dataset_count(ds), 2);
  assert_string_equal(lfs_dataset_source(ds), "replacement");
  lfs_dataset_close(ds);
  assert_false(file_exists(tmp));
}

/* ---- two threads reading one dataset (the loader's prefetch thread and the main thread) ---- */

enum { THREADS = 4 };

typedef struct {
  lfs_dataset *ds;
  int offset, failures;
} reader_arg;

/* Reads ranges of the shared handle and, every few reads, opens and reads a
 * private handle of the same file (as the main thread does while prefetching). */
static void *reader(void *p) {
  reader_arg *a = p;
  uint8_t img[8 * IMG];
  int32_t lab[8];
  char err[1024];
  for (int it = 0; it < 400; it++) {
    int64_t first = (it * 5 + a->offset) % 10, n = 1 + (it + a->offset) % 8;
    lfs_dataset *own = it % 8 == 0 ? lfs_dataset_open(P("threads.h5"), err, sizeof err) : NULL;
    if (lfs_dataset_read(own ? own : a->ds, first, n, img, lab, err, sizeof err) != 0) {
      a->failures++;
      lfs_dataset_close(own);
      continue;
    }
    lfs_dataset_close(own);
    for (int64_t i = 0; i < n; i++)
      if (img[i * IMG + IMG - 1] != pixel(first + i, H - 1, W - 1, 2) || lab[i] != (first + i) % 5)
        a->failures++;
  }
  return NULL;
}

static void test_threads(void **state) {
  (void)state;
  char err[1024];
  const int appends[] = {3, 6, 1, 7};
  write_shard(P("threads.h5"), H, W, 4, 0, appends, 4, 0, 5, 5);
  lfs_dataset *ds = lfs_dataset_open(P("threads.h5"), err, sizeof err);
  if (!ds) fail_msg("%s", err);
  reader_arg args[THREADS];
  pthread_t t[THREADS];
  for (int i = 0; i < THREADS; i++) {
    args[i] = (reader_arg){ds, 3 * i, 0};
    assert_int_equal(pthread_create(&t[i], NULL, reader, &args[i]), 0);
  }
  for (int i = 0; i < THREADS; i++) {
    pthread_join(t[i], NULL);
    assert_int_equal(args[i].failures, 0);
  }
  lfs_dataset_close(ds);
}

/* Runs last: every error path above must have closed what it opened. */
static void test_no_leaked_ids(void **state) {
  (void)state;
  /* files, datasets, groups, named types and attributes (HDF5 cannot count dataspaces) */
  assert_int_equal(H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL), 0);
}

/* Removes this test's files ("test_dataset-*") from dir and its sub-directories. */
static void remove_scratch(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (strncmp(e->d_name, P(""), strlen(P(""))) != 0 && strcmp(dir, ".") == 0) continue;
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    struct stat st;
    if (lstat(path, &st) != 0) continue;
    if (S_ISDIR(st.st_mode)) {
      remove_scratch(path);
      rmdir(path);
    } else {
      unlink(path);
    }
  }
  closedir(d);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_dataset_round_trip),   cmocka_unit_test(test_dataset_layout),
      cmocka_unit_test(test_manifest_round_trip),  cmocka_unit_test(test_crafted_valid_shard),
      cmocka_unit_test(test_shard_validation),     cmocka_unit_test(test_label_range_on_read),
      cmocka_unit_test(test_not_hdf5_and_missing), cmocka_unit_test(test_pairset_round_trip),
      cmocka_unit_test(test_pairset_validation),   cmocka_unit_test(test_manifest_validation),
      cmocka_unit_test(test_manifest_crafted),     cmocka_unit_test(test_manifest_write_errors),
      cmocka_unit_test(test_writer_abort),         cmocka_unit_test(test_failed_finish_keeps_old_file),
      cmocka_unit_test(test_threads),              cmocka_unit_test(test_no_leaked_ids),
  };
  int failed = cmocka_run_group_tests(tests, NULL, NULL);
  if (failed == 0) remove_scratch("."); /* kept after a failure, to look at */
  return failed;
}
