/* pack_source_rec.c: the `rec` input of `lfsearch pack` (pack_internal.h):
 * insightface's MXNet RecordIO training set as a numbered list of encoded
 * images with labels.
 *
 * train.rec is memory-mapped; train.idx beside it ("key<TAB>offset" lines)
 * gives the records, or without it the file is scanned in order (with
 * --skip-bad, bad records are counted and passed over). Record 0 may be
 * insightface's header record (flag > 0, no image, labels [a, b]): then the
 * images are keys 1 .. a-1 and the identity records from a on are left out.
 * `property` beside it ("num_classes,H,W") fixes num_classes. Records are
 * parsed by recordio.c. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/pack_internal.h"
#include "lfs/fileio.h"

typedef struct {
  char *path;
  uint8_t *map;
  size_t size;
  uint64_t *keys, *offsets;
} rec_src;

static int rec_fetch(lfs_pack_source *s, int64_t i, lfs_pack_scratch *scratch,
                     const uint8_t **bytes, size_t *len, int32_t *label, char *err,
                     size_t errlen) {
  const rec_src *r = s->impl;
  const uint8_t *payload;
  size_t plen;
  uint64_t next;
  lfs_rec_header h;
  if (lfs_recordio_read(r->map, r->size, r->offsets[i], &scratch->rec, &payload, &plen, &next, err,
                        errlen) ||
      lfs_recordio_header(payload, plen, &h, err, errlen) || lfs_rec_class(&h, label, err, errlen))
    return -1;
  if (s->num_classes > 0 && *label >= s->num_classes) {
    snprintf(err, errlen, "label %" PRId32 " is out of range: `property` says num_classes = %" PRId32,
             *label, s->num_classes);
    return -1;
  }
  if (h.image_size == 0) {
    snprintf(err, errlen, "record holds no image");
    return -1;
  }
  *bytes = h.image;
  *len = h.image_size;
  return 0;
}

static void rec_describe(const lfs_pack_source *s, int64_t i, char *where, size_t len) {
  const rec_src *r = s->impl;
  snprintf(where, len, "record key %" PRIu64 " (index %" PRId64 ") at byte offset %" PRIu64,
           r->keys[i], i, r->offsets[i]);
}

static void rec_close(lfs_pack_source *s) {
  rec_src *r = s->impl;
  if (r) {
    if (r->map) munmap(r->map, r->size);
    free(r->path);
    free(r->keys);
    free(r->offsets);
    free(r);
  }
  free(s);
}

/* insightface's header record: labels [first non-image key, end of identity records]. */
static int rec_header_range(const rec_src *r, uint64_t offset, uint64_t *end_key) {
  lfs_rec_buf scratch = {0};
  const uint8_t *payload;
  size_t plen;
  uint64_t next;
  lfs_rec_header h;
  char err[256];
  int is_header = 0;
  if (lfs_recordio_read(r->map, r->size, offset, &scratch, &payload, &plen, &next, err,
                        sizeof err) == 0 &&
      lfs_recordio_header(payload, plen, &h, err, sizeof err) == 0 && h.flag > 0 &&
      h.image_size == 0) {
    const float a = lfs_rec_label(&h, 0);
    if (isfinite(a) && a >= 1 && a < 9.0e15f) {
      *end_key = (uint64_t)a;
      is_header = 1;
    }
  }
  lfs_rec_buf_free(&scratch);
  return is_header;
}

/* num_classes from `property` ("num_classes,H,W") beside the .rec, if present. */
static int rec_property(const char *rec_path, int32_t *num_classes, char *err, size_t errlen) {
  char *path = lfs_pack_path_beside(rec_path, "property");
  if (!path) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  uint8_t *buf = NULL;
  size_t cap = 0, len = 0;
  if (access(path, F_OK) != 0) {
    free(path);
    return 0;
  }
  int rc = lfs_read_file(path, &buf, &cap, &len, err, errlen);
  if (rc == 0) {
    char text[128];
    snprintf(text, sizeof text, "%.*s", (int)(len < 127 ? len : 127), (const char *)buf);
    long n = 0, hh = 0, ww = 0;
    char tail = 0;
    if (sscanf(text, " %ld , %ld , %ld %c", &n, &hh, &ww, &tail) != 3 || n < 1 || n > INT32_MAX) {
      snprintf(err, errlen, "%s: expected \"num_classes,height,width\", found \"%.40s\"", path, text);
      rc = -1;
    } else {
      *num_classes = (int32_t)n;
    }
  }
  free(buf);
  free(path);
  return rc;
}

static int rec_push(rec_src *r, size_t *n, size_t *cap, uint64_t key, uint64_t offset) {
  if (*n == *cap) {
    const size_t ncap = *cap ? 2 * *cap : 1024;
    uint64_t *k = realloc(r->keys, ncap * sizeof *k);
    if (!k) return -1;
    r->keys = k;
    uint64_t *o = realloc(r->offsets, ncap * sizeof *o);
    if (!o) return -1;
    r->offsets = o;
    *cap = ncap;
  }
  r->keys[*n] = key;
  r->offsets[*n] = offset;
  (*n)++;
  return 0;
}

