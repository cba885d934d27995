/* image.c: JPEG (libjpeg-turbo, libjpeg API) and PNG (libpng simplified API)
 * decoding from memory into RGB uint8 [h, w, 3], bilinear resizing, PNG
 * writing and JPEG encoding. Decoders treat their input as hostile: errors
 * unwind through setjmp instead of libjpeg's default exit(). */
#include "lfs/image.h"

#include <setjmp.h>
#include <stdio.h> /* before jpeglib.h, which uses FILE */
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <png.h>

#include "lfs/fileio.h"

/* Larger images are refused before any allocation (a corrupt header can claim anything). */
#define LFS_IMAGE_MAX_SIDE 16384

lfs_image_kind lfs_image_sniff(const uint8_t *data, size_t size) {
  static const uint8_t png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (size >= 3 && data[0] == 0xff && data[1] == 0xd8 && data[2] == 0xff) return LFS_IMAGE_JPEG;
  if (size >= 8 && memcmp(data, png_magic, 8) == 0) return LFS_IMAGE_PNG;
  return LFS_IMAGE_UNKNOWN;
}

typedef struct {
  struct jpeg_error_mgr base;
  jmp_buf escape;
  char message[JMSG_LENGTH_MAX];
} jpeg_guard;

static void jpeg_fail(j_common_ptr cinfo) {
  jpeg_guard *g = (jpeg_guard *)cinfo->err;
  g->base.format_message(cinfo, g->message);
  longjmp(g->escape, 1);
}

/* Corrupt-data warnings (e.g. premature end of data) are errors for us. */
static void jpeg_warn(j_common_ptr cinfo, int level) {
  if (level < 0) jpeg_fail(cinfo);
}

static int decode_jpeg(const uint8_t *data, size_t size, uint8_t **rgb, int *h, int *w, char *err,
                       size_t errlen) {
  struct jpeg_decompress_struct cinfo;
  jpeg_guard guard;
  uint8_t *volatile pixels = NULL;
  cinfo.err = jpeg_std_error(&guard.base);
  guard.base.error_exit = jpeg_fail;
  guard.base.emit_message = jpeg_warn;
  if (setjmp(guard.escape)) {
    snprintf(err, errlen, "corrupt JPEG: %s", guard.message);
    jpeg_destroy_decompress(&cinfo);
    free(pixels);
    return -1;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, data, (unsigned long)size);
  jpeg_read_header(&cinfo, TRUE);
  /* before jpeg_start_decompress, which sizes its buffers (whole-image ones for
   * progressive files) from the header */
  if (cinfo.image_width > LFS_IMAGE_MAX_SIDE || cinfo.image_height > LFS_IMAGE_MAX_SIDE) {
    snprintf(err, errlen, "unsupported JPEG: %ux%u", cinfo.image_width, cinfo.image_height);
    jpeg_destroy_decompress(&cinfo);
    return -1;
  }
  cinfo.out_color_space = JCS_RGB;
  jpeg_start_decompress(&cinfo);
  if (cinfo.output_width > LFS_IMAGE_MAX_SIDE || cinfo.output_height > LFS_IMAGE_MAX_SIDE ||
      cinfo.output_components != 3) {
    snprintf(err, errlen, "unsupported JPEG: %ux%u with %d components", cinfo.output_width,
             cinfo.output_height, cinfo.output_components);
    jpeg_destroy_decompress(&cinfo);
    return -1;
  }
  const size_t row = (size_t)cinfo.output_width * 3;
  pixels = malloc(row * cinfo.output_height);
  if (!pixels) {
    snprintf(err, errlen, "out of memory for a %ux%u JPEG", cinfo.output_width, cinfo.output_height);
    jpeg_destroy_decompress(&cinfo);
    return -1;
  }
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW line = pixels + row * cinfo.output_scanline;
    jpeg_read_scanlines(&cinfo, &line, 1);
  }
  jpeg_finish_decompress(&cinfo);
  *h = (int)cinfo.output_height;
  *w = (int)cinfo.output_width;
  jpeg_destroy_decompress(&cinfo);
  *rgb = pixels;
  return 0;
}

static int decode_png(const uint8_t *data, size_t size, uint8_t **rgb, int *h, int *w, char *err,
                      size_t errlen) {
  png_image img;
  memset(&img, 0, sizeof img);
  img.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_memory(&img, data, size)) {
    snprintf(err, errlen, "corrupt PNG: %s", img.message);
    return -1;
  }
  if (img.width > LFS_IMAGE_MAX_SIDE || img.height > LFS_IMAGE_MAX_SIDE) {
    snprintf(err, errlen, "unsupported PNG: %ux%u", img.width, img.height);
    png_image_free(&img);
    return -1;
  }
  /* For RGB output from an image with alpha, libpng composites onto whatever the
   * buffer held (uninitialised memory here); read RGBA and drop the alpha instead. */
  const int alpha = (img.format & PNG_FORMAT_FLAG_ALPHA) != 0;
  img.format = alpha ? PNG_FORMAT_RGBA : PNG_FORMAT_RGB;
  uint8_t *pixels = malloc(PNG_IMAGE_SIZE(img));
  if (!pixels) {
    snprintf(err, errlen, "out of memory for a %ux%u PNG", img.width, img.height);
    png_image_free(&img);
    return -1;
  }
  if (!png_image_finish_read(&img, NULL, pixels, 0, NULL)) {
    snprintf(err, errlen, "corrupt PNG: %s", img.message);
    free(pixels);
    png_image_free(&img);
    return -1;
  }
  if (alpha) {
    const size_t n = (size_t)img.width * img.height;
    for (size_t i = 0; i < n; i++) memmove(pixels + 3 * i, pixels + 4 * i, 3);
  }
  *h = (int)img.height;
  *w = (int)img.width;
  *rgb = pixels;
  return 0;
}

