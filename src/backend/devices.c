/* devices.c: accelerator discovery; reports none when CUDA is not compiled in. */
#include <stdio.h>

#include "lfs/backend.h"

#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#ifdef HAVE_CUDA
#include "backend/cuda/cuda_devices.h"
#endif

int lfs_devices_list(lfs_device_info *out, int max, char *why, size_t whylen) {
#ifdef HAVE_CUDA
  return lfs_cuda_devices_list(out, max, why, whylen);
#else
  (void)out;
  (void)max;
  if (why) snprintf(why, whylen, "this build has no CUDA support (configure --with-cuda)");
  return 0;
#endif
}

const char *lfs_devices_runtime(void) {
#ifdef HAVE_CUDA
  return lfs_cuda_runtime_version();
#else
  return "none";
#endif
}
