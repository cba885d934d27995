/* pickle.c: the subset of Python's pickle format used by insightface's
 * verification files (lfw.bin, cfp_fp.bin, agedb_30.bin, ...), read in C.
 *
 * Layout assumed: a pickle (protocol 2 from Python 2; 2..5 from Python 3) of
 * one 2-tuple (images, issame): images is a list of encoded JPEG/PNG images as
 * Python 2 `str` (SHORT_BINSTRING/BINSTRING), Python 3 `bytes`/`bytearray`, bytes
 * written by protocol 2 under Python 3 (_codecs.encode(text, "latin1")), or 1-D
 * numpy arrays of uint8/int8 holding the encoded bytes (numpy's
 * _reconstruct + BUILD form, and protocol 5's _frombuffer form); issame is a
 * list of bools, 0/1 ints or numpy bool scalars, or a numpy bool/uint8 array.
 *
 * A tiny stack machine runs the opcodes these files use and nothing else: any
 * other opcode, global or object shape is rejected with its name and byte
 * offset. Nothing is trusted: every length is checked against the bytes
 * present, memo keys must be dense (as every pickler writes them), and the
 * memory used is bounded by a small multiple of the input size. Byte strings
 * point into the input; only _codecs.encode results are copied.
 *
 * Here: the machine (values, stack, marks, memo, opcodes) and lfs_bin_parse.
 * pickle_objects.c says which globals may be named, what REDUCE and BUILD make
 * of them (numpy arrays/scalars, _codecs.encode bytes) and how the result
 * becomes an lfs_bin_file; pickle_internal.h holds what the two share. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/pickle_internal.h"

static const struct {
  uint8_t code;
  const char *name;
} opnames[] = {
    {'(', "MARK"}, {'.', "STOP"}, {'0', "POP"}, {'1', "POP_MARK"}, {'2', "DUP"},
    {'F', "FLOAT"}, {'I', "INT"}, {'J', "BININT"}, {'K', "BININT1"}, {'L', "LONG"},
    {'M', "BININT2"}, {'N', "NONE"}, {'P', "PERSID"}, {'Q', "BINPERSID"}, {'R', "REDUCE"},
    {'S', "STRING"}, {'T', "BINSTRING"}, {'U', "SHORT_BINSTRING"}, {'V', "UNICODE"},
    {'X', "BINUNICODE"}, {'a', "APPEND"}, {'b', "BUILD"}, {'c', "GLOBAL"}, {'d', "DICT"},
    {'}', "EMPTY_DICT"}, {'e', "APPENDS"}, {'g', "GET"}, {'h', "BINGET"}, {'i', "INST"},
    {'j', "LONG_BINGET"}, {'l', "LIST"}, {']', "EMPTY_LIST"}, {'o', "OBJ"}, {'p', "PUT"},
    {'q', "BINPUT"}, {'r', "LONG_BINPUT"}, {'s', "SETITEM"}, {'t', "TUPLE"},
    {')', "EMPTY_TUPLE"}, {'u', "SETITEMS"}, {'G', "BINFLOAT"}, {0x80, "PROTO"},
    {0x81, "NEWOBJ"}, {0x82, "EXT1"}, {0x83, "EXT2"}, {0x84, "EXT4"}, {0x85, "TUPLE1"},
    {0x86, "TUPLE2"}, {0x87, "TUPLE3"}, {0x88, "NEWTRUE"}, {0x89, "NEWFALSE"},
    {0x8a, "LONG1"}, {0x8b, "LONG4"}, {'B', "BINBYTES"}, {'C', "SHORT_BINBYTES"},
    {0x8c, "SHORT_BINUNICODE"}, {0x8d, "BINUNICODE8"}, {0x8e, "BINBYTES8"},
    {0x8f, "EMPTY_SET"}, {0x90, "ADDITEMS"}, {0x91, "FROZENSET"}, {0x92, "NEWOBJ_EX"},
    {0x93, "STACK_GLOBAL"}, {0x94, "MEMOIZE"}, {0x95, "FRAME"}, {0x96, "BYTEARRAY8"},
    {0x97, "NEXT_BUFFER"}, {0x98, "READONLY_BUFFER"},
};

static const char *opname(uint8_t code) {
  for (size_t i = 0; i < sizeof opnames / sizeof opnames[0]; i++)
    if (opnames[i].code == code) return opnames[i].name;
  return "not an opcode";
}

const char *lfs_pickle_kind_name(pv_kind k) {
  static const char *names[] = {"None", "bool", "int", "bytes", "str", "list",
                                "tuple", "global", "numpy array", "numpy dtype"};
  return names[k];
}

/* Sets the error message, prefixed with the current opcode and its offset. */
int lfs_pickle_fail(vm *m, const char *fmt, ...) {
  char why[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, sizeof why, fmt, ap);
  va_end(ap);
  if (m->op_at >= m->size)
    snprintf(m->err, m->errlen, "pickle at byte offset %" PRIu64 ": %s", m->op_at, why);
  else
    snprintf(m->err, m->errlen, "pickle opcode %s at byte offset %" PRIu64 ": %s",
             opname(m->data[m->op_at]), m->op_at, why);
  return -1;
}

