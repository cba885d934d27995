/* graph.c: build, run and backpropagate a list of layer nodes (see graph.h). */
#include "lfs/graph.h"

#include <stdlib.h>
#include <string.h>

#include "lfs/log.h"
#include "nn/layer_internal.h"

void lfs_graph_init(lfs_graph *g) {
  memset(g, 0, sizeof *g);
  lfs_params_init(&g->params);
}

void lfs_graph_free(lfs_graph *g) {
  if (g->built) {
    lfs_backend *be = g->be;
    for (int i = 0; i < g->count; i++) {
      lfs_node *node = &g->nodes[i];
      if (node->owns) {
        be->ops->free(be, node->y);
        if (!node->dy_shared) be->ops->free(be, node->dy);
      }
      if (node->layer.saved) be->ops->free(be, node->layer.saved);
    }
    if (g->dx) be->ops->free(be, g->dx);
  }
  lfs_params_free(&g->params);
  free(g->nodes);
  lfs_graph_init(g);
}

int lfs_graph_add(lfs_graph *g, lfs_layer layer, int a, int b) {
  LFS_ASSERT(!g->built);
  LFS_ASSERT(a >= LFS_GRAPH_INPUT && a < g->count);
  LFS_ASSERT(layer.kind->inputs == 1 || (b >= LFS_GRAPH_INPUT && b < g->count));
  g->nodes = lfs_grow(g->nodes, g->count, &g->cap, sizeof *g->nodes);
  lfs_node *node = &g->nodes[g->count];
  node->layer = layer;
  node->in[0] = a;
  node->in[1] = layer.kind->inputs == 2 ? b : LFS_GRAPH_INPUT;
  return g->count++;
}

static lfs_shape node_shape(const lfs_graph *g, int id) {
  return id == LFS_GRAPH_INPUT ? g->input : g->nodes[id].layer.out;
}

static int infer_shapes(lfs_graph *g, char *err, size_t errlen) {
  for (int i = 0; i < g->count; i++) {
    lfs_layer *l = &g->nodes[i].layer;
    for (int k = 0; k < l->kind->inputs; k++) l->in[k] = node_shape(g, g->nodes[i].in[k]);
    char why[256] = "";
    if (l->kind->infer(l, l->in, &l->out, why, sizeof why) != 0) {
      snprintf(err, errlen, "node %d (%s %s): %s", i, l->kind->kind, l->name, why);
      return -1;
    }
  }
  return 0;
}

/* Names node i's buffers for an out-of-memory message. */
static void allocating_for(const lfs_graph *g, int i, const char *which) {
  const lfs_layer *l = &g->nodes[i].layer;
  char shape[64];
  lfs_shape_format(l->out, shape, sizeof shape);
  lfs_backend_set_purpose("%s of node %d (%s%s%s, output %s)", which, i, l->kind->kind,
                          l->name[0] ? " " : "", l->name, shape);
}

static void allocate_buffers(lfs_graph *g, int want_input_grad) {
  lfs_backend *be = g->be;
  for (int i = 0; i < g->count; i++) {
    lfs_node *node = &g->nodes[i];
    lfs_layer *l = &node->layer;
    size_t saved = l->kind->saved(l);
    allocating_for(g, i, "the saved state");
    if (saved) l->saved = be->ops->alloc(be, saved);
    /* a flatten of a node aliases that node's buffers; of the graph input it must own them */
    if (lfs_layer_is_flatten(l) && node->in[0] != LFS_GRAPH_INPUT) {
      node->y = g->nodes[node->in[0]].y;
      node->dy = g->nodes[node->in[0]].dy;
      node->owns = 0;
      continue;
    }
    allocating_for(g, i, "the output and its gradient");
    node->y = be->ops->alloc(be, lfs_shape_count(l->out));
    node->dy = be->ops->alloc(be, lfs_shape_count(l->out));
    node->owns = 1;
  }
  lfs_backend_set_purpose("the gradient of the network's input");
  if (want_input_grad) g->dx = be->ops->alloc(be, lfs_shape_count(g->input));
  lfs_backend_set_purpose(NULL);
}

/* The lowest index of the nodes whose gradient buffer is buf: backward visits
 * it last of them. */
static int first_sharer(const lfs_graph *g, const float *buf) {
  for (int i = 0; i < g->count; i++)
    if (g->nodes[i].dy == buf) return i;
  return g->count;
}

