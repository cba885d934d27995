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
#include <math.h>
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
  assert_null(strstr(r.text, "convolution")); /* none ran */
  be->ops->free(be, x);
  be->ops->free(be, y);
  unsetenv("LFS_PROFILE");
}

/* A fill's rate from the bytes it writes and its time; each convolution
 * geometry gets a row (slowest first, by the times it prints: which one is
 * slower is the machine's to say) with its passes' time and FLOP rate. */
static void test_profile_rates_and_convolutions(void **state) {
  (void)state;
  setenv("LFS_PROFILE", "1", 1);
  lfs_backend *be = lfs_backend_profiled(lfs_backend_cpu());
  lfs_conv_desc big = {.n = 2, .in_c = 8, .in_h = 24, .in_w = 24, .out_c = 16, .kh = 3, .kw = 3,
                       .stride = 1, .pad = 1, .groups = 1};
  lfs_conv_desc small = {.n = 2, .in_c = 4, .in_h = 6, .in_w = 6, .out_c = 4, .kh = 1, .kw = 1,
                         .stride = 2, .pad = 0, .groups = 1};
  assert_int_equal(lfs_conv_desc_init(&big), 0);
  assert_int_equal(lfs_conv_desc_init(&small), 0);
  float *buf = be->ops->alloc(be, 1 << 16), *w = be->ops->alloc(be, 1 << 12);
  float *big_fill = be->ops->alloc(be, 1 << 22); /* 16 MiB: a time the report resolves */
  lfs_backend_profile_reset();
  be->ops->fill(be, big_fill, 0.5f, 1 << 22);
  for (int i = 0; i < 2; i++) {
    be->ops->conv2d_forward(be, &small, buf + 30000, buf, w, NULL);
    be->ops->conv2d_forward(be, &big, buf + 30000, buf, w, NULL);
  }
  be->ops->conv2d_backward(be, &big, buf + 50000, LFS_GRAD_ADD, w + 2000, NULL, buf + 30000, buf,
                           w);
  report r = {""};
  assert_int_equal(lfs_backend_profile_report(1, collect, &r), 1);
  double ms = 0, gbs = 0;
  const char *fill = strstr(r.text, "  fill ");
  assert_non_null(fill);
  assert_int_equal(sscanf(fill, "  fill %*f %lf %*f%% %lf", &ms, &gbs), 2);
  /* 2^22 floats written */
  assert_true(ms > 0 && fabs(gbs - 4.0 * 4194304 / (ms * 1e-3) / 1e9) <= 0.02 * gbs + 0.1);
  const char *head = strstr(r.text, "convolution (input -> output)");
  const char *row_big = strstr(r.text, "  2x8x24x24 -> 16, 3x3/1 ");
  const char *row_small = strstr(r.text, "  2x4x6x6 -> 4, 1x1/2 ");
  assert_non_null(head);
  assert_non_null(row_big);
  assert_non_null(row_small);
  assert_true(head < row_big && head < row_small);
  double fwd = 0, fwd_rate = 0, bwd = 0, bwd_rate = 0, small_fwd = 0, small_rate = 0, small_bwd = 0;
  assert_int_equal(sscanf(row_big + strlen("  2x8x24x24 -> 16, 3x3/1 "), "%lf %lf %lf %lf", &fwd,
                          &fwd_rate, &bwd, &bwd_rate), 4);
  assert_true(fwd > 0 && bwd > 0 && fwd_rate >= 0 && bwd_rate >= 0);
  assert_int_equal(sscanf(row_small + strlen("  2x4x6x6 -> 4, 1x1/2 "), "%lf %lf %lf", &small_fwd,
                          &small_rate, &small_bwd), 3);
  assert_true(small_bwd == 0.0); /* it never ran backward */
  /* the slower first, whichever that was on a busy machine */
  if (row_big < row_small)
    assert_true(fwd + bwd >= small_fwd + small_bwd);
  else
    assert_true(small_fwd + small_bwd >= fwd + bwd);
  be->ops->free(be, buf);
  be->ops->free(be, w);
  be->ops->free(be, big_fill);
  unsetenv("LFS_PROFILE");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_staged_equals_cpu),
      cmocka_unit_test(test_staged_stops_on_foreign_memory),
      cmocka_unit_test(test_profile_counts_every_call),
      cmocka_unit_test(test_profile_rates_and_convolutions),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
