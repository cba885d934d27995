/* verification.c: face-verification accuracy on a pair set, insightface's
 * protocol (10 folds, best threshold on nine, applied to the tenth), plus TAR@FAR,
 * ROC AUC and EER over all pairs. The definitions are in include/lfs/eval.h.
 *
 * Layout: embeddings are row-major float [n, d], pair i = (emb1[i], emb2[i]) (or
 * rows 2i, 2i+1 of one [2n, d] array); issame is uint8 [n]. Distances are double.
 *
 * The ten folds are not evaluated threshold by threshold over all pairs (400 x N
 * comparisons per fold, as the reference does) but from per-fold histograms of
 * "the first threshold that accepts this pair": one pass over the pairs, then
 * prefix sums give every fold's correct count at every threshold. The counts are
 * integers, so the fold accuracies equal the reference's to the last bit. */
#include "lfs/eval.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lfs/log.h"

/* Squared norms farther than this from 1 mean the caller forgot to normalise. */
#define NORM_TOL 1e-3

/* The FAR targets; n_imp / denom impostors may be accepted (integer division, so
 * that "n_imp >= 1/FAR" carries no floating-point rounding). */
static const struct {
  double far;
  int64_t denom;
  const char *label;
} far_targets[LFS_VERIFY_NFAR] = {{1e-3, 1000, "1e-3"}, {1e-4, 10000, "1e-4"}};


/* ---- thresholds and folds ---------------------------------------------------------- */

/* numpy's arange fills start + k * step, and start is 0. */
double lfs_verify_threshold(int k) { return (double)k * LFS_VERIFY_STEP; }

void lfs_verify_fold(int64_t n, int f, int64_t *first, int64_t *count) {
  int64_t base = n / LFS_VERIFY_FOLDS, extra = n % LFS_VERIFY_FOLDS;
  *count = base + (f < extra ? 1 : 0);
  *first = (int64_t)f * base + (f < extra ? f : extra);
}

/* Index of the first threshold that predicts "same" for distance d (d < t_k), or
 * LFS_VERIFY_THRESHOLDS when none does. Found by comparing with the thresholds
 * themselves, so the answer agrees with the reference's d < t_k exactly. */
static int first_accepting(double d) {
  int lo = 0, hi = LFS_VERIFY_THRESHOLDS;
  while (lo < hi) {
    int mid = (lo + hi) / 2;
    if (d < lfs_verify_threshold(mid))
      hi = mid;
    else
      lo = mid + 1;
  }
  return lo;
}

/* ---- input checks ------------------------------------------------------------------ */

static int check_pairs(const double *dist, const uint8_t *issame, int64_t n, int64_t *ngen,
                       int64_t *nimp, char *err, size_t errlen) {
  if (n < LFS_VERIFY_FOLDS)
    return lfs_fail(err, errlen, "verification needs at least %d pairs for %d folds, got %lld",
                LFS_VERIFY_FOLDS, LFS_VERIFY_FOLDS, (long long)n);
  int64_t g = 0;
  for (int64_t i = 0; i < n; i++) {
    if (issame[i] > 1)
      return lfs_fail(err, errlen, "issame[%lld] = %u: expected 0 or 1", (long long)i,
                  (unsigned)issame[i]);
    if (!isfinite(dist[i]))
      return lfs_fail(err, errlen, "distance of pair %lld is %g", (long long)i, dist[i]);
    g += issame[i];
  }
  if (g == 0 || g == n)
    return lfs_fail(err, errlen,
                "all %lld pairs are %s: AUC and EER need both genuine and impostor pairs",
                (long long)n, g ? "genuine" : "impostor");
  *ngen = g;
  *nimp = n - g;
  return 0;
}

/* ---- the ten folds ----------------------------------------------------------------- */

