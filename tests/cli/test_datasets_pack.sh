#!/bin/bash
# datasets/pack_insightface.sh on an insightface-style folder (train.rec/.idx,
# property, two .bin sets, written by tests/data/make_rec.py and make_bin.py):
# the training set and one pair set per .bin, described at the end; a rerun
# keeps what exists and converts only what is missing; options reach the
# training set's pack; a file system without room for the training set, a
# missing or empty folder and a corrupt .bin stop with exit 2 or 1, named, and
# leave the files already made intact.
source "$(dirname "$0")/common.sh"
PY=/usr/bin/python3
IMG=$LFS_SRCDIR/tests/data/img
SCRIPT=$LFS_SRCDIR/datasets/pack_insightface.sh
export LFSEARCH
EIGHT="$IMG/id0_0.jpg:0 $IMG/id0_1.jpg:0 $IMG/id1_0.jpg:1 $IMG/id1_1.jpg:1 $IMG/id2_0.jpg:2
       $IMG/id3_0.png:3 $IMG/id3_1.png:3 $IMG/grey.png:4"
PAIRS="$IMG/id0_0.jpg $IMG/id0_1.jpg $IMG/id1_0.jpg $IMG/id3_0.png $IMG/grey.png $IMG/palette.png"

mkdir -p faces_x
(cd faces_x && $PY "$LFS_SRCDIR/tests/data/make_rec.py" train --header --property 5,16,16 $EIGHT > /dev/null) ||
  fail "make_rec.py"
$PY "$LFS_SRCDIR/tests/data/make_bin.py" faces_x/lfw.bin --issame 1,0,1 $PAIRS || fail "make_bin.py"
$PY "$LFS_SRCDIR/tests/data/make_bin.py" faces_x/cfp_fp.bin --form numpy4 --issame 0,1,1 $PAIRS ||
  fail "make_bin.py"

run 0 bash "$SCRIPT" --help
expect "usage: datasets/pack_insightface.sh SRC_DIR OUT_DIR"; ok "--help"
run 2 bash "$SCRIPT" faces_x
expect "usage:"; ok "one argument: usage, exit 2"
run 2 bash "$SCRIPT" nowhere out
expect "pack_insightface: nowhere: no such folder"; ok "missing folder: exit 2, named"
mkdir -p empty
run 2 bash "$SCRIPT" empty out
expect "empty: neither train.rec nor any *.bin"; [ ! -e out ] || fail "out made"
ok "a folder without a dataset: exit 2, nothing made"

run 0 bash "$SCRIPT" faces_x data/x --shard-size 3 --threads 2 --quiet
expect "pack: 3 pairs (2 genuine, 1 impostor), 6 images of 16x16 -> data/x/lfw.h5"
expect "pack: 3 pairs (2 genuine, 1 impostor), 6 images of 16x16 -> data/x/cfp_fp.h5"
expect "== data/x"; expect "done; name these files under [data]"
for f in train.h5 train-00000.h5 train-00002.h5 lfw.h5 cfp_fp.h5; do
  [ -f "data/x/$f" ] || fail "data/x/$f missing"
done
run 0 "$LFSEARCH" info data/x/train.h5
expect_re "images +: 8"; expect "identities   : 5 (num_classes)"
ok "training set (options passed: 3 shards + manifest) and both pair sets, then described"

rm data/x/cfp_fp.h5
touch -d '2001-01-01' data/x/train.h5 data/x/lfw.h5
run 0 bash "$SCRIPT" faces_x data/x
expect "data/x/train.h5 exists: kept"; expect "data/x/lfw.h5 exists: kept"
expect "-> data/x/cfp_fp.h5"
[ "$(stat -c %Y data/x/train.h5)" = "$(date -d 2001-01-01 +%s)" ] || fail "train.h5 rewritten"
ok "a rerun keeps what exists and converts only what is missing"

# a file system with 1 MiB free: df answers for it
mkdir -p fakebin
cat > fakebin/df <<'EOF'
#!/bin/sh
echo "Filesystem 1-blocks Used Available Capacity Mounted on"
echo "fake 1073741824 1072693248 1048576 99% /"
EOF
chmod +x fakebin/df
mkdir -p faces_big
(cd faces_big && $PY "$LFS_SRCDIR/tests/data/make_rec.py" train $EIGHT > /dev/null) || fail "make_rec.py"
for i in $(seq 200); do echo "$i 0"; done >> faces_big/train.idx # as if 208 records of 112x112
run 2 env PATH="$PWD/fakebin:$PATH" bash "$SCRIPT" faces_big data/big
expect "data/big: the training set needs about 7 MiB, but only 1 MiB are free there"
[ ! -e data/big/train.h5 ] || fail "train.h5 written"
ok "no room for the training set: exit 2, how much is needed and free"

$PY "$LFS_SRCDIR/tests/data/make_bin.py" faces_x/agedb_30.bin --truncate 5 --issame 1,0,1 $PAIRS
run 1 bash "$SCRIPT" faces_x data/x
expect "agedb_30.bin"; expect "truncated"; expect "data/x/agedb_30.h5: lfsearch pack failed"
[ ! -e data/x/agedb_30.h5 ] || fail "agedb_30.h5 written"
run 0 "$LFSEARCH" info data/x/lfw.h5 data/x/cfp_fp.h5 data/x/train.h5
ok "a corrupt .bin: exit 1, named; no partial file, the others intact"
echo "$checks checks passed"