/* Room for one more element in items (count used of *cap, `size` bytes each):
 * the (possibly moved) array, or NULL with the message set. */
static void *grow(vm *m, void *items, size_t count, size_t *cap, size_t size) {
  if (count < *cap) return items;
  const size_t ncap = *cap ? 2 * *cap : 16;
  void *p = ncap > SIZE_MAX / size ? NULL : realloc(items, ncap * size);
  if (!p) {
    lfs_pickle_fail(m, "out of memory");
    return NULL;
  }
  *cap = ncap;
  return p;
}

pv *lfs_pickle_new_value(vm *m, pv_kind kind) {
  void *room = grow(m, m->all, m->nall, &m->capall, sizeof *m->all);
  if (!room) return NULL;
  m->all = room;
  pv *v = calloc(1, sizeof *v);
  if (!v) {
    lfs_pickle_fail(m, "out of memory");
    return NULL;
  }
  v->kind = kind;
  v->offset = m->op_at;
  m->all[m->nall++] = v;
  return v;
}

int lfs_pickle_push(vm *m, pv *v) {
  if (!v) return -1;
  void *room = grow(m, m->stack, m->nstack, &m->capstack, sizeof *m->stack);
  if (!room) return -1;
  m->stack = room;
  m->stack[m->nstack++] = v;
  return 0;
}

/* The stack floor: items above the innermost mark are fair game, not below. */
static size_t floor_of(const vm *m) { return m->nmarks ? m->marks[m->nmarks - 1] : 0; }

pv *lfs_pickle_pop(vm *m) {
  if (m->nstack <= floor_of(m)) {
    lfs_pickle_fail(m, "stack underflow");
    return NULL;
  }
  return m->stack[--m->nstack];
}

pv *lfs_pickle_top(vm *m) {
  if (m->nstack <= floor_of(m)) {
    lfs_pickle_fail(m, "stack underflow");
    return NULL;
  }
  return m->stack[m->nstack - 1];
}

static int append_item(vm *m, pv *list, pv *item) {
  void *room = grow(m, list->items, list->n, &list->cap, sizeof *list->items);
  if (!room) return -1;
  list->items = room;
  list->items[list->n++] = item;
  return 0;
}

/* ---- reading operands ---- */
static int need(vm *m, uint64_t n) {
  if (n > m->size - m->pos)
    return lfs_pickle_fail(m, "needs %" PRIu64 " bytes but only %zu remain (truncated file?)", n,
                           m->size - m->pos);
  return 0;
}

static uint64_t le(const uint8_t *p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
  return v;
}

static int read_uint(vm *m, int n, uint64_t *v) {
  if (need(m, (uint64_t)n)) return -1;
  *v = le(m->data + m->pos, n);
  m->pos += (size_t)n;
  return 0;
}

