/* test_pack.c: `lfsearch pack`'s converters (src/data/pack*.c, recordio.c,
 * pickle.c). Inputs are written by tests/data/make_rec.py and make_bin.py
 * (Python standard library only) from the committed images in tests/data/img;
 * every pixel and label of the output is compared with lfs_image_decode of the
 * same bytes. Also: split records, header records, shards and manifests,
 * resizing, folders and list files, thread-count independence, and corrupt or
 * truncated inputs (errors naming index and byte offset, --skip-bad counts,
 * no partial output). */
#define _GNU_SOURCE
#include <dirent.h>
#include <math.h>
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

#include "lfs/dataset.h"
#include "lfs/image.h"
#include "lfs/pack.h"
#include "lfs/philox.h"
#include "testutil.h"

#define PY "/usr/bin/python3"

static char work[256]; /* this test's scratch folder */

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...) {
  char cmd[8192];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof cmd, fmt, ap);
  va_end(ap);
  const int rc = system(cmd);
  if (rc != 0) fail_msg("command failed (%d): %s", rc, cmd);
}

static const char *img(const char *name) {
  static char buf[8][1024];
  static int next;
  char *out = buf[next++ % 8];
  snprintf(out, 1024, "%s", tu_srcpath("tests/data/img/"));
  strncat(out, name, 1024 - strlen(out) - 1);
  return out;
}

/* A path in the scratch folder, kept until the test's teardown (options hold on to them). */
static char *paths[1024];
static int npaths;
static const char *at(const char *name) {
  char *out = NULL;
  if (npaths == 1024 || asprintf(&out, "%s/%s", work, name) < 0) fail_msg("out of paths");
  return paths[npaths++] = out;
}

/* A fresh, empty scratch folder per test. */
static int setup(void **state) {
  (void)state;
  snprintf(work, sizeof work, "/tmp/lfs-test-pack-XXXXXX");
  if (!mkdtemp(work)) return -1;
  return 0;
}

static int teardown(void **state) {
  (void)state;
  while (npaths) free(paths[--npaths]);
  char cmd[512];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", work);
  return system(cmd) == 0 ? 0 : -1;
}

/* Number of entries in the scratch folder whose name starts with prefix. */
static int count_files(const char *prefix) {
  DIR *d = opendir(work);
  assert_non_null(d);
  int n = 0;
  for (struct dirent *e; (e = readdir(d));)
    if (e->d_name[0] != '.' && !strncmp(e->d_name, prefix, strlen(prefix))) n++;
  closedir(d);
  return n;
}

static uint8_t *read_all(const char *path, size_t *size) {
  FILE *f = fopen(path, "rb");
  if (!f) fail_msg("%s: cannot open", path);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t *buf = malloc((size_t)n + 1);
  assert_non_null(buf);
  assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
  fclose(f);
  *size = (size_t)n;
  return buf;
}

/* Decoded pixels of a fixture, optionally resized to s x s. */
static uint8_t *decoded(const char *name, int s, int *h, int *w) {
  size_t n;
  uint8_t *bytes = read_all(img(name), &n), *rgb = NULL;
  char err[256];
  if (lfs_image_decode(bytes, n, &rgb, h, w, err, sizeof err)) fail_msg("%s: %s", name, err);
  free(bytes);
  if (s > 0 && (*h != s || *w != s)) {
    uint8_t *r = malloc((size_t)s * s * 3);
    lfs_image_resize(r, s, s, rgb, *h, *w);
    free(rgb);
    rgb = r;
    *h = *w = s;
  }
  return rgb;
}

static lfs_pack_options options(lfs_pack_kind kind, const char *input, const char *out) {
  lfs_pack_options o = {.kind = kind, .input = input, .out = out, .shard_size = 1000,
                        .threads = 2, .seed = 7};
  return o;
}

static void pack_ok(const lfs_pack_options *o, lfs_pack_summary *sum) {
  char err[2048];
  if (lfs_pack_run(o, sum, err, sizeof err)) fail_msg("pack failed: %s", err);
}

