/* pack_source_files.c: the inputs of `lfsearch pack` that hold one file per
 * image (pack_internal.h), and the file helpers every input kind shares.
 *
 *   folder  DIR/<identity>/<image>.{jpg,jpeg,png}: identities are the sorted
 *           (byte order) sub-folders holding images, labelled 0, 1, ...
 *   list    "path label" lines; '#' comments and blank lines are ignored;
 *           relative paths are relative to the list's folder.
 *
 * Images are read whole into the fetching thread's scratch. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "data/pack_internal.h"
#include "lfs/fileio.h"

/* ==== shared by the input kinds ====================================================== */
void lfs_pack_scratch_free(lfs_pack_scratch *s) {
  lfs_rec_buf_free(&s->rec);
  free(s->file);
  s->file = NULL;
  s->file_cap = 0;
}

char *lfs_pack_path_beside(const char *beside, const char *name) {
  if (name[0] == '/') return strdup(name);
  const char *slash = strrchr(beside, '/');
  const int dir = slash ? (int)(slash - beside) : 0;
  char *out = NULL;
  if (asprintf(&out, "%.*s%s%s", dir, beside, slash ? "/" : "", name) < 0) return NULL;
  return out;
}

/* ==== folder and list: one file per image ============================================ */
typedef struct {
  char **paths;
  int32_t *labels;
  int64_t *lines; /* list: line numbers; folder: NULL */
  int64_t n, cap;
} files_src;

static int files_fetch(lfs_pack_source *s, int64_t i, lfs_pack_scratch *scratch,
                       const uint8_t **bytes, size_t *len, int32_t *label, char *err,
                       size_t errlen) {
  const files_src *f = s->impl;
  char why[512];
  if (lfs_read_file(f->paths[i], &scratch->file, &scratch->file_cap, len, why, sizeof why)) {
    snprintf(err, errlen, "%s", why);
    return -1;
  }
  *bytes = scratch->file;
  *label = f->labels[i];
  return 0;
}

static void files_describe(const lfs_pack_source *s, int64_t i, char *where, size_t len) {
  const files_src *f = s->impl;
  if (f->lines)
    snprintf(where, len, "line %" PRId64 " (%s)", f->lines[i], f->paths[i]);
  else
    snprintf(where, len, "image %" PRId64 " (%s)", i, f->paths[i]);
}

static void files_close(lfs_pack_source *s) {
  files_src *f = s->impl;
  if (f) {
    for (int64_t i = 0; i < f->n; i++) free(f->paths[i]);
    free(f->paths);
    free(f->labels);
    free(f->lines);
    free(f);
  }
  free(s);
}

static int files_add(files_src *f, char *path, int32_t label, int64_t line) {
  if (!path) return -1;
  if (f->n == f->cap) {
    const int64_t ncap = f->cap ? 2 * f->cap : 256;
    char **p = realloc(f->paths, (size_t)ncap * sizeof *p);
    if (p) f->paths = p;
    int32_t *l = realloc(f->labels, (size_t)ncap * sizeof *l);
    if (l) f->labels = l;
    int64_t *ln = realloc(f->lines, (size_t)ncap * sizeof *ln);
    if (ln) f->lines = ln;
    if (!p || !l || !ln) {
      free(path);
      return -1;
    }
    f->cap = ncap;
  }
  f->paths[f->n] = path;
  f->labels[f->n] = label;
  f->lines[f->n] = line;
  f->n++;
  return 0;
}

static lfs_pack_source *files_source(void) {
  lfs_pack_source *s = calloc(1, sizeof *s);
  files_src *f = calloc(1, sizeof *f);
  if (!s || !f) {
    free(s);
    free(f);
    return NULL;
  }
  s->impl = f;
  s->fetch = files_fetch;
  s->describe = files_describe;
  s->close = files_close;
  return s;
}

