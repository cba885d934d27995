#!/bin/bash
# run-fuzz.sh: builds the parser fuzz targets with clang's libFuzzer under
# AddressSanitizer + UndefinedBehaviorSanitizer and runs them side by side, one
# core each. Not part of make check (CI has no clang): run it by hand after
# changing src/data/recordio.c, src/data/pickle*.c or src/data/image.c.
#
# usage: tests/fuzz/run-fuzz.sh [SECONDS [WORKDIR [TARGET...]]]
#   SECONDS  libFuzzer -max_total_time per target (default 600)
#   WORKDIR  build and corpus directory (default /tmp/lfs-fuzz); corpora persist
#            there between runs, seeded from tests/fuzz/regress/<target>/ and from
#            inputs made by tests/data/make_rec.py and make_bin.py
#   TARGET   recordio and/or pickle (default both)
# needs: clang-14 libclang-rt-14-dev (apt-get install -y clang-14 libclang-rt-14-dev),
#        libjpeg and libpng headers, /usr/bin/python3.
# A crash stops that target; its input is WORKDIR/crash-TARGET-*. Fix the parser,
# copy the input into tests/fuzz/regress/TARGET/ (test_fuzz_regress runs it in
# make check) and run again. Prints executions, coverage and crashes per target.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
SECONDS_PER=${1:-600}
WORK=${2:-/tmp/lfs-fuzz}
shift $(( $# > 2 ? 2 : $# ))
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(recordio pickle)
CC=${CC:-clang-14}
command -v "$CC" >/dev/null || { echo "run-fuzz.sh: $CC not found (apt-get install -y clang-14 libclang-rt-14-dev)" >&2; exit 2; }
mkdir -p "$WORK"

FLAGS=(-std=gnu11 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
       -fno-omit-frame-pointer -I"$SRC/include" -I"$SRC/src" -I"$SRC/tests/fuzz")
for t in "${TARGETS[@]}"; do
  "$CC" "${FLAGS[@]}" -o "$WORK/fuzz_$t" "$SRC/tests/fuzz/fuzz_$t.c" "$SRC/tests/fuzz/fuzz_targets.c" \
    "$SRC/src/data/recordio.c" "$SRC/src/data/pickle.c" "$SRC/src/data/pickle_objects.c" \
    "$SRC/src/data/image.c" \
    $(pkg-config --cflags --libs libjpeg libpng) -lm
done

# seeds: the committed regression inputs and a few well-formed files
IMG=$SRC/tests/data/img
PY=/usr/bin/python3
mkdir -p "$WORK/seeds-recordio" "$WORK/seeds-pickle"
S=$WORK/seeds-recordio
$PY "$SRC/tests/data/make_rec.py" "$S/plain" "$IMG/id0_0.jpg:0" "$IMG/id3_0.png:1" >/dev/null
$PY "$SRC/tests/data/make_rec.py" "$S/header" --header --label-array "$IMG/id1_0.jpg:0" "$IMG/grey.png:1" >/dev/null
$PY "$SRC/tests/data/make_rec.py" "$S/split" --split "$IMG/grey.png:2" "$IMG/palette.png:0" >/dev/null
S=$WORK/seeds-pickle
for form in py2 p2 p4 p5 numpy2 numpy4 numpy5 numpy-issame; do
  $PY "$SRC/tests/data/make_bin.py" "$S/$form.bin" --form "$form" --issame 1,0 \
    "$IMG/grey.png" "$IMG/id3_0.png" "$IMG/palette.png" "$IMG/grey.jpg"
done
cat > "$WORK/pickle.dict" <<'DICT'
"\x80\x02"
"\x80\x04"
"\x80\x05"
"\x95"
"numpy.core.multiarray"
"numpy.core.numeric"
"_reconstruct"
"_frombuffer"
"scalar"
"ndarray"
"dtype"
"numpy"
"_codecs"
"encode"
"latin1"
"u1"
"b1"
"i1"
"c_codecs\x0aencode\x0a"
"cnumpy\x0andarray\x0a"
"\x93"
"\x94"
"(K\x03\x8c\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
DICT
printf '"\\x0a\\x23\\xd7\\xce"\n"\\x00\\x00\\x00\\x20"\n"\\x00\\x00\\x00\\x40"\n"\\x00\\x00\\x00\\x60"\n"\\xff\\xd8\\xff"\n"\\x89PNG\\x0d\\x0a\\x1a\\x0a"\n' > "$WORK/recordio.dict"

pids=()
for t in "${TARGETS[@]}"; do
  mkdir -p "$WORK/corpus-$t"
  ( cd "$WORK" && exec ./fuzz_$t -max_total_time="$SECONDS_PER" -timeout=10 -rss_limit_mb=2560 \
      -max_len=65536 -print_final_stats=1 -dict="$WORK/$t.dict" -artifact_prefix="$WORK/crash-$t-" \
      "corpus-$t" "seeds-$t" "$SRC/tests/fuzz/regress/$t" ) > "$WORK/$t.log" 2>&1 &
  pids+=($!)
done
status=0
for i in "${!pids[@]}"; do
  t=${TARGETS[$i]}
  if wait "${pids[$i]}"; then rc=0; else rc=$?; status=1; fi
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$WORK/$t.log" | grep -o '[0-9]*$' || echo '?')
  last=$(grep -E '^#[0-9]+' "$WORK/$t.log" | tail -1 || true)
  cov=$(grep -o 'cov: [0-9]*' <<<"$last" | grep -o '[0-9]*' || echo '?')
  ft=$(grep -o 'ft: [0-9]*' <<<"$last" | grep -o '[0-9]*' || echo '?')
  crashes=$(find "$WORK" -maxdepth 1 -name "crash-$t-*" | wc -l)
  echo "fuzz_$t: exit $rc, executions $execs, cov $cov, ft $ft, crash files $crashes (log $WORK/$t.log)"
done
exit $status
