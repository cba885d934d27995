/* iresnet_block.c: insightface's IBasicBlock and the small residual demo network. */
#include <stdio.h>

#include "lfs/models.h"

static void name_of(char *buf, size_t len, const char *prefix, const char *leaf) {
  if (prefix[0])
    snprintf(buf, len, "%s.%s", prefix, leaf);
  else
    snprintf(buf, len, "%s", leaf);
}

int lfs_iresnet_block(lfs_graph *g, const char *prefix, int input, int planes, int stride,
                      int downsample) {
  char n[128];
  const float eps = LFS_IRESNET_BN_EPS, mom = LFS_BN_MOMENTUM;
  name_of(n, sizeof n, prefix, "bn1");
  int x = lfs_graph_add(g, lfs_batchnorm(n, eps, mom, 0), input, -1);
  name_of(n, sizeof n, prefix, "conv1");
  x = lfs_graph_add(g, lfs_conv2d(n, planes, 3, 1, 1, 1, 0), x, -1);
  name_of(n, sizeof n, prefix, "bn2");
  x = lfs_graph_add(g, lfs_batchnorm(n, eps, mom, 0), x, -1);
  name_of(n, sizeof n, prefix, "prelu");
  x = lfs_graph_add(g, lfs_prelu(n), x, -1);
  name_of(n, sizeof n, prefix, "conv2");
  x = lfs_graph_add(g, lfs_conv2d(n, planes, 3, stride, 1, 1, 0), x, -1);
  name_of(n, sizeof n, prefix, "bn3");
  x = lfs_graph_add(g, lfs_batchnorm(n, eps, mom, 0), x, -1);
  int shortcut = input;
  if (downsample) {
    name_of(n, sizeof n, prefix, "downsample.0");
    shortcut = lfs_graph_add(g, lfs_conv2d(n, planes, 1, stride, 0, 1, 0), input, -1);
    name_of(n, sizeof n, prefix, "downsample.1");
    shortcut = lfs_graph_add(g, lfs_batchnorm(n, eps, mom, 0), shortcut, -1);
  }
  return lfs_graph_add(g, lfs_add(), x, shortcut);
}

int lfs_demo_net(lfs_graph *g, int width, int blocks, int embedding, int classes) {
  const float eps = LFS_IRESNET_BN_EPS, mom = LFS_BN_MOMENTUM;
  int x = lfs_graph_add(g, lfs_conv2d("conv1", width, 3, 1, 1, 1, 0), LFS_GRAPH_INPUT, -1);
  x = lfs_graph_add(g, lfs_batchnorm("bn1", eps, mom, 0), x, -1);
  x = lfs_graph_add(g, lfs_prelu("prelu"), x, -1);
  int planes = width;
  for (int b = 0; b < blocks; b++) {
    char prefix[32];
    snprintf(prefix, sizeof prefix, "layer%d.0", b + 1);
    planes *= 2;
    x = lfs_iresnet_block(g, prefix, x, planes, 2, 1);
  }
  x = lfs_graph_add(g, lfs_batchnorm("bn2", eps, mom, 0), x, -1);
  x = lfs_graph_add(g, lfs_flatten(), x, -1);
  x = lfs_graph_add(g, lfs_linear("fc", embedding, 1), x, -1);
  x = lfs_graph_add(g, lfs_batchnorm("features", eps, mom, 1), x, -1);
  return lfs_graph_add(g, lfs_linear("classifier", classes, 0), x, -1);
}
