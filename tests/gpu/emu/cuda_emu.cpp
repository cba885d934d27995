/* cuda_emu.cpp: the host emulation of CUDA that cuda_emu.h declares: the stream (a queue
 * run at synchronising calls), device and page-locked memory with their checks, the
 * kernels' threads as fibers scheduled block by block, barriers and warp exchanges, and
 * cuBLAS's SGEMM. Fibers start through ucontext and then switch with _setjmp/_longjmp,
 * which, unlike swapcontext, make no system call: a kernel of a few million threads that
 * each wait at a handful of barriers then takes seconds, not minutes. */
#undef _FORTIFY_SOURCE /* its longjmp check refuses jumps between the fibers' stacks */
#include "cuda_emu.h"

#include <setjmp.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>
#include <vector>

#ifndef _Noreturn
#define _Noreturn [[noreturn]]
#endif
extern "C" {
#include "lfs/log.h"
}
#include "emu_backend.h"

dim3 threadIdx, blockIdx, blockDim, gridDim;

struct lfs_emu_event {
  bool timing; /* not created with cudaEventDisableTiming */
  bool done;   /* recorded, and the stream has reached the record */
  double stamp;
};

namespace {

enum { MAX_THREADS = 1024, WARP = 32, STACK_BYTES = 256 * 1024 };

lfs_emu_counts counts;
bool shuffle_threads = getenv("EMU_SHUFFLE") && !strcmp(getenv("EMU_SHUFFLE"), "1");
bool reverse_blocks = getenv("EMU_REVERSE") && !strcmp(getenv("EMU_REVERSE"), "1");
cudaError_t last_error = cudaSuccess;
bool launch_unchecked;      /* the latest launch has not been followed by cudaGetLastError */
const char *running_kernel; /* NULL between kernels */

/* ---- memory ---- */

std::map<uintptr_t, size_t> device_blocks, pinned_blocks; /* start -> bytes */

bool inside(const std::map<uintptr_t, size_t> &blocks, const void *p, size_t bytes) {
  const uintptr_t at = (uintptr_t)p;
  auto it = blocks.upper_bound(at);
  if (it == blocks.begin()) return false;
  --it;
  return at >= it->first && at + bytes <= it->first + it->second;
}

bool is_device(const void *p, size_t bytes) { return inside(device_blocks, p, bytes); }

void expect_device(const void *p, size_t bytes, const char *call) {
  if (!is_device(p, bytes))
    lfs_fatal("emulated CUDA: %s: %zu bytes at %p are not inside one device allocation", call,
              bytes, p);
}

void expect_host(const void *p, size_t bytes, const char *call) {
  if (bytes && inside(device_blocks, p, 1))
    lfs_fatal("emulated CUDA: %s: %p is device memory where host memory was named", call, p);
}

void expect_copy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind,
                 const char *call) {
  const bool to_device = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
  const bool from_device = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
  if (to_device)
    expect_device(dst, bytes, call);
  else
    expect_host(dst, bytes, call);
  if (from_device)
    expect_device(src, bytes, call);
  else
    expect_host(src, bytes, call);
}

/* ---- the stream ---- */

std::vector<std::function<void()>> queued;
double clock_ms; /* the emulated clock (lfs_emu_advance_clock) */
std::set<cudaEvent_t> events;

/* A synchronising call: a launch before it without its check is counted, then everything
 * queued runs, in order. */
void drain() {
  if (launch_unchecked) counts.unchecked_launches++, launch_unchecked = false;
  for (size_t i = 0; i < queued.size(); i++) queued[i]();
  queued.clear();
}

void expect_stream(cudaStream_t stream, const char *call) {
  if (stream != 0 && stream != cudaStreamLegacy)
    lfs_fatal("emulated CUDA: %s on a stream other than the default one (not emulated)", call);
}

/* ---- threads as fibers ---- */

struct barrier {
  int expected, arrived;
  unsigned generation;
};

struct fiber {
  jmp_buf env;
  const barrier *waiting_on; /* NULL: runnable */
  unsigned waiting_generation;
  bool done;
};

