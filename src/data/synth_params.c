/* synth_params.c: draws the parameters of a synthetic face from its Philox
 * streams (DESIGN §6; the stream layout is in synth_internal.h): the
 * identity-level ones (head shape, colours, hair, beard, glasses; face_id) and
 * those of one image of it (pose, light, expression, scene, occluder, noise
 * level; face_view). Each group of parameters reads its own blocks, so a change
 * to one group leaves every other group's values unchanged. Lengths are in
 * canonical units (half the image side), colours sRGB. */
#include <math.h>

#include "data/synth_internal.h"
#include "lfs/philox.h"

/* ---- random draws: draw k of a group uses its own block (synth_internal.h) ---- */

typedef struct {
  lfs_rng rng;
  uint64_t block;
} draws;

static draws draws_open(uint64_t seed, uint32_t identity, uint32_t image, uint32_t what) {
  return (draws){lfs_rng_make(seed, LFS_RNG_SYNTH, identity, image), (uint64_t)what << 32};
}
static float uni(draws *d, float lo, float hi) {
  return lo + (hi - lo) * lfs_rng_uniform(&d->rng, 4 * d->block++);
}
/* Normal with standard deviation sd, cut at 2.5 sd so no draw is absurd. */
static float nrm(draws *d, float sd) {
  return sd * clampf((float)lfs_rng_normal(&d->rng, d->block++), -2.5f, 2.5f);
}
static int chance(draws *d, float p) { return uni(d, 0.0f, 1.0f) < p; }
static int pick(draws *d, const float *weights, int n) {
  float total = 0, u;
  for (int i = 0; i < n; i++) total += weights[i];
  u = uni(d, 0.0f, total);
  for (int i = 0; i < n - 1; i++) {
    if (u < weights[i]) return i;
    u -= weights[i];
  }
  return n - 1;
}
static rgbf random_colour(draws *d, float lo, float hi, float saturation) {
  rgbf c = {uni(d, lo, hi), uni(d, lo, hi), uni(d, lo, hi)};
  const float grey = (c.r + c.g + c.b) / 3;
  return mix((rgbf){grey, grey, grey}, c, saturation);
}

/* ---- palettes (sRGB) ---- */

static const rgbf skin_tones[] = {{255, 226, 204}, {241, 196, 168}, {226, 170, 136}, {200, 138, 102},
                                  {166, 108, 74},  {126, 82, 56},   {92, 60, 44}};
enum { skin_tone_count = sizeof skin_tones / sizeof skin_tones[0] };
static const rgbf hair_colours[] = {{24, 20, 18},   {56, 40, 30},   {96, 64, 42},
                                    {142, 102, 64}, {208, 174, 116}, {164, 82, 42},
                                    {150, 148, 146}, {218, 214, 206}};
static const float hair_weights[] = {0.28f, 0.22f, 0.16f, 0.10f, 0.09f, 0.05f, 0.06f, 0.04f};
static const rgbf iris_colours[] = {{66, 42, 24},  {108, 70, 36},  {116, 100, 56},
                                    {74, 112, 72}, {72, 114, 168}, {110, 124, 136}};
static const float iris_weights[] = {0.35f, 0.20f, 0.12f, 0.10f, 0.15f, 0.08f};

/* ---- identity ---- */

static const float hair_style_weights[] = {0.32f, 0.22f, 0.14f, 0.12f, 0.08f, 0.12f};
static const float beard_weights[] = {0.76f, 0.07f, 0.07f, 0.05f, 0.05f};

