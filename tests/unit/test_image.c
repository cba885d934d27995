/* test_image.c: src/data/image.c: JPEG and PNG decoding (RGB, grey, palette,
 * alpha, progressive) against the formulas the committed fixtures were made
 * from (tests/data/make_fixtures.py), corrupt and truncated inputs (errors,
 * never crashes), bilinear resizing, PNG writing and JPEG encoding. */
#define _GNU_SOURCE
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

#include "lfs/image.h"
#include "testutil.h"

static uint8_t *slurp(const char *name, size_t *size) {
  char rel[256];
  snprintf(rel, sizeof rel, "tests/data/img/%s", name);
  const char *path = tu_srcpath(rel);
  FILE *f = fopen(path, "rb");
  if (!f) fail_msg("%s: cannot open", path);
  fseek(f, 0, SEEK_END);
  const long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t *buf = malloc((size_t)n);
  assert_non_null(buf);
  assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
  fclose(f);
  *size = (size_t)n;
  return buf;
}

/* The fixtures' pixel formulas (make_fixtures.py). */
static void formula_rgb(int y, int x, int id, uint8_t px[3]) {
  px[0] = (uint8_t)((x * 16 + id * 40) % 256);
  px[1] = (uint8_t)((y * 16 + id * 70) % 256);
  px[2] = (uint8_t)((x * y * 4 + id * 90) % 256);
}

static uint8_t formula_grey(int y, int x) { return (uint8_t)((x * 13 + y * 7) % 256); }

static uint8_t *decode_fixture(const char *name, int *h, int *w) {
  size_t n;
  uint8_t *bytes = slurp(name, &n), *rgb = NULL;
  char err[256] = "";
  if (lfs_image_decode(bytes, n, &rgb, h, w, err, sizeof err)) fail_msg("%s: %s", name, err);
  free(bytes);
  return rgb;
}

/* Mean and largest absolute difference between a decoded JPEG and its formula,
 * over the smooth channels (red and green are ramps, compared modulo 256 where
 * they wrap; blue wraps too often to survive chroma subsampling). */
static void jpeg_error(const uint8_t *rgb, int h, int w, int id, int grey, double *mean, int *worst) {
  double sum = 0;
  *worst = 0;
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      uint8_t want[3];
      if (grey)
        want[0] = want[1] = want[2] = formula_grey(y, x);
      else
        formula_rgb(y, x, id, want);
      for (int c = 0; c < 2; c++) {
        int d = abs((int)rgb[(y * w + x) * 3 + c] - want[c]);
        if (d > 128) d = 256 - d; /* where a ramp wraps from 255 to 0 */
        sum += d;
        if (d > *worst) *worst = d;
      }
    }
  *mean = sum / (h * w * 2);
}

static void test_png_exact(void **state) {
  (void)state;
  int h, w;
  uint8_t *rgb = decode_fixture("id3_0.png", &h, &w);
  assert_int_equal(h, 16);
  assert_int_equal(w, 16);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      uint8_t want[3];
      formula_rgb(y, x, 3, want);
      assert_memory_equal(rgb + (y * w + x) * 3, want, 3);
    }
  free(rgb);
  rgb = decode_fixture("grey.png", &h, &w); /* grey becomes R = G = B */
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      for (int c = 0; c < 3; c++) assert_int_equal(rgb[(y * w + x) * 3 + c], formula_grey(y, x));
  free(rgb);
  rgb = decode_fixture("palette.png", &h, &w); /* palette index (x + y) % 16 */
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      const int i = (x + y) % 16;
      const uint8_t want[3] = {(uint8_t)(16 * i), (uint8_t)(255 - 16 * i), (uint8_t)(37 * i % 256)};
      assert_memory_equal(rgb + (y * w + x) * 3, want, 3);
    }
  free(rgb);
}

/* Alpha is dropped: colour channels are kept as stored, whatever the alpha. */
static void test_png_alpha_dropped(void **state) {
  (void)state;
  int h, w;
  uint8_t *rgb = decode_fixture("rgba.png", &h, &w);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      uint8_t want[3];
      formula_rgb(y, x, 1, want);
      if (memcmp(rgb + (y * w + x) * 3, want, 3))
        fail_msg("pixel (%d, %d) is %d %d %d, stored colour %d %d %d", y, x, rgb[(y * w + x) * 3],
                 rgb[(y * w + x) * 3 + 1], rgb[(y * w + x) * 3 + 2], want[0], want[1], want[2]);
    }
  free(rgb);
}

