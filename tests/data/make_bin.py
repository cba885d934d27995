#!/usr/bin/python3
"""make_bin.py: writes an insightface-style verification file (a pickle of
(list of encoded images, list of bools)) with the Python standard library only.

Usage: make_bin.py OUT.bin --issame 1,0,... [options] IMAGE ...   (2 images per pair)

Forms (--form):
  py2        protocol 2 as Python 2's cPickle writes it: images as `str`
             (SHORT_BINSTRING / BINSTRING), BINPUT after every object, APPENDS
             in batches of 1000 (APPEND for a batch of one). Written opcode by
             opcode, since Python 3 cannot produce `str` pickles.
  p2 p3 p4 p5
             Python 3's own pickle.dumps of bytes items at that protocol (protocol
             2 writes bytes as _codecs.encode(text, "latin1")).
  numpy2 numpy4 numpy5
             the opcodes numpy writes for 1-D uint8 arrays of the encoded bytes
             and numpy bool scalars (protocols 2, 4 and 5), written by hand so
             that numpy is not needed.
  numpy-issame
             bytes images and issame as one numpy bool array (protocol 4).
Corruptions: --bad-opcode (a DICT opcode where the issame list starts),
--truncate N (cut N bytes), --bad-image I (garbage in the middle of image I),
--count-mismatch (one image too many).
"""
import argparse
import pickle
import struct


def op_binput(n):
    return b"q" + bytes([n]) if n < 256 else b"r" + struct.pack("<I", n)


class Py2Writer:
    """Python 2 cPickle protocol 2 for tuples, lists, str and bools."""

    def __init__(self):
        self.out = bytearray(b"\x80\x02")
        self.memo = 0

    def put(self):
        self.out += op_binput(self.memo)
        self.memo += 1

    def string(self, data):
        if len(data) < 256:
            self.out += b"U" + bytes([len(data)]) + data
        else:
            self.out += b"T" + struct.pack("<i", len(data)) + data
        self.put()

    def lst(self, items, write_item):
        self.out += b"]"
        self.put()
        for start in range(0, len(items), 1000):
            batch = items[start:start + 1000]
            if len(batch) == 1:
                write_item(batch[0])
                self.out += b"a"
                continue
            self.out += b"("
            for item in batch:
                write_item(item)
            self.out += b"e"

    def boolean(self, v):
        self.out += b"\x88" if v else b"\x89"


def py2_pickle(images, issame, bad_opcode):
    w = Py2Writer()
    w.lst(images, w.string)
    if bad_opcode:
        w.out += b"}"  # EMPTY_DICT: a real opcode, but not one these files use
    w.lst(issame, w.boolean)
    w.out += b"\x86"
    w.put()
    w.out += b"."
    return bytes(w.out)


def short_unicode(s):
    b = s.encode()
    return b"\x8c" + bytes([len(b)]) + b


def unicode_(s):
    b = s.encode("utf-8")
    return b"X" + struct.pack("<I", len(b)) + b


def bytes_op(b):
    return (b"C" + bytes([len(b)]) if len(b) < 256 else b"B" + struct.pack("<I", len(b))) + b


def int_op(n):
    if n < 256:
        return b"K" + bytes([n])
    return b"M" + struct.pack("<H", n) if n < 65536 else b"J" + struct.pack("<i", n)


def numpy_pickle(images, issame, protocol):
    """numpy's reduce forms, as in numpy 1.x (see module docstring)."""
    if protocol == 2:
        glob = lambda mod, name: b"c" + mod.encode() + b"\n" + name.encode() + b"\n"
        text = unicode_
        raw = lambda b: (b"c_codecs\nencode\n" + unicode_(b.decode("latin1")) +
                         unicode_("latin1") + b"\x86R")
    else:
        glob = lambda mod, name: short_unicode(mod) + short_unicode(name) + b"\x93"
        text = short_unicode
        raw = bytes_op
    state = b"(K\x03" + text("|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
    dtype = lambda code: glob("numpy", "dtype") + text(code) + b"\x89\x88\x87R" + state
    out = bytearray(b"\x80" + bytes([protocol]) + b"]")
    for img in images:
        if protocol == 5:  # _frombuffer(bytearray, dtype, shape, order)
            out += glob("numpy.core.numeric", "_frombuffer")
            out += b"(\x96" + struct.pack("<Q", len(img)) + img
            out += dtype("u1") + int_op(len(img)) + b"\x85" + text("C") + b"tR"
        else:  # _reconstruct(ndarray, (0,), b"b") then BUILD (1, shape, dtype, False, raw)
            out += glob("numpy.core.multiarray", "_reconstruct") + glob("numpy", "ndarray")
            out += b"K\x00\x85" + raw(b"b") + b"\x87R"
            out += b"(K\x01" + int_op(len(img)) + b"\x85"
            out += dtype("u1") + b"\x89" + raw(img) + b"tb"
        out += b"a"
    out += b"]"
    for v in issame:
        out += glob("numpy.core.multiarray", "scalar") + dtype("b1") + raw(bytes([int(v)]))
        out += b"\x86Ra"
    out += b"\x86."
    return bytes(out)


def numpy_issame_pickle(images, issame):
    out = bytearray(b"\x80\x04]")
    for img in images:
        out += bytes_op(img) + b"a"
    glob = lambda mod, name: short_unicode(mod) + short_unicode(name) + b"\x93"
    state = b"(K\x03" + short_unicode("|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
    out += glob("numpy.core.multiarray", "_reconstruct") + glob("numpy", "ndarray")
    out += b"K\x00\x85" + bytes_op(b"b") + b"\x87R"
    out += b"(K\x01M" + struct.pack("<H", len(issame)) + b"\x85"
    out += glob("numpy", "dtype") + short_unicode("b1") + b"\x89\x88\x87R" + state
    out += b"\x89" + bytes_op(bytes(int(v) for v in issame)) + b"tb"
    out += b"\x86."
    return bytes(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("images", nargs="+")
    ap.add_argument("--issame", required=True)
    ap.add_argument("--form", default="py2",
                    choices=["py2", "p2", "p3", "p4", "p5", "numpy2", "numpy4", "numpy5",
                             "numpy-issame"])
    ap.add_argument("--bad-opcode", action="store_true")
    ap.add_argument("--truncate", type=int, default=0)
    ap.add_argument("--bad-image", type=int, action="append", default=[])
    ap.add_argument("--count-mismatch", action="store_true")
    a = ap.parse_args()

    images = []
    for n, path in enumerate(a.images):
        with open(path, "rb") as f:
            data = f.read()
        if n in a.bad_image:
            mid = len(data) // 2
            data = data[:mid] + bytes((7 * i + 3) % 256 for i in range(64)) + data[mid + 64:]
        images.append(data)
    if a.count_mismatch:
        images.append(images[0])
    issame = [s == "1" for s in a.issame.split(",")]

    if a.form == "py2":
        blob = py2_pickle(images, issame, a.bad_opcode)
    elif a.form.startswith("numpy-"):
        blob = numpy_issame_pickle(images, issame)
    elif a.form.startswith("numpy"):
        blob = numpy_pickle(images, issame, int(a.form[5:]))
    else:
        blob = pickle.dumps((images, issame), protocol=int(a.form[1:]))
    if a.bad_opcode and a.form != "py2":
        raise SystemExit("--bad-opcode is for --form py2")
    if a.truncate:
        blob = blob[:-a.truncate]
    with open(a.out, "wb") as f:
        f.write(blob)


if __name__ == "__main__":
    main()
