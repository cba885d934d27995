/* test_config.c: configuration files, --set overrides, defaults, every user
 * error (its message must name the file, line, section, key and the allowed
 * values), the dump round trip and the getters' internal-fault checks.
 * Temporary INI files go to the current directory (the build directory under
 * `make check`) and are removed afterwards. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "lfs/config.h"

enum { ERRLEN = 2048 };

static char tmp_path[256];

/* Writes text to a fresh file in the current directory; returns its name. */
static const char *write_ini(const char *text) {
  static int serial = 0;
  snprintf(tmp_path, sizeof tmp_path, "test_config_%ld_%d.ini", (long)getpid(), serial++);
  FILE *f = fopen(tmp_path, "w");
  if (!f) fail_msg("cannot create %s: %s", tmp_path, strerror(errno));
  fputs(text, f);
  fclose(f);
  return tmp_path;
}

static void assert_has(const char *msg, const char *needle) {
  if (!strstr(msg, needle)) fail_msg("message \"%s\"\n  lacks \"%s\"", msg, needle);
}

/* Loads text from a temp file, expects failure, and checks the message starts
 * with "file:line: " and contains each further needle (NULL-terminated). */
static void expect_file_error(const char *text, int line, ...) {
  lfs_config *cfg = lfs_config_new();
  const char *path = write_ini(text);
  char err[ERRLEN] = "", prefix[300];
  int rc = lfs_config_load_file(cfg, path, err, sizeof err);
  remove(path);
  if (rc != -1) fail_msg("loading \"%s\" succeeded", text);
  snprintf(prefix, sizeof prefix, "%s:%d: ", path, line);
  if (strncmp(err, prefix, strlen(prefix)) != 0)
    fail_msg("message \"%s\" does not start with \"%s\"", err, prefix);
  va_list ap;
  va_start(ap, line);
  for (const char *needle; (needle = va_arg(ap, const char *));) assert_has(err, needle);
  va_end(ap);
  lfs_config_free(cfg);
}

static void expect_set_error(const char *assignment, const char *want) {
  lfs_config *cfg = lfs_config_new();
  char err[ERRLEN] = "";
  assert_int_equal(lfs_config_set(cfg, assignment, err, sizeof err), -1);
  if (strcmp(err, want) != 0) fail_msg("got  \"%s\"\nwant \"%s\"", err, want);
  lfs_config_free(cfg);
}

static void test_defaults(void **state) {
  (void)state;
  lfs_config *cfg = lfs_config_new();
  assert_string_equal(lfs_config_string(cfg, "run.name"), "run");
  assert_int_equal(lfs_config_int(cfg, "run.seed"), 1);
  assert_int_equal(lfs_config_int(cfg, "run.threads"), 0);
  assert_int_equal(lfs_config_int(cfg, "run.log_every"), 10);
  assert_int_equal(lfs_config_choice(cfg, "run.backend"), 0);
  assert_string_equal(lfs_config_string(cfg, "data.train"), "");
  assert_int_equal(lfs_config_int(cfg, "data.batch_size"), 128);
  assert_int_equal(lfs_config_int(cfg, "data.image_size"), 112);
  assert_int_equal(lfs_config_int(cfg, "data.classes"), 1000);
  assert_string_equal(lfs_config_string(cfg, "model.arch"), "r50");
  assert_int_equal(lfs_config_choice(cfg, "model.arch"), 3);
  assert_int_equal(lfs_config_int(cfg, "model.embedding_size"), 512);
  assert_string_equal(lfs_config_string(cfg, "head.loss"), "arcface");
  assert_true(lfs_config_real(cfg, "head.scale") == 32.0);
  assert_true(lfs_config_real(cfg, "head.m2") == 0.5);
  assert_string_equal(lfs_config_string(cfg, "search.space"), "search_softmax");
  assert_int_equal(lfs_config_int(cfg, "search.candidates"), 4);
  assert_int_equal(lfs_config_int(cfg, "search.warmup_epochs"), 2);
  assert_true(lfs_config_real(cfg, "search.sigma") == 0.0); /* the space's default */
  assert_true(lfs_config_real(cfg, "optim.lr") == 0.1);
  assert_true(lfs_config_real(cfg, "optim.weight_decay") == 5e-4);
  assert_string_equal(lfs_config_string(cfg, "optim.milestones"), "8,14,18");
  assert_true(lfs_config_bool(cfg, "optim.decay_bn"));
  assert_string_equal(lfs_config_string(cfg, "checkpoint.dir"), "checkpoints");
  assert_int_equal(lfs_config_int(cfg, "checkpoint.keep"), 3);
  assert_string_equal(lfs_config_origin(cfg, "optim.lr"), "default");
  lfs_config_free(cfg);
}

