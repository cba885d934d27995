#!/bin/bash
# `lfsearch pack`: conversions from insightface rec/idx and .bin files (written
# by tests/data/make_rec.py and make_bin.py), image folders and list files;
# shards and manifests, resizing, the summary and progress lines; corrupt and
# truncated inputs stop with exit 2, name the record and byte offset and leave
# no output or temporary file; --skip-bad counts them. Pixel-exact checks are
# in tests/unit/test_pack.c.
source "$(dirname "$0")/common.sh"
PY=/usr/bin/python3
IMG=$LFS_SRCDIR/tests/data/img
MAKE_REC=$LFS_SRCDIR/tests/data/make_rec.py
MAKE_BIN=$LFS_SRCDIR/tests/data/make_bin.py
EIGHT="$IMG/id0_0.jpg:0 $IMG/id0_1.jpg:0 $IMG/id1_0.jpg:1 $IMG/id1_1.jpg:1 $IMG/id2_0.jpg:2
       $IMG/id3_0.png:3 $IMG/id3_1.png:3 $IMG/grey.png:4"

# nothing but the inputs may remain in the folder (no OUT*, no *.tmp-*)
no_output() {
  local left
  left=$(ls -A | grep -v -e '\.rec$' -e '\.idx$' -e '\.lst$' -e '\.bin$' -e '^property$' || true)
  [ -z "$left" ] || fail "files left behind: $left"
}

run 0 "$LFSEARCH" pack --help
expect "aligned face crops"; expect "--skip-bad"; expect "--shard-size"
ok "--help documents the inputs, aligned crops and the options"
run 2 "$LFSEARCH" pack --from rec x.rec
expect "needs --from KIND, INPUT and --out"; ok "missing --out: exit 2"
run 2 "$LFSEARCH" pack --from zip x --out o.h5
expect '--from "zip" is not one of rec, bin, folder, list'; ok "unknown input kind: exit 2"
run 2 "$LFSEARCH" pack --from rec x.rec --out o.h5 --threads 0
expect "--threads"; ok "bad --threads: exit 2"
run 2 "$LFSEARCH" pack --from rec missing.rec --out o.h5
expect "missing.rec: cannot open"; no_output; ok "missing input: exit 2"

# ---- RecordIO ----
$PY "$MAKE_REC" train --header --split $EIGHT > train.lst || fail "make_rec.py"
run 0 "$LFSEARCH" pack --from rec train.rec --out ms1m.h5 --shard-size 3 --threads 3 --seed 5
expect "pack: 8 images, 5 identities (num_classes 5), 16x16, 3 shards + manifest -> ms1m.h5; skipped 0"
expect "images/s"; expect "ETA"
for f in ms1m.h5 ms1m-00000.h5 ms1m-00001.h5 ms1m-00002.h5; do [ -f "$f" ] || fail "$f missing"; done
[ ! -e ms1m-00003.h5 ] || fail "a fourth shard"
ok "rec with header and split records: 3 shards and a manifest, summary and progress"
run 0 "$LFSEARCH" pack --from rec train.rec --out one.h5 --quiet
expect "1 shard -> one.h5"; [ ! -e one-00000.h5 ] || fail "a shard beside a plain dataset"
ok "one shard is a plain dataset"
if h5dump -a /num_classes one.h5 > dump.txt 2>&1; then
  grep -q "(0): 5" dump.txt || fail "num_classes attribute: $(cat dump.txt)"
  ok "num_classes stored"
fi
rm -f dump.txt one.h5 ms1m*.h5

$PY "$MAKE_REC" bad --bad-magic 5 $EIGHT > bad.lst
run 2 "$LFSEARCH" pack --from rec bad.rec --out out.h5 --shard-size 2
expect_re "lfsearch: error: .*bad.rec: record key 5 \(index 5\) at byte offset [0-9]+: bad record magic 0x0df0ad0b"
no_output; ok "bad magic: exit 2, record and offset named, no partial output"
run 0 "$LFSEARCH" pack --from rec bad.rec --out out.h5 --shard-size 2 --skip-bad
expect "pack: 7 images"; expect "skipped 1"; expect "skipping record key 5"
ok "--skip-bad skips and counts the bad record"
rm -f out*.h5 bad.*

$PY "$MAKE_REC" cut --truncate 7 $EIGHT > cut.lst
run 2 "$LFSEARCH" pack --from rec cut.rec --out out.h5
expect_re "record key 7 \(index 7\) at byte offset [0-9]+: truncated record at byte offset [0-9]+: length [0-9]+ but only [0-9]+ bytes remain"
no_output; ok "truncated payload: exit 2, no partial output"
$PY "$MAKE_REC" noidx --no-idx --truncate 7 $EIGHT > noidx.lst
run 2 "$LFSEARCH" pack --from rec noidx.rec --out out.h5
expect "record index 7: truncated record"; no_output
run 0 "$LFSEARCH" pack --from rec noidx.rec --out out.h5 --skip-bad
expect "pack: 7 images"; expect "skipped 1"
ok "truncated file without an index: exit 2, or skipped and counted"
rm -f out*.h5 cut.* noidx.*

