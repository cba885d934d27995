/* loss.h: losses on logits. The margin family and the searched losses build on
 * the softmax cross-entropy here. */
#ifndef LFS_LOSS_H
#define LFS_LOSS_H

#include <stdint.h>

/* Mean softmax cross-entropy of logits [n, k] with labels [n] (0 <= label < k).
 * dlogits [n, k] receives (softmax - onehot) / n (written, not accumulated: it is
 * the start of a backward pass). Log-sum-exp is max-shifted. Returns the loss;
 * *correct (optional) receives how many rows have their label as the argmax. */
double lfs_softmax_xent(int n, int k, float *dlogits, const float *logits, const int32_t *labels,
                        int *correct);

#endif
