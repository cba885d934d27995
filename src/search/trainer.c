/* trainer.c: one candidate's training state and step (see trainer.h): model
 * forward, cosine-head loss, backward, gradient averaging over the group, global
 * norm clipping of the backbone, SGD on backbone and head; verification on pair
 * sets; checkpoints. Layout: activations NCHW in the backend's memory; head,
 * optimizer state and (on a device backend) mirrors of the parameters on the
 * host. On a device backend with NCCL (lfs/devcomm.h) the group's collectives
 * and the winner's broadcast work on device memory; without it, through the
 * host mirrors. */
#include "lfs/trainer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lfs/checkpoint.h"
#include "lfs/comm.h"
#include "lfs/dataset.h"
#include "lfs/loader.h"
#include "lfs/log.h"
#include "lfs/philox.h"

/* Class-weight initialisation N(0, 0.01), as arcface_torch's partial FC. */
#define LFS_HEAD_INIT_STD 0.01
#define LFS_HEAD_INIT_STREAM 0x48454144u /* "HEAD" */

/* The schema's default of "section.key", as a number. */
static double schema_default(const char *name) {
  const char *dot = strchr(name, '.');
  for (size_t i = 0; i < lfs_cfg_schema_count; i++) {
    const lfs_cfg_key *k = &lfs_cfg_schema[i];
    if (!strncmp(k->section, name, (size_t)(dot - name)) && !k->section[dot - name] &&
        !strcmp(k->key, dot + 1))
      return strtod(k->default_value, NULL);
  }
  lfs_fatal("%s is not in the configuration schema", name);
}

/* Margins keep the loss's own defaults (DESIGN §1.2 table) unless the user set
 * another value. A value equal to the schema's default counts as not set: a
 * configuration read back from a checkpoint lists every key. */
static void set_if_given(const lfs_config *cfg, const char *name, double *field) {
  const double v = lfs_config_real(cfg, name);
  if (v != schema_default(name)) *field = v;
}

static int head_from_config(lfs_head_cfg *h, const lfs_config *cfg, char *err, size_t errlen) {
  lfs_head_cfg_init(h, (lfs_loss_kind)lfs_config_choice(cfg, "head.loss"));
  h->s = lfs_config_real(cfg, "head.scale");
  set_if_given(cfg, "head.m1", &h->m1);
  set_if_given(cfg, "head.m2", &h->m2);
  set_if_given(cfg, "head.m3", &h->m3);
  set_if_given(cfg, "head.mv_t", &h->mv_t);
  set_if_given(cfg, "head.lambda_base", &h->lambda_base);
  set_if_given(cfg, "head.lambda_gamma", &h->lambda_gamma);
  set_if_given(cfg, "head.lambda_power", &h->lambda_power);
  set_if_given(cfg, "head.lambda_min", &h->lambda_min);
  h->a = lfs_config_real(cfg, "head.a");
  h->margin_grad = (lfs_margin_grad)lfs_config_choice(cfg, "head.margin_grad");
  h->mv_mode = (lfs_mv_mode)lfs_config_choice(cfg, "head.mv_mode");
  char why[512];
  if (lfs_head_cfg_check(h, why, sizeof why) != 0) {
    snprintf(err, errlen, "[head]: %s", why);
    return -1;
  }
  return 0;
}

static void init_head_weights(lfs_trainer *t) {
  const lfs_rng rng = lfs_rng_make(t->seed, LFS_RNG_INIT, LFS_HEAD_INIT_STREAM, 0);
  for (size_t i = 0; i < (size_t)t->K * t->D; i++)
    t->w[i] = (float)(LFS_HEAD_INIT_STD * lfs_rng_normal(&rng, i));
}

/* [run] backend: cpu, cuda (this rank's GPU) or cpu-staged. */
static lfs_backend *backend_from_config(const lfs_config *cfg, char *err, size_t errlen) {
  const char *name = lfs_config_string(cfg, "run.backend");
  char why[256] = "";
  lfs_backend *be = lfs_backend_profiled(!strcmp(name, "cuda") ? lfs_backend_cuda(why, sizeof why)
                                                               : lfs_backend_get(name));
  if (!be) snprintf(err, errlen, "[run] backend = %s: %s", name, why[0] ? why : "not available");
  return be;
}

