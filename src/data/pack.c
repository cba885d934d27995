/* pack.c: the conversion driver of `lfsearch pack` (pack.h).
 *
 * Datasets: the input's items are visited in a Philox permutation keyed by
 * the seed (purpose DATA_ORDER, stream "pack"), so the shards come out
 * pre-shuffled. Blocks of positions are decoded by worker threads into a
 * block buffer while the calling thread appends the previous block to the
 * shards (double buffering); each item has a fixed slot, so the output does
 * not depend on the thread count. Good images fill shards of shard_size in
 * order; with several shards OUT.h5 becomes a manifest of OUT-00000.h5, ...
 * Every shard stays a temporary file until all of them are complete (the
 * dataset writer renames on finish), so a failure leaves nothing behind.
 * Pair sets (.bin): the same decoding, in file order, into one buffer written
 * by lfs_pairset_write; a pair with a bad image is dropped under skip_bad.
 * Image size: --size resizes everything to S x S; otherwise the first good
 * image fixes the size and an image of another size is an error (aligned
 * crops expected), or is skipped and counted under skip_bad. */
#define _GNU_SOURCE
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/pack_internal.h"
#include "lfs/dataset.h"
#include "lfs/image.h"
#include "lfs/log.h"
#include "lfs/philox.h"
#include "lfs/timer.h"

enum { per_thread_block = 32, chunk_images = 64, max_shards = 99999, warn_limit = 10 };
#define PACK_STREAM 0x7061636bu /* "pack" */

typedef enum { SLOT_OK = 0, SLOT_BAD, SLOT_SIZE } slot_state;

/* One block of positions being decoded. */
typedef struct {
  const int64_t *items; /* [n] item index per slot */
  int64_t n;
  uint8_t *pixels;      /* [n, H, W, 3] */
  int32_t *labels;      /* [n] */
  uint8_t *state;       /* [n] slot_state */
  char (*why)[384];     /* [n] message of a bad slot */
  atomic_long next;     /* next slot to claim */
} block;

typedef struct {
  lfs_pack_source *src;
  int height, width, resize;
  block *blk;
  lfs_pack_scratch scratch;
  pthread_t thread;
  int started;
} worker;

/* Decodes item into out [H, W, 3]; SLOT_* with a message. */
static slot_state decode_item(worker *w, int64_t item, uint8_t *out, int32_t *label, char *why,
                              size_t len) {
  const uint8_t *bytes;
  size_t n;
  uint8_t *rgb = NULL;
  int h, wd;
  if (w->src->fetch(w->src, item, &w->scratch, &bytes, &n, label, why, len)) return SLOT_BAD;
  if (lfs_image_decode(bytes, n, &rgb, &h, &wd, why, len)) return SLOT_BAD;
  slot_state st = SLOT_OK;
  if (h == w->height && wd == w->width)
    memcpy(out, rgb, (size_t)h * wd * 3);
  else if (w->resize)
    lfs_image_resize(out, w->height, w->width, rgb, h, wd);
  else {
    snprintf(why, len, "image is %dx%d, the dataset's images are %dx%d", wd, h, w->width,
             w->height);
    st = SLOT_SIZE;
  }
  free(rgb);
  return st;
}

static void *work(void *arg) {
  worker *w = arg;
  block *b = w->blk;
  const size_t image = (size_t)w->height * w->width * 3;
  for (;;) {
    const long k = atomic_fetch_add(&b->next, 1);
    if (k >= b->n) break;
    b->why[k][0] = '\0';
    b->state[k] = (uint8_t)decode_item(w, b->items[k], b->pixels + (size_t)k * image,
                                       &b->labels[k], b->why[k], sizeof b->why[k]);
  }
  return NULL;
}

typedef struct {
  const lfs_pack_options *opt;
  lfs_pack_source *src;
  int height, width;
  worker *workers;
  int nthreads;
  block blocks[2];
  int64_t block_cap;
  char *err;
  size_t errlen;
  /* results */
  int64_t skipped, mismatched, done;
  int warned;
} run;

static int alloc_block(block *b, int64_t cap, size_t image) {
  b->pixels = malloc((size_t)cap * image);
  b->labels = malloc((size_t)cap * sizeof *b->labels);
  b->state = malloc((size_t)cap);
  b->why = malloc((size_t)cap * sizeof *b->why);
  return b->pixels && b->labels && b->state && b->why ? 0 : -1;
}

