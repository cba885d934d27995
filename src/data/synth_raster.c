/* synth_raster.c: the generic anti-aliased rasteriser of the synthetic faces
 * (synth_raster.h): the coverage of a pixel by a primitive (an ellipse, possibly
 * bent into an arc or tapered into an egg; a rectangle; a half-plane), and
 * painting a primitive, optionally clipped by another, over a planar canvas.
 *
 * Coverage falls off linearly over about one pixel (shape.soft) of the shape's
 * approximate signed distance: that is the anti-aliasing, and it keeps shapes
 * smaller than a pixel visible as partial tints at 16x16. Painting touches only
 * the pixels a shape can reach (shape_box), and pixels surely inside a large
 * ellipse are filled without evaluating it (span_of), which keeps a 112x112
 * face at about 0.3 ms. */
#include <math.h>
#include <stddef.h>

#include "data/synth_raster.h"
#include "lfs/synth.h"

typedef struct {
  int x0, x1, y0, y1;
} box;

/* The pixels a shape can touch: its local extent (see shape), rotated into the
 * image and widened by the soft edge. */
static box shape_box(const shape *sh, int size) {
  if (sh->kind == SHAPE_HALFPLANE) return (box){0, size, 0, size};
  float ax = sh->a, y_lo = -sh->b, y_hi = sh->b;
  if (sh->kind == SHAPE_ELLIPSE) {
    if (sh->taper < 0) ax /= maxf(0.2f, 1 + sh->taper);
    y_lo += sh->b * (sh->bend < 0 ? sh->bend : 0);
    y_hi += sh->b * (sh->bend > 0 ? sh->bend : 0);
  }
  const float ay = 0.5f * (y_hi - y_lo), my = 0.5f * (y_hi + y_lo);
  const float c = fabsf(sh->c), s = fabsf(sh->s), pad = sh->soft + 1;
  /* local (0, my) sits at image offset (-my * s, my * c) before taking absolute values */
  const float mx = sh->cx - my * sh->s, mcy = sh->cy + my * sh->c;
  const float hx = ax * c + ay * s + pad, hy = ax * s + ay * c + pad;
  box bx = {(int)floorf(mx - hx), (int)ceilf(mx + hx), (int)floorf(mcy - hy), (int)ceilf(mcy + hy)};
  bx.x0 = bx.x0 < 0 ? 0 : bx.x0, bx.y0 = bx.y0 < 0 ? 0 : bx.y0;
  bx.x1 = bx.x1 > size ? size : bx.x1, bx.y1 = bx.y1 > size ? size : bx.y1;
  return bx;
}

/* Coverage of pixels (x0 + i, y), i < n, by an ellipse. With q the squared
 * normalised radius, the signed distance to the edge is about (q - 1) / |grad q|
 * (first order, exact on the edge of a circle), which needs no square root of q. */
static void cover_ellipse(float *restrict cov, const shape *sh, int y, int x0, int n) {
  const float ia = 1 / sh->a, ib = 1 / sh->b, k = sh->bend, taper = sh->taper;
  const float half_inv_soft = 0.5f / sh->soft, py = (float)y + 0.5f - sh->cy;
  const float c = sh->c, s = sh->s;
  for (int i = 0; i < n; i++) {
    const float px = (float)(x0 + i) + 0.5f - sh->cx;
    const float lx = px * c + py * s, ly = py * c - px * s;
    float nx = lx * ia;
    const float ny = ly * ib - k * nx * nx;
    const float m = 1 + taper * maxf(ny, 0.0f);
    nx *= m;
    const float q = nx * nx + ny * ny;
    const float gx = m * ia * nx * (1 - 2 * k * ny), gy = ny * ib;
    const float sd = (q - 1) * rsqrt(gx * gx + gy * gy + 1e-20f);
    cov[i] = clampf(0.5f - sd * half_inv_soft, 0.0f, 1.0f);
  }
}

static void cover_rect(float *restrict cov, const shape *sh, int y, int x0, int n) {
  const float inv_soft = 1 / sh->soft, py = (float)y + 0.5f - sh->cy;
  for (int i = 0; i < n; i++) {
    const float px = (float)(x0 + i) + 0.5f - sh->cx;
    const float lx = px * sh->c + py * sh->s, ly = py * sh->c - px * sh->s;
    const float sd = maxf(fabsf(lx) - sh->a, fabsf(ly) - sh->b);
    cov[i] = clampf(0.5f - sd * inv_soft, 0.0f, 1.0f);
  }
}

