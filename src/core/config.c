/* config.c: the run configuration: INI files (through libinih), "--set
 * section.key=value" overrides, typed getters and the resolved dump stored in
 * checkpoints and run logs. Look-ups, parsing and validation against
 * lfs_cfg_schema live in config_value.c.
 *
 * Every value is kept as canonical text plus its parsed form. The dump writes
 * the text back, so a dump reloads to exactly the same values (reals keep the
 * digits they were given rather than a re-printed double). A load either
 * applies all of a file or nothing of it. */
#define _POSIX_C_SOURCE 200809L /* getline, open_memstream */
#include "lfs/config.h"

#include <errno.h>
#include <ini.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "core/config_internal.h"
#include "lfs/log.h"

struct lfs_config {
  lfs_cfg_value *values; /* [lfs_cfg_schema_count], in schema order */
};

/* ---- life cycle -------------------------------------------------------------------------- */

lfs_config *lfs_config_new(void) {
  lfs_cfg_check_schema();
  lfs_config *cfg = lfs_calloc(1, sizeof *cfg);
  cfg->values = lfs_calloc(lfs_cfg_schema_count, sizeof *cfg->values);
  char why[LFS_CFG_MSG];
  for (size_t k = 0; k < lfs_cfg_schema_count; k++) {
    lfs_cfg_value v;
    if (lfs_cfg_parse(&lfs_cfg_schema[k], lfs_cfg_schema[k].default_value, &v, why, sizeof why))
      lfs_fatal("config schema: bad default: %s", why);
    lfs_cfg_value_replace(&cfg->values[k], &v, "default");
  }
  return cfg;
}

void lfs_config_free(lfs_config *cfg) {
  if (!cfg) return;
  for (size_t k = 0; k < lfs_cfg_schema_count; k++) lfs_cfg_value_free(&cfg->values[k]);
  free(cfg->values);
  free(cfg);
}

/* ---- loading INI text ---------------------------------------------------------------------- */

typedef struct {
  const char *origin; /* path or name used in messages */
  FILE *fp;           /* source: a file ... */
  const char *text;   /* ... or a string */
  size_t pos;
  char *linebuf; /* getline's buffer */
  size_t linecap;
  int line;     /* lines handed to inih so far: inih reads one line per call */
  int stop;     /* stop reading (line too long or read error) */
  int read_errno;
  int err_line; /* line of the first error, 0 = none */
  char msg[LFS_CFG_MSG];
  lfs_cfg_value *staged; /* [schema count]; text NULL where the input did not set it */
  int *staged_line;
  int stored; /* a configuration an earlier run stored: retired keys are skipped */
} lfs_cfg_load;

/* Records an error at line unless an earlier line already has one. */
__attribute__((format(printf, 3, 4))) static void lfs_cfg_fail(lfs_cfg_load *ld, int line,
                                                                const char *fmt, ...) {
  if (ld->err_line && ld->err_line <= line) return;
  ld->err_line = line;
  snprintf(ld->msg, sizeof ld->msg, "%s:%d: ", ld->origin, line);
  size_t used = strlen(ld->msg);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(ld->msg + used, sizeof ld->msg - used, fmt, ap);
  va_end(ap);
}

/* The next raw line (with its '\n' if any) of the source; 0 at the end. */
static int lfs_cfg_next_line(lfs_cfg_load *ld, const char **p, size_t *len) {
  if (ld->fp) {
    errno = 0;
    ssize_t n = getline(&ld->linebuf, &ld->linecap, ld->fp);
    if (n < 0) {
      if (ferror(ld->fp)) ld->read_errno = errno ? errno : EIO;
      return 0;
    }
    *p = ld->linebuf;
    *len = (size_t)n;
    return 1;
  }
  if (!ld->text[ld->pos]) return 0;
  const char *start = ld->text + ld->pos;
  const char *nl = strchr(start, '\n');
  *len = nl ? (size_t)(nl - start) + 1 : strlen(start);
  *p = start;
  ld->pos += *len;
  return 1;
}

