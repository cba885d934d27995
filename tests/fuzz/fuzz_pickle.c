/* fuzz_pickle.c: libFuzzer target for the pickle parser (built by run-fuzz.sh;
 * the work is in fuzz_targets.c, shared with test_fuzz_regress). */
#include <stddef.h>
#include <stdint.h>

#include "fuzz_targets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lfs_fuzz_pickle(data, size);
  return 0;
}
