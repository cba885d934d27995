/* loader.c: the training data loader (include/lfs/loader.h): epoch order,
 * chunk-friendly reading of this rank's slice, flip and normalisation, and the
 * prefetch thread.
 *
 * Layout: the dataset is uint8 [N, H, W, 3] RGB read through dataset.h (which
 * serialises HDF5 with lfs_h5_lock); output images are float [local_batch, 3, H, W].
 *
 * The order is a pure function of (seed, epoch, position) (loader.h gives the
 * definition). Its two permutations are cached per epoch and per window in an
 * order_cache; the producer (the prefetch thread, or the caller when prefetch
 * is 0) has its own cache, and lfs_loader_index another behind a mutex, so no
 * cache is ever shared between threads.
 *
 * Prefetch: a ring of `prefetch` batch slots. The thread fills the slot after
 * the ready ones from its own cursor; the caller copies out the oldest ready
 * slot. A seek bumps a generation number: ready slots are dropped, and a batch
 * being read when the seek happened is discarded when it is finished. A read
 * error travels in its slot and parks the thread; when the caller meets it, it
 * returns -1 and restarts the thread at the failed batch, so the next call
 * retries. The thread allocates nothing, never calls MPI, and blocks signals. */
#include "lfs/loader.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lfs/dataset.h"
#include "lfs/log.h"
#include "lfs/philox.h"

enum {
  LOADER_DEFAULT_WINDOW_CHUNKS = 16, /* shuffle = 0 */
  LOADER_MAX_PREFETCH = 64,
  LOADER_STAGING_BYTES = 4 << 20, /* images read per lfs_dataset_read, at most */
  LOADER_GAP_BYTES = 128 << 10,   /* read through gaps this small rather than call again */
};

/* Cached permutations of one epoch (and one window of it). */
typedef struct {
  int64_t epoch;          /* -1: nothing cached */
  uint64_t *chunk_perm;   /* [nchunks]: the chunk at each slot of the stream */
  int64_t last_slot;      /* slot of the last chunk, the one that may be partial */
  int64_t window;         /* -1: nothing cached */
  uint64_t *window_perm;  /* [window]: stream offset at each position of the window */
} order_cache;

/* lfs_loader_index's own cache: it may be called from any thread. */
typedef struct {
  pthread_mutex_t mu;
  order_cache cache;
} shared_order;

/* An index of the slice, with its place in the batch. */
typedef struct {
  int64_t index;
  int slot;
} slice_entry;

/* What the producer needs besides the loader: nothing here is shared. */
typedef struct {
  order_cache cache;
  slice_entry *entries;    /* [local] */
  uint8_t *staging;        /* [staging_images, H, W, 3] */
  int32_t *staging_labels; /* [staging_images] */
} reader;

typedef struct {
  float *images;    /* [local, 3, H, W] */
  int32_t *labels;  /* [local] */
  int64_t *indices; /* [local] */
  int64_t epoch, step;
  int failed;
  char err[1024];
} batch_slot;

struct lfs_loader {
  lfs_loader_cfg cfg;
  char *path;
  lfs_dataset *ds;
  int64_t count, nchunks, steps, window;
  int chunk, last_chunk; /* images per chunk; in the last one (1..chunk) */
  int local, height, width;
  size_t image_bytes, image_floats;
  float lut[256]; /* pixel value -> normalised float */
  int staging_images, gap_images;
  int64_t epoch, step; /* the next batch lfs_loader_next returns */
  shared_order *shared;
  reader rd;
  /* prefetch (depth 0: none) */
  int depth;
  batch_slot *slots;
  pthread_t thread;
  int thread_started;
  pthread_mutex_t mu;
  pthread_cond_t cv_ready, cv_work;
  int head, nready, parked, stop;
  int64_t gen, pf_epoch, pf_step;
};

/* ---- the order ------------------------------------------------------------------------ */

static void order_cache_init(order_cache *c, int64_t nchunks, int64_t window) {
  c->epoch = -1;
  c->window = -1;
  c->last_slot = 0;
  c->chunk_perm = lfs_malloc((size_t)nchunks * sizeof *c->chunk_perm);
  c->window_perm = lfs_malloc((size_t)window * sizeof *c->window_perm);
}

static void order_cache_free(order_cache *c) {
  free(c->chunk_perm);
  free(c->window_perm);
}

