/* config.h: run configuration (INI file + command-line overrides), validated
 * against one schema of every known section and key.
 *
 * A value's origin ("file.ini:12" or "--set") is kept so that every error names
 * where it came from. Loading never exits: it returns -1 and writes a message
 * that names the file, line, section, key and the allowed values. */
#ifndef LFS_CONFIG_H
#define LFS_CONFIG_H

#include <stddef.h>
#include <stdint.h>

typedef enum { LFS_CFG_INT, LFS_CFG_REAL, LFS_CFG_BOOL, LFS_CFG_STRING, LFS_CFG_CHOICE } lfs_cfg_type;

/* One known key. For CHOICE, `choices` is a '|' separated list ("exact|straight"). */
typedef struct {
  const char *section;
  const char *key;
  lfs_cfg_type type;
  const char *default_value;
  double min, max; /* inclusive range for INT and REAL (max may be INFINITY for REAL) */
  const char *choices;
  const char *help;
  int min_exclusive; /* REAL: the value must be > min, not >= min */
} lfs_cfg_key;

/* The schema of every section and key lfsearch knows. */
extern const lfs_cfg_key lfs_cfg_schema[];
extern const size_t lfs_cfg_schema_count;

typedef struct lfs_config lfs_config;

/* An empty configuration: every key has its default. */
lfs_config *lfs_config_new(void);
void lfs_config_free(lfs_config *cfg);

/* Reads an INI file; on error returns -1 with a message in err. */
int lfs_config_load_file(lfs_config *cfg, const char *path, char *err, size_t errlen);
/* Reads INI text (origin names it in errors, e.g. "checkpoint"). */
int lfs_config_load_string(lfs_config *cfg, const char *text, const char *origin, char *err,
                           size_t errlen);
/* Reads the configuration an earlier run stored (a checkpoint's, a run log's):
 * like lfs_config_load_string, except that keys retired since are skipped. */
int lfs_config_load_stored(lfs_config *cfg, const char *text, const char *origin, char *err,
                           size_t errlen);
/* Applies one "section.key=value" override (from --set). */
int lfs_config_set(lfs_config *cfg, const char *assignment, char *err, size_t errlen);

/* Typed getters; "section.key" names must be in the schema (an unknown name is an
 * internal fault: the caller, not the user, is wrong). Values were validated at load. */
int64_t lfs_config_int(const lfs_config *cfg, const char *name);
double lfs_config_real(const lfs_config *cfg, const char *name);
int lfs_config_bool(const lfs_config *cfg, const char *name);
const char *lfs_config_string(const lfs_config *cfg, const char *name);
/* Index of the value in the key's choice list. */
int lfs_config_choice(const lfs_config *cfg, const char *name);
/* Where the value came from: "default", "--set", or "path:line". */
const char *lfs_config_origin(const lfs_config *cfg, const char *name);

/* The resolved configuration as INI text (every key, defaults included), for
 * checkpoints and run logs. Returns a malloc'ed string. */
char *lfs_config_dump(const lfs_config *cfg);

#endif
