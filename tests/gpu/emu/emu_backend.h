/* emu_backend.h: the CUDA backend's kernels run on the host (tests/gpu/emu/cuda_emu.h says
 * how), for C: a backend whose ops are the entry points of cuda_memory.cu, cuda_channel.cu,
 * cuda_norm.cu, cuda_pointwise.cu, cuda_head.cu and cuda_conv_gemm.cu compiled for the
 * emulation (convolutions as im2col + cuBLAS: cuDNN is not emulated), what the emulation has
 * counted, and its schedule. Memory is the emulation's device memory;
 * layouts are those of include/lfs/backend.h. */
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

/* The emulated CUDA backend (device 0, TF32 off, convolutions through im2col + cuBLAS). */
lfs_backend *lfs_emu_backend(void);
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