fiber fibers[MAX_THREADS];
int fibers_made, fiber_starting, current;
jmp_buf scheduler;
const std::function<void()> *thread_body;
barrier block_barrier, warp_barriers[MAX_THREADS / WARP];
/* a warp's exchange slots, two sets used in turn: a lane that has passed one exchange
 * writes the other set while slower lanes still read this one */
unsigned char exchange_slots[MAX_THREADS / WARP][2][WARP][8];

void to_scheduler(int me) {
  if (!_setjmp(fibers[me].env)) _longjmp(scheduler, 1);
}

void fiber_main() {
  const int me = fiber_starting;
  to_scheduler(me); /* made: back to make_fiber; later, each resumption runs one thread */
  for (;;) {
    (*thread_body)();
    fibers[me].done = true;
    to_scheduler(me);
  }
}

/* Fiber t on its own stack, below which a page that faults stops an overflow. */
void make_fiber(int t) {
  const size_t guard = (size_t)sysconf(_SC_PAGESIZE);
  char *mem = (char *)mmap(NULL, guard + STACK_BYTES, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) lfs_fatal("emulated CUDA: no memory for a thread's stack");
  mprotect(mem, guard, PROT_NONE);
  ucontext_t start;
  getcontext(&start);
  start.uc_stack.ss_sp = mem + guard;
  start.uc_stack.ss_size = STACK_BYTES;
  start.uc_link = NULL;
  makecontext(&start, fiber_main, 0);
  fiber_starting = t;
  if (!_setjmp(scheduler)) setcontext(&start);
}

void resume(int t) {
  current = t;
  threadIdx = dim3((unsigned)t, 0, 0);
  if (!_setjmp(scheduler)) _longjmp(fibers[t].env, 1);
}

void wait_at(barrier &b) {
  if (++b.arrived == b.expected) { /* the last to arrive releases the others, and goes on */
    b.arrived = 0;
    b.generation++;
    return;
  }
  fibers[current].waiting_on = &b;
  fibers[current].waiting_generation = b.generation;
  to_scheduler(current);
}

unsigned shuffle_state = 12345;

/* The order of a round over the block's threads. */
void round_order(std::vector<int> &order, int threads) {
  order.resize(threads);
  for (int t = 0; t < threads; t++) order[t] = t;
  if (!shuffle_threads) return;
  for (int t = threads - 1; t > 0; t--) {
    shuffle_state = shuffle_state * 1103515245u + 12345u;
    std::swap(order[t], order[(shuffle_state >> 8) % (unsigned)(t + 1)]);
  }
}

/* Rounds over the block's threads, each running until it waits or ends, until all have
 * ended; a round in which none could run is a barrier some thread never reaches. */
void run_block(int threads) {
  for (int t = 0; t < threads; t++) fibers[t].done = false, fibers[t].waiting_on = NULL;
  block_barrier = barrier{threads, 0, 0};
  for (int w = 0; w < threads / WARP; w++) warp_barriers[w] = barrier{WARP, 0, 0};
  static std::vector<int> order;
  int live = threads;
  while (live) {
    round_order(order, threads);
    int ran = 0;
    for (int t : order) {
      fiber &f = fibers[t];
      if (f.done || (f.waiting_on && f.waiting_on->generation == f.waiting_generation)) continue;
      f.waiting_on = NULL;
      resume(t);
      ran++;
      live -= f.done;
    }
    if (!ran)
      lfs_fatal("emulated CUDA: kernel %s, block (%u, %u): %d of its %d threads wait at a "
                "barrier (__syncthreads or a warp shuffle) that the others never reach",
                running_kernel, blockIdx.x, blockIdx.y, live, threads);
  }
}