/* Where the step works (see trainer.h): aliases of the host arrays on the CPU
 * backend; on a device backend, device copies of the whole training state and
 * host copies of the parameters and gradients. Called once everything exists. */
static void stage(lfs_trainer *t) {
  lfs_params *p = &t->g.params;
  lfs_backend *be = p->be;
  const size_t head = (size_t)t->K * t->D, feat = (size_t)t->local_batch * t->D;
  t->host = *p;
  t->staged = be->device >= 0;
  if (!t->staged) {
    t->dev.velocity = t->opt.velocity, t->dev.w = t->w, t->dev.dw = t->dw, t->dev.vw = t->vw;
    t->dev.dfeat = t->dfeat, t->dev.x[0] = t->dev.x[1] = NULL;
    return;
  }
  t->host.be = lfs_backend_cpu();
  t->host.data = be->ops->host_alloc(be, p->count);
  t->host.grad = be->ops->host_alloc(be, p->trainable_count);
  be->ops->download(be, t->host.data, p->data, p->count);
  t->feat = be->ops->host_alloc(be, feat);
  lfs_backend_set_purpose("the training state's device copies (input batches, momentum, the "
                          "head's %d x %d class weights)", t->K, t->D);
  for (int i = 0; i < 2; i++) t->dev.x[i] = be->ops->alloc(be, lfs_shape_count(t->g.input));
  t->dev.dfeat = be->ops->alloc(be, feat);
  t->dev.velocity = be->ops->alloc(be, p->trainable_count);
  t->dev.w = be->ops->alloc(be, head), t->dev.dw = be->ops->alloc(be, head);
  t->dev.vw = be->ops->alloc(be, head);
  lfs_backend_set_purpose(NULL);
  be->ops->upload(be, t->dev.w, t->w, head);
  be->ops->upload(be, t->dev.vw, t->vw, head);
  be->ops->upload(be, t->dev.velocity, t->opt.velocity, p->trainable_count);
}

static void unstage(lfs_trainer *t) {
  if (!t->staged) return;
  lfs_backend *be = t->g.be;
  be->ops->host_free(be, t->host.data), be->ops->host_free(be, t->host.grad);
  be->ops->host_free(be, t->feat);
  float *dev[] = {t->dev.x[0], t->dev.x[1], t->dev.dfeat, t->dev.velocity,
                  t->dev.w,    t->dev.dw,   t->dev.vw};
  for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++) be->ops->free(be, dev[i]);
  t->staged = 0;
}

/* Staged: the host copies of the training state become the device's. */
static void pull_state(lfs_trainer *t) {
  if (!t->staged) return;
  lfs_backend *be = t->g.be;
  const size_t head = (size_t)t->K * t->D;
  be->ops->download(be, t->host.data, t->g.params.data, t->g.params.count);
  be->ops->download(be, t->opt.velocity, t->dev.velocity, t->g.params.trainable_count);
  be->ops->download(be, t->w, t->dev.w, head);
  be->ops->download(be, t->vw, t->dev.vw, head);
}

/* Staged: the device's training state becomes the host copies. */
static void push_state(lfs_trainer *t) {
  if (!t->staged) return;
  lfs_backend *be = t->g.be;
  const size_t head = (size_t)t->K * t->D;
  be->ops->upload(be, t->g.params.data, t->host.data, t->g.params.count);
  be->ops->upload(be, t->dev.velocity, t->opt.velocity, t->g.params.trainable_count);
  be->ops->upload(be, t->dev.w, t->w, head);
  be->ops->upload(be, t->dev.vw, t->vw, head);
}

/* The network's input in the backend's memory. */
float *lfs_trainer_input_alloc(lfs_trainer *t) {
  return t->g.be->ops->host_alloc(t->g.be, lfs_shape_count(t->g.input));
}