int lfs_image_decode(const uint8_t *data, size_t size, uint8_t **rgb, int *h, int *w, char *err,
                     size_t errlen) {
  switch (lfs_image_sniff(data, size)) {
    case LFS_IMAGE_JPEG:
      return decode_jpeg(data, size, rgb, h, w, err, errlen);
    case LFS_IMAGE_PNG:
      return decode_png(data, size, rgb, h, w, err, errlen);
    default:
      snprintf(err, errlen, "not a JPEG or PNG image (%zu bytes)", size);
      return -1;
  }
}

int lfs_image_load(const char *path, uint8_t **rgb, int *h, int *w, char *err, size_t errlen) {
  uint8_t *buf = NULL;
  size_t cap = 0, size = 0;
  int rc = lfs_read_file(path, &buf, &cap, &size, err, errlen);
  char why[256];
  if (rc == 0 && (rc = lfs_image_decode(buf, size, rgb, h, w, why, sizeof why)) != 0)
    snprintf(err, errlen, "%s: %s", path, why);
  free(buf);
  return rc;
}

void lfs_image_resize(uint8_t *dst, int dh, int dw, const uint8_t *src, int sh, int sw) {
  const float sy = (float)sh / dh, sx = (float)sw / dw;
  for (int y = 0; y < dh; y++) {
    float fy = (y + 0.5f) * sy - 0.5f;
    if (fy < 0) fy = 0;
    int y0 = (int)fy;
    if (y0 > sh - 1) y0 = sh - 1;
    const int y1 = y0 + 1 < sh ? y0 + 1 : sh - 1;
    const float wy = fy - y0;
    for (int x = 0; x < dw; x++) {
      float fx = (x + 0.5f) * sx - 0.5f;
      if (fx < 0) fx = 0;
      int x0 = (int)fx;
      if (x0 > sw - 1) x0 = sw - 1;
      const int x1 = x0 + 1 < sw ? x0 + 1 : sw - 1;
      const float wx = fx - x0;
      for (int c = 0; c < 3; c++) {
        const float top = src[((size_t)y0 * sw + x0) * 3 + c] * (1 - wx) + src[((size_t)y0 * sw + x1) * 3 + c] * wx;
        const float bot = src[((size_t)y1 * sw + x0) * 3 + c] * (1 - wx) + src[((size_t)y1 * sw + x1) * 3 + c] * wx;
        dst[((size_t)y * dw + x) * 3 + c] = (uint8_t)(top * (1 - wy) + bot * wy + 0.5f);
      }
    }
  }
}

int lfs_image_write_png(const char *path, const uint8_t *rgb, int h, int w, char *err,
                        size_t errlen) {
  png_image img;
  memset(&img, 0, sizeof img);
  img.version = PNG_IMAGE_VERSION;
  img.width = (png_uint_32)w;
  img.height = (png_uint_32)h;
  img.format = PNG_FORMAT_RGB;
  if (!png_image_write_to_file(&img, path, 0, rgb, 0, NULL)) {
    snprintf(err, errlen, "%s: cannot write PNG: %s", path, img.message);
    return -1;
  }
  return 0;
}

int lfs_image_encode_jpeg(const uint8_t *rgb, int h, int w, int quality, uint8_t **out,
                          size_t *size, char *err, size_t errlen) {
  struct jpeg_compress_struct cinfo;
  jpeg_guard guard;
  unsigned long len = 0;
  cinfo.err = jpeg_std_error(&guard.base);
  guard.base.error_exit = jpeg_fail;
  if (setjmp(guard.escape)) {
    snprintf(err, errlen, "JPEG encoding failed: %s", guard.message);
    jpeg_destroy_compress(&cinfo);
    return -1;
  }
  jpeg_create_compress(&cinfo);
  unsigned char *mem = NULL;
  jpeg_mem_dest(&cinfo, &mem, &len);
  cinfo.image_width = (JDIMENSION)w;
  cinfo.image_height = (JDIMENSION)h;
  cinfo.input_components = 3;
  cinfo.in_color_space = JCS_RGB;
  jpeg_set_defaults(&cinfo);
  jpeg_set_quality(&cinfo, quality, TRUE);
  jpeg_start_compress(&cinfo, TRUE);
  while (cinfo.next_scanline < cinfo.image_height) {
    JSAMPROW line = (JSAMPROW)(rgb + (size_t)cinfo.next_scanline * w * 3);
    jpeg_write_scanlines(&cinfo, &line, 1);
  }
  jpeg_finish_compress(&cinfo);
  jpeg_destroy_compress(&cinfo);
  *out = mem;
  *size = len;
  return 0;
}
