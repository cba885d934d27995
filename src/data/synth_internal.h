/* synth_internal.h: what the modules of the synthetic-face generator
 * (synth_params.c, synth_face.c, synth.c) and the tests share: the layout of its
 * Philox streams, the face parameters synth_params.c draws from them and
 * synth_face.c renders, and the preview's digit font. The rasteriser they paint
 * with is in synth_raster.h.
 *
 * Every stream is lfs_rng_make(seed, LFS_RNG_SYNTH, a, b):
 *   identity-level parameters   a = identity, b = LFS_SYNTH_IDENTITY_IMAGE
 *   per-image parameters        a = identity, b = image
 *   training order              a = LFS_SYNTH_STREAM_ORDER, b = 0
 *   pair selection              a = LFS_SYNTH_STREAM_PAIRS, b = split
 * Identity numbers stay below LFS_SYNTH_TEST_BASE + LFS_SYNTH_MAX_IDENTITIES, far
 * from the reserved values of a. Inside an image or identity stream, draw k of
 * group `what` (shape, colour, pose, noise, ...) uses block (what << 32) + k, so
 * the groups never share a block and adding a draw to one group leaves every
 * other group's values unchanged. */
#ifndef LFS_SYNTH_INTERNAL_H
#define LFS_SYNTH_INTERNAL_H

#include <stdint.h>

#include "data/synth_raster.h"

#define LFS_SYNTH_IDENTITY_IMAGE 0xffffffffu
#define LFS_SYNTH_STREAM_ORDER 0xfffffff0u
#define LFS_SYNTH_STREAM_PAIRS 0xfffffff1u

/* Draw groups ("what") of the identity and image streams. */
enum {
  LFS_SYNTH_WHAT_SHAPE = 1,
  LFS_SYNTH_WHAT_COLOUR = 2,
  LFS_SYNTH_WHAT_HAIR = 3,
  LFS_SYNTH_WHAT_EXTRAS = 4, /* beard, glasses */
  LFS_SYNTH_WHAT_POSE = 5,
  LFS_SYNTH_WHAT_LIGHT = 6,
  LFS_SYNTH_WHAT_EXPRESSION = 7,
  LFS_SYNTH_WHAT_SCENE = 8, /* background, clothes */
  LFS_SYNTH_WHAT_OCCLUSION = 9,
  LFS_SYNTH_WHAT_NOISE = 10,
};

/* ---- face parameters (drawn by synth_params.c) ---- */

enum { HAIR_SHORT, HAIR_LONG, HAIR_BOB, HAIR_BUZZ, HAIR_BALD, HAIR_VOLUME, hair_style_count };
enum { BEARD_NONE, BEARD_STUBBLE, BEARD_FULL, BEARD_MOUSTACHE, BEARD_GOATEE, beard_count };
enum { OCCLUDE_NONE, OCCLUDE_MASK, OCCLUDE_BLOB, OCCLUDE_BAR, OCCLUDE_SHADES };

/* Identity-level parameters, canonical units (half the image side; the frame
 * is described in synth_face.c). */
typedef struct {
  float face_a, face_b, face_cy, jaw, depth;
  float eye_y, eye_dx, eye_a, eye_b, eye_tilt, iris_r;
  float brow_gap, brow_a, brow_b, brow_droop, brow_tilt;
  float nose_y, nose_w, mouth_y, mouth_a, lip_top, lip_bot, mouth_droop;
  float ear_y, ear_a, ear_b, neck_w, blush;
  rgbf skin, lip, iris, brow, hair, shirt, background;
  int hair_style;
  float hairline, hair_curve, hair_tilt, hair_volume, hair_length;
  int beard;
  float beard_alpha, beard_line;
  int glasses;
  rgbf frame;
  float lens_a, lens_b, lens_alpha, frame_width;
} face_id;

/* Per-image parameters: pose, light, expression, scene, occluder and noise. */
typedef struct {
  float roll, yaw, pitch, scale, tx, ty;
  float light[3], ambient, diffuse;
  rgbf gain;
  float contrast;
  float smile, open, brow_raise, eye_open, gaze_x, gaze_y;
  rgbf bg0, bg1, blob_colour, shirt;
  float bg_angle, blob_x, blob_y, blob_a, blob_b;
  int occluder;
  rgbf occ_colour;
  float occ_x, occ_y, occ_a, occ_b, occ_angle;
  float noise;
} face_view;

/* Fills every field of *f from the identity stream of `identity`. */
void lfs_synth_sample_identity(face_id *f, uint64_t seed, uint32_t identity);

/* Fills every field of *v from the stream of image `image` of `identity`;
 * difficulty in [0, 1] scales the variation between images (0: every image of
 * an identity has the same pose, light, expression and scene). */
void lfs_synth_sample_view(face_view *v, const face_id *f, float difficulty, uint64_t seed,
                           uint32_t identity, uint32_t image);

/* A 3x5 bitmap font for the digits 0-9: row r of digit d is bits 2..0 of
 * lfs_synth_digits[d][r], bit 2 the leftmost column. */
extern const uint8_t lfs_synth_digits[10][5];

#endif
