/* test_fuzz_regress.c: runs every input kept in tests/fuzz/regress/<target>/
 * through the same entry functions as the libFuzzer targets (fuzz_targets.c):
 * inputs that once crashed a parser (they must now be handled: no crash, no
 * invariant violation, no sanitizer report in the sanitizer build), and seeds
 * named ok-* that must be accepted. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fuzz_targets.h"

static uint8_t *slurp(const char *path, size_t *size) {
  FILE *f = fopen(path, "rb");
  if (!f) fail_msg("%s: cannot open", path);
  uint8_t *buf = NULL;
  size_t n = 0, cap = 0, got;
  do {
    if (n == cap) {
      cap = cap ? 2 * cap : 4096;
      buf = realloc(buf, cap);
      assert_non_null(buf);
    }
    got = fread(buf + n, 1, cap - n, f);
    n += got;
  } while (got > 0);
  fclose(f);
  *size = n;
  return buf;
}

static int by_name(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Runs fn on every file of tests/fuzz/regress/<target>; returns how many. */
static int run_dir(const char *target, int (*fn)(const uint8_t *, size_t), int *accepted_ok) {
  char dir[4096];
  const char *src = getenv("LFS_SRCDIR");
  snprintf(dir, sizeof dir, "%s/tests/fuzz/regress/%s", src && *src ? src : ".", target);
  DIR *d = opendir(dir);
  if (!d) fail_msg("%s: cannot open the regression inputs", dir);
  char *names[4096];
  int n = 0;
  for (struct dirent *e; (e = readdir(d)) && n < 4096;)
    if (e->d_name[0] != '.') names[n++] = strdup(e->d_name);
  closedir(d);
  qsort(names, (size_t)n, sizeof *names, by_name);
  *accepted_ok = 0;
  for (int k = 0; k < n; k++) {
    char path[8192];
    snprintf(path, sizeof path, "%s/%s", dir, names[k]);
    size_t size;
    uint8_t *data = slurp(path, &size);
    /* an exact-size copy, so that ASan sees any read past the end */
    uint8_t *exact = malloc(size ? size : 1);
    assert_non_null(exact);
    memcpy(exact, data, size);
    free(data);
    const int rc = fn(exact, size);
    free(exact);
    printf("  %s/%s: %s\n", target, names[k], rc ? "rejected" : "accepted");
    if (!strncmp(names[k], "ok-", 3)) {
      if (rc) fail_msg("%s: a well-formed seed was rejected", path);
      (*accepted_ok)++;
    }
    free(names[k]);
  }
  return n;
}

static void test_recordio_inputs(void **state) {
  (void)state;
  int ok;
  const int n = run_dir("recordio", lfs_fuzz_recordio, &ok);
  assert_true(n >= 3);
  assert_true(ok >= 2);
}

static void test_pickle_inputs(void **state) {
  (void)state;
  int ok;
  const int n = run_dir("pickle", lfs_fuzz_pickle, &ok);
  assert_true(n >= 3);
  assert_true(ok >= 3);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_recordio_inputs),
      cmocka_unit_test(test_pickle_inputs),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
