#!/bin/bash
# pack_insightface.sh: converts one of insightface's dataset folders (train.rec
# + train.idx [+ property], and verification sets *.bin) into lfsearch's HDF5,
# the files a run config names under [data]:
#   OUT/train.h5             the training set (with OUT/train-NNNNN.h5 shards and
#                            train.h5 as their manifest beyond --shard-size images)
#   OUT/<name>.h5            one pair set per SRC/<name>.bin (lfw, cfp_fp, agedb_30, ...)
# Before converting the training set it checks that OUT's file system has room
# for it (images are stored uncompressed: height x width x 3 bytes each). A file
# that already exists in OUT is kept, so a rerun after an interruption converts
# only the rest (lfsearch pack writes each file under a temporary name and
# renames it when complete). See datasets/README.md for where the folders come from.
#
# usage: datasets/pack_insightface.sh SRC_DIR OUT_DIR [PACK_OPTION...]
#   PACK_OPTIONs go to the training set's `lfsearch pack --from rec` (for
#   example --threads 16, --shard-size 200000, --skip-bad).
#   LFSEARCH: the program (default: _build/lfsearch of this checkout, else lfsearch on PATH).
# Exit codes: 0 done, 2 bad arguments or input (named), 1 a conversion failed.
set -uo pipefail

die() { echo "pack_insightface: $*" >&2; exit 2; }

usage() { sed -n '/^# usage:/,/^# Exit codes/p' "$0" | sed 's/^# \{0,1\}//'; }

[ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ] && { usage; exit 0; }
[ $# -ge 2 ] || { usage >&2; exit 2; }
SRC=$1 OUT=$2
shift 2

here=$(cd "$(dirname "$0")/.." && pwd)
LFSEARCH=${LFSEARCH:-}
if [ -z "$LFSEARCH" ]; then
  if [ -x "$here/_build/lfsearch" ]; then LFSEARCH=$here/_build/lfsearch
  else LFSEARCH=$(command -v lfsearch) ||
    die "no lfsearch program: build it (bash jobs/setup.sh) or set LFSEARCH"
  fi
fi
[ -x "$LFSEARCH" ] || die "LFSEARCH=$LFSEARCH is not an executable program"
[ -d "$SRC" ] || die "$SRC: no such folder"

shopt -s nullglob
bins=("$SRC"/*.bin)
have_train=0
[ -f "$SRC/train.rec" ] && have_train=1
[ $have_train = 1 ] || [ ${#bins[@]} -gt 0 ] ||
  die "$SRC: neither train.rec nor any *.bin verification file (is it an insightface dataset folder?)"
mkdir -p "$OUT" || die "$OUT: cannot create the folder"

# Bytes the training set needs: records (train.idx's lines, which also count
# insightface's header and identity records, so a little more) times the image
# size from `property` ("classes,height,width"; 112x112 without one).
train_bytes() {
  local records=0 h=112 w=112 prop
  if [ -f "$SRC/train.idx" ]; then
    records=$(wc -l < "$SRC/train.idx")
  else # one record per 4 KiB of .rec at least: aligned 112x112 JPEGs are larger
    records=$(( $(stat -c %s "$SRC/train.rec") / 4096 + 1 ))
  fi
  if [ -f "$SRC/property" ]; then
    IFS=, read -r _ prop_h prop_w < "$SRC/property" || true
    prop=${prop_h//[^0-9]/}; [ -n "$prop" ] && h=$prop
    prop=${prop_w//[^0-9]/}; [ -n "$prop" ] && w=$prop
  fi
  echo $(( records * h * w * 3 ))
}

human() { # BYTES as MiB or GiB
  awk -v b="$1" 'BEGIN { if (b >= 1073741824) printf "%.1f GiB", b / 1073741824;
                         else printf "%.0f MiB", b / 1048576 }'
}

check_room() { # BYTES: stop when OUT's file system has less free
  local need=$1 free
  free=$(df -P -B1 "$OUT" | awk 'NR == 2 { print $4 }')
  [ -n "$free" ] || return 0
  [ "$need" -le "$free" ] ||
    die "$OUT: the training set needs about $(human "$need"), but only $(human "$free") are free there"
}

failed=0
made=()
pack() { # OUTFILE ARGS...: one conversion unless OUTFILE exists
  local out=$1; shift
  if [ -e "$out" ]; then
    echo "pack_insightface: $out exists: kept"
  else
    if ! "$LFSEARCH" pack "$@" --out "$out"; then
      echo "pack_insightface: $out: lfsearch pack failed" >&2
      failed=1
      return
    fi
  fi
  made+=("$out")
}

if [ $have_train = 1 ]; then
  if [ -e "$OUT/train.h5" ]; then
    pack "$OUT/train.h5"
  else
    check_room "$(train_bytes)"
    pack "$OUT/train.h5" --from rec "$SRC/train.rec" "$@"
  fi
fi
for b in "${bins[@]}"; do
  name=$(basename "$b" .bin)
  pack "$OUT/$name.h5" --from bin "$b"
done

if [ ${#made[@]} -gt 0 ]; then
  echo "== $OUT"
  "$LFSEARCH" info "${made[@]}" || failed=1
fi
[ $failed = 0 ] || exit 1
echo "pack_insightface: done; name these files under [data] in a run config" \
  "(train =, val_pairs =, test_pairs =)"
