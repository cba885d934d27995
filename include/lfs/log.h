/* log.h: rank-aware logging and the two kinds of failure.
 *
 * Internal faults (a failed library call, a broken invariant) print
 * "[rank r] file:line: message" plus a hint and abort the whole MPI job.
 * User errors (bad configuration, bad input file) are collective: every rank
 * reaches the same verdict, rank 0 prints it once, all ranks exit with code 2.
 * Works before MPI_Init and without MPI_Init (rank 0 of 1 then). */
#ifndef LFS_LOG_H
#define LFS_LOG_H

#include <stddef.h>

enum { LFS_EXIT_OK = 0, LFS_EXIT_RUNTIME = 1, LFS_EXIT_USAGE = 2, LFS_EXIT_SIGNAL = 3 };

typedef enum { LFS_LOG_QUIET = 0, LFS_LOG_INFO = 1, LFS_LOG_DEBUG = 2 } lfs_log_level;

void lfs_log_set_level(lfs_log_level level);
int lfs_log_rank(void);

/* Rank 0 only, to stdout. */
void lfs_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Every rank, to stderr, prefixed "[rank r] ". */
void lfs_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void lfs_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Writes a message into err[errlen] (when given) and returns -1: the error
 * convention of functions that report to their caller. */
int lfs_fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Internal fault: prints "[rank r] file:line: message" and a hint, then MPI_Abort(1). */
_Noreturn void lfs_fatal_at(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define lfs_fatal(...) lfs_fatal_at(__FILE__, __LINE__, __VA_ARGS__)
#define LFS_ASSERT(cond)                                                       \
  do {                                                                         \
    if (!(cond)) lfs_fatal("internal check failed: %s", #cond);                \
  } while (0)

/* Runs fn(arg) before a user error exits the process (up to 8 hooks; the last
 * registered runs first). For background threads that must stop before the
 * libraries they use are torn down at exit (the loader's prefetch thread). */
void lfs_on_user_exit(void (*fn)(void *), void *arg);
void lfs_on_user_exit_remove(void (*fn)(void *), void *arg);

/* Collective user error: rank 0 prints "lfsearch: error: message", every rank exits 2. */
_Noreturn void lfs_user_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* User error found by one rank only (e.g. a rank's own data slice): that rank prints
 * it and the job is aborted with exit code 2. */
_Noreturn void lfs_user_error_local(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Checked allocation: an allocation failure is an internal fault naming the size. */
void *lfs_malloc_at(const char *file, int line, size_t bytes);
void *lfs_calloc_at(const char *file, int line, size_t count, size_t size);
#define lfs_malloc(bytes) lfs_malloc_at(__FILE__, __LINE__, (bytes))
#define lfs_calloc(count, size) lfs_calloc_at(__FILE__, __LINE__, (count), (size))
/* Room for one more element in a growable array of `count` used of `*cap`
 * elements of `size` bytes: returns the (possibly moved) array, new slots zeroed. */
void *lfs_grow_at(const char *file, int line, void *items, int count, int *cap, size_t size);
#define lfs_grow(items, count, cap, size) lfs_grow_at(__FILE__, __LINE__, (items), (count), (cap), (size))
/* 64-byte aligned allocation for SIMD-friendly tensors; free with free(). */
float *lfs_alloc_floats_at(const char *file, int line, size_t count);
#define lfs_alloc_floats(count) lfs_alloc_floats_at(__FILE__, __LINE__, (count))

/* Checks an MPI return code. */
#define LFS_MPI_CHECK(call)                                                    \
  do {                                                                         \
    int lfs_mpi_rc_ = (call);                                                  \
    if (lfs_mpi_rc_ != 0) lfs_fatal_mpi(__FILE__, __LINE__, #call, lfs_mpi_rc_); \
  } while (0)
_Noreturn void lfs_fatal_mpi(const char *file, int line, const char *call, int rc);

#endif