/* Runs a conversion that must fail; returns its message (static). */
static const char *pack_fails(const lfs_pack_options *o) {
  static char err[2048];
  lfs_pack_summary sum;
  err[0] = '\0';
  if (lfs_pack_run(o, &sum, err, sizeof err) == 0) fail_msg("pack of %s succeeded", o->input);
  printf("  expected error: %s\n", err);
  assert_true(strlen(err) > 10);
  return err;
}

static void expect_text(const char *text, const char *want) {
  if (!strstr(text, want)) fail_msg("\"%s\" lacks \"%s\"", text, want);
}

typedef struct {
  const char *file;
  int label;
} item;

/* Every image of the dataset at path equals exactly one unused item (decoded,
 * resized to s when s > 0) and carries its label; the position of item k is the
 * Philox permutation documented in pack.c when `ordered`. */
static void check_dataset(const char *path, const item *items, int n, int s, int32_t classes,
                          int ordered, uint64_t seed) {
  char err[1024];
  lfs_dataset *ds = lfs_dataset_open(path, err, sizeof err);
  if (!ds) fail_msg("%s", err);
  assert_int_equal(lfs_dataset_count(ds), n);
  assert_int_equal(lfs_dataset_classes(ds), classes);
  const int H = lfs_dataset_height(ds), W = lfs_dataset_width(ds);
  const size_t image = (size_t)H * W * 3;
  uint8_t *got = malloc((size_t)n * image);
  int32_t *labels = malloc((size_t)n * sizeof *labels);
  if (lfs_dataset_read(ds, 0, n, got, labels, err, sizeof err)) fail_msg("%s", err);
  lfs_dataset_close(ds);
  uint8_t **want = calloc((size_t)n, sizeof *want);
  int *used = calloc((size_t)n, sizeof *used);
  for (int k = 0; k < n; k++) {
    int h, w;
    want[k] = decoded(items[k].file, s, &h, &w);
    assert_int_equal(h, H);
    assert_int_equal(w, W);
  }
  uint64_t *perm = malloc((size_t)n * sizeof *perm);
  const lfs_rng rng = lfs_rng_make(seed, LFS_RNG_DATA_ORDER, 0x7061636bu, 0);
  lfs_rng_permutation(&rng, perm, (size_t)n);
  int moved = 0;
  for (int p = 0; p < n; p++) {
    int match = -1;
    for (int k = 0; k < n && match < 0; k++)
      if (!used[k] && items[k].label == labels[p] && !memcmp(want[k], got + (size_t)p * image, image))
        match = k;
    if (match < 0) fail_msg("%s: image %d (label %d) matches no input image", path, p, labels[p]);
    used[match] = 1;
    if (ordered) assert_int_equal(match, (int)perm[p]);
    moved += match != p;
  }
  if (n >= 4) assert_true(moved > 0); /* shuffled */
  for (int k = 0; k < n; k++) free(want[k]);
  free(want), free(used), free(perm), free(got), free(labels);
}

static const item eight[] = {{"id0_0.jpg", 0}, {"id0_1.jpg", 0}, {"id1_0.jpg", 1},
                             {"id1_1.jpg", 1}, {"id2_0.jpg", 2}, {"id3_0.png", 3},
                             {"id3_1.png", 3}, {"grey.png", 4}};

/* make_rec.py PREFIX OPTIONS with the given items. */
static void make_rec(const char *prefix, const char *opts, const item *items, int n) {
  char args[4096] = "";
  for (int k = 0; k < n; k++) {
    char one[1100];
    snprintf(one, sizeof one, " %s:%d", img(items[k].file), items[k].label);
    strncat(args, one, sizeof args - strlen(args) - 1);
  }
  sh(PY " %s %s %s %s > %s.lst", tu_srcpath("tests/data/make_rec.py"), at(prefix), opts, args,
     at(prefix));
}