void run_kernel(const char *kernel, dim3 grid, dim3 block, const std::function<void()> &thread) {
  while (fibers_made < (int)block.x) make_fiber(fibers_made++);
  running_kernel = kernel;
  thread_body = &thread;
  gridDim = grid, blockDim = block;
  counts.kernels++;
  for (unsigned i = 0; i < grid.y; i++)
    for (unsigned j = 0; j < grid.x; j++) {
      blockIdx = reverse_blocks ? dim3(grid.x - 1 - j, grid.y - 1 - i, 0) : dim3(j, i, 0);
      counts.blocks++;
      run_block((int)block.x);
    }
  running_kernel = NULL;
}

/* ---- SGEMM ---- */

float element(const float *m, cublasOperation_t op, int ld, int row, int col) {
  return op == CUBLAS_OP_N ? m[row + (size_t)col * ld] : m[col + (size_t)row * ld];
}

/* Column j of C, each element's products added in order of l, in double. */
void gemm_column(std::vector<double> &acc, cublasOperation_t op_a, cublasOperation_t op_b, int m,
                 int k, const float *a, int lda, const float *b, int ldb, int j) {
  acc.assign((size_t)m, 0.0);
  if (op_a == CUBLAS_OP_N) { /* A's columns are contiguous: add them scaled, one at a time */
    for (int l = 0; l < k; l++) {
      const double bl = element(b, op_b, ldb, l, j);
      const float *col = a + (size_t)l * lda;
      for (int i = 0; i < m; i++) acc[i] += (double)col[i] * bl;
    }
    return;
  }
  for (int i = 0; i < m; i++) {
    const float *row = a + (size_t)i * lda;
    double sum = 0.0;
    for (int l = 0; l < k; l++) sum += (double)row[l] * element(b, op_b, ldb, l, j);
    acc[i] = sum;
  }
}

} // namespace

/* ---- what the kernels call ---- */

void lfs_emu_vec4_access(const void *p, int store) {
  if ((uintptr_t)p & 15)
    lfs_fatal("emulated CUDA: kernel %s: a 16-byte %s at %p, not 16-byte aligned (a GPU "
              "faults)", running_kernel ? running_kernel : "(none)", store ? "store" : "load", p);
  if (store)
    counts.vec4_stores++;
  else
    counts.vec4_loads++;
}

void lfs_emu_syncthreads() { wait_at(block_barrier); }

void lfs_emu_warp_exchange(unsigned mask, const void *mine, void *out, size_t size, int src) {
  if (mask != 0xffffffffu || src < 0)
    lfs_fatal("emulated CUDA: kernel %s: a shuffle within part of a warp (not emulated)",
              running_kernel);
  const int warp = (int)threadIdx.x / WARP, lane = (int)threadIdx.x % WARP;
  barrier &b = warp_barriers[warp];
  unsigned char(*slots)[8] = exchange_slots[warp][b.generation & 1];
  memcpy(slots[lane], mine, size);
  wait_at(b);
  memcpy(out, slots[src], size);
}

void lfs_emu_enqueue_launch(const char *kernel, lfs_emu_launch_config c,
                            std::function<void()> thread) {
  if (launch_unchecked) counts.unchecked_launches++;
  launch_unchecked = true;
  counts.launches++;
  expect_stream(c.stream, kernel);
  if (c.shared_bytes) lfs_fatal("emulated CUDA: %s: dynamic shared memory (not emulated)", kernel);
  const dim3 g = c.grid, b = c.block;
  if (!b.x || !b.y || !b.z || (size_t)b.x * b.y * b.z > MAX_THREADS || !g.x || !g.y || !g.z ||
      g.x > 0x7fffffffu || g.y > 65535 || g.z > 65535) {
    last_error = cudaErrorInvalidConfiguration; /* as CUDA: the launch fails, nothing runs */
    return;
  }
  if (b.y != 1 || b.z != 1 || b.x % WARP || g.z != 1)
    lfs_fatal("emulated CUDA: %s: block (%u, %u, %u) or grid (%u, %u, %u): only blocks of (x, "
              "1, 1) threads, x a multiple of 32, and grids of (x, y, 1) are emulated", kernel,
              b.x, b.y, b.z, g.x, g.y, g.z);
  queued.push_back([kernel, g, b, thread]() { run_kernel(kernel, g, b, thread); });
}

