/* test_eval.c: the verification protocol of src/eval/verification.c (DESIGN §5).
 *
 * Hand-made cases with answers worked out on paper (in the comments): a perfectly
 * separable set, the lowest-threshold tie rule and the strict d < t, fold sizes
 * (sklearn's KFold: the first N % 10 folds get one pair more), TAR@FAR with and
 * without tied impostors, AUC and EER with tied distances, the flip-sum embedding,
 * the input errors and the two output formats. Then three fixtures written by
 * tests/ref/gen_eval_fixture.py, a numpy re-implementation of the protocol: fold
 * accuracies and thresholds are ratios of integers and grid values, so they must
 * match exactly; the means, AUC and EER to 1e-9. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../common/testutil.h"
#include "lfs/eval.h"

#define CLOSE_TOL 1e-9

/* A pair set built by hand: distances and labels. */
typedef struct {
  double *d;
  uint8_t *same;
  int64_t n;
} pairs;

static pairs pairs_new(int64_t n) {
  pairs p = {calloc((size_t)n, sizeof(double)), calloc((size_t)n, 1), n};
  assert_non_null(p.d);
  assert_non_null(p.same);
  return p;
}

static void pairs_free(pairs *p) {
  free(p->d);
  free(p->same);
}

static void verify_ok(const pairs *p, lfs_verify_result *r) {
  char err[256] = "";
  int rc = lfs_verify_from_distances(p->d, p->same, p->n, r, err, sizeof err);
  if (rc != 0) fail_msg("lfs_verify_from_distances failed: %s", err);
}

static void assert_close(double got, double want, double tol, const char *what) {
  if (!(fabs(got - want) <= tol))
    fail_msg("%s: got %.17g want %.17g (tol %g)", what, got, want, tol);
}

/* ---- thresholds and folds ---------------------------------------------------------- */

static void test_threshold_grid(void **state) {
  (void)state;
  for (int k = 0; k < LFS_VERIFY_THRESHOLDS; k++) assert_true(lfs_verify_threshold(k) == k * 0.01);
  assert_true(lfs_verify_threshold(0) == 0.0);
  assert_true(lfs_verify_threshold(399) == 3.99);
  /* numpy's arange(0, 4, 0.01)[35] is 35 * 0.01 = 0.35000000000000003, above the
   * double 0.35: a grid of decimal values would differ. */
  assert_true(lfs_verify_threshold(35) > 0.35);
  assert_true(lfs_verify_threshold(29) == 0.29);
  assert_true(lfs_verify_threshold(100) == 1.0);
}

static void test_fold_sizes(void **state) {
  (void)state;
  int64_t first, count;
  /* N = 25: 25 % 10 = 5 folds of 3 first, then 5 folds of 2. */
  const int64_t want25_count[10] = {3, 3, 3, 3, 3, 2, 2, 2, 2, 2};
  const int64_t want25_first[10] = {0, 3, 6, 9, 12, 15, 17, 19, 21, 23};
  for (int f = 0; f < 10; f++) {
    lfs_verify_fold(25, f, &first, &count);
    assert_int_equal(count, want25_count[f]);
    assert_int_equal(first, want25_first[f]);
  }
  for (int f = 0; f < 10; f++) {
    lfs_verify_fold(6000, f, &first, &count);
    assert_int_equal(count, 600);
    assert_int_equal(first, 600 * f);
  }
  /* N = 12003: three folds of 1201, seven of 1200, contiguous up to N. */
  int64_t next = 0;
  for (int f = 0; f < 10; f++) {
    lfs_verify_fold(12003, f, &first, &count);
    assert_int_equal(first, next);
    assert_int_equal(count, f < 3 ? 1201 : 1200);
    next = first + count;
  }
  assert_int_equal(next, 12003);
  lfs_verify_fold(10, 9, &first, &count);
  assert_int_equal(first, 9);
  assert_int_equal(count, 1);
}

/* ---- the ten folds ----------------------------------------------------------------- */

/* 100 pairs, each fold 5 genuine in [0.2, 0.494] then 5 impostors in [1.2, 2.0]:
 * every threshold in (0.494, 1.2] is perfect; the lowest on the grid is 0.50.
 * Built from 2-D unit embeddings, so that the distance computation is in the
 * loop: d = 2 - 2 cos(angle), within 1e-7 of the intended value in float. */
