/* recordio.c: reading insightface's MXNet RecordIO files (train.rec, train.idx).
 *
 * Layout assumed (dmlc RecordIO as written by MXNet's im2rec / insightface):
 * each part is uint32 LE magic 0xced7230a, uint32 LE lrec (low 29 bits: part
 * length, top 3 bits: 0 whole record, 1 first, 2 middle, 3 last part), the part's
 * bytes, then zero padding to a multiple of 4. The writer splits a record
 * wherever the magic occurs at a 4-aligned position of its payload and drops
 * that occurrence, so re-joining puts the magic back between parts.
 * A record's payload is MXNet's IRHeader (uint32 flag, float32 label, uint64
 * id, uint64 id2), then `flag` float32 labels when flag > 0, then the image.
 * train.idx is text, one "key<TAB>offset" per line.
 * The file is trusted for nothing: every length is checked against the bytes
 * present, so a truncated or corrupt file gives an error naming the offset. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lfs/pack.h"

enum { rec_part_header = 8, rec_irheader = 24 };
#define REC_LEN_MASK ((1u << 29) - 1)

static uint32_t rd_u32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t rd_u64(const uint8_t *p) { return (uint64_t)rd_u32(p) | (uint64_t)rd_u32(p + 4) << 32; }

static float rd_f32(const uint8_t *p) {
  uint32_t u = rd_u32(p);
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

void lfs_rec_buf_free(lfs_rec_buf *b) {
  free(b->data);
  b->data = NULL;
  b->cap = 0;
}

static int buf_reserve(lfs_rec_buf *b, size_t need, char *err, size_t errlen) {
  if (need <= b->cap) return 0;
  size_t cap = b->cap ? b->cap : 4096;
  while (cap < need) cap = cap > SIZE_MAX / 2 ? need : 2 * cap;
  uint8_t *grown = realloc(b->data, cap);
  if (!grown) {
    snprintf(err, errlen, "out of memory re-joining a record of %zu bytes", need);
    return -1;
  }
  b->data = grown;
  b->cap = cap;
  return 0;
}

/* One part at `offset`: its flag, bytes and the offset after its padding. */
static int read_part(const uint8_t *file, size_t size, uint64_t offset, uint32_t *cflag,
                     const uint8_t **bytes, uint32_t *len, uint64_t *next, char *err,
                     size_t errlen) {
  if (offset > size || size - offset < rec_part_header) {
    snprintf(err, errlen, "truncated record header at byte offset %" PRIu64 " (file is %zu bytes)",
             offset, size);
    return -1;
  }
  const uint32_t magic = rd_u32(file + offset), lrec = rd_u32(file + offset + 4);
  if (magic != LFS_RECORDIO_MAGIC) {
    snprintf(err, errlen, "bad record magic 0x%08x at byte offset %" PRIu64 " (expected 0x%08x)",
             magic, offset, LFS_RECORDIO_MAGIC);
    return -1;
  }
  *cflag = lrec >> 29;
  *len = lrec & REC_LEN_MASK;
  const uint64_t body = offset + rec_part_header, padded = ((uint64_t)*len + 3u) & ~(uint64_t)3u;
  if (size - body < *len) {
    snprintf(err, errlen,
             "truncated record at byte offset %" PRIu64 ": length %" PRIu32 " but only %" PRIu64
             " bytes remain",
             offset, *len, (uint64_t)(size - body));
    return -1;
  }
  *bytes = file + body;
  /* the last record's padding may be missing from a file cut right after it */
  *next = size - body < padded ? (uint64_t)size : body + padded;
  return 0;
}

int lfs_recordio_read(const uint8_t *file, size_t size, uint64_t offset, lfs_rec_buf *scratch,
                      const uint8_t **payload, size_t *len, uint64_t *next, char *err,
                      size_t errlen) {
  uint32_t cflag, plen;
  const uint8_t *bytes;
  uint64_t at = offset;
  if (read_part(file, size, at, &cflag, &bytes, &plen, &at, err, errlen)) return -1;
  if (cflag == 0) {
    *payload = bytes;
    *len = plen;
    *next = at;
    return 0;
  }
  if (cflag != 1) {
    snprintf(err, errlen,
             "record at byte offset %" PRIu64 " is a %s part without a first part (flag %" PRIu32 ")",
             offset, cflag == 2 ? "middle" : cflag == 3 ? "last" : "bad", cflag);
    return -1;
  }
  size_t used = 0;
  for (;;) {
    /* each part and the magic dropped after it; bounded by the file size */
    if (buf_reserve(scratch, used + plen + 4, err, errlen)) return -1;
    if (plen) memcpy(scratch->data + used, bytes, plen);
    used += plen;
    if (cflag == 3) break;
    const uint64_t part_at = at;
    if (read_part(file, size, part_at, &cflag, &bytes, &plen, &at, err, errlen)) {
      char why[256];
      snprintf(why, sizeof why, "%s", err);
      snprintf(err, errlen, "split record at byte offset %" PRIu64 ": %s", offset, why);
      return -1;
    }
    if (cflag != 2 && cflag != 3) {
      snprintf(err, errlen,
               "split record at byte offset %" PRIu64 ": part at %" PRIu64
               " has flag %" PRIu32 " (expected a middle or last part)",
               offset, part_at, cflag);
      return -1;
    }
    const uint32_t magic = LFS_RECORDIO_MAGIC;
    for (int i = 0; i < 4; i++) scratch->data[used + i] = (uint8_t)(magic >> (8 * i));
    used += 4;
  }
  *payload = scratch->data;
  *len = used;
  *next = at;
  return 0;
}