static void sample_shape(face_id *f, uint64_t seed, uint32_t identity) {
  draws d = draws_open(seed, identity, LFS_SYNTH_IDENTITY_IMAGE, LFS_SYNTH_WHAT_SHAPE);
  const float a = f->face_a = uni(&d, 0.52f, 0.64f);
  const float b = f->face_b = uni(&d, 0.72f, 0.84f);
  f->face_cy = uni(&d, 0.04f, 0.10f);
  f->jaw = uni(&d, 0.0f, 0.4f);
  f->depth = 0.85f * a;
  f->eye_y = f->face_cy + b * uni(&d, -0.12f, -0.02f);
  f->eye_dx = a * uni(&d, 0.36f, 0.46f);
  f->eye_a = a * uni(&d, 0.14f, 0.19f);
  f->eye_b = f->eye_a * uni(&d, 0.36f, 0.52f);
  f->eye_tilt = uni(&d, -0.10f, 0.16f);
  f->iris_r = f->eye_b * uni(&d, 1.0f, 1.25f);
  f->brow_gap = b * uni(&d, 0.10f, 0.16f);
  f->brow_a = f->eye_a * uni(&d, 1.15f, 1.5f);
  f->brow_b = b * uni(&d, 0.016f, 0.036f);
  f->brow_droop = b * uni(&d, 0.0f, 0.05f);
  f->brow_tilt = uni(&d, -0.12f, 0.2f);
  f->nose_y = f->eye_y + b * uni(&d, 0.32f, 0.42f);
  f->nose_w = a * uni(&d, 0.10f, 0.16f);
  f->mouth_y = f->nose_y + b * uni(&d, 0.17f, 0.24f);
  f->mouth_a = a * uni(&d, 0.27f, 0.37f);
  f->lip_top = b * uni(&d, 0.024f, 0.042f);
  f->lip_bot = b * uni(&d, 0.032f, 0.06f);
  f->mouth_droop = b * uni(&d, -0.015f, 0.02f);
  f->ear_y = f->eye_y + b * uni(&d, 0.08f, 0.16f);
  f->ear_a = a * uni(&d, 0.10f, 0.14f);
  f->ear_b = b * uni(&d, 0.15f, 0.21f);
  f->neck_w = a * uni(&d, 0.46f, 0.6f);
}

static void sample_colours(face_id *f, uint64_t seed, uint32_t identity) {
  draws d = draws_open(seed, identity, LFS_SYNTH_IDENTITY_IMAGE, LFS_SYNTH_WHAT_COLOUR);
  const float t = uni(&d, 0.0f, (float)(skin_tone_count - 1) - 1e-3f);
  const int i = (int)t;
  f->skin = mix(skin_tones[i], skin_tones[i + 1], t - (float)i);
  f->skin.r += nrm(&d, 5), f->skin.g += nrm(&d, 5), f->skin.b += nrm(&d, 5);
  f->lip = mix(times(f->skin, 0.82f), (rgbf){190, 70, 80}, uni(&d, 0.35f, 0.6f));
  f->iris = iris_colours[pick(&d, iris_weights, 6)];
  f->blush = uni(&d, 0.0f, 0.2f);
  f->shirt = random_colour(&d, 30, 230, 0.8f);
  f->background = random_colour(&d, 60, 220, 0.4f);
}

static void sample_hair(face_id *f, uint64_t seed, uint32_t identity) {
  draws d = draws_open(seed, identity, LFS_SYNTH_IDENTITY_IMAGE, LFS_SYNTH_WHAT_HAIR);
  f->hair_style = pick(&d, hair_style_weights, hair_style_count);
  int colour = pick(&d, hair_weights, 8);
  /* light hair is rare with dark skin */
  if (f->skin.r < 180 && (colour == 4 || colour == 5)) colour = 0;
  f->hair = hair_colours[colour];
  f->hair.r += nrm(&d, 6), f->hair.g += nrm(&d, 5), f->hair.b += nrm(&d, 4);
  f->brow = mix(f->hair, (rgbf){30, 24, 20}, uni(&d, 0.2f, 0.6f));
  f->hairline = f->face_cy - f->face_b * uni(&d, 0.45f, 0.68f);
  f->hair_curve = uni(&d, 0.1f, 0.9f);
  f->hair_tilt = chance(&d, 0.4f) ? uni(&d, -0.35f, 0.35f) : 0.0f;
  f->hair_volume = uni(&d, 0.03f, 0.12f);
  f->hair_length = uni(&d, 0.0f, 0.3f);
}

