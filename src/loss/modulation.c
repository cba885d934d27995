/* modulation.c: one row's softmax in log space and Search-Softmax's probability
 * modulation (DESIGN §1.4):
 *   L = -log p_y + log1p(|a| (1 - p_y)),   dL/dz_k = g (p_k - [k = y]),
 *   g = (1 + |a|) / (1 + |a| (1 - p_y)).
 * -log p_y comes from a max-shifted log-sum-exp and 1 - p_y is the sum of the
 * other classes' probabilities, so neither loses digits when p_y is near 1
 * (where 1 - p_y by subtraction is 0 in float and a few digits in double) and
 * neither is the log of an underflowed probability when p_y is near 0. */
#include <math.h>

#include "loss/loss_internal.h"

void lfs_row_softmax(int K, double *z, int y, lfs_row_prob *out) {
  double top = z[y];
  for (int k = 0; k < K; k++)
    if (z[k] > top) top = z[k];
  double others = 0.0; /* sum over k != y of exp(z_k - top) */
  for (int k = 0; k < K; k++) {
    if (k == y) continue;
    z[k] = exp(z[k] - top);
    others += z[k];
  }
  const double ey = exp(z[y] - top), total = others + ey;
  for (int k = 0; k < K; k++)
    if (k != y) z[k] /= total;
  /* When the label holds the maximum ey = 1 and -log p_y = log1p(others) keeps the
   * tiny values; otherwise p_y <= 1/2 and the plain form has no cancellation. */
  out->neg_log_py = z[y] == top ? log1p(others) : (top - z[y]) + log(total);
  out->py = ey / total;
  out->q = others / total;
}

double lfs_modulation_term(double a, const lfs_row_prob *p, double *g) {
  const double abs_a = fabs(a);
  *g = (1.0 + abs_a) / (1.0 + abs_a * p->q);
  return p->neg_log_py + log1p(abs_a * p->q);
}
