#!/bin/bash
# Configuration errors reach the user once, name the file, line, section, key
# and allowed values, and exit 2; overrides beat the file.
source "$(dirname "$0")/common.sh"
DEMO=$LFS_SRCDIR/jobs/configs/smoke.ini

printf '[run]\nseed = 3\n\n[optim]\nlr = fast\n' > bad_number.ini
run 2 "$LFSEARCH" demo -c bad_number.ini
expect "bad_number.ini:5"; expect "[optim]"; expect "lr"; expect '"fast"'; expect "[0, 100]"
ok "malformed number: file, line, section, key, range"

printf '[modle]\narch = r50\n' > bad_section.ini
run 2 "$LFSEARCH" demo -c bad_section.ini
expect "bad_section.ini:1"; expect "[modle]"; expect "model"; ok "unknown section lists the known ones"

printf '[optim]\nlrr = 0.1\n' > bad_key.ini
run 2 "$LFSEARCH" demo -c bad_key.ini
expect "bad_key.ini:2"; expect '"lrr"'; expect "momentum"; ok "unknown key lists the known keys"

printf '[model]\narch = r51\n' > bad_choice.ini
run 2 "$LFSEARCH" demo -c bad_choice.ini
expect "bad_choice.ini:2"; expect "r51"; expect "tiny|r18|r34|r50|r100|r200|mbf"; ok "bad choice lists the choices"

run 2 "$LFSEARCH" demo -c "$DEMO" --set optim.lr=500
expect "--set"; expect "[optim]"; expect "lr"; expect "500"; expect "[0, 100]"; ok "out-of-range override"
run 2 "$LFSEARCH" demo -c "$DEMO" --set optimlr
expect "section.key=value"; ok "malformed override"
run 2 "$LFSEARCH" demo -c missing.ini
expect "missing.ini"; expect "No such file"; ok "missing file named"

run 2 "$MPIEXEC" -n 2 "$LFSEARCH" demo -c bad_number.ini
expect_count "lfsearch: error:" 1; ok "a user error is printed once under 2 ranks"
run 2 "$MPIEXEC" -n 2 "$LFSEARCH" demo -c "$DEMO" --set data.batch_size=7
expect "batch_size = 7"; expect "not divisible by the 2 MPI ranks"; expect "--set"; ok "batch not divisible by ranks"

run 0 "$LFSEARCH" demo -c "$DEMO" --set run.steps=2 --set run.log_every=1 --set data.batch_size=4 --set data.classes=3
expect "global batch 4"; expect "3 classes"; expect_re '^step +2/2'; ok "overrides beat the file"
echo "$checks checks passed"