/* correct[f * T + k]: pairs of fold f classified correctly at threshold k. */
static void fold_correct_counts(int64_t *correct, const double *dist, const uint8_t *issame,
                                int64_t n) {
  enum { T = LFS_VERIFY_THRESHOLDS };
  /* first[f][j]: pairs of fold f, by genuine/impostor, first accepted at threshold j. */
  int64_t *hist = lfs_calloc((size_t)LFS_VERIFY_FOLDS * 2 * (T + 1), sizeof *hist);
  for (int f = 0; f < LFS_VERIFY_FOLDS; f++) {
    int64_t first, count;
    lfs_verify_fold(n, f, &first, &count);
    int64_t *gen = hist + (size_t)f * 2 * (T + 1), *imp = gen + (T + 1);
    int64_t nimp_f = 0;
    for (int64_t i = first; i < first + count; i++) {
      int j = first_accepting(dist[i]);
      if (issame[i])
        gen[j]++;
      else {
        imp[j]++;
        nimp_f++;
      }
    }
    /* Genuine pairs are right once accepted (k >= j), impostors while rejected (k < j). */
    int64_t gen_acc = 0, imp_acc = 0;
    for (int k = 0; k < T; k++) {
      gen_acc += gen[k];
      imp_acc += imp[k];
      correct[(size_t)f * T + k] = gen_acc + (nimp_f - imp_acc);
    }
  }
  free(hist);
}

static void ten_folds(lfs_verify_result *out, const double *dist, const uint8_t *issame,
                      int64_t n) {
  enum { T = LFS_VERIFY_THRESHOLDS, F = LFS_VERIFY_FOLDS };
  int64_t *correct = lfs_malloc((size_t)F * T * sizeof *correct);
  int64_t total[T];
  fold_correct_counts(correct, dist, issame, n);
  for (int k = 0; k < T; k++) {
    total[k] = 0;
    for (int f = 0; f < F; f++) total[k] += correct[(size_t)f * T + k];
  }
  double acc_sum = 0.0, thr_sum = 0.0;
  for (int f = 0; f < F; f++) {
    int64_t first, count;
    lfs_verify_fold(n, f, &first, &count);
    /* The nine training folds share one denominator, so the best accuracy is the
     * best count; strict '>' keeps the lowest threshold on ties, like argmax. */
    int best = 0;
    int64_t best_count = -1;
    for (int k = 0; k < T; k++) {
      int64_t c = total[k] - correct[(size_t)f * T + k];
      if (c > best_count) {
        best_count = c;
        best = k;
      }
    }
    out->fold_size[f] = count;
    out->fold_threshold[f] = lfs_verify_threshold(best);
    out->fold_acc[f] = (double)correct[(size_t)f * T + best] / (double)count;
    acc_sum += out->fold_acc[f];
    thr_sum += out->fold_threshold[f];
  }
  out->acc_mean = acc_sum / F;
  out->best_threshold_mean = thr_sum / F;
  double var = 0.0;
  for (int f = 0; f < F; f++) {
    double dev = out->fold_acc[f] - out->acc_mean;
    var += dev * dev;
  }
  out->acc_std = sqrt(var / F);
  free(correct);
}

/* ---- over all pairs: TAR@FAR, AUC, EER ----------------------------------------------- */

typedef struct {
  double d;
  int same;
} scored_pair;

static int by_distance(const void *a, const void *b) {
  double x = ((const scored_pair *)a)->d, y = ((const scored_pair *)b)->d;
  return (x > y) - (x < y);
}

