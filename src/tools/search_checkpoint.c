/* search_checkpoint.c: the checkpoints of `lfsearch search` (DESIGN §6, §8): the
 * policy under /policy and /search, the shared state after every epoch, and on a
 * stop signal every candidate's state and place in the epoch under
 * candidates/<i>/ (parallel HDF5: each group leader writes its own candidate;
 * serial HDF5: rank 0 gathers them), and resuming from either kind. */
#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lfs/checkpoint.h"
#include "lfs/log.h"
#include "lfs/runtime.h"
#include "lfs/timer.h"
#include "tools/run_common.h"
#include "tools/search_run.h"

/* The policy's arrays [d] as checkpoint names (policy/<name>). */
typedef struct {
  const char *name;
  double *data;
} policy_array;

static int policy_arrays(lfs_policy *p, policy_array *out) {
  const policy_array all[] = {{"policy/mu", p->mu},           {"policy/sigma", p->sigma},
                              {"policy/adam_m_mu", p->m_mu},    {"policy/adam_v_mu", p->v_mu},
                              {"policy/adam_m_sigma", p->m_sigma}, {"policy/adam_v_sigma", p->v_sigma}};
  memcpy(out, all, sizeof all);
  return (int)(sizeof all / sizeof all[0]);
}

static int write_policy(search_run *r, lfs_ckpt *h, char *err, size_t errlen) {
  policy_array arrays[8];
  const int n = policy_arrays(&r->policy, arrays);
  const int64_t d = r->policy.dim;
  for (int i = 0; i < n; i++)
    if (lfs_ckpt_write_array(h, arrays[i].name, LFS_CKPT_F64, 1, &d, arrays[i].data, err, errlen))
      return -1;
  return lfs_ckpt_set_int(h, "policy", "adam_steps", r->policy.steps, err, errlen) ||
                 lfs_ckpt_set_text(h, "search", "space", lfs_space_name(r->space.kind), err, errlen) ||
                 lfs_ckpt_set_int(h, "search", "candidates", r->M, err, errlen) ||
                 lfs_ckpt_set_int(h, "search", "dim", d, err, errlen)
             ? -1
             : 0;
}

static int read_policy(search_run *r, lfs_ckpt *h, char *err, size_t errlen) {
  const int64_t d = r->policy.dim;
  int64_t m = 0, dim = 0;
  char *space = lfs_ckpt_get_text(h, "search", "space", err, errlen);
  if (!space) return -1;
  const int same_space = !strcmp(space, lfs_space_name(r->space.kind));
  free(space);
  if (lfs_ckpt_get_int(h, "search", "candidates", &m, err, errlen) ||
      lfs_ckpt_get_int(h, "search", "dim", &dim, err, errlen))
    return -1;
  if (!same_space || m != r->M || dim != d)
    return lfs_fail(err, errlen,
                    "%s: a search of another space or candidate count (the configuration has %s, "
                    "M = %d, d = %lld)",
                    lfs_ckpt_file(h), lfs_space_name(r->space.kind), r->M, (long long)d);
  policy_array arrays[8];
  const int n = policy_arrays(&r->policy, arrays);
  for (int i = 0; i < n; i++)
    if (lfs_ckpt_read_array(h, arrays[i].name, LFS_CKPT_F64, 1, &d, arrays[i].data, err, errlen))
      return -1;
  return lfs_ckpt_get_int(h, "policy", "adam_steps", &r->policy.steps, err, errlen) ? -1 : 0;
}

/* A candidate's epoch progress and optimizer step count, as saved mid-epoch. */
enum { PROGRESS_LOSS, PROGRESS_STEPS, PROGRESS_DIVERGED, PROGRESS_OPT_STEPS, PROGRESS_N };

static void progress_of(const lfs_trainer *t, const cand_epoch *ce, double *p /* [PROGRESS_N] */) {
  p[PROGRESS_LOSS] = ce->loss_sum;
  p[PROGRESS_STEPS] = (double)ce->steps;
  p[PROGRESS_DIVERGED] = (double)ce->diverged;
  p[PROGRESS_OPT_STEPS] = (double)t->step; /* exact: step counts stay far below 2^53 */
}

/* Candidate i's state (from `packed`, or t's own when NULL) and progress under candidates/<i>/. */
static int write_candidate(const lfs_trainer *t, lfs_ckpt *h, int i, const float *packed,
                           const double *p /* [PROGRESS_N] */, char *err, size_t errlen) {
  char prefix[72], group[64];
  lfs_ckpt_candidate_group(group, sizeof group, i, NULL);
  snprintf(prefix, sizeof prefix, "%s/", group);
  return lfs_trainer_write_state(t, h, prefix, packed, (int64_t)p[PROGRESS_OPT_STEPS], err, errlen) ||
                 lfs_ckpt_set_real(h, group, "epoch_loss_sum", p[PROGRESS_LOSS], err, errlen) ||
                 lfs_ckpt_set_int(h, group, "epoch_steps", (int64_t)p[PROGRESS_STEPS], err, errlen) ||
                 lfs_ckpt_set_int(h, group, "diverged", (int64_t)p[PROGRESS_DIVERGED], err, errlen)
             ? -1
             : 0;
}

