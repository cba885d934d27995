/* cuda_emu.h: the part of CUDA that the CUDA backend (src/backend/cuda: cuda_internal.h,
 * the memory, kernel and convolution files) uses, on the host, so that its code runs
 * unchanged on any machine (tests/gpu/test_cuda_emulated); cuDNN is cudnn_emu.h's, included
 * at the end. It is force-included (-include) into the C++ that tests/gpu/emu/emulate.sh
 * makes of them, as nvcc includes cuda_runtime.h.
 *
 * What it emulates. A launch runs its blocks one after another; a block's threads are
 * fibers that each run until they wait at __syncthreads or a warp shuffle, or end, so the
 * barriers are real: a thread that reads another's shared memory too early sees the old
 * value, and a barrier that some thread of the block (or warp) never reaches stops the
 * program, naming the kernel. Device memory comes from cudaMalloc, filled with 0xff bytes
 * (NaN) so that reads of what nothing wrote show; copies must stay inside their
 * allocations; a kernel's pointer arguments must point into device memory; 16-byte
 * (float4) accesses must be aligned, and are counted, so a test can tell which path ran.
 * One stream, the legacy default one (which a context's copy stream must name): launches,
 * cudaMemset, cudaMemsetAsync, cudaMemcpyAsync, event records, cuBLAS and cuDNN calls
 * queue, and run at the next call that waits for the device (cudaMemcpy,
 * cudaStreamSynchronize, cudaEventSynchronize, cudaDeviceSynchronize, cudaFree,
 * cudaFreeHost, cudaEventDestroy), as on a GPU the host runs ahead of them; a launch's
 * own error (a bad grid) is reported by cudaGetLastError, and launches not followed by that
 * check are counted. cuBLAS: cublasSgemm alone, column-major, each dot product in double,
 * rounded once. cuDNN: see cudnn_emu.h.
 * EMU_SHUFFLE=1 in the environment shuffles the order of a block's threads afresh at every
 * round; EMU_REVERSE=1 runs blocks in reverse order (lfs_emu_set_schedule does the same).
 *
 * What it cannot. Timing and concurrency: blocks never overlap, so races between blocks
 * go unseen, and nothing says how fast a kernel is. The GPU's rounding: nvcc contracts
 * a * b + c into fused multiply-adds and its exp, log, sin... differ from the host's in the
 * last bits, while products here round on their own (-ffp-contract=off): the comparisons'
 * tolerances, not this file, cover the difference. Warp lockstep: a warp's threads are no
 * more in step than a block's (CUDA promises no more since Volta). Limits of shared
 * memory, registers and occupancy (the occupancy query answers 2048 / threads).
 *
 * Layout assumed: blocks of (x, 1, 1) threads, a multiple of 32 up to 1024; grids of
 * (x, y, 1); __shared__ arrays become function statics, which is right as long as one
 * block runs at a time; a 64-bit host. */
#ifndef LFS_TESTS_CUDA_EMU_H
#define LFS_TESTS_CUDA_EMU_H

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <tuple>
#include <type_traits>
#include <utility>

/* Device code's own branches (fastdiv.h's __umulhi, bn_moments.h's __dmul_rn) are taken. */
#define __CUDA_ARCH__ 900
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(...)

/* cuda_memory.cu, emulated, under other names, so that a CUDA build's library, linked
 * beside, keeps its own for its own kernels. */
#define lfs_cuda_fail lfs_emu_cuda_fail
#define lfs_cuda_malloc lfs_emu_cuda_malloc
#define lfs_cuda_alloc lfs_emu_cuda_alloc
#define lfs_cuda_free lfs_emu_cuda_free
#define lfs_cuda_upload lfs_emu_cuda_upload
#define lfs_cuda_download lfs_emu_cuda_download
#define lfs_cuda_upload_async lfs_emu_cuda_upload_async
#define lfs_cuda_host_alloc lfs_emu_cuda_host_alloc
#define lfs_cuda_host_free lfs_emu_cuda_host_free
#define lfs_cuda_synchronize lfs_emu_cuda_synchronize
#define lfs_cuda_reduce_scratch lfs_emu_cuda_reduce_scratch
#define lfs_cuda_stats_scratch lfs_emu_cuda_stats_scratch
#define lfs_cuda_workspace lfs_emu_cuda_workspace

