/* cmd_search.c: `lfsearch search`: the reward-guided loss-function search of
 * DESIGN §1.6-1.7 on the parallel layout of §2.
 *
 * MPI_COMM_WORLD's R ranks form M = [search] candidates groups of G =
 * ranks_per_candidate consecutive ranks (R = M * G); candidate i is group i, a
 * data-parallel trainer over its group's communicator. Each epoch every
 * candidate trains with its own loss (the space's warm-up point during warm-up,
 * else a sample u_i of the policy; random_softmax draws afresh every step or
 * epoch from a policy that never moves), is scored on [data] val_pairs (and, for
 * the log only, [data] test_pairs), and then every rank learns every candidate's
 * result (one all-gather), picks the winner (highest reward, lowest index on
 * ties), applies the same policy update and takes the winner's whole training
 * state from its group leader. A candidate whose loss turns NaN/Inf stops for
 * the epoch with reward -inf and is replaced by the winner.
 *
 * Checkpoints (search_checkpoint.c): after every epoch one file (all candidates
 * share the state) with the policy; on SIGUSR1/SIGTERM the ranks agree at the
 * next step boundary, write every candidate's state and its place in the epoch
 * into one file and exit 3. `--resume auto` continues from either kind; all
 * randomness is keyed by (seed, epoch, candidate, step), so the continuation is
 * the run that was interrupted. */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lfs/log.h"
#include "lfs/policy.h"
#include "lfs/runlog.h"
#include "lfs/runtime.h"
#include "lfs/search_space.h"
#include "lfs/timer.h"
#include "lfs/trainer.h"
#include "tools/commands.h"
#include "tools/run_common.h"

#include "tools/search_run.h"


static void usage(void) {
  lfs_info("usage: mpiexec -n R lfsearch search -c FILE [--set section.key=value ...] [--device cpu|cuda]\n"
           "       [--resume auto|CHECKPOINT]\n"
           "  searches the loss function ([search] space) with M = [search] candidates groups of\n"
           "  [search] ranks_per_candidate ranks (R = M * ranks_per_candidate); rewards are the\n"
           "  verification accuracy on [data] val_pairs; [data] test_pairs is logged only.\n"
           "  Checkpoints go to [run] out_dir/[checkpoint] dir, the run log to [run] out_dir/run.h5.\n"
           "  SIGUSR1/SIGTERM: checkpoint at the next step and exit 3; --resume auto continues.");
}

static void parse(search_run *r, int argc, char **argv) {
  memset(r, 0, sizeof *r);
  r->cfg = lfs_run_parse("search", usage, argc, argv, &r->resume, r->ckpt_dir, r->runlog_path);
  const lfs_config *c = r->cfg;
  r->reward_pairs = lfs_config_string(c, "data.val_pairs");
  if (!r->reward_pairs[0])
    lfs_user_error("[data] val_pairs is not set: the search's reward is verification on held-out"
                   " identities (e.g. `lfsearch synth --val-pairs N`)");
  r->test_pairs = lfs_config_string(c, "data.test_pairs");
  r->epochs = lfs_config_int(c, "optim.epochs");
  r->warmup = (int)lfs_config_int(c, "search.warmup_epochs");
  r->log_every = (int)lfs_config_int(c, "run.log_every");
  r->keep = (int)lfs_config_int(c, "checkpoint.keep");
  r->seed = (uint64_t)lfs_config_int(c, "run.seed");
  r->random_per_step = !strcmp(lfs_config_string(c, "search.random_per"), "step");
  r->config_text = lfs_config_dump(c);
}

/* Candidate groups: R = M * G ranks, group i = world ranks [i G, (i + 1) G). */
static void make_groups(search_run *r) {
  const int R = lfs_world_size();
  r->M = (int)lfs_config_int(r->cfg, "search.candidates");
  r->G = (int)lfs_config_int(r->cfg, "search.ranks_per_candidate");
  if (R % r->G)
    lfs_user_error("%d MPI ranks do not divide into groups of [search] ranks_per_candidate = %d", R,
                   r->G);
  if (R != r->M * r->G)
    lfs_user_error("[search] candidates = %d with ranks_per_candidate = %d needs %d MPI ranks, "
                   "but there are %d (mpiexec -n %d)",
                   r->M, r->G, r->M * r->G, R, r->M * r->G);
  r->cand = lfs_world_rank() / r->G;
  LFS_MPI_CHECK(MPI_Comm_split(MPI_COMM_WORLD, r->cand, lfs_world_rank(), &r->group));
}

