/* synth_face.c: renders one synthetic face image from its identity-level and
 * per-image parameters (DESIGN §6): the view transform, then the face painted
 * part by part with the rasteriser of synth_raster.c, then exposure, contrast
 * and noise. The parameters are drawn by synth_params.c (the stream layout is in
 * synth_internal.h); this file holds the public entry points lfs_synth_render
 * and lfs_synth_work_floats.
 *
 * Geometry lives in a canonical face frame: x right, y down, one unit = half the
 * image side, origin at the image centre, framed like an aligned crop (eyes a
 * little above the centre, chin near the bottom). A simple head model puts every
 * feature on a rounded surface at depth z, so yaw and pitch become sideways or
 * vertical shifts plus foreshortening of each feature; roll, scale and
 * translation then map the frame onto pixels.
 *
 * Every part is a primitive of synth_raster.h (an ellipse, possibly bent or
 * tapered; a rectangle; a half-plane) with an anti-aliased edge about one pixel
 * wide, composited in painter's order with a Lambertian shading map of a
 * head-sized ellipsoid.
 *
 * Layout: the work area holds planar float channels R, G, B [S, S] (values
 * 0..255) and a shading map [S, S] that is reused for the noise at the end; the
 * result is uint8 RGB [S, S, 3], row-major. */
#include <math.h>
#include <string.h>

#include "data/synth_internal.h"
#include "data/synth_raster.h"
#include "lfs/log.h"
#include "lfs/philox.h"
#include "lfs/synth.h"

/* ---- the view transform: canonical frame -> pixels ---- */

typedef struct {
  float k;      /* pixels per canonical unit */
  float ox, oy; /* pixel position of the canonical origin */
  float roll, cr, sr, cyaw, syaw, cpitch, spitch;
  float head_y; /* canonical height of the axis yaw and pitch turn about */
  float aa;     /* anti-aliasing edge width in pixels */
} view_xf;

static view_xf make_xf(int size, const face_id *f, const face_view *v) {
  const float half = 0.5f * (float)size;
  view_xf t = {.k = 1.1f * half * v->scale, .ox = half * (1 + v->tx), .oy = half * (1 + v->ty),
               .roll = v->roll, .cr = cosf(v->roll), .sr = sinf(v->roll), .cyaw = cosf(v->yaw),
               .syaw = sinf(v->yaw), .cpitch = cosf(v->pitch), .spitch = sinf(v->pitch),
               .head_y = f->face_cy, .aa = 1.0f};
  return t;
}

/* Depth of the face surface at (x, y): a rounded front, 0 at the outline. */
static float surface_z(const face_id *f, float x, float y) {
  const float u = x / f->face_a, w = (y - f->face_cy) / f->face_b;
  return f->depth * sqrtf(maxf(0.04f, 1 - u * u - 0.35f * w * w));
}

static void to_pixels(const view_xf *t, float x, float y, float z, float *px, float *py) {
  const float xr = x * t->cyaw + z * t->syaw;
  const float yr = t->head_y + (y - t->head_y) * t->cpitch + z * t->spitch;
  *px = t->ox + t->k * (xr * t->cr - yr * t->sr);
  *py = t->oy + t->k * (xr * t->sr + yr * t->cr);
}

/* A shape that does not turn with the head's yaw (outline, hair mass, body). */
static shape flat(const view_xf *t, shape_kind kind, float x, float y, float a, float b, float tilt) {
  shape sh = {.kind = kind, .c = cosf(t->roll + tilt), .s = sinf(t->roll + tilt), .a = a * t->k,
              .b = b * t->k, .soft = t->aa};
  to_pixels(t, x, y, 0, &sh.cx, &sh.cy);
  return sh;
}

/* A feature on the face surface, raised by dz: it shifts with yaw and pitch and
 * is foreshortened by the surface's slope. */
