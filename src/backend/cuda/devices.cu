/* devices.cu: GPU discovery through the CUDA runtime API (never the driver API,
 * so the program starts on machines without libcuda). No GPU, no driver or a
 * driver too old for this runtime all mean "0 devices" with the reason. */
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#include <stdio.h>
#include <string.h>

#include "backend/cuda/cuda_devices.h"

extern "C" int lfs_cuda_devices_list(lfs_device_info *out, int max, char *why, size_t whylen) {
  int count = 0; /* cudaGetDeviceCount leaves it untouched on error */
  cudaError_t rc = cudaGetDeviceCount(&count);
  if (rc != cudaSuccess) {
    if (why) snprintf(why, whylen, "%s", cudaGetErrorString(rc));
    return 0;
  }
  if (count == 0 && why) snprintf(why, whylen, "the CUDA runtime reports no devices");
  int n = 0;
  for (int d = 0; d < count && n < max; d++) {
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, d) != cudaSuccess) continue;
    lfs_device_info *info = &out[n++];
    memset(info, 0, sizeof *info);
    snprintf(info->name, sizeof info->name, "%s", prop.name);
    info->ordinal = d;
    info->cc_major = prop.major;
    info->cc_minor = prop.minor;
    info->memory_gib = (double)prop.totalGlobalMem / (1024.0 * 1024.0 * 1024.0);
    info->multiprocessors = prop.multiProcessorCount;
  }
  return n;
}

extern "C" const char *lfs_cuda_runtime_version(void) {
  static char text[160];
  int runtime = 0, driver = 0;
  cudaRuntimeGetVersion(&runtime);
  cudaDriverGetVersion(&driver);
  int blas[3] = {0, 0, 0};
  cublasGetProperty(MAJOR_VERSION, &blas[0]);
  cublasGetProperty(MINOR_VERSION, &blas[1]);
  cublasGetProperty(PATCH_LEVEL, &blas[2]);
  size_t cudnn = cudnnGetVersion();
  snprintf(text, sizeof text, "CUDA runtime %d.%d, driver %d.%d, cuBLAS %d.%d.%d, cuDNN %zu.%zu.%zu",
           runtime / 1000, (runtime % 1000) / 10, driver / 1000, (driver % 1000) / 10, blas[0],
           blas[1], blas[2], cudnn / 10000, (cudnn % 10000) / 100, cudnn % 100);
  return text;
}
