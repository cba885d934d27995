/* test_checkpoint.c: checkpoint files and the run log (src/io/checkpoint.c,
 * src/io/runlog.c).
 *
 * Checkpoints: a real model's parameters (the demo network: iresnet blocks, BN
 * running statistics, a frozen BN gamma) written and read back into a second
 * graph bit for bit, with momentum, head, policy arrays, attributes and
 * per-candidate groups; reading rejects a missing, an extra, a mis-shaped or a
 * mistyped tensor with a message naming the file and the tensor, before touching
 * the destination; without `created` two writes give the same bytes; the
 * directory helpers find the newest complete checkpoint past temporary, corrupt,
 * truncated, foreign and misnamed files, and prune keeps the newest N.
 * Run log: three epochs round trip (with metrics, d = 3); train's d = 0 and the
 * d = 1 layouts; a writer killed with SIGKILL after two epochs, and one killed at
 * a random moment while appending, leave a readable log with every reported row;
 * resume truncates and refuses impossible requests.
 * Files go to "test_checkpoint-work/" in the current directory (the build
 * directory under `make check`), removed when every test has passed. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <hdf5.h>

#include "lfs/checkpoint.h"
#include "lfs/graph.h"
#include "lfs/models.h"
#include "lfs/runlog.h"
#include "testutil.h"

#define WORK "test_checkpoint-work"
#define CONFIG "[run]\nname = t\nseed = 7\n"

static char err[2048];

/* ---- files ---- */

static void rm_dir(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *de;
  char p[1024];
  while ((de = readdir(d)) != NULL) {
    if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
    snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
    struct stat st;
    if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode)) rm_dir(p);
    else unlink(p);
  }
  closedir(d);
  rmdir(dir);
}

/* A fresh, empty directory WORK/name. */
static const char *fresh_dir(const char *name) {
  static char p[512];
  mkdir(WORK, 0777);
  snprintf(p, sizeof p, "%s/%s", WORK, name);
  rm_dir(p);
  assert_int_equal(mkdir(p, 0777), 0);
  return p;
}

static int exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

static unsigned char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *b = malloc((size_t)n + 1);
  assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
  fclose(f);
  *len = (size_t)n;
  return b;
}

static void write_bytes(const char *path, const unsigned char *b, size_t n) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(b, 1, n, f), n);
  fclose(f);
}

static void copy_file(const char *from, const char *to, double fraction) {
  size_t n;
  unsigned char *b = slurp(from, &n);
  write_bytes(to, b, (size_t)(n * fraction));
  free(b);
}

/* Number of entries of dir whose name contains `part`. */
static int count_names(const char *dir, const char *part) {
  DIR *d = opendir(dir);
  assert_non_null(d);
  int n = 0;
  struct dirent *de;
  while ((de = readdir(d)) != NULL) n += strstr(de->d_name, part) != NULL;
  closedir(d);
  return n;
}

static void assert_err_has(const char *a, const char *b) {
  if (!strstr(err, a) || (b && !strstr(err, b)))
    fail_msg("message \"%s\" should contain \"%s\"%s%s", err, a, b ? " and " : "", b ? b : "");
}

/* ---- a model ---- */

static void build_model(lfs_graph *g) {
  lfs_graph_init(g);
  lfs_demo_net(g, 4, 2, 8, 5);
  assert_int_equal(lfs_graph_build(g, lfs_backend_cpu(), (lfs_shape){2, 3, 16, 16}, 0, err, sizeof err), 0);
}

/* Every float distinct and non-trivial, frozen views and buffers included. */
static void fill_model(lfs_graph *g, uint32_t tag) {
  tu_fill_uniform(g->params.data, g->params.count, -2.0f, 2.0f, 99, tag);
}

typedef struct {
  lfs_graph g;
  float *velocity; /* [trainable_count] */
  float head[5 * 8];
  double mu[3], adam_m[3];
  int64_t history[2 * 4];
} state;

static void make_state(state *s, uint32_t tag) {
  build_model(&s->g);
  fill_model(&s->g, tag);
  s->velocity = malloc(s->g.params.trainable_count * sizeof(float));
  tu_fill_uniform(s->velocity, s->g.params.trainable_count, -1.0f, 1.0f, 99, tag + 1);
  tu_fill_uniform(s->head, 40, -1.0f, 1.0f, 99, tag + 2);
  for (int i = 0; i < 3; i++) s->mu[i] = 0.1 * i - 1.0 / 3.0, s->adam_m[i] = 1e-300 * (i + 1);
  for (int i = 0; i < 8; i++) s->history[i] = (int64_t)i * 1000000007LL - 5;
}

static void free_state(state *s) {
  free(s->velocity);
  lfs_graph_free(&s->g);
}

static void write_state(const char *path, state *s, int created) {
  lfs_ckpt_meta m = {.epoch = 3, .step = 0, .world_size = 2, .config = CONFIG,
                     .write_created = created};
  lfs_ckpt *h = lfs_ckpt_create(path, &m, err, sizeof err);
  assert_non_null(h);
  const int64_t hd[2] = {5, 8}, pd[1] = {3}, sd[2] = {2, 4};
  assert_int_equal(lfs_ckpt_write_params(h, "model", &s->g.params, s->g.params.data, LFS_CKPT_VIEWS_ALL, err, sizeof err), 0);
  assert_int_equal(lfs_ckpt_write_params(h, "optim", &s->g.params, s->velocity, LFS_CKPT_VIEWS_TRAINABLE, err, sizeof err), 0);
  assert_int_equal(lfs_ckpt_write_array(h, "head/weight", LFS_CKPT_F32, 2, hd, s->head, err, sizeof err), 0);
  assert_int_equal(lfs_ckpt_write_array(h, "policy/mu", LFS_CKPT_F64, 1, pd, s->mu, err, sizeof err), 0);
  assert_int_equal(lfs_ckpt_write_array(h, "/policy/adam_m", LFS_CKPT_F64, 1, pd, s->adam_m, err, sizeof err), 0);
  assert_int_equal(lfs_ckpt_write_array(h, "search/history", LFS_CKPT_I64, 2, sd, s->history, err, sizeof err), 0);
  assert_int_equal(lfs_ckpt_set_int(h, "policy", "adam_step", 12, err, sizeof err), 0);
  assert_int_equal(lfs_ckpt_set_real(h, "policy", "lr", 0.05, err, sizeof err), 0);
  assert_int_equal(lfs_ckpt_set_text(h, "", "loss", "search_softmax", err, sizeof err), 0);
  /* a writer cannot write the same array twice */
  assert_int_equal(lfs_ckpt_write_array(h, "head/weight", LFS_CKPT_F32, 2, hd, s->head, err, sizeof err), -1);
  assert_err_has("/head/weight", "twice");
  assert_int_equal(lfs_ckpt_commit(h, err, sizeof err), 0);
}