static void sample_extras(face_id *f, uint64_t seed, uint32_t identity) {
  draws d = draws_open(seed, identity, LFS_SYNTH_IDENTITY_IMAGE, LFS_SYNTH_WHAT_EXTRAS);
  f->beard = pick(&d, beard_weights, beard_count);
  f->beard_alpha = f->beard == BEARD_STUBBLE ? uni(&d, 0.2f, 0.35f) : uni(&d, 0.7f, 0.95f);
  f->beard_line = f->nose_y + f->face_b * uni(&d, 0.03f, 0.11f);
  f->glasses = chance(&d, 0.18f);
  static const rgbf frames[] = {{20, 20, 22}, {70, 50, 35}, {160, 160, 165}, {120, 30, 40}};
  f->frame = frames[(int)uni(&d, 0.0f, 3.999f)];
  f->lens_a = f->eye_a * uni(&d, 1.5f, 1.9f);
  f->lens_b = f->eye_b * uni(&d, 2.4f, 3.4f);
  f->lens_alpha = uni(&d, 0.05f, 0.3f);
  f->frame_width = f->face_b * uni(&d, 0.015f, 0.03f);
}

void lfs_synth_sample_identity(face_id *f, uint64_t seed, uint32_t identity) {
  sample_shape(f, seed, identity);
  sample_colours(f, seed, identity);
  sample_hair(f, seed, identity);
  sample_extras(f, seed, identity);
}

/* ---- per-image parameters ---- */

/* s = 2 * difficulty: 1 at the default difficulty 0.5; 0 gives every image of an
 * identity the same pose, light, expression and scene. */
static void sample_pose(face_view *v, float s, uint64_t seed, uint32_t identity, uint32_t image) {
  draws d = draws_open(seed, identity, image, LFS_SYNTH_WHAT_POSE);
  v->roll = nrm(&d, 0.09f * s);
  v->yaw = nrm(&d, 0.22f * s);
  v->pitch = nrm(&d, 0.10f * s);
  v->scale = expf(nrm(&d, 0.05f * s));
  v->tx = nrm(&d, 0.035f * s);
  v->ty = nrm(&d, 0.035f * s);
}

static void sample_light(face_view *v, float s, uint64_t seed, uint32_t identity, uint32_t image) {
  draws d = draws_open(seed, identity, image, LFS_SYNTH_WHAT_LIGHT);
  const float angle = uni(&d, 0.0f, 6.2831853f), reach = 0.9f * s * sqrtf(uni(&d, 0.0f, 1.0f));
  float l[3] = {-0.35f + reach * cosf(angle), -0.45f + reach * sinf(angle), 1.0f};
  const float n = sqrtf(l[0] * l[0] + l[1] * l[1] + l[2] * l[2]);
  for (int k = 0; k < 3; k++) v->light[k] = l[k] / n;
  v->diffuse = 0.5f + nrm(&d, 0.12f * s);
  v->ambient = 0.55f + nrm(&d, 0.08f * s);
  const float exposure = expf(nrm(&d, 0.12f * s));
  v->gain = (rgbf){exposure * expf(nrm(&d, 0.05f * s)), exposure * expf(nrm(&d, 0.03f * s)),
                   exposure * expf(nrm(&d, 0.05f * s))};
  v->contrast = expf(nrm(&d, 0.1f * s));
}

static void sample_expression(face_view *v, float s, uint64_t seed, uint32_t identity,
                              uint32_t image) {
  draws d = draws_open(seed, identity, image, LFS_SYNTH_WHAT_EXPRESSION);
  v->smile = nrm(&d, 0.6f * s);
  const float open = nrm(&d, 1.0f);
  v->open = chance(&d, 0.3f * s) ? 0.025f * s * fabsf(open) : 0.0f;
  v->brow_raise = nrm(&d, 0.018f * s);
  v->eye_open = chance(&d, 0.04f * s) ? 0.08f : 1.0f - uni(&d, 0.0f, 0.2f * s);
  v->gaze_x = nrm(&d, 0.45f * s);
  v->gaze_y = nrm(&d, 0.25f * s);
}