static void ensure_epoch(const lfs_loader *l, order_cache *c, int64_t epoch) {
  if (c->epoch == epoch) return;
  const lfs_rng rng = lfs_rng_make(l->cfg.seed, LFS_RNG_DATA_ORDER, (uint32_t)epoch, 0);
  lfs_rng_permutation(&rng, c->chunk_perm, (size_t)l->nchunks);
  for (int64_t s = 0; s < l->nchunks; s++)
    if (c->chunk_perm[s] == (uint64_t)(l->nchunks - 1)) c->last_slot = s;
  c->epoch = epoch;
  c->window = -1;
}

static void ensure_window(const lfs_loader *l, order_cache *c, int64_t epoch, int64_t w) {
  if (c->window == w) return;
  const int64_t first = w * l->window;
  const int64_t size = l->count - first < l->window ? l->count - first : l->window;
  const lfs_rng rng =
      lfs_rng_make(l->cfg.seed, LFS_RNG_DATA_ORDER, (uint32_t)epoch, (uint32_t)(w + 1));
  lfs_rng_permutation(&rng, c->window_perm, (size_t)size);
  c->window = w;
}

/* Stream offset q (chunks laid end to end in permuted order) -> dataset index.
 * Slots after the partial last chunk start (chunk - last_chunk) images early. */
static int64_t stream_index(const lfs_loader *l, const order_cache *c, int64_t q) {
  const int64_t C = l->chunk, partial_start = c->last_slot * C;
  int64_t slot, offset;
  if (q < partial_start) {
    slot = q / C, offset = q % C;
  } else if (q < partial_start + l->last_chunk) {
    slot = c->last_slot, offset = q - partial_start;
  } else {
    const int64_t shifted = q + (C - l->last_chunk);
    slot = shifted / C, offset = shifted % C;
  }
  return (int64_t)c->chunk_perm[slot] * C + offset;
}

static int64_t order_index(const lfs_loader *l, order_cache *c, int64_t epoch, int64_t p) {
  ensure_epoch(l, c, epoch);
  const int64_t w = p / l->window;
  ensure_window(l, c, epoch, w);
  return stream_index(l, c, w * l->window + (int64_t)c->window_perm[p % l->window]);
}

int64_t lfs_loader_index(const lfs_loader *l, int64_t epoch, int64_t position) {
  if (epoch < 0 || epoch > (int64_t)UINT32_MAX || position < 0 || position >= l->count) return -1;
  pthread_mutex_lock(&l->shared->mu);
  const int64_t index = order_index(l, &l->shared->cache, epoch, position);
  pthread_mutex_unlock(&l->shared->mu);
  return index;
}

/* ---- reading and converting one batch --------------------------------------------------- */

static int flip_of(const lfs_loader *l, int64_t epoch, int64_t index) {
  if (!l->cfg.flip) return 0;
  const lfs_rng rng = lfs_rng_make(l->cfg.seed, LFS_RNG_FLIP, (uint32_t)epoch, 0);
  return (int)(lfs_rng_u32(&rng, (uint64_t)index) >> 31);
}

/* dst [3, h, w] <- lut[src [h, w, 3]], mirrored left-right if flip. The table
 * (about twice as fast as converting) holds (v - 127.5) / 128, exact in float. */
static void to_chw(float *restrict dst, const uint8_t *restrict src, int h, int w, int flip,
                   const float *lut) {
  const size_t plane = (size_t)h * w;
  float *r = dst, *g = dst + plane, *b = dst + 2 * plane;
  for (int y = 0; y < h; y++) {
    const uint8_t *row = src + (size_t)y * w * 3;
    const size_t o = (size_t)y * w;
    if (flip) {
      for (int x = 0; x < w; x++) {
        const uint8_t *px = row + (size_t)(w - 1 - x) * 3;
        r[o + x] = lut[px[0]], g[o + x] = lut[px[1]], b[o + x] = lut[px[2]];
      }
    } else {
      for (int x = 0; x < w; x++) {
        const uint8_t *px = row + (size_t)x * 3;
        r[o + x] = lut[px[0]], g[o + x] = lut[px[1]], b[o + x] = lut[px[2]];
      }
    }
  }
}

void lfs_image_to_input(float *dst, const uint8_t *src, int h, int w, int flip) {
  float lut[256];
  for (int v = 0; v < 256; v++) lut[v] = ((float)v - 127.5f) * 0.0078125f; /* both steps exact */
  to_chw(dst, src, h, w, flip, lut);
}

