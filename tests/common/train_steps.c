/* train_steps.c: see train_steps.h. */
#include "train_steps.h"

#include <stdlib.h>

#include "lfs/philox.h"

void tu_train_steps(lfs_trainer *t, uint64_t seed, uint32_t stream, int steps) {
  const size_t image = 3 * (size_t)t->image_size * t->image_size;
  const size_t first = (size_t)t->rank * t->local_batch;
  float *x = lfs_trainer_input_alloc(t);
  int32_t *labels = malloc(sizeof(int32_t) * (size_t)t->local_batch);
  for (int s = 0; s < steps; s++) {
    const lfs_rng rng = lfs_rng_make(seed, LFS_RNG_TEST, stream, (uint32_t)s);
    for (size_t i = 0; i < (size_t)t->local_batch * image; i++)
      x[i] = 2.0f * lfs_rng_uniform(&rng, first * image + i) - 1.0f;
    for (int i = 0; i < t->local_batch; i++)
      labels[i] = (int32_t)lfs_rng_below(&rng, 1000000 + first + i, (uint32_t)t->K);
    lfs_trainer_step(t, x, labels, NULL);
  }
  lfs_trainer_input_free(t, x);
  free(labels);
}
