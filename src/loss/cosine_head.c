/* cosine_head.c: the cosine head (DESIGN §1.1) and the loss entry point.
 *
 * Layout: x [B, D], w [K, D], labels [B], all host memory, row-major.
 *
 * Forward: one SGEMM of the normalised x with the raw w gives x̂_i.w_k; the
 * column scale 1/|w_k| is applied while reading, so no normalised copy of the
 * (possibly huge) class matrix is made. The label's cosine is recomputed in
 * double from the inputs: the margin's theta = arccos(c) near 0 needs c to more
 * digits than a float dot product has. Each row is then a loop over K in double
 * (target transform, negatives, log-space softmax, probability term) that a GPU
 * kernel can mirror.
 *
 * Backward: with G_ik = dL/dc_ik and dc/dx_i = (ŵ_k - c x̂_i)/|x_i|,
 *   dx_i = (sum_k G_ik ŵ_k - (sum_k G_ik c_ik) x̂_i) / |x_i|,
 *   dw_k = (sum_i G_ik x̂_i - (sum_i G_ik c_ik) ŵ_k) / |w_k|,
 * two SGEMMs with G'_ik = G_ik/|w_k| plus per-row and per-column projections.
 * The label entries are left out of G and added in double (the same
 * cancellation near theta = 0 as above). A norm <= LFS_HEAD_NORM_EPS is replaced
 * by it and the projection is dropped (the map is then x / eps). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "lfs/backend.h"
#include "lfs/log.h"
#include "loss/loss_internal.h"

/* Below this many cosines a parallel region costs more than it saves. */
#define HEAD_PAR_MIN 32768

static const char *const kind_names[LFS_LOSS_COUNT] = {
    "softmax", "sphereface", "cosface", "arcface", "combined", "mv_softmax", "search_softmax",
    "amlfs"};

/* ---- configuration ------------------------------------------------------------------ */

const char *lfs_loss_kind_name(lfs_loss_kind kind) {
  return kind >= 0 && kind < LFS_LOSS_COUNT ? kind_names[kind] : "?";
}

int lfs_loss_kind_parse(const char *name, lfs_loss_kind *kind) {
  for (int k = 0; k < LFS_LOSS_COUNT; k++)
    if (!strcmp(name, kind_names[k])) {
      *kind = (lfs_loss_kind)k;
      return 0;
    }
  return -1;
}

void lfs_head_cfg_init(lfs_head_cfg *cfg, lfs_loss_kind kind) {
  memset(cfg, 0, sizeof *cfg);
  cfg->kind = kind;
  cfg->s = 32.0;
  cfg->m1 = 1.0;
  cfg->margin_grad = LFS_MARGIN_GRAD_EXACT;
  cfg->lambda_base = 1000.0;
  cfg->lambda_gamma = 1e-4;
  cfg->lambda_power = 2.0;
  cfg->lambda_min = 5.0;
  cfg->mv_mode = LFS_MV_ADAPTIVE;
  cfg->mv_t = 1.2;
  cfg->amlfs_n = 6;
  for (int j = 0; j < LFS_AMLFS_MAX_INTERVALS; j++) cfg->amlfs_alpha[j] = cfg->tau_alpha[j] = 1.0;
  switch (kind) {
  case LFS_LOSS_SPHEREFACE: cfg->m1 = 4.0; break;
  case LFS_LOSS_COSFACE: cfg->m3 = 0.35; break;
  case LFS_LOSS_ARCFACE: cfg->m2 = 0.5; break;
  case LFS_LOSS_COMBINED: cfg->m2 = 0.3, cfg->m3 = 0.2; break;
  case LFS_LOSS_MV_SOFTMAX: cfg->m3 = 0.35; break;
  default: break;
  }
}

/* Which margins a kind may set away from the neutral 1, 0, 0 (bit 0: m1, 1: m2, 2: m3). */
static unsigned margins_used(lfs_loss_kind kind) {
  switch (kind) {
  case LFS_LOSS_SPHEREFACE: return 1u;
  case LFS_LOSS_COSFACE: return 4u;
  case LFS_LOSS_ARCFACE: return 2u;
  case LFS_LOSS_COMBINED:
  case LFS_LOSS_MV_SOFTMAX:
  case LFS_LOSS_SEARCH_SOFTMAX: return 7u;
  default: return 0u; /* softmax; amlfs has its own transform */
  }
}