static void free_block(block *b) {
  free(b->pixels);
  free(b->labels);
  free(b->state);
  free(b->why);
}

/* Starts decoding items [0, n) into b. */
static int start_block(run *r, block *b, const int64_t *items, int64_t n) {
  b->items = items;
  b->n = n;
  atomic_store(&b->next, 0);
  for (int t = 0; t < r->nthreads; t++) {
    r->workers[t].blk = b;
    r->workers[t].started = pthread_create(&r->workers[t].thread, NULL, work, &r->workers[t]) == 0;
    if (!r->workers[t].started) {
      work(&r->workers[t]); /* no thread to be had: decode the rest here */
      break;
    }
  }
  return 0;
}

static void finish_block(run *r) {
  for (int t = 0; t < r->nthreads; t++)
    if (r->workers[t].started) pthread_join(r->workers[t].thread, NULL), r->workers[t].started = 0;
}

/* Handles a bad slot: counts it under skip_bad, else sets the error. -1 to stop. */
static int bad_slot(run *r, const block *b, int64_t k) {
  char where[256];
  r->src->describe(r->src, b->items[k], where, sizeof where);
  const int size = b->state[k] == SLOT_SIZE;
  if (!r->opt->skip_bad) {
    snprintf(r->err, r->errlen, "%s: %s: %s%s", r->opt->input, where, b->why[k],
             size ? " (images must be aligned crops of one size; pass --size S to resize, or "
                    "--skip-bad to leave them out)"
                  : " (--skip-bad skips bad images)");
    return -1;
  }
  r->skipped++;
  r->mismatched += size;
  if (!size && r->warned++ < warn_limit)
    lfs_warn("%s: skipping %s: %s", r->opt->input, where, b->why[k]);
  return 0;
}

/* The image size: --size, or the first image (in input order) that decodes. */
static int probe_size(run *r) {
  if (r->opt->size > 0) {
    r->height = r->width = r->opt->size;
    return 0;
  }
  worker *w = &r->workers[0];
  char why[384], where[256];
  for (int64_t i = 0; i < r->src->count; i++) {
    const uint8_t *bytes;
    size_t n;
    int32_t label;
    uint8_t *rgb = NULL;
    int h, wd;
    if (r->src->fetch(r->src, i, &w->scratch, &bytes, &n, &label, why, sizeof why) == 0 &&
        lfs_image_decode(bytes, n, &rgb, &h, &wd, why, sizeof why) == 0) {
      free(rgb);
      r->height = h;
      r->width = wd;
      return 0;
    }
    if (!r->opt->skip_bad) {
      r->src->describe(r->src, i, where, sizeof where);
      snprintf(r->err, r->errlen, "%s: %s: %s (--skip-bad skips bad images)", r->opt->input,
               where, why);
      return -1;
    }
  }
  snprintf(r->err, r->errlen, "%s: no image could be decoded", r->opt->input);
  return -1;
}

/* Runs blocks over items [0, n) in order, calling consume(r, block, ctx) for
 * each finished block while the next one decodes. */
static int for_blocks(run *r, const int64_t *items, int64_t n,
                      int (*consume)(run *r, const block *b, void *ctx), void *ctx) {
  int64_t at = 0;
  int cur = 0, rc = 0;
  if (n == 0) return 0;
  int64_t len = n < r->block_cap ? n : r->block_cap;
  start_block(r, &r->blocks[cur], items, len);
  at = len;
  while (rc == 0) {
    finish_block(r);
    const block *done = &r->blocks[cur];
    cur ^= 1;
    if (at < n) {
      len = n - at < r->block_cap ? n - at : r->block_cap;
      start_block(r, &r->blocks[cur], items + at, len);
      at += len;
    }
    rc = consume(r, done, ctx);
    r->done += done->n;
    if (r->opt->progress) r->opt->progress(r->opt->progress_ctx, r->done, n);
    if (done->items + done->n == items + n) break;
  }
  finish_block(r); /* a block started before a failure */
  return rc;
}

/* ---- datasets ---- */
typedef struct {
  lfs_dataset_writer **writers;
  char **paths;
  int nshards;
  int64_t in_shard; /* images in the last shard */
  int64_t total;    /* capacity planned: positions */
  int manifest;     /* several shards planned */
  int32_t *labels;  /* every written label, for the identity count */
  int64_t nlabels;
  int32_t max_label;
} shards;

