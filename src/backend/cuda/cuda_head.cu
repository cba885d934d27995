/* cuda_head.cu: the cosine head's loss and gradients (src/loss/cosine_head.c,
 * DESIGN 1.1-1.5) on the GPU, for any number of classes: the class cosines as
 * one cuBLAS GEMM of the normalised embeddings with the class weights, then
 * kernels over each row that apply the loss's target transform (margins with
 * SphereFace's annealing, AM-LFS), MV-Softmax's negatives and the max-shifted
 * softmax with Search-Softmax's modulation or AM-LFS's tau, all in double as on
 * the CPU, without storing the logits (they are recomputed in each of the row's
 * three passes, each a kernel over the row's classes cut into parts, one block
 * per part); the backward is two GEMMs plus the normalisation terms. The
 * formulas are the CPU's, step for step, so the two agree to rounding; sums run
 * in another order. x, w, dx, dw are device memory; labels are host memory. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_internal.h"

/* ---- the per-cosine transforms (src/loss/margin.c, mv.c, amlfs.c, modulation.c) ---- */

static __device__ double clamp_unit(double c) { return c > 1.0 ? 1.0 : c < -1.0 ? -1.0 : c; }

static __device__ int interval_of(double v, double lo, double width, int n) {
  const double pos = floor((v - lo) / width * n);
  if (!(pos >= 0.0)) return 0;
  return pos >= n ? n - 1 : (int)pos;
}

static __device__ double psi_general(double m1, double m2, double m3, double c, double *dpsi) {
  if (m1 == 1.0 && m2 == 0.0) {
    *dpsi = 1.0;
    return c - m3;
  }
  const double theta = acos(c);
  const double phi = m1 * theta + m2;
  const double k = floor(phi / 3.14159265358979323846);
  const double sign = fmod(k, 2.0) == 0.0 ? 1.0 : -1.0;
  double sin_theta = sqrt((1.0 - c) * (1.0 + c));
  if (sin_theta < LFS_HEAD_SIN_FLOOR) sin_theta = LFS_HEAD_SIN_FLOOR;
  *dpsi = sign * m1 * sin(phi) / sin_theta;
  return sign * cos(phi) - 2.0 * k - m3;
}

/* The label's target t(c) and dt/dc; lambda is SphereFace's (0 otherwise). */
static __device__ double target(const lfs_head_cfg &cfg, double lambda, double c, double *dt) {
  if (cfg.kind == LFS_LOSS_AMLFS) {
    const int j = interval_of(c, -1.0, 2.0, cfg.amlfs_n);
    *dt = cfg.amlfs_alpha[j];
    return cfg.amlfs_alpha[j] * c + cfg.amlfs_beta[j];
  }
  double dpsi;
  double t = psi_general(cfg.m1, cfg.m2, cfg.m3, c, &dpsi);
  if (cfg.kind == LFS_LOSS_SPHEREFACE) {
    t = (lambda * c + t) / (1.0 + lambda);
    dpsi = (lambda + dpsi) / (1.0 + lambda);
  }
  *dt = cfg.margin_grad == LFS_MARGIN_GRAD_STRAIGHT ? 1.0 : dpsi;
  return t;
}

static __device__ double mv_negative(const lfs_head_cfg &cfg, double c, double t, double *slope) {
  if (cfg.kind != LFS_LOSS_MV_SOFTMAX || !(c > t)) {
    *slope = 1.0;
    return c;
  }
  if (cfg.mv_mode == LFS_MV_FIXED) {
    *slope = 1.0;
    return c + cfg.mv_t;
  }
  *slope = cfg.mv_t;
  return cfg.mv_t * c + cfg.mv_t - 1.0;
}

static __device__ int log_tau(double alpha, double beta, double py, double q, double neg_log_py,
                              double *out) {
  if (py >= 0.5) {
    const double at_one = alpha + beta;
    if (at_one > 0.0) {
      const double rel = -alpha * q / at_one;
      if (!(rel > -1.0)) return 0;
      *out = log(at_one) + log1p(rel);
      return 1;
    }
    const double tau = at_one - alpha * q;
    if (!(tau > 0.0)) return 0;
    *out = log(tau);
    return 1;
  }
  if (beta == 0.0) {
    if (!(alpha > 0.0)) return 0;
    *out = log(alpha) - neg_log_py;
    return 1;
  }
  const double tau = alpha * py + beta;
  if (!(tau > 0.0)) return 0;
  *out = log(tau);
  return 1;
}