void lfs_trainer_input_free(lfs_trainer *t, float *x) { t->g.be->ops->host_free(t->g.be, x); }

static const float *input_on_backend(lfs_trainer *t, const float *x) {
  if (!t->staged) return x;
  t->g.be->ops->upload(t->g.be, t->dev.x[0], x, lfs_shape_count(t->g.input));
  return t->dev.x[0];
}

/* A step's input: copied beside the work still running (the previous step's
 * backward pass), into the buffer that work does not read. x, the caller's,
 * may change once the step has returned: its head_loss waits for the copy. */
static const float *step_input_on_backend(lfs_trainer *t, const float *x) {
  if (!t->staged) return x;
  t->x_slot ^= 1;
  float *dst = t->dev.x[t->x_slot];
  t->g.be->ops->upload_async(t->g.be, dst, x, lfs_shape_count(t->g.input));
  return dst;
}

/* Embeddings on the host. */
static const float *features_on_host(lfs_trainer *t, const float *feat) {
  if (!t->staged) return feat;
  t->g.be->ops->download(t->g.be, t->feat, feat, (size_t)t->local_batch * t->D);
  return t->feat;
}

/* Staged on several ranks: the group's collectives on the device where NCCL
 * allows (collective over the group); lfs_trainer_announce says which way the
 * gradients go. */
static void open_group_devcomm(lfs_trainer *t) {
  if (!t->staged || t->ranks < 2) return;
  char why[256] = "";
  t->devcomm = lfs_devcomm_create(t->g.be, t->comm, why, sizeof why);
  if (t->devcomm)
    snprintf(t->gradient_path, sizeof t->gradient_path,
             "gradients: averaged over %d ranks on the device (%s)", t->ranks, lfs_nccl_describe());
  else
    snprintf(t->gradient_path, sizeof t->gradient_path,
             "gradients: averaged over %d ranks through the host (%s)", t->ranks, why);
  t->gradient_path_warn = !t->devcomm && !strcmp(t->g.be->ops->name, "cuda");
}

void lfs_trainer_announce(const lfs_trainer *t) {
  if (!t->gradient_path[0]) return;
  if (t->gradient_path_warn && lfs_log_rank() == 0)
    lfs_warn("%s", t->gradient_path);
  else
    lfs_info("%s", t->gradient_path);
}

static int build_model(lfs_trainer *t, const lfs_config *cfg, char *err, size_t errlen) {
  snprintf(t->arch, sizeof t->arch, "%s", lfs_config_string(cfg, "model.arch"));
  t->model = (lfs_model_cfg){.arch = t->arch,
                             .embedding = (int)lfs_config_int(cfg, "model.embedding_size"),
                             .dropout = (float)lfs_config_real(cfg, "model.dropout"),
                             .input = t->image_size};
  lfs_backend *be = backend_from_config(cfg, err, errlen);
  if (!be) return -1;
  lfs_graph_init(&t->g);
  char why[512];
  if (lfs_model_build(&t->g, &t->model, why, sizeof why) < 0 ||
      lfs_graph_build(&t->g, be, lfs_model_input_shape(&t->model, t->local_batch), 0, why,
                      sizeof why) != 0) {
    snprintf(err, errlen, "[model] arch = %s: %s", t->arch, why);
    lfs_graph_free(&t->g);
    return -1;
  }
  lfs_model_init_params(&t->g, &t->model, t->seed);
  t->D = lfs_graph_output_shape(&t->g).c;
  return 0;
}