/* ---- checkpoint round trip ---- */

static void test_params_round_trip(void **st) {
  (void)st;
  const char *dir = fresh_dir("roundtrip");
  char *path = lfs_ckpt_path(dir, 3, 0);
  char want[600];
  snprintf(want, sizeof want, "%s/ckpt-e0003-s000000.h5", dir);
  assert_string_equal(path, want);
  state a;
  make_state(&a, 10);
  write_state(path, &a, 1);
  assert_int_equal(count_names(dir, ".tmp-"), 0);

  lfs_ckpt *h = lfs_ckpt_open(path, err, sizeof err);
  assert_non_null(h);
  const lfs_ckpt_meta *m = lfs_ckpt_info(h);
  assert_int_equal(m->epoch, 3);
  assert_int_equal(m->step, 0);
  assert_int_equal(m->world_size, 2);
  assert_string_equal(m->config, CONFIG);
  assert_non_null(m->created); /* "2025-01-02T03:04:05Z" */
  assert_int_equal(strlen(m->created), 20);
  assert_true(m->created[4] == '-' && m->created[10] == 'T' && m->created[19] == 'Z');

  /* a second graph, zeroed, takes every view back bit for bit */
  state b;
  make_state(&b, 20);
  memset(b.g.params.data, 0, b.g.params.count * sizeof(float));
  memset(b.velocity, 0, b.g.params.trainable_count * sizeof(float));
  assert_int_equal(lfs_ckpt_read_params(h, "model", &b.g.params, b.g.params.data, LFS_CKPT_VIEWS_ALL, err, sizeof err), 0);
  assert_memory_equal(a.g.params.data, b.g.params.data, a.g.params.count * sizeof(float));
  int kinds[3] = {0, 0, 0};
  for (int i = 0; i < b.g.params.nviews; i++) kinds[b.g.params.views[i].kind]++;
  assert_true(kinds[LFS_PARAM_TRAINABLE] > 0 && kinds[LFS_PARAM_FROZEN] == 1 && kinds[LFS_PARAM_BUFFER] > 0);
  int rv = lfs_params_find(&b.g.params, "layer2.0.downsample.1.running_var");
  int fg = lfs_params_find(&b.g.params, "features.weight");
  assert_true(rv >= 0 && fg >= 0);
  assert_int_equal(lfs_params_view(&b.g.params, fg)->kind, LFS_PARAM_FROZEN);
  assert_memory_equal(lfs_params_data(&a.g.params, rv), lfs_params_data(&b.g.params, rv),
                      lfs_params_view(&b.g.params, rv)->count * sizeof(float));
  assert_true(lfs_params_data(&b.g.params, rv)[0] != 0.0f);

  assert_int_equal(lfs_ckpt_read_params(h, "optim", &b.g.params, b.velocity, LFS_CKPT_VIEWS_TRAINABLE, err, sizeof err), 0);
  assert_memory_equal(a.velocity, b.velocity, a.g.params.trainable_count * sizeof(float));

  int ndim;
  int64_t dims[LFS_CKPT_MAX_DIMS];
  assert_int_equal(lfs_ckpt_array_shape(h, "head/weight", &ndim, dims, err, sizeof err), 0);
  assert_int_equal(ndim, 2);
  assert_int_equal(dims[0], 5);
  assert_int_equal(dims[1], 8);
  assert_int_equal(lfs_ckpt_read_array(h, "head/weight", LFS_CKPT_F32, 2, dims, b.head, err, sizeof err), 0);
  assert_memory_equal(a.head, b.head, sizeof a.head);
  const int64_t pd[1] = {3}, sd[2] = {2, 4};
  assert_int_equal(lfs_ckpt_read_array(h, "policy/mu", LFS_CKPT_F64, 1, pd, b.mu, err, sizeof err), 0);
  assert_int_equal(lfs_ckpt_read_array(h, "policy/adam_m", LFS_CKPT_F64, 1, pd, b.adam_m, err, sizeof err), 0);
  assert_int_equal(lfs_ckpt_read_array(h, "search/history", LFS_CKPT_I64, 2, sd, b.history, err, sizeof err), 0);
  assert_memory_equal(a.mu, b.mu, sizeof a.mu);
  assert_memory_equal(a.adam_m, b.adam_m, sizeof a.adam_m);
  assert_memory_equal(a.history, b.history, sizeof a.history);
  /* the type and shape must be the ones asked for */
  assert_int_equal(lfs_ckpt_read_array(h, "policy/mu", LFS_CKPT_F32, 1, pd, b.head, err, sizeof err), -1);
  assert_err_has("/policy/mu has type float64, expected float32", path);
  const int64_t pd4[1] = {4};
  assert_int_equal(lfs_ckpt_read_array(h, "policy/mu", LFS_CKPT_F64, 1, pd4, b.mu, err, sizeof err), -1);
  assert_err_has("/policy/mu has shape [3], expected [4]", NULL);
  assert_int_equal(lfs_ckpt_read_array(h, "policy/nu", LFS_CKPT_F64, 1, pd, b.mu, err, sizeof err), -1);
  assert_err_has("/policy/nu is missing", NULL);
  assert_int_equal(lfs_ckpt_read_array(h, "policy", LFS_CKPT_F64, 1, pd, b.mu, err, sizeof err), -1);
  assert_err_has("/policy is not an array", NULL);

  int64_t iv;
  double rv2;
  assert_int_equal(lfs_ckpt_get_int(h, "policy", "adam_step", &iv, err, sizeof err), 0);
  assert_int_equal(iv, 12);
  assert_int_equal(lfs_ckpt_get_real(h, "/policy", "lr", &rv2, err, sizeof err), 0);
  assert_true(rv2 == 0.05);
  char *text = lfs_ckpt_get_text(h, "/", "loss", err, sizeof err);
  assert_non_null(text);
  assert_string_equal(text, "search_softmax");
  free(text);
  assert_int_equal(lfs_ckpt_get_int(h, "policy", "nope", &iv, err, sizeof err), -1);
  assert_err_has("attribute nope is missing", NULL);

  /* names: the model group lists every view, dots and all */
  char **names;
  int count;
  assert_int_equal(lfs_ckpt_list(h, "model", &names, &count, err, sizeof err), 0);
  assert_int_equal(count, a.g.params.nviews);
  int found = 0;
  for (int i = 0; i < count; i++) found += !strcmp(names[i], "layer1.0.bn1.running_mean");
  assert_int_equal(found, 1);
  lfs_ckpt_free_names(names, count);
  assert_true(lfs_ckpt_has(h, "search/history"));
  assert_false(lfs_ckpt_has(h, "candidates"));
  assert_false(lfs_ckpt_has(h, "a/b/c"));
  lfs_ckpt_close(h);

  /* the file as PyTorch would see it: /model/<state-dict key> */
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  assert_true(f >= 0);
  assert_true(H5Lexists(f, "/model/layer1.0.conv1.weight", H5P_DEFAULT) > 0);
  assert_true(H5Lexists(f, "/optim/layer1.0.conv1.weight", H5P_DEFAULT) > 0);
  assert_true(H5Lexists(f, "/optim/layer1.0.bn1.running_mean", H5P_DEFAULT) == 0);
  assert_true(H5Lexists(f, "/optim/features.weight", H5P_DEFAULT) == 0);
  H5Fclose(f);

  free_state(&b);
  free_state(&a);
  free(path);
}