static int by_index(const void *a, const void *b) {
  const int64_t x = ((const slice_entry *)a)->index, y = ((const slice_entry *)b)->index;
  return (x > y) - (x < y);
}

/* Reads dataset indices [first, last] in one call and scatters the wanted ones
 * (entries [0, n)) into the batch. */
static int read_run(const lfs_loader *l, reader *rd, const slice_entry *e, int n, int64_t epoch,
                    float *images, int32_t *labels, char *err, size_t errlen) {
  const int64_t first = e[0].index, span = e[n - 1].index - first + 1;
  if (lfs_dataset_read(l->ds, first, span, rd->staging, rd->staging_labels, err, errlen) != 0)
    return -1;
  for (int i = 0; i < n; i++) {
    const int64_t k = e[i].index - first;
    to_chw(images + (size_t)e[i].slot * l->image_floats, rd->staging + (size_t)k * l->image_bytes,
           l->height, l->width, flip_of(l, epoch, e[i].index), l->lut);
    if (labels) labels[e[i].slot] = rd->staging_labels[k];
  }
  return 0;
}

/* Batch (epoch, step) of this rank into the given buffers. The slice's indices
 * are sorted and read in runs: neighbours closer than gap_images share one read,
 * and no read exceeds the staging buffer. */
static int produce(const lfs_loader *l, reader *rd, int64_t epoch, int64_t step, float *images,
                   int32_t *labels, int64_t *indices, char *err, size_t errlen) {
  const int64_t p0 = step * l->cfg.global_batch + (int64_t)l->cfg.rank * l->local;
  for (int i = 0; i < l->local; i++) {
    rd->entries[i].index = order_index(l, &rd->cache, epoch, p0 + i);
    rd->entries[i].slot = i;
    if (indices) indices[i] = rd->entries[i].index;
  }
  qsort(rd->entries, (size_t)l->local, sizeof *rd->entries, by_index);
  int start = 0;
  for (int i = 1; i <= l->local; i++) {
    const int joins = i < l->local &&
                      rd->entries[i].index - rd->entries[i - 1].index <= l->gap_images + 1 &&
                      rd->entries[i].index - rd->entries[start].index < l->staging_images;
    if (joins) continue;
    if (read_run(l, rd, rd->entries + start, i - start, epoch, images, labels, err, errlen) != 0)
      return -1;
    start = i;
  }
  return 0;
}

static void advance(const lfs_loader *l, int64_t *epoch, int64_t *step) {
  if (++*step == l->steps) *step = 0, ++*epoch;
}

/* ---- the prefetch thread ------------------------------------------------------------- */

static void *prefetch_main(void *arg) {
  lfs_loader *l = arg;
  pthread_mutex_lock(&l->mu);
  for (;;) {
    while (!l->stop && (l->parked || l->nready == l->depth)) pthread_cond_wait(&l->cv_work, &l->mu);
    if (l->stop) break;
    batch_slot *b = &l->slots[(l->head + l->nready) % l->depth];
    const int64_t gen = l->gen, epoch = l->pf_epoch, step = l->pf_step;
    pthread_mutex_unlock(&l->mu);
    b->failed = produce(l, &l->rd, epoch, step, b->images, b->labels, b->indices, b->err,
                        sizeof b->err) != 0;
    b->epoch = epoch, b->step = step;
    pthread_mutex_lock(&l->mu);
    if (gen != l->gen) continue; /* a seek made it stale */
    l->nready++;
    if (b->failed)
      l->parked = 1;
    else
      advance(l, &l->pf_epoch, &l->pf_step);
    pthread_cond_signal(&l->cv_ready);
  }
  pthread_mutex_unlock(&l->mu);
  return NULL;
}

/* Drops prefetched batches and points the thread at the caller's cursor. */
static void restart_prefetch(lfs_loader *l) {
  pthread_mutex_lock(&l->mu);
  l->gen++;
  l->nready = 0;
  l->parked = 0;
  l->pf_epoch = l->epoch, l->pf_step = l->step;
  pthread_cond_signal(&l->cv_work);
  pthread_mutex_unlock(&l->mu);
}