static void separable_set(float *e1, float *e2, uint8_t *same) {
  for (int i = 0; i < 100; i++) {
    int genuine = i % 10 < 5;
    double d = genuine ? 0.2 + 0.0735 * (i % 5) : 1.2 + 0.2 * (i % 5);
    double c = 1.0 - d / 2.0;
    e1[2 * i] = 1.0f;
    e1[2 * i + 1] = 0.0f;
    e2[2 * i] = (float)c;
    e2[2 * i + 1] = (float)sqrt(1.0 - c * c);
    same[i] = (uint8_t)genuine;
  }
}

static void test_separable(void **state) {
  (void)state;
  float e1[200], e2[200];
  uint8_t same[100];
  separable_set(e1, e2, same);
  lfs_verify_result r;
  char err[256] = "";
  if (lfs_verify(e1, e2, same, 100, 2, &r, err, sizeof err)) fail_msg("lfs_verify: %s", err);
  assert_int_equal(r.n_pairs, 100);
  assert_int_equal(r.n_genuine, 50);
  assert_int_equal(r.n_impostor, 50);
  for (int f = 0; f < 10; f++) {
    assert_true(r.fold_acc[f] == 1.0);
    assert_int_equal(r.fold_size[f], 10);
    assert_true(r.fold_threshold[f] == lfs_verify_threshold(50));
  }
  assert_true(r.acc_mean == 1.0);
  assert_true(r.acc_std == 0.0);
  assert_close(r.best_threshold_mean, 0.50, 1e-12, "mean threshold");
  assert_true(r.auc == 1.0);
  assert_true(r.eer == 0.0);
  assert_close(r.eer_threshold, 0.494, 1e-6, "EER threshold (largest genuine distance)");
  assert_false(r.tar_available[0]);
  assert_false(r.tar_available[1]);
  assert_true(isnan(r.tar_at_far[0]) && isnan(r.tar_at_far[1]));
}

/* 20 pairs, folds of 2. Folds 1..9: a genuine at 0.10 and an impostor at 3.00.
 * Fold 0: two genuine pairs at 1.00.
 * - Fold 0 tested: the other nine are perfect for every t in (0.10, 3.00]: the
 *   plateau k = 11..300; the lowest, 0.11, rejects both genuine pairs: accuracy 0
 *   (a rule taking the highest, 3.00, would score 1).
 * - Fold f >= 1 tested: fold 0's genuine pairs need t > 1.00 (d < t is strict, so
 *   t = 1.00 does not do), the impostors t <= 3.00: lowest perfect 1.01, accuracy 1.
 * Mean 0.9, std sqrt((0.81 + 9 * 0.01) / 10) = 0.3, mean threshold
 * (0.11 + 9 * 1.01) / 10 = 0.92. */
static void test_tie_rule_and_strict_less(void **state) {
  (void)state;
  pairs p = pairs_new(20);
  for (int i = 0; i < 20; i++) {
    int f = i / 2;
    if (f == 0) {
      p.d[i] = 1.0;
      p.same[i] = 1;
    } else {
      p.d[i] = i % 2 ? 3.0 : 0.10;
      p.same[i] = i % 2 ? 0 : 1;
    }
  }
  lfs_verify_result r;
  verify_ok(&p, &r);
  assert_true(r.fold_acc[0] == 0.0);
  assert_true(r.fold_threshold[0] == lfs_verify_threshold(11));
  for (int f = 1; f < 10; f++) {
    assert_true(r.fold_acc[f] == 1.0);
    assert_true(r.fold_threshold[f] == lfs_verify_threshold(101));
  }
  assert_close(r.acc_mean, 0.9, 1e-12, "accuracy");
  assert_close(r.acc_std, 0.3, 1e-12, "std");
  assert_close(r.best_threshold_mean, 0.92, 1e-12, "mean threshold");
  pairs_free(&p);
}

/* Genuine pairs at one distance g, impostors at 3.0: every fold picks the first
 * grid threshold above g. For g = 0.35 that is t_35 = 0.35000000000000003, for
 * g = 0.29 it is t_30 (t_29 = 0.29 and 0.29 < 0.29 is false), as numpy's d < t
 * decides; an index computed as floor(g / 0.01) + 1 would give 36 and 29. */