/* ---- RecordIO ---- */
static void test_rec_header_split_shards(void **state) {
  (void)state;
  make_rec("train", "--header --split", eight, 8);
  lfs_pack_options o = options(LFS_PACK_REC, at("train.rec"), at("out.h5"));
  o.shard_size = 3;
  lfs_pack_summary sum;
  pack_ok(&o, &sum);
  assert_int_equal(sum.images, 8);
  assert_int_equal(sum.identities, 5);
  assert_int_equal(sum.num_classes, 5);
  assert_int_equal(sum.shards, 3);
  assert_int_equal(sum.skipped, 0);
  char fmt[64], err[256];
  assert_int_equal(lfs_h5_format(at("out.h5"), fmt, sizeof fmt, err, sizeof err), 0);
  assert_string_equal(fmt, LFS_MANIFEST_FORMAT);
  assert_int_equal(lfs_h5_format(at("out-00002.h5"), fmt, sizeof fmt, err, sizeof err), 0);
  assert_string_equal(fmt, LFS_DATASET_FORMAT);
  assert_int_equal(count_files("out"), 4);
  check_dataset(at("out.h5"), eight, 8, 0, 5, 1, 7);
}

static void test_rec_plain_no_idx_label_array(void **state) {
  (void)state;
  make_rec("train", "--no-idx --label-array", eight, 8);
  lfs_pack_options o = options(LFS_PACK_REC, at("train.rec"), at("one.h5"));
  o.threads = 1;
  lfs_pack_summary sum;
  pack_ok(&o, &sum);
  assert_int_equal(sum.shards, 1);
  char fmt[64], err[256];
  assert_int_equal(lfs_h5_format(at("one.h5"), fmt, sizeof fmt, err, sizeof err), 0);
  assert_string_equal(fmt, LFS_DATASET_FORMAT);
  check_dataset(at("one.h5"), eight, 8, 0, 5, 1, 7);
  /* the same seed with other thread counts gives the same bytes */
  o.out = at("three.h5");
  o.threads = 3;
  pack_ok(&o, &sum);
  check_dataset(at("three.h5"), eight, 8, 0, 5, 1, 7);
  /* the header form read without an index: header and identity records left out */
  make_rec("hdr", "--no-idx --header", eight, 8);
  o.input = at("hdr.rec");
  o.out = at("hdr.h5");
  o.seed = 99;
  pack_ok(&o, &sum);
  check_dataset(at("hdr.h5"), eight, 8, 0, 5, 1, 99);
}

static void test_rec_property_and_label_range(void **state) {
  (void)state;
  make_rec("train", "--property 10,16,16", eight, 8);
  lfs_pack_options o = options(LFS_PACK_REC, at("train.rec"), at("out.h5"));
  lfs_pack_summary sum;
  pack_ok(&o, &sum);
  assert_int_equal(sum.num_classes, 10);
  check_dataset(at("out.h5"), eight, 8, 0, 10, 1, 7);
  /* a label beyond num_classes */
  make_rec("big", "--property 10,16,16 --label 3=12", eight, 8);
  o.input = at("big.rec");
  o.out = at("bad.h5");
  const char *e = pack_fails(&o);
  expect_text(e, "record key 3 (index 3) at byte offset");
  expect_text(e, "label 12 is out of range");
  assert_int_equal(count_files("bad"), 0);
  /* labels that are no class ids */
  make_rec("neg", "--label 2=-1", eight, 8);
  o.input = at("neg.rec");
  expect_text(pack_fails(&o), "label -1 is not a class id");
  make_rec("frac", "--label 5=2.5", eight, 8);
  o.input = at("frac.rec");
  expect_text(pack_fails(&o), "label 2.5 is not a class id");
  assert_int_equal(count_files("bad"), 0);
}

