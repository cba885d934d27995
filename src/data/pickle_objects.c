/* pickle_objects.c: the Python objects an insightface verification file is
 * made of, on top of the pickle machine of pickle.c (pickle_internal.h).
 *
 *   globals  only _codecs.encode and numpy's ndarray, dtype, _reconstruct,
 *            scalar and _frombuffer may be named; anything else is rejected
 *            with its name.
 *   REDUCE   _codecs.encode(text, "latin1") -> bytes (a copy);
 *            numpy dtype("u1" | "i1" | "b1"), scalar(dtype, byte),
 *            _reconstruct(ndarray, ...) (an array waiting for BUILD) and
 *            _frombuffer(buffer, dtype, shape, order) (protocol 5).
 *   BUILD    the state of a 1-D numpy array of 1-byte elements (its data
 *            points into the input), or of a dtype (ignored).
 *   extract  the root (images, issame) -> lfs_bin_file, checking counts and
 *            that every issame entry is 0 or 1. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/pickle_internal.h"

/* ---- globals ---- */
static int text_is(const pv *v, const char *s) {
  return v && (v->kind == PV_TEXT || v->kind == PV_BYTES) && v->len == strlen(s) &&
         memcmp(v->bytes, s, v->len) == 0;
}

static int span_is(const uint8_t *p, size_t n, const char *s) {
  return n == strlen(s) && memcmp(p, s, n) == 0;
}

int lfs_pickle_resolve_global(vm *m, const uint8_t *mod, size_t nmod, const uint8_t *name,
                              size_t nname) {
  const int multiarray = span_is(mod, nmod, "numpy.core.multiarray") ||
                         span_is(mod, nmod, "numpy._core.multiarray");
  const int numeric = span_is(mod, nmod, "numpy.core.numeric") ||
                      span_is(mod, nmod, "numpy._core.numeric");
  const int numpy = span_is(mod, nmod, "numpy");
  int g = -1;
  if (span_is(mod, nmod, "_codecs") && span_is(name, nname, "encode")) g = G_CODECS_ENCODE;
  if (multiarray && span_is(name, nname, "_reconstruct")) g = G_NP_RECONSTRUCT;
  if (multiarray && span_is(name, nname, "scalar")) g = G_NP_SCALAR;
  if (numeric && span_is(name, nname, "_frombuffer")) g = G_NP_FROMBUFFER;
  if (numpy && span_is(name, nname, "ndarray")) g = G_NP_NDARRAY;
  if (numpy && span_is(name, nname, "dtype")) g = G_NP_DTYPE;
  if (g < 0)
    return lfs_pickle_fail(m,
                           "global %.*s.%.*s is not supported (only numpy arrays of bytes, "
                           "numpy bool scalars and _codecs.encode)",
                           (int)(nmod < 80 ? nmod : 80), mod, (int)(nname < 80 ? nname : 80), name);
  return lfs_pickle_push_int(m, PV_GLOBAL, g);
}

/* ---- REDUCE: what the globals make ---- */
/* UTF-8 text whose code points are all below 256 -> those bytes (Python 3's
 * protocol-2 form of bytes). */
static int latin1_from_utf8(vm *m, const pv *text, pv *out) {
  uint8_t *buf = malloc(text->len ? text->len : 1);
  if (!buf) return lfs_pickle_fail(m, "out of memory");
  size_t n = 0;
  for (size_t k = 0; k < text->len; k++) {
    const uint8_t c = text->bytes[k];
    if (c < 0x80) {
      buf[n++] = c;
    } else if ((c == 0xc2 || c == 0xc3) && k + 1 < text->len && (text->bytes[k + 1] & 0xc0) == 0x80) {
      buf[n++] = (uint8_t)((c & 0x03) << 6 | (text->bytes[k + 1] & 0x3f));
      k++;
    } else {
      free(buf);
      return lfs_pickle_fail(m, "_codecs.encode text is not latin-1 (byte 0x%02x at %zu)", c, k);
    }
  }
  out->own = buf;
  out->bytes = buf;
  out->len = n;
  return 0;
}

static int dtype_code(vm *m, const pv *name, int64_t *code) {
  static const char *const names[][2] = {{"u1", "u"}, {"|u1", "u"}, {"uint8", "u"},
                                         {"i1", "i"}, {"|i1", "i"}, {"int8", "i"},
                                         {"b1", "b"}, {"|b1", "b"}, {"bool", "b"}};
  if (name->kind != PV_TEXT && name->kind != PV_BYTES)
    return lfs_pickle_fail(m, "numpy dtype name is a %s", lfs_pickle_kind_name(name->kind));
  for (size_t k = 0; k < sizeof names / sizeof names[0]; k++)
    if (text_is(name, names[k][0])) {
      *code = names[k][1][0];
      return 0;
    }
  return lfs_pickle_fail(m, "numpy dtype \"%.*s\" is not supported (only 1-byte types u1, i1, b1)",
                         (int)(name->len < 40 ? name->len : 40), name->bytes);
}