static void cover_halfplane(float *restrict cov, const shape *sh, int y, int x0, int n) {
  const float inv_soft = 1 / sh->soft, py = (float)y + 0.5f - sh->cy;
  for (int i = 0; i < n; i++) {
    const float px = (float)(x0 + i) + 0.5f - sh->cx;
    const float lx = px * sh->c + py * sh->s, ly = py * sh->c - px * sh->s;
    cov[i] = clampf(0.5f - (ly - sh->bend * lx * lx) * inv_soft, 0.0f, 1.0f);
  }
}

static void cover(float *cov, const shape *sh, int y, int x0, int n) {
  switch (sh->kind) {
  case SHAPE_ELLIPSE: cover_ellipse(cov, sh, y, x0, n); break;
  case SHAPE_RECT: cover_rect(cov, sh, y, x0, n); break;
  case SHAPE_HALFPLANE: cover_halfplane(cov, sh, y, x0, n); break;
  }
}

/* Pixels [lo, hi) of a row may be touched by a shape; [in_lo, in_hi) are
 * certainly fully covered (empty when equal). */
typedef struct {
  int lo, hi, in_lo, in_hi;
} row_span;

/* Where the rows cross a rotated ellipse with semi-axes ea, eb: at row offset
 * py from the centre, the offsets x with qa x^2 + 2 py kb x + py^2 kc - 1 <= 0. */
typedef struct {
  float qa, inv_qa, kb, kc;
} ellipse_rows;

static ellipse_rows ellipse_rows_make(const shape *sh, float ea, float eb) {
  const float ia2 = 1 / (ea * ea), ib2 = 1 / (eb * eb), c = sh->c, s = sh->s;
  const float qa = c * c * ia2 + s * s * ib2;
  return (ellipse_rows){qa, 1 / qa, c * s * (ia2 - ib2), s * s * ia2 + c * c * ib2};
}

/* 0 if row offset py misses the ellipse. */
static int ellipse_rows_cut(const ellipse_rows *e, float py, float *from, float *to) {
  const float qb = py * e->kb, disc = qb * qb - e->qa * (py * py * e->kc - 1);
  if (disc < 0) return 0;
  const float root = sqrtf(disc);
  *from = (-qb - root) * e->inv_qa, *to = (-qb + root) * e->inv_qa;
  return 1;
}

/* Large shapes are mostly interior: the crossings of the shape's ellipse
 * widened (and narrowed) by the soft edge skip the pixels that are surely
 * outside and fill those surely inside without evaluating them. Bent ellipses
 * and outward tapers fall back to the bounding box; an inward taper only
 * shrinks the shape, so the outer bound still holds for it. */
typedef struct {
  int outer, inner; /* whether each bound applies */
  ellipse_rows out, in;
} span_plan;

static span_plan span_plan_make(const shape *sh, const box *bx) {
  span_plan pl = {0, 0, {0, 0, 0, 0}, {0, 0, 0, 0}};
  if (sh->kind != SHAPE_ELLIPSE || sh->bend != 0 || sh->taper < 0 || bx->x1 - bx->x0 < 12)
    return pl; /* small shapes: solving costs more than it saves */
  const float pad = sh->soft + 1;
  pl.outer = 1, pl.out = ellipse_rows_make(sh, sh->a + pad, sh->b + pad);
  /* an inward taper of t keeps at least the ellipse of half-width a / (1 + t) */
  const float inner_a = sh->a / (1 + sh->taper) - pad, inner_b = sh->b - pad;
  if (inner_a > pad && inner_b > pad) pl.inner = 1, pl.in = ellipse_rows_make(sh, inner_a, inner_b);
  return pl;
}

static row_span span_of(const shape *sh, const span_plan *pl, const box *bx, int y) {
  row_span sp = {bx->x0, bx->x1, 0, 0};
  if (!pl->outer) return sp;
  const float py = (float)y + 0.5f - sh->cy;
  float from, to;
  if (!ellipse_rows_cut(&pl->out, py, &from, &to)) {
    sp.hi = sp.lo;
    return sp;
  }
  const int lo = (int)floorf(sh->cx + from - 0.5f), hi = (int)ceilf(sh->cx + to - 0.5f) + 1;
  sp.lo = lo > sp.lo ? lo : sp.lo, sp.hi = hi < sp.hi ? hi : sp.hi;
  if (sp.hi > sp.lo && pl->inner && ellipse_rows_cut(&pl->in, py, &from, &to)) {
    const int in_lo = (int)ceilf(sh->cx + from - 0.5f), in_hi = (int)floorf(sh->cx + to - 0.5f) + 1;
    sp.in_lo = in_lo > sp.lo ? in_lo : sp.lo, sp.in_hi = in_hi < sp.hi ? in_hi : sp.hi;
    if (sp.in_hi < sp.in_lo) sp.in_hi = sp.in_lo;
  }
  return sp;
}