/* candidate i's model, optim and head under candidates/<i>/..., each its own state */
static void test_candidates(void **st) {
  (void)st;
  const char *dir = fresh_dir("candidates");
  char *path = lfs_ckpt_path(dir, 2, 37);
  lfs_ckpt_meta m = {.epoch = 2, .step = 37, .world_size = 4, .config = CONFIG};
  lfs_ckpt *h = lfs_ckpt_create(path, &m, err, sizeof err);
  assert_non_null(h);
  state c[3];
  char g[64];
  const int64_t hd[2] = {5, 8};
  for (int i = 0; i < 3; i++) {
    make_state(&c[i], 100 + 10 * (uint32_t)i);
    lfs_ckpt_candidate_group(g, sizeof g, i, "model");
    assert_string_equal(g, i == 0 ? "candidates/0/model" : i == 1 ? "candidates/1/model" : "candidates/2/model");
    assert_int_equal(lfs_ckpt_write_params(h, g, &c[i].g.params, c[i].g.params.data, LFS_CKPT_VIEWS_ALL, err, sizeof err), 0);
    lfs_ckpt_candidate_group(g, sizeof g, i, "optim");
    assert_int_equal(lfs_ckpt_write_params(h, g, &c[i].g.params, c[i].velocity, LFS_CKPT_VIEWS_TRAINABLE, err, sizeof err), 0);
    lfs_ckpt_candidate_group(g, sizeof g, i, "head/weight");
    assert_int_equal(lfs_ckpt_write_array(h, g, LFS_CKPT_F32, 2, hd, c[i].head, err, sizeof err), 0);
  }
  assert_int_equal(lfs_ckpt_set_int(h, "candidates", "count", 3, err, sizeof err), 0);
  assert_int_equal(lfs_ckpt_commit(h, err, sizeof err), 0);

  h = lfs_ckpt_open(path, err, sizeof err);
  assert_non_null(h);
  assert_int_equal(lfs_ckpt_info(h)->step, 37);
  assert_null(lfs_ckpt_info(h)->created);
  int64_t n;
  assert_int_equal(lfs_ckpt_get_int(h, "candidates", "count", &n, err, sizeof err), 0);
  assert_int_equal(n, 3);
  char **names;
  int count;
  assert_int_equal(lfs_ckpt_list(h, "candidates", &names, &count, err, sizeof err), 0);
  assert_int_equal(count, 3);
  assert_string_equal(names[2], "2");
  lfs_ckpt_free_names(names, count);
  lfs_graph g2;
  build_model(&g2);
  float head[40];
  for (int i = 2; i >= 0; i--) {
    lfs_ckpt_candidate_group(g, sizeof g, i, "model");
    assert_int_equal(lfs_ckpt_read_params(h, g, &g2.params, g2.params.data, LFS_CKPT_VIEWS_ALL, err, sizeof err), 0);
    assert_memory_equal(g2.params.data, c[i].g.params.data, g2.params.count * sizeof(float));
    lfs_ckpt_candidate_group(g, sizeof g, i, "head/weight");
    assert_int_equal(lfs_ckpt_read_array(h, g, LFS_CKPT_F32, 2, hd, head, err, sizeof err), 0);
    assert_memory_equal(head, c[i].head, sizeof head);
  }
  lfs_ckpt_close(h);
  lfs_graph_free(&g2);
  for (int i = 0; i < 3; i++) free_state(&c[i]);
  free(path);
}

/* ---- validation of /model against the graph ---- */

typedef enum { DEFECT_MISSING, DEFECT_EXTRA, DEFECT_SHAPE, DEFECT_TYPE } defect;