static void test_jpeg_close_to_source(void **state) {
  (void)state;
  static const struct {
    const char *name;
    int id, grey;
  } cases[] = {{"id0_0.jpg", 0, 0}, {"id2_1.jpg", 6, 0}, {"progressive.jpg", 0, 0}, {"grey.jpg", 0, 1}};
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    int h, w, worst;
    double mean;
    uint8_t *rgb = decode_fixture(cases[k].name, &h, &w);
    assert_int_equal(h, 16);
    assert_int_equal(w, 16);
    jpeg_error(rgb, h, w, cases[k].id, cases[k].grey, &mean, &worst);
    printf("  %s: mean |error| %.2f, worst %d\n", cases[k].name, mean, worst);
    if (cases[k].id == 0) { /* no wrap in red and green */
      assert_true(mean < 8.0);
      assert_true(worst < 40);
    } else {
      assert_true(mean < 20.0); /* a wrong decode (swapped channels, garbage) is far worse */
    }
    if (cases[k].grey)
      for (int i = 0; i < h * w; i++) {
        assert_int_equal(rgb[3 * i], rgb[3 * i + 1]);
        assert_int_equal(rgb[3 * i], rgb[3 * i + 2]);
      }
    free(rgb);
  }
  int h, w;
  uint8_t *rgb = decode_fixture("big.jpg", &h, &w);
  assert_int_equal(h, 24);
  assert_int_equal(w, 20);
  free(rgb);
}

static void expect_failure(const uint8_t *data, size_t n, const char *what) {
  uint8_t *rgb = (uint8_t *)1;
  int h = -1, w = -1;
  char err[256] = "";
  if (lfs_image_decode(data, n, &rgb, &h, &w, err, sizeof err) == 0)
    fail_msg("%s: %zu bytes decoded", what, n);
  assert_true(strlen(err) > 5);
  assert_ptr_equal(rgb, (uint8_t *)1); /* nothing handed out */
}

/* Every proper prefix of every fixture is an error (a PNG may lose its IEND
 * chunk, 12 bytes, and still be whole). */
static void test_truncated(void **state) {
  (void)state;
  static const char *const names[] = {"id0_0.jpg", "progressive.jpg", "grey.jpg", "id3_0.png",
                                      "palette.png", "rgba.png", "grey.png"};
  for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
    size_t n;
    uint8_t *bytes = slurp(names[k], &n);
    const int png = lfs_image_sniff(bytes, n) == LFS_IMAGE_PNG;
    const size_t whole = png ? n - 12 : n;
    for (size_t len = 0; len < whole; len++) {
      uint8_t *cut = malloc(len ? len : 1); /* exact size: overreads show under ASan */
      memcpy(cut, bytes, len);
      expect_failure(cut, len, names[k]);
      free(cut);
    }
    free(bytes);
  }
}

/* Corrupt bytes anywhere: an error or an image, never a crash; corrupt headers
 * and PNG data (CRC) are errors. */
static void test_corrupt(void **state) {
  (void)state;
  static const char *const names[] = {"id1_1.jpg", "progressive.jpg", "id3_1.png", "palette.png"};
  int failed = 0, runs = 0;
  for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
    size_t n;
    uint8_t *bytes = slurp(names[k], &n);
    for (size_t at = 0; at < n; at += 3) {
      uint8_t *bad = malloc(n);
      memcpy(bad, bytes, n);
      bad[at] ^= 0x5a;
      uint8_t *rgb = NULL;
      int h, w;
      char err[256] = "";
      if (lfs_image_decode(bad, n, &rgb, &h, &w, err, sizeof err) == 0) {
        assert_true(h > 0 && w > 0);
        free(rgb);
      } else {
        assert_true(strlen(err) > 5);
        failed++;
      }
      runs++;
      free(bad);
    }
    free(bytes);
  }
  printf("  %d of %d corrupted images rejected\n", failed, runs);
  assert_true(failed > runs / 4);
  const uint8_t text[] = "hello, not an image";
  expect_failure(text, sizeof text, "text");
  expect_failure(text, 0, "empty");
}

static uint32_t crc32_of(const uint8_t *p, size_t n) {
  uint32_t c = 0xffffffffu;
  for (size_t i = 0; i < n; i++) {
    c ^= p[i];
    for (int k = 0; k < 8; k++) c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
  }
  return ~c;
}

/* A PNG header claiming a huge image is refused before any allocation. */
static void test_huge_dimensions(void **state) {
  (void)state;
  size_t n;
  uint8_t *png = slurp("id3_0.png", &n);
  /* IHDR data starts at 16: width, height (big endian); CRC over type + data at 29 */
  const uint32_t side = 100000;
  for (int i = 0; i < 4; i++) png[16 + i] = png[20 + i] = (uint8_t)(side >> (24 - 8 * i));
  const uint32_t crc = crc32_of(png + 12, 17);
  for (int i = 0; i < 4; i++) png[29 + i] = (uint8_t)(crc >> (24 - 8 * i));
  uint8_t *rgb = NULL;
  int h, w;
  char err[256] = "";
  assert_int_equal(lfs_image_decode(png, n, &rgb, &h, &w, err, sizeof err), -1);
  printf("  %s\n", err);
  assert_non_null(strstr(err, "100000x100000"));
  free(png);
  /* the same for a JPEG: SOF0 height and width */
  uint8_t *jpg = slurp("id0_0.jpg", &n);
  size_t at = 2;
  while (at + 9 < n && !(jpg[at] == 0xff && jpg[at + 1] == 0xc0)) at++;
  assert_true(at + 9 < n);
  jpg[at + 5] = jpg[at + 7] = 0x4e; /* 20000 x 20000 */
  jpg[at + 6] = jpg[at + 8] = 0x20;
  assert_int_equal(lfs_image_decode(jpg, n, &rgb, &h, &w, err, sizeof err), -1);
  printf("  %s\n", err);
  assert_non_null(strstr(err, "20000x20000"));
  free(jpg);
}

