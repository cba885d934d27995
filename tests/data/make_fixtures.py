#!/usr/bin/python3
"""make_fixtures.py: writes the tiny committed test images in tests/data/img/.

Needs Pillow, so it is run by hand on a developer machine and its output is
committed; the tests themselves use only the standard library. Pixel values
follow formulas that tests/unit/test_image.c recomputes, so lossless images
are checked exactly and JPEGs within a tolerance:
  rgb(y, x, id) = ((x * 16 + id * 40) % 256, (y * 16 + id * 70) % 256, (x * y * 4 + id * 90) % 256)
  grey(y, x)    = (x * 13 + y * 7) % 256
  idA_k.jpg     rgb(y, x, A + 4 k) (JPEG q92); idA_k.png likewise for A = 3, as PNG
  progressive.jpg  rgb(y, x, 0) as a progressive JPEG; big.jpg rgb(y, x, 5), 24x20
  palette.png   index (x + y) % 16 into palette[i] = (16 i, 255 - 16 i, 37 i % 256)
  rgba.png      rgb(y, x, 1) with alpha 255, except row 0: alpha 0 (even x) or 128 (odd x)
Usage: make_fixtures.py [OUTDIR]   (default: img/ beside this script)
"""
import os
import sys

from PIL import Image


def rgb(h, w, ident):
    img = Image.new("RGB", (w, h))
    img.putdata([((x * 16 + ident * 40) % 256, (y * 16 + ident * 70) % 256,
                  (x * y * 4 + ident * 90) % 256) for y in range(h) for x in range(w)])
    return img


def grey(h, w):
    img = Image.new("L", (w, h))
    img.putdata([(x * 13 + y * 7) % 256 for y in range(h) for x in range(w)])
    return img


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "img")
    os.makedirs(out, exist_ok=True)
    # identities 0..2, two JPEGs each; identity 3 as PNG (lossless)
    for ident in range(3):
        for k in range(2):
            rgb(16, 16, ident + 4 * k).save(os.path.join(out, f"id{ident}_{k}.jpg"), quality=92)
    rgb(16, 16, 3).save(os.path.join(out, "id3_0.png"))
    rgb(16, 16, 7).save(os.path.join(out, "id3_1.png"))
    rgb(24, 20, 5).save(os.path.join(out, "big.jpg"), quality=92)          # another size
    rgb(16, 16, 0).save(os.path.join(out, "progressive.jpg"), quality=92, progressive=True)
    grey(16, 16).save(os.path.join(out, "grey.jpg"), quality=95)
    grey(16, 16).save(os.path.join(out, "grey.png"))
    pal = Image.new("P", (16, 16))  # index (x + y) % 16 into palette[i] = (16i, 255 - 16i, 37i % 256)
    pal.putpalette([v for i in range(16) for v in (16 * i, 255 - 16 * i, 37 * i % 256)])
    pal.putdata([(x + y) % 16 for y in range(16) for x in range(16)])
    pal.save(os.path.join(out, "palette.png"))
    rgba = rgb(16, 16, 1).convert("RGBA")
    rgba.putalpha(Image.new("L", (16, 16), 255))
    a = rgba.load()
    for x in range(16):  # row 0: transparent and half-transparent pixels
        r, g, b, _ = a[x, 0]
        a[x, 0] = (r, g, b, 0 if x % 2 == 0 else 128)
    rgba.save(os.path.join(out, "rgba.png"))


if __name__ == "__main__":
    main()