static void test_schema_sane(void **state) {
  (void)state;
  assert_true(lfs_cfg_schema_count >= 50);
  for (size_t k = 0; k < lfs_cfg_schema_count; k++) {
    const lfs_cfg_key *key = &lfs_cfg_schema[k];
    assert_non_null(key->help);
    assert_true(strlen(key->help) > 5);
    assert_null(strchr(key->help, '\n'));
  }
}

static void test_valid_file(void **state) {
  (void)state;
  const char *path = write_ini("; a comment\n"
                               "# another comment\n"
                               "[run]\n"
                               "name = demo run\n"
                               "seed = 9007199254740992\n"
                               "\n"
                               "[optim]\n"
                               "  lr = 0.05   ; indented, with an inline comment\n"
                               "decay_bn = No\n"
                               "milestones = 2,4\n"
                               "[model]\n"
                               "arch=tiny\n"
                               "dropout = 0.4\r\n"
                               "[head]\n"
                               "scale = 64\n"
                               "[optim]\n"
                               "momentum = 0.8\n");
  lfs_config *cfg = lfs_config_new();
  char err[ERRLEN] = "", origin[300];
  int rc = lfs_config_load_file(cfg, path, err, sizeof err);
  if (rc != 0) fail_msg("load failed: %s", err);
  assert_string_equal(lfs_config_string(cfg, "run.name"), "demo run");
  assert_int_equal(lfs_config_int(cfg, "run.seed"), 9007199254740992LL);
  assert_true(lfs_config_real(cfg, "optim.lr") == 0.05);
  assert_false(lfs_config_bool(cfg, "optim.decay_bn"));
  assert_string_equal(lfs_config_string(cfg, "optim.milestones"), "2,4");
  assert_int_equal(lfs_config_choice(cfg, "model.arch"), 0);
  assert_true(lfs_config_real(cfg, "model.dropout") == 0.4);
  assert_true(lfs_config_real(cfg, "head.scale") == 64.0);
  assert_true(lfs_config_real(cfg, "optim.momentum") == 0.8);
  assert_int_equal(lfs_config_int(cfg, "data.batch_size"), 128); /* untouched */
  snprintf(origin, sizeof origin, "%s:8", path);
  assert_string_equal(lfs_config_origin(cfg, "optim.lr"), origin);
  assert_string_equal(lfs_config_origin(cfg, "data.batch_size"), "default");
  remove(path);
  lfs_config_free(cfg);
}

static void test_overrides(void **state) {
  (void)state;
  const char *path = write_ini("[optim]\nlr = 0.2\nepochs = 30\n");
  lfs_config *cfg = lfs_config_new();
  char err[ERRLEN] = "";
  /* The program's order: the file, then every --set; later calls win. */
  assert_int_equal(lfs_config_load_file(cfg, path, err, sizeof err), 0);
  assert_int_equal(lfs_config_set(cfg, "optim.lr=0.05", err, sizeof err), 0);
  assert_int_equal(lfs_config_set(cfg, " data.train = /scratch/ms1m/train.h5 ", err, sizeof err), 0);
  assert_int_equal(lfs_config_set(cfg, "model.arch=r100", err, sizeof err), 0);
  assert_int_equal(lfs_config_set(cfg, "run.name=a=b", err, sizeof err), 0);
  assert_true(lfs_config_real(cfg, "optim.lr") == 0.05);
  assert_int_equal(lfs_config_int(cfg, "optim.epochs"), 30);
  assert_string_equal(lfs_config_string(cfg, "data.train"), "/scratch/ms1m/train.h5");
  assert_string_equal(lfs_config_string(cfg, "model.arch"), "r100");
  assert_string_equal(lfs_config_string(cfg, "run.name"), "a=b");
  assert_string_equal(lfs_config_origin(cfg, "optim.lr"), "--set");
  /* A second --set of the same key wins over the first. */
  assert_int_equal(lfs_config_set(cfg, "optim.lr=0.01", err, sizeof err), 0);
  assert_true(lfs_config_real(cfg, "optim.lr") == 0.01);
  /* And a file loaded after an override wins over it. */
  assert_int_equal(lfs_config_load_file(cfg, path, err, sizeof err), 0);
  assert_true(lfs_config_real(cfg, "optim.lr") == 0.2);
  remove(path);
  lfs_config_free(cfg);
}