int lfs_trainer_init(lfs_trainer *t, const lfs_config *cfg, int classes, int64_t steps_per_epoch,
                     MPI_Comm comm, char *err, size_t errlen) {
  memset(t, 0, sizeof *t);
  t->comm = comm;
  MPI_Comm_rank(comm, &t->rank);
  MPI_Comm_size(comm, &t->ranks);
  t->seed = (uint64_t)lfs_config_int(cfg, "run.seed");
  t->global_batch = (int)lfs_config_int(cfg, "data.batch_size");
  t->image_size = (int)lfs_config_int(cfg, "data.image_size");
  t->sync_bn = lfs_config_bool(cfg, "model.sync_bn");
  t->clip_norm = lfs_config_real(cfg, "optim.clip_norm");
  t->K = classes;
  if (t->global_batch % t->ranks) {
    snprintf(err, errlen, "[data] batch_size = %d is not divisible by the %d ranks", t->global_batch,
             t->ranks);
    return -1;
  }
  t->local_batch = t->global_batch / t->ranks;
  if (head_from_config(&t->head, cfg, err, errlen) != 0 || build_model(t, cfg, err, errlen) != 0)
    return -1;
  if (lfs_schedule_from_config(&t->sched, cfg, steps_per_epoch, err, errlen) != 0) {
    lfs_trainer_free(t);
    return -1;
  }
  const size_t head = (size_t)t->K * t->D;
  t->w = lfs_alloc_floats(head), t->dw = lfs_alloc_floats(head), t->vw = lfs_alloc_floats(head);
  memset(t->vw, 0, head * sizeof(float));
  t->dfeat = lfs_alloc_floats((size_t)t->local_batch * t->D);
  init_head_weights(t);
  lfs_sgd_init(&t->opt, &t->g.params, (float)lfs_config_real(cfg, "optim.lr"),
               (float)lfs_config_real(cfg, "optim.momentum"),
               (float)lfs_config_real(cfg, "optim.weight_decay"));
  if (!lfs_config_bool(cfg, "optim.decay_bn")) lfs_sgd_set_decay(&t->opt, &t->g.params, lfs_decay_weights_only, NULL);
  stage(t);
  open_group_devcomm(t);
  return 0;
}

void lfs_trainer_free(lfs_trainer *t) {
  lfs_devcomm_free(t->devcomm);
  lfs_devcomm_free(t->bcast.dc);
  unstage(t);
  lfs_sgd_free(&t->opt);
  lfs_graph_free(&t->g);
  free(t->w), free(t->dw), free(t->vw), free(t->dfeat);
  memset(t, 0, sizeof *t);
}

static lfs_pass make_pass(lfs_trainer *t, int training) {
  lfs_pass ps = {.be = t->g.be, .params = &t->g.params, .training = training, .seed = t->seed,
                 .step = (uint64_t)t->step};
  if (training && t->sync_bn && t->ranks > 1) {
    ps.sync_bn = lfs_group_sum_doubles;
    ps.sync_ctx = &t->comm;
  }
  return ps;
}

/* Staged: the group's mean on the device where there is a devcomm, otherwise
 * through the host (only with a group); clipping needs the backbone's gradients
 * on the host either way (the head is not clipped). */
static void exchange_staged(lfs_trainer *t) {
  lfs_params *p = &t->host;
  lfs_backend *be = t->g.be;
  const size_t head = (size_t)t->K * t->D;
  const int host_mean = t->ranks > 1 && !t->devcomm, clip = t->clip_norm > 0;
  if (t->devcomm) {
    lfs_devcomm_allreduce_mean(t->devcomm, t->g.params.grad, p->trainable_count);
    lfs_devcomm_allreduce_mean(t->devcomm, t->dev.dw, head);
  }
  if (!host_mean && !clip) return;
  be->ops->download(be, p->grad, t->g.params.grad, p->trainable_count);
  if (host_mean) {
    be->ops->download(be, t->dw, t->dev.dw, head);
    lfs_allreduce_mean(p->grad, p->trainable_count, t->comm);
    lfs_allreduce_mean(t->dw, head, t->comm);
    be->ops->upload(be, t->dev.dw, t->dw, head);
  }
  if (clip) lfs_clip_grad_norm_params(p, t->clip_norm);
  be->ops->upload(be, t->g.params.grad, p->grad, p->trainable_count);
}