/* Writes /model view by view with one defect at `victim`. */
static void write_defective(const char *path, lfs_graph *g, defect what, const char *victim) {
  lfs_ckpt_meta m = {.epoch = 1, .world_size = 1, .config = CONFIG};
  lfs_ckpt *h = lfs_ckpt_create(path, &m, err, sizeof err);
  assert_non_null(h);
  char name[256];
  for (int i = 0; i < g->params.nviews; i++) {
    const lfs_param_view *v = &g->params.views[i];
    int64_t dims[4];
    for (int k = 0; k < v->ndim; k++) dims[k] = v->dims[k];
    snprintf(name, sizeof name, "model/%s", v->name);
    const float *data = g->params.data + v->offset;
    int is_victim = !strcmp(v->name, victim);
    if (is_victim && what == DEFECT_MISSING) continue;
    if (is_victim && what == DEFECT_SHAPE) {
      int64_t flat[1] = {(int64_t)v->count};
      assert_int_equal(lfs_ckpt_write_array(h, name, LFS_CKPT_F32, 1, flat, data, err, sizeof err), 0);
    } else if (is_victim && what == DEFECT_TYPE) {
      double *dd = malloc(v->count * sizeof *dd);
      for (size_t k = 0; k < v->count; k++) dd[k] = data[k];
      assert_int_equal(lfs_ckpt_write_array(h, name, LFS_CKPT_F64, v->ndim, dims, dd, err, sizeof err), 0);
      free(dd);
    } else {
      assert_int_equal(lfs_ckpt_write_array(h, name, LFS_CKPT_F32, v->ndim, dims, data, err, sizeof err), 0);
    }
  }
  if (what == DEFECT_EXTRA) {
    const int64_t d1[1] = {2};
    const float x[2] = {1, 2};
    snprintf(name, sizeof name, "model/%s", victim);
    assert_int_equal(lfs_ckpt_write_array(h, name, LFS_CKPT_F32, 1, d1, x, err, sizeof err), 0);
  }
  assert_int_equal(lfs_ckpt_commit(h, err, sizeof err), 0);
}

/* Reading must fail naming the file and the tensor, leaving dst untouched. */
static void expect_read_error(const char *path, lfs_graph *g, const char *a, const char *b) {
  float *dst = malloc(g->params.count * sizeof(float));
  for (size_t i = 0; i < g->params.count; i++) dst[i] = -7.0f;
  lfs_ckpt *h = lfs_ckpt_open(path, err, sizeof err);
  assert_non_null(h);
  assert_int_equal(lfs_ckpt_read_params(h, "model", &g->params, dst, LFS_CKPT_VIEWS_ALL, err, sizeof err), -1);
  lfs_ckpt_close(h);
  assert_err_has(path, NULL);
  assert_err_has(a, b);
  for (size_t i = 0; i < g->params.count; i++)
    if (dst[i] != -7.0f) fail_msg("element %zu was written by a failed read", i);
  free(dst);
}

static void test_read_errors(void **st) {
  (void)st;
  const char *dir = fresh_dir("errors");
  char path[600];
  lfs_graph g;
  build_model(&g);
  fill_model(&g, 3);

  snprintf(path, sizeof path, "%s/missing.h5", dir);
  write_defective(path, &g, DEFECT_MISSING, "layer1.0.bn2.running_var");
  expect_read_error(path, &g, "/model/layer1.0.bn2.running_var: tensor is missing", "shape [8]");

  snprintf(path, sizeof path, "%s/extra.h5", dir);
  write_defective(path, &g, DEFECT_EXTRA, "layer3.0.conv1.weight");
  expect_read_error(path, &g, "/model/layer3.0.conv1.weight: tensor is not in the model", NULL);

  snprintf(path, sizeof path, "%s/shape.h5", dir);
  write_defective(path, &g, DEFECT_SHAPE, "layer2.0.conv2.weight");
  expect_read_error(path, &g, "/model/layer2.0.conv2.weight has shape [2304], the model has [16, 16, 3, 3]", NULL);

  snprintf(path, sizeof path, "%s/type.h5", dir);
  write_defective(path, &g, DEFECT_TYPE, "fc.bias");
  expect_read_error(path, &g, "/model/fc.bias has type float64, expected float32", NULL);

  /* a model of another size: the first tensor that differs is named */
  snprintf(path, sizeof path, "%s/other.h5", dir);
  lfs_graph small;
  lfs_graph_init(&small);
  lfs_demo_net(&small, 4, 1, 8, 5);
  assert_int_equal(lfs_graph_build(&small, lfs_backend_cpu(), (lfs_shape){2, 3, 16, 16}, 0, err, sizeof err), 0);
  write_defective(path, &small, DEFECT_MISSING, "");
  expect_read_error(path, &g, "/model/layer2.0.bn1.weight: tensor is missing", NULL);
  lfs_graph_free(&small);

  /* /optim holds only trainable views: reading it as a whole model fails, and the
   * whole /model read as momentum has tensors that do not belong there */
  state s;
  make_state(&s, 30);
  snprintf(path, sizeof path, "%s/full.h5", dir);
  write_state(path, &s, 0);
  lfs_ckpt *h = lfs_ckpt_open(path, err, sizeof err);
  assert_non_null(h);
  assert_int_equal(lfs_ckpt_read_params(h, "optim", &g.params, g.params.data, LFS_CKPT_VIEWS_ALL, err, sizeof err), -1);
  assert_err_has("/optim/bn1.running_mean: tensor is missing", "shape [4]");
  assert_int_equal(lfs_ckpt_read_params(h, "model", &g.params, s.velocity, LFS_CKPT_VIEWS_TRAINABLE, err, sizeof err), -1);
  assert_err_has("but not as one stored here", NULL);
  assert_int_equal(lfs_ckpt_read_params(h, "nothing", &g.params, g.params.data, LFS_CKPT_VIEWS_ALL, err, sizeof err), -1);
  assert_err_has("/nothing/", "missing");
  lfs_ckpt_close(h);
  free_state(&s);

  /* files that are not checkpoints */
  snprintf(path, sizeof path, "%s/absent.h5", dir);
  assert_null(lfs_ckpt_open(path, err, sizeof err));
  assert_err_has(path, "cannot open");
  snprintf(path, sizeof path, "%s/text.h5", dir);
  write_bytes(path, (const unsigned char *)"hello", 5);
  assert_null(lfs_ckpt_open(path, err, sizeof err));
  assert_err_has(path, "not an HDF5 file");
  lfs_graph_free(&g);
}

/* ---- determinism ---- */

