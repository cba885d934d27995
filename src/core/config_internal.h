/* config_internal.h: what config.c (life cycle, loading, overrides, getters,
 * dump) shares with config_value.c (schema look-ups, value parsing, the schema
 * self-check). Not part of the public interface in lfs/config.h. */
#ifndef LFS_CONFIG_INTERNAL_H
#define LFS_CONFIG_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "lfs/config.h"

/* Room for one message; messages name the file, line, key and allowed values. */
enum { LFS_CFG_MSG = 2048 };

/* The known sections, in dump order; config_value.c checks the count. */
enum { LFS_CFG_NSECTIONS = 7 };
extern const char *const lfs_cfg_sections[LFS_CFG_NSECTIONS];

typedef struct {
  char *text;   /* canonical text, written by the dump */
  char *origin; /* "default", "--set" or "path:line" */
  int64_t i;
  double r;
  int b;
  int choice;
} lfs_cfg_value;

/* Copies s without leading and trailing blanks into out (truncating to n). */
void lfs_cfg_trim(const char *s, size_t len, char *out, size_t n);

int lfs_cfg_section_known(const char *section);
/* Schema index of [section] key, or -1. */
long lfs_cfg_find(const char *section, const char *key);
/* "section.key" -> schema index, or -1. */
long lfs_cfg_find_name(const char *name);
/* A key that is gone (config_schema.c): a stored configuration that has it
 * loads without it; anywhere else it is an error quoting `instead`. */
typedef struct {
  const char *section, *key, *instead;
} lfs_cfg_retired;
extern const lfs_cfg_retired lfs_cfg_retired_keys[];
extern const size_t lfs_cfg_retired_count;
/* What replaced [section] key, or NULL if it was never retired. */
const char *lfs_cfg_retired_note(const char *section, const char *key);

/* Messages for names outside the schema, with a hint when one is a near miss. */
void lfs_cfg_unknown_section(const char *section, char *buf, size_t n);
void lfs_cfg_unknown_key(const char *section, const char *key, char *buf, size_t n);

/* Parses text as the value of key k into *v (text and typed value; v->origin is
 * left alone). On failure writes "[section] key = ...: why" and returns -1. */
int lfs_cfg_parse(const lfs_cfg_key *k, const char *text, lfs_cfg_value *v, char *why,
                  size_t n);
void lfs_cfg_value_free(lfs_cfg_value *v);
/* Moves *src (parsed) into *dst with the given origin. */
void lfs_cfg_value_replace(lfs_cfg_value *dst, lfs_cfg_value *src, const char *origin);

/* Checks lfs_cfg_schema once per process; a malformed entry is fatal. */
void lfs_cfg_check_schema(void);

#endif