/* Section headers are checked here rather than in the handler: inih calls the
 * handler only for keys, so "[modle]" would otherwise pass unnoticed or be
 * blamed on the line of its first key. */
static void lfs_cfg_check_header(lfs_cfg_load *ld, const char *line) {
  const char *close = strchr(line, ']');
  if (!close) return; /* inih reports it as a syntax error */
  char name[256];
  lfs_cfg_trim(line + 1, (size_t)(close - line - 1), name, sizeof name);
  if (lfs_cfg_section_known(name)) return;
  char why[LFS_CFG_MSG];
  lfs_cfg_unknown_section(name, why, sizeof why);
  lfs_cfg_fail(ld, ld->line, "%s", why);
}

static char *lfs_cfg_reader(char *str, int num, void *stream) {
  lfs_cfg_load *ld = stream;
  const char *p;
  size_t len;
  if (ld->stop || !lfs_cfg_next_line(ld, &p, &len)) return NULL;
  ld->line++;
  if (ld->line == 1 && len >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0) p += 3, len -= 3;
  /* inih takes an indented line as the continuation of the previous value (or as
   * the same key again); a configuration has no multi-line values, so indentation
   * is only layout. */
  while (len > 0 && (*p == ' ' || *p == '\t')) p++, len--;
  size_t body = len;
  while (body > 0 && (p[body - 1] == '\n' || p[body - 1] == '\r')) body--;
  if (body + 3 > (size_t)num) {
    lfs_cfg_fail(ld, ld->line, "line too long (%zu characters; at most %d)", body, num - 3);
    ld->stop = 1;
    return NULL;
  }
  memcpy(str, p, len);
  str[len] = '\0';
  if (str[0] == '[') lfs_cfg_check_header(ld, str);
  return str;
}

static int lfs_cfg_handler(void *user, const char *section, const char *name, const char *value) {
  lfs_cfg_load *ld = user;
  char sec[256], why[LFS_CFG_MSG];
  if (ld->err_line || !name) return 1; /* first error only; inih builds may report bare headers */
  if (!value) { /* an inih built with INI_ALLOW_NO_VALUE */
    lfs_cfg_fail(ld, ld->line, "\"%s\" has no value (expected key = value)", name);
    return 1;
  }
  lfs_cfg_trim(section, strlen(section), sec, sizeof sec);
  if (!sec[0]) {
    lfs_cfg_fail(ld, ld->line, "key \"%s\" outside any section (start with a [section] line)", name);
    return 1;
  }
  if (!lfs_cfg_section_known(sec)) return 1; /* the reader reported the header */
  long idx = lfs_cfg_find(sec, name);
  if (idx < 0 && ld->stored && lfs_cfg_retired_note(sec, name)) return 1;
  if (idx < 0) {
    lfs_cfg_unknown_key(sec, name, why, sizeof why);
    lfs_cfg_fail(ld, ld->line, "%s", why);
  } else if (ld->staged_line[idx]) {
    lfs_cfg_fail(ld, ld->line, "[%s] %s given twice (first at %s:%d)", sec, name, ld->origin,
                 ld->staged_line[idx]);
  } else if (lfs_cfg_parse(&lfs_cfg_schema[idx], value, &ld->staged[idx], why, sizeof why)) {
    lfs_cfg_fail(ld, ld->line, "%s", why);
  } else {
    ld->staged_line[idx] = ld->line;
  }
  return 1;
}

#if INI_HANDLER_LINENO
/* inih built to pass line numbers: ours are counted by the reader anyway. */
static int lfs_cfg_handler_lineno(void *user, const char *section, const char *name,
                                  const char *value, int lineno) {
  (void)lineno;
  return lfs_cfg_handler(user, section, name, value);
}
#define LFS_CFG_HANDLER lfs_cfg_handler_lineno
#else
#define LFS_CFG_HANDLER lfs_cfg_handler
#endif