/* The row's loss and g = dL/dz scale from its softmax (py, q = 1 - py, -log py). */
static __device__ double probability_term(const lfs_head_cfg &cfg, double py, double q,
                                          double neg_log_py, double *g) {
  if (cfg.kind == LFS_LOSS_AMLFS && cfg.amlfs_tau) {
    const int j = interval_of(py, 0.0, 1.0, cfg.amlfs_n);
    double lt;
    if (!log_tau(cfg.tau_alpha[j], cfg.tau_beta[j], py, q, neg_log_py, &lt)) {
      *g = 0.0;
      return -log(LFS_AMLFS_TAU_FLOOR);
    }
    *g = cfg.tau_alpha[j] * exp(-neg_log_py - lt);
    return -lt;
  }
  const double abs_a = fabs(cfg.kind == LFS_LOSS_SEARCH_SOFTMAX ? cfg.a : 0.0);
  *g = (1.0 + abs_a) / (1.0 + abs_a * q);
  return neg_log_py + log1p(abs_a * q);
}

/* ---- block reductions ---- */

static __device__ double block_max(double v, double *part) {
  part[threadIdx.x] = v;
  __syncthreads();
  for (int s = LFS_CUDA_THREADS / 2; s > 0; s >>= 1) {
    if ((int)threadIdx.x < s && part[threadIdx.x + s] > part[threadIdx.x])
      part[threadIdx.x] = part[threadIdx.x + s];
    __syncthreads();
  }
  const double top = part[0];
  __syncthreads();
  return top;
}

/* The (cosine, class) pair with the largest cosine, the lowest class on ties:
 * the class, and its cosine in *best_c. */
static __device__ int block_argmax(double c, int k, double *part, int *idx, double *best_c) {
  part[threadIdx.x] = c;
  idx[threadIdx.x] = k;
  __syncthreads();
  for (int s = LFS_CUDA_THREADS / 2; s > 0; s >>= 1) {
    if ((int)threadIdx.x < s) {
      const double c2 = part[threadIdx.x + s];
      const int k2 = idx[threadIdx.x + s];
      if (c2 > part[threadIdx.x] || (c2 == part[threadIdx.x] && k2 < idx[threadIdx.x]))
        part[threadIdx.x] = c2, idx[threadIdx.x] = k2;
    }
    __syncthreads();
  }
  const int best = idx[0];
  *best_c = part[0];
  __syncthreads();
  return best;
}

/* ---- the forward pieces ---- */

/* ---- one warp per row (a class's 512 weights are a warp's 16 loads each) ---- */