/* Whether src's gradient may be add node a's own although other nodes add to it
 * too: every one of them (never an aliasing flatten) runs in backward after
 * every node that reads a's gradient as a's (those sharing it so far), so that
 * their additions come after those reads and turn the buffer into src's
 * gradient, as zeroing it and adding a's dy would have. */
static int may_share_added(const lfs_graph *g, int a, int src) {
  const int before = first_sharer(g, g->nodes[a].dy);
  for (int j = 0; j < g->count; j++) {
    const lfs_node *node = &g->nodes[j];
    const int reads = node->in[0] == src || (node->layer.kind->inputs == 2 && node->in[1] == src);
    if (!reads || j == a) continue;
    if (!node->owns || j >= before) return 0;
  }
  return 1;
}

/* Gives a residual add's input the add's own dy as its gradient (its buffer is
 * freed): nothing to zero, nothing to copy. An input that nothing else reads
 * always can; one that other nodes add to as well (the identity shortcut) when
 * may_share_added says so, which lets a whole residual stream share one
 * buffer. From the last node back, so that an add whose dy is itself shared
 * passes on the final buffer. */
static void share_gradients(lfs_graph *g, const int *writers) {
  for (int i = g->count - 1; i >= 0; i--) {
    lfs_node *node = &g->nodes[i];
    if (!node->layer.kind->passes_dy) continue;
    for (int pass = 0; pass < 2; pass++) /* single readers first: they join the sharers */
      for (int k = 0; k < node->layer.kind->inputs; k++) {
        const int src = node->in[k];
        if (src == LFS_GRAPH_INPUT || node->layer.dx_shared[k] || !g->nodes[src].owns ||
            g->nodes[src].dy_shared || node->in[0] == node->in[1])
          continue;
        if (pass == 0 ? writers[src + 1] != 1 : !may_share_added(g, i, src)) continue;
        lfs_node *shared = &g->nodes[src];
        g->be->ops->free(g->be, shared->dy);
        shared->dy = node->dy;
        shared->dy_shared = 1;
        node->layer.dx_shared[k] = 1;
      }
  }
}

/* Which gradients backward sets outright instead of zeroing and adding to: those
 * whose only writer is one consumer reading them once, of a kind that can; not
 * through an aliasing flatten (its consumers write into its input's gradient,
 * beside the input's other consumers). Then the gradients shared with a
 * residual add (share_gradients). LFS_GRAD_SET=0: none of either. Once, at
 * build. */
static void plan_gradient_writes(lfs_graph *g) {
  const char *env = getenv("LFS_GRAD_SET");
  const int enabled = !(env && !strcmp(env, "0"));
  int *writers = lfs_calloc((size_t)g->count + 1, sizeof *writers); /* [id + 1] */
  for (int i = 0; i < g->count; i++) {
    const lfs_node *node = &g->nodes[i];
    for (int k = 0; k < node->layer.kind->inputs; k++) writers[node->in[k] + 1]++;
    if (!node->owns) writers[node->in[0] + 1]++; /* its consumers write there too */
  }
  g->dx_set = 0;
  for (int i = 0; i < g->count; i++) {
    lfs_node *node = &g->nodes[i];
    node->dy_set = 0;
    node->layer.dx_write[0] = node->layer.dx_write[1] = LFS_GRAD_ADD;
  }
  for (int i = 0; enabled && i < g->count; i++) {
    lfs_node *node = &g->nodes[i];
    if (!node->layer.kind->can_set_dx) continue;
    for (int k = 0; k < node->layer.kind->inputs; k++) {
      const int src = node->in[k];
      if (writers[src + 1] != 1 || (src != LFS_GRAPH_INPUT && !g->nodes[src].owns)) continue;
      node->layer.dx_write[k] = LFS_GRAD_SET;
      if (src == LFS_GRAPH_INPUT)
        g->dx_set = 1;
      else
        g->nodes[src].dy_set = 1;
    }
  }
  if (enabled) share_gradients(g, writers);
  free(writers);
}

int lfs_graph_build(lfs_graph *g, lfs_backend *be, lfs_shape input, int want_input_grad,
                    char *err, size_t errlen) {
  LFS_ASSERT(!g->built && g->count > 0);
  g->input = input;
  g->be = be;
  if (infer_shapes(g, err, errlen) != 0) return -1;
  for (int i = 0; i < g->count; i++) g->nodes[i].layer.kind->declare(&g->nodes[i].layer, &g->params);
  lfs_params_finalize(&g->params, be);
  allocate_buffers(g, want_input_grad);
  plan_gradient_writes(g);
  g->built = 1;
  return 0;
}

