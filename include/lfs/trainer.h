/* trainer.h: one candidate's training state and its step: the model graph, the
 * cosine head's class weights, SGD with momentum and the learning-rate schedule,
 * data parallel over the ranks of a communicator (gradients averaged, optional
 * synchronised BN). `lfsearch train` is one trainer over all ranks; the search
 * runs one per candidate group. Parameters, gradients and momentum are host
 * buffers (CPU backend). */
#ifndef LFS_TRAINER_H
#define LFS_TRAINER_H

#include <mpi.h>
#include <stdint.h>

#include "lfs/checkpoint.h"
#include "lfs/config.h"
#include "lfs/devcomm.h"
#include "lfs/eval.h"
#include "lfs/graph.h"
#include "lfs/head.h"
#include "lfs/models.h"
#include "lfs/optim.h"

typedef struct {
  MPI_Comm comm;
  int rank, ranks;
  int global_batch, local_batch, image_size;
  uint64_t seed;
  lfs_model_cfg model;
  char arch[16];
  lfs_graph g; /* built for [local_batch, 3, S, S] on [run] backend */
  /* Where a step works: the backend's memory. On the CPU backend `dev` aliases
   * the host arrays (g.params.data, opt.velocity, w, dw, vw, dfeat). On a device
   * backend ("staged") the whole training state lives on the device and the host
   * arrays are copies made when something on the host needs them (collectives
   * over several ranks without NCCL, clipping, checkpoints, the winner's broadcast
   * without NCCL); `host` is then a view of g.params with host copies of data and
   * grad. Those copies are scratch: read them only right after a download. */
  struct {
    float *velocity, *w, *dw, *vw, *dfeat;
    float *x[2]; /* input batches: a step's copy fills the one the last step is not reading */
  } dev;
  int x_slot; /* dev.x of the last step */
  lfs_params host;
  int staged;
  /* Staged on several ranks: the group's device collectives (gradient mean, BN
   * statistics), or NULL where there are none and they go through the host. */
  lfs_devcomm *devcomm;
  /* How the group's gradients are averaged, for lfs_trainer_announce: "" on
   * one rank; warn when a GPU run falls back to the host. */
  char gradient_path[320];
  int gradient_path_warn;
  /* lfs_trainer_broadcast_state's device collectives over `comm`, made on its
   * first call (tried: made or found unavailable). */
  struct {
    lfs_devcomm *dc;
    MPI_Comm comm;
    int tried;
  } bcast;
  float *feat; /* staged: host copy of the embeddings [local_batch, D] */
  int D, K;
  lfs_head_cfg head;
  float *w, *dw, *vw; /* head class weights, gradient, momentum [K, D] */
  float *dfeat;       /* [local_batch, D] */
  lfs_sgd opt;
  lfs_schedule sched;
  double clip_norm;
  double lr; /* of the last step */
  int64_t step; /* optimizer steps taken */
  int sync_bn;
} lfs_trainer;

/* Everything from the configuration ([run] seed, [data] batch_size and
 * image_size, [model], [head], [optim]); K classes; steps_per_epoch for the
 * schedule. Collective over comm. -1 with a message naming the key on a bad
 * value. */
int lfs_trainer_init(lfs_trainer *t, const lfs_config *cfg, int classes, int64_t steps_per_epoch,
                     MPI_Comm comm, char *err, size_t errlen);
void lfs_trainer_free(lfs_trainer *t);

/* Says how the gradients are averaged (on the device or through the host), on
 * the ranks that log; after the command's banner, which follows the init. */
void lfs_trainer_announce(const lfs_trainer *t);

/* A host buffer for one input batch [local_batch, 3, S, S], in the backend's
 * staging memory (page-locked on a GPU, so that a step's upload runs at full
 * speed); free with lfs_trainer_input_free. */
float *lfs_trainer_input_alloc(lfs_trainer *t);
void lfs_trainer_input_free(lfs_trainer *t, float *x);

/* One SGD step on this rank's slice: x [local_batch, 3, S, S], labels
 * [local_batch]. Returns the mean loss over the global batch (the same on every
 * rank), or NaN/Inf when it diverged (no update is applied then). */
double lfs_trainer_step(lfs_trainer *t, const float *x, const int32_t *labels,
                        lfs_head_stats *stats);

/* Verification (DESIGN §5) of the pair set at path with the current model in
 * eval mode: flip-summed, normalised embeddings, images spread over the ranks.
 * Collective. */
int lfs_trainer_verify(lfs_trainer *t, const char *path, lfs_verify_result *out, char *name,
                       size_t namelen, char *err, size_t errlen);

/* The whole training state as one float buffer of lfs_trainer_state_floats
 * floats: parameters and BN buffers [params.count], momentum [trainable_count],
 * head weight and its momentum [K * D each]. The step count travels apart. */
size_t lfs_trainer_state_floats(const lfs_trainer *t);
void lfs_trainer_state_pack(const lfs_trainer *t, float *buf);
void lfs_trainer_state_unpack(lfs_trainer *t, const float *buf);
/* Every rank of comm takes root's state, step included (collective over comm;
 * the search hands the winning candidate to all). */
void lfs_trainer_broadcast_state(lfs_trainer *t, int root, MPI_Comm comm);

/* The state as checkpoint groups <prefix>model, <prefix>optim, <prefix>head and
 * the attribute optimizer_steps (= step) of the group prefix names; prefix is ""
 * (the root) or ends in '/' ("candidates/2/"). packed (from lfs_trainer_state_pack,
 * possibly another candidate's: same model) or NULL for t's own state. */
int lfs_trainer_write_state(const lfs_trainer *t, lfs_ckpt *h, const char *prefix,
                            const float *packed, int64_t step, char *err, size_t errlen);
int lfs_trainer_read_state(lfs_trainer *t, lfs_ckpt *h, const char *prefix, char *err,
                           size_t errlen);

/* Checkpoints: model, momentum, head weight and momentum, step. Writing is done by
 * rank 0 and followed by a barrier; reading by every rank. */
int lfs_trainer_save(lfs_trainer *t, const char *path, int64_t epoch, int64_t step,
                     const char *config_text, char *err, size_t errlen);
int lfs_trainer_load(lfs_trainer *t, const char *path, char *err, size_t errlen);

#endif