/* The sum of v over the warp, in a fixed order, on every lane. */
static __device__ __forceinline__ double warp_sum(double v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

/* Warp w of the grid takes rows w, w + warps, ...: the loop's bounds, per warp. */
#define WARP_ROWS(r, rows)                                                                   \
  for (size_t r = (blockIdx.x * (size_t)blockDim.x + threadIdx.x) / 32; r < (size_t)(rows);   \
       r += (size_t)gridDim.x * blockDim.x / 32)

static unsigned warp_row_blocks(size_t rows) { return lfs_cuda_blocks(rows * 32); }

/* inv[r] = 1 / max(|m_r|, eps) for rows of `cols` values. */
static __global__ void inv_norms_kernel(double *inv, const float *m, size_t rows, int cols) {
  const int lane = threadIdx.x % 32;
  WARP_ROWS(r, rows) {
    const float *row = m + r * cols;
    double sq = 0.0;
    for (int j = lane; j < cols; j += 32) sq += (double)row[j] * row[j];
    const double norm = sqrt(warp_sum(sq));
    if (lane == 0) inv[r] = 1.0 / (norm > LFS_HEAD_NORM_EPS ? norm : LFS_HEAD_NORM_EPS);
  }
}

static __global__ void normalise_kernel(float *xhat, const float *x, const double *inv, int D,
                                        size_t count) {
  LFS_CUDA_GRID_STRIDE(i, count) xhat[i] = (float)(x[i] * inv[i / D]);
}

/* label_c[i] = x_i . w_{y_i} in double, times both inverse norms; one block per row. */
static __global__ void label_cos_kernel(double *label_c, const float *x, const float *w,
                                        const int *labels, const double *inv_x,
                                        const double *inv_w, int D) {
  __shared__ double part[LFS_CUDA_THREADS];
  const int i = blockIdx.x, y = labels[i];
  const float *xi = x + (size_t)i * D, *wy = w + (size_t)y * D;
  double dot = 0.0;
  for (int j = threadIdx.x; j < D; j += blockDim.x) dot += (double)xi[j] * wy[j];
  const double total = lfs_cuda_block_sum(dot, part);
  if (threadIdx.x == 0) label_c[i] = total * inv_x[i] * inv_w[y];
}

typedef struct {
  double *loss, *py, *label_g;
  int *hit;
} row_out;

/* Each row's classes are cut into P parts, one block each (row i, part p:
 * classes [p K / P, (p + 1) K / P)), so that the device fills even for a small
 * batch; the parts' results [B][P] are combined in part order, so a row's
 * result does not depend on timing. */
typedef struct {
  double *top, *best_c, *sum, *proj;
  int *best_k;
} row_parts;

/* The label's cosine, target, its derivative and logit for row i. */
typedef struct {
  int y;
  double cy, t, dt, zy;
} row_target;

static __device__ row_target row_target_of(const lfs_head_cfg &cfg, double lambda,
                                           const double *label_c, const int *labels, int i) {
  row_target r;
  r.y = labels[i];
  r.cy = clamp_unit(label_c[i]);
  r.t = target(cfg, lambda, r.cy, &r.dt);
  r.zy = cfg.s * r.t;
  return r;
}

static __device__ int part_begin(int p, int P, int K) { return (int)((long long)p * K / P); }

/* The row's largest logit: the largest of its parts'. */
static __device__ double row_top(const row_parts &parts, int i, int P) {
  double top = parts.top[(size_t)i * P];
  for (int q = 1; q < P; q++) top = fmax(top, parts.top[(size_t)i * P + q]);
  return top;
}

/* Pass 1 over a part: its largest logit, and the class of its largest plain
 * cosine (the label's own pair counts in every part). */
static __global__ void row_top_kernel(row_parts parts, const float *dots, const double *inv_w,
                                      const double *label_c, const int *labels, int K, int P,
                                      lfs_head_cfg cfg, double lambda) {
  __shared__ double part[LFS_CUDA_THREADS];
  __shared__ int idx[LFS_CUDA_THREADS];
  const int i = blockIdx.x, p = blockIdx.y;
  const row_target r = row_target_of(cfg, lambda, label_c, labels, i);
  const float *drow = dots + (size_t)i * K;
  double top = r.zy, best_c = r.cy;
  int best = r.y;
  for (int k = part_begin(p, P, K) + threadIdx.x; k < part_begin(p + 1, P, K); k += blockDim.x) {
    if (k == r.y) continue;
    const double c = clamp_unit(drow[k] * inv_w[k]);
    double slope;
    const double z = cfg.s * mv_negative(cfg, c, r.t, &slope);
    if (z > top) top = z;
    if (c > best_c || (c == best_c && k < best)) best_c = c, best = k;
  }
  top = block_max(top, part);
  best = block_argmax(best_c, best, part, idx, &best_c);
  if (threadIdx.x == 0) {
    const size_t at = (size_t)i * P + p;
    parts.top[at] = top, parts.best_c[at] = best_c, parts.best_k[at] = best;
  }
}

/* Pass 2 over a part: its share of the other classes' exp(z - top). */
static __global__ void row_sum_kernel(row_parts parts, const float *dots, const double *inv_w,
                                      const double *label_c, const int *labels, int K, int P,
                                      lfs_head_cfg cfg, double lambda) {
  __shared__ double part[LFS_CUDA_THREADS];
  const int i = blockIdx.x, p = blockIdx.y;
  const row_target r = row_target_of(cfg, lambda, label_c, labels, i);
  const float *drow = dots + (size_t)i * K;
  const double top = row_top(parts, i, P);
  double others = 0.0;
  for (int k = part_begin(p, P, K) + threadIdx.x; k < part_begin(p + 1, P, K); k += blockDim.x) {
    if (k == r.y) continue;
    double slope;
    others += exp(cfg.s * mv_negative(cfg, clamp_unit(drow[k] * inv_w[k]), r.t, &slope) - top);
  }
  others = lfs_cuda_block_sum(others, part);
  if (threadIdx.x == 0) parts.sum[(size_t)i * P + p] = others;
}

/* Pass 3 over a part: the row's softmax and loss from the parts' sums, its
 * part of G' = dL/dc / |w_k| (label entry 0) and of the projection sum; part 0
 * also writes the row's loss, p_y, hit and the label's gradient. */
static __global__ void row_grad_kernel(row_out out, row_parts parts, float *gscaled,
                                       const float *dots, const double *inv_w,
                                       const double *label_c, const int *labels, int B, int K,
                                       int P, lfs_head_cfg cfg, double lambda) {
  __shared__ double part[LFS_CUDA_THREADS];
  const int i = blockIdx.x, p = blockIdx.y;
  const row_target r = row_target_of(cfg, lambda, label_c, labels, i);
  const float *drow = dots + (size_t)i * K;
  const double s = cfg.s, inv_b = 1.0 / B, top = row_top(parts, i, P);
  double others = 0.0;
  for (int q = 0; q < P; q++) others += parts.sum[(size_t)i * P + q];
  const double ey = exp(r.zy - top), total = others + ey;
  const double neg_log_py = r.zy == top ? log1p(others) : (top - r.zy) + log(total);
  const double py = ey / total, q = others / total;
  double g;
  const double loss = probability_term(cfg, py, q, neg_log_py, &g);
  double proj = 0.0;
  float *grow = gscaled + (size_t)i * K;
  for (int k = part_begin(p, P, K) + threadIdx.x; k < part_begin(p + 1, P, K); k += blockDim.x) {
    const double raw = drow[k] * inv_w[k];
    if (k == r.y || raw > 1.0 || raw < -1.0) {
      grow[k] = 0.0f;
      continue;
    }
    double slope; /* raw is within [-1, 1] here: its logit is the one of pass 1 */
    const double pk = exp(s * mv_negative(cfg, raw, r.t, &slope) - top) / total;
    const double gk = g * pk * s * slope * inv_b;
    proj += gk * raw;
    grow[k] = (float)(gk * inv_w[k]);
  }
  proj = lfs_cuda_block_sum(proj, part);
  if (threadIdx.x != 0) return;
  parts.proj[(size_t)i * P + p] = proj;
  if (p != 0) return;
  double best_c = parts.best_c[(size_t)i * P];
  int best = parts.best_k[(size_t)i * P];
  for (int u = 1; u < P; u++) {
    const double c = parts.best_c[(size_t)i * P + u];
    const int k = parts.best_k[(size_t)i * P + u];
    if (c > best_c || (c == best_c && k < best)) best_c = c, best = k;
  }
  const double raw_y = label_c[i];
  out.loss[i] = loss;
  out.py[i] = py;
  out.hit[i] = best == r.y;
  out.label_g[i] = raw_y > 1.0 || raw_y < -1.0 ? 0.0 : -g * q * s * r.dt * inv_b;
}

/* Parts per row: about 8 blocks per SM in all, each with 1,024 classes or more. */
static int parts_per_row(const lfs_cuda_ctx *c, int B, int K) {
  int P = (8 * c->multiprocessors + B - 1) / B;
  if (P > K / 1024) P = K / 1024;
  return P < 1 ? 1 : P;
}

/* ---- the backward pieces ---- */

/* dx_i += (tmp_i - proj_i x̂_i + g_y (ŵ_y - c_y x̂_i)) / |x_i|, proj_i the sum of
 * the row's P parts; one block per row. */
static __global__ void backward_x_kernel(float *dx, const float *tmp, const float *x, const float *w,
                                         const int *labels, const double *inv_x,
                                         const double *inv_w, const double *proj_parts, int P,
                                         const double *label_c, const double *label_g, int D) {
  const int i = blockIdx.x, y = labels[i];
  const double inv = inv_x[i], invw = inv_w[y], gy = label_g[i];
  const int floored = inv >= 1.0 / LFS_HEAD_NORM_EPS;
  double proj = 0.0;
  for (int q = 0; q < P; q++) proj += proj_parts[(size_t)i * P + q];
  const double pr = floored ? 0.0 : proj, cy = floored ? 0.0 : label_c[i];
  const float *xi = x + (size_t)i * D, *wy = w + (size_t)y * D;
  for (int j = threadIdx.x; j < D; j += blockDim.x) {
    const double xh = xi[j] * inv;
    const double label_part = gy * (wy[j] * invw - cy * xh);
    dx[(size_t)i * D + j] += (float)((tmp[(size_t)i * D + j] - pr * xh + label_part) * inv);
  }
}

/* col[k] = sum over rows (in order) of G'_ik c_ik. */
static __global__ void class_proj_kernel(double *col, const float *gscaled, const float *dots,
                                         const double *inv_w, int B, int K) {
  LFS_CUDA_GRID_STRIDE(k, (size_t)K) {
    double acc = 0.0;
    for (int i = 0; i < B; i++) acc += (double)gscaled[(size_t)i * K + k] * dots[(size_t)i * K + k] * inv_w[k];
    col[k] = acc;
  }
}

/* dw_k -= col_k / |w_k| w_k for each class whose norm is above the floor. */
static __global__ void class_radial_kernel(float *dw, const float *w, const double *col,
                                           const double *inv_w, int D, size_t K) {
  const int lane = threadIdx.x % 32;
  WARP_ROWS(k, K) {
    if (inv_w[k] >= 1.0 / LFS_HEAD_NORM_EPS) continue;
    const float f = (float)(col[k] * inv_w[k]);
    for (int j = lane; j < D; j += 32) dw[k * D + j] -= f * w[k * D + j];
  }
}

/* The labels' entries of dw: one block per class among the labels, its rows
 * (order[starts[b]] ... order[starts[b + 1] - 1], rising) added in row order,
 * as on the CPU. */
static __global__ void label_w_kernel(float *dw, const float *x, const float *w, const int *labels,
                                      const int *order, const int *starts, const double *inv_x,
                                      const double *inv_w, const double *label_c,
                                      const double *label_g, int D) {
  const int y = labels[order[starts[blockIdx.x]]];
  const double inv = inv_w[y];
  const float *wy = w + (size_t)y * D;
  for (int j = threadIdx.x; j < D; j += blockDim.x) {
    float acc = dw[(size_t)y * D + j];
    for (int r = starts[blockIdx.x]; r < starts[blockIdx.x + 1]; r++) {
      const int i = order[r];
      const double cy = inv >= 1.0 / LFS_HEAD_NORM_EPS ? 0.0 : label_c[i];
      acc += (float)(label_g[i] * (x[(size_t)i * D + j] * inv_x[i] - cy * wy[j] * inv) * inv);
    }
    dw[(size_t)y * D + j] = acc;
  }
}

typedef struct {
  int label, row;
} labelled_row;

static int by_label_then_row(const void *a, const void *b) {
  const labelled_row *p = (const labelled_row *)a, *q = (const labelled_row *)b;
  if (p->label != q->label) return p->label < q->label ? -1 : 1;
  return (p->row > q->row) - (p->row < q->row);
}

/* The rows grouped by label for label_w_kernel: ints[0, B) the labels,
 * [B, 2B) the rows ordered by (label, row), then the groups' starts in that
 * order (groups + 1 of them); returns the number of groups. */
static int group_rows(int *ints, const int32_t *labels, int B) {
  int *order = ints + B, *starts = ints + 2 * B;
  labelled_row *rows = (labelled_row *)lfs_malloc(sizeof *rows * (size_t)B);
  for (int i = 0; i < B; i++) ints[i] = labels[i], rows[i].label = labels[i], rows[i].row = i;
  qsort(rows, (size_t)B, sizeof *rows, by_label_then_row);
  int groups = 0;
  for (int r = 0; r < B; r++) {
    order[r] = rows[r].row;
    if (r == 0 || rows[r].label != rows[r - 1].label) starts[groups++] = r;
  }
  starts[groups] = B;
  free(rows);
  return groups;
}

/* ---- scratch and the entry point ---- */

typedef struct {
  double *inv_x, *inv_w, *label_c, *col;
  double *loss, *py, *label_g;
  int *hit, *labels;
  size_t results_bytes; /* loss, py, label_c [B] and hit [B], adjacent from loss on */
  row_parts parts;
  float *xhat, *dots, *gscaled, *tmp;
} head_scratch;

/* count items of `size` bytes at offset *off of base (NULL: sizing only);
 * *off then moves past them to the next 256-byte boundary, so that every
 * array, the GEMMs' included, starts there. */
static void *carve(char *base, size_t *off, size_t count, size_t size) {
  void *p = base ? base + *off : NULL;
  *off += (count * size + 255) / 256 * 256;
  return p;
}

/* Carves the scratch of one call (P parts per row) out of one device
 * allocation; with base NULL, only its size, in *bytes. */
static head_scratch carve_scratch(char *base, int B, int D, int K, int P, size_t *bytes) {
  const size_t BP = (size_t)B * P;
  size_t off = 0;
  head_scratch s;
  s.inv_x = (double *)carve(base, &off, B, sizeof(double));
  /* what the host reads back, in one copy */
  s.results_bytes = 3 * sizeof(double) * (size_t)B + sizeof(int) * (size_t)B;
  s.loss = (double *)carve(base, &off, s.results_bytes, 1);
  s.py = s.loss ? s.loss + B : NULL;
  s.label_c = s.loss ? s.loss + 2 * (size_t)B : NULL;
  s.hit = s.loss ? (int *)(s.loss + 3 * (size_t)B) : NULL;
  s.label_g = (double *)carve(base, &off, B, sizeof(double));
  s.inv_w = (double *)carve(base, &off, K, sizeof(double));
  s.col = (double *)carve(base, &off, K, sizeof(double));
  s.parts.top = (double *)carve(base, &off, BP, sizeof(double));
  s.parts.best_c = (double *)carve(base, &off, BP, sizeof(double));
  s.parts.sum = (double *)carve(base, &off, BP, sizeof(double));
  s.parts.proj = (double *)carve(base, &off, BP, sizeof(double));
  s.labels = (int *)carve(base, &off, 3 * (size_t)B + 1, sizeof(int)); /* group_rows' */
  s.parts.best_k = (int *)carve(base, &off, BP, sizeof(int));
  s.xhat = (float *)carve(base, &off, (size_t)B * D, sizeof(float));
  s.tmp = (float *)carve(base, &off, (size_t)B * D, sizeof(float));
  s.dots = (float *)carve(base, &off, (size_t)B * K, sizeof(float));
  s.gscaled = (float *)carve(base, &off, (size_t)B * K, sizeof(float));
  *bytes = off;
  return s;
}

static head_scratch scratch_for(lfs_cuda_ctx *c, int B, int D, int K, int P) {
  size_t bytes = 0;
  carve_scratch(NULL, B, D, K, P, &bytes);
  if (bytes > c->head_bytes) {
    if (c->head_scratch) LFS_CUDA_CHECK(cudaFree(c->head_scratch));
    c->head_scratch = NULL;
    char what[128];
    snprintf(what, sizeof what, "the margin head's scratch (batch %d, %d dimensions, %d classes)", B,
             D, K);
    lfs_cuda_malloc(c, &c->head_scratch, bytes, what);
    c->head_bytes = bytes;
  }
  return carve_scratch((char *)c->head_scratch, B, D, K, P, &bytes);
}

/* The page-locked staging buffer, at least `bytes` (the previous call's copies
 * are done: it ended reading its results back). */
static void *host_staging(lfs_cuda_ctx *c, size_t bytes) {
  if (bytes <= c->head_host_bytes) return c->head_host;
  if (c->head_host) LFS_CUDA_CHECK(cudaFreeHost(c->head_host));
  c->head_host = NULL;
  c->head_host_bytes = 0;
  const cudaError_t rc = cudaMallocHost(&c->head_host, bytes);
  if (rc != cudaSuccess)
    lfs_fatal("CUDA: cannot allocate %.1f MiB of page-locked host memory for the margin head on "
              "GPU %d (%s)", bytes / 1048576.0, c->device, cudaGetErrorString(rc));
  c->head_host_bytes = bytes;
  return c->head_host;
}

double lfs_cuda_head_loss(lfs_backend *be, const lfs_head_cfg *cfg, int B, int D, int K, float *dx,
                          float *dw, lfs_head_stats *stats, const float *x, const float *w,
                          const int32_t *labels) {
  lfs_head_check_call(cfg, B, D, K, labels);
  if (stats) memset(stats, 0, sizeof *stats);
  if (B == 0) return 0.0;
  lfs_cuda_ctx *c = lfs_cuda_ctx_of(be);
  const int P = parts_per_row(c, B, K);
  head_scratch s = scratch_for(c, B, D, K, P);
  const size_t label_bytes = sizeof(int) * (3 * (size_t)B + 1);
  char *host = (char *)host_staging(c, label_bytes > s.results_bytes ? label_bytes : s.results_bytes);
  const int groups = group_rows((int *)host, labels, B);
  /* from page-locked memory the copy queues behind the backbone's forward
   * instead of waiting for it, and the head's launches queue on */
  LFS_CUDA_CHECK(cudaMemcpyAsync(s.labels, host, label_bytes, cudaMemcpyHostToDevice,
                                 cudaStreamLegacy));
  inv_norms_kernel<<<warp_row_blocks(B), LFS_CUDA_THREADS>>>(s.inv_x, x, (size_t)B, D);
  LFS_CUDA_LAUNCHED();
  inv_norms_kernel<<<warp_row_blocks(K), LFS_CUDA_THREADS>>>(s.inv_w, w, (size_t)K, D);
  LFS_CUDA_LAUNCHED();
  normalise_kernel<<<lfs_cuda_blocks((size_t)B * D), LFS_CUDA_THREADS>>>(s.xhat, x, s.inv_x, D,
                                                                         (size_t)B * D);
  LFS_CUDA_LAUNCHED();
  lfs_cuda_linear_forward(be, B, D, K, s.dots, s.xhat, w, NULL);
  label_cos_kernel<<<B, LFS_CUDA_THREADS>>>(s.label_c, x, w, s.labels, s.inv_x, s.inv_w, D);
  LFS_CUDA_LAUNCHED();
  const row_out out = {s.loss, s.py, s.label_g, s.hit};
  const dim3 grid((unsigned)B, (unsigned)P);
  const double lambda = lfs_head_lambda(cfg);
  row_top_kernel<<<grid, LFS_CUDA_THREADS>>>(s.parts, s.dots, s.inv_w, s.label_c, s.labels, K, P,
                                             *cfg, lambda);
  LFS_CUDA_LAUNCHED();
  row_sum_kernel<<<grid, LFS_CUDA_THREADS>>>(s.parts, s.dots, s.inv_w, s.label_c, s.labels, K, P,
                                             *cfg, lambda);
  LFS_CUDA_LAUNCHED();
  row_grad_kernel<<<grid, LFS_CUDA_THREADS>>>(out, s.parts, s.gscaled, s.dots, s.inv_w, s.label_c,
                                              s.labels, B, K, P, *cfg, lambda);
  LFS_CUDA_LAUNCHED();
  if (dx) {
    LFS_CUDA_CHECK(cudaMemset(s.tmp, 0, sizeof(float) * B * D));
    lfs_cuda_linear_backward(be, B, D, K, s.tmp, NULL, NULL, s.gscaled, s.xhat, w);
    backward_x_kernel<<<B, LFS_CUDA_THREADS>>>(dx, s.tmp, x, w, s.labels, s.inv_x, s.inv_w,
                                               s.parts.proj, P, s.label_c, s.label_g, D);
    LFS_CUDA_LAUNCHED();
  }
  if (dw) {
    class_proj_kernel<<<lfs_cuda_blocks((size_t)K), LFS_CUDA_THREADS>>>(s.col, s.gscaled, s.dots,
                                                                        s.inv_w, B, K);
    LFS_CUDA_LAUNCHED();
    lfs_cuda_linear_backward(be, B, D, K, NULL, dw, NULL, s.gscaled, s.xhat, w);
    class_radial_kernel<<<warp_row_blocks(K), LFS_CUDA_THREADS>>>(dw, w, s.col, s.inv_w, D,
                                                                  (size_t)K);
    LFS_CUDA_LAUNCHED();
    label_w_kernel<<<groups, LFS_CUDA_THREADS>>>(dw, x, w, s.labels, s.labels + B,
                                                 s.labels + 2 * B, s.inv_x, s.inv_w, s.label_c,
                                                 s.label_g, D);
    LFS_CUDA_LAUNCHED();
  }
  /* the per-row results, summed on the host in row order as on the CPU */
  LFS_CUDA_CHECK(cudaMemcpyAsync(host, s.loss, s.results_bytes, cudaMemcpyDeviceToHost,
                                 cudaStreamLegacy));
  LFS_CUDA_CHECK(cudaStreamSynchronize(cudaStreamLegacy));
  const double *loss = (const double *)host, *py = loss + B, *label_c = loss + 2 * (size_t)B;
  const int *hit = (const int *)(loss + 3 * (size_t)B);
  double total = 0.0;
  for (int i = 0; i < B; i++) total += loss[i];
  if (stats)
    for (int i = 0; i < B; i++) {
      const double cy = label_c[i];
      stats->mean_p_y += py[i] / B;
      stats->mean_cos_y += (cy > 1.0 ? 1.0 : cy < -1.0 ? -1.0 : cy) / B;
      stats->accuracy += (double)hit[i] / B;
    }
  return total / B;
}