/* A newline-terminated operand (GLOBAL, INT): [*s, *s + *len) without the newline. */
static int read_line(vm *m, const uint8_t **s, size_t *len) {
  const uint8_t *start = m->data + m->pos;
  const uint8_t *nl = memchr(start, '\n', m->size - m->pos);
  if (!nl) return lfs_pickle_fail(m, "operand has no terminating newline (truncated file?)");
  *s = start;
  *len = (size_t)(nl - start);
  m->pos += *len + 1;
  return 0;
}

static int push_bytes(vm *m, pv_kind kind, uint64_t n) {
  if (need(m, n)) return -1;
  pv *v = lfs_pickle_new_value(m, kind);
  if (!v) return -1;
  v->bytes = m->data + m->pos;
  v->len = (size_t)n;
  m->pos += (size_t)n;
  return lfs_pickle_push(m, v);
}

int lfs_pickle_push_int(vm *m, pv_kind kind, int64_t i) {
  pv *v = lfs_pickle_new_value(m, kind);
  if (!v) return -1;
  v->i = i;
  return lfs_pickle_push(m, v);
}

/* ---- containers ---- */
static int make_tuple(vm *m, size_t n) {
  if (m->nstack - floor_of(m) < n) return lfs_pickle_fail(m, "stack underflow");
  pv *t = lfs_pickle_new_value(m, PV_TUPLE);
  if (!t) return -1;
  for (size_t k = m->nstack - n; k < m->nstack; k++)
    if (append_item(m, t, m->stack[k])) return -1;
  m->nstack -= n;
  return lfs_pickle_push(m, t);
}

static int pop_mark(vm *m, size_t *at) {
  if (!m->nmarks) return lfs_pickle_fail(m, "no MARK to close");
  *at = m->marks[--m->nmarks];
  return 0;
}

static int op_tuple_from_mark(vm *m) {
  size_t at = 0;
  if (pop_mark(m, &at)) return -1;
  return make_tuple(m, m->nstack - at);
}

static int op_appends(vm *m) {
  size_t at = 0;
  if (pop_mark(m, &at)) return -1;
  if (at == floor_of(m) || at == 0) return lfs_pickle_fail(m, "no list below the MARK");
  pv *list = m->stack[at - 1];
  if (list->kind != PV_LIST)
    return lfs_pickle_fail(m, "appending to a %s, not a list", lfs_pickle_kind_name(list->kind));
  for (size_t k = at; k < m->nstack; k++)
    if (append_item(m, list, m->stack[k])) return -1;
  m->nstack = at;
  return 0;
}

static int op_append(vm *m) {
  pv *item = lfs_pickle_pop(m), *list = item ? lfs_pickle_top(m) : NULL;
  if (!list) return -1;
  if (list->kind != PV_LIST)
    return lfs_pickle_fail(m, "appending to a %s, not a list", lfs_pickle_kind_name(list->kind));
  return append_item(m, list, item);
}

static int op_list_from_mark(vm *m) {
  size_t at = 0;
  if (pop_mark(m, &at)) return -1;
  pv *list = lfs_pickle_new_value(m, PV_LIST);
  if (!list) return -1;
  for (size_t k = at; k < m->nstack; k++)
    if (append_item(m, list, m->stack[k])) return -1;
  m->nstack = at;
  return lfs_pickle_push(m, list);
}

/* ---- memo ---- */
static int memo_put(vm *m, uint64_t key) {
  pv *v = lfs_pickle_top(m);
  if (!v) return -1;
  if (key > m->nmemo)
    return lfs_pickle_fail(m, "memo key %" PRIu64 " skips ahead of %zu", key, m->nmemo);
  if (key == m->nmemo) {
    void *room = grow(m, m->memo, m->nmemo, &m->capmemo, sizeof *m->memo);
    if (!room) return -1;
    m->memo = room;
    m->nmemo++;
  }
  m->memo[key] = v;
  return 0;
}

static int memo_get(vm *m, uint64_t key) {
  if (key >= m->nmemo) return lfs_pickle_fail(m, "memo key %" PRIu64 " was never stored", key);
  return lfs_pickle_push(m, m->memo[key]);
}

