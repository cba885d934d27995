/* mobilefacenet.c: arcface_torch's MobileFaceNet (backbones/mobilefacenet.py,
 * `mbf` and `mbf_large`) as graph nodes, for NCHW input [N, 3, 112, 112].
 *
 * Its modules nest nn.Sequential containers named "layers", which is where the
 * state-dict keys come from: a ConvBlock (conv + BN + PReLU) at P has
 * "P.layers.0.weight", "P.layers.1.*", "P.layers.2.weight"; a LinearBlock
 * (conv + BN) at P has "P.layers.0/1"; a DepthWise at P is ConvBlock 1x1 "P.layers.0",
 * depthwise ConvBlock "P.layers.1", LinearBlock 1x1 "P.layers.2"; a Residual at P
 * holds DepthWise blocks "P.layers.0", "P.layers.1", ...
 * The group widths (64, 128, 256, 512) are fixed in the peer, whatever the scale. */
#include <stdio.h>

#include "lfs/models.h"

static void sub(char *buf, size_t len, const char *prefix, int index) {
  snprintf(buf, len, "%s.layers.%d", prefix, index);
}

/* conv(k, stride, pad, groups, no bias) + BN, and PReLU when `act`. */
static int conv_block(lfs_graph *g, const char *prefix, int x, int out_c, int k, int stride,
                      int pad, int groups, int act) {
  char n[96];
  sub(n, sizeof n, prefix, 0);
  x = lfs_graph_add(g, lfs_conv2d(n, out_c, k, stride, pad, groups, 0), x, -1);
  sub(n, sizeof n, prefix, 1);
  x = lfs_graph_add(g, lfs_batchnorm(n, LFS_IRESNET_BN_EPS, LFS_BN_MOMENTUM, 0), x, -1);
  if (!act) return x;
  sub(n, sizeof n, prefix, 2);
  return lfs_graph_add(g, lfs_prelu(n), x, -1);
}

/* Expand 1x1 to `groups` channels, depthwise 3x3 (stride), project 1x1 to out_c;
 * the residual version adds its input (shape unchanged). */
static int depthwise(lfs_graph *g, const char *prefix, int x, int out_c, int stride, int groups,
                     int residual) {
  char n[96];
  sub(n, sizeof n, prefix, 0);
  int y = conv_block(g, n, x, groups, 1, 1, 0, 1, 1);
  sub(n, sizeof n, prefix, 1);
  y = conv_block(g, n, y, groups, 3, stride, 1, groups, 1);
  sub(n, sizeof n, prefix, 2);
  y = conv_block(g, n, y, out_c, 1, 1, 0, 1, 0);
  return residual ? lfs_graph_add(g, lfs_add(), y, x) : y;
}

static int residual(lfs_graph *g, const char *prefix, int x, int c, int count, int groups) {
  char n[96];
  for (int i = 0; i < count; i++) {
    sub(n, sizeof n, prefix, i);
    x = depthwise(g, n, x, c, 1, groups, 1);
  }
  return x;
}

/* GDC: depthwise 7x7 over the 7x7 map (global depthwise conv) + BN, flatten,
 * linear without bias, BN1d (trainable gamma, unlike iresnet's features). */
static int gdc(lfs_graph *g, int x, int embedding) {
  int y = conv_block(g, "features.layers.0", x, 512, 7, 1, 0, 512, 0);
  y = lfs_graph_add(g, lfs_flatten(), y, -1);
  y = lfs_graph_add(g, lfs_linear("features.layers.2", embedding, 0), y, -1);
  return lfs_graph_add(g, lfs_batchnorm("features.layers.3", LFS_IRESNET_BN_EPS, LFS_BN_MOMENTUM, 0),
                       y, -1);
}

int lfs_mobilefacenet(lfs_graph *g, const int blocks[4], int scale, int embedding) {
  const int c1 = 64 * scale, c2 = 128 * scale;
  int x = conv_block(g, "layers.0", LFS_GRAPH_INPUT, c1, 3, 2, 1, 1, 1);
  /* the peer uses a single grouped conv block when the first stage has one block */
  if (blocks[0] == 1)
    x = conv_block(g, "layers.1", x, c1, 3, 1, 1, 64, 1);
  else
    x = residual(g, "layers.1", x, c1, blocks[0], 128);
  x = depthwise(g, "layers.2", x, c1, 2, 128, 0);
  x = residual(g, "layers.3", x, c1, blocks[1], 128);
  x = depthwise(g, "layers.4", x, c2, 2, 256, 0);
  x = residual(g, "layers.5", x, c2, blocks[2], 256);
  x = depthwise(g, "layers.6", x, c2, 2, 512, 0);
  x = residual(g, "layers.7", x, c2, blocks[3], 256);
  x = conv_block(g, "conv_sep", x, 512, 1, 1, 0, 1, 1);
  return gdc(g, x, embedding);
}
