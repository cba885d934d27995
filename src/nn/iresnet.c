/* iresnet.c: insightface's IResNet (arcface_torch backbones/iresnet.py) as graph
 * nodes: r18 ... r200 for 112 x 112 input and the `tiny` variant. Input NCHW
 * [N, 3, S, S]; each of the four stages halves S, so the fc reads
 * widths[3] * (S/16)^2 features in PyTorch's flatten order (C, H, W). */
#include <stdio.h>

#include "lfs/models.h"

static int stem(lfs_graph *g, int width) {
  int x = lfs_graph_add(g, lfs_conv2d("conv1", width, 3, 1, 1, 1, 0), LFS_GRAPH_INPUT, -1);
  x = lfs_graph_add(g, lfs_batchnorm("bn1", LFS_IRESNET_BN_EPS, LFS_BN_MOMENTUM, 0), x, -1);
  return lfs_graph_add(g, lfs_prelu("prelu"), x, -1);
}

/* Stage `stage` (1-based): its first block strides and changes width, so it always
 * has the downsample shortcut; the rest keep the shape. */
static int stage(lfs_graph *g, int x, int stage, int planes, int depth) {
  for (int b = 0; b < depth; b++) {
    char prefix[32];
    snprintf(prefix, sizeof prefix, "layer%d.%d", stage, b);
    x = lfs_iresnet_block(g, prefix, x, planes, b == 0 ? 2 : 1, b == 0);
  }
  return x;
}

int lfs_iresnet(lfs_graph *g, const int widths[4], const int depths[4], int embedding,
                float dropout) {
  int x = stem(g, widths[0]);
  for (int s = 0; s < 4; s++) x = stage(g, x, s + 1, widths[s], depths[s]);
  x = lfs_graph_add(g, lfs_batchnorm("bn2", LFS_IRESNET_BN_EPS, LFS_BN_MOMENTUM, 0), x, -1);
  x = lfs_graph_add(g, lfs_flatten(), x, -1);
  /* p = 0 is the identity: no node, so no copy of the flattened features */
  if (dropout > 0.0f) x = lfs_graph_add(g, lfs_dropout(dropout, (uint32_t)g->count), x, -1);
  x = lfs_graph_add(g, lfs_linear("fc", embedding, 1), x, -1);
  /* insightface freezes this BN's gamma at 1 (requires_grad = False) */
  return lfs_graph_add(g, lfs_batchnorm("features", LFS_IRESNET_BN_EPS, LFS_BN_MOMENTUM, 1), x, -1);
}