static lfs_ckpt_meta checkpoint_meta(const search_run *r, int64_t epoch, int64_t step) {
  return (lfs_ckpt_meta){.epoch = epoch, .step = step, .world_size = lfs_world_size(),
                         .config = r->config_text, .write_created = 1};
}

/* Commits h after writing succeeded (rc 0), else discards it; -1 if there is no
 * checkpoint afterwards. h may be NULL (a failed create). */
static int commit_unless_failed(lfs_ckpt *h, int rc, char *err, size_t errlen) {
  if (!h) return -1;
  if (rc) {
    lfs_ckpt_close(h);
    return -1;
  }
  return lfs_ckpt_commit(h, err, errlen);
}

/* Rank 0 alone: after an epoch every candidate holds the winner's state. */
static int write_epoch_end(search_run *r, const lfs_trainer *t, const char *path,
                           int64_t epoch, char *err, size_t errlen) {
  const lfs_ckpt_meta meta = checkpoint_meta(r, epoch, 0);
  lfs_ckpt *h = lfs_ckpt_create(path, &meta, err, errlen);
  if (!h) return -1;
  const int rc = write_policy(r, h, err, errlen) ||
                 lfs_trainer_write_state(t, h, "", NULL, t->step, err, errlen);
  return commit_unless_failed(h, rc, err, errlen);
}

/* Every rank, through parallel HDF5: each group leader writes its candidate's
 * state; the metadata (names, progress attributes) is every rank's alike. */
static int write_mid_epoch_collective(search_run *r, const lfs_trainer *t, const char *path,
                                      int64_t epoch, int64_t step, const cand_epoch *ce, char *err,
                                      size_t errlen) {
  double mine[PROGRESS_N], *all = lfs_malloc(sizeof(double) * PROGRESS_N * (size_t)lfs_world_size());
  progress_of(t, ce, mine);
  LFS_MPI_CHECK(MPI_Allgather(mine, PROGRESS_N, MPI_DOUBLE, all, PROGRESS_N, MPI_DOUBLE, MPI_COMM_WORLD));
  const lfs_ckpt_meta meta = checkpoint_meta(r, epoch, step);
  lfs_ckpt *h = lfs_ckpt_create_collective(path, &meta, MPI_COMM_WORLD, err, errlen);
  int rc = !h || write_policy(r, h, err, errlen);
  for (int i = 0; !rc && i < r->M; i++) {
    lfs_ckpt_set_writer(h, lfs_world_rank() == i * r->G);
    rc = write_candidate(t, h, i, NULL, all + (size_t)i * r->G * PROGRESS_N, err, errlen);
  }
  free(all);
  return commit_unless_failed(h, rc, err, errlen);
}

/* Point-to-point transfer of a large float buffer in pieces MPI's int counts hold. */
static void send_floats(const float *buf, size_t n, int dest) {
  for (size_t at = 0; at < n; at += INT_MAX / 2) {
    const int piece = (int)(n - at < INT_MAX / 2 ? n - at : INT_MAX / 2);
    LFS_MPI_CHECK(MPI_Send(buf + at, piece, MPI_FLOAT, dest, 7, MPI_COMM_WORLD));
  }
}

static void recv_floats(float *buf, size_t n, int src) {
  for (size_t at = 0; at < n; at += INT_MAX / 2) {
    const int piece = (int)(n - at < INT_MAX / 2 ? n - at : INT_MAX / 2);
    LFS_MPI_CHECK(MPI_Recv(buf + at, piece, MPI_FLOAT, src, 7, MPI_COMM_WORLD, MPI_STATUS_IGNORE));
  }
}

/* Serial HDF5: the group leaders send their candidate's state to rank 0, which
 * writes the file alone. Returns rank 0's result (0 elsewhere). */
