/* graph.h: a network as a list of layer nodes in execution order; a node reads one
 * or two earlier nodes (or the graph input, node -1). That covers chains and
 * residual blocks. Each node owns its output and output-gradient buffer, except a
 * flatten, which aliases its input's. Backward visits nodes in reverse and every
 * consumer accumulates into its producers' gradients, which are zeroed first;
 * a gradient with one writer that can set it (lfs_layer_kind.can_set_dx) is
 * set by it instead, unzeroed, and the gradient of a residual add's input that
 * nothing else reads is the add's own (lfs_layer_kind.passes_dy), neither
 * zeroed nor copied (LFS_GRAD_SET=0: zero and accumulate everywhere). The
 * results are the same bits either way on the CPU. */
#ifndef LFS_GRAPH_H
#define LFS_GRAPH_H

#include "lfs/layer.h"

#define LFS_GRAPH_INPUT (-1)

typedef struct {
  lfs_layer layer;
  int in[2];
  float *y;  /* [layer.out] */
  float *dy; /* [layer.out] */
  int owns;  /* 0 for an aliasing flatten */
  int dy_set; /* dy's only writer sets it: backward does not zero it */
  int dy_shared; /* dy is a residual add's own (share_gradients): not zeroed, not freed */
} lfs_node;

typedef struct {
  lfs_node *nodes;
  int count, cap;
  lfs_shape input;
  lfs_params params;
  lfs_backend *be;
  float *dx; /* [input] gradient w.r.t. the graph input, allocated on request */
  int dx_set; /* dx's only writer sets it */
  int built;
} lfs_graph;

void lfs_graph_init(lfs_graph *g);
void lfs_graph_free(lfs_graph *g);
/* Appends a node reading `a` (and `b` for two-input layers); returns its index. */
int lfs_graph_add(lfs_graph *g, lfs_layer layer, int a, int b);
/* Infers shapes for `input`, declares and allocates parameters and activations.
 * Returns -1 with a message naming the node if the shapes do not fit. */
int lfs_graph_build(lfs_graph *g, lfs_backend *be, lfs_shape input, int want_input_grad,
                    char *err, size_t errlen);
/* Initialises every parameter (lfs_layer_init_params with node indices). */
void lfs_graph_init_params(lfs_graph *g, uint64_t seed);
/* Runs the graph on x [input]; returns the last node's output. */
const float *lfs_graph_forward(lfs_graph *g, const lfs_pass *ps, const float *x);
/* Backpropagates dy_out [last output]; parameter gradients accumulate in params.grad,
 * the input gradient (if requested at build) is written to g->dx. */
void lfs_graph_backward(lfs_graph *g, const lfs_pass *ps, const float *x, const float *dy_out);
lfs_shape lfs_graph_output_shape(const lfs_graph *g);
double lfs_graph_macs(const lfs_graph *g);
/* The convolution and linear layers' share of it (what papers count as a model's MACs). */
double lfs_graph_conv_linear_macs(const lfs_graph *g);
/* Prints one line per node: index, kind, description, output shape, parameters. */
void lfs_graph_print(const lfs_graph *g, void (*out)(const char *line, void *user), void *user);

#endif