static void lfs_cfg_commit(lfs_config *cfg, lfs_cfg_load *ld) {
  char origin[LFS_CFG_MSG];
  for (size_t k = 0; k < lfs_cfg_schema_count; k++) {
    if (!ld->staged_line[k]) continue;
    snprintf(origin, sizeof origin, "%s:%d", ld->origin, ld->staged_line[k]);
    lfs_cfg_value_replace(&cfg->values[k], &ld->staged[k], origin);
  }
}

static int lfs_cfg_finish(lfs_config *cfg, lfs_cfg_load *ld, char *err, size_t errlen) {
  int rc = ini_parse_stream(lfs_cfg_reader, ld, LFS_CFG_HANDLER, ld);
  if (rc > 0)
    lfs_cfg_fail(ld, rc, "cannot parse this line (expected [section], key = value, or a comment)");
  if (ld->read_errno)
    snprintf(ld->msg, sizeof ld->msg, "%s: read error: %s", ld->origin, strerror(ld->read_errno));
  else if (rc < 0)
    snprintf(ld->msg, sizeof ld->msg, "%s: inih failed (code %d)", ld->origin, rc);
  int ok = !ld->read_errno && rc == 0 && !ld->err_line;
  if (ok) lfs_cfg_commit(cfg, ld);
  else if (err && errlen) snprintf(err, errlen, "%s", ld->msg);
  for (size_t k = 0; k < lfs_cfg_schema_count; k++) lfs_cfg_value_free(&ld->staged[k]);
  free(ld->staged);
  free(ld->staged_line);
  free(ld->linebuf);
  return ok ? 0 : -1;
}

static void lfs_cfg_load_init(lfs_cfg_load *ld, const char *origin) {
  memset(ld, 0, sizeof *ld);
  ld->origin = origin;
  ld->staged = lfs_calloc(lfs_cfg_schema_count, sizeof *ld->staged);
  ld->staged_line = lfs_calloc(lfs_cfg_schema_count, sizeof *ld->staged_line);
}

int lfs_config_load_file(lfs_config *cfg, const char *path, char *err, size_t errlen) {
  LFS_ASSERT(cfg && path);
  FILE *fp = fopen(path, "r");
  if (!fp) {
    if (err && errlen) snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    return -1;
  }
  lfs_cfg_load ld;
  lfs_cfg_load_init(&ld, path);
  ld.fp = fp;
  int rc = lfs_cfg_finish(cfg, &ld, err, errlen);
  fclose(fp);
  return rc;
}

static int load_text(lfs_config *cfg, const char *text, const char *origin, int stored, char *err,
                     size_t errlen) {
  LFS_ASSERT(cfg && text);
  lfs_cfg_load ld;
  lfs_cfg_load_init(&ld, origin);
  ld.text = text;
  ld.stored = stored;
  return lfs_cfg_finish(cfg, &ld, err, errlen);
}

int lfs_config_load_string(lfs_config *cfg, const char *text, const char *origin, char *err,
                           size_t errlen) {
  return load_text(cfg, text, origin ? origin : "<string>", 0, err, errlen);
}

int lfs_config_load_stored(lfs_config *cfg, const char *text, const char *origin, char *err,
                           size_t errlen) {
  return load_text(cfg, text, origin ? origin : "<stored>", 1, err, errlen);
}

/* ---- overrides ------------------------------------------------------------------------------ */

int lfs_config_set(lfs_config *cfg, const char *assignment, char *err, size_t errlen) {
  LFS_ASSERT(cfg && assignment);
  char section[256], key[256], why[LFS_CFG_MSG];
  const char *eq = strchr(assignment, '=');
  const char *dot = eq ? memchr(assignment, '.', (size_t)(eq - assignment)) : NULL;
  if (dot) {
    lfs_cfg_trim(assignment, (size_t)(dot - assignment), section, sizeof section);
    lfs_cfg_trim(dot + 1, (size_t)(eq - dot - 1), key, sizeof key);
  }
  if (!dot || !section[0] || !key[0]) {
    snprintf(why, sizeof why, "expected section.key=value");
  } else if (!lfs_cfg_section_known(section)) {
    lfs_cfg_unknown_section(section, why, sizeof why);
  } else if (lfs_cfg_find(section, key) < 0) {
    lfs_cfg_unknown_key(section, key, why, sizeof why);
  } else {
    long idx = lfs_cfg_find(section, key);
    size_t vlen = strlen(eq + 1);
    char *value = lfs_malloc(vlen + 1);
    lfs_cfg_trim(eq + 1, vlen, value, vlen + 1);
    lfs_cfg_value v;
    int rc = lfs_cfg_parse(&lfs_cfg_schema[idx], value, &v, why, sizeof why);
    free(value);
    if (rc == 0) {
      lfs_cfg_value_replace(&cfg->values[idx], &v, "--set");
      return 0;
    }
  }
  if (err && errlen) snprintf(err, errlen, "--set %s: %s", assignment, why);
  return -1;
}