static char *shard_path(const char *out, int k) {
  const size_t n = strlen(out);
  const int stem = (int)(n > 3 && !strcmp(out + n - 3, ".h5") ? n - 3 : n);
  char *p = NULL;
  if (asprintf(&p, "%.*s-%05d.h5", stem, out, k) < 0) return NULL;
  return p;
}

static int open_shard(run *r, shards *s) {
  if (s->nshards >= max_shards) {
    snprintf(r->err, r->errlen, "%s: more than %d shards: raise --shard-size", r->opt->out, max_shards);
    return -1;
  }
  lfs_dataset_writer **w = realloc(s->writers, (size_t)(s->nshards + 1) * sizeof *w);
  if (w) s->writers = w;
  char **p = realloc(s->paths, (size_t)(s->nshards + 1) * sizeof *p);
  if (p) s->paths = p;
  char *path = s->manifest ? shard_path(r->opt->out, s->nshards) : strdup(r->opt->out);
  if (!w || !p || !path) {
    free(path);
    snprintf(r->err, r->errlen, "out of memory");
    return -1;
  }
  char source[4200];
  snprintf(source, sizeof source, "pack %s:%s seed=%" PRIu64,
           (const char *[]){"rec", "bin", "folder", "list"}[r->opt->kind], r->opt->input,
           r->opt->seed);
  const int64_t chunk = r->opt->shard_size < chunk_images ? r->opt->shard_size : chunk_images;
  lfs_dataset_writer *wr = lfs_dataset_writer_create(path, r->height, r->width, (int)chunk, source,
                                                     r->err, r->errlen);
  if (!wr) {
    free(path);
    return -1;
  }
  s->writers[s->nshards] = wr;
  s->paths[s->nshards] = path;
  s->nshards++;
  s->in_shard = 0;
  return 0;
}

static int append_good(run *r, shards *s, const uint8_t *pixels, const int32_t *labels, int64_t n) {
  const size_t image = (size_t)r->height * r->width * 3;
  while (n > 0) {
    if (s->nshards == 0 || s->in_shard == r->opt->shard_size)
      if (open_shard(r, s)) return -1;
    int64_t take = r->opt->shard_size - s->in_shard;
    if (take > n) take = n;
    if (lfs_dataset_writer_append(s->writers[s->nshards - 1], pixels, labels, take, r->err,
                                  r->errlen))
      return -1;
    for (int64_t k = 0; k < take; k++) {
      s->labels[s->nlabels++] = labels[k];
      if (labels[k] > s->max_label) s->max_label = labels[k];
    }
    s->in_shard += take;
    pixels += (size_t)take * image;
    labels += take;
    n -= take;
  }
  return 0;
}

/* Appends the good slots of a block, runs of consecutive ones at a time. */
static int consume_dataset(run *r, const block *b, void *ctx) {
  shards *s = ctx;
  const size_t image = (size_t)r->height * r->width * 3;
  int64_t k = 0;
  while (k < b->n) {
    int64_t end = k;
    while (end < b->n && b->state[end] == SLOT_OK) end++;
    if (end > k && append_good(r, s, b->pixels + (size_t)k * image, b->labels + k, end - k))
      return -1;
    if (end < b->n && bad_slot(r, b, end)) return -1;
    k = end + 1;
  }
  return 0;
}

static int cmp_i32(const void *a, const void *b) {
  const int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  return (x > y) - (x < y);
}

static int64_t distinct(int32_t *v, int64_t n) {
  if (n == 0) return 0;
  qsort(v, (size_t)n, sizeof *v, cmp_i32);
  int64_t d = 1;
  for (int64_t i = 1; i < n; i++) d += v[i] != v[i - 1];
  return d;
}

/* Finishes every shard (renaming them into place) and writes the manifest;
 * on any failure removes what was already put in place. */
static int finish_shards(run *r, shards *s, int32_t num_classes) {
  int finished = 0, rc = 0;
  for (int k = 0; k < s->nshards; k++) {
    if (rc == 0) {
      rc = lfs_dataset_writer_finish(s->writers[k], num_classes, r->err, r->errlen);
      finished += rc == 0;
    } else {
      lfs_dataset_writer_abort(s->writers[k]);
    }
    s->writers[k] = NULL;
  }
  if (rc == 0 && s->manifest)
    rc = lfs_manifest_write(r->opt->out, (const char *const *)s->paths, s->nshards, r->err,
                            r->errlen);
  if (rc)
    for (int k = 0; k < finished; k++) unlink(s->paths[k]);
  return rc;
}