static void check_first_above(double g, int want_k) {
  pairs p = pairs_new(40);
  for (int i = 0; i < 40; i++) {
    p.same[i] = (uint8_t)(i % 2);
    p.d[i] = p.same[i] ? g : 3.0;
  }
  lfs_verify_result r;
  verify_ok(&p, &r);
  for (int f = 0; f < 10; f++) {
    if (r.fold_threshold[f] != want_k * 0.01)
      fail_msg("genuine at %.17g: fold %d threshold %.17g, want %d * 0.01", g, f,
               r.fold_threshold[f], want_k);
    assert_true(r.fold_acc[f] == 1.0);
  }
  pairs_free(&p);
}

static void test_threshold_just_above_distance(void **state) {
  (void)state;
  check_first_above(0.35, 35);
  check_first_above(0.29, 30);
  check_first_above(0.0, 1);
}

/* N = 25: genuine pairs at 0.2 and impostors at 2.0 alternate, except pairs 14 and
 * 15, genuine at 2.5. Every training set is best at 0.21 (accepting 2.5 would
 * accept every impostor too). With folds of 3,3,3,3,3,2,2,2,2,2, pair 14 is the
 * last of fold 4 (pairs 12-14) and pair 15 the first of fold 5 (15-16): fold 4
 * scores 2/3, fold 5 1/2, the others 1. */
static void test_uneven_folds(void **state) {
  (void)state;
  pairs p = pairs_new(25);
  for (int i = 0; i < 25; i++) {
    p.same[i] = (uint8_t)(i % 2 == 0 || i == 15);
    p.d[i] = p.same[i] ? 0.2 : 2.0;
  }
  p.d[14] = p.d[15] = 2.5;
  assert_int_equal(p.same[14], 1);
  lfs_verify_result r;
  verify_ok(&p, &r);
  const int64_t sizes[10] = {3, 3, 3, 3, 3, 2, 2, 2, 2, 2};
  for (int f = 0; f < 10; f++) {
    assert_int_equal(r.fold_size[f], sizes[f]);
    assert_true(r.fold_threshold[f] == lfs_verify_threshold(21));
    double want = f == 4 ? 2.0 / 3.0 : f == 5 ? 0.5 : 1.0;
    if (r.fold_acc[f] != want)
      fail_msg("fold %d: accuracy %.17g want %.17g", f, r.fold_acc[f], want);
  }
  assert_close(r.acc_mean, (8.0 + 2.0 / 3.0 + 0.5) / 10.0, 1e-12, "accuracy");
  pairs_free(&p);
}

/* ---- TAR@FAR ----------------------------------------------------------------------- */

/* 1000 impostors at 1.0 + 0.001 i and 100 genuine pairs at 0.9 + 0.002 j.
 * FAR 1e-3: k = 1 impostor may pass; threshold = 2nd smallest impostor, 1.001;
 * genuine below it: j <= 50 (1.000), 51 of 100. FAR 1e-4 needs 10000 impostors. */
static void test_tar_at_far_1000(void **state) {
  (void)state;
  pairs p = pairs_new(1100);
  for (int i = 0; i < 1000; i++) p.d[i] = 1.0 + 0.001 * i;
  for (int j = 0; j < 100; j++) {
    p.d[1000 + j] = 0.9 + 0.002 * j;
    p.same[1000 + j] = 1;
  }
  lfs_verify_result r;
  verify_ok(&p, &r);
  assert_true(r.tar_available[0]);
  assert_true(r.far[0] == 1e-3);
  assert_true(r.tar_threshold[0] == 1.0 + 0.001 * 1);
  assert_true(r.tar_at_far[0] == 0.51);
  assert_true(r.far_achieved[0] == 0.001);
  assert_false(r.tar_available[1]);
  assert_true(isnan(r.tar_at_far[1]));

  /* A tie at the smallest impostor distances: both first impostors at 1.001; the
   * threshold is still 1.001, and d < 1.001 now admits no impostor at all. */
  p.d[0] = p.d[1];
  verify_ok(&p, &r);
  assert_true(r.tar_threshold[0] == 1.0 + 0.001 * 1);
  assert_true(r.tar_at_far[0] == 0.51);
  assert_true(r.far_achieved[0] == 0.0);
  pairs_free(&p);
}

/* 10000 impostors at 1.00005 + 1e-4 i; 100 genuine at 0.99003 + 0.0002 j.
 * FAR 1e-4: k = 1, threshold 1.00015: 0.0002 j < 0.01012 -> j <= 50: TAR 0.51.
 * FAR 1e-3: k = 10, threshold 1.00105: 0.0002 j < 0.01102 -> j <= 55: TAR 0.56. */
