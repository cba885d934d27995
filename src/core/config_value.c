/* config_value.c: the configuration's values, checked against lfs_cfg_schema:
 * schema look-ups with "did you mean" hints for unknown names, parsing and
 * validating value text, and the schema's check of itself. config.c does the
 * life cycle, loading, overrides, getters and dump on top of these.
 *
 * A parsed value keeps canonical text beside its typed form, so that the dump
 * reloads to exactly the same values (reals keep the digits they were given
 * rather than a re-printed double). */
#include <errno.h>
#include <ini.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config_internal.h"
#include "lfs/log.h"

const char *const lfs_cfg_sections[] = {"run",    "data",  "model",     "head",
                                        "search", "optim", "checkpoint"};
_Static_assert(sizeof lfs_cfg_sections / sizeof lfs_cfg_sections[0] == LFS_CFG_NSECTIONS,
               "LFS_CFG_NSECTIONS must count lfs_cfg_sections");

/* inih needs 3 bytes beyond the longest line ('\r', '\n', '\0'): a dumped
 * "key = value" longer than this could not be read back. */
enum { LFS_CFG_MAX_LINE = INI_MAX_LINE - 3 };

/* ---- small string helpers ---------------------------------------------------------- */

static char *lfs_cfg_strndup(const char *s, size_t n) {
  char *d = lfs_malloc(n + 1);
  memcpy(d, s, n);
  d[n] = '\0';
  return d;
}

static char *lfs_cfg_strdup(const char *s) { return lfs_cfg_strndup(s, strlen(s)); }

static int lfs_cfg_is_blank(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

/* Copies s without leading and trailing blanks into out (truncating to n). */
void lfs_cfg_trim(const char *s, size_t len, char *out, size_t n) {
  while (len > 0 && lfs_cfg_is_blank(*s)) s++, len--;
  while (len > 0 && lfs_cfg_is_blank(s[len - 1])) len--;
  if (len >= n) len = n - 1;
  memcpy(out, s, len);
  out[len] = '\0';
}

/* Appends formatted text to the string in buf (size n), truncating quietly. */
__attribute__((format(printf, 3, 4))) static void lfs_cfg_append(char *buf, size_t n,
                                                                  const char *fmt, ...) {
  size_t used = strlen(buf);
  if (used + 1 >= n) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf + used, n - used, fmt, ap);
  va_end(ap);
}

static int lfs_cfg_ieq(const char *a, const char *b) {
  for (; *a && *b; a++, b++) {
    char x = (*a >= 'A' && *a <= 'Z') ? (char)(*a - 'A' + 'a') : *a;
    char y = (*b >= 'A' && *b <= 'Z') ? (char)(*b - 'A' + 'a') : *b;
    if (x != y) return 0;
  }
  return *a == *b;
}

/* Edit distance, for "did you mean" hints; long names are never close. */
static size_t lfs_cfg_distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la > 63 || lb > 63) return SIZE_MAX;
  size_t prev[64], cur[64];
  for (size_t j = 0; j <= lb; j++) prev[j] = j;
  for (size_t i = 1; i <= la; i++) {
    cur[0] = i;
    for (size_t j = 1; j <= lb; j++) {
      size_t sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
      size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
      cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
    }
    memcpy(prev, cur, (lb + 1) * sizeof prev[0]);
  }
  return prev[lb];
}

static int lfs_cfg_close_enough(const char *typed, const char *known) {
  size_t d = lfs_cfg_distance(typed, known);
  return d <= 2 && d < strlen(known);
}

/* ---- schema look-ups ----------------------------------------------------------------- */

int lfs_cfg_section_known(const char *section) {
  for (size_t s = 0; s < LFS_CFG_NSECTIONS; s++)
    if (strcmp(section, lfs_cfg_sections[s]) == 0) return 1;
  return 0;
}