static void free_shards(shards *s) {
  for (int k = 0; k < s->nshards; k++) {
    if (s->writers[k]) lfs_dataset_writer_abort(s->writers[k]);
    free(s->paths[k]);
  }
  free(s->writers);
  free(s->paths);
  free(s->labels);
}

static int pack_dataset(run *r, lfs_pack_summary *sum) {
  const int64_t n = r->src->count;
  shards s = {0};
  s.max_label = -1;
  s.manifest = n > r->opt->shard_size;
  int64_t *order = malloc((size_t)(n ? n : 1) * sizeof *order);
  s.labels = malloc((size_t)(n ? n : 1) * sizeof *s.labels);
  if (!order || !s.labels) {
    free(order);
    free(s.labels);
    snprintf(r->err, r->errlen, "out of memory for %" PRId64 " images", n);
    return -1;
  }
  const lfs_rng rng = lfs_rng_make(r->opt->seed, LFS_RNG_DATA_ORDER, PACK_STREAM, 0);
  lfs_rng_permutation(&rng, (uint64_t *)order, (size_t)n);
  int rc = for_blocks(r, order, n, consume_dataset, &s);
  free(order);
  if (rc == 0 && s.nlabels == 0) {
    snprintf(r->err, r->errlen, "%s: no image was converted (%" PRId64 " skipped)", r->opt->input,
             r->skipped);
    rc = -1;
  }
  int32_t num_classes = r->src->num_classes > 0 ? r->src->num_classes : s.max_label + 1;
  if (rc == 0 && s.max_label >= num_classes) {
    snprintf(r->err, r->errlen, "%s: label %" PRId32 " is not below num_classes = %" PRId32,
             r->opt->input, s.max_label, num_classes);
    rc = -1;
  }
  if (rc == 0) rc = finish_shards(r, &s, num_classes);
  if (rc == 0) {
    sum->images = s.nlabels;
    sum->identities = distinct(s.labels, s.nlabels);
    sum->num_classes = num_classes;
    sum->shards = s.nshards;
  }
  free_shards(&s);
  return rc;
}

/* ---- pair sets ---- */
typedef struct {
  uint8_t *images; /* [count, H, W, 3] */
  uint8_t *bad;    /* [count] */
} pairs_ctx;

static int consume_pairs(run *r, const block *b, void *ctx) {
  pairs_ctx *p = ctx;
  const size_t image = (size_t)r->height * r->width * 3;
  for (int64_t k = 0; k < b->n; k++) {
    const int64_t item = b->items[k];
    if (b->state[k] == SLOT_OK) {
      memcpy(p->images + (size_t)item * image, b->pixels + (size_t)k * image, image);
    } else {
      if (bad_slot(r, b, k)) return -1;
      p->bad[item] = 1;
    }
  }
  return 0;
}

static int pack_pairs(run *r, lfs_pack_summary *sum) {
  const int64_t n = r->src->count, npairs = n / 2;
  const size_t image = (size_t)r->height * r->width * 3;
  pairs_ctx p = {malloc((size_t)(n ? n : 1) * image), calloc((size_t)(n ? n : 1), 1)};
  int64_t *order = malloc((size_t)(n ? n : 1) * sizeof *order);
  uint8_t *issame = malloc((size_t)(npairs ? npairs : 1));
  int rc = 0;
  if (!p.images || !p.bad || !order || !issame) {
    snprintf(r->err, r->errlen, "out of memory for %" PRId64 " images", n);
    rc = -1;
  }
  for (int64_t i = 0; rc == 0 && i < n; i++) order[i] = i;
  if (rc == 0) rc = for_blocks(r, order, n, consume_pairs, &p);
  int64_t kept = 0;
  for (int64_t i = 0; rc == 0 && i < npairs; i++) {
    if (p.bad[2 * i] || p.bad[2 * i + 1]) continue;
    if (kept != i) memmove(p.images + (size_t)2 * kept * image, p.images + (size_t)2 * i * image, 2 * image);
    issame[kept++] = r->src->issame[i];
  }
  if (rc == 0 && kept == 0) {
    snprintf(r->err, r->errlen, "%s: no pair left to write", r->opt->input);
    rc = -1;
  }
  char name[256];
  if (r->opt->name)
    snprintf(name, sizeof name, "%s", r->opt->name);
  else
    lfs_pack_bin_name(r->opt->input, name, sizeof name);
  if (rc == 0)
    rc = lfs_pairset_write(r->opt->out, name, r->height, r->width, kept, p.images, issame, r->err,
                           r->errlen);
  if (rc == 0) {
    sum->pairs = kept;
    for (int64_t i = 0; i < kept; i++) sum->genuine += issame[i];
    sum->images = 2 * kept;
  }
  free(p.images);
  free(p.bad);
  free(order);
  free(issame);
  return rc;
}

