/* models.h: network builders on top of lfs_graph. */
#ifndef LFS_MODELS_H
#define LFS_MODELS_H

#include "lfs/graph.h"

/* BN defaults of insightface's iresnet. */
#define LFS_IRESNET_BN_EPS 1e-5f
#define LFS_BN_MOMENTUM 0.1f

/* insightface's IBasicBlock: BN -> conv3x3 -> BN -> PReLU -> conv3x3(stride) -> BN,
 * plus a conv1x1(stride) + BN shortcut ("<prefix>.downsample.0/1") when `downsample`
 * is set, and no activation after the add. Parameter names "<prefix>.bn1.weight", ...
 * Returns the node of the block's output. */
int lfs_iresnet_block(lfs_graph *g, const char *prefix, int input, int planes, int stride,
                      int downsample);

/* A small residual network for the demo and the benchmarks: conv3x3(width) + BN +
 * PReLU stem, `blocks` iresnet blocks (each doubling width with stride 2), then
 * BN -> flatten -> linear(embedding) -> BN1d (fixed gamma) -> linear(classes).
 * Input shape is given at lfs_graph_build. Returns the logits node. */
int lfs_demo_net(lfs_graph *g, int width, int blocks, int embedding, int classes);

#endif