/* The gradients averaged over the group and the backbone's clipped, in place. */
static void exchange_gradients(lfs_trainer *t) {
  if (t->staged) {
    exchange_staged(t);
    return;
  }
  lfs_allreduce_mean(t->host.grad, t->host.trainable_count, t->comm);
  lfs_allreduce_mean(t->dw, (size_t)t->K * t->D, t->comm);
  if (t->clip_norm > 0) lfs_clip_grad_norm_params(&t->host, t->clip_norm);
}

/* Without synchronised BN every rank's running statistics follow its own slice;
 * like PyTorch DDP (broadcast_buffers) rank 0's are everyone's, so that
 * verification and checkpoints see one model. */
static void share_bn_statistics(lfs_trainer *t) {
  if (t->ranks == 1 || t->sync_bn) return;
  const lfs_params *p = &t->g.params;
  lfs_backend *be = t->g.be;
  float *buffers = t->host.data + p->trainable_count;
  const size_t n = p->count - p->trainable_count;
  if (t->devcomm) {
    lfs_devcomm_broadcast(t->devcomm, p->data + p->trainable_count, n, 0);
    return;
  }
  be->ops->download(be, buffers, p->data + p->trainable_count, n);
  lfs_broadcast(buffers, n, 0, t->comm);
  be->ops->upload(be, p->data + p->trainable_count, buffers, n);
}

double lfs_trainer_step(lfs_trainer *t, const float *x, const int32_t *labels,
                        lfs_head_stats *stats) {
  lfs_backend *be = t->g.be;
  lfs_pass ps = make_pass(t, 1);
  const float *xb = step_input_on_backend(t, x);
  const float *feat = lfs_graph_forward(&t->g, &ps, xb);
  const size_t head = (size_t)t->K * t->D;
  be->ops->fill(be, t->dev.dfeat, 0.0f, (size_t)t->local_batch * t->D);
  be->ops->fill(be, t->dev.dw, 0.0f, head);
  t->head.iteration = t->step;
  double loss = be->ops->head_loss(be, &t->head, t->local_batch, t->D, t->K, t->dev.dfeat,
                                   t->dev.dw, stats, feat, t->dev.w, labels);
  LFS_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &loss, 1, MPI_DOUBLE, MPI_SUM, t->comm));
  loss /= t->ranks;
  if (!isfinite(loss)) return loss; /* every rank sees it: nobody updates */
  lfs_params_zero_grad(&t->g.params);
  lfs_graph_backward(&t->g, &ps, xb, t->dev.dfeat);
  exchange_gradients(t);
  t->lr = lfs_schedule_lr(&t->sched, t->step);
  t->opt.lr = (float)t->lr;
  lfs_sgd_step_on(&t->opt, be, t->g.params.data, t->dev.velocity, t->g.params.grad);
  be->ops->sgd_step(be, t->dev.w, t->dev.vw, t->dev.dw, head, (float)t->lr, t->opt.momentum,
                    t->opt.weight_decay);
  share_bn_statistics(t);
  t->step++;
  return loss;
}

/* Embeddings [n, D] of images [n, H, W, 3] (plain or mirrored), in eval mode,
 * batches of local_batch (the last one padded with copies of image 0). */
static void embed(lfs_trainer *t, float *out, const uint8_t *images, int64_t n, int flip) {
  const int b = t->local_batch, S = t->image_size;
  const size_t in_floats = 3 * (size_t)S * S, img_bytes = 3 * (size_t)S * S;
  float *x = lfs_alloc_floats((size_t)b * in_floats);
  lfs_pass ps = make_pass(t, 0);
  for (int64_t first = 0; first < n; first += b) {
    for (int i = 0; i < b; i++) {
      const int64_t k = first + i < n ? first + i : 0;
      lfs_image_to_input(x + i * in_floats, images + k * img_bytes, S, S, flip);
    }
    const float *feat = features_on_host(t, lfs_graph_forward(&t->g, &ps, input_on_backend(t, x)));
    const int64_t m = n - first < b ? n - first : b;
    memcpy(out + first * t->D, feat, sizeof(float) * (size_t)m * t->D);
  }
  free(x);
}