long lfs_cfg_find(const char *section, const char *key) {
  for (size_t k = 0; k < lfs_cfg_schema_count; k++)
    if (strcmp(lfs_cfg_schema[k].section, section) == 0 && strcmp(lfs_cfg_schema[k].key, key) == 0)
      return (long)k;
  return -1;
}

/* "section.key" -> schema index, or -1. */
long lfs_cfg_find_name(const char *name) {
  const char *dot = strchr(name, '.');
  if (!dot || (size_t)(dot - name) >= 64) return -1;
  char section[64];
  memcpy(section, name, (size_t)(dot - name));
  section[dot - name] = '\0';
  return lfs_cfg_find(section, dot + 1);
}

/* "unknown section [x] (known: ...)" with a hint when the name is a near miss. */
void lfs_cfg_unknown_section(const char *section, char *buf, size_t n) {
  snprintf(buf, n, "unknown section [%s] (known: ", section);
  const char *hint = NULL;
  for (size_t s = 0; s < LFS_CFG_NSECTIONS; s++) {
    lfs_cfg_append(buf, n, "%s%s", s ? ", " : "", lfs_cfg_sections[s]);
    if (!hint && lfs_cfg_close_enough(section, lfs_cfg_sections[s])) hint = lfs_cfg_sections[s];
  }
  lfs_cfg_append(buf, n, ")");
  if (hint) lfs_cfg_append(buf, n, "; did you mean [%s]?", hint);
}

const char *lfs_cfg_retired_note(const char *section, const char *key) {
  for (size_t i = 0; i < lfs_cfg_retired_count; i++)
    if (!strcmp(lfs_cfg_retired_keys[i].section, section) && !strcmp(lfs_cfg_retired_keys[i].key, key))
      return lfs_cfg_retired_keys[i].instead;
  return NULL;
}

/* "unknown key "x" in [s] (known: ...)", pointing at the right section when the
 * key exists elsewhere, or at a near miss. */
void lfs_cfg_unknown_key(const char *section, const char *key, char *buf, size_t n) {
  const char *instead = lfs_cfg_retired_note(section, key);
  if (instead) {
    snprintf(buf, n, "[%s] %s is no longer a key (%s): remove it", section, key, instead);
    return;
  }
  snprintf(buf, n, "unknown key \"%s\" in [%s] (known: ", key, section);
  const char *near = NULL, *home = NULL;
  int first = 1;
  for (size_t k = 0; k < lfs_cfg_schema_count; k++) {
    const lfs_cfg_key *s = &lfs_cfg_schema[k];
    if (strcmp(s->section, section) != 0) {
      if (!home && strcmp(s->key, key) == 0) home = s->section;
      continue;
    }
    lfs_cfg_append(buf, n, "%s%s", first ? "" : ", ", s->key);
    first = 0;
    if (!near && lfs_cfg_close_enough(key, s->key)) near = s->key;
  }
  lfs_cfg_append(buf, n, ")");
  if (home)
    lfs_cfg_append(buf, n, "; \"%s\" belongs in [%s]", key, home);
  else if (near)
    lfs_cfg_append(buf, n, "; did you mean \"%s\"?", near);
}

/* ---- values ---------------------------------------------------------------------------- */

static void lfs_cfg_range(const lfs_cfg_key *k, char *buf, size_t n) {
  if (k->type == LFS_CFG_INT) {
    snprintf(buf, n, "[%.0f, %.0f]", k->min, k->max);
  } else if (isinf(k->max)) {
    snprintf(buf, n, "%c%g, inf)", k->min_exclusive ? '(' : '[', k->min);
  } else {
    snprintf(buf, n, "%c%g, %g]", k->min_exclusive ? '(' : '[', k->min, k->max);
  }
}

static int lfs_cfg_in_range(const lfs_cfg_key *k, double v) {
  if (k->min_exclusive ? !(v > k->min) : !(v >= k->min)) return 0;
  return v <= k->max;
}