static shape on_face(const view_xf *t, const face_id *f, shape_kind kind, float x, float y, float a,
                     float b, float tilt, float dz) {
  shape sh = flat(t, kind, x, y, a, b, tilt);
  to_pixels(t, x, y, surface_z(f, x, y) + dz, &sh.cx, &sh.cy);
  float lx, ly, rx, ry;
  to_pixels(t, x - a, y, surface_z(f, x - a, y) + dz, &lx, &ly);
  to_pixels(t, x + a, y, surface_z(f, x + a, y) + dz, &rx, &ry);
  sh.a = maxf(0.5f * sqrtf((rx - lx) * (rx - lx) + (ry - ly) * (ry - ly)), 0.3f * sh.a);
  sh.b *= t->cpitch;
  return sh;
}

/* ---- painting the face ---- */

static void paint_background(canvas *cv, const view_xf *t, const face_view *v) {
  const int size = cv->size;
  const float gx = cosf(v->bg_angle) / (float)size, gy = sinf(v->bg_angle) / (float)size;
  const float half = 0.5f * (float)size;
  for (int y = 0; y < size; y++) {
    float *restrict r = cv->ch[0] + (size_t)y * size, *restrict g = cv->ch[1] + (size_t)y * size,
                    *restrict b = cv->ch[2] + (size_t)y * size;
    for (int x = 0; x < size; x++) {
      const float w = clampf(0.5f + gx * ((float)x - half) + gy * ((float)y - half), 0, 1);
      r[x] = v->bg0.r + w * (v->bg1.r - v->bg0.r);
      g[x] = v->bg0.g + w * (v->bg1.g - v->bg0.g);
      b[x] = v->bg0.b + w * (v->bg1.b - v->bg0.b);
    }
  }
  /* an out-of-focus object behind the person */
  shape blob = {.kind = SHAPE_ELLIPSE, .c = 1, .s = 0, .a = v->blob_a * half, .b = v->blob_b * half,
                .soft = maxf(t->aa, 0.25f * v->blob_a * half)};
  blob.cx = half * (1 + v->blob_x), blob.cy = half * (1 + v->blob_y);
  if (blob.a > 0.5f && blob.b > 0.5f)
    lfs_synth_paint(cv, &blob, NULL, CLIP_NONE, v->blob_colour, 0.7f, 0);
}

/* Lambertian shading of a head-sized ellipsoid, also used for neck and body. */
static void shade_map(canvas *cv, const view_xf *t, const face_id *f, const face_view *v) {
  const int size = cv->size;
  float hx, hy;
  to_pixels(t, 0, f->face_cy - 0.1f * f->face_b, 0, &hx, &hy);
  const float ia = 1 / (1.25f * f->face_a * t->k), ib = 1 / (1.2f * f->face_b * t->k);
  const float lx = v->light[0], ly = v->light[1], lz = v->light[2];
  for (int y = 0; y < size; y++) {
    float *restrict out = cv->shade + (size_t)y * size;
    const float py = (float)y + 0.5f - hy;
    for (int x = 0; x < size; x++) {
      const float px = (float)x + 0.5f - hx;
      float nx = (px * t->cr + py * t->sr) * ia, ny = (py * t->cr - px * t->sr) * ib;
      /* outside the ellipsoid: the normal of its rim; inside, nz = sqrt(1 - r2)
       * approximated by (1 - r2)(1 + r2/2) (exact at the centre and the rim) */
      const float r2 = nx * nx + ny * ny, scale = rsqrt(maxf(r2, 1.0f));
      nx *= scale, ny *= scale;
      const float inside = maxf(0.0f, 1 - r2), nz = inside * (1.5f - 0.5f * inside);
      out[x] = v->ambient + v->diffuse * maxf(0.0f, nx * lx + ny * ly + nz * lz);
    }
  }
}

static void paint_body(canvas *cv, const view_xf *t, const face_id *f, const face_view *v) {
  shape shoulders = flat(t, SHAPE_ELLIPSE, 0, f->face_cy + f->face_b + 0.55f, 1.25f, 0.5f, 0);
  lfs_synth_paint(cv, &shoulders, NULL, CLIP_NONE, v->shirt, 1, 1);
  if (f->hair_style == HAIR_LONG) {
    shape back = flat(t, SHAPE_ELLIPSE, 0, f->face_cy + 0.25f,
                      f->face_a + f->hair_volume + 0.07f, f->face_b + 0.3f + f->hair_length, 0);
    back.taper = -0.25f; /* wider toward the shoulders */
    lfs_synth_paint(cv, &back, NULL, CLIP_NONE, times(f->hair, 0.85f), 1, 1);
  }
  shape neck = flat(t, SHAPE_ELLIPSE, 0, f->face_cy + 0.85f * f->face_b, f->neck_w, 0.45f, 0);
  lfs_synth_paint(cv, &neck, NULL, CLIP_NONE, times(f->skin, 0.8f), 1, 1);
}

