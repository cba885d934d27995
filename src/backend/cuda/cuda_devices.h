/* cuda_devices.h: C-callable device queries implemented in devices.cu.
 * Free of MPI and HDF5 so that nvcc can compile what includes it. */
#ifndef LFS_CUDA_DEVICES_H
#define LFS_CUDA_DEVICES_H

#include <stddef.h>

#include "lfs/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

int lfs_cuda_devices_list(lfs_device_info *out, int max, char *why, size_t whylen);
const char *lfs_cuda_runtime_version(void);

#ifdef __cplusplus
}
#endif

#endif