$PY "$MAKE_REC" jpg --bad-image 2 $EIGHT > jpg.lst
run 2 "$LFSEARCH" pack --from rec jpg.rec --out out.h5
expect_re "record key 2 \(index 2\) at byte offset [0-9]+: corrupt JPEG"; no_output
ok "corrupt JPEG: exit 2, no partial output"
rm -f jpg.*

$PY "$MAKE_REC" lab --property 4,16,16 $EIGHT > lab.lst
run 2 "$LFSEARCH" pack --from rec lab.rec --out out.h5
expect "record key 7 (index 7)"; expect "label 4 is out of range: \`property\` says num_classes = 4"
no_output; ok "label beyond the property file's num_classes: exit 2"
rm -f lab.* property

# ---- image sizes ----
$PY "$MAKE_REC" mixed "$IMG/id0_0.jpg:0" "$IMG/big.jpg:1" "$IMG/id1_0.jpg:1" "$IMG/id3_0.png:2" > mixed.lst
run 2 "$LFSEARCH" pack --from rec mixed.rec --out out.h5
expect "image is 20x24, the dataset's images are 16x16"; expect "aligned crops"; no_output
ok "an image of another size without --size: exit 2"
run 0 "$LFSEARCH" pack --from rec mixed.rec --out out.h5 --skip-bad
expect "1 of 4 images were not 16x16 and were left out"; expect_count "were not 16x16" 1
expect "pack: 3 images"; ok "--skip-bad: one warning with counts"
run 0 "$LFSEARCH" pack --from rec mixed.rec --out out.h5 --size 12
expect "pack: 4 images, 3 identities (num_classes 3), 12x12"; ok "--size resizes"
rm -f out*.h5 mixed.*

# ---- verification .bin ----
PAIRS="$IMG/id0_0.jpg $IMG/id0_1.jpg $IMG/id1_0.jpg $IMG/id3_0.png $IMG/grey.png $IMG/palette.png"
for form in py2 p4 numpy4; do
  $PY "$MAKE_BIN" "lfw_$form.bin" --form $form --issame 1,0,1 $PAIRS || fail "make_bin.py $form"
  run 0 "$LFSEARCH" pack --from bin "lfw_$form.bin" --out "lfw_$form.h5"
  expect "pack: 3 pairs (2 genuine, 1 impostor), 6 images of 16x16 -> lfw_$form.h5"
done
ok "bin written by Python 2, Python 3 and with numpy arrays: pair sets"
$PY "$MAKE_BIN" op.bin --bad-opcode --issame 1,0,1 $PAIRS
run 2 "$LFSEARCH" pack --from bin op.bin --out op.h5
expect_re "op.bin: pickle opcode EMPTY_DICT at byte offset [0-9]+"
[ ! -e op.h5 ] || fail "op.h5 written"; ok "unsupported pickle opcode: exit 2, named with its offset"
$PY "$MAKE_BIN" short.bin --truncate 5 --issame 1,0,1 $PAIRS
run 2 "$LFSEARCH" pack --from bin short.bin --out short.h5
expect "truncated"; [ ! -e short.h5 ] || fail "short.h5 written"; ok "truncated pickle: exit 2"
$PY "$MAKE_BIN" img.bin --bad-image 1 --issame 1,0,1 $PAIRS
run 2 "$LFSEARCH" pack --from bin img.bin --out img.h5
expect "image 1 (pair 0) at byte offset"
run 0 "$LFSEARCH" pack --from bin img.bin --out img.h5 --skip-bad --name agedb_30
expect "pack: 2 pairs (1 genuine, 1 impostor)"; expect "skipped 1"
ok "corrupt image in a pair: exit 2, or the pair is dropped"
rm -f ./*.bin ./*.h5

# ---- folders and lists ----
mkdir -p faces/anna faces/bert faces/carl
cp "$IMG/id0_0.jpg" faces/anna/1.jpg; cp "$IMG/id0_1.jpg" faces/anna/2.jpg
cp "$IMG/id3_0.png" faces/bert/1.png; cp "$IMG/id2_0.jpg" faces/carl/x.jpeg
run 0 "$LFSEARCH" pack --from folder faces --out faces.h5 --threads 2
expect "pack: 4 images, 3 identities (num_classes 3), 16x16, 1 shard -> faces.h5"
ok "folder of identities"
printf 'faces/anna/1.jpg 3\n# a comment\nfaces/carl/x.jpeg 0\n' > list.txt
run 0 "$LFSEARCH" pack --from list list.txt --out list.h5
expect "pack: 2 images, 2 identities (num_classes 4)"; ok "list file"
printf 'faces/anna/1.jpg 3\nfaces/none.jpg 1\n' > missing.txt
run 2 "$LFSEARCH" pack --from list missing.txt --out missing.h5
expect "missing.txt: line 2 (" ; expect "cannot open"
[ ! -e missing.h5 ] || fail "missing.h5 written"; ok "list naming a missing file: exit 2"
echo "$checks checks passed"