static int write_mid_epoch_gathered(search_run *r, const lfs_trainer *t, const char *path,
                                    int64_t epoch, int64_t step, const cand_epoch *ce, char *err,
                                    size_t errlen) {
  const int leader = t->rank == 0, world0 = lfs_world_rank() == 0;
  if (!leader) return 0;
  const size_t nstate = lfs_trainer_state_floats(t);
  float *buf = lfs_alloc_floats(nstate);
  double progress[PROGRESS_N];
  progress_of(t, ce, progress);
  lfs_trainer_state_pack(t, buf);
  if (!world0) {
    send_floats(buf, nstate, 0);
    LFS_MPI_CHECK(MPI_Send(progress, PROGRESS_N, MPI_DOUBLE, 0, 8, MPI_COMM_WORLD));
    free(buf);
    return 0;
  }
  const lfs_ckpt_meta meta = checkpoint_meta(r, epoch, step);
  lfs_ckpt *h = lfs_ckpt_create(path, &meta, err, errlen);
  int rc = !h || write_policy(r, h, err, errlen);
  for (int i = 0; i < r->M; i++) {
    if (i > 0) { /* receive even after a failure: the leaders' sends must complete */
      recv_floats(buf, nstate, i * r->G);
      LFS_MPI_CHECK(MPI_Recv(progress, PROGRESS_N, MPI_DOUBLE, i * r->G, 8, MPI_COMM_WORLD,
                             MPI_STATUS_IGNORE));
    }
    if (!rc) rc = write_candidate(t, h, i, buf, progress, err, errlen);
  }
  free(buf);
  return commit_unless_failed(h, rc, err, errlen);
}

/* LFS_TEST_GATHERED_CHECKPOINT=1 takes the serial-HDF5 path even where HDF5 is
 * parallel, so that tests cover both. */
static int collective_checkpoints(void) {
  const char *force = getenv("LFS_TEST_GATHERED_CHECKPOINT");
  return lfs_ckpt_collective_available() && !(force && !strcmp(force, "1"));
}

/* Collective. After an epoch (step 0): the shared state, written by rank 0.
 * Mid-epoch (step > 0): each candidate's state and epoch progress under
 * candidates/<i>/, through parallel HDF5 when the build has it. */
void lfs_search_checkpoint(search_run *r, const lfs_trainer *t, int64_t epoch, int64_t step,
                       const cand_epoch *ce) {
  char err[1024] = "", *path = lfs_ckpt_path(r->ckpt_dir, epoch, step);
  const int world0 = lfs_world_rank() == 0;
  const int collective = step && collective_checkpoints();
  const double start = lfs_now();
  int rc = 0;
  if (!step)
    rc = world0 ? write_epoch_end(r, t, path, epoch, err, sizeof err) : 0;
  else if (collective)
    rc = write_mid_epoch_collective(r, t, path, epoch, step, ce, err, sizeof err);
  else
    rc = write_mid_epoch_gathered(r, t, path, epoch, step, ce, err, sizeof err);
  int failed = 0, me = rc != 0;
  LFS_MPI_CHECK(MPI_Allreduce(&me, &failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD));
  if (failed) lfs_user_error("checkpoint %s: %s", path, me ? err : "another rank could not write it");
  if (step)
    lfs_info("wrote %s: %d candidates' states, %s (%.2f s)", path, r->M,
             collective ? "each written by its group leader (parallel HDF5)"
                        : "gathered to rank 0 (serial HDF5)",
             lfs_now() - start);
  if (world0 && lfs_ckpt_prune(r->ckpt_dir, r->keep, err, sizeof err) < 0)
    lfs_warn("pruning checkpoints: %s", err);
  free(path);
}

/* --resume: loads the policy and this candidate's state; returns 1 if resumed. */
int lfs_search_resume(search_run *r, lfs_trainer *t, int64_t *epoch, int64_t *step,
                       cand_epoch *ce) {
  *epoch = 0, *step = 0;
  char err[1024], *path = lfs_run_resume_path(r->resume, r->ckpt_dir);
  if (!path) return 0;
  lfs_ckpt *h = lfs_ckpt_open(path, err, sizeof err);
  int rc = h ? 0 : -1;
  if (h) {
    *epoch = lfs_ckpt_info(h)->epoch, *step = lfs_ckpt_info(h)->step;
    rc = read_policy(r, h, err, sizeof err);
    if (!rc && !*step) rc = lfs_trainer_read_state(t, h, "", err, sizeof err);
    if (!rc && *step) {
      char group[64], prefix[72];
      int64_t steps = 0, diverged = 0;
      lfs_ckpt_candidate_group(group, sizeof group, r->cand, NULL);
      snprintf(prefix, sizeof prefix, "%s/", group);
      rc = lfs_trainer_read_state(t, h, prefix, err, sizeof err) ||
           lfs_ckpt_get_real(h, group, "epoch_loss_sum", &ce->loss_sum, err, sizeof err) ||
           lfs_ckpt_get_int(h, group, "epoch_steps", &steps, err, sizeof err) ||
           lfs_ckpt_get_int(h, group, "diverged", &diverged, err, sizeof err);
      ce->steps = steps, ce->diverged = (int)diverged;
    }
    lfs_ckpt_close(h);
  }
  if (lfs_run_any_rank(rc != 0)) lfs_user_error("--resume: %s", rc ? err : "another rank failed");
  lfs_info("resumed from %s at epoch %lld, step %lld", path, (long long)*epoch, (long long)*step);
  free(path);
  return 1;
}
