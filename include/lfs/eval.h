/* eval.h: face-verification accuracy of embeddings on a pair set (DESIGN §5).
 *
 * The protocol is insightface's (arcface_torch eval/verification.py), so that the
 * numbers compare with published LFW / CFP-FP / AgeDB-30 results:
 *   - embedding e = normalize(f(img) + f(flip(img))) (lfs_verify_embed);
 *   - distance d = ||e1 - e2||^2, computed in double;
 *   - thresholds t_k = k * 0.01, k = 0 .. 399 (numpy's arange(0, 4, 0.01)); a pair is
 *     predicted "same" iff d < t_k;
 *   - 10 contiguous folds without shuffling, sized as sklearn's KFold: the first
 *     N % 10 folds hold N / 10 + 1 pairs, the others N / 10;
 *   - for each fold, the threshold with the highest accuracy on the other nine folds
 *     (the lowest such threshold on ties, as numpy's argmax) is applied to the fold;
 *   - accuracy = mean of the ten fold accuracies, std with ddof 0; best_threshold_mean
 *     is the mean of the ten chosen thresholds.
 * Over all pairs at once (these are lfsearch's definitions; insightface has none of
 * them except a 10-fold interpolated VAL@FAR, which we do not reproduce):
 *   - TAR@FAR for FAR in {1e-3, 1e-4}: with n_imp impostor pairs, at most
 *     k = floor(FAR * n_imp) impostors may be accepted. The threshold is the
 *     (k+1)-th smallest impostor distance s: accepting d < s admits at most k
 *     impostors, and any larger threshold admits k + 1, so TAR = #{genuine: d < s} /
 *     n_gen is the best true-accept rate whose impostor accept rate is <= FAR.
 *     Available only when k >= 1, i.e. n_imp >= 1/FAR (1000 and 10000 impostors);
 *     otherwise tar_available is 0 and the value is NaN.
 *   - ROC AUC: the probability that a random genuine pair is closer than a random
 *     impostor pair, equal distances counting one half (Mann-Whitney), computed
 *     exactly from all pairs sorted by distance.
 *   - EER: the operating points "accept d <= u" for every distinct distance u (plus
 *     "accept nothing") give (FAR, FRR) steps; the EER is where the straight segment
 *     between the two neighbouring points across which FAR - FRR changes sign meets
 *     FAR = FRR (the same piecewise-linear ROC whose area is the AUC above).
 *     eer_threshold is the distance there, interpolated linearly between the two
 *     neighbouring distinct distances (0 standing in for "accept nothing").
 *
 * Errors (fewer than 10 pairs, a pair set of one class only, issame not 0/1,
 * NaN/Inf or non-normalised embeddings) return -1 with a message in err naming the
 * row or the count; nothing aborts. */
#ifndef LFS_EVAL_H
#define LFS_EVAL_H

#include <stddef.h>
#include <stdint.h>

#define LFS_VERIFY_FOLDS 10
#define LFS_VERIFY_THRESHOLDS 400
#define LFS_VERIFY_STEP 0.01
#define LFS_VERIFY_NFAR 2
/* Room lfs_verify_format_line / _json need beyond the name: add the name's length
 * for the line, six times it for JSON (a control byte is escaped as \u00XX). */
#define LFS_VERIFY_FORMAT_MAX 2048

typedef struct {
  int64_t n_pairs, n_genuine, n_impostor;
  /* The insightface protocol. */
  double acc_mean, acc_std;  /* fractions in [0, 1] */
  double best_threshold_mean;
  double fold_acc[LFS_VERIFY_FOLDS];
  double fold_threshold[LFS_VERIFY_FOLDS]; /* the threshold applied to each fold */
  int64_t fold_size[LFS_VERIFY_FOLDS];
  /* Over all pairs. */
  double far[LFS_VERIFY_NFAR];           /* 1e-3, 1e-4 */
  int tar_available[LFS_VERIFY_NFAR];    /* 0 when n_impostor < 1/far */
  double tar_at_far[LFS_VERIFY_NFAR];    /* NaN when not available */
  double tar_threshold[LFS_VERIFY_NFAR]; /* accept d < this */
  double far_achieved[LFS_VERIFY_NFAR];  /* impostor accept rate there, <= far */
  double auc, eer, eer_threshold;
} lfs_verify_result;

/* The threshold of index k (0 <= k < LFS_VERIFY_THRESHOLDS), bit-identical to
 * numpy's arange(0, 4, 0.01)[k]. */
double lfs_verify_threshold(int k);

/* Fold f (0 <= f < LFS_VERIFY_FOLDS) of n pairs: pairs [*first, *first + *count). */
void lfs_verify_fold(int64_t n, int f, int64_t *first, int64_t *count);

/* out [n, d] = plain + flipped, each row scaled to unit L2 norm (sums and norms in
 * double). A zero row stays zero, as sklearn's normalize leaves it. plain, flipped:
 * [n, d] embeddings of the images and of their horizontal flips. out may alias
 * either input. -1 on NaN/Inf, naming the row. */
int lfs_verify_embed(float *out, const float *plain, const float *flipped, int64_t n, int d,
                     char *err, size_t errlen);

/* dist [n] = ||emb1[i] - emb2[i]||^2 in double. emb1, emb2: [n, d], rows of unit
 * norm (or zero; tolerance 1e-3 on the squared norm). -1 on NaN/Inf or a row that
 * is not normalised, naming the array and the row (dist is then unspecified). */
int lfs_verify_distances(double *dist, const float *emb1, const float *emb2, int64_t n, int d,
                         char *err, size_t errlen);

/* The protocol on precomputed distances: dist [n] (finite), issame [n] (0 or 1). */
int lfs_verify_from_distances(const double *dist, const uint8_t *issame, int64_t n,
                              lfs_verify_result *out, char *err, size_t errlen);

/* lfs_verify_distances followed by lfs_verify_from_distances. Pair i is
 * (emb1[i], emb2[i]); for a pair set's embeddings [2n, d] (pair i = rows 2i, 2i+1)
 * use lfs_verify_interleaved. */
int lfs_verify(const float *emb1, const float *emb2, const uint8_t *issame, int64_t n, int d,
               lfs_verify_result *out, char *err, size_t errlen);
/* emb [2n, d]: pair i is rows 2i and 2i+1 (the layout of a pair set's /images);
 * errors name rows of emb. */
int lfs_verify_interleaved(const float *emb, const uint8_t *issame, int64_t n, int d,
                           lfs_verify_result *out, char *err, size_t errlen);

/* One line, no newline:
 *   "NAME: accuracy 99.12 ± 0.34 %, threshold 1.42, TAR@FAR=1e-3 97.10 %,
 *    TAR@FAR=1e-4 n/a, AUC 0.99871, EER 1.23 %, 6000 pairs"
 * (on one line; ± is UTF-8). Returns 0, or -1 when buf (len bytes) is too small;
 * buf is always terminated. */
int lfs_verify_format_line(char *buf, size_t len, const char *name, const lfs_verify_result *r);
/* One JSON object, no newline: name, pairs, genuine, impostor, accuracy, accuracy_std,
 * threshold, folds [{size, accuracy, threshold}], tar_at_far [{far, tar, threshold,
 * far_achieved}] (null values where not available), auc, eer, eer_threshold.
 * Numbers are the shortest decimal that reads back to the same double. */
int lfs_verify_format_json(char *buf, size_t len, const char *name, const lfs_verify_result *r);

#endif
