/* softmax_xent.c: softmax cross-entropy on host logits [n, k], row-major. */
#include <math.h>

#include "lfs/log.h"
#include "lfs/loss.h"

static double row_xent(int k, float *drow, const float *row, int label, int *argmax) {
  float top = row[0];
  int best = 0;
  for (int j = 1; j < k; j++)
    if (row[j] > top) top = row[j], best = j;
  double sum = 0.0;
  for (int j = 0; j < k; j++) sum += exp((double)row[j] - top);
  const double log_z = top + log(sum);
  for (int j = 0; j < k; j++) drow[j] = (float)exp((double)row[j] - log_z);
  drow[label] -= 1.0f;
  *argmax = best;
  return log_z - row[label];
}

double lfs_softmax_xent(int n, int k, float *dlogits, const float *logits, const int32_t *labels,
                        int *correct) {
  double total = 0.0;
  int hits = 0;
  for (int i = 0; i < n; i++) {
    LFS_ASSERT(labels[i] >= 0 && labels[i] < k);
    int argmax;
    total += row_xent(k, dlogits + (size_t)i * k, logits + (size_t)i * k, labels[i], &argmax);
    hits += argmax == labels[i];
  }
  const float inv = 1.0f / (float)n;
  for (size_t i = 0; i < (size_t)n * k; i++) dlogits[i] *= inv;
  if (correct) *correct = hits;
  return total / n;
}