/* Whether a half-plane covers pixels [lo, hi) of row y fully (1), not at all
 * (-1) or partly (0), from bounds on its signed distance ly - bend*lx^2 (lx and
 * ly are linear along the row). Hair and beard are clipped by half-planes that
 * most rows lie wholly on one side of. */
static int halfplane_row(const shape *sh, int y, int lo, int hi) {
  const float py = (float)y + 0.5f - sh->cy;
  const float p0 = (float)lo + 0.5f - sh->cx, p1 = (float)hi - 0.5f - sh->cx;
  const float ly0 = py * sh->c - p0 * sh->s, ly1 = py * sh->c - p1 * sh->s;
  const float lx0 = p0 * sh->c + py * sh->s, lx1 = p1 * sh->c + py * sh->s;
  const float a0 = lx0 * lx0, a1 = lx1 * lx1;
  const float sq_max = maxf(a0, a1), sq_min = lx0 * lx1 <= 0 ? 0.0f : (a0 < a1 ? a0 : a1);
  const float bent_lo = sh->bend >= 0 ? sh->bend * sq_min : sh->bend * sq_max;
  const float bent_hi = sh->bend >= 0 ? sh->bend * sq_max : sh->bend * sq_min;
  const float sd_min = (ly0 < ly1 ? ly0 : ly1) - bent_hi, sd_max = maxf(ly0, ly1) - bent_lo;
  const float edge = 0.5f * sh->soft + 1e-3f; /* a margin for rounding */
  if (sd_max <= -edge) return 1;
  if (sd_min >= edge) return -1;
  return 0;
}

/* Painting: only the rows of the shape's box, and on each row only the span
 * span_of leaves, are evaluated; a clip is evaluated only where it is partial. */
void lfs_synth_paint(canvas *cv, const shape *sh, const shape *clip, int clip_mode, rgbf col,
                     float alpha, int shaded) {
  const int size = cv->size;
  box bx = shape_box(sh, size);
  if (clip_mode == CLIP_INSIDE) {
    const box cb = shape_box(clip, size);
    bx.x0 = bx.x0 > cb.x0 ? bx.x0 : cb.x0, bx.x1 = bx.x1 < cb.x1 ? bx.x1 : cb.x1;
    bx.y0 = bx.y0 > cb.y0 ? bx.y0 : cb.y0, bx.y1 = bx.y1 < cb.y1 ? bx.y1 : cb.y1;
  }
  if (bx.x1 <= bx.x0 || alpha <= 0) return;
  float cov[LFS_SYNTH_MAX_SIZE], cl[LFS_SYNTH_MAX_SIZE];
  const span_plan plan = span_plan_make(sh, &bx);
  for (int y = bx.y0; y < bx.y1; y++) {
    const row_span sp = span_of(sh, &plan, &bx, y);
    const int n = sp.hi - sp.lo;
    if (n <= 0) continue;
    /* a clip that is all-or-nothing on this row needs no evaluation */
    int clip_row = clip_mode == CLIP_NONE ? 1 : 0;
    if (clip_mode != CLIP_NONE && clip->kind == SHAPE_HALFPLANE) {
      const int state = halfplane_row(clip, y, sp.lo, sp.hi);
      if (state == (clip_mode == CLIP_INSIDE ? -1 : 1)) continue; /* nothing shows */
      clip_row = state != 0;
    }
    if (sp.in_hi > sp.in_lo) {
      cover(cov, sh, y, sp.lo, sp.in_lo - sp.lo);
      for (int i = sp.in_lo - sp.lo; i < sp.in_hi - sp.lo; i++) cov[i] = 1;
      cover(cov + (sp.in_hi - sp.lo), sh, y, sp.in_hi, sp.hi - sp.in_hi);
    } else {
      cover(cov, sh, y, sp.lo, n);
    }
    if (!clip_row) {
      cover(cl, clip, y, sp.lo, n);
      if (clip_mode == CLIP_INSIDE)
        for (int i = 0; i < n; i++) cov[i] *= cl[i];
      else
        for (int i = 0; i < n; i++) cov[i] *= 1 - cl[i];
    }
    const size_t row = (size_t)y * size + sp.lo;
    float *restrict r = cv->ch[0] + row, *restrict g = cv->ch[1] + row, *restrict b = cv->ch[2] + row;
    const float *restrict sh_row = cv->shade + row;
    for (int i = 0; i < n; i++) {
      const float a = cov[i] * alpha, light = shaded ? sh_row[i] : 1.0f;
      r[i] += a * (col.r * light - r[i]);
      g[i] += a * (col.g * light - g[i]);
      b[i] += a * (col.b * light - b[i]);
    }
  }
}
