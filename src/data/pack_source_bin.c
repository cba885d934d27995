/* pack_source_bin.c: the `bin` input of `lfsearch pack` (pack_internal.h): an
 * insightface verification file (lfw.bin, cfp_fp.bin, ...) as a numbered list
 * of encoded images, two per pair, with issame per pair. The pickle is read
 * whole and parsed by pickle.c; the images point into it. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "data/pack_internal.h"
#include "lfs/fileio.h"

typedef struct {
  uint8_t *data;
  size_t size, cap;
  lfs_bin_file bin;
} bin_src;

static int bin_fetch(lfs_pack_source *s, int64_t i, lfs_pack_scratch *scratch,
                     const uint8_t **bytes, size_t *len, int32_t *label, char *err,
                     size_t errlen) {
  (void)scratch, (void)err, (void)errlen;
  const bin_src *b = s->impl;
  *bytes = b->bin.images[i];
  *len = b->bin.image_sizes[i];
  *label = 0;
  return 0;
}

static void bin_describe(const lfs_pack_source *s, int64_t i, char *where, size_t len) {
  const bin_src *b = s->impl;
  snprintf(where, len, "image %" PRId64 " (pair %" PRId64 ") at byte offset %" PRIu64, i, i / 2,
           b->bin.image_offsets[i]);
}

static void bin_close(lfs_pack_source *s) {
  bin_src *b = s->impl;
  if (b) {
    lfs_bin_free(&b->bin);
    free(b->data);
    free(b);
  }
  free(s);
}

lfs_pack_source *lfs_pack_open_bin(const char *path, char *err, size_t errlen) {
  lfs_pack_source *s = calloc(1, sizeof *s);
  bin_src *b = calloc(1, sizeof *b);
  if (!s || !b) {
    free(s);
    free(b);
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  s->impl = b;
  s->fetch = bin_fetch;
  s->describe = bin_describe;
  s->close = bin_close;
  s->pairs = 1;
  char why[512];
  if (lfs_read_file(path, &b->data, &b->cap, &b->size, err, errlen)) {
    bin_close(s);
    return NULL;
  }
  if (lfs_bin_parse(b->data, b->size, &b->bin, why, sizeof why)) {
    snprintf(err, errlen, "%s: %s", path, why);
    bin_close(s);
    return NULL;
  }
  s->count = 2 * b->bin.pairs;
  s->issame = b->bin.issame;
  return s;
}