static void test_rec_corrupt(void **state) {
  (void)state;
  lfs_pack_options o = options(LFS_PACK_REC, NULL, at("out.h5"));
  lfs_pack_summary sum;
  o.shard_size = 3; /* several shards: none of them may remain */
  /* bad magic, with and without an index */
  make_rec("magic", "--bad-magic 4", eight, 8);
  o.input = at("magic.rec");
  const char *e = pack_fails(&o);
  expect_text(e, "record key 4 (index 4) at byte offset ");
  expect_text(e, "bad record magic");
  assert_int_equal(count_files("out"), 0);
  o.skip_bad = 1;
  pack_ok(&o, &sum);
  assert_int_equal(sum.images, 7);
  assert_int_equal(sum.skipped, 1);
  check_dataset(at("out.h5"), (const item[]){eight[0], eight[1], eight[2], eight[3], eight[5],
                                             eight[6], eight[7]},
                7, 0, 5, 0, 7);
  sh("rm -f %s/out*", work);
  make_rec("scan", "--bad-magic 2 --no-idx --split", eight, 8);
  o.input = at("scan.rec");
  o.skip_bad = 0;
  e = pack_fails(&o);
  expect_text(e, "record index 2: bad record magic 0x0df0ad0b at byte offset ");
  o.skip_bad = 1; /* the scanner finds the next record */
  pack_ok(&o, &sum);
  assert_int_equal(sum.images, 7);
  assert_int_equal(sum.skipped, 1);
  sh("rm -f %s/out*", work);
  /* truncated file: the last record's payload is cut */
  make_rec("trunc", "--truncate 100", eight, 8);
  o.input = at("trunc.rec");
  o.skip_bad = 0;
  e = pack_fails(&o);
  expect_text(e, "record key 7 (index 7) at byte offset");
  expect_text(e, "truncated record");
  assert_int_equal(count_files("out"), 0);
  o.skip_bad = 1;
  pack_ok(&o, &sum);
  assert_int_equal(sum.images, 7);
  assert_int_equal(sum.skipped, 1);
  sh("rm -f %s/out*", work);
  /* a truncated length field: only the magic of a third record is there */
  make_rec("cut", "", eight, 2);
  size_t n;
  free(read_all(at("cut.rec"), &n));
  sh("printf '\\012\\043\\327\\316' >> %s && printf '2\\t%zu\\n' >> %s", at("cut.rec"), n,
     at("cut.idx"));
  o.input = at("cut.rec");
  o.skip_bad = 0;
  e = pack_fails(&o);
  expect_text(e, "record key 2 (index 2)");
  expect_text(e, "truncated record header");
  /* a corrupt JPEG */
  make_rec("jpeg", "--bad-image 1", eight, 8);
  o.input = at("jpeg.rec");
  e = pack_fails(&o);
  size_t first;
  free(read_all(img(eight[0].file), &first));
  char where[128];
  snprintf(where, sizeof where, "record key 1 (index 1) at byte offset %zu:",
           8 + ((24 + first + 3) & ~(size_t)3));
  expect_text(e, where);
  expect_text(e, "corrupt JPEG");
  assert_int_equal(count_files("out"), 0);
  o.skip_bad = 1;
  pack_ok(&o, &sum);
  assert_int_equal(sum.skipped, 1);
  assert_int_equal(sum.images, 7);
}

/* ---- sizes ---- */
static void test_sizes(void **state) {
  (void)state;
  const item mixed[] = {{"id0_0.jpg", 0}, {"big.jpg", 1}, {"id1_0.jpg", 1}, {"id3_0.png", 2}};
  make_rec("mixed", "", mixed, 4);
  lfs_pack_options o = options(LFS_PACK_REC, at("mixed.rec"), at("out.h5"));
  const char *e = pack_fails(&o);
  expect_text(e, "image is 20x24, the dataset's images are 16x16");
  expect_text(e, "aligned crops");
  assert_int_equal(count_files("out"), 0);
  lfs_pack_summary sum;
  o.skip_bad = 1;
  pack_ok(&o, &sum);
  assert_int_equal(sum.images, 3);
  assert_int_equal(sum.skipped, 1);
  assert_int_equal(sum.size_mismatch, 1);
  sh("rm -f %s/out*", work);
  /* --size resizes every image, bilinearly */
  o.skip_bad = 0;
  o.size = 12;
  pack_ok(&o, &sum);
  assert_int_equal(sum.height, 12);
  assert_int_equal(sum.width, 12);
  check_dataset(at("out.h5"), mixed, 4, 12, 3, 1, 7);
}

