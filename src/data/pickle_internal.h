/* pickle_internal.h: what the pickle machine (pickle.c) and the objects it
 * builds for a verification file (pickle_objects.c) share: the values on the
 * stack, the machine state, and the few operations each side calls in the other. */
#ifndef LFS_PICKLE_INTERNAL_H
#define LFS_PICKLE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "lfs/pack.h"

/* The kinds of Python value the machine knows. */
typedef enum {
  PV_NONE,
  PV_BOOL,
  PV_INT,
  PV_BYTES, /* str (Python 2), bytes, bytearray */
  PV_TEXT,  /* unicode, kept as UTF-8 */
  PV_LIST,
  PV_TUPLE,
  PV_GLOBAL,
  PV_NDARRAY,
  PV_DTYPE,
} pv_kind;

/* The globals a verification file may name (a GLOBAL value's i). */
typedef enum {
  G_CODECS_ENCODE,
  G_NP_RECONSTRUCT,
  G_NP_NDARRAY,
  G_NP_DTYPE,
  G_NP_SCALAR,
  G_NP_FROMBUFFER,
} pv_global;

/* One value; every value lives until the machine is freed. */
typedef struct pv {
  pv_kind kind;
  uint64_t offset; /* of the opcode that made it */
  int64_t i;       /* BOOL, INT; GLOBAL: pv_global; DTYPE: 'u', 'i' or 'b' */
  const uint8_t *bytes; /* BYTES, TEXT; NDARRAY data */
  size_t len;
  uint8_t *own;         /* a copy held by this value */
  struct pv **items;    /* LIST, TUPLE */
  size_t n, cap;
  int built;            /* NDARRAY: state set */
  int dtype;            /* NDARRAY: 'u', 'i' or 'b' */
} pv;

/* The machine: the input, the stack with its marks, the memo, the message. */
typedef struct {
  const uint8_t *data;
  size_t size, pos;
  uint64_t op_at; /* offset of the opcode being run */
  pv **all;       /* every value, for freeing */
  size_t nall, capall;
  pv **stack;
  size_t nstack, capstack;
  size_t *marks;
  size_t nmarks, capmarks;
  pv **memo;
  size_t nmemo, capmemo;
  int protocol;
  char *err;
  size_t errlen;
} vm;

/* ---- pickle.c: values and the stack ---- */
/* The Python type name of a kind, for messages. */
const char *lfs_pickle_kind_name(pv_kind k);
/* Sets the error message, prefixed with the current opcode and its offset;
 * always returns -1. */
int lfs_pickle_fail(vm *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A new value made by the current opcode (freed with the machine); NULL with
 * the message set. */
pv *lfs_pickle_new_value(vm *m, pv_kind kind);
/* Pushes v (-1 when v is NULL, the failed result of lfs_pickle_new_value). */
int lfs_pickle_push(vm *m, pv *v);
/* Pushes a new BOOL or INT value. */
int lfs_pickle_push_int(vm *m, pv_kind kind, int64_t i);
/* The top of the stack above the innermost mark (popped or left); NULL with
 * "stack underflow" when there is none. */
pv *lfs_pickle_pop(vm *m);
pv *lfs_pickle_top(vm *m);

/* ---- pickle_objects.c: what a verification file may hold ---- */
/* GLOBAL and STACK_GLOBAL: pushes the global module.name if it is one of
 * pv_global, else fails naming it. */
int lfs_pickle_resolve_global(vm *m, const uint8_t *mod, size_t nmod, const uint8_t *name,
                              size_t nname);
/* REDUCE: calls the global below the argument tuple (numpy and _codecs objects). */
int lfs_pickle_reduce(vm *m);
/* BUILD: sets the state of a numpy array or dtype. */
int lfs_pickle_build(vm *m);
/* Reads the finished pickle's root (images, issame) into out; -1 with a message
 * in err (out's arrays are then freed by the caller's lfs_bin_free). */
int lfs_pickle_extract(const pv *root, lfs_bin_file *out, char *err, size_t errlen);

#endif