void lfs_graph_init_params(lfs_graph *g, uint64_t seed) {
  for (int i = 0; i < g->count; i++) lfs_layer_init_params(&g->nodes[i].layer, &g->params, seed, (uint32_t)i);
}

static const float *node_output(const lfs_graph *g, int id, const float *x) {
  return id == LFS_GRAPH_INPUT ? x : g->nodes[id].y;
}

const float *lfs_graph_forward(lfs_graph *g, const lfs_pass *ps, const float *x) {
  LFS_ASSERT(g->built);
  for (int i = 0; i < g->count; i++) {
    lfs_node *node = &g->nodes[i];
    const float *in[2] = {node_output(g, node->in[0], x), node_output(g, node->in[1], x)};
    if (lfs_layer_is_flatten(&node->layer) && !node->owns) continue;
    if (lfs_layer_is_flatten(&node->layer)) {
      /* flatten of the graph input: copy, so the caller's buffer stays untouched */
      g->be->ops->fill(g->be, node->y, 0.0f, lfs_shape_count(node->layer.out));
      g->be->ops->axpy(g->be, node->y, 1.0f, in[0], lfs_shape_count(node->layer.out));
      continue;
    }
    node->layer.kind->forward(&node->layer, ps, node->y, in);
  }
  return g->nodes[g->count - 1].y;
}

static float *node_grad(lfs_graph *g, int id) {
  return id == LFS_GRAPH_INPUT ? g->dx : g->nodes[id].dy;
}

void lfs_graph_backward(lfs_graph *g, const lfs_pass *ps, const float *x, const float *dy_out) {
  LFS_ASSERT(g->built);
  lfs_backend *be = g->be;
  for (int i = 0; i < g->count; i++) {
    const lfs_node *node = &g->nodes[i];
    if (node->owns && !node->dy_set && !node->dy_shared)
      be->ops->fill(be, node->dy, 0.0f, lfs_shape_count(node->layer.out));
  }
  if (g->dx && !g->dx_set) be->ops->fill(be, g->dx, 0.0f, lfs_shape_count(g->input));
  lfs_node *last = &g->nodes[g->count - 1];
  be->ops->axpy(be, last->dy, 1.0f, dy_out, lfs_shape_count(last->layer.out));
  for (int i = g->count - 1; i >= 0; i--) {
    lfs_node *node = &g->nodes[i];
    const float *in[2] = {node_output(g, node->in[0], x), node_output(g, node->in[1], x)};
    float *din[2] = {node_grad(g, node->in[0]), node_grad(g, node->in[1])};
    if (node->layer.kind->inputs == 1) din[1] = NULL;
    if (lfs_layer_is_flatten(&node->layer)) {
      if (node->owns && din[0]) be->ops->axpy(be, din[0], 1.0f, node->dy, lfs_shape_count(node->layer.out));
      continue;
    }
    node->layer.kind->backward(&node->layer, ps, din, node->dy, in, node->y);
  }
}

lfs_shape lfs_graph_output_shape(const lfs_graph *g) { return g->nodes[g->count - 1].layer.out; }

double lfs_graph_macs(const lfs_graph *g) {
  double total = 0.0;
  for (int i = 0; i < g->count; i++) total += g->nodes[i].layer.kind->macs(&g->nodes[i].layer);
  return total;
}

double lfs_graph_conv_linear_macs(const lfs_graph *g) {
  double total = 0.0;
  for (int i = 0; i < g->count; i++) {
    const lfs_layer *l = &g->nodes[i].layer;
    if (!strcmp(l->kind->kind, "conv2d") || !strcmp(l->kind->kind, "linear")) total += l->kind->macs(l);
  }
  return total;
}

void lfs_graph_print(const lfs_graph *g, void (*out)(const char *line, void *user), void *user) {
  char line[512], what[160], shape[64];
  for (int i = 0; i < g->count; i++) {
    const lfs_layer *l = &g->nodes[i].layer;
    l->kind->describe(l, what, sizeof what);
    lfs_shape_format(l->out, shape, sizeof shape);
    size_t nparams = 0;
    for (int k = 0; k < 4; k++)
      if (l->param[k] >= 0 && lfs_params_view(&g->params, l->param[k])->kind == LFS_PARAM_TRAINABLE)
        nparams += lfs_params_view(&g->params, l->param[k])->count;
    snprintf(line, sizeof line, "%3d  %-24s %-44s -> %-16s %10zu params", i, l->name[0] ? l->name : "-",
             what, shape, nparams);
    out(line, user);
  }
}