/* This rank's share [first, first + count) of n rows. */
static void share(const lfs_trainer *t, int64_t n, int r, int64_t *first, int64_t *count) {
  *first = n * r / t->ranks;
  *count = n * (r + 1) / t->ranks - *first;
}

int lfs_trainer_verify(lfs_trainer *t, const char *path, lfs_verify_result *out, char *name,
                       size_t namelen, char *err, size_t errlen) {
  lfs_pairset *ps = lfs_pairset_open(path, err, errlen);
  if (!ps) return -1;
  snprintf(name, namelen, "%s", lfs_pairset_name(ps));
  const int64_t pairs = lfs_pairset_count(ps), rows = 2 * pairs;
  const int S = t->image_size;
  int rc = 0;
  if (lfs_pairset_height(ps) != S || lfs_pairset_width(ps) != S) {
    snprintf(err, errlen, "%s: %dx%d images, the model takes %dx%d ([data] image_size)", path,
             lfs_pairset_height(ps), lfs_pairset_width(ps), S, S);
    lfs_pairset_close(ps);
    return -1;
  }
  int64_t first, count;
  share(t, rows, t->rank, &first, &count);
  /* pair rows are read pairwise: round the share to whole pairs */
  int64_t pfirst = first / 2, pcount = (first + count) / 2 - pfirst;
  first = 2 * pfirst, count = 2 * pcount;
  uint8_t *images = lfs_malloc((size_t)(count ? count : 1) * 3 * S * S);
  uint8_t *issame = lfs_malloc((size_t)pairs);
  float *plain = lfs_alloc_floats((size_t)(count ? count : 1) * t->D);
  float *mirror = lfs_alloc_floats((size_t)(count ? count : 1) * t->D);
  float *all = lfs_alloc_floats((size_t)rows * t->D);
  if ((count && lfs_pairset_read(ps, pfirst, pcount, images, err, errlen) != 0) ||
      lfs_pairset_issame(ps, 0, pairs, issame, err, errlen) != 0)
    rc = -1;
  lfs_pairset_close(ps);
  int bad = rc != 0, any_bad = 0;
  LFS_MPI_CHECK(MPI_Allreduce(&bad, &any_bad, 1, MPI_INT, MPI_MAX, t->comm));
  if (!any_bad) {
    embed(t, plain, images, count, 0);
    embed(t, mirror, images, count, 1);
    if (count) lfs_verify_embed(plain, plain, mirror, count, t->D, err, errlen);
    int *counts = lfs_malloc(sizeof(int) * t->ranks), *displs = lfs_malloc(sizeof(int) * t->ranks);
    for (int r = 0; r < t->ranks; r++) {
      int64_t f, c;
      share(t, rows, r, &f, &c);
      const int64_t pf = f / 2, pc = (f + c) / 2 - pf;
      counts[r] = (int)(2 * pc * t->D);
      displs[r] = (int)(2 * pf * t->D);
    }
    LFS_MPI_CHECK(MPI_Allgatherv(plain, (int)(count * t->D), MPI_FLOAT, all, counts, displs,
                                 MPI_FLOAT, t->comm));
    free(counts), free(displs);
    rc = lfs_verify_interleaved(all, issame, pairs, t->D, out, err, errlen);
  } else {
    rc = -1;
    if (!bad) snprintf(err, errlen, "%s: another rank could not read it", path);
  }
  free(images), free(issame), free(plain), free(mirror), free(all);
  return rc;
}

size_t lfs_trainer_state_floats(const lfs_trainer *t) {
  return t->host.count + t->host.trainable_count + 2 * (size_t)t->K * t->D;
}

/* The four parts of the state in the backend's memory, in pack order. */
typedef struct {
  const float *part[4];
  size_t count[4];
} state_parts;

static state_parts backend_parts(const lfs_trainer *t) {
  const lfs_params *p = &t->g.params;
  const size_t head = (size_t)t->K * t->D;
  return (state_parts){{p->data, t->dev.velocity, t->dev.w, t->dev.vw},
                       {p->count, p->trainable_count, head, head}};
}