static void test_same_bytes(void **st) {
  (void)st;
  const char *dir = fresh_dir("bytes");
  char p1[600], p2[600];
  snprintf(p1, sizeof p1, "%s/one.h5", dir);
  snprintf(p2, sizeof p2, "%s/two.h5", dir);
  state s;
  make_state(&s, 40);
  write_state(p1, &s, 0);
  /* HDF5 timestamps count seconds: a second apart would differ if any were stored */
  struct timespec ts = {1, 100000000};
  nanosleep(&ts, NULL);
  write_state(p2, &s, 0);
  size_t n1, n2;
  unsigned char *b1 = slurp(p1, &n1), *b2 = slurp(p2, &n2);
  assert_int_equal(n1, n2);
  assert_memory_equal(b1, b2, n1);
  free(b1);
  free(b2);
  /* and the data differ when the contents do */
  s.head[0] += 1.0f;
  write_state(p2, &s, 0);
  b1 = slurp(p1, &n1), b2 = slurp(p2, &n2);
  assert_true(n1 != n2 || memcmp(b1, b2, n1) != 0);
  free(b1);
  free(b2);
  free_state(&s);
}

/* ---- the checkpoint directory ---- */

static void write_small(const char *dir, int64_t epoch, int64_t step) {
  char *p = lfs_ckpt_path(dir, epoch, step);
  lfs_ckpt_meta m = {.epoch = epoch, .step = step, .world_size = 1, .config = CONFIG};
  lfs_ckpt *h = lfs_ckpt_create(p, &m, err, sizeof err);
  assert_non_null(h);
  const int64_t d[1] = {1};
  const float x = (float)(epoch * 1000 + step);
  assert_int_equal(lfs_ckpt_write_array(h, "head/weight", LFS_CKPT_F32, 1, d, &x, err, sizeof err), 0);
  assert_int_equal(lfs_ckpt_commit(h, err, sizeof err), 0);
  free(p);
}

static void write_foreign(const char *path) {
  hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  assert_true(f >= 0);
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, 16);
  hid_t sp = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(f, "format", t, sp, H5P_DEFAULT, H5P_DEFAULT);
  char v[16] = "lfsearch-dataset";
  H5Awrite(a, t, v);
  H5Aclose(a);
  H5Sclose(sp);
  H5Tclose(t);
  H5Fclose(f);
}

static void test_newest_and_prune(void **st) {
  (void)st;
  int64_t e, s;
  assert_true(lfs_ckpt_parse_name("ckpt-e0003-s000010.h5", &e, &s));
  assert_int_equal(e, 3);
  assert_int_equal(s, 10);
  assert_true(lfs_ckpt_parse_name("ckpt-e12345-s1234567.h5", &e, &s));
  assert_int_equal(e, 12345);
  assert_false(lfs_ckpt_parse_name("ckpt-e0003-s000010.h5.tmp-77", &e, &s));
  assert_false(lfs_ckpt_parse_name("ckpt-e-003-s000010.h5", &e, &s));
  assert_false(lfs_ckpt_parse_name("ckpt-e0003-s.h5", &e, &s));
  assert_false(lfs_ckpt_parse_name("ckpt-e0003-s000010.h5x", &e, &s));

  char *none = (char *)"x";
  assert_int_equal(lfs_ckpt_newest(WORK "/no-such-dir", &none, err, sizeof err), 0);
  assert_null(none);
  const char *dir = fresh_dir("dir");
  assert_int_equal(lfs_ckpt_newest(dir, &none, err, sizeof err), 0);

  write_small(dir, 1, 0);
  write_small(dir, 2, 0);
  write_small(dir, 2, 50); /* mid-epoch */
  write_small(dir, 3, 0);
  char p[600], q[600];
  char *c3 = lfs_ckpt_path(dir, 3, 0);
  /* newer-named files that are not complete checkpoints */
  char *bad = lfs_ckpt_path(dir, 4, 0);
  copy_file(c3, bad, 0.5); /* truncated */
  free(bad);
  bad = lfs_ckpt_path(dir, 4, 10);
  write_foreign(bad); /* another format */
  free(bad);
  bad = lfs_ckpt_path(dir, 5, 0);
  write_bytes(bad, (const unsigned char *)"\x89HDF\r\n\x1a\n garbage", 17); /* corrupt */
  free(bad);
  bad = lfs_ckpt_path(dir, 6, 0);
  copy_file(c3, bad, 1.0); /* complete, but says epoch 3 */
  free(bad);
  snprintf(p, sizeof p, "%s/ckpt-e0007-s000000.h5.tmp-4242", dir);
  copy_file(c3, p, 1.0); /* a writer still at work */
  snprintf(q, sizeof q, "%s/ckpt-e0001-s000000.h5.tmp-4243", dir);
  copy_file(c3, q, 0.3); /* an old writer that crashed */
  snprintf(p, sizeof p, "%s/notes.txt", dir);
  write_bytes(p, (const unsigned char *)"x", 1);

  char *newest = NULL;
  assert_int_equal(lfs_ckpt_newest(dir, &newest, err, sizeof err), 1);
  assert_string_equal(newest, c3);
  lfs_ckpt *h = lfs_ckpt_open(newest, err, sizeof err);
  assert_non_null(h);
  float x;
  const int64_t d[1] = {1};
  assert_int_equal(lfs_ckpt_read_array(h, "head/weight", LFS_CKPT_F32, 1, d, &x, err, sizeof err), 0);
  assert_true(x == 3000.0f);
  lfs_ckpt_close(h);
  free(newest);

  assert_int_equal(lfs_ckpt_prune(dir, 0, err, sizeof err), -1);
  assert_err_has("at least 1", NULL);
  /* keep 2: e3 and e2s50 stay; e2s0, e1s0 and the old temporary file go */
  assert_int_equal(lfs_ckpt_prune(dir, 2, err, sizeof err), 3);
  char *k;
  k = lfs_ckpt_path(dir, 3, 0), assert_true(exists(k)), free(k);
  k = lfs_ckpt_path(dir, 2, 50), assert_true(exists(k)), free(k);
  k = lfs_ckpt_path(dir, 2, 0), assert_false(exists(k)), free(k);
  k = lfs_ckpt_path(dir, 1, 0), assert_false(exists(k)), free(k);
  assert_false(exists(q));
  snprintf(p, sizeof p, "%s/ckpt-e0007-s000000.h5.tmp-4242", dir);
  assert_true(exists(p));
  k = lfs_ckpt_path(dir, 4, 0), assert_true(exists(k)), free(k); /* newer: left to look at */
  snprintf(p, sizeof p, "%s/notes.txt", dir);
  assert_true(exists(p));
  /* pruning again changes nothing; keep 1 then drops e2s50 */
  assert_int_equal(lfs_ckpt_prune(dir, 2, err, sizeof err), 0);
  assert_int_equal(lfs_ckpt_prune(dir, 1, err, sizeof err), 1);
  k = lfs_ckpt_path(dir, 2, 50), assert_false(exists(k)), free(k);
  assert_true(exists(c3));
  free(c3);

  /* an aborted writer leaves nothing */
  lfs_ckpt_meta m = {.epoch = 9, .world_size = 1, .config = CONFIG};
  char *p9 = lfs_ckpt_path(dir, 9, 0);
  h = lfs_ckpt_create(p9, &m, err, sizeof err);
  assert_non_null(h);
  assert_int_equal(count_names(dir, "ckpt-e0009"), 1); /* its temporary file */
  lfs_ckpt_close(h);
  assert_int_equal(count_names(dir, "ckpt-e0009"), 0);
  /* a directory that does not exist: create fails cleanly */
  free(p9);
  p9 = lfs_ckpt_path(WORK "/no-such-dir", 9, 0);
  assert_null(lfs_ckpt_create(p9, &m, err, sizeof err));
  assert_err_has(p9, "cannot create");
  free(p9);
}

