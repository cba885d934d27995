#!/bin/bash
# `lfsearch info FILE...`: describes a dataset and pair sets written by
# `lfsearch synth` (and `bench --loader` on it), a manifest of shards written by `lfsearch pack`, several
# files at once and under MPI; a file that is not HDF5, missing, truncated or
# of another kind is an input error (exit 2) naming the file, with no HDF5
# diagnostics. `info` without files still describes the build.
source "$(dirname "$0")/common.sh"

no_hdf5_noise() { grep -q "HDF5-DIAG" <<<"$out" && { echo "$out" >&2; fail "HDF5 printed diagnostics"; }; true; }

run 0 "$LFSEARCH" synth --out data --identities 20 --images-per-identity 3 --size 16 --seed 1 \
  --val-pairs 100 --test-pairs 50 --threads 1
run 0 "$LFSEARCH" info data/train.h5
expect "data/train.h5"
expect "format       : lfsearch-dataset, version 1"
expect "images       : 60"
expect "identities   : 20 (num_classes), 20 with images"
expect "image size   : 16x16 RGB uint8"
expect "labels       : 0..19"
expect "shards       : 1"
expect_re "^  chunk        : [0-9]+ images$"
expect_re "^  source       : .*synth"
ok "info describes a synth dataset: counts, identities, size, labels, shards, source"

run 0 "$LFSEARCH" info data/val_pairs.h5
expect "format       : lfsearch-pairs, version 1"
expect "name         : synth_val"
expect "pairs        : 100 (50 genuine, 50 impostor)"
expect "images       : 200"
expect "image size   : 16x16 RGB uint8"
ok "info describes a pair set: name, genuine and impostor counts"

run 0 "$LFSEARCH" bench --loader data/train.h5 --batch 8 --steps 4 --threads 1
expect "loader data/train.h5: 16x16 images, global batch 8"
expect_re '^  synchronous +0 +[0-9.]+ +[0-9.]+$'; expect_re '^  prefetch 2 +0 +[0-9.]+ +[0-9.]+$'
ok "bench --loader times the loader on the synth dataset"
run 2 "$LFSEARCH" bench --loader data/missing.h5
expect "data/missing.h5"; ok "bench --loader names a missing dataset"

run 0 "$LFSEARCH" info data/train.h5 data/test_pairs.h5
expect "images       : 60"; expect "name         : synth_test"
expect "pairs        : 50 (25 genuine, 25 impostor)"
expect_count "CUDA backend" 0
ok "info describes several files in order, without the build description"

# a manifest: `pack` splits 4 identities x 3 PNG images into shards of 5
/usr/bin/python3 - <<'EOF' || fail "could not write the PNG images"
import os, struct, zlib
def png(path, w, h, rgb):
    raw = b"".join(b"\0" + rgb[y * w * 3:(y + 1) * w * 3] for y in range(h))
    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
for ident in range(4):
    os.makedirs("faces/person%d" % ident, exist_ok=True)
    for k in range(3):
        png("faces/person%d/%d.png" % (ident, k), 16, 16, bytes((ident * 50 + k * 7 + i) % 256 for i in range(16 * 16 * 3)))
EOF
run 0 "$LFSEARCH" pack --from folder faces --out packed.h5 --shard-size 5 --threads 1 --quiet
run 0 "$LFSEARCH" info packed.h5
expect "format       : lfsearch-manifest, version 1"
expect "images       : 12"
expect "identities   : 4 (num_classes), 4 with images"
expect "labels       : 0..3"
expect "shards       : 3"
expect_re "^    shard 0: (\./)?packed-00000\.h5: 5 images, labels [0-3]\.\.[0-3]$"
expect_re "^    shard 1: (\./)?packed-00001\.h5: 5 images, labels [0-3]\.\.[0-3]$"
expect_re "^    shard 2: (\./)?packed-00002\.h5: 2 images, labels [0-3]\.\.[0-3]$"
ok "info describes a manifest and each of its shards"
mv packed-00001.h5 moved.h5
run 2 "$LFSEARCH" info packed.h5
expect "packed.h5: shard 1: packed-00001.h5: cannot open: No such file or directory"; no_hdf5_noise
mv moved.h5 packed-00001.h5
ok "a manifest whose shard is missing is exit 2, naming manifest and shard"

run 0 "$MPIEXEC" -n 2 "$LFSEARCH" info data/val_pairs.h5
expect_count "name         : synth_val" 1
ok "under MPI the description is printed once"

# bad files
printf 'just text\n' > notes.h5
run 2 "$LFSEARCH" info notes.h5
expect "notes.h5: not an HDF5 file"; no_hdf5_noise
ok "a file that is not HDF5 is exit 2, named"
run 2 "$LFSEARCH" info nothere.h5
expect "nothere.h5: cannot open: No such file or directory"; no_hdf5_noise
ok "a missing file is exit 2, named"
size=$(stat -c %s data/train.h5)
head -c $((size / 2)) data/train.h5 > cut.h5
run 2 "$LFSEARCH" info cut.h5
expect "cut.h5: "; expect "truncated or corrupt"; no_hdf5_noise
ok "a truncated file is exit 2, named"
run 2 "$LFSEARCH" info data/train.h5 nothere.h5
expect "images       : 60"; expect "nothere.h5: cannot open"
ok "a bad file after a good one: the good one is described, then exit 2"
run 2 "$MPIEXEC" -n 2 "$LFSEARCH" info notes.h5
expect_count "notes.h5: not an HDF5 file" 1
ok "under MPI a bad file is reported once, exit 2"

run 0 "$LFSEARCH" info
expect "CUDA backend :"; expect "NCCL         :"; expect "MPI ranks    : 1"
run 0 "$LFSEARCH" info --help
expect "FILE"
run 2 "$LFSEARCH" info --bogus data/train.h5
expect 'unknown option "--bogus"'
ok "info without files, --help and unknown options are unchanged"
echo "$checks checks passed"
