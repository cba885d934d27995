/* test_cuda_parity.c: every op of the CUDA backend against the CPU reference
 * backend on the same inputs, then a whole training-mode forward and backward
 * pass of tiny (with dropout) and of r18 built on each backend with the same
 * parameters; convolutions through cuDNN, through im2col + cuBLAS and through
 * cuDNN's graph API; the margin head for every loss (also at 100,003 classes).
 * TF32 is off, so the GPU computes in float32 like the CPU and the tolerance
 * is one of float32 rounding, scaled by each output's magnitude: |gpu - cpu|
 * <= rtol * max(1, max |cpu|); for whole networks also up to ten times what
 * the CPU's own result moves when inputs and parameters change by one ulp (a
 * deep network's gradients are that sensitive to rounding: in PyTorch too,
 * r18's float32 and float64 gradients can differ by 4e-3 of their scale).
 * Dropout masks must match exactly (the same Philox stream). Batch norm's
 * statistics are checked alone and with a stand-in group sum (synchronised
 * BN's host round trip). Exits 77 (SKIP) where CUDA is not built or no GPU is
 * usable. With `--against cpu-staged` the same checks run against the CPU
 * kernels behind device memory, which tests the test (and the staging) on any
 * machine: there every difference must be 0. The CUDA backend's own code also
 * runs on the CPU, on any machine, in tests/gpu/test_cuda_emulated, through the
 * host emulation of CUDA and cuDNN in tests/gpu/emu, on this test's cases and
 * tolerances: the op cases both run are tests/gpu/parity_ops.c's, the networks
 * tests/gpu/parity_models.c's. */
#include <stdio.h>
#include <string.h>

#include "lfs/backend.h"
#include "lfs/runtime.h"
#include "parity_models.h"
#include "parity_ops.h"

static lfs_backend *cpu, *gpu;
static int on_cuda; /* 0 when checking the test itself against cpu-staged */
/* The shared op cases (parity_ops.c): exact (every difference 0) where !on_cuda. */
static parity_ctx T;

static void test_convolutions(void) {
  printf(on_cuda ? "-- convolutions through cuDNN\n" : "-- convolutions\n");
  parity_test_convolutions(&T);
  if (!on_cuda) return;
  lfs_cuda_set_conv_gemm(gpu, 1);
  printf("-- convolutions through im2col + cuBLAS\n");
  parity_test_convolutions(&T);
  lfs_cuda_set_conv_gemm(gpu, 0);
  lfs_cuda_set_conv_graph(gpu, 1);
  printf("-- convolutions through cuDNN's graph API\n");
  const int fallbacks = lfs_cuda_conv_graph_fallbacks(gpu);
  parity_test_convolutions(&T);
  lfs_cuda_set_conv_graph(gpu, 0);
  const int missed = lfs_cuda_conv_graph_fallbacks(gpu) - fallbacks;
  parity_count(&T, !missed);
  if (missed) {
    printf("FAIL graph API: %d passes fell back to the legacy path (warnings above)\n", missed);
  } else {
    printf("ok   graph API ran every pass of every geometry\n");
  }
}

int main(int argc, char **argv) {
  lfs_runtime_init(&argc, &argv);
  setvbuf(stdout, NULL, _IOLBF, 0); /* every line out before a fault can stop the program */
  char why[256] = "";
  cpu = lfs_backend_cpu();
  if (argc > 2 && !strcmp(argv[1], "--against") && !strcmp(argv[2], "cpu-staged")) {
    /* the test's own machinery on any machine: every check must hold exactly */
    gpu = lfs_backend_cpu_staged();
    printf("checking against cpu-staged (the CPU kernels behind device memory)\n");
  } else {
    gpu = lfs_backend_cuda(why, sizeof why);
    if (!gpu) {
      printf("SKIP: no CUDA backend (%s)\n", why);
      lfs_runtime_finalize();
      return 77;
    }
    on_cuda = 1;
    lfs_cuda_set_tf32(gpu, 0);
    printf("CUDA backend on GPU %d, TF32 off; %s\n", gpu->device, lfs_devices_runtime());
  }
  T.cpu = cpu, T.gpu = gpu, T.exact = !on_cuda;
  parity_test_elementwise(&T);
  parity_test_prelu(&T);
  parity_test_linear(&T);
  parity_test_l2norm(&T);
  parity_test_batchnorm(&T);
  test_convolutions();
  parity_test_head(&T);
  lfs_model_cfg tiny = {.arch = "tiny", .embedding = 64, .input = 32, .dropout = 0.2f};
  parity_check_model(&T, tiny, 8);
  lfs_model_cfg r18 = {.arch = "r18", .embedding = 512, .input = 112};
  parity_check_model(&T, r18, 4);
  printf("%d of %d checks passed\n", T.checks - T.failures, T.checks);
  lfs_runtime_finalize();
  return T.failures ? 1 : 0;
}