/* The hair mass on the head; its part above the hairline is painted again over
 * the forehead once the face is drawn. */
static shape hair_cap(const view_xf *t, const face_id *f) {
  const float vol = f->hair_style == HAIR_VOLUME ? 2.2f * f->hair_volume + 0.08f : f->hair_volume;
  const float a = f->face_a + vol, b = 0.88f * f->face_b + vol;
  return flat(t, SHAPE_ELLIPSE, 0, f->face_cy - 0.14f * f->face_b - 0.3f * vol, a, b, 0);
}

static float hair_alpha(const face_id *f) {
  return f->hair_style == HAIR_BALD ? 0.0f : (f->hair_style == HAIR_BUZZ ? 0.55f : 1.0f);
}

static void paint_hair_back(canvas *cv, const view_xf *t, const face_id *f) {
  if (f->hair_style == HAIR_BALD) return;
  shape cap = hair_cap(t, f);
  if (f->hair_style == HAIR_BOB) {
    shape bob = flat(t, SHAPE_ELLIPSE, 0, f->face_cy + 0.05f, f->face_a + f->hair_volume + 0.06f,
                     f->face_b + f->hair_volume, 0);
    shape cut = flat(t, SHAPE_HALFPLANE, 0, f->face_cy + 0.7f * f->face_b, 0, 0, 0);
    lfs_synth_paint(cv, &bob, &cut, CLIP_INSIDE, f->hair, 1, 1);
  }
  if (f->hair_style == HAIR_VOLUME) {
    lfs_synth_paint(cv, &cap, NULL, CLIP_NONE, f->hair, 1, 1);
    return;
  }
  /* short hair ends, feathered, a little below the top of the ears */
  shape cut = flat(t, SHAPE_HALFPLANE, 0, f->ear_y + 0.02f, 0, 0, 0);
  cut.soft = maxf(t->aa, 0.05f * t->k);
  lfs_synth_paint(cv, &cap, &cut, CLIP_INSIDE, f->hair, hair_alpha(f), 1);
}

static void paint_ears(canvas *cv, const view_xf *t, const face_id *f) {
  for (int side = -1; side <= 1; side += 2) {
    const float x = side * (f->face_a * 0.97f);
    shape ear = on_face(t, f, SHAPE_ELLIPSE, x, f->ear_y, f->ear_a, f->ear_b, side * 0.15f,
                        -0.2f * f->depth);
    lfs_synth_paint(cv, &ear, NULL, CLIP_NONE, times(f->skin, 0.92f), 1, 1);
    shape inner = ear;
    inner.a *= 0.5f, inner.b *= 0.6f, inner.cx += side * 0.2f * ear.a;
    inner.soft = maxf(t->aa, 0.3f * inner.a);
    lfs_synth_paint(cv, &inner, NULL, CLIP_NONE, times(f->skin, 0.7f), 0.6f, 1);
  }
}

static shape face_outline(const view_xf *t, const face_id *f) {
  shape face = flat(t, SHAPE_ELLIPSE, 0, f->face_cy, f->face_a, f->face_b, 0);
  face.taper = f->jaw;
  return face;
}