/* ---- run log ---- */

static const char *const METRICS[2] = {"val_acc", "test_acc"};

/* Deterministic row values for (epoch, candidate, component). */
static double val(int64_t e, int m, int k, int col) { return e * 100.0 + m * 10.0 + k + col / 8.0; }

typedef struct {
  double u[4 * 3], a[4], reward[4], loss[4], mu[3], sigma[3], metrics[2];
  lfs_runlog_row row;
} row_buf;

static void make_row(row_buf *b, int64_t e, int M, int d, double salt) {
  for (int m = 0; m < M; m++) {
    for (int k = 0; k < d; k++) b->u[m * d + k] = val(e, m, k, 0) + salt;
    b->a[m] = -val(e, m, 0, 1) + salt;
    b->reward[m] = val(e, m, 0, 2) + salt;
    b->loss[m] = val(e, m, 0, 3) + salt;
  }
  for (int k = 0; k < d; k++) b->mu[k] = val(e, 0, k, 4) + salt, b->sigma[k] = val(e, 0, k, 5) + salt;
  b->metrics[0] = val(e, 0, 0, 6) + salt;
  b->metrics[1] = val(e, 0, 0, 7) + salt;
  b->row = (lfs_runlog_row){.epoch = e, .u = b->u, .a = b->a, .reward = b->reward, .loss = b->loss,
                            .chosen = (int)(e % M), .mu = b->mu, .sigma = b->sigma,
                            .lr = 0.1 / (double)(e + 1) + salt, .wall_seconds = 60.5 + (double)e,
                            .images_per_second = 1234.25 * (double)(e + 1), .metrics = b->metrics};
}

/* Checks row e of a log read from disk; metrics by name (the reader sorts them). */
static void check_row(const lfs_runlog *log, int64_t e, double salt) {
  const int M = lfs_runlog_M(log), d = lfs_runlog_d(log);
  row_buf w;
  make_row(&w, e, M, d, salt);
  lfs_runlog_row r;
  lfs_runlog_get(log, e, &r);
  assert_int_equal(r.epoch, e);
  assert_int_equal(r.chosen, w.row.chosen);
  if (d > 0) {
    assert_memory_equal(r.u, w.u, (size_t)(M * d) * sizeof(double));
    assert_memory_equal(r.a, w.a, (size_t)M * sizeof(double));
    assert_memory_equal(r.mu, w.mu, (size_t)d * sizeof(double));
    assert_memory_equal(r.sigma, w.sigma, (size_t)d * sizeof(double));
  } else {
    assert_null(r.u);
    assert_null(r.mu);
  }
  assert_memory_equal(r.reward, w.reward, (size_t)M * sizeof(double));
  assert_memory_equal(r.loss, w.loss, (size_t)M * sizeof(double));
  assert_true(r.lr == w.row.lr && r.wall_seconds == w.row.wall_seconds &&
              r.images_per_second == w.row.images_per_second);
  for (int i = 0; i < lfs_runlog_nmetrics(log); i++) {
    const char *name = lfs_runlog_metric(log, i);
    double want = !strcmp(name, "val_acc") ? w.metrics[0] : w.metrics[1];
    assert_true(r.metrics[i] == want);
  }
}

static lfs_runlog_spec spec_of(int M, int d, int nmetrics) {
  return (lfs_runlog_spec){.M = M, .d = d, .config = CONFIG, .nmetrics = nmetrics, .metrics = METRICS};
}

static void append_rows(lfs_runlog *log, int64_t from, int64_t to, int M, int d, double salt) {
  for (int64_t e = from; e < to; e++) {
    row_buf b;
    make_row(&b, e, M, d, salt);
    if (lfs_runlog_append(log, &b.row, err, sizeof err) != 0) fail_msg("append %lld: %s", (long long)e, err);
  }
}

/* dims of a dataset of the file, straight from HDF5 */
static int file_dims(const char *path, const char *name, hsize_t *dims) {
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  assert_true(f >= 0);
  int nd = -1;
  if (H5Lexists(f, name, H5P_DEFAULT) > 0) {
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    hid_t sp = H5Dget_space(d);
    nd = H5Sget_simple_extent_dims(sp, dims, NULL);
    H5Sclose(sp);
    H5Dclose(d);
  }
  H5Fclose(f);
  return nd;
}