static void test_bool_spellings(void **state) {
  (void)state;
  static const char *const yes[] = {"true", "TRUE", "True", "yes", "YES", "on", "On", "1"};
  static const char *const no[] = {"false", "False", "no", "NO", "off", "OFF", "0"};
  lfs_config *cfg = lfs_config_new();
  char err[ERRLEN], set[64];
  for (size_t j = 0; j < sizeof yes / sizeof yes[0]; j++) {
    snprintf(set, sizeof set, "optim.decay_bn=%s", no[j % 7]);
    assert_int_equal(lfs_config_set(cfg, set, err, sizeof err), 0);
    assert_false(lfs_config_bool(cfg, "optim.decay_bn"));
    snprintf(set, sizeof set, "optim.decay_bn=%s", yes[j]);
    assert_int_equal(lfs_config_set(cfg, set, err, sizeof err), 0);
    assert_true(lfs_config_bool(cfg, "optim.decay_bn"));
  }
  const char *bad[] = {"2", "y", "truee", "", "t rue"};
  for (size_t j = 0; j < sizeof bad / sizeof bad[0]; j++) {
    snprintf(set, sizeof set, "data.flip=%s", bad[j]);
    assert_int_equal(lfs_config_set(cfg, set, err, sizeof err), -1);
    assert_has(err, "[data] flip");
    assert_has(err, "not a boolean (expected true|false|yes|no|on|off|1|0)");
  }
  lfs_config_free(cfg);
}