/* Product of a shape tuple, or -1 (with message) if it is not a shape. */
static int shape_count(vm *m, const pv *shape, uint64_t *count) {
  if (shape->kind != PV_TUPLE)
    return lfs_pickle_fail(m, "numpy shape is a %s, not a tuple",
                           lfs_pickle_kind_name(shape->kind));
  uint64_t c = 1;
  for (size_t k = 0; k < shape->n; k++) {
    const pv *d = shape->items[k];
    if ((d->kind != PV_INT && d->kind != PV_BOOL) || d->i < 0)
      return lfs_pickle_fail(m, "numpy shape entry %zu is not a size", k);
    if (d->i && c > UINT64_MAX / (uint64_t)d->i) return lfs_pickle_fail(m, "numpy shape overflows");
    c *= (uint64_t)d->i;
  }
  *count = c;
  return 0;
}

static int reduce_codecs(vm *m, pv **a, size_t n) {
  if (n != 2 || a[0]->kind != PV_TEXT || !(text_is(a[1], "latin1") || text_is(a[1], "latin-1")))
    return lfs_pickle_fail(m, "_codecs.encode takes (str, \"latin1\") here");
  pv *v = lfs_pickle_new_value(m, PV_BYTES);
  if (!v || latin1_from_utf8(m, a[0], v)) return -1;
  return lfs_pickle_push(m, v);
}

static int reduce_reconstruct(vm *m, pv **a, size_t n) {
  if (n != 3 || a[0]->kind != PV_GLOBAL || a[0]->i != G_NP_NDARRAY)
    return lfs_pickle_fail(m, "numpy _reconstruct takes (numpy.ndarray, shape, typecode)");
  return lfs_pickle_push(m, lfs_pickle_new_value(m, PV_NDARRAY));
}

static int reduce_dtype(vm *m, pv **a, size_t n) {
  if (n != 3) return lfs_pickle_fail(m, "numpy dtype takes 3 arguments, got %zu", n);
  pv *v = lfs_pickle_new_value(m, PV_DTYPE);
  if (!v || dtype_code(m, a[0], &v->i)) return -1;
  return lfs_pickle_push(m, v);
}

static int reduce_scalar(vm *m, pv **a, size_t n) {
  if (n != 2 || a[0]->kind != PV_DTYPE || a[1]->kind != PV_BYTES || a[1]->len != 1)
    return lfs_pickle_fail(m, "numpy scalar takes (1-byte dtype, 1 byte)");
  const uint8_t b = a[1]->bytes[0];
  return lfs_pickle_push_int(m, a[0]->i == 'b' ? PV_BOOL : PV_INT,
                             a[0]->i == 'i' ? (int64_t)(int8_t)b : (int64_t)b);
}

static int reduce_frombuffer(vm *m, pv **a, size_t n) {
  uint64_t count;
  if (n != 4 || a[0]->kind != PV_BYTES || a[1]->kind != PV_DTYPE)
    return lfs_pickle_fail(m, "numpy _frombuffer takes (buffer, dtype, shape, order)");
  if (shape_count(m, a[2], &count)) return -1;
  if (count != a[0]->len)
    return lfs_pickle_fail(m, "numpy array of %" PRIu64 " elements has %zu bytes of data", count,
                           a[0]->len);
  pv *v = lfs_pickle_new_value(m, PV_NDARRAY);
  if (!v) return -1;
  v->bytes = a[0]->bytes;
  v->len = a[0]->len;
  v->dtype = (int)a[1]->i;
  v->built = 1;
  return lfs_pickle_push(m, v);
}

int lfs_pickle_reduce(vm *m) {
  pv *args = lfs_pickle_pop(m), *fn = args ? lfs_pickle_pop(m) : NULL;
  if (!fn) return -1;
  if (fn->kind != PV_GLOBAL)
    return lfs_pickle_fail(m, "calling a %s", lfs_pickle_kind_name(fn->kind));
  if (args->kind != PV_TUPLE)
    return lfs_pickle_fail(m, "arguments are a %s, not a tuple", lfs_pickle_kind_name(args->kind));
  switch ((pv_global)fn->i) {
    case G_CODECS_ENCODE: return reduce_codecs(m, args->items, args->n);
    case G_NP_RECONSTRUCT: return reduce_reconstruct(m, args->items, args->n);
    case G_NP_DTYPE: return reduce_dtype(m, args->items, args->n);
    case G_NP_SCALAR: return reduce_scalar(m, args->items, args->n);
    case G_NP_FROMBUFFER: return reduce_frombuffer(m, args->items, args->n);
    case G_NP_NDARRAY: break;
  }
  return lfs_pickle_fail(m, "numpy.ndarray cannot be called directly");
}

/* ---- BUILD ---- */
/* numpy's ndarray state: (version, shape, dtype, is_fortran, raw bytes), or the
 * 4-tuple without version. */
