/* train_steps.h: training steps on reproducible random data, for the tests that
 * compare trainers (backends, collectives, broadcasts). */
#ifndef LFS_TEST_TRAIN_STEPS_H
#define LFS_TEST_TRAIN_STEPS_H

#include <stdint.h>

#include "lfs/trainer.h"

/* `steps` steps of t on images uniform in [-1, 1) and labels below t->K from
 * the Philox stream (seed, stream, step); each rank takes its slice of the
 * group's batch, so a group sees what one process would see. */
void tu_train_steps(lfs_trainer *t, uint64_t seed, uint32_t stream, int steps);

#endif
