/* pack.h: converting face datasets in other formats to lfsearch HDF5 files
 * (DESIGN §6), and the two parsers of foreign formats it rests on.
 *
 * Inputs:
 *   rec     insightface MXNet RecordIO: train.rec plus train.idx (text lines
 *           "key<TAB>offset") beside it, and optionally `property`
 *           ("num_classes,H,W"); without train.idx the records are read in order.
 *   bin     insightface verification file (lfw.bin, cfp_fp.bin, ...): a pickle of
 *           (list of encoded images, list of bools); the output is a pair set.
 *   folder  one sub-folder per identity (sorted names give labels 0, 1, ...).
 *   list    text lines "path label" (paths relative to the list's folder).
 * Images are JPEG or PNG aligned face crops of one size; they are resized only
 * when a size is asked for.
 *
 * The parsers read files written by strangers: every length, count and offset
 * is checked against the bytes actually present, and any malformed input gives
 * -1 with a message naming the byte offset; nothing aborts. */
#ifndef LFS_PACK_H
#define LFS_PACK_H

#include <stddef.h>
#include <stdint.h>

/* ---- MXNet RecordIO ---------------------------------------------------------------- */
#define LFS_RECORDIO_MAGIC 0xced7230au

/* Scratch space for re-joining records split into parts (one per thread). */
typedef struct {
  uint8_t *data;
  size_t cap;
} lfs_rec_buf;
void lfs_rec_buf_free(lfs_rec_buf *b);

/* Reads the logical record whose first part starts at `offset` of the file held
 * in file[0..size): payload [len] points into the file (whole records) or into
 * scratch (re-joined split records); *next is the offset after its last part. */
int lfs_recordio_read(const uint8_t *file, size_t size, uint64_t offset, lfs_rec_buf *scratch,
                      const uint8_t **payload, size_t *len, uint64_t *next, char *err,
                      size_t errlen);
/* The first 4-byte aligned offset >= from where a plausible record starts (magic,
 * then a whole or first part); size when there is none. Used to resynchronise
 * after a corrupt record when scanning without an index. */
uint64_t lfs_recordio_resync(const uint8_t *file, size_t size, uint64_t from);

/* MXNet's IRHeader and what follows it in a record's payload. */
typedef struct {
  uint32_t flag;     /* 0: one label in `label`; > 0: `flag` float labels follow */
  float label;
  uint64_t id, id2;
  const uint8_t *labels; /* flag float32 LE values (unaligned), or NULL */
  const uint8_t *image;  /* the encoded image (may be empty) */
  size_t image_size;
} lfs_rec_header;
int lfs_recordio_header(const uint8_t *payload, size_t len, lfs_rec_header *h, char *err,
                        size_t errlen);
/* Label i of a header (i < flag), or the single label when flag is 0 and i is 0. */
float lfs_rec_label(const lfs_rec_header *h, uint32_t i);
/* The class id a record's label stands for (label[0] when flag > 0): -1 with a
 * message when it is not a whole number in [0, 2^31 - 1). */
int lfs_rec_class(const lfs_rec_header *h, int32_t *cls, char *err, size_t errlen);

/* One line of train.idx. */
typedef struct {
  uint64_t key, offset;
} lfs_rec_index;
/* Parses idx text [len] (need not be NUL-terminated) into a malloc'ed array. */
int lfs_recordio_parse_idx(const char *text, size_t len, lfs_rec_index **entries, size_t *n,
                           char *err, size_t errlen);

/* ---- insightface verification .bin (pickle) ---------------------------------------- */
typedef struct {
  int64_t pairs;
  const uint8_t **images; /* [2*pairs] encoded images (into the input or owned copies) */
  size_t *image_sizes;    /* [2*pairs] */
  uint64_t *image_offsets;/* [2*pairs] byte offset of each image's opcode, for messages */
  uint8_t *issame;        /* [pairs] 0 or 1 */
  int protocol;           /* pickle protocol (0 when no PROTO opcode) */
  void *owned;            /* parser state holding copies */
} lfs_bin_file;

/* Parses a pickle held in data[0..size): supports protocols 2..5 as written by
 * Python 2 (str items) and Python 3 (bytes, bytearray, or 1-D numpy uint8/int8
 * arrays of encoded bytes; bools, ints, numpy bool scalars or a numpy bool/uint8
 * array for the issame list). Any other opcode or object is rejected naming the
 * opcode and offset. The images point into data, which must outlive the result. */
int lfs_bin_parse(const uint8_t *data, size_t size, lfs_bin_file *out, char *err, size_t errlen);
void lfs_bin_free(lfs_bin_file *f);

/* ---- the converter ----------------------------------------------------------------- */
typedef enum { LFS_PACK_REC = 0, LFS_PACK_BIN, LFS_PACK_FOLDER, LFS_PACK_LIST } lfs_pack_kind;

typedef struct {
  lfs_pack_kind kind;
  const char *input;  /* rec: train.rec; bin: x.bin; folder: directory; list: text file */
  const char *out;    /* OUT.h5: the dataset (one shard) or manifest, or the pair set */
  int size;           /* > 0: resize every image to size x size; 0: keep (sizes must agree) */
  int64_t shard_size; /* images per shard (>= 1) */
  int threads;        /* decoding threads (>= 1) */
  int skip_bad;       /* count and skip corrupt images instead of stopping */
  uint64_t seed;      /* key of the output permutation */
  const char *name;   /* pair-set name (bin); NULL: the input's file name without .bin */
  /* Called from the calling thread as images complete (may be NULL). */
  void (*progress)(void *ctx, int64_t done, int64_t total);
  void *progress_ctx;
} lfs_pack_options;

typedef struct {
  int64_t images;      /* written (pair sets: 2 * pairs) */
  int64_t pairs;       /* pair sets only */
  int64_t genuine;     /* pair sets: pairs of the same identity */
  int64_t identities;  /* distinct labels among the written images */
  int32_t num_classes;
  int64_t skipped;     /* corrupt images skipped (--skip-bad), incl. size mismatches */
  int64_t size_mismatch; /* of those, images whose size differed from the dataset's */
  int height, width;
  int shards;          /* dataset shards written (0 for pair sets) */
  double seconds;
} lfs_pack_summary;

/* Converts opt->input into opt->out. On failure returns -1 with a message
 * (naming the record index and byte offset for bad records) and leaves no
 * output or temporary file behind. */
int lfs_pack_run(const lfs_pack_options *opt, lfs_pack_summary *sum, char *err, size_t errlen);

/* Default pair-set name for a .bin path: its file name without directory and ".bin". */
void lfs_pack_bin_name(const char *path, char *name, size_t len);

#endif
