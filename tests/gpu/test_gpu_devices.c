/* test_gpu_devices.c: the device query agrees with the build. Without CUDA, or
 * with CUDA but no usable GPU, the query must report zero devices with a reason
 * and the test exits 77 (SKIP). With a GPU every reported device must have a
 * name, a compute capability of at least 7.5 (CUDA 13's oldest) and memory. */
#include <stdio.h>
#include <string.h>

#include "lfs/backend.h"

int main(void) {
  lfs_device_info devs[16];
  char why[256] = "";
  int n = lfs_devices_list(devs, 16, why, sizeof why);
  if (n == 0) {
    if (!why[0]) {
      fprintf(stderr, "FAIL: no devices and no reason given\n");
      return 1;
    }
    printf("SKIP: no GPU (%s); runtime: %s\n", why, lfs_devices_runtime());
    return 77;
  }
  int bad = 0;
  for (int i = 0; i < n; i++) {
    printf("GPU %d: %s cc %d.%d %.1f GiB %d SMs\n", devs[i].ordinal, devs[i].name, devs[i].cc_major,
           devs[i].cc_minor, devs[i].memory_gib, devs[i].multiprocessors);
    bad |= !devs[i].name[0] || devs[i].cc_major * 10 + devs[i].cc_minor < 75 ||
           devs[i].memory_gib <= 0.0 || devs[i].multiprocessors <= 0;
  }
  printf("runtime: %s\n", lfs_devices_runtime());
  return bad ? 1 : 0;
}