static void test_tar_at_far_10000(void **state) {
  (void)state;
  pairs p = pairs_new(10100);
  for (int i = 0; i < 10000; i++) p.d[i] = 1.00005 + 1e-4 * i;
  for (int j = 0; j < 100; j++) {
    p.d[10000 + j] = 0.99003 + 0.0002 * j;
    p.same[10000 + j] = 1;
  }
  lfs_verify_result r;
  verify_ok(&p, &r);
  assert_true(r.tar_available[0] && r.tar_available[1]);
  assert_true(r.far[1] == 1e-4);
  assert_true(r.tar_threshold[1] == 1.00005 + 1e-4 * 1);
  assert_true(r.tar_threshold[0] == 1.00005 + 1e-4 * 10);
  assert_true(r.tar_at_far[1] == 0.51);
  assert_true(r.tar_at_far[0] == 0.56);
  assert_true(r.far_achieved[1] == 1e-4);
  assert_true(r.far_achieved[0] == 1e-3);

  /* 9999 impostors: 1e-4 is no longer available. */
  p.same[0] = 1;
  verify_ok(&p, &r);
  assert_int_equal(r.n_impostor, 9999);
  assert_true(r.tar_available[0]);
  assert_false(r.tar_available[1]);
  pairs_free(&p);
}

/* ---- AUC and EER ------------------------------------------------------------------- */

/* Genuine 0.1, 0.3, 0.5, 0.9, 1.5; impostor 0.2, 0.5, 0.5, 1.0, 1.1 (shuffled).
 * AUC, counting genuine-closer wins (ties 1/2) per genuine pair: 0.1: 5; 0.3: 4;
 * 0.5: 2 + 2 * 1/2 = 3; 0.9: 2; 1.5: 0 -> 14 / 25 = 0.56.
 * EER: (FAR, FRR) after each distinct distance: start (0, 1); 0.1 (0, .8);
 * 0.2 (.2, .8); 0.3 (.2, .6); 0.5 (.6, .4) where FAR - FRR turns from -.4 to +.2:
 * a = .4 / .6 = 2/3, EER = .2 + 2/3 * .4 = 7/15 (= .6 - 2/3 * .2), threshold
 * 0.3 + 2/3 * 0.2 = 13/30. */
static void test_auc_eer_by_hand(void **state) {
  (void)state;
  const double d[10] = {0.5, 1.0, 0.1, 0.5, 1.5, 0.2, 0.3, 1.1, 0.9, 0.5};
  const uint8_t s[10] = {0, 0, 1, 1, 1, 0, 1, 0, 1, 0};
  pairs p = pairs_new(10);
  memcpy(p.d, d, sizeof d);
  memcpy(p.same, s, sizeof s);
  lfs_verify_result r;
  verify_ok(&p, &r);
  assert_int_equal(r.n_genuine, 5);
  assert_true(r.auc == 0.56);
  assert_close(r.eer, 7.0 / 15.0, 1e-15, "EER");
  assert_close(r.eer_threshold, 13.0 / 30.0, 1e-15, "EER threshold");

  /* Swap the labels: the genuine pairs now lose wherever they won: AUC 1 - 0.56. */
  for (int i = 0; i < 10; i++) p.same[i] = (uint8_t)!p.same[i];
  verify_ok(&p, &r);
  assert_close(r.auc, 0.44, 1e-15, "AUC with labels swapped");
  pairs_free(&p);
}

/* All distances equal: every comparison is a tie, AUC 1/2; one step from (0, 1) to
 * (1, 0) crosses FAR = FRR half way: EER 1/2, at half the distance. */
static void test_all_tied(void **state) {
  (void)state;
  pairs p = pairs_new(30);
  for (int i = 0; i < 30; i++) {
    p.d[i] = 1.5;
    p.same[i] = (uint8_t)(i < 12);
  }
  lfs_verify_result r;
  verify_ok(&p, &r);
  assert_true(r.auc == 0.5);
  assert_true(r.eer == 0.5);
  assert_true(r.eer_threshold == 0.75);
  pairs_free(&p);
}

/* ---- embeddings -------------------------------------------------------------------- */