/* ---- numbers ---- */
static int op_int_text(vm *m) {
  const uint8_t *s = NULL;
  size_t len = 0;
  if (read_line(m, &s, &len)) return -1;
  if (len == 2 && s[0] == '0' && (s[1] == '0' || s[1] == '1'))
    return lfs_pickle_push_int(m, PV_BOOL, s[1] - '0');
  size_t k = 0;
  const int neg = len > 0 && s[0] == '-';
  k += (size_t)neg;
  if (k == len || len - k > 18)
    return lfs_pickle_fail(m, "\"%.*s\" is not a small integer", (int)(len < 40 ? len : 40), s);
  int64_t v = 0;
  for (; k < len; k++) {
    if (s[k] < '0' || s[k] > '9')
      return lfs_pickle_fail(m, "\"%.*s\" is not an integer", (int)(len < 40 ? len : 40), s);
    v = v * 10 + (s[k] - '0');
  }
  return lfs_pickle_push_int(m, PV_INT, neg ? -v : v);
}

static int op_long1(vm *m) {
  uint64_t n, v;
  if (read_uint(m, 1, &n)) return -1;
  if (n > 8) return lfs_pickle_fail(m, "%" PRIu64 "-byte integers are not supported", n);
  if (n == 0) return lfs_pickle_push_int(m, PV_INT, 0);
  if (read_uint(m, (int)n, &v)) return -1;
  if (n < 8 && (v >> (8 * n - 1)) & 1) v |= ~(uint64_t)0 << (8 * n); /* sign-extend */
  int64_t s;
  memcpy(&s, &v, sizeof s);
  return lfs_pickle_push_int(m, PV_INT, s);
}

/* ---- globals (what they name is decided by pickle_objects.c) ---- */
static int op_global(vm *m) {
  const uint8_t *mod = NULL, *name = NULL;
  size_t nmod = 0, nname = 0;
  if (read_line(m, &mod, &nmod) || read_line(m, &name, &nname)) return -1;
  return lfs_pickle_resolve_global(m, mod, nmod, name, nname);
}

static int op_stack_global(vm *m) {
  pv *name = lfs_pickle_pop(m), *mod = name ? lfs_pickle_pop(m) : NULL;
  if (!mod) return -1;
  if (mod->kind != PV_TEXT || name->kind != PV_TEXT)
    return lfs_pickle_fail(m, "module and name must be str, not %s and %s",
                           lfs_pickle_kind_name(mod->kind), lfs_pickle_kind_name(name->kind));
  return lfs_pickle_resolve_global(m, mod->bytes, mod->len, name->bytes, name->len);
}

/* ---- the machine ---- */
static int op_proto(vm *m) {
  uint64_t p;
  if (read_uint(m, 1, &p)) return -1;
  if (p < 2 || p > 5) return lfs_pickle_fail(m, "protocol %" PRIu64 " is not supported (2..5)", p);
  m->protocol = (int)p;
  return 0;
}

static int op_frame(vm *m) {
  uint64_t n;
  if (read_uint(m, 8, &n)) return -1;
  if (n > m->size - m->pos)
    return lfs_pickle_fail(m, "frame of %" PRIu64 " bytes overruns the file", n);
  return 0; /* frames only group opcodes; their contents are read as usual */
}

static int op_mark(vm *m) {
  void *room = grow(m, m->marks, m->nmarks, &m->capmarks, sizeof *m->marks);
  if (!room) return -1;
  m->marks = room;
  m->marks[m->nmarks++] = m->nstack;
  return 0;
}