static int check_margins(const lfs_head_cfg *c, char *err, size_t len) {
  const double value[3] = {c->m1, c->m2, c->m3}, neutral[3] = {1.0, 0.0, 0.0};
  const unsigned used = margins_used(c->kind);
  for (int i = 0; i < 3; i++) {
    if (!isfinite(value[i])) {
      snprintf(err, len, "head.m%d = %g is not a finite number", i + 1, value[i]);
      return -1;
    }
    if (!(used & (1u << i)) && value[i] != neutral[i]) {
      snprintf(err, len,
               "head.m%d = %g is not used by loss %s (it must stay %g); use loss = combined "
               "for several margins",
               i + 1, value[i], lfs_loss_kind_name(c->kind), neutral[i]);
      return -1;
    }
  }
  if (!(c->m1 > 0.0)) {
    snprintf(err, len, "head.m1 = %g must be > 0", c->m1);
    return -1;
  }
  return 0;
}

static int check_amlfs(const lfs_head_cfg *c, char *err, size_t len) {
  if (c->amlfs_n < 1 || c->amlfs_n > LFS_AMLFS_MAX_INTERVALS) {
    snprintf(err, len, "AM-LFS intervals = %d must be in 1..%d", c->amlfs_n,
             LFS_AMLFS_MAX_INTERVALS);
    return -1;
  }
  for (int j = 0; j < c->amlfs_n; j++) {
    const double v[4] = {c->amlfs_alpha[j], c->amlfs_beta[j], c->tau_alpha[j], c->tau_beta[j]};
    const char *names[4] = {"alpha", "beta", "tau alpha", "tau beta"};
    for (int i = 0; i < (c->amlfs_tau ? 4 : 2); i++)
      if (!isfinite(v[i])) {
        snprintf(err, len, "AM-LFS %s[%d] = %g is not a finite number", names[i], j, v[i]);
        return -1;
      }
  }
  return 0;
}

int lfs_head_cfg_check(const lfs_head_cfg *c, char *err, size_t len) {
  if ((int)c->kind < 0 || c->kind >= LFS_LOSS_COUNT) {
    snprintf(err, len, "head.loss = %d is not a known loss", (int)c->kind);
    return -1;
  }
  if (!(c->s > 0.0) || !isfinite(c->s)) {
    snprintf(err, len, "head.scale = %g must be a finite number > 0", c->s);
    return -1;
  }
  if (c->margin_grad != LFS_MARGIN_GRAD_EXACT && c->margin_grad != LFS_MARGIN_GRAD_STRAIGHT) {
    snprintf(err, len, "head.margin_grad = %d must be exact or straight", (int)c->margin_grad);
    return -1;
  }
  if (check_margins(c, err, len)) return -1;
  const double lam[4] = {c->lambda_base, c->lambda_gamma, c->lambda_power, c->lambda_min};
  const char *lam_names[4] = {"lambda_base", "lambda_gamma", "lambda_power", "lambda_min"};
  for (int i = 0; i < 4; i++)
    if (!(lam[i] >= 0.0) || !isfinite(lam[i])) {
      snprintf(err, len, "head.%s = %g must be a finite number >= 0", lam_names[i], lam[i]);
      return -1;
    }
  if (c->iteration < 0) {
    snprintf(err, len, "head iteration = %lld must be >= 0", (long long)c->iteration);
    return -1;
  }
  if (c->mv_mode != LFS_MV_ADAPTIVE && c->mv_mode != LFS_MV_FIXED) {
    snprintf(err, len, "head.mv_mode = %d must be adaptive or fixed", (int)c->mv_mode);
    return -1;
  }
  if (!isfinite(c->mv_t) || (c->mv_mode == LFS_MV_ADAPTIVE && !(c->mv_t > 0.0))) {
    snprintf(err, len, "head.mv_t = %g must be a finite number (> 0 when adaptive)", c->mv_t);
    return -1;
  }
  if (!(c->a <= 0.0) || !isfinite(c->a)) {
    snprintf(err, len, "Search-Softmax a = %g must be a finite number <= 0", c->a);
    return -1;
  }
  return c->kind == LFS_LOSS_AMLFS ? check_amlfs(c, err, len) : 0;
}