static void test_embed(void **state) {
  (void)state;
  /* Row 0: (3, 0) + (0, 4) = (3, 4) -> (0.6, 0.8). Row 1: opposite vectors sum to 0
   * and stay 0 (sklearn's normalize). Row 2: (2, 0) + (2, 0) -> (1, 0). */
  float plain[6] = {3, 0, 1, -1, 2, 0}, flipped[6] = {0, 4, -1, 1, 2, 0}, out[6];
  char err[256] = "";
  if (lfs_verify_embed(out, plain, flipped, 3, 2, err, sizeof err)) fail_msg("embed: %s", err);
  const float want[6] = {0.6f, 0.8f, 0, 0, 1, 0};
  for (int i = 0; i < 6; i++) assert_true(out[i] == want[i]);
  /* A zero row is a valid embedding for the distance: ||0 - e||^2 = 1. */
  const float other[6] = {0, 1, 0.6f, 0.8f, 1, 0};
  double dist[3];
  if (lfs_verify_distances(dist, out, other, 3, 2, err, sizeof err)) fail_msg("distances: %s", err);
  assert_close(dist[0], 0.4, 1e-7, "distance (0.6, 0.8) - (0, 1)");
  assert_close(dist[1], 1.0, 1e-7, "distance from a zero row");
  assert_true(dist[2] == 0.0);
  /* In place. */
  if (lfs_verify_embed(plain, plain, flipped, 3, 2, err, sizeof err)) fail_msg("embed: %s", err);
  assert_memory_equal(plain, want, sizeof want);
}

/* ---- errors ------------------------------------------------------------------------ */

static void expect_error(int rc, const char *err, const char *needle) {
  assert_int_equal(rc, -1);
  if (!strstr(err, needle)) fail_msg("error '%s' does not mention '%s'", err, needle);
  printf("expected error: %s\n", err);
}

static void test_errors(void **state) {
  (void)state;
  lfs_verify_result r;
  char err[256];
  pairs p = pairs_new(12);
  for (int i = 0; i < 12; i++) {
    p.d[i] = i % 2 ? 2.0 : 0.5;
    p.same[i] = (uint8_t)(i % 2 == 0);
  }
  err[0] = 0;
  expect_error(lfs_verify_from_distances(p.d, p.same, 9, &r, err, sizeof err), err, "at least 10");
  memset(p.same, 1, 12);
  expect_error(lfs_verify_from_distances(p.d, p.same, 12, &r, err, sizeof err), err, "genuine");
  memset(p.same, 0, 12);
  expect_error(lfs_verify_from_distances(p.d, p.same, 12, &r, err, sizeof err), err, "impostor");
  p.same[0] = 1;
  p.same[4] = 2;
  expect_error(lfs_verify_from_distances(p.d, p.same, 12, &r, err, sizeof err), err,
               "issame[4] = 2");
  p.same[4] = 0;
  p.d[7] = NAN;
  expect_error(lfs_verify_from_distances(p.d, p.same, 12, &r, err, sizeof err), err, "pair 7");
  pairs_free(&p);

  /* Embeddings: NaN, a raw (unnormalised) row. */
  float e1[200], e2[200];
  uint8_t same[100];
  separable_set(e1, e2, same);
  e2[2 * 3 + 1] = NAN;
  expect_error(lfs_verify(e1, e2, same, 100, 2, &r, err, sizeof err), err, "emb2 row 3");
  separable_set(e1, e2, same);
  e1[2 * 5] = 20.0f;
  expect_error(lfs_verify(e1, e2, same, 100, 2, &r, err, sizeof err), err,
               "emb1 row 5 has norm 20");

  /* The same set interleaved ([200, 2], pair i = rows 2i, 2i+1): rows named in emb. */
  float il[400];
  separable_set(e1, e2, same);
  for (int i = 0; i < 100; i++) {
    memcpy(il + 4 * i, e1 + 2 * i, 2 * sizeof(float));
    memcpy(il + 4 * i + 2, e2 + 2 * i, 2 * sizeof(float));
  }
  lfs_verify_result ri;
  if (lfs_verify_interleaved(il, same, 100, 2, &ri, err, sizeof err))
    fail_msg("interleaved: %s", err);
  assert_true(ri.acc_mean == 1.0 && ri.auc == 1.0);
  il[4 * 3 + 2] = NAN;
  expect_error(lfs_verify_interleaved(il, same, 100, 2, &r, err, sizeof err), err, "emb row 7 ");

  /* Inf in a flipped embedding: named, and the output is left untouched. */
  float plain[4] = {1, 0, 0, 1}, flipped[4] = {1, 0, INFINITY, 1}, out[4] = {7, 7, 7, 7};
  expect_error(lfs_verify_embed(out, plain, flipped, 2, 2, err, sizeof err), err,
               "image 1 (flipped)");
  for (int i = 0; i < 4; i++) assert_true(out[i] == 7.0f);
}