static void init_policy(search_run *r) {
  char err[512];
  const lfs_space_kind kind = (lfs_space_kind)lfs_config_choice(r->cfg, "search.space");
  if (lfs_space_init(&r->space, kind, (int)lfs_config_int(r->cfg, "search.intervals"),
                     lfs_config_bool(r->cfg, "search.tau"), err, sizeof err) != 0)
    lfs_user_error("%s", err);
  double mu0[LFS_SPACE_MAX_DIM];
  lfs_space_initial_mean(&r->space, mu0);
  double sigma = lfs_config_real(r->cfg, "search.sigma");
  if (sigma == 0.0) sigma = lfs_space_default_sigma(&r->space);
  lfs_policy_init(&r->policy, r->space.dim, mu0, sigma, lfs_config_real(r->cfg, "search.policy_lr"),
                  lfs_config_bool(r->cfg, "search.learn_sigma"));
}

/* The point candidate r->cand trains at in `epoch`, draw `draw`. */
static void point(const search_run *r, int64_t epoch, int64_t draw, double *u) {
  if (epoch < r->warmup)
    lfs_space_warmup_point(&r->space, u);
  else
    lfs_policy_draw(&r->policy, r->seed, epoch, r->cand, draw, u);
}

static void use_point(const search_run *r, lfs_trainer *t, const double *u) {
  lfs_space_apply(&r->space, u, &r->base_head, &t->head);
  char err[512];
  if (lfs_head_cfg_check(&t->head, err, sizeof err) != 0)
    lfs_fatal("search space %s gave a bad loss: %s", lfs_space_name(r->space.kind), err);
}

/* ---- one epoch ------------------------------------------------------------------ */

/* LFS_TEST_DIVERGE="C:E" makes candidate C's loss non-finite at the first step
 * of epoch E (1-based), as if it had diverged: the tests' way to reach the
 * divergence handling deterministically. */
static int forced_divergence(const search_run *r, int64_t epoch) {
  const char *spec = getenv("LFS_TEST_DIVERGE");
  int c = -1;
  long long e = -1;
  return spec && sscanf(spec, "%d:%lld", &c, &e) == 2 && c == r->cand && e == epoch + 1;
}

/* Trains candidate r->cand from `step`; returns LFS_EXIT_SIGNAL after a stop
 * checkpoint, else 0. Diverged candidates keep stepping through the signal
 * checks (every rank takes part in them) without training. */
static int train_epoch(search_run *r, lfs_trainer *t, lfs_loader *l, int64_t epoch, int64_t step,
                       cand_epoch *ce, lfs_epoch_meter *m) {
  const int64_t steps = lfs_loader_steps_per_epoch(l);
  float *x = lfs_trainer_input_alloc(t);
  int32_t *labels = lfs_malloc(sizeof(int32_t) * t->local_batch);
  char err[1024];
  const char *prefix = "[candidate 0] "; /* rank 0's progress line: candidate 0's */
  int rc = 0;
  lfs_loader_seek(l, epoch, step);
  for (; step < steps; step++) {
    if (lfs_run_stop_requested(epoch, step)) {
      lfs_search_checkpoint(r, t, epoch, step, ce);
      rc = LFS_EXIT_SIGNAL;
      break;
    }
    if (ce->diverged) continue;
    if (lfs_loader_next(l, x, labels, NULL, NULL, NULL, err, sizeof err) != 0)
      lfs_user_error_local("[data] train: %s", err);
    if (epoch >= r->warmup && r->random_per_step && r->space.kind == LFS_SPACE_RANDOM_SOFTMAX) {
      double u[LFS_SPACE_MAX_DIM];
      point(r, epoch, step, u);
      use_point(r, t, u);
    }
    const double loss =
        forced_divergence(r, epoch) ? NAN : lfs_trainer_step(t, x, labels, NULL);
    if (!isfinite(loss)) {
      ce->diverged = 1;
      lfs_warn("candidate %d diverged (loss %g) at epoch %lld, step %lld: reward -inf", r->cand,
               loss, (long long)epoch, (long long)step);
      continue;
    }
    ce->loss_sum += loss, ce->steps++;
    m->images += t->global_batch;
    if ((step + 1) % r->log_every == 0 || step + 1 == steps)
      lfs_run_progress(prefix, epoch, r->epochs, step + 1, steps, loss, t->lr, t->global_batch, m);
  }
  lfs_trainer_input_free(t, x);
  free(labels);
  return rc;
}

/* A checksum of the whole training state (its bytes as 64-bit words, summed
 * with wrap-around) and a check that every rank holds the same one: after the
 * winner's state is broadcast, any difference is an internal fault. */
static uint64_t state_checksum(const lfs_trainer *t) {
  const size_t n = lfs_trainer_state_floats(t);
  float *buf = lfs_alloc_floats(n);
  lfs_trainer_state_pack(t, buf);
  uint64_t sum = (uint64_t)t->step;
  for (size_t i = 0; i < n; i++) {
    uint32_t bits;
    memcpy(&bits, buf + i, sizeof bits);
    sum = sum * 1000003u + bits;
  }
  free(buf);
  return sum;
}