static int build_ndarray(vm *m, pv *arr, pv *state) {
  if (arr->built) return lfs_pickle_fail(m, "numpy array built twice");
  if (state->kind != PV_TUPLE || (state->n != 5 && state->n != 4))
    return lfs_pickle_fail(m, "numpy array state is not a 4- or 5-tuple");
  pv **s = state->items + (state->n == 5);
  uint64_t count;
  if (shape_count(m, s[0], &count)) return -1;
  if (s[0]->n != 1)
    return lfs_pickle_fail(m, "numpy array has %zu dimensions (only 1-D is supported)", s[0]->n);
  if (s[1]->kind != PV_DTYPE)
    return lfs_pickle_fail(m, "numpy array dtype is a %s", lfs_pickle_kind_name(s[1]->kind));
  if (s[3]->kind != PV_BYTES)
    return lfs_pickle_fail(m,
                           "numpy array data is a %s, not bytes (object arrays are not supported)",
                           lfs_pickle_kind_name(s[3]->kind));
  if (count != s[3]->len)
    return lfs_pickle_fail(m, "numpy array of %" PRIu64 " elements has %zu bytes of data", count,
                           s[3]->len);
  arr->bytes = s[3]->bytes;
  arr->len = s[3]->len;
  arr->dtype = (int)s[1]->i;
  arr->built = 1;
  return 0;
}

int lfs_pickle_build(vm *m) {
  pv *state = lfs_pickle_pop(m), *obj = state ? lfs_pickle_top(m) : NULL;
  if (!obj) return -1;
  if (obj->kind == PV_NDARRAY) return build_ndarray(m, obj, state);
  if (obj->kind == PV_DTYPE) {
    if (state->kind != PV_TUPLE) return lfs_pickle_fail(m, "numpy dtype state is not a tuple");
    return 0; /* byte order and flags do not matter for 1-byte types */
  }
  return lfs_pickle_fail(m, "cannot set the state of a %s", lfs_pickle_kind_name(obj->kind));
}

/* ---- from the unpickled object to the pair list ---- */
static int is_sequence(const pv *v) { return v->kind == PV_LIST || v->kind == PV_TUPLE; }

static int image_bytes(const pv *v, const uint8_t **p, size_t *len) {
  if (v->kind == PV_BYTES) {
    *p = v->bytes;
    *len = v->len;
    return 0;
  }
  if (v->kind == PV_NDARRAY && v->built && v->dtype != 'b') {
    *p = v->bytes;
    *len = v->len;
    return 0;
  }
  return -1;
}

int lfs_pickle_extract(const pv *root, lfs_bin_file *out, char *err, size_t errlen) {
  if (!is_sequence(root) || root->n != 2) {
    snprintf(err, errlen, "the pickle holds a %s of %zu items, not (images, issame)",
             lfs_pickle_kind_name(root->kind), is_sequence(root) ? root->n : (size_t)1);
    return -1;
  }
  const pv *images = root->items[0], *same = root->items[1];
  if (!is_sequence(images)) {
    snprintf(err, errlen, "the images are a %s, not a list", lfs_pickle_kind_name(images->kind));
    return -1;
  }
  const int same_array = same->kind == PV_NDARRAY && same->built;
  if (!is_sequence(same) && !same_array) {
    snprintf(err, errlen, "issame is a %s, not a list of bools", lfs_pickle_kind_name(same->kind));
    return -1;
  }
  const size_t pairs = same_array ? same->len : same->n;
  if (images->n != 2 * pairs) {
    snprintf(err, errlen, "the pickle holds %zu images for %zu pairs (expected %zu)", images->n,
             pairs, 2 * pairs);
    return -1;
  }
  out->pairs = (int64_t)pairs;
  out->images = calloc(images->n + 1, sizeof *out->images);
  out->image_sizes = calloc(images->n + 1, sizeof *out->image_sizes);
  out->image_offsets = calloc(images->n + 1, sizeof *out->image_offsets);
  out->issame = calloc(pairs + 1, 1);
  if (!out->images || !out->image_sizes || !out->image_offsets || !out->issame) {
    snprintf(err, errlen, "out of memory for %zu pairs", pairs);
    return -1;
  }
  for (size_t k = 0; k < images->n; k++) {
    const pv *v = images->items[k];
    if (image_bytes(v, &out->images[k], &out->image_sizes[k])) {
      snprintf(err, errlen, "image %zu (byte offset %" PRIu64 ") is a %s, not encoded bytes", k,
               v->offset, lfs_pickle_kind_name(v->kind));
      return -1;
    }
    out->image_offsets[k] = v->offset;
  }
  for (size_t k = 0; k < pairs; k++) {
    int64_t b;
    if (same_array) {
      b = same->dtype == 'i' ? (int8_t)same->bytes[k] : same->bytes[k];
    } else {
      const pv *v = same->items[k];
      if (v->kind != PV_BOOL && v->kind != PV_INT) {
        snprintf(err, errlen, "issame[%zu] (byte offset %" PRIu64 ") is a %s, not a bool", k,
                 v->offset, lfs_pickle_kind_name(v->kind));
        return -1;
      }
      b = v->i;
    }
    if (b != 0 && b != 1) {
      snprintf(err, errlen, "issame[%zu] is %" PRId64 ", not a bool", k, b);
      return -1;
    }
    out->issame[k] = (uint8_t)b;
  }
  return 0;
}