/* ---- formatting -------------------------------------------------------------------- */

static lfs_verify_result sample_result(void) {
  lfs_verify_result r;
  memset(&r, 0, sizeof r);
  r.n_pairs = 6000;
  r.n_genuine = 3000;
  r.n_impostor = 3000;
  r.acc_mean = 0.99116666666666664;
  r.acc_std = 0.0034;
  r.best_threshold_mean = 1.4263;
  for (int f = 0; f < 10; f++) {
    r.fold_size[f] = 600;
    r.fold_acc[f] = f ? 0.99 : 1.0;
    r.fold_threshold[f] = 1.42;
  }
  r.far[0] = 1e-3;
  r.far[1] = 1e-4;
  r.tar_available[0] = 1;
  r.tar_at_far[0] = 0.971;
  r.tar_threshold[0] = 1.25;
  r.far_achieved[0] = 0.001;
  r.tar_at_far[1] = r.tar_threshold[1] = r.far_achieved[1] = NAN;
  r.auc = 0.998712;
  r.eer = 0.0123;
  r.eer_threshold = 1.5;
  return r;
}

static void test_format_line(void **state) {
  (void)state;
  lfs_verify_result r = sample_result();
  char buf[LFS_VERIFY_FORMAT_MAX];
  assert_int_equal(lfs_verify_format_line(buf, sizeof buf, "lfw", &r), 0);
  assert_string_equal(buf, "lfw: accuracy 99.12 \xc2\xb1 0.34 %, threshold 1.43, "
                           "TAR@FAR=1e-3 97.10 %, TAR@FAR=1e-4 n/a, AUC 0.99871, "
                           "EER 1.23 %, 6000 pairs");
  /* Too small: -1, and the buffer still holds a terminated string. */
  char small[20];
  memset(small, 'x', sizeof small);
  assert_int_equal(lfs_verify_format_line(small, sizeof small, "lfw", &r), -1);
  assert_true(memchr(small, '\0', sizeof small) != NULL);
}

static void test_format_json(void **state) {
  (void)state;
  lfs_verify_result r = sample_result();
  char buf[LFS_VERIFY_FORMAT_MAX];
  assert_int_equal(lfs_verify_format_json(buf, sizeof buf, "a\"b\\c\n", &r), 0);
  const char *want =
      "{\"name\": \"a\\\"b\\\\c\\u000a\", \"pairs\": 6000, \"genuine\": 3000, \"impostor\": 3000, "
      "\"accuracy\": 0.9911666666666666, \"accuracy_std\": 0.0034, \"threshold\": 1.4263, "
      "\"folds\": [{\"size\": 600, \"accuracy\": 1, \"threshold\": 1.42}, "
      "{\"size\": 600, \"accuracy\": 0.99, \"threshold\": 1.42}, "
      "{\"size\": 600, \"accuracy\": 0.99, \"threshold\": 1.42}, "
      "{\"size\": 600, \"accuracy\": 0.99, \"threshold\": 1.42}, "
      "{\"size\": 600, \"accuracy\": 0.99, \"threshold\": 1.42}, "
      "{\"size\": 600, \"accuracy\": 0.99, \"threshold\": 1.42}, "
      "{\"size\": 600, \"accuracy\": 0.99, \"threshold\": 1.42}, "
      "{\"size\": 600, \"accuracy\": 0.99, \"threshold\": 1.42}, "
      "{\"size\": 600, \"accuracy\": 0.99, \"threshold\": 1.42}, "
      "{\"size\": 600, \"accuracy\": 0.99, \"threshold\": 1.42}], "
      "\"tar_at_far\": [{\"far\": 0.001, \"tar\": 0.971, \"threshold\": 1.25, "
      "\"far_achieved\": 0.001}, {\"far\": 0.0001, \"tar\": null, \"threshold\": null, "
      "\"far_achieved\": null}], \"auc\": 0.998712, \"eer\": 0.0123, \"eer_threshold\": 1.5}";
  assert_string_equal(buf, want);
  char small[64];
  assert_int_equal(lfs_verify_format_json(small, sizeof small, "lfw", &r), -1);
  assert_true(strlen(small) < sizeof small);
}

/* ---- the numpy reference ----------------------------------------------------------- */

static uint8_t *read_issame(tu_fixture *fx, size_t *n) {
  double *v = tu_fixture_read_d(fx, "issame", n);
  uint8_t *s = malloc(*n);
  assert_non_null(s);
  for (size_t i = 0; i < *n; i++) s[i] = (uint8_t)v[i];
  free(v);
  return s;
}

