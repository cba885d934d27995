#!/bin/bash
# `lfsearch info --model ARCH [--embedding D] [--input S]`: the layer table with
# insightface's state-dict names, the parameter count insightface publishes
# (frozen features.weight included) and the forward MACs per image; bad
# architectures, sizes and options are usage errors (exit 2) that say why.
source "$(dirname "$0")/common.sh"

run 0 "$LFSEARCH" info --model r50
expect "model r50: input 3x112x112, embedding 512"
expect "  parameters   : 43,590,848 (43,590,336 trainable, 512 frozen)"
expect "  MACs/image   : 6,331,735,552 forward multiply-adds (6.33 G; conv and linear 6,309,330,944)"
expect_re '^  0  conv1 +conv 3x3 3->64 stride 1 pad 1 +-> 1x64x112x112 +1728 params$'
expect_re '^ *[0-9]+  layer3\.13\.conv2 +conv 3x3 256->256 stride 1 pad 1 '
expect_re '^ *[0-9]+  layer4\.0\.downsample\.0 +conv 1x1 256->512 stride 2 pad 0 +-> 1x512x7x7 '
expect_re '^ *[0-9]+  fc +linear 25088->512 \+bias +-> 1x512 +12845568 params$'
expect_re '^ *[0-9]+  features +batchnorm1d 512 .*fixed-gamma'
expect_count "layer3.14." 0
expect_count "CUDA backend" 0
ok "info --model r50: layer table, 43,590,848 parameters, 6.33 G MACs"

for want in "r18 24,025,600" "r34 34,139,328" "r100 65,156,160"; do
  set -- $want
  run 0 "$LFSEARCH" info --model "$1"
  expect "  parameters   : $2 ("
done
ok "info --model r18, r34, r100: insightface's parameter counts"

run 0 "$LFSEARCH" info --model mbf
expect "  parameters   : 2,059,520 (2,059,520 trainable, 0 frozen)"
expect_re 'features\.layers\.0\.layers\.0 +conv 7x7 512->512 stride 1 pad 0 depthwise'
expect_re 'conv and linear 437,520,896\)$'
ok "info --model mbf: arcface_torch's MobileFaceNet"

run 0 "$LFSEARCH" info --model tiny --input 32 --embedding 128
expect "model tiny: input 3x32x32, embedding 128"
expect_re '^ *[0-9]+  fc +linear 512->128 \+bias'
expect "  parameters   : 374,512 (374,384 trainable, 128 frozen)"
run 0 "$LFSEARCH" info --model tiny --input 64
expect_re '^ *[0-9]+  fc +linear 2048->512 \+bias'
ok "info --model tiny follows --input and --embedding"

run 0 "$MPIEXEC" -n 2 "$LFSEARCH" info --model r18
expect_count "  parameters   : 24,025,600" 1
ok "under MPI the table is printed once"

# errors
run 2 "$LFSEARCH" info --model r99
expect 'unknown model architecture "r99" (choices: tiny, r18, r34, r50, r100, r200, mbf'
ok "an unknown architecture is exit 2 listing the choices"
run 2 "$LFSEARCH" info --model r50 --input 96
expect "model r50: input size 96 is not supported"
run 2 "$LFSEARCH" info --model tiny --input 40
expect "model tiny: input size 40 is not a multiple of 16"
run 2 "$LFSEARCH" info --model r18 --embedding 0
expect '--embedding: "0" is not a whole number in [1, 65536]'
run 2 "$LFSEARCH" info --model
expect "info: --model needs a value"
run 2 "$LFSEARCH" info --input 64
expect "info: --input needs --model ARCH"
ok "bad sizes and missing values are exit 2, named"

run 0 "$LFSEARCH" info --help
expect "--model ARCH"; expect "mbf"
ok "info --help describes --model"
echo "$checks checks passed"