void lfs_emu_check_kernel_pointer(const char *kernel, int argument, const void *p) {
  if (p && !inside(device_blocks, p, 0))
    lfs_fatal("emulated CUDA: kernel %s: argument %d (%p) is not device memory", kernel,
              argument + 1, p);
}

/* ---- the runtime API ---- */

const char *cudaGetErrorString(cudaError_t error) {
  switch (error) {
  case cudaSuccess: return "no error";
  case cudaErrorInvalidValue: return "invalid argument";
  case cudaErrorMemoryAllocation: return "out of memory";
  case cudaErrorInvalidConfiguration: return "invalid configuration argument";
  case cudaErrorInvalidResourceHandle: return "invalid resource handle";
  case cudaErrorNotReady: return "device not ready";
  }
  return "unknown error";
}

cudaError_t cudaGetLastError() {
  const cudaError_t e = last_error;
  last_error = cudaSuccess;
  launch_unchecked = false;
  return e;
}

/* 256-byte aligned, as cudaMalloc's, and NaN throughout. */
cudaError_t cudaMalloc(void **p, size_t bytes) {
  if (posix_memalign(p, 256, bytes ? bytes : 1)) return cudaErrorMemoryAllocation;
  memset(*p, 0xff, bytes);
  device_blocks[(uintptr_t)*p] = bytes;
  return cudaSuccess;
}

cudaError_t cudaFree(void *p) {
  drain();
  if (!p) return cudaSuccess;
  if (!device_blocks.erase((uintptr_t)p))
    lfs_fatal("emulated CUDA: cudaFree of %p, which cudaMalloc did not return", p);
  free(p);
  return cudaSuccess;
}

cudaError_t cudaMallocHost(void **p, size_t bytes) {
  if (posix_memalign(p, 256, bytes ? bytes : 1)) return cudaErrorMemoryAllocation;
  memset(*p, 0xff, bytes);
  pinned_blocks[(uintptr_t)*p] = bytes;
  return cudaSuccess;
}

cudaError_t cudaFreeHost(void *p) {
  drain();
  if (!pinned_blocks.erase((uintptr_t)p))
    lfs_fatal("emulated CUDA: cudaFreeHost of %p, which cudaMallocHost did not return", p);
  free(p);
  return cudaSuccess;
}

cudaError_t cudaMemset(void *p, int value, size_t bytes) {
  expect_device(p, bytes, "cudaMemset");
  queued.push_back([p, value, bytes]() { memset(p, value, bytes); });
  return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void *p, int value, size_t bytes, cudaStream_t stream) {
  expect_stream(stream, "cudaMemsetAsync");
  return cudaMemset(p, value, bytes);
}

cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes) {
  *free_bytes = *total_bytes = 0;
  return cudaSuccess;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind) {
  expect_copy(dst, src, bytes, kind, "cudaMemcpy");
  drain();
  memcpy(dst, src, bytes);
  return cudaSuccess;
}

/* From or to page-locked memory the copy waits in the stream and reads its source when it
 * runs; with pageable memory CUDA copies at once. */
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t stream) {
  expect_stream(stream, "cudaMemcpyAsync");
  expect_copy(dst, src, bytes, kind, "cudaMemcpyAsync");
  const void *host = kind == cudaMemcpyHostToDevice ? src : dst;
  if (kind == cudaMemcpyDeviceToDevice || inside(pinned_blocks, host, bytes)) {
    queued.push_back([dst, src, bytes]() { memcpy(dst, src, bytes); });
    return cudaSuccess;
  }
  drain();
  memcpy(dst, src, bytes);
  return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  expect_stream(stream, "cudaStreamSynchronize");
  drain();
  return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t *event) {
  return cudaEventCreateWithFlags(event, cudaEventDefault);
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t *event, unsigned flags) {
  if (flags & ~(unsigned)cudaEventDisableTiming) return cudaErrorInvalidValue;
  *event = new lfs_emu_event{!(flags & cudaEventDisableTiming), false, 0.0};
  events.insert(*event);
  return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t event) {
  if (!events.erase(event)) return cudaErrorInvalidResourceHandle;
  drain(); /* a record still queued must not write into freed memory */
  delete event;
  return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  expect_stream(stream, "cudaEventRecord");
  if (!events.count(event)) return cudaErrorInvalidResourceHandle;
  queued.push_back([event]() { event->done = true, event->stamp = clock_ms; });
  return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  if (!events.count(event)) return cudaErrorInvalidResourceHandle;
  drain();
  return cudaSuccess;
}

cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t stop) {
  if (!events.count(start) || !events.count(stop)) return cudaErrorInvalidResourceHandle;
  if (!start->timing || !stop->timing) return cudaErrorInvalidResourceHandle;
  if (!start->done || !stop->done) return cudaErrorNotReady;
  *ms = (float)(stop->stamp - start->stamp);
  return cudaSuccess;
}

cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned flags) {
  expect_stream(stream, "cudaStreamWaitEvent");
  if (!events.count(event)) return cudaErrorInvalidResourceHandle;
  return flags ? cudaErrorInvalidValue : cudaSuccess;
}

cudaError_t cudaDeviceSynchronize() {
  drain();
  return cudaSuccess;
}

/* ---- for the emulation's own files ---- */

void lfs_emu_enqueue(std::function<void()> work) { queued.push_back(std::move(work)); }

void lfs_emu_expect_device(const void *p, size_t bytes, const char *call) {
  expect_device(p, bytes, call);
}

void lfs_emu_advance_clock(double ms) { clock_ms += ms; }

/* ---- cuBLAS ---- */

const char *cublasGetStatusString(cublasStatus_t status) {
  return status == CUBLAS_STATUS_SUCCESS ? "CUBLAS_STATUS_SUCCESS" : "CUBLAS_STATUS_INVALID_VALUE";
}

cublasStatus_t cublasSgemm(cublasHandle_t handle, cublasOperation_t op_a, cublasOperation_t op_b,
                           int m, int n, int k, const float *alpha, const float *a, int lda,
                           const float *b, int ldb, const float *beta, float *c, int ldc) {
  const int rows_a = op_a == CUBLAS_OP_N ? m : k, rows_b = op_b == CUBLAS_OP_N ? k : n;
  if (!handle || m < 0 || n < 0 || k < 0 || lda < (rows_a > 1 ? rows_a : 1) ||
      ldb < (rows_b > 1 ? rows_b : 1) || ldc < (m > 1 ? m : 1))
    return CUBLAS_STATUS_INVALID_VALUE;
  if (!m || !n) return CUBLAS_STATUS_SUCCESS;
  const size_t cols_a = op_a == CUBLAS_OP_N ? k : m, cols_b = op_b == CUBLAS_OP_N ? n : k;
  if (k) {
    expect_device(a, sizeof(float) * ((cols_a - 1) * lda + rows_a), "cublasSgemm A");
    expect_device(b, sizeof(float) * ((cols_b - 1) * ldb + rows_b), "cublasSgemm B");
  }
  expect_device(c, sizeof(float) * ((size_t)(n - 1) * ldc + m), "cublasSgemm C");
  const double al = *alpha, be = *beta; /* host scalars: read at the call */
  queued.push_back([=]() {
    std::vector<double> acc;
    for (int j = 0; j < n; j++) {
      gemm_column(acc, op_a, op_b, m, k, a, lda, b, ldb, j);
      float *cj = c + (size_t)j * ldc;
      for (int i = 0; i < m; i++) cj[i] = (float)(al * acc[i] + (be == 0.0 ? 0.0 : be * cj[i]));
    }
  });
  return CUBLAS_STATUS_SUCCESS;
}

/* ---- for C callers (emu_backend.h) ---- */

extern "C" lfs_emu_counts lfs_emu_counts_now(void) { return counts; }

extern "C" void lfs_emu_set_schedule(int shuffle, int reverse) {
  drain(); /* what is queued runs as it was launched */
  shuffle_threads = shuffle != 0;
  reverse_blocks = reverse != 0;
}