/* ---- verification .bin ---- */
static void check_pairs(const char *path, const char *name, const char *const *files, int pairs,
                        const uint8_t *issame) {
  char err[1024];
  lfs_pairset *ps = lfs_pairset_open(path, err, sizeof err);
  if (!ps) fail_msg("%s", err);
  assert_int_equal(lfs_pairset_count(ps), pairs);
  assert_string_equal(lfs_pairset_name(ps), name);
  const int H = lfs_pairset_height(ps), W = lfs_pairset_width(ps);
  const size_t image = (size_t)H * W * 3;
  uint8_t *got = malloc(2 * (size_t)pairs * image), *same = malloc((size_t)pairs);
  assert_int_equal(lfs_pairset_read(ps, 0, pairs, got, err, sizeof err), 0);
  assert_int_equal(lfs_pairset_issame(ps, 0, pairs, same, err, sizeof err), 0);
  lfs_pairset_close(ps);
  for (int k = 0; k < 2 * pairs; k++) {
    int h, w;
    uint8_t *want = decoded(files[k], 0, &h, &w);
    assert_int_equal(h, H);
    assert_int_equal(w, W);
    if (memcmp(want, got + (size_t)k * image, image)) fail_msg("%s: image %d differs from %s", path, k, files[k]);
    free(want);
  }
  assert_memory_equal(same, issame, (size_t)pairs);
  free(got);
  free(same);
}

static const char *const bin_files[] = {"id0_0.jpg", "id0_1.jpg", "id1_0.jpg", "id3_0.png",
                                        "grey.png",  "palette.png", "progressive.jpg", "grey.jpg"};
static const uint8_t bin_same[] = {1, 0, 1, 0};

static void make_bin(const char *out, const char *opts) {
  char args[4096] = "";
  for (int k = 0; k < 8; k++) {
    strncat(args, " ", sizeof args - strlen(args) - 1);
    strncat(args, img(bin_files[k]), sizeof args - strlen(args) - 1);
  }
  sh(PY " %s %s --issame 1,0,1,0 %s %s", tu_srcpath("tests/data/make_bin.py"), at(out), opts, args);
}

static void test_bin_forms(void **state) {
  (void)state;
  static const char *const forms[] = {"py2",    "p2",     "p3",     "p4",          "p5",
                                      "numpy2", "numpy4", "numpy5", "numpy-issame"};
  for (size_t f = 0; f < sizeof forms / sizeof forms[0]; f++) {
    char bin[64], opts[64];
    snprintf(bin, sizeof bin, "%s.bin", forms[f]);
    snprintf(opts, sizeof opts, "--form %s", forms[f]);
    make_bin(bin, opts);
    lfs_pack_options o = options(LFS_PACK_BIN, at(bin), at("pairs.h5"));
    lfs_pack_summary sum;
    pack_ok(&o, &sum);
    assert_int_equal(sum.pairs, 4);
    assert_int_equal(sum.genuine, 2);
    assert_int_equal(sum.images, 8);
    check_pairs(at("pairs.h5"), forms[f], bin_files, 4, bin_same);
  }
}

static void test_bin_corrupt(void **state) {
  (void)state;
  lfs_pack_options o = options(LFS_PACK_BIN, NULL, at("lfw.h5"));
  lfs_pack_summary sum;
  make_bin("op.bin", "--bad-opcode");
  o.input = at("op.bin");
  const char *e = pack_fails(&o);
  expect_text(e, "pickle opcode EMPTY_DICT at byte offset");
  expect_text(e, "not supported");
  make_bin("short.bin", "--truncate 30");
  o.input = at("short.bin");
  expect_text(pack_fails(&o), "truncated");
  make_bin("count.bin", "--count-mismatch");
  o.input = at("count.bin");
  expect_text(pack_fails(&o), "holds 9 images for 4 pairs");
  make_bin("img.bin", "--bad-image 2");
  o.input = at("img.bin");
  e = pack_fails(&o);
  expect_text(e, "image 2 (pair 1) at byte offset");
  expect_text(e, "corrupt JPEG");
  assert_int_equal(count_files("lfw"), 0);
  o.skip_bad = 1; /* pair 1 is dropped, the others stay in order */
  o.name = "lfw";
  pack_ok(&o, &sum);
  assert_int_equal(sum.pairs, 3);
  assert_int_equal(sum.skipped, 1);
  const char *const kept[] = {bin_files[0], bin_files[1], bin_files[4],
                              bin_files[5], bin_files[6], bin_files[7]};
  check_pairs(at("lfw.h5"), "lfw", kept, 3, (const uint8_t[]){1, 1, 0});
}