double lfs_head_target(const lfs_head_cfg *cfg, double c, double *dt_dc) {
  return cfg->kind == LFS_LOSS_AMLFS ? lfs_amlfs_target(cfg, c, dt_dc)
                                     : lfs_margin_target(cfg, c, dt_dc);
}

/* ---- the loss ----------------------------------------------------------------------- */

/* Everything the row pass and the backward share. */
typedef struct {
  const lfs_head_cfg *cfg;
  int B, D, K;
  const float *x, *w;
  const int32_t *labels;
  double *inv_xn, *inv_wn; /* [B], [K]: 1 / max(|row|, eps) */
  float *xhat;             /* [B, D] */
  float *dots;             /* [B, K]: x̂_i . w_k (not yet divided by |w_k|) */
  float *gscaled;          /* [B, K]: G'_ik = G_ik / |w_k|, label entries 0 */
  double *row_proj;        /* [B]: sum_{k != y} G_ik c_ik */
  double *label_c;         /* [B]: x̂_i . ŵ_y in double, unclamped */
  double *label_g;         /* [B]: dL/dc_iy (of the batch mean) */
  double *row_loss, *row_py;
  int *row_hit;
} head_work;

static double inv_norm(const float *v, int n) {
  double sq = 0.0;
  for (int j = 0; j < n; j++) sq += (double)v[j] * v[j];
  const double norm = sqrt(sq);
  return 1.0 / (norm > LFS_HEAD_NORM_EPS ? norm : LFS_HEAD_NORM_EPS);
}

static int norm_floored(double inv) { return inv >= 1.0 / LFS_HEAD_NORM_EPS; }

static double clamp_unit(double c) { return c > 1.0 ? 1.0 : c < -1.0 ? -1.0 : c; }

static double probability_term(const lfs_head_cfg *cfg, const lfs_row_prob *p, double *g) {
  if (cfg->kind == LFS_LOSS_AMLFS && cfg->amlfs_tau) return lfs_amlfs_tau_term(cfg, p, g);
  return lfs_modulation_term(cfg->kind == LFS_LOSS_SEARCH_SOFTMAX ? cfg->a : 0.0, p, g);
}

/* Row i: its loss, its row of G', its projection sum and the label's gradient.
 * z [K] is scratch. */
static void head_row(head_work *hw, int i, double *z) {
  const lfs_head_cfg *cfg = hw->cfg;
  const int K = hw->K, y = hw->labels[i];
  const float *dots = hw->dots + (size_t)i * hw->K;
  const double s = cfg->s, inv_b = 1.0 / hw->B;
  const double cy = clamp_unit(hw->label_c[i]);
  double dt;
  const double t = lfs_head_target(cfg, cy, &dt);
  int best = y;
  double best_c = cy;
  for (int k = 0; k < K; k++) {
    if (k == y) continue;
    const double c = clamp_unit(dots[k] * hw->inv_wn[k]);
    double slope;
    z[k] = s * lfs_mv_negative(cfg, c, t, &slope);
    if (c > best_c || (c == best_c && k < best)) best = k, best_c = c;
  }
  z[y] = s * t;
  lfs_row_prob prob;
  lfs_row_softmax(K, z, y, &prob);
  double g;
  hw->row_loss[i] = probability_term(cfg, &prob, &g);
  hw->row_py[i] = prob.py;
  hw->row_hit[i] = best == y;

  float *grow = hw->gscaled + (size_t)i * K;
  double proj = 0.0;
  for (int k = 0; k < K; k++) {
    const double raw = dots[k] * hw->inv_wn[k];
    if (k == y || raw > 1.0 || raw < -1.0) { /* label: added in double; clamped: no gradient */
      grow[k] = 0.0f;
      continue;
    }
    double slope;
    lfs_mv_negative(cfg, raw, t, &slope);
    const double gk = g * z[k] * s * slope * inv_b;
    proj += gk * raw;
    grow[k] = (float)(gk * hw->inv_wn[k]);
  }
  hw->row_proj[i] = proj;
  const double raw_y = hw->label_c[i];
  hw->label_g[i] = raw_y > 1.0 || raw_y < -1.0 ? 0.0 : -g * prob.q * s * dt * inv_b;
}