/* Without an index: every record in file order, keys 0, 1, ... */
static int rec_scan(lfs_pack_source *s, rec_src *r, int skip_bad, char *err, size_t errlen) {
  lfs_rec_buf scratch = {0};
  size_t n = 0, cap = 0;
  uint64_t at = 0, key = 0;
  int rc = 0;
  while (at < r->size && rc == 0) {
    const uint8_t *payload;
    size_t plen;
    uint64_t next;
    char why[512];
    if (lfs_recordio_read(r->map, r->size, at, &scratch, &payload, &plen, &next, why, sizeof why)) {
      if (!skip_bad) {
        snprintf(err, errlen, "%s: record index %" PRIu64 ": %s", r->path, key, why);
        rc = -1;
        break;
      }
      s->skipped++;
      next = lfs_recordio_resync(r->map, r->size, at + 4);
    } else if (rec_push(r, &n, &cap, key++, at)) {
      snprintf(err, errlen, "%s: out of memory listing records", r->path);
      rc = -1;
    }
    at = next;
  }
  lfs_rec_buf_free(&scratch);
  s->count = (int64_t)n;
  return rc;
}

static int rec_index(lfs_pack_source *s, rec_src *r, const char *idx_path, char *err,
                     size_t errlen) {
  uint8_t *text = NULL;
  size_t cap = 0, len = 0, n = 0;
  lfs_rec_index *e = NULL;
  char why[512];
  int rc = lfs_read_file(idx_path, &text, &cap, &len, err, errlen);
  if (rc == 0 && lfs_recordio_parse_idx((const char *)text, len, &e, &n, why, sizeof why)) {
    snprintf(err, errlen, "%s: %s", idx_path, why);
    rc = -1;
  }
  free(text);
  size_t kept = 0, kcap = 0;
  for (size_t k = 0; rc == 0 && k < n; k++)
    if (rec_push(r, &kept, &kcap, e[k].key, e[k].offset)) {
      snprintf(err, errlen, "%s: out of memory", idx_path);
      rc = -1;
    }
  free(e);
  s->count = (int64_t)kept;
  return rc;
}

/* Drops the header record and the identity records behind the images. */
static void rec_drop_header(lfs_pack_source *s, rec_src *r) {
  int64_t at0 = -1;
  for (int64_t i = 0; i < s->count && at0 < 0; i++)
    if (r->keys[i] == 0) at0 = i;
  uint64_t end_key;
  if (at0 < 0 || !rec_header_range(r, r->offsets[at0], &end_key)) return;
  int64_t kept = 0;
  for (int64_t i = 0; i < s->count; i++)
    if (r->keys[i] >= 1 && r->keys[i] < end_key) {
      r->keys[kept] = r->keys[i];
      r->offsets[kept] = r->offsets[i];
      kept++;
    }
  s->count = kept;
}

lfs_pack_source *lfs_pack_open_rec(const char *path, int skip_bad, char *err, size_t errlen) {
  lfs_pack_source *s = calloc(1, sizeof *s);
  rec_src *r = calloc(1, sizeof *r);
  if (!s || !r || !(r->path = strdup(path))) {
    free(s);
    free(r);
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  s->impl = r;
  s->fetch = rec_fetch;
  s->describe = rec_describe;
  s->close = rec_close;
  const int fd = open(path, O_RDONLY);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0) {
    snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    if (fd >= 0) close(fd);
    rec_close(s);
    return NULL;
  }
  r->size = (size_t)st.st_size;
  if (r->size == 0) {
    snprintf(err, errlen, "%s: the file is empty", path);
    close(fd);
    rec_close(s);
    return NULL;
  }
  void *map = mmap(NULL, r->size, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (map == MAP_FAILED) {
    snprintf(err, errlen, "%s: cannot map: %s", path, strerror(errno));
    r->size = 0;
    rec_close(s);
    return NULL;
  }
  r->map = map;
  /* records are read in a shuffled order: a file that fits in memory is best
   * read ahead whole; a bigger one would only have its readahead wasted */
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  const int fits = pages > 0 && page > 0 && r->size < (size_t)pages / 2 * (size_t)page;
  madvise(r->map, r->size, fits ? MADV_WILLNEED : MADV_RANDOM);

  /* train.rec -> train.idx */
  const size_t n = strlen(path);
  char *idx = NULL;
  if (asprintf(&idx, "%.*s.idx", (int)(n > 4 && !strcmp(path + n - 4, ".rec") ? n - 4 : n), path) < 0) {
    snprintf(err, errlen, "out of memory");
    rec_close(s);
    return NULL;
  }
  int rc = rec_property(path, &s->num_classes, err, errlen);
  if (rc == 0)
    rc = access(idx, F_OK) == 0 ? rec_index(s, r, idx, err, errlen)
                                : rec_scan(s, r, skip_bad, err, errlen);
  free(idx);
  if (rc) {
    rec_close(s);
    return NULL;
  }
  rec_drop_header(s, r);
  return s;
}
