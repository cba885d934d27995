/* checkpoint_dir.c: the checkpoint directory (DESIGN §6, §8): file names
 * "ckpt-eEEEE-sSSSSSS.h5" and their temporary siblings "<name>.tmp-<pid>", the
 * newest complete checkpoint, and pruning to the newest `keep`. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/data_internal.h"
#include "lfs/checkpoint.h"
#include "lfs/fileio.h"
#include "lfs/log.h"

/* ---- names and directories ---- */

void lfs_ckpt_candidate_group(char *buf, size_t len, int candidate, const char *part) {
  if (part && part[0]) snprintf(buf, len, "candidates/%d/%s", candidate, part);
  else snprintf(buf, len, "candidates/%d", candidate);
}

char *lfs_ckpt_path(const char *dir, int64_t epoch, int64_t step) {
  size_t len = strlen(dir) + 64;
  char *p = lfs_malloc(len);
  const char *sep = dir[0] && dir[strlen(dir) - 1] != '/' ? "/" : "";
  snprintf(p, len, "%s%sckpt-e%04lld-s%06lld.h5", dir, sep, (long long)epoch, (long long)step);
  return p;
}

/* Reads the decimal digits at *s (at least one, no sign) into *v. */
static int parse_digits(const char **s, int64_t *v) {
  const char *c = *s;
  int64_t x = 0;
  if (!isdigit((unsigned char)*c)) return 0;
  for (; isdigit((unsigned char)*c); c++) {
    if (x > (INT64_MAX - 9) / 10) return 0;
    x = x * 10 + (*c - '0');
  }
  *s = c;
  *v = x;
  return 1;
}

/* Parses "ckpt-eE-sS.h5" followed by `tail` ("" for a final name). */
static int parse_with_tail(const char *name, int64_t *epoch, int64_t *step, const char **tail) {
  const char *c = name;
  if (strncmp(c, "ckpt-e", 6) != 0) return 0;
  c += 6;
  if (!parse_digits(&c, epoch) || strncmp(c, "-s", 2) != 0) return 0;
  c += 2;
  if (!parse_digits(&c, step) || strncmp(c, ".h5", 3) != 0) return 0;
  *tail = c + 3;
  return 1;
}

int lfs_ckpt_parse_name(const char *basename, int64_t *epoch, int64_t *step) {
  const char *tail;
  return parse_with_tail(basename, epoch, step, &tail) && *tail == '\0';
}

/* A temporary file of lfs_h5_create_tmp: "<final name>.tmp-<pid>". */
static int parse_tmp_name(const char *basename, int64_t *epoch, int64_t *step) {
  const char *tail;
  int64_t pid;
  if (!parse_with_tail(basename, epoch, step, &tail) || strncmp(tail, ".tmp-", 5) != 0) return 0;
  tail += 5;
  return parse_digits(&tail, &pid) && *tail == '\0';
}

typedef struct {
  int64_t epoch, step;
  char *name;
  int tmp;
} dir_entry;

/* Newest first. */
static int cmp_entry(const void *a, const void *b) {
  const dir_entry *x = a, *y = b;
  if (x->epoch != y->epoch) return x->epoch > y->epoch ? -1 : 1;
  if (x->step != y->step) return x->step > y->step ? -1 : 1;
  return strcmp(x->name, y->name);
}

/* Checkpoint and temporary files of dir, newest first. Returns the count, 0 if dir
 * does not exist, -1 if it cannot be read. */
static int scan_dir(const char *dir, dir_entry **out, char *err, size_t errlen) {
  *out = NULL;
  DIR *d = opendir(dir);
  if (!d) {
    if (errno == ENOENT) return 0;
    return lfs_h5_fail(err, errlen, dir, "cannot read the checkpoint directory: %s", strerror(errno));
  }
  dir_entry *e = NULL;
  int n = 0, cap = 0;
  struct dirent *de;
  errno = 0;
  while ((de = readdir(d)) != NULL) {
    dir_entry x = {0};
    if (lfs_ckpt_parse_name(de->d_name, &x.epoch, &x.step)) x.tmp = 0;
    else if (parse_tmp_name(de->d_name, &x.epoch, &x.step)) x.tmp = 1;
    else continue;
    e = lfs_grow(e, n, &cap, sizeof *e);
    size_t len = strlen(dir) + strlen(de->d_name) + 2;
    x.name = lfs_malloc(len);
    snprintf(x.name, len, "%s%s%s", dir, dir[0] && dir[strlen(dir) - 1] != '/' ? "/" : "",
             de->d_name);
    e[n++] = x;
    errno = 0;
  }
  int rerr = errno;
  closedir(d);
  if (rerr != 0) {
    for (int i = 0; i < n; i++) free(e[i].name);
    free(e);
    return lfs_h5_fail(err, errlen, dir, "cannot read the checkpoint directory: %s", strerror(rerr));
  }
  if (n > 0) qsort(e, (size_t)n, sizeof *e, cmp_entry);
  *out = e;
  return n;
}

static void free_entries(dir_entry *e, int n) {
  for (int i = 0; i < n; i++) free(e[i].name);
  free(e);
}

/* 1 if the file is a complete checkpoint whose cursor matches its name; says why
 * not when `warn`. */
static int valid_checkpoint(const dir_entry *e, int warn) {
  char why[512];
  lfs_ckpt *h = lfs_ckpt_open(e->name, why, sizeof why);
  int ok = h != NULL;
  if (h && (lfs_ckpt_info(h)->epoch != e->epoch || lfs_ckpt_info(h)->step != e->step)) {
    snprintf(why, sizeof why, "%s: holds epoch %lld step %lld, which does not match its name", e->name,
             (long long)lfs_ckpt_info(h)->epoch, (long long)lfs_ckpt_info(h)->step);
    ok = 0;
  }
  lfs_ckpt_close(h);
  if (!ok && warn) lfs_warn("skipping checkpoint %s", why);
  return ok;
}

int lfs_ckpt_newest(const char *dir, char **path, char *err, size_t errlen) {
  *path = NULL;
  dir_entry *e;
  int n = scan_dir(dir, &e, err, errlen);
  if (n < 0) return -1;
  int found = 0;
  for (int i = 0; i < n && !found; i++) {
    if (e[i].tmp || !valid_checkpoint(&e[i], 1)) continue;
    *path = e[i].name;
    e[i].name = NULL;
    found = 1;
  }
  free_entries(e, n);
  return found;
}

int lfs_ckpt_prune(const char *dir, int keep, char *err, size_t errlen) {
  if (keep < 1) return lfs_h5_fail(err, errlen, dir, "checkpoints to keep must be at least 1, not %d", keep);
  dir_entry *e;
  int n = scan_dir(dir, &e, err, errlen);
  if (n < 0) return -1;
  int kept = 0, removed = 0, rc = 0;
  int64_t oldest_epoch = 0, oldest_step = 0;
  for (int i = 0; i < n && rc == 0; i++) {
    int older = kept == keep && (e[i].epoch < oldest_epoch ||
                                 (e[i].epoch == oldest_epoch && e[i].step < oldest_step));
    if (older) {
      if (unlink(e[i].name) != 0 && errno != ENOENT)
        rc = lfs_h5_fail(err, errlen, e[i].name, "cannot remove an old checkpoint: %s", strerror(errno));
      else
        removed++;
    } else if (!e[i].tmp && kept < keep && valid_checkpoint(&e[i], 0)) {
      kept++;
      oldest_epoch = e[i].epoch;
      oldest_step = e[i].step;
    }
  }
  free_entries(e, n);
  return rc == 0 ? removed : -1;
}