static uint64_t check_same_state(const lfs_trainer *t) {
  const uint64_t mine = state_checksum(t);
  uint64_t lo = 0, hi = 0;
  LFS_MPI_CHECK(MPI_Allreduce(&mine, &lo, 1, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD));
  LFS_MPI_CHECK(MPI_Allreduce(&mine, &hi, 1, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD));
  if (lo != hi) lfs_fatal("after the winner's broadcast the ranks hold different states");
  return mine;
}

/* Every candidate's report, on every rank. */
static void gather_reports(const search_run *r, const cand_report *mine, cand_report *all) {
  cand_report *each = lfs_malloc(sizeof(cand_report) * (size_t)lfs_world_size());
  LFS_MPI_CHECK(MPI_Allgather(mine, (int)sizeof *mine, MPI_BYTE, each, (int)sizeof *mine, MPI_BYTE,
                              MPI_COMM_WORLD));
  for (int i = 0; i < r->M; i++) all[i] = each[i * r->G];
  free(each);
}

static double modulation_of(const search_run *r, const double *u) {
  const int ss = r->space.kind == LFS_SPACE_SEARCH_SOFTMAX || r->space.kind == LFS_SPACE_RANDOM_SOFTMAX;
  return ss ? lfs_space_modulation(u[0], r->base_head.s) : NAN;
}

static void print_epoch(const search_run *r, int64_t epoch, const cand_report *rep, int best,
                        const lfs_policy *drawn_from, double wall, double rate) {
  const int ss = !isnan(modulation_of(r, rep[0].u));
  lfs_info("epoch %lld/%lld  %s%s", (long long)epoch + 1, (long long)r->epochs,
           lfs_space_name(r->space.kind), epoch < r->warmup ? " (warm-up)" : "");
  lfs_info("  cand  %10s  %11s  %8s  %10s  %8s  %8s", r->space.dim == 1 ? "u" : "u[0]",
           ss ? "a" : "", ss ? "m (eq.)" : "", "train loss", "reward %", "test %");
  for (int i = 0; i < r->M; i++) {
    const double a = modulation_of(r, rep[i].u);
    char as[32] = "", ms[32] = "";
    if (ss) {
      snprintf(as, sizeof as, "%.4g", a);
      snprintf(ms, sizeof ms, "%.4f", lfs_space_equivalent_margin(a, r->base_head.s));
    }
    lfs_info("  %4d  %10.4f  %11s  %8s  %10.4f  %8.2f  %8.2f%s", i, rep[i].u[0], as, ms, rep[i].loss,
             100 * rep[i].reward, 100 * rep[i].test, i == best ? "  <- winner" : "");
  }
  lfs_info("  winner %d; policy %s[0] %.4f, sigma[0] %.4f (drawn from: mu %.4f); %.1f s, %.1f img/s",
           best, "mu", r->policy.mu[0], r->policy.sigma[0], drawn_from->mu[0], wall, rate);
}

static void log_epoch(const search_run *r, lfs_runlog *log, const lfs_trainer *t, int64_t epoch,
                      const cand_report *rep, int best, const lfs_policy *drawn_from, double wall,
                      double rate) {
  const int M = r->M, d = r->space.dim;
  double *u = lfs_malloc(sizeof(double) * (size_t)M * d), *a = lfs_malloc(sizeof(double) * M);
  double *reward = lfs_malloc(sizeof(double) * M), *loss = lfs_malloc(sizeof(double) * M);
  for (int i = 0; i < M; i++) {
    memcpy(u + (size_t)i * d, rep[i].u, sizeof(double) * d);
    a[i] = modulation_of(r, rep[i].u), reward[i] = rep[i].reward, loss[i] = rep[i].loss;
  }
  const double test = rep[best].test;
  const lfs_runlog_row row = {.epoch = epoch, .u = u, .a = a, .reward = reward, .loss = loss,
                              .chosen = best, .mu = drawn_from->mu, .sigma = drawn_from->sigma,
                              .lr = t->lr, .wall_seconds = wall, .images_per_second = rate,
                              .metrics = &test};
  char err[1024];
  if (lfs_runlog_append(log, &row, err, sizeof err) != 0) lfs_user_error_local("run log: %s", err);
  free(u), free(a), free(reward), free(loss);
}

