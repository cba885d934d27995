/* refimpl.h: double-precision reference forward passes of the layer library,
 * written from the definitions with naive loops and no dependence on the
 * library, for the finite-difference gradient checks in test_grad_layers.c.
 *
 * Layouts match the library: activations NCHW, conv weights
 * (out, in/groups, kh, kw), linear weights (out, in), all row-major.
 * Outputs come first in argument lists. */
#ifndef LFS_TESTS_REFIMPL_H
#define LFS_TESTS_REFIMPL_H

#include <stddef.h>

/* Convolution geometry; out_h/out_w are filled by ref_conv_geom_init. */
typedef struct {
  int n, in_c, in_h, in_w;
  int out_c, out_h, out_w;
  int kh, kw, stride, pad, groups;
} ref_conv_geom;

/* Derives out_h/out_w; returns -1 if the geometry is impossible. */
int ref_conv_geom_init(ref_conv_geom *g);

/* y [n, out_c, out_h, out_w] = conv(x [n, in_c, in_h, in_w],
 * w [out_c, in_c/groups, kh, kw]) + b [out_c] (b may be NULL). Zero padding. */
void ref_conv2d(const ref_conv_geom *g, double *y, const double *x, const double *w,
                const double *b);

/* Per-channel mean and variance of x viewed as [n, c, spatial]; the variance is
 * biased (divides by n*spatial) or unbiased (n*spatial - 1). */
void ref_channel_stats(int n, int c, int spatial, int unbiased, double *mean /* [c] */,
                       double *var /* [c] */, const double *x);

/* Training-mode batch norm: y = gamma * (x - batch_mean) / sqrt(biased_var + eps) + beta,
 * x and y viewed as [n, c, spatial]. */
void ref_batchnorm_train(int n, int c, int spatial, double eps, double *y, const double *x,
                         const double *gamma /* [c] */, const double *beta /* [c] */);

/* Eval-mode batch norm: the running statistics replace the batch statistics. */
void ref_batchnorm_eval(int n, int c, int spatial, double eps, double *y, const double *x,
                        const double *gamma /* [c] */, const double *beta /* [c] */,
                        const double *running_mean /* [c] */,
                        const double *running_var /* [c] */);

/* y = x > 0 ? x : alpha[c] * x, x viewed as [n, c, spatial]. */
void ref_prelu(int n, int c, int spatial, double *y, const double *x,
               const double *alpha /* [c] */);

/* y [n, out] = x [n, in] W^T + b (b may be NULL), W [out, in]. */
void ref_linear(int n, int in, int out, double *y, const double *x, const double *w,
                const double *b);

/* y = a + b elementwise. */
void ref_add(size_t count, double *y, const double *a, const double *b);

/* Inverted dropout with a given mask: y = keep[i] ? x / (1 - p) : 0. */
void ref_dropout(size_t count, double p, double *y, const double *x,
                 const unsigned char *keep /* [count] */);

/* Row-wise L2 normalisation of x [rows, cols]: y = x / max(|x|, eps). */
void ref_l2norm(int rows, int cols, double eps, double *y, const double *x);

/* sum_i r[i] * y[i]: the scalar loss whose gradient the checks compare. */
double ref_dot(size_t count, const double *r, const double *y);

#endif