/* Number of values in sorted v[0..n) that are < x. */
static int64_t count_below(const double *v, int64_t n, double x) {
  int64_t lo = 0, hi = n;
  while (lo < hi) {
    int64_t mid = lo + (hi - lo) / 2;
    if (v[mid] < x)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

/* gen [ngen], imp [nimp]: the distances of each class, ascending. */
static void tar_at_far(lfs_verify_result *out, const double *gen, const double *imp) {
  for (int i = 0; i < LFS_VERIFY_NFAR; i++) {
    int64_t k = out->n_impostor / far_targets[i].denom;
    out->far[i] = far_targets[i].far;
    out->tar_available[i] = k >= 1;
    if (k < 1) {
      out->tar_at_far[i] = out->tar_threshold[i] = out->far_achieved[i] = NAN;
      continue;
    }
    double s = imp[k];
    out->tar_threshold[i] = s;
    out->tar_at_far[i] = (double)count_below(gen, out->n_genuine, s) / (double)out->n_genuine;
    out->far_achieved[i] = (double)count_below(imp, out->n_impostor, s) / (double)out->n_impostor;
  }
}

/* Walks the groups of equal distance in ascending order: AUC from the
 * Mann-Whitney count (ties half, kept exact as twice the count) and EER at the
 * first sign change of FAR - FRR. */
static void auc_eer(lfs_verify_result *out, const scored_pair *p, int64_t n) {
  int64_t ngen = out->n_genuine, nimp = out->n_impostor;
  int64_t gen_seen = 0, imp_seen = 0, twice_wins = 0;
  double far_prev = 0.0, frr_prev = 1.0, u_prev = 0.0;
  int eer_found = 0;
  for (int64_t i = 0; i < n;) {
    int64_t j = i, g = 0, m = 0;
    for (; j < n && p[j].d == p[i].d; j++) {
      if (p[j].same)
        g++;
      else
        m++;
    }
    gen_seen += g;
    imp_seen += m;
    twice_wins += 2 * g * (nimp - imp_seen) + g * m;
    double far = (double)imp_seen / (double)nimp;
    double frr = (double)(ngen - gen_seen) / (double)ngen;
    if (!eer_found && far - frr >= 0.0) {
      double dprev = far_prev - frr_prev, dcur = far - frr; /* dprev < 0 <= dcur */
      double a = -dprev / (dcur - dprev);
      out->eer = far_prev + a * (far - far_prev);
      out->eer_threshold = u_prev + a * (p[i].d - u_prev);
      eer_found = 1;
    }
    far_prev = far;
    frr_prev = frr;
    u_prev = p[i].d;
    i = j;
  }
  out->auc = (double)twice_wins / (2.0 * (double)ngen * (double)nimp);
}

static void whole_set(lfs_verify_result *out, const double *dist, const uint8_t *issame,
                      int64_t n) {
  scored_pair *p = lfs_malloc((size_t)n * sizeof *p);
  double *gen = lfs_malloc((size_t)out->n_genuine * sizeof *gen);
  double *imp = lfs_malloc((size_t)out->n_impostor * sizeof *imp);
  for (int64_t i = 0; i < n; i++) {
    p[i].d = dist[i];
    p[i].same = issame[i];
  }
  qsort(p, (size_t)n, sizeof *p, by_distance);
  int64_t ng = 0, ni = 0;
  for (int64_t i = 0; i < n; i++) {
    if (p[i].same)
      gen[ng++] = p[i].d;
    else
      imp[ni++] = p[i].d;
  }
  tar_at_far(out, gen, imp);
  auc_eer(out, p, n);
  free(imp);
  free(gen);
  free(p);
}

int lfs_verify_from_distances(const double *dist, const uint8_t *issame, int64_t n,
                              lfs_verify_result *out, char *err, size_t errlen) {
  int64_t ngen = 0, nimp = 0;
  if (check_pairs(dist, issame, n, &ngen, &nimp, err, errlen)) return -1;
  lfs_verify_result r;
  memset(&r, 0, sizeof r);
  r.n_pairs = n;
  r.n_genuine = ngen;
  r.n_impostor = nimp;
  ten_folds(&r, dist, issame, n);
  whole_set(&r, dist, issame, n);
  *out = r;
  return 0;
}

/* ---- embeddings -------------------------------------------------------------------- */

int lfs_verify_embed(float *out, const float *plain, const float *flipped, int64_t n, int d,
                     char *err, size_t errlen) {
  if (n < 0 || d < 1)
    return lfs_fail(err, errlen, "embeddings: bad shape [%lld, %d]", (long long)n, d);
  /* Check everything first: on error, out (possibly an input) is left untouched. */
  for (int64_t i = 0; i < n * d; i++) {
    if (!isfinite(plain[i]) || !isfinite(flipped[i]))
      return lfs_fail(err, errlen, "embedding of image %lld%s is not finite (element %d = %g)",
                  (long long)(i / d), isfinite(plain[i]) ? " (flipped)" : "", (int)(i % d),
                  (double)(isfinite(plain[i]) ? flipped[i] : plain[i]));
  }
  for (int64_t i = 0; i < n; i++) {
    const float *a = plain + i * d, *b = flipped + i * d;
    double ss = 0.0;
    for (int j = 0; j < d; j++) {
      double s = (double)a[j] + (double)b[j];
      ss += s * s;
    }
    /* sklearn's normalize divides a zero row by 1: it stays zero. */
    double norm = ss > 0.0 ? sqrt(ss) : 1.0;
    float *o = out + i * d;
    for (int j = 0; j < d; j++) o[j] = (float)(((double)a[j] + (double)b[j]) / norm);
  }
  return 0;
}

/* 0, or -1 with a message when a row is not finite or its squared norm is neither ~1 nor 0. */
static int check_row(const float *e, int d, const char *what, int64_t row, char *err,
                     size_t errlen) {
  double ss = 0.0;
  for (int j = 0; j < d; j++) ss += (double)e[j] * (double)e[j];
  if (!isfinite(ss))
    return lfs_fail(err, errlen, "%s row %lld is not finite", what, (long long)row);
  if (ss != 0.0 && fabs(ss - 1.0) > NORM_TOL)
    return lfs_fail(err, errlen,
                "%s row %lld has norm %.6g: embeddings must be L2-normalised "
                "(lfs_verify_embed)",
                what, (long long)row, sqrt(ss));
  return 0;
}

/* Distances of n pairs whose first and second rows start at a and b and step by
 * stride floats: separate arrays (stride d) or one interleaved array (stride 2d).
 * Messages name rows as the caller knows them. */
static int pair_distances(double *dist, const float *a, const float *b, int64_t n, int d,
                          int interleaved, char *err, size_t errlen) {
  int64_t stride = interleaved ? 2 * (int64_t)d : d;
  for (int64_t i = 0; i < n; i++) {
    const float *x = a + i * stride, *y = b + i * stride;
    if (check_row(x, d, interleaved ? "emb" : "emb1", interleaved ? 2 * i : i, err, errlen) ||
        check_row(y, d, interleaved ? "emb" : "emb2", interleaved ? 2 * i + 1 : i, err, errlen))
      return -1;
    double s = 0.0;
    for (int j = 0; j < d; j++) {
      double t = (double)x[j] - (double)y[j];
      s += t * t;
    }
    dist[i] = s;
  }
  return 0;
}

int lfs_verify_distances(double *dist, const float *emb1, const float *emb2, int64_t n, int d,
                         char *err, size_t errlen) {
  if (n < 0 || d < 1)
    return lfs_fail(err, errlen, "embeddings: bad shape [%lld, %d]", (long long)n, d);
  return pair_distances(dist, emb1, emb2, n, d, 0, err, errlen);
}

static int verify_pairs(const float *a, const float *b, const uint8_t *issame, int64_t n, int d,
                        int interleaved, lfs_verify_result *out, char *err, size_t errlen) {
  if (n < LFS_VERIFY_FOLDS)
    return lfs_fail(err, errlen, "verification needs at least %d pairs for %d folds, got %lld",
                LFS_VERIFY_FOLDS, LFS_VERIFY_FOLDS, (long long)n);
  if (d < 1) return lfs_fail(err, errlen, "embeddings: bad width %d", d);
  double *dist = lfs_malloc((size_t)n * sizeof *dist);
  int rc = pair_distances(dist, a, b, n, d, interleaved, err, errlen);
  if (rc == 0) rc = lfs_verify_from_distances(dist, issame, n, out, err, errlen);
  free(dist);
  return rc;
}

int lfs_verify(const float *emb1, const float *emb2, const uint8_t *issame, int64_t n, int d,
               lfs_verify_result *out, char *err, size_t errlen) {
  return verify_pairs(emb1, emb2, issame, n, d, 0, out, err, errlen);
}

int lfs_verify_interleaved(const float *emb, const uint8_t *issame, int64_t n, int d,
                           lfs_verify_result *out, char *err, size_t errlen) {
  return verify_pairs(emb, d > 0 ? emb + d : emb, issame, n, d, 1, out, err, errlen);
}

/* ---- formatting -------------------------------------------------------------------- */

typedef struct {
  char *buf;
  size_t len, pos;
  int overflow;
} text;

static void put(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(text *t, const char *fmt, ...) {
  if (t->overflow) return;
  va_list ap;
  va_start(ap, fmt);
  int w = vsnprintf(t->buf + t->pos, t->len - t->pos, fmt, ap);
  va_end(ap);
  if (w < 0 || (size_t)w >= t->len - t->pos) {
    t->overflow = 1;
    return;
  }
  t->pos += (size_t)w;
}

static int text_begin(text *t, char *buf, size_t len) {
  t->buf = buf;
  t->len = len;
  t->pos = 0;
  t->overflow = 0;
  if (!buf || len == 0) return -1;
  buf[0] = '\0';
  return 0;
}

static int text_end(text *t) {
  if (t->overflow) t->buf[t->pos] = '\0'; /* keep the last complete piece */
  return t->overflow ? -1 : 0;
}

int lfs_verify_format_line(char *buf, size_t len, const char *name, const lfs_verify_result *r) {
  text t;
  if (text_begin(&t, buf, len)) return -1;
  put(&t, "%s: accuracy %.2f \xc2\xb1 %.2f %%, threshold %.2f", name, 100.0 * r->acc_mean,
      100.0 * r->acc_std, r->best_threshold_mean);
  for (int i = 0; i < LFS_VERIFY_NFAR; i++) {
    if (r->tar_available[i])
      put(&t, ", TAR@FAR=%s %.2f %%", far_targets[i].label, 100.0 * r->tar_at_far[i]);
    else
      put(&t, ", TAR@FAR=%s n/a", far_targets[i].label);
  }
  put(&t, ", AUC %.5f, EER %.2f %%, %lld pairs", r->auc, 100.0 * r->eer, (long long)r->n_pairs);
  return text_end(&t);
}

/* The shortest %.Ng (N <= 17) that reads back as x; null for NaN/Inf. */
static void put_number(text *t, double x) {
  if (!isfinite(x)) {
    put(t, "null");
    return;
  }
  char s[40];
  for (int prec = 1; prec <= 17; prec++) {
    snprintf(s, sizeof s, "%.*g", prec, x);
    if (strtod(s, NULL) == x) break;
  }
  put(t, "%s", s);
}

static void put_json_string(text *t, const char *s) {
  put(t, "\"");
  for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
    if (*c == '"' || *c == '\\')
      put(t, "\\%c", *c);
    else if (*c < 0x20)
      put(t, "\\u%04x", (unsigned)*c);
    else
      put(t, "%c", *c);
  }
  put(t, "\"");
}

int lfs_verify_format_json(char *buf, size_t len, const char *name, const lfs_verify_result *r) {
  text t;
  if (text_begin(&t, buf, len)) return -1;
  put(&t, "{\"name\": ");
  put_json_string(&t, name);
  put(&t, ", \"pairs\": %lld, \"genuine\": %lld, \"impostor\": %lld, \"accuracy\": ",
      (long long)r->n_pairs, (long long)r->n_genuine, (long long)r->n_impostor);
  put_number(&t, r->acc_mean);
  put(&t, ", \"accuracy_std\": ");
  put_number(&t, r->acc_std);
  put(&t, ", \"threshold\": ");
  put_number(&t, r->best_threshold_mean);
  put(&t, ", \"folds\": [");
  for (int f = 0; f < LFS_VERIFY_FOLDS; f++) {
    put(&t, "%s{\"size\": %lld, \"accuracy\": ", f ? ", " : "", (long long)r->fold_size[f]);
    put_number(&t, r->fold_acc[f]);
    put(&t, ", \"threshold\": ");
    put_number(&t, r->fold_threshold[f]);
    put(&t, "}");
  }
  put(&t, "], \"tar_at_far\": [");
  for (int i = 0; i < LFS_VERIFY_NFAR; i++) {
    put(&t, "%s{\"far\": ", i ? ", " : "");
    put_number(&t, far_targets[i].far);
    put(&t, ", \"tar\": ");
    put_number(&t, r->tar_available[i] ? r->tar_at_far[i] : NAN);
    put(&t, ", \"threshold\": ");
    put_number(&t, r->tar_available[i] ? r->tar_threshold[i] : NAN);
    put(&t, ", \"far_achieved\": ");
    put_number(&t, r->tar_available[i] ? r->far_achieved[i] : NAN);
    put(&t, "}");
  }
  put(&t, "], \"auc\": ");
  put_number(&t, r->auc);
  put(&t, ", \"eer\": ");
  put_number(&t, r->eer);
  put(&t, ", \"eer_threshold\": ");
  put_number(&t, r->eer_threshold);
  put(&t, "}");
  return text_end(&t);
}
