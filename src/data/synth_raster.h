/* synth_raster.h: the anti-aliased rasteriser the synthetic faces are drawn
 * with (synth_raster.c): colours, shapes in pixel coordinates, the canvas they
 * are painted on, and the small colour and float helpers the synthesis modules
 * share. Nothing here knows about faces. */
#ifndef LFS_SYNTH_RASTER_H
#define LFS_SYNTH_RASTER_H

#include <stdint.h>

/* An sRGB colour, each channel 0..255 (more or less while it is computed). */
typedef struct {
  float r, g, b;
} rgbf;

static inline float clampf(float v, float lo, float hi) { return v < lo ? lo : (v > hi ? hi : v); }
static inline float maxf(float a, float b) { return a > b ? a : b; }
static inline rgbf mix(rgbf a, rgbf b, float t) {
  return (rgbf){a.r + t * (b.r - a.r), a.g + t * (b.g - a.g), a.b + t * (b.b - a.b)};
}
static inline rgbf times(rgbf a, float s) { return (rgbf){a.r * s, a.g * s, a.b * s}; }

/* 1/sqrt(x) for x > 0 to about 5e-6 relative error: a bit-level first guess and
 * two Newton steps. Unlike sqrtf (which may set errno) it vectorises without
 * -fno-math-errno, and the anti-aliasing and shading need no more precision. */
static inline float rsqrt(float x) {
  union {
    float f;
    uint32_t u;
  } v = {.f = x};
  v.u = 0x5f375a86u - (v.u >> 1);
  float y = v.f;
  y *= 1.5f - 0.5f * x * y * y;
  y *= 1.5f - 0.5f * x * y * y;
  return y;
}

typedef enum { SHAPE_ELLIPSE, SHAPE_RECT, SHAPE_HALFPLANE } shape_kind;

/* A shape in pixel coordinates: centre (cx, cy), its local x axis along (c, s).
 * In that local frame it is:
 *   ellipse:   nx^2 + ny^2 < 1 with nx = x/a * (1 + taper*max(ny, 0)), ny = y/b - bend*nx^2
 *              (bend > 0 lowers the ends: an arch; bend < 0 a smile; taper narrows the lower half)
 *   rect:      |x| < a and |y| < b
 *   halfplane: y < bend * x^2 (bend in 1/pixels) */
typedef struct {
  shape_kind kind;
  float cx, cy, c, s, a, b, bend, taper;
  float soft; /* edge width in pixels */
} shape;

/* Planar float channels (values 0..255) and a shading map, each [size, size]. */
typedef struct {
  int size;
  float *ch[3]; /* planar R, G, B [S, S] */
  float *shade; /* [S, S] */
} canvas;

/* How a paint is restricted by a second shape. */
enum { CLIP_NONE = 0, CLIP_INSIDE = 1, CLIP_OUTSIDE = 2 };

/* Blends colour col with opacity alpha over the pixels shape sh covers,
 * optionally restricted (clip_mode) to the inside or outside of shape clip
 * (NULL with CLIP_NONE); shaded parts are multiplied by cv->shade. size must be
 * at most LFS_SYNTH_MAX_SIZE. */
void lfs_synth_paint(canvas *cv, const shape *sh, const shape *clip, int clip_mode, rgbf col,
                     float alpha, int shaded);

#endif