static void test_sniff(void **state) {
  (void)state;
  const uint8_t jpg[] = {0xff, 0xd8, 0xff, 0xe0}, png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  assert_int_equal(lfs_image_sniff(jpg, 4), LFS_IMAGE_JPEG);
  assert_int_equal(lfs_image_sniff(jpg, 2), LFS_IMAGE_UNKNOWN);
  assert_int_equal(lfs_image_sniff(png, 8), LFS_IMAGE_PNG);
  assert_int_equal(lfs_image_sniff(png, 7), LFS_IMAGE_UNKNOWN);
}

static void test_resize(void **state) {
  (void)state;
  /* 1x2 -> 1x4 with pixel centres aligned: source x = (x + 0.5) / 2 - 0.5 clamped */
  const uint8_t src[6] = {0, 10, 200, 100, 50, 0};
  uint8_t dst[12];
  lfs_image_resize(dst, 1, 4, src, 1, 2);
  const uint8_t want[12] = {0, 10, 200, 25, 20, 150, 75, 40, 50, 100, 50, 0};
  assert_memory_equal(dst, want, 12);
  /* same size: a copy */
  int h, w;
  uint8_t *rgb = decode_fixture("id3_0.png", &h, &w), *same = malloc((size_t)h * w * 3);
  lfs_image_resize(same, h, w, rgb, h, w);
  assert_memory_equal(same, rgb, (size_t)h * w * 3);
  /* 2x down of a 2x2-block image: each output pixel is the mean of its block */
  uint8_t big[4 * 4 * 3], small[2 * 2 * 3];
  for (int y = 0; y < 4; y++)
    for (int x = 0; x < 4; x++)
      for (int c = 0; c < 3; c++) big[(y * 4 + x) * 3 + c] = (uint8_t)(40 * (y / 2) + 80 * (x / 2) + c);
  lfs_image_resize(small, 2, 2, big, 4, 4);
  for (int y = 0; y < 2; y++)
    for (int x = 0; x < 2; x++)
      for (int c = 0; c < 3; c++) assert_int_equal(small[(y * 2 + x) * 3 + c], 40 * y + 80 * x + c);
  free(rgb);
  free(same);
}

static void test_write_png_and_encode_jpeg(void **state) {
  (void)state;
  enum { H = 12, W = 20 };
  uint8_t rgb[H * W * 3];
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++) formula_rgb(y, x, 5, rgb + (y * W + x) * 3);
  char path[] = "/tmp/lfs-test-image-XXXXXX";
  const int fd = mkstemp(path);
  assert_true(fd >= 0);
  close(fd);
  char err[256];
  assert_int_equal(lfs_image_write_png(path, rgb, H, W, err, sizeof err), 0);
  uint8_t *back = NULL;
  int h, w;
  assert_int_equal(lfs_image_load(path, &back, &h, &w, err, sizeof err), 0);
  unlink(path);
  assert_int_equal(h, H);
  assert_int_equal(w, W);
  assert_memory_equal(back, rgb, sizeof rgb);
  free(back);
  assert_int_equal(lfs_image_load("/nonexistent/x.png", &back, &h, &w, err, sizeof err), -1);
  assert_non_null(strstr(err, "/nonexistent/x.png"));
  /* a smooth image survives JPEG at quality 95 closely */
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++)
      for (int c = 0; c < 3; c++) rgb[(y * W + x) * 3 + c] = (uint8_t)(6 * x + 4 * y + 30 * c);
  uint8_t *jpg = NULL;
  size_t n = 0;
  assert_int_equal(lfs_image_encode_jpeg(rgb, H, W, 95, &jpg, &n, err, sizeof err), 0);
  assert_int_equal(lfs_image_sniff(jpg, n), LFS_IMAGE_JPEG);
  assert_int_equal(lfs_image_decode(jpg, n, &back, &h, &w, err, sizeof err), 0);
  assert_int_equal(h, H);
  assert_int_equal(w, W);
  int worst = 0;
  for (size_t i = 0; i < sizeof rgb; i++) {
    const int d = abs((int)back[i] - rgb[i]);
    if (d > worst) worst = d;
  }
  printf("  JPEG q95 round trip: worst |error| %d\n", worst);
  assert_true(worst <= 12);
  free(back);
  free(jpg);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_png_exact),
      cmocka_unit_test(test_png_alpha_dropped),
      cmocka_unit_test(test_jpeg_close_to_source),
      cmocka_unit_test(test_truncated),
      cmocka_unit_test(test_corrupt),
      cmocka_unit_test(test_huge_dimensions),
      cmocka_unit_test(test_sniff),
      cmocka_unit_test(test_resize),
      cmocka_unit_test(test_write_png_and_encode_jpeg),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