struct dim3 {
  unsigned x, y, z;
  dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
extern dim3 threadIdx, blockIdx, blockDim, gridDim;

/* ---- device functions ---- */

void lfs_emu_vec4_access(const void *p, int store);
/* A 16-byte value: copying one out of memory is a vector load, assigning one to memory a
 * vector store (cuda_internal.h's lfs_cuda_load and lfs_cuda_store do exactly that). */
struct float4 {
  float x, y, z, w;
  float4(float x_, float y_, float z_, float w_) : x(x_), y(y_), z(z_), w(w_) {}
  float4(const float4 &o) : x(o.x), y(o.y), z(o.z), w(o.w) { lfs_emu_vec4_access(&o, 0); }
  float4 &operator=(const float4 &o) {
    lfs_emu_vec4_access(this, 1);
    x = o.x, y = o.y, z = o.z, w = o.w;
    return *this;
  }
};
static inline float4 make_float4(float x, float y, float z, float w) { return float4(x, y, z, w); }

static inline unsigned __umulhi(unsigned a, unsigned b) {
  return (unsigned)(((unsigned long long)a * b) >> 32);
}
/* Rounded on their own: never contracted into a fused multiply-add. */
static inline float __fmul_rn(float a, float b) {
  volatile float r = a * b;
  return r;
}
static inline float __fadd_rn(float a, float b) {
  volatile float r = a + b;
  return r;
}
static inline double __dmul_rn(double a, double b) {
  volatile double r = a * b;
  return r;
}
static inline double __dadd_rn(double a, double b) {
  volatile double r = a + b;
  return r;
}

void lfs_emu_syncthreads();
#define __syncthreads() lfs_emu_syncthreads()

/* The warp's exchange: every lane of the calling thread's warp publishes `size` bytes of
 * `mine`, waits for the others, and reads lane `src`'s into out. mask must name the whole
 * warp. Shuffles within parts of a warp (width < 32) are not emulated: src -1. */
void lfs_emu_warp_exchange(unsigned mask, const void *mine, void *out, size_t size, int src);
template <class T>
static inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  static_assert(sizeof(T) <= 8, "a shuffled value is at most 8 bytes");
  T out;
  lfs_emu_warp_exchange(mask, &v, &out, sizeof v,
                        width == 32 ? (int)(threadIdx.x % 32) ^ (lane_mask & 31) : -1);
  return out;
}
/* A lane whose source is past the warp's end keeps its own value. */
template <class T>
static inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  static_assert(sizeof(T) <= 8, "a shuffled value is at most 8 bytes");
  const int lane = (int)(threadIdx.x % 32), src = lane + (int)delta;
  T out;
  lfs_emu_warp_exchange(mask, &v, &out, sizeof v, width != 32 ? -1 : src < 32 ? src : lane);
  return out;
}

/* ---- the runtime API ---- */

typedef enum {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidResourceHandle = 400,
  cudaErrorNotReady = 600
} cudaError_t;
typedef struct lfs_emu_stream *cudaStream_t;
typedef struct lfs_emu_event *cudaEvent_t;
#define cudaStreamLegacy ((cudaStream_t)0x1)
enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3
};

const char *cudaGetErrorString(cudaError_t error);
cudaError_t cudaGetLastError();
cudaError_t cudaMalloc(void **p, size_t bytes);
cudaError_t cudaFree(void *p);
cudaError_t cudaMallocHost(void **p, size_t bytes);
cudaError_t cudaFreeHost(void *p);
cudaError_t cudaMemset(void *p, int value, size_t bytes);
cudaError_t cudaMemsetAsync(void *p, int value, size_t bytes, cudaStream_t stream);
/* Nothing to tell: 0 bytes free of 0. */
cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t stream);
cudaError_t cudaStreamSynchronize(cudaStream_t stream);
/* Events: with one stream, work is already in order, so waiting for one only checks the
 * arguments. Recording one stamps it, when the stream reaches it, with the emulated clock,
 * which only the emulated cuDNN advances (by each algorithm's made-up cost): elapsed
 * times compare cuDNN's algorithms and nothing else. */
