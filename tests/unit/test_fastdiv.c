/* test_fastdiv.c: the CUDA kernels' division by a run-time divisor
 * (src/backend/cuda/fastdiv.h) equals integer division for every divisor up to
 * 70,000 (every channel count and plane size a network has, and more) on edge
 * and random numerators, and for large divisors, with the same header code
 * the kernels run, in its host form. */
#include <inttypes.h>
#include <stdio.h>

#include "backend/cuda/fastdiv.h"

static int failures;

static void check(uint32_t n, uint32_t d) {
  const lfs_fastdiv f = lfs_fastdiv_make(d);
  const uint32_t q = lfs_fastdiv_div(n, f), r = lfs_fastdiv_mod(n, f);
  if (q != n / d || r != n % d) {
    if (failures++ < 10)
      printf("FAIL %" PRIu32 " / %" PRIu32 ": got %" PRIu32 " rem %" PRIu32 ", want %" PRIu32
             " rem %" PRIu32 "\n", n, d, q, r, n / d, n % d);
  }
}

static uint64_t state = 0x9e3779b97f4a7c15u;
static uint32_t next(void) { /* xorshift64*: numerators only, any sequence will do */
  state ^= state >> 12, state ^= state << 25, state ^= state >> 27;
  return (uint32_t)((state * 0x2545f4914f6cdd1du) >> 32);
}

int main(void) {
  long checks = 0;
  for (uint32_t d = 1; d <= 70000; d++) {
    const uint32_t edges[] = {0, 1, d - 1, d, d + 1, 2 * d - 1, 2 * d, UINT32_MAX, UINT32_MAX - 1,
                              UINT32_MAX / d * d, UINT32_MAX / d * d - 1, 1u << 31, (1u << 31) - 1};
    for (size_t i = 0; i < sizeof edges / sizeof *edges; i++) check(edges[i], d), checks++;
    for (int i = 0; i < 64; i++) check(next(), d), checks++;
  }
  const uint32_t large[] = {65535, 65536, 65537, 100003, 1u << 20, (1u << 31) - 1, 1u << 31,
                            (1u << 31) + 1, 3000000019u, UINT32_MAX - 1, UINT32_MAX};
  for (size_t k = 0; k < sizeof large / sizeof *large; k++)
    for (int i = 0; i < 100000; i++) check(next(), large[k]), checks++;
  printf("%ld divisions, %d wrong\n", checks, failures);
  return failures ? 1 : 0;
}