void lfs_pack_bin_name(const char *path, char *name, size_t len) {
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  size_t n = strlen(base);
  if (n > 4 && !strcmp(base + n - 4, ".bin")) n -= 4;
  snprintf(name, len, "%.*s", (int)n, base);
}

static int check_options(const lfs_pack_options *opt, char *err, size_t errlen) {
  if (!opt->input || !opt->out) return snprintf(err, errlen, "pack needs an input and an output"), -1;
  if (opt->size < 0 || opt->size > 4096)
    return snprintf(err, errlen, "size %d is outside [0, 4096]", opt->size), -1;
  if (opt->shard_size < 1) return snprintf(err, errlen, "shard size must be >= 1"), -1;
  if (opt->threads < 1 || opt->threads > 256)
    return snprintf(err, errlen, "threads %d is outside [1, 256]", opt->threads), -1;
  if ((unsigned)opt->kind > LFS_PACK_LIST) return snprintf(err, errlen, "unknown input kind"), -1;
  return 0;
}

int lfs_pack_run(const lfs_pack_options *opt, lfs_pack_summary *sum, char *err, size_t errlen) {
  memset(sum, 0, sizeof *sum);
  if (check_options(opt, err, errlen)) return -1;
  const double t0 = lfs_now();
  run r = {.opt = opt, .err = err, .errlen = errlen, .nthreads = opt->threads};
  switch (opt->kind) {
    case LFS_PACK_REC: r.src = lfs_pack_open_rec(opt->input, opt->skip_bad, err, errlen); break;
    case LFS_PACK_BIN: r.src = lfs_pack_open_bin(opt->input, err, errlen); break;
    case LFS_PACK_FOLDER: r.src = lfs_pack_open_folder(opt->input, err, errlen); break;
    case LFS_PACK_LIST: r.src = lfs_pack_open_list(opt->input, err, errlen); break;
  }
  if (!r.src) return -1;
  int rc = 0;
  if (r.src->count == 0) {
    snprintf(err, errlen, "%s: holds no images", opt->input);
    rc = -1;
  }
  r.skipped = r.src->skipped;
  r.workers = calloc((size_t)r.nthreads, sizeof *r.workers);
  if (!r.workers) rc = -1, snprintf(err, errlen, "out of memory");
  if (rc == 0) r.workers[0].src = r.src;
  if (rc == 0) rc = probe_size(&r);
  if (rc == 0) {
    const size_t image = (size_t)r.height * r.width * 3;
    r.block_cap = (int64_t)per_thread_block * r.nthreads;
    for (int t = 0; t < r.nthreads; t++) {
      r.workers[t].src = r.src;
      r.workers[t].height = r.height;
      r.workers[t].width = r.width;
      r.workers[t].resize = opt->size > 0;
    }
    if (alloc_block(&r.blocks[0], r.block_cap, image) || alloc_block(&r.blocks[1], r.block_cap, image)) {
      snprintf(err, errlen, "out of memory for %" PRId64 " images of %dx%d", 2 * r.block_cap,
               r.width, r.height);
      rc = -1;
    }
  }
  if (rc == 0) rc = r.src->pairs ? pack_pairs(&r, sum) : pack_dataset(&r, sum);
  if (rc == 0) {
    sum->skipped = r.skipped;
    sum->size_mismatch = r.mismatched;
    sum->height = r.height;
    sum->width = r.width;
    sum->seconds = lfs_now() - t0;
    if (r.warned > warn_limit)
      lfs_warn("%s: %d more bad images skipped without a message", opt->input, r.warned - warn_limit);
  }
  free_block(&r.blocks[0]);
  free_block(&r.blocks[1]);
  for (int t = 0; r.workers && t < r.nthreads; t++) lfs_pack_scratch_free(&r.workers[t].scratch);
  free(r.workers);
  r.src->close(r.src);
  return rc;
}