enum { cudaEventDefault = 0, cudaEventDisableTiming = 2 };
enum { cudaStreamNonBlocking = 1 };
cudaError_t cudaEventCreate(cudaEvent_t *event);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *event, unsigned flags);
cudaError_t cudaEventDestroy(cudaEvent_t event);
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream);
cudaError_t cudaEventSynchronize(cudaEvent_t event);
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t stop);
cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned flags);
cudaError_t cudaDeviceSynchronize();
/* What an H100 or H200 holds: 2048 threads per multiprocessor. */
template <class Kernel>
cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int *blocks, Kernel, int threads,
                                                          size_t shared_bytes) {
  (void)shared_bytes;
  if (threads < 1 || threads > 1024) return cudaErrorInvalidValue;
  *blocks = 2048 / threads;
  return cudaSuccess;
}

/* ---- cuBLAS and cuDNN: the handles the context holds, and SGEMM ---- */

typedef struct lfs_emu_blas *cublasHandle_t;
typedef struct lfs_emu_dnn *cudnnHandle_t;
typedef enum { CUBLAS_STATUS_SUCCESS = 0, CUBLAS_STATUS_INVALID_VALUE = 7 } cublasStatus_t;
typedef enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 } cublasOperation_t;
const char *cublasGetStatusString(cublasStatus_t status);
/* C = alpha op(A) op(B) + beta C, column-major; alpha and beta on the host; C is not read
 * where beta is 0. */
cublasStatus_t cublasSgemm(cublasHandle_t handle, cublasOperation_t op_a, cublasOperation_t op_b,
                           int m, int n, int k, const float *alpha, const float *a, int lda,
                           const float *b, int ldb, const float *beta, float *c, int ldc);

/* ---- for the emulation's own files (cudnn_emu.cpp) ---- */

/* Queues host work in stream order; it runs at the next synchronising call. */
void lfs_emu_enqueue(std::function<void()> work);
/* Stops the program, naming `call`, unless bytes at p lie inside one device allocation. */
void lfs_emu_expect_device(const void *p, size_t bytes, const char *call);
/* From queued work: the emulated clock moves on by ms. */
void lfs_emu_advance_clock(double ms);

/* ---- launches: emulate.sh turns k<<<config>>>(args) into
 * LFS_EMU_LAUNCH("k", (&k), lfs_emu_config(config), args) ---- */

struct lfs_emu_launch_config {
  dim3 grid, block;
  size_t shared_bytes; /* dynamic shared memory: not emulated, so 0 */
  cudaStream_t stream; /* 0 or cudaStreamLegacy: the one stream emulated */
};
static inline lfs_emu_launch_config lfs_emu_config(dim3 grid, dim3 block, size_t shared_bytes = 0,
                                                   cudaStream_t stream = 0) {
  return lfs_emu_launch_config{grid, block, shared_bytes, stream};
}

/* Queues a launch whose `thread` runs one thread of the kernel; a bad configuration is the
 * launch's error (cudaGetLastError) and runs nothing. */
void lfs_emu_enqueue_launch(const char *kernel, lfs_emu_launch_config config,
                            std::function<void()> thread);
/* Stops the program where a kernel's pointer argument is not device memory (or NULL). */
void lfs_emu_check_kernel_pointer(const char *kernel, int argument, const void *p);

template <class T>
static void lfs_emu_check_argument(const char *kernel, int argument, const T &v) {
  if constexpr (std::is_pointer<T>::value) lfs_emu_check_kernel_pointer(kernel, argument, v);
  (void)kernel, (void)argument, (void)v;
}

/* The arguments are converted to the kernel's parameter types (NULL included) and copied at
 * the launch, as CUDA does. */
template <class Kernel> struct lfs_emu_arguments;
template <class... P> struct lfs_emu_arguments<void (*)(P...)> {
  typedef std::tuple<typename std::decay<P>::type...> type;
  static type make(P... p) { return type(p...); }
};

template <class... P, size_t... I>
static void lfs_emu_check_arguments(const char *kernel, const std::tuple<P...> &args,
                                    std::index_sequence<I...>) {
  (lfs_emu_check_argument(kernel, (int)I, std::get<I>(args)), ...);
}

template <class... P>
static void lfs_emu_launch(const char *kernel, void (*k)(P...), lfs_emu_launch_config config,
                           std::tuple<typename std::decay<P>::type...> args) {
  lfs_emu_check_arguments(kernel, args, std::index_sequence_for<P...>());
  lfs_emu_enqueue_launch(kernel, config, [k, args]() { std::apply(k, args); });
}

#define LFS_EMU_LAUNCH(name, k, config, ...) \
  lfs_emu_launch(name, k, config, lfs_emu_arguments<decltype(k)>::make(__VA_ARGS__))

#include "cudnn_emu.h"

#endif