/* Runs one opcode; 1 on STOP. */
static int step(vm *m) {
  uint64_t n;
  m->op_at = m->pos;
  if (m->pos >= m->size) return lfs_pickle_fail(m, "file ends without STOP (truncated?)");
  const uint8_t op = m->data[m->pos++];
  switch (op) {
    case 0x80: return op_proto(m);
    case 0x95: return op_frame(m);
    case '.': return 1;
    case '(': return op_mark(m);
    case ']': return lfs_pickle_push(m, lfs_pickle_new_value(m, PV_LIST));
    case ')': return make_tuple(m, 0);
    case 'l': return op_list_from_mark(m);
    case 'a': return op_append(m);
    case 'e': return op_appends(m);
    case 't': return op_tuple_from_mark(m);
    case 0x85: return make_tuple(m, 1);
    case 0x86: return make_tuple(m, 2);
    case 0x87: return make_tuple(m, 3);
    case 'N': return lfs_pickle_push(m, lfs_pickle_new_value(m, PV_NONE));
    case 0x88: return lfs_pickle_push_int(m, PV_BOOL, 1);
    case 0x89: return lfs_pickle_push_int(m, PV_BOOL, 0);
    case 'I': return op_int_text(m);
    case 'J': return read_uint(m, 4, &n) ? -1 : lfs_pickle_push_int(m, PV_INT, (int32_t)(uint32_t)n);
    case 'K': return read_uint(m, 1, &n) ? -1 : lfs_pickle_push_int(m, PV_INT, (int64_t)n);
    case 'M': return read_uint(m, 2, &n) ? -1 : lfs_pickle_push_int(m, PV_INT, (int64_t)n);
    case 0x8a: return op_long1(m);
    case 'q': return read_uint(m, 1, &n) ? -1 : memo_put(m, n);
    case 'r': return read_uint(m, 4, &n) ? -1 : memo_put(m, n);
    case 0x94: return memo_put(m, m->nmemo);
    case 'h': return read_uint(m, 1, &n) ? -1 : memo_get(m, n);
    case 'j': return read_uint(m, 4, &n) ? -1 : memo_get(m, n);
    case 'U': /* SHORT_BINSTRING */
    case 'C': /* SHORT_BINBYTES */
      return read_uint(m, 1, &n) ? -1 : push_bytes(m, PV_BYTES, n);
    case 'T': /* BINSTRING: a signed length */
      if (read_uint(m, 4, &n)) return -1;
      if (n >> 31) return lfs_pickle_fail(m, "negative length");
      return push_bytes(m, PV_BYTES, n);
    case 'B': return read_uint(m, 4, &n) ? -1 : push_bytes(m, PV_BYTES, n);
    case 0x8e: /* BINBYTES8 */
    case 0x96: /* BYTEARRAY8 */
      return read_uint(m, 8, &n) ? -1 : push_bytes(m, PV_BYTES, n);
    case 0x8c: return read_uint(m, 1, &n) ? -1 : push_bytes(m, PV_TEXT, n);
    case 'X': return read_uint(m, 4, &n) ? -1 : push_bytes(m, PV_TEXT, n);
    case 0x8d: return read_uint(m, 8, &n) ? -1 : push_bytes(m, PV_TEXT, n);
    case 'c': return op_global(m);
    case 0x93: return op_stack_global(m);
    case 'R': return lfs_pickle_reduce(m);
    case 'b': return lfs_pickle_build(m);
    default:
      return lfs_pickle_fail(m, "opcode 0x%02x is not supported in verification files", op);
  }
}

static void vm_free(vm *m) {
  for (size_t k = 0; k < m->nall; k++) {
    free(m->all[k]->items);
    free(m->all[k]->own);
    free(m->all[k]);
  }
  free(m->all);
  free(m->stack);
  free(m->marks);
  free(m->memo);
  free(m);
}

void lfs_bin_free(lfs_bin_file *f) {
  free(f->images);
  free(f->image_sizes);
  free(f->image_offsets);
  free(f->issame);
  if (f->owned) vm_free(f->owned);
  memset(f, 0, sizeof *f);
}

int lfs_bin_parse(const uint8_t *data, size_t size, lfs_bin_file *out, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  vm *m = calloc(1, sizeof *m);
  if (!m) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  m->data = data;
  m->size = size;
  m->err = err;
  m->errlen = errlen;
  out->owned = m;
  int rc;
  while ((rc = step(m)) == 0) {
  }
  if (rc < 0) {
    lfs_bin_free(out);
    return -1;
  }
  if (m->nstack == 0) {
    lfs_pickle_fail(m, "STOP with nothing on the stack");
    lfs_bin_free(out);
    return -1;
  }
  out->protocol = m->protocol;
  if (lfs_pickle_extract(m->stack[m->nstack - 1], out, err, errlen)) {
    lfs_bin_free(out);
    return -1;
  }
  return 0;
}