/* ---- folders and lists ---- */
static void test_folder_and_list(void **state) {
  (void)state;
  /* identities in byte order: "Abe" < "bob" < "carl"; "empty" holds no images */
  sh("cd %s && mkdir -p faces/bob faces/Abe faces/carl faces/empty && "
     "cp %s faces/bob/2.jpg && cp %s faces/bob/1.png && cp %s faces/Abe/x.JPG && "
     "cp %s faces/carl/a.jpeg && echo notes > faces/carl/readme.txt && cp %s faces/loose.jpg",
     work, img("id0_0.jpg"), img("id3_0.png"), img("id1_0.jpg"), img("id2_0.jpg"),
     img("id2_1.jpg"));
  const item folder[] = {{"id1_0.jpg", 0}, {"id3_0.png", 1}, {"id0_0.jpg", 1}, {"id2_0.jpg", 2}};
  lfs_pack_options o = options(LFS_PACK_FOLDER, at("faces"), at("f.h5"));
  lfs_pack_summary sum;
  pack_ok(&o, &sum);
  assert_int_equal(sum.images, 4);
  assert_int_equal(sum.identities, 3);
  check_dataset(at("f.h5"), folder, 4, 0, 3, 1, 7);
  /* a list file: relative to its folder, comments and blank lines ignored */
  FILE *f = fopen(at("list.txt"), "w");
  assert_non_null(f);
  fprintf(f, "# path label\nfaces/bob/2.jpg 5\n\n  faces/Abe/x.JPG\t2 \n%s 0\r\n",
          img("grey.png"));
  fclose(f);
  const item listed[] = {{"id0_0.jpg", 5}, {"id1_0.jpg", 2}, {"grey.png", 0}};
  o = options(LFS_PACK_LIST, at("list.txt"), at("l.h5"));
  pack_ok(&o, &sum);
  assert_int_equal(sum.num_classes, 6);
  assert_int_equal(sum.identities, 3);
  check_dataset(at("l.h5"), listed, 3, 0, 6, 1, 7);
  /* a bad line, a missing file */
  f = fopen(at("bad.txt"), "w");
  fprintf(f, "faces/bob/2.jpg 1\nfaces/bob/1.png x\n");
  fclose(f);
  o.input = at("bad.txt");
  expect_text(pack_fails(&o), "line 2 is not \"path label\"");
  f = fopen(at("missing.txt"), "w");
  fprintf(f, "faces/bob/2.jpg 1\nfaces/nobody.jpg 1\n");
  fclose(f);
  o.input = at("missing.txt");
  o.out = at("m.h5");
  expect_text(pack_fails(&o), "line 2 (");
  assert_int_equal(count_files("m"), 1); /* missing.txt only */
  o = options(LFS_PACK_FOLDER, at("faces/empty"), at("e.h5"));
  expect_text(pack_fails(&o), "no images found");
}

/* ---- the parsers on crafted bytes ---- */
static size_t put_part(uint8_t *p, uint32_t cflag, const void *bytes, uint32_t len) {
  const uint32_t magic = LFS_RECORDIO_MAGIC, lrec = cflag << 29 | len;
  memcpy(p, &magic, 4);
  memcpy(p + 4, &lrec, 4);
  memcpy(p + 8, bytes, len);
  const size_t padded = (len + 3u) & ~3u;
  memset(p + 8 + len, 0, padded - len);
  return 8 + padded;
}