static void test_file_errors(void **state) {
  (void)state;
  expect_file_error("[run]\nname = x\n\n[optim]\nmomentum = 0.5\n\n\n\n\n\n\nlr = fast\n", 12,
                    "[optim] lr = \"fast\": not a number (expected a real in [0, 100])", NULL);
  expect_file_error("[run]\n\n[modle]\narch = r50\n", 3,
                    "unknown section [modle] (known: run, data, model, head, search, optim, "
                    "checkpoint)",
                    "did you mean [model]", NULL);
  expect_file_error("[optim]\nlr = 0.1\n\n\nlrr = 0.2\n", 5,
                    "unknown key \"lrr\" in [optim] (known: lr, momentum, weight_decay, ",
                    "decay_bn)", "did you mean \"lr\"", NULL);
  expect_file_error("[optim]\nbatch_size = 64\n", 2, "unknown key \"batch_size\" in [optim]",
                    "belongs in [data]", NULL);
  expect_file_error("[run]\n\n\n\n[model]\n\narch = r51\n", 7,
                    "[model] arch = \"r51\": not one of tiny|r18|r34|r50|r100|r200|mbf", NULL);
  expect_file_error("[optim]\nlr = 0.1\nmomentum = 0.9\nlr = 0.2\n", 4, "[optim] lr given twice",
                    ":2)", NULL);
  expect_file_error("[optim]\nlr 0.1\n", 2, "cannot parse this line", NULL);
  expect_file_error("[optim\nlr = 0.1\n", 1, "cannot parse this line", NULL);
  expect_file_error("lr = 0.1\n[optim]\n", 1, "key \"lr\" outside any section", NULL);
  expect_file_error("[data]\nbatch_size = 0\n", 2, "[data] batch_size = 0 out of range [1, 65536]",
                    NULL);
  expect_file_error("[data]\nbatch_size = 12x\n", 2,
                    "[data] batch_size = \"12x\": not an integer (expected an integer in [1, 65536])",
                    NULL);
  expect_file_error("[data]\nbatch_size = 1e3\n", 2, "[data] batch_size = \"1e3\": not an integer",
                    NULL);
  expect_file_error("[run]\nseed = 99999999999999999999\n", 2,
                    "[run] seed = 99999999999999999999 out of range [0, 9007199254740992]", NULL);
  expect_file_error("[optim]\nlr =\n", 2, "[optim] lr = \"\": not a number (expected a real in [0, 100])",
                    NULL);
  expect_file_error("[optim]\nlr = nan\n", 2, "[optim] lr = \"nan\": not a finite number", "[0, 100]",
                    NULL);
  expect_file_error("[optim]\nclip_norm = inf\n", 2, "[optim] clip_norm = \"inf\": not a finite number",
                    "[0, inf)", NULL);
  expect_file_error("[optim]\nlr = 0.1.2\n", 2, "[optim] lr = \"0.1.2\": not a number", NULL);
  expect_file_error("[head]\nscale = 0\n", 2, "[head] scale = 0 out of range (0, 1024]", NULL);
  expect_file_error("[optim]\ndecay_bn = maybe\n", 2, "[optim] decay_bn = \"maybe\": not a boolean",
                    NULL);
  expect_file_error("[run]\nbackend = CUDA\n", 2, "[run] backend = \"CUDA\": not one of cpu|cuda", NULL);
  /* The first error in file order is the one reported. */
  expect_file_error("[optim]\nlr = 1000\n[bogus]\nx = 1\n", 2, "[optim] lr = 1000 out of range", NULL);
  expect_file_error("[optim]\nlr = 0.1\nnonsense\nlr = 5000\n", 3, "cannot parse this line", NULL);
  /* An indented line is a key of its own, not a continuation of the last value. */
  expect_file_error("[optim]\nlr = 0.1\n    momentum = 2\n", 3, "[optim] momentum = 2 out of range [0, 1]",
                    NULL);
}

static void test_long_line(void **state) {
  (void)state;
  char text[600] = "[data]\ntrain = /";
  memset(text + strlen(text), 'x', 300);
  strcat(text, "\n");
  expect_file_error(text, 2, "line too long", NULL);
  /* Overrides have no line limit of their own, but a value must fit a dump line. */
  lfs_config *cfg = lfs_config_new();
  char set[600] = "data.train=/", err[ERRLEN];
  memset(set + strlen(set), 'y', 250);
  assert_int_equal(lfs_config_set(cfg, set, err, sizeof err), -1);
  assert_has(err, "[data] train = \"/yyy");
  assert_has(err, "too long");
  assert_int_equal(lfs_config_set(cfg, "run.name=a ;b", err, sizeof err), -1);
  assert_has(err, "comment");
  assert_int_equal(lfs_config_set(cfg, "run.name=a\tb", err, sizeof err), -1);
  assert_has(err, "control character");
  lfs_config_free(cfg);
}

static void test_missing_file(void **state) {
  (void)state;
  lfs_config *cfg = lfs_config_new();
  char err[ERRLEN] = "", want[512];
  const char *path = "no_such_dir_lfs/x.ini";
  assert_int_equal(lfs_config_load_file(cfg, path, err, sizeof err), -1);
  snprintf(want, sizeof want, "%s: cannot open: %s", path, strerror(ENOENT));
  assert_string_equal(err, want);
  /* A directory opens but cannot be read. */
  assert_int_equal(lfs_config_load_file(cfg, ".", err, sizeof err), -1);
  assert_has(err, ".: ");
  lfs_config_free(cfg);
}

