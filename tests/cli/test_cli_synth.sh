#!/bin/bash
# `lfsearch synth`: a tiny dataset and its pair sets, byte-identical across runs
# and thread counts; a different seed gives different files and replaces the old
# ones; --preview writes a PNG; every bad value is a usage error (exit 2) naming
# its option; --help documents the defaults.
source "$(dirname "$0")/common.sh"

tiny=(--identities 20 --images-per-identity 4 --size 16 --val-pairs 100 --test-pairs 100
      --val-identities 10 --test-identities 12 --shard-chunk 8)

run 0 "$LFSEARCH" synth --help
expect "usage: lfsearch synth --out DIR"; expect "--difficulty D"; expect "(3000)"; expect "(0.5)"
ok "--help documents options and defaults"

run 0 "$LFSEARCH" synth --out a/b "${tiny[@]}" --threads 1
for f in train.h5 val_pairs.h5 test_pairs.h5; do [ -s "a/b/$f" ] || fail "a/b/$f missing"; done
[ -z "$(ls a/b | grep -vE '^(train|val_pairs|test_pairs)\.h5$')" ] || fail "stray files: $(ls a/b)"
expect_re "synth: 480 images \(train 20 x 4, pairs 100 \+ 100\) of 42 identities, 200 pairs, 16x16, in [0-9.]+ s: [0-9]+ images/s on 1 thread \(rendering alone [0-9]+ images/s\) -> a/b"
expect "480/480 images"
ok "writes train.h5, val_pairs.h5 and test_pairs.h5 into a new nested directory, with progress and summary"
# train.h5 holds 80 images of 16x16x3 bytes, each pair set 200
size=$(stat -c %s a/b/train.h5); [ "$size" -gt $((80 * 768)) ] || fail "train.h5 has only $size bytes"
size=$(stat -c %s a/b/val_pairs.h5); [ "$size" -gt $((200 * 768)) ] || fail "val_pairs.h5 has only $size bytes"
ok "file sizes hold the images"

run 0 "$LFSEARCH" synth --out again "${tiny[@]}" --threads 1
run 0 "$LFSEARCH" synth --out threads "${tiny[@]}" --threads 2
for f in train.h5 val_pairs.h5 test_pairs.h5; do
  cmp a/b/$f again/$f || fail "$f differs between two identical runs"
  cmp a/b/$f threads/$f || fail "$f differs between --threads 1 and 2"
done
ok "byte-identical across runs and thread counts"

cp a/b/train.h5 old-train.h5
run 0 "$LFSEARCH" synth --out a/b "${tiny[@]}" --seed 2
! cmp -s a/b/train.h5 old-train.h5 || fail "--seed 2 wrote the same train.h5"
! cmp -s a/b/val_pairs.h5 again/val_pairs.h5 || fail "--seed 2 wrote the same val_pairs.h5"
[ -z "$(ls a/b | grep -vE '^(train|val_pairs|test_pairs)\.h5$')" ] || fail "stray files: $(ls a/b)"
ok "another seed replaces the files with different ones"

run 0 "$LFSEARCH" synth --out p "${tiny[@]}" --preview grid.png
[ "$(head -c 8 grid.png | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ] || fail "grid.png is not a PNG"
[ -s p/train.h5 ] || fail "--preview stopped the dataset"
run 0 "$LFSEARCH" synth --preview only.png --size 32
[ "$(head -c 4 only.png | od -An -tx1 | tr -d ' \n')" = "89504e47" ] || fail "only.png is not a PNG"
expect "wrote the preview only.png"
ok "--preview writes a PNG, with or without the dataset"

# usage errors: exit 2, the option and its range named, nothing written
bad() {
  local option=$1 text=$2; shift 2
  run 2 "$LFSEARCH" synth --out bad "$@"
  expect "$text"
  [ ! -e bad ] || fail "a rejected command created bad/"
}
bad --size '--size: "8" is not a whole number in [16, 256]' --size 8
bad --difficulty '--difficulty: "1.5" is not a number in [0, 1]' --difficulty 1.5
bad --identities '--identities: "1" is not a whole number in [2, 10000000]' --identities 1
bad --val-pairs '--val-pairs: 101 is not an even number of pairs in [2, 100000]' --val-pairs 101
bad --shard-chunk '--shard-chunk: "0" is not a whole number in [1, 4096]' --shard-chunk 0
bad --threads '--threads: "0" is not a whole number in [1, 1024]' --threads 0
bad --seed '--seed: "" is not a whole number' --seed
bad product '--identities x --images-per-identity: 2000000 x 100' --identities 2000000 --images-per-identity 100
bad unknown 'synth: unknown option "--colour"' --colour red
run 2 "$LFSEARCH" synth --size 32
expect "--out DIR is required"
ok "bad values are usage errors naming the option and its range; nothing is written"

touch file
run 2 "$LFSEARCH" synth --out file "${tiny[@]}"
expect "--out: file exists and is not a directory"
ok "--out naming a file is a usage error"
echo "$checks checks passed"