static void paint_cheeks_and_beard(canvas *cv, const view_xf *t, const face_id *f) {
  for (int side = -1; side <= 1; side += 2) {
    shape cheek = on_face(t, f, SHAPE_ELLIPSE, side * f->eye_dx * 1.05f,
                          0.5f * (f->nose_y + f->mouth_y) - 0.05f, 0.12f, 0.08f, 0, 0);
    cheek.soft = maxf(t->aa, 0.6f * cheek.b);
    lfs_synth_paint(cv, &cheek, NULL, CLIP_NONE, mix(f->skin, (rgbf){225, 96, 96}, 0.5f),
                    f->blush, 1);
  }
  if (f->beard == BEARD_NONE) return;
  const rgbf col = times(f->hair, 0.9f);
  if (f->beard == BEARD_FULL || f->beard == BEARD_STUBBLE) {
    shape jaw = face_outline(t, f);
    jaw.b *= 1.02f;
    shape line = flat(t, SHAPE_HALFPLANE, 0, f->beard_line, 0, 0, 3.14159265f);
    line.bend = 0.7f / t->k; /* rises toward the ears */
    line.soft = maxf(t->aa, 0.04f * t->k);
    lfs_synth_paint(cv, &jaw, &line, CLIP_INSIDE, col, f->beard_alpha, 1);
  }
  if (f->beard == BEARD_GOATEE) {
    shape chin = on_face(t, f, SHAPE_ELLIPSE, 0, f->mouth_y + 0.35f * (f->face_cy + f->face_b - f->mouth_y),
                         0.7f * f->mouth_a, 0.4f * (f->face_cy + f->face_b - f->mouth_y), 0, 0);
    lfs_synth_paint(cv, &chin, NULL, CLIP_NONE, col, f->beard_alpha, 1);
  }
  if (f->beard != BEARD_STUBBLE) {
    shape moustache = on_face(t, f, SHAPE_ELLIPSE, 0, f->mouth_y - 2.2f * f->lip_top - 0.015f,
                              1.1f * f->mouth_a, 0.03f, 0, 0.02f);
    moustache.bend = 1.2f;
    lfs_synth_paint(cv, &moustache, NULL, CLIP_NONE, col, f->beard_alpha, 1);
  }
}

static void paint_eyes(canvas *cv, const view_xf *t, const face_id *f, const face_view *v) {
  const float open = v->eye_open;
  for (int side = -1; side <= 1; side += 2) {
    const float x = side * f->eye_dx, y = f->eye_y;
    const float tilt = -side * f->eye_tilt;
    shape socket = on_face(t, f, SHAPE_ELLIPSE, x, y - 0.2f * f->eye_b, 1.4f * f->eye_a,
                           2.4f * f->eye_b, tilt, 0);
    socket.soft = maxf(t->aa, 0.5f * socket.b);
    lfs_synth_paint(cv, &socket, NULL, CLIP_NONE, times(f->skin, 0.78f), 0.45f, 1);
    shape lid = on_face(t, f, SHAPE_ELLIPSE, x, y - 0.9f * f->eye_b * open, 1.05f * f->eye_a,
                        0.28f * f->eye_b + 0.004f, tilt, 0);
    lid.bend = 3.2f * open; /* the lash line follows the eye's upper edge */
    if (open > 0.2f) {
      shape eye = on_face(t, f, SHAPE_ELLIPSE, x, y, f->eye_a, f->eye_b * open, tilt, 0);
      lfs_synth_paint(cv, &eye, NULL, CLIP_NONE, (rgbf){236, 232, 226}, 1, 1);
      const float ix = x + v->gaze_x * 0.35f * f->eye_a, iy = y + v->gaze_y * 0.3f * f->eye_b;
      shape iris = on_face(t, f, SHAPE_ELLIPSE, ix, iy, f->iris_r, f->iris_r, 0, 0.01f);
      lfs_synth_paint(cv, &iris, &eye, CLIP_INSIDE, f->iris, 1, 1);
      shape pupil = iris;
      pupil.a *= 0.45f, pupil.b *= 0.45f;
      lfs_synth_paint(cv, &pupil, &eye, CLIP_INSIDE, (rgbf){14, 12, 12}, 1, 1);
      shape glint = iris;
      glint.a *= 0.22f, glint.b *= 0.22f, glint.cx -= 0.35f * iris.a, glint.cy -= 0.35f * iris.b;
      lfs_synth_paint(cv, &glint, &eye, CLIP_INSIDE, (rgbf){255, 255, 255}, 0.8f, 0);
    } else {
      lid.cy += 0.5f * f->eye_b * t->k, lid.bend = -0.6f;
    }
    lfs_synth_paint(cv, &lid, NULL, CLIP_NONE, (rgbf){34, 24, 22}, 0.9f, 1);
    shape brow = on_face(t, f, SHAPE_ELLIPSE, x + side * 0.1f * f->eye_a,
                         y - f->brow_gap - v->brow_raise, f->brow_a, f->brow_b,
                         -side * f->brow_tilt, 0.01f);
    brow.bend = f->brow_droop / f->brow_b;
    lfs_synth_paint(cv, &brow, NULL, CLIP_NONE, f->brow, 0.92f, 1);
  }
}

