/* log.c: rank-aware messages, internal faults (MPI_Abort) and collective user
 * errors (exit 2). Safe to call before MPI_Init or after MPI_Finalize. */
#include "lfs/log.h"

#include <mpi.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static lfs_log_level log_level = LFS_LOG_INFO;

void lfs_log_set_level(lfs_log_level level) { log_level = level; }

static int mpi_active(void) {
  int init = 0, fin = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  return init && !fin;
}

int lfs_log_rank(void) {
  int rank = 0;
  if (mpi_active()) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}

void lfs_info(const char *fmt, ...) {
  if (log_level < LFS_LOG_INFO || lfs_log_rank() != 0) return;
  va_list ap;
  va_start(ap, fmt);
  vfprintf(stdout, fmt, ap);
  va_end(ap);
  fputc('\n', stdout);
  fflush(stdout);
}

static void vprint_ranked(const char *prefix, const char *fmt, va_list ap) {
  char msg[2048];
  vsnprintf(msg, sizeof msg, fmt, ap);
  fprintf(stderr, "[rank %d] %s%s\n", lfs_log_rank(), prefix, msg);
  fflush(stderr);
}

void lfs_debug(const char *fmt, ...) {
  if (log_level < LFS_LOG_DEBUG) return;
  va_list ap;
  va_start(ap, fmt);
  vprint_ranked("", fmt, ap);
  va_end(ap);
}

void lfs_warn(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vprint_ranked("warning: ", fmt, ap);
  va_end(ap);
}

enum { max_exit_hooks = 8 };
static struct {
  void (*fn)(void *);
  void *arg;
} exit_hooks[max_exit_hooks];
static int nexit_hooks;

void lfs_on_user_exit(void (*fn)(void *), void *arg) {
  LFS_ASSERT(nexit_hooks < max_exit_hooks);
  exit_hooks[nexit_hooks].fn = fn;
  exit_hooks[nexit_hooks++].arg = arg;
}

void lfs_on_user_exit_remove(void (*fn)(void *), void *arg) {
  for (int i = 0; i < nexit_hooks; i++)
    if (exit_hooks[i].fn == fn && exit_hooks[i].arg == arg) {
      exit_hooks[i] = exit_hooks[--nexit_hooks];
      return;
    }
}

static void run_exit_hooks(void) {
  while (nexit_hooks > 0) {
    nexit_hooks--;
    exit_hooks[nexit_hooks].fn(exit_hooks[nexit_hooks].arg);
  }
}

static _Noreturn void abort_job(int code) {
  if (mpi_active()) MPI_Abort(MPI_COMM_WORLD, code);
  exit(code);
}

/* "src/nn/conv.c" rather than the absolute path a VPATH build compiles in. */
static const char *project_path(const char *file) {
  const char *roots[] = {"/src/", "/tests/", "/include/"};
  const char *best = NULL;
  for (size_t i = 0; i < sizeof roots / sizeof *roots; i++)
    for (const char *p = strstr(file, roots[i]); p; p = strstr(p + 1, roots[i]))
      if (!best || p > best) best = p;
  return best ? best + 1 : file;
}

void lfs_fatal_at(const char *file, int line, const char *fmt, ...) {
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  fprintf(stderr,
          "[rank %d] %s:%d: %s\n"
          "[rank %d] hint: this is an internal fault of lfsearch, not a problem with your input;\n"
          "[rank %d]       please report it with the command line, the configuration and this message.\n",
          lfs_log_rank(), project_path(file), line, msg, lfs_log_rank(), lfs_log_rank());
  fflush(stderr);
  abort_job(LFS_EXIT_RUNTIME);
}

void lfs_fatal_mpi(const char *file, int line, const char *call, int rc) {
  char text[MPI_MAX_ERROR_STRING] = "unknown MPI error";
  int len = 0;
  MPI_Error_string(rc, text, &len);
  lfs_fatal_at(file, line, "%s failed: %s", call, text);
}

void lfs_user_error(const char *fmt, ...) {
  if (lfs_log_rank() == 0) {
    va_list ap;
    va_start(ap, fmt);
    fputs("lfsearch: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fflush(stderr);
  }
  run_exit_hooks();
  if (mpi_active()) MPI_Finalize();
  exit(LFS_EXIT_USAGE);
}

void lfs_user_error_local(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "[rank %d] lfsearch: error: ", lfs_log_rank());
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  fflush(stderr);
  run_exit_hooks();
  abort_job(LFS_EXIT_USAGE);
}

void *lfs_malloc_at(const char *file, int line, size_t bytes) {
  void *p = malloc(bytes ? bytes : 1);
  if (!p) lfs_fatal_at(file, line, "out of memory allocating %zu bytes", bytes);
  return p;
}

void *lfs_calloc_at(const char *file, int line, size_t count, size_t size) {
  void *p = calloc(count ? count : 1, size ? size : 1);
  if (!p) lfs_fatal_at(file, line, "out of memory allocating %zu x %zu bytes", count, size);
  return p;
}

void *lfs_grow_at(const char *file, int line, void *items, int count, int *cap, size_t size) {
  if (count < *cap) return items;
  const int grown = *cap ? 2 * *cap : 16;
  char *p = realloc(items, (size_t)grown * size);
  if (!p) lfs_fatal_at(file, line, "out of memory growing an array to %d x %zu bytes", grown, size);
  memset(p + (size_t)*cap * size, 0, (size_t)(grown - *cap) * size);
  *cap = grown;
  return p;
}

float *lfs_alloc_floats_at(const char *file, int line, size_t count) {
  size_t bytes = (count * sizeof(float) + 63) / 64 * 64;
  void *p = NULL;
  if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0)
    lfs_fatal_at(file, line, "out of memory allocating %zu floats", count);
  return p;
}

int lfs_fail(char *err, size_t errlen, const char *fmt, ...) {
  if (err && errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return -1;
}
