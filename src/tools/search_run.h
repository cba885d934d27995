/* search_run.h: the state of one `lfsearch search` run shared by its command
 * (cmd_search.c: groups, epochs, policy updates) and its checkpoints
 * (search_checkpoint.c). */
#ifndef LFS_TOOLS_SEARCH_RUN_H
#define LFS_TOOLS_SEARCH_RUN_H

#include <mpi.h>
#include <stdint.h>

#include "lfs/config.h"
#include "lfs/head.h"
#include "lfs/policy.h"
#include "lfs/search_space.h"
#include "lfs/trainer.h"

typedef struct {
  lfs_config *cfg;
  char *config_text;
  const char *resume;
  char ckpt_dir[1024], runlog_path[1024];
  const char *reward_pairs, *test_pairs;
  int64_t epochs;
  int warmup, log_every, keep;
  int M, G, cand; /* candidates, ranks per candidate, this rank's candidate */
  MPI_Comm group;
  uint64_t seed;
  lfs_space space;
  lfs_policy policy;
  int random_per_step;
  lfs_head_cfg base_head;
} search_run;

/* One candidate's epoch so far (saved in a mid-epoch checkpoint). */
typedef struct {
  double loss_sum;
  int64_t steps;
  int diverged;
  double u[LFS_SPACE_MAX_DIM]; /* the point it trains at (random_softmax: the step-0 draw) */
} cand_epoch;

/* What every rank learns of every candidate after an epoch (group leaders' copies). */
typedef struct {
  double reward, test, loss;
  double u[LFS_SPACE_MAX_DIM];
} cand_report;

/* Collective. After an epoch (step 0): the shared state, written by rank 0.
 * Mid-epoch (step > 0, ce this rank's candidate's progress): each candidate's
 * state and progress under candidates/<i>/, through parallel HDF5 when the build
 * has it. Any failure stops every rank with the file named. */
void lfs_search_checkpoint(search_run *r, const lfs_trainer *t, int64_t epoch, int64_t step,
                           const cand_epoch *ce);
/* --resume: loads the policy and this candidate's state (and, mid-epoch, its
 * progress into ce); returns 1 if resumed, 0 for a fresh start. */
int lfs_search_resume(search_run *r, lfs_trainer *t, int64_t *epoch, int64_t *step, cand_epoch *ce);

#endif