static void paint_nose(canvas *cv, const view_xf *t, const face_id *f, const face_view *v) {
  const float w = f->nose_w, tip = f->nose_y, len = f->nose_y - f->eye_y;
  const float away = v->light[0] > 0 ? -1.0f : 1.0f; /* the side facing away from the light */
  shape bridge = on_face(t, f, SHAPE_ELLIPSE, away * 0.6f * w, tip - 0.45f * len, 0.5f * w,
                         0.5f * len, 0, 0.06f * f->depth);
  bridge.soft = maxf(t->aa, 0.8f * bridge.a);
  lfs_synth_paint(cv, &bridge, NULL, CLIP_NONE, times(f->skin, 0.72f), 0.3f, 1);
  shape base = on_face(t, f, SHAPE_ELLIPSE, 0, tip + 0.2f * w, 1.15f * w, 0.5f * w, 0, 0.15f * f->depth);
  base.soft = maxf(t->aa, 0.4f * base.b);
  lfs_synth_paint(cv, &base, NULL, CLIP_NONE, times(f->skin, 0.72f), 0.45f, 1);
  shape ball = on_face(t, f, SHAPE_ELLIPSE, 0, tip - 0.1f * w, 0.6f * w, 0.5f * w, 0, 0.2f * f->depth);
  ball.soft = maxf(t->aa, 0.5f * ball.b);
  lfs_synth_paint(cv, &ball, NULL, CLIP_NONE, times(f->skin, 1.06f), 0.5f, 1);
  for (int side = -1; side <= 1; side += 2) {
    shape nostril = on_face(t, f, SHAPE_ELLIPSE, side * 0.5f * w, tip + 0.3f * w, 0.3f * w,
                            0.16f * w, side * 0.3f, 0.12f * f->depth);
    lfs_synth_paint(cv, &nostril, NULL, CLIP_NONE, times(f->skin, 0.35f), 0.8f, 1);
  }
}

static void paint_mouth(canvas *cv, const view_xf *t, const face_id *f, const face_view *v) {
  const float y = f->mouth_y, a = f->mouth_a * (1 + 0.08f * v->smile), open = v->open;
  const float droop = f->mouth_droop - 0.025f * v->smile;
  const float dz = 0.05f * f->depth;
  if (open > 0.004f) {
    shape inside = on_face(t, f, SHAPE_ELLIPSE, 0, y, 0.82f * a, open, 0, dz);
    inside.bend = droop / open;
    lfs_synth_paint(cv, &inside, NULL, CLIP_NONE, (rgbf){70, 24, 28}, 1, 1);
    shape teeth = on_face(t, f, SHAPE_RECT, 0, y - 0.6f * open, 0.6f * a, 0.45f * open, 0, dz);
    lfs_synth_paint(cv, &teeth, &inside, CLIP_INSIDE, (rgbf){228, 222, 210}, 1, 1);
  }
  shape upper = on_face(t, f, SHAPE_ELLIPSE, 0, y - 0.85f * f->lip_top - 0.5f * open, a,
                        f->lip_top, 0, dz);
  upper.bend = droop / f->lip_top;
  lfs_synth_paint(cv, &upper, NULL, CLIP_NONE, f->lip, 1, 1);
  shape lower = on_face(t, f, SHAPE_ELLIPSE, 0, y + 0.85f * f->lip_bot + 0.5f * open, 0.86f * a,
                        f->lip_bot, 0, dz);
  lower.bend = 0.8f * droop / f->lip_bot;
  lfs_synth_paint(cv, &lower, NULL, CLIP_NONE, times(f->lip, 1.06f), 1, 1);
  if (open <= 0.004f) {
    shape line = on_face(t, f, SHAPE_ELLIPSE, 0, y, 1.02f * a, 0.007f, 0, dz);
    line.bend = droop / 0.007f;
    lfs_synth_paint(cv, &line, NULL, CLIP_NONE, times(f->lip, 0.45f), 0.9f, 1);
  }
}