static void row_pass(head_work *hw) {
  int threads = 1;
#ifdef _OPENMP
  if ((size_t)hw->B * hw->K > HEAD_PAR_MIN) threads = omp_get_max_threads();
#endif
  double *scratch = lfs_malloc((size_t)threads * hw->K * sizeof *scratch);
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int i = 0; i < hw->B; i++) {
    int tid = 0;
#ifdef _OPENMP
    tid = omp_get_thread_num();
#endif
    head_row(hw, i, scratch + (size_t)tid * hw->K);
  }
  free(scratch);
}

/* Normalised x, its inverse norms, the class inverse norms, the SGEMM of dots and the
 * labels' cosines in double. */
static void forward_cosines(head_work *hw) {
  const int B = hw->B, D = hw->D, K = hw->K;
  for (int i = 0; i < B; i++) {
    const float *xi = hw->x + (size_t)i * D;
    hw->inv_xn[i] = inv_norm(xi, D);
    for (int j = 0; j < D; j++) hw->xhat[(size_t)i * D + j] = (float)(xi[j] * hw->inv_xn[i]);
  }
#pragma omp parallel for schedule(static) if ((size_t)K * D > HEAD_PAR_MIN)
  for (int k = 0; k < K; k++) hw->inv_wn[k] = inv_norm(hw->w + (size_t)k * D, D);
  lfs_backend *cpu = lfs_backend_cpu();
  cpu->ops->linear_forward(cpu, B, D, K, hw->dots, hw->xhat, hw->w, NULL);
  for (int i = 0; i < B; i++) {
    const float *xi = hw->x + (size_t)i * D, *wy = hw->w + (size_t)hw->labels[i] * D;
    double dot = 0.0;
    for (int j = 0; j < D; j++) dot += (double)xi[j] * wy[j];
    hw->label_c[i] = dot * hw->inv_xn[i] * hw->inv_wn[hw->labels[i]];
  }
}

static void backward_x(head_work *hw, float *dx) {
  const int B = hw->B, D = hw->D, K = hw->K;
  float *tmp = lfs_calloc((size_t)B * D, sizeof *tmp); /* sum_k G_ik ŵ_k */
  lfs_backend *cpu = lfs_backend_cpu();
  cpu->ops->linear_backward(cpu, B, D, K, tmp, NULL, NULL, hw->gscaled, hw->xhat, hw->w);
  for (int i = 0; i < B; i++) {
    const int y = hw->labels[i];
    const double inv = hw->inv_xn[i], invw = hw->inv_wn[y], gy = hw->label_g[i];
    const int floored = norm_floored(inv);
    const double proj = floored ? 0.0 : hw->row_proj[i], cy = floored ? 0.0 : hw->label_c[i];
    const float *xi = hw->x + (size_t)i * D, *wy = hw->w + (size_t)y * D;
    float *out = dx + (size_t)i * D;
    for (int j = 0; j < D; j++) {
      const double xh = xi[j] * inv;
      const double label_part = gy * (wy[j] * invw - cy * xh); /* in double: see above */
      out[j] += (float)((tmp[(size_t)i * D + j] - proj * xh + label_part) * inv);
    }
  }
  free(tmp);
}