static void test_recordio_parts(void **state) {
  (void)state;
  uint8_t file[256];
  size_t n = 0;
  /* "abcd" MAGIC "" MAGIC "xyz": first, empty middle, last */
  n += put_part(file + n, 1, "abcd", 4);
  n += put_part(file + n, 2, "", 0);
  n += put_part(file + n, 3, "xyz", 3);
  const size_t second = n;
  n += put_part(file + n, 0, "hello", 5);
  lfs_rec_buf scratch = {0};
  const uint8_t *p;
  size_t len;
  uint64_t next;
  char err[256];
  assert_int_equal(lfs_recordio_read(file, n, 0, &scratch, &p, &len, &next, err, sizeof err), 0);
  assert_int_equal(len, 15);
  assert_memory_equal(p, "abcd\x0a\x23\xd7\xce\x0a\x23\xd7\xcexyz", 15);
  assert_int_equal(next, second);
  assert_int_equal(lfs_recordio_read(file, n, next, &scratch, &p, &len, &next, err, sizeof err), 0);
  assert_int_equal(len, 5);
  assert_ptr_equal(p, file + second + 8); /* whole records are not copied */
  assert_int_equal(next, n);
  /* a middle part on its own, a split record cut short, an offset past the end */
  assert_int_equal(lfs_recordio_read(file, n, 12, &scratch, &p, &len, &next, err, sizeof err), -1);
  expect_text(err, "middle part without a first part");
  assert_int_equal(lfs_recordio_read(file, 20, 0, &scratch, &p, &len, &next, err, sizeof err), -1);
  expect_text(err, "split record at byte offset 0");
  assert_int_equal(lfs_recordio_read(file, n, n + 8, &scratch, &p, &len, &next, err, sizeof err), -1);
  expect_text(err, "truncated record header");
  /* a length beyond the file */
  uint8_t bad[16];
  const uint32_t magic = LFS_RECORDIO_MAGIC, lrec = 1000;
  memcpy(bad, &magic, 4), memcpy(bad + 4, &lrec, 4);
  assert_int_equal(lfs_recordio_read(bad, 16, 0, &scratch, &p, &len, &next, err, sizeof err), -1);
  expect_text(err, "length 1000 but only 8 bytes remain");
  assert_int_equal(lfs_recordio_resync(file, n, 4), second);
  lfs_rec_buf_free(&scratch);
  /* IRHeader with labels */
  uint8_t payload[40] = {0};
  const uint32_t flag = 2;
  const float labels[2] = {3.0f, 9.5f};
  memcpy(payload, &flag, 4);
  memcpy(payload + 24, labels, 8);
  memcpy(payload + 32, "\xff\xd8\xff", 3);
  lfs_rec_header h;
  int32_t cls;
  assert_int_equal(lfs_recordio_header(payload, 40, &h, err, sizeof err), 0);
  assert_int_equal(h.image_size, 8);
  assert_true(lfs_rec_label(&h, 1) == 9.5f);
  assert_int_equal(lfs_rec_class(&h, &cls, err, sizeof err), 0);
  assert_int_equal(cls, 3);
  const uint32_t many = 5;
  memcpy(payload, &many, 4);
  assert_int_equal(lfs_recordio_header(payload, 40, &h, err, sizeof err), -1);
  expect_text(err, "5 labels but only 16 bytes follow");
  assert_int_equal(lfs_recordio_header(payload, 23, &h, err, sizeof err), -1);
  /* idx text */
  lfs_rec_index *e;
  size_t ne;
  const char idx[] = "0\t0\n1\t40\r\n\n2 96\n";
  assert_int_equal(lfs_recordio_parse_idx(idx, strlen(idx), &e, &ne, err, sizeof err), 0);
  assert_int_equal(ne, 3);
  assert_int_equal(e[2].key, 2);
  assert_int_equal(e[2].offset, 96);
  free(e);
  assert_int_equal(lfs_recordio_parse_idx("0\t0\n1\tx\n", 8, &e, &ne, err, sizeof err), -1);
  expect_text(err, "line 2");
  assert_int_equal(lfs_recordio_parse_idx("99999999999999999999\t0", 22, &e, &ne, err, sizeof err), -1);
}