static int start_prefetch(lfs_loader *l, char *err, size_t errlen) {
  l->slots = lfs_calloc((size_t)l->depth, sizeof *l->slots);
  for (int i = 0; i < l->depth; i++) {
    l->slots[i].images = lfs_alloc_floats((size_t)l->local * l->image_floats);
    l->slots[i].labels = lfs_malloc((size_t)l->local * sizeof(int32_t));
    l->slots[i].indices = lfs_malloc((size_t)l->local * sizeof(int64_t));
  }
  if (pthread_mutex_init(&l->mu, NULL) || pthread_cond_init(&l->cv_ready, NULL) ||
      pthread_cond_init(&l->cv_work, NULL))
    lfs_fatal("loader: cannot initialise the prefetch thread's mutex or condition variables");
  /* the thread inherits a mask blocking every signal: they are the main thread's business */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  const int rc = pthread_create(&l->thread, NULL, prefetch_main, l);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc != 0) {
    snprintf(err, errlen, "loader: %s: cannot start the prefetch thread (%s)", l->path,
             strerror(rc));
    return -1;
  }
  l->thread_started = 1;
  return 0;
}

static void stop_prefetch(lfs_loader *l) {
  if (!l->thread_started) return;
  pthread_mutex_lock(&l->mu);
  l->stop = 1;
  pthread_cond_signal(&l->cv_work);
  pthread_mutex_unlock(&l->mu);
  pthread_join(l->thread, NULL);
  l->thread_started = 0;
}

/* ---- opening and closing ------------------------------------------------------------- */

static int check_cfg(const lfs_loader_cfg *c, char *err, size_t errlen) {
  if (!c) {
    snprintf(err, errlen, "loader: no configuration given");
    return -1;
  }
  const char *path = c->path ? c->path : "(null)";
  if (!c->path || !*c->path)
    snprintf(err, errlen, "loader: no dataset path given");
  else if (c->ranks < 1 || c->rank < 0 || c->rank >= c->ranks)
    snprintf(err, errlen, "loader: %s: rank %d of %d ranks is out of range", path, c->rank,
             c->ranks);
  else if (c->global_batch < 1 || c->global_batch % c->ranks != 0)
    snprintf(err, errlen, "loader: %s: global batch %d is not a positive multiple of %d ranks",
             path, c->global_batch, c->ranks);
  else if (c->shuffle < 0)
    snprintf(err, errlen, "loader: %s: shuffle window %d is negative", path, c->shuffle);
  else if (c->prefetch < 0 || c->prefetch > LOADER_MAX_PREFETCH)
    snprintf(err, errlen, "loader: %s: prefetch depth %d is not in [0, %d]", path, c->prefetch,
             LOADER_MAX_PREFETCH);
  else
    return 0;
  return -1;
}

/* Sizes that follow from the dataset and the configuration. */
static int size_loader(lfs_loader *l, char *err, size_t errlen) {
  l->count = lfs_dataset_count(l->ds);
  l->height = lfs_dataset_height(l->ds);
  l->width = lfs_dataset_width(l->ds);
  l->chunk = lfs_dataset_chunk(l->ds);
  if (l->chunk < 1) l->chunk = 1;
  if (l->count < l->cfg.global_batch) {
    snprintf(err, errlen, "loader: %s: %lld images, fewer than one global batch of %d", l->path,
             (long long)l->count, l->cfg.global_batch);
    return -1;
  }
  l->local = l->cfg.global_batch / l->cfg.ranks;
  l->steps = l->count / l->cfg.global_batch;
  l->nchunks = (l->count + l->chunk - 1) / l->chunk;
  l->last_chunk = (int)(l->count - (l->nchunks - 1) * l->chunk);
  l->window = l->cfg.shuffle > 0 ? l->cfg.shuffle
                                 : (int64_t)LOADER_DEFAULT_WINDOW_CHUNKS * l->chunk;
  if (l->window > l->count) l->window = l->count; /* one window: the same order, less memory */
  l->image_bytes = (size_t)l->height * l->width * 3;
  l->image_floats = l->image_bytes;
  l->staging_images = (int)(LOADER_STAGING_BYTES / l->image_bytes);
  if (l->staging_images < 1) l->staging_images = 1;
  l->gap_images = (int)(LOADER_GAP_BYTES / l->image_bytes);
  for (int v = 0; v < 256; v++) l->lut[v] = ((float)v - 127.5f) * 0.0078125f; /* both steps exact */
  return 0;
}