static void backward_w(head_work *hw, float *dw) {
  const int B = hw->B, D = hw->D, K = hw->K;
  double *col = lfs_calloc((size_t)K, sizeof *col); /* sum_i G'_ik c_ik */
  for (int i = 0; i < B; i++) {
    const float *g = hw->gscaled + (size_t)i * K, *dots = hw->dots + (size_t)i * K;
    for (int k = 0; k < K; k++) col[k] += (double)g[k] * dots[k] * hw->inv_wn[k];
  }
  lfs_backend *cpu = lfs_backend_cpu();
  cpu->ops->linear_backward(cpu, B, D, K, NULL, dw, NULL, hw->gscaled, hw->xhat, hw->w);
#pragma omp parallel for schedule(static) if ((size_t)K * D > HEAD_PAR_MIN)
  for (int k = 0; k < K; k++) {
    if (norm_floored(hw->inv_wn[k])) continue;
    const float f = (float)(col[k] * hw->inv_wn[k]);
    const float *wk = hw->w + (size_t)k * D;
    float *out = dw + (size_t)k * D;
    for (int j = 0; j < D; j++) out[j] -= f * wk[j];
  }
  free(col);
  /* The labels' entries, in row order (rows may share a class). */
  for (int i = 0; i < B; i++) {
    const int y = hw->labels[i];
    const double inv = hw->inv_wn[y], invx = hw->inv_xn[i], gy = hw->label_g[i];
    const double cy = norm_floored(inv) ? 0.0 : hw->label_c[i];
    const float *xi = hw->x + (size_t)i * D, *wy = hw->w + (size_t)y * D;
    float *out = dw + (size_t)y * D;
    for (int j = 0; j < D; j++) out[j] += (float)(gy * (xi[j] * invx - cy * wy[j] * inv) * inv);
  }
}

void lfs_head_check_call(const lfs_head_cfg *cfg, int B, int D, int K, const int32_t *labels) {
  char err[256];
  if (lfs_head_cfg_check(cfg, err, sizeof err)) lfs_fatal("lfs_head_loss: %s", err);
  if (B < 0 || D < 1 || K < 1) lfs_fatal("lfs_head_loss: bad shape B=%d D=%d K=%d", B, D, K);
  for (int i = 0; i < B; i++)
    if (labels[i] < 0 || labels[i] >= K)
      lfs_fatal("lfs_head_loss: label %d of row %d is outside [0, %d)", (int)labels[i], i, K);
}

double lfs_head_loss(const lfs_head_cfg *cfg, int B, int D, int K, float *dx, float *dw,
                     lfs_head_stats *stats, const float *x, const float *w,
                     const int32_t *labels) {
  lfs_head_check_call(cfg, B, D, K, labels);
  if (stats) memset(stats, 0, sizeof *stats);
  if (B == 0) return 0.0;
  head_work hw = {.cfg = cfg, .B = B, .D = D, .K = K, .x = x, .w = w, .labels = labels};
  hw.inv_xn = lfs_malloc((size_t)B * sizeof *hw.inv_xn);
  hw.inv_wn = lfs_malloc((size_t)K * sizeof *hw.inv_wn);
  hw.xhat = lfs_alloc_floats((size_t)B * D);
  hw.dots = lfs_alloc_floats((size_t)B * K);
  hw.gscaled = lfs_alloc_floats((size_t)B * K);
  double *rows = lfs_malloc((size_t)5 * B * sizeof *rows);
  hw.row_proj = rows, hw.label_c = rows + B, hw.label_g = rows + 2 * (size_t)B;
  hw.row_loss = rows + 3 * (size_t)B, hw.row_py = rows + 4 * (size_t)B;
  hw.row_hit = lfs_malloc((size_t)B * sizeof *hw.row_hit);

  forward_cosines(&hw);
  row_pass(&hw);
  double total = 0.0;
  for (int i = 0; i < B; i++) total += hw.row_loss[i];
  if (dx) backward_x(&hw, dx);
  if (dw) backward_w(&hw, dw);
  if (stats) {
    for (int i = 0; i < B; i++) {
      stats->mean_p_y += hw.row_py[i] / B;
      stats->mean_cos_y += clamp_unit(hw.label_c[i]) / B;
      stats->accuracy += (double)hw.row_hit[i] / B;
    }
  }
  free(hw.inv_xn);
  free(hw.inv_wn);
  free(hw.xhat);
  free(hw.dots);
  free(hw.gscaled);
  free(rows);
  free(hw.row_hit);
  return total / B;
}
