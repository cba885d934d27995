/* pack_internal.h: what the converter driver (pack.c) needs from an input kind
 * (pack_source_rec.c, pack_source_bin.c, pack_source_files.c): a numbered list
 * of encoded images with labels; and the file helpers the input kinds share. */
#ifndef LFS_PACK_INTERNAL_H
#define LFS_PACK_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "lfs/pack.h"

/* Per-thread scratch for fetching items (re-joined records, file contents). */
typedef struct {
  lfs_rec_buf rec;
  uint8_t *file;
  size_t file_cap;
} lfs_pack_scratch;
void lfs_pack_scratch_free(lfs_pack_scratch *s);

typedef struct lfs_pack_source lfs_pack_source;
struct lfs_pack_source {
  int64_t count;        /* items 0..count-1 */
  int32_t num_classes;  /* > 0 when the input states it (property file, folders); else 0 */
  int64_t skipped;      /* bad records passed over while opening (--skip-bad scans) */
  int pairs;            /* items are the images of a pair set (bin) */
  uint8_t *issame;      /* pairs: [count / 2] */
  /* The encoded bytes of item i (valid until the next fetch with this scratch)
   * and its label; thread-safe for distinct scratches. -1 with a message. */
  int (*fetch)(lfs_pack_source *s, int64_t i, lfs_pack_scratch *scratch, const uint8_t **bytes,
               size_t *len, int32_t *label, char *err, size_t errlen);
  /* Where item i comes from, for messages ("record key 7 (index 6) at byte offset 1234"). */
  void (*describe)(const lfs_pack_source *s, int64_t i, char *where, size_t len);
  void (*close)(lfs_pack_source *s);
  void *impl;
};

/* Each opens its kind of input; NULL with a message naming the file. skip_bad
 * lets the record scanner pass over bad records (counted in skipped). */
lfs_pack_source *lfs_pack_open_rec(const char *path, int skip_bad, char *err, size_t errlen);
lfs_pack_source *lfs_pack_open_bin(const char *path, char *err, size_t errlen);
lfs_pack_source *lfs_pack_open_folder(const char *path, char *err, size_t errlen);
lfs_pack_source *lfs_pack_open_list(const char *path, char *err, size_t errlen);

/* "dir/name" for a path relative to the folder of `beside`, or name if
 * absolute (malloc'ed; NULL when out of memory). */
char *lfs_pack_path_beside(const char *beside, const char *name);

#endif
