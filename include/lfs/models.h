/* models.h: network builders on top of lfs_graph: insightface's iresnet family
 * (r18 ... r200, and a `tiny` one for tests), arcface_torch's MobileFaceNet (`mbf`),
 * their initialisation, and the small demo network.
 *
 * A model is a list of graph nodes taking the image batch [N, 3, S, S] (NCHW, RGB,
 * normalised) as the graph input and ending in the embedding [N, D]. Parameter
 * names are the PyTorch state-dict keys of the peer definitions, so a checkpoint
 * maps onto them by name. */
#ifndef LFS_MODELS_H
#define LFS_MODELS_H

#include <stddef.h>
#include <stdint.h>

#include "lfs/graph.h"

/* BN defaults of insightface's iresnet (and PyTorch's, used by mbf). */
#define LFS_IRESNET_BN_EPS 1e-5f
#define LFS_BN_MOMENTUM 0.1f

/* The architectures lfs_model_build knows, for messages: "tiny, r18, ...". */
#define LFS_MODEL_ARCHS "tiny, r18, r34, r50, r100, r200, mbf, mbf_large"

typedef struct {
  const char *arch;  /* one of LFS_MODEL_ARCHS */
  int embedding;     /* D; 0 means 512 */
  float dropout;     /* before the fc of an iresnet, in [0, 1); 0: no dropout node */
  int input;         /* S of an S x S input; 0 means 112. Only `tiny` takes other sizes
                      * (any multiple of 16); the rest need 112 */
  /* MobileFaceNet only (0: the arch's own values; mbf (1,4,6,2) x2, mbf_large (2,8,12,4) x4) */
  int mbf_blocks[4]; /* residual DepthWise blocks of the four stages */
  int mbf_scale;     /* width multiplier of 64 */
} lfs_model_cfg;

/* Adds the model's nodes to an empty graph. Returns the embedding node (the last
 * one), or -1 with a message naming the arch and the bad value (unknown arch,
 * input size, embedding size, dropout). */
int lfs_model_build(lfs_graph *g, const lfs_model_cfg *cfg, char *err, size_t errlen);
/* The graph input shape [batch, 3, S, S] for this configuration. */
lfs_shape lfs_model_input_shape(const lfs_model_cfg *cfg, int batch);
/* 1 if the arch is an iresnet (tiny and r*), 0 for MobileFaceNet, -1 if unknown. */
int lfs_model_is_iresnet(const char *arch);
/* Initialises every parameter of a built model graph as its peer does (iresnet:
 * conv N(0, 0.1), fc PyTorch's nn.Linear default U(+-1/sqrt(fan_in)) for weight
 * and bias; mbf: conv and linear kaiming-normal fan_out; both: BN weight 1, bias 0,
 * running mean 0, var 1, PReLU 0.25). Tensor i draws from Philox
 * (seed, LFS_RNG_INIT, i, 1) so the result depends only on the seed. */
void lfs_model_init_params(lfs_graph *g, const lfs_model_cfg *cfg, uint64_t seed);

/* insightface's IBasicBlock: BN -> conv3x3 -> BN -> PReLU -> conv3x3(stride) -> BN,
 * plus a conv1x1(stride) + BN shortcut ("<prefix>.downsample.0/1") when `downsample`
 * is set, and no activation after the add. Parameter names "<prefix>.bn1.weight", ...
 * Returns the node of the block's output. */
int lfs_iresnet_block(lfs_graph *g, const char *prefix, int input, int planes, int stride,
                      int downsample);

/* insightface's IResNet: stem conv3x3(widths[0]) + BN + PReLU, stages layer1..layer4
 * of depths[i] blocks of widths[i] planes (first block stride 2 with downsample),
 * then bn2 -> flatten -> dropout (if p > 0) -> fc (bias) -> features (BN1d, fixed
 * gamma). Returns the embedding node. */
int lfs_iresnet(lfs_graph *g, const int widths[4], const int depths[4], int embedding,
                float dropout);

/* arcface_torch's MobileFaceNet for 112 x 112 input: "layers.0" ... "layers.7",
 * "conv_sep", "features" (GDC: depthwise 7x7 + BN, linear without bias, BN1d).
 * Returns the embedding node. */
int lfs_mobilefacenet(lfs_graph *g, const int blocks[4], int scale, int embedding);

/* A small residual network for the demo and the benchmarks: conv3x3(width) + BN +
 * PReLU stem, `blocks` iresnet blocks (each doubling width with stride 2), then
 * BN -> flatten -> linear(embedding) -> BN1d (fixed gamma) -> linear(classes).
 * Input shape is given at lfs_graph_build. Returns the logits node. */
int lfs_demo_net(lfs_graph *g, int width, int blocks, int embedding, int classes);

#endif
