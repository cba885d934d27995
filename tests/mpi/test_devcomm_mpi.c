/* test_devcomm_mpi.c: the parts of device collectives (lfs/devcomm.h) that a
 * machine without a GPU can check, on 2 or more ranks:
 *  - lfs_devcomm_create refuses the cpu and cpu-staged backends, LFS_NCCL=0, a
 *    group where one rank cannot, and ranks of one node naming the same GPU,
 *    with the same reason on every rank (a rank that went on alone into NCCL's
 *    setup would hang);
 *  - the trainer's host paths on cpu-staged (what a GPU without NCCL takes)
 *    still equal the CPU backend bit for bit where test_cli_train does not look:
 *    without synchronised BN (rank 0's BN statistics shared), with gradient
 *    clipping, and the winner's broadcast (lfs_trainer_broadcast_state) from the
 *    last rank, followed by a checkpoint written and read back;
 *  - the trainer's device-collective paths, with MPI standing in for NCCL on
 *    cpu-staged (LFS_DEVCOMM=mpi), equal the CPU backend bit for bit too.
 * A stand-in backend named "cuda" (no ops) stands for a GPU rank: the checks
 * must decide before any op or NCCL call is made. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lfs/backend.h"
#include "lfs/config.h"
#include "lfs/devcomm.h"
#include "lfs/log.h"
#include "lfs/philox.h"
#include "lfs/runtime.h"
#include "lfs/trainer.h"
#include "train_steps.h"

enum { CLASSES = 10, SIDE = 16, LOCAL = 2, STEPS = 5 };

static int rank, size, checks, failures;

static void check(int ok, const char *what) {
  checks++;
  if (!ok) {
    failures++;
    fprintf(stderr, "[rank %d] FAIL: %s\n", rank, what);
  }
}

/* 1 if s is the same string on every rank (collective). */
static int same_everywhere(const char *s) {
  char root[256] = "";
  snprintf(root, sizeof root, "%s", s);
  MPI_Bcast(root, (int)sizeof root, MPI_CHAR, 0, MPI_COMM_WORLD);
  int same = !strcmp(root, s), all = 0;
  MPI_Allreduce(&same, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  return all;
}

/* create on be must give NULL, a reason holding `expect`, the same on every rank. */
static void expect_refusal(lfs_backend *be, const char *expect, const char *what) {
  char why[256] = "", msg[512];
  lfs_devcomm *c = lfs_devcomm_create(be, MPI_COMM_WORLD, why, sizeof why);
  snprintf(msg, sizeof msg, "%s: got %s, reason \"%s\" (expected one holding \"%s\")", what,
           c ? "a communicator" : "NULL", why, expect);
  check(c == NULL && strstr(why, expect) != NULL, msg);
  snprintf(msg, sizeof msg, "%s: the reason differs between ranks (here \"%s\")", what, why);
  check(same_everywhere(why), msg);
  if (c) lfs_devcomm_free(c);
}

static const lfs_backend_ops fake_cuda_ops = {.name = "cuda"};
static lfs_backend fake_cuda = {.ops = &fake_cuda_ops, .ctx = NULL, .device = 0};

/* Every rank on GPU 0 of one node: where NCCL loads, the distinct-GPU check
 * refuses (on a GPU machine), or the PCI bus id is unknown (no driver, as on a
 * build machine); otherwise the build or machine has no NCCL. */
static void test_same_gpu(void) {
  MPI_Comm node;
  int node_size = 0;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
  MPI_Comm_size(node, &node_size);
  MPI_Comm_free(&node);
  int one_node = node_size == size, all_one = 0;
  MPI_Allreduce(&one_node, &all_one, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  if (!all_one) return; /* ranks on several nodes could each have a GPU 0 */
  char why[256] = "", msg[512];
  lfs_devcomm *c = lfs_devcomm_create(&fake_cuda, MPI_COMM_WORLD, why, sizeof why);
  const int named =
      strstr(why, "share the GPU") || strstr(why, "cudaDeviceGetPCIBusId") || strstr(why, "NCCL");
  snprintf(msg, sizeof msg, "all ranks on GPU 0: got %s, reason \"%s\"",
           c ? "a communicator" : "NULL", why);
  check(c == NULL && named, msg);
  check(same_everywhere(why), "all ranks on GPU 0: the reason differs between ranks");
  if (rank == 0) printf("all ranks on GPU 0: %s\n", why);
}

static void test_create(void) {
  expect_refusal(lfs_backend_cpu(), "cpu backend", "cpu");
  expect_refusal(lfs_backend_cpu_staged(), "cpu-staged backend", "cpu-staged");
  setenv("LFS_NCCL", "0", 1);
  expect_refusal(&fake_cuda, "LFS_NCCL=0", "a GPU with LFS_NCCL=0");
  unsetenv("LFS_NCCL");
  /* The last rank on the CPU: whatever the others could do, nobody goes on.
   * Where the build or machine has no NCCL, rank 0 already says so. */
  const int last_cpu = rank == size - 1;
  char expect[64];
  snprintf(expect, sizeof expect, "rank %d: the cpu backend", size - 1);
  char why[256] = "";
  lfs_devcomm *c = lfs_devcomm_create(last_cpu ? lfs_backend_cpu() : &fake_cuda, MPI_COMM_WORLD,
                                      why, sizeof why);
  const int named = strstr(why, expect) || strstr(why, "NCCL");
  char msg[512];
  snprintf(msg, sizeof msg, "a group with one CPU rank: got %s, reason \"%s\"",
           c ? "a communicator" : "NULL", why);
  check(c == NULL && named, msg);
  check(same_everywhere(why), "a group with one CPU rank: the reason differs between ranks");
  test_same_gpu();
  const char *d = lfs_nccl_describe();
  snprintf(msg, sizeof msg, "lfs_nccl_describe() = \"%s\"", d);
  check(!strncmp(d, "NCCL ", 5), msg);
  if (rank == 0) printf("lfs_nccl_describe: %s; a mixed group: %s\n", d, why);
}

static lfs_config *make_config(const char *backend) {
  const char *sets[] = {"model.arch=tiny",
                        "model.embedding_size=32",
                        "model.sync_bn=false",
                        "data.image_size=16",
                        "head.loss=arcface",
                        "optim.lr=0.05",
                        "optim.schedule=multistep",
                        "optim.milestones=",
                        "optim.clip_norm=0.5",
                        "run.seed=5",
                        backend,
                        NULL};
  lfs_config *cfg = lfs_config_new();
  char err[512], batch[64];
  snprintf(batch, sizeof batch, "data.batch_size=%d", LOCAL * size);
  if (lfs_config_set(cfg, batch, err, sizeof err) != 0) lfs_fatal("%s", err);
  for (int i = 0; sets[i]; i++)
    if (lfs_config_set(cfg, sets[i], err, sizeof err) != 0) lfs_fatal("%s", err);
  return cfg;
}

static void train(lfs_trainer *t, uint32_t stream) { tu_train_steps(t, 11, stream, STEPS); }

static float *packed(const lfs_trainer *t) {
  float *buf = malloc(lfs_trainer_state_floats(t) * sizeof *buf);
  lfs_trainer_state_pack(t, buf);
  return buf;
}

/* t's state equals ref's bit for bit. */
static void expect_same_state(const lfs_trainer *t, const lfs_trainer *ref, const char *what) {
  const size_t n = lfs_trainer_state_floats(ref);
  float *a = packed(t), *b = packed(ref);
  char msg[256];
  snprintf(msg, sizeof msg, "%s: the state differs (steps %lld and %lld)", what, (long long)t->step,
           (long long)ref->step);
  check(n == lfs_trainer_state_floats(t) && t->step == ref->step && !memcmp(a, b, n * sizeof *a),
        msg);
  free(a), free(b);
}

/* t's state equals root's on every rank (collective). */
static void expect_root_state(const lfs_trainer *t, int root, const char *what) {
  const size_t n = lfs_trainer_state_floats(t);
  float *mine = packed(t), *theirs = malloc(n * sizeof *theirs);
  memcpy(theirs, mine, n * sizeof *mine);
  MPI_Bcast(theirs, (int)(n * sizeof *theirs), MPI_BYTE, root, MPI_COMM_WORLD);
  int64_t step = t->step;
  MPI_Bcast(&step, 1, MPI_INT64_T, root, MPI_COMM_WORLD);
  check(!memcmp(mine, theirs, n * sizeof *mine) && step == t->step, what);
  free(mine), free(theirs);
}

/* A checkpoint of t (each rank its own file) read into fresh, equals t. */
static void expect_checkpoint_roundtrip(lfs_trainer *t, lfs_trainer *fresh, const char *what) {
  char path[64], err[1024], msg[1200];
  snprintf(path, sizeof path, "devcomm-test-%d-%d.h5", (int)getpid(), rank);
  const int rc = lfs_trainer_save(t, path, 1, t->step, "", err, sizeof err) ||
                 lfs_trainer_load(fresh, path, err, sizeof err);
  snprintf(msg, sizeof msg, "%s: %s", what, rc ? err : "");
  check(rc == 0, msg);
  if (rc == 0) expect_same_state(fresh, t, what);
  unlink(path);
}

static void init(lfs_trainer *t, const char *backend, MPI_Comm comm) {
  lfs_config *cfg = make_config(backend);
  char err[1024];
  if (lfs_trainer_init(t, cfg, CLASSES, 100, comm, err, sizeof err) != 0) lfs_fatal("%s", err);
  lfs_config_free(cfg);
}

static void test_trainers(void) {
  lfs_trainer cpu, staged, cpu_own, staged_own, fresh;
  init(&cpu, "run.backend=cpu", MPI_COMM_WORLD);
  init(&staged, "run.backend=cpu-staged", MPI_COMM_WORLD);
  check(staged.staged && staged.devcomm == NULL, "cpu-staged: a group without device collectives");
  train(&cpu, 1), train(&staged, 1);
  expect_same_state(&staged, &cpu, "a group on cpu-staged against cpu (no sync BN, clipping)");
  expect_root_state(&staged, 0, "a group on cpu-staged: the ranks disagree");
  /* every rank its own candidate, then the last rank's state for all */
  init(&cpu_own, "run.backend=cpu", MPI_COMM_SELF);
  init(&staged_own, "run.backend=cpu-staged", MPI_COMM_SELF);
  train(&cpu_own, 2 + (uint32_t)rank), train(&staged_own, 2 + (uint32_t)rank);
  cpu_own.step += rank, staged_own.step += rank;
  lfs_trainer_broadcast_state(&cpu_own, size - 1, MPI_COMM_WORLD);
  lfs_trainer_broadcast_state(&staged_own, size - 1, MPI_COMM_WORLD);
  check(staged_own.bcast.tried && staged_own.bcast.dc == NULL,
        "cpu-staged: the state broadcast tried device collectives and went through the host");
  expect_root_state(&staged_own, size - 1, "cpu-staged: state after the winner's broadcast");
  expect_same_state(&staged_own, &cpu_own, "the winner's broadcast on cpu-staged against cpu");
  lfs_trainer_broadcast_state(&staged_own, 0, MPI_COMM_WORLD); /* the kept verdict, again */
  lfs_trainer_broadcast_state(&cpu_own, 0, MPI_COMM_WORLD);
  expect_same_state(&staged_own, &cpu_own, "a second broadcast on cpu-staged against cpu");
  init(&fresh, "run.backend=cpu", MPI_COMM_SELF);
  expect_checkpoint_roundtrip(&staged_own, &fresh, "cpu-staged checkpoint after a broadcast");
  lfs_trainer *all[] = {&cpu, &staged, &cpu_own, &staged_own, &fresh};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++) lfs_trainer_free(all[i]);
}

/* The trainer's device-collective paths (gradient mean, BN statistics, the
 * winner's broadcast) with MPI standing in for NCCL on cpu-staged
 * (LFS_DEVCOMM=mpi): bit for bit the CPU backend's results. */
static void test_stand_in(void) {
  lfs_trainer cpu, dev, cpu_own, dev_own, fresh;
  init(&cpu, "run.backend=cpu", MPI_COMM_WORLD);
  init(&cpu_own, "run.backend=cpu", MPI_COMM_SELF);
  setenv("LFS_DEVCOMM", "mpi", 1);
  init(&dev, "run.backend=cpu-staged", MPI_COMM_WORLD);
  init(&dev_own, "run.backend=cpu-staged", MPI_COMM_SELF);
  check(dev.devcomm != NULL, "LFS_DEVCOMM=mpi: the group on cpu-staged has no device collectives");
  train(&cpu, 1), train(&dev, 1);
  expect_same_state(&dev, &cpu, "a group through device collectives against cpu");
  train(&cpu_own, 2 + (uint32_t)rank), train(&dev_own, 2 + (uint32_t)rank);
  cpu_own.step += rank, dev_own.step += rank;
  lfs_trainer_broadcast_state(&cpu_own, size - 1, MPI_COMM_WORLD);
  lfs_trainer_broadcast_state(&dev_own, size - 1, MPI_COMM_WORLD);
  check(dev_own.bcast.dc != NULL, "LFS_DEVCOMM=mpi: the state broadcast went through the host");
  expect_same_state(&dev_own, &cpu_own, "the winner's broadcast through device collectives");
  train(&cpu_own, 9), train(&dev_own, 9); /* after a device broadcast, the host mirrors */
  expect_same_state(&dev_own, &cpu_own, "training on after the device broadcast");
  init(&fresh, "run.backend=cpu", MPI_COMM_SELF);
  expect_checkpoint_roundtrip(&dev_own, &fresh, "a checkpoint after the device broadcast");
  unsetenv("LFS_DEVCOMM");
  lfs_trainer *all[] = {&cpu, &dev, &cpu_own, &dev_own, &fresh};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++) lfs_trainer_free(all[i]);
}

int main(int argc, char **argv) {
  lfs_runtime_init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  lfs_log_set_level(LFS_LOG_QUIET);
  test_create();
  test_trainers();
  test_stand_in();
  int total = 0;
  MPI_Allreduce(&failures, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  if (rank == 0)
    printf("%s: %d checks per rank on %d ranks, %d failures\n", total ? "FAIL" : "PASS", checks,
           size, total);
  lfs_runtime_finalize();
  return total ? 1 : 0;
}
