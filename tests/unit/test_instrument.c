/* test_instrument.c: the instrumented backends (src/backend/instrument.c).
 * cpu-staged computes what the CPU computes on its own memory and stops, naming
 * the op and the argument, when handed a host array, a range past the end of an
 * allocation, or a pointer to free it never allocated (each in a child
 * process, whose exit code and message are checked). LFS_PROFILE wraps a
 * backend so that every op call is counted and timed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "lfs/backend.h"
#include "lfs/log.h"

enum { N = 1000 };

/* Runs fn in a child with stderr captured; returns its exit code, the message in msg. */
static int run_child(void (*fn)(void), char *msg, size_t len) {
  int fd[2];
  assert_int_equal(pipe(fd), 0);
  const pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    dup2(fd[1], 2);
    close(fd[0]);
    fn();
    _exit(0);
  }
  close(fd[1]);
  size_t got = 0;
  ssize_t n;
  while (got + 1 < len && (n = read(fd[0], msg + got, len - 1 - got)) > 0) got += (size_t)n;
  msg[got] = '\0';
  close(fd[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

static void test_staged_equals_cpu(void **state) {
  (void)state;
  lfs_backend *cpu = lfs_backend_cpu(), *st = lfs_backend_cpu_staged();
  assert_int_equal(st->device, 0);
  float host_y[N], host_x[N], out[N];
  for (int i = 0; i < N; i++) host_y[i] = 0.5f * i, host_x[i] = 1.0f - 0.25f * i;
  float *y = st->ops->alloc(st, N), *x = st->ops->alloc(st, N);
  st->ops->upload(st, y, host_y, N);
  st->ops->upload(st, x, host_x, N);
  st->ops->axpy(st, y, -3.0f, x, N);
  st->ops->download(st, out, y, N);
  cpu->ops->axpy(cpu, host_y, -3.0f, host_x, N);
  assert_memory_equal(out, host_y, sizeof out);
  st->ops->free(st, y);
  st->ops->free(st, x);
}

static void host_array_to_axpy(void) {
  lfs_backend *st = lfs_backend_cpu_staged();
  float *y = st->ops->alloc(st, N);
  static float host[N];
  st->ops->axpy(st, y, 1.0f, host, N);
}

static void range_past_the_end(void) {
  lfs_backend *st = lfs_backend_cpu_staged();
  float *y = st->ops->alloc(st, N);
  st->ops->fill(st, y + 10, 0.0f, N);
}

static void free_of_a_stranger(void) {
  lfs_backend *st = lfs_backend_cpu_staged();
  st->ops->free(st, lfs_alloc_floats(N));
}

static void test_staged_stops_on_foreign_memory(void **state) {
  (void)state;
  char msg[4096];
  assert_int_equal(run_child(host_array_to_axpy, msg, sizeof msg), LFS_EXIT_RUNTIME);
  assert_non_null(strstr(msg, "cpu-staged: axpy: x (0x"));
  assert_non_null(strstr(msg, "is not backend memory"));
  assert_int_equal(run_child(range_past_the_end, msg, sizeof msg), LFS_EXIT_RUNTIME);
  assert_non_null(strstr(msg, "cpu-staged: fill: x runs 10 floats past the end"));
  assert_int_equal(run_child(free_of_a_stranger, msg, sizeof msg), LFS_EXIT_RUNTIME);
  assert_non_null(strstr(msg, "which this backend did not allocate"));
}

typedef struct {
  char text[4096];
} report;

static void collect(const char *line, void *user) {
  report *r = user;
  strncat(r->text, line, sizeof r->text - strlen(r->text) - 2);
  strcat(r->text, "\n");
}

static void test_profile_counts_every_call(void **state) {
  (void)state;
  lfs_backend *cpu = lfs_backend_cpu();
  unsetenv("LFS_PROFILE");
  assert_ptr_equal(lfs_backend_profiled(cpu), cpu);
  setenv("LFS_PROFILE", "1", 1);
  lfs_backend *be = lfs_backend_profiled(cpu);
  assert_ptr_not_equal(be, cpu);
  assert_string_equal(be->ops->name, "cpu");
  float *x = be->ops->alloc(be, N), *y = be->ops->alloc(be, N);
  lfs_backend_profile_reset();
  for (int i = 0; i < 4; i++) be->ops->fill(be, x, 1.0f, N);
  for (int i = 0; i < 2; i++) be->ops->axpy(be, y, 2.0f, x, N);
  float out[N];
  be->ops->download(be, out, y, N);
  assert_true(out[0] == 4.0f && out[N - 1] == 4.0f);
  report r = {""};
  assert_int_equal(lfs_backend_profile_report(2, collect, &r), 1);
  /* per step of 2: fill 2.0 calls, axpy 1.0, download 0.5; alloc was before the reset */
  assert_non_null(strstr(r.text, "fill                          2.0"));
  assert_non_null(strstr(r.text, "axpy                          1.0"));
  assert_non_null(strstr(r.text, "download                      0.5"));
  assert_null(strstr(r.text, "alloc"));
  assert_non_null(strstr(r.text, "all ops"));
  be->ops->free(be, x);
  be->ops->free(be, y);
  unsetenv("LFS_PROFILE");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_staged_equals_cpu),
      cmocka_unit_test(test_staged_stops_on_foreign_memory),
      cmocka_unit_test(test_profile_counts_every_call),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