static void test_runlog_round_trip(void **st) {
  (void)st;
  const char *dir = fresh_dir("runlog");
  char path[600];
  snprintf(path, sizeof path, "%s/run.h5", dir);
  lfs_runlog_spec spec = spec_of(4, 3, 2);
  lfs_runlog *log = lfs_runlog_create(path, &spec, err, sizeof err);
  assert_non_null(log);
  append_rows(log, 0, 3, 4, 3, 0.0);
  /* a row out of order, or naming a candidate that does not exist, is refused */
  row_buf b;
  make_row(&b, 5, 4, 3, 0.0);
  assert_int_equal(lfs_runlog_append(log, &b.row, err, sizeof err), -1);
  assert_err_has(path, "row for epoch 5, but 3 epochs are logged");
  make_row(&b, 3, 4, 3, 0.0);
  b.row.chosen = 4;
  assert_int_equal(lfs_runlog_append(log, &b.row, err, sizeof err), -1);
  assert_err_has("chosen candidate 4", NULL);
  lfs_runlog_close(log);
  assert_int_equal(count_names(dir, ".tmp-"), 0);

  log = lfs_runlog_open(path, err, sizeof err);
  assert_non_null(log);
  assert_int_equal(lfs_runlog_epochs(log), 3);
  assert_int_equal(lfs_runlog_M(log), 4);
  assert_int_equal(lfs_runlog_d(log), 3);
  assert_string_equal(lfs_runlog_config(log), CONFIG);
  assert_int_equal(lfs_runlog_nmetrics(log), 2);
  assert_string_equal(lfs_runlog_metric(log, 0), "test_acc");
  for (int64_t e = 0; e < 3; e++) check_row(log, e, 0.0);
  lfs_runlog_close(log);

  hsize_t dims[3];
  assert_int_equal(file_dims(path, "/u", dims), 3);
  assert_true(dims[0] == 3 && dims[1] == 4 && dims[2] == 3);
  assert_int_equal(file_dims(path, "/mu", dims), 2);
  assert_true(dims[0] == 3 && dims[1] == 3);
  assert_int_equal(file_dims(path, "/metrics/val_acc", dims), 1);
  assert_true(dims[0] == 3);

  /* a fresh run never overwrites a log */
  assert_null(lfs_runlog_create(path, &spec, err, sizeof err));
  assert_err_has(path, "already there");
}

static void test_runlog_layouts(void **st) {
  (void)st;
  const char *dir = fresh_dir("layouts");
  char path[600];
  /* train: M = 1, d = 0, no policy columns */
  snprintf(path, sizeof path, "%s/train.h5", dir);
  lfs_runlog_spec spec = spec_of(1, 0, 1);
  lfs_runlog *log = lfs_runlog_create(path, &spec, err, sizeof err);
  assert_non_null(log);
  lfs_runlog_close(log);
  log = lfs_runlog_open(path, err, sizeof err); /* empty, but valid */
  assert_non_null(log);
  assert_int_equal(lfs_runlog_epochs(log), 0);
  lfs_runlog_close(log);
  log = lfs_runlog_resume(path, &spec, 0, err, sizeof err);
  assert_non_null(log);
  append_rows(log, 0, 2, 1, 0, 0.5);
  lfs_runlog_close(log);
  log = lfs_runlog_open(path, err, sizeof err);
  assert_non_null(log);
  assert_int_equal(lfs_runlog_epochs(log), 2);
  assert_int_equal(lfs_runlog_nmetrics(log), 1);
  assert_string_equal(lfs_runlog_metric(log, 0), "val_acc");
  check_row(log, 0, 0.5);
  check_row(log, 1, 0.5);
  lfs_runlog_close(log);
  hsize_t dims[3];
  assert_int_equal(file_dims(path, "/u", dims), -1);
  assert_int_equal(file_dims(path, "/mu", dims), -1);
  assert_int_equal(file_dims(path, "/reward", dims), 2);
  assert_true(dims[0] == 2 && dims[1] == 1);
  assert_int_equal(file_dims(path, "/chosen", dims), 1);

  /* d = 1: u is [E, M] */
  snprintf(path, sizeof path, "%s/d1.h5", dir);
  spec = spec_of(3, 1, 0);
  log = lfs_runlog_create(path, &spec, err, sizeof err);
  assert_non_null(log);
  append_rows(log, 0, 2, 3, 1, 0.0);
  lfs_runlog_close(log);
  assert_int_equal(file_dims(path, "/u", dims), 2);
  assert_true(dims[0] == 2 && dims[1] == 3);
  log = lfs_runlog_open(path, err, sizeof err);
  assert_non_null(log);
  check_row(log, 1, 0.0);
  lfs_runlog_close(log);

  /* bad specs */
  spec = spec_of(0, 1, 0);
  assert_null(lfs_runlog_create(path, &spec, err, sizeof err));
  assert_err_has("M = 0", NULL);
  const char *const dup[2] = {"x", "x"};
  spec = (lfs_runlog_spec){.M = 1, .nmetrics = 2, .metrics = dup};
  assert_null(lfs_runlog_create(path, &spec, err, sizeof err));
  assert_err_has("\"x\" named twice", NULL);
}

/* A child appends rows and reports each on a pipe; the parent SIGKILLs it. With
 * `stop_after` > 0 the child stops after that many rows and waits to be killed;
 * else it appends until killed. Returns the number of rows the child reported. */
static int64_t killed_writer(const char *path, int64_t stop_after, int kill_at, unsigned delay_us) {
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    close(fds[0]);
    lfs_runlog_spec spec = spec_of(4, 3, 2);
    lfs_runlog *log = lfs_runlog_create(path, &spec, err, sizeof err);
    if (!log) _exit(2);
    int64_t limit = stop_after > 0 ? stop_after : 2000;
    for (int64_t e = 0; e < limit; e++) {
      row_buf b;
      make_row(&b, e, 4, 3, 0.0);
      if (lfs_runlog_append(log, &b.row, err, sizeof err) != 0) _exit(3);
      if (write(fds[1], &e, sizeof e) != (ssize_t)sizeof e) _exit(4);
    }
    for (;;) pause(); /* never closes the log */
  }
  close(fds[1]);
  int64_t reported = 0, e;
  while (reported < (stop_after > 0 ? stop_after : kill_at) && read(fds[0], &e, sizeof e) == (ssize_t)sizeof e)
    reported = e + 1;
  if (delay_us) {
    struct timespec ts = {0, (long)delay_us * 1000L};
    nanosleep(&ts, NULL);
  }
  assert_int_equal(kill(pid, SIGKILL), 0);
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  while (read(fds[0], &e, sizeof e) == (ssize_t)sizeof e) reported = e + 1;
  close(fds[0]);
  return reported;
}