void lfs_trainer_state_pack(const lfs_trainer *t, float *buf) {
  const state_parts s = backend_parts(t);
  for (int i = 0; i < 4; i++) {
    t->g.be->ops->download(t->g.be, buf, s.part[i], s.count[i]);
    buf += s.count[i];
  }
}

void lfs_trainer_state_unpack(lfs_trainer *t, const float *buf) {
  const state_parts s = backend_parts(t);
  for (int i = 0; i < 4; i++) {
    t->g.be->ops->upload(t->g.be, (float *)s.part[i], buf, s.count[i]);
    buf += s.count[i];
  }
}

/* Staged: device collectives over comm for the state's broadcast, made on the
 * first call (collective, like the broadcast) and kept; NULL: through the host.
 * A call with another communicator replaces them. */
static lfs_devcomm *broadcast_devcomm(lfs_trainer *t, MPI_Comm comm) {
  int size = 1;
  LFS_MPI_CHECK(MPI_Comm_size(comm, &size));
  if (!t->staged || size < 2) return NULL;
  if (t->bcast.tried && t->bcast.comm == comm) return t->bcast.dc;
  lfs_devcomm_free(t->bcast.dc);
  char why[256] = "";
  t->bcast.dc = lfs_devcomm_create(t->g.be, comm, why, sizeof why);
  t->bcast.comm = comm, t->bcast.tried = 1;
  if (!t->bcast.dc && !strcmp(t->g.be->ops->name, "cuda"))
    lfs_info("state broadcast over %d ranks: through the host (%s)", size, why);
  return t->bcast.dc;
}

/* The device state's parts straight from root's device memory to everyone's.
 * The host mirrors are scratch (trainer.h) and stay as they were. */
static void broadcast_on_device(lfs_trainer *t, lfs_devcomm *dc, int root, MPI_Comm comm) {
  const state_parts s = backend_parts(t);
  for (int i = 0; i < 4; i++) lfs_devcomm_broadcast(dc, (float *)s.part[i], s.count[i], root);
  LFS_MPI_CHECK(MPI_Bcast(&t->step, 1, MPI_INT64_T, root, comm));
}

void lfs_trainer_broadcast_state(lfs_trainer *t, int root, MPI_Comm comm) {
  lfs_devcomm *dc = broadcast_devcomm(t, comm);
  if (dc) {
    broadcast_on_device(t, dc, root, comm);
    return;
  }
  pull_state(t);
  const lfs_params *p = &t->host;
  const size_t head = (size_t)t->K * t->D;
  lfs_broadcast(p->data, p->count, root, comm);
  lfs_broadcast(t->opt.velocity, p->trainable_count, root, comm);
  lfs_broadcast(t->w, head, root, comm);
  lfs_broadcast(t->vw, head, root, comm);
  LFS_MPI_CHECK(MPI_Bcast(&t->step, 1, MPI_INT64_T, root, comm));
  push_state(t);
}

/* "<prefix><name>": prefix is "" or ends in '/'. */
static const char *prefixed(char *buf, size_t len, const char *prefix, const char *name) {
  snprintf(buf, len, "%s%s", prefix, name);
  return buf;
}