static void test_set_errors(void **state) {
  (void)state;
  expect_set_error("optim.lr=500", "--set optim.lr=500: [optim] lr = 500 out of range [0, 100]");
  expect_set_error("optimlr", "--set optimlr: expected section.key=value");
  expect_set_error("optimlr=5", "--set optimlr=5: expected section.key=value");
  expect_set_error(".lr=5", "--set .lr=5: expected section.key=value");
  expect_set_error("optim.=5", "--set optim.=5: expected section.key=value");
  expect_set_error("optim.lr=fast",
                   "--set optim.lr=fast: [optim] lr = \"fast\": not a number (expected a real in "
                   "[0, 100])");
  expect_set_error("modle.arch=r50",
                   "--set modle.arch=r50: unknown section [modle] (known: run, data, model, head, "
                   "search, optim, checkpoint); did you mean [model]?");
  expect_set_error("model.arch=r51",
                   "--set model.arch=r51: [model] arch = \"r51\": not one of "
                   "tiny|r18|r34|r50|r100|r200|mbf");
  lfs_config *cfg = lfs_config_new();
  char err[ERRLEN];
  assert_int_equal(lfs_config_set(cfg, "optim.lrr=0.1", err, sizeof err), -1);
  assert_has(err, "--set optim.lrr=0.1: unknown key \"lrr\" in [optim] (known: lr, momentum");
  assert_int_equal(lfs_config_set(cfg, "search.sigma=-1", err, sizeof err), -1);
  assert_has(err, "[search] sigma = -1 out of range [0, 100]");
  /* A failed --set leaves the old value. */
  assert_true(lfs_config_real(cfg, "optim.lr") == 0.1);
  lfs_config_free(cfg);
}

/* A retired key: skipped in a stored configuration (a checkpoint of an earlier
 * version must stay readable), an error that says what replaced it anywhere else. */
static void test_retired_keys(void **state) {
  (void)state;
  lfs_config *cfg = lfs_config_new();
  char err[ERRLEN];
  const char *old = "[search]\nepochs = 20\nreward = val\nwarmup_epochs = 3\n";
  assert_int_equal(lfs_config_load_stored(cfg, old, "ckpt", err, sizeof err), 0);
  assert_int_equal(lfs_config_int(cfg, "search.warmup_epochs"), 3);
  assert_int_equal(lfs_config_load_string(cfg, old, "run.ini", err, sizeof err), -1);
  assert_has(err, "run.ini:2: [search] epochs is no longer a key (the search runs for [optim] epochs): remove it");
  assert_int_equal(lfs_config_set(cfg, "search.reward=test", err, sizeof err), -1);
  assert_has(err, "[search] reward is no longer a key (the reward is always [data] val_pairs");
  /* a stored configuration is still checked for everything else */
  assert_int_equal(lfs_config_load_stored(cfg, "[search]\nepochz = 1\n", "ckpt", err, sizeof err), -1);
  assert_has(err, "unknown key \"epochz\" in [search]");
  lfs_config_free(cfg);
}

/* A file with an error changes nothing, not even the keys before the error. */
static void test_failed_load_is_atomic(void **state) {
  (void)state;
  lfs_config *cfg = lfs_config_new();
  char err[ERRLEN];
  assert_int_equal(lfs_config_load_string(cfg, "[optim]\nlr = 0.3\nmomentum = 7\n", "ckpt", err,
                                          sizeof err),
                   -1);
  assert_has(err, "ckpt:3: [optim] momentum = 7 out of range [0, 1]");
  assert_true(lfs_config_real(cfg, "optim.lr") == 0.1);
  assert_string_equal(lfs_config_origin(cfg, "optim.lr"), "default");
  lfs_config_free(cfg);
}

static void assert_same_values(const lfs_config *a, const lfs_config *b) {
  char name[128];
  for (size_t k = 0; k < lfs_cfg_schema_count; k++) {
    const lfs_cfg_key *key = &lfs_cfg_schema[k];
    snprintf(name, sizeof name, "%s.%s", key->section, key->key);
    switch (key->type) {
      case LFS_CFG_INT: assert_int_equal(lfs_config_int(a, name), lfs_config_int(b, name)); break;
      case LFS_CFG_REAL:
        if (lfs_config_real(a, name) != lfs_config_real(b, name)) fail_msg("%s differs", name);
        break;
      case LFS_CFG_BOOL: assert_int_equal(lfs_config_bool(a, name), lfs_config_bool(b, name)); break;
      case LFS_CFG_CHOICE:
        assert_int_equal(lfs_config_choice(a, name), lfs_config_choice(b, name));
        break;
      case LFS_CFG_STRING:
        assert_string_equal(lfs_config_string(a, name), lfs_config_string(b, name));
        break;
    }
  }
}