static int is_image_name(const char *name) {
  const char *dot = strrchr(name, '.');
  return name[0] != '.' && dot &&
         (!strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg") || !strcasecmp(dot, ".png"));
}

static int by_name(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted names in dir that pass keep(dir, name); NULL with a message. */
static char **sorted_entries(const char *dir, int (*keep)(const char *, const char *), size_t *n,
                             char *err, size_t errlen) {
  DIR *d = opendir(dir);
  if (!d) {
    snprintf(err, errlen, "%s: cannot open the folder: %s", dir, strerror(errno));
    return NULL;
  }
  char **names = NULL;
  size_t count = 0, cap = 0;
  int oom = 0;
  for (struct dirent *e; !oom && (e = readdir(d));) {
    if (e->d_name[0] == '.' || !keep(dir, e->d_name)) continue;
    if (count == cap) {
      cap = cap ? 2 * cap : 64;
      char **grown = realloc(names, cap * sizeof *grown);
      if (!grown) {
        oom = 1;
        break;
      }
      names = grown;
    }
    if (!(names[count] = strdup(e->d_name))) oom = 1;
    else count++;
  }
  closedir(d);
  if (oom) {
    for (size_t k = 0; k < count; k++) free(names[k]);
    free(names);
    snprintf(err, errlen, "%s: out of memory listing it", dir);
    return NULL;
  }
  if (count) qsort(names, count, sizeof *names, by_name);
  *n = count;
  return names ? names : calloc(1, sizeof *names);
}

static int keep_dir(const char *dir, const char *name) {
  char *p = NULL;
  struct stat st;
  if (asprintf(&p, "%s/%s", dir, name) < 0) return 0;
  const int ok = stat(p, &st) == 0 && S_ISDIR(st.st_mode);
  free(p);
  return ok;
}

static int keep_image(const char *dir, const char *name) {
  (void)dir;
  return is_image_name(name);
}

static void free_names(char **names, size_t n) {
  if (!names) return;
  for (size_t k = 0; k < n; k++) free(names[k]);
  free(names);
}

lfs_pack_source *lfs_pack_open_folder(const char *path, char *err, size_t errlen) {
  lfs_pack_source *s = files_source();
  if (!s) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  files_src *f = s->impl;
  size_t nid = 0;
  char **ids = sorted_entries(path, keep_dir, &nid, err, errlen);
  if (!ids) {
    files_close(s);
    return NULL;
  }
  int32_t label = 0;
  int rc = 0;
  for (size_t k = 0; k < nid && rc == 0; k++) {
    char *dir = NULL;
    size_t nimg = 0;
    char **imgs = NULL;
    if (asprintf(&dir, "%s/%s", path, ids[k]) < 0) dir = NULL;
    if (!dir || !(imgs = sorted_entries(dir, keep_image, &nimg, err, errlen))) rc = -1;
    for (size_t j = 0; rc == 0 && j < nimg; j++) {
      char *p = NULL;
      if (asprintf(&p, "%s/%s", dir, imgs[j]) < 0) p = NULL;
      if (files_add(f, p, label, 0)) {
        snprintf(err, errlen, "out of memory listing %s", path);
        rc = -1;
      }
    }
    if (nimg) label++; /* only folders with images are identities */
    free_names(imgs, nimg);
    free(dir);
  }
  free_names(ids, nid);
  if (rc == 0 && f->n == 0) {
    snprintf(err, errlen,
             "%s: no images found (expected one sub-folder per identity holding .jpg, .jpeg or "
             ".png files)",
             path);
    rc = -1;
  }
  if (rc) {
    files_close(s);
    return NULL;
  }
  free(f->lines);
  f->lines = NULL;
  s->count = f->n;
  s->num_classes = label;
  return s;
}

/* One "path label" line: the label is the last field, the path the rest. */
static int list_line(files_src *f, const char *list, char *line, int64_t lineno, char *err,
                     size_t errlen) {
  char *end = line + strlen(line);
  while (end > line && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r')) *--end = '\0';
  while (*line == ' ' || *line == '\t') line++;
  if (!*line || *line == '#') return 0;
  char *sep = end;
  while (sep > line && sep[-1] != ' ' && sep[-1] != '\t') sep--;
  char *num_end = NULL;
  errno = 0;
  const long v = sep > line ? strtol(sep, &num_end, 10) : -1;
  char *path_end = sep;
  while (path_end > line && (path_end[-1] == ' ' || path_end[-1] == '\t')) path_end--;
  if (sep == line || path_end == line || errno || !num_end || *num_end || num_end == sep || v < 0 ||
      v > INT32_MAX - 1) {
    snprintf(err, errlen, "%s: line %" PRId64 " is not \"path label\" with a label >= 0", list,
             lineno);
    return -1;
  }
  *path_end = '\0';
  if (files_add(f, lfs_pack_path_beside(list, line), (int32_t)v, lineno)) {
    snprintf(err, errlen, "%s: out of memory", list);
    return -1;
  }
  return 0;
}

lfs_pack_source *lfs_pack_open_list(const char *path, char *err, size_t errlen) {
  lfs_pack_source *s = files_source();
  if (!s) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  files_src *f = s->impl;
  uint8_t *text = NULL;
  size_t cap = 0, len = 0;
  if (lfs_read_file(path, &text, &cap, &len, err, errlen)) {
    free(text);
    files_close(s);
    return NULL;
  }
  int rc = 0;
  int64_t lineno = 0;
  for (size_t at = 0; rc == 0 && at < len;) {
    const uint8_t *nl = memchr(text + at, '\n', len - at);
    const size_t n = nl ? (size_t)(nl - (text + at)) : len - at;
    char *line = strndup((const char *)text + at, n);
    lineno++;
    if (!line || memchr(text + at, '\0', n)) {
      snprintf(err, errlen, "%s: line %" PRId64 " is not text", path, lineno);
      rc = -1;
    } else {
      rc = list_line(f, path, line, lineno, err, errlen);
    }
    free(line);
    at += n + 1;
  }
  free(text);
  if (rc == 0 && f->n == 0) {
    snprintf(err, errlen, "%s: no \"path label\" lines", path);
    rc = -1;
  }
  if (rc) {
    files_close(s);
    return NULL;
  }
  s->count = f->n;
  return s;
}