uint64_t lfs_recordio_resync(const uint8_t *file, size_t size, uint64_t from) {
  uint64_t at = (from + 3u) & ~(uint64_t)3u;
  for (; at <= size && size - at >= rec_part_header; at += 4) {
    if (rd_u32(file + at) != LFS_RECORDIO_MAGIC) continue;
    const uint32_t cflag = rd_u32(file + at + 4) >> 29;
    if (cflag <= 1) return at;
  }
  return size;
}

int lfs_recordio_header(const uint8_t *payload, size_t len, lfs_rec_header *h, char *err,
                        size_t errlen) {
  memset(h, 0, sizeof *h);
  if (len < rec_irheader) {
    snprintf(err, errlen, "record payload of %zu bytes is shorter than its 24-byte header", len);
    return -1;
  }
  h->flag = rd_u32(payload);
  h->label = rd_f32(payload + 4);
  h->id = rd_u64(payload + 8);
  h->id2 = rd_u64(payload + 16);
  const size_t rest = len - rec_irheader, labels = (size_t)h->flag * 4u;
  if ((uint64_t)h->flag * 4u > rest) {
    snprintf(err, errlen, "record header says %" PRIu32 " labels but only %zu bytes follow",
             h->flag, rest);
    return -1;
  }
  h->labels = h->flag ? payload + rec_irheader : NULL;
  h->image = payload + rec_irheader + labels;
  h->image_size = rest - labels;
  return 0;
}

float lfs_rec_label(const lfs_rec_header *h, uint32_t i) {
  if (h->flag == 0) return i == 0 ? h->label : NAN;
  return i < h->flag ? rd_f32(h->labels + 4u * i) : NAN;
}

int lfs_rec_class(const lfs_rec_header *h, int32_t *cls, char *err, size_t errlen) {
  const float v = lfs_rec_label(h, 0);
  /* 2147483520 is the largest float below 2^31 */
  if (!isfinite(v) || v < 0 || v > 2147483520.0f || v != floorf(v)) {
    snprintf(err, errlen, "label %g is not a class id (a whole number >= 0)", (double)v);
    return -1;
  }
  *cls = (int32_t)v;
  return 0;
}

/* Parses an unsigned decimal in [p, end); advances p. */
static int parse_u64(const char **p, const char *end, uint64_t *v) {
  const char *s = *p;
  uint64_t x = 0;
  if (s == end || *s < '0' || *s > '9') return -1;
  for (; s < end && *s >= '0' && *s <= '9'; s++) {
    const unsigned d = (unsigned)(*s - '0');
    if (x > (UINT64_MAX - d) / 10) return -1;
    x = x * 10 + d;
  }
  *p = s;
  *v = x;
  return 0;
}

int lfs_recordio_parse_idx(const char *text, size_t len, lfs_rec_index **entries, size_t *n,
                           char *err, size_t errlen) {
  lfs_rec_index *out = NULL;
  size_t count = 0, cap = 0, line = 0;
  const char *p = text, *end = text + len;
  while (p < end) {
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    if (!eol) eol = end;
    const char *q = p, *stop = eol;
    line++;
    if (stop > q && stop[-1] == '\r') stop--;
    while (q < stop && (*q == ' ' || *q == '\t')) q++;
    if (q == stop) { /* blank line */
      p = eol + (eol < end);
      continue;
    }
    lfs_rec_index e;
    int bad = parse_u64(&q, stop, &e.key);
    if (!bad && (q == stop || (*q != '\t' && *q != ' '))) bad = 1;
    while (!bad && q < stop && (*q == '\t' || *q == ' ')) q++;
    if (!bad) bad = parse_u64(&q, stop, &e.offset);
    while (!bad && q < stop && (*q == ' ' || *q == '\t')) q++;
    if (bad || q != stop) {
      snprintf(err, errlen, "line %zu is not \"key<TAB>offset\"", line);
      free(out);
      return -1;
    }
    if (count == cap) {
      cap = cap ? 2 * cap : 1024;
      lfs_rec_index *grown = realloc(out, cap * sizeof *out);
      if (!grown) {
        snprintf(err, errlen, "out of memory at line %zu", line);
        free(out);
        return -1;
      }
      out = grown;
    }
    out[count++] = e;
    p = eol + (eol < end);
  }
  *entries = out;
  *n = count;
  return 0;
}