static void test_runlog_killed_writer(void **st) {
  (void)st;
  const char *dir = fresh_dir("killed");
  char path[600];
  snprintf(path, sizeof path, "%s/run.h5", dir);
  assert_int_equal(killed_writer(path, 2, 0, 0), 2);
  lfs_runlog *log = lfs_runlog_open(path, err, sizeof err);
  if (!log) fail_msg("%s", err);
  assert_int_equal(lfs_runlog_epochs(log), 2);
  check_row(log, 0, 0.0);
  check_row(log, 1, 0.0);
  lfs_runlog_close(log);

  /* killed at some moment while appending: every reported row is there, and at
   * most the one being written when it died beyond them */
  for (int trial = 0; trial < 3; trial++) {
    unlink(path);
    int64_t reported = killed_writer(path, 0, 5, (unsigned)(trial * 1700));
    log = lfs_runlog_open(path, err, sizeof err);
    if (!log) fail_msg("trial %d: %s", trial, err);
    int64_t rows = lfs_runlog_epochs(log);
    if (rows < reported || rows > reported + 1)
      fail_msg("trial %d: %lld rows in the file, %lld reported", trial, (long long)rows, (long long)reported);
    for (int64_t r = 0; r < rows; r++) check_row(log, r, 0.0);
    lfs_runlog_close(log);
    /* and the run resumes from it */
    lfs_runlog_spec spec = spec_of(4, 3, 2);
    log = lfs_runlog_resume(path, &spec, reported, err, sizeof err);
    if (!log) fail_msg("trial %d: %s", trial, err);
    append_rows(log, reported, reported + 1, 4, 3, 0.0);
    lfs_runlog_close(log);
  }
}

static void test_runlog_resume(void **st) {
  (void)st;
  const char *dir = fresh_dir("resume");
  char path[600];
  snprintf(path, sizeof path, "%s/run.h5", dir);
  lfs_runlog_spec spec = spec_of(4, 3, 2);
  lfs_runlog *log = lfs_runlog_create(path, &spec, err, sizeof err);
  assert_non_null(log);
  append_rows(log, 0, 5, 4, 3, 0.0);
  lfs_runlog_close(log);

  /* the checkpoint of epoch 3: rows 3 and 4 are redone with other values */
  const char *const swapped[2] = {"test_acc", "val_acc"};
  lfs_runlog_spec spec2 = spec;
  spec2.metrics = swapped;
  spec2.config = "[run]\nname = resumed\n";
  log = lfs_runlog_resume(path, &spec2, 3, err, sizeof err);
  assert_non_null(log);
  assert_int_equal(lfs_runlog_epochs(log), 3);
  lfs_runlog_close(log);
  log = lfs_runlog_open(path, err, sizeof err); /* truncated on disk at once */
  assert_non_null(log);
  assert_int_equal(lfs_runlog_epochs(log), 3);
  lfs_runlog_close(log);
  log = lfs_runlog_resume(path, &spec, 3, err, sizeof err);
  assert_non_null(log);
  append_rows(log, 3, 4, 4, 3, 0.25);
  lfs_runlog_close(log);
  log = lfs_runlog_open(path, err, sizeof err);
  assert_non_null(log);
  assert_int_equal(lfs_runlog_epochs(log), 4);
  for (int64_t e = 0; e < 3; e++) check_row(log, e, 0.0);
  check_row(log, 3, 0.25);
  assert_string_equal(lfs_runlog_config(log), CONFIG);
  lfs_runlog_close(log);

  /* impossible resumes name the problem and leave the file alone */
  size_t n0, n1;
  unsigned char *before = slurp(path, &n0);
  assert_null(lfs_runlog_resume(path, &spec, 6, err, sizeof err));
  assert_err_has(path, "has 4 epochs, but the checkpoint resumes after 6");
  lfs_runlog_spec other = spec_of(8, 3, 2);
  assert_null(lfs_runlog_resume(path, &other, 2, err, sizeof err));
  assert_err_has("M = 4, d = 3; this run has M = 8, d = 3", NULL);
  other = spec_of(4, 3, 1);
  assert_null(lfs_runlog_resume(path, &other, 2, err, sizeof err));
  assert_err_has("2 metric columns, this run has 1", NULL);
  const char *const renamed[2] = {"val_acc", "lfw_acc"};
  other = spec;
  other.metrics = renamed;
  assert_null(lfs_runlog_resume(path, &other, 2, err, sizeof err));
  assert_err_has("no metric column \"lfw_acc\"", NULL);
  unsigned char *after = slurp(path, &n1);
  assert_int_equal(n0, n1);
  assert_memory_equal(before, after, n0);
  free(before);
  free(after);
  char absent[600];
  snprintf(absent, sizeof absent, "%s/absent.h5", dir);
  assert_null(lfs_runlog_resume(absent, &spec, 1, err, sizeof err));
  assert_err_has("cannot resume the run log", absent);
  /* a checkpoint is not a run log */
  char *ck = lfs_ckpt_path(dir, 1, 0);
  write_small(dir, 1, 0);
  assert_null(lfs_runlog_open(ck, err, sizeof err));
  assert_err_has("format is \"lfsearch-checkpoint\", expected \"lfsearch-run\"", NULL);
  free(ck);
}

/* Every HDF5 object of the library's calls is closed again. */
static void test_nothing_left_open(void **st) {
  (void)st;
  assert_int_equal(H5Fget_obj_count((hid_t)H5F_OBJ_ALL, H5F_OBJ_ALL), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_params_round_trip),  cmocka_unit_test(test_candidates),
      cmocka_unit_test(test_read_errors),        cmocka_unit_test(test_same_bytes),
      cmocka_unit_test(test_newest_and_prune),   cmocka_unit_test(test_runlog_round_trip),
      cmocka_unit_test(test_runlog_layouts),     cmocka_unit_test(test_runlog_killed_writer),
      cmocka_unit_test(test_runlog_resume),      cmocka_unit_test(test_nothing_left_open),
  };
  int failed = cmocka_run_group_tests(tests, NULL, NULL);
  if (failed == 0 && !getenv("KEEP")) rm_dir(WORK);
  return failed;
}