/* Index of text in a '|' separated choice list, or -1. */
static int lfs_cfg_choice_index(const char *choices, const char *text) {
  size_t len = strlen(text);
  int index = 0;
  for (const char *p = choices;; index++) {
    const char *bar = strchr(p, '|');
    size_t n = bar ? (size_t)(bar - p) : strlen(p);
    if (n == len && strncmp(p, text, n) == 0) return index;
    if (!bar) return -1;
    p = bar + 1;
  }
}

/* Text that inih would read back differently (or not at all) cannot go into the
 * dump that checkpoints keep; says why in why (size n) and returns -1. */
static int lfs_cfg_unstorable(const lfs_cfg_key *k, const char *text, char *why, size_t n) {
  size_t len = strlen(text), most = LFS_CFG_MAX_LINE - 3 - strlen(k->key);
  for (const char *p = text; *p; p++) {
    unsigned char c = (unsigned char)*p;
    if (c < 0x20 || c == 0x7f) {
      snprintf(why, n, "contains a control character (byte %u at %zu)", c, (size_t)(p - text));
      return -1;
    }
    if (c == ';' && (p == text || p[-1] == ' ' || p[-1] == '\t')) {
      snprintf(why, n, "a ';' at the start or after a blank would be read as a comment");
      return -1;
    }
  }
  if (len && (lfs_cfg_is_blank(text[0]) || lfs_cfg_is_blank(text[len - 1]))) {
    snprintf(why, n, "leading or trailing blanks would be lost");
    return -1;
  }
  if (len > most) {
    snprintf(why, n, "too long (%zu characters; at most %zu for this key)", len, most);
    return -1;
  }
  return 0;
}

static int lfs_cfg_parse_int(const lfs_cfg_key *k, const char *text, lfs_cfg_value *v,
                             char *why, size_t n) {
  char range[96];
  lfs_cfg_range(k, range, sizeof range);
  char *end = NULL;
  errno = 0;
  long long x = text[0] && !lfs_cfg_is_blank(text[0]) ? strtoll(text, &end, 10) : 0;
  if (!end || end == text || *end != '\0') {
    snprintf(why, n, "[%s] %s = \"%s\": not an integer (expected an integer in %s)", k->section,
             k->key, text, range);
    return -1;
  }
  if (errno == ERANGE || !lfs_cfg_in_range(k, (double)x)) {
    snprintf(why, n, "[%s] %s = %s out of range %s", k->section, k->key, text, range);
    return -1;
  }
  char canon[32];
  snprintf(canon, sizeof canon, "%lld", x);
  v->text = lfs_cfg_strdup(canon);
  v->i = x;
  v->r = (double)x;
  return 0;
}

static int lfs_cfg_parse_real(const lfs_cfg_key *k, const char *text, lfs_cfg_value *v,
                              char *why, size_t n) {
  char range[96];
  lfs_cfg_range(k, range, sizeof range);
  char *end = NULL;
  double x = text[0] && !lfs_cfg_is_blank(text[0]) ? strtod(text, &end) : 0.0;
  if (!end || end == text || *end != '\0' || !isfinite(x)) {
    snprintf(why, n, "[%s] %s = \"%s\": not %s (expected a real in %s)", k->section, k->key,
             text, end && end != text && *end == '\0' ? "a finite number" : "a number", range);
    return -1;
  }
  if (!lfs_cfg_in_range(k, x)) {
    snprintf(why, n, "[%s] %s = %s out of range %s", k->section, k->key, text, range);
    return -1;
  }
  v->text = lfs_cfg_strdup(text);
  v->r = x;
  return 0;
}

static int lfs_cfg_parse_bool(const lfs_cfg_key *k, const char *text, lfs_cfg_value *v,
                              char *why, size_t n) {
  static const char *const yes[] = {"true", "yes", "on", "1"};
  static const char *const no[] = {"false", "no", "off", "0"};
  for (int j = 0; j < 4; j++) {
    if (lfs_cfg_ieq(text, yes[j]) || lfs_cfg_ieq(text, no[j])) {
      v->b = lfs_cfg_ieq(text, yes[j]);
      v->text = lfs_cfg_strdup(v->b ? "true" : "false");
      return 0;
    }
  }
  snprintf(why, n, "[%s] %s = \"%s\": not a boolean (expected true|false|yes|no|on|off|1|0)",
           k->section, k->key, text);
  return -1;
}