int lfs_trainer_write_state(const lfs_trainer *t, lfs_ckpt *h, const char *prefix,
                            const float *packed, int64_t step, char *err, size_t errlen) {
  if (!packed && t->staged) { /* the state is the device's: write a packed copy */
    float *copy = lfs_alloc_floats(lfs_trainer_state_floats(t));
    lfs_trainer_state_pack(t, copy);
    const int rc = lfs_trainer_write_state(t, h, prefix, copy, step, err, errlen);
    free(copy);
    return rc;
  }
  const lfs_params *p = &t->host;
  const size_t head = (size_t)t->K * t->D;
  const float *data = packed ? packed : p->data;
  const float *velocity = packed ? packed + p->count : t->opt.velocity;
  const float *w = packed ? packed + p->count + p->trainable_count : t->w;
  const float *vw = packed ? w + head : t->vw;
  const int64_t dims[2] = {t->K, t->D};
  char name[256], group[256];
  snprintf(group, sizeof group, "%s", prefix);
  if (group[0]) group[strlen(group) - 1] = '\0'; /* the attribute's group: prefix without '/' */
  return lfs_ckpt_write_params(h, prefixed(name, sizeof name, prefix, "model"), p, data,
                               LFS_CKPT_VIEWS_ALL, err, errlen) ||
         lfs_ckpt_write_params(h, prefixed(name, sizeof name, prefix, "optim"), p, velocity,
                               LFS_CKPT_VIEWS_TRAINABLE, err, errlen) ||
         lfs_ckpt_write_array(h, prefixed(name, sizeof name, prefix, "head/weight"), LFS_CKPT_F32, 2,
                              dims, w, err, errlen) ||
         lfs_ckpt_write_array(h, prefixed(name, sizeof name, prefix, "head/momentum"), LFS_CKPT_F32,
                              2, dims, vw, err, errlen) ||
         lfs_ckpt_set_int(h, group, "optimizer_steps", step, err, errlen)
             ? -1
             : 0;
}

int lfs_trainer_read_state(lfs_trainer *t, lfs_ckpt *h, const char *prefix, char *err,
                           size_t errlen) {
  const int64_t dims[2] = {t->K, t->D};
  char name[256], group[256];
  snprintf(group, sizeof group, "%s", prefix);
  if (group[0]) group[strlen(group) - 1] = '\0';
  int64_t steps = 0;
  const int rc =
      lfs_ckpt_read_params(h, prefixed(name, sizeof name, prefix, "model"), &t->host,
                           t->host.data, LFS_CKPT_VIEWS_ALL, err, errlen) ||
      lfs_ckpt_read_params(h, prefixed(name, sizeof name, prefix, "optim"), &t->host,
                           t->opt.velocity, LFS_CKPT_VIEWS_TRAINABLE, err, errlen) ||
      lfs_ckpt_read_array(h, prefixed(name, sizeof name, prefix, "head/weight"), LFS_CKPT_F32, 2,
                          dims, t->w, err, errlen) ||
      lfs_ckpt_read_array(h, prefixed(name, sizeof name, prefix, "head/momentum"), LFS_CKPT_F32, 2,
                          dims, t->vw, err, errlen) ||
      lfs_ckpt_get_int(h, group, "optimizer_steps", &steps, err, errlen);
  if (rc) return -1;
  t->step = steps;
  push_state(t);
  return 0;
}

int lfs_trainer_save(lfs_trainer *t, const char *path, int64_t epoch, int64_t step,
                     const char *config_text, char *err, size_t errlen) {
  int rc = 0;
  if (t->rank == 0) {
    const lfs_ckpt_meta meta = {.epoch = epoch, .step = step, .world_size = t->ranks,
                                .config = config_text, .write_created = 1};
    lfs_ckpt *h = lfs_ckpt_create(path, &meta, err, errlen);
    if (!h || lfs_trainer_write_state(t, h, "", NULL, t->step, err, errlen)) {
      lfs_ckpt_close(h);
      rc = -1;
    } else {
      rc = lfs_ckpt_commit(h, err, errlen);
    }
  }
  LFS_MPI_CHECK(MPI_Bcast(&rc, 1, MPI_INT, 0, t->comm));
  if (rc && t->rank != 0) snprintf(err, errlen, "%s: rank 0 could not write the checkpoint", path);
  return rc;
}

int lfs_trainer_load(lfs_trainer *t, const char *path, char *err, size_t errlen) {
  lfs_ckpt *h = lfs_ckpt_open(path, err, errlen);
  if (!h) return -1;
  const int rc = lfs_trainer_read_state(t, h, "", err, errlen);
  lfs_ckpt_close(h);
  return rc;
}
