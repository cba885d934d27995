/* refimpl.c: double-precision reference forward passes (see refimpl.h).
 *
 * Deliberately naive: every output element is computed straight from its
 * definition, so the code is easy to check by reading and shares nothing with
 * the blocked/BLAS paths of the library it verifies. */
#include "refimpl.h"

#include <math.h>
#include <stdlib.h>

int ref_conv_geom_init(ref_conv_geom *g) {
  if (g->groups < 1 || g->in_c % g->groups != 0 || g->out_c % g->groups != 0) return -1;
  if (g->stride < 1 || g->pad < 0) return -1;
  int span_h = g->in_h + 2 * g->pad - g->kh;
  int span_w = g->in_w + 2 * g->pad - g->kw;
  if (span_h < 0 || span_w < 0) return -1;
  g->out_h = span_h / g->stride + 1;
  g->out_w = span_w / g->stride + 1;
  return 0;
}

/* One output element: the sum over the receptive field of one group's input
 * channels; taps that fall into the zero padding contribute nothing. */
static double conv_point(const ref_conv_geom *g, const double *x, const double *w, int b,
                         int oc, int oy, int ox) {
  int cin_g = g->in_c / g->groups;
  int cout_g = g->out_c / g->groups;
  int first_ic = (oc / cout_g) * cin_g;
  double acc = 0.0;
  for (int icl = 0; icl < cin_g; icl++) {
    int ic = first_ic + icl;
    for (int ky = 0; ky < g->kh; ky++) {
      int iy = oy * g->stride - g->pad + ky;
      if (iy < 0 || iy >= g->in_h) continue;
      for (int kx = 0; kx < g->kw; kx++) {
        int ix = ox * g->stride - g->pad + kx;
        if (ix < 0 || ix >= g->in_w) continue;
        double xv = x[(((size_t)b * g->in_c + ic) * g->in_h + iy) * g->in_w + ix];
        double wv = w[(((size_t)oc * cin_g + icl) * g->kh + ky) * g->kw + kx];
        acc += xv * wv;
      }
    }
  }
  return acc;
}

void ref_conv2d(const ref_conv_geom *g, double *y, const double *x, const double *w,
                const double *b) {
  for (int n = 0; n < g->n; n++)
    for (int oc = 0; oc < g->out_c; oc++)
      for (int oy = 0; oy < g->out_h; oy++)
        for (int ox = 0; ox < g->out_w; ox++) {
          double v = conv_point(g, x, w, n, oc, oy, ox);
          if (b) v += b[oc];
          y[(((size_t)n * g->out_c + oc) * g->out_h + oy) * g->out_w + ox] = v;
        }
}

void ref_channel_stats(int n, int c, int spatial, int unbiased, double *mean, double *var,
                       const double *x) {
  double m = (double)n * spatial;
  for (int ch = 0; ch < c; ch++) {
    double sum = 0.0;
    for (int b = 0; b < n; b++)
      for (int s = 0; s < spatial; s++) sum += x[((size_t)b * c + ch) * spatial + s];
    double mu = sum / m;
    /* two-pass variance: exact enough in double for the tiny tensors used here */
    double ss = 0.0;
    for (int b = 0; b < n; b++)
      for (int s = 0; s < spatial; s++) {
        double d = x[((size_t)b * c + ch) * spatial + s] - mu;
        ss += d * d;
      }
    mean[ch] = mu;
    var[ch] = ss / (unbiased ? m - 1.0 : m);
  }
}

/* y = gamma * (x - mean) / sqrt(var + eps) + beta with the given per-channel statistics. */
static void normalise(int n, int c, int spatial, double eps, double *y, const double *x,
                      const double *gamma, const double *beta, const double *mean,
                      const double *var) {
  for (int b = 0; b < n; b++)
    for (int ch = 0; ch < c; ch++) {
      double scale = gamma[ch] / sqrt(var[ch] + eps);
      for (int s = 0; s < spatial; s++) {
        size_t i = ((size_t)b * c + ch) * spatial + s;
        y[i] = (x[i] - mean[ch]) * scale + beta[ch];
      }
    }
}

void ref_batchnorm_train(int n, int c, int spatial, double eps, double *y, const double *x,
                         const double *gamma, const double *beta) {
  double *mean = malloc(2 * (size_t)c * sizeof *mean);
  if (!mean) abort(); /* a test helper: no recovery from a failed tiny allocation */
  double *var = mean + c;
  ref_channel_stats(n, c, spatial, 0, mean, var, x);
  normalise(n, c, spatial, eps, y, x, gamma, beta, mean, var);
  free(mean);
}

void ref_batchnorm_eval(int n, int c, int spatial, double eps, double *y, const double *x,
                        const double *gamma, const double *beta, const double *running_mean,
                        const double *running_var) {
  normalise(n, c, spatial, eps, y, x, gamma, beta, running_mean, running_var);
}

void ref_prelu(int n, int c, int spatial, double *y, const double *x, const double *alpha) {
  for (int b = 0; b < n; b++)
    for (int ch = 0; ch < c; ch++)
      for (int s = 0; s < spatial; s++) {
        size_t i = ((size_t)b * c + ch) * spatial + s;
        y[i] = x[i] > 0.0 ? x[i] : alpha[ch] * x[i];
      }
}

void ref_linear(int n, int in, int out, double *y, const double *x, const double *w,
                const double *b) {
  for (int r = 0; r < n; r++)
    for (int o = 0; o < out; o++) {
      double acc = b ? b[o] : 0.0;
      for (int i = 0; i < in; i++) acc += x[(size_t)r * in + i] * w[(size_t)o * in + i];
      y[(size_t)r * out + o] = acc;
    }
}

void ref_add(size_t count, double *y, const double *a, const double *b) {
  for (size_t i = 0; i < count; i++) y[i] = a[i] + b[i];
}

void ref_dropout(size_t count, double p, double *y, const double *x, const unsigned char *keep) {
  double scale = 1.0 / (1.0 - p);
  for (size_t i = 0; i < count; i++) y[i] = keep[i] ? x[i] * scale : 0.0;
}

void ref_l2norm(int rows, int cols, double eps, double *y, const double *x) {
  for (int r = 0; r < rows; r++) {
    const double *xr = x + (size_t)r * cols;
    double ss = 0.0;
    for (int j = 0; j < cols; j++) ss += xr[j] * xr[j];
    double denom = fmax(sqrt(ss), eps);
    for (int j = 0; j < cols; j++) y[(size_t)r * cols + j] = xr[j] / denom;
  }
}

double ref_dot(size_t count, const double *r, const double *y) {
  double acc = 0.0;
  for (size_t i = 0; i < count; i++) acc += r[i] * y[i];
  return acc;
}