static void sample_scene(face_view *v, const face_id *f, float s, uint64_t seed, uint32_t identity,
                         uint32_t image) {
  draws d = draws_open(seed, identity, image, LFS_SYNTH_WHAT_SCENE);
  const float w = clampf(s, 0.0f, 1.0f);
  v->bg0 = mix(f->background, random_colour(&d, 40, 230, 0.45f), w);
  v->bg1 = mix(times(f->background, 0.8f), random_colour(&d, 40, 230, 0.45f), w);
  v->bg_angle = uni(&d, 0.0f, 6.2831853f) * w;
  v->blob_colour = random_colour(&d, 30, 240, 0.6f);
  v->blob_x = uni(&d, -1.0f, 1.0f), v->blob_y = uni(&d, -1.0f, 1.0f);
  v->blob_a = uni(&d, 0.15f, 0.6f) * w, v->blob_b = uni(&d, 0.15f, 0.6f) * w;
  v->shirt = mix(f->shirt, random_colour(&d, 30, 230, 0.8f), w);
  v->noise = s * uni(&d, 1.0f, 7.0f);
}

static void sample_occluder(face_view *v, const face_id *f, float difficulty, uint64_t seed,
                            uint32_t identity, uint32_t image) {
  draws d = draws_open(seed, identity, image, LFS_SYNTH_WHAT_OCCLUSION);
  /* about 10% of the images at the default difficulty */
  v->occluder = chance(&d, 0.2f * difficulty) ? 1 + (int)uni(&d, 0.0f, 3.999f) : OCCLUDE_NONE;
  v->occ_colour = random_colour(&d, 20, 235, 0.7f);
  v->occ_angle = nrm(&d, 0.25f);
  v->occ_x = v->occ_y = v->occ_a = v->occ_b = 0;
  switch (v->occluder) {
  case OCCLUDE_MASK: /* scarf or mask over mouth and nose */
    v->occ_x = 0, v->occ_y = f->mouth_y + nrm(&d, 0.05f);
    v->occ_a = 1.2f, v->occ_b = uni(&d, 0.12f, 0.26f);
    break;
  case OCCLUDE_BLOB: /* a hand or object somewhere in front of the face */
    v->occ_x = uni(&d, -0.6f, 0.6f), v->occ_y = uni(&d, -0.4f, 0.8f);
    v->occ_a = uni(&d, 0.12f, 0.32f), v->occ_b = uni(&d, 0.12f, 0.32f);
    if (chance(&d, 0.5f)) v->occ_colour = times(f->skin, uni(&d, 0.8f, 1.05f));
    break;
  case OCCLUDE_BAR: /* a microphone, pole or strand crossing the image */
    v->occ_x = uni(&d, -0.5f, 0.5f), v->occ_y = uni(&d, -0.3f, 0.5f);
    v->occ_a = 1.6f, v->occ_b = uni(&d, 0.04f, 0.1f);
    v->occ_angle = uni(&d, 0.0f, 3.14159265f);
    break;
  case OCCLUDE_SHADES: /* dark glasses */
    v->occ_x = 0, v->occ_y = f->eye_y;
    v->occ_a = f->face_a * 0.92f, v->occ_b = f->eye_b * uni(&d, 2.2f, 3.0f);
    v->occ_colour = times(v->occ_colour, 0.2f);
    v->occ_angle = 0;
    break;
  }
}

void lfs_synth_sample_view(face_view *v, const face_id *f, float difficulty, uint64_t seed,
                           uint32_t identity, uint32_t image) {
  const float s = 2.0f * difficulty;
  sample_pose(v, s, seed, identity, image);
  sample_light(v, s, seed, identity, image);
  sample_expression(v, s, seed, identity, image);
  sample_scene(v, f, s, seed, identity, image);
  sample_occluder(v, f, difficulty, seed, identity, image);
}
