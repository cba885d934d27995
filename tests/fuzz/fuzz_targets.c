/* fuzz_targets.c: entry functions of the parser fuzz targets (fuzz_targets.h). */
#include "fuzz_targets.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lfs/image.h"
#include "lfs/pack.h"

/* Decoding is slow next to parsing: a few images per input are enough to test
 * that whatever the parsers hand over reaches the decoders safely. */
enum { max_decodes = 2, max_records = 256, max_idx_reads = 64 };

#define CHECK(cond)                                                                  \
  do {                                                                               \
    if (!(cond)) {                                                                   \
      fprintf(stderr, "%s:%d: invariant violated: %s\n", __FILE__, __LINE__, #cond); \
      abort();                                                                       \
    }                                                                                \
  } while (0)

/* Where reads go so that the compiler keeps them. */
static volatile float fuzz_sink_f;
static volatile uint8_t fuzz_sink_u8;

/* A rejected input must say why. */
static void check_message(const char *err) { CHECK(err[0] != '\0' && strlen(err) < 512); }

static void decode(const uint8_t *bytes, size_t len, int *budget) {
  if (*budget <= 0 || lfs_image_sniff(bytes, len) == LFS_IMAGE_UNKNOWN) return;
  (*budget)--;
  uint8_t *rgb = NULL;
  int h = 0, w = 0;
  char err[512] = "";
  if (lfs_image_decode(bytes, len, &rgb, &h, &w, err, sizeof err) == 0) {
    CHECK(rgb && h > 0 && w > 0);
    fuzz_sink_u8 = rgb[(size_t)h * w * 3 - 1]; /* the whole image is there */
    free(rgb);
  } else {
    check_message(err);
  }
}

/* Reads the record at offset and everything its header points to. */
static int one_record(const uint8_t *data, size_t size, uint64_t offset, lfs_rec_buf *scratch,
                      uint64_t *next, int *budget) {
  const uint8_t *payload = NULL;
  size_t len = 0;
  char err[512] = "";
  if (lfs_recordio_read(data, size, offset, scratch, &payload, &len, next, err, sizeof err)) {
    check_message(err);
    return 1;
  }
  CHECK(*next > offset && *next <= size);
  const int inside = payload >= data && len <= size && payload - data <= (ptrdiff_t)(size - len);
  const int joined = scratch->data && payload == scratch->data && len <= scratch->cap;
  CHECK(inside || joined);
  lfs_rec_header h;
  if (lfs_recordio_header(payload, len, &h, err, sizeof err)) {
    check_message(err);
    return 1;
  }
  CHECK(h.image >= payload && h.image + h.image_size == payload + len);
  float sum = 0; /* every label is readable */
  for (uint32_t i = 0; i < h.flag; i++) sum += lfs_rec_label(&h, i);
  fuzz_sink_f = sum;
  int32_t cls;
  err[0] = '\0';
  if (lfs_rec_class(&h, &cls, err, sizeof err) == 0)
    CHECK(cls >= 0);
  else
    check_message(err);
  decode(h.image, h.image_size, budget);
  return 0;
}

int lfs_fuzz_recordio(const uint8_t *data, size_t size) {
  lfs_rec_buf scratch = {0};
  int budget = max_decodes, rejected = 0;
  uint64_t at = 0;
  for (int n = 0; n < max_records && at < size; n++) {
    uint64_t next = 0;
    if (one_record(data, size, at, &scratch, &next, &budget)) {
      rejected = 1;
      const uint64_t again = lfs_recordio_resync(data, size, at + 4);
      CHECK(again > at && again <= size && (again == size || again % 4 == 0));
      next = again;
    }
    at = next;
  }
  lfs_rec_index *idx = NULL;
  size_t n = 0;
  char err[512] = "";
  if (lfs_recordio_parse_idx((const char *)data, size, &idx, &n, err, sizeof err) == 0) {
    for (size_t k = 0; k < n && k < max_idx_reads; k++) {
      uint64_t next;
      rejected |= one_record(data, size, idx[k].offset, &scratch, &next, &budget);
    }
    free(idx);
  } else {
    check_message(err);
  }
  lfs_rec_buf_free(&scratch);
  return rejected;
}

int lfs_fuzz_pickle(const uint8_t *data, size_t size) {
  lfs_bin_file bin;
  char err[512] = "";
  if (lfs_bin_parse(data, size, &bin, err, sizeof err)) {
    check_message(err);
    return 1;
  }
  CHECK(bin.pairs >= 0);
  int budget = max_decodes;
  for (int64_t k = 0; k < 2 * bin.pairs; k++) {
    CHECK(bin.images[k] != NULL || bin.image_sizes[k] == 0);
    CHECK(bin.image_offsets[k] < size);
    uint8_t sink = 0; /* every byte is readable (ASan) */
    for (size_t j = 0; j < bin.image_sizes[k]; j++) sink ^= bin.images[k][j];
    fuzz_sink_u8 = sink;
    decode(bin.images[k], bin.image_sizes[k], &budget);
  }
  for (int64_t k = 0; k < bin.pairs; k++) CHECK(bin.issame[k] <= 1);
  lfs_bin_free(&bin);
  return 0;
}