lfs_loader *lfs_loader_open(const lfs_loader_cfg *cfg, char *err, size_t errlen) {
  if (check_cfg(cfg, err, errlen) != 0) return NULL;
  lfs_loader *l = lfs_calloc(1, sizeof *l);
  l->cfg = *cfg;
  l->path = strdup(cfg->path);
  if (!l->path) lfs_fatal("loader: out of memory copying a path");
  l->cfg.path = l->path;
  l->ds = lfs_dataset_open(cfg->path, err, errlen);
  if (!l->ds || size_loader(l, err, errlen) != 0) {
    lfs_loader_close(l);
    return NULL;
  }
  l->shared = lfs_calloc(1, sizeof *l->shared);
  if (pthread_mutex_init(&l->shared->mu, NULL) != 0) lfs_fatal("loader: cannot initialise a mutex");
  order_cache_init(&l->shared->cache, l->nchunks, l->window);
  order_cache_init(&l->rd.cache, l->nchunks, l->window);
  l->rd.entries = lfs_malloc((size_t)l->local * sizeof *l->rd.entries);
  l->rd.staging = lfs_malloc((size_t)l->staging_images * l->image_bytes);
  l->rd.staging_labels = lfs_malloc((size_t)l->staging_images * sizeof(int32_t));
  l->depth = cfg->prefetch;
  if (l->depth > 0 && start_prefetch(l, err, errlen) != 0) {
    lfs_loader_close(l);
    return NULL;
  }
  return l;
}

void lfs_loader_close(lfs_loader *l) {
  if (!l) return;
  stop_prefetch(l);
  if (l->slots) {
    for (int i = 0; i < l->depth; i++)
      free(l->slots[i].images), free(l->slots[i].labels), free(l->slots[i].indices);
    free(l->slots);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv_ready);
    pthread_cond_destroy(&l->cv_work);
  }
  if (l->shared) {
    order_cache_free(&l->shared->cache);
    pthread_mutex_destroy(&l->shared->mu);
    free(l->shared);
  }
  if (l->rd.cache.chunk_perm) order_cache_free(&l->rd.cache);
  free(l->rd.entries);
  free(l->rd.staging);
  free(l->rd.staging_labels);
  if (l->ds) lfs_dataset_close(l->ds);
  free(l->path);
  free(l);
}

int64_t lfs_loader_steps_per_epoch(const lfs_loader *l) { return l->steps; }
int lfs_loader_local_batch(const lfs_loader *l) { return l->local; }
int lfs_loader_height(const lfs_loader *l) { return l->height; }
int lfs_loader_width(const lfs_loader *l) { return l->width; }

/* ---- the caller's side ---------------------------------------------------------------- */

void lfs_loader_seek(lfs_loader *l, int64_t epoch, int64_t step) {
  LFS_ASSERT(epoch >= 0 && step >= 0);
  epoch += step / l->steps; /* a step past the end carries into the following epochs */
  step %= l->steps;
  LFS_ASSERT(epoch <= (int64_t)UINT32_MAX);
  l->epoch = epoch, l->step = step;
  if (l->depth > 0) restart_prefetch(l);
}

static void report(const lfs_loader *l, int64_t *epoch, int64_t *step) {
  if (epoch) *epoch = l->epoch;
  if (step) *step = l->step;
}

int lfs_loader_next(lfs_loader *l, float *images, int32_t *labels, int64_t *indices,
                    int64_t *epoch, int64_t *step, char *err, size_t errlen) {
  report(l, epoch, step);
  if (l->depth == 0) {
    if (produce(l, &l->rd, l->epoch, l->step, images, labels, indices, err, errlen) != 0) return -1;
    advance(l, &l->epoch, &l->step);
    return 0;
  }
  pthread_mutex_lock(&l->mu);
  while (l->nready == 0) pthread_cond_wait(&l->cv_ready, &l->mu);
  const batch_slot *b = &l->slots[l->head];
  pthread_mutex_unlock(&l->mu);
  /* the slot stays counted as ready while it is read, so the thread leaves it alone */
  if (b->failed) {
    snprintf(err, errlen, "%s", b->err);
    restart_prefetch(l); /* the next call retries this batch */
    return -1;
  }
  LFS_ASSERT(b->epoch == l->epoch && b->step == l->step);
  memcpy(images, b->images, (size_t)l->local * l->image_floats * sizeof(float));
  if (labels) memcpy(labels, b->labels, (size_t)l->local * sizeof(int32_t));
  if (indices) memcpy(indices, b->indices, (size_t)l->local * sizeof(int64_t));
  pthread_mutex_lock(&l->mu);
  l->head = (l->head + 1) % l->depth;
  l->nready--;
  pthread_cond_signal(&l->cv_work);
  pthread_mutex_unlock(&l->mu);
  advance(l, &l->epoch, &l->step);
  return 0;
}