static void test_dump_round_trip(void **state) {
  (void)state;
  lfs_config *a = lfs_config_new();
  char err[ERRLEN];
  const char *sets[] = {"optim.lr=0.1234567890123456789", "optim.weight_decay=5e-4",
                        "run.name=long run: with spaces, colons = and #hash",
                        "data.train=/p/scratch/lfs/ms1m/train.h5", "run.seed=9007199254740991",
                        "optim.decay_bn=off", "head.loss=mv_softmax", "optim.clip_norm=1e30",
                        "data.val_pairs=", "run.steps=+15", "data.test_pairs=  "};
  for (size_t j = 0; j < sizeof sets / sizeof sets[0]; j++)
    if (lfs_config_set(a, sets[j], err, sizeof err) != 0) fail_msg("%s", err);
  char *text = lfs_config_dump(a);
  assert_has(text, "[checkpoint]\n");
  assert_has(text, "\nlr = 0.1234567890123456789\n");
  assert_has(text, "\ndecay_bn = false\n");
  assert_has(text, "\nsteps = 15\n");
  lfs_config *b = lfs_config_new();
  if (lfs_config_load_string(b, text, "dump", err, sizeof err) != 0) fail_msg("reload: %s", err);
  assert_same_values(a, b);
  char *again = lfs_config_dump(b);
  assert_string_equal(text, again);
  /* Every key is in the dump once. */
  for (size_t k = 0; k < lfs_cfg_schema_count; k++) {
    char line[128];
    snprintf(line, sizeof line, "\n%s =", lfs_cfg_schema[k].key);
    const char *first = strstr(text, line);
    if (!first) fail_msg("%s.%s missing from the dump", lfs_cfg_schema[k].section, line + 1);
  }
  free(text);
  free(again);
  lfs_config_free(a);
  lfs_config_free(b);
}

/* Runs fn in a child with stderr silenced; the child must die or exit non-zero. */
static void expect_fault(void (*fn)(const lfs_config *), const lfs_config *cfg) {
  fflush(NULL);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    if (!freopen("/dev/null", "w", stderr)) _exit(0);
    fn(cfg);
    _exit(0);
  }
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status) != 0));
}

static void get_unknown(const lfs_config *c) { (void)lfs_config_int(c, "optim.lrr"); }
static void get_no_dot(const lfs_config *c) { (void)lfs_config_real(c, "lr"); }
static void get_wrong_type(const lfs_config *c) { (void)lfs_config_int(c, "optim.lr"); }
static void get_bool_as_choice(const lfs_config *c) { (void)lfs_config_choice(c, "optim.decay_bn"); }
static void get_string_as_real(const lfs_config *c) { (void)lfs_config_real(c, "run.name"); }

static void test_getter_faults(void **state) {
  (void)state;
  lfs_config *cfg = lfs_config_new();
  expect_fault(get_unknown, cfg);
  expect_fault(get_no_dot, cfg);
  expect_fault(get_wrong_type, cfg);
  expect_fault(get_bool_as_choice, cfg);
  expect_fault(get_string_as_real, cfg);
  lfs_config_free(cfg);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_defaults),        cmocka_unit_test(test_schema_sane),
      cmocka_unit_test(test_valid_file),      cmocka_unit_test(test_overrides),
      cmocka_unit_test(test_bool_spellings),  cmocka_unit_test(test_file_errors),
      cmocka_unit_test(test_long_line),       cmocka_unit_test(test_missing_file),
      cmocka_unit_test(test_set_errors),      cmocka_unit_test(test_failed_load_is_atomic),
      cmocka_unit_test(test_retired_keys),
      cmocka_unit_test(test_dump_round_trip), cmocka_unit_test(test_getter_faults),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
