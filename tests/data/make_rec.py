#!/usr/bin/python3
"""make_rec.py: writes a small insightface-style MXNet RecordIO dataset
(PREFIX.rec, PREFIX.idx) with the Python standard library only.

Usage: make_rec.py PREFIX [options] IMAGE:LABEL ...

Record layout (what MXNet's recordio.pack and dmlc's RecordIOWriter write):
uint32 magic 0xced7230a, uint32 (cflag << 29 | length), payload, zero padding
to 4 bytes; the payload is IRHeader (uint32 flag, float32 label, uint64 id,
uint64 id2), `flag` float32 labels if flag > 0, then the image file's bytes.
A payload containing the magic at a 4-aligned position is split there into
parts (cflag 1 first, 2 middle, 3 last) and the magic itself is dropped.

Options:
  --header          record 0 is insightface's header (flag 2, labels
                    [n + 1, n + 1 + identities]) and identity records
                    (flag 2, labels [first key, end key]) follow the images
  --label-array     image records carry flag 2 and labels [label, 0]
  --split           put the magic into every record's id and id2 fields, so each
                    record is written in three parts
  --no-idx          write no .idx file
  --property TEXT   write TEXT into a `property` file beside PREFIX.rec
  --bad-magic K     corrupt the magic of the record with key K
  --bad-image K     overwrite the middle of record K's image with garbage
  --label K=V       give record K the float label V instead
  --truncate N      cut the last N bytes off the .rec file
Prints one line per image record: key, byte offset, label, image file.
"""
import argparse
import os
import struct

MAGIC = 0xCED7230A


def pack_parts(payload):
    """The on-disk bytes of one logical record (split where the magic occurs)."""
    magic = struct.pack("<I", MAGIC)
    cuts = [i for i in range(0, len(payload) - 3, 4) if payload[i:i + 4] == magic]
    pieces, start = [], 0
    for i in cuts:
        pieces.append(payload[start:i])
        start = i + 4
    pieces.append(payload[start:])
    out = b""
    for n, piece in enumerate(pieces):
        if len(pieces) == 1:
            cflag = 0
        else:
            cflag = 1 if n == 0 else (3 if n == len(pieces) - 1 else 2)
        out += magic + struct.pack("<I", cflag << 29 | len(piece)) + piece
        out += b"\0" * (-len(piece) % 4)
    return out


def irheader(flag, label, ident, ident2, labels=()):
    head = struct.pack("<IfQQ", flag, label, ident, ident2)
    return head + b"".join(struct.pack("<f", v) for v in labels)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("prefix")
    ap.add_argument("images", nargs="+")
    ap.add_argument("--header", action="store_true")
    ap.add_argument("--label-array", action="store_true")
    ap.add_argument("--split", action="store_true")
    ap.add_argument("--no-idx", action="store_true")
    ap.add_argument("--property")
    ap.add_argument("--bad-magic", type=int, action="append", default=[])
    ap.add_argument("--bad-image", type=int, action="append", default=[])
    ap.add_argument("--label", action="append", default=[])
    ap.add_argument("--truncate", type=int, default=0)
    a = ap.parse_args()

    items = []
    for spec in a.images:
        path, label = spec.rsplit(":", 1)
        with open(path, "rb") as f:
            items.append((path, float(label), f.read()))
    overrides = {int(k): float(v) for k, v in (s.split("=", 1) for s in a.label)}

    first = 1 if a.header else 0
    records = []  # (key, payload, label, path)
    for n, (path, label, data) in enumerate(items):
        key = first + n
        label = overrides.get(key, label)
        ident = ident2 = key
        if a.split:
            ident = ident2 = MAGIC | MAGIC << 32
        if key in a.bad_image:
            mid = len(data) // 2
            data = data[:mid] + bytes((7 * i + 3) % 256 for i in range(64)) + data[mid + 64:]
        if a.label_array:
            payload = irheader(2, 0.0, ident, ident2, (label, 0.0)) + data
        else:
            payload = irheader(0, label, ident, ident2) + data
        records.append((key, payload, label, path))
    if a.header:
        ids = sorted({int(r[2]) for r in records})
        n = len(records)
        head = irheader(2, 0.0, 0, 0, (n + 1, n + 1 + len(ids)))
        records.insert(0, (0, head, None, None))
        for j, ident in enumerate(ids):
            keys = [r[0] for r in records if r[2] is not None and int(r[2]) == ident]
            records.append((n + 1 + j, irheader(2, 0.0, 0, 0, (min(keys), max(keys) + 1)),
                            None, None))

    blob, idx, lines = b"", "", []
    for key, payload, label, path in records:
        raw = pack_parts(payload)
        if key in a.bad_magic:
            raw = b"\x0b\xad\xf0\x0d" + raw[4:]
        idx += f"{key}\t{len(blob)}\n"
        if label is not None:
            lines.append(f"{key} {len(blob)} {label:g} {path}")
        blob += raw
    if a.truncate:
        blob = blob[:-a.truncate]
    with open(a.prefix + ".rec", "wb") as f:
        f.write(blob)
    if not a.no_idx:
        with open(a.prefix + ".idx", "w") as f:
            f.write(idx)
    if a.property is not None:
        with open(os.path.join(os.path.dirname(os.path.abspath(a.prefix)), "property"), "w") as f:
            f.write(a.property + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