static void paint_fringe(canvas *cv, const view_xf *t, const face_id *f) {
  if (f->hair_style == HAIR_BALD) return;
  shape cap = hair_cap(t, f);
  shape line = on_face(t, f, SHAPE_HALFPLANE, 0, f->hairline, 0, 0, f->hair_tilt, 0);
  line.bend = f->hair_curve / t->k;
  line.soft = maxf(t->aa, 0.015f * t->k);
  lfs_synth_paint(cv, &cap, &line, CLIP_INSIDE, times(f->hair, 1.05f), hair_alpha(f), 1);
}

static void paint_glasses(canvas *cv, const view_xf *t, const face_id *f) {
  if (!f->glasses) return;
  const float fw = f->frame_width, dz = 0.12f * f->depth;
  for (int side = -1; side <= 1; side += 2) {
    const float x = side * f->eye_dx;
    shape outer = on_face(t, f, SHAPE_ELLIPSE, x, f->eye_y, f->lens_a, f->lens_b, 0, dz);
    shape inner = on_face(t, f, SHAPE_ELLIPSE, x, f->eye_y, f->lens_a - fw, f->lens_b - fw, 0, dz);
    lfs_synth_paint(cv, &inner, NULL, CLIP_NONE, (rgbf){200, 215, 225}, f->lens_alpha, 0);
    lfs_synth_paint(cv, &outer, &inner, CLIP_OUTSIDE, f->frame, 1, 1);
    const float arm_x = x + side * f->lens_a, arm_len = f->face_a - fabsf(arm_x);
    if (arm_len > 0) {
      shape arm = on_face(t, f, SHAPE_RECT, arm_x + side * 0.5f * arm_len, f->eye_y - 0.4f * f->lens_b,
                          0.5f * arm_len, 0.5f * fw, 0, 0.5f * dz);
      lfs_synth_paint(cv, &arm, NULL, CLIP_NONE, f->frame, 1, 1);
    }
  }
  const float gap = f->eye_dx - f->lens_a;
  if (gap > 0) {
    shape bridge = on_face(t, f, SHAPE_RECT, 0, f->eye_y - 0.3f * f->lens_b, gap, 0.5f * fw, 0, dz);
    lfs_synth_paint(cv, &bridge, NULL, CLIP_NONE, f->frame, 1, 1);
  }
}

static void paint_occluder(canvas *cv, const view_xf *t, const face_id *f, const face_view *v) {
  if (v->occluder == OCCLUDE_NONE) return;
  if (v->occluder == OCCLUDE_SHADES) {
    for (int side = -1; side <= 1; side += 2) {
      shape lens = on_face(t, f, SHAPE_ELLIPSE, side * f->eye_dx, v->occ_y, 1.7f * f->eye_a,
                           v->occ_b, 0, 0.12f * f->depth);
      lfs_synth_paint(cv, &lens, NULL, CLIP_NONE, v->occ_colour, 0.95f, 0);
    }
    shape bridge = on_face(t, f, SHAPE_RECT, 0, v->occ_y - 0.4f * v->occ_b,
                           f->eye_dx - 1.5f * f->eye_a, 0.012f, 0, 0.12f * f->depth);
    lfs_synth_paint(cv, &bridge, NULL, CLIP_NONE, v->occ_colour, 1, 0);
    return;
  }
  const shape_kind kind = v->occluder == OCCLUDE_BLOB ? SHAPE_ELLIPSE : SHAPE_RECT;
  shape occ = flat(t, kind, v->occ_x, v->occ_y, v->occ_a, v->occ_b, v->occ_angle);
  lfs_synth_paint(cv, &occ, NULL, CLIP_NONE, v->occ_colour, 1, 0);
}

/* Fills out[0..n) with noise of standard deviation sigma from blocks first,
 * first + 1, ...: block i gives values 16i .. 16i+15, value 16i + 4b + q being
 * byte b of word q (uniform noise is as convincing as Gaussian at these levels
 * and costs half the blocks; the layout keeps the unpacking vectorisable). */
