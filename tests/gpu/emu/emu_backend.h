/* emu_backend.h: the CUDA backend run on the host (tests/gpu/emu/cuda_emu.h says how), for
 * C: a backend whose ops are the entry points of src/backend/cuda's memory, kernel, head and
 * convolution files (over the emulated cuDNN of cudnn_emu.h) compiled for the emulation, its
 * settings, what the emulation has counted, and its schedule. Memory is the emulation's
 * device memory; layouts are those of include/lfs/backend.h. */
#ifndef LFS_TESTS_EMU_BACKEND_H
#define LFS_TESTS_EMU_BACKEND_H

#include "lfs/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  long launches;           /* kernel launches asked for */
  long unchecked_launches; /* of them, not followed by cudaGetLastError (LFS_CUDA_LAUNCHED) */
  long kernels, blocks;    /* launches that ran, and their blocks */
  long vec4_loads, vec4_stores; /* 16-byte (float4) accesses */
} lfs_emu_counts;

typedef struct {
  long convolutions;   /* passes the emulated cuDNN ran (both APIs) */
  long timed_searches; /* cudnnFind... calls */
  long graph_plans;    /* graph-API execution plans made */
  long compiled_runs;  /* runs of a runtime-compiled engine */
} lfs_emu_dnn_counts;

/* The emulated CUDA backend (device 0, TF32 off), its convolutions through the emulated
 * cuDNN's legacy entry points, as the CUDA backend's by default. */
lfs_backend *lfs_emu_backend(void);
/* The convolution path from now on, as LFS_CUDA_CONV says it for the CUDA backend: gemm
 * (im2col + cuBLAS), find (the legacy algorithms by timing), any (non-deterministic ones
 * too), graph (the graph API first); all 0: the legacy algorithms by heuristics. Every
 * plan made so far is dropped. */
void lfs_emu_set_conv(int gemm, int find, int any, int graph);
void lfs_emu_set_tf32(int on);
/* Graph-API passes or calls that took the legacy path (the context's count). */
int lfs_emu_graph_fallbacks(void);
lfs_emu_dnn_counts lfs_emu_dnn_counts_now(void);
/* The counts so far; work still queued has not run (a download or synchronize runs it). */
lfs_emu_counts lfs_emu_counts_now(void);
/* From the next launch on (what is queued runs first): a block's threads in an order
 * shuffled at every round (else in order), blocks in reverse order (else in order). Starts
 * as EMU_SHUFFLE=1 and EMU_REVERSE=1 in the environment say. */
void lfs_emu_set_schedule(int shuffle_threads, int reverse_blocks);

#ifdef __cplusplus
}
#endif

#endif