/* Compares a result with a fixture's expected values; returns the number of mismatches. */
static int compare_with_fixture(const char *file, tu_fixture *fx, const lfs_verify_result *r) {
  int bad = 0;
  size_t n;
  double *acc = tu_fixture_read_d(fx, "fold_acc", &n);
  double *thr = tu_fixture_read_d(fx, "fold_threshold", &n);
  double *size = tu_fixture_read_d(fx, "fold_size", &n);
  assert_int_equal(n, LFS_VERIFY_FOLDS);
  for (int f = 0; f < LFS_VERIFY_FOLDS; f++) {
    /* Ratios of the same integers and the same grid values: bit-identical. */
    if (r->fold_acc[f] != acc[f] || r->fold_threshold[f] != thr[f] ||
        (double)r->fold_size[f] != size[f]) {
      printf("FAIL %s fold %d: accuracy %.17g threshold %.17g size %lld, want %.17g %.17g %g\n",
             file, f, r->fold_acc[f], r->fold_threshold[f], (long long)r->fold_size[f], acc[f],
             thr[f], size[f]);
      bad++;
    }
  }
  const struct {
    const char *name;
    double got;
  } scalars[] = {{"acc_mean", r->acc_mean}, {"acc_std", r->acc_std},
                 {"best_threshold_mean", r->best_threshold_mean}, {"auc", r->auc},
                 {"eer", r->eer}, {"eer_threshold", r->eer_threshold},
                 {"n_genuine", (double)r->n_genuine}, {"n_impostor", (double)r->n_impostor}};
  for (size_t i = 0; i < sizeof scalars / sizeof scalars[0]; i++) {
    double want = tu_fixture_attr(fx, scalars[i].name);
    int ok = fabs(scalars[i].got - want) <= CLOSE_TOL;
    printf("%s%s %s: %.17g (numpy %.17g)\n", ok ? "" : "FAIL ", file, scalars[i].name,
           scalars[i].got, want);
    bad += !ok;
  }
  double *tar = tu_fixture_read_d(fx, "tar", &n);
  double *avail = tu_fixture_read_d(fx, "tar_available", &n);
  double *tthr = tu_fixture_read_d(fx, "tar_threshold", &n);
  double *fa = tu_fixture_read_d(fx, "far_achieved", &n);
  assert_int_equal(n, LFS_VERIFY_NFAR);
  for (int i = 0; i < LFS_VERIFY_NFAR; i++) {
    int ok = r->tar_available[i] == (avail[i] != 0.0);
    if (ok && r->tar_available[i])
      ok = r->tar_at_far[i] == tar[i] && r->tar_threshold[i] == tthr[i] &&
           r->far_achieved[i] == fa[i];
    else if (ok)
      ok = isnan(r->tar_at_far[i]) && isnan(tar[i]);
    printf("%s%s TAR@FAR=%g: available %d, %.17g at %.17g (FAR %.17g); numpy %g, %.17g at %.17g\n",
           ok ? "" : "FAIL ", file, r->far[i], r->tar_available[i], r->tar_at_far[i],
           r->tar_threshold[i], r->far_achieved[i], avail[i], tar[i], tthr[i]);
    bad += !ok;
  }
  free(acc);
  free(thr);
  free(size);
  free(tar);
  free(avail);
  free(tthr);
  free(fa);
  return bad;
}

static void check_distance_fixture(const char *file) {
  tu_fixture *fx = tu_fixture_open(file);
  size_t n, ns;
  double *dist = tu_fixture_read_d(fx, "dist", &n);
  uint8_t *same = read_issame(fx, &ns);
  assert_int_equal(n, ns);
  lfs_verify_result r;
  char err[256] = "";
  if (lfs_verify_from_distances(dist, same, (int64_t)n, &r, err, sizeof err))
    fail_msg("%s: %s", file, err);
  char line[LFS_VERIFY_FORMAT_MAX];
  assert_int_equal(lfs_verify_format_line(line, sizeof line, file, &r), 0);
  printf("%s\n", line);
  int bad = compare_with_fixture(file, fx, &r);
  free(dist);
  free(same);
  tu_fixture_close(fx);
  if (bad) fail_msg("%s: %d values differ from the numpy reference", file, bad);
}