/* Parses text as the value of key k into *v (text and typed value; v->origin is
 * left alone). On failure writes "[section] key = ...: why" and returns -1. */
int lfs_cfg_parse(const lfs_cfg_key *k, const char *text, lfs_cfg_value *v, char *why,
                  size_t n) {
  memset(v, 0, sizeof *v);
  char bad[256];
  if (lfs_cfg_unstorable(k, text, bad, sizeof bad)) {
    snprintf(why, n, "[%s] %s = \"%s\": %s", k->section, k->key, text, bad);
    return -1;
  }
  switch (k->type) {
    case LFS_CFG_INT: return lfs_cfg_parse_int(k, text, v, why, n);
    case LFS_CFG_REAL: return lfs_cfg_parse_real(k, text, v, why, n);
    case LFS_CFG_BOOL: return lfs_cfg_parse_bool(k, text, v, why, n);
    case LFS_CFG_CHOICE:
      v->choice = lfs_cfg_choice_index(k->choices, text);
      if (v->choice < 0) {
        snprintf(why, n, "[%s] %s = \"%s\": not one of %s", k->section, k->key, text, k->choices);
        return -1;
      }
      v->text = lfs_cfg_strdup(text);
      return 0;
    case LFS_CFG_STRING: v->text = lfs_cfg_strdup(text); return 0;
  }
  lfs_fatal("config: [%s] %s has an unknown type %d", k->section, k->key, (int)k->type);
}

void lfs_cfg_value_free(lfs_cfg_value *v) {
  free(v->text);
  free(v->origin);
  v->text = v->origin = NULL;
}

/* Moves *src (parsed) into *dst with the given origin. */
void lfs_cfg_value_replace(lfs_cfg_value *dst, lfs_cfg_value *src, const char *origin) {
  lfs_cfg_value_free(dst);
  *dst = *src;
  dst->origin = lfs_cfg_strdup(origin);
  src->text = src->origin = NULL;
}

/* ---- the schema checks itself ---------------------------------------------------------- */

static void lfs_cfg_check_key(size_t idx) {
  const lfs_cfg_key *k = &lfs_cfg_schema[idx];
  if (!k->section || !lfs_cfg_section_known(k->section) || !k->key || !k->key[0] ||
      strpbrk(k->key, ".=:;[] \t") || !k->default_value || !k->help)
    lfs_fatal("config schema: entry %zu is malformed", idx);
  if (lfs_cfg_find(k->section, k->key) != (long)idx)
    lfs_fatal("config schema: [%s] %s is listed twice", k->section, k->key);
  if (k->type == LFS_CFG_CHOICE && !k->choices)
    lfs_fatal("config schema: [%s] %s has no choices", k->section, k->key);
  if ((k->type == LFS_CFG_INT || k->type == LFS_CFG_REAL) && !(k->min <= k->max))
    lfs_fatal("config schema: [%s] %s has an empty range", k->section, k->key);
  if (strlen(k->help) + 2 > LFS_CFG_MAX_LINE)
    lfs_fatal("config schema: [%s] %s has a help text too long to dump", k->section, k->key);
  char why[LFS_CFG_MSG];
  lfs_cfg_value v;
  if (lfs_cfg_parse(k, k->default_value, &v, why, sizeof why) != 0)
    lfs_fatal("config schema: bad default: %s", why);
  lfs_cfg_value_free(&v);
}

void lfs_cfg_check_schema(void) {
  static int checked = 0;
  if (checked) return;
  for (size_t k = 0; k < lfs_cfg_schema_count; k++) lfs_cfg_check_key(k);
  checked = 1;
}