/* ---- getters ---------------------------------------------------------------------------------- */

#define LFS_CFG_T(t) (1u << (t))

/* The value of "section.key"; asking for a name outside the schema or with the
 * wrong type is a bug in the caller, never in the user's input. */
static const lfs_cfg_value *lfs_cfg_get(const lfs_config *cfg, const char *name, unsigned types,
                                        const char *want) {
  LFS_ASSERT(cfg && name);
  long idx = lfs_cfg_find_name(name);
  if (idx < 0) lfs_fatal("config: no key \"%s\" in the schema (expected section.key)", name);
  if (!(types & LFS_CFG_T(lfs_cfg_schema[idx].type)))
    lfs_fatal("config: %s is not %s (type %d in the schema)", name, want,
              (int)lfs_cfg_schema[idx].type);
  return &cfg->values[idx];
}

int64_t lfs_config_int(const lfs_config *cfg, const char *name) {
  return lfs_cfg_get(cfg, name, LFS_CFG_T(LFS_CFG_INT), "an integer")->i;
}

double lfs_config_real(const lfs_config *cfg, const char *name) {
  return lfs_cfg_get(cfg, name, LFS_CFG_T(LFS_CFG_REAL), "a real")->r;
}

int lfs_config_bool(const lfs_config *cfg, const char *name) {
  return lfs_cfg_get(cfg, name, LFS_CFG_T(LFS_CFG_BOOL), "a boolean")->b;
}

/* Also answers for choices: their text is what log lines and file names want. */
const char *lfs_config_string(const lfs_config *cfg, const char *name) {
  unsigned types = LFS_CFG_T(LFS_CFG_STRING) | LFS_CFG_T(LFS_CFG_CHOICE);
  return lfs_cfg_get(cfg, name, types, "a string or a choice")->text;
}

int lfs_config_choice(const lfs_config *cfg, const char *name) {
  return lfs_cfg_get(cfg, name, LFS_CFG_T(LFS_CFG_CHOICE), "a choice")->choice;
}

const char *lfs_config_origin(const lfs_config *cfg, const char *name) {
  return lfs_cfg_get(cfg, name, ~0u, "")->origin;
}

/* ---- dump -------------------------------------------------------------------------------------- */

char *lfs_config_dump(const lfs_config *cfg) {
  LFS_ASSERT(cfg);
  char *buf = NULL;
  size_t size = 0;
  FILE *f = open_memstream(&buf, &size);
  if (!f) lfs_fatal("open_memstream failed: %s", strerror(errno));
  fprintf(f, "; lfsearch configuration: every key, resolved\n");
  for (size_t s = 0; s < LFS_CFG_NSECTIONS; s++) {
    fprintf(f, "\n[%s]\n", lfs_cfg_sections[s]);
    for (size_t k = 0; k < lfs_cfg_schema_count; k++) {
      const lfs_cfg_key *key = &lfs_cfg_schema[k];
      if (strcmp(key->section, lfs_cfg_sections[s]) != 0) continue;
      const char *text = cfg->values[k].text;
      fprintf(f, "; %s\n%s =%s%s\n", key->help, key->key, text[0] ? " " : "", text);
    }
  }
  if (fclose(f) != 0 || !buf) lfs_fatal("writing the configuration dump failed");
  return buf;
}