static void test_fixture_6000(void **state) {
  (void)state;
  check_distance_fixture("tests/ref/fixtures/eval_6000.h5");
}

static void test_fixture_ties(void **state) {
  (void)state;
  check_distance_fixture("tests/ref/fixtures/eval_ties.h5");
}

/* The whole path from raw embeddings: flip-sum and normalise, distances of the
 * interleaved pairs, the protocol. */
static void test_fixture_600_embeddings(void **state) {
  (void)state;
  const char *file = "tests/ref/fixtures/eval_600.h5";
  tu_fixture *fx = tu_fixture_open(file);
  int dims[4];
  assert_int_equal(tu_fixture_dims(fx, "plain", dims), 2);
  int64_t rows = dims[0];
  int d = dims[1];
  size_t n, ns;
  float *plain = tu_fixture_read_f(fx, "plain", NULL);
  float *flipped = tu_fixture_read_f(fx, "flipped", NULL);
  float *emb_want = tu_fixture_read_f(fx, "emb", NULL);
  double *dist_want = tu_fixture_read_d(fx, "dist", &n);
  uint8_t *same = read_issame(fx, &ns);
  assert_int_equal(rows, 2 * (int64_t)n);
  assert_int_equal(n, ns);

  char err[256] = "";
  float *emb = malloc((size_t)rows * (size_t)d * sizeof *emb);
  assert_non_null(emb);
  if (lfs_verify_embed(emb, plain, flipped, rows, d, err, sizeof err))
    fail_msg("%s: %s", file, err);
  /* Both round the same float64 quotient to float; only the order of the norm's
   * sum differs, which can move a value by one float ulp at most. */
  double worst = 0.0;
  for (size_t i = 0; i < (size_t)rows * (size_t)d; i++) {
    double e = fabs((double)emb[i] - (double)emb_want[i]);
    if (e > worst) worst = e;
  }
  printf("eval_600 flip-sum embeddings: max abs diff %.3g\n", worst);
  assert_true(worst <= 1.2e-7);

  /* Distances of the reference embeddings: double sums in a different order. */
  double *dist = malloc(n * sizeof *dist);
  float *e1 = malloc(n * (size_t)d * sizeof *e1), *e2 = malloc(n * (size_t)d * sizeof *e2);
  assert_true(dist && e1 && e2);
  for (size_t i = 0; i < n; i++) {
    memcpy(e1 + i * (size_t)d, emb_want + 2 * i * (size_t)d, (size_t)d * sizeof *e1);
    memcpy(e2 + i * (size_t)d, emb_want + (2 * i + 1) * (size_t)d, (size_t)d * sizeof *e2);
  }
  if (lfs_verify_distances(dist, e1, e2, (int64_t)n, d, err, sizeof err))
    fail_msg("%s: %s", file, err);
  for (size_t i = 0; i < n; i++) assert_close(dist[i], dist_want[i], 1e-14, "distance");

  lfs_verify_result r;
  if (lfs_verify_interleaved(emb, same, (int64_t)n, d, &r, err, sizeof err))
    fail_msg("%s: %s", file, err);
  char line[LFS_VERIFY_FORMAT_MAX];
  assert_int_equal(lfs_verify_format_line(line, sizeof line, "eval_600", &r), 0);
  printf("%s\n", line);
  int bad = compare_with_fixture(file, fx, &r);
  free(plain);
  free(flipped);
  free(emb_want);
  free(dist_want);
  free(same);
  free(emb);
  free(dist);
  free(e1);
  free(e2);
  tu_fixture_close(fx);
  if (bad) fail_msg("%s: %d values differ from the numpy reference", file, bad);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_threshold_grid),
      cmocka_unit_test(test_fold_sizes),
      cmocka_unit_test(test_separable),
      cmocka_unit_test(test_tie_rule_and_strict_less),
      cmocka_unit_test(test_threshold_just_above_distance),
      cmocka_unit_test(test_uneven_folds),
      cmocka_unit_test(test_tar_at_far_1000),
      cmocka_unit_test(test_tar_at_far_10000),
      cmocka_unit_test(test_auc_eer_by_hand),
      cmocka_unit_test(test_all_tied),
      cmocka_unit_test(test_embed),
      cmocka_unit_test(test_errors),
      cmocka_unit_test(test_format_line),
      cmocka_unit_test(test_format_json),
      cmocka_unit_test(test_fixture_6000),
      cmocka_unit_test(test_fixture_ties),
      cmocka_unit_test(test_fixture_600_embeddings),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
