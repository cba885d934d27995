/* test_channel_span.c: the CUDA per-channel reductions' cut of x [n, c, spatial]
 * into blocks (src/backend/cuda/channel_span.h), walked on the host exactly as
 * channel_partials_kernel walks it (256 threads, 4 groups in flight, groups of 4
 * values when the plane is a multiple of 4): every value of the tensor is read
 * exactly once, by a block of its own channel, no group of 4 straddles two
 * samples, and the number of blocks fills the device without going below the
 * minimum per block. Shapes: r50's and mbf's layers at batch 128 and odd ones. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/channel_span.h"

enum { THREADS = 256, UNROLL = 4 };

static int failures;

#define EXPECT(cond, ...)                   \
  do {                                      \
    if (!(cond)) {                          \
      if (failures++ < 20) {                \
        printf("FAIL %s: ", #cond);         \
        printf(__VA_ARGS__);                \
        printf("\n");                       \
      }                                     \
    }                                       \
  } while (0)

/* One group of `vec` values at the span's k-th value: marks each visit. */
static void visit(unsigned char *seen, const lfs_channel_span *s, uint32_t k, int vec, int n,
                  int c, int spatial, uint32_t ch) {
  const uint32_t at = lfs_channel_span_at(s, k);
  for (int l = 0; l < vec; l++) {
    const uint32_t i = at + (uint32_t)l;
    EXPECT(i == lfs_channel_span_at(s, k + (uint32_t)l), "%dx%dx%d: group at %u straddles", n,
           c, spatial, at);
    EXPECT(i < (uint32_t)n * c * spatial, "%dx%dx%d: index %u out of range", n, c, spatial, i);
    if (i >= (uint32_t)n * c * spatial) return;
    EXPECT(i / (uint32_t)spatial % (uint32_t)c == ch, "%dx%dx%d: index %u in channel %u's block",
           n, c, spatial, i, ch);
    seen[i]++;
  }
}

/* The kernel's loop for one block: the unrolled rounds, then the rest. */
static void walk_block(unsigned char *seen, const lfs_channel_span *s, int vec, int n, int c,
                       int spatial, uint32_t ch) {
  const uint32_t groups = s->count / (uint32_t)vec;
  EXPECT(groups * (uint32_t)vec == s->count, "%dx%dx%d: count %u not in groups of %d", n, c,
         spatial, s->count, vec);
  for (uint32_t t = 0; t < THREADS; t++) {
    uint32_t g = t;
    for (; g + (UNROLL - 1) * THREADS < groups; g += UNROLL * THREADS)
      for (uint32_t u = 0; u < UNROLL; u++)
        visit(seen, s, (g + u * THREADS) * (uint32_t)vec, vec, n, c, spatial, ch);
    for (; g < groups; g += THREADS) visit(seen, s, g * (uint32_t)vec, vec, n, c, spatial, ch);
  }
}

static void check_shape(int n, int c, int spatial, long long device_blocks) {
  const size_t count = (size_t)n * c * spatial;
  unsigned char *seen = calloc(count ? count : 1, 1);
  const int vec = spatial % 4 == 0 ? 4 : 1;
  const int splits = lfs_channel_splits(device_blocks, n, c, spatial);
  EXPECT(splits >= 1 && splits <= (n > 0 ? n : 1), "%dx%dx%d: %d splits", n, c, spatial, splits);
  if (splits > 1)
    EXPECT((long long)n * spatial / splits >= LFS_CHANNEL_MIN_PER_BLOCK,
           "%dx%dx%d: %d splits leave blocks of %lld values", n, c, spatial, splits,
           (long long)n * spatial / splits);
  if ((long long)c * splits < device_blocks && splits < n)
    EXPECT((long long)n * spatial / (splits + 1) < LFS_CHANNEL_MIN_PER_BLOCK,
           "%dx%dx%d: %d splits (%lld blocks) leave the device idle", n, c, spatial, splits,
           (long long)c * splits);
  const lfs_fastdiv plane = lfs_fastdiv_make((uint32_t)spatial);
  for (int ch = 0; ch < c; ch++)
    for (int sp = 0; sp < splits; sp++) {
      const lfs_channel_span s =
          lfs_channel_span_make((uint32_t)n, (uint32_t)c, plane, (uint32_t)splits, (uint32_t)sp,
                                (uint32_t)ch);
      walk_block(seen, &s, vec, n, c, spatial, (uint32_t)ch);
    }
  size_t wrong = 0;
  for (size_t i = 0; i < count; i++) wrong += seen[i] != 1;
  EXPECT(wrong == 0, "%dx%dx%d: %zu values not read exactly once", n, c, spatial, wrong);
  free(seen);
}

int main(void) {
  /* one H100/H200 wave: 132 SMs holding 4 or 8 blocks of 256 threads */
  const long long waves[] = {132 * 4, 132 * 8, 1};
  /* r50 (iresnet) at batch 128: stem, four stages, the head's BN2d; mbf's
   * depthwise stages; BN1d; and odd shapes (prime planes, fewer samples than
   * splits, a plane of 1) */
  const int shapes[][3] = {{128, 64, 12544}, {128, 64, 3136}, {128, 128, 784}, {128, 256, 196},
                           {128, 512, 49},   {128, 128, 3136}, {128, 512, 1},  {5, 24, 63},
                           {32, 8, 1000},    {7, 40, 1},       {3, 17, 49},    {1, 3, 4099},
                           {2, 1, 65536},    {9, 5, 12}};
  int checked = 0;
  for (size_t w = 0; w < sizeof waves / sizeof *waves; w++)
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++, checked++)
      check_shape(shapes[i][0], shapes[i][1], shapes[i][2], waves[w]);
  printf("%d shapes walked, %d failures\n", checked, failures);
  return failures ? 1 : 0;
}