static void noise_plane(float *restrict out, size_t n, const lfs_rng *rng, uint64_t first,
                        float sigma) {
  const float k = sigma / 73.9f; /* sd of a uniform byte */
  float vals[16];
  for (size_t i0 = 0; i0 < n; i0 += 16) {
    uint32_t w[4];
    lfs_rng_block(rng, first + i0 / 16, w);
    for (int b = 0; b < 4; b++)
      for (int q = 0; q < 4; q++) vals[4 * b + q] = k * ((float)((w[q] >> (8 * b)) & 0xff) - 127.5f);
    memcpy(out + i0, vals, (n - i0 < 16 ? n - i0 : 16) * sizeof *vals);
  }
}

/* Exposure, white balance, contrast and noise; planar floats -> interleaved
 * uint8. The noise is luminance grain (one value per pixel, added to all three
 * channels): a third of the random blocks of per-channel noise. */
static void develop(uint8_t *rgb, canvas *cv, const face_view *v, uint64_t seed, uint32_t identity,
                    uint32_t image) {
  const size_t n = (size_t)cv->size * cv->size;
  float *restrict noise = cv->shade;
  if (v->noise > 0) {
    const lfs_rng rng = lfs_rng_make(seed, LFS_RNG_SYNTH, identity, image);
    noise_plane(noise, n, &rng, (uint64_t)LFS_SYNTH_WHAT_NOISE << 32, v->noise);
  } else {
    memset(noise, 0, n * sizeof *noise);
  }
  const float gains[3] = {v->gain.r, v->gain.g, v->gain.b}, contrast = v->contrast;
  for (int c = 0; c < 3; c++) {
    const float *restrict src = cv->ch[c];
    const float gain = gains[c] * contrast, offset = 128 * (1 - contrast) + 0.5f;
    for (size_t p = 0; p < n; p++)
      rgb[3 * p + c] = (uint8_t)clampf(src[p] * gain + offset + noise[p], 0.0f, 255.0f);
  }
}

size_t lfs_synth_work_floats(int size) { return 4 * (size_t)size * (size_t)size; }

void lfs_synth_render(uint8_t *rgb, float *work, int size, float difficulty, uint64_t seed,
                      uint32_t identity, uint32_t image) {
  LFS_ASSERT(size >= LFS_SYNTH_MIN_SIZE && size <= LFS_SYNTH_MAX_SIZE);
  face_id f;
  face_view v;
  lfs_synth_sample_identity(&f, seed, identity);
  lfs_synth_sample_view(&v, &f, clampf(difficulty, 0.0f, 1.0f), seed, identity, image);
  const size_t plane = (size_t)size * size;
  canvas cv = {size, {work, work + plane, work + 2 * plane}, work + 3 * plane};
  const view_xf t = make_xf(size, &f, &v);

  paint_background(&cv, &t, &v);
  shade_map(&cv, &t, &f, &v);
  paint_body(&cv, &t, &f, &v);
  paint_hair_back(&cv, &t, &f);
  paint_ears(&cv, &t, &f);
  shape face = face_outline(&t, &f);
  lfs_synth_paint(&cv, &face, NULL, CLIP_NONE, f.skin, 1, 1);
  paint_cheeks_and_beard(&cv, &t, &f);
  paint_eyes(&cv, &t, &f, &v);
  paint_nose(&cv, &t, &f, &v);
  paint_mouth(&cv, &t, &f, &v);
  paint_fringe(&cv, &t, &f);
  paint_glasses(&cv, &t, &f);
  paint_occluder(&cv, &t, &f, &v);
  develop(rgb, &cv, &v, seed, identity, image);
}

const uint8_t lfs_synth_digits[10][5] = {
    {7, 5, 5, 5, 7}, {2, 6, 2, 2, 7}, {7, 1, 7, 4, 7}, {7, 1, 3, 1, 7}, {5, 5, 7, 1, 1},
    {7, 4, 7, 1, 7}, {7, 4, 7, 5, 7}, {7, 1, 2, 2, 2}, {7, 5, 7, 5, 7}, {7, 5, 7, 1, 7},
};