/* After training: rewards, winner, policy update, broadcast, checkpoint, log. */
static void finish_epoch(search_run *r, lfs_trainer *t, lfs_runlog *log, int64_t epoch,
                         const cand_epoch *ce, const lfs_epoch_meter *m) {
  cand_report mine = {.reward = -INFINITY, .test = NAN, .loss = NAN};
  memcpy(mine.u, ce->u, sizeof mine.u);
  if (!ce->diverged) {
    mine.loss = ce->steps ? ce->loss_sum / ce->steps : NAN;
    mine.reward = lfs_run_verify(t, r->reward_pairs, NULL);
    if (r->test_pairs[0]) mine.test = lfs_run_verify(t, r->test_pairs, NULL);
  }
  cand_report *rep = lfs_malloc(sizeof(cand_report) * r->M);
  gather_reports(r, &mine, rep);
  double *reward = lfs_malloc(sizeof(double) * r->M), *u = lfs_malloc(sizeof(double) * r->M * r->space.dim);
  for (int i = 0; i < r->M; i++) {
    reward[i] = rep[i].reward;
    memcpy(u + (size_t)i * r->space.dim, rep[i].u, sizeof(double) * r->space.dim);
  }
  const int best = lfs_policy_best(r->M, reward);
  if (best < 0)
    lfs_user_error("every candidate diverged in epoch %lld: lower [optim] lr or check the data",
                   (long long)epoch + 1);
  const lfs_policy drawn_from = r->policy;
  if (epoch >= r->warmup && lfs_space_learns(&r->space))
    lfs_policy_update(&r->policy, r->M, u, reward, NULL);
  lfs_trainer_broadcast_state(t, best * r->G, MPI_COMM_WORLD);
  const uint64_t checksum = check_same_state(t);
  lfs_search_checkpoint(r, t, epoch + 1, 0, NULL);
  const double wall = lfs_now() - m->start, rate = m->images * r->M / (wall > 0 ? wall : 1e-9);
  if (log) log_epoch(r, log, t, epoch, rep, best, &drawn_from, wall, rate);
  print_epoch(r, epoch, rep, best, &drawn_from, wall, rate);
  lfs_info("  state %016llx on all %d ranks", (unsigned long long)checksum, lfs_world_size());
  free(rep), free(reward), free(u);
}

static lfs_runlog *open_runlog(const search_run *r, int resumed, int64_t epoch) {
  const char *metric = "test_acc";
  const lfs_runlog_spec spec = {.M = r->M, .d = r->space.dim, .config = r->config_text,
                                .nmetrics = 1, .metrics = &metric};
  return lfs_run_open_log(r->runlog_path, &spec, resumed, epoch);
}

int lfs_cmd_search(int argc, char **argv) {
  search_run r;
  parse(&r, argc, argv);
  lfs_set_threads((int)lfs_config_int(r.cfg, "run.threads"));
  make_groups(&r);
  init_policy(&r);
  int size = 0;
  int64_t images = 0;
  const int32_t classes = lfs_run_training_set(r.cfg, &size, &images);
  const int global_batch = (int)lfs_config_int(r.cfg, "data.batch_size");
  char err[1024];
  lfs_trainer t;
  if (lfs_run_any_rank(lfs_trainer_init(&t, r.cfg, classes, images / global_batch, r.group, err,
                                        sizeof err) != 0))
    lfs_user_error("%s", err);
  r.base_head = t.head;
  int group_rank = 0;
  MPI_Comm_rank(r.group, &group_rank);
  lfs_loader *l = lfs_run_open_loader(r.cfg, group_rank, r.G);
  if (lfs_world_rank() == 0) lfs_run_make_dir(r.ckpt_dir);
  MPI_Barrier(MPI_COMM_WORLD);
  int64_t epoch, step;
  cand_epoch ce = {0};
  const int resumed = lfs_search_resume(&r, &t, &epoch, &step, &ce);
  lfs_info("lfsearch search: space %s (d = %d), %d candidates x %d ranks, %s, %d classes, %dx%d, "
           "global batch %d per candidate, %lld steps/epoch, %d warm-up epochs",
           lfs_space_name(r.space.kind), r.space.dim, r.M, r.G, t.arch, t.K, size, size,
           t.global_batch, (long long)lfs_loader_steps_per_epoch(l), r.warmup);
  lfs_trainer_announce(&t);
  lfs_runlog *log = lfs_world_rank() == 0 ? open_runlog(&r, resumed, epoch) : NULL;
  int rc = 0;
  for (; epoch < r.epochs && rc == 0; epoch++, step = 0) {
    if (step == 0) ce = (cand_epoch){0};
    point(&r, epoch, 0, ce.u);
    use_point(&r, &t, ce.u);
    lfs_epoch_meter m = {.start = lfs_now()};
    rc = train_epoch(&r, &t, l, epoch, step, &ce, &m);
    if (rc == 0) finish_epoch(&r, &t, log, epoch, &ce, &m);
  }
  if (log) lfs_runlog_close(log);
  lfs_run_close_loader(l);
  lfs_trainer_free(&t);
  MPI_Comm_free(&r.group);
  free(r.config_text);
  lfs_config_free(r.cfg);
  return rc;
}