static int parse(const char *bytes, size_t n, char *err, size_t errlen) {
  lfs_bin_file b;
  const int rc = lfs_bin_parse((const uint8_t *)bytes, n, &b, err, errlen);
  if (rc == 0) lfs_bin_free(&b);
  return rc;
}

static void test_pickle_rejects(void **state) {
  (void)state;
  char err[512];
  lfs_bin_file b;
  /* the smallest valid file: ([b"ab", b"cd"], [True]) with memo use */
  const char ok[] = "\x80\x02]q\x00(U\x02" "abq\x01h\x01" "e]\x88" "a\x86.";
  assert_int_equal(lfs_bin_parse((const uint8_t *)ok, sizeof ok - 1, &b, err, sizeof err), 0);
  assert_int_equal(b.pairs, 1);
  assert_int_equal(b.image_sizes[1], 2);
  assert_memory_equal(b.images[1], "ab", 2);
  assert_int_equal(b.issame[0], 1);
  assert_int_equal(b.protocol, 2);
  lfs_bin_free(&b);
  struct {
    const char *bytes;
    size_t n;
    const char *want;
  } bad[] = {
#define CASE(bytes, want) {bytes, sizeof bytes - 1, want}
      CASE("\x80\x02}.", "opcode EMPTY_DICT at byte offset 2"),
      CASE("\x80\x09].", "protocol 9 is not supported"),
      CASE("\x80\x02]U\x09" "ab", "needs 9 bytes but only 2 remain"),
      CASE("\x80\x02]T\xff\xff\xff\xff", "negative length"),
      CASE("\x80\x02]q\x05.", "memo key 5 skips ahead"),
      CASE("\x80\x02h\x00.", "memo key 0 was never stored"),
      CASE("\x80\x02" "a.", "stack underflow"),
      CASE("\x80\x02(e.", "no list below the MARK"),
      CASE("\x80\x02\x88]a.", "appending to a bool"),
      CASE("\x80\x02]]", "file ends without STOP"),
      CASE("\x80\x02" "cos\nsystem\n.", "global os.system is not supported"),
      CASE("\x80\x02" "cnumpy\ndtype\nU\x02" "f4\x89\x88\x87R.", "dtype \"f4\" is not supported"),
      CASE("\x80\x02]]\x88" "a\x86.", "holds 0 images for 1 pairs"),
      CASE("\x80\x02]]\x86\x95\xff\xff\xff\xff\xff\xff\xff\xff", "overruns the file"),
      CASE("\x80\x02" "c_codecs\nencode\nX\x02\x00\x00\x00\xe2\x82X\x06\x00\x00\x00latin1\x86R.",
           "not latin-1"),
      CASE("\x80\x02](U\x01" "a\x85K\x01" "e]\x88" "a\x86.", "image 0 (byte offset 7) is a tuple"),
      CASE("\x80\x02]U\x01" "a" "a]\x86.", "holds 1 images for 0 pairs"),
#undef CASE
  };
  for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
    err[0] = '\0';
    if (parse(bad[k].bytes, bad[k].n, err, sizeof err) == 0) fail_msg("case %zu was accepted", k);
    printf("  case %zu: %s\n", k, err);
    expect_text(err, bad[k].want);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_recordio_parts),
      cmocka_unit_test(test_pickle_rejects),
      cmocka_unit_test_setup_teardown(test_rec_header_split_shards, setup, teardown),
      cmocka_unit_test_setup_teardown(test_rec_plain_no_idx_label_array, setup, teardown),
      cmocka_unit_test_setup_teardown(test_rec_property_and_label_range, setup, teardown),
      cmocka_unit_test_setup_teardown(test_rec_corrupt, setup, teardown),
      cmocka_unit_test_setup_teardown(test_sizes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bin_forms, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bin_corrupt, setup, teardown),
      cmocka_unit_test_setup_teardown(test_folder_and_list, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
