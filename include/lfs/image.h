/* image.h: decoding, resizing and writing RGB images (uint8 [h, w, 3], row-major). */
#ifndef LFS_IMAGE_H
#define LFS_IMAGE_H

#include <stddef.h>
#include <stdint.h>

typedef enum { LFS_IMAGE_UNKNOWN = 0, LFS_IMAGE_JPEG, LFS_IMAGE_PNG } lfs_image_kind;

/* What the first bytes say the data is. */
lfs_image_kind lfs_image_sniff(const uint8_t *data, size_t size);
/* Decodes a JPEG or PNG held in memory (greyscale and palette images become RGB,
 * alpha is dropped) into a malloc'ed rgb [h, w, 3]. -1 with a reason on corrupt,
 * truncated or unsupported data; never aborts on bad input. */
int lfs_image_decode(const uint8_t *data, size_t size, uint8_t **rgb, int *h, int *w, char *err,
                     size_t errlen);
/* Reads and decodes a file. */
int lfs_image_load(const char *path, uint8_t **rgb, int *h, int *w, char *err, size_t errlen);
/* Bilinear resize (pixel centres aligned, as OpenCV's INTER_LINEAR):
 * dst [dh, dw, 3] from src [sh, sw, 3]. */
void lfs_image_resize(uint8_t *dst, int dh, int dw, const uint8_t *src, int sh, int sw);
/* Writes rgb [h, w, 3] as a PNG file. */
int lfs_image_write_png(const char *path, const uint8_t *rgb, int h, int w, char *err,
                        size_t errlen);
/* Encodes rgb [h, w, 3] as JPEG (quality 1..100) into a malloc'ed buffer. */
int lfs_image_encode_jpeg(const uint8_t *rgb, int h, int w, int quality, uint8_t **out,
                          size_t *size, char *err, size_t errlen);

#endif
