/* parity_models.h: a whole network's training-mode forward and backward pass, built on the
 * CPU reference backend and on the backend under test with the same parameters and inputs,
 * for tests/gpu/test_cuda_parity.c and tests/gpu/test_cuda_emulated.c. Compared: the
 * output, the parameter gradients, the running statistics batch norm updated, and the input
 * gradient, each within parity_expect_close_spread's bound, whose spread is what the CPU's
 * own result moves when the inputs and parameters change by one ulp (a deep network's
 * gradients are that sensitive to rounding). */
#ifndef LFS_TESTS_GPU_PARITY_MODELS_H
#define LFS_TESTS_GPU_PARITY_MODELS_H

#include "lfs/models.h"
#include "parity_ops.h"

/* One pass of `cfg` at `batch` images (dropout masks from seed 7, step 3) on both backends. */
void parity_check_model(parity_ctx *t, lfs_model_cfg cfg, int batch);

#endif
